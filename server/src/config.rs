//! Configuration from environment variables, parsed once at start-up into typed values. A bad value
//! stops start-up with one line naming the variable and what is wrong with it.
use std::net::IpAddr;
use std::path::PathBuf;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/paystage.db";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `DATABASE_URL`: `sqlite://…` (default `sqlite://data/paystage.db`) or `postgres://…`.
    pub database_url: String,
    /// `PAYSTAGE_PROCESSOR_URL` and its companions: the processor over HTTP (Adyen's Checkout API
    /// shape: Adyen itself, or `paystage sandbox`); none: no processor, every payment request
    /// refused as unavailable (`payments::connector::unconfigured`).
    pub processor: Option<ProcessorConfig>,
    /// `PAYSTAGE_SECRET_KEY` (64 hex digits, the same on every server sharing the database): seals
    /// the connectors' API and HMAC keys stored from the Payment connectors page
    /// (`payments::secrets`). Unset, no key can be stored there.
    pub secret_key: Option<payments::secrets::SecretKey>,
    /// `PAYSTAGE_HOST` (default 127.0.0.1).
    pub host: IpAddr,
    /// `PAYSTAGE_PORT` (default 3000; 0 picks a free port).
    pub port: u16,
    /// `PAYSTAGE_SITE_ROOT`: the built site (wasm, js, css), default `target/site`.
    pub site_root: PathBuf,
    /// `PAYSTAGE_DEMO`: seed demo users and data on first start (default false).
    pub demo: bool,
    /// `PAYSTAGE_DEMO_ORDERS`: with demo mode, also turn on the card payment features and place
    /// demo orders in every state (default: the value of `PAYSTAGE_DEMO`).
    pub demo_orders: bool,
    /// `PAYSTAGE_ADMIN_PASSWORD`: the first administrator's password (random when unset).
    pub admin_password: Option<String>,
    /// `PAYSTAGE_DEMO_PASSWORD`: one password for all demo users, for automated tests.
    pub demo_password: Option<String>,
    /// `PAYSTAGE_SECURE_COOKIES`: mark the session cookie Secure; turn on behind TLS (default false).
    pub secure_cookies: bool,
    /// `PAYSTAGE_SESSION_HOURS`: sign-out after this many hours without activity (default 8).
    pub session_hours: u32,
    /// `PAYSTAGE_SESSION_MAX_HOURS`: sign-out this many hours after signing in, however active
    /// (default 12, 1–720).
    pub session_max_hours: u32,
    /// `PAYSTAGE_TRUST_FORWARDED_FOR`: the client address is the last entry of `X-Forwarded-For`
    /// (turn on only behind a reverse proxy that sets it); otherwise the connection's peer address.
    /// Sign-in locks and the per-address limits count by this address.
    pub trust_forwarded_for: bool,
    /// `PAYSTAGE_PUBLIC_ORIGIN`: the origin browsers use (e.g. https://pay.example.com) when a proxy
    /// changes the Host header; state-changing requests from any other origin are refused.
    pub public_origin: Option<String>,
    /// `PAYSTAGE_LOG`: log filter (default `info`).
    pub log: String,
    /// `PAYSTAGE_LEASE_SECONDS`: how long a server's claim on a running payment process lasts before
    /// another server's recovery may take it over (default 30, 1–3600).
    pub lease_seconds: u32,
    /// `PAYSTAGE_CONNECTOR_TIMEOUT_MS`: the deadline of one processor call; a third of the lease at
    /// most (`payments::connector::timed`).
    pub connector_timeout_ms: u64,
    /// `PAYSTAGE_RECOVERY_SECONDS`: how often recovery looks for payment processes left in flight
    /// (default 15, 1–3600). It also runs once at start-up.
    pub recovery_seconds: u32,
    /// How often the authorization expiry job runs (R-AUT-3/4).
    pub expiry_seconds: u32,
    /// `PAYSTAGE_CPUS`: `one`, `all` or a list of CPUs (`1`, `0-3,6`); unset, `one` on SQLite and
    /// `all` on PostgreSQL.
    pub cpus: Option<Cpus>,
    /// `PAYSTAGE_WORKER_THREADS`: threads of the async runtime (1–1024); unset, one with `one`
    /// CPU, otherwise one per CPU.
    pub worker_threads: Option<usize>,
}

