//! Prepayments and deposits end to end on SQLite and PostgreSQL (issue 5): R-PRE-1..5, R-LED-1.
use payments::db_test;
use payments::domain::order::{accounts, AuthorizationStatus, JournalKind, OrderStatus, Tender};
use payments::domain::parameters::{keys, ParameterGroup};
use payments::domain::payment_views::JournalFilter;
use payments::domain::pipeline::ProcessStatus;
use payments::entity::{account_deposit, authorization, capture, journal, journal_line, refund, sales_order};
use payments::error::ServiceError;
use payments::pipeline::{self, invariants};
use payments::service::{cancellation, journals, orders, prepayments, Services};
use payments::testing::{enable_pipeline, fixture, set_parameters, sim, OrderBuilder};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};

/// (kind, prepayment flag, tender, [(account, debit, credit)]) of every journal of an order.
type JournalRow = (String, bool, Option<String>, Vec<(String, i64, i64)>);

async fn journals_of(s: &Services, order_id: Option<i32>) -> Vec<JournalRow> {
    let q = match order_id {
        Some(id) => journal::Entity::find().filter(journal::Column::OrderId.eq(id)),
        None => journal::Entity::find().filter(journal::Column::OrderId.is_null()),
    };
    let mut out = Vec::new();
    for j in q.order_by_asc(journal::Column::Id).all(&s.db).await.unwrap() {
        let lines = journal_line::Entity::find()
            .filter(journal_line::Column::JournalId.eq(j.id))
            .order_by_asc(journal_line::Column::Id)
            .all(&s.db)
            .await
            .unwrap()
            .into_iter()
            .map(|l| (l.account, l.debit_minor, l.credit_minor))
            .collect();
        out.push((j.kind, j.prepayment, j.tender, lines));
    }
    out
}

fn has(js: &[JournalRow], kind: JournalKind, prepayment: bool, tender: Option<Tender>, lines: &[(&str, i64, i64)]) -> bool {
    js.iter().any(|(k, p, t, ls)| {
        k == kind.code()
            && *p == prepayment
            && t.as_deref() == tender.map(|t| t.code())
            && ls.iter().map(|(a, d, c)| (a.as_str(), *d, *c)).collect::<Vec<_>>() == lines
    })
}

async fn assert_clean(s: &Services) {
    let r = invariants::check(s).await.unwrap();
    assert!(r.clean(), "{r:?}");
}

async fn field_of(err: ServiceError) -> String {
    match err {
        ServiceError::Validation(v) => v[0].field.clone(),
        other => panic!("expected a field error, got {other:?}"),
    }
}

db_test!(customer_account_deposit_posts_a_prepayment_cash_journal, |db| {
    // R-PRE-1: a prepayment transaction; posting creates a journal marked Prepayment journal
    // voucher. Negative and zero amounts are refused and write nothing.
    let s = &db.services;
    let fx = fixture(s).await;
    let msg = prepayments::account_deposit(s, "clerk", fx.customer_id, fx.pos, "USD", "25.00").await.unwrap();
    assert!(msg.contains("DEP-000001"), "{msg}");
    let js = journals_of(s, None).await;
    assert_eq!(js.len(), 1);
    assert!(has(&js, JournalKind::Cash, true, Some(Tender::Cash), &[(accounts::CASH, 2500, 0), (accounts::CUSTOMER_PREPAYMENTS, 0, 2500)]), "{js:?}");
    let j = journal::Entity::find().one(&s.db).await.unwrap().unwrap();
    assert_eq!((j.customer_id, j.order_id), (Some(fx.customer_id), None));
    assert_eq!(prepayments::account_balance(&s.db, fx.customer_id).await.unwrap(), 2500);

    for (bad, field) in [("-5.00", "amount"), ("0", "amount"), ("abc", "amount"), ("1.234", "amount")] {
        let err = prepayments::account_deposit(s, "clerk", fx.customer_id, fx.pos, "USD", bad).await.unwrap_err();
        assert_eq!(field_of(err).await, field, "{bad}");
    }
    let err = prepayments::account_deposit(s, "clerk", fx.customer_id, fx.pos, "USD", "-5").await.unwrap_err();
    assert!(err.to_string().contains("cannot be negative") || format!("{err:?}").contains("cannot be negative"), "{err:?}");
    let err = prepayments::account_deposit(s, "clerk", fx.customer_id, fx.online, "USD", "5").await.unwrap_err();
    assert_eq!(field_of(err).await, "channel_id", "deposits are taken at a store");
    assert_eq!(account_deposit::Entity::find().count(&s.db).await.unwrap(), 1, "nothing written by refused deposits");
    assert_eq!(journal::Entity::find().count(&s.db).await.unwrap(), 1);
});

