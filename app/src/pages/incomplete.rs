//! Incomplete cards payment (R-PIP-5): incomplete processes of the selected invoice, or all of them,
//! with Resume, Terminate (asks a reason; audited) and View history, which lists every stage and
//! opens the chosen stage's execution log (R-PIP-4).
use super::orders::process_badge;
use crate::components::{PageHeader, SubmitButton, loaded, successes_each, table_head};
use crate::error::AppError;
use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};
use payments::domain::payment_views::{IncompleteRow, InvoiceOutcome, ProcessHistory};
use payments::domain::settlement::{SettleHow, TerminatePreview, TerminateReason};
use payments::domain::pipeline::{ProcessStatus, Stage, StageStatus};

#[server(endpoint = "incomplete_payments")]
pub async fn incomplete_payments(invoice: Option<i32>) -> Result<Vec<IncompleteRow>, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance]).await?;
    let s = services()?;
    if let Some(id) = invoice {
        if !payments::pipeline::queries::invoice_is_card_related(&s.db, id).await? {
            return Err(AppError::refused("PS_NO_CARD_PROCESS", "This invoice is not related to a card payment; it has no card payment process."));
        }
    }
    let mut rows = payments::pipeline::queries::incomplete(&s.db, invoice).await?;
    for r in &mut rows {
        r.preview = Some(payments::service::settlement::preview(&s, r.process_id).await?);
    }
    Ok(rows)
}

#[server(endpoint = "resume_payment")]
pub async fn resume_payment(process_id: i32) -> Result<InvoiceOutcome, AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Finance]).await?;
    Ok(payments::pipeline::resume(&services()?, &user.username, process_id).await?)
}

/// R-PIP-4: terminates with a reason from the fixed list and the user's words (audited).
#[server(endpoint = "terminate_payment")]
pub async fn terminate_payment(process_id: i32, reason_code: String, reason: String) -> Result<String, AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Finance]).await?;
    payments::service::settlement::terminate(&services()?, &user.username, process_id, &reason_code, &reason)
        .await
        .map_err(|e| AppError::from(e).with_scope(process_id.to_string()))
}

/// A second finance user approves a termination another one asked for (issue #44).
#[server(endpoint = "approve_termination")]
pub async fn approve_termination(process_id: i32) -> Result<String, AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Finance]).await?;
    Ok(payments::service::settlement::approve(&services()?, &user.username, process_id).await?)
}

/// What a process moved, what its invoice's journals post and leave open (seed 000).
#[server(endpoint = "termination_preview")]
pub async fn termination_preview(process_id: i32) -> Result<TerminatePreview, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance]).await?;
    Ok(payments::service::settlement::preview(&services()?, process_id).await?)
}

/// Posts the settling entry of a terminated payment's open receivable (finance; audited).
#[server(endpoint = "settle_terminated")]
pub async fn settle_terminated(process_id: i32, how: String, note: String) -> Result<String, AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Finance]).await?;
    Ok(payments::service::settlement::settle(&services()?, &user.username, process_id, &how, &note).await?)
}

/// What happened to an invoice's money, for the page that terminates or settles its payment.
fn preview_view(p: &TerminatePreview) -> impl IntoView + use<> {
    let journals = p
        .journals
        .iter()
        .map(|(number, kind, ar)| view! { <li>{format!("{number} · {kind} · {ar} on the receivable")}</li> })
        .collect_view();
    let warnings = p.warnings.iter().map(|w| view! { <li>{w.clone()}</li> }).collect_view();
    view! {
        <div class="preview small" data-testid="terminate-preview">
            <p>{format!("At the processor: {} captured, {} refunded.", p.captured, p.refunded)}</p>
            <ul class="plain">{journals}</ul>
            <p><strong>{format!("Open on the receivable: {}", p.open)}</strong></p>
            {(!p.warnings.is_empty()).then(|| view! { <ul class="warnings">{warnings}</ul> })}
        </div>
    }
}

