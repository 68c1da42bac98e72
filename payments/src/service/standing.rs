//! The overview's counts of where card payments stand, with expiry applied (`service::expiry`).
//! Four `COUNT`s on indexed sets; read-only, so they run outside a transaction.
use crate::domain::order::{AuthorizationStatus, PaymentStatus, Tender};
use crate::domain::payment_views::PaymentStanding;
use crate::domain::pipeline::ProcessStatus;
use crate::entity::{authorization as au, payment_line as pl, payment_process as pp, sales_order as so};
use crate::error::ServiceResult;
use crate::service::{expiry, Services};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

pub async fn standing(s: &Services) -> ServiceResult<PaymentStanding> {
    let now = s.now();
    let wm = expiry::watermark(&s.db).await?;
    Ok(PaymentStanding {
        incomplete_processes: pp::Entity::find().filter(pp::Column::Status.eq(ProcessStatus::Incomplete.code())).count(&s.db).await?,
        pending_authorization: pl::Entity::find()
            .filter(pl::Column::Tender.eq(Tender::Card.code()))
            .filter(expiry::payment_status_is(s.db.get_database_backend(), PaymentStatus::PendingAuthorization, wm))
            .count(&s.db)
            .await?,
        orders_on_hold: so::Entity::find().filter(expiry::order_held(s.db.get_database_backend(), wm)).count(&s.db).await?,
        expiring_soon: au::Entity::find()
            .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
            .filter(au::Column::ExpiresAt.gt(now))
            .filter(au::Column::ExpiresAt.lte(now + chrono::Duration::days(PaymentStanding::EXPIRING_DAYS)))
            .count(&s.db)
            .await?,
    })
}
