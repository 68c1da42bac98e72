//! Open customer invoices (Accounts receivable, seed 000: "select the invoice, then Incomplete
//! cards payment"): invoices and credit notes whose receivable is not settled, with what is open
//! and where the card payment stands. Selecting one offers Incomplete cards payment, enabled only
//! for an invoice related to a card payment, which opens that page filtered to the invoice; with
//! nothing selected it opens all of them.
use crate::components::{loaded, pager, table_head, PageHeader};
use crate::error::AppError;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use payments::domain::payment_views::OpenInvoicePage;

#[server(endpoint = "open_invoices")]
pub async fn open_invoices(page: u64) -> Result<OpenInvoicePage, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance]).await?;
    Ok(payments::service::open_invoices::list(&services()?, page).await?)
}

#[component]
pub fn OpenInvoicesPage() -> impl IntoView {
    let query = use_query_map();
    let page = move || query.read().get("page").and_then(|p| p.parse::<u64>().ok()).unwrap_or(1);
    let data = Resource::new(page, open_invoices);
    // The invoice selected: its id and whether it is related to a card payment.
    let selected = RwSignal::new(None::<(i32, String, bool)>);
    view! {
        <PageHeader
            title="Open customer invoices"
            intro="Invoices and credit notes whose receivable is not settled, newest first: what is open comes from the journals posted for each. Select one to work its card payment."
        />
        <div class="toolbar">
            {move || match selected.get() {
                None => view! {
                    <a class="button secondary" href="/payments/incomplete">"Incomplete cards payment"</a>
                    <span class="muted small">"Nothing selected: all incomplete card payments."</span>
                }.into_any(),
                Some((id, number, true)) => view! {
                    <a class="button primary" href=format!("/payments/incomplete?invoice={id}")>"Incomplete cards payment"</a>
                    <span class="muted small">{format!("For {number}.")}</span>
                }.into_any(),
                Some((_, number, false)) => view! {
                    <button type="button" class="secondary" disabled=true>"Incomplete cards payment"</button>
                    <span class="muted small" data-testid="not-card">{format!("{number} is not related to a card payment.")}</span>
                }.into_any(),
            }}
        </div>
        {loaded(data, move |d: OpenInvoicePage| {
            if d.rows.is_empty() {
                return view! { <p class="panel muted" data-testid="no-open-invoices">"No open invoice: every receivable is settled."</p> }.into_any();
            }
            let rows = d.rows.iter().map(|r| {
                let pick = (r.invoice_id, r.number.clone(), r.card_related);
                let status = match (r.card_status, r.card_related) {
                    (Some(s), _) => s.label().to_string(),
                    (None, true) => "No card payment process".to_string(),
                    (None, false) => "Not paid by card".to_string(),
                };
                view! {
                    <tr data-invoice=r.number.clone()>
                        <td>
                            <input type="radio" name="selected_invoice" aria-label=format!("Select {}", r.number)
                                on:change=move |_| selected.set(Some(pick.clone())) />
                        </td>
                        <td class="nowrap">{r.number.clone()}</td>
                        <td class="nowrap"><a href=format!("/orders/{}", r.order_id)>{r.order_number.clone()}</a></td>
                        <td>{format!("{} · {}", r.customer_account, r.customer_name)}</td>
                        <td class="nowrap">{r.posted_at.format("%Y-%m-%d").to_string()}</td>
                        <td class="num">{r.amount.to_string()}</td>
                        <td class="num" data-testid="open">{r.open.to_string()}</td>
                        <td>
                            {status}
                            {r.process_id.map(|id| {
                                let label = if r.card_status == Some(payments::domain::pipeline::ProcessStatus::Terminated) { "Settle" } else { "Stages" };
                                view! { " · " <a href=format!("/payments/process/{id}")>{label}</a> }
                            })}
                        </td>
                    </tr>
                }
            }).collect_view();
            view! {
                <table class="grid" data-testid="open-invoices">
                    {table_head(&["", "Invoice", "Order", "Customer", "Posted", "n:Amount", "n:Open", "Card payment"])}
                    <tbody>{rows}</tbody>
                </table>
                {pager(d.page, d.pages, d.total, ("open invoice", "open invoices"), |n| format!("/invoices/open?page={n}"))}
            }.into_any()
        })}
    }
}
