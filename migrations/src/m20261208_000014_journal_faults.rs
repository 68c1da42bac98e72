//! The processor leaves Paystage's process (issue #42).
//! - Faults injected into Paystage's own journal posting are Paystage's, kept in its own database
//!   (`journal_faults`). They were kept in the processor simulator's store while the simulator ran
//!   inside Paystage; the processor is now a service of its own, whose store Paystage does not
//!   read. Same shape as the processor's faults (`payments::connector::faults`), the point always
//!   `journal`.
//! - The in-process simulator's tables that migrations 2 and 3 made among Paystage's (`sim_*`)
//!   are dropped when they hold nothing (a new database). Rows in them are an earlier processor's
//!   records: they stay until `paystage sandbox --import-from` moves them (and drops the tables).
use sea_orm_migration::{prelude::*, schema::*};

/// The in-process simulator's tables among Paystage's (migrations 2 and 3), tables holding
/// references to others last.
const SIM_TABLES: [&str; 6] = ["sim_faults", "sim_transactions", "sim_refunds", "sim_captures", "sim_authorizations", "sim_tokens"];

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.has_table("sim_transactions").await? {
            let db = m.get_connection();
            let mut rows = 0i64;
            for table in SIM_TABLES {
                let sql = format!("SELECT COUNT(*) AS n FROM {table}");
                let found = db.query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql)).await?;
                rows += found.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0);
            }
            if rows == 0 {
                for table in SIM_TABLES {
                    m.drop_table(Table::drop().table(table).if_exists().to_owned()).await?;
                }
            }
        }
        m.create_table(
            Table::create()
                .table("journal_faults")
                .if_not_exists()
                .col(pk_auto("id"))
                .col(string_len("point", 16))
                .col(string_len("kind", 32))
                .col(string_len("rate", 32))
                .col(integer_null("remaining"))
                .col(integer("latency_ms"))
                .col(timestamp_with_time_zone("created_at"))
                .col(integer("fired"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("journal_faults").to_owned()).await
    }
}
