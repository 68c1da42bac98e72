//! Taking a new payment on an order (R-AUT-4/5: after an expiry or a declined adjustment the order
//! is held until then) and editing an authorized payment line's amount, which asks the processor
//! to adjust the original authorization (R-AUT-2).
use crate::components::{field_error, loaded, ConfirmationDialog, SubmitButton};
use crate::error::AppError;
use crate::pages::new_order::CardChoice;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use payments::domain::payment_views::{OrderDetail, PlacedOrder};
use payments::domain::views::SavedCardView;

#[server(endpoint = "new_payment_form")]
pub async fn new_payment_form(order_id: i32) -> Result<(OrderDetail, Vec<SavedCardView>), AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance, payments::Role::CallCenter]).await?;
    let s = services()?;
    let d = payments::service::orders::detail(&s, order_id).await?;
    let order = payments::service::orders::find(&s.db, order_id).await?;
    let cards = payments::service::cards::saved(&s.db, order.customer_id).await?;
    Ok((d, cards))
}

#[server(endpoint = "take_new_payment")]
#[expect(clippy::too_many_arguments, reason = "a server function takes each form field as an argument")]
pub async fn take_new_payment(
    order_id: i32,
    token: String,
    card_type: String,
    last_four: String,
    holder: String,
    expiry: String,
    saved_card_id: String,
    confirmed: String,
) -> Result<PlacedOrder, AppError> {
    use crate::auth::ssr::{require, services};
    use payments::service::orders::CardForm;
    let user = require(&[payments::Role::Finance, payments::Role::CallCenter]).await?;
    let card = CardForm { token, card_type, last_four, holder, expiry };
    let placed =
        payments::service::authorizations::new_payment(&services()?, &user.username, order_id, &card, &saved_card_id, &confirmed).await?;
    leptos_axum::redirect(&format!("/orders/{}?payment={}", placed.order_id, placed.payment_status.code()));
    Ok(placed)
}

/// R-AUT-2: a manual edit of an authorized payment line's amount.
#[server(endpoint = "adjust_payment")]
pub async fn adjust_payment(payment_line_id: i32, amount: String) -> Result<String, AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Finance, payments::Role::CallCenter]).await?;
    Ok(payments::service::authorizations::adjust(&services()?, &user.username, payment_line_id, &amount).await?.to_string())
}

#[component]
pub fn NewPaymentPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|v| v.parse::<i32>().ok()).unwrap_or(0);
    let take = ServerAction::<TakeNewPayment>::new();
    let confirmed = NodeRef::<leptos::html::Input>::new();
    let data = Resource::new(id, new_payment_form);
    view! {
        {move || match take.value().get() {
            Some(Err(AppError::ConfirmationRequired { .. })) | None => None,
            Some(Err(e)) => Some(view! { <div class="notice error" role="alert">{e.to_string()}</div> }.into_any()),
            Some(Ok(p)) => Some(view! {
                <div class="notice success" role="status">{format!("{}: payment {}. ", p.number, p.payment_status.label())}{p.message.clone()}</div>
            }.into_any()),
        }}
        {loaded(data, move |(d, cards): (OrderDetail, Vec<SavedCardView>)| {
            let o = d.order.clone();
            let back = format!("/orders/{}", o.id);
            view! {
                <leptos_meta::Title text=format!("New payment · {}", o.number) />
                <div class="page-header">
                    <h1>"New payment for " {o.number.clone()}
                        {o.do_not_process.then(|| view! { " " <span class="badge bad">"Do not process"</span> })}</h1>
                    <p class="intro">{format!("{} · {} · left to invoice {}", o.customer_account, o.customer_name, d.balance)} " · " <a href=back.clone()>"Back to the order"</a></p>
                </div>
                <ActionForm action=take>
                    <ConfirmationDialog
                        error=Signal::derive(move || take.value().get().and_then(|r| r.err()))
                        version=Signal::derive(move || take.version().get())
                        confirmed=confirmed
                        cancelled_text="Not authorized: the customer's consent was not confirmed, so no payment was taken."
                    />
                    <input type="hidden" name="confirmed" value="" node_ref=confirmed />
                    <input type="hidden" name="order_id" value=o.id />
                    <section class="panel">
                        <h2>"Card"</h2>
                        <p class="muted small">"The new card is authorized for what the order still needs: the balance left to invoice, less what open, unexpired authorizations hold. Earlier card lines that are pending, declined or voided are marked replaced."</p>
                        <CardChoice saved=cards return_to=format!("/orders/{}/payment", o.id) channel=Signal::stored(Some(o.channel_id)) />
                        {field_error(take.value(), "card", None)}
                        {field_error(take.value(), "saved_card_id", None)}
                        <div class="actions"><SubmitButton pending=take.pending() class="primary">"Authorize new payment"</SubmitButton></div>
                    </section>
                </ActionForm>
            }
        })}
    }
}
