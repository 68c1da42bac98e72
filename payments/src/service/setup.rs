//! Channels, connectors and their merchant properties (R-PAR-5), and pre-authorization durations
//! per store and payment type (R-PAR-6). Every change is validated, then written with its audit entry.
use super::{audit, Services};
use crate::domain::parameters::{
    parse_payment_method_list, parse_pre_authorization_days, parse_yes_no, FieldError, PaymentMethodVariant,
};
use crate::domain::views::{ChannelKind, ChannelView, ConnectorView, MerchantPropertiesView, PreAuthorizationDurationView, ProcessorInUse};
use crate::entity::{channel, connector, connector_merchant_property as cmp, pre_authorization_duration as pad};
use crate::error::{ServiceError, ServiceResult};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use serde_json::json;

fn channel_view(m: channel::Model) -> ChannelView {
    ChannelView {
        id: m.id,
        kind: ChannelKind::from_code(&m.kind).unwrap_or(ChannelKind::PosStore),
        code: m.code,
        name: m.name,
        currency: m.currency,
        closed: m.closed_at.is_some(),
        time_zone: m.time_zone,
        connector_id: m.connector_id,
    }
}

pub async fn channels(db: &impl ConnectionTrait) -> Result<Vec<ChannelView>, DbErr> {
    Ok(channel::Entity::find().order_by_asc(channel::Column::Id).all(db).await?.into_iter().map(channel_view).collect())
}

/// The connectors as this server sees them: [`connectors`], each with why it cannot be used.
pub async fn connectors_here(s: &Services) -> Result<Vec<ConnectorView>, DbErr> {
    let mut views = connectors(&s.db).await?;
    for v in &mut views {
        v.unusable = s.configured.as_ref().and_then(|c| c.unusable(v.id));
    }
    Ok(views)
}

pub async fn connectors(db: &impl ConnectionTrait) -> Result<Vec<ConnectorView>, DbErr> {
    let chans = channels(db).await?;
    let props = cmp::Entity::find().all(db).await?;
    let mut out = Vec::new();
    for c in connector::Entity::find().order_by_asc(connector::Column::Id).all(db).await? {
        let properties = chans
            .iter()
            .map(|ch| {
                let p = props.iter().find(|p| p.connector_id == c.id && p.channel_id == ch.id);
                MerchantPropertiesView {
                    channel: ch.clone(),
                    enable_request_protection: p.is_some_and(|p| p.enable_request_protection),
                    non_incremental_capture_methods: p.map(|p| p.non_incremental_capture_methods.clone()).unwrap_or_default(),
                }
            })
            .collect();
        out.push(ConnectorView {
            id: c.id,
            code: c.code,
            name: c.name,
            kind: c.kind,
            is_default: c.is_default,
            allow_multiple_partial_capture: c.allow_multiple_partial_capture,
            properties,
            endpoint: c.endpoint.unwrap_or_default(),
            merchant_account: c.merchant_account.unwrap_or_default(),
            card_page: c.card_page.unwrap_or_default(),
            api_key_set: c.api_key_sealed.is_some(),
            hmac_key_set: c.hmac_key_sealed.is_some(),
            key_window_days: c.key_window_days,
            timeout_seconds: c.timeout_ms / 1000,
            unusable: None,
        });
    }
    Ok(out)
}

async fn find_connector(db: &impl ConnectionTrait, id: i32) -> ServiceResult<connector::Model> {
    connector::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("There is no connector with id {id}.")))
}

async fn find_channel(db: &impl ConnectionTrait, id: i32) -> ServiceResult<channel::Model> {
    channel::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("There is no channel with id {id}.")))
}