/// `PAYSTAGE_CPUS`: which CPUs the process runs on (see `crate::runtime`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cpus {
    /// Every CPU the machine gives the process.
    All,
    /// The one CPU the process starts on.
    One,
    /// These CPUs (a kernel CPU list, `0-3,6`): how the bench keeps its processor sandbox off the
    /// CPU it is pinned to.
    Listed(Vec<usize>),
}

/// The `adyen` connector's settings from the environment (issue #42). The API key is never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct ProcessorConfig {
    /// `PAYSTAGE_PROCESSOR_URL`: the Checkout API's base URL up to its version, e.g.
    /// `http://127.0.0.1:8081/checkout/v72` (the sandbox) or `https://checkout-test.adyen.com/v72`.
    pub url: String,
    /// `PAYSTAGE_PROCESSOR_API_KEY` (required with the URL).
    pub api_key: String,
    /// `PAYSTAGE_PROCESSOR_MERCHANT_ACCOUNT` (required with the URL).
    pub merchant_account: String,
    /// `PAYSTAGE_PROCESSOR_KEY_WINDOW_DAYS` (default 31, Adyen's documented minimum; 1-3650).
    pub key_window_days: i64,
    /// `PAYSTAGE_PROCESSOR_CARD_PAGE`: the processor's hosted card page (the sandbox's
    /// `http://127.0.0.1:8081/hpp/cards`), where Paystage sends the browser to take a card.
    pub card_page: Option<String>,
}

impl std::fmt::Debug for ProcessorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorConfig").field("url", &self.url).field("api_key", &"<withheld>").field("merchant_account", &self.merchant_account).field("key_window_days", &self.key_window_days).field("card_page", &self.card_page).finish()
    }
}

