//! The authorization lifecycle against real databases (SQLite and PostgreSQL): the expiry job
//! (R-AUT-3, R-AUT-4), moved through time by the injected clock instead of sleeping.
use payments::db_test;
use payments::domain::order::{AuthorizationStatus, PaymentStatus};
use payments::domain::pipeline::ProcessStatus;
use payments::entity::{audit_log, sales_order};
use payments::pipeline::{self, invariants};
use payments::service::jobs::{expire_authorizations, ExpiryReport};
use payments::service::{orders, setup};
use payments::testing::{enable_pipeline, fixture, OrderBuilder};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

db_test!(an_authorization_expires_after_the_ar_days_and_holds_its_order, |db| {
    // R-AUT-3: no pre-authorization duration for the store → AR "Number of days before expired" (7
    // with enable_pipeline). R-AUT-4: payment back to Pending Authorization, order held.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Tent", 2, "150.00").place(s).await;
    let d = orders::detail(s, placed.order_id).await.unwrap();
    assert_eq!(d.authorizations[0].expires_at - d.authorizations[0].authorized_at, chrono::Duration::days(7));
    // The overview's counts follow the authorization through its life: with 7 days left it
    // counts as expiring within 7 days.
    use payments::service::standing::standing;
    let st = standing(s).await.unwrap();
    assert_eq!((st.expiring_soon, st.pending_authorization, st.orders_on_hold, st.incomplete_processes), (1, 0, 0, 0));

    db.clock.advance(chrono::Duration::days(7) - chrono::Duration::seconds(1));
    assert_eq!(expire_authorizations(s, 100).await.unwrap(), ExpiryReport::default(), "one second before expiry nothing happens");
    assert_eq!(standing(s).await.unwrap().expiring_soon, 1, "expires in one second");

    db.clock.advance(chrono::Duration::seconds(1));
    let r = expire_authorizations(s, 100).await.unwrap();
    assert_eq!((r.expired, r.pending_authorization, r.declined, r.orders_held, r.batches), (1, 1, 0, 1, 1));
    let d = orders::detail(s, placed.order_id).await.unwrap();
    assert_eq!(d.authorizations[0].status, AuthorizationStatus::Expired);
    assert_eq!(d.payments[0].status, PaymentStatus::PendingAuthorization);
    let order = sales_order::Entity::find_by_id(placed.order_id).one(&s.db).await.unwrap().unwrap();
    assert!(order.do_not_process, "the order is held");
    let st = standing(s).await.unwrap();
    assert_eq!((st.expiring_soon, st.pending_authorization, st.orders_on_hold), (0, 1, 1), "the overview counts the held order");
    let audited = audit_log::Entity::find().filter(audit_log::Column::Action.eq("job.expiry")).count(&s.db).await.unwrap();
    assert_eq!(audited, 1);

    // Idempotent: a second run finds nothing more.
    assert_eq!(expire_authorizations(s, 100).await.unwrap(), ExpiryReport::default());

    // R-AUT-3/4: the held order cannot be invoiced (an expired authorization is never captured);
    // the refusal is clear and writes nothing.
    let q: Vec<(i32, i32)> = d.lines.iter().map(|l| (l.id, 1)).collect();
    let err = pipeline::invoice(s, "finance", placed.order_id, &q).await.unwrap_err().to_string();
    assert!(err.contains("on hold (Do not process); take a new payment first"), "{err}");
    assert_eq!(payments::entity::invoice::Entity::find().count(&s.db).await.unwrap(), 0);
    assert!(invariants::check(&s.db).await.unwrap().clean());
});

db_test!(the_store_pre_authorization_duration_wins_over_the_ar_days, |db| {
    // R-AUT-3: Visa at this store keeps its authorization 3 days, not the AR 7.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    setup::save_pre_authorization_duration(s, "admin", &fx.pos.to_string(), "visa", "3").await.unwrap();
    let placed = OrderBuilder::new(&fx).channel(fx.pos).line("Lamp", 1, "20.00").place(s).await;
    db.clock.advance(chrono::Duration::days(3));
    let r = expire_authorizations(s, 100).await.unwrap();
    assert_eq!(r.expired, 1);
    let d = orders::detail(s, placed.order_id).await.unwrap();
    assert_eq!(d.authorizations[0].status, AuthorizationStatus::Expired);
});

db_test!(online_storefront_payments_become_declined_on_expiry, |db| {
    // R-AUT-4: for online storefront orders the payment is set to Declined.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let web = OrderBuilder::new(&fx).channel(fx.online).line("Mug", 2, "8.00").place(s).await;
    let store = OrderBuilder::new(&fx).channel(fx.pos).line("Mug", 1, "8.00").place(s).await;
    db.clock.advance(chrono::Duration::days(8));
    let r = expire_authorizations(s, 100).await.unwrap();
    assert_eq!((r.expired, r.declined, r.pending_authorization, r.orders_held), (2, 1, 1, 2));
    assert_eq!(orders::detail(s, web.order_id).await.unwrap().payments[0].status, PaymentStatus::Declined);
    assert_eq!(orders::detail(s, store.order_id).await.unwrap().payments[0].status, PaymentStatus::PendingAuthorization);
});

