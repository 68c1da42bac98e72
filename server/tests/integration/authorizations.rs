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
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};

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

/// The processor's own record of authorization `reference`: (amount, status).
async fn at_processor(s: &payments::service::Services, reference: &str) -> (i64, String) {
    use payments::connector::simulator::entity::sim_authorization;
    let a = sim_authorization::Entity::find_by_id(reference.to_string()).one(payments::testing::sim(s)).await.unwrap().unwrap();
    (a.amount_minor, a.status)
}

db_test!(authorization_exposure_flags_holds_beyond_need_and_release_gives_back_exactly_the_excess, |db| {
    // Issue #44, seeds 001/002 ("open authorizations that exceed the order total"): per order,
    // the open holds against what it still has to charge; an order holding more is flagged and
    // Release gives the excess back at the processor, no cent more: the newest hold is kept
    // (the capture stage captures against it), an older one voided, the one hold the need
    // reaches partly adjusted down (R-AUT-2).
    use payments::error::ServiceError;
    use payments::domain::exposure::ExposureFilter;
    use payments::service::exposure;
    use payments::service::{authorizations, cancellation};
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let all = ExposureFilter { only_excess: false, customer_id: None };
    let flagged = ExposureFilter { only_excess: true, customer_id: None };

    // Covered: half invoiced on the incremental path, the other half held exactly.
    let covered = OrderBuilder::new(&fx).line("Tent", 2, "150.00").place(s).await;
    let d = orders::detail(s, covered.order_id).await.unwrap();
    pipeline::invoice(s, "finance", covered.order_id, &[(d.lines[0].id, 1)]).await.unwrap();
    // Over: its payment line edited up to 500.00 with the order still at 300.00.
    let over = OrderBuilder::new(&fx).line("Canoe", 1, "300.00").tax("8.25").place(s).await;
    let over_line = orders::detail(s, over.order_id).await.unwrap().payments[0].id;
    authorizations::adjust(s, "finance", over_line, "500.00").await.unwrap();
    // Cancelled, its authorization's void lost at the processor: everything it holds is excess.
    let cancelled = OrderBuilder::new(&fx).line("Kayak", 1, "420.00").place(s).await;
    s.faults().add(s.now(), "void", "error_before", "1", "1", "").await.unwrap();
    cancellation::cancel(s, "finance", cancelled.order_id, None).await.unwrap();

    let p = exposure::page(s, &all, 1).await.unwrap();
    let row = |number: &str| p.orders.iter().find(|o| o.order_number == number).cloned().unwrap_or_else(|| panic!("{number} not listed: {p:?}"));
    let c = row(&covered.number);
    assert_eq!((c.held.minor(), c.need.map(|n| n.minor()), c.excess.minor()), (15_000, Some(15_000), 0));
    let o = row(&over.number);
    assert_eq!((o.held.minor(), o.need.map(|n| n.minor()), o.excess.minor()), (50_000, Some(32_475), 17_525), "300.00 + 8.25 % = 324.75 needed");
    assert_eq!(o.release_steps.len(), 1);
    assert!(o.release_steps[0].starts_with("Adjust ") && o.release_steps[0].contains("from 500.00 USD to 324.75 USD"), "{:?}", o.release_steps);
    let x = row(&cancelled.number);
    assert_eq!((x.held.minor(), x.need.map(|n| n.minor()), x.excess.minor()), (42_000, Some(0), 42_000));
    assert!(x.release_steps[0].starts_with("Void "), "{:?}", x.release_steps);
    assert_eq!(p.orders.iter().map(|o| o.order_number.as_str()).take(2).collect::<Vec<_>>(), vec![cancelled.number.as_str(), over.number.as_str()], "largest excess first");
    assert_eq!((p.totals.len(), p.totals[0].held.minor(), p.totals[0].excess.minor(), p.totals[0].flagged), (1, 107_000, 59_525, 2));
    assert_eq!((p.customers[0].orders, p.customers[0].flagged, p.customers[0].excess.minor()), (3, 2, 59_525), "one customer holds all three");
    let only = exposure::page(s, &flagged, 1).await.unwrap();
    assert_eq!(only.total, 2, "only the flagged orders");
    let other = exposure::page(s, &ExposureFilter { only_excess: false, customer_id: Some(fx.customer_id + 1_000) }, 1).await.unwrap();
    assert_eq!(other.total, 0, "another customer has none");
    // Reconciliation shows the cancelled order's hold as its break, resolved by this page.
    let r = payments::service::reconciliation::report(s).await.unwrap();
    let holds: Vec<_> = r.breaks.iter().filter(|b| b.cause == payments::domain::reconciliation::BreakCause::OpenAuthorizationOnClosedOrder).collect();
    assert_eq!(holds.iter().map(|b| (b.order_number.as_str(), b.amount_minor)).collect::<Vec<_>>(), vec![(cancelled.number.as_str(), 42_000)]);
    assert!(holds[0].action.contains("Authorization exposure"));

    // Nothing to release on a covered order: refused, nothing sent.
    let requests_before = payments::entity::processor_request::Entity::find().count(&s.db).await.unwrap();
    let err = exposure::release_excess(s, "finance", covered.order_id).await.unwrap_err();
    assert_eq!(err.code(), "PS_NO_EXCESS_HELD", "{err}");
    assert_eq!(payments::entity::processor_request::Entity::find().count(&s.db).await.unwrap(), requests_before);

    // Release the over-held order: adjusted down to 324.75 at the processor and here.
    let over_auth = orders::detail(s, over.order_id).await.unwrap().authorizations[0].clone();
    let msg = exposure::release_excess(s, "finance", over.order_id).await.unwrap();
    assert!(msg.starts_with("175.25 USD of ") && msg.contains("adjusted"), "{msg}");
    assert_eq!(at_processor(s, &over_auth.processor_reference).await.0, 32_475);
    let after = orders::detail(s, over.order_id).await.unwrap();
    assert_eq!((after.authorizations[0].amount.minor(), after.payments[0].amount.minor()), (32_475, 32_475));
    // And it is still invoiced in full against that hold.
    let q: Vec<(i32, i32)> = after.lines.iter().map(|l| (l.id, 1)).collect();
    assert_eq!(pipeline::invoice(s, "finance", over.order_id, &q).await.unwrap().status, ProcessStatus::Completed);

    // Release the cancelled order's hold: voided at the processor, the break gone.
    let x_auth = orders::detail(s, cancelled.order_id).await.unwrap().authorizations[0].clone();
    let msg = exposure::release_excess(s, "finance", cancelled.order_id).await.unwrap();
    assert!(msg.contains("voided"), "{msg}");
    assert_eq!(at_processor(s, &x_auth.processor_reference).await.1, "voided");
    assert_eq!(orders::detail(s, cancelled.order_id).await.unwrap().payments[0].status, PaymentStatus::Voided);
    let r = payments::service::reconciliation::report(s).await.unwrap();
    assert!(r.breaks.is_empty(), "{:?}", r.breaks);
    let audited = audit_log::Entity::find().filter(audit_log::Column::Action.eq("authorization.release_excess")).count(&s.db).await.unwrap();
    assert_eq!(audited, 1, "the void is audited with who released it");
    let p = exposure::page(s, &flagged, 1).await.unwrap();
    assert_eq!((p.total, p.totals[0].excess.minor()), (0, 0), "nothing held beyond need: {p:?}");
    // A second click finds nothing to release and sends nothing.
    let err = exposure::release_excess(s, "finance", cancelled.order_id).await.unwrap_err();
    assert_eq!(err.code(), "PS_NO_EXCESS_HELD", "{err}");

    // While an order's payment is incomplete, its need is not known: not judged, not released.
    let waiting = OrderBuilder::new(&fx).line("Paddle", 2, "50.00").place(s).await;
    let w_line = orders::detail(s, waiting.order_id).await.unwrap();
    authorizations::adjust(s, "finance", w_line.payments[0].id, "250.00").await.unwrap();
    s.faults().add(s.now(), "journal", "error_before", "1", "1", "").await.unwrap();
    let inv = pipeline::invoice(s, "finance", waiting.order_id, &[(w_line.lines[0].id, 1)]).await.unwrap();
    assert_eq!(inv.status, ProcessStatus::Incomplete);
    let p = exposure::page(s, &all, 1).await.unwrap();
    let w = p.orders.iter().find(|o| o.order_number == waiting.number).unwrap();
    assert_eq!((w.need, w.excess.minor()), (None, 0));
    assert!(w.waiting.as_deref().unwrap().contains("incomplete"), "{:?}", w.waiting);
    let sent = payments::entity::processor_request::Entity::find().count(&s.db).await.unwrap();
    let err = exposure::release_excess(s, "finance", waiting.order_id).await.unwrap_err();
    assert_eq!(err.code(), "PS_PAYMENT_NOT_SETTLED", "{err}");
    assert!(matches!(err, ServiceError::Authorization(_)));
    assert_eq!(payments::entity::processor_request::Entity::find().count(&s.db).await.unwrap(), sent, "nothing sent");
    pipeline::resume(s, "finance", inv.process_id).await.unwrap();
    // Settled: 250.00 held, 50.00 captured, 50.00 left to charge → 150.00 beyond need.
    let p = exposure::page(s, &flagged, 1).await.unwrap();
    let w = p.orders.iter().find(|o| o.order_number == waiting.number).unwrap();
    assert_eq!((w.held.minor(), w.need.map(|n| n.minor()), w.excess.minor()), (20_000, Some(5_000), 15_000));
    assert!(invariants::check(s).await.unwrap().clean());
});

