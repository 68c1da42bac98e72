//! One sales order: its lines with the Invoice action for chosen quantities, the credit note
//! (return) form, payment lines with Adjust, authorizations with their captures nested under them
//! (R-CAP-6), invoices with the state of their payment process, and journals.
use super::orders::{process_badge, status_badge};
use crate::components::{cleared_on_success, loaded, successes, table_head, SubmitButton};
use crate::error::AppError;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use payments::domain::order::{AuthorizationStatus, DocumentKind, OrderStatus, PaymentStatus, Tender};
use payments::domain::payment_views::{AuthorizationView, InvoiceOutcome, OrderDetail, OrderLineView};
use payments::domain::pipeline::ProcessStatus;
use std::collections::BTreeMap;

#[server(endpoint = "order_detail")]
pub async fn load_order(id: i32) -> Result<OrderDetail, AppError> {
    use crate::auth::ssr::{require, services};
    use payments::Role;
    require(&[Role::Finance, Role::CallCenter]).await?;
    Ok(payments::service::orders::detail(&services()?, id).await?)
}

/// Invoices the quantities typed per order line (`quantities[<line id>]`), then runs the payment
/// process (R-PIP-1).
#[server(endpoint = "invoice_order")]
pub async fn invoice_order(order_id: i32, quantities: BTreeMap<String, String>) -> Result<InvoiceOutcome, AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Finance]).await?;
    let parsed = parse_quantities(&quantities)?;
    Ok(payments::pipeline::invoice(&services()?, &user.username, order_id, &parsed).await?)
}

/// Credits (returns) the quantities typed per invoiced line: posts a credit note, refunds the card
/// against the order's captures and posts the refund journal (R-PIP-1, R-CAP-4).
#[server(endpoint = "credit_order")]
pub async fn credit_order(order_id: i32, quantities: BTreeMap<String, String>) -> Result<InvoiceOutcome, AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Finance]).await?;
    let parsed = parse_quantities(&quantities)?;
    Ok(payments::pipeline::credit(&services()?, &user.username, order_id, &parsed).await?)
}

/// `quantities[<line id>]` as typed; empty fields are skipped.
#[cfg(feature = "ssr")]
fn parse_quantities(quantities: &BTreeMap<String, String>) -> Result<Vec<(i32, i32)>, AppError> {
    let mut parsed = Vec::new();
    for (line, qty) in quantities {
        let qty = qty.trim();
        if qty.is_empty() {
            continue;
        }
        let (Ok(line), Ok(q)) = (line.parse::<i32>(), qty.parse::<i32>()) else {
            return Err(AppError::Invalid { message: format!("Quantities must be whole numbers; {qty:?} is not."), fields: vec![], scope: None });
        };
        parsed.push((line, q));
    }
    Ok(parsed)
}

fn invoice_notice(v: Option<Result<InvoiceOutcome, AppError>>) -> Option<AnyView> {
    match v {
        Some(Ok(o)) if o.status == ProcessStatus::Completed => Some(
            view! {
                <div class="notice success" role="status">
                    {match o.kind {
                        DocumentKind::CreditNote => format!("Credit note {} posted for {}; the card refund completed.", o.invoice_number, o.amount),
                        DocumentKind::Invoice => format!("Invoice {} posted for {}; the card payment completed.", o.invoice_number, o.amount),
                    }}
                </div>
            }
            .into_any(),
        ),
        Some(Ok(o)) => {
            let href = format!("/payments/incomplete?invoice={}", o.invoice_id);
            Some(
                view! {
                    <div class="notice warning" role="status">
                        {format!(
                            "{} {} posted for {}, but the card payment is {}: {}. ",
                            o.kind.label(),
                            o.invoice_number,
                            o.amount,
                            o.status.label().to_lowercase(),
                            o.error.clone().unwrap_or_default(),
                        )}
                        <a href=href>"Open Incomplete cards payment"</a>
                    </div>
                }
                .into_any(),
            )
        }
        Some(Err(e)) => Some(view! { <div class="notice error" role="alert">{e.to_string()}</div> }.into_any()),
        None => None,
    }
}

