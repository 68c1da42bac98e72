//! Authorization management (R-AUT-5): card payment lines by payment status (Pending
//! Authorization among them) with Expired, customer account, sales order and payment status; a
//! detail view with the card and the authorization responses, the link to take a new payment on
//! the order, and the manual void of an expired line where that feature is on.
use crate::components::{loaded, successes, table_head, PageHeader, SubmitButton};
use crate::error::AppError;
use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};
use payments::domain::order::PaymentStatus;
use payments::domain::payment_views::{AuthorizationDetail, AuthorizationPage, AuthorizationRow};

#[server(endpoint = "authorization_list")]
pub async fn authorization_list(status: String, page: u64) -> Result<AuthorizationPage, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance, payments::Role::CallCenter]).await?;
    Ok(payments::service::authorizations::list(&services()?, &status, page).await?)
}

#[server(endpoint = "authorization_detail")]
pub async fn load_authorization_detail(payment_line_id: i32) -> Result<AuthorizationDetail, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance, payments::Role::CallCenter]).await?;
    Ok(payments::service::authorizations::detail(&services()?, payment_line_id).await?)
}

/// R-AUT-5: void an expired line by hand (finance only; audited).
#[server(endpoint = "void_expired_line")]
pub async fn void_expired_line(payment_line_id: i32) -> Result<String, AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Finance]).await?;
    Ok(payments::service::authorizations::void_expired(&services()?, &user.username, payment_line_id).await?)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

pub fn payment_badge(status: PaymentStatus) -> impl IntoView {
    let class = match status {
        PaymentStatus::Authorized | PaymentStatus::Paid => "badge on",
        PaymentStatus::PendingAuthorization => "badge warn",
        PaymentStatus::Declined | PaymentStatus::Voided => "badge bad",
        PaymentStatus::Replaced => "badge off",
    };
    view! { <span class=class data-payment-status=status.code()>{status.label()}</span> }
}

fn row_view(r: AuthorizationRow) -> impl IntoView {
    let detail = format!("/payments/authorizations/{}", r.payment_line_id);
    let order = format!("/orders/{}", r.order_id);
    let expired = r.expired();
    view! {
        <tr data-order=r.order_number.clone()>
            <td class="nowrap"><a href=order>{r.order_number.clone()}</a><br /><span class="muted small">{r.channel_name.clone()}</span></td>
            <td>{r.customer_account.clone()}<br /><span class="muted small">{r.customer_name.clone()}</span></td>
            <td>{r.card.clone()}<br /><span class="muted small">{r.token_kind.label()}</span></td>
            <td class="num">{r.amount.to_string()}</td>
            <td>{payment_badge(r.payment_status)}<br /><a class="small" href=detail>"Details"</a></td>
            <td data-testid="expired">{if expired { view! { <span class="badge bad">"Yes"</span> }.into_any() } else { view! { "No" }.into_any() }}</td>
            <td class="nowrap">{r.authorization.as_ref().map(|a| a.expires_at.format("%Y-%m-%d").to_string())}</td>
            <td>{r.order_status.label()} {r.do_not_process.then(|| view! { <br /> <span class="badge bad">"Do not process"</span> })}</td>
        </tr>
    }
}

#[component]
pub fn AuthorizationsPage() -> impl IntoView {
    let query = use_query_map();
    let status = move || query.read().get("status").unwrap_or_default();
    let page = move || query.read().get("page").and_then(|p| p.parse().ok()).unwrap_or(1u64);
    let data = Resource::new(move || (status(), page()), |(s, p)| authorization_list(s, p));
    view! {
        <PageHeader
            title="Authorization management"
            intro="Card payment lines and their authorizations. An expired authorization returns its payment to Pending Authorization and holds the order (Do not process) until a new payment is taken."
        />
        // The same filter bar as the Sales orders list: label beside its field, an outlined button.
        <form method="get" class="toolbar">
            <label class="inline" for="authorization-status">"Status"</label>
            <select id="authorization-status" name="status">
                <option value="" selected=move || status().is_empty()>"All"</option>
                {PaymentStatus::ALL.iter().map(|s| {
                    let code = s.code();
                    view! { <option value=code selected=move || status() == code>{s.label()}</option> }
                }).collect_view()}
                <option value="expired" selected=move || status() == "expired">"Expired authorizations"</option>
            </select>
            <button type="submit" class="secondary">"Filter"</button>
        </form>
        {loaded(data, move |p: AuthorizationPage| {
            let status = status();
            let link = move |n: u64| format!("/payments/authorizations?status={}&page={n}", status);
            view! {
                {if p.rows.is_empty() {
                    view! { <p class="muted">"No card payment lines match."</p> }.into_any()
                } else {
                    view! {
                        <table class="grid compact">
                            {table_head(&["Sales order", "Customer account", "Card", "n:Amount", "Payment status", "Expired", "Expires", "Order"])}
                            <tbody>{p.rows.into_iter().map(row_view).collect_view()}</tbody>
                        </table>
                    }.into_any()
                }}
                <p class="pager">
                    {(p.page > 1).then(|| view! { <a href=link(p.page - 1)>"← Previous"</a> " " })}
                    {format!("Page {} of {} · {} lines", p.page, p.pages, p.total)}
                    {(p.page < p.pages).then(|| view! { " " <a href=link(p.page + 1)>"Next →"</a> })}
                </p>
            }
        })}
    }
}

