//! Read models the pages show. Plain data, serializable, compiled into the wasm bundle too.
use super::access::Role;
use super::features::Feature;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What kind of sales channel a channel is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ChannelKind {
    PosStore,
    OnlineStore,
    CallCenter,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 3] = [ChannelKind::PosStore, ChannelKind::OnlineStore, ChannelKind::CallCenter];

    pub fn code(self) -> &'static str {
        match self {
            ChannelKind::PosStore => "pos_store",
            ChannelKind::OnlineStore => "online_store",
            ChannelKind::CallCenter => "call_center",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    pub fn label(self) -> &'static str {
        match self {
            ChannelKind::PosStore => "POS store",
            ChannelKind::OnlineStore => "Online store",
            ChannelKind::CallCenter => "Call center",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub page: u64,
    pub pages: u64,
    pub total: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureView {
    pub feature: Feature,
    pub enabled: bool,
    /// Prerequisites with whether each is on.
    pub prerequisites: Vec<(Feature, bool)>,
    /// Enabled features that depend on this one.
    pub required_by: Vec<Feature>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeaturesOverview {
    pub features: Vec<FeatureView>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterFieldView {
    pub key: String,
    pub label: String,
    pub help: String,
    pub yes_no: bool,
    pub suffix: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelView {
    pub id: i32,
    pub code: String,
    pub name: String,
    pub kind: ChannelKind,
    pub currency: String,
    /// Closed channels take no new orders (issue #43).
    pub closed: bool,
    /// IANA time zone.
    pub time_zone: String,
    /// Its own connector; None: the default connector (R-PAR-5).
    pub connector_id: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantPropertiesView {
    pub channel: ChannelView,
    pub enable_request_protection: bool,
    pub non_incremental_capture_methods: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorView {
    pub id: i32,
    pub code: String,
    pub name: String,
    pub kind: String,
    pub is_default: bool,
    pub allow_multiple_partial_capture: bool,
    pub properties: Vec<MerchantPropertiesView>,
    /// Where it reaches its processor (issue #43); its keys are never shown, only whether set.
    pub endpoint: String,
    pub merchant_account: String,
    pub card_page: String,
    pub api_key_set: bool,
    pub hmac_key_set: bool,
    pub key_window_days: i32,
    pub timeout_seconds: i32,
    /// Why this server refuses every request through it (no endpoint, no API key, a key that
    /// does not open); None when it can be used, or when the processor is set in the environment.
    pub unusable: Option<String>,
}

/// Which processor this server reaches, for the Payment connectors page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessorInUse {
    /// "environment" (`PAYSTAGE_PROCESSOR_URL`, which the pages cannot change), "connector" (the
    /// default connector below) or "none".
    pub source: String,
    /// In words: what is reached, or why nothing is.
    pub summary: String,
    /// Whether this server can seal keys (`PAYSTAGE_SECRET_KEY` is set).
    pub can_seal: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreAuthorizationDurationView {
    pub channel: ChannelView,
    pub payment_type: String,
    pub payment_type_label: String,
    pub days: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub id: i32,
    pub username: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    pub created_at: DateTime<Utc>,
    /// Disabled users cannot sign in; their sessions are over.
    pub disabled: bool,
    pub last_sign_in: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerView {
    pub id: i32,
    pub account: String,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub billing_street: Option<String>,
    pub billing_city: Option<String>,
    pub billing_postal_code: Option<String>,
    pub billing_country: Option<String>,
    /// False once deactivated: no new orders or cards.
    pub active: bool,
}

/// An injected fault of the processor simulator (or of Paystage's journal posting).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultView {
    pub id: i32,
    pub point: String,
    pub kind: String,
    pub kind_label: String,
    /// Probability from 0 to 1.
    pub rate: String,
    /// Times left to fire; `None` = until removed.
    pub remaining: Option<i32>,
    pub latency_ms: i32,
    pub created_at: DateTime<Utc>,
    /// Times it has fired so far.
    pub fired: i32,
    /// Paystage's own (its journal posting, kept in its database), not the processor's: the two
    /// number their faults apart.
    #[serde(default)]
    pub paystage_own: bool,
}

/// Where a fault can strike: code and label.
pub const FAULT_POINTS: &[(&str, &str)] = &[
    ("capture", "Processor: capture"),
    ("authorize", "Processor: authorize"),
    ("refund", "Processor: refund"),
    ("void", "Processor: void"),
    ("adjust", "Processor: adjust an authorization"),
    ("query", "Processor: status query"),
    ("any", "Processor: every request"),
    ("journal", "Paystage: post the payment journal"),
];

/// The simulator's test cards: number, payment method variant, behaviour. Other valid numbers are
/// accepted by their prefix (4 Visa, 5 Mastercard, 34/37 Amex, 6011 Discover, 636368 Interac).
pub const TEST_CARDS: &[(&str, &str, &str)] = &[
    ("4111111111111111", "visa", "approve"),
    ("5555555555554444", "mc", "approve"),
    ("378282246310005", "amex", "approve"),
    ("6011111111111117", "discover", "approve"),
    ("6363680000000007", "interac", "approve (never multiple captures)"),
    ("6759649826438453", "maestro", "approve"),
    ("4000000000000002", "visa", "declined"),
    ("4000000000009995", "visa", "insufficient_funds"),
    ("4000000000000069", "visa", "expired_card"),
    ("4000000000000010", "visa", "adjust_declined (authorizes; declines every authorization adjustment)"),
];

/// A card on file of a customer (a recurring token; R-TOK-6, R-TOK-8). Never the card number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCardView {
    pub id: i32,
    pub card_type: String,
    pub last_four: String,
    pub holder: String,
    pub expiry: String,
    pub added_at: DateTime<Utc>,
    pub added_by: String,
}

impl SavedCardView {
    /// "Jamie Rivera · Visa •••• 1111 · 12/30", as the Number list shows it.
    pub fn label(&self) -> String {
        format!("{} · {} •••• {} · {}", self.holder, self.card_type, self.last_four, self.expiry)
    }
}

/// The Customer credit cards page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerCards {
    pub customer: CustomerView,
    pub cards: Vec<SavedCardView>,
    /// Adding a card needs a default payment connector (R-TOK-8); when there is none, why not.
    pub cannot_add: Option<String>,
}

/// The states of a processor notification (issue #42), with their labels: every item the webhook
/// endpoint stored, as the background job left it.
pub const NOTIFICATION_STATES: &[(&str, &str)] = &[
    ("attention", "Needs finance"),
    ("worked", "Worked by finance"),
    ("unknown_event", "Unknown event"),
    ("received", "Waiting"),
    ("processed", "Processed"),
];

/// One notification a processor sent (issue #42): never the card number, only references.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationView {
    pub id: i32,
    pub connector: String,
    pub event_code: String,
    pub success: bool,
    pub psp_reference: String,
    pub original_reference: Option<String>,
    /// The tracking id the request carried as its reference.
    pub merchant_reference: String,
    /// The amount as the processor wrote it, in its currency.
    pub amount: String,
    pub reason: Option<String>,
    pub state: String,
    pub state_label: String,
    pub received_at: chrono::DateTime<chrono::Utc>,
    pub note: Option<String>,
    /// Who marked it worked, once finance did.
    pub worked_by: Option<String>,
}

/// One step of the Overview's "Getting started" checklist for administrators (issue #43).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupStep {
    pub key: String,
    pub label: String,
    /// What it takes, in a few words.
    pub hint: String,
    pub href: String,
    pub done: bool,
}
