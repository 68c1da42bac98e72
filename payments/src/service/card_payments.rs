//! A card payment line on an order (R-TOK, R-AUT-1): the card chosen (a saved card of the
//! customer's, or a new token from the processor's page), the line inserted, the consent kept, the
//! authorization made with its intent first. Shared by placing an order and adding a payment.
use crate::connector::Outcome;
use crate::domain::money::Money;
use crate::domain::order::{Command, PaymentStatus, Tender};
use crate::entity::{connector, payment_line as pl};
use crate::error::{ProcessorAction, ProcessorError, SetupError, ServiceError, ServiceResult};
use crate::ledger::orders::record_authorization;
use crate::ledger::requests::{self, Purpose};
use crate::runtime::Services;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};

/// The card the processor's acceptance page handed back (never the number, R-TOK-1).
#[derive(Clone, Debug, Default)]
pub struct CardForm {
    pub token: String,
    pub card_type: String,
    pub last_four: String,
    pub holder: String,
    pub expiry: String,
}

pub async fn default_connector(db: &impl ConnectionTrait) -> ServiceResult<connector::Model> {
    connector::Entity::find()
        .filter(connector::Column::IsDefault.eq(true))
        .one(db)
        .await?
        .ok_or_else(|| SetupError::NoDefaultConnector.into())
}

/// The connector a channel's orders take their cards on and are paid through: its own, or the
/// default connector (R-PAR-5, R-TOK-8).
pub async fn connector_for_channel(db: &impl ConnectionTrait, chan: &crate::entity::channel::Model) -> ServiceResult<connector::Model> {
    match chan.connector_id {
        Some(id) => connector::Entity::find_by_id(id)
            .one(db)
            .await?
            .ok_or_else(|| ServiceError::StoredData(format!("channel {} names connector {id}, which does not exist", chan.code))),
        None => default_connector(db).await,
    }
}

/// The card an order is paid with, after the token rules were applied.
pub(crate) struct ChosenCard {
    pub(crate) card: CardForm,
    pub(crate) saved: Option<crate::entity::customer_card::Model>,
}

/// The card a payment on a channel paying through `conn` uses: the customer's card on file
/// `saved_card_id` (stored with that same connector: a token is known only to the processor
/// that stored it), or else `new_card`.
pub(crate) async fn chosen_card(db: &impl ConnectionTrait, saved_card_id: &str, new_card: &CardForm, customer_id: i32, conn: &connector::Model) -> ServiceResult<ChosenCard> {
    let raw = saved_card_id.trim();
    if raw.is_empty() {
        return Ok(ChosenCard { card: new_card.clone(), saved: None });
    }
    let card = raw
        .parse::<i32>()
        .ok()
        .and_then(|id| if id > 0 { Some(id) } else { None });
    let found = match card {
        Some(id) => crate::entity::customer_card::Entity::find_by_id(id).one(db).await?,
        None => None,
    };
    match found {
        Some(c) if c.customer_id == customer_id && c.deleted_at.is_none() && c.connector_id != conn.id => {
            let stored_with = connector::Entity::find_by_id(c.connector_id).one(db).await?.map(|k| k.name).unwrap_or_else(|| format!("connector {}", c.connector_id));
            Err(ServiceError::field(
                "saved_card_id",
                format!("The card ending {} is stored with {stored_with}, and this channel pays through {}: enter the card on the processor's payment page instead.", c.last_four, conn.name),
            ))
        }
        Some(c) if c.customer_id == customer_id && c.deleted_at.is_none() => Ok(ChosenCard {
            card: CardForm {
                token: c.token.clone(),
                card_type: c.card_type.clone(),
                last_four: c.last_four.clone(),
                holder: c.holder.clone(),
                expiry: c.expiry.clone(),
            },
            saved: Some(c),
        }),
        _ => Err(ServiceError::field("saved_card_id", "Choose one of the customer's saved cards, or enter a new card.")),
    }
}

/// A card payment line for `amount`, waiting for its authorization.
#[expect(clippy::too_many_arguments, reason = "the order's facts a card authorization records, passed as read")]
pub(crate) async fn insert_card_line(
    db: &impl ConnectionTrait,
    order_id: i32,
    amount: Money,
    connector_id: i32,
    card: &CardForm,
    token_kind: crate::domain::tokens::TokenKind,
    customer_card_id: Option<i32>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<pl::Model, DbErr> {
    pl::ActiveModel {
        order_id: Set(order_id),
        tender: Set(Tender::Card.code().to_string()),
        amount_minor: Set(amount.minor()),
        status: Set(PaymentStatus::PendingAuthorization.code().to_string()),
        connector_id: Set(Some(connector_id)),
        card_token: Set(Some(card.token.trim().to_string())),
        card_type: Set(Some(card.card_type.trim().to_string())),
        last_four: Set(Some(card.last_four.trim().to_string())),
        holder: Set(Some(card.holder.trim().to_string())),
        expiry: Set(Some(card.expiry.trim().to_string())),
        created_at: Set(now),
        token_kind: Set(token_kind.code().to_string()),
        customer_card_id: Set(customer_card_id),
        ..Default::default()
    }
    .insert(db)
    .await
}

/// Keeps the evidence of a consent or acknowledgement: who, when, the words shown, the order.
pub(crate) async fn record_confirmation(
    db: &impl ConnectionTrait,
    now: chrono::DateTime<chrono::Utc>,
    actor: &str,
    order_id: i32,
    payment_line_id: Option<i32>,
    c: crate::domain::tokens::Confirmation,
) -> Result<(), DbErr> {
    crate::entity::token_consent::ActiveModel {
        order_id: Set(order_id),
        payment_line_id: Set(payment_line_id),
        kind: Set(c.code().to_string()),
        text_shown: Set(c.text().to_string()),
        given_by: Set(actor.to_string()),
        given_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .map(|_| ())
}

/// Authorizes `amount` on a card payment line: intent, call, outcome. Returns the payment status
/// and, when not authorized, why.
pub async fn authorize_payment_line(
    s: &Services,
    line: &pl::Model,
    amount: Money,
    replaces: Option<i32>,
) -> ServiceResult<(PaymentStatus, Option<String>)> {
    let token = line.card_token.clone().ok_or_else(|| ServiceError::StoredData(format!("payment line {} has no card token", line.id)))?;
    let connector_id = line.connector_id.ok_or_else(|| ServiceError::StoredData(format!("payment line {} has no connector", line.id)))?;
    let req = requests::begin(s, connector_id, Command::Authorize, amount, Purpose { order_id: line.order_id, authorization_id: replaces, process: None, capture_id: None })
        .await
        .map_err(|e| ProcessorError::NotStarted { action: ProcessorAction::Authorization, reason: e.to_string() })?;
    let ask = crate::connector::AuthorizeAsk::for_line(line, crate::connector::Initiator::Shopper);
    let result = s.processor(req.connector_id).authorize(&req.tracking_id, &token, amount, ask).await;
    let resolution = requests::resolve(s, &req, result, Outcome::Authorized).await;
    record_authorization(s, &req, line, resolution, replaces).await
}

