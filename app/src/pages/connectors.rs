//! Payment connectors (R-PAR-5, R-TOK-8, issue #43): which processor this server reaches; each
//! connector's connection (endpoint, merchant account, API key and HMAC key typed once and never
//! shown again, hosted card page, idempotency key window, timeout) with a "Test connection"; the
//! merchant account's settings and which connector is the default; merchant properties per channel.
use crate::components::{PageHeader, YesNoSelect, field_error, loaded, outcome, successes_each};
use crate::error::AppError;
use leptos::prelude::*;
use payments::domain::views::{ConnectorView, ProcessorInUse};

/// The connector kinds, as offered when adding one (`payments::service::setup::CONNECTOR_KINDS`).
const KINDS: [(&str, &str); 2] = [("sandbox", "Paystage processor sandbox"), ("adyen", "Adyen")];

#[server(endpoint = "connectors_overview")]
pub async fn connectors_overview() -> Result<(ProcessorInUse, Vec<ConnectorView>), AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Administrator]).await?;
    let s = services()?;
    Ok((payments::service::setup::processor_in_use(&s), payments::service::setup::connectors_here(&s).await?))
}

/// Adds a connector (the first one becomes the default).
#[server(endpoint = "add_connector")]
#[expect(clippy::too_many_arguments, reason = "a server function takes each form field as an argument")]
pub async fn add_connector(
    code: String,
    name: String,
    kind: String,
    endpoint: String,
    merchant_account: String,
    api_key: String,
    hmac_key: String,
    card_page: String,
    key_window_days: String,
    timeout_seconds: String,
) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Administrator]).await?;
    let form = payments::service::setup::ConnectorForm { code, name, kind, endpoint, merchant_account, api_key, hmac_key, card_page, key_window_days, timeout_seconds };
    payments::service::setup::save_connector(&services()?, &user.username, None, &form).await.map_err(|e| AppError::from(e).with_scope("new"))?;
    Ok(())
}

/// Edits a connector's connection; keys left empty stay as stored.
#[server(endpoint = "edit_connector")]
#[expect(clippy::too_many_arguments, reason = "a server function takes each form field as an argument")]
pub async fn edit_connector(
    connector_id: i32,
    name: String,
    endpoint: String,
    merchant_account: String,
    api_key: String,
    hmac_key: String,
    card_page: String,
    key_window_days: String,
    timeout_seconds: String,
) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Administrator]).await?;
    let form = payments::service::setup::ConnectorForm { name, endpoint, merchant_account, api_key, hmac_key, card_page, key_window_days, timeout_seconds, ..Default::default() };
    payments::service::setup::save_connector(&services()?, &user.username, Some(connector_id), &form)
        .await
        .map_err(|e| AppError::from(e).with_scope(format!("connection:{connector_id}")))?;
    Ok(())
}

/// "Test connection": one harmless request with the connector's stored settings; which
/// connector, whether the processor accepted it, and its answer in words.
#[server(endpoint = "test_connector")]
pub async fn test_connector(connector_id: i32) -> Result<(i32, bool, String), AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Administrator]).await?;
    Ok(match payments::service::setup::test_connection(&services()?, connector_id).await? {
        Ok(answer) => (connector_id, true, answer),
        Err(answer) => (connector_id, false, answer),
    })
}