db_test!(expiry_runs_in_bounded_batches_and_skips_what_is_captured, |db| {
    // Bounded batches, each its own transaction; fully captured authorizations have nothing left
    // to expire and are left alone.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let mut open = Vec::new();
    for i in 0..5 {
        open.push(OrderBuilder::new(&fx).line("Pen", 1 + i, "2.00").place(s).await.order_id);
    }
    let captured = OrderBuilder::new(&fx).line("Book", 1, "12.00").place(s).await.order_id;
    let d = orders::detail(s, captured).await.unwrap();
    let out = pipeline::invoice(s, "finance", captured, &[(d.lines[0].id, 1)]).await.unwrap();
    assert_eq!(out.status, ProcessStatus::Completed);
    db.clock.advance(chrono::Duration::days(30));
    let r = expire_authorizations(s, 2).await.unwrap();
    assert_eq!((r.expired, r.batches, r.orders_held), (5, 3, 5), "5 in batches of 2");
    let held = sales_order::Entity::find().filter(sales_order::Column::DoNotProcess.eq(true)).count(&s.db).await.unwrap();
    assert_eq!(held, 5);
    let d = orders::detail(s, captured).await.unwrap();
    assert_eq!(d.authorizations[0].status, AuthorizationStatus::FullyCaptured);
    assert!(invariants::check(&s.db).await.unwrap().clean());
});

db_test!(two_expiry_runs_at_once_expire_each_authorization_exactly_once, |db| {
    // R-AUT-4 with two servers: two runs of the job at the same moment (on PostgreSQL each run is
    // two workers on disjoint shares of the orders, and the runs skip each other's locked rows)
    // expire every due authorization once, hold every order once, and fail nothing.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let mut placed = Vec::new();
    for i in 0..14 {
        placed.push(OrderBuilder::new(&fx).line("Lamp", 1 + i % 3, "9.50").place(s).await.order_id);
    }
    db.clock.advance(chrono::Duration::days(30));
    let other = s.clone();
    let (a, b) = tokio::join!(expire_authorizations(s, 3), expire_authorizations(&other, 3));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.expired + b.expired, 14, "each authorization expired by exactly one run: {a:?} {b:?}");
    assert_eq!(a.orders_held + b.orders_held, 14, "{a:?} {b:?}");
    assert_eq!(a.pending_authorization + b.pending_authorization, 14, "{a:?} {b:?}");
    let audited: Vec<audit_log::Model> = audit_log::Entity::find().filter(audit_log::Column::Action.eq("job.expiry")).all(&s.db).await.unwrap();
    let in_audit: i64 = audited
        .iter()
        .map(|e| e.after.as_deref().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()).and_then(|v| v["expired"].as_i64()).unwrap_or(0))
        .sum();
    assert_eq!(in_audit, 14, "the batches' audit entries add up to what expired");
    for id in placed {
        let d = orders::detail(s, id).await.unwrap();
        assert_eq!(d.authorizations[0].status, AuthorizationStatus::Expired);
        assert_eq!(d.payments[0].status, PaymentStatus::PendingAuthorization);
    }
    let held = sales_order::Entity::find().filter(sales_order::Column::DoNotProcess.eq(true)).count(&s.db).await.unwrap();
    assert_eq!(held, 14);
    assert_eq!(expire_authorizations(s, 3).await.unwrap(), ExpiryReport::default(), "nothing is left for a third run");
});

db_test!(the_expiry_bench_expires_every_authorization, |db| {
    // `paystage bench expiry` at a small size: the bulk-created authorizations all expire.
    let s = &db.services;
    let r = payments::bench::expiry(s, 2_500).await.unwrap();
    assert_eq!((r.authorizations, r.expired, r.orders_held), (2_500, 2_500, 2_500), "{r:?}");
    assert!(r.seconds > 0.0 && r.peak_rss_mb > 0.0, "{r:?}");
    assert!(payments::bench::expiry(s, 0).await.is_err(), "zero authorizations is refused");
});

db_test!(rows_the_expiry_job_updates_have_room_to_be_updated_in_place, |db| {
    // R-AUT-4 at scale (migration 7): on PostgreSQL the tables whose rows the expiry job and
    // invoicing update keep a fifth of each page free (fillfactor 80), so an update that changes
    // no indexed column can stay on its page without new index entries. SQLite has no such
    // setting; there the migration must leave the schema alone.
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let s = &db.services;
    if s.db.get_database_backend() == DbBackend::Postgres {
        let rows = s
            .db
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT relname::text AS t, array_to_string(reloptions, ',') AS o FROM pg_class \
                 WHERE relname IN ('sales_orders', 'payment_lines', 'authorizations') AND relkind = 'r' ORDER BY relname",
            ))
            .await
            .unwrap();
        let found: Vec<(String, Option<String>)> =
            rows.iter().map(|r| (r.try_get("", "t").unwrap(), r.try_get("", "o").unwrap())).collect();
        let want = |t: &str| (t.to_string(), Some("fillfactor=80".to_string()));
        assert_eq!(found, vec![want("authorizations"), want("payment_lines"), want("sales_orders")]);
    }
    // On both databases the migration is recorded as applied (on SQLite it has nothing to do).
    let applied = s
        .db
        .query_all_raw(Statement::from_string(
            s.db.get_database_backend(),
            "SELECT version FROM seaql_migrations WHERE version = 'm20261130_000007_hot_update_room'",
        ))
        .await
        .unwrap();
    assert_eq!(applied.len(), 1);
});
