//! The `adyen` connector: Paystage's side of a processor that speaks Adyen's Checkout API over
//! HTTP (the real Adyen, or `paystage sandbox`). Card details never pass through it: it
//! authorizes stored payment methods the processor's hosted page created (R-TOK-1).
//!
//! Every money-moving request carries the tracking id (R-CAP-5) as its `Idempotency-Key` header
//! and its `reference`, and is written to `processor_sends` before it goes on the wire. Adyen has
//! no "look up a request by reference": [`Connector::query`] resolves an unknown outcome by sending
//! that very request again with the same key while the processor still remembers the key
//! ([`AdyenSettings::key_window`]; Adyen documents that keys are kept for a minimum of 31 days,
//! docs.adyen.com/development-resources/api-idempotency), which answers the original result and
//! moves no money twice. Past the window a repeat could charge again: it is refused, and the
//! request stays unknown for a person to review.
//!
//! Modifications (captures, refunds, cancels, amount updates) are asynchronous at Adyen: their
//! answer is `received`, and the outcome arrives later as a notification. A capture received is
//! recorded as captured, as the Dynamics 365 connector for Adyen does; a later CAPTURE_FAILED
//! arrives through the webhook endpoint.
pub mod signature;
pub mod wire;

use super::{card_type, Authorized, CardEntry, CardToken, Captured, Connector, ConnectorError, ConnectorResult, Outcome, PaymentReference, Refunded};
use crate::clock::SharedClock;
use crate::domain::money::{Currency, Money};
use crate::domain::order::Command;
use crate::entity::processor_send as ps;
use sea_orm::sea_query::ExprTrait;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use serde::de::DeserializeOwned;
use std::time::Duration;
use wire::*;

/// How long Adyen keeps an idempotency key, at least (docs.adyen.com/development-resources/api-idempotency).
pub const ADYEN_KEY_WINDOW_DAYS: i64 = 31;

/// One `adyen` connector's settings (the connector's row and its secrets).
#[derive(Clone)]
pub struct AdyenSettings {
    /// The connector's code, recorded with what it sends.
    pub code: String,
    /// The Checkout API's base URL, up to and including the version:
    /// `https://checkout-test.adyen.com/v72`, or the sandbox's `http://127.0.0.1:P/checkout/v72`.
    pub endpoint: String,
    pub api_key: String,
    pub merchant_account: String,
    /// The merchant account's allowMultiplePartialCapture.
    pub allow_multiple_partial_capture: bool,
    /// Non incremental capture payment methods (seed 003): variants that never take a second capture.
    pub non_incremental_variants: Vec<String>,
    /// How long after its first use the processor still answers a repeated idempotency key.
    pub key_window: chrono::Duration,
    /// How long one request may take before its outcome counts as unknown.
    pub timeout: Duration,
    /// The processor's hosted card page (the sandbox's `/hpp/cards`); none: cards cannot be taken
    /// through this connector yet (Adyen's own Drop-in is not built).
    pub card_page: Option<String>,
}

impl std::fmt::Debug for AdyenSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdyenSettings")
            .field("code", &self.code)
            .field("endpoint", &self.endpoint)
            .field("api_key", &"<withheld>")
            .field("merchant_account", &self.merchant_account)
            .field("allow_multiple_partial_capture", &self.allow_multiple_partial_capture)
            .field("non_incremental_variants", &self.non_incremental_variants)
            .field("key_window", &self.key_window)
            .field("timeout", &self.timeout)
            .field("card_page", &self.card_page)
            .finish()
    }
}

#[derive(Debug)]
pub struct AdyenConnector {
    settings: AdyenSettings,
    http: reqwest::Client,
    /// Paystage's database, where `processor_sends` is kept.
    db: DatabaseConnection,
    clock: SharedClock,
}

/// A processor reference as it may appear in a URL path.
fn path_reference(r: &str) -> ConnectorResult<&str> {
    if r.is_empty() || r.len() > 128 || !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(ConnectorError::Invalid(format!("{r:?} is not a processor reference")));
    }
    Ok(r)
}

