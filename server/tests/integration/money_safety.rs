//! Issue #39, money safety, on SQLite and PostgreSQL: amounts above the business ceiling and
//! combinations that would overflow are refused with a field error and write nothing (R-MON-4);
//! stored currency codes are read from the ISO 4217 table, never defaulted (R-MON-1).
use payments::db_test;
use payments::error::ServiceError;
use payments::service::{authorizations, features, cancellation, orders, prepayments, Services};
use payments::testing::{card_order, dump_text, enable_pipeline, fixture, sim, OrderBuilder};

/// The field a refusal names (a refusal that is not a field error fails the test).
fn field_of(e: ServiceError) -> String {
    match e {
        ServiceError::Validation(fields) => fields.into_iter().map(|f| f.field).collect::<Vec<_>>().join(","),
        other => panic!("expected a field error, got {other:?}"),
    }
}

/// Runs `attempt`, which must be refused on `field`, and checks that not one row changed.
async fn refused_without_a_trace<F: std::future::Future<Output = Result<T, ServiceError>>, T: std::fmt::Debug>(s: &Services, field: &str, attempt: F) {
    let before = dump_text(&s.db).await;
    let err = attempt.await.expect_err("the hostile amount must be refused");
    let named = field_of(err);
    assert!(named.contains(field), "refusal names {named}, expected {field}");
    let after = dump_text(&s.db).await;
    if after != before {
        let (b, a): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
        let gone: Vec<&&str> = b.iter().filter(|l| !a.contains(l)).collect();
        let new: Vec<&&str> = a.iter().filter(|l| !b.contains(l)).collect();
        panic!("a refused amount wrote something: gone {gone:#?}, new {new:#?}");
    }
}

/// The builder with its card already typed on the processor's page (the processor's own token row
/// is written then, before the order is submitted).
async fn carded(s: &Services, mut b: OrderBuilder) -> OrderBuilder {
    if !b.card_number.is_empty() {
        b.form.card = payments::testing::card_form(s, &b.card_number).await;
        b.card_number.clear();
    }
    b
}

const NEAR_I64_MAX: &str = "92233720368547758.07";
const OVER_CEILING: &str = "1000000000000.00";

db_test!(every_amount_form_refuses_amounts_above_the_ceiling, |db| {
    // R-MON-4, issue #39 item 6: deposit − cash − account used to wrap in a release build into a
    // small card part and post two "balanced" journals of about 9.2e16.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    // A POS deposit whose cash and customer account parts are near i64::MAX.
    refused_without_a_trace(s, "deposit_cash", carded(s, OrderBuilder::new(&fx).channel(fx.pos).line("Sofa", 1, "100.00").deposit("50.00", NEAR_I64_MAX, NEAR_I64_MAX)).await.try_place(s)).await;
    // At the ceiling each, the parts are representable but add up to more than the deposit.
    refused_without_a_trace(s, "deposit_cash", carded(s, OrderBuilder::new(&fx).channel(fx.pos).line("Sofa", 1, "100.00").deposit("50.00", "999999999999.99", "999999999999.99")).await.try_place(s)).await;
    refused_without_a_trace(s, "deposit", carded(s, OrderBuilder::new(&fx).channel(fx.pos).line("Sofa", 1, "100.00").deposit(OVER_CEILING, "", "")).await.try_place(s)).await;
    // Order lines and charges.
    refused_without_a_trace(s, "line1_unit_price", carded(s, OrderBuilder::new(&fx).line("Yacht", 1, OVER_CEILING)).await.try_place(s)).await;
    refused_without_a_trace(s, "line1_unit_price", carded(s, OrderBuilder::new(&fx).line("Yacht", 1, NEAR_I64_MAX)).await.try_place(s)).await;
    refused_without_a_trace(s, "charges", carded(s, OrderBuilder::new(&fx).line("Tent", 1, "10.00").charges(OVER_CEILING)).await.try_place(s)).await;
    // Each part at the ceiling, the total above it.
    refused_without_a_trace(s, "line1_quantity", carded(s, OrderBuilder::new(&fx).line("Yacht", 100_000, "999999999999.99")).await.try_place(s)).await;
    refused_without_a_trace(s, "line1_quantity", carded(s, OrderBuilder::new(&fx).line("Yacht", 2, "999999999999.99")).await.try_place(s)).await;
    // A customer account deposit at a store.
    refused_without_a_trace(s, "amount", prepayments::account_deposit(s, "clerk", fx.customer_id, fx.pos, "USD", OVER_CEILING)).await;
    refused_without_a_trace(s, "amount", prepayments::account_deposit(s, "clerk", fx.customer_id, fx.pos, "USD", "9223372036854775807")).await;
    refused_without_a_trace(s, "amount", prepayments::account_deposit(s, "clerk", fx.customer_id, fx.pos, "JPY", "1000000000000")).await;
    // Cash at pickup and an authorization adjustment on an order that exists.
    let placed = OrderBuilder::new(&fx).channel(fx.pos).line("Sofa", 2, "100.00").deposit("60.00", "30.00", "").place(s).await;
    refused_without_a_trace(s, "cash", prepayments::pick_up(s, "clerk", placed.order_id, NEAR_I64_MAX)).await;
    let card = OrderBuilder::new(&fx).line("Tent", 1, "150.00").place(s).await;
    let line = orders::detail(s, card.order_id).await.unwrap().payments[0].id;
    refused_without_a_trace(s, "amount", authorizations::adjust(s, "finance", line, OVER_CEILING)).await;
    refused_without_a_trace(s, "amount", authorizations::adjust(s, "finance", line, NEAR_I64_MAX)).await;
    // The largest amount itself is taken: one unit price at the ceiling.
    let max = OrderBuilder::new(&fx).line("Yacht", 1, "999999999999.99").try_place(s).await;
    assert!(max.is_ok(), "the ceiling itself is allowed: {max:?}");
});