/// Saves the merchant properties of a connector for one channel: Enable Request Protection and
/// Non incremental capture payment methods.
pub async fn save_merchant_properties(
    s: &Services,
    actor: &str,
    connector_id: i32,
    channel_id: i32,
    enable_request_protection: &str,
    non_incremental_capture_methods: &str,
) -> ServiceResult<()> {
    let mut errors = Vec::new();
    let protection = FieldError::collect(&mut errors, "enable_request_protection", parse_yes_no("Enable Request Protection", enable_request_protection));
    let methods = FieldError::collect(
        &mut errors,
        "non_incremental_capture_methods",
        parse_payment_method_list("Non incremental capture payment methods", non_incremental_capture_methods),
    );
    let (Some(protection), Some(methods)) = (protection, methods) else {
        return Err(ServiceError::Validation(errors));
    };
    let txn = s.db.begin().await?;
    let conn = find_connector(&txn, connector_id).await?;
    let chan = find_channel(&txn, channel_id).await?;
    let before = cmp::Entity::find_by_id((connector_id, channel_id)).one(&txn).await?;
    if before.as_ref().is_some_and(|b| b.enable_request_protection == protection && b.non_incremental_capture_methods == methods) {
        return Ok(());
    }
    cmp::Entity::insert(cmp::ActiveModel {
        connector_id: Set(connector_id),
        channel_id: Set(channel_id),
        enable_request_protection: Set(protection),
        non_incremental_capture_methods: Set(methods.clone()),
    })
    .on_conflict(
        OnConflict::columns([cmp::Column::ConnectorId, cmp::Column::ChannelId])
            .update_columns([cmp::Column::EnableRequestProtection, cmp::Column::NonIncrementalCaptureMethods])
            .to_owned(),
    )
    .exec(&txn)
    .await?;
    audit::record(
        &txn,
        s.now(),
        actor,
        "connector.merchant_properties",
        &format!("{} / {}", conn.name, chan.name),
        before.map(|b| {
            json!({ "enable_request_protection": b.enable_request_protection, "non_incremental_capture_methods": b.non_incremental_capture_methods })
        }),
        Some(json!({ "enable_request_protection": protection, "non_incremental_capture_methods": methods })),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Saves the processor merchant account's allowMultiplePartialCapture flag and whether this
/// connector is the default one (exactly one default at a time).
pub async fn save_merchant_account(
    s: &Services,
    actor: &str,
    connector_id: i32,
    allow_multiple_partial_capture: &str,
    is_default: &str,
) -> ServiceResult<()> {
    let mut errors = Vec::new();
    let allow = FieldError::collect(&mut errors, "allow_multiple_partial_capture", parse_yes_no("Allow multiple partial captures", allow_multiple_partial_capture));
    let default = FieldError::collect(&mut errors, "is_default", parse_yes_no("Default connector", is_default));
    let (Some(allow), Some(default)) = (allow, default) else {
        return Err(ServiceError::Validation(errors));
    };
    let txn = s.db.begin().await?;
    let c = find_connector(&txn, connector_id).await?;
    if c.is_default && !default {
        return Err(ServiceError::field(
            "is_default",
            "Choose another connector as the default instead; there must always be a default connector.",
        ));
    }
    if c.allow_multiple_partial_capture == allow && c.is_default == default {
        return Ok(());
    }
    if default && !c.is_default {
        connector::Entity::update_many()
            .col_expr(connector::Column::IsDefault, false.into())
            .filter(connector::Column::Id.ne(connector_id))
            .exec(&txn)
            .await?;
    }
    let before = json!({ "allow_multiple_partial_capture": c.allow_multiple_partial_capture, "is_default": c.is_default });
    let name = c.name.clone();
    let revision = c.revision;
    let mut am: connector::ActiveModel = c.into();
    am.allow_multiple_partial_capture = Set(allow);
    am.is_default = Set(default);
    am.revision = Set(revision + 1);
    am.update(&txn).await?;
    audit::record(
        &txn,
        s.now(),
        actor,
        "connector.merchant_account",
        &name,
        Some(before),
        Some(json!({ "allow_multiple_partial_capture": allow, "is_default": default })),
    )
    .await?;
    txn.commit().await?;
    reload(s).await;
    Ok(())
}

pub async fn pre_authorization_durations(db: &impl ConnectionTrait) -> Result<Vec<PreAuthorizationDurationView>, DbErr> {
    let chans = channels(db).await?;
    let rows = pad::Entity::find()
        .order_by_asc(pad::Column::ChannelId)
        .order_by_asc(pad::Column::PaymentType)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let channel = chans.iter().find(|c| c.id == r.channel_id)?.clone();
            let label = PaymentMethodVariant::from_code(&r.payment_type).map(|v| v.label()).unwrap_or("Unknown");
            Some(PreAuthorizationDurationView {
                channel,
                payment_type_label: label.to_string(),
                payment_type: r.payment_type,
                days: r.days,
            })
        })
        .collect())
}

