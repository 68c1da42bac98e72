//! The page frame (navigation, user menu) and the small pieces every page uses.
use crate::auth::{get_current_user, Logout};
use crate::error::AppError;
use crate::nav::{NavGroup, PAGES};
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_location;
use payments::domain::access::CurrentUser;

/// The signed-in user, loaded once per page load and shared with every page through context.
pub type UserResource = Resource<Result<Option<CurrentUser>, AppError>>;

#[component]
pub fn Layout(children: Children) -> impl IntoView {
    let user: UserResource = Resource::new(|| (), |_| get_current_user());
    provide_context(user);
    let logout = ServerAction::<Logout>::new();
    view! {
        <div class="frame">
            <header class="topbar">
                <a class="brand" href="/">
                    <span class="brand-mark">"P"</span>
                    "Paystage"
                </a>
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        match user.await {
                            Ok(Some(u)) => {
                                let roles = u.roles.iter().map(|r| r.label()).collect::<Vec<_>>().join(", ");
                                view! {
                                    <div class="user-menu">
                                        <span class="user-name" data-testid="signed-in-user">{u.display_name.clone()}</span>
                                        <span class="user-roles">{roles}</span>
                                        <ActionForm action=logout>
                                            <button type="submit" class="link-button">"Sign out"</button>
                                        </ActionForm>
                                    </div>
                                }
                                    .into_any()
                            }
                            _ => view! { <a href="/login">"Sign in"</a> }.into_any(),
                        }
                    })}
                </Suspense>
            </header>
            <div class="body">
                <nav class="sidebar" aria-label="Main">
                    <Suspense fallback=|| ()>
                        {move || Suspend::new(async move {
                            let u = user.await.ok().flatten();
                            view! { <NavLinks user=u /> }
                        })}
                    </Suspense>
                </nav>
                <main class="content">{children()}</main>
            </div>
        </div>
    }
}

#[component]
fn NavLinks(user: Option<CurrentUser>) -> impl IntoView {
    let Some(user) = user else {
        return view! { <p class="muted">"Sign in to see your pages."</p> }.into_any();
    };
    let location = use_location();
    NavGroup::ALL
        .into_iter()
        .filter_map(|group| {
            let pages: Vec<_> = PAGES.iter().filter(|p| p.group == group && user.has_any(p.roles)).collect();
            if pages.is_empty() {
                return None;
            }
            let links = pages
                .into_iter()
                .map(|p| {
                    let path = p.path;
                    let current = move || location.pathname.get() == path;
                    view! {
                        <li>
                            <A href=path attr:class=move || if current() { "nav-link current" } else { "nav-link" }>
                                {p.title}
                            </A>
                        </li>
                    }
                })
                .collect_view();
            Some(view! {
                <div class="nav-group">
                    <h2>{group.label()}</h2>
                    <ul>{links}</ul>
                </div>
            })
        })
        .collect_view()
        .into_any()
}

#[component]
pub fn PageHeader(title: &'static str, #[prop(optional)] intro: &'static str) -> impl IntoView {
    view! {
        <leptos_meta::Title text=title />
        <div class="page-header">
            <h1>{title}</h1>
            {(!intro.is_empty()).then(|| view! { <p class="intro">{intro}</p> })}
        </div>
    }
}

#[component]
pub fn ErrorNotice(error: AppError) -> impl IntoView {
    view! {
        <div class="notice error" role="alert">
            {error.to_string()}
        </div>
    }
}

/// The outcome of the last submission of a form: its error, or `success` once it went through.
/// With `scope`, only errors for that form (of several on a page) are shown.
pub fn outcome<T: Send + Sync + 'static>(
    value: impl With<Value = Option<Result<T, AppError>>> + Send + Sync + 'static,
    success: &'static str,
    scope: Option<String>,
) -> impl IntoView {
    move || {
        value.with(|v| match v {
            Some(Err(e)) if e.is_for_scope(scope.as_deref()) => {
                Some(view! { <div class="notice error" role="alert">{e.to_string()}</div> }.into_any())
            }
            Some(Ok(_)) if scope.is_none() => {
                Some(view! { <div class="notice success" role="status">{success}</div> }.into_any())
            }
            _ => None,
        })
    }
}