#[server(endpoint = "payment_history")]
pub async fn payment_history(process_id: i32) -> Result<ProcessHistory, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance]).await?;
    Ok(payments::pipeline::queries::history(&services()?.db, process_id).await?)
}

#[component]
pub fn IncompletePage() -> impl IntoView {
    let query = use_query_map();
    let invoice = move || query.read().get("invoice").and_then(|v| v.parse::<i32>().ok());
    let resume = ServerAction::<ResumePayment>::new();
    let terminate = ServerAction::<TerminatePayment>::new();
    let approve = ServerAction::<ApproveTermination>::new();
    let changes = successes_each(vec![
        Box::new(move || matches!(resume.value().get(), Some(Ok(_)))),
        Box::new(move || matches!(terminate.value().get(), Some(Ok(_)))),
        Box::new(move || matches!(approve.value().get(), Some(Ok(_)))),
    ]);
    let data = Resource::new(move || (invoice(), changes.get()), |(i, _)| incomplete_payments(i));
    view! {
        <PageHeader
            title="Incomplete cards payment"
            intro="Card payments whose invoice was posted but a later stage failed. Resume restarts from the failed stage and never repeats a capture or a journal; Terminate ends the process after you settle it by hand."
        />
        {move || invoice().map(|_| view! { <p class="toolbar"><span class="muted">"Showing one invoice."</span><a href="/payments/incomplete">"Show all incomplete payments"</a></p> })}
        {move || match resume.value().get() {
            Some(Ok(o)) if o.status == ProcessStatus::Completed => Some(view! {
                <div class="notice success" role="status">{format!("{}: the card payment completed.", o.invoice_number)}</div>
            }.into_any()),
            Some(Ok(o)) => Some(view! {
                <div class="notice error" role="alert">{format!("{} is still incomplete: {}", o.invoice_number, o.error.unwrap_or_default())}</div>
            }.into_any()),
            Some(Err(e)) => Some(view! { <div class="notice error" role="alert">{e.to_string()}</div> }.into_any()),
            None => None,
        }}
        {crate::components::said(terminate.value())}
        {crate::components::said(approve.value())}
        {loaded(data, move |rows: Vec<IncompleteRow>| {
            if rows.is_empty() {
                return view! { <p class="panel muted" data-testid="no-incomplete">"No incomplete card payment."</p> }.into_any();
            }
            let rows = rows
                .into_iter()
                .map(|r| {
                    let history = format!("/payments/process/{}", r.process_id);
                    let order = format!("/orders/{}", r.order_id);
                    let reason_id = format!("reason-{}", r.process_id);
                    let code_id = format!("reason-code-{}", r.process_id);
                    let preview = r.preview.as_ref().map(preview_view);
                    view! {
                        <tr data-invoice=r.invoice_number.clone()>
                            <td class="nowrap">
                                {r.invoice_number.clone()}
                                {(!r.monitored).then(|| view! { <br /><span class="muted small" data-testid="one-step" title="Invoiced as one step: Cards payment status monitoring was off">"one step"</span> })}
                            </td>
                            <td class="nowrap"><a href=order>{r.order_number.clone()}</a></td>
                            <td>{r.customer.clone()}</td>
                            <td class="num">{r.amount.to_string()}</td>
                            <td>{r.failed_stage.map(|s| format!("{}. {}", s.number(), s.label()))}</td>
                            <td class="reason">{r.reason.clone()}</td>
                            <td class="num">{r.attempts}</td>
                            <td>
                                {r.last_attempt.map(|t| view! {
                                    <span class="nowrap">{t.format("%Y-%m-%d").to_string()}</span>" "
                                    <span class="nowrap">{t.format("%H:%M").to_string()}</span>
                                })}
                            </td>
                            <td><div class="row-actions">
                                <ActionForm action=resume>
                                    <input type="hidden" name="process_id" value=r.process_id />
                                    <SubmitButton pending=resume.pending() class="primary">"Resume"</SubmitButton>
                                </ActionForm>
                                {match r.termination_requested_by.clone() {
                                    Some(by) => view! {
                                        <div class="approval" data-testid="termination-requested">
                                            <p class="small">{format!("Termination asked by {by}: {}", r.termination_request_reason.clone().unwrap_or_default())}</p>
                                            <ActionForm action=approve>
                                                <input type="hidden" name="process_id" value=r.process_id />
                                                <SubmitButton pending=approve.pending() class="danger">"Approve termination"</SubmitButton>
                                            </ActionForm>
                                        </div>
                                    }.into_any(),
                                    None => view! {
                                <details>
                                    <summary class="button secondary">"Terminate"</summary>
                                    <ActionForm action=terminate attr:class="terminate-form">
                                        <input type="hidden" name="process_id" value=r.process_id />
                                        {preview}
                                        <label for=code_id.clone()>"Why"</label>
                                        <select id=code_id name="reason_code" required>
                                            <option value="" selected>"Choose a reason…"</option>
                                            {TerminateReason::ALL.iter().map(|c| view! { <option value=c.code()>{c.label()}</option> }).collect_view()}
                                        </select>
                                        <label for=reason_id.clone()>"Reason (kept in the audit log)"</label>
                                        <input id=reason_id name="reason" maxlength="500" placeholder="e.g. settled by bank transfer" />
                                        <button type="submit" class="danger">"Terminate process"</button>
                                    </ActionForm>
                                </details>
                                    }.into_any(),
                                }}
                                <a href=history>"View history"</a>
                            </div></td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <table class="grid compact">
                    {table_head(&["Invoice", "Order", "Customer", "n:Amount", "Failed stage", "Reason", "n:Attempts", "Last attempt", ""])}
                    <tbody>{rows}</tbody>
                </table>
            }
                .into_any()
        })}
    }
}

fn stage_class(s: StageStatus) -> &'static str {
    match s {
        StageStatus::Succeeded => "badge on",
        StageStatus::Skipped | StageStatus::Pending => "badge off",
        StageStatus::Running => "badge warn",
        StageStatus::Failed => "badge bad",
    }
}

/// View history: every stage with its status and times; choosing a stage shows its execution log.
#[component]
pub fn ProcessHistoryPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = move || params.read().get("id").and_then(|v| v.parse::<i32>().ok()).unwrap_or(0);
    let chosen = move || query.read().get("stage").and_then(|s| Stage::from_code(&s));
    let data = Resource::new(id, payment_history);
    view! {
        {loaded(data, move |h: ProcessHistory| {
            let selected = chosen()
                .or_else(|| h.stages.iter().find(|s| s.status == StageStatus::Failed).map(|s| s.stage))
                .unwrap_or(Stage::PostInvoice);
            let base = format!("/payments/process/{}", h.process_id);
            let stages = h
                .stages
                .iter()
                .map(|s| {
                    let href = format!("{base}?stage={}", s.stage.code());
                    let current = s.stage == selected;
                    view! {
                        <tr class:selected=current data-stage=s.stage.code()>
                            <td><a href=href>{format!("{}. {}", s.stage.number(), s.stage.label())}</a></td>
                            <td><span class=stage_class(s.status)>{s.status.label()}</span></td>
                            <td class="num">{s.attempts}</td>
                            <td class="nowrap">{s.started_at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())}</td>
                            <td class="nowrap">{s.finished_at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())}</td>
                            <td>{s.error.clone()}</td>
                        </tr>
                    }
                })
                .collect_view();
            let log = h.stages.iter().find(|s| s.stage == selected).map(|s| s.log.clone()).unwrap_or_default();
            let order = format!("/orders/{}", h.order_id);
            view! {
                <leptos_meta::Title text=format!("Payment stages of {}", h.invoice_number) />
                <div class="page-header">
                    <h1>"Payment stages of " {h.invoice_number.clone()} {process_badge(h.status)}</h1>
                    <p class="intro">
                        "Sales order " <a href=order>{h.order_number.clone()}</a>
                        {h.capture_path.clone().map(|p| format!(" · {p}"))}
                        {h.terminated_reason.clone().map(|r| format!(" · terminated: {r}"))}
                    </p>
                </div>
                <table class="grid stages">
                    {table_head(&["Payment stage", "Status", "n:Attempts", "Started", "Finished", "Error"])}
                    <tbody>{stages}</tbody>
                </table>
                <section class="panel" data-testid="execution-log">
                    <h2>{format!("Execution log: {}. {}", selected.number(), selected.label())}</h2>
                    {if log.is_empty() {
                        view! { <p class="muted">"This stage has not run."</p> }.into_any()
                    } else {
                        view! {
                            <ol class="log">
                                {log.into_iter().map(|l| view! {
                                    <li><span class="muted small nowrap">{format!("{} · attempt {}", l.at.format("%Y-%m-%d %H:%M:%S"), l.attempt)}</span> {l.message}</li>
                                }).collect_view()}
                            </ol>
                        }.into_any()
                    }}
                </section>
                {(h.status == ProcessStatus::Terminated).then(|| view! { <SettlePanel process_id=h.process_id /> })}
                <p><a href="/payments/incomplete">"← Incomplete cards payment"</a></p>
            }
        })}
    }
}

