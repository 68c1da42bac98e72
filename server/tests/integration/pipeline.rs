//! The invoice payment pipeline against real databases (SQLite and PostgreSQL) and the real
//! processor simulator: incremental and legacy capture, faults, resume, terminate, recovery after a
//! crash between intent and outcome, and the invariants after each.
use payments::connector::{faults, simulator};
use payments::db_test;
use payments::domain::capture::CaptureKind;
use payments::domain::order::{AuthorizationStatus, Command, DocumentKind, PaymentStatus};
use payments::domain::payment_views::OrderDetail;
use payments::domain::pipeline::{ProcessStatus, Stage, StageStatus};
use payments::entity::{audit_log, capture, payment_process, processor_request, process_stage};
use payments::pipeline::{self, invariants, queries, requests};
use payments::service::{orders, Services};
use payments::testing::{card_order, enable_pipeline, fixture, sim, Fixture, OrderBuilder, TestDb};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

async fn detail(s: &Services, order_id: i32) -> OrderDetail {
    orders::detail(s, order_id).await.unwrap()
}

/// Invoices `qty` of each line (in line order).
async fn invoice(s: &Services, order_id: i32, qty: &[i32]) -> payments::domain::payment_views::InvoiceOutcome {
    let d = detail(s, order_id).await;
    let q: Vec<(i32, i32)> = d.lines.iter().zip(qty).map(|(l, q)| (l.id, *q)).collect();
    pipeline::invoice(s, "finance", order_id, &q).await.unwrap()
}

type Invoiced = Result<payments::domain::payment_views::InvoiceOutcome, payments::error::ServiceError>;

/// Invoices two orders' (order, [(line, quantity)]) in one batched turn: both wait while the turn
/// is held, then one turn takes them.
async fn invoice_in_one_turn(s: &Services, (a, a_lines): (i32, &[(i32, i32)]), (b, b_lines): (i32, &[(i32, i32)])) -> (Invoiced, Invoiced) {
    let hold = payments::pipeline::batches(&s).hold().await;
    let release = async {
        while payments::pipeline::batches(&s).waiting() < 2 {
            tokio::task::yield_now().await;
        }
        drop(hold);
    };
    let (first, second, ()) = tokio::join!(pipeline::invoice(s, "finance", a, a_lines), pipeline::invoice(s, "finance", b, b_lines), release);
    (first, second)
}

/// `n` new orders of a tent and two stoves, each with its lines' full quantities, to invoice.
async fn whole_orders(s: &Services, fx: &Fixture, n: usize) -> Vec<(i32, Vec<(i32, i32)>)> {
    let mut orders = Vec::with_capacity(n);
    for _ in 0..n {
        let id = OrderBuilder::new(fx).line("Tent", 1, "150.00").line("Stove", 2, "45.50").place(s).await.order_id;
        let q: Vec<(i32, i32)> = detail(s, id).await.lines.iter().map(|l| (l.id, l.quantity)).collect();
        orders.push((id, q));
    }
    orders
}

async fn assert_clean(db: &TestDb) {
    let r = invariants::check(&db.services).await.unwrap();
    assert!(r.clean(), "invariants: {r:?}");
}

db_test!(incremental_capture_keeps_one_authorization_for_two_invoices, |db| {
    // R-CAP-1, R-CAP-6, R-PIP-1
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Tent", 2, "150.00").line("Stove", 1, "45.50").tax("8.25").place(s).await;
    assert_eq!(placed.payment_status, PaymentStatus::Authorized);
    let d = detail(s, placed.order_id).await;
    assert_eq!(d.authorizations.len(), 1);
    assert_eq!(d.authorizations[0].amount.minor(), 37_400, "345.50 + 8.25 % (28.50375 → 28.50, rounded once) = 374.00");
    assert!(d.authorizations[0].supports_multiple_captures);

    let first = invoice(s, placed.order_id, &[1, 0]).await;
    assert_eq!(first.status, ProcessStatus::Completed, "{first:?}");
    assert_eq!(first.amount.minor(), 16_238, "150.00 + 8.25 % = 162.375 → 162.38");
    let second = invoice(s, placed.order_id, &[1, 1]).await;
    assert_eq!(second.status, ProcessStatus::Completed, "{second:?}");

    let d = detail(s, placed.order_id).await;
    assert_eq!(d.authorizations.len(), 1, "no new authorization on the incremental path");
    let auth = &d.authorizations[0];
    assert_eq!(auth.captures.len(), 2, "one authorization, two captures");
    // R-MON-3: tax is allocated cumulatively, so the second invoice takes what the order's tax
    // (rounded once) leaves: 374.00 - 162.38 = 211.62, exactly what is left on the authorization.
    assert_eq!(second.amount.minor(), 21_162);
    assert_eq!(auth.captures[1].amount.minor(), 21_162);
    assert_eq!(auth.captured.minor(), 37_400);
    assert_eq!(auth.status, AuthorizationStatus::FullyCaptured);
    assert_eq!(d.payments[0].status, PaymentStatus::Paid, "a fully captured card payment is paid");
    assert_eq!(d.balance.minor(), 0);
    assert_eq!(d.journals.len(), 4, "two invoice journals and two payment journals");
    let h = queries::history(&s.db, first.process_id).await.unwrap();
    assert_eq!(h.capture_kind, Some(CaptureKind::Incremental), "{:?}", h.capture_path);
    assert!(h.capture_path.as_deref().unwrap().starts_with("Incremental"), "{:?}", h.capture_path);
    let auth_stage = h.stages.iter().find(|st| st.stage == Stage::AuthorizeRemaining).unwrap();
    assert_eq!(auth_stage.status, StageStatus::Skipped, "the original authorization covers the rest");
    assert_eq!(simulator::ledger_totals(sim(s)).await.unwrap().captures, 2);
    assert_clean(&db).await;
});

/// Issue #39 item 0 (R-MON-3, R-CAP-1, R-LED-1): 1 × 249.99 and 2 × 89.95 at 8.25 % is 465.36;
/// invoiced line by line, on either capture path, the invoices, the captures and the payment
/// journals each add up to 465.36 and nothing is left to invoice or to capture.
async fn split_invoices_add_up(db: &TestDb, incremental: bool) {
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, incremental).await;
    let placed = OrderBuilder::new(&fx).line("Jacket", 1, "249.99").line("Gloves", 2, "89.95").tax("8.25").place(s).await;
    let d = detail(s, placed.order_id).await;
    assert_eq!(d.order.total.minor(), 46_536);
    let first = invoice(s, placed.order_id, &[1, 0]).await;
    assert_eq!(first.status, ProcessStatus::Completed, "{first:?}");
    assert_eq!(detail(s, placed.order_id).await.balance.minor(), 19_475, "left to invoice is what the last invoice will be");
    let second = invoice(s, placed.order_id, &[0, 2]).await;
    assert_eq!(second.status, ProcessStatus::Completed, "{second:?}");
    assert_eq!(first.amount.minor() + second.amount.minor(), 46_536, "{} + {}", first.amount, second.amount);
    let d = detail(s, placed.order_id).await;
    assert_eq!(d.balance.minor(), 0);
    let captured: i64 = d.authorizations.iter().map(|a| a.captured.minor()).sum();
    assert_eq!(captured, 46_536, "every cent of the order is captured");
    assert!(d.authorizations.iter().all(|a| a.status != AuthorizationStatus::Open), "{:?}", d.authorizations);
    assert_eq!(d.payments[0].status, PaymentStatus::Paid);
    assert_clean(db).await;
}

db_test!(split_invoices_with_tax_add_up_incremental, |db| {
    split_invoices_add_up(&db, true).await;
});

db_test!(split_invoices_with_tax_add_up_legacy, |db| {
    split_invoices_add_up(&db, false).await;
});

db_test!(legacy_path_captures_then_authorizes_the_balance, |db| {
    // R-CAP-3: incremental capture feature off → capture the invoiced amount, new authorization for the rest.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, false).await;
    let placed = OrderBuilder::new(&fx).line("Chair", 4, "25.00").place(s).await;
    let first = invoice(s, placed.order_id, &[1]).await;
    assert_eq!(first.status, ProcessStatus::Completed, "{first:?}");
    let d = detail(s, placed.order_id).await;
    assert_eq!(d.authorizations.len(), 2, "a new authorization for the balance");
    assert_eq!(d.authorizations[0].status, AuthorizationStatus::Closed);
    assert_eq!(d.authorizations[0].captured.minor(), 2_500);
    assert_eq!(d.authorizations[1].amount.minor(), 7_500);
    assert_eq!(d.authorizations[1].replaces, Some(d.authorizations[0].id));
    let h = queries::history(&s.db, first.process_id).await.unwrap();
    assert!(h.capture_path.as_deref().unwrap().contains("Extensibility to support incremental credit card capture is off"));
    let second = invoice(s, placed.order_id, &[3]).await;
    assert_eq!(second.status, ProcessStatus::Completed);
    let d = detail(s, placed.order_id).await;
    assert_eq!(d.authorizations.len(), 2, "fully invoiced: nothing left to authorize");
    assert_eq!(d.authorizations[1].captures.len(), 1, "legacy: one capture per authorization");
    assert_clean(&db).await;
});

db_test!(interac_is_never_captured_incrementally, |db| {
    // R-CAP-2: the payment method variant is in Non incremental capture payment methods, and the
    // processor says the authorization does not support multiple captures.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Lamp", 2, "10.00").card("6363680000000007").place(s).await;
    let out = invoice(s, placed.order_id, &[1]).await;
    assert_eq!(out.status, ProcessStatus::Completed);
    let h = queries::history(&s.db, out.process_id).await.unwrap();
    assert_eq!(h.capture_kind, Some(CaptureKind::Legacy));
    let path = h.capture_path.unwrap();
    assert!(path.contains("did not say SupportsMultipleCaptures") && path.contains("Non incremental capture payment methods"), "{path}");
    assert_eq!(detail(s, placed.order_id).await.authorizations.len(), 2);
    assert_clean(&db).await;
});

db_test!(an_excluded_maestro_card_takes_the_legacy_path_with_its_reason, |db| {
    // R-PAR-5, R-CAP-2, issue #39 item 5: any variant the processor names can be excluded, in any
    // case; `maestro` used to be read through a five-value enum and never matched.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    for channel_id in [fx.pos, fx.online, fx.call_center] {
        payments::service::setup::save_merchant_properties(s, "admin", fx.connector_id, channel_id, "Yes", "interac; MAESTRO").await.unwrap();
    }
    let placed = OrderBuilder::new(&fx).line("Lamp", 2, "10.00").card("6759649826438453").place(s).await;
    let d = detail(s, placed.order_id).await;
    assert!(d.authorizations[0].supports_multiple_captures, "the processor allows multiple captures for maestro");
    let out = invoice(s, placed.order_id, &[1]).await;
    assert_eq!(out.status, ProcessStatus::Completed, "{out:?}");
    let path = queries::history(&s.db, out.process_id).await.unwrap().capture_path.unwrap();
    assert!(path.starts_with("Legacy") && path.contains("Non incremental capture payment methods"), "{path}");
    assert!(!path.contains("SupportsMultipleCaptures"), "the exclusion is the only reason: {path}");
    assert_eq!(detail(s, placed.order_id).await.authorizations.len(), 2, "legacy: a new authorization for the balance");
    assert_clean(&db).await;
});

db_test!(a_journal_fault_leaves_the_payment_incomplete_and_resume_does_not_capture_again, |db| {
    // R-PIP-3, R-PIP-4, R-PIP-5
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Kayak", 1, "500.00").place(s).await;
    s.faults().add(s.now(), "journal", "error_before", "1", "1", "").await.unwrap();
    let out = invoice(s, placed.order_id, &[1]).await;
    assert_eq!(out.status, ProcessStatus::Incomplete);
    assert!(out.error.as_deref().unwrap().contains("Post the payment journal"), "{:?}", out.error);
    let rows = queries::incomplete(&s.db, None).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].failed_stage, Some(Stage::PostPaymentJournal));
    assert_eq!(rows[0].attempts, 1);
    assert_eq!(queries::incomplete(&s.db, Some(out.invoice_id)).await.unwrap().len(), 1);
    assert!(queries::invoice_is_card_related(&s.db, out.invoice_id).await.unwrap());
    assert_eq!(capture::Entity::find().count(&s.db).await.unwrap(), 1);

    let resumed = pipeline::resume(s, "finance", out.process_id).await.unwrap();
    assert_eq!(resumed.status, ProcessStatus::Completed);
    assert_eq!(capture::Entity::find().count(&s.db).await.unwrap(), 1, "no second capture");
    assert_eq!(simulator::ledger_totals(sim(s)).await.unwrap().captures, 1);
    let h = queries::history(&s.db, out.process_id).await.unwrap();
    let journal = h.stages.iter().find(|st| st.stage == Stage::PostPaymentJournal).unwrap();
    assert_eq!((journal.status, journal.attempts), (StageStatus::Succeeded, 2));
    assert!(journal.log.iter().any(|l| l.message.contains("injected fault")));
    let capture_stage = h.stages.iter().find(|st| st.stage == Stage::CaptureOrRefund).unwrap();
    assert_eq!(capture_stage.attempts, 1, "the capture stage was not run again");
    assert!(queries::incomplete(&s.db, None).await.unwrap().is_empty());
    let again = pipeline::resume(s, "finance", out.process_id).await.unwrap_err();
    assert_eq!(again.code(), "PS_PROCESS_NOT_INCOMPLETE", "{again}");
    assert!(again.to_string().contains("Only an incomplete payment can be resumed"), "{again}");
    assert_clean(&db).await;
});