db_test!(pos_order_with_deposit_half_card_half_cash_is_settled_on_pickup, |db| {
    // R-PRE-2: default deposit 30 % of 200.00 = 60.00, 30.00 cash and 30.00 by card; the card is
    // captured right after its authorization; each tender posts its own prepayment journal. On
    // pickup the invoice is issued through the pipeline, the deposit applied and the rest captured.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    set_parameters(s, ParameterGroup::Commerce, &[(keys::DEFAULT_DEPOSIT_PERCENT, "30")]).await;
    let placed = OrderBuilder::new(&fx).channel(fx.pos).line("Sofa", 2, "100.00").deposit("", "30.00", "").place(s).await;
    let order = sales_order::Entity::find_by_id(placed.order_id).one(&s.db).await.unwrap().unwrap();
    assert!(order.prepayment);
    assert_eq!(order.deposit_minor, 6000);
    let auth = authorization::Entity::find().filter(authorization::Column::OrderId.eq(order.id)).one(&s.db).await.unwrap().unwrap();
    assert_eq!((auth.amount_minor, auth.captured_minor), (17000, 3000), "card deposit 30.00 + 140.00 due at pickup; deposit captured");
    let caps = capture::Entity::find().filter(capture::Column::OrderId.eq(order.id)).all(&s.db).await.unwrap();
    assert_eq!(caps.len(), 1);
    assert_eq!((caps[0].amount_minor, caps[0].invoice_id), (3000, None));
    let js = journals_of(s, Some(order.id)).await;
    assert!(has(&js, JournalKind::Cash, true, Some(Tender::Cash), &[(accounts::CASH, 3000, 0), (accounts::CUSTOMER_PREPAYMENTS, 0, 3000)]), "{js:?}");
    assert!(
        has(&js, JournalKind::CustomerPayment, true, Some(Tender::Card), &[(accounts::CARD_CLEARING, 3000, 0), (accounts::CUSTOMER_PREPAYMENTS, 0, 3000)]),
        "{js:?}"
    );
    let view = prepayments::view(&s.db, &order).await.unwrap().unwrap();
    assert_eq!((view.paid_total.minor(), view.unapplied.minor(), view.due_at_pickup.minor()), (6000, 6000, 14000));
    assert_eq!(orders::detail(s, order.id).await.unwrap().order.total.minor(), 20000, "the order total, not a payment line's");
    assert_clean(s).await;

    let msg = prepayments::pick_up(s, "clerk", order.id, "").await.unwrap();
    assert!(msg.contains("picked up"), "{msg}");
    let order = sales_order::Entity::find_by_id(order.id).one(&s.db).await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Invoiced.code());
    let caps = capture::Entity::find().filter(capture::Column::OrderId.eq(order.id)).all(&s.db).await.unwrap();
    assert_eq!(caps.iter().map(|c| c.amount_minor).collect::<Vec<_>>(), vec![3000, 14000], "the rest captured once");
    let js = journals_of(s, Some(order.id)).await;
    assert!(
        has(&js, JournalKind::PrepaymentSettlement, true, None, &[(accounts::CUSTOMER_PREPAYMENTS, 6000, 0), (accounts::ACCOUNTS_RECEIVABLE, 0, 6000)]),
        "{js:?}"
    );
    assert!(has(&js, JournalKind::CustomerPayment, false, Some(Tender::Card), &[(accounts::CARD_CLEARING, 14000, 0), (accounts::ACCOUNTS_RECEIVABLE, 0, 14000)]));
    let auth = authorization::Entity::find_by_id(auth.id).one(&s.db).await.unwrap().unwrap();
    assert_eq!(auth.status, AuthorizationStatus::FullyCaptured.code());
    let view = prepayments::view(&s.db, &order).await.unwrap().unwrap();
    assert_eq!((view.applied.minor(), view.unapplied.minor(), view.due_at_pickup.minor()), (6000, 0, 0));
    assert!(prepayments::pick_up(s, "clerk", order.id, "").await.is_err(), "nothing left to pick up");
    assert_clean(s).await;
});

