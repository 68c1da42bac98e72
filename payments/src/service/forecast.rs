//! The expiry forecast page (seed 003; R-AUT-3, R-AUT-6; issue #44): what expiring
//! authorizations put at risk over the next 30 days, by day and token kind
//! ([`crate::domain::forecast`]), when recurring ones are renewed, and the customers of
//! nonrecurring ones to contact for a new payment, with their contact details.
use super::exposure::assess_all;
use super::{parameters, Services};
use crate::domain::forecast::{forecast, renewal_due, AtRisk, ContactRow, ForecastPage, RenewalRow, HORIZON_DAYS};
use crate::domain::money::Money;
use crate::domain::tokens::TokenKind;
use crate::entity::{channel, customer, payment_line as pl};
use crate::error::ServiceResult;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::collections::BTreeMap;

/// How many ids one `IN (…)` list carries.
const IDS_PER_QUERY: usize = 500;

/// The forecast as of now.
pub async fn page(s: &Services) -> ServiceResult<ForecastPage> {
    let db = &s.db;
    let now = s.now();
    let renew_days_before = parameters::load(db).await?.renew_days_before_expiry();
    let horizon_end = now + chrono::Duration::days(i64::from(HORIZON_DAYS));
    let all = assess_all(s, None).await?;
    let line_ids: Vec<i32> = all.iter().flat_map(|a| a.holds.iter().map(|h| h.payment_line_id)).collect();
    let mut lines: BTreeMap<i32, pl::Model> = BTreeMap::new();
    for chunk in line_ids.chunks(IDS_PER_QUERY) {
        lines.extend(pl::Entity::find().filter(pl::Column::Id.is_in(chunk.to_vec())).all(db).await?.into_iter().map(|l| (l.id, l)));
    }
    let mut items = Vec::new();
    let mut soon = Vec::new();
    for a in &all {
        for h in &a.holds {
            let at_risk = a.assessment.kept_by(h.id);
            let recurring = lines.get(&h.payment_line_id).and_then(|l| TokenKind::from_code(&l.token_kind)).is_some_and(|k| k.can_reauthorize());
            items.push(AtRisk { currency: a.order.currency.clone(), expires_at: h.expires_at, at_risk_minor: at_risk, recurring });
            if at_risk > 0 && h.expires_at <= horizon_end {
                soon.push((a, h, at_risk, recurring));
            }
        }
    }
    soon.sort_by_key(|(a, h, _, _)| (h.expires_at, a.order.id));
    let customer_ids: Vec<i32> = soon.iter().map(|(a, ..)| a.order.customer_id).collect();
    let customers: BTreeMap<i32, customer::Model> = customer::Entity::find().filter(customer::Column::Id.is_in(customer_ids)).all(db).await?.into_iter().map(|c| (c.id, c)).collect();
    let channel_ids: Vec<i32> = soon.iter().map(|(a, ..)| a.order.channel_id).collect();
    let channels: BTreeMap<i32, String> = channel::Entity::find().filter(channel::Column::Id.is_in(channel_ids)).all(db).await?.into_iter().map(|c| (c.id, c.name)).collect();
    let (mut contacts, mut renewals) = (Vec::new(), Vec::new());
    for (a, h, at_risk, recurring) in soon {
        let c = customers.get(&a.order.customer_id);
        let at_risk = Money::from_minor(at_risk, a.currency);
        if recurring {
            renewals.push(RenewalRow {
                order_id: a.order.id,
                order_number: a.order.number.clone(),
                customer_account: c.map(|c| c.account.clone()).unwrap_or_default(),
                at_risk,
                expires_at: h.expires_at,
                renews_from: (renew_days_before > 0).then(|| h.expires_at - chrono::Duration::days(i64::from(renew_days_before))),
                due: renewal_due(h.expires_at, now, renew_days_before),
            });
        } else {
            let line = lines.get(&h.payment_line_id);
            contacts.push(ContactRow {
                order_id: a.order.id,
                order_number: a.order.number.clone(),
                channel_id: a.order.channel_id,
                channel_name: channels.get(&a.order.channel_id).cloned().unwrap_or_default(),
                customer_account: c.map(|c| c.account.clone()).unwrap_or_default(),
                customer_name: c.map(|c| c.name.clone()).unwrap_or_default(),
                email: c.and_then(|c| c.email.clone()).unwrap_or_default(),
                phone: c.and_then(|c| c.phone.clone()).unwrap_or_default(),
                card: line.map(|l| format!("{} •••• {}", l.card_type.clone().unwrap_or_default(), l.last_four.clone().unwrap_or_default())).unwrap_or_default(),
                at_risk,
                expires_at: h.expires_at,
            });
        }
    }
    Ok(ForecastPage { as_of: now, horizon_days: HORIZON_DAYS, renew_days_before, currencies: forecast(&items, now.date_naive(), HORIZON_DAYS), contacts, renewals })
}
