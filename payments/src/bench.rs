//! `paystage bench invoicing`: invoices N prepared two-line orders through all four stages with C
//! concurrent invoicings and L ms of processor latency (an injected latency fault), and measures
//! throughput, latency percentiles, database commits per invoice (PostgreSQL's own counter) and
//! peak memory. Preparation (placing and authorizing the orders) is not timed.
use crate::connector::{faults, CardEntry};
use crate::domain::payment_views::InvoiceOutcome;
use crate::domain::pipeline::ProcessStatus;
use crate::domain::views::ChannelKind;
use crate::entity::{connector_merchant_property as cmp, customer};
use crate::error::{ServiceError, ServiceResult};
use crate::service::orders::{self, CardForm, LineForm, OrderForm};
use crate::service::{audit, features, parameters, setup, Services};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Set, Statement};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct BenchOptions {
    pub orders: u32,
    pub concurrency: u32,
    pub latency_ms: u32,
}

/// The figures, printed as the command's last line.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub orders: u32,
    pub concurrency: u32,
    pub latency_ms: u32,
    pub invoices_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Transactions committed per invoice, from `pg_stat_database`; `null` on SQLite, which keeps
    /// no such counter.
    pub commits_per_invoice: Option<f64>,
    pub peak_rss_mb: f64,
    /// Invoices whose payment process did not complete (should be 0).
    pub not_completed: u32,
}

/// Peak resident memory of this process (VmHWM), in MiB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn commits(s: &Services) -> ServiceResult<Option<i64>> {
    if s.db.get_database_backend() != DbBackend::Postgres {
        return Ok(None);
    }
    s.db.execute_unprepared("SELECT pg_stat_clear_snapshot()").await?;
    let row = s
        .db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        ))
        .await?;
    Ok(row.and_then(|r| r.try_get::<i64>("", "xact_commit").ok()))
}

/// Reference data the benchmark needs (idempotent), with the pipeline features on.
async fn prepare_setup(s: &Services) -> ServiceResult<(i32, i32)> {
    features::ensure_rows(s).await?;
    let channel = setup::ensure_channel(&s.db, "BENCH", "Benchmark store", ChannelKind::PosStore).await?;
    let conn = setup::ensure_simulator_connector(&s.db).await?;
    if cmp::Entity::find_by_id((conn, channel)).one(&s.db).await?.is_none() {
        cmp::ActiveModel {
            connector_id: Set(conn),
            channel_id: Set(channel),
            enable_request_protection: Set(true),
            non_incremental_capture_methods: Set("interac".into()),
        }
        .insert(&s.db)
        .await?;
    }
    let cust = match customer::Entity::find().filter(customer::Column::Account.eq("BENCH")).one(&s.db).await? {
        Some(c) => c.id,
        None => customer::ActiveModel { account: Set("BENCH".into()), name: Set("Benchmark customer".into()), email: Set(None), ..Default::default() }
            .insert(&s.db)
            .await?
            .id,
    };
    let set = features::load(&s.db).await?;
    for f in [
        crate::Feature::ImproveCardsPaymentFlow,
        crate::Feature::UnifiedPaymentPostingJournalDefaults,
        crate::Feature::OmniChannelPayments,
        crate::Feature::DuplicatePaymentProtection,
        crate::Feature::RefundsOverMultipleCaptures,
        crate::Feature::ManualVoidOfExpiredLines,
        crate::Feature::OmniChannelCommerceOrderPayments,
        crate::Feature::IncrementalCapture,
    ] {
        if !set.is_enabled(f) {
            features::set(s, audit::SYSTEM, f, true).await?;
        }
    }
    let mut ar = std::collections::BTreeMap::new();
    ar.insert(crate::domain::parameters::keys::CARDS_PAYMENT_STATUS_MONITORING.to_string(), "yes".to_string());
    ar.insert(crate::domain::parameters::keys::CREDIT_CARD_AUTHORIZATION.to_string(), "yes".to_string());
    ar.insert(crate::domain::parameters::keys::DAYS_BEFORE_EXPIRED.to_string(), "7".to_string());
    parameters::save_group(s, audit::SYSTEM, crate::domain::parameters::ParameterGroup::AccountsReceivable, &ar).await?;
    Ok((cust, channel))
}