db_test!(cash_at_pickup_is_a_cash_journal_and_the_unused_hold_is_released, |db| {
    // R-PRE-2: 40.00 of the 140.00 due is paid in cash at pickup: a cash journal; the card captures
    // 100.00 and the 40.00 left on the authorization is voided.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).channel(fx.pos).line("Sofa", 2, "100.00").deposit("60.00", "30.00", "").place(s).await;
    let err = prepayments::pick_up(s, "clerk", placed.order_id, "150.00").await.unwrap_err();
    assert_eq!(field_of(err).await, "cash", "more cash than is due");
    let err = prepayments::pick_up(s, "clerk", placed.order_id, "-1").await.unwrap_err();
    assert_eq!(field_of(err).await, "cash");
    prepayments::pick_up(s, "clerk", placed.order_id, "40.00").await.unwrap();
    let js = journals_of(s, Some(placed.order_id)).await;
    assert!(has(&js, JournalKind::Cash, false, Some(Tender::Cash), &[(accounts::CASH, 4000, 0), (accounts::ACCOUNTS_RECEIVABLE, 0, 4000)]), "{js:?}");
    let caps: Vec<i64> = capture::Entity::find().filter(capture::Column::OrderId.eq(placed.order_id)).all(&s.db).await.unwrap().iter().map(|c| c.amount_minor).collect();
    assert_eq!(caps, vec![3000, 10000]);
    let auth = authorization::Entity::find().filter(authorization::Column::OrderId.eq(placed.order_id)).one(&s.db).await.unwrap().unwrap();
    assert_eq!(auth.status, AuthorizationStatus::Voided.code(), "the unused 40.00 hold is released");
    assert_clean(s).await;
});

db_test!(bad_deposits_are_refused_and_nothing_is_written, |db| {
    // R-PRE-1/2: a negative deposit, a deposit above the total, tenders above the deposit, a card
    // part without a card, a deposit on cash and carry: each a clear message, no order.
    let s = &db.services;
    let fx = fixture(s).await;
    let base = || OrderBuilder::new(&fx).channel(fx.pos).line("Sofa", 1, "100.00");
    let cases: Vec<(OrderBuilder, &str)> = vec![
        (base().deposit("-10.00", "", ""), "deposit"),
        (base().deposit("0", "", ""), "deposit"),
        (base().deposit("100.01", "", ""), "deposit"),
        (base().deposit("30.00", "20.00", "20.00"), "deposit_cash"),
        (base().deposit("30.00", "-1", ""), "deposit_cash"),
        (base().deposit("30.00", "10.00", "").no_card(), "card"),
        (base().deposit("30.00", "", "").kind("cash_and_carry"), "prepayment"),
        (OrderBuilder::new(&fx).channel(fx.online).line("Sofa", 1, "100.00").deposit("", "", ""), "prepayment"),
    ];
    for (b, field) in cases {
        let err = b.try_place(s).await.unwrap_err();
        assert_eq!(field_of(err).await, field);
    }
    let err = base().deposit("-10.00", "", "").try_place(s).await.unwrap_err();
    assert!(format!("{err:?}").contains("cannot be negative"), "{err:?}");
    assert_eq!(sales_order::Entity::find().count(&s.db).await.unwrap(), 0);
    assert_eq!(journal::Entity::find().count(&s.db).await.unwrap(), 0);
});

