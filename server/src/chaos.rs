//! Real server processes driven over HTTP, for the crash tests and `paystage chaos`: start the
//! `paystage` binary on a database, sign in, invoice and resume through the same server functions
//! the pages call, kill the process with SIGKILL, start it again, and check the invariants of the
//! payment records afterwards (`payments::pipeline::invariants`).
use anyhow::{anyhow, bail, Context};
use payments::domain::payment_views::InvoiceOutcome;
use payments::domain::pipeline::ProcessStatus;
use payments::entity::{payment_process as pp, sales_order as so, sales_order_line as sol};
use payments::service::bootstrap::{bootstrap, BootstrapOptions};
use payments::service::Services;
use rand_core::{OsRng, RngCore};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::RwLock;

/// How to start a server process.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// The `paystage` binary.
    pub exe: PathBuf,
    pub database_url: String,
    /// `PAYSTAGE_LEASE_SECONDS` and `PAYSTAGE_RECOVERY_SECONDS`: short, so that recovery after a kill
    /// happens within seconds.
    pub lease_seconds: u32,
    pub recovery_seconds: u32,
    /// `PAYSTAGE_CRASH_AT` (see `payments::crashpoint`).
    pub crash_at: Option<String>,
    /// Where the server's output goes (`<name>.log`); also its (empty) site root.
    pub work_dir: PathBuf,
    /// `PAYSTAGE_LOG`; `warn` when not set.
    pub log_filter: Option<String>,
    /// The processor over HTTP the server reaches (`PAYSTAGE_PROCESSOR_*`); none: no processor
    /// (every payment request refused as unavailable).
    pub processor: Option<ProcessorEnv>,
}

/// What a server process is told of its processor over HTTP.
#[derive(Clone, Debug)]
pub struct ProcessorEnv {
    /// The Checkout API's base URL (`http://127.0.0.1:P/checkout/v72`).
    pub url: String,
    pub api_key: String,
    pub merchant_account: String,
    /// The processor's hosted card page (`PAYSTAGE_PROCESSOR_CARD_PAGE`).
    pub card_page: Option<String>,
}

/// A running `paystage` server process.
pub struct ServerProcess {
    child: Child,
    pub base: String,
    pub log: PathBuf,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl ServerProcess {
    /// Starts the server and waits until it answers `/healthz` (start-up recovery has run by then).
    pub async fn start(spec: &ServerSpec, name: &str) -> anyhow::Result<ServerProcess> {
        let port = free_port()?;
        let log = spec.work_dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).with_context(|| format!("cannot write {}", log.display()))?;
        let mut cmd = Command::new(&spec.exe);
        cmd.env("DATABASE_URL", &spec.database_url)
            .env("PAYSTAGE_HOST", "127.0.0.1")
            .env("PAYSTAGE_PORT", port.to_string())
            .env("PAYSTAGE_SITE_ROOT", &spec.work_dir)
            .env("PAYSTAGE_LEASE_SECONDS", spec.lease_seconds.to_string())
            // The longest processor call that fits the lease (`payments::connector::timed`).
            .env("PAYSTAGE_CONNECTOR_TIMEOUT_MS", (u64::from(spec.lease_seconds) * 1000 / 3 - 10).max(100).to_string())
            .env("PAYSTAGE_RECOVERY_SECONDS", spec.recovery_seconds.to_string())
            .env("PAYSTAGE_DEMO", "false")
            .env("PAYSTAGE_LOG", spec.log_filter.as_deref().unwrap_or("warn"))
            .env_remove("PAYSTAGE_CRASH_AT")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true);
        if let Some(points) = &spec.crash_at {
            cmd.env("PAYSTAGE_CRASH_AT", points);
        }
        if let Some(p) = &spec.processor {
            cmd.env("PAYSTAGE_PROCESSOR_URL", &p.url).env("PAYSTAGE_PROCESSOR_API_KEY", &p.api_key).env("PAYSTAGE_PROCESSOR_MERCHANT_ACCOUNT", &p.merchant_account);
            if let Some(page) = &p.card_page {
                cmd.env("PAYSTAGE_PROCESSOR_CARD_PAGE", page);
            }
        }
        let mut child = cmd.spawn().with_context(|| format!("cannot start {}", spec.exe.display()))?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("the server exited during start-up ({status}); see {}", log.display());
            }
            if let Ok(res) = http.get(format!("{base}/healthz")).send().await {
                if res.status().is_success() {
                    return Ok(ServerProcess { child, base, log });
                }
            }
            if started.elapsed() > Duration::from_secs(120) {
                let _ = child.start_kill();
                bail!("the server did not answer within 120 s; see {}", log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process with SIGKILL and waits for it to end.
    pub async fn kill(&mut self) -> std::io::Result<ExitStatus> {
        self.child.start_kill()?;
        self.child.wait().await
    }

    /// Waits up to `timeout` for the process to end by itself (e.g. at a crash point).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait()).await.ok().and_then(Result::ok)
    }
}