db_test!(an_unknown_stored_currency_is_an_error_never_usd, |db| {
    // R-MON-1, issue #39 item 8: a code outside ISO 4217 read back from the database is a loud
    // error that names it; other currencies of the ISO table (here CHF) work end to end.
    use payments::entity::sales_order;
    use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let mut chf = OrderBuilder::new(&fx).line("Watch", 1, "1250.00");
    chf.form.currency = "chf".into();
    let placed = chf.place(s).await;
    let d = orders::detail(s, placed.order_id).await.unwrap();
    assert_eq!(d.order.total.currency().code(), "CHF");
    let mut order = sales_order::Entity::find_by_id(placed.order_id).one(&s.db).await.unwrap().unwrap().into_active_model();
    order.currency = Set("XYZ".into());
    order.update(&s.db).await.unwrap();
    let err = orders::detail(s, placed.order_id).await.unwrap_err();
    assert_eq!(err.code(), "PS_STORED_DATA", "{err}");
    assert!(err.to_string().contains("XYZ"), "{err}");
});

db_test!(posted_records_are_protected_by_the_database_itself, |db| {
    // R-LED-1, issue #39 item 7: journals, their lines and the audit log refuse UPDATE and DELETE
    // in the database, whatever code sends them; captures and refunds refuse DELETE and changes to
    // what they moved. A correction is a new entry.
    use sea_orm::ConnectionTrait;
    let s = &db.services;
    let (_fx, placed, d) = card_order(s, "Tent", 1, "150.00").await;
    let q: Vec<(i32, i32)> = d.lines.iter().map(|l| (l.id, l.quantity)).collect();
    payments::pipeline::invoice(s, "finance", placed.order_id, &q).await.unwrap();
    let before = dump_text(&s.db).await;
    for sql in [
        "UPDATE journals SET description = 'edited'",
        "DELETE FROM journals",
        "UPDATE journal_lines SET debit_minor = debit_minor + 1",
        "DELETE FROM journal_lines",
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "UPDATE captures SET amount_minor = 1",
        "UPDATE captures SET tracking_id = 'x'",
        "DELETE FROM captures",
    ] {
        let err = s.db.execute_unprepared(sql).await.expect_err(sql);
        assert!(err.to_string().contains("paystage: immutable"), "{sql}: {err}");
    }
    assert_eq!(dump_text(&s.db).await, before, "nothing changed");
    // What a capture has had refunded is a running total and stays writable.
    s.db.execute_unprepared("UPDATE captures SET refunded_minor = refunded_minor").await.unwrap();
});

/// Another server on the same database: its own lease name, the same clock.
fn second_server(s: &Services) -> Services {
    let mut other = s.clone().one_at_a_time();
    other.instance = format!("other-{}", other.instance);
    other
}

/// A connector that takes 300 ms to hand out a tracking id (between a runner's read and its call).
#[derive(Debug)]
struct DelayedReference(std::sync::Arc<dyn payments::connector::Connector>);

