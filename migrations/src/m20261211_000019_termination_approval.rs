//! Terminate with follow-through (issue #44): a termination that needs a second finance user's
//! approval (money moved at the processor) is requested first; who asked, when, and the reason
//! they gave wait on the process until another user approves.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one column per ALTER TABLE.
        for column in [string_null("termination_requested_by"), timestamp_with_time_zone_null("termination_requested_at"), string_null("termination_request_reason")] {
            m.alter_table(Table::alter().table("payment_processes").add_column(column).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in ["termination_requested_by", "termination_requested_at", "termination_request_reason"] {
            m.alter_table(Table::alter().table("payment_processes").drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
