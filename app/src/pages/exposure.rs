//! Authorization exposure (seeds 001/002, issue #44): how much open authorizations hold on
//! customers' cards against what their orders still have to charge. At the top the totals per
//! currency, then the customers, then the orders, the largest excess first; an order whose holds
//! exceed its need is flagged with what Release would do, and Release does it.
use crate::components::{loaded, successes, table_head, PageHeader, SubmitButton};
use crate::error::AppError;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use payments::domain::exposure::{ExposurePage, OrderExposure};

#[server(endpoint = "authorization_exposure")]
pub async fn authorization_exposure(only_excess: bool, customer_id: Option<i32>, page: u64) -> Result<ExposurePage, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance]).await?;
    Ok(payments::service::exposure::page(&services()?, &payments::domain::exposure::ExposureFilter { only_excess, customer_id }, page).await?)
}

/// Releases what an order's authorizations hold beyond its need (finance only; audited).
#[server(endpoint = "release_excess_hold")]
pub async fn release_excess_hold(order_id: i32) -> Result<String, AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Finance]).await?;
    Ok(payments::service::exposure::release_excess(&services()?, &user.username, order_id).await?)
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The page's own address with `only`, `customer` and `page` set.
fn href(only_excess: bool, customer: Option<i32>, page: u64) -> String {
    let mut q = vec![format!("show={}", if only_excess { "excess" } else { "all" })];
    if let Some(c) = customer {
        q.push(format!("customer={c}"));
    }
    if page > 1 {
        q.push(format!("page={page}"));
    }
    format!("/payments/exposure?{}", q.join("&"))
}

fn order_row(o: OrderExposure, release: ServerAction<ReleaseExcessHold>) -> impl IntoView {
    let flagged = o.excess.minor() > 0;
    let order = format!("/orders/{}", o.order_id);
    let holds = o
        .holds
        .iter()
        .map(|h| {
            let link = format!("/payments/authorizations/{}", h.payment_line_id);
            view! {
                <li>
                    <a href=link title=h.reference.clone()>{payments::domain::exposure::short_reference(&h.reference)}</a>
                    " " <span class="muted small">{format!("{} · {} · until {}", h.card, h.left, h.expires_at.format("%Y-%m-%d"))}</span>
                </li>
            }
        })
        .collect_view();
    let judgement = match (&o.waiting, flagged) {
        (Some(why), _) => view! { <span class="badge warn">"Not judged"</span> <p class="small muted">{format!("Waiting: {why}")}</p> }.into_any(),
        (None, true) => {
            let steps = o.release_steps.iter().map(|s| view! { <li>{s.clone()}</li> }).collect_view();
            let pending = release.pending();
            view! {
                <span class="badge bad">{format!("Exceeds by {}", o.excess)}</span>
                <ul class="small plain">{steps}</ul>
                <ActionForm action=release>
                    <input type="hidden" name="order_id" value=o.order_id />
                    <SubmitButton pending=pending class="secondary">"Release the excess"</SubmitButton>
                </ActionForm>
            }
            .into_any()
        }
        (None, false) => view! { <span class="badge on">"Covered"</span> }.into_any(),
    };
    view! {
        <tr data-order=o.order_number.clone() data-flagged=flagged.to_string()>
            <td class="nowrap"><a href=order>{o.order_number.clone()}</a><br /><span class="muted small">{format!("{} · {}", o.channel_name, o.order_status.label())}</span></td>
            <td>{o.customer_account.clone()}<br /><span class="muted small">{o.customer_name.clone()}</span></td>
            <td><ul class="plain">{holds}</ul></td>
            <td class="num">{o.held.to_string()}</td>
            <td class="num">{o.need.map_or_else(|| "—".to_string(), |n| n.to_string())}</td>
            <td data-testid="judgement">{judgement}</td>
        </tr>
    }
}

