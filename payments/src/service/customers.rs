//! Customers, as the call center and finance look them up and set them up (issue #43): created
//! and edited with every field checked (the e-mail unique whatever its case), searched, and
//! deactivated (no new orders or cards; their orders and history stay) or activated again.
//! Every change is audited. A customer is never deleted.
use super::{audit, Services};
use crate::domain::parameters::FieldError;
use crate::domain::views::CustomerView;
use crate::entity::customer;
use crate::error::{ServiceError, ServiceResult};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait};
use serde_json::json;

/// The most customers one search shows; narrow the search to find others.
pub const SEARCH_LIMIT: u64 = 200;

pub fn view(c: customer::Model) -> CustomerView {
    CustomerView {
        id: c.id,
        account: c.account,
        name: c.name,
        email: c.email,
        phone: c.phone,
        billing_street: c.billing_street,
        billing_city: c.billing_city,
        billing_postal_code: c.billing_postal_code,
        billing_country: c.billing_country,
        active: c.deactivated_at.is_none(),
    }
}

/// The active customers, by account (those an order or card can be taken for).
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<CustomerView>, DbErr> {
    Ok(customer::Entity::find()
        .filter(customer::Column::DeactivatedAt.is_null())
        .order_by_asc(customer::Column::Account)
        .all(db)
        .await?
        .into_iter()
        .map(view)
        .collect())
}

/// Customers whose account, name, e-mail or phone contains `text` (any case), by account; the
/// deactivated ones too when `include_inactive`. At most [`SEARCH_LIMIT`].
pub async fn search(db: &impl ConnectionTrait, text: &str, include_inactive: bool) -> Result<Vec<CustomerView>, DbErr> {
    let mut q = customer::Entity::find();
    let text = text.trim().to_lowercase();
    if !text.is_empty() {
        let like = format!("%{}%", text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        let lower = |c: customer::Column| Expr::expr(Func::lower(Expr::col(c))).like(sea_orm::sea_query::LikeExpr::new(like.clone()).escape('\\'));
        q = q.filter(
            Condition::any()
                .add(lower(customer::Column::Account))
                .add(lower(customer::Column::Name))
                .add(lower(customer::Column::Email))
                .add(lower(customer::Column::Phone)),
        );
    }
    if !include_inactive {
        q = q.filter(customer::Column::DeactivatedAt.is_null());
    }
    Ok(q.order_by_asc(customer::Column::Account).limit(SEARCH_LIMIT).all(db).await?.into_iter().map(view).collect())
}

/// What a user types for a customer.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct CustomerForm {
    pub account: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub billing_street: String,
    pub billing_city: String,
    pub billing_postal_code: String,
    pub billing_country: String,
}

fn one_line(v: &str, max: usize) -> Option<Option<String>> {
    let v = v.trim();
    if v.chars().count() > max || v.chars().any(char::is_control) {
        return None;
    }
    Some((!v.is_empty()).then(|| v.to_string()))
}

