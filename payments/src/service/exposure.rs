//! Authorization exposure (seeds 001/002, issue #44): per order and per customer, what open
//! authorizations hold on customers' cards against what the orders still have to charge, the
//! orders whose holds exceed it flagged, and the release of the excess. The judgement is
//! [`crate::domain::exposure::assess`]; this module reads its facts and carries out its releases
//! through the processor, as voids (R-AUT-5's release, recorded intent first) and adjustments
//! (R-AUT-2).
//!
//! Every order with a live hold (an open authorization, not past its expiry, with something left
//! on it) is read, a few set-based queries per 500 orders, then sorted and paged in memory.
use super::authorizations::{self, Audit};
use super::Services;
use crate::domain::exposure::{assess, Assessment, CustomerExposure, ExposureFacts, ExposureFilter, ExposurePage, ExposureTotal, Hold, HoldView, OrderExposure, Release, short_reference};
use crate::domain::money::{Currency, Money};
use crate::domain::order::{AuthorizationStatus, Command, OrderStatus, PaymentStatus, RequestStatus};
use crate::domain::pipeline::ProcessStatus;
use crate::entity::{authorization as au, channel, customer, payment_line as pl, payment_process as pp, processor_request as pr, sales_order as so, sales_order_line as sol};
use crate::error::{AuthorizationError, ProcessorAction, ProcessorError, ServiceError, ServiceResult};
use crate::ledger::requests::{self, Purpose};
use crate::service::for_update;
use crate::ledger::orders::{basis, line_states};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait};
use std::collections::BTreeMap;

pub const PAGE_SIZE: usize = 25;
/// How many ids one `IN (…)` list carries.
const IDS_PER_QUERY: usize = 500;

/// An order's facts, its assessment and the rows it was read from.
pub(crate) struct Assessed {
    pub order: so::Model,
    pub currency: Currency,
    /// Its live holds.
    pub holds: Vec<au::Model>,
    pub assessment: Assessment,
}

/// Order `order_id`'s assessment now; None when it has no live hold.
pub(crate) async fn assess_order(s: &Services, order_id: i32) -> ServiceResult<Option<Assessment>> {
    Ok(assess_all(s, Some(order_id)).await?.pop().map(|a| a.assessment))
}

/// Reads and assesses every order with a live hold, or only `only_order`.
pub(crate) async fn assess_all(s: &Services, only_order: Option<i32>) -> ServiceResult<Vec<Assessed>> {
    let db = &s.db;
    let now = s.now();
    let mut q = au::Entity::find().filter(au::Column::Status.eq(AuthorizationStatus::Open.code())).filter(au::Column::ExpiresAt.gt(now));
    if let Some(id) = only_order {
        q = q.filter(au::Column::OrderId.eq(id));
    }
    let mut holds: BTreeMap<i32, Vec<au::Model>> = BTreeMap::new();
    for a in q.all(db).await?.into_iter().filter(|a| a.amount_minor > a.captured_minor) {
        holds.entry(a.order_id).or_default().push(a);
    }
    let ids: Vec<i32> = holds.keys().copied().collect();
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let orders = so::Entity::find().filter(so::Column::Id.is_in(chunk.to_vec())).all(db).await?;
        let mut lines: BTreeMap<i32, Vec<sol::Model>> = BTreeMap::new();
        for l in sol::Entity::find().filter(sol::Column::OrderId.is_in(chunk.to_vec())).all(db).await? {
            lines.entry(l.order_id).or_default().push(l);
        }
        let waiting = waiting(db, chunk).await?;
        for order in orders {
            let currency = Currency::stored(&order.currency)?;
            let states = line_states(lines.get(&order.id).map_or(&[][..], Vec::as_slice), currency);
            let balance = basis(&order, &states, currency)?.remaining().map_err(|source| ServiceError::Amount { what: "The order balance", source })?.total;
            let unapplied = crate::ledger::deposits::unapplied_deposit(db, &order).await?;
            let mine = holds.remove(&order.id).unwrap_or_default();
            let facts = ExposureFacts {
                balance_minor: balance.minor(),
                unapplied_deposit_minor: unapplied,
                cancelled: order.status == OrderStatus::Cancelled.code(),
                holds: mine.iter().map(hold).collect(),
                waiting: waiting.get(&order.id).cloned(),
            };
            let assessment = assess(&facts, now);
            out.push(Assessed { order, currency, holds: mine, assessment });
        }
    }
    Ok(out)
}

