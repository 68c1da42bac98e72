//! Demo orders in every state, made by running the real services (placement, the pipeline, the
//! simulator with injected faults): fully and partially invoiced with incremental capture, the
//! legacy path with a new authorization, a declined card, and incomplete payments failed at the
//! capture, journal and authorize-remaining stages; an expired authorization with its order held,
//! and a card on file.
use super::orders::{place, CardForm, LineForm, OrderForm};
use super::{audit, features, parameters, Services};
use crate::connector::CardEntry;
use crate::domain::parameters::{keys, ParameterGroup};
use crate::entity::{channel, customer};
use crate::error::{ProcessorAction, ProcessorError, ServiceResult};
use crate::Feature;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

struct DemoOrder {
    customer: &'static str,
    channel: &'static str,
    card: &'static str,
    tax: &'static str,
    lines: &'static [(&'static str, i32, &'static str)],
    /// Quantities to invoice per round, per line.
    invoices: &'static [&'static [i32]],
    /// A fault active during the last invoice round: (point, kind).
    fault: Option<(&'static str, &'static str)>,
}

const ORDERS: &[DemoOrder] = &[
    DemoOrder { customer: "C-1001", channel: "CALL", card: "4111111111111111", tax: "8.25", lines: &[("Trail tent", 2, "149.99"), ("Camp stove", 1, "45.50")], invoices: &[&[1, 0], &[1, 1]], fault: None },
    DemoOrder { customer: "C-1002", channel: "HOUSTON", card: "5555555555554444", tax: "8.25", lines: &[("Touring kayak", 3, "420.00")], invoices: &[&[1]], fault: None },
    DemoOrder { customer: "C-1003", channel: "WEB", card: "378282246310005", tax: "0", lines: &[("Sofa", 1, "899.00"), ("Cushion", 4, "19.90")], invoices: &[], fault: None },
    DemoOrder { customer: "C-1004", channel: "CALL", card: "4111111111111111", tax: "6.5", lines: &[("City bike", 1, "650.00"), ("Helmet", 2, "45.00")], invoices: &[&[1, 2]], fault: Some(("journal", "error_before")) },
    DemoOrder { customer: "C-1005", channel: "WEB", card: "6011111111111117", tax: "0", lines: &[("Hiking boots", 2, "120.00")], invoices: &[&[1]], fault: Some(("capture", "error_before")) },
    DemoOrder { customer: "C-1001", channel: "HOUSTON", card: "6363680000000007", tax: "5", lines: &[("Desk lamp", 4, "30.00")], invoices: &[&[1]], fault: None },
    DemoOrder { customer: "C-1002", channel: "CALL", card: "6363680000000007", tax: "0", lines: &[("Folding chair", 6, "25.00")], invoices: &[&[2]], fault: Some(("authorize", "error_before")) },
    DemoOrder { customer: "C-1004", channel: "CALL", card: "4000000000000002", tax: "0", lines: &[("Canoe paddle", 2, "35.00")], invoices: &[], fault: None },
];

/// Turns on the improved flow with status monitoring and credit card authorization, and with
/// `incremental`, incremental capture after its prerequisites (R-FEA-2), as a merchant running
/// Paystage would. Demo data and tests start from it.
pub async fn enable_card_pipeline(s: &Services, actor: &str, incremental: bool) -> ServiceResult<()> {
    features::set(s, actor, Feature::ImproveCardsPaymentFlow, true).await?;
    if incremental {
        for f in Feature::IncrementalCapture.prerequisites().into_iter().chain([Feature::IncrementalCapture]) {
            features::set(s, actor, f, true).await?;
        }
    }
    let ar = [
        (keys::CARDS_PAYMENT_STATUS_MONITORING, "yes"),
        (keys::CREDIT_CARD_AUTHORIZATION, "yes"),
        (keys::DAYS_BEFORE_EXPIRED, "7"),
        // R-AUT-6: recurring authorizations are renewed two days before they expire.
        (keys::RENEW_DAYS_BEFORE_EXPIRY, "2"),
    ];
    parameters::save_some(s, actor, ParameterGroup::AccountsReceivable, &ar).await?;
    Ok(())
}

/// Turns on the card pipeline with incremental capture ([`enable_card_pipeline`]), then places
/// and invoices the demo orders.
pub async fn seed_orders(s: &Services) -> ServiceResult<()> {
    enable_card_pipeline(s, audit::SYSTEM, true).await?;
    let today = s.now().date_naive();
    for o in ORDERS {
        let cust = customer::Entity::find().filter(customer::Column::Account.eq(o.customer)).one(&s.db).await?;
        let chan = channel::Entity::find().filter(channel::Column::Code.eq(o.channel)).one(&s.db).await?;
        let (Some(cust), Some(chan)) = (cust, chan) else { continue };
        let token = s
            .enter_card_as_shopper(CardEntry { number: o.card.into(), expiry: "12/30".into(), holder: cust.name.clone() })
            .await
            .map_err(|e| ProcessorError::NotStarted { action: ProcessorAction::CardCheck, reason: e.to_string() })?;
        let form = OrderForm {
            customer_id: cust.id.to_string(),
            channel_id: chan.id.to_string(),
            currency: "USD".into(),
            tax_percent: o.tax.into(),
            charges: "0".into(),
            lines: o
                .lines
                .iter()
                .enumerate()
                .map(|(i, (item, q, p))| LineForm {
                    item: (*item).into(),
                    quantity: q.to_string(),
                    unit_price: (*p).into(),
                    requested_ship_date: (today + chrono::Duration::days(3 + i as i64)).to_string(),
                })
                .collect(),
            card: CardForm { token: token.token, card_type: token.card_type, last_four: token.last_four, holder: token.holder, expiry: token.expiry },
            ..Default::default()
        };
        let placed = place(s, "callcenter", &form).await?;
        let lines = super::orders::detail(s, placed.order_id).await?.lines;
        for (round, qty) in o.invoices.iter().enumerate() {
            let last = round + 1 == o.invoices.len();
            if let (true, Some((point, kind))) = (last, o.fault) {
                s.faults().add(s.now(), point, kind, "1", "1", "").await?;
            }
            let q: Vec<(i32, i32)> = lines.iter().zip(qty.iter()).map(|(l, q)| (l.id, *q)).collect();
            crate::pipeline::invoice(s, "finance", placed.order_id, &q).await?;
            s.faults().clear().await?;
        }
    }
    seed_prepayments(s).await?;
    seed_authorization_lifecycle(s).await
}