/// Sets the pre-authorization duration of a store (POS or online) for one payment type.
pub async fn save_pre_authorization_duration(
    s: &Services,
    actor: &str,
    channel_id: &str,
    payment_type: &str,
    days: &str,
) -> ServiceResult<()> {
    let mut errors = Vec::new();
    let channel_id = channel_id
        .trim()
        .parse::<i32>()
        .map_err(|_| errors.push(FieldError::new("channel_id", "Choose a store.")))
        .ok();
    let variant = PaymentMethodVariant::from_code(payment_type.trim())
        .ok_or_else(|| errors.push(FieldError::new("payment_type", "Choose a payment type from the list.")))
        .ok();
    let days = parse_pre_authorization_days(days).map_err(|m| errors.push(FieldError::new("days", m))).ok();
    let (Some(channel_id), Some(variant), Some(days)) = (channel_id, variant, days) else {
        return Err(ServiceError::Validation(errors));
    };
    let txn = s.db.begin().await?;
    let chan = find_channel(&txn, channel_id).await.map_err(|_| ServiceError::field("channel_id", "Choose a store."))?;
    if ChannelKind::from_code(&chan.kind) == Some(ChannelKind::CallCenter) {
        return Err(ServiceError::field(
            "channel_id",
            "Pre-authorization durations are set per store; the call center uses the Accounts receivable number of days.",
        ));
    }
    let before = pad::Entity::find_by_id((channel_id, variant.code().to_string())).one(&txn).await?;
    if before.as_ref().is_some_and(|b| b.days == days as i32) {
        return Ok(());
    }
    pad::Entity::insert(pad::ActiveModel {
        channel_id: Set(channel_id),
        payment_type: Set(variant.code().to_string()),
        days: Set(days as i32),
    })
    .on_conflict(OnConflict::columns([pad::Column::ChannelId, pad::Column::PaymentType]).update_column(pad::Column::Days).to_owned())
    .exec(&txn)
    .await?;
    audit::record(
        &txn,
        s.now(),
        actor,
        "electronic_payment_setup.pre_authorization_duration",
        &format!("{} / {}", chan.name, variant.label()),
        before.map(|b| json!({ "days": b.days })),
        Some(json!({ "days": days })),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

pub async fn delete_pre_authorization_duration(s: &Services, actor: &str, channel_id: i32, payment_type: &str) -> ServiceResult<()> {
    let txn = s.db.begin().await?;
    let row = pad::Entity::find_by_id((channel_id, payment_type.to_string()))
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::NotFound("That pre-authorization duration no longer exists.".into()))?;
    let chan = find_channel(&txn, channel_id).await?;
    pad::Entity::delete_by_id((channel_id, payment_type.to_string())).exec(&txn).await?;
    audit::record(
        &txn,
        s.now(),
        actor,
        "electronic_payment_setup.pre_authorization_duration_removed",
        &format!("{} / {}", chan.name, payment_type),
        Some(json!({ "days": row.days })),
        None,
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// What an administrator types for a store or channel (issue #43).
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct ChannelForm {
    /// Only when creating; a channel's code never changes (orders and reports name it).
    pub code: String,
    pub name: String,
    /// Only when creating: the kind decides the channel's token rules (R-TOK), so it never
    /// changes under its orders.
    pub kind: String,
    pub currency: String,
    /// IANA time zone; empty: UTC.
    pub time_zone: String,
    /// The code of the connector its orders take their cards on and are paid through; empty:
    /// the default connector. Orders placed before a change stay with the connector they were
    /// paid through.
    pub connector: String,
}

/// `at` in the IANA time zone `zone` (UTC when none or unknown), as a page shows it.
pub fn local_time(at: chrono::DateTime<chrono::Utc>, zone: Option<&str>) -> String {
    match zone.and_then(|z| z.parse::<chrono_tz::Tz>().ok()) {
        Some(tz) => at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string(),
        None => at.format("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

/// The IANA time zone typed (`America/Chicago`; empty: UTC), as stored.
fn parse_time_zone(raw: &str) -> Option<String> {
    match raw.trim() {
        "" => Some("UTC".into()),
        z if z.len() <= 64 => z.parse::<chrono_tz::Tz>().ok().map(|tz| tz.name().to_string()),
        _ => None,
    }
}

/// Creates a store or channel (`id` None) or edits one: validated field by field, nothing
/// written when any field is wrong; audited. Returns its id.
pub async fn save_channel(s: &Services, actor: &str, id: Option<i32>, f: &ChannelForm) -> ServiceResult<i32> {
    let mut errors = Vec::new();
    let name = f.name.trim();
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        errors.push(FieldError::new("name", "Enter a name of 1 to 80 characters, on one line."));
    }
    let time_zone = parse_time_zone(&f.time_zone);
    if time_zone.is_none() {
        errors.push(FieldError::new("time_zone", "Enter the time zone by its IANA name, like America/Chicago or Europe/Berlin (UTC if empty)."));
    }
    let time_zone = time_zone.unwrap_or_default();
    let currency = crate::domain::money::Currency::from_code(&f.currency);
    if currency.is_none() {
        errors.push(FieldError::new("currency", "Enter the ISO code of the channel's currency, like USD or EUR."));
    }
    let created = match id {
        Some(_) => None,
        None => {
            let code = f.code.trim();
            let code_ok = (2..=32).contains(&code.len()) && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !code_ok {
                errors.push(FieldError::new("code", "Enter a code of 2 to 32 letters, digits, - or _ (it names the channel in orders and reports and never changes)."));
            }
            let kind = ChannelKind::from_code(f.kind.trim());
            if kind.is_none() {
                errors.push(FieldError::new("kind", "Choose a retail store, an online store or a call center."));
            }
            Some((code.to_string(), kind))
        }
    };
    let Some(currency) = currency.filter(|_| errors.is_empty()) else {
        return Err(ServiceError::Validation(errors));
    };
    let currency = currency.code().to_string();
    let txn = s.db.begin().await?;
    let own_connector = match f.connector.trim() {
        "" => None,
        code => Some(
            connector::Entity::find()
                .filter(connector::Column::Code.eq(code))
                .one(&txn)
                .await?
                .ok_or_else(|| ServiceError::field("connector", "Choose one of the connectors on the Payment connectors page, or the default connector."))?,
        ),
    };
    let connector_code = own_connector.as_ref().map(|c| c.code.clone());
    let connector_id = own_connector.map(|c| c.id);
    let saved = match (id, created) {
        (Some(id), _) => {
            let before = find_channel(&txn, id).await?;
            if before.name == name && before.currency == currency && before.time_zone == time_zone && before.connector_id == connector_id {
                return Ok(id);
            }
            let before_connector = match before.connector_id {
                Some(c) => connector::Entity::find_by_id(c).one(&txn).await?.map(|c| c.code),
                None => None,
            };
            let mut m: channel::ActiveModel = before.clone().into();
            m.name = Set(name.to_string());
            m.currency = Set(currency.clone());
            m.time_zone = Set(time_zone.clone());
            m.connector_id = Set(connector_id);
            m.update(&txn).await?;
            let view = |c: &str, n: &str, z: &str, k: &Option<String>| json!({ "name": n, "currency": c, "time_zone": z, "connector": k });
            audit::record(
                &txn,
                s.now(),
                actor,
                "channel.edit",
                &before.code,
                Some(view(&before.currency, &before.name, &before.time_zone, &before_connector)),
                Some(view(&currency, name, &time_zone, &connector_code)),
            )
            .await?;
            id
        }
        (None, Some((code, Some(kind)))) => {
            // Unique whatever its case (a store's few channels are read to compare).
            let taken = channel::Entity::find().all(&txn).await?.into_iter().any(|c| c.code.eq_ignore_ascii_case(&code));
            if taken {
                return Err(ServiceError::field("code", format!("A channel with the code {code} exists already; choose another.")));
            }
            let m = channel::ActiveModel { code: Set(code.clone()), name: Set(name.to_string()), kind: Set(kind.code().to_string()), currency: Set(currency.clone()), closed_at: Set(None), time_zone: Set(time_zone.clone()), connector_id: Set(connector_id), ..Default::default() }
                .insert(&txn)
                .await
                .map_err(|e| ServiceError::unique_as_field(e, "code", format!("A channel with the code {code} exists already; choose another.")))?;
            audit::record(&txn, s.now(), actor, "channel.create", &code, None, Some(json!({ "name": name, "kind": kind.code(), "currency": currency, "time_zone": time_zone, "connector": connector_code }))).await?;
            m.id
        }
        _ => return Err(ServiceError::internal("a new channel without its kind")),
    };
    txn.commit().await?;
    Ok(saved)
}

/// Closes a channel (it takes no new orders; its orders, their payments and history stay) or
/// opens it again; audited. A channel is never deleted.
pub async fn set_channel_closed(s: &Services, actor: &str, id: i32, closed: bool) -> ServiceResult<()> {
    let txn = s.db.begin().await?;
    let before = find_channel(&txn, id).await?;
    if before.closed_at.is_some() == closed {
        return Ok(());
    }
    let mut m: channel::ActiveModel = before.clone().into();
    m.closed_at = Set(closed.then(|| s.now()));
    m.update(&txn).await?;
    audit::record(&txn, s.now(), actor, if closed { "channel.close" } else { "channel.reopen" }, &before.code, None, None).await?;
    txn.commit().await?;
    Ok(())
}

/// Inserts a channel if its code is new (used by demo data and set-up).
pub async fn ensure_channel(db: &impl ConnectionTrait, code: &str, name: &str, kind: ChannelKind) -> Result<i32, DbErr> {
    if let Some(c) = channel::Entity::find().filter(channel::Column::Code.eq(code)).one(db).await? {
        return Ok(c.id);
    }
    let m = channel::ActiveModel {
        code: Set(code.to_string()),
        name: Set(name.to_string()),
        kind: Set(kind.code().to_string()),
        currency: Set("USD".into()),
        closed_at: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(m.id)
}

/// Inserts the demo's processor sandbox connector row if missing (the demo's processor itself is
/// set in the environment by `scripts/run.sh`); it becomes the default when none is.
pub async fn ensure_sandbox_connector(db: &impl ConnectionTrait) -> Result<i32, DbErr> {
    if let Some(c) = connector::Entity::find().filter(connector::Column::Code.eq("sandbox")).one(db).await? {
        return Ok(c.id);
    }
    let has_default = connector::Entity::find().filter(connector::Column::IsDefault.eq(true)).one(db).await?.is_some();
    let m = connector::ActiveModel {
        code: Set("sandbox".into()),
        name: Set("Processor sandbox".into()),
        kind: Set("sandbox".into()),
        is_default: Set(!has_default),
        allow_multiple_partial_capture: Set(true),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(m.id)
}

/// Rebuilds this server's connector after a change of connectors (the others sharing the
/// database notice within `connector::configured::RELOAD_EVERY`).
async fn reload(s: &Services) {
    if let Err(e) = s.reload_connector().await {
        tracing::warn!(error = %e, "the connector could not be reloaded after a change; the periodic check will retry");
    }
}

/// Which processor this server reaches (the Payment connectors page's first lines).
pub fn processor_in_use(s: &Services) -> ProcessorInUse {
    use crate::connector::configured::ConnectorStatus;
    let can_seal = s.secrets.is_some();
    match &s.configured {
        None => ProcessorInUse {
            source: "environment".into(),
            summary: "This server's processor is set in its environment (PAYSTAGE_PROCESSOR_URL), which the pages cannot change; the connectors below are used once that is unset.".into(),
            can_seal,
        },
        Some(c) => match c.status() {
            ConnectorStatus::Using { code, endpoint } => ProcessorInUse { source: "connector".into(), summary: format!("Payments go through the default connector {code}, at {endpoint}."), can_seal },
            ConnectorStatus::Unusable(why) => ProcessorInUse { source: "none".into(), summary: format!("No payment can reach a processor: {why}."), can_seal },
        },
    }
}

/// The connector kinds: both speak Adyen's Checkout API.
pub const CONNECTOR_KINDS: [(&str, &str); 2] = [("sandbox", "Paystage processor sandbox"), ("adyen", "Adyen")];

/// What an administrator types for a connector (issue #43). The API key and HMAC key are typed
/// once; left empty on an edit, the stored ones stay.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct ConnectorForm {
    /// Only when creating: names the connector in its notification address
    /// (`/webhooks/adyen/<code>`) and in what it sent, so it never changes.
    pub code: String,
    pub name: String,
    /// Only when creating.
    pub kind: String,
    pub endpoint: String,
    pub merchant_account: String,
    pub api_key: String,
    pub hmac_key: String,
    pub card_page: String,
    pub key_window_days: String,
    pub timeout_seconds: String,
}

/// An http(s) address without user, query or fragment; for Adyen, https only.
fn parse_address(raw: &str, https_only: bool) -> Option<String> {
    let url = reqwest::Url::parse(raw.trim()).ok()?;
    let scheme_ok = url.scheme() == "https" || (!https_only && url.scheme() == "http");
    let clean = url.host_str().is_some() && url.username().is_empty() && url.password().is_none() && url.query().is_none() && url.fragment().is_none();
    (scheme_ok && clean && raw.len() <= 300).then(|| raw.trim().trim_end_matches('/').to_string())
}

/// Creates a connector (`id` None) or edits one: validated field by field, nothing written when any
/// field is wrong; keys sealed with the server's secret key; audited without the keys. The first
/// connector becomes the default. Returns its id.
pub async fn save_connector(s: &Services, actor: &str, id: Option<i32>, f: &ConnectorForm) -> ServiceResult<i32> {
    let mut errors = Vec::new();
    let txn = s.db.begin().await?;
    let before = match id {
        Some(id) => Some(find_connector(&txn, id).await?),
        None => None,
    };
    let name = f.name.trim();
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        errors.push(FieldError::new("name", "Enter a name of 1 to 80 characters, on one line."));
    }
    let (code, kind) = match &before {
        Some(b) => (b.code.clone(), b.kind.clone()),
        None => {
            let code = f.code.trim().to_string();
            if !(2..=32).contains(&code.len()) || !code.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
                errors.push(FieldError::new("code", "Enter a code of 2 to 32 lower-case letters, digits or - (it names the connector in its notification address and never changes)."));
            }
            let kind = f.kind.trim().to_string();
            if !CONNECTOR_KINDS.iter().any(|(k, _)| *k == kind) {
                errors.push(FieldError::new("kind", "Choose the processor sandbox or Adyen."));
            }
            (code, kind)
        }
    };
    let endpoint = parse_address(&f.endpoint, kind == "adyen");
    if endpoint.is_none() {
        errors.push(FieldError::new(
            "endpoint",
            if kind == "adyen" { "Enter the Checkout API's https address up to its version, like https://checkout-test.adyen.com/v72." } else { "Enter the sandbox's Checkout API address, like http://127.0.0.1:8081/checkout/v72." },
        ));
    }
    let merchant = f.merchant_account.trim();
    if merchant.is_empty() || merchant.len() > 80 || !merchant.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        errors.push(FieldError::new("merchant_account", "Enter the merchant account as the processor names it (letters, digits, - _ or .)."));
    }
    let card_page = match f.card_page.trim() {
        "" => Some(None),
        page => parse_address(page, kind == "adyen").map(Some),
    };
    if card_page.is_none() {
        errors.push(FieldError::new("card_page", "Enter the processor's hosted card page address (the sandbox's ends in /hpp/cards), or leave it empty."));
    }
    let api_key = f.api_key.trim();
    if api_key.is_empty() && before.as_ref().is_none_or(|b| b.api_key_sealed.is_none()) {
        errors.push(FieldError::new("api_key", "Enter the API key (it is stored sealed and never shown again)."));
    } else if api_key.len() > 512 || api_key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        errors.push(FieldError::new("api_key", "An API key is up to 512 characters without spaces."));
    }
    let hmac_key = f.hmac_key.trim();
    if !hmac_key.is_empty() && crate::connector::adyen::signature::HmacKey::from_hex(hmac_key).is_err() {
        errors.push(FieldError::new("hmac_key", "Enter the HMAC key as the processor shows it: hexadecimal digits."));
    }
    if (!api_key.is_empty() || !hmac_key.is_empty()) && s.secrets.is_none() {
        errors.push(FieldError::new(
            if api_key.is_empty() { "hmac_key" } else { "api_key" },
            format!("This server cannot seal keys: set {} (64 hex digits, the same on every server) and restart it.", crate::secrets::SECRET_KEY_VAR),
        ));
    }
    let key_window = match f.key_window_days.trim() {
        "" => Some(crate::connector::adyen::ADYEN_KEY_WINDOW_DAYS as i32),
        d => d.parse::<i32>().ok().filter(|d| (1..=3650).contains(d)),
    };
    if key_window.is_none() {
        errors.push(FieldError::new("key_window_days", "Enter how many days the processor keeps an idempotency key, from 1 to 3650 (Adyen: at least 31)."));
    }
    let most = (1..=60).rev().find(|t| crate::connector::timed::fits_lease(std::time::Duration::from_secs(*t), s.lease.to_std().unwrap_or_default())).unwrap_or(1);
    let timeout = match f.timeout_seconds.trim() {
        "" => Some(8.min(most) as i32),
        t => t.parse::<i32>().ok().filter(|t| (1..=most as i32).contains(t)),
    };
    if timeout.is_none() {
        errors.push(FieldError::new("timeout_seconds", format!("Enter how many seconds one request may take, from 1 to {most} (longer would outlive a payment's lease).")));
    }
    let (Some(endpoint), Some(card_page), Some(key_window), Some(timeout)) = (endpoint, card_page, key_window, timeout) else {
        return Err(ServiceError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(ServiceError::Validation(errors));
    }
    let seal = |place: String, plain: &str| s.secrets.as_ref().map(|k| k.seal(&place, plain));
    let api_sealed = (!api_key.is_empty()).then(|| seal(crate::connector::configured::api_key_place(&code), api_key)).flatten();
    let hmac_sealed = (!hmac_key.is_empty()).then(|| seal(crate::connector::configured::hmac_key_place(&code), &hmac_key.to_ascii_lowercase())).flatten();
    let shown = |m: &connector::Model| {
        json!({ "name": m.name, "endpoint": m.endpoint, "merchant_account": m.merchant_account, "card_page": m.card_page, "key_window_days": m.key_window_days, "timeout_ms": m.timeout_ms, "api_key_set": m.api_key_sealed.is_some(), "hmac_key_set": m.hmac_key_sealed.is_some() })
    };
    let saved = match before {
        Some(b) => {
            let mut m: connector::ActiveModel = b.clone().into();
            m.name = Set(name.to_string());
            m.endpoint = Set(Some(endpoint));
            m.merchant_account = Set(Some(merchant.to_string()));
            m.card_page = Set(card_page);
            m.key_window_days = Set(key_window);
            m.timeout_ms = Set(timeout * 1000);
            if let Some(k) = api_sealed {
                m.api_key_sealed = Set(Some(k));
            }
            if let Some(k) = hmac_sealed {
                m.hmac_key_sealed = Set(Some(k));
            }
            m.revision = Set(b.revision + 1);
            let after = m.update(&txn).await?;
            let keys_changed = json!({ "api_key_replaced": !api_key.is_empty(), "hmac_key_replaced": !hmac_key.is_empty() });
            let mut after_view = shown(&after);
            after_view["keys"] = keys_changed;
            audit::record(&txn, s.now(), actor, "connector.edit", &b.code, Some(shown(&b)), Some(after_view)).await?;
            after.id
        }
        None => {
            let taken = connector::Entity::find().filter(connector::Column::Code.eq(code.as_str())).one(&txn).await?.is_some();
            if taken {
                return Err(ServiceError::field("code", format!("A connector with the code {code} exists already; choose another.")));
            }
            let has_default = connector::Entity::find().filter(connector::Column::IsDefault.eq(true)).one(&txn).await?.is_some();
            let m = connector::ActiveModel {
                code: Set(code.clone()),
                name: Set(name.to_string()),
                kind: Set(kind.clone()),
                is_default: Set(!has_default),
                allow_multiple_partial_capture: Set(true),
                endpoint: Set(Some(endpoint)),
                merchant_account: Set(Some(merchant.to_string())),
                api_key_sealed: Set(api_sealed),
                hmac_key_sealed: Set(hmac_sealed),
                card_page: Set(card_page),
                key_window_days: Set(key_window),
                timeout_ms: Set(timeout * 1000),
                revision: Set(0),
                ..Default::default()
            }
            .insert(&txn)
            .await
            .map_err(|e| ServiceError::unique_as_field(e, "code", format!("A connector with the code {code} exists already; choose another.")))?;
            let mut view = shown(&m);
            view["kind"] = json!(kind);
            view["is_default"] = json!(m.is_default);
            audit::record(&txn, s.now(), actor, "connector.create", &code, None, Some(view)).await?;
            m.id
        }
    };
    txn.commit().await?;
    reload(s).await;
    Ok(saved)
}

/// "Test connection": one harmless request to the connector's processor with its stored settings
/// ([`crate::connector::adyen::AdyenConnector::check`]); the answer in words. Ok: accepted.
pub async fn test_connection(s: &Services, id: i32) -> ServiceResult<Result<String, String>> {
    let row = find_connector(&s.db, id).await?;
    let built = crate::connector::configured::build(&row, s.secrets.as_ref(), &s.db, &s.clock);
    Ok(match built {
        Ok((adyen, _)) => adyen.check().await,
        Err(why) => Err(format!("Connector {} cannot be used: {why}.", row.code)),
    })
}

/// The HMAC key of connector `code` stored on the Payment connectors page, opened; None when it
/// has none, or it does not open here (then its notifications are refused until it is entered again).
pub async fn stored_hmac_key(s: &Services, code: &str) -> Result<Option<String>, DbErr> {
    let Some(row) = connector::Entity::find().filter(connector::Column::Code.eq(code)).one(&s.db).await? else { return Ok(None) };
    let (Some(sealed), Some(secrets)) = (row.hmac_key_sealed, s.secrets.as_ref()) else { return Ok(None) };
    match secrets.open(&crate::connector::configured::hmac_key_place(code), &sealed) {
        Ok(k) => Ok(Some(k)),
        Err(e) => {
            tracing::warn!(connector = %code, error = %e, "a stored HMAC key does not open; notifications to this connector are refused");
            Ok(None)
        }
    }
}

/// The Overview's "Getting started" checklist (issue #43): what a new Paystage needs before it
/// takes its first card payment, each step ticked once done.
pub async fn getting_started(s: &Services) -> Result<Vec<crate::domain::views::SetupStep>, DbErr> {
    use crate::entity::{customer, user_role};
    use sea_orm::PaginatorTrait;
    let chans = channels(&s.db).await?;
    let open = |k: ChannelKind| chans.iter().any(|c| c.kind == k && !c.closed);
    let store = open(ChannelKind::PosStore) || open(ChannelKind::OnlineStore);
    let methods = pad::Entity::find().count(&s.db).await? > 0;
    let connector = processor_in_use(s).source != "none";
    let ordering = open(ChannelKind::CallCenter) || store;
    let staff = user_role::Entity::find()
        .filter(user_role::Column::Role.is_in([crate::Role::Finance.code(), crate::Role::CallCenter.code()]))
        .count(&s.db)
        .await?
        > 0;
    let customers = customer::Entity::find().filter(customer::Column::DeactivatedAt.is_null()).count(&s.db).await? > 0;
    let step = |key: &str, label: &str, hint: &str, href: &str, done: bool| crate::domain::views::SetupStep { key: key.into(), label: label.into(), hint: hint.into(), href: href.into(), done };
    Ok(vec![
        step("store", "Add a store", "a retail or online store, with its currency", "/parameters/stores", store),
        step("payment_methods", "Set the store's card payment methods", "the card types it accepts and how long their authorizations last", "/parameters/electronic-payment-setup", methods),
        step("connector", "Connect a payment processor", "its endpoint, merchant account and keys, then Test connection", "/parameters/connectors", connector),
        step("channel", "Add a call center or store to take orders on", "orders are taken on an open channel", "/parameters/stores", ordering),
        step("users", "Add the people who take orders and invoice", "call center and finance users", "/admin/users", staff),
        step("customer", "Add a customer", "account number, name, e-mail and billing address", "/customers", customers),
    ])
}