/// An action's answer in words: its message as a success notice, or its refusal as an alert.
pub fn said(value: impl With<Value = Option<Result<String, AppError>>> + Send + Sync + 'static) -> impl IntoView {
    move || {
        value.with(|v| match v {
            Some(Ok(m)) => Some(view! { <div class="notice success" role="status">{m.clone()}</div> }.into_any()),
            Some(Err(e)) => Some(view! { <div class="notice error" role="alert">{e.to_string()}</div> }.into_any()),
            None => None,
        })
    }
}

/// The message for `field` from the last submission, shown next to the field.
pub fn field_error<T: Send + Sync + 'static>(
    value: impl With<Value = Option<Result<T, AppError>>> + Send + Sync + 'static,
    field: &'static str,
    scope: Option<String>,
) -> impl IntoView {
    move || {
        value.with(|v| match v {
            Some(Err(e)) => e
                .field_message(field, scope.as_deref())
                .map(|m| view! { <p class="field-error" data-field=field>{m}</p> }),
            _ => None,
        })
    }
}

/// A counter that goes up each time `succeeded` becomes true (an action's last result was `Ok`);
/// a page's resource depends on it so it reloads after a successful save, and only then: after a
/// refused save the form keeps what the user typed next to the messages.
pub fn successes(succeeded: impl Fn() -> bool + 'static) -> RwSignal<u32> {
    let count = RwSignal::new(0u32);
    Effect::new(move |_| {
        if succeeded() {
            count.update(|n| *n += 1);
        }
    });
    count
}

/// [`successes`] for a page of several forms: one count per action, each going up only when that
/// action's own result turns `Ok`, summed. Joining the checks with `||` in one `successes` is wrong
/// twice over: once one action has succeeded, `||` no longer reads the others, so their later
/// successes stopped reloading the page (a channel closed after one was added stayed "Open"); and
/// read without the short circuit, a refused submission would reload it because another form
/// succeeded before, wiping what was typed.
pub fn successes_each(checks: Vec<Box<dyn Fn() -> bool + Send + Sync>>) -> Signal<u32> {
    let counts: Vec<RwSignal<u32>> = checks.into_iter().map(successes).collect();
    Signal::derive(move || counts.iter().map(|c| c.get()).sum())
}

/// A form's submit button that waits while its action is on its way, so a double click sends the
/// action once (Playwright: a double-clicked Invoice invoiced twice before).
#[component]
pub fn SubmitButton(#[prop(into)] pending: Signal<bool>, #[prop(optional)] class: Option<&'static str>, children: Children) -> impl IntoView {
    view! { <button type="submit" class=class disabled=move || pending.get()>{children()}</button> }
}

/// A form's handle that empties the form's fields once `succeeded` turns true. The order page
/// renders again in place after an invoice or a credit note, keeping the input elements and what
/// was typed in them; a second click would post the same quantities again.
pub fn cleared_on_success(succeeded: impl Fn() -> bool + 'static) -> NodeRef<leptos::html::Form> {
    let form = NodeRef::<leptos::html::Form>::new();
    Effect::new(move |_| {
        if succeeded() {
            if let Some(f) = form.get_untracked() {
                f.reset();
            }
        }
    });
    form
}

/// Renders a resource's value with `f`, or its error.
pub fn loaded<T, V>(res: Resource<Result<T, AppError>>, f: impl Fn(T) -> V + Send + Sync + Clone + 'static) -> impl IntoView
where
    T: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
    V: IntoView + 'static,
{
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {
                let f = f.clone();
                move || {
                    let f = f.clone();
                    Suspend::new(async move {
                        match res.await {
                            Ok(v) => f(v).into_any(),
                            Err(e) => view! { <ErrorNotice error=e /> }.into_any(),
                        }
                    })
                }
            }
        </Transition>
    }
}