/// Paystage's token for a card stored at the processor: the shopper it is stored for and its
/// stored payment method id (Adyen keys a stored card by both), as `shopper:id`.
pub fn stored_token(shopper_reference: &str, stored_payment_method_id: &str) -> String {
    format!("{shopper_reference}:{stored_payment_method_id}")
}

/// The shopper and stored payment method id of a token made by [`stored_token`]; a token without
/// a shopper is a stored payment method id alone.
pub fn split_token(token: &str) -> (Option<&str>, &str) {
    match token.split_once(':') {
        Some((shopper, id)) if !shopper.is_empty() && !id.is_empty() => (Some(shopper), id),
        _ => (None, token),
    }
}

/// Paystage's decline code for Adyen's refusal reason code (the sandbox gives the same codes).
pub fn decline_code(refusal_reason_code: &str) -> &'static str {
    match refusal_reason_code {
        "6" => "expired_card",
        "12" => "insufficient_funds",
        "24" => "adjustment_refused",
        _ => "declined",
    }
}

impl AdyenConnector {
    pub fn new(settings: AdyenSettings, db: DatabaseConnection, clock: SharedClock) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("paystage/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        if !(settings.endpoint.starts_with("https://") || settings.endpoint.starts_with("http://")) {
            return Err("the endpoint must be an http(s) URL".into());
        }
        Ok(AdyenConnector { settings, http, db, clock })
    }

    pub fn settings(&self) -> &AdyenSettings {
        &self.settings
    }

    /// The Payment connectors page's "Test connection": one harmless request (the stored cards of
    /// a shopper no card is stored for), which shows whether the endpoint answers and takes the
    /// API key and merchant account. Moves no money and stores nothing at the processor. The
    /// answer, in words for an administrator: Ok when the processor accepted the request.
    pub async fn check(&self) -> Result<String, String> {
        let url = format!("{}/storedPaymentMethods", self.settings.endpoint.trim_end_matches('/'));
        let started = std::time::Instant::now();
        let sent = self
            .http
            .get(&url)
            .query(&[("merchantAccount", self.settings.merchant_account.as_str()), ("shopperReference", "paystage-connection-test")])
            .header(API_KEY_HEADER, &self.settings.api_key)
            .send()
            .await;
        let ms = started.elapsed().as_millis();
        match sent {
            Ok(r) if r.status().is_success() => Ok(format!("{} answered HTTP {} in {ms} ms: it accepts this API key and merchant account {}.", self.settings.endpoint, r.status().as_u16(), self.settings.merchant_account)),
            Ok(r) if matches!(r.status().as_u16(), 401 | 403) => Err(format!("{} answered HTTP {} in {ms} ms: it refuses this API key or merchant account.", self.settings.endpoint, r.status().as_u16())),
            Ok(r) => Err(format!("{} answered HTTP {} in {ms} ms: check the endpoint (the Checkout API's address up to its version, like https://checkout-test.adyen.com/v72).", self.settings.endpoint, r.status().as_u16())),
            Err(e) if e.is_timeout() => Err(format!("{} did not answer within {} ms.", self.settings.endpoint, self.settings.timeout.as_millis())),
            Err(e) => Err(format!("{} cannot be reached: {e}.", self.settings.endpoint)),
        }
    }

    fn amount(m: Money) -> Amount {
        Amount { currency: m.currency().code().to_string(), value: m.minor() }
    }

    /// Records the request under its key before it is sent (or finds it recorded): the same key
    /// for another request is refused, and a repeat past the processor's key window too.
    async fn record(&self, key: &str, path: &str, body: &str, final_capture: bool) -> ConnectorResult<()> {
        if key.is_empty() || key.len() > IDEMPOTENCY_KEY_MAX {
            return Err(ConnectorError::Invalid(format!("a tracking id of 1 to {IDEMPOTENCY_KEY_MAX} characters is required (Enable Request Protection)")));
        }
        let now = self.clock.now();
        let unavailable = |e: sea_orm::DbErr| ConnectorError::Unavailable(format!("cannot record the request before sending it: {e}"));
        // First use: the row is written. Used before (or at this moment, by a concurrent sender
        // of the same request): the existing row decides.
        let row = ps::ActiveModel {
            idempotency_key: Set(key.to_string()),
            connector: Set(self.settings.code.clone()),
            path: Set(path.to_string()),
            body: Set(body.to_string()),
            first_sent_at: Set(now),
            attempts: Set(1),
            final_capture: Set(final_capture),
            psp_reference: Set(None),
            payment_psp_reference: Set(None),
        };
        let inserted = ps::Entity::insert(row)
            .on_conflict(sea_orm::sea_query::OnConflict::column(ps::Column::IdempotencyKey).do_nothing().to_owned())
            .exec_without_returning(&self.db)
            .await
            .map_err(unavailable)?;
        if inserted == 1 {
            return Ok(());
        }
        let sent = ps::Entity::find_by_id(key.to_string()).one(&self.db).await.map_err(unavailable)?.ok_or_else(|| ConnectorError::Unavailable(format!("tracking id {key} vanished")))?;
        if sent.path != path || sent.body != body {
            return Err(ConnectorError::Invalid(format!("tracking id {key} was used for another request already")));
        }
        if now - sent.first_sent_at > self.settings.key_window {
            return Err(ConnectorError::Unavailable(format!(
                "tracking id {key} was first sent {}; the processor keeps idempotency keys for {} days, so sending it again could move money twice. It needs a person to review it",
                sent.first_sent_at.format("%Y-%m-%d %H:%M UTC"),
                self.settings.key_window.num_days()
            )));
        }
        ps::Entity::update_many()
            .col_expr(ps::Column::Attempts, sea_orm::sea_query::Expr::col(ps::Column::Attempts).add(1))
            .filter(ps::Column::IdempotencyKey.eq(key))
            .exec(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Notes the references the processor gave a request (a refund later finds its payment here).
    async fn remember(&self, key: &str, psp_reference: &str, payment_psp_reference: Option<&str>) {
        let started = std::time::Instant::now();
        let update = ps::Entity::update_many()
            .col_expr(ps::Column::PspReference, sea_orm::sea_query::Expr::value(psp_reference.to_string()))
            .col_expr(ps::Column::PaymentPspReference, sea_orm::sea_query::Expr::value(payment_psp_reference.map(str::to_string)))
            .filter(ps::Column::IdempotencyKey.eq(key))
            .exec(&self.db)
            .await;
        crate::observe::phase(|| "adyen remember".into(), started.elapsed());
        if let Err(e) = update {
            tracing::warn!(key, error = %e, "could not note the processor's reference for a request");
        }
    }

    /// Sends a recorded request (POST, JSON) with its idempotency key. Nothing reached the
    /// processor, or it said nothing was processed (`Transient-Error: true`): Unavailable. No answer in time, or a 5xx: Timeout (unknown; ask with `query`).
    /// A 4xx refusal: Declined with Adyen's error code.
    async fn send<R: DeserializeOwned>(&self, key: &str, path: &str, body: &str) -> ConnectorResult<R> {
        let url = format!("{}{}", self.settings.endpoint.trim_end_matches('/'), path);
        let sent = self
            .http
            .post(&url)
            .header(API_KEY_HEADER, &self.settings.api_key)
            .header(IDEMPOTENCY_HEADER, key)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Err(ConnectorError::Unavailable(format!("cannot reach the processor at {}: {e}", self.settings.endpoint))),
            Err(e) if e.is_builder() => return Err(ConnectorError::Invalid(format!("cannot build the request: {e}"))),
            // Sent, or possibly sent: the outcome is unknown.
            Err(_) => return Err(ConnectorError::Timeout),
        };
        let status = response.status();
        let transient = response.headers().get(TRANSIENT_ERROR_HEADER).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let text = match response.text().await {
            Ok(t) => t,
            Err(_) => return Err(ConnectorError::Timeout),
        };
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| ConnectorError::Unavailable(format!("the processor's answer could not be read ({e})")));
        }
        let error: Option<ServiceError> = serde_json::from_str(&text).ok();
        match status.as_u16() {
            401 | 403 => Err(ConnectorError::Unavailable("the processor refused the connector's API key".into())),
            // Adyen's Transient-Error: nothing was processed.
            500..=599 if transient => Err(ConnectorError::Unavailable(error.map(|e| e.message).unwrap_or_else(|| format!("HTTP {}", status.as_u16())))),
            500..=599 => Err(ConnectorError::Timeout),
            code => {
                let (error_code, message) = error.map(|e| (e.error_code, e.message)).unwrap_or_else(|| (code.to_string(), format!("HTTP {code}")));
                Err(ConnectorError::Declined { code: error_code, message })
            }
        }
    }

    async fn post<R: DeserializeOwned>(&self, key: &str, path: &str, body: &impl serde::Serialize, final_capture: bool) -> ConnectorResult<R> {
        let body = serde_json::to_string(body).map_err(|e| ConnectorError::Invalid(e.to_string()))?;
        crate::observe::timed("adyen record", self.record(key, path, &body, final_capture)).await?;
        crate::observe::timed("adyen HTTP", self.send(key, path, &body)).await
    }

    fn authorized_from(&self, r: PaymentResponse, amount: Money) -> ConnectorResult<Authorized> {
        let reference = r.psp_reference.clone().ok_or_else(|| ConnectorError::Unavailable("the processor's answer has no pspReference".into()))?;
        let variant = r
            .additional_data
            .get("paymentMethod")
            .cloned()
            .or_else(|| r.payment_method.as_ref().and_then(|m| m.brand.clone()))
            .unwrap_or_else(|| "card".into());
        let supports = self.settings.allow_multiple_partial_capture && !self.settings.non_incremental_variants.iter().any(|v| v.eq_ignore_ascii_case(&variant));
        Ok(Authorized {
            reference,
            amount,
            supports_multiple_captures: supports,
            card_type: card_type(&variant).to_string(),
            last_four: r.additional_data.get("cardSummary").cloned().unwrap_or_default(),
            payment_method_variant: variant,
        })
    }

    fn payment_outcome(&self, r: PaymentResponse, amount: Money) -> ConnectorResult<Outcome> {
        match r.result_code.as_deref() {
            Some("Authorised") => self.authorized_from(r, amount).map(Outcome::Authorized),
            Some("Refused" | "Error" | "Cancelled") => Ok(Outcome::Declined {
                code: decline_code(r.refusal_reason_code.as_deref().unwrap_or("")).to_string(),
                message: r.refusal_reason.unwrap_or_else(|| "Refused".into()),
            }),
            other => Err(ConnectorError::Unavailable(format!("the processor answered {other:?}, which a card-on-file authorization does not expect"))),
        }
    }

    /// Sends the request recorded under `key` again and reads the answer for `command`.
    async fn repeat(&self, sent: ps::Model) -> ConnectorResult<Outcome> {
        let command = if sent.path == "/payments" {
            Command::Authorize
        } else if sent.path.ends_with("/captures") {
            Command::Capture
        } else if sent.path.ends_with("/refunds") {
            Command::Refund
        } else if sent.path.ends_with("/cancels") {
            Command::Void
        } else if sent.path.ends_with("/amountUpdates") {
            Command::Adjust
        } else {
            return Err(ConnectorError::Invalid(format!("unknown request path {}", sent.path)));
        };
        let key = sent.idempotency_key.clone();
        self.record(&key, &sent.path, &sent.body, sent.final_capture).await?;
        let asked_amount = |body: &str| -> ConnectorResult<Money> {
            let v: serde_json::Value = serde_json::from_str(body).map_err(|e| ConnectorError::Invalid(e.to_string()))?;
            let a: Amount = serde_json::from_value(v["amount"].clone()).map_err(|e| ConnectorError::Invalid(e.to_string()))?;
            let currency = Currency::from_code(&a.currency).ok_or_else(|| ConnectorError::Invalid(format!("unknown currency {}", a.currency)))?;
            Ok(Money::from_minor(a.value, currency))
        };
        let result = match command {
            Command::Authorize => {
                let amount = asked_amount(&sent.body)?;
                let r: PaymentResponse = self.send(&key, &sent.path, &sent.body).await?;
                self.payment_outcome(r, amount)
            }
            _ => {
                let r: ConnectorResult<ModificationResponse> = self.send(&key, &sent.path, &sent.body).await;
                match r {
                    Err(ConnectorError::Declined { code, message }) => Ok(Outcome::Declined { code, message }),
                    Err(e) => Err(e),
                    Ok(m) => {
                        self.remember(&key, &m.psp_reference, Some(&m.payment_psp_reference)).await;
                        match command {
                            Command::Capture => {
                                let amount = asked_amount(&sent.body)?;
                                Ok(Outcome::Captured(Captured { reference: m.psp_reference, amount, authorization_closed: sent.final_capture || !self.settings.allow_multiple_partial_capture }))
                            }
                            Command::Refund => Ok(Outcome::Refunded(Refunded { reference: m.psp_reference, amount: asked_amount(&sent.body)? })),
                            Command::Void => Ok(Outcome::Voided { reference: m.payment_psp_reference }),
                            _ => {
                                let amount = asked_amount(&sent.body)?;
                                Ok(Outcome::Adjusted(Authorized {
                                    reference: m.payment_psp_reference,
                                    amount,
                                    supports_multiple_captures: self.settings.allow_multiple_partial_capture,
                                    payment_method_variant: String::new(),
                                    card_type: String::new(),
                                    last_four: String::new(),
                                }))
                            }
                        }
                    }
                }
            }
        };
        if let Ok(Outcome::Authorized(a)) = &result {
            self.remember(&key, &a.reference, None).await;
        }
        result
    }
}