db_test!(a_timeout_after_the_capture_is_resolved_by_asking_not_by_capturing_again, |db| {
    // R-CAP-5
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Bike", 1, "800.00").place(s).await;
    faults::add(sim(s), s.now(), "capture", "timeout_after", "1", "1", "").await.unwrap();
    let out = invoice(s, placed.order_id, &[1]).await;
    assert_eq!(out.status, ProcessStatus::Completed, "{out:?}");
    assert_eq!(simulator::ledger_totals(sim(s)).await.unwrap().captures, 1);
    let h = queries::history(&s.db, out.process_id).await.unwrap();
    let cap = h.stages.iter().find(|st| st.stage == Stage::CaptureOrRefund).unwrap();
    assert!(cap.log.iter().any(|l| l.message.contains("No answer in time; asking the processor")), "{:?}", cap.log);
    assert_clean(&db).await;
});

db_test!(an_error_before_the_capture_is_retried_with_the_same_tracking_id, |db| {
    // R-CAP-5: a retried request reuses its PaymentTrackingId.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Boots", 1, "120.00").place(s).await;
    faults::add(sim(s), s.now(), "capture", "error_before", "1", "1", "").await.unwrap();
    let out = invoice(s, placed.order_id, &[1]).await;
    assert_eq!(out.status, ProcessStatus::Incomplete);
    let rows = queries::incomplete(&s.db, None).await.unwrap();
    assert_eq!(rows[0].failed_stage, Some(Stage::CaptureOrRefund));
    assert!(rows[0].reason.as_deref().unwrap().contains("not processed"), "{:?}", rows[0].reason);
    let first = processor_request::Entity::find()
        .filter(processor_request::Column::Command.eq(Command::Capture.code()))
        .one(&s.db)
        .await
        .unwrap()
        .unwrap();
    let resumed = pipeline::resume(s, "finance", out.process_id).await.unwrap();
    assert_eq!(resumed.status, ProcessStatus::Completed);
    let caps = capture::Entity::find().all(&s.db).await.unwrap();
    assert_eq!(caps.len(), 1);
    assert_eq!(caps[0].tracking_id, first.tracking_id, "the retry reused the tracking id");
    assert_eq!(processor_request::Entity::find().filter(processor_request::Column::Command.eq("capture")).count(&s.db).await.unwrap(), 1);
    assert_clean(&db).await;
});

db_test!(a_crash_between_intent_and_outcome_is_recovered_without_a_second_capture, |db| {
    // Killbill-style: the intent is durable before the call; recovery asks the processor.
    let s = &db.services;
    let (_fx, placed, d) = card_order(s, "Canoe", 1, "900.00").await;
    // Stage 1 as invoicing does it, then the capture sent but its outcome never recorded (crash).
    let (inv, process_id) = pipeline::post_invoice(s, "finance", placed.order_id, &[(d.lines[0].id, 1)]).await.unwrap();
    let auth = payments::entity::authorization::Entity::find().one(&s.db).await.unwrap().unwrap();
    let amount = payments::domain::money::Money::from_minor(inv.amount_minor, payments::domain::money::Currency::USD);
    let req = requests::begin(
        s,
        auth.connector_id,
        Command::Capture,
        amount,
        requests::Purpose { order_id: placed.order_id, authorization_id: Some(auth.id), process: Some((process_id, Stage::CaptureOrRefund)), capture_id: None },
    )
    .await
    .unwrap();
    s.connector.capture(&req.tracking_id, &auth.processor_reference, amount, false).await.unwrap();
    process_stage::Entity::update_many()
        .col_expr(process_stage::Column::Status, sea_orm::sea_query::Expr::value("running"))
        .filter(process_stage::Column::ProcessId.eq(process_id))
        .filter(process_stage::Column::Stage.eq("capture_or_refund"))
        .exec(&s.db)
        .await
        .unwrap();
    // The server "restarts": its lease runs out, recovery takes over.
    assert_eq!(payments::service::jobs::recover(s, 10).await.unwrap().taken_over, 0, "a live lease is not taken over");
    db.clock.advance(chrono::Duration::seconds(31));
    let report = payments::service::jobs::recover(s, 10).await.unwrap();
    assert_eq!((report.taken_over, report.completed), (1, 1), "{report:?}");
    assert_eq!(simulator::ledger_totals(sim(s)).await.unwrap().captures, 1, "the processor captured once");
    assert_eq!(capture::Entity::find().count(&s.db).await.unwrap(), 1);
    let p = payment_process::Entity::find_by_id(process_id).one(&s.db).await.unwrap().unwrap();
    assert_eq!(p.status, "completed");
    assert_clean(&db).await;
});

db_test!(terminate_needs_a_reason_and_is_audited, |db| {
    // R-PIP-4
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Paddle", 2, "30.00").place(s).await;
    faults::add(sim(s), s.now(), "capture", "error_before", "1", "", "").await.unwrap();
    let out = invoice(s, placed.order_id, &[1]).await;
    assert_eq!(out.status, ProcessStatus::Incomplete);
    let err = pipeline::terminate(s, "finance", out.process_id, "  ").await.unwrap_err();
    assert_eq!(err.code(), "PS_VALIDATION");
    assert_eq!(queries::incomplete(&s.db, None).await.unwrap().len(), 1, "a refused terminate changes nothing");
    pipeline::terminate(s, "finance", out.process_id, "Customer paid by bank transfer").await.unwrap();
    assert!(queries::incomplete(&s.db, None).await.unwrap().is_empty());
    let entry = audit_log::Entity::find().filter(audit_log::Column::Action.eq("payment_process.terminate")).one(&s.db).await.unwrap().unwrap();
    assert_eq!(entry.actor, "finance");
    assert!(entry.after.unwrap().contains("Customer paid by bank transfer"));
    assert!(pipeline::resume(s, "finance", out.process_id).await.is_err(), "a terminated process cannot be resumed");
});

db_test!(invoicing_again_while_a_payment_is_incomplete_is_refused_and_writes_nothing, |db| {
    // R-PIP-5, R-CAP-1: an order whose card payment is incomplete is not invoiced again until that
    // payment is resumed or terminated, whether the invoicing runs alone or with others (issue #3:
    // the batched path reads the unfinished processes with the order's lines).
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Canoe", 3, "300.00").place(s).await;
    let other = OrderBuilder::new(&fx).line("Paddle", 1, "25.00").place(s).await;
    s.faults().add(s.now(), "journal", "error_before", "1", "1", "").await.unwrap();
    let first = invoice(s, placed.order_id, &[1]).await;
    assert_eq!(first.status, ProcessStatus::Incomplete);
    let invoices = payments::entity::invoice::Entity::find().count(&s.db).await.unwrap();
    let lines: Vec<(i32, i32)> = detail(s, placed.order_id).await.lines.iter().map(|l| (l.id, 1)).collect();
    let other_lines: Vec<(i32, i32)> = detail(s, other.order_id).await.lines.iter().map(|l| (l.id, 1)).collect();
    // Together with another order's invoicing, so that both go through one turn.
    let (again, beside) = invoice_in_one_turn(s, (placed.order_id, &lines), (other.order_id, &other_lines)).await;
    let err = again.unwrap_err();
    assert!(err.to_string().contains("incomplete"), "{err}");
    assert_eq!(beside.unwrap().status, ProcessStatus::Completed, "the other order is invoiced");
    assert_eq!(payments::entity::invoice::Entity::find().count(&s.db).await.unwrap(), invoices + 1, "only the other order's invoice");
    assert_eq!(detail(s, placed.order_id).await.lines[0].invoiced_quantity, 1, "the refused invoicing moved no quantity");
    assert_eq!(capture::Entity::find().count(&s.db).await.unwrap(), 2, "one capture per posted invoice");
});

db_test!(a_batched_turn_whose_guarded_line_moves_fall_short_is_undone_and_each_invoicing_goes_its_own_way, |db| {
    // Issue 3, R-CAP-1, R-PIP-1: stage 1 of a batched turn moves every line's invoiced quantity in
    // one statement guarded by the quantity it read, sent with the other writes and counted with
    // them. Here the database itself skips one line's update (a trigger, as if another invoicing had
    // changed the line in between): the rows written fall short of those counted, the whole turn is
    // rolled back, and each invoicing goes the one-at-a-time way, whose own guard refuses the
    // skipped line's order while the other order is invoiced.
    use sea_orm::ConnectionTrait;
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let blocked = OrderBuilder::new(&fx).line("Canoe", 2, "300.00").place(s).await;
    let other = OrderBuilder::new(&fx).line("Paddle", 2, "25.00").place(s).await;
    let skipped = detail(s, blocked.order_id).await.lines[0].id;
    let skip = match s.db.get_database_backend() {
        sea_orm::DbBackend::Sqlite => vec![format!(
            "CREATE TRIGGER skip_line BEFORE UPDATE OF invoiced_quantity ON sales_order_lines FOR EACH ROW WHEN OLD.id = {skipped} BEGIN SELECT RAISE(IGNORE); END"
        )],
        _ => vec![
            "CREATE FUNCTION skip_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$".to_string(),
            format!("CREATE TRIGGER skip_line BEFORE UPDATE OF invoiced_quantity ON sales_order_lines FOR EACH ROW WHEN (OLD.id = {skipped}) EXECUTE FUNCTION skip_update()"),
        ],
    };
    for sql in skip {
        s.db.execute_unprepared(&sql).await.unwrap();
    }
    let invoices = payments::entity::invoice::Entity::find().count(&s.db).await.unwrap();
    let lines = |d: OrderDetail| d.lines.iter().map(|l| (l.id, 1)).collect::<Vec<(i32, i32)>>();
    let (blocked_lines, other_lines) = (lines(detail(s, blocked.order_id).await), lines(detail(s, other.order_id).await));
    let (first, second) = invoice_in_one_turn(s, (blocked.order_id, &blocked_lines), (other.order_id, &other_lines)).await;
    assert_eq!(payments::pipeline::batches(&s).counts(), (0, 0), "the turn posted nothing: its writes were rolled back");
    let err = first.unwrap_err();
    assert_eq!(err.code(), "PS_CONCURRENT_INVOICING", "{err}");
    assert!(err.to_string().contains("invoiced by someone else at the same time"), "{err}");
    let second = second.unwrap();
    assert_eq!(second.status, ProcessStatus::Completed, "the other order is invoiced on its own: {second:?}");
    assert_eq!(payments::entity::invoice::Entity::find().count(&s.db).await.unwrap(), invoices + 1, "only the other order's invoice");
    let d = detail(s, blocked.order_id).await;
    assert_eq!(d.lines[0].invoiced_quantity, 0, "the refused order's line moved nothing");
    assert!(d.invoices.is_empty(), "nothing of the turn stayed for the refused order: {:?}", d.invoices);
    assert_eq!(detail(s, other.order_id).await.lines[0].invoiced_quantity, 1, "the other order's line moved once, not twice");
    assert_eq!(capture::Entity::find().count(&s.db).await.unwrap(), 1, "one capture, for the invoice posted");
    assert_clean(&db).await;
});

db_test!(two_resumes_of_one_process_never_both_run, |db| {
    // R-PIP-4 under concurrency: the claim is one conditional UPDATE.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Tarp", 1, "40.00").place(s).await;
    s.faults().add(s.now(), "journal", "error_before", "1", "1", "").await.unwrap();
    let out = invoice(s, placed.order_id, &[1]).await;
    let other = Services { instance: "other-server".into(), ..s.clone() };
    let (a, b) = tokio::join!(pipeline::resume(s, "finance", out.process_id), pipeline::resume(&other, "supervisor", out.process_id));
    assert_eq!(a.is_ok() as u8 + b.is_ok() as u8, 1, "exactly one resume wins: {a:?} / {b:?}");
    assert_eq!(payments::entity::journal::Entity::find().count(&s.db).await.unwrap(), 2);
    assert_clean(&db).await;
});

db_test!(without_status_monitoring_a_failure_after_the_charge_is_listed_and_resumable, |db| {
    // R-PIP-6 as issue #39 item 4 decides it: with Cards payment status monitoring off invoicing
    // is one step, but a failure after the card was charged (here the payment journal) is never
    // silent: the process is listed on Incomplete cards payment (marked one step), the Overview
    // counts the same, and Resume finishes it without charging again.
    let s = &db.services;
    let fx = fixture(s).await;
    let placed = OrderBuilder::new(&fx).line("Rope", 3, "9.99").place(s).await;
    s.faults().add(s.now(), "journal", "error_before", "1", "1", "").await.unwrap();
    let out = invoice(s, placed.order_id, &[3]).await;
    assert_eq!(out.status, ProcessStatus::Incomplete);
    assert!(out.error.is_some(), "the failure is reported to whoever invoiced");
    let p = payment_process::Entity::find_by_id(out.process_id).one(&s.db).await.unwrap().unwrap();
    assert!(!p.monitored);
    let listed = queries::incomplete(&s.db, None).await.unwrap();
    assert_eq!(listed.iter().map(|r| (r.process_id, r.monitored)).collect::<Vec<_>>(), vec![(out.process_id, false)]);
    let overview = payments::service::standing::standing(s).await.unwrap();
    assert_eq!(overview.incomplete_processes, listed.len() as u64, "the Overview and the page agree");
    assert_eq!(detail(s, placed.order_id).await.order.incomplete, 1);
    let resumed = pipeline::resume(s, "finance", out.process_id).await.unwrap();
    assert_eq!(resumed.status, ProcessStatus::Completed, "{resumed:?}");
    assert_eq!(simulator::ledger_totals(sim(s)).await.unwrap().captures, 1, "captured once");
    assert!(queries::incomplete(&s.db, None).await.unwrap().is_empty());
    assert_clean(&db).await;
});

