//! HTTP round trips against the real router on a real port, on SQLite and PostgreSQL: the role
//! matrix over every server function, the page guard, origin checks, cookie flags, and start-up errors.
use payments::db_test;
use payments::entity::{audit_log, connector_merchant_property, feature, parameter, pre_authorization_duration, user, user_role};
use payments::service::bootstrap::{bootstrap, BootstrapOptions};
use payments::testing::TestDb;
use reqwest::{header, redirect, Client, StatusCode};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use server::config::Config;
use std::collections::BTreeSet;

struct TestApp {
    base: String,
    password: String,
    _site: tempfile::TempDir,
}

async fn spawn(db: &TestDb) -> TestApp {
    spawn_with(db, &[]).await
}

/// [`spawn`] with more configuration, as `(variable, value)`.
async fn spawn_with(db: &TestDb, extra: &[(&str, &str)]) -> TestApp {
    let password = payments::service::access::generate_password();
    bootstrap(&db.services, &BootstrapOptions { demo: true, admin_password: None, demo_password: Some(password.clone()), demo_orders: false })
        .await
        .unwrap();
    let site = tempfile::tempdir().unwrap();
    let url = db.url.clone();
    let site_root = site.path().display().to_string();
    let config = Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "PAYSTAGE_PORT" => Some("0".into()),
        "PAYSTAGE_SITE_ROOT" => Some(site_root.clone()),
        other => extra.iter().find(|(k, _)| *k == other).map(|(_, v)| v.to_string()),
    })
    .unwrap();
    let listener = server::bind(&config).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = server::router(&config, db.services.clone(), addr);
    tokio::spawn(async move { axum_serve(listener, app).await });
    TestApp { base: format!("http://{addr}"), password, _site: site }
}

async fn axum_serve(listener: tokio::net::TcpListener, app: axum::Router) {
    server::serve(listener, app).await.unwrap();
}

