//! The payment pipeline (issue 3): sales orders and their lines, payment lines, authorizations with
//! their captures and refunds, invoices, balanced journals, invoice payment processes with stages
//! and execution logs, processor requests (the durable intent written before every processor call),
//! and the processor simulator's own ledger (separate `sim_` tables, its own transactions).
//! Money is integer minor units plus a currency code everywhere (R-MON-2).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn fk(from_table: &'static str, from_col: &'static str, to_table: &'static str) -> ForeignKeyCreateStatement {
    ForeignKey::create().from(from_table, from_col).to(to_table, "id").to_owned()
}

async fn index(m: &SchemaManager<'_>, table: &'static str, cols: &[&'static str], unique: bool) -> Result<(), DbErr> {
    let mut i = Index::create();
    i.name(format!("idx_{}_{}", table, cols.join("_"))).table(table);
    for c in cols {
        i.col(*c);
    }
    if unique {
        i.unique();
    }
    m.create_index(i.to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("sales_orders")
                .col(pk_auto("id"))
                .col(string_uniq("number"))
                .col(integer("customer_id"))
                .col(integer("channel_id"))
                .col(string_len("currency", 3))
                .col(string("tax_percent"))
                .col(big_integer("charges_minor"))
                .col(string("status"))
                .col(boolean("do_not_process"))
                .col(timestamp_with_time_zone("created_at"))
                .col(string("created_by"))
                .foreign_key(&mut fk("sales_orders", "customer_id", "customers"))
                .foreign_key(&mut fk("sales_orders", "channel_id", "channels"))
                .to_owned(),
        )
        .await?;
        index(m, "sales_orders", &["status"], false).await?;
        index(m, "sales_orders", &["customer_id"], false).await?;
        m.create_table(
            Table::create()
                .table("sales_order_lines")
                .col(pk_auto("id"))
                .col(integer("order_id"))
                .col(integer("line_no"))
                .col(string("item"))
                .col(integer("quantity"))
                .col(big_integer("unit_price_minor"))
                .col(date("requested_ship_date"))
                .col(integer("invoiced_quantity"))
                .foreign_key(&mut fk("sales_order_lines", "order_id", "sales_orders"))
                .to_owned(),
        )
        .await?;
        index(m, "sales_order_lines", &["order_id", "line_no"], true).await?;
        m.create_table(
            Table::create()
                .table("payment_lines")
                .col(pk_auto("id"))
                .col(integer("order_id"))
                .col(string("tender"))
                .col(big_integer("amount_minor"))
                .col(string("status"))
                .col(integer_null("connector_id"))
                .col(string_null("card_token"))
                .col(string_null("card_type"))
                .col(string_null("last_four"))
                .col(string_null("holder"))
                .col(string_null("expiry"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk("payment_lines", "order_id", "sales_orders"))
                .to_owned(),
        )
        .await?;
        index(m, "payment_lines", &["order_id"], false).await?;
        m.create_table(
            Table::create()
                .table("authorizations")
                .col(pk_auto("id"))
                .col(integer("order_id"))
                .col(integer("payment_line_id"))
                .col(integer("connector_id"))
                .col(string("processor_reference"))
                .col(string("tracking_id"))
                .col(string_len("currency", 3))
                .col(big_integer("amount_minor"))
                .col(big_integer("captured_minor"))
                .col(boolean("supports_multiple_captures"))
                .col(string("payment_method_variant"))
                .col(string("card_type"))
                .col(string("last_four"))
                .col(timestamp_with_time_zone("authorized_at"))
                .col(timestamp_with_time_zone("expires_at"))
                .col(string("status"))
                .col(integer_null("replaces_id"))
                .foreign_key(&mut fk("authorizations", "order_id", "sales_orders"))
                .foreign_key(&mut fk("authorizations", "payment_line_id", "payment_lines"))
                .to_owned(),
        )
        .await?;
        index(m, "authorizations", &["order_id"], false).await?;
        index(m, "authorizations", &["status", "expires_at"], false).await?;
        m.create_table(
            Table::create()
                .table("invoices")
                .col(pk_auto("id"))
                .col(string_uniq("number"))
                .col(integer("order_id"))
                .col(string_len("currency", 3))
                .col(big_integer("amount_minor"))
                .col(timestamp_with_time_zone("posted_at"))
                .col(string("posted_by"))
                .foreign_key(&mut fk("invoices", "order_id", "sales_orders"))
                .to_owned(),
        )
        .await?;
        index(m, "invoices", &["order_id"], false).await?;
        m.create_table(
            Table::create()
                .table("invoice_lines")
                .col(pk_auto("id"))
                .col(integer("invoice_id"))
                .col(integer("order_line_id"))
                .col(integer("quantity"))
                .col(big_integer("amount_minor"))
                .foreign_key(&mut fk("invoice_lines", "invoice_id", "invoices"))
                .foreign_key(&mut fk("invoice_lines", "order_line_id", "sales_order_lines"))
                .to_owned(),
        )
        .await?;
        index(m, "invoice_lines", &["invoice_id"], false).await?;
        m.create_table(
            Table::create()
                .table("captures")
                .col(pk_auto("id"))
                .col(integer("authorization_id"))
                .col(integer("order_id"))
                .col(integer_null("invoice_id"))
                .col(big_integer("amount_minor"))
                .col(big_integer("refunded_minor"))
                .col(string("processor_reference"))
                .col(string_uniq("tracking_id"))
                .col(timestamp_with_time_zone("captured_at"))
                .foreign_key(&mut fk("captures", "authorization_id", "authorizations"))
                .to_owned(),
        )
        .await?;
        index(m, "captures", &["order_id"], false).await?;
        m.create_table(
            Table::create()
                .table("refunds")
                .col(pk_auto("id"))
                .col(integer("capture_id"))
                .col(integer("order_id"))
                .col(big_integer("amount_minor"))
                .col(string("processor_reference"))
                .col(string_uniq("tracking_id"))
                .col(timestamp_with_time_zone("refunded_at"))
                .foreign_key(&mut fk("refunds", "capture_id", "captures"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("journals")
                .col(pk_auto("id"))
                .col(string_uniq("number"))
                .col(string_uniq("source"))
                .col(string("kind"))
                .col(integer("order_id"))
                .col(integer_null("invoice_id"))
                .col(string_len("currency", 3))
                .col(boolean("prepayment"))
                .col(string("description"))
                .col(timestamp_with_time_zone("posted_at"))
                .foreign_key(&mut fk("journals", "order_id", "sales_orders"))
                .to_owned(),
        )
        .await?;
        index(m, "journals", &["order_id"], false).await?;
        m.create_table(
            Table::create()
                .table("journal_lines")
                .col(pk_auto("id"))
                .col(integer("journal_id"))
                .col(string("account"))
                .col(big_integer("debit_minor"))
                .col(big_integer("credit_minor"))
                .foreign_key(&mut fk("journal_lines", "journal_id", "journals"))
                .to_owned(),
        )
        .await?;
        index(m, "journal_lines", &["journal_id"], false).await?;
        m.create_table(
            Table::create()
                .table("payment_processes")
                .col(pk_auto("id"))
                .col(integer_uniq("invoice_id"))
                .col(integer("order_id"))
                .col(boolean("monitored"))
                .col(string("status"))
                .col(string_null("capture_path"))
                .col(big_integer("captured_minor"))
                .col(string_null("last_error"))
                .col(string_null("lease_owner"))
                .col(timestamp_with_time_zone_null("lease_until"))
                .col(string_null("terminated_reason"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("payment_processes", "invoice_id", "invoices"))
                .to_owned(),
        )
        .await?;
        index(m, "payment_processes", &["status"], false).await?;
        m.create_table(
            Table::create()
                .table("process_stages")
                .col(integer("process_id"))
                .col(string("stage"))
                .col(string("status"))
                .col(integer("attempts"))
                .col(timestamp_with_time_zone_null("started_at"))
                .col(timestamp_with_time_zone_null("finished_at"))
                .col(string_null("error"))
                .primary_key(Index::create().col("process_id").col("stage"))
                .foreign_key(&mut fk("process_stages", "process_id", "payment_processes"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("stage_logs")
                .col(big_pk_auto("id"))
                .col(integer("process_id"))
                .col(string("stage"))
                .col(integer("attempt"))
                .col(timestamp_with_time_zone("at"))
                .col(text("message"))
                .foreign_key(&mut fk("stage_logs", "process_id", "payment_processes"))
                .to_owned(),
        )
        .await?;
        index(m, "stage_logs", &["process_id"], false).await?;
        m.create_table(
            Table::create()
                .table("processor_requests")
                .col(pk_auto("id"))
                .col(string_uniq("tracking_id"))
                .col(integer("connector_id"))
                .col(string("command"))
                .col(string_len("currency", 3))
                .col(big_integer("amount_minor"))
                .col(integer("order_id"))
                .col(integer_null("authorization_id"))
                .col(integer_null("process_id"))
                .col(string_null("stage"))
                .col(string("status"))
                .col(string_null("processor_reference"))
                .col(string_null("message"))
                .col(timestamp_with_time_zone("initiated_at"))
                .col(timestamp_with_time_zone_null("completed_at"))
                .to_owned(),
        )
        .await?;
        index(m, "processor_requests", &["process_id", "stage"], false).await?;
        index(m, "processor_requests", &["status"], false).await?;
        // The processor simulator's own ledger. Paystage never writes these tables; the simulator
        // never reads Paystage's.
        m.create_table(
            Table::create()
                .table("sim_tokens")
                .col(string("token").primary_key())
                .col(string("variant"))
                .col(string("card_type"))
                .col(string("last_four"))
                .col(string("holder"))
                .col(string("expiry"))
                .col(string("behaviour"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("sim_authorizations")
                .col(string("reference").primary_key())
                .col(string("token"))
                .col(string_len("currency", 3))
                .col(big_integer("amount_minor"))
                .col(big_integer("captured_minor"))
                .col(boolean("supports_multiple_captures"))
                .col(string("status"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("sim_captures")
                .col(string("reference").primary_key())
                .col(string("authorization_reference"))
                .col(big_integer("amount_minor"))
                .col(big_integer("refunded_minor"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        index(m, "sim_captures", &["authorization_reference"], false).await?;
        m.create_table(
            Table::create()
                .table("sim_refunds")
                .col(string("reference").primary_key())
                .col(string("capture_reference"))
                .col(big_integer("amount_minor"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("sim_transactions")
                .col(string("tracking_id").primary_key())
                .col(string("command"))
                .col(big_integer("amount_minor"))
                .col(string("outcome"))
                .col(string_null("reference"))
                .col(text("response"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("sim_faults")
                .col(pk_auto("id"))
                .col(string("point"))
                .col(string("kind"))
                .col(string("rate"))
                .col(integer_null("remaining"))
                .col(integer("latency_ms"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "sim_faults",
            "sim_transactions",
            "sim_refunds",
            "sim_captures",
            "sim_authorizations",
            "sim_tokens",
            "processor_requests",
            "stage_logs",
            "process_stages",
            "payment_processes",
            "journal_lines",
            "journals",
            "refunds",
            "captures",
            "invoice_lines",
            "invoices",
            "authorizations",
            "payment_lines",
            "sales_order_lines",
            "sales_orders",
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
