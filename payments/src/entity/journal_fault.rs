//! A fault injected into Paystage's own journal posting (issue #42): the processor's faults' shape,
//! kept in Paystage's database ([`crate::connector::faults`]).
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "journal_faults")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub point: String,
    pub kind: String,
    pub rate: String,
    pub remaining: Option<i32>,
    pub latency_ms: i32,
    pub created_at: DateTimeUtc,
    /// Times the fault has fired.
    pub fired: i32,
}

impl ActiveModelBehavior for ActiveModel {}