db_test!(call_center_prepayment_order_is_captured_in_full_up_front, |db| {
    // R-PRE-3: the prepayment attribute on a call center order: the whole order is the deposit,
    // captured at once; invoicing later captures nothing more.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).channel(fx.call_center).line("Desk", 1, "250.00").tax("10").deposit("", "", "").place(s).await;
    let caps = capture::Entity::find().filter(capture::Column::OrderId.eq(placed.order_id)).all(&s.db).await.unwrap();
    assert_eq!(caps.iter().map(|c| c.amount_minor).collect::<Vec<_>>(), vec![27500], "250.00 + 10 % tax captured up front");
    let d = orders::detail(s, placed.order_id).await.unwrap();
    let outcome = pipeline::invoice(s, "finance", placed.order_id, &[(d.lines[0].id, 1)]).await.unwrap();
    assert_eq!(outcome.status, ProcessStatus::Completed);
    assert_eq!(capture::Entity::find().filter(capture::Column::OrderId.eq(placed.order_id)).count(&s.db).await.unwrap(), 1, "no second capture");
    let js = journals_of(s, Some(placed.order_id)).await;
    assert!(has(&js, JournalKind::PrepaymentSettlement, true, None, &[(accounts::CUSTOMER_PREPAYMENTS, 27500, 0), (accounts::ACCOUNTS_RECEIVABLE, 0, 27500)]));
    assert_clean(s).await;
});