db_test!(the_expiry_forecast_counts_what_expiring_holds_put_at_risk_and_renewal_replaces_recurring_ones_before_they_expire, |db| {
    // Issue #44, seed 003, R-AUT-6: recurring authorizations are renewed the AR parameter's days
    // before expiry, for what their order still needs, the old hold voided once the new one is
    // in place; nonrecurring ones never are (R-AUT-3): their customers are listed to contact.
    use payments::domain::forecast::HORIZON_DAYS;
    use payments::domain::parameters::{keys, ParameterGroup};
    use payments::domain::tokens::TokenKind;
    use payments::entity::{authorization, customer};
    use payments::service::jobs::{renew_authorizations, RenewReport};
    use payments::service::{authorizations, exposure, forecast};
    use payments::testing::{enable_nonrecurring_tokens, set_parameters};
    use sea_orm::sea_query::Expr;
    let s = &db.services;
    let fx = fixture(s).await;
    enable_nonrecurring_tokens(s).await;
    set_parameters(s, ParameterGroup::AccountsReceivable, &[(keys::RENEW_DAYS_BEFORE_EXPIRY, "0")]).await;
    customer::Entity::update_many()
        .col_expr(customer::Column::Email, Expr::value("ap@contoso.example"))
        .col_expr(customer::Column::Phone, Expr::value("+1 555 0100"))
        .filter(customer::Column::Id.eq(fx.customer_id))
        .exec(&s.db)
        .await
        .unwrap();
    // R-TOK-3: a POS order shipping in 10 days, with the customer's consent, is tokenized.
    let consented = |item: &str, price: &str| OrderBuilder::new(&fx).channel(fx.pos).line(item, 1, price).ship_in(10).confirmed(payments::domain::tokens::Confirmation::Consent.code());
    let recurring = consented("Tent", "300.00").place(s).await;
    let over = consented("Stove", "200.00").place(s).await;
    let over_line = orders::detail(s, over.order_id).await.unwrap().payments[0].id;
    authorizations::adjust(s, "finance", over_line, "260.00").await.unwrap();
    let nonrecurring = OrderBuilder::new(&fx).channel(fx.pos).line("Lamp", 1, "80.00").ship_in(3).place(s).await;
    let kind = |id: i32| async move { orders::detail(s, id).await.unwrap().payments[0].token_kind };
    assert_eq!((kind(recurring.order_id).await, kind(over.order_id).await, kind(nonrecurring.order_id).await), (TokenKind::Recurring, TokenKind::Recurring, TokenKind::Nonrecurring));

    let p = forecast::page(s).await.unwrap();
    assert_eq!((p.horizon_days, p.renew_days_before, p.currencies.len()), (HORIZON_DAYS, 0, 1));
    let usd = &p.currencies[0];
    let day = usd.days.iter().find(|d| d.total_minor() > 0).unwrap();
    assert_eq!(day.date, (s.now() + chrono::Duration::days(7)).date_naive(), "the AR's 7 days");
    assert_eq!((day.recurring_minor, day.nonrecurring_minor, day.authorizations), (50_000, 8_000, 3), "only what the orders need: 260.00 held for 200.00 risks 200.00");
    assert_eq!(p.contacts.len(), 1);
    let c = &p.contacts[0];
    assert_eq!((c.order_number.as_str(), c.email.as_str(), c.phone.as_str(), c.at_risk.minor()), (nonrecurring.number.as_str(), "ap@contoso.example", "+1 555 0100", 8_000));
    assert_eq!(p.renewals.len(), 2);
    assert!(p.renewals.iter().all(|r| r.renews_from.is_none() && !r.due), "renewal is off");

    // Off: the job does nothing, even a day before expiry.
    db.clock.advance(chrono::Duration::days(6));
    assert_eq!(renew_authorizations(s).await.unwrap(), RenewReport::default());
    set_parameters(s, ParameterGroup::AccountsReceivable, &[(keys::RENEW_DAYS_BEFORE_EXPIRY, "2")]).await;
    let p = forecast::page(s).await.unwrap();
    assert!(p.renewals.iter().all(|r| r.due), "within two days of expiry: {:?}", p.renewals);

    // The void of the first old hold fails: its renewal stays in place and the next run voids it.
    s.faults().add(s.now(), "void", "error_before", "1", "1", "").await.unwrap();
    let r = renew_authorizations(s).await.unwrap();
    assert_eq!((r.renewed, r.released, r.declined, r.not_completed, r.nonrecurring), (2, 1, 0, 1, 1), "{r:?}");
    let r = renew_authorizations(s).await.unwrap();
    assert_eq!((r.renewed, r.released, r.nonrecurring), (0, 1, 1), "the old hold left is voided, nothing renewed twice: {r:?}");
    assert_eq!(renew_authorizations(s).await.unwrap().renewed, 0);

    for (placed, amount) in [(&recurring, 30_000), (&over, 20_000)] {
        let auths = authorization::Entity::find().filter(authorization::Column::OrderId.eq(placed.order_id)).order_by_asc(authorization::Column::Id).all(&s.db).await.unwrap();
        assert_eq!(auths.len(), 2, "{auths:?}");
        let (old, new) = (&auths[0], &auths[1]);
        assert_eq!((old.status.as_str(), new.status.as_str()), ("voided", "open"));
        assert_eq!((new.replaces_id, new.amount_minor), (Some(old.id), amount), "renewed for what the order needs");
        assert_eq!(new.expires_at, s.now() + chrono::Duration::days(7));
        assert_eq!(at_processor(s, &old.processor_reference).await.1, "voided");
        assert_eq!(at_processor(s, &new.processor_reference).await, (amount, "open".to_string()));
        let d = orders::detail(s, placed.order_id).await.unwrap();
        assert_eq!(d.payments[0].status, PaymentStatus::Authorized);
    }
    assert_eq!(exposure::page(s, &payments::domain::exposure::ExposureFilter { only_excess: true, customer_id: None }, 1).await.unwrap().total, 0, "the renewal gave back the excess too");

    // The old expiry passes: only the nonrecurring order is held; the renewed ones invoice.
    db.clock.advance(chrono::Duration::days(1));
    let e = expire_authorizations(s).await.unwrap();
    assert_eq!((e.expired, e.orders_held), (1, 1), "{e:?}");
    for placed in [&recurring, &over] {
        let d = orders::detail(s, placed.order_id).await.unwrap();
        assert!(!d.order.do_not_process);
        let q: Vec<(i32, i32)> = d.lines.iter().map(|l| (l.id, 1)).collect();
        assert_eq!(pipeline::invoice(s, "finance", placed.order_id, &q).await.unwrap().status, ProcessStatus::Completed);
    }
    assert!(orders::detail(s, nonrecurring.order_id).await.unwrap().order.do_not_process);
    let audited = audit_log::Entity::find().filter(audit_log::Column::Action.eq("authorization.renewed")).count(&s.db).await.unwrap();
    assert_eq!(audited, 2);
    assert!(invariants::check(s).await.unwrap().clean());
    assert!(payments::service::reconciliation::report(s).await.unwrap().breaks.is_empty());
});