/// A running `paystage sandbox` process: the processor chaos's servers reach over HTTP, killed
/// with SIGKILL and started again on its store like the servers.
pub struct SandboxProcess {
    child: Child,
    exe: PathBuf,
    dir: PathBuf,
    port: u16,
    api_key: String,
    log: PathBuf,
}

/// The merchant account of chaos's sandbox.
const CHAOS_MERCHANT: &str = "PaystageChaos";

impl SandboxProcess {
    /// Starts the sandbox with its store in `dir` on a free port and waits until it answers.
    pub async fn start(exe: &std::path::Path, dir: &std::path::Path, log: &std::path::Path) -> anyhow::Result<SandboxProcess> {
        let mut key = [0u8; 16];
        OsRng.fill_bytes(&mut key);
        let api_key: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let child = Self::spawn(exe, dir, free_port()?, &api_key, log)?;
        let port = child.1;
        let mut sandbox = SandboxProcess { child: child.0, exe: exe.to_path_buf(), dir: dir.to_path_buf(), port, api_key, log: log.to_path_buf() };
        sandbox.wait_ready().await?;
        Ok(sandbox)
    }

    fn spawn(exe: &std::path::Path, dir: &std::path::Path, port: u16, api_key: &str, log: &std::path::Path) -> anyhow::Result<(Child, u16)> {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).with_context(|| format!("cannot write {}", log.display()))?;
        let mut cmd = Command::new(exe);
        cmd.args(["sandbox", "--port", &port.to_string(), "--merchant-account", CHAOS_MERCHANT, "--data"])
            .arg(dir)
            .env("PAYSTAGE_SANDBOX_API_KEY", api_key)
            .env("PAYSTAGE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true);
        // Not on the CPU this process is pinned to, if it is (`runtime::Plan`, the bench on
        // SQLite): a child inherits its parent's affinity, and the processor would otherwise
        // share Paystage's one CPU while the others idle.
        if let Some(others) = crate::runtime::cpus_beside_this_process() {
            cmd.env("PAYSTAGE_CPUS", others.iter().map(usize::to_string).collect::<Vec<_>>().join(","));
        }
        let child = cmd.spawn().with_context(|| format!("cannot start {} sandbox", exe.display()))?;
        Ok((child, port))
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the sandbox exited during start-up ({status}); see {}", self.log.display());
            }
            if http.get(format!("http://127.0.0.1:{}/healthz", self.port)).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the sandbox did not answer within 60 s; see {}", self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the sandbox with SIGKILL and starts it again on the same store and port.
    pub async fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        self.child = Self::spawn(&self.exe, &self.dir, self.port, &self.api_key, &self.log)?.0;
        self.wait_ready().await
    }

    /// What a server is told to reach this sandbox.
    pub fn env(&self) -> ProcessorEnv {
        ProcessorEnv {
            url: format!("http://127.0.0.1:{}/checkout/{}", self.port, payments::connector::adyen::wire::API_VERSION),
            api_key: self.api_key.clone(),
            merchant_account: CHAOS_MERCHANT.into(),
            card_page: Some(format!("http://127.0.0.1:{}/hpp/cards", self.port)),
        }
    }

    pub fn store_url(&self) -> String {
        format!("sqlite://{}/sandbox.db?mode=rwc", self.dir.display())
    }

    /// The `adyen` connector's settings for this sandbox.
    pub fn settings(&self) -> payments::connector::adyen::AdyenSettings {
        let env = self.env();
        payments::connector::adyen::AdyenSettings {
            code: "sandbox".into(),
            endpoint: env.url,
            api_key: env.api_key,
            merchant_account: env.merchant_account,
            allow_multiple_partial_capture: true,
            non_incremental_variants: vec!["interac".into()],
            key_window: chrono::Duration::days(payments::connector::adyen::ADYEN_KEY_WINDOW_DAYS),
            timeout: payments::connector::timed::DEFAULT_TIMEOUT,
            card_page: env.card_page,
        }
    }
}

