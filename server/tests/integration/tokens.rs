//! Tokens and the authorization lifecycle, end to end on SQLite and PostgreSQL (issue 4):
//! R-TOK-1..8 and R-AUT-1, R-AUT-2, R-AUT-3 (nonrecurring tokens), R-AUT-5.
use payments::db_test;
use payments::domain::order::{AuthorizationStatus, PaymentStatus};
use payments::domain::parameters::{keys, ParameterGroup};
use payments::domain::pipeline::ProcessStatus;
use payments::domain::tokens::{Confirmation, TokenKind};
use payments::entity::{audit_log, customer_card, payment_line, sales_order, token_consent};
use payments::error::ServiceError;
use payments::pipeline::{self, invariants};
use payments::service::jobs::{expire_authorizations, resubmit_authorizations, ResubmitReport};
use payments::service::{authorizations, cards, orders};
use payments::testing::{card_form, card_order, enable_nonrecurring_tokens, enable_pipeline, fixture, set_parameters, OrderBuilder};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

async fn count<E>(s: &payments::service::Services) -> u64
where
    E: EntityTrait,
    E::Model: Sync,
{
    E::find().count(&s.db).await.unwrap()
}

db_test!(pos_customer_order_beyond_the_threshold_needs_consent, |db| {
    // R-TOK-3: with nonrecurring tokens in effect, a ship date 10 days out (threshold 7) needs the
    // customer's consent; without it nothing is written; 3 days out needs none.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_nonrecurring_tokens(s).await;
    let order = || OrderBuilder::new(&fx).channel(fx.pos).line("Sofa", 1, "900.00");
    let err = order().ship_in(10).try_place(s).await.unwrap_err();
    assert!(matches!(err, ServiceError::ConfirmationRequired(Confirmation::Consent)), "{err:?}");
    assert_eq!(count::<sales_order::Entity>(s).await, 0, "cancel leaves nothing placed or authorized");
    assert_eq!(count::<token_consent::Entity>(s).await, 0);

    let placed = order().ship_in(10).confirmed(Confirmation::Consent.code()).try_place(s).await.unwrap();
    assert_eq!(placed.payment_status, PaymentStatus::Authorized);
    let d = orders::detail(s, placed.order_id).await.unwrap();
    assert_eq!(d.payments[0].token_kind, TokenKind::Recurring, "the balance is tokenized");
    let consent = token_consent::Entity::find().one(&s.db).await.unwrap().expect("consent recorded");
    assert_eq!((consent.order_id, consent.kind.as_str(), consent.given_by.as_str()), (placed.order_id, "consent_tokenize_balance", "test"));
    assert_eq!(consent.text_shown, Confirmation::Consent.text());

    let near = order().ship_in(3).try_place(s).await.unwrap();
    let d = orders::detail(s, near.order_id).await.unwrap();
    assert_eq!(d.payments[0].token_kind, TokenKind::Nonrecurring, "within the threshold: no consent, not saved");
    assert_eq!(count::<token_consent::Entity>(s).await, 1);

    // AlwaysStoreCardTokenOnOrderBalanceAuthorization: every balance asks for consent.
    set_parameters(s, ParameterGroup::PaymentProperties, &[(keys::ALWAYS_STORE_TOKEN_ON_BALANCE_AUTH, "yes")]).await;
    let err = order().ship_in(1).try_place(s).await.unwrap_err();
    assert!(matches!(err, ServiceError::ConfirmationRequired(Confirmation::Consent)), "{err:?}");
});

db_test!(unified_pos_experience_turns_nonrecurring_tokens_off, |db| {
    // R-FEA-3: with Enable unified payments experience in POS on, the nonrecurring token feature
    // does not take effect: no consent dialog, the card is saved as a recurring token.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_nonrecurring_tokens(s).await;
    payments::service::features::set(s, "test", payments::Feature::UnifiedPaymentsExperienceInPos, true).await.unwrap();
    let placed = OrderBuilder::new(&fx).channel(fx.pos).line("Sofa", 1, "900.00").ship_in(10).try_place(s).await.unwrap();
    let d = orders::detail(s, placed.order_id).await.unwrap();
    assert_eq!(d.payments[0].token_kind, TokenKind::Recurring);
});

