//! Posted records the database itself protects (issue #39, R-LED-1, R-CAP-5).
//! - Journals, journal lines and audit entries refuse UPDATE and DELETE: a correction is a new
//!   entry. Captures and refunds refuse DELETE and any change of what was moved (amount, tracking
//!   id, processor reference, what they are against); a capture's running `refunded_minor` stays
//!   writable.
//! - One authorization row per tracking id, as captures and refunds already have: a late answer
//!   and recovery can never both record the same processor authorization.
//!
//! The triggers are written per database (PL/pgSQL on PostgreSQL, `RAISE(ABORT)` on SQLite); both
//! refuse with a message that starts with `paystage: immutable`.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Tables whose rows never change once written.
const SEALED: [&str; 3] = ["journals", "journal_lines", "audit_log"];
/// Tables whose rows are never deleted and whose money columns never change.
const MOVED: [(&str, &[&str]); 2] = [
    ("captures", &["authorization_id", "order_id", "invoice_id", "amount_minor", "processor_reference", "tracking_id", "captured_at"]),
    ("refunds", &["capture_id", "order_id", "amount_minor", "processor_reference", "tracking_id", "refunded_at"]),
];

fn changed(cols: &[&str]) -> String {
    cols.iter().map(|c| format!("OLD.{c} IS NOT NEW.{c}")).collect::<Vec<_>>().join(" OR ")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        m.create_index(Index::create().name("idx_authorizations_tracking_id").table("authorizations").col("tracking_id").unique().to_owned()).await?;
        match m.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(
                    "CREATE FUNCTION paystage_immutable() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                     RAISE EXCEPTION 'paystage: immutable: % of a row of % is refused; post a correcting entry instead', TG_OP, TG_TABLE_NAME \
                     USING ERRCODE = 'integrity_constraint_violation'; END $$",
                )
                .await?;
                for t in SEALED {
                    db.execute_unprepared(&format!("CREATE TRIGGER {t}_immutable BEFORE UPDATE OR DELETE ON {t} FOR EACH ROW EXECUTE FUNCTION paystage_immutable()")).await?;
                }
                for (t, cols) in MOVED {
                    db.execute_unprepared(&format!("CREATE TRIGGER {t}_no_delete BEFORE DELETE ON {t} FOR EACH ROW EXECUTE FUNCTION paystage_immutable()")).await?;
                    let cond = changed(cols).replace(" IS NOT ", " IS DISTINCT FROM ");
                    db.execute_unprepared(&format!("CREATE TRIGGER {t}_immutable BEFORE UPDATE ON {t} FOR EACH ROW WHEN ({cond}) EXECUTE FUNCTION paystage_immutable()")).await?;
                }
            }
            _ => {
                for t in SEALED {
                    for op in ["UPDATE", "DELETE"] {
                        db.execute_unprepared(&format!(
                            "CREATE TRIGGER {t}_no_{op} BEFORE {op} ON {t} BEGIN SELECT RAISE(ABORT, 'paystage: immutable: {op} of a row of {t} is refused; post a correcting entry instead'); END"
                        ))
                        .await?;
                    }
                }
                for (t, cols) in MOVED {
                    db.execute_unprepared(&format!(
                        "CREATE TRIGGER {t}_no_DELETE BEFORE DELETE ON {t} BEGIN SELECT RAISE(ABORT, 'paystage: immutable: DELETE of a row of {t} is refused'); END"
                    ))
                    .await?;
                    db.execute_unprepared(&format!(
                        "CREATE TRIGGER {t}_no_UPDATE BEFORE UPDATE ON {t} WHEN {} BEGIN SELECT RAISE(ABORT, 'paystage: immutable: UPDATE of what a row of {t} moved is refused'); END",
                        changed(cols)
                    ))
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        match m.get_database_backend() {
            DbBackend::Postgres => {
                for t in SEALED {
                    db.execute_unprepared(&format!("DROP TRIGGER {t}_immutable ON {t}")).await?;
                }
                for (t, _) in MOVED {
                    db.execute_unprepared(&format!("DROP TRIGGER {t}_no_delete ON {t}")).await?;
                    db.execute_unprepared(&format!("DROP TRIGGER {t}_immutable ON {t}")).await?;
                }
                db.execute_unprepared("DROP FUNCTION paystage_immutable()").await?;
            }
            _ => {
                for t in SEALED.into_iter().chain(MOVED.iter().map(|(t, _)| *t)) {
                    for op in ["UPDATE", "DELETE"] {
                        db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {t}_no_{op}")).await?;
                    }
                }
            }
        }
        m.drop_index(Index::drop().name("idx_authorizations_tracking_id").table("authorizations").to_owned()).await?;
        Ok(())
    }
}
