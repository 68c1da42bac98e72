//! Reconciliation (R-LED-1, R-LED-2, issue #44): whether the money adds up, order by order. At the
//! top, what was checked and the breaks by cause with their value; below, every break, oldest
//! first, with what happened and what resolves it; the same as CSV and as `paystage reconcile`.
use crate::components::{loaded, table_head, PageHeader};
use crate::error::AppError;
use leptos::prelude::*;
use payments::domain::reconciliation::ReconciliationReport;

#[server(endpoint = "reconciliation")]
pub async fn reconciliation() -> Result<ReconciliationReport, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance]).await?;
    Ok(payments::service::reconciliation::report(&services()?).await?)
}

#[component]
pub fn ReconciliationPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| reconciliation());
    view! {
        <PageHeader
            title="Reconciliation"
            intro="Per order, what the processor moved (captured less refunded) against the card payment journals posted, and everything else that leaves money unaccounted for. Each break says what happened and what resolves it; work still in flight is not a break yet."
        />
        {loaded(data, move |r: ReconciliationReport| {
            let clean = r.breaks.is_empty();
            let summary = format!(
                "{} orders checked on {} · {}",
                r.checked_orders,
                r.as_of.format("%Y-%m-%d %H:%M UTC"),
                match r.breaks.len() {
                    0 => "no break: the money adds up".to_string(),
                    1 => "1 break".to_string(),
                    n => format!("{n} breaks"),
                }
            );
            let rows = r.breaks.iter().map(|b| {
                let order = format!("/orders/{}", b.order_id);
                let age = match r.age_days(b) {
                    0 => "today".to_string(),
                    1 => "1 day".to_string(),
                    n => format!("{n} days"),
                };
                view! {
                    <tr data-break=b.cause.code()>
                        <td>{b.cause.label()}</td>
                        <td class="nowrap"><a href=order>{b.order_number.clone()}</a></td>
                        <td class="num">{payments::domain::reconciliation::minor(b.amount_minor, &b.currency)}</td>
                        <td class="nowrap">{age}</td>
                        <td>{b.detail.clone()}</td>
                        <td>{b.action.clone()}</td>
                    </tr>
                }
            }).collect_view();
            let causes = r.by_cause.iter().map(|c| view! {
                <tr data-cause=c.cause.code() class=if c.count == 0 { "muted" } else { "" }>
                    <td>{c.cause.label()}</td>
                    <td class="num">{c.count}</td>
                    <td class="num">{if c.value.is_empty() { "—".to_string() } else { c.value.join(" · ") }}</td>
                </tr>
            }).collect_view();
            view! {
                <section class="panel">
                    <h2>"Summary"</h2>
                    <div class=if clean { "notice success" } else { "notice warning" } role="status" data-testid="reconciliation-summary">{summary}</div>
                    <table class="grid compact">
                        {table_head(&["Cause", "n:Breaks", "n:Value"])}
                        <tbody>{causes}</tbody>
                    </table>
                </section>
                <section class="panel">
                    <div class="toolbar">
                        <h2>"Breaks"</h2>
                        <a class="button secondary" rel="external" href="/reconciliation.csv" download="reconciliation-breaks.csv">"Export CSV"</a>
                    </div>
                    {if clean {
                        view! { <p class="muted">"Nothing to resolve."</p> }.into_any()
                    } else {
                        view! {
                            <table class="grid" data-testid="breaks">
                                {table_head(&["Cause", "Order", "n:Amount", "Open for", "What happened", "What resolves it"])}
                                <tbody>{rows}</tbody>
                            </table>
                        }.into_any()
                    }}
                </section>
            }
        })}
    }
}