/// Adyen's `shopperInteraction` and `recurringProcessingModel` for an authorization of a stored
/// card (R-TOK-1; Adyen's "Make token payments"): the card is stored at the processor before
/// Paystage authorizes it, so every authorization is a payment with a token (`ContAuth`). The
/// shopper present pays with the card on file (`CardOnFile`); the merchant alone
/// (`UnscheduledCardOnFile`) only with a recurring token. A merchant-initiated authorization on any
/// other token is refused before it is sent (R-AUT-3: a nonrecurring token is never authorized
/// again).
pub fn card_on_file(ask: super::AuthorizeAsk) -> ConnectorResult<(&'static str, &'static str)> {
    match ask.initiator {
        super::Initiator::Shopper => Ok(("ContAuth", "CardOnFile")),
        super::Initiator::Merchant if ask.token_kind == crate::domain::tokens::TokenKind::Recurring => Ok(("ContAuth", "UnscheduledCardOnFile")),
        super::Initiator::Merchant => Err(ConnectorError::Invalid(format!(
            "a {} token is not authorized again without the shopper (R-AUT-3); take a new payment",
            ask.token_kind.code()
        ))),
    }
}

#[async_trait::async_trait]
impl Connector for AdyenConnector {
    async fn payment_reference(&self, command: Command, amount: Money) -> ConnectorResult<PaymentReference> {
        Ok(PaymentReference { tracking_id: uuid::Uuid::new_v4().to_string(), command, amount, initiated_at: self.clock.now() })
    }