fn hold(a: &au::Model) -> Hold {
    Hold {
        authorization_id: a.id,
        payment_line_id: a.payment_line_id,
        reference: a.processor_reference.clone(),
        amount_minor: a.amount_minor,
        captured_minor: a.captured_minor,
        expires_at: a.expires_at,
    }
}

/// Why the need of each of `order_ids` is not known now: a payment process running or
/// incomplete, or a request to the processor whose outcome is not recorded.
pub(crate) async fn waiting(db: &impl ConnectionTrait, order_ids: &[i32]) -> ServiceResult<BTreeMap<i32, String>> {
    let mut why = BTreeMap::new();
    for p in pp::Entity::find()
        .filter(pp::Column::OrderId.is_in(order_ids.to_vec()))
        .filter(pp::Column::Status.is_in([ProcessStatus::Running.code(), ProcessStatus::Incomplete.code()]))
        .all(db)
        .await?
    {
        let status = ProcessStatus::from_code(&p.status).map_or("not finished", |s| if s == ProcessStatus::Running { "running" } else { "incomplete" });
        why.entry(p.order_id).or_insert_with(|| format!("a payment of the order is {status}; resume or terminate it on Incomplete cards payment first."));
    }
    for r in pr::Entity::find()
        .filter(pr::Column::OrderId.is_in(order_ids.to_vec()))
        .filter(pr::Column::Status.is_in([RequestStatus::Pending.code(), RequestStatus::Unknown.code()]))
        .all(db)
        .await?
    {
        why.entry(r.order_id).or_insert_with(|| format!("the outcome of request {} to the processor is not known yet.", r.tracking_id));
    }
    Ok(why)
}

fn describe(r: &Release, cur: Currency) -> String {
    let m = |v: i64| Money::from_minor(v, cur);
    match r {
        Release::Void { reference, release_minor, .. } => format!("Void {}, releasing {}", short_reference(reference), m(*release_minor)),
        Release::Reduce { reference, from_minor, to_minor, release_minor, .. } => {
            format!("Adjust {} from {} to {}, releasing {}", short_reference(reference), m(*from_minor), m(*to_minor), m(*release_minor))
        }
    }
}

