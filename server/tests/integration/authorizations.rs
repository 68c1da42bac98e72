//! The authorization lifecycle against real databases (SQLite and PostgreSQL): the expiry job
//! (R-AUT-3, R-AUT-4), moved through time by the injected clock instead of sleeping.
use payments::db_test;
use payments::domain::order::{AuthorizationStatus, PaymentStatus};
use payments::domain::pipeline::ProcessStatus;
use payments::entity::{audit_log, sales_order};
use payments::pipeline::{self, invariants};
use payments::service::jobs::{expire_authorizations, ExpiryReport};
use payments::service::{orders, setup};
use payments::testing::{card_order, enable_pipeline, fixture, OrderBuilder};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

db_test!(an_authorization_expires_after_the_ar_days_and_holds_its_order, |db| {
    // R-AUT-3: no pre-authorization duration for the store → AR "Number of days before expired" (7
    // with enable_pipeline). R-AUT-4: payment back to Pending Authorization, order held.
    let s = &db.services;
    let (_fx, placed, d) = card_order(s, "Tent", 2, "150.00").await;
    assert_eq!(d.authorizations[0].expires_at - d.authorizations[0].authorized_at, chrono::Duration::days(7));
    // The overview's counts follow the authorization through its life: with 7 days left it
    // counts as expiring within 7 days.
    use payments::service::standing::standing;
    let st = standing(s).await.unwrap();
    assert_eq!((st.expiring_soon, st.pending_authorization, st.orders_on_hold, st.incomplete_processes), (1, 0, 0, 0));

    db.clock.advance(chrono::Duration::days(7) - chrono::Duration::seconds(1));
    assert_eq!(expire_authorizations(s).await.unwrap(), ExpiryReport::default(), "one second before expiry nothing happens");
    assert_eq!(standing(s).await.unwrap().expiring_soon, 1, "expires in one second");

    db.clock.advance(chrono::Duration::seconds(1));
    let r = expire_authorizations(s).await.unwrap();
    assert_eq!((r.expired, r.pending_authorization, r.declined, r.orders_held, r.batches), (1, 1, 0, 1, 1));
    let d = orders::detail(s, placed.order_id).await.unwrap();
    assert_eq!(d.authorizations[0].status, AuthorizationStatus::Expired);
    assert_eq!(d.payments[0].status, PaymentStatus::PendingAuthorization);
    assert!(d.order.do_not_process, "the order is held");
    let listed = orders::list(&s.db, &held_filter(), 1).await.unwrap();
    assert_eq!(listed.rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![placed.order_id], "listed under Do not process");
    let st = standing(s).await.unwrap();
    assert_eq!((st.expiring_soon, st.pending_authorization, st.orders_on_hold), (0, 1, 1), "the overview counts the held order");
    let audited = audit_log::Entity::find().filter(audit_log::Column::Action.eq("job.expiry")).count(&s.db).await.unwrap();
    assert_eq!(audited, 1);

    // Idempotent: a second run finds nothing more.
    assert_eq!(expire_authorizations(s).await.unwrap(), ExpiryReport::default());

    // R-AUT-3/4: the held order cannot be invoiced (an expired authorization is never captured);
    // the refusal is clear and writes nothing.
    let q: Vec<(i32, i32)> = d.lines.iter().map(|l| (l.id, 1)).collect();
    let err = pipeline::invoice(s, "finance", placed.order_id, &q).await.unwrap_err();
    assert_eq!(err.code(), "PS_ORDER_ON_HOLD", "{err}");
    assert!(err.to_string().contains("on hold (Do not process); take a new payment first"), "{err}");
    assert_eq!(payments::entity::invoice::Entity::find().count(&s.db).await.unwrap(), 0);
    assert!(invariants::check(s).await.unwrap().clean());
});

db_test!(the_store_pre_authorization_duration_wins_over_the_ar_days, |db| {
    // R-AUT-3: Visa at this store keeps its authorization 3 days, not the AR 7.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    setup::save_pre_authorization_duration(s, "admin", &fx.pos.to_string(), "visa", "3").await.unwrap();
    let placed = OrderBuilder::new(&fx).channel(fx.pos).line("Lamp", 1, "20.00").place(s).await;
    db.clock.advance(chrono::Duration::days(3));
    let r = expire_authorizations(s).await.unwrap();
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
    let r = expire_authorizations(s).await.unwrap();
    assert_eq!((r.expired, r.declined, r.pending_authorization, r.orders_held), (2, 1, 1, 2));
    assert_eq!(orders::detail(s, web.order_id).await.unwrap().payments[0].status, PaymentStatus::Declined);
    assert_eq!(orders::detail(s, store.order_id).await.unwrap().payments[0].status, PaymentStatus::PendingAuthorization);
});

fn held_filter() -> payments::domain::payment_views::OrderFilter {
    payments::domain::payment_views::OrderFilter { status: Some("do_not_process".into()), ..Default::default() }
}

/// Orders on hold as the Sales orders page's Do not process filter counts them.
async fn held(s: &payments::service::Services) -> u64 {
    orders::list(&s.db, &held_filter(), 1).await.unwrap().total
}

