//! Customer credit cards (R-TOK-6, R-TOK-8): recurring tokens saved on a customer with their
//! agreement. Only tokens and what identifies the card to a person (type, last four, holder,
//! expiry) are kept. Deleting keeps the row (marked deleted), so the record of what was on file
//! and who removed it is never lost; every change is audited.
use super::{audit, Services};
use crate::domain::views::{CustomerCards, SavedCardView};
use crate::entity::{customer, customer_card as cc};
use crate::error::{ProcessorError, ServiceError, ServiceResult};
use super::card_payments::{default_connector, CardForm};
use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait};

fn view(c: cc::Model) -> SavedCardView {
    SavedCardView {
        id: c.id,
        card_type: c.card_type,
        last_four: c.last_four,
        holder: c.holder,
        expiry: c.expiry,
        added_at: c.created_at,
        added_by: c.created_by,
    }
}

/// The customer's cards on file, oldest first (deleted ones are not offered).
pub async fn saved(db: &impl ConnectionTrait, customer_id: i32) -> Result<Vec<SavedCardView>, DbErr> {
    Ok(cc::Entity::find()
        .filter(cc::Column::CustomerId.eq(customer_id))
        .filter(cc::Column::DeletedAt.is_null())
        .order_by_asc(cc::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(view)
        .collect())
}

pub async fn for_customer(db: &impl ConnectionTrait, customer_id: i32) -> ServiceResult<CustomerCards> {
    let c = customer::Entity::find_by_id(customer_id)
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("There is no customer with id {customer_id}.")))?;
    let cannot_add = default_connector(db).await.err().map(|e| e.to_string());
    Ok(CustomerCards {
        customer: super::customers::view(c),
        cards: saved(db, customer_id).await?,
        cannot_add,
    })
}

/// Longest card token Paystage accepts from a browser (processors' tokens are far shorter).
pub const MAX_TOKEN_LEN: usize = 128;

/// The card behind `card.token` as the processor describes it (card type, last four, holder,
/// expiry), whatever the browser sent with the token (issue #40). No token: an empty card (the
/// caller decides whether one is needed). A token the processor does not know is refused on the
/// `card` field; a processor that cannot answer refuses the request, and nothing is written.
pub async fn verified(s: &Services, connector_id: Option<i32>, card: &CardForm) -> ServiceResult<CardForm> {
    let token = card.token.trim();
    if token.is_empty() {
        return Ok(CardForm::default());
    }
    let unknown = || {
        ServiceError::field(
            "card",
            "The payment processor does not know this card. Enter the card again on the processor's payment page (a card taken for one store or channel is known only to the processor that store or channel pays through).",
        )
    };
    if token.len() > MAX_TOKEN_LEN || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(unknown());
    }
    match s.describe_token_on(connector_id, token).await {
        Ok(Some(t)) => Ok(CardForm { token: t.token, card_type: t.card_type, last_four: t.last_four, holder: t.holder, expiry: t.expiry }),
        Ok(None) => Err(unknown()),
        Err(e) => Err(ProcessorError::CardNotConfirmed { reason: e.to_string() }.into()),
    }
}

/// A card that came from [`verified`] (or from a card on file): a token and the processor's details.
pub(crate) fn check_card(card: &CardForm) -> ServiceResult<()> {
    let ok = !card.token.trim().is_empty()
        && card.last_four.len() == 4
        && card.last_four.chars().all(|ch| ch.is_ascii_digit())
        && !card.card_type.trim().is_empty();
    if ok {
        Ok(())
    } else {
        Err(ServiceError::field("card", "Enter the card on the processor's payment page first."))
    }
}

pub(crate) async fn insert(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    actor: &str,
    customer_id: i32,
    connector_id: i32,
    card: &CardForm,
) -> ServiceResult<cc::Model> {
    check_card(card)?;
    let m = cc::ActiveModel {
        customer_id: Set(customer_id),
        connector_id: Set(connector_id),
        token: Set(card.token.trim().to_string()),
        card_type: Set(card.card_type.trim().to_string()),
        last_four: Set(card.last_four.trim().to_string()),
        holder: Set(card.holder.trim().to_string()),
        expiry: Set(card.expiry.trim().to_string()),
        created_at: Set(now),
        created_by: Set(actor.to_string()),
        deleted_at: Set(None),
        deleted_by: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    audit::record(
        db,
        now,
        actor,
        "card.add",
        &format!("customer {customer_id}"),
        None,
        Some(serde_json::json!({ "card": m.id, "card_type": m.card_type, "last_four": m.last_four, "holder": m.holder })),
    )
    .await?;
    Ok(m)
}

/// Adds a card on file (New customer credit card). Needs a default connector (R-TOK-8) and the
/// customer's agreement, confirmed by the user.
pub async fn add(s: &Services, actor: &str, customer_id: i32, card: &CardForm, agreed: bool) -> ServiceResult<SavedCardView> {
    let card = &verified(s, None, card).await?;
    let txn = s.db.begin().await?;
    let c = customer::Entity::find_by_id(customer_id)
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("There is no customer with id {customer_id}.")))?;
    if c.deactivated_at.is_some() {
        return Err(ServiceError::field("card", format!("{} is deactivated: no card is saved for them. Activate the customer first.", c.name)));
    }
    let conn = default_connector(&txn).await?;
    check_card(card)?;
    if !agreed {
        return Err(ServiceError::field("agreed", "Confirm that the customer agrees to save this card before you save it."));
    }
    let m = insert(&txn, s.now(), actor, customer_id, conn.id, card).await?;
    txn.commit().await?;
    Ok(view(m))
}

/// Deletes a card on file: it is no longer offered; the row stays, marked deleted, and audited.
pub async fn delete(s: &Services, actor: &str, customer_id: i32, card_id: i32) -> ServiceResult<()> {
    let txn = s.db.begin().await?;
    let c = cc::Entity::find_by_id(card_id)
        .one(&txn)
        .await?
        .filter(|c| c.customer_id == customer_id && c.deleted_at.is_none())
        .ok_or_else(|| ServiceError::NotFound("That card is not on file for this customer (it may have been deleted already).".into()))?;
    let now = s.now();
    let before = serde_json::json!({ "card": c.id, "card_type": c.card_type, "last_four": c.last_four, "holder": c.holder });
    let mut am: cc::ActiveModel = c.into();
    am.deleted_at = Set(Some(now));
    am.deleted_by = Set(Some(actor.to_string()));
    am.update(&txn).await?;
    audit::record(&txn, now, actor, "card.delete", &format!("customer {customer_id}"), Some(before), None).await?;
    txn.commit().await?;
    Ok(())
}