/// The connection fields of a connector (`c`) or of a new one; errors shown for `scope`.
fn connection_fields<V>(value: V, scope: String, c: Option<&ConnectorView>) -> impl IntoView + use<V>
where
    V: With<Value = Option<Result<(), AppError>>> + Clone + Send + Sync + 'static,
{
    let sc = move || Some(scope.clone());
    let keep = |set: bool| if set { "Stored · type to replace" } else { "Not set" };
    let (api_set, hmac_set) = c.map_or((false, false), |c| (c.api_key_set, c.hmac_key_set));
    let value_of = |f: fn(&ConnectorView) -> String| c.map(f).unwrap_or_default();
    let window = c.map_or("31".to_string(), |c| c.key_window_days.to_string());
    let timeout = c.map_or("8".to_string(), |c| c.timeout_seconds.to_string());
    view! {
        <label class="stacked grow">
            "Checkout API endpoint"
            <input name="endpoint" value=value_of(|c| c.endpoint.clone()) placeholder="https://checkout-test.adyen.com/v72" maxlength="300" />
            {field_error(value.clone(), "endpoint", sc())}
        </label>
        <label class="stacked">
            "Merchant account"
            <input name="merchant_account" value=value_of(|c| c.merchant_account.clone()) maxlength="80" />
            {field_error(value.clone(), "merchant_account", sc())}
        </label>
        <label class="stacked">
            "API key"
            <input name="api_key" type="password" autocomplete="off" placeholder=keep(api_set) maxlength="512" />
            {field_error(value.clone(), "api_key", sc())}
        </label>
        <label class="stacked">
            "HMAC key (notifications)"
            <input name="hmac_key" type="password" autocomplete="off" placeholder=keep(hmac_set) maxlength="128" />
            {field_error(value.clone(), "hmac_key", sc())}
        </label>
        <label class="stacked grow">
            "Hosted card page"
            <input name="card_page" value=value_of(|c| c.card_page.clone()) placeholder="the sandbox's …/hpp/cards" maxlength="300" />
            {field_error(value.clone(), "card_page", sc())}
        </label>
        <label class="stacked narrow">
            "Key window (days)"
            <input name="key_window_days" value=window inputmode="numeric" class="amount" />
            {field_error(value.clone(), "key_window_days", sc())}
        </label>
        <label class="stacked narrow">
            "Timeout (seconds)"
            <input name="timeout_seconds" value=timeout inputmode="numeric" class="amount" />
            {field_error(value.clone(), "timeout_seconds", sc())}
        </label>
    }
}

/// Merchant properties of a connector for one channel (R-PAR-5).
#[server(endpoint = "save_merchant_properties")]
pub async fn save_merchant_properties(
    connector_id: i32,
    channel_id: i32,
    enable_request_protection: String,
    non_incremental_capture_methods: String,
) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Administrator]).await?;
    payments::service::setup::save_merchant_properties(
        &services()?,
        &user.username,
        connector_id,
        channel_id,
        &enable_request_protection,
        &non_incremental_capture_methods,
    )
    .await
    .map_err(|e| AppError::from(e).with_scope(format!("{connector_id}:{channel_id}")))
}

/// The processor merchant account's allowMultiplePartialCapture flag, and the default connector.
#[server(endpoint = "save_merchant_account")]
pub async fn save_merchant_account(
    connector_id: i32,
    allow_multiple_partial_capture: String,
    is_default: String,
) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Administrator]).await?;
    payments::service::setup::save_merchant_account(
        &services()?,
        &user.username,
        connector_id,
        &allow_multiple_partial_capture,
        &is_default,
    )
    .await
    .map_err(|e| AppError::from(e).with_scope(format!("account:{connector_id}")))
}