db_test!(cancel_refunds_the_deposit_by_tender_less_the_charge, |db| {
    // R-PRE-4: 10 % of a 200.00 order = 20.00 kept, from the cash first: 10.00 cash and 30.00 card
    // go back; the preview shows it before anything is posted; the card hold is released.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    set_parameters(s, ParameterGroup::Commerce, &[(keys::CANCELLATION_CHARGE_PERCENT, "10")]).await;
    let placed = OrderBuilder::new(&fx).channel(fx.pos).line("Sofa", 2, "100.00").deposit("60.00", "30.00", "").place(s).await;
    let before = journal::Entity::find().count(&s.db).await.unwrap();
    let p = cancellation::cancel_preview(s, placed.order_id).await.unwrap();
    assert_eq!((p.paid.minor(), p.charge.minor(), p.refund_total.minor(), p.release.minor()), (6000, 2000, 4000, 14000));
    assert_eq!(p.refunds.iter().map(|(t, m)| (*t, m.minor())).collect::<Vec<_>>(), vec![(Tender::Cash, 1000), (Tender::Card, 3000)]);
    assert_eq!(p.journals.len(), 3, "charge, card refund, cash refund");
    assert_eq!(journal::Entity::find().count(&s.db).await.unwrap(), before, "the preview posts nothing");

    let err = cancellation::cancel(s, "finance", placed.order_id, Some("5.00")).await.unwrap_err();
    assert_eq!(err.code(), "PS_CANCEL_CHARGE_CHANGED", "a charge other than the one shown is refused: {err:?}");
    assert_eq!(journal::Entity::find().count(&s.db).await.unwrap(), before);

    let msg = cancellation::cancel(s, "finance", placed.order_id, Some("20")).await.unwrap();
    assert!(msg.contains("20 USD") || msg.contains("20.00 USD"), "{msg}");
    let order = sales_order::Entity::find_by_id(placed.order_id).one(&s.db).await.unwrap().unwrap();
    assert_eq!((order.status.as_str(), order.cancellation_charge_minor), (OrderStatus::Cancelled.code(), 2000));
    let js = journals_of(s, Some(order.id)).await;
    assert!(has(&js, JournalKind::CancellationCharge, true, None, &[(accounts::CUSTOMER_PREPAYMENTS, 2000, 0), (accounts::CANCELLATION_CHARGES, 0, 2000)]), "{js:?}");
    assert!(has(&js, JournalKind::RefundPayment, true, Some(Tender::Cash), &[(accounts::CUSTOMER_PREPAYMENTS, 1000, 0), (accounts::CASH, 0, 1000)]), "{js:?}");
    assert!(has(&js, JournalKind::RefundPayment, true, Some(Tender::Card), &[(accounts::CUSTOMER_PREPAYMENTS, 3000, 0), (accounts::CARD_CLEARING, 0, 3000)]), "{js:?}");
    let refunds: Vec<i64> = refund::Entity::find().filter(refund::Column::OrderId.eq(order.id)).all(&s.db).await.unwrap().iter().map(|r| r.amount_minor).collect();
    assert_eq!(refunds, vec![3000], "the card deposit refunded once, through the processor");
    let auth = authorization::Entity::find().filter(authorization::Column::OrderId.eq(order.id)).one(&s.db).await.unwrap().unwrap();
    assert_eq!(auth.status, AuthorizationStatus::Voided.code());
    // Prepayments balance to the charge kept: 60.00 in, 40.00 back, 20.00 to revenue.
    let prepay: i64 = js.iter().flat_map(|j| j.3.iter()).filter(|l| l.0 == accounts::CUSTOMER_PREPAYMENTS).map(|l| l.2 - l.1).sum();
    assert_eq!(prepay, 0);
    assert!(cancellation::cancel(s, "finance", order.id, None).await.is_err(), "cancelled once");
    let d = orders::detail(s, order.id).await.unwrap();
    assert!(pipeline::invoice(s, "finance", order.id, &[(d.lines[0].id, 1)]).await.is_err(), "a cancelled order is not invoiced");
    assert_eq!(payments::service::jobs::recover(s, 10).await.unwrap().prepayments, 0, "nothing left for recovery");
    assert_clean(s).await;
});

db_test!(return_refunds_by_the_original_tenders_over_several_captures, |db| {
    // R-PRE-5: the whole order returned after pickup: the card gives back both of its captures
    // (deposit and pickup; Enable refunds over multiple captures is on) and the cash deposit goes
    // back in cash with a refund journal.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).channel(fx.pos).line("Sofa", 2, "100.00").deposit("60.00", "30.00", "").place(s).await;
    prepayments::pick_up(s, "clerk", placed.order_id, "").await.unwrap();
    let d = orders::detail(s, placed.order_id).await.unwrap();
    let credit = pipeline::credit(s, "finance", placed.order_id, &[(d.lines[0].id, 2)]).await.unwrap();
    assert_eq!(credit.status, ProcessStatus::Completed, "{:?}", credit.error);
    let refunds: Vec<i64> = refund::Entity::find().filter(refund::Column::OrderId.eq(placed.order_id)).all(&s.db).await.unwrap().iter().map(|r| r.amount_minor).collect();
    assert_eq!(refunds.iter().sum::<i64>(), 17000, "what the card paid, never more: {refunds:?}");
    assert_eq!(refunds.len(), 2, "over the two captures");
    let js = journals_of(s, Some(placed.order_id)).await;
    assert!(has(&js, JournalKind::RefundPayment, false, Some(Tender::Cash), &[(accounts::ACCOUNTS_RECEIVABLE, 3000, 0), (accounts::CASH, 0, 3000)]), "{js:?}");
    assert!(has(&js, JournalKind::RefundPayment, false, Some(Tender::Card), &[(accounts::ACCOUNTS_RECEIVABLE, 17000, 0), (accounts::CARD_CLEARING, 0, 17000)]), "{js:?}");
    assert_clean(s).await;
});

