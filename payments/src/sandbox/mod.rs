//! `paystage sandbox`: a card processor of its own, in its own process, with its own store and
//! origin, speaking Adyen's Checkout API shape (`/checkout/v72`, see
//! `crate::connector::adyen::wire`) so that Paystage's `adyen` connector, and Adyen's own
//! client libraries, can be pointed at it (issue #42).
//!
//! What it does: authorizations with manual capture of stored cards (or of a card sent by a
//! PCI-compliant caller, stored for a shopper when asked), several partial captures per
//! authorization when the merchant account allows them (never for interac), refunds up to what
//! was captured, cancels, amount updates, declines of the documented test cards
//! (`crate::domain::views::TEST_CARDS`), `X-API-Key` authentication, idempotency keys (same key
//! and same request: the stored answer; same key and another request: 422; keys forgotten after
//! the key window), and notifications: each outcome is queued in its store and POSTed as an
//! Adyen-shaped, HMAC-signed batch to the notification URL until that URL answers `[accepted]`.
//!
//! Its ledger is the processor engine of `crate::connector::simulator` on a SQLite file in the
//! data directory; its own tables (idempotency keys, stored-card owners, the notification queue)
//! sit beside it in that file. Refusals it can decide at once (an amount above what is left, an
//! unknown reference) are answered 422 with Paystage's decline code as `errorCode` (Adyen gives
//! numeric codes; the sandbox's are named so tests can read them).
pub mod admin;
pub mod client;
mod hosted;
mod keys;
mod notify;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use crate::clock::SharedClock;
use crate::connector::adyen::signature::HmacKey;
use crate::connector::adyen::wire::*;
use crate::connector::simulator::ProcessorSimulator;
use crate::connector::{CardEntry, Connector, ConnectorError, Outcome};
use sea_orm::EntityTrait;
use crate::domain::money::{Currency, Money};
use sea_orm::DatabaseConnection;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// How the sandbox runs (`paystage sandbox --help`).
#[derive(Clone)]
pub struct SandboxOptions {
    /// Directory of its store (`sandbox.db`), created if missing.
    pub data_dir: std::path::PathBuf,
    pub api_key: String,
    /// The merchant account requests must name.
    pub merchant_account: String,
    /// Where notifications go (Paystage's `/webhooks/adyen/{connector}`); none: they wait in the queue.
    pub notify_url: Option<String>,
    /// Signs notifications.
    pub hmac_key: HmacKey,
    /// How long an idempotency key is remembered.
    pub key_window: chrono::Duration,
    /// The merchant account's allowMultiplePartialCapture.
    pub allow_multiple_partial_capture: bool,
}

impl std::fmt::Debug for SandboxOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxOptions")
            .field("data_dir", &self.data_dir)
            .field("merchant_account", &self.merchant_account)
            .field("notify_url", &self.notify_url)
            .field("key_window", &self.key_window)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    options: SandboxOptions,
    engine: ProcessorSimulator,
    store: DatabaseConnection,
    clock: SharedClock,
}

impl Sandbox {
    /// Opens (or creates) the store in the data directory.
    pub async fn open(options: SandboxOptions, clock: SharedClock) -> Result<Sandbox, sea_orm::DbErr> {
        std::fs::create_dir_all(&options.data_dir).map_err(|e| sea_orm::DbErr::Custom(format!("cannot create {}: {e}", options.data_dir.display())))?;
        let path = options.data_dir.join("sandbox.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let store = crate::connector::simulator::store::open(&url).await?;
        keys::prepare(&store).await?;
        let merchant = crate::connector::simulator::entity::sim_merchant::ActiveModel {
            id: sea_orm::Set(1),
            allow_multiple_partial_capture: sea_orm::Set(options.allow_multiple_partial_capture),
        };
        sea_orm::ActiveModelTrait::update(merchant, &store).await?;
        let engine = ProcessorSimulator::new(store.clone(), clock.clone());
        Ok(Sandbox { inner: Arc::new(Inner { options, engine, store, clock }) })
    }

    pub fn store(&self) -> &DatabaseConnection {
        &self.inner.store
    }

    /// The sandbox's routes: the Checkout API under `/checkout/v72`, the hosted card page under
    /// `/hpp`, the fault administration under `/admin/faults`, and `/healthz`.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/payments", post(payments))
            .route("/payments/{psp}/captures", post(captures))
            .route("/payments/{psp}/refunds", post(refunds))
            .route("/payments/{psp}/cancels", post(cancels))
            .route("/payments/{psp}/amountUpdates", post(amount_updates))
            .route("/storedPaymentMethods", get(stored_payment_methods));
        Router::new()
            .nest(&format!("/checkout/{API_VERSION}"), api)
            .route("/hpp/cards", get(hosted::form).post(hosted::submit))
            .merge(admin::routes())
            .route("/healthz", get(|| async { "ok" }))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self.clone())
    }

    /// Delivers queued notifications until the process ends (nothing to do without a URL).
    pub fn spawn_delivery(&self) {
        if self.inner.options.notify_url.is_some() {
            let sandbox = self.clone();
            tokio::spawn(async move { notify::deliver_forever(sandbox).await });
        }
    }
}