/// Places `n` two-line orders (one tent, two stoves), each authorized with its own visa token;
/// returns (order, [line ids]).
pub async fn prepare_orders(s: &Services, n: u32) -> ServiceResult<Vec<(i32, Vec<i32>)>> {
    prepare_orders_with(s, n, &[("Tent", "1", "150.00"), ("Stove", "2", "45.50")], |_| "4111111111111111").await
}

/// Places `n` orders with `lines` (item, quantity, unit price), the i-th paid with the test card
/// `card_for(i)`, each authorized through the connector; returns (order, [line ids]).
pub async fn prepare_orders_with(
    s: &Services,
    n: u32,
    lines: &[(&str, &str, &str)],
    card_for: impl Fn(u32) -> &'static str,
) -> ServiceResult<Vec<(i32, Vec<i32>)>> {
    let (cust, channel) = prepare_setup(s).await?;
    let today = s.now().date_naive().to_string();
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t = s
            .connector
            .tokenize(CardEntry { number: card_for(i).into(), expiry: "12/30".into(), holder: "Bench".into() })
            .await
            .map_err(|e| ServiceError::Conflict(e.to_string()))?;
        let form = OrderForm {
            customer_id: cust.to_string(),
            channel_id: channel.to_string(),
            currency: "USD".into(),
            tax_percent: "8.25".into(),
            charges: "0".into(),
            lines: lines
                .iter()
                .map(|(item, q, p)| LineForm { item: (*item).into(), quantity: (*q).into(), unit_price: (*p).into(), requested_ship_date: today.clone() })
                .collect(),
            card: CardForm { token: t.token, card_type: t.card_type, last_four: t.last_four, holder: t.holder, expiry: t.expiry },
        };
        let placed = orders::place(s, "bench", &form).await?;
        let lines = orders::detail(s, placed.order_id).await?.lines.into_iter().map(|l| l.id).collect();
        out.push((placed.order_id, lines));
    }
    Ok(out)
}

/// Invoices every prepared order in full, `concurrency` at a time.
pub async fn invoicing(s: &Services, opts: BenchOptions) -> ServiceResult<BenchReport> {
    if opts.orders == 0 || opts.concurrency == 0 {
        return Err(ServiceError::field("orders", "--orders and --concurrency must be at least 1"));
    }
    let prepared = prepare_orders(s, opts.orders).await?;
    faults::clear(&s.db).await?;
    if opts.latency_ms > 0 {
        faults::add(&s.db, s.now(), "any", "latency", "1", "", &opts.latency_ms.to_string()).await?;
    }
    let queue = Arc::new(tokio::sync::Mutex::new(prepared));
    let commits_before = commits(s).await?;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency {
        let (s, queue) = (s.clone(), queue.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies: Vec<Duration> = Vec::new();
            let mut not_completed = 0u32;
            loop {
                let next = queue.lock().await.pop();
                let Some((order, lines)) = next else { break };
                let q: Vec<(i32, i32)> = lines.iter().zip([1, 2]).map(|(l, q)| (*l, q)).collect();
                let t = Instant::now();
                let out: ServiceResult<InvoiceOutcome> = crate::pipeline::invoice(&s, "bench", order, &q).await;
                latencies.push(t.elapsed());
                if !matches!(out, Ok(ref o) if o.status == ProcessStatus::Completed) {
                    not_completed += 1;
                }
            }
            (latencies, not_completed)
        }));
    }
    let mut latencies = Vec::new();
    let mut not_completed = 0;
    for w in workers {
        let (l, n) = w.await.map_err(|e| ServiceError::Conflict(format!("a benchmark worker failed: {e}")))?;
        latencies.extend(l);
        not_completed += n;
    }
    let elapsed = started.elapsed().as_secs_f64();
    faults::clear(&s.db).await?;
    // pg_stat_database is updated when a backend reports its statistics: give it a moment.
    if commits_before.is_some() {
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    let commits_after = commits(s).await?;
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        (latencies[i].as_secs_f64() * 100_000.0).round() / 100.0
    };
    let round2 = |v: f64| (v * 100.0).round() / 100.0;
    Ok(BenchReport {
        orders: opts.orders,
        concurrency: opts.concurrency,
        latency_ms: opts.latency_ms,
        invoices_per_sec: round2(f64::from(opts.orders) / elapsed),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        commits_per_invoice: match (commits_before, commits_after) {
            (Some(a), Some(b)) => Some(round2((b - a) as f64 / f64::from(opts.orders))),
            _ => None,
        },
        peak_rss_mb: round2(peak_rss_mb()),
        not_completed,
    })
}
