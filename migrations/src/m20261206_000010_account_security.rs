//! Accounts and the web shop, hardened (issue #40).
//! - `users.disabled_at`: a disabled user cannot sign in and their sessions end at once.
//!   `users.sessions_valid_from`: sessions that began before it are over (a password reset or a
//!   disable sets it), checked on every request.
//! - Failed sign-ins are counted per account *and client address* (`sign_in_throttle`), so whoever
//!   guesses from one address locks only that address out of that account; each further lock
//!   lasts twice as long (`locks`). It replaces `login_throttle`, which locked the account for
//!   everyone.
//! - `customers.channel_id`: the channel a web-shop customer was opened on; one customer per
//!   e-mail per channel (unique index). Customers made by staff have none and are never matched by
//!   the shop. Existing web-shop customers (`WEB-…`) are assigned to the online store channel.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("users").add_column(timestamp_with_time_zone_null("disabled_at")).to_owned()).await?;
        m.alter_table(Table::alter().table("users").add_column(timestamp_with_time_zone_null("sessions_valid_from")).to_owned()).await?;
        m.drop_table(Table::drop().table("login_throttle").to_owned()).await?;
        m.create_table(
            Table::create()
                .table("sign_in_throttle")
                .col(string_len("username", 40))
                .col(string_len("client", 64))
                .col(integer("failures"))
                .col(timestamp_with_time_zone("window_started_at"))
                .col(timestamp_with_time_zone_null("locked_until"))
                .col(integer("locks"))
                .primary_key(Index::create().col("username").col("client"))
                .to_owned(),
        )
        .await?;
        m.alter_table(Table::alter().table("customers").add_column(integer_null("channel_id")).to_owned()).await?;
        let db = m.get_connection();
        db.execute_unprepared(
            "UPDATE customers SET channel_id = (SELECT MIN(id) FROM channels WHERE kind = 'online_store') \
             WHERE account LIKE 'WEB-%' AND email IS NOT NULL \
             AND id IN (SELECT MIN(id) FROM customers WHERE account LIKE 'WEB-%' AND email IS NOT NULL GROUP BY email)",
        )
        .await?;
        m.create_index(Index::create().name("idx_customers_channel_email").table("customers").col("channel_id").col("email").unique().to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("idx_customers_channel_email").table("customers").to_owned()).await?;
        m.alter_table(Table::alter().table("customers").drop_column("channel_id").to_owned()).await?;
        m.drop_table(Table::drop().table("sign_in_throttle").to_owned()).await?;
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
        m.alter_table(Table::alter().table("users").drop_column("sessions_valid_from").to_owned()).await?;
        m.alter_table(Table::alter().table("users").drop_column("disabled_at").to_owned()).await
    }
}
