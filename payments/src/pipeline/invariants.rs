//! The invariants of the payment records, checked by tests, the property test and `paystage chaos`:
//! captured ≤ authorized, refunded ≤ captured, every journal balances (R-LED-1), per order captured −
//! refunded = posted card payment journals once no process is unfinished, Paystage's records equal
//! what the processor reports holding (`Connector::ledger`, when it offers a report), and no
//! tracking id moves money twice.
use crate::domain::order::accounts;
use crate::domain::pipeline::ProcessStatus;
use crate::entity::{authorization as au, capture as cap, journal, journal_line as jl, payment_process as pp, processor_request as pr, refund};
use crate::error::ServiceResult;
use crate::runtime::Services;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct InvariantReport {
    /// Invoices captured more than once, plus processor captures Paystage has no record of.
    pub double_captures: u64,
    /// Processes that captured money, finished, and have no payment journal.
    pub lost_journals: u64,
    /// Processes still running (no server is finishing them).
    pub stuck_processes: u64,
    pub incomplete_processes: u64,
    pub invariant_violations: u64,
    /// One line per violation, for the person reading the report.
    pub details: Vec<String>,
}

impl InvariantReport {
    pub fn clean(&self) -> bool {
        self.double_captures == 0 && self.lost_journals == 0 && self.stuck_processes == 0 && self.invariant_violations == 0
    }
}