db_test!(a_renewal_whose_answer_is_lost_is_resolved_by_recovery_and_never_authorized_twice, |db| {
    // R-AUT-6 with R-CAP-5: the processor authorizes the renewal but the answer is lost. The
    // order waits (no second renewal, nothing released); recovery asks the processor and records
    // the renewal as replacing the old hold, which the next run voids.
    use payments::domain::parameters::{keys, ParameterGroup};
    use payments::entity::{authorization, processor_request};
    use payments::service::jobs::{recover, renew_authorizations};
    use payments::testing::set_parameters;
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    set_parameters(s, ParameterGroup::AccountsReceivable, &[(keys::RENEW_DAYS_BEFORE_EXPIRY, "1")]).await;
    let placed = OrderBuilder::new(&fx).line("Tent", 1, "300.00").place(s).await;
    db.clock.advance(chrono::Duration::days(6));
    s.faults().add(s.now(), "authorize", "timeout_after", "1", "1", "").await.unwrap();
    s.faults().add(s.now(), "query", "error_before", "1", "1", "").await.unwrap();
    let r = renew_authorizations(s).await.unwrap();
    assert_eq!((r.renewed, r.not_completed), (0, 1), "{r:?}");
    let r = renew_authorizations(s).await.unwrap();
    assert_eq!((r.renewed, r.not_completed), (0, 0), "the unresolved renewal blocks another: {r:?}");
    let sent = processor_request::Entity::find().filter(processor_request::Column::Command.eq("authorize")).count(&s.db).await.unwrap();
    assert_eq!(sent, 2, "placement and one renewal");
    db.clock.advance(chrono::Duration::minutes(5));
    recover(s, 100).await.unwrap();
    let r = renew_authorizations(s).await.unwrap();
    assert_eq!((r.renewed, r.released), (0, 1), "{r:?}");
    let auths = authorization::Entity::find().filter(authorization::Column::OrderId.eq(placed.order_id)).order_by_asc(authorization::Column::Id).all(&s.db).await.unwrap();
    assert_eq!(auths.iter().map(|a| a.status.as_str()).collect::<Vec<_>>(), vec!["voided", "open"]);
    assert_eq!(auths[1].replaces_id, Some(auths[0].id));
    assert_eq!(simulator_authorizations(s).await, 2, "the processor authorized the renewal once");
    assert!(invariants::check(s).await.unwrap().clean());
});