/// An Adyen-shaped error answer.
fn error(status: StatusCode, code: &str, message: impl Into<String>, kind: &str) -> (StatusCode, Value) {
    let e = ServiceError { status: status.as_u16(), error_code: code.to_string(), message: message.into(), error_type: kind.to_string(), psp_reference: None };
    (status, serde_json::to_value(e).unwrap_or(Value::Null))
}

/// An answer; a 503 means nothing was done (an injected error before the effect, the store
/// unavailable before it), and says so with Adyen's `Transient-Error: true`, so the caller knows
/// it may send the request again. Any other 5xx leaves the outcome unknown.
fn respond(status: StatusCode, body: Value, key: Option<&str>) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(TRANSIENT_ERROR_HEADER, axum::http::HeaderValue::from_static("true"));
    }
    if let Some(k) = key.and_then(|k| axum::http::HeaderValue::from_str(k).ok()) {
        r.headers_mut().insert(IDEMPOTENCY_HEADER, k);
    }
    r
}

/// Checks the API key (constant time) and the idempotency key's form.
fn authenticate(s: &Sandbox, headers: &HeaderMap) -> Result<Option<String>, (StatusCode, Value)> {
    let given = headers.get(API_KEY_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !keys::same_secret(given, &s.inner.options.api_key) {
        return Err(error(StatusCode::UNAUTHORIZED, "000", "HTTP Status Response - Unauthorized", "security"));
    }
    match headers.get(IDEMPOTENCY_HEADER) {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_MAX && k.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(k.to_string())),
            _ => Err(error(StatusCode::UNPROCESSABLE_ENTITY, "validation", format!("Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} printable characters"), "validation")),
        },
    }
}

/// What one API request does, given the tracking id the engine records it under and whether it
/// is a repeat of a request seen before.
type Work = Box<dyn FnOnce(Sandbox, String, bool) -> std::pin::Pin<Box<dyn std::future::Future<Output = (StatusCode, Value, Option<NotificationItem>)> + Send>> + Send>;