/// Issue 5's states: a POS customer order with a deposit paid half in cash, half by card (to pick
/// up), and a customer account deposit.
async fn seed_prepayments(s: &Services) -> ServiceResult<()> {
    let Some(cust) = customer::Entity::find().filter(customer::Column::Account.eq("C-1002")).one(&s.db).await? else { return Ok(()) };
    let Some(store) = channel::Entity::find().filter(channel::Column::Code.eq("HOUSTON")).one(&s.db).await? else { return Ok(()) };
    let token = s
        .enter_card_as_shopper(CardEntry { number: "4111111111111111".into(), expiry: "12/30".into(), holder: cust.name.clone() })
        .await
        .map_err(|e| ProcessorError::NotStarted { action: ProcessorAction::CardCheck, reason: e.to_string() })?;
    let form = OrderForm {
        customer_id: cust.id.to_string(),
        channel_id: store.id.to_string(),
        currency: "USD".into(),
        tax_percent: "8.25".into(),
        charges: "0".into(),
        lines: vec![LineForm {
            item: "Patio set".into(),
            quantity: "1".into(),
            unit_price: "600.00".into(),
            requested_ship_date: (s.now().date_naive() + chrono::Duration::days(5)).to_string(),
        }],
        card: CardForm { token: token.token, card_type: token.card_type, last_four: token.last_four, holder: token.holder, expiry: token.expiry },
        prepayment: true,
        deposit: super::prepayments::DepositForm { deposit: "180.00".into(), cash: "90.00".into(), customer_account: String::new() },
        ..Default::default()
    };
    place(s, "supervisor", &form).await?;
    super::prepayments::account_deposit(s, "supervisor", cust.id, store.id, "USD", "50.00").await?;
    Ok(())
}

/// Issue 4's states: an order authorized ten days ago whose authorization has expired (Pending
/// Authorization, Do not process), a card on file, and nonrecurring tokens turned on (with
/// Restrict Payment Token usage) for the orders taken from now on.
async fn seed_authorization_lifecycle(s: &Services) -> ServiceResult<()> {
    use super::clock::ManualClock;
    let Some(cust) = customer::Entity::find().filter(customer::Column::Account.eq("C-1005")).one(&s.db).await? else { return Ok(()) };
    let Some(chan) = channel::Entity::find().filter(channel::Column::Code.eq("CALL")).one(&s.db).await? else { return Ok(()) };
    let token = s
        .enter_card_as_shopper(CardEntry { number: "5555555555554444".into(), expiry: "12/30".into(), holder: cust.name.clone() })
        .await
        .map_err(|e| ProcessorError::NotStarted { action: ProcessorAction::CardCheck, reason: e.to_string() })?;
    let card = CardForm { token: token.token, card_type: token.card_type, last_four: token.last_four, holder: token.holder, expiry: token.expiry };
    // Placed ten days ago (the AR days before expired are 7), by the same services on a clock
    // set back; the expiry job then runs now.
    let then = s.now() - chrono::Duration::days(10);
    let past = Services { clock: std::sync::Arc::new(ManualClock::new(then)), ..s.clone() };
    let form = OrderForm {
        customer_id: cust.id.to_string(),
        channel_id: chan.id.to_string(),
        currency: "USD".into(),
        tax_percent: "0".into(),
        charges: "0".into(),
        lines: vec![LineForm {
            item: "Standing desk".into(),
            quantity: "1".into(),
            unit_price: "540.00".into(),
            requested_ship_date: (then.date_naive() + chrono::Duration::days(14)).to_string(),
        }],
        card: card.clone(),
        ..Default::default()
    };
    place(&past, "callcenter", &form).await?;
    super::jobs::expire_authorizations(s).await?;
    super::expiry::store_expired(s, super::expiry::STORE_BATCH).await?;
    let c1 = customer::Entity::find().filter(customer::Column::Account.eq("C-1001")).one(&s.db).await?;
    if let Some(c1) = c1 {
        let t = s
            .enter_card_as_shopper(CardEntry { number: "378282246310005".into(), expiry: "09/29".into(), holder: c1.name.clone() })
            .await
            .map_err(|e| ProcessorError::NotStarted { action: ProcessorAction::CardCheck, reason: e.to_string() })?;
        let saved = CardForm { token: t.token, card_type: t.card_type, last_four: t.last_four, holder: t.holder, expiry: t.expiry };
        super::cards::add(s, "callcenter", c1.id, &saved, true).await?;
    }
    for f in [Feature::RestrictPaymentTokenUsage, Feature::NonrecurringTokens] {
        features::set(s, audit::SYSTEM, f, true).await?;
    }
    Ok(())
}
