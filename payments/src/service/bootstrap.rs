//! First start and demo data. On an empty database an administrator is created (with the given
//! password, or a random one reported once). Demo mode adds one user per role, a multi-role
//! supervisor, stores and channels, the processor simulator connector with its merchant properties,
//! pre-authorization durations and customers. Running it again changes nothing.
use super::{access, audit, features, setup, Services};
use crate::domain::access::Role;
use crate::domain::views::ChannelKind;
use crate::entity::{connector_merchant_property as cmp, customer, pre_authorization_duration as pad};
use crate::error::ServiceResult;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set, TransactionTrait};

#[derive(Clone, Debug, Default)]
pub struct BootstrapOptions {
    pub demo: bool,
    /// Password for the first administrator (`PAYSTAGE_ADMIN_PASSWORD`); random when absent.
    pub admin_password: Option<String>,
    /// Password for every demo user (`PAYSTAGE_DEMO_PASSWORD`, for automated tests); random when absent.
    pub demo_password: Option<String>,
    /// With `demo`: also turn on the card payment features and place and invoice demo orders in
    /// every state (`PAYSTAGE_DEMO_ORDERS`).
    pub demo_orders: bool,
}

/// A user created by this start, with the password to print once: only one Paystage generated. A
/// password the operator supplied (`PAYSTAGE_ADMIN_PASSWORD`, `PAYSTAGE_DEMO_PASSWORD`) is
/// `None`, so it never reaches the server's output and whatever collects it (issue #40).
#[derive(Clone)]
pub struct CreatedUser {
    pub username: String,
    pub roles: Vec<Role>,
    pub generated_password: Option<String>,
}

impl std::fmt::Debug for CreatedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedUser").field("username", &self.username).field("roles", &self.roles).finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Default)]
pub struct BootstrapReport {
    pub created_users: Vec<CreatedUser>,
    pub demo_data_created: bool,
}

const DEMO_USERS: [(&str, &str, &[Role]); 3] = [
    ("finance", "Fiona Finance", &[Role::Finance]),
    ("callcenter", "Carl Callcenter", &[Role::CallCenter]),
    ("supervisor", "Sam Supervisor", &[Role::Finance, Role::CallCenter]),
];

pub async fn bootstrap(s: &Services, opts: &BootstrapOptions) -> ServiceResult<BootstrapReport> {
    features::ensure_rows(s).await?;
    let mut report = BootstrapReport::default();
    if access::count_users(&s.db).await? == 0 {
        let supplied = opts.admin_password.clone().or_else(|| if opts.demo { opts.demo_password.clone() } else { None });
        create(s, &mut report, "admin", "Ada Administrator", &[Role::Administrator], supplied).await?;
    }
    if opts.demo {
        for (username, name, roles) in DEMO_USERS {
            if access::find_by_username(&s.db, username).await?.is_none() {
                create(s, &mut report, username, name, roles, opts.demo_password.clone()).await?;
            }
        }
        report.demo_data_created = seed_reference_data(s, opts.demo_orders).await?;
    }
    Ok(report)
}

async fn create(
    s: &Services,
    report: &mut BootstrapReport,
    username: &str,
    name: &str,
    roles: &[Role],
    supplied: Option<String>,
) -> ServiceResult<()> {
    let generated = supplied.is_none().then(access::generate_password);
    let password = supplied.or_else(|| generated.clone()).unwrap_or_default();
    access::create_user(
        s,
        audit::SYSTEM,
        access::NewUser {
            username: username.into(),
            display_name: name.into(),
            password: password.clone(),
            roles: roles.to_vec(),
        },
    )
    .await?;
    report.created_users.push(CreatedUser { username: username.into(), roles: roles.to_vec(), generated_password: generated });
    Ok(())
}

/// Stores and channels, the simulator connector and its properties, durations and customers.
/// Returns false when they were already there.
async fn seed_reference_data(s: &Services, orders: bool) -> ServiceResult<bool> {
    if customer::Entity::find().count(&s.db).await? > 0 {
        return Ok(false);
    }
    let txn = s.db.begin().await?;
    let pos = setup::ensure_channel(&txn, "HOUSTON", "Houston store", ChannelKind::PosStore).await?;
    let online = setup::ensure_channel(&txn, "WEB", "Online store", ChannelKind::OnlineStore).await?;
    let call_center = setup::ensure_channel(&txn, "CALL", "Call center", ChannelKind::CallCenter).await?;
    let sim = setup::ensure_sandbox_connector(&txn).await?;
    for channel_id in [pos, online, call_center] {
        if cmp::Entity::find_by_id((sim, channel_id)).one(&txn).await?.is_none() {
            cmp::ActiveModel {
                connector_id: Set(sim),
                channel_id: Set(channel_id),
                enable_request_protection: Set(true),
                non_incremental_capture_methods: Set("interac".into()),
            }
            .insert(&txn)
            .await?;
        }
    }
    for (channel_id, payment_type, days) in [(pos, "visa", 7), (pos, "mc", 7), (pos, "amex", 5), (online, "visa", 7), (online, "mc", 7)] {
        if pad::Entity::find_by_id((channel_id, payment_type.to_string())).one(&txn).await?.is_none() {
            pad::ActiveModel { channel_id: Set(channel_id), payment_type: Set(payment_type.into()), days: Set(days) }
                .insert(&txn)
                .await?;
        }
    }
    for (account, name, email) in [
        ("C-1001", "Contoso Retail", "ap@contoso.example"),
        ("C-1002", "Fabrikam Outdoor", "billing@fabrikam.example"),
        ("C-1003", "Adatum Home", "accounts@adatum.example"),
        ("C-1004", "Jamie Rivera", "jamie.rivera@mail.example"),
        ("C-1005", "Alex Chen", "alex.chen@mail.example"),
    ] {
        if customer::Entity::find().filter(customer::Column::Account.eq(account)).one(&txn).await?.is_none() {
            customer::ActiveModel {
                account: Set(account.into()),
                name: Set(name.into()),
                email: Set(Some(email.into())),
                ..Default::default()
            }
            .insert(&txn)
            .await?;
        }
    }
    audit::record(&txn, s.now(), audit::SYSTEM, "demo_data.create", "Stores, channels, connector, customers", None, None)
        .await?;
    txn.commit().await?;
    if orders {
        super::demo::seed_orders(s).await?;
    }
    Ok(true)
}