db_test!(an_interrupted_deposit_capture_is_finished_by_recovery_once, |db| {
    // A crash-safe deposit: the processor refuses the capture once (nothing moved); the order is
    // placed with the deposit not captured; recovery captures it once, with its journal.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    payments::connector::faults::add(sim(s), s.now(), "capture", "error_before", "1", "1", "").await.unwrap();
    let placed = OrderBuilder::new(&fx).channel(fx.pos).line("Sofa", 1, "100.00").deposit("40.00", "", "").place(s).await;
    assert!(placed.message.clone().unwrap_or_default().contains("not captured"), "{:?}", placed.message);
    assert_eq!(capture::Entity::find().count(&s.db).await.unwrap(), 0);
    db.clock.advance(chrono::Duration::minutes(5));
    let report = payments::service::jobs::recover(s, 10).await.unwrap();
    assert_eq!(report.prepayments, 1);
    assert_eq!(payments::service::jobs::recover(s, 10).await.unwrap().prepayments, 0, "done once");
    let caps: Vec<i64> = capture::Entity::find().all(&s.db).await.unwrap().iter().map(|c| c.amount_minor).collect();
    assert_eq!(caps, vec![4000]);
    let js = journals_of(s, Some(placed.order_id)).await;
    assert!(has(&js, JournalKind::CustomerPayment, true, Some(Tender::Card), &[(accounts::CARD_CLEARING, 4000, 0), (accounts::CUSTOMER_PREPAYMENTS, 0, 4000)]));
    assert_clean(s).await;
});

db_test!(journals_page_filters_and_exports_csv, |db| {
    // The Journals page: by type, order, customer and date; the Prepayment journal voucher flag;
    // CSV with one row per journal line; a bad date is a clear error.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).channel(fx.pos).line("Sofa", 1, "100.00").deposit("40.00", "40.00", "").no_card().place(s).await;
    prepayments::account_deposit(s, "clerk", fx.other_customer_id, fx.pos, "USD", "12.50").await.unwrap();
    let all = journals::list(&s.db, &JournalFilter::default(), 1).await.unwrap();
    assert_eq!(all.total, 2);
    let cash = journals::list(&s.db, &JournalFilter { kind: Some("cash".into()), ..Default::default() }, 1).await.unwrap();
    assert!(cash.rows.iter().all(|j| j.prepayment && j.kind_label == "Cash journal"));
    let by_order = journals::list(&s.db, &JournalFilter { order: Some(placed.number.clone()), ..Default::default() }, 1).await.unwrap();
    assert_eq!(by_order.total, 1);
    assert_eq!(by_order.rows[0].order_number.as_deref(), Some(placed.number.as_str()));
    let by_customer = journals::list(&s.db, &JournalFilter { customer: Some("Fabrikam".into()), ..Default::default() }, 1).await.unwrap();
    assert_eq!(by_customer.total, 1);
    assert_eq!(by_customer.rows[0].order_id, None);
    let today = s.now().date_naive();
    let tomorrow = (today + chrono::Duration::days(1)).to_string();
    let none = journals::list(&s.db, &JournalFilter { from: Some(tomorrow), ..Default::default() }, 1).await.unwrap();
    assert_eq!(none.total, 0);
    let err = journals::list(&s.db, &JournalFilter { from: Some("yesterday".into()), ..Default::default() }, 1).await.unwrap_err();
    assert_eq!(field_of(err).await, "from");
    let csv = journals::csv(&s.db, &JournalFilter::default()).await.unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 1 + 4, "header and two lines per journal");
    assert!(rows[0].starts_with("journal,posted_at,type,prepayment_journal_voucher"));
    assert!(rows[1].contains("\"Cash journal\",\"yes\"") && rows[1].contains("\"Cash\",40"), "{}", rows[1]);
});
