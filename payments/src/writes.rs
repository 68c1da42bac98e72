//! Writes whose results are not read, sent to the database together (issue #3).
use sea_orm::sea_query::{InsertStatement, PostgresQueryBuilder, UpdateStatement, Value};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryTrait, Statement, StatementBuilder};

/// Statements whose results are not read (inserts without `RETURNING`, updates whose count is
/// only checked in the total, [`Writes::counted`]), kept in order and sent by [`Writes::run`] in one round trip instead of one each: on
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
    /// How many rows the statements affect when each does what it was added for ([`Writes::counted`]).
    counted: Option<u64>,
}

/// A statement [`Writes`] sends.
#[derive(Debug)]
pub enum Write {
    Insert(InsertStatement),
    Update(UpdateStatement),
    /// A PostgreSQL statement with its values already written in ([`Writes::push_rows`]).
    Inlined(String),
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
            Write::Inlined(sql) => Statement::from_string(*backend, sql.clone()),
        }
    }

    /// The statement with its values written in (PostgreSQL).
    fn inlined(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Write::Insert(s) => s.to_string(PostgresQueryBuilder).into(),
            Write::Update(s) => s.to_string(PostgresQueryBuilder).into(),
            Write::Inlined(sql) => sql.as_str().into(),
        }
    }
}

/// The longest message sent to PostgreSQL in one go: a batch longer than this goes in several
/// parts, and a multi-row insert longer than this in several statements ([`Writes::push_rows`]).
///
/// Measured (issue #3, `strace` of the invoicing bench at C=32 on loopback): a 19.5 KiB batch was
/// taken by the kernel as 16,406 bytes and then the rest, and PostgreSQL answered 46–49 ms later
/// instead of under 1 ms. A TCP socket's send buffer starts at `tcp_wmem`'s default, 16 KiB, so a
/// longer message goes in two writes; sqlx 0.9 does not set TCP_NODELAY, so Nagle's algorithm
/// holds the second until the first is acknowledged, and the server, waiting for the rest of the
/// message, delays that acknowledgement (40 ms on Linux). Parts that fit the buffer are written
/// at once; each costs one round trip (~0.3 ms here) instead.
pub const PG_MAX_SQL: usize = 12 * 1024;

impl Writes {
    pub fn new(backend: DbBackend) -> Writes {
        Writes { backend, statements: Vec::new(), counted: Some(0) }
    }

    /// Writes for the database `db` talks to.
    pub fn on(db: &impl ConnectionTrait) -> Writes {
        Writes::new(db.get_database_backend())
    }

    /// Writes for a transaction of pipeline bookkeeping, as [`crate::db::begin_bookkeeping`]
    /// begins one: on PostgreSQL the first statement sent says that the transaction's commit does
    /// not wait for the log flush, so that saying so costs no round trip of its own. The
    /// transaction is begun plainly, and these writes must be run in it before its commit.
    pub fn bookkeeping(db: &impl ConnectionTrait) -> Writes {
        let mut w = Writes::on(db);
        if w.backend == DbBackend::Postgres {
            w.push_counted(Write::Inlined(crate::db::ASYNCHRONOUS_COMMIT.to_string()), 0);
        }
        w
    }