    async fn tokenize(&self, _card: CardEntry) -> ConnectorResult<CardToken> {
        Err(ConnectorError::Invalid("card details are entered on the processor's hosted page; they never pass through Paystage".into()))
    }

    /// `GET /storedPaymentMethods` for the token's shopper: the card's brand, last four, holder
    /// and expiry as the processor holds them.
    async fn describe_token(&self, token: &str) -> ConnectorResult<Option<CardToken>> {
        let (Some(shopper), id) = split_token(token) else {
            return Err(ConnectorError::Invalid("a stored card is described by its shopper reference and id".into()));
        };
        if token.len() > 300 {
            return Ok(None);
        }
        let url = format!("{}/storedPaymentMethods", self.settings.endpoint.trim_end_matches('/'));
        let sent = self
            .http
            .get(&url)
            .query(&[("merchantAccount", self.settings.merchant_account.as_str()), ("shopperReference", shopper)])
            .header(API_KEY_HEADER, &self.settings.api_key)
            .send()
            .await;
        let response = match sent {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => return Err(ConnectorError::Unavailable(format!("the processor answered HTTP {} to a stored card lookup", r.status().as_u16()))),
            Err(e) if e.is_connect() => return Err(ConnectorError::Unavailable(format!("cannot reach the processor at {}: {e}", self.settings.endpoint))),
            Err(_) => return Err(ConnectorError::Timeout),
        };
        let list: StoredPaymentMethods = response.json().await.map_err(|e| ConnectorError::Unavailable(format!("the processor's answer could not be read ({e})")))?;
        Ok(list.stored_payment_methods.into_iter().find(|m| m.id == id).map(|m| CardToken {
            token: token.to_string(),
            card_type: card_type(&m.brand).to_string(),
            payment_method_variant: m.brand,
            last_four: m.last_four,
            holder: m.holder_name,
            expiry: format!("{:0>2}/{}", m.expiry_month, m.expiry_year.get(m.expiry_year.len().saturating_sub(2)..).unwrap_or("")),
        }))
    }