/// A Yes/No select, named `name`, showing `value`.
#[component]
pub fn YesNoSelect(name: String, value: bool, #[prop(optional)] id: Option<String>) -> impl IntoView {
    view! {
        <select name=name id=id>
            <option value="yes" selected=value>"Yes"</option>
            <option value="no" selected=!value>"No"</option>
        </select>
    }
}

/// The consent / acknowledgement dialog (R-TOK-3, R-TOK-4, R-TOK-6). It opens when the last
/// submission of `action` was refused with [`AppError::ConfirmationRequired`], inside the form it
/// belongs to: OK writes the confirmation's code into the form's hidden `confirmed` input and
/// submits the form again; Cancel closes it, and nothing is authorized or stored.
#[component]
pub fn ConfirmationDialog(
    /// The last submission's error, if any.
    #[prop(into)]
    error: Signal<Option<AppError>>,
    /// The action's version, so a Cancel holds for this submission only.
    #[prop(into)]
    version: Signal<usize>,
    confirmed: NodeRef<leptos::html::Input>,
    /// What Cancel leaves the user with.
    cancelled_text: &'static str,
) -> impl IntoView {
    let cancelled_at = RwSignal::new(None::<usize>);
    let pending = move || {
        error.with(|e| match e {
            Some(AppError::ConfirmationRequired { code, title, text }) => Some((code.clone(), title.clone(), text.clone())),
            _ => None,
        })
    };
    move || {
        let (code, title, text) = pending()?;
        if cancelled_at.get() == Some(version.get()) {
            return Some(view! { <div class="notice warning" role="status" data-testid="confirmation-cancelled">{cancelled_text}</div> }.into_any());
        }
        let ok = move |_| {
            if let Some(input) = confirmed.get() {
                input.set_value(&code);
            }
        };
        Some(
            view! {
                <div class="modal-backdrop">
                    <div class="modal" role="dialog" aria-modal="true" aria-labelledby="confirmation-title">
                        <h2 id="confirmation-title">{title}</h2>
                        <p>{text}</p>
                        <div class="actions">
                            <button type="submit" class="primary" on:click=ok>"OK"</button>
                            <button type="button" on:click=move |_| cancelled_at.set(Some(version.get_untracked()))>"Cancel"</button>
                        </div>
                    </div>
                </div>
            }
            .into_any(),
        )
    }
}

/// The links between the pages of a list, newest first: `link(n)` is page `n`'s address, `nouns`
/// what the list counts, one and many (("order", "orders")).
pub fn pager(page: u64, pages: u64, total: u64, nouns: (&'static str, &'static str), link: impl Fn(u64) -> String) -> impl IntoView {
    let noun = if total == 1 { nouns.0 } else { nouns.1 };
    view! {
        <div class="pager">
            {(page > 1).then(|| view! { <a href=link(page - 1)>"← Newer"</a> })}
            <span class="muted">{format!("Page {page} of {pages} · {total} {noun}")}</span>
            {(page < pages).then(|| view! { <a href=link(page + 1)>"Older →"</a> })}
        </div>
    }
}

/// A table's header row; a column named with a leading "n:" is numeric (right-aligned), e.g.
/// `table_head(&["Order", "n:Total"])`.
pub fn table_head(columns: &[&'static str]) -> impl IntoView + use<> {
    let cells = columns
        .iter()
        .map(|c| match c.strip_prefix("n:") {
            Some(name) => view! { <th class="num">{name}</th> }.into_any(),
            None => view! { <th>{*c}</th> }.into_any(),
        })
        .collect_view();
    view! { <thead><tr>{cells}</tr></thead> }
}

/// A filter value in a link's query string (`application/x-www-form-urlencoded`, as a GET form
/// sends it): a '+' typed in a filter stays a '+', a space becomes '+'.
pub fn query_value(s: &str) -> String {
    // '%' first (it introduces the others), '+' before the spaces become '+'.
    s.replace('%', "%25").replace('+', "%2B").replace('&', "%26").replace('#', "%23").replace(' ', "+")
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_survive_the_round_trip() {
        assert_eq!(super::query_value("a b+c&d#e%f"), "a+b%2Bc%26d%23e%25f");
    }
}