#[component]
pub fn OrderDetailPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|v| v.parse::<i32>().ok()).unwrap_or(0);
    let invoice = ServerAction::<InvoiceOrder>::new();
    let credit = ServerAction::<CreditOrder>::new();
    // A refusal (not a field error) reloads the order too: it may have changed meanwhile, or the
    // invoicing was taken back because the card was not charged (monitoring off, issue #39).
    let saves = successes(move || matches!(invoice.value().get(), Some(Ok(_)) | Some(Err(AppError::Refused { .. }))));
    let credits = successes(move || matches!(credit.value().get(), Some(Ok(_))));
    let invoice_form = cleared_on_success(move || matches!(invoice.value().get(), Some(Ok(_))));
    let credit_form = cleared_on_success(move || matches!(credit.value().get(), Some(Ok(_))));
    let adjust = ServerAction::<crate::pages::payment::AdjustPayment>::new();
    let adjusts = successes(move || matches!(adjust.value().get(), Some(Ok(_))));
    let pick_up = ServerAction::<crate::pages::prepayments::PickUpOrder>::new();
    let pickups = crate::pages::prepayments::pickups(pick_up);
    let data = Resource::new(move || (id(), saves.get(), credits.get(), adjusts.get(), pickups.get()), |(id, _, _, _, _)| load_order(id));
    let query = leptos_router::hooks::use_query_map();
    view! {
        {move || query.read().get("payment").and_then(|c| PaymentStatus::from_code(&c)).map(|st| {
            let class = if st == PaymentStatus::Authorized { "notice success" } else { "notice error" };
            view! { <div class=class role="status" data-testid="new-payment-status">{format!("New payment: {}.", st.label())}</div> }
        })}
        {crate::components::said(adjust.value())}
        {move || match pick_up.value().get() {
            Some(Ok(m)) => Some(view! { <div class="notice success" role="status" data-testid="picked-up">{m}</div> }.into_any()),
            Some(Err(e)) if e.field_message("cash", None).is_none() => Some(view! { <div class="notice error" role="alert">{e.to_string()}</div> }.into_any()),
            _ => None,
        }}
        {move || invoice_notice(invoice.value().get())}
        {move || invoice_notice(credit.value().get())}
        {loaded(data, move |d: OrderDetail| {
            let o = &d.order;
            let cancelled = o.status == OrderStatus::Cancelled;
            view! {
                <leptos_meta::Title text=format!("Sales order {}", o.number) />
                {summary(&d, cancelled)}
                {d.prepayment.clone().map(|p| crate::pages::prepayments::prepayment_panel(o.id, p, d.balance.minor() > 0, pick_up))}
                {d.cancel_refusal.is_none().then(|| view! {
                    <div class="toolbar">
                        <a class="button secondary" href=format!("/orders/{}/cancel", o.id) data-testid="cancel-order">"Cancel order"</a>
                        <span class="muted small">" Shows the refund and cancellation charge before anything is posted."</span>
                    </div>
                })}
                {lines_panel(&d, cancelled, invoice, invoice_form)}
                {credit_panel(&d, credit, credit_form)}
                {payment_lines_panel(&d, cancelled, adjust)}
                {authorizations_panel(&d)}
                {invoices_panel(&d)}
                {journals_panel(&d)}
            }
        })}
    }
}

/// The order's heading and its totals.
fn summary(d: &OrderDetail, cancelled: bool) -> impl IntoView + use<> {
    let o = &d.order;
    view! {
        <div class="page-header">
            <h1>"Sales order " {o.number.clone()} {status_badge(o.status)}
                {o.do_not_process.then(|| view! { <span class="badge bad">"Do not process"</span> })}
            </h1>
            <p class="intro">
                {format!("{} · {} · {} · taken {}", o.customer_account, o.customer_name, o.channel_name, o.taken_local)}
            </p>
        </div>
        <section class="panel summary">
            <div><span class="muted small">"Order total"</span><strong>{o.total.to_string()}</strong></div>
            <div><span class="muted small">{if d.invoices.iter().any(|i| i.amount.minor() < 0) { "Invoiced, net of credit notes" } else { "Invoiced" }}</span><strong>{o.invoiced.to_string()}</strong></div>
            <div><span class="muted small">"Left to invoice"</span><strong data-testid="balance">{if cancelled { "— (cancelled)".to_string() } else { d.balance.to_string() }}</strong></div>
            <div><span class="muted small">"Tax · charges"</span><strong>{format!("{} % · {}", d.tax_percent, d.charges)}</strong></div>
        </section>
    }
}

