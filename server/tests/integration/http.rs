//! HTTP round trips against the real router on a real port, on SQLite and PostgreSQL: the role
//! matrix over every server function, the page guard, origin checks, cookie flags, and start-up errors.


use payments::db_test;
use reqwest::{header, Client, StatusCode};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use std::collections::BTreeSet;
use crate::support::*;

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
        vec!["completed", "terminated", "incomplete", "completed", "completed", "completed"],
        "resumed, terminated on a second approval, its termination asked (money moved), the new invoice, the credit note, and the pickup's invoice"
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
    // A refusal carries its stable code beside the message.
    assert_eq!(body["Refused"]["code"], "PS_FEATURE_PREREQUISITES", "{body}");
    let msg = body["Refused"]["message"].as_str().expect("a Refused error");
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
    let res = enter_card(&app.base, &c, "/shop", "4111 1111 1111 1111", "10/30", "Sam Shopper").await;
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
    let res = enter_card(&app.base, &anon, "/\t/attacker.test", "4111111111111111", "12/30", "Jamie Rivera").await;
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
    // The server still answers (on a new connection: the refused one may be closed by then).
    assert_eq!(client().get(format!("{}/healthz", app.base)).send().await.unwrap().status(), StatusCode::OK);
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

db_test!(sign_in_and_the_anonymous_shop_are_limited_per_address, |db| {
    // Issue #40: sign-in, the web shop and the acceptance page were open to any rate (password
    // guessing, card testing). Over the limit: 429 with Retry-After, and nothing is done.
    // Behind a proxy the server trusts, the address is the last X-Forwarded-For entry.
    let app = spawn_with(&db, &[("PAYSTAGE_TRUST_FORWARDED_FOR", "true")]).await;
    let c = client_from("203.0.113.5");
    let mut statuses = Vec::new();
    for _ in 0..=server::limits::SIGN_IN.burst {
        // A name no account can have: refused without hashing, so the loop is quick.
        let res = c.post(format!("{}/api/login", app.base)).form(&[("username", "!"), ("password", "x")]).send().await.unwrap();
        statuses.push(res.status());
    }
    assert!(statuses[..server::limits::SIGN_IN.burst as usize].iter().all(|s| *s == StatusCode::BAD_REQUEST), "{statuses:?}");
    let last = c.post(format!("{}/api/login", app.base)).form(&[("username", "finance"), ("password", app.password.as_str())]).send().await.unwrap();
    assert_eq!(last.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(last.headers()[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert!(last.text().await.unwrap().contains("Too many attempts"));
    // Anonymous checkouts are limited per address; nothing is written over the limit. (Cards are
    // typed on the processor's page, whose limits are the processor's: Paystage takes no card
    // number at all.)
    let orders_before = payments::entity::sales_order::Entity::find().all(&db.services.db).await.unwrap().len();
    let mut refused = 0;
    for _ in 0..=server::limits::SHOP.burst {
        let res = c.post(format!("{}/shop", app.base)).form(&[("email", "a@b.example")]).send().await.unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert_eq!(refused, 1);
    assert_eq!(payments::entity::sales_order::Entity::find().all(&db.services.db).await.unwrap().len(), orders_before, "no checkout over the limit wrote anything");
    let refuse = c.post(format!("{}/processor/acceptance", app.base)).form(&[("return", "/shop"), ("number", "4111111111111111")]).send().await.unwrap();
    assert_eq!(refuse.status(), StatusCode::METHOD_NOT_ALLOWED, "Paystage takes no card number");
    // Staff are signed in and not held to the shoppers' limit.
    let staff = signed_in_from(&app, "callcenter", "10.9.9.9").await;
    let res = enter_card(&app.base, &staff, "/orders/new", "4111111111111111", "12/30", "Jamie Rivera").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
});

db_test!(a_disabled_user_is_signed_out_at_once_and_sessions_have_an_absolute_lifetime, |db| {
    let app = spawn_with(&db, &[("PAYSTAGE_SESSION_MAX_HOURS", "2")]).await;
    let admin = signed_in(&app, "admin").await;
    let callcenter = signed_in(&app, "callcenter").await;
    let call = |c: &Client| c.post(format!("{}/api/list_customers", app.base)).form(&[("q", ""), ("inactive", "false")]).send();
    assert_eq!(call(&callcenter).await.unwrap().status(), StatusCode::OK);
    let res = admin.post(format!("{}/api/set_user_disabled", app.base)).form(&[("user_id", "3"), ("disable", "yes")]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(call(&callcenter).await.unwrap().status(), StatusCode::UNAUTHORIZED, "the session ended at once");
    let page = callcenter.get(format!("{}/orders", app.base)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER, "pages too send them to sign in");
    let again = client()
        .post(format!("{}/api/login", app.base))
        .form(&[("username", "callcenter"), ("password", app.password.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert!(again.text().await.unwrap().contains("disabled"));
    // An administrator cannot disable themselves.
    let res = admin.post(format!("{}/api/set_user_disabled", app.base)).form(&[("user_id", "1"), ("disable", "yes")]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    // Absolute lifetime: active all along, the finance session still ends two hours after sign-in.
    let finance = signed_in(&app, "finance").await;
    db.clock.advance(chrono::Duration::minutes(119));
    assert_eq!(call(&finance).await.unwrap().status(), StatusCode::OK);
    db.clock.advance(chrono::Duration::minutes(1));
    assert_eq!(call(&finance).await.unwrap().status(), StatusCode::UNAUTHORIZED);
});

db_test!(pages_carry_a_content_security_policy_with_their_script_nonce, |db| {
    // Issue #40: scripts and wasm from this site only; the inline hydration script by its nonce.
    let app = spawn(&db).await;
    let res = client().get(format!("{}/login", app.base)).send().await.unwrap();
    let csp = res.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_string();
    let html = res.text().await.unwrap();
    let nonce = csp.split("'nonce-").nth(1).and_then(|r| r.split('\'').next()).expect("a nonce in the policy").to_string();
    assert!(nonce.len() >= 16, "{csp}");
    assert!(html.contains(&format!("nonce=\"{nonce}\"")), "the hydration script carries the policy's nonce");
    assert!(csp.contains("script-src 'self' 'nonce-") && csp.contains("'wasm-unsafe-eval'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let other = client().get(format!("{}/login", app.base)).send().await.unwrap();
    assert_ne!(other.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap(), csp, "a new nonce per response");
    for path in ["/shop", "/processor/acceptance", "/healthz"] {
        let res = client().get(format!("{}{path}", app.base)).send().await.unwrap();
        let csp = res.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self';") && !csp.contains("nonce"), "{path}: {csp}");
    }
});

db_test!(the_web_shop_checks_the_card_first_and_never_matches_staff_customers, |db| {
    // Issue #40: a made-up token created a customer before the card was checked; an e-mail alone
    // attached the order to whichever customer had it; raw errors reached the shopper.
    let app = spawn(&db).await;
    let s = &db.services;
    let c = client();
    let customers = || async { payments::entity::customer::Entity::find().all(&db.services.db).await.unwrap().len() };
    let before = customers().await;
    let fake = [("token", "tok_made_up_12345"), ("card_type", "Visa"), ("last_four", "4242"), ("holder", "X"), ("expiry", "12/30"), ("email", "new@shop.example"), ("name", "New Shopper"), ("quantity_1", "1")];
    let page = c.post(format!("{}/shop", app.base)).form(&fake).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("does not know this card"), "{page}");
    assert_eq!(customers().await, before, "no customer was opened for an unchecked card");
    // A customer made by staff with that e-mail is not the shop's to match.
    use sea_orm::{ActiveModelTrait, Set};
    let staff_made = payments::entity::customer::ActiveModel { account: Set("C-9001".into()), name: Set("Real Person".into()), email: Set(Some("real@person.example".into())), ..Default::default() }
        .insert(&s.db)
        .await
        .unwrap();
    let token = s.enter_card_as_shopper(payments::connector::CardEntry { number: "5555555555554444".into(), expiry: "11/31".into(), holder: "Card Holder".into() }).await.unwrap();
    // The browser's card details are not believed: the processor's are stored.
    let form = [("token", token.token.as_str()), ("card_type", "Amex"), ("last_four", "0000"), ("holder", "Someone Else"), ("expiry", "01/99"), ("email", "real@person.example"), ("name", "Impostor"), ("quantity_1", "1")];
    let done = c.post(format!("{}/shop", app.base)).form(&form).send().await.unwrap().text().await.unwrap();
    assert!(done.contains("Thank you"), "{done}");
    let order = payments::entity::sales_order::Entity::find().all(&s.db).await.unwrap().pop().unwrap();
    assert_ne!(order.customer_id, staff_made.id, "an e-mail alone does not attach an order to a customer made by staff");
    let line = payments::entity::payment_line::Entity::find().filter(payments::entity::payment_line::Column::OrderId.eq(order.id)).one(&s.db).await.unwrap().unwrap();
    assert_eq!((line.card_type.as_deref(), line.last_four.as_deref(), line.holder.as_deref(), line.expiry.as_deref()), (Some(token.card_type.as_str()), Some("4444"), Some("Card Holder"), Some("11/31")));
    // One shop customer per e-mail on the channel, enforced by the database too.
    let web = payments::entity::customer::Entity::find_by_id(order.customer_id).one(&s.db).await.unwrap().unwrap();
    let twin = payments::entity::customer::ActiveModel { account: Set("WEB-TWIN".into()), name: Set("Twin".into()), email: Set(web.email.clone()), channel_id: Set(web.channel_id), ..Default::default() }
        .insert(&s.db)
        .await;
    assert!(twin.is_err(), "a second customer with the same e-mail on the shop's channel is refused");
    // A declined card: the shopper sees a generic message and a reference, not the processor's text.
    let declined = s.enter_card_as_shopper(payments::connector::CardEntry { number: "4000000000000002".into(), expiry: "11/31".into(), holder: "Dee Clined".into() }).await.unwrap();
    let form = [("token", declined.token.as_str()), ("email", "dee@shop.example"), ("name", "Dee"), ("quantity_1", "1")];
    let page = c.post(format!("{}/shop", app.base)).form(&form).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("was not authorized") && page.contains("reference"), "{page}");
    assert!(!page.contains("issuer"), "the processor's own words stay in the log: {page}");
});

async fn signed_in_from(app: &TestApp, username: &str, addr: &str) -> Client {
    let c = client_from(addr);
    let res = c.post(format!("{}/api/login", app.base)).form(&[("username", username), ("password", app.password.as_str())]).send().await.unwrap();
    assert!(res.status().is_success() || res.status().is_redirection(), "sign-in of {username} from {addr}: {}", res.status());
    c
}

db_test!(responses_are_compressed_and_static_files_revalidated, |db| {
    // Issue #41 (delivery): the wasm bundle went out uncompressed with no cache headers.
    let app = spawn(&db).await;
    let pkg = app._site.path().join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    let body = ".rule { color: #123456; }\n".repeat(4000);
    std::fs::write(pkg.join("big.css"), &body).unwrap();
    let url = format!("{}/pkg/big.css", app.base);
    // reqwest here decompresses nothing: the bytes on the wire are what is measured.
    for encoding in ["br", "gzip"] {
        let res = client().get(&url).header(header::ACCEPT_ENCODING, encoding).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_ENCODING], encoding);
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-cache");
        let last_modified = res.headers()[header::LAST_MODIFIED].clone();
        let wire = res.bytes().await.unwrap().len();
        assert!(wire * 10 < body.len(), "{encoding}: {wire} bytes for {}", body.len());
        let again = client().get(&url).header(header::IF_MODIFIED_SINCE, last_modified).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "an unchanged file is not sent again");
    }
    let plain = client().get(&url).header(header::ACCEPT_ENCODING, "identity").send().await.unwrap();
    assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
    assert_eq!(plain.bytes().await.unwrap().len(), body.len());
    // A release bundle's pre-compressed copy is sent as it is, not compressed again.
    std::fs::write(pkg.join("big.css.br"), b"made by build-site.sh").unwrap();
    let pre = client().get(&url).header(header::ACCEPT_ENCODING, "br").send().await.unwrap();
    assert_eq!(pre.headers()[header::CONTENT_ENCODING], "br");
    assert_eq!(pre.bytes().await.unwrap().as_ref(), b"made by build-site.sh");
    // The main module under its content-hashed name is kept for good; nothing else is.
    std::fs::write(pkg.join("paystage.0123456789abcdef.wasm"), b"\0asm").unwrap();
    let hashed = client().get(format!("{}/pkg/paystage.0123456789abcdef.wasm", app.base)).send().await.unwrap();
    assert_eq!(hashed.status(), StatusCode::OK);
    assert_eq!(hashed.headers()[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
    let missing = client().get(format!("{}/pkg/paystage.fedcba9876543210.wasm", app.base)).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.headers().get(header::CACHE_CONTROL).is_none_or(|v| v != "public, max-age=31536000, immutable"), "a miss is never cached for good");
    // Pages are compressed too.
    let page = client().get(format!("{}/login", app.base)).header(header::ACCEPT_ENCODING, "br").send().await.unwrap();
    assert_eq!(page.headers()[header::CONTENT_ENCODING], "br");
});

db_test!(the_webhook_endpoint_sits_outside_sessions_and_refuses_unsigned_batches, |db| {
    // Issue #42: a processor posts without a session or an Origin header; the endpoint is routed
    // (not the page table's 404, not the same-origin 403) and refuses what it cannot verify.
    let app = spawn(&db).await;
    let r = client().post(format!("{}/webhooks/adyen/adyen", app.base)).header("Content-Type", "application/json").body(r#"{"live":"false","notificationItems":[]}"#).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "no key is configured for this connector in the test server");
    let r = client().get(format!("{}/webhooks/adyen/adyen", app.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
});

db_test!(a_customer_id_no_customer_has_is_not_found_and_adds_nobody, |db| {
    // Issue #43: Save customer with id 0 adds one; any other id edits that customer, so a
    // negative or unknown id is not found (404) and adds nobody.
    use sea_orm::PaginatorTrait;
    let app = spawn(&db).await;
    let finance = signed_in(&app, "finance").await;
    let before = payments::entity::customer::Entity::find().count(&db.services.db).await.unwrap();
    for id in ["-1", "99999"] {
        let res = finance
            .post(format!("{}/api/save_customer", app.base))
            .form(&[("id", id), ("account", "C-7777"), ("name", "Nobody"), ("email", ""), ("phone", ""), ("billing_street", ""), ("billing_city", ""), ("billing_postal_code", ""), ("billing_country", "")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "id {id}");
    }
    assert_eq!(payments::entity::customer::Entity::find().count(&db.services.db).await.unwrap(), before);
});
