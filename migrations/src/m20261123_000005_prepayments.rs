//! Prepayments and deposits (issue 5, R-PRE-1..5):
//! - `sales_orders.prepayment` (R-PRE-3: the order is paid in advance), `deposit_minor` (the deposit
//!   asked for, R-PRE-2), `cancellation_charge_minor` and `cancelled_at` (R-PRE-4);
//! - `payment_lines.prepayment` (a deposit line) and `refunded_minor` (what was given back of a cash
//!   or customer-account line; card refunds stay in `refunds`);
//! - `invoices.prepaid_minor`: the part of an invoice settled otherwise than by the pipeline's card
//!   capture (deposits applied, cash at pickup; negative on a credit note refunded in cash);
//! - `journals.order_id` becomes optional and `customer_id` and `tender` are added: a customer
//!   account deposit (R-PRE-1) belongs to a customer, not to an order;
//! - `account_deposits`: the customer account deposits taken at POS.
//!
//! SQLite cannot drop NOT NULL from a column, so there `journals` is rebuilt (new table, copy,
//! drop, rename) with foreign keys deferred; every row and id is kept.
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn add(table: &str, col: &mut ColumnDef) -> TableAlterStatement {
    Table::alter().table(table.to_string()).add_column(col).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(add("sales_orders", boolean("prepayment").default(false))).await?;
        m.alter_table(add("sales_orders", big_integer("deposit_minor").default(0))).await?;
        m.alter_table(add("sales_orders", big_integer("cancellation_charge_minor").default(0))).await?;
        m.alter_table(add("sales_orders", &mut timestamp_with_time_zone_null("cancelled_at"))).await?;
        m.alter_table(add("payment_lines", boolean("prepayment").default(false))).await?;
        m.alter_table(add("payment_lines", big_integer("refunded_minor").default(0))).await?;
        m.alter_table(add("invoices", big_integer("prepaid_minor").default(0))).await?;
        let db = m.get_connection();
        match m.get_database_backend() {
            DbBackend::Sqlite => {
                // Works whether or not the migrator wrapped this in a transaction: deferred checks
                // inside one, foreign keys off outside one (a single connection, see payments::db).
                db.execute_unprepared("PRAGMA defer_foreign_keys = ON").await?;
                db.execute_unprepared("PRAGMA foreign_keys = OFF").await?;
                m.create_table(
                    Table::create()
                        .table("journals_rebuilt")
                        .col(pk_auto("id"))
                        .col(string_uniq("number"))
                        .col(string_uniq("source"))
                        .col(string("kind"))
                        .col(integer_null("order_id"))
                        .col(integer_null("invoice_id"))
                        .col(string_len("currency", 3))
                        .col(boolean("prepayment"))
                        .col(string("description"))
                        .col(timestamp_with_time_zone("posted_at"))
                        .col(integer_null("customer_id"))
                        .col(string_null("tender"))
                        .foreign_key(ForeignKey::create().from("journals_rebuilt", "order_id").to("sales_orders", "id"))
                        .to_owned(),
                )
                .await?;
                db.execute_unprepared(
                    "INSERT INTO journals_rebuilt (id, number, source, kind, order_id, invoice_id, currency, prepayment, description, posted_at, customer_id, tender) \
                     SELECT j.id, j.number, j.source, j.kind, j.order_id, j.invoice_id, j.currency, j.prepayment, j.description, j.posted_at, \
                            (SELECT o.customer_id FROM sales_orders o WHERE o.id = j.order_id), \
                            CASE WHEN j.kind = 'customer_payment' THEN 'card' ELSE NULL END \
                     FROM journals j",
                )
                .await?;
                db.execute_unprepared("DROP TABLE journals").await?;
                db.execute_unprepared("ALTER TABLE journals_rebuilt RENAME TO journals").await?;
                db.execute_unprepared("PRAGMA foreign_keys = ON").await?;
                m.create_index(Index::create().name("idx_journals_order_id").table("journals").col("order_id").to_owned()).await?;
            }
            _ => {
                db.execute_unprepared("ALTER TABLE journals ALTER COLUMN order_id DROP NOT NULL").await?;
                m.alter_table(add("journals", &mut integer_null("customer_id"))).await?;
                m.alter_table(add("journals", &mut string_null("tender"))).await?;
                db.execute_unprepared(
                    "UPDATE journals SET customer_id = (SELECT o.customer_id FROM sales_orders o WHERE o.id = journals.order_id), \
                     tender = CASE WHEN kind = 'customer_payment' THEN 'card' ELSE NULL END",
                )
                .await?;
            }
        }
        m.create_index(Index::create().name("idx_journals_customer_id").table("journals").col("customer_id").to_owned()).await?;
        m.create_index(Index::create().name("idx_journals_posted_at").table("journals").col("posted_at").to_owned()).await?;
        m.create_table(
            Table::create()
                .table("account_deposits")
                .col(pk_auto("id"))
                .col(string_uniq("number"))
                .col(integer("customer_id"))
                .col(integer("channel_id"))
                .col(string("tender"))
                .col(string_len("currency", 3))
                .col(big_integer("amount_minor"))
                .col(integer_null("journal_id"))
                .col(timestamp_with_time_zone("created_at"))
                .col(string("created_by"))
                .foreign_key(ForeignKey::create().from("account_deposits", "customer_id").to("customers", "id"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        // Journals without an order (customer account deposits) cannot go back into a table that
        // requires one; nothing is ever dropped from the ledger.
        Err(DbErr::Migration("the prepayments migration is not reversible: the ledger would lose account deposits".into()))
    }
}
