use crate::components::{PageHeader, UserResource};
use crate::nav::{NavGroup, PAGES};
use leptos::prelude::*;

/// The overview: who you are and the pages your roles open, grouped as in the navigation.
#[component]
pub fn HomePage() -> impl IntoView {
    let user = expect_context::<UserResource>();
    view! {
        <PageHeader title="Overview" intro="Where each card payment stands, from authorization to the last invoice." />
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