#[component]
pub fn AuthorizationDetailPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|v| v.parse::<i32>().ok()).unwrap_or(0);
    let void = ServerAction::<VoidExpiredLine>::new();
    let voids = successes(move || matches!(void.value().get(), Some(Ok(_))));
    let data = Resource::new(move || (id(), voids.get()), |(id, _)| load_authorization_detail(id));
    view! {
        {crate::components::said(void.value())}
        {loaded(data, move |d: AuthorizationDetail| {
            let r = d.row.clone();
            let order = format!("/orders/{}", r.order_id);
            let new_payment = payments::domain::payment_views::new_payment_link(r.order_id, r.channel_id);
            let needs_payment = r.do_not_process
                || matches!(r.payment_status, PaymentStatus::PendingAuthorization | PaymentStatus::Declined | PaymentStatus::Voided);
            view! {
                <leptos_meta::Title text=format!("Authorization · {}", r.order_number) />
                <div class="page-header">
                    <h1>"Payment of " <a href=order.clone()>{r.order_number.clone()}</a> " " {payment_badge(r.payment_status)}</h1>
                    <p class="intro"><a href="/payments/authorizations">"← Authorization management"</a></p>
                </div>
                <section class="panel">
                    <h2>"Customer and order"</h2>
                    <dl class="detail-grid">
                        <dt>"Customer account"</dt><dd>{format!("{} · {}", r.customer_account, r.customer_name)}</dd>
                        <dt>"Sales order"</dt><dd><a href=order.clone()>{r.order_number.clone()}</a> {format!(" · {} · {}", r.channel_name, r.order_status.label())}</dd>
                        <dt>"Do not process"</dt><dd data-testid="do-not-process">{yes_no(r.do_not_process)}</dd>
                        <dt>"Payment status"</dt><dd>{r.payment_status.label()}</dd>
                        <dt>"Left to invoice"</dt><dd>{d.balance.to_string()}</dd>
                    </dl>
                    {needs_payment.then(|| view! {
                        <div class="actions">
                            <a class="button primary" rel="external" href=new_payment.clone()>"Take a new payment"</a>
                            <span class="muted small">" Enter a new card for the order's balance; once authorized the order leaves Do not process."</span>
                        </div>
                    })}
                </section>
                <section class="panel">
                    <h2>"Credit card"</h2>
                    <dl class="detail-grid">
                        <dt>"Card"</dt><dd>{r.card.clone()}</dd>
                        <dt>"Card holder"</dt><dd>{d.holder.clone()}</dd>
                        <dt>"Card expiry"</dt><dd>{d.expiry.clone()}</dd>
                        <dt>"Token"</dt><dd>{r.token_kind.label()}</dd>
                        <dt>"Pre-authorization duration"</dt>
                        <dd>{match d.pre_authorization_days {
                            Some(n) => format!("{n} days (store and payment type)"),
                            None => format!("not set for the store and payment type; Number of days before expired: {} days", d.ar_days_before_expired),
                        }}</dd>
                    </dl>
                </section>
                <section class="panel">
                    <h2>"Authorization responses"</h2>
                    {if d.responses.is_empty() {
                        view! { <p class="muted">"Never authorized."</p> }.into_any()
                    } else {
                        view! {
                            <table class="grid">
                                {table_head(&["Reference", "Status", "Expired", "n:Amount", "n:Captured", "Multiple captures", "Method", "Authorized", "Expires"])}
                                <tbody>
                                    {d.responses.iter().map(|a| view! {
                                        <tr>
                                            <td class="break">{a.processor_reference.clone()}<br /><span class="muted small">{format!("tracking id {}", a.tracking_id)}</span></td>
                                            <td>{a.status.label()}</td>
                                            <td>{yes_no(a.expired)}</td>
                                            <td class="num">{a.amount.to_string()}</td>
                                            <td class="num">{a.captured.to_string()}</td>
                                            <td>{yes_no(a.supports_multiple_captures)}</td>
                                            <td>{a.payment_method_variant.clone()}</td>
                                            <td class="nowrap">{a.authorized_at.format("%Y-%m-%d").to_string()}<br /><span class="muted small">{a.authorized_at.format("%H:%M UTC").to_string()}</span></td>
                                            <td class="nowrap">{a.expires_at.format("%Y-%m-%d").to_string()}<br /><span class="muted small">{a.expires_at.format("%H:%M UTC").to_string()}</span></td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any()
                    }}
                    {match d.void_refusal.clone() {
                        None => view! {
                            <ActionForm action=void>
                                <input type="hidden" name="payment_line_id" value=r.payment_line_id />
                                <div class="actions"><SubmitButton pending=void.pending()>"Void expired line"</SubmitButton>
                                <span class="muted small">" Releases the expired authorization at the processor; audited."</span></div>
                            </ActionForm>
                        }.into_any(),
                        Some(why) => view! { <p class="muted small">{why}</p> }.into_any(),
                    }}
                </section>
                {(!d.consents.is_empty()).then(|| view! {
                    <section class="panel">
                        <h2>"Consents"</h2>
                        <ul>
                            {d.consents.iter().map(|c| view! {
                                <li>{format!("{} by {} on {}: ", c.kind.replace('_', " "), c.given_by, c.given_at.format("%Y-%m-%d %H:%M UTC"))}<span class="muted">{c.text_shown.clone()}</span></li>
                            }).collect_view()}
                        </ul>
                    </section>
                })}
            }
        })}
    }
}