impl ProcessorConfig {
    fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Option<ProcessorConfig>, ConfigError> {
        let Some(url) = get("PAYSTAGE_PROCESSOR_URL").map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) else { return Ok(None) };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(err("PAYSTAGE_PROCESSOR_URL", format!("\"{url}\" is not an http(s) URL")));
        }
        let api_key = get("PAYSTAGE_PROCESSOR_API_KEY").map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let Some(api_key) = api_key else { return Err(err("PAYSTAGE_PROCESSOR_API_KEY", "required with PAYSTAGE_PROCESSOR_URL")) };
        let merchant = get("PAYSTAGE_PROCESSOR_MERCHANT_ACCOUNT").map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let Some(merchant_account) = merchant else { return Err(err("PAYSTAGE_PROCESSOR_MERCHANT_ACCOUNT", "required with PAYSTAGE_PROCESSOR_URL")) };
        let key_window_days = match get("PAYSTAGE_PROCESSOR_KEY_WINDOW_DAYS") {
            None => payments::connector::adyen::ADYEN_KEY_WINDOW_DAYS,
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if (1..=3650).contains(&n) => n,
                _ => return Err(err("PAYSTAGE_PROCESSOR_KEY_WINDOW_DAYS", format!("\"{v}\" is not a number of days from 1 to 3650"))),
            },
        };
        let card_page = get("PAYSTAGE_PROCESSOR_CARD_PAGE").map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        if let Some(page) = &card_page {
            if !(page.starts_with("http://") || page.starts_with("https://")) {
                return Err(err("PAYSTAGE_PROCESSOR_CARD_PAGE", format!("\"{page}\" is not an http(s) URL")));
            }
        }
        Ok(Some(ProcessorConfig { url: url.trim_end_matches('/').to_string(), api_key, merchant_account, key_window_days, card_page }))
    }

    /// The connector's settings, with calls ending by `timeout`.
    pub fn settings(&self, timeout: std::time::Duration) -> payments::connector::adyen::AdyenSettings {
        payments::connector::adyen::AdyenSettings {
            code: "sandbox".into(),
            endpoint: self.url.clone(),
            api_key: self.api_key.clone(),
            merchant_account: self.merchant_account.clone(),
            allow_multiple_partial_capture: true,
            non_incremental_variants: vec!["interac".into()],
            key_window: chrono::Duration::days(self.key_window_days),
            timeout,
            card_page: self.card_page.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { var, message: message.into() }
}

fn parse_bool(var: &'static str, raw: &str) -> Result<bool, ConfigError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(err(var, format!("\"{other}\" is not a yes/no value (use true or false)"))),
    }
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let database_url = get("DATABASE_URL").filter(|v| !v.trim().is_empty()).unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        if payments::db::Backend::of_url(&database_url).is_none() {
            return Err(err("DATABASE_URL", format!("\"{database_url}\" is not supported: use sqlite://path or postgres://…")));
        }
        if get("PAYSTAGE_SIMULATOR_DATABASE_URL").is_some_and(|v| !v.trim().is_empty()) {
            // Issue #42: the processor is a service of its own; Paystage no longer reads its store.
            return Err(err(
                "PAYSTAGE_SIMULATOR_DATABASE_URL",
                "is no longer read: the processor sandbox keeps its own store (paystage sandbox --data DIR, which moves an earlier store's rows with --import-from URL); unset it",
            ));
        }
        let processor = ProcessorConfig::from_lookup(&get)?;
        let secret_key = match get(payments::secrets::SECRET_KEY_VAR).filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(v) => Some(payments::secrets::SecretKey::from_hex(&v).map_err(|e| err(payments::secrets::SECRET_KEY_VAR, e.to_string()))?),
        };
        let host = match get("PAYSTAGE_HOST") {
            None => IpAddr::from([127, 0, 0, 1]),
            Some(h) => h.trim().parse().map_err(|_| err("PAYSTAGE_HOST", format!("\"{h}\" is not an IP address")))?,
        };
        let port = match get("PAYSTAGE_PORT") {
            None => 3000,
            Some(p) => p
                .trim()
                .parse::<u16>()
                .map_err(|_| err("PAYSTAGE_PORT", format!("\"{p}\" is not a port number (0-65535)")))?,
        };
        let site_root = PathBuf::from(get("PAYSTAGE_SITE_ROOT").unwrap_or_else(|| "target/site".into()));
        let demo = get("PAYSTAGE_DEMO").map(|v| parse_bool("PAYSTAGE_DEMO", &v)).transpose()?.unwrap_or(false);
        let demo_orders = get("PAYSTAGE_DEMO_ORDERS").map(|v| parse_bool("PAYSTAGE_DEMO_ORDERS", &v)).transpose()?.unwrap_or(demo);
        let secure_cookies =
            get("PAYSTAGE_SECURE_COOKIES").map(|v| parse_bool("PAYSTAGE_SECURE_COOKIES", &v)).transpose()?.unwrap_or(false);
        let check_password = |var: &'static str| -> Result<Option<String>, ConfigError> {
            match get(var) {
                None => Ok(None),
                Some(p) => payments::service::access::validate_password(&p).map(|_| Some(p)).map_err(|m| err(var, m)),
            }
        };
        let admin_password = check_password("PAYSTAGE_ADMIN_PASSWORD")?;
        let demo_password = check_password("PAYSTAGE_DEMO_PASSWORD")?;
        let session_hours = match get("PAYSTAGE_SESSION_HOURS") {
            None => 8,
            Some(h) => match h.trim().parse::<u32>() {
                Ok(n) if (1..=720).contains(&n) => n,
                _ => return Err(err("PAYSTAGE_SESSION_HOURS", format!("\"{h}\" is not a number of hours from 1 to 720"))),
            },
        };
        let session_max_hours = match get("PAYSTAGE_SESSION_MAX_HOURS") {
            None => payments::service::access::DEFAULT_SESSION_MAX_HOURS,
            Some(h) => match h.trim().parse::<u32>() {
                Ok(n) if (1..=720).contains(&n) => n,
                _ => return Err(err("PAYSTAGE_SESSION_MAX_HOURS", format!("\"{h}\" is not a number of hours from 1 to 720"))),
            },
        };
        let trust_forwarded_for =
            get("PAYSTAGE_TRUST_FORWARDED_FOR").map(|v| parse_bool("PAYSTAGE_TRUST_FORWARDED_FOR", &v)).transpose()?.unwrap_or(false);
        let public_origin = match get("PAYSTAGE_PUBLIC_ORIGIN").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(o) => {
                let o = o.trim().trim_end_matches('/').to_string();
                let host = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
                let valid = host.is_some_and(|h| !h.is_empty() && !h.contains('/'));
                if !valid {
                    return Err(err("PAYSTAGE_PUBLIC_ORIGIN", format!("\"{o}\" is not an origin like https://pay.example.com")));
                }
                Some(o)
            }
        };
        let log = get("PAYSTAGE_LOG").unwrap_or_else(|| "info".into());
        let seconds = |var: &'static str, default: u32| -> Result<u32, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u32>() {
                    Ok(n) if (1..=3600).contains(&n) => Ok(n),
                    _ => Err(err(var, format!("\"{v}\" is not a number of seconds from 1 to 3600"))),
                },
            }
        };
        let lease_seconds = seconds("PAYSTAGE_LEASE_SECONDS", 30)?;
        let default_timeout = payments::connector::timed::DEFAULT_TIMEOUT.as_millis() as u64;
        let connector_timeout_ms = match get("PAYSTAGE_CONNECTOR_TIMEOUT_MS").filter(|v| !v.trim().is_empty()) {
            None => default_timeout,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if (100..=1_200_000).contains(&n) => n,
                _ => return Err(err("PAYSTAGE_CONNECTOR_TIMEOUT_MS", format!("\"{v}\" is not a number of milliseconds from 100 to 1200000"))),
            },
        };
        let timeout = std::time::Duration::from_millis(connector_timeout_ms);
        if !payments::connector::timed::fits_lease(timeout, std::time::Duration::from_secs(u64::from(lease_seconds))) {
            return Err(err(
                "PAYSTAGE_CONNECTOR_TIMEOUT_MS",
                format!(
                    "{connector_timeout_ms} ms does not fit the {lease_seconds} s lease: a runner makes up to {} processor calls under one lease, so the timeout must be under {} ms (or PAYSTAGE_LEASE_SECONDS longer)",
                    payments::connector::timed::CALLS_PER_LEASE,
                    u64::from(lease_seconds) * 1000 / u64::from(payments::connector::timed::CALLS_PER_LEASE)
                ),
            ));
        }
        let recovery_seconds = seconds("PAYSTAGE_RECOVERY_SECONDS", 15)?;
        let expiry_seconds = seconds("PAYSTAGE_EXPIRY_SECONDS", 300)?;
        let cpus = match get("PAYSTAGE_CPUS").as_deref().map(str::trim) {
            None | Some("") => None,
            Some("one") => Some(Cpus::One),
            Some("all") => Some(Cpus::All),
            Some(other) => match crate::runtime::cpu_list(other) {
                Some(list) => Some(Cpus::Listed(list)),
                None => return Err(err("PAYSTAGE_CPUS", format!("\"{other}\" is not one, all or a list of CPUs (0-3,6)"))),
            },
        };
        let worker_threads = match get("PAYSTAGE_WORKER_THREADS").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=1024).contains(&n) => Some(n),
                _ => return Err(err("PAYSTAGE_WORKER_THREADS", format!("\"{v}\" is not a number of threads from 1 to 1024"))),
            },
        };
        Ok(Config {
            database_url,
            processor,
            secret_key,
            host,
            port,
            site_root,
            demo,
            demo_orders,
            admin_password,
            demo_password,
            secure_cookies,
            session_hours,
            session_max_hours,
            trust_forwarded_for,
            public_origin,
            log,
            lease_seconds,
            connector_timeout_ms,
            recovery_seconds,
            expiry_seconds,
            cpus,
            worker_threads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_use_the_embedded_sqlite_file() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.port, 3000);
        assert!(!c.demo && !c.secure_cookies);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        assert_eq!(cfg(&[("PAYSTAGE_PORT", "http")]).unwrap_err().to_string(), "PAYSTAGE_PORT: \"http\" is not a port number (0-65535)");
        assert_eq!(cfg(&[("PAYSTAGE_PORT", "70000")]).unwrap_err().var, "PAYSTAGE_PORT");
        assert_eq!(cfg(&[("DATABASE_URL", "mysql://x")]).unwrap_err().var, "DATABASE_URL");
        // Issue #42: Paystage no longer reads the processor's store; an old setting says so.
        let old = cfg(&[("PAYSTAGE_SIMULATOR_DATABASE_URL", "sqlite://sim.db")]).unwrap_err();
        assert_eq!(old.var, "PAYSTAGE_SIMULATOR_DATABASE_URL");
        assert!(old.to_string().contains("--import-from"), "{old}");
        // Issue #42: the processor over HTTP, all or nothing, and its key never shown.
        assert_eq!(cfg(&[]).unwrap().processor, None);
        let url = ("PAYSTAGE_PROCESSOR_URL", "http://127.0.0.1:8081/checkout/v72/");
        let key = ("PAYSTAGE_PROCESSOR_API_KEY", "secret-api-key");
        let merchant = ("PAYSTAGE_PROCESSOR_MERCHANT_ACCOUNT", "PaystageDemo");
        let p = cfg(&[url, key, merchant]).unwrap().processor.unwrap();
        assert_eq!((p.url.as_str(), p.key_window_days), ("http://127.0.0.1:8081/checkout/v72", 31));
        assert!(!format!("{p:?}").contains("secret-api-key"));
        assert_eq!(cfg(&[url, merchant]).unwrap_err().var, "PAYSTAGE_PROCESSOR_API_KEY");
        assert_eq!(cfg(&[url, key]).unwrap_err().var, "PAYSTAGE_PROCESSOR_MERCHANT_ACCOUNT");
        assert_eq!(cfg(&[("PAYSTAGE_PROCESSOR_URL", "ftp://x"), key, merchant]).unwrap_err().var, "PAYSTAGE_PROCESSOR_URL");
        for bad in ["0", "3651", "soon"] {
            assert_eq!(cfg(&[url, key, merchant, ("PAYSTAGE_PROCESSOR_KEY_WINDOW_DAYS", bad)]).unwrap_err().var, "PAYSTAGE_PROCESSOR_KEY_WINDOW_DAYS");
        }
        assert_eq!(cfg(&[("PAYSTAGE_SECRET_KEY", "not-64-hex")]).unwrap_err().var, "PAYSTAGE_SECRET_KEY");
        let sealed = cfg(&[("PAYSTAGE_SECRET_KEY", &"0f".repeat(32))]).unwrap();
        assert!(sealed.secret_key.is_some() && !format!("{sealed:?}").contains(&"0f".repeat(32)), "kept, never shown");
        assert_eq!(cfg(&[]).unwrap().secret_key, None);
        assert_eq!(cfg(&[("PAYSTAGE_DEMO", "maybe")]).unwrap_err().var, "PAYSTAGE_DEMO");
        assert_eq!(cfg(&[("PAYSTAGE_HOST", "localhost:3")]).unwrap_err().var, "PAYSTAGE_HOST");
        assert_eq!(cfg(&[("PAYSTAGE_ADMIN_PASSWORD", "short")]).unwrap_err().var, "PAYSTAGE_ADMIN_PASSWORD");
        assert_eq!(cfg(&[("PAYSTAGE_SESSION_HOURS", "0")]).unwrap_err().var, "PAYSTAGE_SESSION_HOURS");
        assert_eq!(cfg(&[("PAYSTAGE_PUBLIC_ORIGIN", "pay.example.com")]).unwrap_err().var, "PAYSTAGE_PUBLIC_ORIGIN");
        assert_eq!(cfg(&[("PAYSTAGE_CPUS", "two")]).unwrap_err().to_string(), "PAYSTAGE_CPUS: \"two\" is not one, all or a list of CPUs (0-3,6)");
        assert_eq!(cfg(&[("PAYSTAGE_CPUS", "0-1,3")]).unwrap().cpus, Some(Cpus::Listed(vec![0, 1, 3])));
        assert_eq!(cfg(&[("PAYSTAGE_CPUS", "3-1")]).unwrap_err().var, "PAYSTAGE_CPUS");
        assert_eq!(cfg(&[("PAYSTAGE_WORKER_THREADS", "0")]).unwrap_err().var, "PAYSTAGE_WORKER_THREADS");
        assert_eq!(cfg(&[("PAYSTAGE_CPUS", "one"), ("PAYSTAGE_WORKER_THREADS", "2")]).map(|c| (c.cpus, c.worker_threads)).unwrap(), (Some(Cpus::One), Some(2)));
        assert_eq!(
            cfg(&[("PAYSTAGE_LEASE_SECONDS", "0")]).unwrap_err().to_string(),
            "PAYSTAGE_LEASE_SECONDS: \"0\" is not a number of seconds from 1 to 3600"
        );
        assert_eq!(cfg(&[("PAYSTAGE_RECOVERY_SECONDS", "soon")]).unwrap_err().var, "PAYSTAGE_RECOVERY_SECONDS");
        // Issue #39 item 1: a processor call never outlives the lease it was made under.
        assert_eq!(cfg(&[]).unwrap().connector_timeout_ms, 8_000);
        assert_eq!(cfg(&[("PAYSTAGE_CONNECTOR_TIMEOUT_MS", "9000")]).unwrap().connector_timeout_ms, 9_000);
        let e = cfg(&[("PAYSTAGE_CONNECTOR_TIMEOUT_MS", "10000")]).unwrap_err();
        assert_eq!(e.var, "PAYSTAGE_CONNECTOR_TIMEOUT_MS");
        assert!(e.to_string().contains("under 10000 ms"), "{e}");
        assert_eq!(cfg(&[("PAYSTAGE_LEASE_SECONDS", "10"), ("PAYSTAGE_CONNECTOR_TIMEOUT_MS", "5000")]).unwrap_err().var, "PAYSTAGE_CONNECTOR_TIMEOUT_MS");
        assert_eq!(cfg(&[("PAYSTAGE_LEASE_SECONDS", "10")]).unwrap_err().var, "PAYSTAGE_CONNECTOR_TIMEOUT_MS", "a shorter lease needs a shorter timeout");
        assert!(cfg(&[("PAYSTAGE_LEASE_SECONDS", "10"), ("PAYSTAGE_CONNECTOR_TIMEOUT_MS", "3000")]).is_ok());
        assert_eq!(cfg(&[("PAYSTAGE_CONNECTOR_TIMEOUT_MS", "0")]).unwrap_err().var, "PAYSTAGE_CONNECTOR_TIMEOUT_MS");
    }

    #[test]
    fn values_are_typed() {
        let c = cfg(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("PAYSTAGE_PORT", "0"),
            ("PAYSTAGE_DEMO", "true"),
            ("PAYSTAGE_PUBLIC_ORIGIN", "https://pay.example.com/"),
        ])
        .unwrap();
        assert_eq!(c.port, 0);
        assert!(c.demo);
        assert_eq!(c.public_origin.as_deref(), Some("https://pay.example.com"));
    }
}