/// Seed 000's follow-through: a terminated payment's open receivable, and the settling entry that
/// closes it.
#[component]
fn SettlePanel(process_id: i32) -> impl IntoView {
    let settle = ServerAction::<SettleTerminated>::new();
    let settled = crate::components::successes(move || matches!(settle.value().get(), Some(Ok(_))));
    let data = Resource::new(move || settled.get(), move |_| termination_preview(process_id));
    view! {
        <section class="panel" data-testid="settle">
            <h2>"Settle the receivable"</h2>
            {crate::components::said(settle.value())}
            {loaded(data, move |p: TerminatePreview| {
                let open = p.open.minor() != 0;
                view! {
                    {preview_view(&p)}
                    {if open {
                        view! {
                            <p class="small muted">"The card payment was terminated, so no card payment will settle this. Record how it was settled; each choice posts a new balanced journal."</p>
                            <ActionForm action=settle attr:class="settle-form">
                                <input type="hidden" name="process_id" value=process_id />
                                <fieldset>
                                    <legend>"How was it settled?"</legend>
                                    {SettleHow::ALL.iter().map(|h| {
                                        let id = format!("settle-{}", h.code());
                                        let hint = match h {
                                            SettleHow::ReceivedOtherwise => "Bank transfer, cheque or cash: Dr Bank, Cr Accounts receivable.",
                                            SettleHow::WriteOff => "Given up: Dr Bad debt expense, Cr Accounts receivable.",
                                            SettleHow::Reverse => "The invoice's own journal reversed: revenue and tax taken back.",
                                        };
                                        view! {
                                            <div class="choice">
                                                <input type="radio" id=id.clone() name="how" value=h.code() required />
                                                <label for=id>{h.label()}</label>
                                                <span class="small muted">" — " {hint}</span>
                                            </div>
                                        }
                                    }).collect_view()}
                                </fieldset>
                                <label for="settle-note">"Note (kept with the journal and in the audit log)"</label>
                                <input id="settle-note" name="note" maxlength="500" placeholder="e.g. bank transfer of 5 Dec, ref. 4471" />
                                <SubmitButton pending=settle.pending() class="primary">"Post the settling entry"</SubmitButton>
                            </ActionForm>
                        }.into_any()
                    } else {
                        view! { <p class="notice success" data-testid="settled">"Settled: nothing is open on this invoice's receivable."</p> }.into_any()
                    }}
                }
            })}
        </section>
    }
}
