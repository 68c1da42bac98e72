use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invoices")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub number: String,
    pub order_id: i32,
    pub currency: String,
    pub amount_minor: i64,
    pub posted_at: DateTimeUtc,
    pub posted_by: String,
    /// Settled otherwise than by the pipeline's card capture or refund: deposits applied and cash
    /// taken at pickup; on a credit note, the part refunded in cash (negative).
    pub prepaid_minor: i64,
    /// `DocumentKind`: an invoice or a credit note.
    pub kind: String,
}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    pub fn is_credit_note(&self) -> bool {
        self.kind == crate::domain::order::DocumentKind::CreditNote.code()
    }
}