pub async fn check(s: &Services) -> ServiceResult<InvariantReport> {
    let db = &s.db;
    let mut r = InvariantReport::default();
    let auths = au::Entity::find().all(db).await?;
    let caps = cap::Entity::find().all(db).await?;
    let refunds = refund::Entity::find().all(db).await?;
    let journals = journal::Entity::find().all(db).await?;
    let lines = jl::Entity::find().all(db).await?;
    let processes = pp::Entity::find().all(db).await?;
    // What the processor reports; a connector without a report is compared with nothing.
    let reported = s.processor_ledger().await.map_err(|e| crate::error::ServiceError::internal(format!("the processor's ledger could not be read: {e}")))?;
    let compare = reported.is_some();
    let processor = reported.unwrap_or_default();
    // Requests sent whose outcome Paystage has not recorded yet (a timeout not yet resolved): the
    // processor may be ahead of Paystage's records by at most their amounts until they are.
    let unresolved = pr::Entity::find()
        .filter(pr::Column::Status.is_in([crate::domain::order::RequestStatus::Pending.code(), crate::domain::order::RequestStatus::Unknown.code()]))
        .all(db)
        .await?;
    let in_doubt = |command: crate::domain::order::Command, matches: &dyn Fn(&pr::Model) -> bool| -> i64 {
        unresolved.iter().filter(|q| q.command == command.code() && matches(q)).map(|q| q.amount_minor).sum()
    };
    let refund_requests = pr::Entity::find()
        .filter(pr::Column::Command.eq(crate::domain::order::Command::Refund.code()))
        .filter(pr::Column::Status.eq(crate::domain::order::RequestStatus::Succeeded.code()))
        .all(db)
        .await?;
    let violation = |r: &mut InvariantReport, msg: String| {
        r.invariant_violations += 1;
        r.details.push(msg);
    };

    for a in &auths {
        // A capture the processor reported failed moved nothing (its reversal brought the
        // authorization's total back down).
        let sum: i64 = caps.iter().filter(|c| c.authorization_id == a.id).map(cap::Model::moved_minor).sum();
        if a.captured_minor > a.amount_minor || a.captured_minor < 0 {
            violation(&mut r, format!("authorization {} captured {} of {}", a.id, a.captured_minor, a.amount_minor));
        }
        if sum != a.captured_minor {
            violation(&mut r, format!("authorization {} says {} captured, its captures sum to {sum}", a.id, a.captured_minor));
        }
        match processor.authorizations.get(&a.processor_reference) {
            _ if !compare => {}
            None => violation(&mut r, format!("authorization {} ({}) is unknown to the processor", a.id, a.processor_reference)),
            Some(&captured)
                if captured < a.captured_minor
                    || captured > a.captured_minor + in_doubt(crate::domain::order::Command::Capture, &|q| q.authorization_id == Some(a.id)) =>
            {
                violation(&mut r, format!("authorization {}: Paystage has {} captured, the processor {captured}", a.id, a.captured_minor))
            }
            _ => {}
        }
    }
    let mut per_invoice: BTreeMap<i32, u32> = BTreeMap::new();
    let known: BTreeSet<&str> = caps.iter().map(|c| c.processor_reference.as_str()).collect();
    for c in &caps {
        if let Some(inv) = c.invoice_id {
            *per_invoice.entry(inv).or_default() += 1;
        }
        if c.refunded_minor > c.amount_minor {
            violation(&mut r, format!("capture {} refunded {} of {}", c.id, c.refunded_minor, c.amount_minor));
        }
        let refunds_in_doubt = in_doubt(crate::domain::order::Command::Refund, &|q| q.capture_id == Some(c.id));
        if c.failed_at.is_some() {
            // Failed at the processor: it holds no such capture.
            if compare && processor.captures.contains_key(&c.processor_reference) {
                violation(&mut r, format!("capture {} failed, and the processor still holds it", c.id));
            }
        } else if compare
            && processor
                .captures
                .get(&c.processor_reference)
                .is_none_or(|&(amount, refunded)| amount != c.amount_minor || refunded < c.refunded_minor || refunded > c.refunded_minor + refunds_in_doubt)
        {
            violation(&mut r, format!("capture {} does not match the processor's ledger", c.id));
        }
        let refunded: i64 = refunds.iter().filter(|x| x.capture_id == c.id).map(refund::Model::moved_minor).sum();
        if refunded != c.refunded_minor {
            violation(&mut r, format!("capture {} says {} refunded, its refunds sum to {refunded}", c.id, c.refunded_minor));
        }
    }
    r.double_captures += per_invoice.values().filter(|n| **n > 1).count() as u64;
    let unknown = processor.captures.keys().filter(|k| !known.contains(k.as_str())).count() as u64;
    if unknown > 0 {
        let pending = processes.iter().any(|p| p.status == ProcessStatus::Running.code() || p.status == ProcessStatus::Incomplete.code());
        if !pending {
            r.double_captures += unknown;
            r.details.push(format!("{unknown} processor captures have no record in Paystage"));
        }
    }
    for x in &refunds {
        let matches = match processor.refunds.get(&x.processor_reference) {
            // Failed at the processor: it holds no such refund.
            found if x.failed_at.is_some() => found.is_none(),
            found => found == Some(&x.amount_minor),
        };
        if compare && !matches {
            violation(&mut r, format!("refund {} does not match the processor's ledger", x.id));
        }
    }
    let known_refunds: BTreeSet<&str> = refunds.iter().map(|x| x.processor_reference.as_str()).collect();
    let unknown_refunds = processor.refunds.keys().filter(|k| !known_refunds.contains(k.as_str())).count() as u64;
    let in_flight = processes.iter().any(|p| p.status == ProcessStatus::Running.code() || p.status == ProcessStatus::Incomplete.code());
    if unknown_refunds > 0 && !in_flight {
        violation(&mut r, format!("{unknown_refunds} processor refunds have no record in Paystage"));
    }
    for j in &journals {
        let (d, c) = lines.iter().filter(|l| l.journal_id == j.id).fold((0i64, 0i64), |(d, c), l| (d + l.debit_minor, c + l.credit_minor));
        if d != c || d == 0 {
            violation(&mut r, format!("journal {} does not balance: {d} / {c}", j.number));
        }
    }
    for p in &processes {
        match ProcessStatus::from_code(&p.status) {
            Some(ProcessStatus::Running) => r.stuck_processes += 1,
            Some(ProcessStatus::Incomplete) => r.incomplete_processes += 1,
            Some(ProcessStatus::Completed) => {
                let refunded: i64 = refund_requests.iter().filter(|q| q.process_id == Some(p.id)).map(|q| q.amount_minor).sum();
                let source = format!("payment:process:{}", p.id);
                if (p.captured_minor > 0 || refunded > 0) && !journals.iter().any(|j| j.source == source) {
                    r.lost_journals += 1;
                    r.details.push(format!("process {} captured {} / refunded {refunded} and has no payment journal", p.id, p.captured_minor));
                }
            }
            _ => {}
        }
    }
    // Per order, once every process has ended normally and no request waits for its outcome:
    // captured − refunded = what the order's journals put through Card clearing (payments,
    // deposits, refunds of returns and of cancelled deposits).
    let orders: BTreeSet<i32> = processes.iter().map(|p| p.order_id).chain(caps.iter().map(|c| c.order_id)).collect();
    let requests = pr::Entity::find()
        .filter(pr::Column::Status.is_in([crate::domain::order::RequestStatus::Pending.code(), crate::domain::order::RequestStatus::Unknown.code()]))
        .all(db)
        .await?;
    for order in orders {
        let unsettled = processes.iter().any(|p| p.order_id == order && p.status != ProcessStatus::Completed.code())
            || requests.iter().any(|q| q.order_id == order);
        if unsettled {
            continue;
        }
        let captured: i64 = caps.iter().filter(|c| c.order_id == order).map(cap::Model::moved_minor).sum();
        let refunded: i64 = refunds.iter().filter(|x| x.order_id == order).map(refund::Model::moved_minor).sum();
        let journaled: i64 = journals
            .iter()
            .filter(|j| j.order_id == Some(order))
            .flat_map(|j| lines.iter().filter(move |l| l.journal_id == j.id && l.account == accounts::CARD_CLEARING))
            .map(|l| l.debit_minor - l.credit_minor)
            .sum();
        if captured - refunded != journaled {
            violation(&mut r, format!("order {order}: captured {captured} − refunded {refunded} ≠ card clearing journals {journaled}"));
        }
    }
    Ok(r)
}
