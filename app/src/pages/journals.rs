//! Journals: every posted journal with filters, paging and CSV export (R-LED-*).
use crate::components::{loaded, pager, table_head, PageHeader};
use crate::error::AppError;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use payments::domain::order::JournalKind;
use payments::domain::payment_views::{JournalPage, JournalView};

#[server(endpoint = "list_journals")]
pub async fn list_journals(order: String, customer: String, kind: String, from: String, to: String, page: u64) -> Result<JournalPage, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance]).await?;
    let filter = payments::domain::payment_views::JournalFilter { order: Some(order), customer: Some(customer), kind: Some(kind), from: Some(from), to: Some(to) };
    Ok(payments::service::journals::list(&services()?.db, &filter, page).await?)
}

fn journals_link(q: &[(&str, String)], page: u64, csv: bool) -> String {
    let enc = crate::components::query_value;
    let mut out = if csv { "/journals.csv?".to_string() } else { format!("/journals?page={page}&") };
    out.push_str(&q.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect::<Vec<_>>().join("&"));
    out
}

/// One journal: number, type, Prepayment journal voucher flag, order, customer, tender, lines.
pub fn journal_view(j: &JournalView) -> impl IntoView {
    view! {
        <div class="journal" data-journal=j.number.clone()>
            <p>
                <strong>{j.number.clone()}</strong>
                " · "{j.kind_label.clone()}
                {j.prepayment.then(|| view! { " " <span class="badge warn" title="Prepayment journal voucher">"Prepayment journal voucher"</span> })}
                " · "{j.description.clone()}
                <span class="muted small">{format!(
                    " · posted {}{}",
                    j.posted_at.format("%Y-%m-%d %H:%M"),
                    j.tender.map(|t| format!(" · {}", t.label().to_lowercase())).unwrap_or_default()
                )}</span>
            </p>
            <table class="grid nested">
                {table_head(&["Account", "n:Debit", "n:Credit"])}
                <tbody>
                    {j.lines.iter().map(|l| view! {
                        <tr>
                            <td>{l.account.clone()}</td>
                            <td class="num">{(l.debit.minor() != 0).then(|| l.debit.to_string())}</td>
                            <td class="num">{(l.credit.minor() != 0).then(|| l.credit.to_string())}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
pub fn JournalsPage() -> impl IntoView {
    let query = use_query_map();
    let get = move |k: &'static str| move || query.read().get(k).unwrap_or_default();
    let (order, customer, kind, from, to) = (get("order"), get("customer"), get("kind"), get("from"), get("to"));
    let page = move || query.read().get("page").and_then(|p| p.parse().ok()).unwrap_or(1u64);
    let data = Resource::new(
        move || (order(), customer(), kind(), from(), to(), page()),
        |(o, c, k, f, t, p)| list_journals(o, c, k, f, t, p),
    );
    view! {
        <PageHeader
            title="Journals"
            intro="Every posted journal: customer invoices, card and cash payments, deposits (Prepayment journal voucher), settlements, refunds and cancellation charges. Journals never change; a correction is a new journal."
        />
        {move || {
            let q = vec![("order", order()), ("customer", customer()), ("kind", kind()), ("from", from()), ("to", to())];
            let csv = journals_link(&q, 1, true);
            let k = kind();
            view! {
                <form method="get" action="/journals" class="toolbar">
                    <span class="filter">
                        <label class="inline" for="j-order">"Order"</label>
                        <input id="j-order" name="order" value=order() placeholder="SO-000001" size="10" />
                    </span>
                    <span class="filter">
                        <label class="inline" for="j-customer">"Customer"</label>
                        <input id="j-customer" name="customer" value=customer() placeholder="account or name" size="12" />
                    </span>
                    <span class="filter">
                        <label class="inline" for="j-kind">"Type"</label>
                        <select id="j-kind" name="kind">
                            <option value="">"All"</option>
                            {JournalKind::ALL.iter().map(|jk| view! { <option value=jk.code() selected=k == jk.code()>{jk.label()}</option> }).collect_view()}
                        </select>
                    </span>
                    <span class="filter">
                        <label class="inline" for="j-from">"From"</label>
                        <input id="j-from" name="from" type="date" value=from() />
                    </span>
                    <span class="filter">
                        <label class="inline" for="j-to">"To"</label>
                        <input id="j-to" name="to" type="date" value=to() />
                    </span>
                    <button type="submit" class="secondary">"Filter"</button>
                    <a class="button secondary" rel="external" href=csv download="journals.csv">"Export CSV"</a>
                </form>
            }
        }}
        {loaded(data, move |d: JournalPage| {
            let q = vec![("order", order()), ("customer", customer()), ("kind", kind()), ("from", from()), ("to", to())];
            view! {
                {if d.rows.is_empty() {
                    view! { <p class="muted">"No journal matches."</p> }.into_any()
                } else {
                    view! {
                        <table class="grid" data-testid="journals">
                            {table_head(&["Journal", "Type", "Prepayment journal voucher", "Order · customer", "Lines"])}
                            <tbody>
                                {d.rows.iter().map(|j| view! {
                                    <tr data-journal=j.number.clone() data-kind=j.kind_label.clone()>
                                        <td class="nowrap">{j.number.clone()}<div class="muted small">{j.posted_at.format("%Y-%m-%d %H:%M").to_string()}</div></td>
                                        <td>
                                            {j.kind_label.clone()}
                                            {j.tender.map(|t| view! { " · " <span class="muted">{t.label()}</span> })}
                                            <div class="muted small">{j.description.clone()}</div>
                                        </td>
                                        <td>{if j.prepayment { "Yes" } else { "No" }}</td>
                                        <td>
                                            {j.order_id.map(|id| view! { <a href=format!("/orders/{id}")>{j.order_number.clone().unwrap_or_default()}</a> })}
                                            <div class="small">{j.customer.clone().unwrap_or_default()}</div>
                                        </td>
                                        <td>
                                            <table class="grid nested">
                                                <tbody>{j.lines.iter().map(|l| view! {
                                                    <tr>
                                                        <td>{l.account.clone()}</td>
                                                        <td class="num nowrap">{(l.debit.minor() != 0).then(|| format!("Dr {}", l.debit))}</td>
                                                        <td class="num nowrap">{(l.credit.minor() != 0).then(|| format!("Cr {}", l.credit))}</td>
                                                    </tr>
                                                }).collect_view()}</tbody>
                                            </table>
                                        </td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                }}
                {pager(d.page, d.pages, d.total, ("journal", "journals"), move |n| journals_link(&q, n, false))}
            }
        })}
    }
}