/// Runs an API request: authenticated, then (with an idempotency key) answered from the stored
/// answer, refused when the key came with another request, or run under the key's tracking id
/// and its answer stored; its notification is queued.
async fn handle(s: Sandbox, headers: HeaderMap, fingerprint: String, work: Work) -> Response {
    let key = match authenticate(&s, &headers) {
        Ok(k) => k,
        Err((status, body)) => return respond(status, body, None),
    };
    let (tracking_id, repeat) = match &key {
        None => (uuid::Uuid::new_v4().to_string(), false),
        Some(k) => match keys::claim(&s, k, &fingerprint).await {
            Ok(keys::Claim::Replay { status, body }) => return respond(status, body, Some(k)),
            Ok(keys::Claim::Conflict) => {
                let (status, body) = error(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_conflict", "The Idempotency-Key was used with another request.", "validation");
                return respond(status, body, Some(k));
            }
            Ok(keys::Claim::Run { tracking_id, repeat }) => (tracking_id, repeat),
            Err(e) => {
                let (status, body) = error(StatusCode::SERVICE_UNAVAILABLE, "storage", format!("sandbox storage: {e}"), "internal");
                return respond(status, body, key.as_deref());
            }
        },
    };
    let (status, body, notification) = work(s.clone(), tracking_id, repeat).await;
    // A 5xx is not an answer: the same key runs again (the engine gives the effect once).
    if !status.is_server_error() {
        if let Some(n) = notification {
            if let Err(e) = notify::enqueue(&s, n).await {
                tracing::warn!(error = %e, "sandbox: could not queue a notification");
            }
        }
        if let Some(k) = &key {
            if let Err(e) = keys::store_answer(&s, k, status, &body).await {
                tracing::warn!(error = %e, "sandbox: could not store an idempotent answer");
            }
        }
    }
    respond(status, body, key.as_deref())
}

fn fingerprint(path: &str, body: &Value) -> String {
    use sha2::Digest;
    let canonical = format!("{path}\n{}", serde_json::to_string(body).unwrap_or_default());
    let digest = sha2::Sha256::digest(canonical.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads and checks an amount.
fn money(a: &Value) -> Result<Money, (StatusCode, Value)> {
    let invalid = || error(StatusCode::UNPROCESSABLE_ENTITY, "137", "Invalid amount specified", "validation");
    let a: Amount = serde_json::from_value(a.clone()).map_err(|_| invalid())?;
    let currency = Currency::from_code(&a.currency).ok_or_else(invalid)?;
    if a.value <= 0 {
        return Err(invalid());
    }
    Money::from_minor(a.value, currency).within_ceiling().map_err(|_| invalid())
}

fn check_merchant(s: &Sandbox, body: &Value) -> Result<(), (StatusCode, Value)> {
    match body.get("merchantAccount").and_then(Value::as_str) {
        Some(m) if m == s.inner.options.merchant_account => Ok(()),
        Some(_) => Err(error(StatusCode::FORBIDDEN, "901", "Invalid Merchant Account", "security")),
        None => Err(error(StatusCode::UNPROCESSABLE_ENTITY, "validation", "merchantAccount is required", "validation")),
    }
}

fn parse_body(raw: &str) -> Result<Value, (StatusCode, Value)> {
    match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(error(StatusCode::BAD_REQUEST, "702", "The request body is not a JSON object", "validation")),
    }
}

fn amount_json(m: Money) -> Value {
    json!({ "currency": m.currency().code(), "value": m.minor() })
}

fn engine_error(e: ConnectorError) -> (StatusCode, Value) {
    match e {
        ConnectorError::Declined { code, message } => error(StatusCode::UNPROCESSABLE_ENTITY, &code, message, "validation"),
        ConnectorError::Invalid(m) => error(StatusCode::UNPROCESSABLE_ENTITY, "validation", m, "validation"),
        ConnectorError::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m, "internal"),
        ConnectorError::Timeout => error(StatusCode::GATEWAY_TIMEOUT, "timeout", "The request timed out; send it again with the same Idempotency-Key", "internal"),
    }
}

fn now_text(s: &Sandbox) -> String {
    s.inner.clock.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

fn item(s: &Sandbox, event: &str, psp: &str, original: Option<&str>, reference: &str, amount: Value, success: bool, reason: Option<String>) -> NotificationItem {
    NotificationItem {
        additional_data: Default::default(),
        amount: serde_json::from_value(amount).unwrap_or(Amount { currency: "EUR".into(), value: 0 }),
        event_code: event.to_string(),
        event_date: now_text(s),
        merchant_account_code: s.inner.options.merchant_account.clone(),
        merchant_reference: reference.to_string(),
        original_reference: original.map(str::to_string),
        psp_reference: psp.to_string(),
        reason,
        success: success.to_string(),
        payment_method: None,
    }
}

/// `POST /payments`: authorizes a stored card (`storedPaymentMethodId`), or a card sent in the
/// clear by a PCI-compliant caller (`number`, `expiryMonth`, `expiryYear`, `holderName`), which is
/// stored for the shopper when `storePaymentMethod` is true. Always manual capture.
async fn payments(State(s): State<Sandbox>, headers: HeaderMap, raw: String) -> Response {
    let body = match parse_body(&raw) {
        Ok(b) => b,
        Err((status, e)) => return respond(status, e, None),
    };
    let fp = fingerprint("/payments", &body);
    handle(s, headers, fp, Box::new(move |s, tracking_id, repeat| Box::pin(authorize(s, tracking_id, repeat, body)))).await
}

/// The outcome of the request with `tracking_id`: for a repeat, the engine's record of it if it
/// has one (asked at the engine's `query` fault point, as a caller asking about a lost answer);
/// otherwise what `fresh` does, a decline being an outcome too.
async fn decided(s: &Sandbox, tracking_id: &str, repeat: bool, fresh: impl std::future::Future<Output = Result<Outcome, ConnectorError>>) -> Result<Outcome, ConnectorError> {
    if repeat {
        if let Some(known) = s.inner.engine.query(tracking_id).await? {
            return Ok(known);
        }
    }
    match fresh.await {
        Err(ConnectorError::Declined { code, message }) => Ok(Outcome::Declined { code, message }),
        other => other,
    }
}

/// Adyen's card-on-file flags of a `/payments` request, checked as Adyen documents them: a
/// payment with a stored card names its `recurringProcessingModel`; `shopperInteraction` is one of
/// Adyen's; `ContAuth` is a payment with a stored card. What they say becomes the engine's ask.
fn card_on_file_flags(body: &Value) -> Result<crate::connector::AuthorizeAsk, (StatusCode, Value)> {
    use crate::connector::{AuthorizeAsk, Initiator};
    use crate::domain::tokens::TokenKind;
    let stored = body["paymentMethod"].get("storedPaymentMethodId").is_some();
    let interaction = body.get("shopperInteraction").and_then(Value::as_str);
    let model = body.get("recurringProcessingModel").and_then(Value::as_str);
    let refuse = |m: &str| Err(error(StatusCode::UNPROCESSABLE_ENTITY, "validation", m.to_string(), "validation"));
    if interaction.is_some_and(|i| !["Ecommerce", "ContAuth", "Moto", "POS"].contains(&i)) {
        return refuse("shopperInteraction must be Ecommerce, ContAuth, Moto or POS");
    }
    if model.is_some_and(|m| !["CardOnFile", "Subscription", "UnscheduledCardOnFile"].contains(&m)) {
        return refuse("recurringProcessingModel must be CardOnFile, Subscription or UnscheduledCardOnFile");
    }
    if stored && model.is_none() {
        return refuse("a payment with a stored payment method needs its recurringProcessingModel");
    }
    if interaction == Some("ContAuth") && !stored {
        return refuse("ContAuth is a payment with a stored payment method (storedPaymentMethodId)");
    }
    let merchant = matches!(model, Some("Subscription" | "UnscheduledCardOnFile"));
    Ok(AuthorizeAsk { initiator: if merchant { Initiator::Merchant } else { Initiator::Shopper }, token_kind: if stored { TokenKind::Recurring } else { TokenKind::Nonrecurring } })
}

async fn authorize(s: Sandbox, tracking_id: String, repeat: bool, body: Value) -> (StatusCode, Value, Option<NotificationItem>) {
    let outcome: Result<(StatusCode, Value, Option<NotificationItem>), (StatusCode, Value)> = async {
        check_merchant(&s, &body)?;
        let amount = money(&body["amount"])?;
        let reference = body.get("reference").and_then(Value::as_str).unwrap_or("").to_string();
        if reference.is_empty() || reference.len() > 80 {
            return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "130", "reference is required (at most 80 characters)", "validation"));
        }
        let shopper = body.get("shopperReference").and_then(Value::as_str).map(str::to_string);
        if repeat {
            if let Some(known) = s.inner.engine.query(&tracking_id).await.map_err(engine_error)? {
                return authorization_answer(&s, known, amount, &reference, shopper.as_deref()).await;
            }
        }
        let method = &body["paymentMethod"];
        let ask = card_on_file_flags(&body)?;
        let token = if let Some(id) = method.get("storedPaymentMethodId").and_then(Value::as_str) {
            if let Some(owner) = keys::owner_of(&s, id).await.map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, "storage", e.to_string(), "internal"))? {
                if shopper.as_deref().is_some_and(|sh| sh != owner) {
                    return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "unknown_token", "The stored payment method does not belong to this shopper.", "validation"));
                }
            }
            id.to_string()
        } else if let Some(number) = method.get("number").and_then(Value::as_str) {
            let month = method.get("expiryMonth").and_then(Value::as_str).unwrap_or("");
            let year = method.get("expiryYear").and_then(Value::as_str).unwrap_or("");
            let holder = method.get("holderName").and_then(Value::as_str).unwrap_or("");
            let expiry = format!("{:0>2}/{}", month, year.get(year.len().saturating_sub(2)..).unwrap_or(""));
            let card = CardEntry { number: number.to_string(), expiry, holder: holder.to_string() };
            let t = s.inner.engine.tokenize(card).await.map_err(engine_error)?;
            if body.get("storePaymentMethod").and_then(Value::as_bool) == Some(true) {
                let Some(shopper) = &shopper else {
                    return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "validation", "storePaymentMethod needs a shopperReference", "validation"));
                };
                keys::set_owner(&s, &t.token, shopper).await.map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, "storage", e.to_string(), "internal"))?;
            }
            t.token
        } else {
            return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "validation", "paymentMethod needs a storedPaymentMethodId or card details", "validation"));
        };
        let outcome = decided(&s, &tracking_id, false, async { s.inner.engine.authorize(&tracking_id, &token, amount, ask).await.map(Outcome::Authorized) }).await.map_err(engine_error)?;
        authorization_answer(&s, outcome, amount, &reference, shopper.as_deref()).await
    }
    .await;
    outcome.unwrap_or_else(|(status, body)| (status, body, None))
}

