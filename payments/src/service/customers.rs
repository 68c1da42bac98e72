//! Customers, as the call center and finance look them up.
use crate::domain::views::CustomerView;
use crate::entity::customer;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, QueryOrder};

pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<CustomerView>, DbErr> {
    Ok(customer::Entity::find()
        .order_by_asc(customer::Column::Account)
        .all(db)
        .await?
        .into_iter()
        .map(|c| CustomerView { id: c.id, account: c.account, name: c.name, email: c.email })
        .collect())
}
