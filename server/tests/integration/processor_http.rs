//! Issue #42: the `adyen` connector and `paystage sandbox` together over real HTTP on loopback.
//! The sandbox runs in this process on its own port and store here (and as its own process in
//! `a_killed_sandbox_restarts_on_its_store_and_answers_a_repeat_the_same`); the connector keeps
//! what it sent in Paystage's database, on SQLite and PostgreSQL.
use payments::clock::{ManualClock, SharedClock, SystemClock};
use payments::connector::adyen::signature::{self, HmacKey};
use payments::connector::adyen::wire::{NotificationRequest, API_VERSION};
use payments::connector::adyen::{AdyenConnector, AdyenSettings};
use payments::connector::simulator::ledger_totals;
use payments::connector::{faults, Connector, ConnectorError, Outcome};
use payments::db_test;
use payments::domain::money::{Currency, Money};
use payments::entity::processor_send as ps;
use sea_orm::{EntityTrait, PaginatorTrait};
use server::sandbox::{Sandbox, SandboxOptions};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const API_KEY: &str = "sandbox-test-key-0123456789";
/// The shopper paying with a recurring card on file (the card was just stored on the sandbox's page).
const SHOPPER: payments::connector::AuthorizeAsk =
    payments::connector::AuthorizeAsk { initiator: payments::connector::Initiator::Shopper, token_kind: payments::domain::tokens::TokenKind::Recurring };
const MERCHANT: &str = "PaystageDemo";
const HMAC_HEX: &str = "6e1c6f0f3b7c2a9d8e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d";

struct Running {
    base: String,
    sandbox: Sandbox,
    _dir: tempfile::TempDir,
}

fn options(dir: &std::path::Path, notify_url: Option<String>, multiple: bool) -> SandboxOptions {
    SandboxOptions {
        data_dir: dir.to_path_buf(),
        api_key: API_KEY.into(),
        merchant_account: MERCHANT.into(),
        notify_url,
        hmac_key: HmacKey::from_hex(HMAC_HEX).unwrap(),
        key_window: chrono::Duration::days(31),
        allow_multiple_partial_capture: multiple,
    }
}

async fn start(notify_url: Option<String>, multiple: bool) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::open(options(dir.path(), notify_url, multiple), Arc::new(SystemClock)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server::sandbox::serve(sandbox.clone(), listener));
    Running { base, sandbox, _dir: dir }
}

fn settings(base: &str) -> AdyenSettings {
    AdyenSettings {
        code: "adyen".into(),
        endpoint: format!("{base}/checkout/{API_VERSION}"),
        api_key: API_KEY.into(),
        merchant_account: MERCHANT.into(),
        allow_multiple_partial_capture: true,
        non_incremental_variants: vec!["interac".into()],
        key_window: chrono::Duration::days(31),
        timeout: Duration::from_secs(5),
        card_page: None,
    }
}

fn eur(minor: i64) -> Money {
    Money::from_minor(minor, Currency::from_code("EUR").unwrap())
}

/// A card stored through the sandbox's hosted page, as a shopper's browser would: the page
/// answers with a redirect to the return URL carrying the stored payment method's id only.
async fn hosted_card(base: &str, shopper: &str, number: &str) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = [
        ("merchantAccount", MERCHANT),
        ("shopperReference", shopper),
        ("returnUrl", "http://127.0.0.1:9/cards/returned"),
        ("number", number),
        ("expiry", "12/30"),
        ("holder", "Jamie Rivera"),
    ];
    let r = http.post(format!("{base}/hpp/cards")).form(&form).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("http://127.0.0.1:9/cards/returned?"), "{location}");
    assert!(!location.contains(&number[number.len() - 8..]), "the card number never goes back to the merchant: {location}");
    let url = reqwest::Url::parse(&location).unwrap();
    url.query_pairs().find(|(k, _)| k == "storedPaymentMethodId").map(|(_, v)| v.to_string()).expect("a stored payment method id")
}

db_test!(the_adyen_connector_runs_a_payments_life_against_the_sandbox_over_http, |db| {
    let sb = start(None, true).await;
    let clock: SharedClock = db.services.clock.clone();
    let adyen = AdyenConnector::new(settings(&sb.base), db.services.db.clone(), clock).unwrap();
    let token = hosted_card(&sb.base, "C-0001", "4111111111111111").await;

    // R-CAP-1, R-AUT-2: authorize 100.00, two partial captures, a third above what is left
    // refused, a refund of the first, an amount update, a capture up to the new total.
    let a = adyen.authorize("t-auth-1", &token, eur(10_000), SHOPPER).await.unwrap();
    assert_eq!((a.payment_method_variant.as_str(), a.card_type.as_str(), a.last_four.as_str()), ("visa", "Visa", "1111"));
    assert!(a.supports_multiple_captures);
    let c1 = adyen.capture("t-cap-1", &a.reference, eur(3_000), false).await.unwrap();
    assert!(!c1.authorization_closed);
    let c2 = adyen.capture("t-cap-2", &a.reference, eur(2_000), false).await.unwrap();
    assert_ne!(c1.reference, c2.reference);
    let over = adyen.capture("t-cap-3", &a.reference, eur(6_000), false).await;
    assert!(matches!(&over, Err(ConnectorError::Declined { code, .. }) if code == "amount_exceeds_authorization"), "{over:?}");
    let r = adyen.refund("t-ref-1", &c1.reference, eur(1_000)).await.unwrap();
    assert_eq!(r.amount, eur(1_000));
    let over_refund = adyen.refund("t-ref-2", &c2.reference, eur(2_001)).await;
    assert!(matches!(&over_refund, Err(ConnectorError::Declined { .. })), "{over_refund:?}");
    let adjusted = adyen.adjust_authorization("t-adj-1", &a.reference, eur(12_000)).await.unwrap();
    assert_eq!(adjusted.reference, a.reference);
    adyen.capture("t-cap-4", &a.reference, eur(7_000), false).await.unwrap();

    // A cancelled authorization takes no capture.
    let b = adyen.authorize("t-auth-2", &token, eur(5_000), SHOPPER).await.unwrap();
    adyen.void("t-void-1", &b.reference).await.unwrap();
    let after = adyen.capture("t-cap-5", &b.reference, eur(100), false).await;
    assert!(matches!(&after, Err(ConnectorError::Declined { code, .. }) if code == "authorization_closed"), "{after:?}");

    // A declining test card: Refused, with Paystage's decline code.
    let declining = hosted_card(&sb.base, "C-0001", "4000000000009995").await;
    let refused = adyen.authorize("t-auth-3", &declining, eur(1_000), SHOPPER).await;
    assert!(matches!(&refused, Err(ConnectorError::Declined { code, .. }) if code == "insufficient_funds"), "{refused:?}");
    // Interac never takes several captures (Non incremental capture payment methods).
    let interac = hosted_card(&sb.base, "C-0001", "6363680000000007").await;
    assert!(!adyen.authorize("t-auth-4", &interac, eur(1_000), SHOPPER).await.unwrap().supports_multiple_captures);

    // The processor's books: 120.00 + 10.00 authorized... captured 30 + 20 + 70, refunded 10.
    let totals = ledger_totals(sb.sandbox.store()).await.unwrap();
    assert_eq!((totals.captured, totals.refunded, totals.captures), (12_000, 1_000, 3));
    // Every request sent was recorded before it went out, under its tracking id.
    assert_eq!(ps::Entity::find().count(&db.services.db).await.unwrap(), 13);
});

db_test!(a_lost_answer_is_resolved_by_sending_the_request_again_with_its_key_and_money_moves_once, |db| {
    // R-CAP-5: the capture happens at the processor, its answer is lost (timeout after the
    // effect). Asking about the tracking id repeats the recorded request with the same
    // Idempotency-Key: the processor answers the original capture and captures nothing more.
    let sb = start(None, true).await;
    let adyen = AdyenConnector::new(settings(&sb.base), db.services.db.clone(), db.services.clock.clone()).unwrap();
    let token = hosted_card(&sb.base, "C-0002", "5555555555554444").await;
    let a = adyen.authorize("t-auth", &token, eur(10_000), SHOPPER).await.unwrap();
    // Every capture's answer is lost (until the fault is removed); asking is not a capture.
    faults::add(sb.sandbox.store(), chrono::Utc::now(), "capture", "timeout_after", "1", "", "0").await.unwrap();
    let lost = adyen.capture("t-cap", &a.reference, eur(4_000), false).await;
    assert!(matches!(lost, Err(ConnectorError::Timeout)), "{lost:?}");
    let first = adyen.query("t-cap").await.unwrap();
    let Some(Outcome::Captured(c)) = first else { panic!("{first:?}") };
    assert_eq!(c.amount, eur(4_000));
    let again = adyen.query("t-cap").await.unwrap();
    assert!(matches!(&again, Some(Outcome::Captured(c2)) if c2.reference == c.reference), "{again:?}");
    let totals = ledger_totals(sb.sandbox.store()).await.unwrap();
    assert_eq!((totals.captured, totals.captures), (4_000, 1), "captured once");
    let sent = ps::Entity::find_by_id("t-cap".to_string()).one(&db.services.db).await.unwrap().unwrap();
    assert_eq!(sent.attempts, 3);
    assert_eq!(sent.psp_reference.as_deref(), Some(c.reference.as_str()));
    // A tracking id never sent: nothing to repeat, so nothing happened.
    assert!(adyen.query("t-never").await.unwrap().is_none());
    // The same tracking id for another request is refused before anything is sent.
    let reused = adyen.capture("t-cap", &a.reference, eur(5_000), false).await;
    assert!(matches!(&reused, Err(ConnectorError::Invalid(_))), "{reused:?}");
    assert_eq!(ledger_totals(sb.sandbox.store()).await.unwrap().captured, 4_000);
});