/// Why a call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No HTTP answer: the server is gone (killed) or never received the request.
    #[error("no answer from the server: {0}")]
    Connection(String),
    /// The server answered with an error.
    #[error("HTTP {status}: {body}")]
    Refused { status: u16, body: String },
}

/// A signed-in user of one server process, calling the server functions the pages call.
#[derive(Clone)]
pub struct Session {
    http: reqwest::Client,
    pub base: String,
}

impl Session {
    pub async fn sign_in(base: &str, username: &str, password: &str) -> anyhow::Result<Session> {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(120))
            .build()?;
        let res = http
            .post(format!("{base}/api/login"))
            .form(&[("username", username), ("password", password), ("next", "/")])
            .send()
            .await?;
        let cookie = res.headers().get_all(reqwest::header::SET_COOKIE).iter().any(|v| v.to_str().is_ok_and(|v| v.starts_with("paystage_session=")));
        if !(res.status().is_success() || res.status().is_redirection()) || !cookie {
            bail!("sign-in of {username} at {base} failed: HTTP {}", res.status());
        }
        Ok(Session { http, base: base.to_string() })
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, endpoint: &str, body: String) -> Result<T, CallError> {
        let res = self
            .http
            .post(format!("{}/api/{endpoint}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| CallError::Connection(e.to_string()))?;
        let status = res.status();
        let text = res.text().await.map_err(|e| CallError::Connection(e.to_string()))?;
        if !status.is_success() {
            return Err(CallError::Refused { status: status.as_u16(), body: text });
        }
        serde_json::from_str(&text).map_err(|e| CallError::Refused { status: status.as_u16(), body: format!("unreadable answer ({e}): {text}") })
    }

    /// Invoices `quantities` (order line id, quantity) of an order, as the order page's Invoice does.
    pub async fn invoice(&self, order_id: i32, quantities: &[(i32, i32)]) -> Result<InvoiceOutcome, CallError> {
        let mut body = format!("order_id={order_id}");
        for (line, q) in quantities {
            body.push_str(&format!("&quantities[{line}]={q}"));
        }
        self.call("invoice_order", body).await
    }

    /// Resume on the Incomplete cards payment page.
    pub async fn resume(&self, process_id: i32) -> Result<InvoiceOutcome, CallError> {
        self.call("resume_payment", format!("process_id={process_id}")).await
    }
}

/// Users and reference data a driven server needs: the demo accounts (with `password`) and the
/// pipeline features and parameters on.
pub async fn prepare_database(s: &Services, password: &str) -> anyhow::Result<()> {
    bootstrap(s, &BootstrapOptions { demo: true, admin_password: None, demo_password: Some(password.to_string()), demo_orders: false })
        .await
        .map_err(|e| anyhow!("first-start accounts: {e}"))?;
    Ok(())
}

/// `paystage chaos` options.
#[derive(Clone, Debug)]
pub struct ChaosOptions {
    pub database: String,
    pub orders: u32,
    pub kills: u32,
    /// Probability that a processor request (or a journal posting) meets an injected fault.
    pub fault_rate: f64,
    pub concurrency: u32,
    pub exe: PathBuf,
    pub work_dir: PathBuf,
}

/// The last line `paystage chaos` prints.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ChaosReport {
    pub orders: u32,
    pub kills: u32,
    pub faults: i64,
    pub double_captures: u64,
    pub lost_journals: u64,
    pub stuck_processes: u64,
    pub invariant_violations: u64,
}