db_test!(one_expiry_run_expires_everything_due_and_skips_what_is_captured, |db| {
    // One run, one short transaction, however many are due; fully captured authorizations have
    // nothing left to expire and are left alone.
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
    let r = expire_authorizations(s).await.unwrap();
    assert_eq!((r.expired, r.batches, r.orders_held), (5, 1, 5));
    assert_eq!(held(s).await, 5);
    let d = orders::detail(s, captured).await.unwrap();
    assert_eq!(d.authorizations[0].status, AuthorizationStatus::FullyCaptured);
    assert!(invariants::check(s).await.unwrap().clean());
});

db_test!(two_expiry_runs_at_once_expire_each_authorization_exactly_once, |db| {
    // R-AUT-4 with two servers: two runs of the job at the same moment queue on the expiry
    // watermark, so every due authorization is expired (and counted) by one run only, every order
    // held once, and nothing fails.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let mut placed = Vec::new();
    for i in 0..14 {
        placed.push(OrderBuilder::new(&fx).line("Lamp", 1 + i % 3, "9.50").place(s).await.order_id);
    }
    db.clock.advance(chrono::Duration::days(30));
    let other = s.clone();
    let (a, b) = tokio::join!(expire_authorizations(s), expire_authorizations(&other));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.expired + b.expired, 14, "each authorization expired by exactly one run: {a:?} {b:?}");
    assert_eq!(a.orders_held + b.orders_held, 14, "{a:?} {b:?}");
    assert_eq!(a.pending_authorization + b.pending_authorization, 14, "{a:?} {b:?}");
    let audited: Vec<audit_log::Model> = audit_log::Entity::find().filter(audit_log::Column::Action.eq("job.expiry")).all(&s.db).await.unwrap();
    let in_audit: i64 = audited
        .iter()
        .map(|e| e.after.as_deref().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()).and_then(|v| v["expired"].as_i64()).unwrap_or(0))
        .sum();
    assert_eq!(in_audit, 14, "the runs' audit entries add up to what expired");
    for id in placed {
        let d = orders::detail(s, id).await.unwrap();
        assert_eq!(d.authorizations[0].status, AuthorizationStatus::Expired);
        assert_eq!(d.payments[0].status, PaymentStatus::PendingAuthorization);
    }
    assert_eq!(held(s).await, 14);
    assert_eq!(expire_authorizations(s).await.unwrap(), ExpiryReport::default(), "nothing is left for a third run");
});