db_test!(an_error_before_the_effect_says_nothing_was_done_and_the_same_request_then_goes_through, |db| {
    // The sandbox answers an injected error before the effect with 503 and Transient-Error: true
    // (Adyen's sign that nothing was processed): the connector reports it as not processed, not
    // as unknown, and the same tracking id sent again captures once. Asking about a request while
    // the processor cannot be asked (a `query` fault) leaves it unknown.
    let sb = start(None, true).await;
    let adyen = AdyenConnector::new(settings(&sb.base), db.services.db.clone(), db.services.clock.clone()).unwrap();
    let token = hosted_card(&sb.base, "C-0009", "4111111111111111").await;
    let a = adyen.authorize("t-auth", &token, eur(10_000), SHOPPER).await.unwrap();
    faults::add(sb.sandbox.store(), chrono::Utc::now(), "capture", "error_before", "1", "1", "0").await.unwrap();
    let refused = adyen.capture("t-cap", &a.reference, eur(2_000), false).await;
    assert!(matches!(&refused, Err(ConnectorError::Unavailable(_))), "{refused:?}");
    assert_eq!(ledger_totals(sb.sandbox.store()).await.unwrap().captures, 0);
    let c = adyen.capture("t-cap", &a.reference, eur(2_000), false).await.unwrap();
    assert_eq!(c.amount, eur(2_000));
    // An answer given is stored with the key: asking again replays it.
    assert!(matches!(adyen.query("t-cap").await, Ok(Some(Outcome::Captured(ref again))) if again.reference == c.reference));
    // An answer lost, and the processor cannot be asked for a while: still unknown, then known.
    faults::add(sb.sandbox.store(), chrono::Utc::now(), "capture", "timeout_after", "1", "1", "0").await.unwrap();
    assert!(matches!(adyen.capture("t-cap-2", &a.reference, eur(1_000), false).await, Err(ConnectorError::Timeout)));
    faults::add(sb.sandbox.store(), chrono::Utc::now(), "query", "error_before", "1", "1", "0").await.unwrap();
    let unknown = adyen.query("t-cap-2").await;
    assert!(matches!(&unknown, Err(ConnectorError::Unavailable(_))), "{unknown:?}");
    assert!(matches!(adyen.query("t-cap-2").await, Ok(Some(Outcome::Captured(ref c2))) if c2.amount == eur(1_000)));
    assert_eq!(ledger_totals(sb.sandbox.store()).await.unwrap().captures, 2);
});

db_test!(past_the_key_window_a_repeat_is_refused_and_left_for_review, |db| {
    // Past the processor's key window a repeat could move money again: the connector refuses to
    // send it and says a person must look at it; the processor sees nothing.
    let sb = start(None, true).await;
    let clock = ManualClock::new(payments::testing::test_epoch());
    let adyen = AdyenConnector::new(settings(&sb.base), db.services.db.clone(), Arc::new(clock.clone())).unwrap();
    let token = hosted_card(&sb.base, "C-0003", "4111111111111111").await;
    let a = adyen.authorize("t-auth", &token, eur(10_000), SHOPPER).await.unwrap();
    faults::add(sb.sandbox.store(), chrono::Utc::now(), "capture", "timeout_after", "1", "1", "0").await.unwrap();
    assert!(matches!(adyen.capture("t-cap", &a.reference, eur(1_000), false).await, Err(ConnectorError::Timeout)));
    clock.advance(chrono::Duration::days(32));
    let refused = adyen.query("t-cap").await;
    assert!(matches!(&refused, Err(ConnectorError::Unavailable(m)) if m.contains("review") && m.contains("31 days")), "{refused:?}");
    assert_eq!(ledger_totals(sb.sandbox.store()).await.unwrap().captures, 1, "the first capture only");
});