    fn card_page(&self, shopper_reference: &str, return_url: &str) -> Option<String> {
        let mut url = reqwest::Url::parse(self.settings.card_page.as_deref()?).ok()?;
        url.query_pairs_mut()
            .append_pair("merchantAccount", &self.settings.merchant_account)
            .append_pair("shopperReference", shopper_reference)
            .append_pair("returnUrl", return_url);
        Some(url.to_string())
    }

    async fn authorize(&self, tracking_id: &str, token: &str, amount: Money, ask: super::AuthorizeAsk) -> ConnectorResult<Authorized> {
        if amount.minor() <= 0 {
            return Err(ConnectorError::Invalid("the amount to authorize must be above zero".into()));
        }
        let (interaction, model) = card_on_file(ask)?;
        let request = PaymentRequest {
            amount: Self::amount(amount),
            merchant_account: self.settings.merchant_account.clone(),
            reference: tracking_id.to_string(),
            payment_method: PaymentMethod { kind: "scheme".into(), stored_payment_method_id: Some(split_token(token).1.to_string()) },
            shopper_reference: split_token(token).0.map(str::to_string),
            recurring_processing_model: Some(model.into()),
            shopper_interaction: Some(interaction.into()),
            store_payment_method: None,
            additional_data: Some([("manualCapture".to_string(), "true".to_string()), ("authorisationType".to_string(), "PreAuth".to_string())].into()),
        };
        let r: PaymentResponse = self.post(tracking_id, "/payments", &request, false).await?;
        match self.payment_outcome(r, amount)? {
            Outcome::Authorized(a) => {
                self.remember(tracking_id, &a.reference, None).await;
                Ok(a)
            }
            Outcome::Declined { code, message } => Err(ConnectorError::Declined { code, message }),
            other => Err(ConnectorError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    async fn capture(&self, tracking_id: &str, authorization: &str, amount: Money, final_capture: bool) -> ConnectorResult<Captured> {
        if amount.minor() <= 0 {
            return Err(ConnectorError::Invalid("the amount to capture must be above zero".into()));
        }
        let path = format!("/payments/{}/captures", path_reference(authorization)?);
        let body = ModificationRequest { amount: Self::amount(amount), merchant_account: self.settings.merchant_account.clone(), reference: Some(tracking_id.to_string()) };
        let m: ModificationResponse = self.post(tracking_id, &path, &body, final_capture).await?;
        self.remember(tracking_id, &m.psp_reference, Some(&m.payment_psp_reference)).await;
        Ok(Captured { reference: m.psp_reference, amount, authorization_closed: final_capture || !self.settings.allow_multiple_partial_capture })
    }

    async fn refund(&self, tracking_id: &str, capture: &str, amount: Money) -> ConnectorResult<Refunded> {
        if amount.minor() <= 0 {
            return Err(ConnectorError::Invalid("the amount to refund must be above zero".into()));
        }
        let capture = path_reference(capture)?;
        let payment = ps::Entity::find()
            .filter(ps::Column::PspReference.eq(capture))
            .one(&self.db)
            .await
            .map_err(|e| ConnectorError::Unavailable(e.to_string()))?
            .and_then(|s| s.payment_psp_reference)
            .ok_or_else(|| ConnectorError::Declined { code: "unknown_capture".into(), message: format!("capture {capture} was not made through this connector") })?;
        let path = format!("/payments/{}/refunds", path_reference(&payment)?);
        let mut body = serde_json::to_value(ModificationRequest { amount: Self::amount(amount), merchant_account: self.settings.merchant_account.clone(), reference: Some(tracking_id.to_string()) })
            .map_err(|e| ConnectorError::Invalid(e.to_string()))?;
        body["capturePspReference"] = serde_json::Value::String(capture.to_string());
        let m: ModificationResponse = self.post(tracking_id, &path, &body, false).await?;
        self.remember(tracking_id, &m.psp_reference, Some(&m.payment_psp_reference)).await;
        Ok(Refunded { reference: m.psp_reference, amount })
    }

    async fn void(&self, tracking_id: &str, authorization: &str) -> ConnectorResult<()> {
        let path = format!("/payments/{}/cancels", path_reference(authorization)?);
        let body = CancelRequest { merchant_account: self.settings.merchant_account.clone(), reference: Some(tracking_id.to_string()) };
        let m: ModificationResponse = self.post(tracking_id, &path, &body, false).await?;
        self.remember(tracking_id, &m.psp_reference, Some(&m.payment_psp_reference)).await;
        Ok(())
    }

    async fn adjust_authorization(&self, tracking_id: &str, authorization: &str, new_amount: Money) -> ConnectorResult<Authorized> {
        let path = format!("/payments/{}/amountUpdates", path_reference(authorization)?);
        let body = ModificationRequest { amount: Self::amount(new_amount), merchant_account: self.settings.merchant_account.clone(), reference: Some(tracking_id.to_string()) };
        let m: ModificationResponse = self.post(tracking_id, &path, &body, false).await?;
        self.remember(tracking_id, &m.psp_reference, Some(&m.payment_psp_reference)).await;
        Ok(Authorized {
            reference: m.payment_psp_reference,
            amount: new_amount,
            supports_multiple_captures: self.settings.allow_multiple_partial_capture,
            payment_method_variant: String::new(),
            card_type: String::new(),
            last_four: String::new(),
        })
    }

    /// Resolves an unknown outcome by repeating the recorded request with its idempotency key
    /// (within the key window); None when nothing was ever recorded for the tracking id, which
    /// means it was never sent.
    async fn query(&self, tracking_id: &str) -> ConnectorResult<Option<Outcome>> {
        let sent = ps::Entity::find_by_id(tracking_id.to_string()).one(&self.db).await.map_err(|e| ConnectorError::Unavailable(e.to_string()))?;
        match sent {
            None => Ok(None),
            Some(sent) => self.repeat(sent).await.map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_references_go_into_a_url_path() {
        assert!(path_reference("auth_0f3a").is_ok());
        for hostile in ["", "../admin", "a/b", "a?b", "a#b", "a b", "%2e%2e", "é", &"a".repeat(129)] {
            assert!(path_reference(hostile).is_err(), "{hostile:?}");
        }
    }

    #[test]
    fn settings_never_show_the_api_key() {
        let s = AdyenSettings {
            code: "adyen".into(),
            endpoint: "http://127.0.0.1:1/checkout/v72".into(),
            api_key: "AQE-secret-key".into(),
            merchant_account: "M".into(),
            allow_multiple_partial_capture: true,
            non_incremental_variants: vec![],
            key_window: chrono::Duration::days(ADYEN_KEY_WINDOW_DAYS),
            timeout: Duration::from_secs(5),
            card_page: None,
        };
        assert!(!format!("{s:?}").contains("secret"));
    }
}
