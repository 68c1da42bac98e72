//! The simulator's own store: its ledger (card tokens, authorizations, captures, refunds, the
//! record of each tracking id), its injected faults and its merchant account, in a database of its
//! own: the `paystage sandbox` process's (`sandbox.db` in its `--data` folder), which Paystage
//! reaches only over HTTP. Paystage's tables and the processor's never meet in one transaction, as
//! with a real processor.
//!
//! Earlier versions ran this engine inside Paystage and kept its tables among Paystage's (`sim_*`,
//! migration 2) or beside them (`paystage.simulator.db`): [`import_earlier`] (`paystage sandbox
//! --import-from`) moves their rows here once and drops them there.
use super::entity::{sim_authorization as sa, sim_capture as sc, sim_fault as sf, sim_merchant as sm, sim_refund as sr, sim_token as st, sim_transaction as stx};
use sea_orm::sea_query::{Index, TableCreateStatement};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter, Schema, Statement, TransactionTrait};

/// The PostgreSQL schema the simulator keeps its tables in.
pub const POSTGRES_SCHEMA: &str = "paystage_simulator";

/// Connects to the store at `url` (the sandbox's `sandbox.db`) and creates what is missing.
pub async fn open(url: &str) -> Result<DatabaseConnection, DbErr> {
    // Its commits survive the crash of any Paystage process (the crash tests' and chaos's), not
    // of the machine: a real processor's durability is its own, and each request commits.
    let db = crate::db::connect_with(url, Some(POSTGRES_SCHEMA), crate::db::Durability::Process).await?;
    prepare(&db).await?;
    Ok(db)
}

/// The ledger's tables (tokens, authorizations, captures, refunds, tracking ids' records, faults),
/// as the entities define them: what a store holds, and what an earlier Paystage database held.
pub fn ledger_tables(backend: DbBackend) -> Vec<TableCreateStatement> {
    let schema = Schema::new(backend);
    vec![
        schema.create_table_from_entity(st::Entity),
        schema.create_table_from_entity(sa::Entity),
        schema.create_table_from_entity(sc::Entity),
        schema.create_table_from_entity(sr::Entity),
        schema.create_table_from_entity(stx::Entity),
        schema.create_table_from_entity(sf::Entity),
    ]
}

fn tables(backend: DbBackend) -> Vec<TableCreateStatement> {
    let mut all = ledger_tables(backend);
    all.push(Schema::new(backend).create_table_from_entity(sm::Entity));
    for t in &mut all {
        t.if_not_exists();
    }
    all
}