/// The lines, with the quantity to invoice now on each open one.
fn lines_panel(d: &OrderDetail, cancelled: bool, invoice: ServerAction<InvoiceOrder>, form: NodeRef<leptos::html::Form>) -> impl IntoView + use<> {
    let (order_id, lines) = (d.order.id, d.lines.clone());
    let open_lines = !cancelled && lines.iter().any(|l| l.invoiced_quantity < l.quantity);
    view! {
        <section class="panel">
            <h2>"Lines"</h2>
            <ActionForm action=invoice node_ref=form>
                <input type="hidden" name="order_id" value=order_id />
                <table class="grid">
                    {table_head(&["#", "Item", "n:Ordered", "n:Invoiced", "n:Credited", "n:Unit price", "Requested ship date", "Invoice now"])}
                    <tbody>
                        {lines.iter().map(|l| {
                            let open = l.quantity - l.invoiced_quantity;
                            let name = format!("quantities[{}]", l.id);
                            let label = format!("Quantity to invoice for line {}", l.line_no);
                            view! {
                                <tr data-line=l.line_no>
                                    <td>{l.line_no}</td>
                                    <td>{l.item.clone()}</td>
                                    <td class="num">{l.quantity}</td>
                                    <td class="num">{l.invoiced_quantity}</td>
                                    <td class="num">{l.credited_quantity}</td>
                                    <td class="num">{l.unit_price.to_string()}</td>
                                    <td>{l.requested_ship_date.to_string()}</td>
                                    <td>
                                        {if open > 0 && !cancelled {
                                            view! { <input class="qty" name=name aria-label=label inputmode="numeric" placeholder=format!("0–{open}") /> }.into_any()
                                        } else {
                                            view! { <span class="muted">{if cancelled { "Cancelled" } else { "Invoiced" }}</span> }.into_any()
                                        }}
                                    </td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
                {open_lines.then(|| view! {
                    <div class="actions"><SubmitButton pending=invoice.pending() class="primary">"Invoice"</SubmitButton>
                    <span class="muted small">" Posts the invoice, captures the card, posts the payment journal and authorizes what remains."</span></div>
                })}
            </ActionForm>
        </section>
    }
}

/// The credit note (return) form, for lines invoiced and not yet credited.
fn credit_panel(d: &OrderDetail, credit: ServerAction<CreditOrder>, form: NodeRef<leptos::html::Form>) -> impl IntoView + use<> {
    let order_id = d.order.id;
    let creditable: Vec<OrderLineView> = d.lines.iter().filter(|l| l.invoiced_quantity > l.credited_quantity).cloned().collect();
    if creditable.is_empty() {
        return None;
    }
    Some(view! {
        <section class="panel" aria-labelledby="credit-title">
            <h2 id="credit-title">"Credit note (return)"</h2>
            <ActionForm action=credit node_ref=form>
                <input type="hidden" name="order_id" value=order_id />
                <table class="grid">
                    {table_head(&["#", "Item", "n:Invoiced, not credited", "Credit now"])}
                    <tbody>
                        {creditable.iter().map(|l| {
                            let left = l.invoiced_quantity - l.credited_quantity;
                            view! {
                                <tr data-credit-line=l.line_no>
                                    <td>{l.line_no}</td>
                                    <td>{l.item.clone()}</td>
                                    <td class="num">{left}</td>
                                    <td><input class="qty" name=format!("quantities[{}]", l.id)
                                        aria-label=format!("Quantity to credit for line {}", l.line_no)
                                        inputmode="numeric" placeholder=format!("0–{left}") /></td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
                <div class="actions"><SubmitButton pending=credit.pending()>"Post credit note"</SubmitButton>
                <span class="muted small">" Posts the credit note, refunds the card against its captures and posts the refund journal."</span></div>
            </ActionForm>
        </section>
    })
}

/// The payment lines, with Adjust on an authorized card, and Take a new payment when one is needed.
fn payment_lines_panel(d: &OrderDetail, cancelled: bool, adjust: ServerAction<crate::pages::payment::AdjustPayment>) -> impl IntoView + use<> {
    let o = &d.order;
    let needs_payment = !cancelled
        && d.balance.minor() > 0
        && (o.do_not_process || !d.payments.iter().any(|p| matches!(p.status, PaymentStatus::Authorized | PaymentStatus::Paid)));
    view! {
        <section class="panel">
            <h2>"Payment lines"</h2>
            <table class="grid">
                {table_head(&["Tender", "Card", "Token", "n:Amount", "Payment status", "Edit authorized amount"])}
                <tbody>
                    {d.payments.clone().into_iter().map(|p| {
                        let editable = p.tender == Tender::Card && p.status == PaymentStatus::Authorized;
                        view! {
                            <tr data-payment-line=p.id>
                                <td>{p.tender.label()}{p.prepayment.then(|| view! { " " <span class="badge off">"Deposit"</span> })}</td>
                                <td>{p.card.clone().unwrap_or_default()}</td>
                                <td>{(p.tender == Tender::Card).then(|| p.token_kind.label())}</td>
                                <td class="num">
                                    {p.amount.to_string()}
                                    {(p.refunded.minor() != 0).then(|| view! { <div class="muted small">{format!("{} given back", p.refunded)}</div> })}
                                </td>
                                <td>{crate::pages::authorizations::payment_badge(p.status)}</td>
                                <td>
                                    {editable.then(|| view! {
                                        <ActionForm action=adjust attr:class="inline-form">
                                            <input type="hidden" name="payment_line_id" value=p.id />
                                            <input class="amount" name="amount" aria-label="New authorized amount" inputmode="decimal" value=p.amount.to_decimal().to_string() />
                                            " " <button type="submit">"Adjust"</button>
                                        </ActionForm>
                                    })}
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            {needs_payment.then(|| view! {
                <div class="actions">
                    <a class="button primary" rel="external" href=payments::domain::payment_views::new_payment_link(o.id, o.channel_id)>"Take a new payment"</a>
                    <span class="muted small">" The order needs a new card authorization before it can be invoiced."</span>
                </div>
            })}
        </section>
    }
}

fn authorizations_panel(d: &OrderDetail) -> impl IntoView + use<> {
    view! {
        <section class="panel">
            <h2>"Authorizations and captures"</h2>
            {if d.authorizations.is_empty() {
                view! { <p class="muted">"No authorization."</p> }.into_any()
            } else {
                d.authorizations.iter().map(authorization_view).collect_view().into_any()
            }}
        </section>
    }
}

/// The invoices and credit notes, each with the state of its card payment process.
fn invoices_panel(d: &OrderDetail) -> impl IntoView + use<> {
    view! {
        <section class="panel">
            <h2>"Invoices"</h2>
            {if d.invoices.is_empty() {
                view! { <p class="muted">"Not invoiced yet."</p> }.into_any()
            } else {
                view! {
                    <table class="grid">
                        {table_head(&["Invoice", "n:Amount", "Posted", "Card payment", ""])}
                        <tbody>
                            {d.invoices.iter().map(|i| {
                                let process = i.process.clone();
                                view! {
                                    <tr data-invoice=i.number.clone()>
                                        <td>{i.number.clone()}</td>
                                        <td class="num">{i.amount.to_string()}</td>
                                        <td class="nowrap">{i.posted_at.format("%Y-%m-%d %H:%M").to_string()}</td>
                                        <td>
                                            {process.clone().map(|p| view! {
                                                {process_badge(p.status)}
                                                {(!p.monitored).then(|| view! { <span class="muted small">" one step (monitoring off)"</span> })}
                                                {p.last_error.clone().filter(|_| p.status != ProcessStatus::Completed).map(|e| view! { <p class="small">{e}</p> })}
                                            })}
                                            {i.capture_failed.then(|| view! {
                                                <span class="badge bad" data-testid="invoice-capture-failed">"Capture failed at the processor"</span>
                                                <p class="small">"Reversed; the invoice is open again. See Processor notifications."</p>
                                            })}
                                        </td>
                                        <td class="nowrap">
                                            {process.clone().map(|p| {
                                                let history = format!("/payments/process/{}", p.id);
                                                let incomplete = format!("/payments/incomplete?invoice={}", i.id);
                                                view! {
                                                    <a href=history>"View history"</a>
                                                    {(p.status == ProcessStatus::Incomplete).then(|| view! { " · " <a href=incomplete>"Incomplete cards payment"</a> })}
                                                }
                                            })}
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
}

fn journals_panel(d: &OrderDetail) -> impl IntoView + use<> {
    view! {
        <section class="panel">
            <h2>"Journals"</h2>
            {if d.journals.is_empty() {
                view! { <p class="muted">"Nothing posted yet."</p> }.into_any()
            } else {
                d.journals.iter().map(crate::pages::journals::journal_view).collect_view().into_any()
            }}
        </section>
    }
}

fn authorization_view(a: &AuthorizationView) -> impl IntoView {
    let status_class = match a.status {
        AuthorizationStatus::Open => "badge on",
        AuthorizationStatus::FullyCaptured | AuthorizationStatus::Closed => "badge off",
        AuthorizationStatus::Voided | AuthorizationStatus::Expired | AuthorizationStatus::Declined => "badge bad",
    };
    view! {
        <div class="authorization" data-authorization=a.id>
            <div class="authorization-head">
                <strong>{format!("{} •••• {}", a.card_type, a.last_four)}</strong>
                <span class=status_class>{a.status.label()}</span>
                {(a.expired && a.status == AuthorizationStatus::Open).then(|| view! { <span class="badge bad">"Expired"</span> })}
                <span class="muted small">
                    {format!(
                        " {} authorized · {} captured · {} · expires {}{}",
                        a.amount,
                        a.captured,
                        if a.supports_multiple_captures { "supports multiple captures" } else { "single capture" },
                        a.expires_at.format("%Y-%m-%d"),
                        a.replaces.map(|r| format!(" · replaces authorization {r}")).unwrap_or_default(),
                    )}
                </span>
            </div>
            <p class="small muted">{format!("Processor reference {} · variant {}", a.processor_reference, a.payment_method_variant)}</p>
            {if a.captures.is_empty() {
                view! { <p class="small muted">"No capture yet."</p> }.into_any()
            } else {
                // Refunds are shown against the capture they were made from (R-PRE-5, R-CAP-6).
                let any_refund = a.captures.iter().any(|c| c.refunded.minor() != 0);
                view! {
                    <table class="grid nested">
                        <thead><tr><th>"Capture"</th><th>"Invoice"</th><th class="num">"Amount"</th>
                            {any_refund.then(|| view! { <th class="num">"Refunded"</th> })}
                            <th>"Captured"</th><th>"Tracking id"</th></tr></thead>
                        <tbody>
                            {a.captures.iter().map(|c| view! {
                                <tr class="capture">
                                    <td>{c.processor_reference.clone()}</td>
                                    <td class="nowrap">{c.invoice_number.clone().unwrap_or_default()}</td>
                                    <td class="num">{c.amount.to_string()}</td>
                                    {any_refund.then(|| view! { <td class="num" data-testid="capture-refunded">{if c.refunded.minor() == 0 { "—".to_string() } else { c.refunded.to_string() }}</td> })}
                                    <td>
                                        <span class="nowrap">{c.captured_at.format("%Y-%m-%d %H:%M").to_string()}</span>
                                        {c.failed.clone().map(|reason| view! {
                                            <div class="small failure" data-testid="capture-failed">
                                                <span class="badge bad">"Failed at the processor"</span>
                                                " "{reason}
                                            </div>
                                        })}
                                    </td>
                                    <td><code>{c.tracking_id.clone()}</code></td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </div>
    }
}