db_test!(without_status_monitoring_an_uncharged_invoicing_is_refused_and_taken_back, |db| {
    // R-PIP-6, issue #39 item 4: monitoring off and the capture refused before anything moved:
    // invoicing is refused with the reason; the invoice is reversed by a new entry (R-LED-1), its
    // quantities are open again and the order is as before; invoicing again works.
    let s = &db.services;
    let fx = fixture(s).await;
    let placed = OrderBuilder::new(&fx).line("Boots", 2, "120.00").tax("8.25").place(s).await;
    let before = detail(s, placed.order_id).await;
    faults::add(sim(s), s.now(), "capture", "error_before", "1", "1", "").await.unwrap();
    let d = detail(s, placed.order_id).await;
    let err = pipeline::invoice(s, "finance", placed.order_id, &[(d.lines[0].id, 1)]).await.unwrap_err();
    assert_eq!(err.code(), "PS_CARD_NOT_CHARGED");
    let text = err.to_string();
    assert!(text.contains("not charged") && text.contains("reversed") && text.contains("Invoice again"), "{text}");
    let d = detail(s, placed.order_id).await;
    assert_eq!(d.order.status, before.order.status, "the order is as before");
    assert_eq!(d.balance, before.balance, "everything is left to invoice again");
    assert_eq!(d.order.invoiced.minor(), 0, "a reversed invoice is not invoiced");
    assert_eq!(d.lines[0].invoiced_quantity, 0);
    assert_eq!(d.invoices[0].process.as_ref().unwrap().status, ProcessStatus::Reversed);
    assert!(queries::incomplete(&s.db, None).await.unwrap().is_empty(), "nothing to resume: nothing happened");
    // The ledger: the invoice journal and its reversal net to zero on every account.
    let mut net: std::collections::BTreeMap<String, i64> = Default::default();
    for j in &d.journals {
        for l in &j.lines {
            *net.entry(l.account.clone()).or_default() += l.debit.minor() - l.credit.minor();
        }
    }
    assert_eq!(d.journals.len(), 2, "{:?}", d.journals);
    assert!(net.values().all(|v| *v == 0), "{net:?}");
    assert_eq!(simulator::ledger_totals(sim(s)).await.unwrap().captures, 0, "the card was not charged");
    // Invoicing again, the fault spent: posted and captured.
    let again = invoice(s, placed.order_id, &[1, 0]).await;
    assert_eq!(again.status, ProcessStatus::Completed, "{again:?}");
    assert_eq!(again.amount.minor(), 12_990, "120.00 + 8.25 % (9.90): the reversed invoice's tax does not count");
    assert_eq!(detail(s, placed.order_id).await.order.invoiced.minor(), 12_990);
    assert_clean(&db).await;
});

db_test!(invoicing_more_than_is_open_is_refused_and_writes_nothing, |db| {
    let s = &db.services;
    let (_fx, placed, d) = card_order(s, "Tent", 2, "150.00").await;
    for q in [3, -1] {
        let err = pipeline::invoice(s, "finance", placed.order_id, &[(d.lines[0].id, q)]).await.unwrap_err();
        assert_eq!(err.code(), "PS_VALIDATION", "{err}");
    }
    let err = pipeline::invoice(s, "finance", placed.order_id, &[(d.lines[0].id, 0)]).await.unwrap_err();
    assert!(err.to_string().contains("at least one line"));
    assert_eq!(payments::entity::invoice::Entity::find().count(&s.db).await.unwrap(), 0);
    assert_eq!(payments::entity::journal::Entity::find().count(&s.db).await.unwrap(), 0);
    invoice(s, placed.order_id, &[2]).await;
    let err = pipeline::invoice(s, "finance", placed.order_id, &[(d.lines[0].id, 1)]).await.unwrap_err();
    assert!(err.to_string().contains("0 can be invoiced"), "{err}");
});

db_test!(a_declined_card_is_recorded_and_the_order_cannot_capture, |db| {
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Tent", 1, "150.00").card("4000000000000002").place(s).await;
    assert_eq!(placed.payment_status, PaymentStatus::Declined);
    assert!(placed.message.unwrap().contains("declined"));
    let out = invoice(s, placed.order_id, &[1]).await;
    assert_eq!(out.status, ProcessStatus::Incomplete);
    assert!(out.error.unwrap().contains("no open card authorization"));
    assert_clean(&db).await;
});

db_test!(demo_orders_show_every_state, |db| {
    // Issue 3: the demo shows orders in every state, incomplete processes failed at different stages.
    use payments::service::bootstrap::{bootstrap, BootstrapOptions};
    let s = &db.services;
    let opts = BootstrapOptions { demo: true, admin_password: None, demo_password: Some("demo password 123".into()), demo_orders: true };
    bootstrap(s, &opts).await.unwrap();
    let page = orders::list(&s.db, &Default::default(), 1).await.unwrap();
    assert_eq!(page.total, 10, "issue 5 adds a deposit order");
    assert!(payments::entity::sales_order::Entity::find().all(&s.db).await.unwrap().iter().any(|o| o.prepayment && o.deposit_minor == 18000));
    // Issue 4: an authorization past its expiry with its order held (R-AUT-4), and a card on file.
    let held: Vec<_> = page.rows.iter().filter(|r| r.do_not_process).collect();
    assert_eq!(held.len(), 1, "one order held by an expired authorization");
    let pending = payments::service::authorizations::list(s, "pending_authorization", 1).await.unwrap();
    assert!(pending.rows.iter().any(|r| r.order_id == held[0].id && r.expired()));
    assert_eq!(payments::entity::customer_card::Entity::find().count(&s.db).await.unwrap(), 1);
    let statuses: std::collections::BTreeSet<_> = page.rows.iter().map(|r| r.status).collect();
    assert_eq!(statuses.len(), 3, "open, partially invoiced and invoiced orders: {statuses:?}");
    let failed: std::collections::BTreeSet<_> = queries::incomplete(&s.db, None).await.unwrap().iter().filter_map(|r| r.failed_stage).collect();
    assert_eq!(
        failed,
        [Stage::CaptureOrRefund, Stage::PostPaymentJournal, Stage::AuthorizeRemaining].into_iter().collect(),
        "incomplete processes at three different stages"
    );
    assert!(faults::list(sim(s)).await.unwrap().is_empty(), "the demo leaves no fault behind");
    // The overview's counts agree with the pages they link to.
    let st = payments::service::standing::standing(s).await.unwrap();
    assert_eq!(st.incomplete_processes as usize, queries::incomplete(&s.db, None).await.unwrap().len());
    assert_eq!((st.pending_authorization, st.orders_on_hold), (pending.total, 1));
    let declined = payments::entity::payment_line::Entity::find()
        .filter(payments::entity::payment_line::Column::Status.eq(PaymentStatus::Declined.code()))
        .count(&s.db)
        .await
        .unwrap();
    assert_eq!(declined, 1);
    assert_clean(&db).await;
    // Bootstrapping again adds nothing.
    bootstrap(s, &opts).await.unwrap();
    assert_eq!(orders::list(&s.db, &Default::default(), 1).await.unwrap().total, 10);
});

db_test!(the_invoicing_benchmark_completes_every_invoice_and_keeps_the_invariants, |db| {
    // The bench command at a small size: every invoice completes, figures are sane. Like the
    // command, the test listens to the pipeline's reports (statements sent unprepared).
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::Layer;
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(server::bench::layer().with_filter(server::bench::targets())));
    }
    server::bench::meter(&mut db.services.db);
    let s = &db.services;
    let r = server::bench::invoicing(s, server::bench::BenchOptions { orders: 12, concurrency: 3, latency_ms: 0 }).await.unwrap();
    assert_eq!((r.orders, r.not_completed), (12, 0), "{r:?}");
    assert!(r.invoices_per_sec > 0.0 && r.p50_ms <= r.p99_ms && r.peak_rss_mb > 0.0, "{r:?}");
    // Counted on both databases (PostgreSQL's counter, SQLite's commit hook): the invoices a turn
    // posted share the pipeline's commits (posting with the capture intents, then outcomes with
    // journals and completions: two per turn at the least), and the processor commits its
    // captures: each on its own on PostgreSQL, those that reach it together in one on SQLite (at
    // least one per turn).
    let turns = 12.0 / r.invoices_per_turn;
    let processor = if s.db.get_database_backend() == sea_orm::DbBackend::Sqlite { turns } else { 12.0 };
    assert!(r.commits_per_invoice.is_some_and(|c| c >= (processor + 2.0 * turns) / 12.0), "{r:?}");
    // Every statement is a round trip to the database (issue 3, README "what one statement and one
    // transaction cost"): the happy path, the simulator's own included, runs 49 on both databases.
    assert!(r.statements_per_invoice > 0.0 && r.statements_per_invoice <= 49.0, "more statements per invoice than before: {r:?}");
    assert_eq!(payments::entity::capture::Entity::find().count(&s.db).await.unwrap(), 12, "incremental: one capture per invoice");
    assert!(faults::list(sim(s)).await.unwrap().is_empty(), "the latency fault is removed afterwards");
    assert_clean(&db).await;
});

/// Credits `qty` of each line (in line order).
async fn credit(s: &Services, order_id: i32, qty: &[i32]) -> Result<payments::domain::payment_views::InvoiceOutcome, payments::error::ServiceError> {
    let d = detail(s, order_id).await;
    let q: Vec<(i32, i32)> = d.lines.iter().zip(qty).map(|(l, q)| (l.id, *q)).filter(|(_, q)| *q != 0).collect();
    pipeline::credit(s, "finance", order_id, &q).await
}

db_test!(a_credit_note_refunds_over_two_captures_and_posts_a_refund_journal, |db| {
    // R-PIP-1 stage 2 "or refund", R-CAP-4 (refunds over multiple captures), R-LED-1.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Tent", 2, "150.00").place(s).await;
    invoice(s, placed.order_id, &[1]).await;
    invoice(s, placed.order_id, &[1]).await;
    let out = credit(s, placed.order_id, &[2]).await.unwrap();
    assert_eq!(out.status, ProcessStatus::Completed, "{out:?}");
    assert!(out.invoice_number.starts_with("CRN-"), "{out:?}");
    assert_eq!(out.amount.minor(), -30_000);
    let d = detail(s, placed.order_id).await;
    let caps = &d.authorizations[0].captures;
    assert_eq!(caps.len(), 2);
    assert!(caps.iter().all(|c| c.refunded == c.amount), "each capture refunded in full: {caps:?}");
    assert_eq!(d.lines[0].credited_quantity, 2);
    assert_eq!(payments::entity::refund::Entity::find().count(&s.db).await.unwrap(), 2, "one refund per capture");
    let h = queries::history(&s.db, out.process_id).await.unwrap();
    let stage = |st: Stage| h.stages.iter().find(|x| x.stage == st).unwrap().clone();
    assert_eq!(stage(Stage::CaptureOrRefund).status, StageStatus::Succeeded);
    assert_eq!(stage(Stage::PostPaymentJournal).status, StageStatus::Succeeded);
    assert_eq!(stage(Stage::AuthorizeRemaining).status, StageStatus::Skipped);
    // Nothing more can be credited, and nothing is refunded twice.
    let again = credit(s, placed.order_id, &[1]).await.unwrap_err();
    assert!(again.to_string().contains("0 can be credited"), "{again}");
    assert_clean(&db).await;
});

db_test!(without_refunds_over_multiple_captures_a_refund_must_fit_one_capture, |db| {
    // R-CAP-4: with the feature off (and so incremental capture, which needs it, R-FEA-2), a refund
    // larger than any single capture fails (incomplete, with the reason), and succeeds on resume
    // once the feature is on.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, false).await;
    let placed = OrderBuilder::new(&fx).line("Tent", 2, "150.00").place(s).await;
    invoice(s, placed.order_id, &[1]).await;
    invoice(s, placed.order_id, &[1]).await;
    assert_eq!(payments::entity::capture::Entity::find().count(&s.db).await.unwrap(), 2, "legacy: two captures of 150.00");
    let out = credit(s, placed.order_id, &[2]).await.unwrap();
    assert_eq!(out.status, ProcessStatus::Incomplete, "{out:?}");
    assert!(out.error.as_deref().unwrap_or_default().contains("No single capture"), "{out:?}");
    assert_eq!(payments::entity::refund::Entity::find().count(&s.db).await.unwrap(), 0, "nothing refunded");
    enable_pipeline(s, true).await;
    let resumed = pipeline::resume(s, "finance", out.process_id).await.unwrap();
    assert_eq!(resumed.status, ProcessStatus::Completed, "{resumed:?}");
    assert_eq!(payments::entity::refund::Entity::find().count(&s.db).await.unwrap(), 2);
    assert_clean(&db).await;
});