async fn simulator_authorizations(s: &payments::service::Services) -> u64 {
    use payments::connector::simulator::entity::sim_authorization;
    sim_authorization::Entity::find().count(payments::testing::sim(s)).await.unwrap()
}

db_test!(two_users_releasing_the_same_excess_at_once_send_the_processor_one_void, |db| {
    // Hostile: two finance users press Release on the same order while the processor is slow.
    // The step is claimed under the order's lock, so one void goes out; the other user is told
    // the order's request is not settled yet, and nothing is released twice or audited twice.
    use payments::entity::processor_request;
    use payments::service::{cancellation, exposure};
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Kayak", 1, "420.00").place(s).await;
    s.faults().add(s.now(), "void", "error_before", "1", "1", "").await.unwrap();
    cancellation::cancel(s, "finance", placed.order_id, None).await.unwrap();
    s.faults().add(s.now(), "void", "latency", "1", "1", "400").await.unwrap();
    let (a, b) = tokio::join!(exposure::release_excess(s, "finance", placed.order_id), exposure::release_excess(s, "supervisor", placed.order_id));
    assert_eq!([&a, &b].iter().filter(|r| r.is_ok()).count(), 1, "{a:?} / {b:?}");
    let refused = if a.is_ok() { b.unwrap_err() } else { a.unwrap_err() };
    assert!(["PS_PAYMENT_NOT_SETTLED", "PS_NO_EXCESS_HELD", "PS_EXPOSURE_CHANGED"].contains(&refused.code()), "{refused}");
    let voids = processor_request::Entity::find()
        .filter(processor_request::Column::OrderId.eq(placed.order_id))
        .filter(processor_request::Column::Command.eq("void"))
        .filter(processor_request::Column::Status.eq("succeeded"))
        .count(&s.db)
        .await
        .unwrap();
    assert_eq!(voids, 1, "one void reached the processor");
    let audited = audit_log::Entity::find().filter(audit_log::Column::Action.eq("authorization.release_excess")).count(&s.db).await.unwrap();
    assert_eq!(audited, 1);
    let auth = orders::detail(s, placed.order_id).await.unwrap().authorizations[0].clone();
    assert_eq!(auth.status, AuthorizationStatus::Voided);
    assert!(invariants::check(s).await.unwrap().clean());
});