/// The answer to `/payments` for the engine's outcome.
async fn authorization_answer(s: &Sandbox, outcome: Outcome, amount: Money, reference: &str, shopper: Option<&str>) -> Result<(StatusCode, Value, Option<NotificationItem>), (StatusCode, Value)> {
    match outcome {
        Outcome::Authorized(a) => {
            let token = crate::connector::simulator::entity::sim_authorization::Entity::find_by_id(a.reference.clone())
                .one(s.store())
                .await
                .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, "storage", e.to_string(), "internal"))?
                .map(|row| row.token);
            let described = match &token {
                Some(t) => s.inner.engine.describe_token(t).await.map_err(engine_error)?,
                None => None,
            };
            let mut additional = serde_json::Map::new();
            additional.insert("paymentMethod".into(), json!(a.payment_method_variant));
            additional.insert("cardSummary".into(), json!(a.last_four));
            additional.insert("authorisationType".into(), json!("PreAuth"));
            if let Some(d) = &described {
                additional.insert("cardHolderName".into(), json!(d.holder));
                let (m, y) = d.expiry.split_once('/').unwrap_or(("", ""));
                additional.insert("expiryDate".into(), json!(format!("{}/20{y}", m.trim_start_matches('0'))));
            }
            if let (Some(sh), Some(t)) = (shopper, &token) {
                if keys::owner_of(s, t).await.ok().flatten().as_deref() == Some(sh) {
                    additional.insert("recurring.recurringDetailReference".into(), json!(t));
                    additional.insert("recurring.shopperReference".into(), json!(sh));
                    additional.insert("tokenization.storedPaymentMethodId".into(), json!(t));
                }
            }
            let response = json!({
                "pspReference": a.reference,
                "resultCode": "Authorised",
                "amount": amount_json(amount),
                "merchantReference": reference,
                "paymentMethod": { "brand": a.payment_method_variant, "type": "scheme" },
                "additionalData": additional,
            });
            let n = item(s, "AUTHORISATION", &a.reference, None, reference, amount_json(amount), true, None);
            Ok((StatusCode::OK, response, Some(n)))
        }
        Outcome::Declined { code, message } if !code.starts_with("unknown_") => {
            let psp = format!("refused_{}", uuid::Uuid::new_v4().simple());
            let reason_code = match code.as_str() {
                "expired_card" => "6",
                "insufficient_funds" => "12",
                _ => "2",
            };
            let response = json!({
                "pspReference": psp,
                "resultCode": "Refused",
                "refusalReason": message,
                "refusalReasonCode": reason_code,
                "amount": amount_json(amount),
                "merchantReference": reference,
            });
            let n = item(s, "AUTHORISATION", &psp, None, reference, amount_json(amount), false, Some(message));
            Ok((StatusCode::OK, response, Some(n)))
        }
        Outcome::Declined { code, message } => Err(engine_error(ConnectorError::Declined { code, message })),
        other => Err(error(StatusCode::UNPROCESSABLE_ENTITY, "validation", format!("the Idempotency-Key was used for another kind of request ({other:?})"), "validation")),
    }
}

