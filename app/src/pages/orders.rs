//! Sales orders: the list with filters and paging, and the order page with lines, payment lines,
//! authorizations with their captures nested under them (R-CAP-6), invoices with the state of their
//! payment process, journals, and the Invoice action for chosen lines and quantities.
use crate::components::{loaded, pager, table_head, PageHeader};
use crate::error::AppError;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use payments::domain::order::OrderStatus;
use payments::domain::payment_views::OrderPage;
use payments::domain::pipeline::ProcessStatus;
use payments::domain::views::ChannelView;

#[server(endpoint = "list_orders")]
pub async fn list_orders(status: String, customer: String, channel: String, page: u64) -> Result<(OrderPage, Vec<ChannelView>), AppError> {
    use crate::auth::ssr::{require, services};
    use payments::Role;
    require(&[Role::Finance, Role::CallCenter]).await?;
    let s = services()?;
    let filter = payments::domain::payment_views::OrderFilter { status: Some(status), customer: Some(customer), channel: Some(channel) };
    let page = payments::service::orders::list(&s.db, &filter, page).await?;
    Ok((page, payments::service::setup::channels(&s.db).await?))
}

pub fn status_badge(status: OrderStatus) -> impl IntoView {
    let class = match status {
        OrderStatus::Invoiced => "badge on",
        OrderStatus::PartiallyInvoiced => "badge warn",
        OrderStatus::Open => "badge off",
        OrderStatus::Cancelled => "badge bad",
    };
    view! { <span class=class>{status.label()}</span> }
}

pub fn process_badge(status: ProcessStatus) -> impl IntoView {
    let class = match status {
        ProcessStatus::Completed => "badge on",
        ProcessStatus::Incomplete | ProcessStatus::NotPosted => "badge bad",
        ProcessStatus::Running => "badge warn",
        ProcessStatus::Terminated | ProcessStatus::Reversed => "badge off",
    };
    view! { <span class=class data-process-status=status.code()>{status.label()}</span> }
}

fn list_link(page: u64, status: &str, customer: &str, channel: &str) -> String {
    let enc = crate::components::query_value;
    format!("/orders?page={page}&status={}&customer={}&channel={}", enc(status), enc(customer), enc(channel))
}

#[component]
pub fn OrdersPage() -> impl IntoView {
    let query = use_query_map();
    let get = move |k: &'static str| move || query.read().get(k).unwrap_or_default();
    let (status, customer, channel) = (get("status"), get("customer"), get("channel"));
    let page = move || query.read().get("page").and_then(|p| p.parse().ok()).unwrap_or(1u64);
    let data = Resource::new(move || (status(), customer(), channel(), page()), |(s, c, ch, p)| list_orders(s, c, ch, p));
    view! {
        <PageHeader
            title="Sales orders"
            intro="Orders taken in stores, the call center and the web shop, with where their card payments stand."
        />
        <div class="toolbar">
            <a class="button primary" href="/orders/new">"New sales order"</a>
        </div>
        {loaded(data, move |(d, channels): (OrderPage, Vec<ChannelView>)| {
            let (st, cu, ch) = (status(), customer(), channel());
            let status_options = OrderStatus::ALL
                .iter()
                .map(|s| view! { <option value=s.code() selected=st == s.code()>{s.label()}</option> })
                .collect_view();
            let channel_options = channels
                .into_iter()
                .map(|c| {
                    let id = c.id.to_string();
                    view! { <option value=id.clone() selected=ch == id>{c.name}</option> }
                })
                .collect_view();
            let rows = d
                .rows
                .iter()
                .map(|o| {
                    let href = format!("/orders/{}", o.id);
                    view! {
                        <tr data-order=o.number.clone()>
                            <td class="nowrap"><a href=href>{o.number.clone()}</a></td>
                            <td>{o.customer_account.clone()}" · "{o.customer_name.clone()}</td>
                            <td>{o.channel_name.clone()}</td>
                            <td>
                                {status_badge(o.status)}
                                {o.do_not_process.then(|| view! { <span class="badge bad">"Do not process"</span> })}
                                {(o.incomplete > 0).then(|| view! { <span class="badge bad">{format!("{} incomplete", o.incomplete)}</span> })}
                            </td>
                            <td class="num">{o.total.to_string()}</td>
                            <td class="num">{o.invoiced.to_string()}</td>
                            <td class="nowrap">{o.created_at.format("%Y-%m-%d %H:%M").to_string()}</td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <form method="get" action="/orders" class="toolbar">
                    <span class="filter">
                        <label class="inline" for="order-status">"Status"</label>
                        <select id="order-status" name="status">
                            <option value="">"All"</option>
                            {status_options}
                            <option value="do_not_process" selected=st == "do_not_process">"Do not process"</option>
                        </select>
                    </span>
                    <span class="filter">
                        <label class="inline" for="order-customer">"Customer"</label>
                        <input id="order-customer" name="customer" value=cu.clone() placeholder="account or name" />
                    </span>
                    <span class="filter">
                        <label class="inline" for="order-channel">"Channel"</label>
                        <select id="order-channel" name="channel">
                            <option value="">"All"</option>
                            {channel_options}
                        </select>
                    </span>
                    <button type="submit" class="secondary">"Filter"</button>
                </form>
                {if d.rows.is_empty() {
                    view! { <p class="muted">"No sales order matches."</p> }.into_any()
                } else {
                    view! {
                        <table class="grid">
                            {table_head(&["Order", "Customer", "Channel", "Status", "n:Total", "n:Invoiced", "Created"])}
                            <tbody>{rows}</tbody>
                        </table>
                    }
                        .into_any()
                }}
                {pager(d.page, d.pages, d.total, ("order", "orders"), move |n| list_link(n, &st, &cu, &ch))}
            }
        })}
    }
}
