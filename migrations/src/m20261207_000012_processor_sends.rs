//! What the HTTP connectors sent (issue #42, R-CAP-5). Adyen has no "look up a request by
//! reference": an unknown outcome is resolved by sending the very same request again with the
//! same idempotency key while the processor still remembers that key. The connector writes the
//! request here before it goes on the wire, so that recovery after a crash can repeat it exactly,
//! and knows when the key was first used (past the processor's key window a repeat is refused and
//! the request goes to manual review).
//!
//! And what processors tell Paystage on their own: `processor_notifications`, the webhook inbox.
//! Each item is stored (once per connector, event code and pspReference) before the processor is
//! told `[accepted]`, then processed in the background; nothing is dropped, unknown event codes
//! included.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("processor_sends")
                .col(string_len("idempotency_key", 64).primary_key())
                .col(string_len("connector", 64))
                .col(string_len("path", 512))
                .col(text("body"))
                .col(timestamp_with_time_zone("first_sent_at"))
                .col(integer("attempts"))
                .col(boolean("final_capture"))
                .col(string_len_null("psp_reference", 128))
                .col(string_len_null("payment_psp_reference", 128))
                .to_owned(),
        )
        .await?;
        // A refund names the capture; Adyen wants the payment it belongs to (found by this index).
        m.create_index(Index::create().name("idx_processor_sends_psp_reference").table("processor_sends").col("psp_reference").to_owned()).await?;
        m.create_table(
            Table::create()
                .table("processor_notifications")
                .col(pk_auto("id"))
                .col(string_len("connector", 64))
                .col(string_len("event_code", 64))
                .col(string_len("psp_reference", 128))
                .col(string_len_null("original_reference", 128))
                .col(string_len("merchant_reference", 256))
                .col(boolean("success"))
                .col(big_integer("amount_minor"))
                .col(string_len("currency", 3))
                .col(text_null("reason"))
                .col(text("item"))
                .col(timestamp_with_time_zone("received_at"))
                .col(string_len("state", 32))
                .col(integer("attempts"))
                .col(timestamp_with_time_zone_null("processed_at"))
                .col(text_null("note"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_processor_notifications_event")
                .table("processor_notifications")
                .col("connector")
                .col("event_code")
                .col("psp_reference")
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("idx_processor_notifications_state").table("processor_notifications").col("state").col("id").to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("processor_notifications").to_owned()).await?;
        m.drop_table(Table::drop().table("processor_sends").to_owned()).await
    }
}