fn client() -> Client {
    // A request that gets no answer fails the test with the URL it waited on instead of stalling
    // the whole run (one full run hung once in `pages_are_guarded_on_the_server`, idle, and did
    // not reproduce; this makes the next occurrence say where).
    Client::builder()
        .cookie_store(true)
        .redirect(redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn signed_in(app: &TestApp, username: &str) -> Client {
    let c = client();
    let res = c
        .post(format!("{}/api/login", app.base))
        .form(&[("username", username), ("password", app.password.as_str()), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success() || res.status().is_redirection(), "sign-in of {username}: {}", res.status());
    c
}

/// Records the payment pages' calls act on: an order with an open line, two incomplete payment
/// processes (journal fault), a card token and a fault.
struct Ids {
    order: i32,
    line: i32,
    resume: i32,
    terminate: i32,
    token: String,
    fault: i32,
    /// An authorized card payment line (R-AUT-2 adjustment).
    adjust_line: i32,
    /// An order whose authorization expired and is held (R-AUT-4/5), and its payment line.
    expired_order: i32,
    expired_line: i32,
    /// A card on file of customer 1.
    card: i32,
    /// Two prepayment orders paid in cash (R-PRE-2): one to pick up, one to cancel; a POS store.
    pick_up: i32,
    cancel: i32,
    pos: i32,
}

async fn payment_records(db: &TestDb) -> Ids {
    use payments::service::orders::{self, CardForm, LineForm, OrderForm};
    let s = &db.services;
    payments::testing::enable_pipeline(s, true).await;
    let card = |t: payments::connector::CardToken| CardForm { token: t.token, card_type: t.card_type, last_four: t.last_four, holder: t.holder, expiry: t.expiry };
    let mut made = Vec::new();
    for _ in 0..3 {
        let t = s.connector.tokenize(payments::connector::CardEntry { number: "4111111111111111".into(), expiry: "12/30".into(), holder: "Jamie".into() }).await.unwrap();
        let form = OrderForm {
            customer_id: "1".into(),
            channel_id: "3".into(),
            currency: "USD".into(),
            tax_percent: "0".into(),
            charges: "0".into(),
            lines: vec![LineForm { item: "Tent".into(), quantity: "2".into(), unit_price: "100.00".into(), requested_ship_date: "2026-12-01".into() }],
            card: card(t),
            ..Default::default()
        };
        let placed = orders::place(s, "finance", &form).await.unwrap();
        made.push((placed.order_id, orders::detail(s, placed.order_id).await.unwrap().lines[0].id));
    }
    let mut processes = Vec::new();
    for (order, line) in &made[1..] {
        payments::connector::faults::add(&s.db, s.now(), "journal", "error_before", "1", "1", "").await.unwrap();
        processes.push(payments::pipeline::invoice(s, "finance", *order, &[(*line, 1)]).await.unwrap().process_id);
    }
    let fault = payments::connector::faults::add(&s.db, s.now(), "void", "latency", "1", "", "5").await.unwrap();
    let token = s.connector.tokenize(payments::connector::CardEntry { number: "5555555555554444".into(), expiry: "12/30".into(), holder: "Alex".into() }).await.unwrap().token;
    let t = s.connector.tokenize(payments::connector::CardEntry { number: "4111111111111111".into(), expiry: "12/30".into(), holder: "Jamie".into() }).await.unwrap();
    let saved = payments::service::cards::add(s, "finance", 1, &card(t), true).await.unwrap();
    let payment_line = |order: i32| async move {
        payments::entity::payment_line::Entity::find()
            .filter(payments::entity::payment_line::Column::OrderId.eq(order))
            .one(&db.services.db)
            .await
            .unwrap()
            .unwrap()
            .id
    };
    let adjust_line = payment_line(made[0].0).await;
    // A fourth order whose authorization has expired: Pending Authorization, held.
    let t = s.connector.tokenize(payments::connector::CardEntry { number: "4111111111111111".into(), expiry: "12/30".into(), holder: "Jamie".into() }).await.unwrap();
    let form = OrderForm {
        customer_id: "1".into(),
        channel_id: "3".into(),
        currency: "USD".into(),
        lines: vec![LineForm { item: "Lamp".into(), quantity: "1".into(), unit_price: "40.00".into(), requested_ship_date: "2026-12-01".into() }],
        card: card(t),
        ..Default::default()
    };
    let expired_order = orders::place(s, "finance", &form).await.unwrap().order_id;
    payments::entity::authorization::Entity::update_many()
        .col_expr(payments::entity::authorization::Column::ExpiresAt, sea_orm::sea_query::Expr::value(s.now() - chrono::Duration::days(1)))
        .filter(payments::entity::authorization::Column::OrderId.eq(expired_order))
        .exec(&s.db)
        .await
        .unwrap();
    payments::service::jobs::expire_authorizations(s).await.unwrap();
    let expired_line = payment_line(expired_order).await;
    let pos = payments::entity::channel::Entity::find()
        .filter(payments::entity::channel::Column::Kind.eq("pos_store"))
        .one(&s.db)
        .await
        .unwrap()
        .expect("a POS store")
        .id;
    let mut prepaid = Vec::new();
    for _ in 0..2 {
        let form = OrderForm {
            customer_id: "1".into(),
            channel_id: pos.to_string(),
            currency: "USD".into(),
            lines: vec![LineForm { item: "Chair".into(), quantity: "1".into(), unit_price: "50.00".into(), requested_ship_date: "2026-12-01".into() }],
            prepayment: true,
            deposit: payments::service::prepayments::DepositForm { deposit: "15.00".into(), cash: "15.00".into(), customer_account: String::new() },
            ..Default::default()
        };
        prepaid.push(orders::place(s, "finance", &form).await.unwrap().order_id);
    }
    Ids {
        pick_up: prepaid[0],
        cancel: prepaid[1],
        pos,
        order: made[0].0,
        line: made[0].1,
        resume: processes[0],
        terminate: processes[1],
        token,
        fault,
        adjust_line,
        expired_order,
        expired_line,
        card: saved.id,
    }
}

/// Everything an administrator can change, for before/after comparison.
async fn snapshot(db: &TestDb) -> String {
    let s = &db.services.db;
    let payments_state = format!(
        "{:?}|{:?}|{:?}|{:?}",
        payments::entity::sales_order::Entity::find().all(s).await.unwrap().len(),
        payments::entity::invoice::Entity::find().all(s).await.unwrap().len(),
        payments::entity::payment_process::Entity::find().order_by_asc(payments::entity::payment_process::Column::Id).all(s).await.unwrap().iter().map(|p| p.status.clone()).collect::<Vec<_>>(),
        payments::entity::sim_fault::Entity::find().all(s).await.unwrap().len(),
    );
    let features = feature::Entity::find().order_by_asc(feature::Column::Key).all(s).await.unwrap();
    let params = parameter::Entity::find().order_by_asc(parameter::Column::Key).all(s).await.unwrap();
    let users = user::Entity::find().order_by_asc(user::Column::Id).all(s).await.unwrap();
    let roles = user_role::Entity::find().order_by_asc(user_role::Column::UserId).order_by_asc(user_role::Column::Role).all(s).await.unwrap();
    let cmp = connector_merchant_property::Entity::find().all(s).await.unwrap();
    let pad = pre_authorization_duration::Entity::find().all(s).await.unwrap();
    let audit = audit_log::Entity::find()
        .filter(audit_log::Column::Action.not_like("sign_%"))
        .all(s)
        .await
        .unwrap();
    format!(
        "{payments_state}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        features.iter().map(|f| (&f.key, f.enabled)).collect::<Vec<_>>(),
        params.iter().map(|p| (&p.key, &p.value)).collect::<Vec<_>>(),
        users.iter().map(|u| (&u.username, &u.password_hash)).collect::<Vec<_>>(),
        roles,
        cmp,
        pad,
        audit.len()
    )
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Anonymous,
    Admin,
    Finance,
    CallCenter,
}

/// Every server function, who may call it, and a request that would change something.
fn matrix(ids: &Ids) -> Vec<(&'static str, &'static [Who], String)> {
    use Who::*;
    const ADMIN: &[Who] = &[Admin];
    const ORDERS: &[Who] = &[Finance, CallCenter];
    const FINANCE: &[Who] = &[Finance];
    const ANYONE: &[Who] = &[Anonymous, Admin, Finance, CallCenter];
    vec![
        ("/api/login", ANYONE, String::new()),
        ("/api/logout", ANYONE, String::new()),
        ("/api/current_user", ANYONE, String::new()),
        ("/api/features_overview", ADMIN, String::new()),
        ("/api/toggle_feature", ADMIN, "key=improve_cards_payment_flow&enable=yes".into()),
        ("/api/parameters_page", ADMIN, "group=commerce".into()),
        (
            "/api/save_parameters",
            ADMIN,
            "group=commerce&values[commerce_default_deposit_percent]=50&values[commerce_cancellation_charge_percent]=5".into(),
        ),
        ("/api/connectors_overview", ADMIN, String::new()),
        (
            "/api/save_merchant_properties",
            ADMIN,
            "connector_id=1&channel_id=1&enable_request_protection=no&non_incremental_capture_methods=visa".into(),
        ),
        ("/api/save_merchant_account", ADMIN, "connector_id=1&allow_multiple_partial_capture=no&is_default=yes".into()),
        ("/api/pre_authorization_setup", ADMIN, String::new()),
        ("/api/save_pre_authorization_duration", ADMIN, "channel_id=1&payment_type=discover&days=9".into()),
        ("/api/delete_pre_authorization_duration", ADMIN, "channel_id=1&payment_type=visa".into()),
        ("/api/audit_page", ADMIN, "page=1&action=&actor=".into()),
        ("/api/list_users", ADMIN, String::new()),
        (
            "/api/create_user",
            ADMIN,
            "username=mallory&display_name=Mallory&password=a+long+password+1&role_administrator=on".into(),
        ),
        ("/api/set_user_roles", ADMIN, "user_id=3&role_administrator=on".into()),
        ("/api/list_customers", &[Finance, CallCenter], String::new()),
        ("/api/list_orders", ORDERS, "status=&customer=&channel=&page=1".into()),
        ("/api/order_detail", ORDERS, format!("id={}", ids.order)),
        ("/api/invoice_order", FINANCE, format!("order_id={}&quantities[{}]=1", ids.order, ids.line)),
        ("/api/credit_order", FINANCE, format!("order_id={}&quantities[{}]=1", ids.order, ids.line)),
        ("/api/new_order_choices", ORDERS, String::new()),
        (
            "/api/place_order",
            ORDERS,
            format!(
                "customer_id=1&channel_id=1&currency=USD&tax_percent=0&charges=0&lines[item_1]=Lamp&lines[quantity_1]=1\
                 &lines[unit_price_1]=10.00&lines[ship_date_1]=2026-12-01&token={}&card_type=Mastercard&last_four=4444&holder=Alex&expiry=12/30\
                 &order_kind=customer_order&saved_card_id=&confirmed=",
                ids.token
            ),
        ),
        ("/api/saved_cards", ORDERS, "customer_id=1".into()),
        ("/api/customer_cards", ORDERS, "customer_id=1".into()),
        (
            "/api/add_customer_card",
            ORDERS,
            format!("customer_id=2&token={}&card_type=Mastercard&last_four=4444&holder=Alex&expiry=12/30&agreed=yes", ids.token),
        ),
        ("/api/delete_customer_card", ORDERS, format!("customer_id=1&card_id={}", ids.card)),
        ("/api/authorization_list", ORDERS, "status=pending_authorization&page=1".into()),
        ("/api/authorization_detail", ORDERS, format!("payment_line_id={}", ids.expired_line)),
        ("/api/void_expired_line", FINANCE, format!("payment_line_id={}", ids.expired_line)),
        ("/api/adjust_payment", ORDERS, format!("payment_line_id={}&amount=150.00", ids.adjust_line)),
        ("/api/new_payment_form", ORDERS, format!("order_id={}", ids.expired_order)),
        (
            "/api/take_new_payment",
            ORDERS,
            format!(
                "order_id={}&token={}&card_type=Mastercard&last_four=4444&holder=Alex&expiry=12/30&saved_card_id=&confirmed=",
                ids.expired_order, ids.token
            ),
        ),
        ("/api/incomplete_payments", FINANCE, String::new()),
        ("/api/payment_standing", ANYONE, String::new()),
        ("/api/resume_payment", FINANCE, format!("process_id={}", ids.resume)),
        ("/api/terminate_payment", FINANCE, format!("process_id={}&reason=settled+by+bank+transfer", ids.terminate)),
        ("/api/payment_history", FINANCE, format!("process_id={}", ids.resume)),
        ("/api/simulator_overview", ADMIN, String::new()),
        ("/api/add_fault", ADMIN, "point=capture&kind=latency&rate=1&times=1&latency_ms=5".into()),
        ("/api/remove_fault", ADMIN, format!("id={}", ids.fault)),
        ("/api/pick_up_order", ORDERS, format!("order_id={}&cash=35.00", ids.pick_up)),
        ("/api/cancellation_preview", FINANCE, format!("order_id={}", ids.cancel)),
        ("/api/cancel_order", FINANCE, format!("order_id={}&charge=", ids.cancel)),
        ("/api/deposit_choices", ORDERS, String::new()),
        ("/api/take_account_deposit", ORDERS, format!("customer_id=1&channel_id={}&currency=USD&amount=10.00", ids.pos)),
        ("/api/list_journals", FINANCE, "order=&customer=&kind=&from=&to=&page=1".into()),
    ]
}

db_test!(every_server_function_checks_the_role_on_the_server, |db| {
    let app = spawn(&db).await;
    let ids = payment_records(&db).await;
    // The matrix must name every registered server function, so a new one cannot be forgotten.
    let registered: BTreeSet<String> =
        leptos::server_fn::axum::server_fn_paths().map(|(p, _)| p.to_string()).collect();
    let listed: BTreeSet<String> = matrix(&ids).into_iter().map(|(p, _, _)| p.to_string()).collect();
    assert_eq!(registered, listed, "the role matrix must list exactly the registered server functions");

    let before = snapshot(&db).await;
    for who in [Who::Anonymous, Who::Finance, Who::CallCenter, Who::Admin] {
        let c = match who {
            Who::Anonymous => client(),
            Who::Finance => signed_in(&app, "finance").await,
            Who::CallCenter => signed_in(&app, "callcenter").await,
            Who::Admin => signed_in(&app, "admin").await,
        };
        for (path, allowed, body) in matrix(&ids) {
            if allowed.contains(&who) {
                continue;
            }
            let res = c
                .post(format!("{}{path}", app.base))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let expected = if who == Who::Anonymous { StatusCode::UNAUTHORIZED } else { StatusCode::FORBIDDEN };
            assert_eq!(res.status(), expected, "{who:?} calling {path}");
        }
    }
    assert_eq!(snapshot(&db).await, before, "refused calls changed nothing");

    // The same requests from an administrator go through and do change things: the bodies are real.
    let admin = signed_in(&app, "admin").await;
    let finance = signed_in(&app, "finance").await;
    for (path, allowed, body) in matrix(&ids).into_iter().filter(|(_, allowed, _)| !allowed.contains(&Who::Anonymous)) {
        let c = if allowed.contains(&Who::Admin) { &admin } else { &finance };
        let res = c
            .post(format!("{}{path}", app.base))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_success() || res.status().is_redirection(),
            "allowed call of {path}: {} {}",
            res.status(),
            res.text().await.unwrap_or_default()
        );
    }
    assert_ne!(snapshot(&db).await, before);
    let created = payments::service::access::find_by_username(&db.services.db, "mallory").await.unwrap();
    assert!(created.is_some());
    let statuses: Vec<String> = payments::entity::payment_process::Entity::find()
        .order_by_asc(payments::entity::payment_process::Column::Id)
        .all(&db.services.db)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.status)
        .collect();
    assert_eq!(
        statuses,
        vec!["completed", "terminated", "completed", "completed", "completed"],
        "resumed, terminated, the new invoice, the credit note, and the pickup's invoice"
    );
});

db_test!(pages_are_guarded_on_the_server, |db| {
    let app = spawn(&db).await;
    let anon = client().get(format!("{}/admin/features", app.base)).send().await.unwrap();
    assert_eq!(anon.status(), StatusCode::SEE_OTHER);
    assert_eq!(anon.headers()[header::LOCATION], "/login?next=/admin/features");
    let finance = signed_in(&app, "finance").await;
    for path in ["/admin/features", "/admin/users", "/admin/audit", "/parameters/commerce", "/parameters/connectors"] {
        let res = finance.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(res.text().await.unwrap().contains("No access"));
    }
    let res = finance.get(format!("{}/customers", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains("Contoso Retail"), "the page is rendered on the server with its data");
    let admin = signed_in(&app, "admin").await;
    let res = admin.get(format!("{}/admin/features", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("Omni-channel Commerce order payments"));
    let missing = admin.get(format!("{}/no/such/page", app.base)).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
});

db_test!(session_cookie_is_http_only_and_strict, |db| {
    let app = spawn(&db).await;
    let res = client()
        .post(format!("{}/api/login", app.base))
        .form(&[("username", "finance"), ("password", app.password.as_str()), ("next", "/")])
        .send()
        .await
        .unwrap();
    let cookie = res.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_string()).find(|c| c.starts_with("paystage_session="));
    let cookie = cookie.expect("a session cookie is set");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "not Secure without TLS: {cookie}");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
});

db_test!(a_foreign_origin_cannot_change_anything, |db| {
    let app = spawn(&db).await;
    let admin = signed_in(&app, "admin").await;
    let before = snapshot(&db).await;
    let res = admin
        .post(format!("{}/api/toggle_feature", app.base))
        .header(header::ORIGIN, "http://evil.example")
        .form(&[("key", "improve_cards_payment_flow"), ("enable", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(snapshot(&db).await, before);
    let res = admin
        .post(format!("{}/api/toggle_feature", app.base))
        .header(header::ORIGIN, app.base.clone())
        .form(&[("key", "improve_cards_payment_flow"), ("enable", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_ne!(snapshot(&db).await, before);
});

db_test!(refusals_come_back_as_typed_errors, |db| {
    // R-FEA-2 over HTTP: the message names the missing prerequisites.
    let app = spawn(&db).await;
    let admin = signed_in(&app, "admin").await;
    let res = admin
        .post(format!("{}/api/toggle_feature", app.base))
        .form(&[("key", "incremental_capture"), ("enable", "yes")])
        .send()
        .await
        .unwrap();
    assert!(!res.status().is_success());
    let body: serde_json::Value = res.json().await.unwrap();
    let msg = body["Refused"].as_str().expect("a Refused error");
    assert!(msg.contains("Omni-channel Commerce order payments") && msg.contains("Omni-channel payments"), "{msg}");
    let res = admin
        .post(format!("{}/api/save_parameters", app.base))
        .body("group=commerce&values[commerce_default_deposit_percent]=101&values[commerce_cancellation_charge_percent]=5")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["Invalid"]["fields"][0]["field"], "commerce_default_deposit_percent");
    let p = payments::service::parameters::load(&db.services.db).await.unwrap();
    assert_eq!(p.default_deposit_percent().to_string(), "10");
});

#[test]
fn a_bad_setting_stops_start_up_with_one_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_paystage"))
        .env("PAYSTAGE_PORT", "web")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim(), "paystage: PAYSTAGE_PORT: \"web\" is not a port number (0-65535)");
}

#[test]
fn a_port_in_use_stops_start_up_with_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_paystage"))
        .env("PAYSTAGE_PORT", port.to_string())
        .env("DATABASE_URL", format!("sqlite://{}/p.db", dir.path().display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        format!("paystage: PAYSTAGE_PORT: 127.0.0.1:{port} is already in use; stop the other program or choose another port")
    );
}

#[test]
fn migrate_creates_the_database_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nested/m.db");
    for _ in 0..2 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_paystage"))
            .arg("migrate")
            .env("DATABASE_URL", format!("sqlite://{}", db.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Migrations applied to sqlite://"));
    }
    assert!(db.exists(), "the SQLite file and its folder are created");
}

db_test!(the_web_shop_takes_an_order_with_a_nonrecurring_token_over_http, |db| {
    // R-TOK-7 and R-TOK-1, through real HTTP: the shopper types the card on the processor's page
    // only, is sent back with a token, pays; the order is on the online store channel, paid with a
    // nonrecurring token, and nothing is saved on file. Bad input is refused and writes nothing.
    let app = spawn(&db).await;
    payments::testing::enable_nonrecurring_tokens(&db.services).await;
    let c = client();
    let page = c.get(format!("{}/shop", app.base)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Enter your card on the secure payment page"));
    let res = c
        .post(format!("{}/processor/acceptance", app.base))
        .form(&[("return", "/shop"), ("number", "4111 1111 1111 1111"), ("expiry", "10/30"), ("holder", "Sam Shopper")])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection());
    let location = res.headers()[header::LOCATION].to_str().unwrap().to_string();
    assert!(location.starts_with("/shop?token=") && !location.contains("4111111111111111"), "{location}");
    let query: Vec<(String, String)> = url_pairs(location.split_once('?').unwrap().1);
    let mut form: Vec<(String, String)> = query.clone();
    form.extend([("email".into(), "not-an-email".into()), ("name".into(), "Sam Shopper".into()), ("quantity_1".into(), "2".into())]);
    let refused = c.post(format!("{}/shop", app.base)).form(&form).send().await.unwrap().text().await.unwrap();
    assert!(refused.contains("Enter your e-mail address"), "{refused}");
    assert_eq!(payments::entity::sales_order::Entity::find().all(&db.services.db).await.unwrap().len(), 0);

    let mut form = query.clone();
    form.extend([("email".into(), "Sam@Shop.example".into()), ("name".into(), "Sam Shopper".into()), ("quantity_1".into(), "2".into()), ("quantity_3".into(), "1".into())]);
    let done = c.post(format!("{}/shop", app.base)).form(&form).send().await.unwrap().text().await.unwrap();
    assert!(done.contains("Thank you") && done.contains("SO-"), "{done}");
    let orders = payments::entity::sales_order::Entity::find().all(&db.services.db).await.unwrap();
    assert_eq!(orders.len(), 1);
    let d = payments::service::orders::detail(&db.services, orders[0].id).await.unwrap();
    assert_eq!(d.order.channel_kind, payments::domain::views::ChannelKind::OnlineStore);
    assert_eq!(d.order.total.minor(), 2 * 12900 + 3495);
    assert_eq!(d.payments[0].token_kind, payments::domain::tokens::TokenKind::Nonrecurring);
    assert_eq!(d.payments[0].status, payments::domain::order::PaymentStatus::Authorized);
    assert!(payments::entity::customer_card::Entity::find().all(&db.services.db).await.unwrap().is_empty(), "nothing saved on file");
    // The same shopper again: the customer account is found by e-mail, not opened twice.
    c.post(format!("{}/shop", app.base)).form(&form).send().await.unwrap();
    let shoppers = payments::entity::customer::Entity::find()
        .filter(payments::entity::customer::Column::Email.eq("sam@shop.example"))
        .all(&db.services.db)
        .await
        .unwrap();
    assert_eq!(shoppers.len(), 1);
    assert!(shoppers[0].account.starts_with("WEB-"));
});

fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let bytes = v.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' && i + 2 < bytes.len() {
                    out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                    i += 1;
                }
            }
            (k.to_string(), String::from_utf8(out).unwrap())
        })
        .collect()
}

