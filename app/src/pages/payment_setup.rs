use crate::components::{PageHeader, field_error, loaded, outcome, successes_each, table_head};
use crate::error::AppError;
use leptos::prelude::*;
use payments::domain::parameters::{PaymentMethodVariant, PRE_AUTHORIZATION_DAYS};
use payments::domain::views::{ChannelKind, ChannelView, PreAuthorizationDurationView};

#[server(endpoint = "pre_authorization_setup")]
pub async fn pre_authorization_setup() -> Result<(Vec<ChannelView>, Vec<PreAuthorizationDurationView>), AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Administrator]).await?;
    let db = services()?.db;
    let channels = payments::service::setup::channels(&db).await?;
    let durations = payments::service::setup::pre_authorization_durations(&db).await?;
    Ok((channels, durations))
}

/// Sets the pre-authorization duration of a store and payment type (R-PAR-6).
#[server(endpoint = "save_pre_authorization_duration")]
pub async fn save_pre_authorization_duration(channel_id: String, payment_type: String, days: String) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Administrator]).await?;
    payments::service::setup::save_pre_authorization_duration(&services()?, &user.username, &channel_id, &payment_type, &days)
        .await?;
    Ok(())
}

#[server(endpoint = "delete_pre_authorization_duration")]
pub async fn delete_pre_authorization_duration(channel_id: i32, payment_type: String) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Administrator]).await?;
    payments::service::setup::delete_pre_authorization_duration(&services()?, &user.username, channel_id, &payment_type)
        .await?;
    Ok(())
}

#[component]
pub fn ElectronicPaymentSetupPage() -> impl IntoView {
    let save = ServerAction::<SavePreAuthorizationDuration>::new();
    let remove = ServerAction::<DeletePreAuthorizationDuration>::new();
    let saves = successes_each(vec![Box::new(move || matches!(save.value().get(), Some(Ok(())))), Box::new(move || matches!(remove.value().get(), Some(Ok(()))))]);
    let data = Resource::new(move || saves.get(), |_| pre_authorization_setup());
    view! {
        <PageHeader
            title="Electronic payment setup"
            intro="How long an authorization stays valid, per store and payment type. Where no duration is set, the Accounts receivable number of days before expired applies."
        />
        {outcome(save.value(), "Pre-authorization duration saved.", None)}
        {outcome(remove.value(), "Pre-authorization duration removed.", None)}
        {loaded(data, move |(channels, durations): (Vec<ChannelView>, Vec<PreAuthorizationDurationView>)| {
            let stores: Vec<ChannelView> = channels.into_iter().filter(|c| c.kind != ChannelKind::CallCenter).collect();
            let rows = if durations.is_empty() {
                view! { <tr><td colspan="4" class="muted">"No durations set yet."</td></tr> }.into_any()
            } else {
                durations
                    .into_iter()
                    .map(|d| {
                        view! {
                            <tr>
                                <td>{d.channel.name.clone()}</td>
                                <td>{d.payment_type_label.clone()}</td>
                                <td class="num">{d.days}</td>
                                <td>
                                    <ActionForm action=remove>
                                        <input type="hidden" name="channel_id" value=d.channel.id />
                                        <input type="hidden" name="payment_type" value=d.payment_type.clone() />
                                        <button type="submit" class="link-button danger">"Remove"</button>
                                    </ActionForm>
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()
                    .into_any()
            };
            let store_options = stores
                .iter()
                .map(|s| view! { <option value=s.id>{format!("{} ({})", s.name, s.kind.label())}</option> })
                .collect_view();
            let type_options = PaymentMethodVariant::ALL
                .into_iter()
                .map(|v| view! { <option value=v.code()>{v.label()}</option> })
                .collect_view();
            view! {
                <section class="panel">
                    <h2>"Pre-authorization durations"</h2>
                    <table class="grid">
                        {table_head(&["Store", "Payment type", "n:Days", ""])}
                        <tbody>{rows}</tbody>
                    </table>
                </section>
                <section class="panel">
                    <h2>"Set a duration"</h2>
                    <ActionForm action=save attr:class="row-form">
                        <label class="stacked">
                            "Store"
                            <select name="channel_id">{store_options}</select>
                            {field_error(save.value(), "channel_id", None)}
                        </label>
                        <label class="stacked">
                            "Payment type"
                            <select name="payment_type">{type_options}</select>
                            {field_error(save.value(), "payment_type", None)}
                        </label>
                        <label class="stacked">
                            {format!("Pre-authorization duration (days, {}–{})", PRE_AUTHORIZATION_DAYS.0, PRE_AUTHORIZATION_DAYS.1)}
                            <input name="days" inputmode="numeric" />
                            {field_error(save.value(), "days", None)}
                        </label>
                        <button type="submit" class="primary">"Save"</button>
                    </ActionForm>
                </section>
            }
                .into_any()
        })}
    }
}