#[async_trait::async_trait]
impl payments::connector::Connector for DelayedReference {
    async fn payment_reference(&self, command: payments::domain::order::Command, amount: payments::domain::money::Money) -> payments::connector::ConnectorResult<payments::connector::PaymentReference> {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        self.0.payment_reference(command, amount).await
    }
    async fn tokenize(&self, card: payments::connector::CardEntry) -> payments::connector::ConnectorResult<payments::connector::CardToken> {
        self.0.tokenize(card).await
    }
    async fn describe_token(&self, token: &str) -> payments::connector::ConnectorResult<Option<payments::connector::CardToken>> {
        self.0.describe_token(token).await
    }
    async fn authorize(&self, tracking_id: &str, token: &str, amount: payments::domain::money::Money, ask: payments::connector::AuthorizeAsk) -> payments::connector::ConnectorResult<payments::connector::Authorized> {
        self.0.authorize(tracking_id, token, amount, ask).await
    }
    async fn capture(&self, tracking_id: &str, authorization: &str, amount: payments::domain::money::Money, final_capture: bool) -> payments::connector::ConnectorResult<payments::connector::Captured> {
        self.0.capture(tracking_id, authorization, amount, final_capture).await
    }
    async fn refund(&self, tracking_id: &str, capture: &str, amount: payments::domain::money::Money) -> payments::connector::ConnectorResult<payments::connector::Refunded> {
        self.0.refund(tracking_id, capture, amount).await
    }
    async fn void(&self, tracking_id: &str, authorization: &str) -> payments::connector::ConnectorResult<()> {
        self.0.void(tracking_id, authorization).await
    }
    async fn adjust_authorization(&self, tracking_id: &str, authorization: &str, new_amount: payments::domain::money::Money) -> payments::connector::ConnectorResult<payments::connector::Authorized> {
        self.0.adjust_authorization(tracking_id, authorization, new_amount).await
    }
    async fn query(&self, tracking_id: &str) -> payments::connector::ConnectorResult<Option<payments::connector::Outcome>> {
        self.0.query(tracking_id).await
    }
}

fn delayed_references(mut s: Services) -> Services {
    s.connector = std::sync::Arc::new(DelayedReference(s.connector.clone()));
    s
}

