//! Processor notifications (issue #42): what the processor reported on its own, by webhook, and
//! what Paystage did with each: confirmed, waiting, an event it does not know (kept), or a failure
//! after the fact (a capture or refund that failed) that finance must work.
use crate::components::{field_error, loaded, outcome, successes, table_head, PageHeader, SubmitButton};
use crate::error::AppError;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use payments::domain::views::{NotificationView, NOTIFICATION_STATES};

#[server(endpoint = "processor_notifications")]
pub async fn processor_notifications(state: String) -> Result<Vec<NotificationView>, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance, payments::Role::Administrator]).await?;
    Ok(payments::service::notifications::list(&services()?, &state).await?)
}

/// Marks a notification that needed finance as worked, with what was done (audited).
#[server(endpoint = "work_notification")]
pub async fn work_notification(id: i32, note: String) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Finance, payments::Role::Administrator]).await?;
    payments::service::notifications::mark_worked(&services()?, &user.username, id, &note).await.map_err(|e| AppError::from(e).with_scope(id.to_string()))
}

#[component]
pub fn NotificationsPage() -> impl IntoView {
    let query = use_query_map();
    let state = move || query.read().get("state").unwrap_or_default();
    let work = ServerAction::<WorkNotification>::new();
    let saves = successes(move || matches!(work.value().get(), Some(Ok(()))));
    let data = Resource::new(move || (state(), saves.get()), |(state, _)| processor_notifications(state));
    view! {
        <PageHeader
            title="Processor notifications"
            intro="What the payment processor reported on its own, each kept as it came and signed by the processor. A capture or refund the processor failed after accepting it needs finance; an event Paystage does not know is kept, never dropped."
        />
        <form method="get" action="/payments/notifications" class="toolbar">
            <span class="filter">
                <label class="inline" for="n-state">"State"</label>
                <select id="n-state" name="state">
                    <option value="" selected=move || state().is_empty()>"All"</option>
                    {NOTIFICATION_STATES.iter().map(|(code, label)| view! {
                        <option value=*code selected=move || state() == *code>{*label}</option>
                    }).collect_view()}
                </select>
            </span>
            <button type="submit">"Show"</button>
        </form>
        {outcome(work.value(), "Marked as worked.", None)}
        {loaded(data, move |rows: Vec<NotificationView>| {
            if rows.is_empty() {
                return view! { <p class="empty">"No notifications in this state."</p> }.into_any();
            }
            view! {
                <table class="grid" data-testid="notifications">
                    {table_head(&["Received", "Event", "Outcome", "n:Amount", "Processor reference", "Tracking id", "State"])}
                    <tbody>
                        {rows.into_iter().map(|n| {
                            let badge = match n.state.as_str() {
                                "attention" => "badge bad",
                                "unknown_event" => "badge warn",
                                "processed" => "badge on",
                                _ => "badge off",
                            };
                            // A confirmation says nothing new; what needs a person says why.
                            let note = (n.state != "processed").then(|| n.note.clone()).flatten();
                            let tracking_short: String = n.merchant_reference.chars().take(8).collect();
                            let detail = note.is_some() || n.state == "attention";
                            view! {
                                <tr data-state=n.state.clone() class:has-detail=detail>
                                    <td class="nowrap">{n.received_at.format("%Y-%m-%d %H:%M:%S").to_string()}</td>
                                    <td>{n.event_code.clone()}</td>
                                    <td>{if n.success { "Success".to_string() } else { format!("Failed{}", n.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()) }}</td>
                                    <td class="num nowrap">{n.amount.clone()}</td>
                                    <td class="mono">
                                        {n.psp_reference.clone()}
                                        {n.original_reference.clone().map(|p| view! { <div class="muted">"of payment "{p}</div> })}
                                    </td>
                                    <td class="mono" title=n.merchant_reference.clone()>{tracking_short}"…"</td>
                                    <td><span class=badge>{n.state_label.clone()}</span></td>
                                </tr>
                                // What needs a person, and the form to say it was worked, span the
                                // row's width under it.
                                {detail.then(|| view! {
                                    <tr class="notification-detail" data-detail-of=n.id>
                                        <td colspan="7">
                                            {note.clone().map(|t| view! { <p class="small">{t}</p> })}
                                            {(n.state == "attention").then(|| {
                                                let scope = Some(n.id.to_string());
                                                view! {
                                                    <ActionForm action=work attr:class="row-form work-form">
                                                        <input type="hidden" name="id" value=n.id />
                                                        <label class="stacked">
                                                            "What finance did"
                                                            <input name="note" maxlength="2000" size="60" placeholder="e.g. collected by bank transfer, reference …" />
                                                        </label>
                                                        <SubmitButton pending=work.pending()>"Mark worked"</SubmitButton>
                                                    </ActionForm>
                                                    {outcome(work.value(), "", scope.clone())}
                                                    {field_error(work.value(), "note", scope)}
                                                }
                                            })}
                                        </td>
                                    </tr>
                                })}
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any()
        })}
    }
}
