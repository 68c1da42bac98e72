//! Credit notes and refunds through the payment pipeline, and fault counts:
//! - `sales_order_lines.credited_quantity`: invoiced quantity since credited (returned), so nothing
//!   is credited twice;
//! - `processor_requests.capture_id`: the capture a refund request is made against, so a refund
//!   whose outcome was lost is resolved and recorded against the right capture;
//! - `sim_faults.fired`: how often each injected fault fired (simulator page, `paystage faults
//!   list`, `paystage chaos`).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        m.alter_table(Table::alter().table("sales_order_lines").add_column(integer("credited_quantity").default(0)).to_owned()).await?;
        m.alter_table(Table::alter().table("processor_requests").add_column(integer_null("capture_id")).to_owned()).await?;
        m.alter_table(Table::alter().table("sim_faults").add_column(integer("fired").default(0)).to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("sim_faults").drop_column("fired").to_owned()).await?;
        m.alter_table(Table::alter().table("processor_requests").drop_column("capture_id").to_owned()).await?;
        m.alter_table(Table::alter().table("sales_order_lines").drop_column("credited_quantity").to_owned()).await
    }
}
