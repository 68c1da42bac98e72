//! Tokens and the authorization lifecycle (issue 4, R-TOK, R-AUT):
//! - `sales_orders.order_kind`: cash and carry or customer order (R-TOK-2/3);
//! - `payment_lines.token_kind` (none, nonrecurring, recurring) and `customer_card_id` (the card on
//!   file it was paid with) (R-TOK-1/5/6);
//! - `customer_cards`: recurring tokens saved on a customer (card on file, R-TOK-6/8); a deleted
//!   card keeps its row with `deleted_at`, so nothing is lost;
//! - `token_consents`: the evidence of a consent or acknowledgement (who, when, the text shown,
//!   the order) (R-TOK-3/4);
//! - `authorizations.payment_line_id` indexed: the expiry job asks per line whether another open
//!   authorization still covers it.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("sales_orders").add_column(string("order_kind").default("customer_order")).to_owned()).await?;
        m.alter_table(Table::alter().table("payment_lines").add_column(string("token_kind").default("recurring")).to_owned()).await?;
        m.alter_table(Table::alter().table("payment_lines").add_column(integer_null("customer_card_id")).to_owned()).await?;
        m.create_table(
            Table::create()
                .table("customer_cards")
                .col(pk_auto("id"))
                .col(integer("customer_id"))
                .col(integer("connector_id"))
                .col(string("token"))
                .col(string("card_type"))
                .col(string("last_four"))
                .col(string("holder"))
                .col(string("expiry"))
                .col(timestamp_with_time_zone("created_at"))
                .col(string("created_by"))
                .col(timestamp_with_time_zone_null("deleted_at"))
                .col(string_null("deleted_by"))
                .foreign_key(ForeignKey::create().from("customer_cards", "customer_id").to("customers", "id"))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("idx_customer_cards_customer_id").table("customer_cards").col("customer_id").to_owned()).await?;
        m.create_table(
            Table::create()
                .table("token_consents")
                .col(pk_auto("id"))
                .col(integer("order_id"))
                .col(integer_null("payment_line_id"))
                .col(string("kind"))
                .col(text("text_shown"))
                .col(string("given_by"))
                .col(timestamp_with_time_zone("given_at"))
                .foreign_key(ForeignKey::create().from("token_consents", "order_id").to("sales_orders", "id"))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("idx_token_consents_order_id").table("token_consents").col("order_id").to_owned()).await?;
        m.create_index(
            Index::create().name("idx_authorizations_payment_line_id").table("authorizations").col("payment_line_id").col("status").to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("idx_authorizations_payment_line_id").table("authorizations").to_owned()).await?;
        m.drop_table(Table::drop().table("token_consents").to_owned()).await?;
        m.drop_table(Table::drop().table("customer_cards").to_owned()).await?;
        m.alter_table(Table::alter().table("payment_lines").drop_column("customer_card_id").to_owned()).await?;
        m.alter_table(Table::alter().table("payment_lines").drop_column("token_kind").to_owned()).await?;
        m.alter_table(Table::alter().table("sales_orders").drop_column("order_kind").to_owned()).await
    }
}
