//! Property test (issue 3): random sequences of partial invoices, credit notes (refunds), injected
//! processor and journal faults, crashes (a server stopping after posting the invoice, its lease left behind), recoveries
//! and resumes keep the invariants of `payments::pipeline::invariants` after every step, and once
//! the faults are gone and every process is resumed, every process completes and per order
//! captured − refunded equals the posted card payment journals (R-LED-1, R-CAP-4/5, R-PIP-3/4).
//! Runs on SQLite (a fresh file per case); the real-process crash and chaos tests run on both.
use payments::domain::pipeline::ProcessStatus;
use payments::entity::{payment_process as pp, sales_order_line as sol};
use payments::testing::{enable_pipeline, fixture, OrderBuilder, TestDb};
use proptest::prelude::*;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

#[derive(Clone, Debug)]
enum Op {
    /// Invoice `qty` (clamped to what is open) of line `line` of order `order`.
    Invoice { order: usize, line: usize, qty: i32 },
    /// Credit (return) `qty` (clamped to what is invoiced and not yet credited): a refund.
    Credit { order: usize, line: usize, qty: i32 },
    /// Post the invoice, then "crash": the process stays running with this server's lease.
    InvoiceThenCrash { order: usize, line: usize, qty: i32 },
    /// The next request at `point` meets `kind` once.
    Fault { point: &'static str, kind: &'static str },
    /// Time passes beyond the lease; recovery takes over what a crashed server left.
    Recover,
    /// Resume the n-th incomplete process, if any.
    Resume { pick: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..2usize, 1..3i32).prop_map(|(order, line, qty)| Op::Invoice { order, line, qty }),
        2 => (0..3usize, 0..2usize, 1..3i32).prop_map(|(order, line, qty)| Op::Credit { order, line, qty }),
        1 => (0..3usize, 0..2usize, 1..3i32).prop_map(|(order, line, qty)| Op::InvoiceThenCrash { order, line, qty }),
        2 => prop_oneof![
            Just(("capture", "error_before")),
            Just(("capture", "timeout_after")),
            Just(("authorize", "error_before")),
            Just(("authorize", "timeout_after")),
            Just(("refund", "error_before")),
            Just(("refund", "timeout_after")),
            Just(("query", "error_before")),
            Just(("journal", "error_before")),
        ]
        .prop_map(|(point, kind)| Op::Fault { point, kind }),
        1 => Just(Op::Recover),
        2 => (0..4usize).prop_map(|pick| Op::Resume { pick }),
    ]
}

/// (line id, quantity) of the order's `line`-th line, `qty` clamped to what can be invoiced (or
/// with `credit`, credited); `None` when nothing can.
async fn clamp(db: &TestDb, order: i32, line: usize, qty: i32, credit: bool) -> Option<(i32, i32)> {
    let lines = sol::Entity::find().filter(sol::Column::OrderId.eq(order)).order_by_asc(sol::Column::Id).all(&db.services.db).await.unwrap();
    let l = lines.get(line % lines.len())?;
    let open = if credit { l.invoiced_quantity - l.credited_quantity } else { l.quantity - l.invoiced_quantity };
    (open > 0).then(|| (l.id, qty.min(open)))
}

async fn incomplete(db: &TestDb) -> Vec<pp::Model> {
    pp::Entity::find()
        .filter(pp::Column::Status.eq(ProcessStatus::Incomplete.code()))
        .order_by_asc(pp::Column::Id)
        .all(&db.services.db)
        .await
        .unwrap()
}

async fn recover(db: &TestDb) {
    db.clock.advance(db.services.lease + chrono::Duration::seconds(1));
    payments::pipeline::recover(&db.services, 100).await.unwrap();
}

async fn scenario(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let db = TestDb::sqlite().await;
    let s = &db.services;
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let orders = [
        OrderBuilder::new(&fx).line("Tent", 3, "150.00").line("Stove", 2, "45.50").tax("8.25").place(s).await.order_id,
        OrderBuilder::new(&fx).line("Lamp", 2, "19.99").line("Rope", 3, "7.35").card("6363680000000007").place(s).await.order_id,
        OrderBuilder::new(&fx).line("Boots", 1, "120.00").line("Socks", 4, "9.95").charges("12.50").place(s).await.order_id,
    ];
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Invoice { order, line, qty } => {
                if let Some(q) = clamp(&db, orders[*order], *line, *qty, false).await {
                    // A refusal (e.g. an earlier process still holds the authorization) is fine;
                    // what matters is that the records stay consistent.
                    let _ = payments::pipeline::invoice(s, "prop", orders[*order], &[q]).await;
                }
            }
            Op::Credit { order, line, qty } => {
                if let Some(q) = clamp(&db, orders[*order], *line, *qty, true).await {
                    let _ = payments::pipeline::credit(s, "prop", orders[*order], &[q]).await;
                }
            }
            Op::InvoiceThenCrash { order, line, qty } => {
                if let Some(q) = clamp(&db, orders[*order], *line, *qty, false).await {
                    let _ = payments::pipeline::post_invoice(s, "prop", orders[*order], &[q]).await;
                }
            }
            Op::Fault { point, kind } => {
                payments::connector::faults::add(&s.db, s.now(), point, kind, "1", "1", "0").await.unwrap();
            }
            Op::Recover => recover(&db).await,
            Op::Resume { pick } => {
                let open = incomplete(&db).await;
                if !open.is_empty() {
                    let _ = payments::pipeline::resume(s, "prop", open[pick % open.len()].id).await;
                }
            }
        }
        let r = payments::pipeline::invariants::check(&s.db).await.unwrap();
        prop_assert!(r.double_captures == 0 && r.lost_journals == 0 && r.invariant_violations == 0, "after step {step} ({op:?}): {r:#?}");
    }
    // The faults are cleared, recovery runs, and every incomplete process is resumed: all complete.
    payments::connector::faults::clear(&s.db).await.unwrap();
    for _ in 0..10 {
        recover(&db).await;
        let open = incomplete(&db).await;
        if open.is_empty() {
            break;
        }
        for p in open {
            let _ = payments::pipeline::resume(s, "prop", p.id).await;
        }
    }
    let r = payments::pipeline::invariants::check(&s.db).await.unwrap();
    prop_assert!(r.clean() && r.incomplete_processes == 0, "at the end: {r:#?}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_invoices_faults_crashes_and_resumes_keep_the_invariants(ops in proptest::collection::vec(op(), 1..24)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(scenario(ops))?;
    }
}