db_test!(a_refund_whose_answer_was_lost_is_asked_about_not_sent_again, |db| {
    // R-CAP-5 for refunds: a timeout after the effect, then resume: one refund at the processor.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Tent", 1, "150.00").place(s).await;
    invoice(s, placed.order_id, &[1]).await;
    faults::add(sim(s), s.now(), "refund", "timeout_after", "1", "1", "0").await.unwrap();
    faults::add(sim(s), s.now(), "query", "error_before", "1", "1", "0").await.unwrap();
    let out = credit(s, placed.order_id, &[1]).await.unwrap();
    assert_eq!(out.status, ProcessStatus::Incomplete, "{out:?}");
    assert!(out.error.as_deref().unwrap_or_default().contains("unknown"), "{out:?}");
    let resumed = pipeline::resume(s, "finance", out.process_id).await.unwrap();
    assert_eq!(resumed.status, ProcessStatus::Completed, "{resumed:?}");
    assert_eq!(payments::connector::simulator::entity::sim_refund::Entity::find().count(sim(s)).await.unwrap(), 1, "refunded once");
    assert_eq!(payments::entity::refund::Entity::find().count(&s.db).await.unwrap(), 1);
    assert_clean(&db).await;
});

db_test!(charges_are_invoiced_once_with_the_first_invoice_also_after_a_credit_note, |db| {
    // R-MON-1, R-CAP-4: the order's charges go on its first invoice only ("first" is told from the
    // lines' invoiced quantities), and the balance left to authorize stops counting them once
    // invoiced; a credit note in between changes neither.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Boots", 2, "100.00").charges("10.00").tax("0").place(s).await;
    assert_eq!(detail(s, placed.order_id).await.balance.minor(), 21_000);
    let first = invoice(s, placed.order_id, &[1]).await;
    assert_eq!((first.status, first.amount.minor()), (ProcessStatus::Completed, 11_000), "100.00 + the 10.00 charges");
    assert_eq!((first.kind, &first.invoice_number[..4]), (DocumentKind::Invoice, "INV-"));
    assert_eq!(detail(s, placed.order_id).await.balance.minor(), 10_000, "the charges are no longer due");
    let line = detail(s, placed.order_id).await.lines[0].id;
    let credit = pipeline::credit(s, "finance", placed.order_id, &[(line, 1)]).await.unwrap();
    assert_eq!((credit.status, credit.amount.minor()), (ProcessStatus::Completed, -10_000));
    assert_eq!((credit.kind, &credit.invoice_number[..4]), (DocumentKind::CreditNote, "CRN-"));
    let second = invoice(s, placed.order_id, &[1]).await;
    assert_eq!((second.status, second.amount.minor()), (ProcessStatus::Completed, 10_000), "no charges a second time");
    assert_eq!(detail(s, placed.order_id).await.balance.minor(), 0);
    assert_clean(&db).await;
});

db_test!(one_invoice_records_every_stage_with_its_marks_and_log_in_order, |db| {
    // R-PIP-2: the stage marks written with each stage's own first write (or the next stage's, or
    // the completion) read exactly as a stage-by-stage record: every stage started and ended,
    // once, with its log lines in the order they happened.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Tent", 1, "150.00").place(s).await;
    let out = invoice(s, placed.order_id, &[1]).await;
    assert_eq!(out.status, ProcessStatus::Completed, "{out:?}");
    assert_eq!(out.error, None);
    let h = queries::history(&s.db, out.process_id).await.unwrap();
    assert_eq!(h.status, ProcessStatus::Completed);
    let expected = [
        (Stage::PostInvoice, StageStatus::Succeeded, vec!["Posted INV-"]),
        (Stage::CaptureOrRefund, StageStatus::Succeeded, vec!["Attempt 1 started.", "Incremental capture", "Capture of 150.00 USD requested", "Captured 150.00 USD"]),
        (Stage::PostPaymentJournal, StageStatus::Succeeded, vec!["Attempt 1 started.", "Posted payment journal JNL-"]),
        (Stage::AuthorizeRemaining, StageStatus::Skipped, vec!["Attempt 1 started.", "The order is fully invoiced"]),
    ];
    assert_eq!(h.stages.len(), expected.len());
    let mut previous_end = None;
    for (st, (stage, status, lines)) in h.stages.iter().zip(expected) {
        assert_eq!((st.stage, st.status, st.attempts, st.error.as_deref()), (stage, status, 1, None), "{st:?}");
        let (started, finished) = (st.started_at.expect("started"), st.finished_at.expect("finished"));
        assert!(started <= finished, "{st:?}");
        if let Some(end) = previous_end {
            assert!(end <= started, "a stage starts after the previous one ended: {st:?}");
        }
        previous_end = Some(finished);
        let messages: Vec<&str> = st.log.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages.len(), lines.len(), "{stage:?}: {messages:?}");
        for (m, want) in messages.iter().zip(lines) {
            assert!(m.starts_with(want), "{stage:?}: {m:?} should start with {want:?} in {messages:?}");
        }
        assert!(st.log.iter().all(|l| l.attempt == 1));
    }
    assert_clean(&db).await;
});

db_test!(a_run_without_the_lease_writes_nothing_and_sends_nothing, |db| {
    // R-PIP-2, R-CAP-5: stage marks are written lazily, but always behind the lease. A process
    // another server holds is left exactly as it was: no mark, no log line, no request, no capture.
    let s = &db.services;
    let (_fx, placed, d) = card_order(s, "Kayak", 1, "500.00").await;
    let (_, process_id) = pipeline::post_invoice(s, "finance", placed.order_id, &[(d.lines[0].id, 1)]).await.unwrap();
    let until = s.now() + chrono::Duration::minutes(10);
    payment_process::Entity::update_many()
        .col_expr(payment_process::Column::LeaseOwner, sea_orm::sea_query::Expr::value("another-server"))
        .col_expr(payment_process::Column::LeaseUntil, sea_orm::sea_query::Expr::value(until))
        .filter(payment_process::Column::Id.eq(process_id))
        .exec(&s.db)
        .await
        .unwrap();
    let before = queries::history(&s.db, process_id).await.unwrap();
    assert_eq!(pipeline::run(s, process_id).await.unwrap(), ProcessStatus::Running);
    assert_eq!(queries::history(&s.db, process_id).await.unwrap(), before, "nothing written");
    assert_eq!(processor_request::Entity::find().filter(processor_request::Column::ProcessId.eq(process_id)).count(&s.db).await.unwrap(), 0);
    assert_eq!(capture::Entity::find().count(&s.db).await.unwrap(), 0);
    assert_eq!(simulator::ledger_totals(sim(s)).await.unwrap().captures, 0, "the processor was not called");
    let p = payment_process::Entity::find_by_id(process_id).one(&s.db).await.unwrap().unwrap();
    assert_eq!(p.lease_owner.as_deref(), Some("another-server"));

    // Once that lease runs out, this server takes the process over and finishes it.
    payment_process::Entity::update_many()
        .col_expr(payment_process::Column::LeaseUntil, sea_orm::sea_query::Expr::value(s.now() - chrono::Duration::seconds(1)))
        .filter(payment_process::Column::Id.eq(process_id))
        .exec(&s.db)
        .await
        .unwrap();
    assert_eq!(pipeline::run(s, process_id).await.unwrap(), ProcessStatus::Completed);
    assert_eq!(simulator::ledger_totals(sim(s)).await.unwrap().captures, 1);
    assert_clean(&db).await;
});

db_test!(a_fault_counts_every_time_it_fires_and_a_limited_one_stops, |db| {
    // The fault injector's counters (issue 3): the count of an unlimited fault is committed
    // without waiting for the log flush on PostgreSQL, and must still count every fire.
    let s = &db.services;
    let latency = faults::add(sim(s), s.now(), "any", "latency", "1", "", "1").await.unwrap();
    let twice = faults::add(sim(s), s.now(), "capture", "error_before", "1", "2", "").await.unwrap();
    let mut errors = 0;
    for _ in 0..5 {
        // As the simulator draws them for each request (counted on their own).
        let f = faults::fire_alone(sim(s), "capture").await.unwrap();
        assert_eq!(f.latency_ms, 1);
        errors += u32::from(f.error_before);
    }
    // The journal point is Paystage's own: an "any" fault never fires there.
    assert_eq!(faults::fire_alone(sim(s), "journal").await.unwrap(), faults::Fired::default());
    assert_eq!(errors, 2, "a fault limited to 2 uses fires twice");
    let listed = faults::list(sim(s)).await.unwrap();
    let fired = |id: i32| listed.iter().find(|f| f.id == id).map(|f| f.fired);
    assert_eq!(fired(latency), Some(5));
    assert_eq!(fired(twice), None, "a fault whose uses are spent is removed");
});

db_test!(stage_two_skips_an_order_without_a_card_and_fails_one_without_an_open_authorization, |db| {
    // R-CAP-1, R-PIP-3: stage 2 looks for the open authorization first; only without one does
    // it matter whether the order was paid by card at all.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let stage_of = |h: &payments::domain::payment_views::ProcessHistory, stage: Stage| h.stages.iter().find(|st| st.stage == stage).cloned().unwrap();

    // Paid by deposit and cash only: nothing to capture, and the process completes.
    let cash = OrderBuilder::new(&fx).channel(fx.pos).line("Sofa", 1, "100.00").deposit("40.00", "40.00", "").no_card().place(s).await;
    let out = invoice(s, cash.order_id, &[1]).await;
    assert_eq!(out.status, ProcessStatus::Completed, "{out:?}");
    let h = queries::history(&s.db, out.process_id).await.unwrap();
    let st = stage_of(&h, Stage::CaptureOrRefund);
    assert_eq!(st.status, StageStatus::Skipped);
    assert!(st.log.iter().any(|l| l.message == "The order has no card payment; nothing to capture."), "{:?}", st.log);
    assert_eq!(capture::Entity::find().count(&s.db).await.unwrap(), 0);

    // Paid by card, but its authorization is no longer open: the stage fails and says what to do.
    let card = OrderBuilder::new(&fx).line("Tent", 1, "150.00").place(s).await;
    payments::entity::authorization::Entity::update_many()
        .col_expr(payments::entity::authorization::Column::Status, sea_orm::sea_query::Expr::value(AuthorizationStatus::Closed.code()))
        .filter(payments::entity::authorization::Column::OrderId.eq(card.order_id))
        .exec(&s.db)
        .await
        .unwrap();
    let out = invoice(s, card.order_id, &[1]).await;
    assert_eq!(out.status, ProcessStatus::Incomplete, "{out:?}");
    assert!(out.error.as_deref().unwrap().contains("has no open card authorization; take a new payment"), "{out:?}");
    let h = queries::history(&s.db, out.process_id).await.unwrap();
    assert_eq!(stage_of(&h, Stage::CaptureOrRefund).status, StageStatus::Failed);
    assert_eq!(capture::Entity::find().count(&s.db).await.unwrap(), 0);
    assert_eq!(simulator::ledger_totals(sim(s)).await.unwrap().captures, 0, "the processor was not called");
});

