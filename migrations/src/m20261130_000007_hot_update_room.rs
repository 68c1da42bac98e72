//! Room for in-place updates (issue 4, R-AUT-3/4). On PostgreSQL an update that changes no indexed
//! column is a heap-only (HOT) update when the row's page has free space: no index entry is
//! written, and the write-ahead log carries one small record instead of one per index. The expiry
//! job updates three rows per authorization (the authorization, its payment line, its order), and
//! invoicing updates the same rows again; with pages packed full (fillfactor 100, the default)
//! none of those updates found room. Measured with `bench expiry` on 1,000,000 authorizations
//! laid out as the application writes them: about a quarter of the job's order and payment-line
//! updates become HOT (the job changes every row of a page in one batch, and a fifth of a page
//! holds about a quarter of its rows again); the run took 33.7–35.3 s with this migration and
//! 38.7 s without. The authorization's own update cannot be HOT: its status is in the predicate
//! of the expiry index.
//!
//! `fillfactor` only shapes pages written from now on (existing pages keep their rows until they
//! are rewritten, by `VACUUM FULL` or naturally), so the migration is instant on a large database.
//! SQLite has no such storage parameter (it rewrites a page on every change anyway); there the
//! migration does nothing and the schemas stay the same.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Tables whose rows are updated after insertion, several times over an order's life.
const TABLES: [&str; 3] = ["sales_orders", "payment_lines", "authorizations"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == DbBackend::Postgres {
            for t in TABLES {
                m.get_connection().execute_unprepared(&format!("ALTER TABLE {t} SET (fillfactor = 80)")).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == DbBackend::Postgres {
            for t in TABLES {
                m.get_connection().execute_unprepared(&format!("ALTER TABLE {t} RESET (fillfactor)")).await?;
            }
        }
        Ok(())
    }
}