    /// How many statements are waiting.
    pub fn len(&self) -> usize {
        self.statements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Adds a statement (`Entity::update_many()….into_query()`, say). How many rows it affects is
    /// not known: [`Writes::counted`] is `None` from now on.
    pub fn push(&mut self, statement: impl Into<Write>) {
        self.statements.push(statement.into());
        self.counted = None;
    }

    /// Adds a statement that affects `rows` rows when it does what it is meant to (an update of
    /// rows locked or known to be there, one whose condition guards against a change made
    /// meanwhile): what [`Writes::run`] returns then tells whether it did.
    pub fn push_counted(&mut self, statement: impl Into<Write>, rows: u64) {
        self.statements.push(statement.into());
        self.counted = self.counted.map(|n| n + rows);
    }

    /// How many rows the statements waiting affect in all when each does what it was added for
    /// (every insert its rows, every update added by [`Writes::push_counted`] its count), for the
    /// caller to compare with what [`Writes::run`] returns; `None` once a statement's count is not
    /// known ([`Writes::push`]).
    pub fn counted(&self) -> Option<u64> {
        self.counted
    }

    /// Adds the insert of `rows` (nothing if there are none): one statement on SQLite; on
    /// PostgreSQL as many as it takes for each, its values written in, to fit [`PG_MAX_SQL`]
    /// (unless a single row does not).
    pub fn push_rows<A>(&mut self, rows: impl IntoIterator<Item = A>)
    where
        A: ActiveModelTrait,
    {
        let rows: Vec<A> = rows.into_iter().collect();
        if rows.is_empty() {
            return;
        }
        self.counted = self.counted.map(|n| n + rows.len() as u64);
        if self.backend == DbBackend::Postgres {
            self.push_inlined_rows(rows);
        } else {
            self.statements.push(<A::Entity as EntityTrait>::insert_many(rows).into_query().into());
        }
    }

    /// [`Writes::push_rows`] on PostgreSQL: the insert of `rows`, or of each half if too long.
    fn push_inlined_rows<A: ActiveModelTrait>(&mut self, mut rows: Vec<A>) {
        let sql = <A::Entity as EntityTrait>::insert_many(rows.iter().cloned()).into_query().to_string(PostgresQueryBuilder);
        if sql.len() <= PG_MAX_SQL || rows.len() == 1 {
            self.statements.push(Write::Inlined(sql));
            return;
        }
        let second = rows.split_off(rows.len() / 2);
        self.push_inlined_rows(rows);
        self.push_inlined_rows(second);
    }

    /// The simple queries [`Writes::run`] sends on PostgreSQL, in order: the statements joined,
    /// each part at most [`PG_MAX_SQL`] long unless a single statement is longer.
    fn postgres_parts(&self) -> Vec<String> {
        let mut parts = Vec::new();
        let mut part = String::new();
        for statement in &self.statements {
            let sql = statement.inlined();
            if !part.is_empty() && part.len() + 2 + sql.len() > PG_MAX_SQL {
                parts.push(std::mem::take(&mut part));
            }
            if !part.is_empty() {
                part.push_str(";\n");
            }
            part.push_str(&sql);
        }
        if !part.is_empty() {
            parts.push(part);
        }
        parts
    }

    /// Runs the statements waiting, in order, in `db` (the caller's transaction). One statement
    /// alone goes as usual (prepared, its values bound). Returns how many rows they affected in
    /// all (each database reports every statement's count, and sqlx adds them up).
    pub async fn run(self, db: &impl ConnectionTrait) -> Result<u64, DbErr> {
        if self.backend != db.get_database_backend() {
            return Err(DbErr::Custom("writes built for one database were run on another".into()));
        }
        let backend = self.backend;
        match (self.statements.len(), backend) {
            (0, _) => Ok(0),
            (1, _) if !matches!(self.statements[0], Write::Inlined(_)) => db.execute_raw(self.statements[0].build(&backend)).await.map(|r| r.rows_affected()),
            (_, DbBackend::Postgres) => {
                let mut affected = 0;
                for part in self.postgres_parts() {
                    affected += unprepared(db, &part).await?;
                }
                Ok(affected)
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
                db.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await.map(|r| r.rows_affected())
            }
        }
    }
}

/// A simple query (several statements, no parameters), counted as one statement by the bench
/// (SeaORM's metric callback does not see unprepared statements).
async fn unprepared(db: &impl ConnectionTrait, sql: &str) -> Result<u64, DbErr> {
    let started = std::time::Instant::now();
    let result = db.execute_unprepared(sql).await;
    crate::observe::statement(sql, started.elapsed());
    result.map(|r| r.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::audit_log;
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, QueryFilter, Set};

    fn rows(n: usize, text_len: usize) -> Vec<audit_log::ActiveModel> {
        (0..n)
            .map(|i| audit_log::ActiveModel {
                at: Set(chrono::DateTime::UNIX_EPOCH),
                actor: Set(format!("{i:04}{}", "x".repeat(text_len))),
                action: Set("writes.parts".into()),
                subject: Set(format!("row {i}")),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn no_part_sent_to_postgresql_outgrows_the_socket_buffer() {
        // R-PIP-2 (issue #3): a group's rows (execution log lines, stage rows) go in statements
        // and parts short enough for the socket to take at once; every row is in them, in order.
        let mut w = Writes::new(DbBackend::Postgres);
        w.push_rows(rows(300, 200));
        w.push(audit_log::Entity::update_many().col_expr(audit_log::Column::After, Expr::value("done")).filter(audit_log::Column::Action.eq("writes.parts")).into_query());
        assert!(w.len() > 2, "300 rows of ~300 bytes are split into several inserts, got {}", w.len());
        let parts = w.postgres_parts();
        assert!(parts.len() > 1);
        for p in &parts {
            assert!(p.len() <= PG_MAX_SQL, "a part of {} bytes", p.len());
        }
        let all = parts.join(";\n");
        let mut at = 0;
        for i in 0..300 {
            let found = all[at..].find(&format!("'{i:04}x")).unwrap_or_else(|| panic!("row {i} missing or out of order"));
            at += found;
        }
        assert!(all[at..].contains("UPDATE"), "the update after the rows comes last");
        // A row longer than a part still goes, alone.
        let mut w = Writes::new(DbBackend::Postgres);
        w.push_rows(rows(3, PG_MAX_SQL + 10));
        assert_eq!(w.len(), 3);
        assert!(w.postgres_parts().iter().all(|p| p.matches("INSERT").count() == 1));
    }

    #[test]
    fn rows_go_in_one_statement_on_sqlite_and_none_for_no_rows() {
        // R-PIP-2 (issue #3): SQLite takes a group's rows in one statement; no rows, no statement.
        let mut w = Writes::new(DbBackend::Sqlite);
        w.push_rows(rows(300, 200));
        assert_eq!(w.len(), 1);
        let mut w = Writes::new(DbBackend::Postgres);
        w.push_rows(Vec::<audit_log::ActiveModel>::new());
        assert!(w.is_empty());
    }
}