/// The pspReference of a request the engine keeps no row for (a cancel, an amount update): made
/// from its tracking id, so a repeat of the request answers the same.
fn derived_reference(prefix: &str, tracking_id: &str) -> String {
    let tail: String = tracking_id.chars().filter(char::is_ascii_alphanumeric).take(32).collect();
    format!("{prefix}_{tail}")
}

/// The modifications, by kind.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Modification {
    Capture,
    Refund,
    Cancel,
    AmountUpdate,
}

impl Modification {
    fn path(self) -> &'static str {
        match self {
            Modification::Capture => "captures",
            Modification::Refund => "refunds",
            Modification::Cancel => "cancels",
            Modification::AmountUpdate => "amountUpdates",
        }
    }
    fn event(self) -> &'static str {
        match self {
            Modification::Capture => "CAPTURE",
            Modification::Refund => "REFUND",
            Modification::Cancel => "CANCELLATION",
            Modification::AmountUpdate => "AUTHORISATION_ADJUSTMENT",
        }
    }
}

async fn modification(s: Sandbox, headers: HeaderMap, psp: String, raw: String, kind: Modification) -> Response {
    let body = match parse_body(&raw) {
        Ok(b) => b,
        Err((status, e)) => return respond(status, e, None),
    };
    let fp = fingerprint(&format!("/payments/{psp}/{}", kind.path()), &body);
    handle(s, headers, fp, Box::new(move |s, tracking_id, repeat| Box::pin(modify(s, tracking_id, repeat, psp, body, kind)))).await
}

