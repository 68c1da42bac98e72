use sea_orm::entity::prelude::*;

/// One notification item a processor sent to the webhook endpoint (issue #42), kept for good.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "processor_notifications")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub connector: String,
    pub event_code: String,
    pub psp_reference: String,
    pub original_reference: Option<String>,
    pub merchant_reference: String,
    pub success: bool,
    pub amount_minor: i64,
    pub currency: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub reason: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub item: String,
    pub received_at: DateTimeUtc,
    /// `received`, `processed`, `attention` (finance must work it), `worked` (finance did) or
    /// `unknown_event`.
    pub state: String,
    pub attempts: i32,
    pub processed_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub note: Option<String>,
    /// The finance user who marked a notification that needed finance as worked, and when.
    pub worked_by: Option<String>,
    pub worked_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
