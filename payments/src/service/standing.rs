//! The overview's counts of where card payments stand. Four `COUNT`s on indexed or small sets;
//! read-only, so they run outside a transaction.
use crate::domain::order::{AuthorizationStatus, PaymentStatus, Tender};
use crate::domain::payment_views::PaymentStanding;
use crate::domain::pipeline::ProcessStatus;
use crate::entity::{authorization as au, payment_line as pl, payment_process as pp, sales_order as so};
use crate::error::ServiceResult;
use crate::service::Services;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

pub async fn standing(s: &Services) -> ServiceResult<PaymentStanding> {
    let now = s.now();
    Ok(PaymentStanding {
        incomplete_processes: pp::Entity::find().filter(pp::Column::Status.eq(ProcessStatus::Incomplete.code())).count(&s.db).await?,
        pending_authorization: pl::Entity::find()
            .filter(pl::Column::Tender.eq(Tender::Card.code()))
            .filter(pl::Column::Status.eq(PaymentStatus::PendingAuthorization.code()))
            .count(&s.db)
            .await?,
        orders_on_hold: so::Entity::find().filter(so::Column::DoNotProcess.eq(true)).count(&s.db).await?,
        expiring_soon: au::Entity::find()
            .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
            .filter(au::Column::ExpiresAt.gt(now))
            .filter(au::Column::ExpiresAt.lte(now + chrono::Duration::days(PaymentStanding::EXPIRING_DAYS)))
            .count(&s.db)
            .await?,
    })
}
