use sea_orm::entity::prelude::*;

/// A request an HTTP connector sent, kept to repeat it with the same idempotency key (issue #42).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "processor_sends")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub idempotency_key: String,
    pub connector: String,
    pub path: String,
    #[sea_orm(column_type = "Text")]
    pub body: String,
    pub first_sent_at: DateTimeUtc,
    pub attempts: i32,
    /// A capture that closes its authorization (the legacy path); Paystage's own note, not sent.
    pub final_capture: bool,
    /// The reference the processor gave this request (an authorization, capture, refund, …).
    pub psp_reference: Option<String>,
    /// The payment (authorization) a modification belongs to.
    pub payment_psp_reference: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}
