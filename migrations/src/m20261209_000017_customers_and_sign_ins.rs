//! Customers set up through the pages (issue #43): a phone number and billing address, and when a
//! customer was deactivated (no new orders or cards for them; their orders and history stay);
//! each user's last sign-in, which the Users page shows; and each store's or channel's time zone
//! (an IANA name; UTC for the channels made before), in which its orders' times are shown.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const COLUMNS: [&str; 5] = ["phone", "billing_street", "billing_city", "billing_postal_code", "billing_country"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        for c in COLUMNS {
            m.alter_table(Table::alter().table("customers").add_column(text_null(c)).to_owned()).await?;
        }
        m.alter_table(Table::alter().table("customers").add_column(timestamp_with_time_zone_null("deactivated_at")).to_owned()).await?;
        m.alter_table(Table::alter().table("users").add_column(timestamp_with_time_zone_null("last_sign_in_at")).to_owned()).await?;
        m.alter_table(Table::alter().table("channels").add_column(string_len("time_zone", 64).default("UTC")).to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("channels").drop_column("time_zone").to_owned()).await?;
        m.alter_table(Table::alter().table("users").drop_column("last_sign_in_at").to_owned()).await?;
        m.alter_table(Table::alter().table("customers").drop_column("deactivated_at").to_owned()).await?;
        for c in COLUMNS.iter().rev() {
            m.alter_table(Table::alter().table("customers").drop_column(*c).to_owned()).await?;
        }
        Ok(())
    }
}
