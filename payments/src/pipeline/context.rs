//! What a stage of the payment process runs with ([`Ctx`]) and how it ends ([`StageEnd`]).
use crate::domain::money::Currency;
use crate::entity::{
    invoice as inv,
    payment_process as pp, sales_order as so,
};
use crate::error::{ServiceError, ServiceResult};
use crate::ledger::orders;
use crate::runtime::Services;
use sea_orm::EntityTrait;

/// How a stage ended.
#[derive(Debug)]
pub(crate) enum StageEnd {
    Succeeded(String),
    Skipped(String),
    Failed(String),
    /// Another server took the process over: this run wrote nothing and stops.
    LeaseLost,
}

/// What the stages of one run of a process read: the process as this run knows it (updated as its
/// stages capture and choose a path), its invoice and its order, each read once per run.
pub(super) struct Ctx {
    pub p: pp::Model,
    pub invoice: inv::Model,
    pub order: so::Model,
    /// Stage marks and log lines this run has not written yet.
    pub marks: super::marks::Marks,
    /// Set when this run follows the invoicing that created the process, in the same call: the
    /// features and parameters it read. Nothing else can have acted on the process yet (this
    /// server holds its lease), so no earlier request or payment journal of it exists.
    pub fresh: Option<(crate::domain::features::FeatureSet, crate::domain::parameters::Parameters)>,
}

impl Ctx {
    pub(super) async fn load(s: &Services, p: pp::Model) -> ServiceResult<Ctx> {
        let invoice = inv::Entity::find_by_id(p.invoice_id).one(&s.db).await?.ok_or_else(|| ServiceError::NotFound("invoice".into()))?;
        let order = orders::find(&s.db, p.order_id).await?;
        Ok(Ctx { p, invoice, order, marks: Default::default(), fresh: None })
    }

    /// A credit note (negative amount): stage 2 refunds instead of capturing.
    pub(super) fn is_credit(&self) -> bool {
        self.invoice.is_credit_note()
    }

    /// Writes the pending stage marks in a transaction of their own, before a stage writes
    /// outside a transaction that flushes them; false if another server holds the lease.
    pub(super) async fn flush_now(&mut self, s: &Services) -> Result<bool, sea_orm::DbErr> {
        let id = self.p.id;
        self.marks.flush_now(s, id).await
    }
}

pub(super) fn currency(code: &str) -> ServiceResult<Currency> {
    Ok(Currency::stored(code)?)
}

/// Stops the stage when another server took the process over.
macro_rules! flushed {
    ($ctx:expr, $s:expr) => {
        if !$ctx.flush_now($s).await? {
            return Ok(StageEnd::LeaseLost);
        }
    };
}
pub(super) use flushed;
