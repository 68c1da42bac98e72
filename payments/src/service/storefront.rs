//! The online storefront's checkout (R-TOK-7): a shopper, not a Paystage user, buys from a small
//! catalog and pays by card on the processor's page. The order is placed on the online store
//! channel through the same order service; the card is never saved in Paystage (a nonrecurring
//! token when that feature is in effect; never a card on file).
//!
//! Issue #40: the card token is confirmed with the processor before anything is written. The
//! shop has no shopper accounts, so it never matches a customer made by staff (whose history and
//! cards on file belong to someone proven); it keeps its own customer per e-mail on its channel
//! (unique index), which holds nothing a shopper can see or use: no cards, no history shown, and
//! its name is not changed by later orders.
use super::orders::{self, CardForm, LineForm, OrderForm};
use super::{audit, Services};
use crate::domain::parameters::FieldError;
use crate::domain::payment_views::PlacedOrder;
use crate::domain::views::ChannelKind;
use crate::entity::{channel, customer};
use crate::error::{SetupError, ServiceError, ServiceResult};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait};

/// The shop's catalog: item, unit price (USD).
pub const CATALOG: &[(&str, &str)] = &[("Trail running shoes", "129.00"), ("Rain shell jacket", "189.50"), ("Insulated bottle", "34.95")];

/// What the shopper typed.
#[derive(Clone, Debug, Default)]
pub struct Checkout {
    pub email: String,
    pub name: String,
    /// Quantity per catalog item, in catalog order.
    pub quantities: Vec<String>,
    pub card: CardForm,
}

/// The user the storefront acts as in the audit log and on the order.
pub const ACTOR: &str = "storefront";

/// The web shop's channel (the first open online store) and the connector it takes cards on
/// and is paid through; closed when there is none.
pub async fn web_shop(s: &Services) -> ServiceResult<(channel::Model, i32)> {
    let web = channel::Entity::find()
        .filter(channel::Column::Kind.eq(ChannelKind::OnlineStore.code()))
        .filter(channel::Column::ClosedAt.is_null())
        .order_by_asc(channel::Column::Id)
        .one(&s.db)
        .await?
        .ok_or(SetupError::WebShopClosed)?;
    let conn = super::card_payments::connector_for_channel(&s.db, &web).await?;
    Ok((web, conn.id))
}

pub async fn checkout(s: &Services, c: &Checkout) -> ServiceResult<PlacedOrder> {
    let mut errors = Vec::new();
    let email = c.email.trim().to_lowercase();
    let valid_email = email.len() <= 120
        && email.split_once('@').is_some_and(|(user, host)| !user.is_empty() && host.contains('.') && !host.starts_with('.') && !host.ends_with('.'))
        && !email.chars().any(char::is_whitespace);
    if !valid_email {
        errors.push(FieldError::new("email", "Enter your e-mail address, like name@example.com."));
    }
    let name = c.name.trim();
    if name.is_empty() || name.chars().count() > 80 {
        errors.push(FieldError::new("name", "Enter your name (at most 80 characters)."));
    }
    let mut lines = Vec::new();
    for (i, (item, price)) in CATALOG.iter().enumerate() {
        let raw = c.quantities.get(i).map(|q| q.trim()).unwrap_or_default();
        if raw.is_empty() || raw == "0" {
            continue;
        }
        match raw.parse::<i32>() {
            Ok(q) if (1..=20).contains(&q) => lines.push((*item, q, *price)),
            _ => errors.push(FieldError::new(format!("quantity_{}", i + 1), format!("{item}: choose a quantity from 0 to 20."))),
        }
    }
    if lines.is_empty() && errors.is_empty() {
        errors.push(FieldError::new("quantity_1", "Your basket is empty: choose a quantity of at least one item."));
    }
    if !errors.is_empty() {
        return Err(ServiceError::Validation(errors));
    }
    let (web, connector_id) = web_shop(s).await?;
    let card = super::cards::verified(s, Some(connector_id), &c.card).await?;
    super::cards::check_card(&card)?;
    let customer_id = find_or_open_customer(s, web.id, &email, name).await?;
    let ship = (s.now().date_naive() + chrono::Duration::days(2)).to_string();
    let form = OrderForm {
        customer_id: customer_id.to_string(),
        channel_id: web.id.to_string(),
        currency: "USD".into(),
        tax_percent: "0".into(),
        charges: "0".into(),
        lines: lines
            .into_iter()
            .map(|(item, q, price)| LineForm { item: item.into(), quantity: q.to_string(), unit_price: price.into(), requested_ship_date: ship.clone() })
            .collect(),
        card,
        order_kind: "customer_order".into(),
        ..Default::default()
    };
    // The card was confirmed above; it is not asked about again.
    orders::place_verified(s, ACTOR, &form).await
}

/// The shop's customer for `email` on its channel `channel_id`; opened (`WEB-000042`) on the first
/// order. Two first orders at once: the unique index lets one insert win, the other reads it.
async fn find_or_open_customer(s: &Services, channel_id: i32, email: &str, name: &str) -> ServiceResult<i32> {
    let find = || customer::Entity::find().filter(customer::Column::ChannelId.eq(channel_id)).filter(customer::Column::Email.eq(email)).one(&s.db);
    if let Some(c) = find().await? {
        return Ok(c.id);
    }
    match open_customer(s, channel_id, email, name).await {
        Ok(id) => Ok(id),
        Err(e) => match find().await? {
            Some(c) => Ok(c.id),
            None => Err(e),
        },
    }
}

async fn open_customer(s: &Services, channel_id: i32, email: &str, name: &str) -> ServiceResult<i32> {
    let txn = s.db.begin().await?;
    let c = customer::ActiveModel {
        account: Set(format!("WEB-{}", uuid::Uuid::new_v4().simple())),
        name: Set(name.to_string()),
        email: Set(Some(email.to_string())),
        channel_id: Set(Some(channel_id)),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let account = format!("WEB-{:06}", c.id);
    let mut am: customer::ActiveModel = c.into();
    am.account = Set(account.clone());
    let c = am.update(&txn).await?;
    audit::record(&txn, s.now(), ACTOR, "customer.open", &account, None, Some(serde_json::json!({ "name": name, "email": email }))).await?;
    txn.commit().await?;
    Ok(c.id)
}