db_test!(cash_and_carry_is_captured_at_once_and_never_tokenized, |db| {
    // R-TOK-2.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_nonrecurring_tokens(s).await;
    let placed = OrderBuilder::new(&fx).channel(fx.pos).kind("cash_and_carry").line("Lamp", 2, "20.00").ship_in(30).try_place(s).await.unwrap();
    let d = orders::detail(s, placed.order_id).await.unwrap();
    assert_eq!(d.payments[0].token_kind, TokenKind::None);
    assert_eq!(d.invoices.len(), 1, "invoiced at once");
    assert_eq!(d.invoices[0].process.as_ref().map(|p| p.status), Some(ProcessStatus::Completed));
    assert_eq!(d.authorizations[0].captured.minor(), 4000);
    assert_eq!(d.balance.minor(), 0);
    let err = OrderBuilder::new(&fx).kind("cash_and_carry").line("Lamp", 1, "20.00").try_place(s).await.unwrap_err();
    assert!(err.to_string().contains("Cash and carry is for POS store sales"), "{err}");
    assert!(invariants::check(s).await.unwrap().clean());
});

db_test!(call_center_saves_a_card_only_when_both_settings_allow, |db| {
    // R-TOK-6: "Save payment information" needs Restrict Payment Token usage on and Allow
    // customer card on file = Yes; it saves a recurring token on the customer (card on file),
    // which the next order can use.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let order = || OrderBuilder::new(&fx).line("Boots", 1, "120.00");
    let refused = order().save_card().confirmed(Confirmation::CardOnFile.code()).try_place(s).await.unwrap_err();
    assert!(refused.to_string().contains("Saving payment information is not offered"), "{refused}");
    payments::service::features::set(s, "test", payments::Feature::RestrictPaymentTokenUsage, true).await.unwrap();
    let refused = order().save_card().confirmed(Confirmation::CardOnFile.code()).try_place(s).await.unwrap_err();
    assert!(refused.to_string().contains("Allow customer card on file"), "{refused}");
    assert_eq!(count::<sales_order::Entity>(s).await, 0);
    set_parameters(s, ParameterGroup::CallCenter, &[(keys::ALLOW_CUSTOMER_CARD_ON_FILE, "yes")]).await;
    let asks = order().save_card().try_place(s).await.unwrap_err();
    assert!(matches!(asks, ServiceError::ConfirmationRequired(Confirmation::CardOnFile)), "{asks:?}");
    let err = order().channel(fx.online).save_card().confirmed(Confirmation::CardOnFile.code()).try_place(s).await.unwrap_err();
    assert!(err.to_string().contains("call center orders only"), "R-TOK-7: the storefront saves nothing: {err}");

    let placed = order().save_card().confirmed(Confirmation::CardOnFile.code()).try_place(s).await.unwrap();
    assert_eq!(placed.payment_status, PaymentStatus::Authorized);
    let saved = cards::saved(&s.db, fx.customer_id).await.unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!((saved[0].last_four.as_str(), saved[0].holder.as_str()), ("1111", "Jamie Rivera"));
    assert!(cards::saved(&s.db, fx.other_customer_id).await.unwrap().is_empty());

    // The saved card pays the next order; it belongs to this customer only.
    let again = OrderBuilder::new(&fx).line("Socks", 2, "5.00").saved_card(saved[0].id).try_place(s).await.unwrap();
    let d = orders::detail(s, again.order_id).await.unwrap();
    assert_eq!((d.payments[0].status, d.payments[0].token_kind), (PaymentStatus::Authorized, TokenKind::Recurring));
    let mut other = OrderBuilder::new(&fx).line("Socks", 1, "5.00").saved_card(saved[0].id);
    other.form.customer_id = fx.other_customer_id.to_string();
    let err = other.try_place(s).await.unwrap_err();
    assert!(err.to_string().contains("Choose one of the customer's saved cards"), "{err}");
});