impl ChaosReport {
    pub fn clean(&self) -> bool {
        self.double_captures == 0 && self.lost_journals == 0 && self.stuck_processes == 0 && self.invariant_violations == 0
    }
}

/// Lines of each chaos order (item, quantity, unit price) and the cumulative quantities invoiced
/// after each round: three partial invoices per order.
const CHAOS_LINES: [(&str, &str, &str); 2] = [("Tent", "3", "150.00"), ("Stove", "2", "45.50")];
const ROUNDS: [[i32; 2]; 3] = [[1, 0], [2, 1], [3, 2]];

/// The server the workers talk to, replaced after every kill.
struct Current {
    session: Option<Session>,
}

struct Shared {
    services: Services,
    current: RwLock<Current>,
    attempts: AtomicU64,
    notes: std::sync::Mutex<Vec<String>>,
}

impl Shared {
    /// The current server's session; waits while a killed server is being restarted.
    async fn session(&self) -> anyhow::Result<Session> {
        let started = Instant::now();
        loop {
            if let Some(s) = &self.current.read().await.session {
                return Ok(s.clone());
            }
            if started.elapsed() > Duration::from_secs(180) {
                bail!("no server came back within 180 s after a kill");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn note(&self, message: String) {
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        if notes.len() < 50 {
            notes.push(message);
        }
    }
}

async fn unfinished(s: &Services, order_id: i32) -> anyhow::Result<Vec<pp::Model>> {
    Ok(pp::Entity::find()
        .filter(pp::Column::OrderId.eq(order_id))
        .filter(pp::Column::Status.is_in([ProcessStatus::Running.code(), ProcessStatus::Incomplete.code()]))
        .order_by_asc(pp::Column::Id)
        .all(&s.db)
        .await?)
}

/// Brings one order to the round's cumulative quantities, as a finance user would: invoice what is
/// left, resume what is incomplete, wait for what a killed server left running (recovery finishes
/// it), and after a lost answer look at the order again before invoicing anything.
async fn drive_order(shared: &Shared, order_id: i32, lines: &[i32], target: [i32; 2]) -> anyhow::Result<()> {
    let s = &shared.services;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(600) {
        let session = shared.session().await?;
        let open = unfinished(s, order_id).await?;
        if let Some(p) = open.first() {
            if p.status == ProcessStatus::Incomplete.code() {
                shared.attempts.fetch_add(1, Ordering::Relaxed);
                match session.resume(p.id).await {
                    Ok(_) | Err(CallError::Connection(_)) => {}
                    Err(CallError::Refused { body, .. }) => shared.note(format!("resume of process {}: {body}", p.id)),
                }
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        }
        let current = sol::Entity::find().filter(sol::Column::OrderId.eq(order_id)).order_by_asc(sol::Column::Id).all(&s.db).await?;
        let wanted: Vec<(i32, i32)> = lines
            .iter()
            .zip(target)
            .filter_map(|(id, t)| current.iter().find(|l| l.id == *id).map(|l| (*id, t - l.invoiced_quantity)))
            .filter(|(_, q)| *q > 0)
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        shared.attempts.fetch_add(1, Ordering::Relaxed);
        match session.invoice(order_id, &wanted).await {
            Ok(_) => {}
            Err(CallError::Connection(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(CallError::Refused { body, .. }) => {
                shared.note(format!("invoice of order {order_id}: {body}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    bail!("order {order_id} did not reach its round's quantities within 10 minutes")
}

fn random_below(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        OsRng.next_u64() % n
    }
}

/// Runs the chaos test: prepares N orders, then invoices them in three partial rounds through a
/// real server process reaching a sandbox process over HTTP, while killing the server and the
/// sandbox in turn K times at random moments and injecting processor faults at rate F; finally
/// restarts, recovers, resumes what is incomplete and checks every invariant.
/// The lease of chaos's servers: short, so recovery takes over killed servers' processes quickly.
const CHAOS_LEASE_SECONDS: u32 = 1;
/// How long a slow processor answer takes in chaos: longer than the lease.
const SLOW_ANSWER_SECONDS: u32 = 2 * CHAOS_LEASE_SECONDS;

pub async fn run(opts: &ChaosOptions) -> anyhow::Result<(ChaosReport, Vec<String>)> {
    if opts.orders == 0 || opts.concurrency == 0 {
        bail!("--orders and --concurrency must be at least 1");
    }
    if !(0.0..=1.0).contains(&opts.fault_rate) {
        bail!("--fault-rate must be from 0 to 1");
    }
    std::fs::create_dir_all(&opts.work_dir)?;
    // The processor: a sandbox process of its own (killed too), its store in the work folder.
    let sandbox_dir = opts.work_dir.join("sandbox");
    let mut sandbox = SandboxProcess::start(&opts.exe, &sandbox_dir, &opts.work_dir.join("chaos-sandbox.log")).await?;
    let clock: payments::clock::SharedClock = Arc::new(payments::service::clock::SystemClock);
    let engine_store = payments::connector::simulator::store::open(&sandbox.store_url()).await?;
    let engine = Arc::new(payments::connector::simulator::ProcessorSimulator::new(engine_store, clock.clone()));
    let mut services = Services::connect_over_http(&opts.database, sandbox.settings(), clock).await.map_err(|e| anyhow!("{}: {e}", opts.database))?;
    // Chaos started this sandbox: it reads the sandbox's books to check them against Paystage's.
    services.processor_store = Some(engine);
    if so::Entity::find().count(&services.db).await? > 0 {
        bail!("{} already has sales orders; run chaos on an empty database", opts.database);
    }
    let password = payments::service::access::generate_password();
    prepare_database(&services, &password).await?;
    eprintln!("chaos: placing {} orders", opts.orders);
    // Every fourth order is paid with an Interac card, which never supports multiple captures:
    // those take the legacy path (capture, then a new authorization for the balance).
    let prepared = crate::bench::prepare_orders_with(&services, opts.orders, &CHAOS_LINES, |i| {
        if i % 4 == 3 {
            "6363680000000007"
        } else {
            "4111111111111111"
        }
    })
    .await
    .map_err(|e| anyhow!("placing the orders: {e}"))?;
    services.faults().clear().await?;
    if opts.fault_rate > 0.0 {
        let half = format!("{:.6}", opts.fault_rate / 2.0);
        for (point, kind) in [
            ("capture", "error_before"),
            ("capture", "timeout_after"),
            ("authorize", "error_before"),
            ("authorize", "timeout_after"),
            ("query", "error_before"),
            ("journal", "error_before"),
        ] {
            services.faults().add(services.now(), point, kind, &half, "", "0")
                .await
                .map_err(|e| anyhow!("adding a fault: {e}"))?;
        }
        // Processor answers slower than the lease (issue #39): each is abandoned at the server's
        // connector timeout, taken as unknown and asked about, never sent as a second charge.
        let slow = format!("{:.6}", opts.fault_rate / 4.0);
        for point in ["capture", "authorize"] {
            services.faults().add(services.now(), point, "latency", &slow, "", &(SLOW_ANSWER_SECONDS * 1000).to_string())
                .await
                .map_err(|e| anyhow!("adding a fault: {e}"))?;
        }
    }

    let spec = ServerSpec {
        exe: opts.exe.clone(),
        database_url: opts.database.clone(),
        lease_seconds: CHAOS_LEASE_SECONDS,
        recovery_seconds: 1,
        crash_at: None,
        work_dir: opts.work_dir.clone(),
        log_filter: None,
        processor: Some(sandbox.env()),
    };
    let mut server = ServerProcess::start(&spec, "chaos-server").await?;
    let session = Session::sign_in(&server.base, "finance", &password).await?;
    let shared = Arc::new(Shared {
        services: services.clone(),
        current: RwLock::new(Current { session: Some(session) }),
        attempts: AtomicU64::new(0),
        notes: std::sync::Mutex::new(Vec::new()),
    });

    // The killer: the k-th kill comes after about k/(K+1) of the planned requests, at a random
    // moment around it, so every kill lands while invoicing is under way.
    let planned = u64::from(opts.orders) * ROUNDS.len() as u64;
    let kills = opts.kills;
    let killer_shared = shared.clone();
    let killer_spec = spec.clone();
    let password_k = password.clone();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer_done = done.clone();
    let killer = tokio::spawn(async move {
        let mut made = 0u32;
        let spacing = planned / (u64::from(kills) + 1);
        for k in 1..=u64::from(kills) {
            let jitter = random_below(spacing.max(1)) as i64 - (spacing / 2) as i64;
            let target = (k * spacing).saturating_add_signed(jitter);
            while killer_shared.attempts.load(Ordering::Relaxed) < target && !killer_done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            if killer_done.load(Ordering::Relaxed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(random_below(15))).await;
            made += 1;
            // Every other kill is the processor's: calls in flight lose their answers, calls
            // meanwhile find nobody there; it comes back on its store.
            if k % 2 == 0 {
                sandbox.kill_and_restart().await?;
                continue;
            }
            killer_shared.current.write().await.session = None;
            server.kill().await?;
            server = ServerProcess::start(&killer_spec, "chaos-server").await?;
            let session = Session::sign_in(&server.base, "finance", &password_k).await?;
            killer_shared.current.write().await.session = Some(session);
        }
        anyhow::Ok((server, made, sandbox))
    });

    for (round, target) in ROUNDS.iter().enumerate() {
        eprintln!("chaos: round {} of {}", round + 1, ROUNDS.len());
        let queue = Arc::new(std::sync::Mutex::new(prepared.clone()));
        let mut workers = Vec::new();
        for _ in 0..opts.concurrency {
            let (shared, queue, target) = (shared.clone(), queue.clone(), *target);
            workers.push(tokio::spawn(async move {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                    let Some((order, lines)) = next else { break };
                    drive_order(&shared, order, &lines, target).await?;
                }
                anyhow::Ok(())
            }));
        }
        for w in workers {
            w.await??;
        }
    }
    done.store(true, Ordering::Relaxed);
    let (mut server, kills_made, sandbox) = killer.await??;

    // Faults off; resume whatever is still incomplete, and let the server's recovery finish
    // anything a kill left running.
    let fired: i64 = services.faults().list().await?.iter().map(|f| i64::from(f.fired)).sum();
    services.faults().clear().await?;
    let session = shared.session().await?;
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(60) {
        let open = pp::Entity::find()
            .filter(pp::Column::Status.is_in([ProcessStatus::Running.code(), ProcessStatus::Incomplete.code()]))
            .all(&services.db)
            .await?;
        if open.is_empty() {
            break;
        }
        for p in open.iter().filter(|p| p.status == ProcessStatus::Incomplete.code()) {
            if let Err(CallError::Refused { body, .. }) = session.resume(p.id).await {
                shared.note(format!("final resume of process {}: {body}", p.id));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.kill().await?;
    // A last recovery pass in this process, as `paystage recover` would run it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let recovered = payments::service::jobs::recover(&services.clone().with_lease(chrono::Duration::seconds(1)), 10_000)
        .await
        .map_err(|e| anyhow!("recovery: {e}"))?;
    if recovered.taken_over > 0 {
        shared.note(format!("the final recovery pass took over {} processes", recovered.taken_over));
    }

    let inv = payments::pipeline::invariants::check(&services).await?;
    drop(sandbox);
    let mut details = inv.details.clone();
    let mut violations = inv.invariant_violations;
    // Every order was invoiced in full.
    for (order, lines) in &prepared {
        let current = sol::Entity::find().filter(sol::Column::OrderId.eq(*order)).all(&services.db).await?;
        for (id, want) in lines.iter().zip(ROUNDS[ROUNDS.len() - 1]) {
            let got = current.iter().find(|l| l.id == *id).map(|l| l.invoiced_quantity).unwrap_or(0);
            if got != want {
                violations += 1;
                details.push(format!("order {order}: line {id} invoiced {got} of {want}"));
            }
        }
    }
    details.extend(shared.notes.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned());
    let report = ChaosReport {
        orders: opts.orders,
        kills: kills_made,
        faults: fired,
        double_captures: inv.double_captures,
        lost_journals: inv.lost_journals,
        stuck_processes: inv.stuck_processes + inv.incomplete_processes,
        invariant_violations: violations,
    };
    Ok((report, details))
}
