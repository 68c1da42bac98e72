//! Prepayments and deposits (R-PRE-1..5): the deposit panel and Pick up on the order page, the
//! Cancel order page with the accounting shown before the user confirms, the Customer account
//! deposit page, and the Journals page with its filters and CSV export.
use crate::components::{field_error, loaded, successes, PageHeader};
use crate::error::AppError;
use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};
use payments::domain::order::JournalKind;
use payments::domain::payment_views::{CancellationPreview, JournalPage, JournalView, PrepaymentView};
use payments::domain::views::{ChannelView, CustomerView};

/// Pickup or delivery of a prepayment order: the invoice is issued through the invoice pipeline,
/// the deposit applied, `cash` taken now, the card captured for the rest (R-PRE-2).
#[server(endpoint = "pick_up_order")]
pub async fn pick_up_order(order_id: i32, cash: String) -> Result<String, AppError> {
    use crate::auth::ssr::{require, services};
    use payments::Role;
    let user = require(&[Role::Finance, Role::CallCenter]).await?;
    Ok(payments::service::prepayments::pick_up(&services()?, &user.username, order_id, &cash).await?)
}

#[server(endpoint = "cancellation_preview")]
pub async fn load_cancellation(order_id: i32) -> Result<CancellationPreview, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance]).await?;
    Ok(payments::service::cancellation::cancel_preview(&services()?, order_id).await?)
}

/// Cancels the order; `charge` is the cancellation charge the user saw on the preview (R-PRE-4).
#[server(endpoint = "cancel_order")]
pub async fn cancel_order(order_id: i32, charge: String) -> Result<String, AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Finance]).await?;
    Ok(payments::service::cancellation::cancel(&services()?, &user.username, order_id, Some(&charge)).await?)
}

#[server(endpoint = "deposit_choices")]
pub async fn deposit_choices() -> Result<(Vec<CustomerView>, Vec<ChannelView>), AppError> {
    use crate::auth::ssr::{require, services};
    use payments::Role;
    require(&[Role::Finance, Role::CallCenter]).await?;
    let s = services()?;
    let (customers, channels) = payments::service::orders::choices(&s.db).await?;
    Ok((customers, channels.into_iter().filter(|c| c.kind == payments::domain::views::ChannelKind::PosStore).collect()))
}

/// A customer account deposit at POS (R-PRE-1).
#[server(endpoint = "take_account_deposit")]
pub async fn take_account_deposit(customer_id: String, channel_id: String, currency: String, amount: String) -> Result<String, AppError> {
    use crate::auth::ssr::{require, services};
    use payments::Role;
    let user = require(&[Role::Finance, Role::CallCenter]).await?;
    let field = |f: &str, m: &str| AppError::from(payments::error::ServiceError::field(f, m));
    let customer = customer_id.trim().parse::<i32>().map_err(|_| field("customer_id", "Choose a customer."))?;
    let channel = channel_id.trim().parse::<i32>().map_err(|_| field("channel_id", "Choose a store."))?;
    Ok(payments::service::prepayments::account_deposit(&services()?, &user.username, customer, channel, &currency, &amount).await?)
}

#[server(endpoint = "list_journals")]
pub async fn list_journals(order: String, customer: String, kind: String, from: String, to: String, page: u64) -> Result<JournalPage, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance]).await?;
    let filter = payments::domain::payment_views::JournalFilter { order: Some(order), customer: Some(customer), kind: Some(kind), from: Some(from), to: Some(to) };
    Ok(payments::service::journals::list(&services()?.db, &filter, page).await?)
}