db_test!(customer_credit_cards_add_and_delete_are_kept_and_audited, |db| {
    // R-TOK-8: adding needs the customer's agreement and a default connector; deleting keeps the
    // row (nothing is lost) and stops offering the card; both are audited.
    let s = &db.services;
    let fx = fixture(s).await;
    let card = card_form(s, "5555555555554444").await;
    let err = cards::add(s, "finance", fx.customer_id, &card, false).await.unwrap_err();
    assert!(err.to_string().contains("Confirm that the customer agrees"), "{err}");
    let bad = payments::service::orders::CardForm { token: "x".into(), ..card.clone() };
    assert!(cards::add(s, "finance", fx.customer_id, &bad, true).await.is_err());
    assert_eq!(count::<customer_card::Entity>(s).await, 0);
    let added = cards::add(s, "finance", fx.customer_id, &card, true).await.unwrap();
    assert_eq!(added.card_type, "Mastercard");
    cards::delete(s, "finance", fx.customer_id, added.id).await.unwrap();
    assert!(cards::saved(&s.db, fx.customer_id).await.unwrap().is_empty());
    let row = customer_card::Entity::find_by_id(added.id).one(&s.db).await.unwrap().unwrap();
    assert_eq!(row.deleted_by.as_deref(), Some("finance"));
    assert!(cards::delete(s, "finance", fx.customer_id, added.id).await.is_err(), "deleted twice");
    let audited = audit_log::Entity::find().filter(audit_log::Column::Action.is_in(["card.add", "card.delete"])).count(&s.db).await.unwrap();
    assert_eq!(audited, 2);

    // No default connector: adding is refused with the reason.
    payments::entity::connector::Entity::update_many()
        .col_expr(payments::entity::connector::Column::IsDefault, sea_orm::sea_query::Expr::value(false))
        .exec(&s.db)
        .await
        .unwrap();
    let err = cards::add(s, "finance", fx.customer_id, &card, true).await.unwrap_err();
    assert_eq!(err.code(), "PS_NO_DEFAULT_CONNECTOR", "{err}");
    assert!(err.to_string().contains("No default payment connector"), "{err}");
    assert!(cards::for_customer(&s.db, fx.customer_id).await.unwrap().cannot_add.is_some());
});

