//! Stores and channels (issue #43): the retail stores, online stores and call centers orders are
//! taken on. An administrator adds one (code, name, kind, currency), renames it or changes its
//! currency, and closes it: a closed channel takes no new orders while its orders and their
//! history stay; it can be opened again. A channel is never deleted.
use crate::components::{PageHeader, field_error, loaded, outcome, successes_each, table_head};
use crate::error::AppError;
use leptos::prelude::*;
use payments::domain::views::{ChannelKind, ChannelView};
use serde::{Deserialize, Serialize};

/// The channels, and the connectors a channel may pay through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSetup {
    pub channels: Vec<ChannelView>,
    /// (id, code, name, is the default) of every connector.
    pub connectors: Vec<(i32, String, String, bool)>,
}

impl ChannelSetup {
    /// The code of connector `id`.
    fn code_of(&self, id: Option<i32>) -> String {
        id.and_then(|id| self.connectors.iter().find(|c| c.0 == id)).map(|c| c.1.clone()).unwrap_or_default()
    }

    /// "the default connector (Sandbox)", as the select's first option reads.
    fn default_label(&self) -> String {
        match self.connectors.iter().find(|c| c.3) {
            Some(c) => format!("Default connector ({})", c.2),
            None => "Default connector (none set up yet)".to_string(),
        }
    }
}

#[server(endpoint = "channels_overview")]
pub async fn channels_overview() -> Result<ChannelSetup, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Administrator]).await?;
    let db = &services()?.db;
    let connectors = payments::service::setup::connectors(db).await?.into_iter().map(|c| (c.id, c.code, c.name, c.is_default)).collect();
    Ok(ChannelSetup { channels: payments::service::setup::channels(db).await?, connectors })
}

/// Adds a store or channel.
#[server(endpoint = "add_channel")]
pub async fn add_channel(code: String, name: String, kind: String, currency: String, time_zone: String, #[server(default)] connector: String) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Administrator]).await?;
    let form = payments::service::setup::ChannelForm { code, name, kind, currency, time_zone, connector };
    payments::service::setup::save_channel(&services()?, &user.username, None, &form).await.map_err(|e| AppError::from(e).with_scope("new"))?;
    Ok(())
}

/// Renames a channel or changes its currency, time zone or connector.
#[server(endpoint = "edit_channel")]
pub async fn edit_channel(id: i32, name: String, currency: String, time_zone: String, #[server(default)] connector: String) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Administrator]).await?;
    let form = payments::service::setup::ChannelForm { name, currency, time_zone, connector, ..Default::default() };
    payments::service::setup::save_channel(&services()?, &user.username, Some(id), &form).await.map_err(|e| AppError::from(e).with_scope(id.to_string()))?;
    Ok(())
}

/// Closes a channel (no new orders) or opens it again.
#[server(endpoint = "set_channel_closed")]
pub async fn set_channel_closed(id: i32, closed: bool) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Administrator]).await?;
    payments::service::setup::set_channel_closed(&services()?, &user.username, id, closed).await?;
    Ok(())
}

/// Time zones offered as the field is typed (any IANA name is taken).
const TIME_ZONES: [&str; 16] = [
    "UTC", "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Toronto", "America/Mexico_City", "America/Sao_Paulo",
    "Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Madrid", "Asia/Tokyo", "Asia/Singapore", "Asia/Kolkata", "Australia/Sydney",
];