/// The deposit panel of a prepayment order, with Pick up while something is left to pick up.
pub fn prepayment_panel(order_id: i32, p: PrepaymentView, balance_left: bool, pick_up: ServerAction<PickUpOrder>) -> impl IntoView {
    let due = p.due_at_pickup;
    let cancelled = p.cancellation_charge.is_some();
    view! {
        <section class="panel" aria-labelledby="prepayment-title" data-testid="prepayment">
            <h2 id="prepayment-title">"Prepayment"</h2>
            <div class="summary">
                <div><span class="muted small">"Deposit asked"</span><strong>{p.deposit.to_string()}</strong></div>
                <div><span class="muted small">"Deposit paid"</span><strong data-testid="deposit-paid">{p.paid_total.to_string()}</strong></div>
                <div><span class="muted small">"Applied to invoices"</span><strong>{p.applied.to_string()}</strong></div>
                <div><span class="muted small">"Due at pickup"</span><strong data-testid="due-at-pickup">{due.to_string()}</strong></div>
            </div>
            <table class="grid">
                <thead><tr><th>"Deposit paid by"</th><th class="num">"Paid"</th><th class="num">"Given back"</th></tr></thead>
                <tbody>
                    {p.paid.iter().map(|d| view! {
                        <tr data-deposit=d.tender.code()>
                            <td>{d.tender.label()}</td>
                            <td class="num">{d.paid.to_string()}</td>
                            <td class="num">{(d.refunded.minor() != 0).then(|| d.refunded.to_string())}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            {p.cancellation_charge.map(|c| view! {
                <p data-testid="cancellation-charge">{format!(
                    "Cancelled {}; cancellation charge kept: {c}.",
                    p.cancelled_at.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
                )}</p>
            })}
            {(balance_left && !cancelled).then(|| view! {
                <ActionForm action=pick_up attr:class="pickup">
                    <input type="hidden" name="order_id" value=order_id />
                    <h3>"Pick up or deliver"</h3>
                    <p class="muted small">{format!(
                        "Issues the invoice for everything left: the deposit is applied, cash taken now is posted to a cash journal, and the card authorization ({} open) is captured for the rest.",
                        p.card_authorized
                    )}</p>
                    <label for="pickup-cash">"Cash taken now"</label>
                    <input id="pickup-cash" name="cash" inputmode="decimal" placeholder=format!("0.00 – {}", due.to_decimal()) />
                    {field_error(pick_up.value(), "cash", None)}
                    <div class="actions"><button type="submit" class="primary">"Pick up and invoice"</button></div>
                </ActionForm>
            })}
        </section>
    }
}

#[component]
pub fn CancelOrderPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|v| v.parse::<i32>().ok()).unwrap_or(0);
    let cancel = ServerAction::<CancelOrder>::new();
    let preview = Resource::new(id, load_cancellation);
    view! {
        <PageHeader
            title="Cancel order"
            intro="Cancelling gives the deposit back by the tenders it was paid with, less the cancellation charge of the Commerce parameters. Here is the accounting before anything is posted."
        />
        {move || match cancel.value().get() {
            Some(Ok(m)) => Some(view! {
                <div class="notice success" role="status" data-testid="cancelled">{m}" "<a href=format!("/orders/{}", id())>"Back to the order"</a></div>
            }.into_any()),
            Some(Err(e)) => Some(view! { <div class="notice error" role="alert">{e.to_string()}</div> }.into_any()),
            None => None,
        }}
        {move || (!matches!(cancel.value().get(), Some(Ok(_)))).then(|| view! {
            {loaded(preview, move |p: CancellationPreview| {
                let charge = p.charge.to_decimal().to_string();
                view! {
                    <section class="panel" data-testid="cancel-preview">
                        <h2>{format!("{} · {}", p.order_number, p.customer)}</h2>
                        <div class="summary">
                            <div><span class="muted small">"Deposit paid"</span><strong>{p.paid.to_string()}</strong></div>
                            <div><span class="muted small">{format!("Cancellation charge ({} %)", p.percent)}</span><strong data-testid="preview-charge">{p.charge.to_string()}</strong></div>
                            <div><span class="muted small">"Refunded"</span><strong data-testid="preview-refund">{p.refund_total.to_string()}</strong></div>
                            <div><span class="muted small">"Card hold released"</span><strong>{p.release.to_string()}</strong></div>
                        </div>
                        <h3>"Refunds by tender"</h3>
                        {if p.refunds.is_empty() {
                            view! { <p class="muted">"No deposit was paid; nothing is refunded."</p> }.into_any()
                        } else {
                            view! {
                                <table class="grid">
                                    <thead><tr><th>"Tender"</th><th class="num">"Refund"</th></tr></thead>
                                    <tbody>{p.refunds.iter().map(|(t, m)| view! { <tr><td>{t.label()}</td><td class="num">{m.to_string()}</td></tr> }).collect_view()}</tbody>
                                </table>
                            }.into_any()
                        }}
                        <h3>"Journals to be posted"</h3>
                        {if p.journals.is_empty() {
                            view! { <p class="muted">"None."</p> }.into_any()
                        } else {
                            p.journals.iter().map(|(kind, lines)| view! {
                                <div class="journal" data-preview-journal=kind.clone()>
                                    <p><strong>{kind.clone()}</strong></p>
                                    <table class="grid nested">
                                        <thead><tr><th>"Account"</th><th class="num">"Debit"</th><th class="num">"Credit"</th></tr></thead>
                                        <tbody>{lines.iter().map(|l| view! {
                                            <tr>
                                                <td>{l.account.clone()}</td>
                                                <td class="num">{(l.debit.minor() != 0).then(|| l.debit.to_string())}</td>
                                                <td class="num">{(l.credit.minor() != 0).then(|| l.credit.to_string())}</td>
                                            </tr>
                                        }).collect_view()}</tbody>
                                    </table>
                                </div>
                            }).collect_view().into_any()
                        }}
                        <ActionForm action=cancel>
                            <input type="hidden" name="order_id" value=p.order_id />
                            <input type="hidden" name="charge" value=charge />
                            <div class="actions">
                                <button type="submit" class="danger">"Confirm cancellation"</button>
                                " " <a href=format!("/orders/{}", p.order_id)>"Keep the order"</a>
                            </div>
                        </ActionForm>
                    </section>
                }
            })}
        })}
    }
}

#[component]
pub fn AccountDepositPage() -> impl IntoView {
    let take = ServerAction::<TakeAccountDeposit>::new();
    let choices = Resource::new(|| (), |_| deposit_choices());
    view! {
        <PageHeader
            title="Customer account deposit"
            intro="A deposit a customer pays at the store onto their account. It is posted as a cash journal marked Prepayment journal voucher."
        />
        {move || match take.value().get() {
            Some(Ok(m)) => Some(view! { <div class="notice success" role="status" data-testid="deposit-taken">{m}</div> }.into_any()),
            Some(Err(e)) => Some(view! { <div class="notice error" role="alert">{e.to_string()}</div> }.into_any()),
            None => None,
        }}
        {loaded(choices, move |(customers, stores): (Vec<CustomerView>, Vec<ChannelView>)| view! {
            <section class="panel">
                <ActionForm action=take>
                    <div class="row-form">
                        <label class="stacked">
                            "Customer"
                            <select name="customer_id">
                                <option value="">"Choose…"</option>
                                {customers.into_iter().map(|c| view! { <option value=c.id.to_string()>{format!("{} · {}", c.account, c.name)}</option> }).collect_view()}
                            </select>
                        </label>
                        <label class="stacked">
                            "Store"
                            <select name="channel_id">
                                {stores.into_iter().map(|c| view! { <option value=c.id.to_string()>{c.name}</option> }).collect_view()}
                            </select>
                        </label>
                        <label class="stacked">
                            "Currency"
                            <select name="currency">
                                <option value="USD">"USD"</option>
                                <option value="EUR">"EUR"</option>
                            </select>
                        </label>
                        <label class="stacked">"Amount (cash)" <input name="amount" inputmode="decimal" class="amount" placeholder="0.00" /></label>
                    </div>
                    {field_error(take.value(), "customer_id", None)}
                    {field_error(take.value(), "channel_id", None)}
                    {field_error(take.value(), "amount", None)}
                    <div class="actions"><button type="submit" class="primary">"Take deposit"</button></div>
                </ActionForm>
            </section>
        })}
    }
}

fn journals_link(q: &[(&str, String)], page: u64, csv: bool) -> String {
    let enc = |s: &str| s.replace('%', "%25").replace('&', "%26").replace(' ', "+").replace('#', "%23").replace('+', "%2B");
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
                <thead><tr><th>"Account"</th><th class="num">"Debit"</th><th class="num">"Credit"</th></tr></thead>
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
            let prev = (d.page > 1).then(|| view! { <a href=journals_link(&q, d.page - 1, false)>"← Newer"</a> });
            let next = (d.page < d.pages).then(|| view! { <a href=journals_link(&q, d.page + 1, false)>"Older →"</a> });
            view! {
                {if d.rows.is_empty() {
                    view! { <p class="muted">"No journal matches."</p> }.into_any()
                } else {
                    view! {
                        <table class="grid" data-testid="journals">
                            <thead><tr><th>"Journal"</th><th>"Type"</th><th>"Prepayment journal voucher"</th><th>"Order · customer"</th><th>"Lines"</th></tr></thead>
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
                <div class="pager">
                    {prev}
                    <span class="muted">{format!("Page {} of {} · {} journals", d.page, d.pages, d.total)}</span>
                    {next}
                </div>
            }
        })}
    }
}

/// Successes of the pickup action, for the order page's reload.
pub fn pickups(a: ServerAction<PickUpOrder>) -> RwSignal<u32> {
    successes(move || matches!(a.value().get(), Some(Ok(_))))
}