async fn modify(s: Sandbox, tracking_id: String, repeat: bool, psp: String, body: Value, kind: Modification) -> (StatusCode, Value, Option<NotificationItem>) {
    let outcome: Result<(StatusCode, Value, Option<NotificationItem>), (StatusCode, Value)> = async {
        check_merchant(&s, &body)?;
        let reference = body.get("reference").and_then(Value::as_str).map(str::to_string);
        if reference.as_ref().is_some_and(|r| r.len() > 80) {
            return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "130", "reference is at most 80 characters", "validation"));
        }
        let amount = if kind == Modification::Cancel { None } else { Some(money(&body["amount"])?) };
        let engine = &s.inner.engine;
        let fresh = async {
            match (kind, amount) {
                (Modification::Capture, Some(a)) => engine.capture(&tracking_id, &psp, a, false).await.map(Outcome::Captured),
                (Modification::Refund, Some(a)) => {
                    let named = body.get("capturePspReference").and_then(Value::as_str);
                    let capture = keys::capture_of(&s, &psp, named, a.minor()).await.map_err(|e| ConnectorError::Unavailable(format!("sandbox storage: {e}")))?;
                    let Some(capture) = capture else {
                        return Err(ConnectorError::declined("amount_exceeds_capture", "No capture of this payment has that much left to refund."));
                    };
                    engine.refund(&tracking_id, &capture, a).await.map(Outcome::Refunded)
                }
                (Modification::Cancel, _) => engine.void(&tracking_id, &psp).await.map(|()| Outcome::Voided { reference: psp.clone() }),
                (Modification::AmountUpdate, Some(a)) => engine.adjust_authorization(&tracking_id, &psp, a).await.map(Outcome::Adjusted),
                _ => Err(ConnectorError::Invalid("an amount is required".into())),
            }
        };
        let own_reference = match decided(&s, &tracking_id, repeat, fresh).await.map_err(engine_error)? {
            Outcome::Captured(c) if kind == Modification::Capture => c.reference,
            Outcome::Refunded(r) if kind == Modification::Refund => r.reference,
            Outcome::Voided { .. } if kind == Modification::Cancel => derived_reference("cancel", &tracking_id),
            Outcome::Adjusted(_) if kind == Modification::AmountUpdate => derived_reference("adjust", &tracking_id),
            Outcome::Declined { code, message } => return Err(engine_error(ConnectorError::Declined { code, message })),
            other => return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "validation", format!("the Idempotency-Key was used for another kind of request ({other:?})"), "validation")),
        };
        let mut response = json!({
            "merchantAccount": s.inner.options.merchant_account,
            "paymentPspReference": psp,
            "pspReference": own_reference,
            "status": "received",
        });
        if let Some(r) = &reference {
            response["reference"] = json!(r);
        }
        if let Some(a) = amount {
            response["amount"] = amount_json(a);
        }
        let n_amount = amount.map(amount_json).unwrap_or_else(|| json!({"currency": "EUR", "value": 0}));
        // A `fails_later` fault: answered `received` all the same, then undone and reported
        // failed by its notification, as Adyen reports CAPTURE_FAILED or REFUND_FAILED.
        let failed = if repeat { false } else { fails_later(&s, kind, &own_reference).await? };
        let n = match (failed, kind) {
            (true, Modification::Capture) => item(&s, "CAPTURE_FAILED", &own_reference, Some(&psp), reference.as_deref().unwrap_or(""), n_amount, true, Some(CAPTURE_FAILED_REASON.into())),
            (true, _) => item(&s, "REFUND_FAILED", &own_reference, Some(&psp), reference.as_deref().unwrap_or(""), n_amount, true, Some(REFUND_FAILED_REASON.into())),
            (false, _) => item(&s, kind.event(), &own_reference, Some(&psp), reference.as_deref().unwrap_or(""), n_amount, true, None),
        };
        Ok((StatusCode::CREATED, response, Some(n)))
    }
    .await;
    outcome.unwrap_or_else(|(status, body)| (status, body, None))
}

