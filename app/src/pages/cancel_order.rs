//! Cancel order (R-PRE-4): what cancelling would post, shown before the user confirms, then the
//! cancellation with the charge the user saw.
use crate::components::{loaded, table_head, PageHeader, SubmitButton};
use crate::error::AppError;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use payments::domain::payment_views::CancellationPreview;

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
                                    {table_head(&["Tender", "n:Refund"])}
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
                                        {table_head(&["Account", "n:Debit", "n:Credit"])}
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
                                <SubmitButton pending=cancel.pending() class="danger">"Confirm cancellation"</SubmitButton>
                                " " <a href=format!("/orders/{}", p.order_id)>"Keep the order"</a>
                            </div>
                        </ActionForm>
                    </section>
                }
            })}
        })}
    }
}
