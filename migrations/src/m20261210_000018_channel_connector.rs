//! A channel's own connector (issue #43, R-PAR-5): the connector a channel's orders take their
//! cards on and are paid through; none (every channel made before) means the default connector.
//! PostgreSQL keeps the reference with a foreign key; SQLite cannot add one to an existing table,
//! and Paystage never deletes a connector.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const FOREIGN_KEY: &str = "fk_channels_connector";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("channels").add_column(integer_null("connector_id")).to_owned()).await?;
        if m.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            m.create_foreign_key(
                ForeignKey::create().name(FOREIGN_KEY).from("channels", "connector_id").to("connectors", "id").on_delete(ForeignKeyAction::Restrict).to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            m.drop_foreign_key(ForeignKey::drop().name(FOREIGN_KEY).table("channels").to_owned()).await?;
        }
        m.alter_table(Table::alter().table("channels").drop_column("connector_id").to_owned()).await
    }
}