/// The reason a capture failed by the `fails_later` fault gives.
pub const CAPTURE_FAILED_REASON: &str = "The card scheme refused the capture (sandbox fault: received, then failed)";
/// The reason a refund failed by the `fails_later` fault gives.
pub const REFUND_FAILED_REASON: &str = "The card scheme refused the refund (sandbox fault: received, then failed)";

/// Whether the capture or refund just made (`own_reference`) is reported failed: a
/// `fails_later` fault fired and the engine undid it.
async fn fails_later(s: &Sandbox, kind: Modification, own_reference: &str) -> Result<bool, (StatusCode, Value)> {
    let storage = |e: sea_orm::DbErr| error(StatusCode::SERVICE_UNAVAILABLE, "storage", format!("sandbox storage: {e}"), "internal");
    let point = match kind {
        Modification::Capture => "capture",
        Modification::Refund => "refund",
        Modification::Cancel | Modification::AmountUpdate => return Ok(false),
    };
    if !crate::connector::faults::fire_later(&s.inner.store, point).await.map_err(storage)? {
        return Ok(false);
    }
    let engine = &s.inner.engine;
    match kind {
        Modification::Capture => engine.fail_capture(own_reference).await.map_err(storage),
        _ => engine.fail_refund(own_reference).await.map_err(storage),
    }
}

async fn captures(State(s): State<Sandbox>, headers: HeaderMap, Path(psp): Path<String>, raw: String) -> Response {
    modification(s, headers, psp, raw, Modification::Capture).await
}
async fn refunds(State(s): State<Sandbox>, headers: HeaderMap, Path(psp): Path<String>, raw: String) -> Response {
    modification(s, headers, psp, raw, Modification::Refund).await
}
async fn cancels(State(s): State<Sandbox>, headers: HeaderMap, Path(psp): Path<String>, raw: String) -> Response {
    modification(s, headers, psp, raw, Modification::Cancel).await
}
async fn amount_updates(State(s): State<Sandbox>, headers: HeaderMap, Path(psp): Path<String>, raw: String) -> Response {
    modification(s, headers, psp, raw, Modification::AmountUpdate).await
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredQuery {
    merchant_account: Option<String>,
    shopper_reference: Option<String>,
}

/// `GET /storedPaymentMethods`: the cards stored for a shopper.
async fn stored_payment_methods(State(s): State<Sandbox>, headers: HeaderMap, Query(q): Query<StoredQuery>) -> Response {
    if let Err((status, body)) = authenticate(&s, &headers) {
        return respond(status, body, None);
    }
    if q.merchant_account.as_deref() != Some(s.inner.options.merchant_account.as_str()) {
        let (status, body) = error(StatusCode::FORBIDDEN, "901", "Invalid Merchant Account", "security");
        return respond(status, body, None);
    }
    let Some(shopper) = q.shopper_reference.filter(|sh| !sh.is_empty()) else {
        let (status, body) = error(StatusCode::UNPROCESSABLE_ENTITY, "validation", "shopperReference is required", "validation");
        return respond(status, body, None);
    };
    match keys::stored_for(&s, &shopper).await {
        Ok(methods) => {
            let list = StoredPaymentMethods { merchant_account: q.merchant_account, shopper_reference: Some(shopper), stored_payment_methods: methods };
            respond(StatusCode::OK, serde_json::to_value(list).unwrap_or(Value::Null), None)
        }
        Err(e) => {
            let (status, body) = error(StatusCode::SERVICE_UNAVAILABLE, "storage", e.to_string(), "internal");
            respond(status, body, None)
        }
    }
}

/// Serves the sandbox on `listener` until the process ends, delivering notifications alongside.
pub async fn serve(sandbox: Sandbox, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    sandbox.spawn_delivery();
    axum::serve(listener, sandbox.router()).await
}

/// The largest request body the sandbox reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How often the delivery loop looks for notifications due.
pub const DELIVERY_POLL: Duration = Duration::from_millis(200);
