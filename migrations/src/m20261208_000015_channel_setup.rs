//! Stores and channels set up through the pages (issue #43): a channel's currency (its orders'
//! currency by default) and when it was closed (a closed channel takes no new orders; its orders
//! and their history stay).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        m.alter_table(Table::alter().table("channels").add_column(string_len("currency", 3).default("USD")).to_owned()).await?;
        m.alter_table(Table::alter().table("channels").add_column(timestamp_with_time_zone_null("closed_at")).to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("channels").drop_column("closed_at").to_owned()).await?;
        m.alter_table(Table::alter().table("channels").drop_column("currency").to_owned()).await
    }
}