#[component]
pub fn ExposurePage() -> impl IntoView {
    let query = use_query_map();
    let only_excess = move || query.read().get("show").as_deref() != Some("all");
    let customer = move || query.read().get("customer").and_then(|c| c.parse::<i32>().ok());
    let page = move || query.read().get("page").and_then(|p| p.parse().ok()).unwrap_or(1u64);
    let release = ServerAction::<ReleaseExcessHold>::new();
    let releases = successes(move || matches!(release.value().get(), Some(Ok(_))));
    let data = Resource::new(move || (only_excess(), customer(), page(), releases.get()), |(o, c, p, _)| authorization_exposure(o, c, p));
    view! {
        <PageHeader
            title="Authorization exposure"
            intro="What open authorizations hold on customers' cards against what their orders still have to charge (what is left to invoice, less any deposit). Holds beyond that block the customer's card for nothing: release them. An order whose payment is under way is not judged until it settles."
        />
        {crate::components::said(release.value())}
        {loaded(data, move |p: ExposurePage| {
            let (only, cust) = (only_excess(), customer());
            let totals = p.totals.iter().map(|t| {
                let excess_class = if t.flagged > 0 { "standing attention" } else { "standing" };
                view! {
                <div class="standing" data-testid="held-total">
                    <strong>{t.held.to_string()}</strong>
                    <span class="small">{format!("held on customers' cards by {}", count(t.orders, "order", "orders"))}</span>
                </div>
                <div class=excess_class data-testid="excess-total">
                    <strong>{t.excess.to_string()}</strong>
                    <span class="small">{match t.flagged {
                        0 => "held beyond what the orders still have to charge".to_string(),
                        1 => "held beyond what 1 flagged order still has to charge".to_string(),
                        n => format!("held beyond what {n} flagged orders still have to charge"),
                    }}</span>
                </div>
                }
            }).collect_view();
            let customers = p.customers.iter().map(|c| {
                let link = href(only, Some(c.customer_id), 1);
                let chosen = cust == Some(c.customer_id);
                view! {
                    <tr data-customer=c.account.clone() class=if chosen { "selected" } else { "" }>
                        <td><a href=link>{c.account.clone()}</a><br /><span class="muted small">{c.name.clone()}</span></td>
                        <td class="num">{c.orders}</td>
                        <td class="num">{c.flagged}</td>
                        <td class="num">{c.held.to_string()}</td>
                        <td class="num">{c.need.to_string()}</td>
                        <td class="num">{if c.excess.minor() > 0 { view! { <strong>{c.excess.to_string()}</strong> }.into_any() } else { view! { "—" }.into_any() }}</td>
                    </tr>
                }
            }).collect_view();
            let empty = p.totals.is_empty();
            let link = move |n: u64| href(only, cust, n);
            view! {
                {if empty {
                    view! { <p class="notice success" role="status">"No authorization holds money on a customer's card."</p> }.into_any()
                } else {
                    view! {
                        <section class="panel"><div class="standing-grid">{totals}</div></section>
                        <section class="panel">
                            <h2>"By customer"</h2>
                            <table class="grid compact" data-testid="customers">
                                {table_head(&["Customer", "n:Orders", "n:Flagged", "n:Held", "n:Still to charge", "n:Beyond need"])}
                                <tbody>{customers}</tbody>
                            </table>
                        </section>
                    }.into_any()
                }}
                <section class="panel">
                    <div class="toolbar">
                        <h2>"By order"</h2>
                        <nav class="segmented" aria-label="Which orders">
                            <a href=href(true, cust, 1) aria-current=if only { Some("page") } else { None }>"Holds beyond need"</a>
                            <a href=href(false, cust, 1) aria-current=if only { None } else { Some("page") }>"Every order with a hold"</a>
                        </nav>
                        {cust.map(|_| view! { <a href=href(only, None, 1)>"All customers"</a> })}
                    </div>
                    {if p.orders.is_empty() {
                        view! { <p class="muted">{if only { "No order holds more than it still has to charge." } else { "No order has a hold." }}</p> }.into_any()
                    } else {
                        view! {
                            <table class="grid" data-testid="orders">
                                {table_head(&["Sales order", "Customer", "Open authorizations", "n:Held", "n:Still to charge", "Exposure"])}
                                <tbody>{p.orders.into_iter().map(|o| order_row(o, release)).collect_view()}</tbody>
                            </table>
                        }.into_any()
                    }}
                    <p class="pager">
                        {(p.page > 1).then(|| view! { <a href=link(p.page - 1)>"← Previous"</a> " " })}
                        {format!("Page {} of {} · {}", p.page, p.pages, count(p.total, "order", "orders"))}
                        {(p.page < p.pages).then(|| view! { " " <a href=link(p.page + 1)>"Next →"</a> })}
                    </p>
                </section>
            }
        })}
    }
}