db_test!(the_renewal_job_never_voids_a_replaced_authorization_the_order_still_needs, |db| {
    // R-AUT-6 with R-CAP-3: the pipeline's fourth stage also records the authorization it follows
    // as replaced, while that one may still cover part of the order. The renewal job's first
    // step voids a replaced hold only when the order's exposure says none of it is needed.
    use payments::entity::authorization;
    use payments::service::jobs::renew_authorizations;
    use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Tent", 1, "300.00").place(s).await;
    let first = authorization::Entity::find().filter(authorization::Column::OrderId.eq(placed.order_id)).one(&s.db).await.unwrap().unwrap();
    // A second hold of 100.00 that names the first as replaced: 400.00 held for 300.00 needed.
    let mut second = first.clone().into_active_model();
    second.id = sea_orm::ActiveValue::NotSet;
    second.processor_reference = Set("auth_second".into());
    second.tracking_id = Set("second-tracking-id".into());
    second.amount_minor = Set(10_000);
    second.replaces_id = Set(Some(first.id));
    second.insert(&s.db).await.unwrap();
    let r = renew_authorizations(s).await.unwrap();
    assert_eq!(r.released, 0, "{r:?}");
    let now = authorization::Entity::find_by_id(first.id).one(&s.db).await.unwrap().unwrap();
    assert_eq!(now.status, "open", "200.00 of it is still needed: left for Authorization exposure to adjust");
    let p = payments::service::exposure::page(s, &payments::domain::exposure::ExposureFilter { only_excess: true, customer_id: None }, 1).await.unwrap();
    assert_eq!(p.orders[0].excess.minor(), 10_000);
});

