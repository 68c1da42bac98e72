//! Test support: a fresh database per test on SQLite and on PostgreSQL, and the [`db_test!`] macro
//! that runs one test body against both. PostgreSQL comes from `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); when it cannot be reached the test fails with a
//! message saying so: it is never skipped.
//!
//! Every test database's services reach their processor over HTTP (issue #42): a `paystage
//! sandbox` of the test's own, started in the test's runtime on a loopback port with its store in
//! a temporary folder, through the `adyen` connector. The test reads the sandbox's store (its
//! ledger, its faults) through `Services::processor_store`, as [`sim`] does.
use crate::db;
use crate::clock::ManualClock;
use crate::runtime::Services;
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
    Sqlite(#[expect(dead_code, reason = "held for its Drop: the database file is removed with it")] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

/// A migrated, empty database for one test, removed afterwards.
pub struct TestDb {
    pub services: Services,
    pub clock: ManualClock,
    pub url: String,
    pub backend: db::Backend,
    /// The test's processor: its base URL (`http://127.0.0.1:P`) and itself.
    pub processor: String,
    pub sandbox: crate::sandbox::Sandbox,
    cleanup: Option<Cleanup>,
    _sandbox_dir: tempfile::TempDir,
}

/// The API key and merchant account of every test's sandbox.
pub const TEST_API_KEY: &str = "paystage-test-api-key-0001";
pub const TEST_MERCHANT_ACCOUNT: &str = "PaystageTest";
/// The tests' server secret key (`crate::secrets`).
pub const TEST_SECRET_KEY: &str = "7465737420736563726574206b657920666f7220706179737461676520746573";

/// A sandbox in a temporary folder, serving on a loopback port in this runtime, and the settings
/// of the `adyen` connector that reaches it.
pub async fn start_sandbox(clock: crate::clock::SharedClock) -> (crate::sandbox::Sandbox, String, crate::connector::adyen::AdyenSettings, tempfile::TempDir) {
    use crate::connector::adyen::{signature::HmacKey, wire::API_VERSION, AdyenSettings, ADYEN_KEY_WINDOW_DAYS};
    let dir = tempfile::tempdir().expect("temporary folder");
    let options = crate::sandbox::SandboxOptions {
        data_dir: dir.path().to_path_buf(),
        api_key: TEST_API_KEY.into(),
        merchant_account: TEST_MERCHANT_ACCOUNT.into(),
        notify_url: None,
        hmac_key: HmacKey::from_hex(&"5a".repeat(32)).expect("hex"),
        key_window: chrono::Duration::days(ADYEN_KEY_WINDOW_DAYS),
        allow_multiple_partial_capture: true,
    };
    let sandbox = crate::sandbox::Sandbox::open(options, clock).await.expect("the test sandbox's store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(crate::sandbox::serve(sandbox.clone(), listener));
    let settings = AdyenSettings {
        code: "sandbox".into(),
        endpoint: format!("{base}/checkout/{API_VERSION}"),
        api_key: TEST_API_KEY.into(),
        merchant_account: TEST_MERCHANT_ACCOUNT.into(),
        allow_multiple_partial_capture: true,
        non_incremental_variants: vec!["interac".into()],
        key_window: chrono::Duration::days(ADYEN_KEY_WINDOW_DAYS),
        timeout: crate::connector::timed::DEFAULT_TIMEOUT,
        card_page: Some(format!("{base}/hpp/cards")),
    };
    (sandbox, base, settings, dir)
}

/// The fixed moment tests start at (a Monday, mid-morning UTC).
pub fn test_epoch() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 30, 0).single().expect("valid date")
}

