//! Facts that were prose or a naming convention become typed columns (issue #41).
//! - `invoices.kind`: `invoice` or `credit_note` (`DocumentKind`), instead of reading the number's
//!   "CRN" prefix or the amount's sign. Existing credit notes are found by their prefix.
//! - `payment_processes.capture_kind`: `incremental` or `legacy` (`CaptureKind`), instead of
//!   reading how `capture_path`'s explanation begins. The explanation stays for the history page.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("invoices").add_column(string_len("kind", 16).default("invoice")).to_owned()).await?;
        m.alter_table(Table::alter().table("payment_processes").add_column(string_len_null("capture_kind", 16)).to_owned()).await?;
        let db = m.get_connection();
        db.execute_unprepared("UPDATE invoices SET kind = 'credit_note' WHERE number LIKE 'CRN-%'").await?;
        db.execute_unprepared("UPDATE payment_processes SET capture_kind = 'incremental' WHERE capture_path LIKE 'Incremental%'").await?;
        db.execute_unprepared("UPDATE payment_processes SET capture_kind = 'legacy' WHERE capture_path LIKE 'Legacy%'").await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("payment_processes").drop_column("capture_kind").to_owned()).await?;
        m.alter_table(Table::alter().table("invoices").drop_column("kind").to_owned()).await
    }
}