/// Waits (real time) until a request for `command` of `order` is written, sent and unanswered.
/// Waits until the `command` request of `order_id` is on its way to the processor: its intent
/// committed and the connector's record of what it sends written (the request goes out right
/// after; asked about before that, the processor would rightly know nothing of it).
async fn wait_in_flight(s: &Services, order_id: i32, command: payments::domain::order::Command) {
    use payments::entity::{processor_request as pr, processor_send as ps};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    for _ in 0..500 {
        let found = pr::Entity::find()
            .filter(pr::Column::OrderId.eq(order_id))
            .filter(pr::Column::Command.eq(command.code()))
            .filter(pr::Column::Status.eq("pending"))
            .one(&s.db)
            .await
            .unwrap();
        let sent = match &found {
            Some(r) => ps::Entity::find_by_id(r.tracking_id.clone()).one(&s.db).await.unwrap().is_some(),
            None => false,
        };
        if sent {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no {command:?} request went out for order {order_id}");
}

async fn request_statuses(s: &Services, order_id: i32, command: payments::domain::order::Command) -> Vec<String> {
    use payments::entity::processor_request as pr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    pr::Entity::find().filter(pr::Column::OrderId.eq(order_id)).filter(pr::Column::Command.eq(command.code())).all(&s.db).await.unwrap().into_iter().map(|r| r.status).collect()
}

async fn count_for<E: sea_orm::EntityTrait>(s: &Services, col: E::Column, order_id: i32) -> u64
where
    E::Model: Sync,
{
    use sea_orm::{ColumnTrait, PaginatorTrait, QueryFilter};
    E::find().filter(col.eq(order_id)).count(&s.db).await.unwrap()
}

/// Issue #39 item 1 (R-CAP-5, R-PIP-4): a capture call that outlasts the lease. Recovery on another
/// server takes the process over mid-call, asks the processor and records the capture; then the
/// first call returns: one capture row, the request Succeeded, the process completed once.
async fn capture_outlasting_the_lease(db: &payments::testing::TestDb, batched: bool) {
    use payments::connector::faults;
    use payments::domain::order::Command;
    use payments::entity::capture;
    let s = &db.services;
    let (_fx, placed, d) = card_order(s, "Tent", 2, "150.00").await;
    let q = vec![(d.lines[0].id, 1)];
    faults::add(sim(s), s.now(), "capture", "latency", "1", "1", "1500").await.unwrap();
    let runner = if batched { s.clone() } else { s.clone().one_at_a_time() };
    let order_id = placed.order_id;
    let first = tokio::spawn(async move { payments::pipeline::invoice(&runner, "finance", order_id, &q).await });
    wait_in_flight(s, order_id, Command::Capture).await;
    db.clock.advance(chrono::Duration::seconds(s.lease.num_seconds() + 5));
    let report = payments::service::jobs::recover(&second_server(s), 10).await.unwrap();
    assert_eq!((report.taken_over, report.completed), (1, 1), "{report:?}");
    let late = first.await.unwrap();
    assert!(late.is_ok(), "the late answer is not an error for its user: {late:?}");
    assert_eq!(count_for::<capture::Entity>(s, capture::Column::OrderId, order_id).await, 1, "one capture row");
    assert_eq!(payments::connector::simulator::ledger_totals(sim(s)).await.unwrap().captures, 1, "one capture at the processor");
    assert_eq!(request_statuses(s, order_id, Command::Capture).await, vec!["succeeded"]);
    let d = orders::detail(s, order_id).await.unwrap();
    assert_eq!(d.authorizations[0].captured.minor(), 15_000);
    assert_eq!(d.invoices.len(), 1);
    let r = payments::pipeline::invariants::check(s).await.unwrap();
    assert!(r.clean() && r.incomplete_processes == 0, "{r:?}");
}

db_test!(a_capture_call_outlasting_its_lease_is_recorded_once, |db| {
    capture_outlasting_the_lease(&db, false).await;
});

db_test!(a_batched_capture_call_outlasting_its_lease_is_recorded_once, |db| {
    capture_outlasting_the_lease(&db, true).await;
});

db_test!(an_authorization_call_outlasting_its_lease_is_recorded_once, |db| {
    // Issue #39 item 1: placement's authorization call outlasts the lease; recovery on another
    // server asks the processor and records the authorization; then the call returns and finds it
    // recorded: one authorization row, the request Succeeded, the order authorized.
    use payments::connector::faults;
    use payments::domain::order::{Command, PaymentStatus};
    use payments::entity::authorization;
    let s = db.services.clone();
    let fx = fixture(&s).await;
    enable_pipeline(&s, true).await;
    faults::add(sim(&s), s.now(), "authorize", "latency", "1", "1", "1500").await.unwrap();
    let builder = OrderBuilder::new(&fx).line("Tent", 1, "150.00");
    let placing = { let s = s.clone(); tokio::spawn(async move { builder.try_place(&s).await }) };
    // The order's id is not known before placement returns: the newest request is its.
    use payments::entity::processor_request as pr;
    use sea_orm::{EntityTrait, QueryOrder};
    let mut order_id = None;
    for _ in 0..500 {
        if let Some(r) = pr::Entity::find().order_by_desc(pr::Column::Id).one(&s.db).await.unwrap() {
            order_id = Some(r.order_id);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let order_id = order_id.expect("the authorization went out");
    wait_in_flight(&s, order_id, Command::Authorize).await;
    db.clock.advance(chrono::Duration::seconds(s.lease.num_seconds() + 5));
    let report = payments::service::jobs::recover(&second_server(&s), 10).await.unwrap();
    assert_eq!(report.requests_resolved, 1, "{report:?}");
    let placed = placing.await.unwrap().expect("placement answers");
    assert_eq!(placed.payment_status, PaymentStatus::Authorized, "{placed:?}");
    assert_eq!(count_for::<authorization::Entity>(&s, authorization::Column::OrderId, order_id).await, 1, "one authorization row");
    assert_eq!(request_statuses(&s, order_id, Command::Authorize).await, vec!["succeeded"]);
    assert_eq!(payments::connector::simulator::ledger_totals(sim(&s)).await.unwrap().authorized, 15_000);
});

db_test!(a_processor_slower_than_the_timeout_is_asked_not_charged_again, |db| {
    // Issue #39 item 1: every connector call has a deadline shorter than the lease; a capture that
    // answers after it is taken as unknown, the processor is asked, and the capture it made is
    // recorded once.
    use payments::connector::faults;
    use payments::entity::capture;
    let s = db.services.clone().with_connector_timeout(std::time::Duration::from_millis(300)).one_at_a_time();
    let fx = fixture(&s).await;
    enable_pipeline(&s, true).await;
    let placed = OrderBuilder::new(&fx).line("Tent", 1, "150.00").place(&s).await;
    let d = orders::detail(&s, placed.order_id).await.unwrap();
    faults::add(sim(&s), s.now(), "capture", "latency", "1", "1", "2000").await.unwrap();
    let started = std::time::Instant::now();
    let out = payments::pipeline::invoice(&s, "finance", placed.order_id, &[(d.lines[0].id, 1)]).await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_millis(1900), "the call was abandoned at its deadline: {:?}", started.elapsed());
    assert_eq!(out.status, payments::domain::pipeline::ProcessStatus::Completed, "{out:?}");
    assert_eq!(count_for::<capture::Entity>(&s, capture::Column::OrderId, placed.order_id).await, 1);
    let h = payments::pipeline::queries::history(&s.db, out.process_id).await.unwrap();
    let log: Vec<String> = h.stages.iter().flat_map(|st| st.log.iter().map(|l| l.message.clone())).collect();
    assert!(log.iter().any(|l| l.contains("No answer in time")), "{log:#?}");
});

db_test!(lost_answers_to_voids_and_adjustments_are_resolved_by_recovery, |db| {
    // Issue #39 item 3 (R-CAP-5, R-AUT-2, R-AUT-5): a void and an adjustment whose answer is lost
    // (the processor acted, then timed out, and could not be asked) stay Unknown until recovery
    // asks the processor and applies its answer; the order can then be cancelled.
    use payments::connector::faults;
    use payments::domain::order::{AuthorizationStatus, Command, PaymentStatus};
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    // The adjustment.
    let placed = OrderBuilder::new(&fx).line("Tent", 1, "150.00").place(s).await;
    let line = orders::detail(s, placed.order_id).await.unwrap().payments[0].id;
    faults::add(sim(s), s.now(), "adjust", "timeout_after", "1", "1", "").await.expect("adjust is a fault point");
    faults::add(sim(s), s.now(), "query", "error_before", "1", "1", "").await.unwrap();
    let err = authorizations::adjust(s, "finance", line, "120.00").await.unwrap_err();
    assert_eq!(err.code(), "PS_PROCESSOR_OUTCOME_UNKNOWN", "{err}");
    assert!(err.to_string().contains("not known yet"), "{err}");
    assert_eq!(request_statuses(s, placed.order_id, Command::Adjust).await, vec!["unknown"]);
    assert_eq!(payments::service::jobs::recover(s, 10).await.unwrap().requests_resolved, 0, "a request younger than the lease is left to its runner");
    db.clock.advance(chrono::Duration::seconds(s.lease.num_seconds() + 5));
    assert_eq!(payments::service::jobs::recover(s, 10).await.unwrap().requests_resolved, 1);
    assert_eq!(request_statuses(s, placed.order_id, Command::Adjust).await, vec!["succeeded"]);
    let d = orders::detail(s, placed.order_id).await.unwrap();
    assert_eq!(d.authorizations[0].amount.minor(), 12_000, "the adjusted amount is applied");
    assert_eq!(d.payments[0].amount.minor(), 12_000);
    assert_eq!(payments::service::jobs::recover(s, 10).await.unwrap().requests_resolved, 0, "resolved once");

    // The void: an expired authorization voided by hand.
    for f in [
        payments::Feature::UnifiedPaymentPostingJournalDefaults,
        payments::Feature::OmniChannelPayments,
        payments::Feature::DuplicatePaymentProtection,
        payments::Feature::RefundsOverMultipleCaptures,
        payments::Feature::ManualVoidOfExpiredLines,
    ] {
        features::set(s, "admin", f, true).await.unwrap();
    }
    let expiring = OrderBuilder::new(&fx).line("Stove", 1, "45.50").place(s).await;
    db.clock.advance(chrono::Duration::days(40));
    payments::service::jobs::expire_authorizations(s).await.unwrap();
    let line = orders::detail(s, expiring.order_id).await.unwrap().payments[0].id;
    faults::add(sim(s), s.now(), "void", "timeout_after", "1", "1", "").await.unwrap();
    faults::add(sim(s), s.now(), "query", "error_before", "1", "1", "").await.unwrap();
    let err = authorizations::void_expired(s, "finance", line).await.unwrap_err();
    assert_eq!(err.code(), "PS_PROCESSOR_OUTCOME_UNKNOWN", "{err}");
    assert!(err.to_string().contains("not known yet"), "{err}");
    assert_eq!(request_statuses(s, expiring.order_id, Command::Void).await, vec!["unknown"]);
    db.clock.advance(chrono::Duration::seconds(s.lease.num_seconds() + 5));
    assert_eq!(payments::service::jobs::recover(s, 10).await.unwrap().requests_resolved, 1);
    assert_eq!(request_statuses(s, expiring.order_id, Command::Void).await, vec!["succeeded"]);
    let d = orders::detail(s, expiring.order_id).await.unwrap();
    assert_eq!(d.authorizations[0].status, AuthorizationStatus::Voided);
    assert_eq!(d.payments[0].status, PaymentStatus::Voided);
});

db_test!(two_recoveries_at_once_capture_refund_and_authorize_once, |db| {
    // Issue #39 item 2: recovery on two servers at once (or `paystage recover` beside a server)
    // claims each deposit capture, deposit refund and placement authorization under lock with its
    // intent: one capture, one refund, one authorization each.
    use payments::connector::faults;
    use payments::domain::order::Command;
    use payments::entity::{authorization, capture, refund};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    // Deposits not captured at placement.
    let capture_fault = faults::add(sim(s), s.now(), "capture", "error_before", "1", "", "").await.unwrap();
    let mut deposits = Vec::new();
    for _ in 0..4 {
        deposits.push(OrderBuilder::new(&fx).channel(fx.pos).line("Sofa", 1, "100.00").deposit("40.00", "", "").place(s).await.order_id);
    }
    faults::remove(sim(s), capture_fault).await.unwrap();
    // Cancelled deposits whose card refund did not go through. A 20 % charge on the
    // 100.00 order keeps half the 40.00 deposit, so a second refund of 20.00 would still fit the
    // capture at the processor.
    payments::testing::set_parameters(s, payments::domain::parameters::ParameterGroup::Commerce, &[(payments::domain::parameters::keys::CANCELLATION_CHARGE_PERCENT, "20")]).await;
    let mut cancelled = Vec::new();
    for _ in 0..4 {
        let id = OrderBuilder::new(&fx).channel(fx.pos).line("Sofa", 1, "100.00").deposit("40.00", "", "").place(s).await.order_id;
        cancelled.push(id);
    }
    let refund_fault = faults::add(sim(s), s.now(), "refund", "error_before", "1", "", "").await.unwrap();
    for id in &cancelled {
        let _ = cancellation::cancel(s, "finance", *id, None).await;
    }
    faults::remove(sim(s), refund_fault).await.unwrap();
    // Placement authorizations whose answer was lost.
    faults::add(sim(s), s.now(), "authorize", "timeout_after", "1", "4", "").await.unwrap();
    faults::add(sim(s), s.now(), "query", "error_before", "1", "4", "").await.unwrap();
    let mut lost = Vec::new();
    for _ in 0..4 {
        lost.push(OrderBuilder::new(&fx).line("Tent", 1, "150.00").try_place(s).await.unwrap().order_id);
    }
    db.clock.advance(chrono::Duration::minutes(5));
    // Each runner's connector takes 300 ms to hand out a tracking id: both runners have read the
    // same order and found nothing in flight before either records its intent.
    let (a, b) = (delayed_references(second_server(s)), delayed_references(second_server(s)));
    let (x, y) = tokio::join!(payments::service::jobs::recover(&a, 100), payments::service::jobs::recover(&b, 100));
    x.unwrap();
    y.unwrap();
    // Whatever one pass left (a claim held by the other), a third finishes.
    payments::service::jobs::recover(s, 100).await.unwrap();
    for id in &deposits {
        assert_eq!(count_for::<capture::Entity>(s, capture::Column::OrderId, *id).await, 1, "order {id}: one deposit capture");
        assert_eq!(request_statuses(s, *id, Command::Capture).await.iter().filter(|st| *st == "succeeded").count(), 1);
    }
    for id in &cancelled {
        let refunds = refund::Entity::find().filter(refund::Column::OrderId.eq(*id)).all(&s.db).await.unwrap();
        assert_eq!(refunds.iter().map(|r| r.amount_minor).collect::<Vec<_>>(), vec![2_000], "order {id}: one refund of half the deposit");
    }
    for id in &lost {
        assert_eq!(count_for::<authorization::Entity>(s, authorization::Column::OrderId, *id).await, 1, "order {id}: one authorization");
    }
    let totals = payments::connector::simulator::ledger_totals(sim(s)).await.unwrap();
    assert_eq!(totals.captures, 8, "4 deposits captured at recovery, 4 at placement: {totals:?}");
    let r = payments::pipeline::invariants::check(s).await.unwrap();
    assert!(r.clean(), "{r:?}");
});
