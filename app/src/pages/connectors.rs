use crate::components::{PageHeader, YesNoSelect, field_error, loaded, outcome, successes_each};
use crate::error::AppError;
use leptos::prelude::*;
use payments::domain::views::ConnectorView;

#[server(endpoint = "connectors_overview")]
pub async fn connectors_overview() -> Result<Vec<ConnectorView>, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Administrator]).await?;
    Ok(payments::service::setup::connectors(&services()?.db).await?)
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
    let saves = successes_each(vec![Box::new(move || matches!(props.value().get(), Some(Ok(())))), Box::new(move || matches!(account.value().get(), Some(Ok(()))))]);
    let data = Resource::new(move || saves.get(), |_| connectors_overview());
    view! {
        <PageHeader
            title="Payment connectors"
            intro="Merchant properties of each payment connector, per channel, and the processor merchant account settings that decide whether invoices can capture incrementally."
        />
        {outcome(props.value(), "Merchant properties saved.", None)}
        {outcome(account.value(), "Merchant account saved.", None)}
        {loaded(data, move |connectors: Vec<ConnectorView>| {
            if connectors.is_empty() {
                return view! { <p class="muted">"No payment connector is configured."</p> }.into_any();
            }
            connectors
                .into_iter()
                .map(|c| {
                    let account_scope = format!("account:{}", c.id);
                    let connector_id = c.id;
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
                .collect_view()
                .into_any()
        })}
    }
}