db_test!(future_orders_are_authorized_by_the_resubmit_job, |db| {
    // R-AUT-1 and R-TOK-4: with Future orders and Delay authorization on, a call center order
    // shipping in 20 days needs a recurring token (acknowledged) and is not authorized at
    // placement; the resubmit job authorizes it once today is within Future order days (7).
    let s = &db.services;
    let fx = fixture(s).await;
    enable_nonrecurring_tokens(s).await;
    set_parameters(
        s,
        ParameterGroup::CallCenter,
        &[(keys::FUTURE_ORDERS, "yes"), (keys::DELAY_AUTHORIZATION, "yes"), (keys::FUTURE_ORDER_DAYS, "7")],
    )
    .await;
    let order = || OrderBuilder::new(&fx).line("Kayak", 1, "700.00").ship_in(20);
    let err = order().try_place(s).await.unwrap_err();
    assert!(matches!(err, ServiceError::ConfirmationRequired(Confirmation::RecurringRequired)), "{err:?}");
    let placed = order().confirmed(Confirmation::RecurringRequired.code()).try_place(s).await.unwrap();
    assert_eq!(placed.payment_status, PaymentStatus::PendingAuthorization);
    assert!(placed.message.unwrap().contains("2026-12-06"), "authorized from 20 - 7 = 13 days after the epoch");
    let d = orders::detail(s, placed.order_id).await.unwrap();
    assert!(d.authorizations.is_empty());
    assert_eq!(d.payments[0].token_kind, TokenKind::Recurring);

    // A nonrecurring-token order that is due is never re-authorized by the job.
    let near = OrderBuilder::new(&fx).line("Paddle", 1, "50.00").ship_in(3).try_place(s).await.unwrap();
    let near_line = payment_line::Entity::find().filter(payment_line::Column::OrderId.eq(near.order_id)).one(&s.db).await.unwrap().unwrap();
    payment_line::Entity::update_many()
        .col_expr(payment_line::Column::Status, sea_orm::sea_query::Expr::value(PaymentStatus::PendingAuthorization.code()))
        .filter(payment_line::Column::Id.eq(near_line.id))
        .exec(&s.db)
        .await
        .unwrap();

    db.clock.advance(chrono::Duration::days(12));
    let r = resubmit_authorizations(s, 10).await.unwrap();
    assert_eq!(r, ResubmitReport { nonrecurring: 1, ..Default::default() }, "13 days before the ship date: not yet");
    db.clock.advance(chrono::Duration::days(1));
    let r = resubmit_authorizations(s, 10).await.unwrap();
    assert_eq!((r.authorized, r.nonrecurring), (1, 1));
    let d = orders::detail(s, placed.order_id).await.unwrap();
    assert_eq!(d.payments[0].status, PaymentStatus::Authorized);
    assert_eq!(d.authorizations[0].amount.minor(), 70000);
    // Idempotent: nothing more to do.
    assert_eq!(resubmit_authorizations(s, 10).await.unwrap(), ResubmitReport { nonrecurring: 1, ..Default::default() });
    assert!(invariants::check(s).await.unwrap().clean());
});

db_test!(adjusting_an_authorized_line_approved_and_declined, |db| {
    // R-AUT-2: an edit of the payment line asks the processor to adjust the original
    // authorization; approved → adjusted; declined → the original is declined, the order held.
    let s = &db.services;
    let (fx, placed, d) = card_order(s, "Tent", 2, "100.00").await;
    let line = d.payments[0].id;
    pipeline::invoice(s, "finance", placed.order_id, &[(d.lines[0].id, 1)]).await.unwrap();
    let err = authorizations::adjust(s, "callcenter", line, "99.99").await.unwrap_err();
    assert!(err.to_string().contains("already captured"), "never below what is captured (R-CAP-4): {err}");
    assert!(authorizations::adjust(s, "callcenter", line, "-5").await.is_err());
    assert!(authorizations::adjust(s, "callcenter", line, "12.345").await.is_err());
    let m = authorizations::adjust(s, "callcenter", line, "250.00").await.unwrap();
    assert!(m.contains("adjusted to USD 250.00") || m.contains("250.00"), "{m}");
    let d = orders::detail(s, placed.order_id).await.unwrap();
    assert_eq!((d.authorizations[0].amount.minor(), d.payments[0].amount.minor()), (25000, 25000));
    assert_eq!(d.authorizations.len(), 1, "the original authorization is adjusted, no new one");

    let declining = OrderBuilder::new(&fx).line("Tent", 1, "100.00").card("4000000000000010").place(s).await;
    let d = orders::detail(s, declining.order_id).await.unwrap();
    assert_eq!(d.payments[0].status, PaymentStatus::Authorized);
    let m = authorizations::adjust(s, "callcenter", d.payments[0].id, "150.00").await.unwrap();
    assert!(m.contains("declined the adjustment"), "{m}");
    let d = orders::detail(s, declining.order_id).await.unwrap();
    assert_eq!((d.payments[0].status, d.authorizations[0].status), (PaymentStatus::Declined, AuthorizationStatus::Declined));
    assert!(d.order.do_not_process, "a new payment is required");
    let audited = audit_log::Entity::find().filter(audit_log::Column::Action.eq("authorization.adjust")).count(&s.db).await.unwrap();
    assert_eq!(audited, 2);

    // A new payment releases the order.
    let card = card_form(s, "5555555555554444").await;
    let p = authorizations::new_payment(s, "callcenter", declining.order_id, &card, "", "").await.unwrap();
    assert_eq!(p.payment_status, PaymentStatus::Authorized);
    let d = orders::detail(s, declining.order_id).await.unwrap();
    assert!(!d.order.do_not_process);
    assert_eq!(d.payments.iter().map(|p| p.status).collect::<Vec<_>>(), vec![PaymentStatus::Replaced, PaymentStatus::Authorized]);
});