db_test!(a_declined_renewal_leaves_the_payment_on_the_hold_it_was_to_replace, |db| {
    // R-AUT-6 with R-AUT-4: the issuer refuses the renewal (the card ran out of funds since the
    // order). The old authorization still holds the money until it expires, so the payment stays
    // Authorized and the order is not held; at expiry R-AUT-4 takes over as it always did.
    use payments::connector::simulator::entity::sim_token;
    use payments::domain::parameters::{keys, ParameterGroup};
    use payments::service::jobs::renew_authorizations;
    use sea_orm::sea_query::Expr;
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    payments::testing::set_parameters(s, ParameterGroup::AccountsReceivable, &[(keys::RENEW_DAYS_BEFORE_EXPIRY, "2")]).await;
    let placed = OrderBuilder::new(&fx).line("Tent", 1, "300.00").place(s).await;
    sim_token::Entity::update_many().col_expr(sim_token::Column::Behaviour, Expr::value("insufficient_funds")).exec(payments::testing::sim(s)).await.unwrap();
    db.clock.advance(chrono::Duration::days(6));
    let r = renew_authorizations(s).await.unwrap();
    assert_eq!((r.renewed, r.declined), (0, 1), "{r:?}");
    let d = orders::detail(s, placed.order_id).await.unwrap();
    assert_eq!(d.payments[0].status, PaymentStatus::Authorized, "the old hold still covers the order");
    assert_eq!(d.authorizations.iter().map(|a| a.status).collect::<Vec<_>>(), vec![AuthorizationStatus::Open]);
    assert!(!d.order.do_not_process);
    db.clock.advance(chrono::Duration::days(1));
    expire_authorizations(s).await.unwrap();
    let d = orders::detail(s, placed.order_id).await.unwrap();
    assert_eq!(d.payments[0].status, PaymentStatus::PendingAuthorization, "R-AUT-4 at expiry");
    assert!(d.order.do_not_process);
});
