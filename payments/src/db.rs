//! Database connections for both supported backends, and migration at start-up.
use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Transactions committed through SQLite connections of this process (a commit hook on each
/// connection); PostgreSQL keeps its own counter in `pg_stat_database`.
static SQLITE_COMMITS: AtomicU64 = AtomicU64::new(0);

/// How many transactions this process has committed on SQLite so far.
pub fn sqlite_commits() -> u64 {
    SQLITE_COMMITS.load(Ordering::Relaxed)
}

/// Which backend a `DATABASE_URL` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// The file path of a `sqlite://` URL, if it names a file (not `:memory:`).
pub fn sqlite_file_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(":memory:") {
        None
    } else {
        Some(std::path::PathBuf::from(path))
    }
}

/// Connects to SQLite or PostgreSQL. A SQLite file (and its folder) is created if missing, opened in
/// WAL mode with foreign keys on, through a single connection: SQLite has one writer at a time, and
/// one connection makes that explicit instead of surfacing as `SQLITE_BUSY` under load.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    connect_with(url, None, Durability::Disk).await
}

/// What a commit has survived when it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The disk: power loss included (SQLite as `PAYSTAGE_SQLITE_SYNC` says, `full` by default;
    /// PostgreSQL as the server is configured). Paystage's own records.
    Disk,
    /// The crash of any client process, not of the machine (SQLite `synchronous=NORMAL` in WAL,
    /// PostgreSQL `synchronous_commit=off`): the processor simulator's store, which stands in for
    /// a remote processor whose durability is its own.
    Process,
}

/// [`connect`], with PostgreSQL's tables found and created in `schema` (created if missing) rather
/// than the user's default (SQLite has no schemas, and ignores it), and commits as durable as
/// `durability` says.
pub async fn connect_with(url: &str, schema: Option<&str>, durability: Durability) -> Result<DatabaseConnection, DbErr> {
    let backend = Backend::of_url(url)
        .ok_or_else(|| DbErr::Custom(format!("unsupported database URL {url:?}: use sqlite://… or postgres://…")))?;
    let mut opts = ConnectOptions::new(url.to_string());
    opts.sqlx_logging(false).acquire_timeout(Duration::from_secs(30));
    match backend {
        Backend::Sqlite => {
            if let Some(parent) = sqlite_file_path(url).as_deref().and_then(|p| p.parent()) {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| DbErr::Custom(format!("cannot create folder {}: {e}", parent.display())))?;
                }
            }
            let sync = match durability {
                Durability::Disk => sqlite_synchronous()?,
                Durability::Process => sea_orm::sqlx::sqlite::SqliteSynchronous::Normal,
            };
            // A local file has no server or network to drop the connection: no ping on checkout
            // (it cost a round trip to sqlx's worker thread before every statement outside a
            // transaction).
            opts.test_before_acquire(false);
            opts.max_connections(1).min_connections(1).map_sqlx_sqlite_opts(move |o| {
                o.create_if_missing(true)
                    .foreign_keys(true)
                    .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sync)
                    .busy_timeout(Duration::from_secs(10))
            });
            opts.map_sqlx_sqlite_pool_opts(|o| {
                o.after_connect(|conn, _meta| {
                    Box::pin(async move {
                        conn.lock_handle().await?.set_commit_hook(|| {
                            SQLITE_COMMITS.fetch_add(1, Ordering::Relaxed);
                            true
                        });
                        Ok(())
                    })
                })
            });
        }
        Backend::Postgres => {
            // Ping only a connection idle long enough for the server, a proxy or a firewall to
            // have dropped it; a busy connection goes straight to work (a ping on every checkout
            // was one extra round trip per statement run outside a transaction).
            opts.max_connections(16).min_connections(1).test_before_acquire_if_idle_for(Duration::from_secs(30));
            if let Some(schema) = schema {
                if !schema.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    return Err(DbErr::Custom(format!("{schema:?} is not a schema name Paystage uses")));
                }
                use sea_orm::ConnectionTrait;
                let first = Database::connect(url).await?;
                if let Err(e) = first.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).await {
                    // Two servers starting at once can both try; one of them fails, and the schema is there.
                    let there = format!("SELECT 1 AS there FROM pg_namespace WHERE nspname = '{schema}'");
                    if first.query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, there)).await?.is_none() {
                        return Err(e);
                    }
                }
                first.close().await?;
                opts.set_schema_search_path(schema);
            }
            if durability == Durability::Process {
                opts.map_sqlx_postgres_opts(|o| o.options([("synchronous_commit", "off")]));
            }
        }
    }
    Database::connect(opts).await
}

/// `PAYSTAGE_SQLITE_SYNC`: `full` (the default) makes every commit durable on disk before it
/// returns, power loss included; `normal` (WAL) keeps every commit across a crash of the process but
/// may lose the last ones on power loss or an operating-system crash, in exchange for far fewer
/// disk flushes.
fn sqlite_synchronous() -> Result<sea_orm::sqlx::sqlite::SqliteSynchronous, DbErr> {
    use sea_orm::sqlx::sqlite::SqliteSynchronous;
    match std::env::var("PAYSTAGE_SQLITE_SYNC").ok().as_deref().map(str::trim) {
        None | Some("") | Some("full") => Ok(SqliteSynchronous::Full),
        Some("normal") => Ok(SqliteSynchronous::Normal),
        Some(other) => Err(DbErr::Custom(format!("PAYSTAGE_SQLITE_SYNC must be full or normal, not {other:?}"))),
    }
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Connects and migrates: what start-up and `paystage migrate` do.
pub async fn connect_and_migrate(url: &str) -> Result<DatabaseConnection, DbErr> {
    let db = connect(url).await?;
    migrate(&db).await?;
    Ok(db)
}

/// What makes a PostgreSQL transaction's commit not wait for the log flush ([`begin_bookkeeping`]).
pub(crate) const ASYNCHRONOUS_COMMIT: &str = "SET LOCAL synchronous_commit TO off";

/// `SELECT … FOR UPDATE` on PostgreSQL. SQLite has a single writer (and one pooled connection),
/// so a write transaction there is already exclusive.
pub(crate) fn for_update<E: sea_orm::EntityTrait>(select: sea_orm::Select<E>, db: &impl sea_orm::ConnectionTrait) -> sea_orm::Select<E> {
    use sea_orm::{DbBackend, QuerySelect};
    match db.get_database_backend() {
        DbBackend::Postgres => select.lock_exclusive(),
        _ => select,
    }
}

/// Begins a transaction for pipeline bookkeeping whose loss in a database crash recovery redoes:
/// stage marks and logs, a processor request's recorded outcome (the request stays pending and
/// is asked about again), a payment journal (posted once per source). On PostgreSQL its commit
/// does not wait for the WAL flush (`synchronous_commit = off` for this transaction only). The
/// WAL is written in order, so such a commit can only be lost together with everything after
/// it; every commit that must be on disk before money moves, the intent before a processor call
/// above all, stays synchronous and flushes these with it. SQLite's durability is set per
/// connection (`PAYSTAGE_SQLITE_SYNC`). A transaction that sends its writes together can begin
/// plainly and say so in them instead ([`crate::writes::Writes::bookkeeping`]).
pub(crate) async fn begin_bookkeeping(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::{ConnectionTrait, DbBackend, TransactionTrait};
    let txn = db.begin().await?;
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(ASYNCHRONOUS_COMMIT).await?;
    }
    Ok(txn)
}
