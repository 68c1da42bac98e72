//! `paystage`: the server and its command-line tools.
use clap::{Parser, Subcommand};
use payments::service::bootstrap::BootstrapReport;
use server::config::Config;
use server::StartError;

#[derive(Parser)]
#[command(name = "paystage", version, about = "Card-payment operations for merchants")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web application (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Faults the processor simulator injects (also on System administration > Processor simulator).
    Faults {
        #[command(subcommand)]
        command: FaultsCommand,
    },
    /// Run payment recovery once: finish processes left in flight by a stopped server.
    Recover,
    /// Reconcile every order with money at stake (R-LED-1, R-LED-2): prints the report as one JSON
    /// document (checked orders, breaks by cause with their value, each break with its cause,
    /// amount, age and action) and exits 2 when there is any break, so cron can alert on it.
    Reconcile,
    /// Invoice N orders in partial rounds through a real server process, which reaches a processor
    /// sandbox process over HTTP, while killing one or the other K times in turn (SIGKILL) and
    /// injecting processor faults at rate F; then recover and check every invariant. Prints one
    /// JSON line last; exits non-zero if any count is not zero. Use an empty database.
    Chaos {
        /// Database to run on (empty): sqlite://path or postgres://…
        #[arg(long)]
        database: String,
        #[arg(long, default_value_t = 1000)]
        orders: u32,
        #[arg(long, default_value_t = 20)]
        kills: u32,
        /// Probability that a processor request or journal posting meets an injected fault.
        #[arg(long, default_value_t = 0.1)]
        fault_rate: f64,
        /// Invoicings in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: u32,
    },
    /// Background jobs, run once now (they also run on their own in the server).
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Run the processor sandbox: a card processor of its own (own process, store and origin) that
    /// speaks Adyen's Checkout API shape under /checkout/v72, for the `adyen` connector.
    Sandbox {
        #[arg(long, default_value_t = 8081)]
        port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Directory of the sandbox's own store (created if missing).
        #[arg(long)]
        data: std::path::PathBuf,
        /// The API key requests must carry in X-API-Key.
        #[arg(long, env = "PAYSTAGE_SANDBOX_API_KEY", hide_env_values = true)]
        api_key: String,
        /// The merchant account requests must name.
        #[arg(long, default_value = "PaystageDemo")]
        merchant_account: String,
        /// Where to POST notifications (Paystage's /webhooks/adyen/{connector}).
        #[arg(long)]
        notify_url: Option<String>,
        /// HMAC key (hex) notifications are signed with; required with --notify-url.
        #[arg(long, env = "PAYSTAGE_SANDBOX_HMAC_KEY", hide_env_values = true)]
        hmac_key: Option<String>,
        /// Days an idempotency key is remembered.
        #[arg(long, default_value_t = payments::connector::adyen::ADYEN_KEY_WINDOW_DAYS)]
        key_window_days: i64,
        /// The merchant account does not allow several partial captures of one authorization.
        #[arg(long)]
        no_multiple_partial_capture: bool,
        /// A database holding an earlier in-process simulator's records (its `sim_*` tables: a
        /// Paystage database from before, or its `….simulator.db` store): moved into this
        /// sandbox's store once, while that is empty, and dropped there. Repeatable; a database
        /// without them is passed over.
        #[arg(long = "import-from", value_name = "URL")]
        import_from: Vec<String>,
    },
    /// Benchmarks; each prints its figures as one JSON line last.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum FaultsCommand {
    /// List the active faults.
    List,
    /// Add a fault: POINT is capture, authorize, refund, void, query, any or journal; KIND is
    /// error_before, timeout_after, latency or fails_later (a capture or refund answered
    /// `received`, then reported failed by notification; the sandbox only).
    Add {
        point: String,
        kind: String,
        /// Probability from 0 to 1.
        #[arg(long, default_value = "1")]
        rate: String,
        /// Times it fires; empty for until removed.
        #[arg(long, default_value = "")]
        times: String,
        #[arg(long, default_value = "0")]
        latency_ms: String,
    },
    /// Remove one fault: the processor's, or with --journal Paystage's own journal fault (the
    /// two are numbered apart; `list` marks Paystage's).
    Remove {
        id: i32,
        #[arg(long)]
        journal: bool,
    },
    /// Remove every fault.
    Clear,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Invoice N prepared two-line orders through all four stages.
    Invoicing {
        /// Database to run on (a fresh one is best): sqlite://path or postgres://…
        #[arg(long)]
        database: String,
        #[arg(long, default_value_t = 1000)]
        orders: u32,
        #[arg(long, default_value_t = 8)]
        concurrency: u32,
        /// Processor latency per request, a latency fault of the sandbox the bench starts.
        #[arg(long, default_value_t = 0)]
        latency_ms: u32,
        /// Post every invoice on its own, never together with others (the path before batching,
        /// for comparison).
        #[arg(long)]
        one_at_a_time: bool,
    },
    /// Bulk-create N authorizations already past their expiry, then time the expiry job over them.
    Expiry {
        /// Database to run on (a fresh one is best): sqlite://path or postgres://…
        #[arg(long)]
        database: String,
        #[arg(long, default_value_t = 100_000)]
        authorizations: u64,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Run a job once and print what it did as one JSON line.
    Run {
        #[arg(value_enum)]
        job: Job,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Job {
    /// R-AUT-3/4: expire authorizations past their expiry; their orders are held.
    Expiry,
    /// R-AUT-1: authorize future orders (and pending recurring-token payments) now within Future order days.
    Resubmit,
    /// R-AUT-6: renew recurring-token authorizations within "Renew authorizations days before expiry".
    Renew,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Give a user a new random password, printed once (also lifts a sign-in lock).
    ResetPassword { username: String },
    /// Let a disabled user sign in again (the Users page does the same).
    Enable { username: String },
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("paystage: {e}");
    std::process::exit(1);
}

fn print_credentials(report: &BootstrapReport, url: &str) {
    if report.created_users.is_empty() {
        println!("Sign in at {url} (the passwords were printed on first start; reset one with `paystage users reset-password NAME`).");
        return;
    }
    println!("Sign in at {url} with (shown once, keep them safe):");
    for u in &report.created_users {
        let roles = u.roles.iter().map(|r| r.label()).collect::<Vec<_>>().join(" + ");
        let password = u.generated_password.as_deref().unwrap_or("(the password you set in the environment)");
        println!("  {:<12} {:<24} {}", u.username, password, roles);
    }
}

/// The database and services, without first-start accounts or demo data (for maintenance commands).
async fn open_services(config: &Config) -> payments::service::Services {
    server::open_services(config).await.unwrap_or_else(|e| fail(e))
}

fn main() {
    let cli = Cli::parse();
    let config = Config::from_env().unwrap_or_else(|e| fail(StartError::from(e)));
    // The database this command works on decides the runtime's default shape. `chaos` starts
    // server processes, which inherit its CPUs: it keeps all of them unless told otherwise, and
    // each server it starts picks its own.
    let (database, cpus) = match &cli.command {
        Some(Command::Chaos { database, .. }) => (database.as_str(), config.cpus.clone().or(Some(server::config::Cpus::All))),
        Some(Command::Bench { command: BenchCommand::Invoicing { database, .. } })
        | Some(Command::Bench { command: BenchCommand::Expiry { database, .. } }) => (database.as_str(), config.cpus.clone()),
        _ => (config.database_url.as_str(), config.cpus.clone()),
    };
    let available = std::thread::available_parallelism().map_or(1, usize::from);
    let plan = server::runtime::Plan::of(cpus, config.worker_threads, payments::db::Backend::of_url(database), available);
    let runtime = plan.build().unwrap_or_else(|e| fail(format!("cannot start the async runtime ({plan:?}): {e}")));
    runtime.block_on(run(cli, config));
}

async fn run(cli: Cli, config: Config) {
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        use tracing_subscriber::Layer;
        // Log lines go to standard error, so that what a command prints (JSON, lists) is alone on
        // standard output.
        let log = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_else(|_| "info".into()));
        // Only the bench listens to the pipeline's timings (`payments::observe`).
        let bench = matches!(cli.command, Some(Command::Bench { .. })).then(|| server::bench::layer().with_filter(server::bench::targets()));
        tracing_subscriber::registry().with(log).with(bench).init();
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            if let Err(e) = server::webhooks::WebhookKeys::from_env() {
                fail(e);
            }
            let listener = server::bind(&config).await.unwrap_or_else(|e| fail(e));
            let addr = listener.local_addr().unwrap_or_else(|e| fail(e));
            let (services, report) = server::prepare(&config).await.unwrap_or_else(|e| fail(e));
            server::spawn_background_jobs(&services, config.recovery_seconds, config.expiry_seconds);
            let app = server::router(&config, services, addr);
            let url = format!("http://{addr}");
            println!("Paystage is listening on {url} (database: {})", config.database_url);
            print_credentials(&report, &url);
            if let Err(e) = server::serve(listener, app).await {
                fail(format!("server stopped: {e}"));
            }
        }
        Command::Sandbox { port, host, data, api_key, merchant_account, notify_url, hmac_key, key_window_days, no_multiple_partial_capture, import_from } => {
            use payments::connector::adyen::signature::HmacKey;
            if api_key.trim().len() < 16 {
                fail("--api-key: use at least 16 characters");
            }
            if !(1..=3650).contains(&key_window_days) {
                fail("--key-window-days: from 1 to 3650");
            }
            let hmac_key = match (&notify_url, hmac_key) {
                (_, Some(k)) => HmacKey::from_hex(&k).unwrap_or_else(|e| fail(format!("--hmac-key: {e}"))),
                (Some(_), None) => fail("--notify-url needs --hmac-key (or PAYSTAGE_SANDBOX_HMAC_KEY), the key Paystage verifies notifications with"),
                (None, None) => {
                    use rand_core::RngCore;
                    let mut bytes = [0u8; 32];
                    rand_core::OsRng.fill_bytes(&mut bytes);
                    HmacKey::from_hex(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()).unwrap_or_else(|e| fail(e))
                }
            };
            let options = server::sandbox::SandboxOptions {
                data_dir: data,
                api_key,
                merchant_account,
                notify_url,
                hmac_key,
                key_window: chrono::Duration::days(key_window_days),
                allow_multiple_partial_capture: !no_multiple_partial_capture,
            };
            let sandbox = server::sandbox::Sandbox::open(options, std::sync::Arc::new(payments::service::clock::SystemClock)).await.unwrap_or_else(|e| fail(format!("sandbox store: {e:#}")));
            for url in &import_from {
                if payments::db::Backend::of_url(url).is_none() {
                    fail(format!("--import-from: \"{url}\" is not supported: use sqlite://path or postgres://…"));
                }
                let earlier = payments::db::connect(url).await.unwrap_or_else(|e| fail(format!("--import-from {url}: cannot open it: {e}")));
                let moved = payments::connector::simulator::store::import_earlier(&earlier, sandbox.store()).await.unwrap_or_else(|e| fail(format!("--import-from {url}: {e}")));
                if moved.tables_dropped > 0 {
                    println!("Moved {} rows of the earlier processor records from {url} into the sandbox's store", moved.rows);
                }
            }
            let addr = std::net::SocketAddr::new(host, port);
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| fail(format!("--port: cannot listen on {addr}: {e}")));
            println!("Processor sandbox is listening on http://{} (Checkout API at /checkout/{})", listener.local_addr().unwrap_or(addr), payments::connector::adyen::wire::API_VERSION);
            if let Err(e) = server::sandbox::serve(sandbox, listener).await {
                fail(format!("sandbox stopped: {e}"));
            }
        }
        Command::Migrate => {
            payments::db::connect_and_migrate(&config.database_url)
                .await
                .unwrap_or_else(|e| fail(StartError::Database(e.to_string())));
            println!("Migrations applied to {}", config.database_url);
        }
        Command::Faults { command } => {
            // The processor's through the sandbox's administration API; Paystage's own journal
            // faults in its database.
            let services = open_services(&config).await;
            let faults = services.faults();
            match command {
                FaultsCommand::List => {
                    for f in faults.list().await.unwrap_or_else(|e| fail(e)) {
                        let times = f.remaining.map(|n| n.to_string()).unwrap_or_else(|| "until removed".into());
                        println!(
                            "{:>4}  {:<10} {:<14} rate {:<6} times {:<14} latency {} ms, fired {}{}",
                            f.id, f.point, f.kind, f.rate, times, f.latency_ms, f.fired, if f.paystage_own { "  (Paystage's own: remove with --journal)" } else { "" }
                        );
                    }
                }
                FaultsCommand::Add { point, kind, rate, times, latency_ms } => {
                    let id = faults.add(services.now(), &point, &kind, &rate, &times, &latency_ms).await.unwrap_or_else(|e| fail(e));
                    println!("Fault {id} added.");
                }
                FaultsCommand::Remove { id, journal } => {
                    if !faults.remove(id, journal).await.unwrap_or_else(|e| fail(e)) {
                        fail(format!("there is no fault {id}"));
                    }
                    println!("Fault {id} removed.");
                }
                FaultsCommand::Clear => println!("{} faults removed.", faults.clear().await.unwrap_or_else(|e| fail(e))),
            }
        }
        Command::Recover => {
            let services = open_services(&config).await;
            let mut total = payments::pipeline::RecoveryReport::default();
            loop {
                let r = payments::service::jobs::recover(&services, server::RECOVERY_BATCH).await.unwrap_or_else(|e| fail(e));
                total.taken_over += r.taken_over;
                total.completed += r.completed;
                total.incomplete += r.incomplete;
                total.requests_resolved += r.requests_resolved;
                if u64::from(r.taken_over) < server::RECOVERY_BATCH {
                    break;
                }
            }
            println!("{}", serde_json::to_string(&total).unwrap_or_default());
        }
        Command::Reconcile => {
            let services = open_services(&config).await;
            let report = payments::service::reconciliation::report(&services).await.unwrap_or_else(|e| fail(e));
            println!("{}", serde_json::to_string_pretty(&report).unwrap_or_else(|e| fail(e)));
            if !report.breaks.is_empty() {
                std::process::exit(2);
            }
        }
        Command::Chaos { database, orders, kills, fault_rate, concurrency } => {
            let exe = std::env::current_exe().unwrap_or_else(|e| fail(format!("cannot find the paystage binary: {e}")));
            let work_dir = std::env::temp_dir().join(format!("paystage-chaos-{}", std::process::id()));
            eprintln!("chaos: server logs in {}", work_dir.display());
            let opts = server::chaos::ChaosOptions { database, orders, kills, fault_rate, concurrency, exe, work_dir };
            let (report, details) = server::chaos::run(&opts).await.unwrap_or_else(|e| fail(format!("chaos: {e:#}")));
            for d in &details {
                eprintln!("chaos: {d}");
            }
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            if !report.clean() {
                std::process::exit(1);
            }
        }
        Command::Bench { command: BenchCommand::Invoicing { database, orders, concurrency, latency_ms, one_at_a_time } } => {
            // The processor is a `paystage sandbox` process of its own, reached over HTTP (issue
            // #42): its work and latency are not in the measured process.
            let exe = std::env::current_exe().unwrap_or_else(|e| fail(format!("cannot find the paystage binary: {e}")));
            let work_dir = std::env::temp_dir().join(format!("paystage-bench-{}", std::process::id()));
            std::fs::create_dir_all(&work_dir).unwrap_or_else(|e| fail(format!("cannot create {}: {e}", work_dir.display())));
            let sandbox = server::chaos::SandboxProcess::start(&exe, &work_dir, &work_dir.join("sandbox.log"))
                .await
                .unwrap_or_else(|e| fail(format!("bench: {e:#}")));
            let clock = std::sync::Arc::new(payments::service::clock::SystemClock);
            // `fail` exits without running destructors: the sandbox is stopped first on every
            // way out, or it would outlive the bench.
            let mut services = match payments::service::Services::connect_over_http(&database, sandbox.settings(), clock).await {
                Ok(s) => s,
                Err(e) => {
                    drop(sandbox);
                    fail(StartError::Database(e.to_string()))
                }
            };
            server::bench::meter(&mut services.db);
            if one_at_a_time {
                services = services.one_at_a_time();
            }
            eprintln!(
                "bench: preparing {orders} orders, then invoicing them {concurrency} at a time with {latency_ms} ms processor latency (the sandbox: {}, log {})",
                sandbox.env().url,
                work_dir.join("sandbox.log").display()
            );
            let report = server::bench::invoicing(&services, server::bench::BenchOptions { orders, concurrency, latency_ms }).await;
            drop(sandbox);
            let report = report.unwrap_or_else(|e| fail(e));
            let _ = std::fs::remove_dir_all(&work_dir);
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
        }
        Command::Bench { command: BenchCommand::Expiry { database, authorizations } } => {
            // The expiry job asks nothing of the processor: none is configured.
            let services = payments::service::Services::connect_without_processor(&database, std::sync::Arc::new(payments::service::clock::SystemClock))
                .await
                .unwrap_or_else(|e| fail(StartError::Database(e.to_string())));
            eprintln!("bench: creating {authorizations} expired authorizations, then running the expiry job over them");
            let report = server::bench::expiry(&services, authorizations).await.unwrap_or_else(|e| fail(e));
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
        }
        Command::Jobs { command: JobsCommand::Run { job: Job::Expiry } } => {
            let services = open_services(&config).await;
            let report = payments::service::jobs::expire_authorizations(&services)
                .await
                .unwrap_or_else(|e| fail(e));
            let stored = payments::service::expiry::store_expired(&services, payments::service::expiry::STORE_BATCH)
                .await
                .unwrap_or_else(|e| fail(e));
            println!("{}", serde_json::json!({ "expiry": report, "stored": stored }));
        }
        Command::Jobs { command: JobsCommand::Run { job: Job::Resubmit } } => {
            let services = open_services(&config).await;
            let report = payments::service::jobs::resubmit_authorizations(&services, payments::service::jobs::RESUBMIT_BATCH)
                .await
                .unwrap_or_else(|e| fail(e));
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
        }
        Command::Jobs { command: JobsCommand::Run { job: Job::Renew } } => {
            let services = open_services(&config).await;
            let report = payments::service::jobs::renew_authorizations(&services).await.unwrap_or_else(|e| fail(e));
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
        }
        Command::Users { command: UsersCommand::ResetPassword { username } } => {
            let (services, _) = server::prepare(&config).await.unwrap_or_else(|e| fail(e));
            let password = payments::service::access::generate_password();
            payments::service::access::set_password(&services, "cli", &username, password.clone())
                .await
                .unwrap_or_else(|e| fail(e));
            println!("New password for {username}: {password}");
        }
        Command::Users { command: UsersCommand::Enable { username } } => {
            let (services, _) = server::prepare(&config).await.unwrap_or_else(|e| fail(e));
            let user = payments::service::access::find_by_username(&services.db, &username)
                .await
                .unwrap_or_else(|e| fail(e))
                .unwrap_or_else(|| fail(format!("there is no user named {username}")));
            payments::service::access::set_disabled(&services, "cli", None, user.id, false).await.unwrap_or_else(|e| fail(e));
            println!("{} can sign in again.", user.username);
        }
    }
}