db_test!(probes_from_outside_no_longer_reproduce, |db| {
    // Issue #40: the probes a review sent to a running server, without signing in.
    let app = spawn(&db).await;
    let anon = client();
    // HEAD of the journals export answered 200 with the CSV's length: every method is guarded.
    for method in [reqwest::Method::HEAD, reqwest::Method::GET] {
        let res = anon.request(method.clone(), format!("{}/journals.csv?customer=a", app.base)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{method}");
        assert!(res.headers()[header::LOCATION].to_str().unwrap().starts_with("/login?next="), "{method}");
        assert!(res.headers().get(header::CONTENT_LENGTH).is_none_or(|l| l == "0"), "{method}: no length of the export leaks");
    }
    let post = anon.post(format!("{}/journals.csv", app.base)).header(header::ORIGIN, &app.base).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::UNAUTHORIZED);
    // Paths in no page table are refused, not passed on (deny by default).
    for path in ["/etc/passwd", "/parameters/nope", "/admin", "/orders/1/nope"] {
        let res = anon.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // The processor page's return address: a tab (dropped by browsers) made `//attacker.test`.
    let res = anon
        .post(format!("{}/processor/acceptance", app.base))
        .header(header::ORIGIN, &app.base)
        .form(&[("return", "/\t/attacker.test"), ("number", "4111111111111111"), ("expiry", "12/30"), ("holder", "Jamie Rivera")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()[header::LOCATION].to_str().unwrap().to_string();
    assert!(location.starts_with("/orders/new?token="), "{location}");
    // Sign-in with a `next` holding CR LF made the handler panic; a tab or another site is not followed.
    for next in ["/\r\nSet-Cookie: x=1", "/\t/attacker.test", "//attacker.test", "https://attacker.test/", "/\\attacker.test"] {
        let c = client();
        let res = c
            .post(format!("{}/api/login", app.base))
            .header(header::ORIGIN, &app.base)
            .form(&[("username", "finance"), ("password", app.password.as_str()), ("next", next)])
            .send()
            .await
            .unwrap();
        assert!(res.status().is_redirection() || res.status().is_success(), "{next:?}: {}", res.status());
        if let Some(l) = res.headers().get(header::LOCATION) {
            assert_eq!(l, "/", "{next:?}");
        }
    }
    // A 1 MiB body is refused before it is read whole.
    let big = "x".repeat(1024 * 1024);
    let res = anon
        .post(format!("{}/api/login", app.base))
        .header(header::ORIGIN, &app.base)
        .form(&[("username", "admin"), ("password", big.as_str()), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The server still answers.
    assert_eq!(anon.get(format!("{}/healthz", app.base)).send().await.unwrap().status(), StatusCode::OK);
});

#[test]
fn every_page_route_is_in_the_page_table() {
    // Issue #40, deny by default: a page route added without an entry in `app::nav`'s page table
    // would be refused by the guard as not found; this test names it first.
    use app::nav::{access, Access};
    let routes = leptos_axum::generate_route_list(app::App);
    assert!(routes.len() > 10, "{} routes", routes.len());
    for r in routes {
        let path = r.path().to_string();
        // The parameter groups are listed one by one; their route is one pattern.
        if path.contains("group") {
            continue;
        }
        let concrete: String = path
            .split('/')
            .map(|seg| if seg.starts_with(':') || seg.starts_with('{') { "1" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let ok = matches!(access(&concrete), Access::Page(_)) || access(&concrete) == Access::Public;
        assert!(ok, "route {path} is not in the page table");
    }
}

db_test!(strict_transport_security_only_behind_tls, |db| {
    // Issue #40: HSTS when cookies are Secure (the server is behind TLS), never on plain HTTP.
    let plain = spawn(&db).await;
    let res = client().get(format!("{}/healthz", plain.base)).send().await.unwrap();
    assert!(res.headers().get("strict-transport-security").is_none());
    let tls = spawn_with(&db, &[("PAYSTAGE_SECURE_COOKIES", "true")]).await;
    let res = client().get(format!("{}/healthz", tls.base)).send().await.unwrap();
    assert_eq!(res.headers()["strict-transport-security"], "max-age=31536000");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
});
