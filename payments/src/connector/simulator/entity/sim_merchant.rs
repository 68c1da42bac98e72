use sea_orm::entity::prelude::*;

/// The simulator's merchant account (one row): whether it allows multiple partial captures on an
/// authorization (Adyen's allowMultiplePartialCapture). Paystage's own copy of that setting is on
/// the Payment connectors page (R-PAR-5); a real processor is configured on its side.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sim_merchant")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub allow_multiple_partial_capture: bool,
}

impl ActiveModelBehavior for ActiveModel {}
