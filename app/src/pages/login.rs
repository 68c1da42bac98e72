use crate::auth::Login;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// Sign-in. Works as a plain form before the wasm loads; the Show/Hide password button needs
/// hydration (and the end-to-end tests use it to prove hydration happened).
#[component]
pub fn LoginPage() -> impl IntoView {
    let action = ServerAction::<Login>::new();
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    let (show, set_show) = signal(false);
    let error = move || action.value().with(|v| match v {
        Some(Err(e)) => Some(view! { <div class="notice error" role="alert">{e.to_string()}</div> }),
        _ => None,
    });
    view! {
        <Title text="Sign in" />
        <div class="login-wrap">
            <div class="login-card">
                <div class="brand">
                    <span class="brand-mark">"P"</span>
                    "Paystage"
                </div>
                <h1>"Sign in"</h1>
                <p class="muted">"Card payment operations for finance, call center and administration."</p>
                {error}
                <ActionForm action=action>
                    <input type="hidden" name="next" value=next />
                    <div class="field">
                        <label for="username">"Username"</label>
                        <input id="username" name="username" autocomplete="username" required autofocus />
                    </div>
                    <div class="field">
                        <label for="password">"Password"</label>
                        <div class="password-row">
                            <input
                                id="password"
                                name="password"
                                type=move || if show.get() { "text" } else { "password" }
                                autocomplete="current-password"
                                required
                            />
                            <button
                                type="button"
                                class="secondary"
                                data-testid="toggle-password"
                                aria-pressed=move || show.get().to_string()
                                on:click=move |_| set_show.update(|s| *s = !*s)
                            >
                                {move || if show.get() { "Hide" } else { "Show" }}
                            </button>
                        </div>
                    </div>
                    <button type="submit" class="primary wide">"Sign in"</button>
                </ActionForm>
            </div>
        </div>
    }
}
