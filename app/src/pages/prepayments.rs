//! Prepayment orders on the order page (R-PRE-2, R-PRE-3): the deposit panel, and Pick up, which
//! invoices through the pipeline, applies the deposit and takes cash now.
use crate::components::{field_error, successes, table_head, SubmitButton};
use crate::error::AppError;
use leptos::prelude::*;
use payments::domain::payment_views::PrepaymentView;

#[server(endpoint = "pick_up_order")]
pub async fn pick_up_order(order_id: i32, cash: String) -> Result<String, AppError> {
    use crate::auth::ssr::{require, services};
    use payments::Role;
    let user = require(&[Role::Finance, Role::CallCenter]).await?;
    Ok(payments::service::prepayments::pick_up(&services()?, &user.username, order_id, &cash).await?)
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
                {table_head(&["Deposit paid by", "n:Paid", "n:Given back"])}
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
                    <div class="actions"><SubmitButton pending=pick_up.pending() class="primary">"Pick up and invoice"</SubmitButton></div>
                </ActionForm>
            })}
        </section>
    }
}

/// Successes of the pickup action, for the order page's reload.
pub fn pickups(a: ServerAction<PickUpOrder>) -> RwSignal<u32> {
    successes(move || matches!(a.value().get(), Some(Ok(_))))
}