/// Creates a customer (`id` None) or edits one: validated field by field, nothing written when
/// any field is wrong; audited. Returns its id.
pub async fn save(s: &Services, actor: &str, id: Option<i32>, f: &CustomerForm) -> ServiceResult<i32> {
    let mut errors = Vec::new();
    let account = f.account.trim().to_string();
    if !(1..=20).contains(&account.len()) || !account.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        errors.push(FieldError::new("account", "Enter an account number of 1 to 20 letters, digits, - or _, like C-1006."));
    }
    let name = f.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        errors.push(FieldError::new("name", "Enter the customer's name (1 to 100 characters, on one line)."));
    }
    let email = f.email.trim().to_lowercase();
    let email_ok = email.is_empty()
        || (email.len() <= 120
            && email.split_once('@').is_some_and(|(user, host)| !user.is_empty() && host.contains('.') && !host.starts_with('.') && !host.ends_with('.') && !host.contains('@'))
            && !email.chars().any(|c| c.is_whitespace() || c.is_control()));
    if !email_ok {
        errors.push(FieldError::new("email", "Enter an e-mail address like name@example.com, or leave it empty."));
    }
    let phone = one_line(&f.phone, 30).filter(|p| p.as_deref().is_none_or(|p| p.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c))));
    if phone.is_none() {
        errors.push(FieldError::new("phone", "Enter a phone number of digits, spaces and + - ( ) (30 at most), or leave it empty."));
    }
    let street = one_line(&f.billing_street, 120);
    if street.is_none() {
        errors.push(FieldError::new("billing_street", "Enter the street on one line (120 characters at most)."));
    }
    let city = one_line(&f.billing_city, 80);
    if city.is_none() {
        errors.push(FieldError::new("billing_city", "Enter the city on one line (80 characters at most)."));
    }
    let postal = one_line(&f.billing_postal_code, 16);
    if postal.is_none() {
        errors.push(FieldError::new("billing_postal_code", "Enter the postal code (16 characters at most)."));
    }
    let country = f.billing_country.trim().to_ascii_uppercase();
    if !(country.is_empty() || (country.len() == 2 && country.chars().all(|c| c.is_ascii_uppercase()))) {
        errors.push(FieldError::new("billing_country", "Enter the country as its two-letter code, like US or DE."));
    }
    let (Some(phone), Some(street), Some(city), Some(postal)) = (phone, street, city, postal) else {
        return Err(ServiceError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(ServiceError::Validation(errors));
    }
    let email = (!email.is_empty()).then_some(email);
    let country = (!country.is_empty()).then_some(country);
    let txn = s.db.begin().await?;
    let before = match id {
        Some(id) => Some(find(&txn, id).await?),
        None => None,
    };
    let others = |q: sea_orm::Select<customer::Entity>| match id {
        Some(id) => q.filter(customer::Column::Id.ne(id)),
        None => q,
    };
    let account_taken = others(customer::Entity::find())
        .filter(Expr::expr(Func::lower(Expr::col(customer::Column::Account))).eq(account.to_lowercase()))
        .one(&txn)
        .await?;
    if let Some(other) = account_taken {
        return Err(ServiceError::field("account", format!("The account number {} belongs to {} already; choose another.", other.account, other.name)));
    }
    if let Some(e) = &email {
        let taken = others(customer::Entity::find()).filter(Expr::expr(Func::lower(Expr::col(customer::Column::Email))).eq(e.clone())).one(&txn).await?;
        if let Some(other) = taken {
            return Err(ServiceError::field("email", format!("{e} is the e-mail of {} ({}) already; each customer has their own.", other.name, other.account)));
        }
    }
    let shown = |m: &customer::Model| {
        json!({ "account": m.account, "name": m.name, "email": m.email, "phone": m.phone, "billing_street": m.billing_street, "billing_city": m.billing_city, "billing_postal_code": m.billing_postal_code, "billing_country": m.billing_country })
    };
    let mut m: customer::ActiveModel = match &before {
        Some(b) => b.clone().into(),
        None => customer::ActiveModel { channel_id: Set(None), deactivated_at: Set(None), ..Default::default() },
    };
    m.account = Set(account.clone());
    m.name = Set(name.to_string());
    m.email = Set(email);
    m.phone = Set(phone);
    m.billing_street = Set(street);
    m.billing_city = Set(city);
    m.billing_postal_code = Set(postal);
    m.billing_country = Set(country);
    let saved = match &before {
        Some(_) => m.update(&txn).await?,
        None => m.insert(&txn).await.map_err(|e| ServiceError::unique_as_field(e, "account", format!("The account number {account} belongs to another customer already; choose another.")))?,
    };
    if before.as_ref() == Some(&saved) {
        return Ok(saved.id);
    }
    let action = if before.is_some() { "customer.edit" } else { "customer.create" };
    audit::record(&txn, s.now(), actor, action, &saved.account, before.as_ref().map(shown), Some(shown(&saved))).await?;
    txn.commit().await?;
    Ok(saved.id)
}

/// One customer.
pub async fn detail(db: &impl ConnectionTrait, id: i32) -> ServiceResult<CustomerView> {
    Ok(view(find(db, id).await?))
}

async fn find(db: &impl ConnectionTrait, id: i32) -> ServiceResult<customer::Model> {
    customer::Entity::find_by_id(id).one(db).await?.ok_or_else(|| ServiceError::NotFound(format!("There is no customer with id {id}.")))
}

/// Deactivates a customer (no new orders or cards; their orders, cards and history stay) or
/// activates them again; audited.
pub async fn set_active(s: &Services, actor: &str, id: i32, active: bool) -> ServiceResult<()> {
    let txn = s.db.begin().await?;
    let c = find(&txn, id).await?;
    if c.deactivated_at.is_none() == active {
        return Ok(());
    }
    let account = c.account.clone();
    let mut m: customer::ActiveModel = c.into();
    m.deactivated_at = Set((!active).then(|| s.now()));
    m.update(&txn).await?;
    audit::record(&txn, s.now(), actor, if active { "customer.activate" } else { "customer.deactivate" }, &account, None, None).await?;
    txn.commit().await?;
    Ok(())
}