impl TestDb {
    /// Hands the sandbox's queued notifications to Paystage's inbox as the webhook would
    /// (`server::webhooks` is tested over HTTP on its own), then processes the inbox once.
    pub async fn deliver_notifications(&self) -> crate::service::notifications::ProcessReport {
        let items = self.sandbox.hand_over_notifications().await.expect("the sandbox's queue");
        crate::service::notifications::receive(&self.services, "sandbox", &items).await.expect("the inbox");
        crate::service::notifications::process_pending(&self.services, 1000).await.expect("processing the inbox")
    }

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
        let clock = ManualClock::new(test_epoch());
        let shared: crate::clock::SharedClock = Arc::new(clock.clone());
        let (sandbox, processor, settings, dir) = start_sandbox(shared.clone()).await;
        let engine = Arc::new(crate::connector::simulator::ProcessorSimulator::new(sandbox.store().clone(), shared.clone()));
        let mut services = Services::connect_over_http(&url, settings, shared).await.unwrap_or_else(|e| panic!("cannot open test database {url}: {e}"));
        services.processor_store = Some(engine);
        services.secrets = Some(crate::secrets::SecretKey::from_hex(TEST_SECRET_KEY).expect("the test key"));
        TestDb { services, clock, url, backend, processor, sandbox, cleanup: Some(cleanup), _sandbox_dir: dir }
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
            #[allow(unused_imports, reason = "a test body may not use every name the macro brings in")]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                #[allow(unused_mut, reason = "a test body may or may not rebind its database")]
                let mut $db = $crate::testing::TestDb::sqlite().await;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                #[allow(unused_mut, reason = "a test body may or may not rebind its database")]
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

/// Reference data for payment tests: three channels, the simulator connector (default) with
/// Enable Request Protection on every channel and `interac` excluded, and two customers.
#[derive(Clone, Copy, Debug)]
pub struct Fixture {
    pub customer_id: i32,
    pub other_customer_id: i32,
    pub pos: i32,
    pub online: i32,
    pub call_center: i32,
    pub connector_id: i32,
}

pub async fn fixture(s: &Services) -> Fixture {
    use crate::domain::views::ChannelKind;
    use crate::entity::{connector_merchant_property as cmp, customer};
    use crate::service::setup;
    use sea_orm::{ActiveModelTrait, Set};
    crate::service::features::ensure_rows(s).await.unwrap();
    let pos = setup::ensure_channel(&s.db, "HOUSTON", "Houston store", ChannelKind::PosStore).await.unwrap();
    let online = setup::ensure_channel(&s.db, "WEB", "Online store", ChannelKind::OnlineStore).await.unwrap();
    let call_center = setup::ensure_channel(&s.db, "CALL", "Call center", ChannelKind::CallCenter).await.unwrap();
    let connector_id = setup::ensure_sandbox_connector(&s.db).await.unwrap();
    for channel_id in [pos, online, call_center] {
        cmp::ActiveModel {
            connector_id: Set(connector_id),
            channel_id: Set(channel_id),
            enable_request_protection: Set(true),
            non_incremental_capture_methods: Set("interac".into()),
        }
        .insert(&s.db)
        .await
        .unwrap();
    }
    let mut ids = Vec::new();
    for (account, name) in [("C-1001", "Contoso Retail"), ("C-1002", "Fabrikam Outdoor")] {
        let c = customer::ActiveModel { account: Set(account.into()), name: Set(name.into()), email: Set(None), ..Default::default() }
            .insert(&s.db)
            .await
            .unwrap();
        ids.push(c.id);
    }
    Fixture { customer_id: ids[0], other_customer_id: ids[1], pos, online, call_center, connector_id }
}

/// Turns on the improved flow and status monitoring (R-PIP-1), and with `incremental` also
/// incremental capture with its prerequisites (R-FEA-2, R-CAP-2).
pub async fn enable_pipeline(s: &Services, incremental: bool) {
    crate::service::demo::enable_card_pipeline(s, "test", incremental).await.unwrap();
}

/// The processor simulator's store (its faults and ledger) behind `s`.
pub fn sim(s: &Services) -> &sea_orm::DatabaseConnection {
    s.simulator_store().expect("the test services use the processor simulator")
}

/// The start of most payment tests: the reference data, the pipeline with incremental capture on,
/// and one card order of `quantity` × `item` at `unit_price`, placed, with its detail.
pub async fn card_order(s: &Services, item: &str, quantity: i32, unit_price: &str) -> (Fixture, crate::domain::payment_views::PlacedOrder, crate::domain::payment_views::OrderDetail) {
    let fx = fixture(s).await;
    enable_pipeline(s, true).await;
    let placed = OrderBuilder::new(&fx).line(item, quantity, unit_price).place(s).await;
    let d = crate::service::orders::detail(s, placed.order_id).await.unwrap();
    (fx, placed, d)
}

/// Builds and places an order paid by card: `OrderBuilder::new(&fx).line("Tent", 2, "150.00").place(s)`.
#[derive(Clone, Debug)]
pub struct OrderBuilder {
    pub form: crate::service::orders::OrderForm,
    pub card_number: String,
}

impl OrderBuilder {
    pub fn new(fx: &Fixture) -> Self {
        let form = crate::service::orders::OrderForm {
            customer_id: fx.customer_id.to_string(),
            channel_id: fx.call_center.to_string(),
            currency: "USD".into(),
            tax_percent: "0".into(),
            charges: "0".into(),
            ..Default::default()
        };
        OrderBuilder { form, card_number: "4111111111111111".into() }
    }

    pub fn line(mut self, item: &str, quantity: i32, unit_price: &str) -> Self {
        self.form.lines.push(crate::service::orders::LineForm {
            item: item.into(),
            quantity: quantity.to_string(),
            unit_price: unit_price.into(),
            requested_ship_date: test_epoch().date_naive().to_string(),
        });
        self
    }

    pub fn channel(mut self, channel_id: i32) -> Self {
        self.form.channel_id = channel_id.to_string();
        self
    }

    pub fn customer(mut self, customer_id: i32) -> Self {
        self.form.customer_id = customer_id.to_string();
        self
    }

    pub fn tax(mut self, percent: &str) -> Self {
        self.form.tax_percent = percent.into();
        self
    }