#[component]
pub fn ChannelsPage() -> impl IntoView {
    let add = ServerAction::<AddChannel>::new();
    let edit = ServerAction::<EditChannel>::new();
    let close = ServerAction::<SetChannelClosed>::new();
    let saves = successes_each(vec![
        Box::new(move || matches!(add.value().get(), Some(Ok(())))),
        Box::new(move || matches!(edit.value().get(), Some(Ok(())))),
        Box::new(move || matches!(close.value().get(), Some(Ok(())))),
    ]);
    let data = Resource::new(move || saves.get(), |_| channels_overview());
    // Emptied once the channel is added, so that a second click does not try to add it again.
    let add_form = crate::components::cleared_on_success(move || matches!(add.value().get(), Some(Ok(()))));
    let new_scope = || Some("new".to_string());
    view! {
        <PageHeader
            title="Stores and channels"
            intro="The retail stores, online stores and call centers orders are taken on. Closing one stops new orders on it; its orders and their history stay, and it can be opened again."
        />
        {outcome(add.value(), "Channel added.", None)}
        {outcome(edit.value(), "Channel saved.", None)}
        {outcome(close.value(), "Saved.", None)}
        <section class="panel">
            <h2>"Add a store or channel"</h2>
            <datalist id="time-zones">
                {TIME_ZONES.into_iter().map(|z| view! { <option value=z></option> }).collect_view()}
            </datalist>
            <ActionForm action=add node_ref=add_form attr:class="row-form">
                <label class="stacked narrow">
                    "Code"
                    <input name="code" placeholder="e.g. houston" maxlength="32" />
                    {field_error(add.value(), "code", new_scope())}
                </label>
                <label class="stacked grow">
                    "Name"
                    <input name="name" placeholder="e.g. Houston store" maxlength="80" />
                    {field_error(add.value(), "name", new_scope())}
                </label>
                <label class="stacked">
                    "Kind"
                    <select name="kind">
                        {ChannelKind::ALL.into_iter().map(|k| view! { <option value=k.code()>{k.label()}</option> }).collect_view()}
                    </select>
                    {field_error(add.value(), "kind", new_scope())}
                </label>
                <label class="stacked">
                    "Currency"
                    <input name="currency" value="USD" class="amount" maxlength="3" />
                    {field_error(add.value(), "currency", new_scope())}
                </label>
                <label class="stacked">
                    "Time zone"
                    <input name="time_zone" value="UTC" list="time-zones" maxlength="64" placeholder="America/Chicago" />
                    {field_error(add.value(), "time_zone", new_scope())}
                </label>
                <label class="stacked">
                    "Connector"
                    <Transition fallback=|| view! { <select name="connector"><option value="">"Default connector"</option></select> }>
                        {move || Suspend::new(async move {
                            let o = data.await.ok();
                            view! { <ConnectorSelect overview=o chosen=None label="Connector" /> }
                        })}
                    </Transition>
                    {field_error(add.value(), "connector", new_scope())}
                </label>
                <button type="submit" class="primary">"Add"</button>
            </ActionForm>
            {outcome(add.value(), "", new_scope())}
        </section>
        {loaded(data, move |overview: ChannelSetup| {
            let channels = overview.channels.clone();
            if channels.is_empty() {
                return view! { <p class="panel muted">"No store or channel yet: add the first one above."</p> }.into_any();
            }
            view! {
                <table class="grid">
                    {table_head(&["Code", "Kind", "Name, currency, time zone and connector", "State", ""])}
                    <tbody>
                        {channels.into_iter().map(move |c| {
                            let scope = c.id.to_string();
                            let (s1, s2, s3) = (scope.clone(), scope.clone(), scope.clone());
                            let overview = overview.clone();
                            view! {
                                <tr data-channel=c.code.clone()>
                                    <td><code>{c.code.clone()}</code></td>
                                    <td>{c.kind.label()}</td>
                                    <td>
                                        <ActionForm action=edit attr:class="row-form channel-edit">
                                            <input type="hidden" name="id" value=c.id />
                                            <input name="name" value=c.name.clone() aria-label="Name" maxlength="80" />
                                            <input name="currency" value=c.currency.clone() aria-label="Currency" maxlength="3" class="amount" />
                                            <input name="time_zone" value=c.time_zone.clone() aria-label="Time zone" list="time-zones" maxlength="64" />
                                            <ConnectorSelect overview=Some(overview) chosen=c.connector_id label="Connector of this channel" />
                                            <button type="submit" class="secondary">"Save"</button>
                                        </ActionForm>
                                        {field_error(edit.value(), "name", Some(s1))}
                                        {field_error(edit.value(), "currency", Some(s2))}
                                        {field_error(edit.value(), "time_zone", Some(c.id.to_string()))}
                                        {field_error(edit.value(), "connector", Some(c.id.to_string()))}
                                        {outcome(edit.value(), "Saved.", Some(s3))}
                                    </td>
                                    <td>
                                        {if c.closed {
                                            view! { <span class="badge off">"Closed"</span> }.into_any()
                                        } else {
                                            view! { <span class="badge on">"Open"</span> }.into_any()
                                        }}
                                    </td>
                                    <td>
                                        <ActionForm action=close>
                                            <input type="hidden" name="id" value=c.id />
                                            <input type="hidden" name="closed" value=(!c.closed).to_string() />
                                            <button type="submit" class=if c.closed { "secondary" } else { "link-button danger" }>
                                                {if c.closed { "Open again" } else { "Close" }}
                                            </button>
                                        </ActionForm>
                                    </td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any()
        })}
    }
}

/// The connector a channel pays through: the default connector, or one of its own.
#[component]
fn ConnectorSelect(overview: Option<ChannelSetup>, chosen: Option<i32>, label: &'static str) -> impl IntoView {
    let overview = overview.unwrap_or(ChannelSetup { channels: Vec::new(), connectors: Vec::new() });
    let chosen_code = overview.code_of(chosen);
    view! {
        <select name="connector" aria-label=label>
            <option value="" selected=chosen.is_none()>{overview.default_label()}</option>
            {overview.connectors.iter().map(|(_, code, name, _)| {
                view! { <option value=code.clone() selected=*code == chosen_code>{format!("{name} ({code})")}</option> }
            }).collect_view()}
        </select>
    }
}