/// Sends `body` to the sandbox's `path` with the given key and API key.
async fn raw(base: &str, path: &str, key: Option<&str>, api_key: &str, body: &str) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().post(format!("{base}/checkout/{API_VERSION}{path}")).header("X-API-Key", api_key).header("Content-Type", "application/json").body(body.to_string());
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_keeps_its_idempotency_promises_and_refuses_hostile_requests() {
    let sb = start(None, true).await;
    let token = hosted_card(&sb.base, "C-0004", "4111111111111111").await;
    let pay = |value: i64| {
        serde_json::json!({
            "amount": {"currency": "EUR", "value": value}, "merchantAccount": MERCHANT, "reference": "order-1",
            "paymentMethod": {"type": "scheme", "storedPaymentMethodId": token}, "shopperReference": "C-0004",
            "shopperInteraction": "ContAuth", "recurringProcessingModel": "CardOnFile",
        })
        .to_string()
    };
    let (s1, first) = raw(&sb.base, "/payments", Some("key-1"), API_KEY, &pay(5_000)).await;
    assert_eq!(s1, 200, "{first}");
    assert_eq!(first["resultCode"], "Authorised");
    let (s2, second) = raw(&sb.base, "/payments", Some("key-1"), API_KEY, &pay(5_000)).await;
    assert_eq!((s2, &second), (200, &first), "the same key and request: the stored answer");
    let (s3, conflict) = raw(&sb.base, "/payments", Some("key-1"), API_KEY, &pay(6_000)).await;
    assert_eq!((s3, conflict["errorCode"].as_str()), (422, Some("idempotency_conflict")));
    let before = ledger_totals(sb.sandbox.store()).await.unwrap();
    assert_eq!(before.authorized, 5_000, "authorized once");

    let psp = first["pspReference"].as_str().unwrap().to_string();
    let capture = |value: i64| serde_json::json!({"amount": {"currency": "EUR", "value": value}, "merchantAccount": MERCHANT, "reference": "cap"}).to_string();
    let hostile: Vec<(&str, String, Option<&str>, &str, u16)> = vec![
        ("wrong API key", capture(100), Some("h-1"), "wrong-key-wrong-key-wrong", 401),
        ("no API key", capture(100), Some("h-2"), "", 401),
        ("not JSON", "{\"amount\":".to_string(), Some("h-3"), API_KEY, 400),
        ("an array", "[1,2]".to_string(), Some("h-4"), API_KEY, 400),
        ("a negative amount", capture(-100), Some("h-5"), API_KEY, 422),
        ("a zero amount", capture(0), Some("h-6"), API_KEY, 422),
        ("an absurd amount", capture(i64::MAX), Some("h-7"), API_KEY, 422),
        ("an unknown currency", serde_json::json!({"amount": {"currency": "XXQ", "value": 100}, "merchantAccount": MERCHANT}).to_string(), Some("h-8"), API_KEY, 422),
        ("another merchant account", serde_json::json!({"amount": {"currency": "EUR", "value": 100}, "merchantAccount": "Other"}).to_string(), Some("h-9"), API_KEY, 403),
        ("a key too long", capture(100), Some("k".repeat(65).leak()), API_KEY, 422),
        ("a key with a space", capture(100), Some("bad key"), API_KEY, 422),
    ];
    for (what, body, key, api_key, expected) in hostile {
        let req = reqwest::Client::new().post(format!("{}/checkout/{API_VERSION}/payments/{psp}/captures", sb.base)).header("X-API-Key", api_key).body(body);
        let req = match key {
            Some(k) => req.header("Idempotency-Key", k),
            None => req,
        };
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, expected, "{what}: {text}");
        assert!(status < 500, "{what}: never a 5xx for bad input: {status} {text}");
    }
    let after = ledger_totals(sb.sandbox.store()).await.unwrap();
    assert_eq!((after.captured, after.captures), (0, 0), "no hostile request moved money");
    // A path reference that is not a payment: 422, nothing moved.
    let (s, e) = raw(&sb.base, "/payments/..%2F..%2Fetc/captures", Some("h-10"), API_KEY, &capture(100)).await;
    assert!((400..500).contains(&s), "{s} {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_multiple_partial_captures_the_first_partial_capture_closes_the_authorization() {
    let sb = start(None, false).await;
    let token = hosted_card(&sb.base, "C-0005", "4111111111111111").await;
    let db = payments::testing::TestDb::sqlite().await;
    let mut s = settings(&sb.base);
    s.allow_multiple_partial_capture = false;
    let adyen = AdyenConnector::new(s, db.services.db.clone(), db.services.clock.clone()).unwrap();
    let a = adyen.authorize("t-a", &token, eur(10_000), SHOPPER).await.unwrap();
    assert!(!a.supports_multiple_captures);
    let c = adyen.capture("t-c1", &a.reference, eur(4_000), false).await.unwrap();
    assert!(c.authorization_closed);
    let second = adyen.capture("t-c2", &a.reference, eur(1_000), false).await;
    assert!(matches!(&second, Err(ConnectorError::Declined { code, .. }) if code == "authorization_closed"), "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_arrive_signed_and_are_sent_again_until_accepted() {
    // A receiver that fails its first batch (HTTP 500), then accepts: every outcome arrives,
    // each item's HMAC signature verifies, and the failed batch came again.
    let received: Arc<Mutex<Vec<(u16, NotificationRequest)>>> = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let app = {
        let received = received.clone();
        let calls = calls.clone();
        axum::Router::new().route(
            "/webhooks/adyen/adyen",
            axum::routing::post(move |axum::Json(batch): axum::Json<NotificationRequest>| {
                let received = received.clone();
                let calls = calls.clone();
                async move {
                    let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let status = if n == 0 { 500 } else { 200 };
                    received.lock().unwrap().push((status, batch));
                    (axum::http::StatusCode::from_u16(status).unwrap(), "[accepted]")
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/webhooks/adyen/adyen", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sb = start(Some(hook), true).await;
    let db = payments::testing::TestDb::sqlite().await;
    let adyen = AdyenConnector::new(settings(&sb.base), db.services.db.clone(), db.services.clock.clone()).unwrap();
    let token = hosted_card(&sb.base, "C-0006", "4111111111111111").await;
    let a = adyen.authorize("t-a", &token, eur(10_000), SHOPPER).await.unwrap();
    let c = adyen.capture("t-c", &a.reference, eur(2_500), false).await.unwrap();
    adyen.refund("t-r", &c.reference, eur(500)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let key = HmacKey::from_hex(HMAC_HEX).unwrap();
    loop {
        let accepted: Vec<String> = {
            let got = received.lock().unwrap();
            got.iter().filter(|(s, _)| *s == 200).flat_map(|(_, b)| b.notification_items.iter().map(|w| w.item.event_code.clone())).collect()
        };
        if ["AUTHORISATION", "CAPTURE", "REFUND"].iter().all(|e| accepted.iter().any(|a| a == e)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "notifications accepted so far: {accepted:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = received.lock().unwrap();
    assert_eq!(got[0].0, 500, "the first batch failed");
    let first_again = got[0].1.notification_items[0].item.psp_reference.clone();
    assert!(got[1..].iter().any(|(s, b)| *s == 200 && b.notification_items.iter().any(|w| w.item.psp_reference == first_again)), "the failed batch's items came again");
    for (_, batch) in got.iter() {
        assert_eq!(batch.live, "false");
        for w in &batch.notification_items {
            assert!(signature::verify(&w.item, &key), "{:?}", w.item);
            assert_eq!(w.item.merchant_account_code, MERCHANT);
            assert_eq!(w.item.success, "true");
        }
    }
    let capture = got.iter().flat_map(|(_, b)| &b.notification_items).find(|w| w.item.event_code == "CAPTURE").unwrap();
    assert_eq!((capture.item.original_reference.as_deref(), capture.item.merchant_reference.as_str(), capture.item.amount.value), (Some(a.reference.as_str()), "t-c", 2_500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sandbox_restarts_on_its_store_and_answers_a_repeat_the_same() {
    // The sandbox as its own process (`paystage sandbox`): killed with SIGKILL right after a
    // capture, started again on the same data directory, it answers the repeated request from
    // its store, and the capture stays one.
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_paystage"))
            .args(["sandbox", "--port", &port.to_string(), "--data", dir.path().to_str().unwrap(), "--api-key", API_KEY])
            .env("PAYSTAGE_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let base = format!("http://127.0.0.1:{port}");
    let ready = || async {
        for _ in 0..200 {
            if reqwest::get(format!("{base}/healthz")).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the sandbox did not start");
    };
    let mut child = spawn();
    ready().await;
    let db = payments::testing::TestDb::sqlite().await;
    let adyen = AdyenConnector::new(settings(&base), db.services.db.clone(), db.services.clock.clone()).unwrap();
    let token = hosted_card(&base, "C-0007", "4111111111111111").await;
    let a = adyen.authorize("t-a", &token, eur(10_000), SHOPPER).await.unwrap();
    let c = adyen.capture("t-c", &a.reference, eur(3_000), false).await.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()), nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    assert!(matches!(adyen.query("t-c").await, Err(ConnectorError::Unavailable(_))), "nobody answers while it is down");
    let mut child = spawn();
    ready().await;
    let again = adyen.query("t-c").await.unwrap();
    assert!(matches!(&again, Some(Outcome::Captured(c2)) if c2.reference == c.reference), "{again:?}");
    let more = adyen.capture("t-c2", &a.reference, eur(1_000), false).await.unwrap();
    assert_ne!(more.reference, c.reference);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()), nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap();
}

db_test!(notifications_land_in_the_inbox_once_and_forged_ones_are_refused, |db| {
    use payments::connector::adyen::wire::{NotificationItem, NotificationItemWrapper};
    use payments::entity::processor_notification as pn;
    use payments::service::notifications::process_pending;
    use sea_orm::{ColumnTrait, QueryFilter};
    let keys = server::webhooks::WebhookKeys::new([("adyen".to_string(), HmacKey::from_hex(HMAC_HEX).unwrap())].into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/webhooks/adyen/adyen", listener.local_addr().unwrap());
    let inbox_services = db.services.clone();
    tokio::spawn(async move { axum::serve(listener, server::webhooks::router(inbox_services, keys)).await });
    let sb = start(Some(hook.clone()), true).await;
    let adyen = AdyenConnector::new(settings(&sb.base), db.services.db.clone(), db.services.clock.clone()).unwrap();
    let token = hosted_card(&sb.base, "C-0008", "4111111111111111").await;
    let a = adyen.authorize("t-a", &token, eur(10_000), SHOPPER).await.unwrap();
    let c = adyen.capture("t-c", &a.reference, eur(2_500), false).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while pn::Entity::find().count(&db.services.db).await.unwrap() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the sandbox's notifications did not arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = process_pending(&db.services, 100).await.unwrap();
    assert_eq!((report.confirmed, report.attention, report.unknown), (2, 0, 0));
    let capture = pn::Entity::find().filter(pn::Column::EventCode.eq("CAPTURE")).one(&db.services.db).await.unwrap().unwrap();
    assert_eq!((capture.psp_reference.as_str(), capture.original_reference.as_deref(), capture.amount_minor, capture.state.as_str()), (c.reference.as_str(), Some(a.reference.as_str()), 2_500, "processed"));

    let post = |body: String| {
        let hook = hook.clone();
        async move { reqwest::Client::new().post(&hook).header("Content-Type", "application/json").body(body).send().await.unwrap() }
    };
    let batch = |items: Vec<NotificationItem>| serde_json::to_string(&NotificationRequest { live: "false".into(), notification_items: items.into_iter().map(|item| NotificationItemWrapper { item }).collect() }).unwrap();
    let stored: NotificationItem = serde_json::from_str(&capture.item).unwrap();
    // A forged amount: the signature no longer verifies; 401, nothing stored.
    let mut forged = stored.clone();
    forged.psp_reference = "cap_forged".into();
    forged.amount.value = 1;
    let r = post(batch(vec![forged])).await;
    assert_eq!(r.status().as_u16(), 401);
    // One bad item refuses the whole batch.
    let mut bad = stored.clone();
    bad.psp_reference = "cap_other".into();
    let mut good = stored.clone();
    good.psp_reference = "cap_good".into();
    signature::attach(&mut good, &HmacKey::from_hex(HMAC_HEX).unwrap());
    assert_eq!(post(batch(vec![good, bad])).await.status().as_u16(), 401);
    assert_eq!(pn::Entity::find().count(&db.services.db).await.unwrap(), 2, "nothing forged was stored");
    // The same notification again (processors send again until acknowledged): accepted, kept once.
    let r = post(batch(vec![stored.clone()])).await;
    assert_eq!((r.status().as_u16(), r.text().await.unwrap().as_str()), (200, "[accepted]"));
    assert_eq!(pn::Entity::find().count(&db.services.db).await.unwrap(), 2);
    // A capture that fails after the fact, and an event Paystage does not know: kept, never dropped.
    let key = HmacKey::from_hex(HMAC_HEX).unwrap();
    let mut failed = stored.clone();
    failed.event_code = "CAPTURE_FAILED".into();
    failed.success = "true".into();
    failed.reason = Some("Insufficient balance on payment".into());
    signature::attach(&mut failed, &key);
    let mut unknown = stored.clone();
    unknown.event_code = "SOMETHING_NEW".into();
    signature::attach(&mut unknown, &key);
    assert_eq!(post(batch(vec![failed, unknown])).await.status().as_u16(), 200);
    let report = process_pending(&db.services, 100).await.unwrap();
    assert_eq!((report.confirmed, report.attention, report.unknown), (0, 0, 1));
    // Paystage has no capture of that reference (this test's connector records none): the
    // failure waits for one to be recorded (its outcome may be unresolved), then needs finance.
    let waiting = pn::Entity::find().filter(pn::Column::EventCode.eq("CAPTURE_FAILED")).one(&db.services.db).await.unwrap().unwrap();
    assert_eq!(waiting.state, "received");
    assert!(waiting.note.as_deref().unwrap().contains("no record of this yet"), "{:?}", waiting.note);
    for _ in 1..payments::service::notifications::NOT_FOUND_PASSES {
        process_pending(&db.services, 100).await.unwrap();
    }
    let attention = pn::Entity::find().filter(pn::Column::State.eq("attention")).one(&db.services.db).await.unwrap().unwrap();
    let note = attention.note.as_deref().unwrap();
    assert!(note.contains("Insufficient balance on payment") && note.contains("no record of it, so nothing was reversed"), "{note}");
    assert_eq!(pn::Entity::find().filter(pn::Column::State.eq("unknown_event")).count(&db.services.db).await.unwrap(), 1);
    // Hostile requests: not JSON, an unknown connector.
    assert_eq!(post("{not json".into()).await.status().as_u16(), 400);
    let other = reqwest::Client::new().post(hook.replace("/adyen/adyen", "/adyen/other")).body(batch(vec![stored])).send().await.unwrap();
    assert_eq!(other.status().as_u16(), 401);
    assert_eq!(pn::Entity::find().count(&db.services.db).await.unwrap(), 4);
    // The list the Processor notifications page shows, by state; a state not in the list is refused.
    use payments::service::notifications::list;
    assert_eq!(list(&db.services, "").await.unwrap().len(), 4);
    let needs = list(&db.services, "attention").await.unwrap();
    assert_eq!((needs.len(), needs[0].event_code.as_str(), needs[0].state_label.as_str()), (1, "CAPTURE_FAILED", "Needs finance"));
    assert_eq!(needs[0].amount, "25.00 EUR");
    assert_eq!(list(&db.services, "processed").await.unwrap().len(), 2);
    for bad in ["deleted", "<script>", "processed' OR '1'='1"] {
        let e = list(&db.services, bad).await.unwrap_err();
        assert!(e.to_string().contains("Choose a state"), "{bad}: {e}");
    }
});

db_test!(a_connectors_hmac_key_typed_on_its_page_checks_its_notifications, |db| {
    // Issue #43: with no PAYSTAGE_CONNECTOR_<CODE>_HMAC_KEY, the webhook checks a connector's
    // notifications with the HMAC key typed on the Payment connectors page (stored sealed); a
    // batch signed with another key is refused and nothing is stored.
    use payments::entity::processor_notification as pn;
    use payments::service::setup::{save_connector, ConnectorForm};
    use sea_orm::{ColumnTrait, QueryFilter};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/webhooks/adyen/adyen", listener.local_addr().unwrap());
    let inbox_services = db.services.clone();
    tokio::spawn(async move { axum::serve(listener, server::webhooks::router(inbox_services, server::webhooks::WebhookKeys::default())).await });
    let sb = start(Some(hook.clone()), true).await;
    let adyen = AdyenConnector::new(settings(&sb.base), db.services.db.clone(), db.services.clock.clone()).unwrap();
    let token = hosted_card(&sb.base, "C-0009", "4111111111111111").await;
    // Before the key is typed, the sandbox's first notification is refused (it sends it again).
    adyen.authorize("t-a0", &token, eur(1_000), SHOPPER).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pn::Entity::find().count(&db.services.db).await.unwrap(), 0, "no key: refused");
    let form = ConnectorForm {
        code: "adyen".into(),
        name: "Adyen".into(),
        kind: "sandbox".into(),
        endpoint: format!("{}/checkout/{API_VERSION}", sb.base),
        merchant_account: MERCHANT.into(),
        api_key: "sandbox-api-key".into(),
        hmac_key: HMAC_HEX.into(),
        ..Default::default()
    };
    save_connector(&db.services, "admin", None, &form).await.unwrap();
    let a = adyen.authorize("t-a", &token, eur(10_000), SHOPPER).await.unwrap();
    adyen.capture("t-c", &a.reference, eur(2_500), false).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while pn::Entity::find().count(&db.services.db).await.unwrap() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "the notifications signed with the typed key did not arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored: payments::connector::adyen::wire::NotificationItem = serde_json::from_str(&pn::Entity::find().one(&db.services.db).await.unwrap().unwrap().item).unwrap();
    let mut other = stored.clone();
    other.psp_reference = "signed-with-another-key".into();
    signature::attach(&mut other, &HmacKey::from_hex(&"11".repeat(32)).unwrap());
    let body = serde_json::to_string(&NotificationRequest { live: "false".into(), notification_items: vec![payments::connector::adyen::wire::NotificationItemWrapper { item: other }] }).unwrap();
    let before = pn::Entity::find().filter(pn::Column::PspReference.eq("signed-with-another-key")).count(&db.services.db).await.unwrap();
    let r = reqwest::Client::new().post(&hook).header("Content-Type", "application/json").body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(pn::Entity::find().filter(pn::Column::PspReference.eq("signed-with-another-key")).count(&db.services.db).await.unwrap(), before, "nothing stored");
});

db_test!(a_card_is_typed_on_the_sandboxs_hosted_page_and_paystage_only_gets_its_reference, |db| {
    // R-TOK-1: Paystage's card page sends the browser to the processor's hosted page (another
    // origin); the card is typed there; the browser comes back with the stored card's id, whose
    // details Paystage asks the processor for, and goes on to the page that asked with a token
    // and the card's type, last four, holder and expiry. The number never reaches Paystage.
    let mut settings = AdyenSettings {
        code: "sandbox".into(),
        endpoint: format!("{}/checkout/{API_VERSION}", db.processor),
        api_key: payments::testing::TEST_API_KEY.into(),
        merchant_account: payments::testing::TEST_MERCHANT_ACCOUNT.into(),
        allow_multiple_partial_capture: true,
        non_incremental_variants: vec!["interac".into()],
        key_window: chrono::Duration::days(31),
        timeout: Duration::from_secs(5),
        card_page: None,
    };
    settings.card_page = Some(format!("{}/hpp/cards", db.processor));
    db.services = payments::service::Services::over_http(db.services.db.clone(), settings, db.services.processor_store.clone(), db.services.clock.clone()).unwrap();
    let app = crate::support::spawn(&db).await;
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let location = |r: &reqwest::Response| r.headers().get("location").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();

    let r = browser.get(format!("{}/processor/acceptance?return=/orders/new", app.base)).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let hosted = reqwest::Url::parse(&location(&r)).unwrap();
    assert_eq!(format!("{}://{}", hosted.scheme(), hosted.host_str().unwrap()) + &format!(":{}", hosted.port().unwrap()), db.processor, "the card page is on the processor's origin");
    let q: std::collections::HashMap<String, String> = hosted.query_pairs().into_owned().collect();
    assert_eq!(q["merchantAccount"], payments::testing::TEST_MERCHANT_ACCOUNT);
    assert!(q["returnUrl"].starts_with(&format!("{}/processor/acceptance?return=/orders/new", app.base)), "{}", q["returnUrl"]);
    let page = browser.get(hosted.as_str()).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Card number") && page.contains("Processor sandbox"));
    // Leaving without a card goes back to the page that asked, not round again.
    let cancel = format!("{}&resultCode=Cancelled", q["returnUrl"]);
    assert!(page.contains(&cancel.replace('&', "&amp;")), "a Cancel link to the return URL");
    let r = browser.get(&cancel).send().await.unwrap();
    assert_eq!(location(&r), "/orders/new");

    let form = hosted_card_form(&q);
    let r = browser.post(format!("{}/hpp/cards", db.processor)).form(&form).send().await.unwrap();
    let back = location(&r);
    assert!(back.starts_with(&format!("{}/processor/acceptance?return=/orders/new&storedPaymentMethodId=", app.base)), "{back}");
    assert!(!back.contains("41111111"), "{back}");
    let r = browser.get(&back).send().await.unwrap();
    let onward = location(&r);
    assert!(onward.starts_with("/orders/new?token=ps-"), "{onward}");
    let onward = reqwest::Url::parse(&format!("{}{onward}", app.base)).unwrap();
    let card: std::collections::HashMap<String, String> = onward.query_pairs().into_owned().collect();
    assert_eq!((card["card_type"].as_str(), card["last_four"].as_str(), card["holder"].as_str(), card["expiry"].as_str()), ("Visa", "1111", "Jamie Rivera", "12/30"));
    // The token authorizes at the processor, for its shopper.
    let a = db.services.connector.authorize("t-hosted", &card["token"], eur(2_500), SHOPPER).await.unwrap();
    assert_eq!(a.last_four, "1111");
    // A made-up return (an id the processor does not hold for that shopper) goes no further.
    let r = browser.get(format!("{}/processor/acceptance?return=/orders/new&storedPaymentMethodId=tok_made_up&shopperReference=ps-nobody", app.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.unwrap().contains("does not know that card"));
});

db_test!(a_channels_card_is_taken_on_the_hosted_page_of_the_connector_it_pays_through, |db| {
    // Issue #43 (R-PAR-5): `/processor/acceptance?channel=<id>` sends the browser to the hosted
    // page of the connector that channel pays through, not the default's, and brings the card
    // back with the channel, as that connector's processor describes it; without a channel (a
    // card on file, R-TOK-8) the default connector's page takes it.
    use payments::service::setup::{save_channel, save_connector, ChannelForm, ConnectorForm};
    use payments::testing::{fixture, start_sandbox, TEST_API_KEY, TEST_MERCHANT_ACCOUNT, TEST_SECRET_KEY};
    let key = payments::secrets::SecretKey::from_hex(TEST_SECRET_KEY).unwrap();
    db.services = payments::service::Services::configured(db.services.db.clone(), Some(key), db.services.clock.clone()).await.unwrap();
    let s = &db.services;
    let fx = fixture(s).await;
    let (_other, other_base, _, _dir) = start_sandbox(db.services.clock.clone()).await;
    let form = |code: &str, base: &str| ConnectorForm {
        code: code.into(),
        name: code.into(),
        kind: "sandbox".into(),
        endpoint: format!("{base}/checkout/{API_VERSION}"),
        merchant_account: TEST_MERCHANT_ACCOUNT.into(),
        api_key: TEST_API_KEY.into(),
        hmac_key: String::new(),
        card_page: format!("{base}/hpp/cards"),
        key_window_days: "31".into(),
        timeout_seconds: "5".into(),
    };
    save_connector(s, "admin", Some(fx.connector_id), &form("sandbox", &db.processor)).await.unwrap();
    save_connector(s, "admin", None, &form("phone", &other_base)).await.unwrap();
    let channel = ChannelForm { name: "Call center".into(), currency: "USD".into(), time_zone: "UTC".into(), connector: "phone".into(), ..Default::default() };
    save_channel(s, "admin", Some(fx.call_center), &channel).await.unwrap();
    let app = crate::support::spawn(&db).await;
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let location = |r: &reqwest::Response| r.headers().get("location").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let origin = |u: &reqwest::Url| format!("{}://{}:{}", u.scheme(), u.host_str().unwrap(), u.port().unwrap());

    // No channel: the default connector's page.
    let r = browser.get(format!("{}/processor/acceptance?return=/orders/new", app.base)).send().await.unwrap();
    assert_eq!(origin(&reqwest::Url::parse(&location(&r)).unwrap()), db.processor);
    // The call center: its own connector's page, and back with the channel.
    let r = browser.get(format!("{}/processor/acceptance?return=/orders/new&channel={}", app.base, fx.call_center)).send().await.unwrap();
    let hosted = reqwest::Url::parse(&location(&r)).unwrap();
    assert_eq!(origin(&hosted), other_base, "the page of the connector the channel pays through");
    let q: std::collections::HashMap<String, String> = hosted.query_pairs().into_owned().collect();
    assert!(q["returnUrl"].ends_with(&format!("&channel={}", fx.call_center)), "{}", q["returnUrl"]);
    let card = hosted_card_form(&q);
    let back = location(&browser.post(format!("{other_base}/hpp/cards")).form(&card).send().await.unwrap());
    let onward = location(&browser.get(&back).send().await.unwrap());
    assert!(onward.starts_with("/orders/new?token=") && onward.ends_with(&format!("&channel={}", fx.call_center)), "{onward}");
    // The same return without the channel is asked of the default processor, which does not
    // know the card.
    let r = browser.get(back.replace(&format!("&channel={}", fx.call_center), "")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.unwrap().contains("does not know that card"));
});

/// What a shopper posts on the sandbox's hosted card page reached with query `q`: Jamie Rivera's
/// Visa.
fn hosted_card_form(q: &std::collections::HashMap<String, String>) -> [(&str, &str); 6] {
    [
        ("merchantAccount", q["merchantAccount"].as_str()),
        ("shopperReference", q["shopperReference"].as_str()),
        ("returnUrl", q["returnUrl"].as_str()),
        ("number", "4111 1111 1111 1111"),
        ("expiry", "12/30"),
        ("holder", "Jamie Rivera"),
    ]
}

/// What the order's journals put through Card clearing (debit − credit), in minor units.
async fn card_clearing(s: &payments::service::Services, order_id: i32) -> i64 {
    use payments::entity::{journal, journal_line};
    use sea_orm::{ColumnTrait, QueryFilter};
    let ids: Vec<i32> = journal::Entity::find().filter(journal::Column::OrderId.eq(order_id)).all(&s.db).await.unwrap().into_iter().map(|j| j.id).collect();
    journal_line::Entity::find()
        .filter(journal_line::Column::JournalId.is_in(ids))
        .filter(journal_line::Column::Account.eq(payments::domain::order::accounts::CARD_CLEARING))
        .all(&s.db)
        .await
        .unwrap()
        .iter()
        .map(|l| l.debit_minor - l.credit_minor)
        .sum()
}

db_test!(a_capture_the_processor_fails_after_accepting_it_is_reversed_and_left_to_finance, |db| {
    // Issue #42, R-LED-1/2: Adyen answers a capture `received` and may report CAPTURE_FAILED
    // later. The capture's money did not move: Paystage marks it failed, brings the
    // authorization's captured total back down, posts a reversing journal (the payment journal
    // stays), and the notification waits for finance with the processor's reason. Reported
    // twice, or processed twice, it changes nothing more; the invariants hold throughout.
    use payments::entity::{authorization as au, capture as cap, journal, processor_notification as pn};
    use payments::pipeline::invariants;
    use payments::service::notifications;
    use payments::testing::card_order;
    use sea_orm::{ColumnTrait, QueryFilter};
    let s = &db.services;
    let (_fx, placed, d) = card_order(s, "Tent", 2, "150.00").await;
    faults::add(payments::testing::sim(s), s.now(), "capture", "fails_later", "1", "1", "").await.unwrap();
    let outcome = payments::pipeline::invoice(s, "finance", placed.order_id, &[(d.lines[0].id, 1)]).await.unwrap();
    let c = cap::Entity::find().filter(cap::Column::OrderId.eq(placed.order_id)).one(&s.db).await.unwrap().expect("the capture was recorded as received");
    assert_eq!((c.amount_minor, c.failed_at), (15_000, None));
    assert_eq!(card_clearing(s, placed.order_id).await, 15_000, "the payment journal posted on `received`: {outcome:?}");
    // The processor already undid it; until its notification arrives Paystage is a capture ahead.
    let report = db.deliver_notifications().await;
    assert_eq!(report.attention, 1, "{report:?}");
    let c = cap::Entity::find_by_id(c.id).one(&s.db).await.unwrap().unwrap();
    assert!(c.failed_at.is_some());
    assert_eq!(c.failure_reason.as_deref(), Some(payments::sandbox::CAPTURE_FAILED_REASON));
    let a = au::Entity::find_by_id(c.authorization_id).one(&s.db).await.unwrap().unwrap();
    assert_eq!(a.captured_minor, 0, "the authorization's captured total came back down");
    assert_eq!(card_clearing(s, placed.order_id).await, 0, "the reversal nets the payment journal out");
    let reversal = journal::Entity::find().filter(journal::Column::Source.eq(format!("reversal:capture:{}", c.id))).one(&s.db).await.unwrap().expect("a reversing journal");
    assert_eq!(reversal.kind, "processor_reversal");
    assert_eq!(reversal.invoice_id, c.invoice_id);
    let n = pn::Entity::find().filter(pn::Column::EventCode.eq("CAPTURE_FAILED")).one(&s.db).await.unwrap().unwrap();
    assert_eq!(n.state, "attention");
    let note = n.note.clone().unwrap();
    assert!(note.contains(&reversal.number) && note.contains(payments::sandbox::CAPTURE_FAILED_REASON), "{note}");
    let r = invariants::check(s).await.unwrap();
    assert!(r.clean(), "{r:?}");
    // The order page shows the capture as failed, with the reason.
    let view = payments::service::orders::detail(s, placed.order_id).await.unwrap();
    let shown = view.authorizations.iter().flat_map(|a| a.captures.iter()).find(|x| x.id == c.id).unwrap();
    assert_eq!(shown.failed.as_deref(), Some(payments::sandbox::CAPTURE_FAILED_REASON));
    // Nothing is refunded from a failed capture: a credit note finds nothing to refund.
    let credit = payments::pipeline::credit(s, "finance", placed.order_id, &[(d.lines[0].id, 1)]).await.unwrap();
    assert_eq!(card_clearing(s, placed.order_id).await, 0, "{credit:?}");
    // The same failure processed again (a second server, a crash before the mark): nothing more.
    let item: payments::connector::adyen::wire::NotificationItem = serde_json::from_str(&n.item).unwrap();
    pn::Entity::update_many().col_expr(pn::Column::State, sea_orm::sea_query::Expr::value("received")).filter(pn::Column::Id.eq(n.id)).exec(&s.db).await.unwrap();
    notifications::receive(s, "sandbox", &[item]).await.unwrap();
    let again = notifications::process_pending(s, 10).await.unwrap();
    assert_eq!(again.attention, 1);
    assert_eq!(journal::Entity::find().filter(journal::Column::Kind.eq("processor_reversal")).count(&s.db).await.unwrap(), 1);
    assert!(pn::Entity::find_by_id(n.id).one(&s.db).await.unwrap().unwrap().note.unwrap().contains("reversed it already"));
    // Finance works it: a note is required; then it is worked, audited, and cannot be worked twice.
    let empty = notifications::mark_worked(s, "finance", n.id, "   ").await;
    assert!(matches!(empty, Err(payments::error::ServiceError::Validation(_))), "{empty:?}");
    notifications::mark_worked(s, "finance", n.id, "Customer paid by bank transfer").await.unwrap();
    let worked = pn::Entity::find_by_id(n.id).one(&s.db).await.unwrap().unwrap();
    assert_eq!((worked.state.as_str(), worked.worked_by.as_deref()), ("worked", Some("finance")));
    assert!(notifications::mark_worked(s, "finance", n.id, "again").await.is_err());
    let r = invariants::check(s).await.unwrap();
    assert!(r.clean(), "{r:?}");
});

db_test!(a_refund_the_processor_fails_after_accepting_it_is_owed_to_the_customer_again, |db| {
    // Issue #42: REFUND_FAILED. The refund is marked failed, its capture can be refunded again,
    // and a reversing journal puts the amount back through Card clearing.
    use payments::entity::{capture as cap, processor_notification as pn, refund};
    use payments::pipeline::invariants;
    use payments::testing::card_order;
    use sea_orm::{ColumnTrait, QueryFilter};
    let s = &db.services;
    let (_fx, placed, d) = card_order(s, "Tent", 2, "150.00").await;
    payments::pipeline::invoice(s, "finance", placed.order_id, &[(d.lines[0].id, 2)]).await.unwrap();
    assert_eq!(db.deliver_notifications().await.attention, 0);
    faults::add(payments::testing::sim(s), s.now(), "refund", "fails_later", "1", "1", "").await.unwrap();
    payments::pipeline::credit(s, "finance", placed.order_id, &[(d.lines[0].id, 1)]).await.unwrap();
    assert_eq!(card_clearing(s, placed.order_id).await, 15_000);
    let report = db.deliver_notifications().await;
    assert_eq!(report.attention, 1, "{report:?}");
    let r = refund::Entity::find().filter(refund::Column::OrderId.eq(placed.order_id)).one(&s.db).await.unwrap().unwrap();
    assert!(r.failed_at.is_some());
    let c = cap::Entity::find_by_id(r.capture_id).one(&s.db).await.unwrap().unwrap();
    assert_eq!((c.refunded_minor, c.refundable_minor()), (0, 30_000));
    assert_eq!(card_clearing(s, placed.order_id).await, 30_000, "the failed refund's money is back in Card clearing");
    let n = pn::Entity::find().filter(pn::Column::EventCode.eq("REFUND_FAILED")).one(&s.db).await.unwrap().unwrap();
    assert_eq!(n.state, "attention");
    let report = invariants::check(s).await.unwrap();
    assert!(report.clean(), "{report:?}");
});

#[test]
fn a_fails_later_fault_is_only_for_captures_and_refunds() {
    // Adyen reports CAPTURE_FAILED and REFUND_FAILED; nothing else fails after `received`.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let db = payments::testing::TestDb::sqlite().await;
        let s = &db.services;
        for point in ["authorize", "void", "adjust", "query", "any", "journal"] {
            let refused = faults::add(payments::testing::sim(s), s.now(), point, "fails_later", "1", "", "").await;
            assert!(matches!(refused, Err(payments::error::ServiceError::Validation(_))), "{point}: {refused:?}");
        }
        assert!(faults::list(payments::testing::sim(s)).await.unwrap().is_empty());
    });
}

db_test!(the_sandbox_administers_its_own_faults_over_http, |db| {
    // Issue #42: fault injection is the sandbox's own, through its administration API, which
    // Paystage's page and `paystage faults` use; Paystage's own journal posting keeps its faults
    // on Paystage's side. Bad input is refused field by field and adds nothing; a wrong key gets
    // nothing; a fault added through the API fires at the sandbox.
    use payments::entity::capture as cap;
    use payments::error::ServiceError;
    use payments::sandbox::client::SandboxAdmin;
    let s = &db.services;
    let endpoint = format!("{}/checkout/{API_VERSION}", db.processor);
    let admin = SandboxAdmin::for_endpoint(&endpoint, payments::testing::TEST_API_KEY).unwrap();
    assert!(admin.list().await.unwrap().is_empty());
    for (point, kind, rate, field) in [
        ("capture", "explode", "1", "kind"),
        ("capture", "error_before", "2", "rate"),
        ("<script>alert(1)</script>", "error_before", "1", "point"),
        ("journal", "error_before", "1", "point"),
        ("authorize", "fails_later", "1", "kind"),
    ] {
        match admin.add(point, kind, rate, "1", "").await {
            Err(ServiceError::Validation(fields)) => assert!(fields.iter().any(|f| f.field == field), "{point} {kind}: {fields:?}"),
            other => panic!("{point} {kind} {rate}: {other:?}"),
        }
    }
    assert!(admin.list().await.unwrap().is_empty(), "nothing refused was added");
    let intruder = SandboxAdmin::for_endpoint(&endpoint, "not-the-key").unwrap();
    assert!(intruder.list().await.unwrap_err().to_string().contains("refused Paystage's API key"));
    assert!(intruder.add("capture", "error_before", "1", "1", "").await.is_err());
    assert!(intruder.clear().await.is_err());

    let id = admin.add("capture", "error_before", "1", "1", "").await.unwrap();
    let control = s.faults();
    let journal = control.add(s.now(), "journal", "error_before", "1", "1", "").await.unwrap();
    let listed = control.list().await.unwrap();
    assert_eq!(listed.iter().map(|f| (f.id, f.point.as_str(), f.paystage_own)).collect::<Vec<_>>(), vec![(id, "capture", false), (journal, "journal", true)]);
    assert_eq!(admin.list().await.unwrap().len(), 1, "the sandbox does not hold Paystage's own step");
    assert_eq!(payments::entity::journal_fault::Entity::find().count(&s.db).await.unwrap(), 1, "Paystage keeps it in its own database");
    // The capture fault fires at the sandbox: the invoice's capture is not processed.
    let (_fx, placed, d) = payments::testing::card_order(s, "Tent", 1, "150.00").await;
    payments::pipeline::invoice(s, "finance", placed.order_id, &[(d.lines[0].id, 1)]).await.unwrap();
    assert_eq!(cap::Entity::find().count(&s.db).await.unwrap(), 0);
    assert_eq!(control.list().await.unwrap().iter().map(|f| (f.id, f.paystage_own)).collect::<Vec<_>>(), vec![(journal, true)], "the capture fault's one use is spent");
    assert!(!control.remove(id, false).await.unwrap());
    let latency = admin.add("any", "latency", "0.5", "", "5").await.unwrap();
    assert_eq!(control.clear().await.unwrap(), 2, "the processor's and Paystage's");
    assert!(control.list().await.unwrap().is_empty());
    assert!(!admin.remove(latency).await.unwrap());
    // The two are numbered apart: removing Paystage's fault n leaves the processor's fault n.
    let mut pairs = Vec::new();
    for _ in 0..3 {
        pairs.push((admin.add("void", "error_before", "1", "", "").await.unwrap(), control.add(s.now(), "journal", "error_before", "1", "", "").await.unwrap()));
    }
    let (at_processor, own) = *pairs.iter().find(|(p, j)| p == j).or(pairs.last()).unwrap();
    assert!(control.remove(own, true).await.unwrap());
    assert!(admin.list().await.unwrap().iter().any(|f| f.id == at_processor), "the processor's fault {at_processor} stays");
    assert!(!control.list().await.unwrap().iter().any(|f| f.paystage_own && f.id == own));
    assert!(control.remove(at_processor, false).await.unwrap());
    assert!(!admin.list().await.unwrap().iter().any(|f| f.id == at_processor));
});

#[test]
fn paystage_sandbox_imports_an_earlier_simulators_records_once() {
    // Issue #42: Paystage no longer runs a processor in its own process. An earlier database's
    // in-process simulator records (sim_* tables) move into the sandbox's store when it first
    // starts with --import-from, and are dropped from the old database; the sandbox then answers
    // for them (a capture on the moved authorization). Paystage itself refuses the old setting
    // that pointed it at a processor store, and warns while its database still holds such tables.
    use payments::connector::simulator::entity::{sim_authorization as sa, sim_transaction as stx};
    use payments::connector::simulator::store;
    use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let old_url = format!("sqlite://{}/old.db?mode=rwc", dir.path().display());
    rt.block_on(async {
        // A Paystage database (migrated: its own empty sim_* tables are dropped) from before the
        // separation, whose simulator had records.
        payments::db::connect_and_migrate(&old_url).await.unwrap();
        let old = payments::db::connect(&old_url).await.unwrap();
        for t in store::ledger_tables(old.get_database_backend()) {
            old.execute(&t).await.unwrap();
        }
        let now = chrono::Utc::now();
        payments::connector::simulator::entity::sim_token::ActiveModel { token: Set("tok_old".into()), variant: Set("visa".into()), card_type: Set("Visa".into()), last_four: Set("1111".into()), holder: Set("Old".into()), expiry: Set("12/30".into()), behaviour: Set("approve".into()), created_at: Set(now) }
            .insert(&old)
            .await
            .unwrap();
        sa::ActiveModel { reference: Set("auth_old".into()), token: Set("tok_old".into()), currency: Set("USD".into()), amount_minor: Set(10_000), captured_minor: Set(0), supports_multiple_captures: Set(true), status: Set("open".into()), created_at: Set(now) }
            .insert(&old)
            .await
            .unwrap();
        stx::ActiveModel { tracking_id: Set("t-old".into()), command: Set("authorize".into()), amount_minor: Set(10_000), outcome: Set("approved".into()), reference: Set(Some("auth_old".into())), response: Set("{}".into()), created_at: Set(now) }
            .insert(&old)
            .await
            .unwrap();
        // Paystage on that database warns that the records wait to be moved.
        let config = server::config::Config::from_lookup(|k| (k == "DATABASE_URL").then(|| old_url.clone())).unwrap();
        if let Err(e) = server::open_services(&config).await {
            panic!("{e}");
        }
        assert!(store::holds_earlier(&payments::db::connect(&old_url).await.unwrap()).await.unwrap(), "records are never dropped unmoved");
    });
    let data = dir.path().join("sandbox");
    let mut sandbox = std::process::Command::new(env!("CARGO_BIN_EXE_paystage"))
        .args(["sandbox", "--port", "0", "--data"])
        .arg(&data)
        .args(["--api-key", payments::testing::TEST_API_KEY, "--import-from", &old_url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(sandbox.stdout.take().unwrap());
    let mut said = String::new();
    while !said.contains("listening") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut out, &mut line).unwrap() == 0 {
            let mut err = String::new();
            std::io::Read::read_to_string(sandbox.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the sandbox stopped: {said}{err}");
        }
        said.push_str(&line);
    }
    assert!(said.contains("Moved 3 rows of the earlier processor records"), "{said}");
    let base = said.split("http://").nth(1).and_then(|r| r.split_whitespace().next()).map(|a| format!("http://{a}")).unwrap();
    rt.block_on(async {
        let old = payments::db::connect(&old_url).await.unwrap();
        assert!(!store::holds_earlier(&old).await.unwrap(), "the old tables are dropped once moved");
        // The moved authorization is the sandbox's: it takes a capture on it over HTTP.
        let connector = payments::connector::adyen::AdyenConnector::new(
            AdyenSettings {
                code: "sandbox".into(),
                endpoint: format!("{base}/checkout/{API_VERSION}"),
                api_key: payments::testing::TEST_API_KEY.into(),
                merchant_account: "PaystageDemo".into(),
                allow_multiple_partial_capture: true,
                non_incremental_variants: vec!["interac".into()],
                key_window: chrono::Duration::days(31),
                timeout: Duration::from_secs(5),
                card_page: None,
            },
            payments::db::connect_and_migrate(&format!("sqlite://{}/paystage.db?mode=rwc", dir.path().display())).await.unwrap(),
            Arc::new(SystemClock),
        )
        .unwrap();
        let c = connector.capture("t-after-move", "auth_old", Money::from_minor(4_000, Currency::USD), false).await.unwrap();
        assert_eq!(c.amount.minor(), 4_000);
    });
    sandbox.kill().unwrap();
    sandbox.wait().unwrap();
}

#[test]
fn paystage_faults_works_against_the_sandbox() {
    // `paystage faults …` with PAYSTAGE_PROCESSOR_URL set goes through the sandbox's
    // administration API; a journal fault is Paystage's own, kept in its database.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(payments::testing::TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_paystage"))
            .arg("faults")
            .args(args)
            .env("DATABASE_URL", format!("sqlite://{}/cli.db", dir.path().display()))
            .env("PAYSTAGE_PROCESSOR_URL", format!("{}/checkout/{API_VERSION}", db.processor))
            .env("PAYSTAGE_PROCESSOR_API_KEY", payments::testing::TEST_API_KEY)
            .env("PAYSTAGE_PROCESSOR_MERCHANT_ACCOUNT", payments::testing::TEST_MERCHANT_ACCOUNT)
            .env("PAYSTAGE_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = run(&["add", "refund", "timeout_after", "--rate", "1", "--times", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let admin = payments::sandbox::client::SandboxAdmin::for_endpoint(&format!("{}/checkout/{API_VERSION}", db.processor), payments::testing::TEST_API_KEY).unwrap();
    let listed = rt.block_on(admin.list()).unwrap();
    assert_eq!((listed.len(), listed[0].point.as_str(), listed[0].kind.as_str(), listed[0].remaining), (1, "refund", "timeout_after", Some(2)));
    let out = run(&["list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("timeout_after"), "{}", String::from_utf8_lossy(&out.stdout));
    let out = run(&["add", "capture", "explode"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Choose a kind of fault"), "{}", String::from_utf8_lossy(&out.stderr));
    // Paystage's own journal posting keeps its faults in Paystage's database, not the sandbox's.
    let out = run(&["add", "journal", "error_before"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(rt.block_on(admin.list()).unwrap().len(), 1, "the sandbox holds only its own");
    let listed = String::from_utf8_lossy(&run(&["list"]).stdout).to_string();
    assert!(listed.lines().any(|l| l.contains("journal") && l.contains("Paystage's own")), "{listed}");
    let out = run(&["remove", "999", "--journal"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("there is no fault 999"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["clear"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 faults removed"), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(rt.block_on(admin.list()).unwrap().is_empty());
    assert!(run(&["list"]).stdout.is_empty(), "nothing is left on either side");
}

db_test!(who_asks_for_an_authorization_sets_adyens_card_on_file_flags, |db| {
    // R-TOK-1, R-AUT-3 (Adyen's "Make token payments"): the shopper paying with the stored card
    // is ContAuth + CardOnFile; the merchant alone, with a recurring token, ContAuth +
    // UnscheduledCardOnFile; the merchant alone with a nonrecurring token is refused before
    // anything is sent. The sandbox refuses a stored card without its model, and unknown flags.
    use payments::connector::{AuthorizeAsk, Initiator};
    use payments::domain::tokens::TokenKind;
    let sb = start(None, true).await;
    let adyen = AdyenConnector::new(settings(&sb.base), db.services.db.clone(), db.services.clock.clone()).unwrap();
    let token = hosted_card(&sb.base, "C-0011", "4111111111111111").await;
    let sent = |key: &'static str| {
        let db = db.services.db.clone();
        async move { serde_json::from_str::<serde_json::Value>(&ps::Entity::find_by_id(key.to_string()).one(&db).await.unwrap().expect("recorded before it was sent").body).unwrap() }
    };
    adyen.authorize("t-shopper", &token, eur(1_000), SHOPPER).await.unwrap();
    let body = sent("t-shopper").await;
    assert_eq!((body["shopperInteraction"].as_str(), body["recurringProcessingModel"].as_str()), (Some("ContAuth"), Some("CardOnFile")));
    let merchant = AuthorizeAsk { initiator: Initiator::Merchant, token_kind: TokenKind::Recurring };
    adyen.authorize("t-merchant", &token, eur(1_000), merchant).await.unwrap();
    let body = sent("t-merchant").await;
    assert_eq!((body["shopperInteraction"].as_str(), body["recurringProcessingModel"].as_str()), (Some("ContAuth"), Some("UnscheduledCardOnFile")));
    let single = AuthorizeAsk { initiator: Initiator::Merchant, token_kind: TokenKind::Nonrecurring };
    let refused = adyen.authorize("t-single", &token, eur(1_000), single).await;
    assert!(matches!(&refused, Err(ConnectorError::Invalid(m)) if m.contains("R-AUT-3")), "{refused:?}");
    assert!(ps::Entity::find_by_id("t-single".to_string()).one(&db.services.db).await.unwrap().is_none(), "nothing was sent");
    let (_, stored) = payments::connector::adyen::split_token(&token);
    for (flags, says) in [
        (serde_json::json!({}), "needs its recurringProcessingModel"),
        (serde_json::json!({"recurringProcessingModel": "Sometimes"}), "recurringProcessingModel must be"),
        (serde_json::json!({"recurringProcessingModel": "CardOnFile", "shopperInteraction": "Telepathy"}), "shopperInteraction must be"),
    ] {
        let mut body = serde_json::json!({
            "amount": {"currency": "EUR", "value": 100}, "merchantAccount": MERCHANT, "reference": "flags",
            "paymentMethod": {"type": "scheme", "storedPaymentMethodId": stored}, "shopperReference": "C-0011",
        });
        for (k, v) in flags.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, answer) = raw(&sb.base, "/payments", None, API_KEY, &body.to_string()).await;
        assert_eq!(status, 422, "{answer}");
        assert!(answer["message"].as_str().unwrap().contains(says), "{answer}");
    }
});

#[test]
fn the_invoicing_bench_runs_through_a_sandbox_process_over_http() {
    // Issue #42 "Benchmark": `paystage bench invoicing` starts a sandbox process of its own and
    // reaches it over HTTP. The cards are entered on the sandbox's hosted page (the bench plays
    // the shopper; Paystage gets stored-card references only), the latency fault is the sandbox's,
    // and the sandbox is stopped and its folder removed afterwards.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_paystage"))
        .args(["bench", "invoicing", "--database", &url, "--orders", "6", "--concurrency", "3", "--latency-ms", "40"])
        .env("PAYSTAGE_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!((report["orders"].as_u64(), report["not_completed"].as_u64()), (Some(6), Some(0)), "{report}");
    assert!(report["p50_ms"].as_f64().unwrap() >= 40.0, "every invoicing waited for the sandbox's 40 ms: {report}");
    let sandbox_dir = stderr.split("log ").nth(1).and_then(|s| s.split("/sandbox.log").next()).expect("the bench names its sandbox's log");
    assert!(!std::path::Path::new(sandbox_dir).exists(), "{sandbox_dir} is removed");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = sea_orm::Database::connect(url.as_str()).await.unwrap();
        let caps = payments::entity::capture::Entity::find().all(&db).await.unwrap();
        assert_eq!(caps.len(), 6, "one capture per invoice");
        let sends = ps::Entity::find().all(&db).await.unwrap();
        let captures: Vec<_> = sends.iter().filter(|s| s.path.ends_with("/captures")).collect();
        assert_eq!(captures.len(), 6, "each capture went over HTTP: {sends:?}");
        assert!(captures.iter().all(|c| c.attempts == 1), "once: {captures:?}");
        let lines = payments::entity::payment_line::Entity::find().all(&db).await.unwrap();
        assert!(
            lines.iter().all(|l| l.card_token.as_deref().is_some_and(|t| t.starts_with("shopper-") && t.contains(':'))),
            "every card is a reference to a card stored on the sandbox's page: {:?}",
            lines.iter().map(|l| &l.card_token).collect::<Vec<_>>()
        );
    });
}

db_test!(captures_sent_at_once_are_each_recorded_and_sent_once_and_a_reused_id_is_refused, |db| {
    // Issue #42 (R-CAP-5), hostile: 24 captures and a 25th reusing the first one's tracking id for
    // another payment, all sent at once through one connector. Every capture is recorded before
    // it is sent and sent once; of the two with the same id, whichever was recorded first goes
    // and the other is refused and sends nothing; the processor's references are noted for each
    // (the refunds, also all at once, find their payments through them).
    let sb = start(None, true).await;
    let clock: SharedClock = db.services.clock.clone();
    let adyen = Arc::new(AdyenConnector::new(settings(&sb.base), db.services.db.clone(), clock).unwrap());
    const N: usize = 24;
    let mut auths = Vec::new();
    for i in 0..N {
        let token = hosted_card(&sb.base, &format!("C-G{i:03}"), "4111111111111111").await;
        auths.push(adyen.authorize(&format!("t-g-auth-{i}"), &token, eur(10_000), SHOPPER).await.unwrap());
    }
    let mut calls = Vec::new();
    for (i, a) in auths.iter().enumerate() {
        let (adyen, reference) = (adyen.clone(), a.reference.clone());
        calls.push(tokio::spawn(async move { adyen.capture(&format!("t-g-cap-{i}"), &reference, eur(4_000), false).await }));
    }
    // The same tracking id as the first capture, for another amount, sent with them.
    let reused = {
        let (adyen, reference) = (adyen.clone(), auths[1].reference.clone());
        tokio::spawn(async move { adyen.capture("t-g-cap-0", &reference, eur(1_000), false).await })
    };
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.unwrap());
    }
    answers.push(reused.await.unwrap());
    // Whichever of the two requests with that id was recorded first is sent; the other is refused
    // (R-CAP-5), the rest all go through.
    let refused: Vec<_> = answers.iter().filter(|a| a.is_err()).collect();
    assert_eq!(refused.len(), 1, "{answers:?}");
    assert!(matches!(refused[0], Err(ConnectorError::Invalid(m)) if m.contains("used for another request")), "{refused:?}");
    assert!(answers[0].is_err() != answers[N].is_err(), "one of the two with tracking id t-g-cap-0");
    let captures: Vec<_> = answers.into_iter().filter_map(Result::ok).collect();
    assert_eq!(captures.len(), N);

    let sends = ps::Entity::find().all(&db.services.db).await.unwrap();
    let capture_sends: Vec<_> = sends.iter().filter(|s| s.path.ends_with("/captures")).collect();
    assert_eq!(capture_sends.len(), N, "one record per capture, none for the refused one");
    assert!(capture_sends.iter().all(|s| s.attempts == 1 && s.psp_reference.is_some() && s.payment_psp_reference.is_some()), "{capture_sends:?}");
    let captured: i64 = captures.iter().map(|c| c.amount.minor()).sum();
    let ledger = ledger_totals(sb.sandbox.store()).await.unwrap();
    assert_eq!((ledger.captures, ledger.captured), (N as u64, captured), "the processor captured each once: {ledger:?}");

    // Refunds of all of them at once, each finding its payment.
    let mut refunds = Vec::new();
    for (i, c) in captures.iter().enumerate() {
        let (adyen, reference) = (adyen.clone(), c.reference.clone());
        refunds.push(tokio::spawn(async move { adyen.refund(&format!("t-g-ref-{i}"), &reference, eur(500)).await }));
    }
    for r in refunds {
        assert_eq!(r.await.unwrap().unwrap().amount, eur(500));
    }
    let ledger = ledger_totals(sb.sandbox.store()).await.unwrap();
    assert_eq!(ledger.refunded, 500 * N as i64, "{ledger:?}");
});

#[test]
fn a_bench_that_cannot_open_its_database_leaves_no_sandbox_running() {
    // The bench's sandbox process is stopped on every way out: here the database cannot be
    // reached, after the sandbox has started.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_paystage"))
        .args(["bench", "invoicing", "--database", "sqlite:///proc/no-such-folder/bench.db?mode=rwc", "--orders", "1"])
        .env("PAYSTAGE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let marker = format!("paystage-bench-{}", child.id());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success() && stderr.contains("cannot open"), "{status:?}: {stderr}");
    let running = || {
        std::fs::read_dir("/proc").unwrap().filter_map(Result::ok).any(|p| {
            std::fs::read(p.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while running() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!running(), "no process of {marker} is left");
}