/// Creates the store's tables and index if they are missing, and its merchant account row.
pub async fn prepare(db: &DatabaseConnection) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    for t in tables(backend) {
        db.execute(&t).await?;
    }
    let index = Index::create()
        .if_not_exists()
        .name("idx_sim_captures_authorization_reference")
        .table(sc::Entity)
        .col(sc::Column::AuthorizationReference)
        .to_owned();
    db.execute(&index).await?;
    if sm::Entity::find().count(db).await? == 0 {
        let row = sm::ActiveModel { id: sea_orm::Set(1), allow_multiple_partial_capture: sea_orm::Set(true) };
        // Two servers starting at once may both try: the second finds the row there.
        if let Err(e) = sm::Entity::insert(row).exec(db).await {
            if sm::Entity::find().count(db).await? == 0 {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The tables a database from before the separation holds, in the order their rows are moved.
const EARLIER_TABLES: [&str; 6] = ["sim_tokens", "sim_authorizations", "sim_captures", "sim_refunds", "sim_transactions", "sim_faults"];

async fn has_table(db: &DatabaseConnection, name: &str) -> Result<bool, DbErr> {
    let (sql, backend) = match db.get_database_backend() {
        DbBackend::Postgres => (format!("SELECT 1 AS found FROM pg_tables WHERE tablename = '{name}' AND schemaname = current_schema()"), DbBackend::Postgres),
        backend => (format!("SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = '{name}'"), backend),
    };
    Ok(db.query_one_raw(Statement::from_string(backend, sql)).await?.is_some())
}

/// Whether `db` still holds an earlier in-process simulator's records (its `sim_*` tables, which
/// migration 14 drops only while they are empty), for [`import_earlier`] to move.
pub async fn holds_earlier(db: &DatabaseConnection) -> Result<bool, DbErr> {
    has_table(db, "sim_transactions").await
}

/// What [`import_earlier`] moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub rows: u64,
    pub tables_dropped: u64,
}

/// Moves the simulator's rows from Paystage's database, where they were kept before the
/// separation, into the store, then drops those tables there. The rows are copied only into a
/// store that holds no ledger yet, in one transaction of the store's. On PostgreSQL (one database,
/// two schemas) the old tables are dropped in that same transaction, under a lock that servers
/// starting together take one after the other; on SQLite (two files) after it commits, so a crash
/// between the two leaves the copy made and the next start only drops them. A store that already
/// holds records takes none, and the old tables are dropped only when every request they record
/// is in it (that crash); otherwise this refuses and changes nothing. Nothing is lost and nothing
/// is copied twice; with nothing to move, this reads a table name. `paystage sandbox --import-from`
/// runs it.
pub async fn import_earlier(paystage: &DatabaseConnection, store: &DatabaseConnection) -> Result<Imported, DbErr> {
    let mut done = Imported::default();
    if !has_table(paystage, "sim_transactions").await? {
        return Ok(done);
    }
    let txn = match store.get_database_backend() {
        DbBackend::Sqlite => {
            let immediate = sea_orm::TransactionOptions { sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate), ..Default::default() };
            store.begin_with_options(immediate).await?
        }
        _ => store.begin().await?,
    };
    let postgres = txn.get_database_backend() == DbBackend::Postgres;
    if postgres {
        // Servers starting together import one after the other; the later finds nothing left.
        txn.execute_unprepared("SELECT pg_advisory_xact_lock(4141)").await?;
        if !has_table(paystage, "sim_transactions").await? {
            return Ok(done);
        }
    }
    let empty = stx::Entity::find().count(&txn).await? == 0 && st::Entity::find().count(&txn).await? == 0;
    if !empty {
        // Copied by an earlier run that stopped before dropping them (SQLite), or records of
        // another processor's: only the first may be dropped.
        let theirs: Vec<String> = stx::Entity::find().all(paystage).await?.into_iter().map(|t| t.tracking_id).collect();
        let mut missing = 0usize;
        for chunk in theirs.chunks(500) {
            let here = stx::Entity::find().filter(stx::Column::TrackingId.is_in(chunk.iter().cloned())).count(&txn).await? as usize;
            missing += chunk.len() - here;
        }
        if missing > 0 {
            return Err(DbErr::Custom(format!(
                "the earlier processor records hold {missing} requests this store does not, and this store already has records of its own: nothing was moved or dropped (import them into an empty store)"
            )));
        }
    }
    if empty {
        done.rows += copy::<st::Entity>(paystage, &txn).await?;
        done.rows += copy::<sa::Entity>(paystage, &txn).await?;
        done.rows += copy::<sc::Entity>(paystage, &txn).await?;
        done.rows += copy::<sr::Entity>(paystage, &txn).await?;
        done.rows += copy::<stx::Entity>(paystage, &txn).await?;
        done.rows += copy::<sf::Entity>(paystage, &txn).await?;
    }
    if postgres {
        let schema = paystage.query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT current_schema() AS name")).await?;
        let schema: String = schema.map(|r| r.try_get("", "name")).transpose()?.unwrap_or_else(|| "public".into());
        for table in EARLIER_TABLES {
            txn.execute_unprepared(&format!("DROP TABLE IF EXISTS \"{schema}\".{table}")).await?;
            done.tables_dropped += 1;
        }
    }
    txn.commit().await?;
    for table in EARLIER_TABLES.into_iter().filter(|_| !postgres) {
        if has_table(paystage, table).await? {
            paystage.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}")).await?;
            done.tables_dropped += 1;
        }
    }
    if empty && done.rows > 0 && store.get_database_backend() == DbBackend::Postgres {
        // The faults' ids were copied: their sequence continues after them.
        store
            .execute_unprepared("SELECT setval(pg_get_serial_sequence('sim_faults', 'id'), GREATEST((SELECT MAX(id) FROM sim_faults), 1))")
            .await?;
    }
    Ok(done)
}

/// Copies every row of `E`'s table from Paystage's database into the store's transaction.
async fn copy<E>(paystage: &DatabaseConnection, txn: &sea_orm::DatabaseTransaction) -> Result<u64, DbErr>
where
    E: EntityTrait,
    E::Model: sea_orm::IntoActiveModel<E::ActiveModel>,
    E::ActiveModel: Send,
{
    use sea_orm::IntoActiveModel;
    let rows = E::find().all(paystage).await?;
    let n = rows.len() as u64;
    for chunk in rows.chunks(500) {
        let models: Vec<E::ActiveModel> = chunk.iter().cloned().map(|m| m.into_active_model()).collect();
        E::insert_many(models).exec_without_returning(txn).await?;
    }
    Ok(n)
}