/// The Authorization exposure page: totals, customers, and page `page` (from 1) of the orders
/// `filter` keeps.
pub async fn page(s: &Services, filter: &ExposureFilter, page: u64) -> ServiceResult<ExposurePage> {
    let db = &s.db;
    let all = assess_all(s, None).await?;
    let customer_ids: Vec<i32> = all.iter().map(|a| a.order.customer_id).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let mut customers: BTreeMap<i32, customer::Model> = BTreeMap::new();
    for chunk in customer_ids.chunks(IDS_PER_QUERY) {
        customers.extend(customer::Entity::find().filter(customer::Column::Id.is_in(chunk.to_vec())).all(db).await?.into_iter().map(|c| (c.id, c)));
    }
    let mut totals: BTreeMap<&'static str, ExposureTotal> = BTreeMap::new();
    let mut per_customer: BTreeMap<(i32, &'static str), CustomerExposure> = BTreeMap::new();
    for a in &all {
        let (cur, x) = (a.currency, &a.assessment);
        let flagged = u64::from(x.excess_minor > 0);
        let t = totals.entry(cur.code()).or_insert_with(|| ExposureTotal { held: Money::zero(cur), excess: Money::zero(cur), orders: 0, flagged: 0 });
        t.held = Money::from_minor(t.held.minor().saturating_add(x.held_minor), cur);
        t.excess = Money::from_minor(t.excess.minor().saturating_add(x.excess_minor), cur);
        t.orders += 1;
        t.flagged += flagged;
        let c = customers.get(&a.order.customer_id);
        let e = per_customer.entry((a.order.customer_id, cur.code())).or_insert_with(|| CustomerExposure {
            customer_id: a.order.customer_id,
            account: c.map(|c| c.account.clone()).unwrap_or_default(),
            name: c.map(|c| c.name.clone()).unwrap_or_default(),
            orders: 0,
            flagged: 0,
            held: Money::zero(cur),
            need: Money::zero(cur),
            excess: Money::zero(cur),
        });
        e.orders += 1;
        e.flagged += flagged;
        e.held = Money::from_minor(e.held.minor().saturating_add(x.held_minor), cur);
        e.need = Money::from_minor(e.need.minor().saturating_add(x.need_minor.unwrap_or(x.held_minor)), cur);
        e.excess = Money::from_minor(e.excess.minor().saturating_add(x.excess_minor), cur);
    }
    let mut customers_list: Vec<CustomerExposure> = per_customer.into_values().collect();
    customers_list.sort_by(|a, b| b.excess.minor().cmp(&a.excess.minor()).then(b.held.minor().cmp(&a.held.minor())).then(a.account.cmp(&b.account)));
    let mut kept: Vec<&Assessed> = all
        .iter()
        .filter(|a| !filter.only_excess || a.assessment.excess_minor > 0)
        .filter(|a| filter.customer_id.is_none_or(|c| a.order.customer_id == c))
        .collect();
    kept.sort_by(|a, b| b.assessment.excess_minor.cmp(&a.assessment.excess_minor).then(b.order.id.cmp(&a.order.id)));
    let total = kept.len() as u64;
    let pages = total.div_ceil(PAGE_SIZE as u64).max(1);
    let page = page.clamp(1, pages);
    let shown: Vec<&Assessed> = kept.into_iter().skip((page as usize - 1) * PAGE_SIZE).take(PAGE_SIZE).collect();
    let channel_ids: Vec<i32> = shown.iter().map(|a| a.order.channel_id).collect();
    let channels: BTreeMap<i32, String> = channel::Entity::find().filter(channel::Column::Id.is_in(channel_ids)).all(db).await?.into_iter().map(|c| (c.id, c.name)).collect();
    let line_ids: Vec<i32> = shown.iter().flat_map(|a| a.holds.iter().map(|h| h.payment_line_id)).collect();
    let lines: BTreeMap<i32, pl::Model> = pl::Entity::find().filter(pl::Column::Id.is_in(line_ids)).all(db).await?.into_iter().map(|l| (l.id, l)).collect();
    let orders = shown
        .into_iter()
        .map(|a| {
            let cur = a.currency;
            let c = customers.get(&a.order.customer_id);
            OrderExposure {
                order_id: a.order.id,
                order_number: a.order.number.clone(),
                order_status: OrderStatus::from_code(&a.order.status).unwrap_or(OrderStatus::Open),
                customer_id: a.order.customer_id,
                customer_account: c.map(|c| c.account.clone()).unwrap_or_default(),
                customer_name: c.map(|c| c.name.clone()).unwrap_or_default(),
                channel_name: channels.get(&a.order.channel_id).cloned().unwrap_or_default(),
                holds: a
                    .holds
                    .iter()
                    .map(|h| {
                        let line = lines.get(&h.payment_line_id);
                        HoldView {
                            payment_line_id: h.payment_line_id,
                            reference: h.processor_reference.clone(),
                            card: line.map(|l| format!("{} •••• {}", l.card_type.clone().unwrap_or_default(), l.last_four.clone().unwrap_or_default())).unwrap_or_default(),
                            left: Money::from_minor(h.amount_minor - h.captured_minor, cur),
                            expires_at: h.expires_at,
                        }
                    })
                    .collect(),
                held: Money::from_minor(a.assessment.held_minor, cur),
                need: a.assessment.need_minor.map(|n| Money::from_minor(n, cur)),
                excess: Money::from_minor(a.assessment.excess_minor, cur),
                release_steps: a.assessment.releases.iter().map(|r| describe(r, cur)).collect(),
                waiting: a.assessment.waiting.clone(),
            }
        })
        .collect();
    Ok(ExposurePage { as_of: s.now(), totals: totals.into_values().collect(), customers: customers_list, orders, page, pages, total })
}

/// Releases what an order's authorizations hold beyond what it still has to charge, as
/// [`assess`] plans it now: older holds voided, the one reached only partly adjusted down
/// (R-AUT-2). Each step is its own processor request, recorded before it is sent and audited
/// with its outcome; a step refused stops the rest, and what was done stays done.
pub async fn release_excess(s: &Services, actor: &str, order_id: i32) -> ServiceResult<String> {
    let a = assess_all(s, Some(order_id)).await?.pop();
    let Some(a) = a else {
        let order = crate::ledger::orders::find(&s.db, order_id).await?;
        return Err(AuthorizationError::NoExcess { order: order.number }.into());
    };
    if let Some(why) = a.assessment.waiting {
        return Err(AuthorizationError::ExposureWaiting { order: a.order.number, why }.into());
    }
    if a.assessment.releases.is_empty() {
        return Err(AuthorizationError::NoExcess { order: a.order.number }.into());
    }
    let cur = a.currency;
    let kept_lines: Vec<i32> = a.holds.iter().filter(|h| !a.assessment.releases.iter().any(|r| r.authorization_id() == h.id)).map(|h| h.payment_line_id).collect();
    let mut done = Vec::new();
    for r in &a.assessment.releases {
        let auth = a.holds.iter().find(|h| h.id == r.authorization_id()).ok_or_else(|| ServiceError::StoredData("a planned release names no hold".into()))?;
        let step = match r {
            Release::Void { .. } => {
                let line = pl::Entity::find_by_id(auth.payment_line_id).one(&s.db).await?;
                // A line that still has a hold kept keeps its status; otherwise it is Paid when
                // something was captured on the authorization, else Voided.
                let line_status = match line.as_ref().and_then(|l| PaymentStatus::from_code(&l.status)) {
                    Some(current) if kept_lines.contains(&auth.payment_line_id) => current,
                    _ if auth.captured_minor > 0 => PaymentStatus::Paid,
                    _ => PaymentStatus::Voided,
                };
                let audit = Audit {
                    actor: actor.to_string(),
                    action: "authorization.release_excess",
                    target: a.order.number.clone(),
                    before: serde_json::json!({
                        "authorization": auth.processor_reference,
                        "held": Money::from_minor(a.assessment.held_minor, cur).to_string(),
                        "need": a.assessment.need_minor.map(|n| Money::from_minor(n, cur).to_string()),
                    }),
                };
                let left = Money::from_minor(auth.amount_minor - auth.captured_minor, cur);
                match claim(s, &a, auth, Command::Void, left).await {
                    Ok(req) => authorizations::send_void(s, &req, auth, line_status, Some(audit)).await.map(|released| format!("voided {} ({released})", short_reference(&auth.processor_reference))),
                    Err(e) => Err(e),
                }
            }
            Release::Reduce { to_minor, release_minor, .. } => {
                let to = Money::from_minor(*to_minor, cur);
                let adjusted = match claim(s, &a, auth, Command::Adjust, to).await {
                    Ok(req) => authorizations::adjust_authorization(s, actor, &req, auth).await,
                    Err(e) => Err(e),
                };
                match adjusted {
                    // R-AUT-2: a declined adjustment is answered in words, not as an error; the
                    // authorization's amount says whether it went through.
                    Ok(message) => match au::Entity::find_by_id(auth.id).one(&s.db).await? {
                        Some(now) if now.amount_minor == *to_minor => Ok(format!("adjusted {} to {to} ({} released)", short_reference(&auth.processor_reference), Money::from_minor(*release_minor, cur))),
                        _ => Err(crate::error::ProcessorError::Refused { action: crate::error::ProcessorAction::Adjustment, message }.into()),
                    },
                    Err(e) => Err(e),
                }
            }
        };
        match step {
            Ok(d) => done.push(d),
            Err(e) if done.is_empty() => return Err(e),
            Err(e) => return Err(AuthorizationError::ReleasedPartly { done: capitalized(&done.join("; ")), error: e.to_string() }.into()),
        }
    }
    Ok(format!("{} of {} released: {}.", Money::from_minor(a.assessment.excess_minor, cur), a.order.number, done.join("; ")))
}

/// Claims one release step: under the order's lock, with nothing of the order in flight at the
/// processor and the hold as it was assessed, the request's intent is written and committed. Two
/// users releasing the same order at once send the processor one request; the second is told
/// to wait for it.
async fn claim(s: &Services, a: &Assessed, auth: &au::Model, command: Command, amount: Money) -> ServiceResult<pr::Model> {
    let txn = s.db.begin().await?;
    for_update(so::Entity::find_by_id(a.order.id), &txn).one(&txn).await?;
    if let Some(why) = waiting(&txn, &[a.order.id]).await?.remove(&a.order.id) {
        txn.rollback().await?;
        return Err(AuthorizationError::ExposureWaiting { order: a.order.number.clone(), why }.into());
    }
    let now = au::Entity::find_by_id(auth.id).one(&txn).await?;
    if now.as_ref() != Some(auth) {
        txn.rollback().await?;
        return Err(AuthorizationError::ExposureChanged { order: a.order.number.clone() }.into());
    }
    let purpose = Purpose { order_id: a.order.id, authorization_id: Some(auth.id), process: None, capture_id: None };
    let action = if command == Command::Void { ProcessorAction::Void } else { ProcessorAction::Adjustment };
    requests::claim(txn, s, auth.connector_id, command, amount, purpose)
        .await?
        .ok_or_else(|| ProcessorError::NotStarted { action, reason: "the connector gave no tracking id".into() }.into())
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}
