//! The processor simulator's administrator page: the faults the processor injects (error before
//! the effect, timeout after the effect, latency, received then reported failed), set through the
//! sandbox's administration API when Paystage reaches it over HTTP, and the journal faults of
//! Paystage's own posting; and the test cards it knows. The same faults can be set from the CLI
//! (`paystage faults`) and from tests.
use crate::components::{PageHeader, field_error, loaded, outcome, successes_each, table_head};
use crate::error::AppError;
use leptos::prelude::*;
use payments::domain::views::FaultView;

#[server(endpoint = "simulator_overview")]
pub async fn simulator_overview() -> Result<Vec<FaultView>, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Administrator]).await?;
    let s = services()?;
    Ok(s.faults().list().await?)
}

#[server(endpoint = "add_fault")]
pub async fn add_fault(point: String, kind: String, rate: String, times: String, latency_ms: String) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Administrator]).await?;
    let s = services()?;
    let id = s.faults().add(s.now(), &point, &kind, &rate, &times, &latency_ms).await?;
    let after = serde_json::json!({ "point": point, "kind": kind, "rate": rate, "times": times, "latency_ms": latency_ms });
    payments::service::audit::record(&s.db, s.now(), &user.username, "simulator.fault_add", &format!("fault {id}"), None, Some(after)).await?;
    Ok(())
}

#[server(endpoint = "remove_fault")]
pub async fn remove_fault(id: i32, own: bool) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Administrator]).await?;
    let s = services()?;
    if !s.faults().remove(id, own).await? {
        return Err(AppError::NotFound("That fault is no longer there.".into()));
    }
    payments::service::audit::record(&s.db, s.now(), &user.username, "simulator.fault_remove", &format!("{} fault {id}", if own { "journal" } else { "processor" }), None, None).await?;
    Ok(())
}

#[component]
pub fn SimulatorPage() -> impl IntoView {
    let add = ServerAction::<AddFault>::new();
    let remove = ServerAction::<RemoveFault>::new();
    let saves = successes_each(vec![Box::new(move || matches!(add.value().get(), Some(Ok(())))), Box::new(move || matches!(remove.value().get(), Some(Ok(()))))]);
    let data = Resource::new(move || saves.get(), |_| simulator_overview());
    view! {
        <PageHeader
            title="Processor faults"
            intro="Faults the processor sandbox injects into its answers (set through its own administration API), and faults of Paystage's own journal posting. Inject them to see how Paystage recovers: a request that fails before anything happens, one that times out after the money moved, a slow processor, or a capture or refund the processor accepts and reports failed later."
        />
        {outcome(add.value(), "Fault added.", None)}
        {outcome(remove.value(), "Fault removed.", None)}
        <section class="panel">
            <h2>"Add a fault"</h2>
            <ActionForm action=add attr:class="row-form">
                <label class="stacked">
                    "Where"
                    <select name="point">
                        {payments::domain::views::FAULT_POINTS.iter().map(|(p, l)| view! { <option value=*p>{*l}</option> }).collect_view()}
                    </select>
                </label>
                <label class="stacked">
                    "Kind"
                    <select name="kind">
                        <option value="error_before">"Error before the effect"</option>
                        <option value="timeout_after">"Timeout after the effect"</option>
                        <option value="latency">"Latency"</option>
                        <option value="fails_later">"Received, then reported failed (capture or refund)"</option>
                    </select>
                </label>
                <label class="stacked">"Rate (0–1)" <input name="rate" value="1" class="amount" /></label>
                <label class="stacked">"Times (empty: until removed)" <input name="times" value="1" class="amount" /></label>
                <label class="stacked">"Latency (ms)" <input name="latency_ms" value="0" class="amount" /></label>
                <button type="submit" class="primary">"Add fault"</button>
            </ActionForm>
            {field_error(add.value(), "point", None)}
            {field_error(add.value(), "kind", None)}
            {field_error(add.value(), "rate", None)}
            {field_error(add.value(), "times", None)}
            {field_error(add.value(), "latency_ms", None)}
        </section>
        {loaded(data, move |faults: Vec<FaultView>| {
            if faults.is_empty() {
                return view! { <p class="panel muted">"No fault is active: the simulator answers every request normally."</p> }.into_any();
            }
            view! {
                <table class="grid">
                    {table_head(&["Where", "Kind", "n:Rate", "n:Times left", "n:Latency", "n:Fired", ""])}
                    <tbody>
                        {faults.into_iter().map(|f| view! {
                            <tr data-fault=format!("{}-{}", if f.paystage_own { "journal" } else { "processor" }, f.id)>
                                <td>{f.point.clone()}</td>
                                <td>{f.kind_label.clone()}</td>
                                <td class="num">{f.rate.clone()}</td>
                                <td class="num">{f.remaining.map(|n| n.to_string()).unwrap_or_else(|| "until removed".into())}</td>
                                <td class="num">{format!("{} ms", f.latency_ms)}</td>
                                <td class="num">{f.fired}</td>
                                <td>
                                    <ActionForm action=remove>
                                        <input type="hidden" name="id" value=f.id />
                                        <input type="hidden" name="own" value=f.paystage_own.to_string() />
                                        <button type="submit" class="link-button danger">"Remove"</button>
                                    </ActionForm>
                                </td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any()
        })}
        <section class="panel">
            <h2>"Test cards"</h2>
            <table class="grid nested">
                {table_head(&["Number", "Variant", "Behaviour"])}
                <tbody>
                    {payments::domain::views::TEST_CARDS.iter().map(|(n, v, b)| view! { <tr><td><code>{*n}</code></td><td>{*v}</td><td>{*b}</td></tr> }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}