    pub fn charges(mut self, amount: &str) -> Self {
        self.form.charges = amount.into();
        self
    }

    pub fn card(mut self, number: &str) -> Self {
        self.card_number = number.into();
        self
    }

    /// Tokenizes the card on the simulator (as its acceptance page does) and places the order.
    pub async fn place(self, s: &Services) -> crate::domain::payment_views::PlacedOrder {
        self.try_place(s).await.expect("order is placed")
    }
}

/// Sets some parameters of `group`, keeping the others as they are (R-PAR pages save whole groups).
pub async fn set_parameters(s: &Services, group: crate::domain::parameters::ParameterGroup, values: &[(&str, &str)]) {
    crate::service::parameters::save_some(s, "test", group, values).await.unwrap();
}

/// Turns on nonrecurring tokens with their prerequisites (R-FEA-2), on top of [`enable_pipeline`].
pub async fn enable_nonrecurring_tokens(s: &Services) {
    use crate::Feature::*;
    enable_pipeline(s, true).await;
    for f in [RestrictPaymentTokenUsage, NonrecurringTokens] {
        crate::service::features::set(s, "test", f, true).await.unwrap();
    }
}

/// A card tokenized on the simulator, as its acceptance page hands it back.
pub async fn card_form(s: &Services, number: &str) -> crate::service::orders::CardForm {
    let t = s
        .enter_card_as_shopper(crate::connector::CardEntry { number: number.into(), expiry: "12/30".into(), holder: "Jamie Rivera".into() })
        .await
        .expect("test card is valid");
    crate::service::orders::CardForm { token: t.token, card_type: t.card_type, last_four: t.last_four, holder: t.holder, expiry: t.expiry }
}

impl OrderBuilder {
    /// The requested ship date of every line so far, `days` after the test epoch.
    pub fn ship_in(mut self, days: i64) -> Self {
        let d = (test_epoch().date_naive() + chrono::Duration::days(days)).to_string();
        for l in &mut self.form.lines {
            l.requested_ship_date = d.clone();
        }
        self
    }

    pub fn kind(mut self, code: &str) -> Self {
        self.form.order_kind = code.into();
        self
    }

    pub fn confirmed(mut self, code: &str) -> Self {
        self.form.confirmed = code.into();
        self
    }

    pub fn save_card(mut self) -> Self {
        self.form.save_card = true;
        self
    }

    /// Like [`OrderBuilder::place`], returning the service's answer instead of expecting success.
    pub async fn try_place(mut self, s: &Services) -> crate::error::ServiceResult<crate::domain::payment_views::PlacedOrder> {
        if self.form.saved_card_id.is_empty() && !self.card_number.is_empty() {
            self.form.card = card_form(s, &self.card_number).await;
        }
        crate::service::orders::place(s, "test", &self.form).await
    }

    /// A prepayment order (R-PRE-2/3): `deposit` (blank: the default), its cash and customer
    /// account parts; the card pays the rest of the deposit.
    pub fn deposit(mut self, deposit: &str, cash: &str, customer_account: &str) -> Self {
        self.form.prepayment = true;
        self.form.deposit = crate::service::prepayments::DepositForm { deposit: deposit.into(), cash: cash.into(), customer_account: customer_account.into() };
        self
    }

    /// No card at all (a prepayment paid in cash or on account).
    pub fn no_card(mut self) -> Self {
        self.card_number.clear();
        self
    }

    pub fn saved_card(mut self, id: i32) -> Self {
        self.form.saved_card_id = id.to_string();
        self
    }
}

/// Every row of every table as text (R-TOK-1 tests search it for card numbers).
pub async fn dump_text(db: &sea_orm::DatabaseConnection) -> String {
    use sea_orm::{DbBackend, Statement};
    let backend = db.get_database_backend();
    let mut out = String::new();
    let tables_sql = match backend {
        DbBackend::Postgres => "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public'",
        _ => "SELECT name FROM sqlite_master WHERE type = 'table'",
    };
    let tables = db.query_all_raw(Statement::from_string(backend, tables_sql)).await.unwrap();
    for t in tables {
        let name: String = t.try_get("", "name").unwrap();
        let sql = match backend {
            DbBackend::Postgres => format!("SELECT t::text AS row FROM \"{name}\" t"),
            _ => {
                let cols = db.query_all_raw(Statement::from_string(backend, format!("PRAGMA table_info(\"{name}\")"))).await.unwrap();
                let cols: Vec<String> =
                    cols.iter().map(|c| format!("quote(\"{}\")", c.try_get::<String>("", "name").unwrap())).collect();
                format!("SELECT {} AS row FROM \"{name}\"", cols.join(" || ',' || "))
            }
        };
        for r in db.query_all_raw(Statement::from_string(backend, sql)).await.unwrap() {
            out.push_str(&r.try_get::<String>("", "row").unwrap_or_default());
            out.push('\n');
        }
    }
    out
}