db_test!(nonrecurring_tokens_are_never_reauthorized, |db| {
    // R-AUT-3: an interac card (never multiple captures) paid with a nonrecurring token takes the
    // legacy path: the first partial invoice is captured in full, and the balance cannot be
    // re-authorized with the same token; the process stops with the reason until a new payment
    // is taken, then Resume completes it without a second capture.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_nonrecurring_tokens(s).await;
    let placed = OrderBuilder::new(&fx).line("Chair", 2, "50.00").card("6363680000000007").place(s).await;
    let d = orders::detail(s, placed.order_id).await.unwrap();
    assert_eq!(d.payments[0].token_kind, TokenKind::Nonrecurring);
    let out = pipeline::invoice(s, "finance", placed.order_id, &[(d.lines[0].id, 1)]).await.unwrap();
    assert_eq!(out.status, ProcessStatus::Incomplete);
    assert!(out.error.as_deref().unwrap_or_default().contains("nonrecurring token, which is never re-authorized"), "{out:?}");
    let card = card_form(s, "4111111111111111").await;
    authorizations::new_payment(s, "finance", placed.order_id, &card, "", "").await.unwrap();
    let resumed = pipeline::resume(s, "finance", out.process_id).await.unwrap();
    assert_eq!(resumed.status, ProcessStatus::Completed);
    let d = orders::detail(s, placed.order_id).await.unwrap();
    assert_eq!(d.authorizations.iter().map(|a| a.captures.len()).sum::<usize>(), 1, "one capture only");
    assert_eq!(d.authorizations.last().unwrap().amount.minor(), 5000, "the new payment covers the balance");
    assert!(invariants::check(s).await.unwrap().clean());
});