/// `text` without its identifiers (INV-000012, SO-…, JNL-…, tracking ids, references: a digit and
/// a dash, or long); amounts such as 150.00 are kept.
fn plain(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            let core = w.trim_end_matches(['.', ',', ';', ':', ')']);
            if core.chars().any(|c| c.is_ascii_digit()) && (core.contains('-') || core.len() >= 16) {
                w.replacen(core, "#", 1)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Everything an invoicing wrote for one order, with ids, numbers, tracking ids and times left
/// out, so that two orders placed alike compare equal when invoiced alike.
async fn written_for(s: &Services, order_id: i32) -> Vec<String> {
    use payments::entity::{invoice, invoice_line, journal, journal_line, sales_order, sales_order_line, stage_log};
    use sea_orm::QueryOrder;
    let mut out = Vec::new();
    let order = sales_order::Entity::find_by_id(order_id).one(&s.db).await.unwrap().unwrap();
    out.push(format!("order {} {}", order.status, order.do_not_process));
    let lines = sales_order_line::Entity::find().filter(sales_order_line::Column::OrderId.eq(order_id)).order_by_asc(sales_order_line::Column::LineNo).all(&s.db).await.unwrap();
    for l in &lines {
        out.push(format!("line {} invoiced {} credited {}", l.line_no, l.invoiced_quantity, l.credited_quantity));
    }
    for i in invoice::Entity::find().filter(invoice::Column::OrderId.eq(order_id)).order_by_asc(invoice::Column::Id).all(&s.db).await.unwrap() {
        assert_eq!(i.number, format!("INV-{:06}", i.id), "an invoice is numbered after its id");
        out.push(format!("invoice {} {} prepaid {} by {}", i.amount_minor, i.currency, i.prepaid_minor, i.posted_by));
        for il in invoice_line::Entity::find().filter(invoice_line::Column::InvoiceId.eq(i.id)).order_by_asc(invoice_line::Column::Id).all(&s.db).await.unwrap() {
            let no = lines.iter().find(|l| l.id == il.order_line_id).unwrap().line_no;
            out.push(format!("  invoice line {no} quantity {} amount {}", il.quantity, il.amount_minor));
        }
        let p = payment_process::Entity::find().filter(payment_process::Column::InvoiceId.eq(i.id)).one(&s.db).await.unwrap().unwrap();
        out.push(format!("  process {} monitored {} path {:?} captured {} error {:?}", p.status, p.monitored, p.capture_path, p.captured_minor, p.last_error));
        for st in process_stage::Entity::find().filter(process_stage::Column::ProcessId.eq(p.id)).order_by_asc(process_stage::Column::Stage).all(&s.db).await.unwrap() {
            out.push(format!("  stage {} {} attempts {} started {} finished {} error {:?}", st.stage, st.status, st.attempts, st.started_at.is_some(), st.finished_at.is_some(), st.error));
        }
        for l in stage_log::Entity::find().filter(stage_log::Column::ProcessId.eq(p.id)).order_by_asc(stage_log::Column::Id).all(&s.db).await.unwrap() {
            out.push(format!("  log {} attempt {}: {}", l.stage, l.attempt, plain(&l.message)));
        }
    }
    for j in journal::Entity::find().filter(journal::Column::OrderId.eq(order_id)).order_by_asc(journal::Column::Id).all(&s.db).await.unwrap() {
        assert_eq!(j.number, format!("JNL-{:06}", j.id), "a journal is numbered after its id");
        out.push(format!("journal {} {} {:?} {:?} {}", j.kind, j.currency, j.tender, j.customer_id.is_some(), plain(&j.description)));
        for l in journal_line::Entity::find().filter(journal_line::Column::JournalId.eq(j.id)).order_by_asc(journal_line::Column::Id).all(&s.db).await.unwrap() {
            out.push(format!("  {} debit {} credit {}", l.account, l.debit_minor, l.credit_minor));
        }
    }
    out
}

db_test!(invoicings_posted_together_write_what_each_writes_on_its_own, |db| {
    // Issue 3: the batched stage 1 writes exactly what the one-at-a-time path writes (R-PIP-1,
    // R-PIP-2, R-LED-1), and leaves what it does not take to that path, whose answers are the same.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let alone = s.clone().one_at_a_time();
    let shapes: [&[i32]; 3] = [&[1, 2], &[1, 0], &[0, 1]];
    let place = || OrderBuilder::new(&fx).line("Tent", 1, "150.00").line("Stove", 2, "45.50").tax("8.25").charges("12.00");
    let mut pairs = Vec::new();
    for _ in shapes {
        pairs.push((place().place(s).await.order_id, place().place(s).await.order_id));
    }
    // Refused by both paths alike: more than is open, and an order on hold.
    let over = (place().place(s).await.order_id, place().place(s).await.order_id);
    let held = (place().place(s).await.order_id, place().place(s).await.order_id);
    for id in [held.0, held.1] {
        payments::entity::sales_order::Entity::update_many()
            .col_expr(payments::entity::sales_order::Column::DoNotProcess, sea_orm::sea_query::Expr::value(true))
            .filter(payments::entity::sales_order::Column::Id.eq(id))
            .exec(&s.db)
            .await
            .unwrap();
    }
    let quantities = |order_id: i32, qty: Vec<i32>| async move {
        let d = detail(s, order_id).await;
        d.lines.iter().zip(qty).map(|(l, q)| (l.id, q)).collect::<Vec<(i32, i32)>>()
    };

    // One at a time.
    let mut answers_alone = Vec::new();
    for ((_, order), qty) in pairs.iter().zip(shapes) {
        let out = pipeline::invoice(&alone, "finance", *order, &quantities(*order, qty.to_vec()).await).await.unwrap();
        assert_eq!(out.status, ProcessStatus::Completed, "{out:?}");
    }
    for (order, qty) in [(over.1, vec![2, 0]), (held.1, vec![1, 0])] {
        answers_alone.push(plain(&pipeline::invoice(&alone, "finance", order, &quantities(order, qty).await).await.unwrap_err().to_string()));
    }
    assert_eq!(payments::pipeline::batches(&s).counts(), (0, 0), "nothing went through a batch yet");

    // Together: all five wait while the turn is held, then one turn takes them.
    let turn = payments::pipeline::batches(&s).hold().await;
    let mut work = Vec::new();
    for ((order, _), qty) in pairs.iter().zip(shapes).map(|(p, q)| (p, q.to_vec())).chain([(&over, vec![2, 0]), (&held, vec![1, 0])]) {
        let q = quantities(*order, qty).await;
        let s = s.clone();
        let order = *order;
        work.push(tokio::spawn(async move { pipeline::invoice(&s, "finance", order, &q).await }));
    }
    while payments::pipeline::batches(&s).waiting() < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    drop(turn);
    let mut answers_together = Vec::new();
    for (i, w) in work.into_iter().enumerate() {
        let out = w.await.unwrap();
        if i < 3 {
            let out = out.unwrap();
            assert_eq!(out.status, ProcessStatus::Completed, "{out:?}");
        } else {
            answers_together.push(plain(&out.unwrap_err().to_string()));
        }
    }
    assert_eq!(payments::pipeline::batches(&s).counts(), (1, 3), "one turn posted the three it could; the two refused went their own way");
    assert_eq!(answers_together, answers_alone, "the same refusals");
    assert!(answers_alone[0].contains("can be invoiced, not 2") && answers_alone[1].contains("on hold"), "{answers_alone:?}");
    for (together, alone_id) in pairs {
        assert_eq!(written_for(s, together).await, written_for(s, alone_id).await);
    }
    for (a, b) in [over, held] {
        let (wa, wb) = (written_for(s, a).await, written_for(s, b).await);
        assert_eq!(wa, wb);
        assert!(!wa.iter().any(|l| l.starts_with("invoice")), "a refused invoicing writes nothing: {wa:?}");
    }
    assert_clean(&db).await;
});

db_test!(a_group_waiting_on_a_slow_processor_does_not_hold_back_the_next_invoicing, |db| {
    // Issue 3, R-PIP-1: an invoicing whose capture call waits on the processor gives up its
    // group's turn, so the next invoicing is posted (stage 1) while the first still waits; before,
    // the turn lasted until the whole group had finished.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let place = || OrderBuilder::new(&fx).line("Tent", 1, "150.00").line("Stove", 2, "45.50");
    let (first, second) = (place().place(s).await.order_id, place().place(s).await.order_id);
    let everything = |order_id: i32| async move { detail(s, order_id).await.lines.iter().map(|l| (l.id, l.quantity)).collect::<Vec<(i32, i32)>>() };
    let (q1, q2) = (everything(first).await, everything(second).await);
    faults::add(sim(s), s.now(), "capture", "latency", "1", "1", "3000").await.unwrap();
    let slow = {
        let s = s.clone();
        tokio::spawn(async move { pipeline::invoice(&s, "finance", first, &q1).await })
    };
    // The first invoicing is posted, then waits 3 s on its capture.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while detail(s, first).await.invoices.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the first invoicing was not posted");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let quick = {
        let s = s.clone();
        tokio::spawn(async move { pipeline::invoice(&s, "finance", second, &q2).await })
    };
    let out = quick.await.unwrap().unwrap();
    assert_eq!(out.status, ProcessStatus::Completed, "{out:?}");
    assert!(!slow.is_finished(), "the second invoicing waited for the first one's slow capture");
    assert_eq!(slow.await.unwrap().unwrap().status, ProcessStatus::Completed);
    assert_eq!(simulator::ledger_totals(sim(s)).await.unwrap().captures, 2);
    assert_clean(&db).await;
});

db_test!(a_group_of_several_waiting_on_a_slow_processor_does_not_hold_back_the_next_group, |db| {
    // Issue 3, R-PIP-1: as above, with a group of two. Each invoicing of the group that a turn
    // posted for it stops waiting for the turn there; before, such an invoicing stayed in the
    // turn's queue while it ran on, was granted the turn once the group gave it up, and held it
    // unused until its own slow capture ended, so the next invoicing waited for the processor.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let mut orders = whole_orders(s, &fx, 3).await;
    let (third, q3) = orders.pop().unwrap();
    // Until removed (a fault limited to 2 uses could fire once only for two concurrent draws, and
    // then for the third): both captures of the group draw it, then it is removed.
    let latency = faults::add(sim(s), s.now(), "capture", "latency", "1", "", "3000").await.unwrap();
    let turn = payments::pipeline::batches(&s).hold().await;
    let mut slow = Vec::new();
    for (order, q) in orders.clone() {
        let s = s.clone();
        slow.push(tokio::spawn(async move { pipeline::invoice(&s, "finance", order, &q).await }));
    }
    while payments::pipeline::batches(&s).waiting() < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    drop(turn);
    // Both are posted together, then wait 3 s on their captures.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    for (order, _) in &orders {
        while detail(s, *order).await.invoices.is_empty() {
            assert!(std::time::Instant::now() < deadline, "the group was not posted");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    assert_eq!(payments::pipeline::batches(&s).counts(), (1, 2), "one turn posted the two");
    let fired = || async move { faults::list(sim(s)).await.unwrap().iter().find(|f| f.id == latency).map_or(0, |f| f.fired) };
    while fired().await < 2 {
        assert!(std::time::Instant::now() < deadline, "the group's captures were not sent");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    faults::clear(sim(s)).await.unwrap();
    let out = pipeline::invoice(s, "finance", third, &q3).await.unwrap();
    assert_eq!(out.status, ProcessStatus::Completed, "{out:?}");
    assert!(slow.iter().all(|w| !w.is_finished()), "the third invoicing waited for the group's slow captures");
    for w in slow {
        assert_eq!(w.await.unwrap().unwrap().status, ProcessStatus::Completed);
    }
    assert_eq!(payments::pipeline::batches(&s).counts(), (2, 3));
    assert_eq!(simulator::ledger_totals(sim(s)).await.unwrap().captures, 3);
    assert_clean(&db).await;
});

db_test!(invoicings_posted_together_take_each_later_step_together, |db| {
    // Issue 3, R-PIP-1: a group posted in one turn reaches each later step a little apart (its
    // captures end at different times); the step's turn waits for the members still on their way
    // instead of running for whoever has arrived and then again for the rest. A member that leaves
    // the group (here its capture fails) is not waited for. With waits this long (30 s), a group
    // that waited for a member that had left would take 30 s per step.
    let mut s = db.services.clone();
    let long = std::time::Duration::from_secs(30);
    s.invoicing = std::sync::Arc::new(pipeline::InvoiceBatches::new(true).with_linger(long, long));
    let s = &s;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let orders = whole_orders(s, &fx, 4).await;
    faults::add(sim(s), s.now(), "capture", "error_before", "1", "1", "").await.unwrap();
    let started = std::time::Instant::now();
    let turn = payments::pipeline::batches(&s).hold().await;
    let mut work = Vec::new();
    for (order, q) in orders {
        let s = s.clone();
        work.push(tokio::spawn(async move { pipeline::invoice(&s, "finance", order, &q).await.unwrap() }));
    }
    while payments::pipeline::batches(&s).waiting() < 4 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    drop(turn);
    let mut statuses = Vec::new();
    for w in work {
        statuses.push(w.await.unwrap().status);
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "a step waited for the member that had left: {:?}", started.elapsed());
    statuses.sort_by_key(|st| st.code());
    assert_eq!(statuses, vec![ProcessStatus::Completed, ProcessStatus::Completed, ProcessStatus::Completed, ProcessStatus::Incomplete]);
    assert_eq!(payments::pipeline::batches(&s).counts(), (1, 4), "one turn posted the four");
    assert_eq!(payments::pipeline::batches(&s).step_runs(), [1], "the step after the processor ran once, for the three captured (stage 1 requested all four captures with their invoices)");
    assert_eq!(simulator::ledger_totals(sim(s)).await.unwrap().captures, 3);
    let rows = queries::incomplete(&s.db, None).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].failed_stage, Some(Stage::CaptureOrRefund));
});

db_test!(many_invoicings_in_flight_go_in_two_groups_on_postgres_and_in_one_on_sqlite, |db| {
    // Issue 3, R-PIP-1: with a quick processor, SQLite (one writer) posts everything waiting in
    // one turn, while PostgreSQL posts half of the invoicings in flight in each of two turns, the
    // second group posted while the first captures and settles. Every invoice completes, each
    // captured once, either way.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let orders = whole_orders(s, &fx, 20).await;
    let turn = payments::pipeline::batches(&s).hold().await;
    let mut work = Vec::new();
    for (order, q) in orders {
        let s = s.clone();
        work.push(tokio::spawn(async move { pipeline::invoice(&s, "finance", order, &q).await }));
    }
    while payments::pipeline::batches(&s).waiting() < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    drop(turn);
    for w in work {
        let out = w.await.unwrap().unwrap();
        assert_eq!(out.status, ProcessStatus::Completed, "{out:?}");
    }
    let groups = if s.db.get_database_backend() == sea_orm::DbBackend::Postgres { (2, 20) } else { (1, 20) };
    assert_eq!(payments::pipeline::batches(&s).counts(), groups, "(turns, invoices they posted)");
    assert_eq!(simulator::ledger_totals(sim(s)).await.unwrap().captures, 20);
    assert_clean(&db).await;
});

/// A simulator of its own over the test database, and the processor references of `n` new
/// orders' authorizations (900.00 each), with the pipeline on.
async fn simulator_with_authorizations(s: &Services, n: usize) -> (simulator::ProcessorSimulator, Vec<String>) {
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let mut references = Vec::new();
    for _ in 0..n {
        let placed = OrderBuilder::new(&fx).line("Canoe", 1, "900.00").place(s).await;
        let auth = payments::entity::authorization::Entity::find().filter(payments::entity::authorization::Column::OrderId.eq(placed.order_id)).one(&s.db).await.unwrap().unwrap();
        references.push(auth.processor_reference);
    }
    (simulator::ProcessorSimulator::new(sim(s).clone(), s.clock.clone()), references)
}

db_test!(requests_that_reach_the_processor_together_are_each_answered_on_their_own, |db| {
    // The simulator, R-CAP-1 and R-CAP-5: requests that arrive together are each answered as if
    // they were alone. A refused request writes nothing, a retry sent at the same time as its
    // first is answered from the first's record, and a repeated tracking id moves money once.
    let s = &db.services;
    let (processor, references) = simulator_with_authorizations(s, 6).await;
    let usd = |minor| payments::domain::money::Money::from_minor(minor, payments::domain::money::Currency::USD);
    // Six captures of 100.00, the first one sent twice, one of 0.00 (refused) and one above what
    // is left (declined), all at once.
    let mut calls: Vec<(String, String, i64)> = references.iter().enumerate().map(|(i, r)| (format!("c-{i}"), r.clone(), 10_000)).collect();
    calls.push(("c-0".into(), references[0].clone(), 10_000));
    calls.push(("zero".into(), references[1].clone(), 0));
    calls.push(("over".into(), references[2].clone(), 10_000_000));
    let mut work = Vec::new();
    for (id, reference, minor) in calls {
        let processor = processor.clone();
        work.push(tokio::spawn(async move {
            use payments::connector::Connector;
            processor.capture(&id, &reference, usd(minor), false).await
        }));
    }
    let mut answers = Vec::new();
    for w in work {
        answers.push(w.await.unwrap());
    }
    let firsts: Vec<String> = answers[..6].iter().map(|a| a.as_ref().expect("each capture is taken").reference.clone()).collect();
    assert_eq!(firsts.iter().collect::<std::collections::HashSet<_>>().len(), 6, "six captures, six references");
    assert_eq!(answers[6].as_ref().unwrap().reference, firsts[0], "the retry gets the first answer");
    assert!(matches!(answers[7], Err(payments::connector::ConnectorError::Invalid(_))), "{:?}", answers[7]);
    assert!(matches!(answers[8], Err(payments::connector::ConnectorError::Declined { ref code, .. }) if code == "amount_exceeds_authorization"), "{:?}", answers[8]);
    let totals = simulator::ledger_totals(sim(s)).await.unwrap();
    assert_eq!((totals.captures, totals.captured), (6, 60_000), "money moved once per tracking id: {totals:?}");
});

db_test!(captures_on_one_authorization_that_arrive_together_see_each_other_and_a_void_among_them, |db| {
    // The simulator, R-CAP-1 and R-CAP-4: captures on one authorization that arrive together are
    // taken one after the other, so that together they never take more than was authorized; a
    // void among them reads the authorization with the captures taken before it, and captures
    // after it are declined. The ledger's captures add up to each
    // authorization's captured total.
    use payments::connector::{Connector, ConnectorError};
    use payments::connector::simulator::entity::{sim_authorization as sa, sim_capture as sc};
    let s = &db.services;
    let (processor, references) = simulator_with_authorizations(s, 2).await;
    let amount_of = |r: String| async move { sa::Entity::find_by_id(r).one(sim(s)).await.unwrap().unwrap() };
    let first = amount_of(references[0].clone()).await;
    let second = amount_of(references[1].clone()).await;
    assert_eq!((first.captured_minor, second.captured_minor), (0, 0));
    let usd = |minor| payments::domain::money::Money::from_minor(minor, payments::domain::money::Currency::USD);
    let part = first.amount_minor * 3 / 10;
    let tenth = second.amount_minor / 10;
    let mut work = Vec::new();
    for i in 0..5 {
        let (processor, r) = (processor.clone(), references[0].clone());
        work.push(tokio::spawn(async move { processor.capture(&format!("first-{i}"), &r, usd(part), false).await.map(|c| c.amount.minor()) }));
    }
    for i in 0..4 {
        let (processor, r) = (processor.clone(), references[1].clone());
        work.push(tokio::spawn(async move {
            if i == 2 {
                processor.void("second-void", &r).await.map(|_| 0)
            } else {
                processor.capture(&format!("second-{i}"), &r, usd(tenth), false).await.map(|c| c.amount.minor())
            }
        }));
    }
    let mut answers = Vec::new();
    for w in work {
        answers.push(w.await.unwrap());
    }
    let taken = answers[..5].iter().filter(|a| a.is_ok()).count();
    assert_eq!(taken, 3, "three captures of 30% fit on the authorization, not five: {answers:?}");
    for a in answers[..5].iter().filter(|a| a.is_err()) {
        assert!(matches!(a, Err(ConnectorError::Declined { code, .. }) if code == "amount_exceeds_authorization"), "{a:?}");
    }
    assert!(answers[7].is_ok(), "the void is taken: {:?}", answers[7]);
    let first = amount_of(references[0].clone()).await;
    let second = amount_of(references[1].clone()).await;
    assert_eq!(first.captured_minor, 3 * part, "the authorization's total holds every capture taken");
    assert_eq!(second.status, "voided", "the void is not undone by the captures written with it");
    let taken_second: i64 = [5, 6, 8].iter().filter_map(|i| answers[*i].as_ref().ok()).sum();
    for i in [5, 6, 8] {
        if let Err(e) = &answers[i] {
            assert!(matches!(e, ConnectorError::Declined { code, .. } if code == "authorization_closed"), "a capture after the void: {e:?}");
        }
    }
    assert_eq!(second.captured_minor, taken_second, "captures taken before the void are on the authorization");
    for a in [&first, &second] {
        let rows = sc::Entity::find().filter(sc::Column::AuthorizationReference.eq(a.reference.clone())).all(sim(s)).await.unwrap();
        assert_eq!(rows.iter().map(|c| c.amount_minor).sum::<i64>(), a.captured_minor, "the ledger's captures add up to the authorization's total");
    }
    // The last of the first authorization, as the final capture: taken, and the authorization closed.
    let last = processor.capture("first-final", &references[0], usd(first.amount_minor - 3 * part), true).await.unwrap();
    assert!(last.authorization_closed);
    let closed = processor.capture("first-after", &references[0], usd(1), false).await;
    assert!(matches!(closed, Err(ConnectorError::Declined { ref code, .. }) if code == "authorization_closed"), "{closed:?}");
    assert_eq!(amount_of(references[0].clone()).await.captured_minor, first.amount_minor);
});

/// Two servers' simulators capture 30% of each of `references` three times each, at once, the
/// second server in the opposite order, while a transaction of the test's own holds the first
/// authorization (its row locked on PostgreSQL; on SQLite the store's one connection) until both
/// servers' requests are under way, so that they are in flight together when it is let go.
/// Returns the tracking ids that timed out and how many captures were taken and declined (those
/// that timed out asked of the processor).
async fn capture_from_two_servers(s: &Services, servers: [&simulator::ProcessorSimulator; 2], references: &[String], part: i64) -> (Vec<String>, usize, usize) {
    use payments::connector::{Connector, ConnectorError, Outcome};
    use payments::connector::simulator::entity::sim_authorization as sa;
    let usd = |minor| payments::domain::money::Money::from_minor(minor, payments::domain::money::Currency::USD);
    let holder = sea_orm::TransactionTrait::begin(sim(s)).await.unwrap();
    let mut hold = sa::Entity::find_by_id(references[0].clone());
    if sim(s).get_database_backend() == sea_orm::DbBackend::Postgres {
        hold = sea_orm::QuerySelect::lock_exclusive(hold);
    }
    hold.one(&holder).await.unwrap().unwrap();
    let mut work = Vec::new();
    for (server, processor) in servers.into_iter().enumerate() {
        let order: Vec<String> = if server == 0 { references.to_vec() } else { references.iter().rev().cloned().collect() };
        for round in 0..3 {
            for reference in &order {
                let (processor, reference, id) = (processor.clone(), reference.clone(), format!("s{server}-{round}-{reference}"));
                work.push(tokio::spawn(async move { (id.clone(), processor.capture(&id, &reference, usd(part), false).await) }));
            }
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    holder.rollback().await.unwrap();
    let (mut timed_out, mut taken, mut declined) = (Vec::new(), 0, 0);
    for w in work {
        let (id, answer) = w.await.unwrap();
        match answer {
            Ok(c) => {
                assert_eq!(c.amount.minor(), part);
                taken += 1;
            }
            Err(ConnectorError::Declined { code, .. }) => {
                assert_eq!(code, "amount_exceeds_authorization", "{id}");
                declined += 1;
            }
            Err(ConnectorError::Timeout) => timed_out.push(id),
            Err(e) => panic!("{id}: {e}"),
        }
    }
    for id in &timed_out {
        match servers[0].query(id).await.unwrap() {
            Some(Outcome::Captured(_)) => taken += 1,
            Some(Outcome::Declined { .. }) => declined += 1,
            other => panic!("{id}: {other:?}"),
        }
    }
    (timed_out, taken, declined)
}

db_test!(two_servers_take_captures_on_one_authorization_one_after_the_other_and_use_a_fault_once, |db| {
    // The simulator with several server instances, R-CAP-1 and R-CAP-5: two simulators over one
    // store (two servers) send captures on the same two authorizations at once, in opposite
    // orders. Each capture locks its authorization (on PostgreSQL; SQLite's write lock serializes
    // them), so together they never take more than was authorized and never deadlock, first with
    // no fault, then with a fault given four uses, which fires exactly four times across both.
    use payments::connector::simulator::entity::{sim_authorization as sa, sim_capture as sc};
    let s = &db.services;
    let (one, references) = simulator_with_authorizations(s, 4).await;
    let other = simulator::ProcessorSimulator::new(sim(s).clone(), s.clock.clone());
    let authorized = sa::Entity::find_by_id(references[0].clone()).one(sim(s)).await.unwrap().unwrap().amount_minor;
    let part = authorized * 3 / 10;
    for (round, pair) in references.chunks(2).enumerate() {
        let four = if round == 1 { Some(faults::add(sim(s), s.now(), "capture", "timeout_after", "1", "4", "").await.unwrap()) } else { None };
        let (timed_out, taken, declined) = capture_from_two_servers(s, [&one, &other], pair, part).await;
        assert_eq!(timed_out.len(), if four.is_some() { 4 } else { 0 }, "round {round}: the fault's uses fired once each across both servers: {timed_out:?}");
        assert_eq!((taken, declined), (6, 6), "round {round}: three captures of 30% fit on each authorization, the other three are declined");
        for reference in pair {
            let a = sa::Entity::find_by_id(reference.clone()).one(sim(s)).await.unwrap().unwrap();
            assert_eq!(a.captured_minor, 3 * part, "{reference}: the authorization's total holds the three captures taken, no more");
            let rows = sc::Entity::find().filter(sc::Column::AuthorizationReference.eq(reference.clone())).all(sim(s)).await.unwrap();
            assert_eq!((rows.len(), rows.iter().map(|c| c.amount_minor).sum::<i64>()), (3, 3 * part), "{reference}: the ledger's captures");
        }
        if let Some(four) = four {
            assert!(faults::list(sim(s)).await.unwrap().iter().all(|f| f.id != four), "the fault whose uses are spent is removed");
        }
    }
});

db_test!(requests_that_reach_the_processor_together_each_draw_the_faults_and_a_limited_one_is_used_up, |db| {
    // The fault injector and R-CAP-5: requests that arrive together fire a fault given two uses
    // exactly twice, and count an unlimited one once per request. A timeout after
    // the effect loses the answer, not the capture: asking about the tracking id finds it.
    let s = &db.services;
    let (processor, references) = simulator_with_authorizations(s, 6).await;
    let usd = |minor| payments::domain::money::Money::from_minor(minor, payments::domain::money::Currency::USD);
    let latency = faults::add(sim(s), s.now(), "any", "latency", "1", "", "1").await.unwrap();
    let twice = faults::add(sim(s), s.now(), "capture", "timeout_after", "1", "2", "").await.unwrap();
    let mut work = Vec::new();
    for (i, reference) in references.iter().enumerate() {
        let (processor, reference) = (processor.clone(), reference.clone());
        work.push(tokio::spawn(async move {
            use payments::connector::Connector;
            (format!("f-{i}"), processor.capture(&format!("f-{i}"), &reference, usd(10_000), false).await)
        }));
    }
    let mut timed_out = Vec::new();
    for w in work {
        let (id, answer) = w.await.unwrap();
        match answer {
            Ok(c) => assert_eq!(c.amount.minor(), 10_000),
            Err(payments::connector::ConnectorError::Timeout) => timed_out.push(id),
            Err(e) => panic!("{id}: {e}"),
        }
    }
    assert_eq!(timed_out.len(), 2, "a fault given two uses fires twice: {timed_out:?}");
    let totals = simulator::ledger_totals(sim(s)).await.unwrap();
    assert_eq!((totals.captures, totals.captured), (6, 60_000), "a timeout after the effect still captured: {totals:?}");
    let listed = faults::list(sim(s)).await.unwrap();
    let fired = |id: i32| listed.iter().find(|f| f.id == id).map(|f| f.fired);
    assert_eq!(fired(latency), Some(6), "the latency fault counted once per request");
    assert_eq!(fired(twice), None, "a fault whose uses are spent is removed");
    for id in &timed_out {
        use payments::connector::Connector;
        assert!(matches!(processor.query(id).await.unwrap(), Some(payments::connector::Outcome::Captured(_))), "{id} is known to the processor");
    }
});

db_test!(the_processor_answers_a_repeated_tracking_id_with_its_first_answer_and_moves_money_once, |db| {
    // R-CAP-5 and issue 3's simulator: a retry (even two at once) gets the original result; the
    // processor records the tracking id with the effect and undoes a repeated one's effect.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Canoe", 1, "900.00").place(s).await;
    let auth = payments::entity::authorization::Entity::find().filter(payments::entity::authorization::Column::OrderId.eq(placed.order_id)).one(&s.db).await.unwrap().unwrap();
    let usd = |minor| payments::domain::money::Money::from_minor(minor, payments::domain::money::Currency::USD);
    let first = s.connector.capture("t-1", &auth.processor_reference, usd(30_000), false).await.unwrap();
    let again = s.connector.capture("t-1", &auth.processor_reference, usd(30_000), false).await.unwrap();
    assert_eq!(again.reference, first.reference, "the same answer");
    assert_eq!(simulator::ledger_totals(sim(s)).await.unwrap().captured, 30_000, "moved once");
    // Two at once with a new id: one capture, both told the same.
    let (a, b) = tokio::join!(
        s.connector.capture("t-2", &auth.processor_reference, usd(20_000), false),
        s.connector.capture("t-2", &auth.processor_reference, usd(20_000), false)
    );
    assert_eq!(a.unwrap().reference, b.unwrap().reference);
    let totals = simulator::ledger_totals(sim(s)).await.unwrap();
    assert_eq!((totals.captured, totals.captures), (50_000, 2));
    // A retry whose effect would now be refused (more than is left) still gets its first answer.
    let all_left = s.connector.capture("t-3", &auth.processor_reference, usd(40_000), false).await.unwrap();
    assert_eq!(s.connector.capture("t-3", &auth.processor_reference, usd(40_000), false).await.unwrap().reference, all_left.reference);
    // The id of a capture used for a refund is refused, and changes nothing.
    let err = s.connector.refund("t-1", &first.reference, usd(100)).await.unwrap_err();
    assert!(err.to_string().contains("was used for"), "{err}");
    let totals = simulator::ledger_totals(sim(s)).await.unwrap();
    assert_eq!((totals.captured, totals.captures, totals.refunded), (90_000, 3, 0));
});

db_test!(a_lease_taken_during_a_batched_capture_call_stops_the_settle_step, |db| {
    // Issue 3, R-PIP-2, R-CAP-5: the batched settle step renews its processes' leases in the
    // statement that locks their authorizations (one statement on PostgreSQL, two on SQLite).
    // When another server took one of them over while the processor answered, the captures taken
    // are still recorded, once, and nothing else is written: no payment journal, no completion,
    // and the other server keeps its lease. Once the leases run out, recovery completes both
    // without charging again.
    // The two answers come back over HTTP a few milliseconds apart, more than a turn waits for
    // the next by default (a late one goes to a turn of its own, where it keeps its lease): this
    // test's turn waits long enough to take both together.
    let mut services = db.services.clone();
    services.invoicing = std::sync::Arc::new(pipeline::InvoiceBatches::new(true).with_linger(std::time::Duration::from_millis(150), std::time::Duration::from_millis(400)));
    let s = &services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let orders = whole_orders(s, &fx, 2).await;
    faults::add(sim(s), s.now(), "capture", "latency", "1", "", "300").await.unwrap();
    let steal = async {
        // Both capture calls are on their way: their intents are committed (stage 1 is done) and
        // the connector has recorded both requests it sends (each answered 300 ms later).
        let requests = loop {
            let r = processor_request::Entity::find().filter(processor_request::Column::Command.eq(Command::Capture.code())).all(&s.db).await.unwrap();
            let sent = payments::entity::processor_send::Entity::find().all(&s.db).await.unwrap();
            if r.len() == 2 && r.iter().all(|q| sent.iter().any(|x| x.idempotency_key == q.tracking_id)) {
                break r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        let stolen = requests[0].process_id.unwrap();
        payment_process::Entity::update_many()
            .col_expr(payment_process::Column::LeaseOwner, sea_orm::sea_query::Expr::value("another-server"))
            .col_expr(payment_process::Column::LeaseUntil, sea_orm::sea_query::Expr::value(s.now() + chrono::Duration::minutes(10)))
            .filter(payment_process::Column::Id.eq(stolen))
            .exec(&s.db)
            .await
            .unwrap();
        stolen
    };
    let ((first, second), stolen) = tokio::join!(invoice_in_one_turn(s, (orders[0].0, &orders[0].1), (orders[1].0, &orders[1].1)), steal);
    for out in [first.unwrap(), second.unwrap()] {
        assert_eq!(out.status, ProcessStatus::Running, "the group's run stops with its lease: {out:?}");
    }
    assert_eq!(payments::pipeline::batches(&s).counts(), (1, 2), "both went in one turn");
    assert_eq!(capture::Entity::find().count(&s.db).await.unwrap(), 2, "each capture taken is recorded");
    assert_eq!(simulator::ledger_totals(sim(s)).await.unwrap().captures, 2);
    assert_eq!(payments::entity::journal::Entity::find().count(&s.db).await.unwrap(), 2, "the invoice journals only, no payment journal");
    let p = payment_process::Entity::find_by_id(stolen).one(&s.db).await.unwrap().unwrap();
    assert_eq!((p.status.as_str(), p.lease_owner.as_deref()), (ProcessStatus::Running.code(), Some("another-server")));
    let journal_stage = process_stage::Entity::find()
        .filter(process_stage::Column::ProcessId.eq(stolen))
        .filter(process_stage::Column::Stage.eq(Stage::PostPaymentJournal.code()))
        .one(&s.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(journal_stage.status, StageStatus::Pending.code(), "stage 3 never started");

    // Every lease runs out; recovery finishes both, from the captures recorded.
    payment_process::Entity::update_many()
        .col_expr(payment_process::Column::LeaseUntil, sea_orm::sea_query::Expr::value(s.now() - chrono::Duration::seconds(1)))
        .exec(&s.db)
        .await
        .unwrap();
    faults::clear(sim(s)).await.unwrap();
    payments::service::jobs::recover(s, 10).await.unwrap();
    for p in payment_process::Entity::find().all(&s.db).await.unwrap() {
        assert_eq!(p.status, ProcessStatus::Completed.code(), "process {}", p.id);
    }
    assert_eq!(simulator::ledger_totals(sim(s)).await.unwrap().captures, 2, "recovery charged no one again");
    assert_clean(&db).await;
});

db_test!(migration_11_derives_the_typed_facts_of_rows_written_before_it, |db| {
    // Issue #41, migration 11: a database from before it knew a credit note by its "CRN" number
    // and a capture path by the wording of its explanation. Rolled back and applied again, the
    // migration derives `invoices.kind` and `payment_processes.capture_kind` from them, so a
    // credit note in flight is still refunded, never captured.
    use migrations::MigratorTrait;
    let s = &db.services;
    let (_fx, placed, d) = card_order(s, "Tent", 2, "100.00").await;
    let first = pipeline::invoice(s, "finance", placed.order_id, &[(d.lines[0].id, 2)]).await.unwrap();
    let credit = pipeline::credit(s, "finance", placed.order_id, &[(d.lines[0].id, 1)]).await.unwrap();
    // Back to before migration 11 (the ten before it stay), then up again.
    let after_ten = u32::try_from(migrations::Migrator::migrations().len() - 10).unwrap();
    migrations::Migrator::down(&s.db, Some(after_ten)).await.unwrap();
    migrations::Migrator::up(&s.db, None).await.unwrap();
    // A new connection: this one's prepared statements were made for the columns as they were.
    let fresh = payments::db::connect(&db.url).await.unwrap();
    let kind = |id: i32| {
        let fresh = fresh.clone();
        async move { payments::entity::invoice::Entity::find_by_id(id).one(&fresh).await.unwrap().unwrap().kind }
    };
    assert_eq!(kind(first.invoice_id).await, DocumentKind::Invoice.code());
    assert_eq!(kind(credit.invoice_id).await, DocumentKind::CreditNote.code());
    let process = payment_process::Entity::find_by_id(first.process_id).one(&fresh).await.unwrap().unwrap();
    assert_eq!(process.capture_kind.as_deref(), Some(CaptureKind::Incremental.code()), "{:?}", process.capture_path);
    let refund = payment_process::Entity::find_by_id(credit.process_id).one(&fresh).await.unwrap().unwrap();
    assert_eq!(refund.capture_kind, None, "a refund takes no capture path");
});

db_test!(reconciliation_lists_every_break_with_its_cause_and_resolving_it_clears_it, |db| {
    // Issue #44, R-LED-1/R-LED-2: an order whose money adds up is checked and has no break; a
    // capture whose journal failed is a break (capture without a journal) until the payment is
    // resumed; a terminated payment stays a break (its receivable is not settled) with the capture
    // it left without a journal; a request whose outcome is unknown is a break once it is no
    // longer in flight. The CSV carries the same breaks.
    use payments::domain::reconciliation::BreakCause;
    use payments::service::reconciliation;
    use sea_orm::{ActiveModelTrait, Set};
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let clean = OrderBuilder::new(&fx).line("Tent", 1, "150.00").place(s).await;
    assert_eq!(invoice(s, clean.order_id, &[1]).await.status, ProcessStatus::Completed);
    let r = reconciliation::report(s).await.unwrap();
    assert_eq!((r.checked_orders, r.breaks.len()), (1, 0), "{r:?}");
    assert!(r.by_cause.iter().all(|c| c.count == 0) && r.by_cause.len() == BreakCause::ALL.len());
    // `paystage reconcile`, as cron runs it: the report alone on stdout, exit 0 with no break.
    let reconcile = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_paystage")).arg("reconcile").env("DATABASE_URL", &db.url).output().unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code(), report)
    };
    let (code, json) = reconcile();
    assert_eq!((code, json["checked_orders"].as_u64(), json["breaks"].as_array().map(Vec::len)), (Some(0), Some(1), Some(0)));

    // The journal fails after the capture: captured, not journaled.
    let resumed = OrderBuilder::new(&fx).line("Canoe", 1, "300.00").place(s).await;
    s.faults().add(s.now(), "journal", "error_before", "1", "1", "").await.unwrap();
    let out = invoice(s, resumed.order_id, &[1]).await;
    assert_eq!(out.status, ProcessStatus::Incomplete);
    let r = reconciliation::report(s).await.unwrap();
    let b: Vec<_> = r.breaks.iter().filter(|b| b.order_id == resumed.order_id).collect();
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!((b[0].cause, b[0].amount_minor), (BreakCause::CaptureWithoutJournal, 30_000));
    assert!(b[0].detail.contains("incomplete"), "{}", b[0].detail);
    pipeline::resume(s, "finance", out.process_id).await.unwrap();
    assert!(reconciliation::report(s).await.unwrap().breaks.is_empty(), "resumed: the journal posted");

    // Terminated after the capture: two breaks, neither skipped.
    let terminated = OrderBuilder::new(&fx).line("Kayak", 1, "420.00").place(s).await;
    s.faults().add(s.now(), "journal", "error_before", "1", "1", "").await.unwrap();
    let out = invoice(s, terminated.order_id, &[1]).await;
    pipeline::terminate(s, "finance", out.process_id, "Paid by bank transfer").await.unwrap();
    let r = reconciliation::report(s).await.unwrap();
    let mut causes: Vec<(BreakCause, i64)> = r.breaks.iter().filter(|b| b.order_id == terminated.order_id).map(|b| (b.cause, b.amount_minor)).collect();
    causes.sort();
    assert_eq!(causes, vec![(BreakCause::CaptureWithoutJournal, 42_000), (BreakCause::TerminatedProcess, 42_000)]);
    let summary = r.by_cause.iter().find(|c| c.cause == BreakCause::TerminatedProcess).unwrap();
    assert_eq!((summary.count, summary.value.clone()), (1, vec!["420.00 USD".to_string()]));

    // A request left pending by a server that stopped: in flight for a lease, then a break.
    let sent = processor_request::Entity::find().filter(processor_request::Column::OrderId.eq(clean.order_id)).one(&s.db).await.unwrap().unwrap();
    processor_request::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        tracking_id: Set("left-pending".into()),
        status: Set(payments::domain::order::RequestStatus::Pending.code().into()),
        initiated_at: Set(s.now()),
        completed_at: Set(None),
        processor_reference: Set(None),
        amount_minor: Set(1_234),
        ..sent.into()
    }
    .insert(&s.db)
    .await
    .unwrap();
    let pending = |r: &payments::domain::reconciliation::ReconciliationReport| r.breaks.iter().filter(|b| b.cause == BreakCause::UnresolvedRequest).count();
    assert_eq!(pending(&reconciliation::report(s).await.unwrap()), 0, "just sent");
    db.clock.advance(chrono::Duration::minutes(5));
    let r = reconciliation::report(s).await.unwrap();
    assert_eq!(pending(&r), 1);
    assert_eq!(r.checked_orders, 3);

    let (code, json) = reconcile();
    assert_eq!((code, json["breaks"].as_array().map(Vec::len)), (Some(2), Some(r.breaks.len())), "{json}");

    // The CSV: a header and one row per break, the amounts as the page shows them.
    let csv = reconciliation::csv(&r);
    assert_eq!(csv.lines().count(), 1 + r.breaks.len());
    assert!(csv.starts_with("cause,order,amount,currency,open_since,age_days,what_happened,action\n"));
    assert!(csv.contains("\"Terminated payment process\"") && csv.contains("\"420.00\",\"USD\""), "{csv}");
});

db_test!(open_customer_invoices_are_those_whose_receivable_the_journals_leave_open, |db| {
    // Issue #44 (seed 000's entry point): an invoice paid by card is settled by its payment
    // journal and is not listed; one whose payment journal failed is open for its whole amount,
    // its card payment Incomplete, until Resume posts the journal; a terminated one stays open
    // (nothing settled it). The amounts are the ledger's, summed by the database.
    use payments::service::open_invoices;
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let paid = OrderBuilder::new(&fx).line("Tent", 1, "150.00").place(s).await;
    assert_eq!(invoice(s, paid.order_id, &[1]).await.status, ProcessStatus::Completed);
    let page = open_invoices::list(s, 1).await.unwrap();
    assert_eq!((page.total, page.rows.len()), (0, 0), "{page:?}");

    let resumed = OrderBuilder::new(&fx).line("Canoe", 2, "300.00").place(s).await;
    s.faults().add(s.now(), "journal", "error_before", "1", "1", "").await.unwrap();
    let first = invoice(s, resumed.order_id, &[1]).await;
    let terminated = OrderBuilder::new(&fx).line("Kayak", 1, "420.00").tax("8.25").place(s).await;
    s.faults().add(s.now(), "journal", "error_before", "1", "1", "").await.unwrap();
    let second = invoice(s, terminated.order_id, &[1]).await;
    pipeline::terminate(s, "finance", second.process_id, "Paid by bank transfer").await.unwrap();
    let page = open_invoices::list(s, 1).await.unwrap();
    let open: Vec<(String, i64, Option<ProcessStatus>, bool)> = page.rows.iter().map(|r| (r.number.clone(), r.open.minor(), r.card_status, r.card_related)).collect();
    assert_eq!(
        open,
        vec![
            (second.invoice_number.clone(), 45_465, Some(ProcessStatus::Terminated), true),
            (first.invoice_number.clone(), 30_000, Some(ProcessStatus::Incomplete), true),
        ],
        "newest first, each open for what its receivable holds"
    );
    assert_eq!(page.rows[0].amount.minor(), 45_465);
    pipeline::resume(s, "finance", first.process_id).await.unwrap();
    let page = open_invoices::list(s, 1).await.unwrap();
    assert_eq!(page.rows.iter().map(|r| r.number.as_str()).collect::<Vec<_>>(), vec![second.invoice_number.as_str()]);
    assert_eq!((page.page, page.pages, page.total), (1, 1, 1));
    // A page past the end is the last one.
    assert_eq!(open_invoices::list(s, 99).await.unwrap().page, 1);
});

db_test!(a_terminated_payment_is_settled_by_a_new_balanced_entry_and_its_break_closes, |db| {
    // Issue #44, seed 000 ("You must then follow these steps"), R-PIP-4, R-LED-1: Terminate shows
    // what the processor and the journals did and what stays open, asks a reason from a fixed
    // list, and the receivable it leaves open is settled by a new balanced journal: received by
    // other means, written off, or the invoice reversed. Until then it is a reconciliation break.
    use payments::domain::reconciliation::BreakCause;
    use payments::entity::{journal, journal_line};
    use payments::service::{open_invoices, reconciliation, settlement};
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let mut terminated = Vec::new();
    for item in ["Kayak", "Canoe", "Raft"] {
        let placed = OrderBuilder::new(&fx).line(item, 1, "420.00").tax("8.25").place(s).await;
        faults::add(sim(s), s.now(), "capture", "error_before", "1", "1", "").await.unwrap();
        let out = invoice(s, placed.order_id, &[1]).await;
        assert_eq!(out.status, ProcessStatus::Incomplete, "{out:?}");
        terminated.push(out);
    }
    let first = &terminated[0];
    let p = settlement::preview(s, first.process_id).await.unwrap();
    assert_eq!((p.captured.minor(), p.refunded.minor(), p.open.minor()), (0, 0, 45_465));
    assert_eq!(p.journals.len(), 1, "{p:?}");
    assert!(p.warnings.iter().any(|w| w.contains("stays open for 454.65 USD")), "{:?}", p.warnings);

    // Hostile: a reason that is not on the list, Other without words, settling what is not
    // terminated: each refused next to its field or by its code, nothing changed.
    for (code, note, field) in [("", "x", "reason_code"), ("bribed", "x", "reason_code"), ("other", "  ", "reason")] {
        let err = settlement::terminate(s, "finance", first.process_id, code, note).await.unwrap_err();
        assert_eq!(field_of(&err), Some(field), "{code:?}: {err}");
    }
    let err = settlement::settle(s, "finance", first.process_id, "write_off", "").await.unwrap_err();
    assert_eq!(err.code(), "PS_PROCESS_NOT_TERMINATED", "{err}");
    assert_eq!(queries::incomplete(&s.db, None).await.unwrap().len(), 3, "nothing was terminated");

    for t in &terminated {
        settlement::terminate(s, "finance", t.process_id, "paid_otherwise", "bank transfer of 5 Dec").await.unwrap();
    }
    let h = queries::history(&s.db, first.process_id).await.unwrap();
    assert_eq!(h.terminated_reason.as_deref(), Some("The customer paid by other means: bank transfer of 5 Dec"));
    let r = reconciliation::report(s).await.unwrap();
    assert_eq!(r.breaks.iter().filter(|b| b.cause == BreakCause::TerminatedProcess).map(|b| b.amount_minor).collect::<Vec<_>>(), vec![45_465; 3]);

    let err = settlement::settle(s, "finance", first.process_id, "lost_it", "").await.unwrap_err();
    assert_eq!(field_of(&err), Some("how"), "{err}");
    let msg = settlement::settle(s, "finance", terminated[0].process_id, "received_otherwise", "ref. 4471").await.unwrap();
    assert!(msg.contains("454.65 USD received by other means by journal JNL-"), "{msg}");
    settlement::settle(s, "finance", terminated[1].process_id, "write_off", "").await.unwrap();
    settlement::settle(s, "finance", terminated[2].process_id, "reverse", "").await.unwrap();
    let err = settlement::settle(s, "finance", terminated[0].process_id, "write_off", "").await.unwrap_err();
    assert_eq!(err.code(), "PS_NOTHING_TO_SETTLE", "settled once: {err}");

    // The entries: each balanced, on the accounts its choice names.
    let entries = journal::Entity::find().filter(journal::Column::Kind.eq("terminated_settlement")).all(&s.db).await.unwrap();
    assert_eq!(entries.len(), 3);
    let mut accounts = Vec::new();
    for j in &entries {
        let lines = journal_line::Entity::find().filter(journal_line::Column::JournalId.eq(j.id)).all(&s.db).await.unwrap();
        assert_eq!(lines.iter().map(|l| l.debit_minor).sum::<i64>(), lines.iter().map(|l| l.credit_minor).sum::<i64>());
        accounts.push(lines.iter().filter(|l| l.debit_minor > 0).map(|l| l.account.clone()).collect::<Vec<_>>().join("+"));
    }
    assert_eq!(accounts, vec!["Bank", "Bad debt expense", "Sales revenue+Sales tax payable"]);
    assert_eq!(open_invoices::list(s, 1).await.unwrap().total, 0, "no receivable is left open");
    // What is left is the holds on the customers' cards (nothing more will be charged): the
    // preview said so, reconciliation lists them, Authorization exposure releases them.
    assert!(p.warnings.iter().any(|w| w.contains("still hold 454.65 USD on the customer's card")), "{:?}", p.warnings);
    let r = reconciliation::report(s).await.unwrap();
    assert_eq!(r.breaks.iter().map(|b| b.cause).collect::<Vec<_>>(), vec![BreakCause::OpenAuthorizationOnClosedOrder; 3], "{:?}", r.breaks);
    for t in &terminated {
        let order = payments::entity::invoice::Entity::find_by_id(t.invoice_id).one(&s.db).await.unwrap().unwrap().order_id;
        payments::service::exposure::release_excess(s, "finance", order).await.unwrap();
    }
    assert!(reconciliation::report(s).await.unwrap().breaks.is_empty());
    let audited = audit_log::Entity::find().filter(audit_log::Column::Action.eq("payment_process.settle")).count(&s.db).await.unwrap();
    assert_eq!(audited, 3);
    assert_clean(&db).await;
});

db_test!(terminating_after_money_moved_is_shown_first_and_two_users_settling_at_once_post_one_entry, |db| {
    // The preview names money the processor moved without a journal; two finance users settling
    // the same terminated payment at once post one entry.
    use payments::service::settlement;
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line("Tent", 1, "300.00").place(s).await;
    s.faults().add(s.now(), "journal", "error_before", "1", "1", "").await.unwrap();
    let out = invoice(s, placed.order_id, &[1]).await;
    let p = settlement::preview(s, out.process_id).await.unwrap();
    assert_eq!(p.captured.minor(), 30_000);
    assert!(p.warnings[0].contains("moved 300.00 USD for this invoice and its card payment journals post 0.00 USD"), "{:?}", p.warnings);

    // Money moved: terminating needs a second finance user (the AR parameter's 0: any amount).
    let moved = out.process_id;
    let msg = settlement::terminate(s, "finance", moved, "charged_elsewhere", "card refunded by phone").await.unwrap();
    assert!(msg.contains("The processor moved 300.00 USD for") && msg.contains("second finance user"), "{msg}");
    let row = queries::incomplete(&s.db, None).await.unwrap().into_iter().find(|r| r.process_id == moved).expect("still incomplete");
    assert_eq!(row.termination_requested_by.as_deref(), Some("finance"));
    let err = settlement::terminate(s, "supervisor", moved, "other", "again").await.unwrap_err();
    assert_eq!(err.code(), "PS_TERMINATION_PENDING", "{err}");
    let err = settlement::approve(s, "finance", moved).await.unwrap_err();
    assert_eq!(err.code(), "PS_SECOND_APPROVER_NEEDED", "{err}");
    assert_eq!(settlement::approve(s, "supervisor", moved).await.unwrap(), settlement::TERMINATED);
    let h = queries::history(&s.db, moved).await.unwrap();
    assert_eq!(h.status, ProcessStatus::Terminated);
    assert_eq!(h.terminated_reason.as_deref(), Some("Charged already, outside this process: card refunded by phone (asked by finance, approved by supervisor)"));
    let err = settlement::approve(s, "admin", moved).await.unwrap_err();
    assert_eq!(err.code(), "PS_PROCESS_NOT_INCOMPLETE", "{err}");
    // Below the threshold one user terminates.
    payments::testing::set_parameters(s, payments::domain::parameters::ParameterGroup::AccountsReceivable, &[(payments::domain::parameters::keys::TERMINATE_APPROVAL_FROM, "500")]).await;
    let small = OrderBuilder::new(&fx).line("Lamp", 1, "40.00").place(s).await;
    s.faults().add(s.now(), "journal", "error_before", "1", "1", "").await.unwrap();
    let small = invoice(s, small.order_id, &[1]).await;
    assert_eq!(settlement::terminate(s, "finance", small.process_id, "other", "bank").await.unwrap(), settlement::TERMINATED);

    let other = OrderBuilder::new(&fx).line("Canoe", 1, "250.00").place(s).await;
    faults::add(sim(s), s.now(), "capture", "error_before", "1", "1", "").await.unwrap();
    let out = invoice(s, other.order_id, &[1]).await;
    settlement::terminate(s, "finance", out.process_id, "card_unusable", "").await.unwrap();
    let (a, b) = tokio::join!(
        settlement::settle(s, "finance", out.process_id, "received_otherwise", ""),
        settlement::settle(s, "supervisor", out.process_id, "write_off", "")
    );
    assert_eq!([&a, &b].iter().filter(|r| r.is_ok()).count(), 1, "{a:?} / {b:?}");
    let entries = payments::entity::journal::Entity::find().filter(payments::entity::journal::Column::Kind.eq("terminated_settlement")).count(&s.db).await.unwrap();
    assert_eq!(entries, 1);
});

/// The field a validation error names first.
fn field_of(e: &payments::error::ServiceError) -> Option<&str> {
    match e {
        payments::error::ServiceError::Validation(f) => f.first().map(|x| x.field.as_str()),
        _ => None,
    }
}
