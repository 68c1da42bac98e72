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
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Give a user a new random password, printed once (also lifts a sign-in lock).
    ResetPassword { username: String },
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
        println!("  {:<12} {:<24} {}", u.username, u.password, roles);
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let config = Config::from_env().unwrap_or_else(|e| fail(StartError::from(e)));
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_else(|_| "info".into()))
        .init();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let listener = server::bind(&config).await.unwrap_or_else(|e| fail(e));
            let addr = listener.local_addr().unwrap_or_else(|e| fail(e));
            let (services, report) = server::prepare(&config).await.unwrap_or_else(|e| fail(e));
            server::spawn_background_jobs(&services, config.recovery_seconds);
            let app = server::router(&config, services, addr);
            let url = format!("http://{addr}");
            println!("Paystage is listening on {url} (database: {})", config.database_url);
            print_credentials(&report, &url);
            if let Err(e) = server::serve(listener, app).await {
                fail(format!("server stopped: {e}"));
            }
        }
        Command::Migrate => {
            payments::db::connect_and_migrate(&config.database_url)
                .await
                .unwrap_or_else(|e| fail(StartError::Database(e.to_string())));
            println!("Migrations applied to {}", config.database_url);
        }
        Command::Users { command: UsersCommand::ResetPassword { username } } => {
            let (services, _) = server::prepare(&config).await.unwrap_or_else(|e| fail(e));
            let password = payments::service::access::generate_password();
            payments::service::access::set_password(&services, "cli", &username, password.clone())
                .await
                .unwrap_or_else(|e| fail(e));
            println!("New password for {username}: {password}");
        }
    }
}