db_test!(the_expiry_bench_expires_every_authorization, |db| {
    // `paystage bench expiry` at a small size: the bulk-created authorizations all expire.
    let s = &db.services;
    let r = server::bench::expiry(s, 2_500).await.unwrap();
    assert_eq!((r.authorizations, r.expired, r.orders_held), (2_500, 2_500, 2_500), "{r:?}");
    assert!(r.seconds > 0.0 && r.peak_rss_mb > 0.0, "{r:?}");
    assert!(server::bench::expiry(s, 0).await.is_err(), "zero authorizations is refused");
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

db_test!(an_authorization_expires_with_the_run_after_its_expiry_not_before, |db| {
    // R-AUT-3/4 with the watermark: a run expires what is due at its moment. An authorization that
    // falls due after the last run still reads Authorized (its page shows it past expiry by the
    // clock), and the next run expires it.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let first = OrderBuilder::new(&fx).line("Lamp", 1, "20.00").place(s).await.order_id;
    db.clock.advance(chrono::Duration::days(2));
    let second = OrderBuilder::new(&fx).line("Desk", 1, "90.00").ship_in(2).place(s).await.order_id;
    db.clock.advance(chrono::Duration::days(6)); // day 8: the first is due (7 days), the second at day 9
    let r = expire_authorizations(s).await.unwrap();
    assert_eq!((r.expired, r.pending_authorization, r.orders_held), (1, 1, 1));
    db.clock.advance(chrono::Duration::days(2)); // day 10, no run yet
    let d = orders::detail(s, second).await.unwrap();
    assert_eq!((d.payments[0].status, d.authorizations[0].status), (PaymentStatus::Authorized, AuthorizationStatus::Open));
    assert!(d.authorizations[0].expired && !d.order.do_not_process, "past expiry by the clock, not yet expired by a run");
    assert_eq!(held(s).await, 1);
    let r = expire_authorizations(s).await.unwrap();
    assert_eq!((r.expired, r.pending_authorization, r.orders_held), (1, 1, 1), "only the second is new");
    let d = orders::detail(s, second).await.unwrap();
    assert_eq!((d.payments[0].status, d.authorizations[0].status), (PaymentStatus::PendingAuthorization, AuthorizationStatus::Expired));
    assert_eq!(held(s).await, 2);
    assert_eq!(orders::detail(s, first).await.unwrap().payments[0].status, PaymentStatus::PendingAuthorization);
});

db_test!(expiry_is_stored_on_an_order_when_it_next_changes, |db| {
    // The job writes no order's rows; every reader applies it, and the first change to an order
    // stores it there (settles), so the change starts from the states R-AUT-4 gives. Here the
    // change is an invoice, refused because the order is held: the refusal writes nothing, the
    // rows stay as they were, and the pages still show the hold.
    use payments::entity::{authorization, payment_line};
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).channel(fx.online).line("Mug", 1, "8.00").place(s).await.order_id;
    db.clock.advance(chrono::Duration::days(8));
    assert_eq!(expire_authorizations(s).await.unwrap().declined, 1);
    let stored = |id: i32| async move {
        let o = sales_order::Entity::find_by_id(id).one(&s.db).await.unwrap().unwrap();
        let l = payment_line::Entity::find().filter(payment_line::Column::OrderId.eq(id)).one(&s.db).await.unwrap().unwrap();
        let a = authorization::Entity::find().filter(authorization::Column::OrderId.eq(id)).one(&s.db).await.unwrap().unwrap();
        (o.do_not_process, l.status, a.status)
    };
    assert_eq!(stored(placed).await, (false, "authorized".to_string(), "open".to_string()), "the run wrote no row of the order");
    let d = orders::detail(s, placed).await.unwrap();
    assert_eq!((d.order.do_not_process, d.payments[0].status, d.authorizations[0].status), (true, PaymentStatus::Declined, AuthorizationStatus::Expired));
    let q: Vec<(i32, i32)> = d.lines.iter().map(|l| (l.id, 1)).collect();
    assert!(pipeline::invoice(s, "finance", placed, &q).await.is_err(), "held");
    assert_eq!(stored(placed).await.0, false, "a refused change writes nothing");
    assert!(orders::detail(s, placed).await.unwrap().order.do_not_process);

    // Settling stores exactly what the readers showed, and settling again changes nothing.
    let o = sales_order::Entity::find_by_id(placed).one(&s.db).await.unwrap().unwrap();
    let settled = payments::service::expiry::settle(&s.db, o).await.unwrap();
    assert!(settled.do_not_process);
    assert_eq!(stored(placed).await, (true, "declined".to_string(), "expired".to_string()));
    let again = payments::service::expiry::settle(&s.db, settled.clone()).await.unwrap();
    assert_eq!(again, settled);
    let after = orders::detail(s, placed).await.unwrap();
    assert_eq!((after.order.do_not_process, after.payments[0].status, after.authorizations[0].status), (true, PaymentStatus::Declined, AuthorizationStatus::Expired));
    assert_eq!(held(s).await, 1, "counted once, settled or not");
    assert_eq!(payments::service::standing::standing(s).await.unwrap().orders_on_hold, 1);
});

db_test!(the_sweep_stores_expiry_on_the_rows_in_bounded_batches_and_readers_see_no_change, |db| {
    // After a run, the sweep (`store_expired`) writes the states the watermark gives into the
    // rows, a bounded batch per transaction. Two sweeps at once (two servers) store each
    // authorization once; every page and count reads the same before and after.
    use payments::entity::authorization;
    use payments::service::expiry::store_expired;
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(OrderBuilder::new(&fx).line("Pen", 1 + i, "2.00").place(s).await.order_id);
    }
    ids.push(OrderBuilder::new(&fx).channel(fx.online).line("Mug", 1, "8.00").place(s).await.order_id);
    db.clock.advance(chrono::Duration::days(8));
    let r = expire_authorizations(s).await.unwrap();
    assert_eq!((r.expired, r.pending_authorization, r.declined, r.orders_held), (6, 5, 1, 6));
    let seen = || async {
        let mut v = Vec::new();
        for id in &ids {
            let d = orders::detail(s, *id).await.unwrap();
            v.push((d.order.do_not_process, d.payments[0].status, d.authorizations[0].status));
        }
        let st = payments::service::standing::standing(s).await.unwrap();
        (v, st.pending_authorization, st.orders_on_hold, held(s).await)
    };
    let before = seen().await;
    assert_eq!(before.0[5], (true, PaymentStatus::Declined, AuthorizationStatus::Expired));
    assert_eq!((before.1, before.2, before.3), (5, 6, 6));
    let stored_expired = || async {
        authorization::Entity::find().filter(authorization::Column::Status.eq("expired")).count(&s.db).await.unwrap()
    };
    assert_eq!(stored_expired().await, 0, "the job itself writes no authorization");

    let other = s.clone();
    let (a, b) = tokio::join!(store_expired(s, 2), store_expired(&other, 2));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.authorizations + b.authorizations, a.lines + b.lines, a.orders + b.orders), (6, 6, 6), "{a:?} {b:?}");
    assert!(a.batches + b.batches >= 3, "at most 2 per batch: {a:?} {b:?}");
    assert_eq!(stored_expired().await, 6);
    let stored_held = sales_order::Entity::find().filter(sales_order::Column::DoNotProcess.eq(true)).count(&s.db).await.unwrap();
    assert_eq!(stored_held, 6);
    assert_eq!(seen().await, before, "pages and counts read the same once stored");
    assert_eq!(store_expired(s, 2).await.unwrap(), Default::default(), "nothing is left to store");
    assert!(invariants::check(s).await.unwrap().clean());
});
