//! Test support: a fresh database per test on SQLite and on PostgreSQL, and the [`db_test!`] macro
//! that runs one test body against both. PostgreSQL comes from `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); when it cannot be reached the test fails with a
//! message saying so: it is never skipped.
use crate::db;
use crate::service::clock::ManualClock;
use crate::service::Services;
use chrono::{TimeZone, Utc};
use sea_orm::{ConnectionTrait, Database};
use std::sync::Arc;

pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_string())
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

/// A migrated, empty database for one test, removed afterwards.
pub struct TestDb {
    pub services: Services,
    pub clock: ManualClock,
    pub url: String,
    pub backend: db::Backend,
    cleanup: Option<Cleanup>,
}

/// The fixed moment tests start at (a Monday, mid-morning UTC).
pub fn test_epoch() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 30, 0).single().expect("valid date")
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temporary folder");
        let url = format!("sqlite://{}/test.db", dir.path().display());
        Self::open(url, db::Backend::Sqlite, Cleanup::Sqlite(dir)).await
    }

    pub async fn postgres() -> TestDb {
        let admin_url = postgres_admin_url();
        let admin = Database::connect(admin_url.as_str()).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin_url} ({e}). The test suite runs every database test on \
                 PostgreSQL too: start it (see README, 'Running the tests') or set TEST_DATABASE_URL."
            )
        });
        let name = format!("paystage_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name} on {admin_url}: {e}"));
        admin.close().await.ok();
        let url = with_database(&admin_url, &name);
        Self::open(url, db::Backend::Postgres, Cleanup::Postgres { admin_url, name }).await
    }

    pub async fn of(backend: db::Backend) -> TestDb {
        match backend {
            db::Backend::Sqlite => Self::sqlite().await,
            db::Backend::Postgres => Self::postgres().await,
        }
    }

    async fn open(url: String, backend: db::Backend, cleanup: Cleanup) -> TestDb {
        let conn = db::connect_and_migrate(&url).await.unwrap_or_else(|e| panic!("cannot open test database {url}: {e}"));
        let clock = ManualClock::new(test_epoch());
        let services = Services::new(conn, Arc::new(clock.clone()));
        TestDb { services, clock, url, backend, cleanup: Some(cleanup) }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(Cleanup::Postgres { admin_url, name }) = self.cleanup.take() {
            // Dropped from a runtime that is shutting down: do it on a thread of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async move {
                    if let Ok(admin) = Database::connect(admin_url.as_str()).await {
                        let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                    }
                });
            })
            .join();
        }
    }
}

/// Runs the body once on a fresh SQLite database and once on a fresh PostgreSQL database:
/// `db_test!(name, |db| { ... })` makes the tests `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! db_test {
    ($name:ident, |$db:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                #[allow(unused_mut)]
                let mut $db = $crate::testing::TestDb::sqlite().await;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                #[allow(unused_mut)]
                let mut $db = $crate::testing::TestDb::postgres().await;
                $body
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("postgres://u@h/postgres?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
        assert_eq!(with_database("postgres://u@h:5432", "x"), "postgres://u@h:5432/x");
    }
}
