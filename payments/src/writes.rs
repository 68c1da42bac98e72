//! Writes whose results are not read, sent to the database together (issue #3).
use sea_orm::sea_query::{InsertStatement, PostgresQueryBuilder, UpdateStatement, Value};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, StatementBuilder};

/// Statements whose results are not read (inserts without `RETURNING`, updates whose count is not
/// checked), kept in order and sent by [`Writes::run`] in one round trip instead of one each: on
/// SQLite each statement is a hand-off to sqlx's worker thread and back, on PostgreSQL a network
/// round trip, and both cost more than the statement itself (issue #3).
///
/// On SQLite the statements go joined into one `execute`, their values bound in order (sqlx's
/// SQLite driver prepares each statement of a string in turn and binds its `?`s from where the
/// previous one stopped). On PostgreSQL, where a prepared statement holds one command, they go as
/// one simple query with their values written in as literals by sea-query (strings quoted and
/// escaped). Either way they run in the caller's transaction, in order, and the first error fails
/// the run (the caller's transaction is then rolled back, as after any failed statement).
#[derive(Debug)]
pub struct Writes {
    backend: DbBackend,
    statements: Vec<Write>,
}

/// A statement [`Writes`] sends.
#[derive(Debug)]
pub enum Write {
    Insert(InsertStatement),
    Update(UpdateStatement),
}

impl From<InsertStatement> for Write {
    fn from(s: InsertStatement) -> Write {
        Write::Insert(s)
    }
}

impl From<UpdateStatement> for Write {
    fn from(s: UpdateStatement) -> Write {
        Write::Update(s)
    }
}

impl Write {
    fn build(&self, backend: &DbBackend) -> Statement {
        match self {
            Write::Insert(s) => StatementBuilder::build(s, backend),
            Write::Update(s) => StatementBuilder::build(s, backend),
        }
    }

    /// The statement with its values written in (PostgreSQL).
    fn inlined(&self) -> String {
        match self {
            Write::Insert(s) => s.to_string(PostgresQueryBuilder),
            Write::Update(s) => s.to_string(PostgresQueryBuilder),
        }
    }
}

/// A PostgreSQL batch longer than this goes in several parts. sqlx 0.9 does not set TCP_NODELAY,
/// and one large write was seen stalled some 40 ms by Nagle's algorithm against a delayed ACK
/// (see `pipeline::log_lines_of`).
const PG_MAX_SQL: usize = 24 * 1024;

impl Writes {
    pub fn new(backend: DbBackend) -> Writes {
        Writes { backend, statements: Vec::new() }
    }

    /// Writes for the database `db` talks to.
    pub fn on(db: &impl ConnectionTrait) -> Writes {
        Writes::new(db.get_database_backend())
    }

    /// How many statements are waiting.
    pub fn len(&self) -> usize {
        self.statements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Adds a statement (`Entity::update_many()….into_query()`, say).
    pub fn push(&mut self, statement: impl Into<Write>) {
        self.statements.push(statement.into());
    }

    /// Runs the statements waiting, in order, in `db` (the caller's transaction). One statement
    /// alone goes as usual (prepared, its values bound).
    pub async fn run(self, db: &impl ConnectionTrait) -> Result<(), DbErr> {
        if self.backend != db.get_database_backend() {
            return Err(DbErr::Custom("writes built for one database were run on another".into()));
        }
        let backend = self.backend;
        match (self.statements.len(), backend) {
            (0, _) => Ok(()),
            (1, _) => db.execute_raw(self.statements[0].build(&backend)).await.map(|_| ()),
            (_, DbBackend::Postgres) => {
                let mut part = String::new();
                for statement in &self.statements {
                    let sql = statement.inlined();
                    if !part.is_empty() && part.len() + sql.len() > PG_MAX_SQL {
                        unprepared(db, &std::mem::take(&mut part)).await?;
                    }
                    if !part.is_empty() {
                        part.push_str(";\n");
                    }
                    part.push_str(&sql);
                }
                unprepared(db, &part).await
            }
            _ => {
                let mut sql = String::new();
                let mut values: Vec<Value> = Vec::new();
                for statement in &self.statements {
                    let built = statement.build(&backend);
                    if !sql.is_empty() {
                        sql.push_str(";\n");
                    }
                    sql.push_str(&built.sql);
                    values.extend(built.values.map(|v| v.0).unwrap_or_default());
                }
                db.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await.map(|_| ())
            }
        }
    }
}

/// A simple query (several statements, no parameters), counted as one statement by the bench
/// (SeaORM's metric callback does not see unprepared statements).
async fn unprepared(db: &impl ConnectionTrait, sql: &str) -> Result<(), DbErr> {
    let started = std::time::Instant::now();
    let result = db.execute_unprepared(sql).await;
    crate::bench::unmetered(sql, started.elapsed());
    result.map(|_| ())
}
