//! Connectors set up through the pages (issue #43): where each one reaches its processor (the
//! Checkout API's endpoint, the merchant account, the hosted card page), its API key and HMAC key
//! sealed with the server's secret key (never stored in the clear, never shown again), how long
//! the processor keeps an idempotency key, the timeout of one request, and a revision every
//! change raises, by which each server sharing the database notices that its connector changed.
//! The demo's connector row, named after the in-process simulator that issue #42 removed, becomes
//! the sandbox's (the code the sandbox's requests and notifications already carry).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const COLUMNS: [&str; 8] = ["endpoint", "merchant_account", "api_key_sealed", "hmac_key_sealed", "card_page", "key_window_days", "timeout_ms", "revision"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        let alter = |c: ColumnDef| Table::alter().table("connectors").add_column(c).to_owned();
        m.alter_table(alter(text_null("endpoint"))).await?;
        m.alter_table(alter(text_null("merchant_account"))).await?;
        m.alter_table(alter(text_null("api_key_sealed"))).await?;
        m.alter_table(alter(text_null("hmac_key_sealed"))).await?;
        m.alter_table(alter(text_null("card_page"))).await?;
        m.alter_table(alter(integer("key_window_days").default(31).to_owned())).await?;
        m.alter_table(alter(integer("timeout_ms").default(8000).to_owned())).await?;
        m.alter_table(alter(integer("revision").default(0).to_owned())).await?;
        m.get_connection()
            .execute_unprepared(
                "UPDATE connectors SET code = 'sandbox', name = 'Processor sandbox', kind = 'sandbox' \
                 WHERE code = 'simulator' AND NOT EXISTS (SELECT 1 FROM connectors c WHERE c.code = 'sandbox')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for c in COLUMNS.iter().rev() {
            m.alter_table(Table::alter().table("connectors").drop_column(*c).to_owned()).await?;
        }
        m.get_connection()
            .execute_unprepared("UPDATE connectors SET code = 'simulator', name = 'Processor simulator', kind = 'simulator' WHERE code = 'sandbox'")
            .await?;
        Ok(())
    }
}
