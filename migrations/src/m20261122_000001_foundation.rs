//! Foundation: users and roles, sessions, login throttling, the audit log, feature switches,
//! parameters, channels (stores and call center), connectors and their merchant properties,
//! pre-authorization durations, and customers.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("users")
                .col(pk_auto("id"))
                .col(string_uniq("username"))
                .col(string("display_name"))
                .col(string("password_hash"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("user_roles")
                .col(integer("user_id"))
                .col(string("role"))
                .primary_key(Index::create().col("user_id").col("role"))
                .foreign_key(
                    ForeignKey::create()
                        .from("user_roles", "user_id")
                        .to("users", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("sessions")
                .col(string("id").primary_key())
                .col(text("data"))
                .col(big_integer("expires_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("idx_sessions_expires_at").table("sessions").col("expires_at").to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("login_throttle")
                .col(string("username").primary_key())
                .col(integer("failures"))
                .col(timestamp_with_time_zone("window_started_at"))
                .col(timestamp_with_time_zone_null("locked_until"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("audit_log")
                .col(big_pk_auto("id"))
                .col(timestamp_with_time_zone("at"))
                .col(string("actor"))
                .col(string("action"))
                .col(string("subject"))
                .col(text_null("before"))
                .col(text_null("after"))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("idx_audit_log_at").table("audit_log").col("at").to_owned())
            .await?;
        m.create_table(
            Table::create()
                .table("features")
                .col(string("key").primary_key())
                .col(boolean("enabled"))
                .col(timestamp_with_time_zone("changed_at"))
                .col(string("changed_by"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("parameters")
                .col(string("key").primary_key())
                .col(text("value"))
                .col(timestamp_with_time_zone("changed_at"))
                .col(string("changed_by"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("channels")
                .col(pk_auto("id"))
                .col(string_uniq("code"))
                .col(string("name"))
                .col(string("kind"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("connectors")
                .col(pk_auto("id"))
                .col(string_uniq("code"))
                .col(string("name"))
                .col(string("kind"))
                .col(boolean("is_default"))
                .col(boolean("allow_multiple_partial_capture"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("connector_merchant_properties")
                .col(integer("connector_id"))
                .col(integer("channel_id"))
                .col(boolean("enable_request_protection"))
                .col(string("non_incremental_capture_methods"))
                .primary_key(Index::create().col("connector_id").col("channel_id"))
                .foreign_key(ForeignKey::create().from("connector_merchant_properties", "connector_id").to("connectors", "id"))
                .foreign_key(ForeignKey::create().from("connector_merchant_properties", "channel_id").to("channels", "id"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("pre_authorization_durations")
                .col(integer("channel_id"))
                .col(string("payment_type"))
                .col(integer("days"))
                .primary_key(Index::create().col("channel_id").col("payment_type"))
                .foreign_key(ForeignKey::create().from("pre_authorization_durations", "channel_id").to("channels", "id"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("customers")
                .col(pk_auto("id"))
                .col(string_uniq("account"))
                .col(string("name"))
                .col(string_null("email"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "customers",
            "pre_authorization_durations",
            "connector_merchant_properties",
            "connectors",
            "channels",
            "parameters",
            "features",
            "audit_log",
            "login_throttle",
            "sessions",
            "user_roles",
            "users",
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