db_test!(authorization_management_lists_expired_lines_and_voids_them, |db| {
    // R-AUT-4/5: after expiry the line is listed under Pending Authorization with Expired = Yes
    // and the order held; manual void needs its feature and is audited; a new payment releases
    // the order.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, false).await;
    let placed = OrderBuilder::new(&fx).line("Desk", 1, "300.00").place(s).await;
    OrderBuilder::new(&fx).line("Pen", 1, "3.00").place(s).await;
    db.clock.advance(chrono::Duration::days(8));
    expire_authorizations(s).await.unwrap();
    let page = authorizations::list(s, "pending_authorization", 1).await.unwrap();
    assert_eq!(page.total, 2);
    let row = page.rows.iter().find(|r| r.order_id == placed.order_id).unwrap();
    assert!(row.expired() && row.do_not_process);
    assert_eq!(row.customer_account, "C-1001");
    assert_eq!(authorizations::list(s, "expired", 1).await.unwrap().total, 2);
    assert_eq!(authorizations::list(s, "authorized", 1).await.unwrap().total, 0);
    assert!(authorizations::list(s, "nonsense", 1).await.is_err());

    let d = authorizations::detail(s, row.payment_line_id).await.unwrap();
    assert!(d.void_refusal.as_deref().unwrap_or_default().contains("Enable manual void"), "{:?}", d.void_refusal);
    assert_eq!(d.ar_days_before_expired, 7);
    assert!(authorizations::void_expired(s, "finance", row.payment_line_id).await.is_err());
    for f in [
        payments::Feature::UnifiedPaymentPostingJournalDefaults,
        payments::Feature::OmniChannelPayments,
        payments::Feature::DuplicatePaymentProtection,
        payments::Feature::RefundsOverMultipleCaptures,
        payments::Feature::ManualVoidOfExpiredLines,
    ] {
        payments::service::features::set(s, "test", f, true).await.unwrap();
    }
    let m = authorizations::void_expired(s, "finance", row.payment_line_id).await.unwrap();
    assert!(m.contains("voided"), "{m}");
    let d = authorizations::detail(s, row.payment_line_id).await.unwrap();
    assert_eq!((d.row.payment_status, d.responses[0].status), (PaymentStatus::Voided, AuthorizationStatus::Voided));
    // The void changed the order, so expiry was stored on it first: the order stays held until
    // a new payment is taken, in its row and on its page (R-AUT-4).
    assert!(d.row.do_not_process && orders::detail(s, placed.order_id).await.unwrap().order.do_not_process);
    let o = sales_order::Entity::find_by_id(placed.order_id).one(&s.db).await.unwrap().unwrap();
    assert!(o.do_not_process, "stored on the order's row");
    assert!(authorizations::void_expired(s, "finance", row.payment_line_id).await.is_err(), "voided once");
    assert_eq!(audit_log::Entity::find().filter(audit_log::Column::Action.eq("authorization.void")).count(&s.db).await.unwrap(), 1);

    let card = card_form(s, "4111111111111111").await;
    let p = authorizations::new_payment(s, "finance", placed.order_id, &card, "", "").await.unwrap();
    assert_eq!(p.payment_status, PaymentStatus::Authorized);
    let o = sales_order::Entity::find_by_id(placed.order_id).one(&s.db).await.unwrap().unwrap();
    assert!(!o.do_not_process, "the order leaves Do not process");
    let err = authorizations::new_payment(s, "finance", placed.order_id, &card, "", "").await.unwrap_err();
    assert_eq!(err.code(), "PS_NO_PAYMENT_NEEDED", "{err}");
    assert!(err.to_string().contains("needs no new payment"), "{err}");
    let d = orders::detail(s, placed.order_id).await.unwrap();
    let q: Vec<(i32, i32)> = d.lines.iter().map(|l| (l.id, l.quantity)).collect();
    assert_eq!(pipeline::invoice(s, "finance", placed.order_id, &q).await.unwrap().status, ProcessStatus::Completed);
    assert!(invariants::check(s).await.unwrap().clean());
});

db_test!(no_card_number_is_stored_anywhere, |db| {
    // R-TOK-1: only tokens, type, last four, holder and expiry enter Paystage. Every text value of
    // every table is read back and searched for the full numbers of the test cards used.
    let s = &db.services;
    let fx = fixture(s).await;
    enable_nonrecurring_tokens(s).await;
    set_parameters(s, ParameterGroup::CallCenter, &[(keys::ALLOW_CUSTOMER_CARD_ON_FILE, "yes")]).await;
    let numbers = ["4111111111111111", "5555555555554444", "378282246310005"];
    OrderBuilder::new(&fx).line("A", 1, "10.00").card(numbers[0]).save_card().confirmed("card_on_file").place(s).await;
    OrderBuilder::new(&fx).channel(fx.pos).line("B", 1, "10.00").card(numbers[1]).ship_in(10).confirmed("consent_tokenize_balance").place(s).await;
    let c = card_form(s, numbers[2]).await;
    cards::add(s, "finance", fx.other_customer_id, &c, true).await.unwrap();
    let dump = payments::testing::dump_text(&s.db).await;
    assert!(dump.contains("1111") && dump.contains("Jamie Rivera"), "the dump reads real rows");
    for n in numbers {
        assert!(!dump.contains(n), "card number {n} is stored");
    }
});
