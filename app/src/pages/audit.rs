use crate::components::{loaded, pager, table_head, PageHeader};
use crate::error::AppError;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use payments::domain::views::AuditPage as AuditPageData;

#[server(endpoint = "audit_page")]
pub async fn load_audit_page(page: u64, action: String, actor: String) -> Result<AuditPageData, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Administrator]).await?;
    let filter = payments::service::audit::AuditFilter { action: Some(action), actor: Some(actor) };
    Ok(payments::service::audit::list(&services()?.db, &filter, page).await?)
}

fn query_link(page: u64, action: &str, actor: &str) -> String {
    let enc = crate::components::query_value;
    format!("/admin/audit?page={page}&action={}&actor={}", enc(action), enc(actor))
}

#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let page = move || query.read().get("page").and_then(|p| p.parse().ok()).unwrap_or(1u64);
    let action = move || query.read().get("action").unwrap_or_default();
    let actor = move || query.read().get("actor").unwrap_or_default();
    let data = Resource::new(move || (page(), action(), actor()), |(p, a, u)| load_audit_page(p, a, u));
    view! {
        <PageHeader
            title="Audit log"
            intro="Who did what and when, with the values before and after: sign-ins, feature toggles, parameter changes and payment actions."
        />
        <form method="get" action="/admin/audit" class="toolbar">
            <span class="filter">
                <label class="inline" for="audit-action">"Action"</label>
                <input id="audit-action" name="action" value=action placeholder="e.g. feature.enable" />
            </span>
            <span class="filter">
                <label class="inline" for="audit-actor">"User"</label>
                <input id="audit-actor" name="actor" value=actor placeholder="username" />
            </span>
            <button type="submit" class="secondary">"Filter"</button>
        </form>
        {loaded(data, move |d: AuditPageData| {
            let rows = d
                .entries
                .into_iter()
                .map(|e| {
                        let action = e.action.clone();
                    view! {
                        <tr data-action=action>
                            <td class="nowrap">{e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string()}</td>
                            <td>{e.actor}</td>
                            <td><code>{e.action}</code></td>
                            <td>{e.subject}</td>
                            <td><code class="json">{e.before.unwrap_or_default()}</code></td>
                            <td><code class="json">{e.after.unwrap_or_default()}</code></td>
                        </tr>
                    }
                })
                .collect_view();
            let (a, u) = (action(), actor());
            view! {
                <table class="grid audit">
                    {table_head(&["When", "User", "Action", "Subject", "Before", "After"])}
                    <tbody>{rows}</tbody>
                </table>
                {pager(d.page, d.pages, d.total, ("entry", "entries"), move |n| query_link(n, &a, &u))}
            }
        })}
    }
}
