use crate::components::{loaded, PageHeader, UserResource};
use crate::nav::{NavGroup, PAGES};
use crate::error::AppError;
use leptos::prelude::*;
use payments::domain::payment_views::PaymentStanding;

/// The overview's counts, for finance users; anyone else gets `None` (and no figures).
#[server(endpoint = "payment_standing")]
pub async fn load_payment_standing() -> Result<Option<PaymentStanding>, AppError> {
    use crate::auth::ssr::{current_user, services};
    if !current_user().await?.is_some_and(|u| u.has(payments::Role::Finance)) {
        return Ok(None);
    }
    Ok(Some(payments::service::standing::standing(&services()?).await?))
}

/// The "Getting started" checklist, for administrators while a step is left (None otherwise).
#[server(endpoint = "getting_started")]
pub async fn getting_started() -> Result<Option<Vec<payments::domain::views::SetupStep>>, AppError> {
    use crate::auth::ssr::{current_user, services};
    if !current_user().await?.is_some_and(|u| u.has(payments::Role::Administrator)) {
        return Ok(None);
    }
    let steps = payments::service::setup::getting_started(&services()?).await?;
    Ok(steps.iter().any(|s| !s.done).then_some(steps))
}

fn getting_started_panel(steps: Vec<payments::domain::views::SetupStep>) -> impl IntoView {
    let left = steps.iter().filter(|s| !s.done).count();
    view! {
        <section class="panel getting-started" data-testid="getting-started">
            <h2>"Getting started"</h2>
            <p class="small muted">{format!("{left} of {} steps left before Paystage takes its first card payment.", steps.len())}</p>
            <ol class="checklist">
                {steps.into_iter().map(|s| view! {
                    <li class=if s.done { "done" } else { "todo" } data-step=s.key.clone()>
                        <span class="tick" aria-label=if s.done { "Done" } else { "To do" }>{if s.done { "✓" } else { "" }}</span>
                        <a href=s.href.clone()>{s.label.clone()}</a>
                        <span class="small muted">{format!(" — {}", s.hint)}</span>
                    </li>
                }).collect_view()}
            </ol>
        </section>
    }
}

/// Where card payments stand: each count links to the page that works it.
fn standing_panel(st: PaymentStanding) -> impl IntoView {
    let tile = |n: u64, label: &'static str, href: &'static str, key: &'static str, attention: bool| {
        let class = if n > 0 && attention { "standing attention" } else { "standing" };
        view! {
            <a class=class href=href data-standing=key>
                <strong>{n.to_string()}</strong>
                <span class="small">{label}</span>
            </a>
        }
    };
    view! {
        <section class="panel">
            <h2>"Where card payments stand"</h2>
            <div class="standing-grid">
                {tile(st.incomplete_processes, "incomplete card payments to resume or terminate", "/payments/incomplete", "incomplete", true)}
                {tile(st.pending_authorization, "payments in Pending Authorization: a new payment is needed", "/payments/authorizations?status=pending_authorization", "pending", true)}
                {tile(st.orders_on_hold, "orders on hold (Do not process)", "/payments/authorizations?status=pending_authorization", "held", true)}
                {tile(st.expiring_soon, "authorizations expiring within 7 days", "/payments/authorizations?status=authorized", "expiring", false)}
            </div>
        </section>
    }
}

/// The overview: for finance users where card payments stand, then who you are and the pages
/// your roles open, grouped as in the navigation.
#[component]
pub fn HomePage() -> impl IntoView {
    let user = expect_context::<UserResource>();
    let standing = Resource::new(|| (), |_| load_payment_standing());
    let setup = Resource::new(|| (), |_| getting_started());
    view! {
        <PageHeader title="Overview" intro="Where each card payment stands, from authorization to the last invoice." />
        {loaded(setup, |steps| steps.map(getting_started_panel))}
        {loaded(standing, |st| st.map(standing_panel))}
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                let Some(u) = user.await.ok().flatten() else {
                    return view! { <p>"Sign in to continue."</p> }.into_any();
                };
                let roles = u.roles.iter().map(|r| r.label()).collect::<Vec<_>>().join(", ");
                let noun = if u.roles.len() == 1 { "role" } else { "roles" };
                let groups = NavGroup::ALL
                    .into_iter()
                    .filter(|g| *g != NavGroup::Home)
                    .filter_map(|g| {
                        let cards: Vec<_> = PAGES.iter().filter(|p| p.group == g && u.has_any(p.roles)).collect();
                        (!cards.is_empty()).then(|| {
                            let cards = cards
                                .into_iter()
                                .map(|p| view! { <a class="card-link" href=p.path>{p.title}</a> })
                                .collect_view();
                            view! {
                                <section class="panel">
                                    <h2>{g.label()}</h2>
                                    <div class="card-links">{cards}</div>
                                </section>
                            }
                        })
                    })
                    .collect_view();
                view! {
                    <p class="welcome">
                        "Signed in as " <strong>{u.display_name.clone()}</strong> " (" {u.username.clone()} "), " {noun} ": "
                        {roles} "."
                    </p>
                    {groups}
                    <p class="muted small">
                        "The online store's web shop, where shoppers pay with a card that Paystage never saves: "
                        <a href="/shop" rel="external">"/shop"</a>
                    </p>
                }
                    .into_any()
            })}
        </Suspense>
    }
}
