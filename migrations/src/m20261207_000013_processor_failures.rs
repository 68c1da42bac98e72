//! Failures the processor reports after it answered (issue #42, R-LED-1/2): Adyen answers a
//! capture or refund `received` and may report CAPTURE_FAILED or REFUND_FAILED later. The capture
//! or refund stays on record with when and why it failed (its money did not move: it no longer
//! counts as captured or refunded), and a reversing journal is posted beside the original one.
//! The notification that reported it is worked by finance: who marked it worked and when.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        for table in ["captures", "refunds"] {
            m.alter_table(Table::alter().table(table).add_column(timestamp_with_time_zone_null("failed_at")).to_owned()).await?;
            m.alter_table(Table::alter().table(table).add_column(text_null("failure_reason")).to_owned()).await?;
        }
        m.alter_table(Table::alter().table("processor_notifications").add_column(string_len_null("worked_by", 128)).to_owned()).await?;
        m.alter_table(Table::alter().table("processor_notifications").add_column(timestamp_with_time_zone_null("worked_at")).to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in ["worked_at", "worked_by"] {
            m.alter_table(Table::alter().table("processor_notifications").drop_column(column).to_owned()).await?;
        }
        for table in ["refunds", "captures"] {
            for column in ["failure_reason", "failed_at"] {
                m.alter_table(Table::alter().table(table).drop_column(column).to_owned()).await?;
            }
        }
        Ok(())
    }
}
