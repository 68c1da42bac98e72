//! The expiry job's index (issue 4, R-AUT-3/4): `(status, expires_at)` on authorizations is
//! replaced by a partial index on `expires_at` holding open authorizations only.
//! - It stays as small as the number of open authorizations, however long the history grows, so
//!   the job's "open and past expiry" scan never reads closed, captured or expired rows.
//! - When the job marks an authorization Expired, the new row version no longer satisfies the
//!   predicate and gets no entry in this index: one index insert fewer per expired row.
//!
//! Partial indexes are written the same way on SQLite and PostgreSQL.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("idx_authorizations_status_expires_at").table("authorizations").to_owned()).await?;
        m.get_connection()
            .execute_unprepared("CREATE INDEX idx_authorizations_open_expires_at ON authorizations (expires_at) WHERE status = 'open'")
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("idx_authorizations_open_expires_at").table("authorizations").to_owned()).await?;
        m.create_index(
            Index::create().name("idx_authorizations_status_expires_at").table("authorizations").col("status").col("expires_at").to_owned(),
        )
        .await?;
        Ok(())
    }
}