#[component]
pub fn ConnectorsPage() -> impl IntoView {
    let props = ServerAction::<SaveMerchantProperties>::new();
    let account = ServerAction::<SaveMerchantAccount>::new();
    let add = ServerAction::<AddConnector>::new();
    let edit = ServerAction::<EditConnector>::new();
    let test = ServerAction::<TestConnector>::new();
    let saves = successes_each(vec![
        Box::new(move || matches!(props.value().get(), Some(Ok(())))),
        Box::new(move || matches!(account.value().get(), Some(Ok(())))),
        Box::new(move || matches!(add.value().get(), Some(Ok(())))),
        Box::new(move || matches!(edit.value().get(), Some(Ok(())))),
    ]);
    let data = Resource::new(move || saves.get(), |_| connectors_overview());
    let add_form = crate::components::cleared_on_success(move || matches!(add.value().get(), Some(Ok(()))));
    view! {
        <PageHeader
            title="Payment connectors"
            intro="The processors Paystage reaches, how it reaches them, and each one's merchant properties per channel. A store or channel pays through the default connector unless it has its own (chosen on Stores and channels); each payment stays with the connector it was taken on."
        />
        {outcome(props.value(), "Merchant properties saved.", None)}
        {outcome(account.value(), "Merchant account saved.", None)}
        {outcome(add.value(), "Connector added.", None)}
        {outcome(edit.value(), "Connection saved.", None)}
        {loaded(data, move |(in_use, connectors): (ProcessorInUse, Vec<ConnectorView>)| {
            let status_class = if in_use.source == "none" { "notice warning" } else { "notice info" };
            let status = view! {
                <div class=status_class data-testid="processor-in-use">{in_use.summary.clone()}</div>
                {(!in_use.can_seal).then(|| view! {
                    <p class="small muted">"This server has no PAYSTAGE_SECRET_KEY, so no API or HMAC key can be stored here."</p>
                })}
            };
            let list = connectors
                .into_iter()
                .map(|c| {
                    let connector_id = c.id;
                    let connection_scope = format!("connection:{}", c.id);
                    let kind_label = KINDS.iter().find(|(k, _)| *k == c.kind).map_or(c.kind.clone(), |(_, l)| (*l).to_string());
                    // The channels whose cards it takes: those that chose it, and, when it is the
                    // default, those that chose none.
                    let pays_for: Vec<String> = c
                        .properties
                        .iter()
                        .filter(|p| p.channel.connector_id == Some(c.id) || (p.channel.connector_id.is_none() && c.is_default))
                        .filter(|p| !p.channel.closed)
                        .map(|p| p.channel.name.clone())
                        .collect();
                    let fields = connection_fields(edit.value(), connection_scope.clone(), Some(&c));
                    // Once saved, the keys typed are emptied (never shown again, not even masked);
                    // after a refusal they stay, to be corrected and sent again.
                    let edit_form = crate::components::cleared_on_success(move || matches!(edit.value().get(), Some(Ok(()))));
                    let name_error = field_error(edit.value(), "name", Some(connection_scope.clone()));
                    let edit_outcome = outcome(edit.value(), "", Some(connection_scope.clone()));
                    let test_result = move || {
                        test.value().with(|v| match v {
                            Some(Ok((id, ok, answer))) if *id == connector_id => Some(view! {
                                <div class=if *ok { "notice success" } else { "notice error" } role="status" data-testid="connection-test">{answer.clone()}</div>
                            }.into_any()),
                            Some(Err(e)) => Some(view! { <div class="notice error" role="alert">{e.to_string()}</div> }.into_any()),
                            _ => None,
                        })
                    };
                    let account_scope = format!("account:{}", c.id);
                    let rows = c
                        .properties
                        .clone()
                        .into_iter()
                        .map(|p| {
                            let scope = format!("{}:{}", connector_id, p.channel.id);
                            let (scope1, scope2, scope3) = (scope.clone(), scope.clone(), scope.clone());
                            let methods_id = format!("methods-{}-{}", connector_id, p.channel.id);
                            view! {
                                <tr data-channel=p.channel.code.clone()>
                                    <td>
                                        <strong>{p.channel.name.clone()}</strong>
                                        <p class="small muted">{p.channel.kind.label()}</p>
                                    </td>
                                    <td colspan="3">
                                        <ActionForm action=props attr:class="row-form">
                                            <input type="hidden" name="connector_id" value=connector_id />
                                            <input type="hidden" name="channel_id" value=p.channel.id />
                                            <label class="stacked">
                                                "Enable Request Protection"
                                                <YesNoSelect name="enable_request_protection".to_string() value=p.enable_request_protection />
                                            </label>
                                            <label class="stacked grow" for=methods_id.clone()>
                                                "Non incremental capture payment methods"
                                                <input
                                                    id=methods_id.clone()
                                                    name="non_incremental_capture_methods"
                                                    value=p.non_incremental_capture_methods.clone()
                                                    placeholder="e.g. interac;maestro"
                                                />
                                                {field_error(props.value(), "non_incremental_capture_methods", Some(scope1))}
                                                {field_error(props.value(), "enable_request_protection", Some(scope2))}
                                            </label>
                                            <button type="submit" class="secondary">"Save"</button>
                                        </ActionForm>
                                        {outcome(props.value(), "", Some(scope3))}
                                    </td>
                                </tr>
                            }
                        })
                        .collect_view();
                    view! {
                        <section class="panel" data-connector=c.code.clone()>
                            <h2>
                                {c.name.clone()}
                                {c.is_default.then(|| view! { <span class="badge on">"Default"</span> })}
                            </h2>
                            <p class="small muted">
                                {format!("{kind_label} · code {} · notifications to /webhooks/adyen/{}", c.code, c.code)}
                            </p>
                            <p class="small" data-testid="pays-for">
                                {match pays_for.as_slice() {
                                    [] => "No store or channel pays through it yet; choose it for one on Stores and channels.".to_string(),
                                    names => format!("Takes the cards of: {} (chosen on Stores and channels).", names.join(", ")),
                                }}
                            </p>
                            {c.unusable.clone().map(|why| view! {
                                <div class="notice warning" role="status" data-testid="unusable">
                                    {format!("Every payment through this connector is refused: {why}.")}
                                </div>
                            })}
                            <h3>"Connection"</h3>
                            <ActionForm action=edit node_ref=edit_form attr:class="row-form wrap">
                                <input type="hidden" name="connector_id" value=c.id />
                                <label class="stacked">
                                    "Name"
                                    <input name="name" value=c.name.clone() maxlength="80" />
                                    {name_error}
                                </label>
                                {fields}
                                <button type="submit" class="secondary">"Save connection"</button>
                            </ActionForm>
                            {edit_outcome}
                            <ActionForm action=test attr:class="row-form spaced">
                                <input type="hidden" name="connector_id" value=c.id />
                                <button type="submit" class="secondary">"Test connection"</button>
                            </ActionForm>
                            {test_result}
                            <h3>"Processor merchant account"</h3>
                            <ActionForm action=account attr:class="row-form">
                                <input type="hidden" name="connector_id" value=c.id />
                                <label class="stacked">
                                    "Allow multiple partial captures (allowMultiplePartialCapture)"
                                    <YesNoSelect name="allow_multiple_partial_capture".to_string() value=c.allow_multiple_partial_capture />
                                </label>
                                <label class="stacked">
                                    "Default connector"
                                    <YesNoSelect name="is_default".to_string() value=c.is_default />
                                </label>
                                <button type="submit" class="secondary">"Save"</button>
                            </ActionForm>
                            {field_error(account.value(), "is_default", Some(account_scope.clone()))}
                            {outcome(account.value(), "", Some(account_scope.clone()))}
                            <h3>"Merchant properties by channel"</h3>
                            <table class="grid">
                                <thead>
                                    <tr>
                                        <th>"Channel"</th>
                                        <th colspan="3">"Properties"</th>
                                    </tr>
                                </thead>
                                <tbody>{rows}</tbody>
                            </table>
                        </section>
                    }
                })
                .collect_view();
            view! {
                {status}
                {list}
            }
            .into_any()
        })}
        <section class="panel">
            <h2>"Add a connector"</h2>
            <ActionForm action=add node_ref=add_form attr:class="row-form wrap">
                <label class="stacked narrow">
                    "Code"
                    <input name="code" placeholder="e.g. adyen-us" maxlength="32" />
                    {field_error(add.value(), "code", Some("new".to_string()))}
                </label>
                <label class="stacked">
                    "Name"
                    <input name="name" placeholder="e.g. Adyen US" maxlength="80" />
                    {field_error(add.value(), "name", Some("new".to_string()))}
                </label>
                <label class="stacked">
                    "Kind"
                    <select name="kind">
                        {KINDS.into_iter().map(|(k, l)| view! { <option value=k>{l}</option> }).collect_view()}
                    </select>
                    {field_error(add.value(), "kind", Some("new".to_string()))}
                </label>
                {connection_fields(add.value(), "new".to_string(), None)}
                <button type="submit" class="primary">"Add connector"</button>
            </ActionForm>
            {outcome(add.value(), "", Some("new".to_string()))}
        </section>
    }
}
