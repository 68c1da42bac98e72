//! Paystage's user interface: server-rendered Leptos pages that hydrate in the browser, and the
//! server functions they call. Server functions stay thin: check the role, parse, call one
//! `payments` service, map the error.
#![recursion_limit = "256"]

pub mod auth;
pub mod components;
pub mod error;
pub mod nav;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod state;

use components::Layout;
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;
use pages::*;

/// The Content-Security-Policy (issue #40): scripts and WebAssembly from this site only (and the
/// page's own inline hydration script, by its `nonce`), styles, images, fonts and connections to
/// this site only; no plugins, no framing, no `<base>`, forms post to this site only.
pub fn csp(nonce: Option<&str>) -> String {
    let script = match nonce {
        Some(n) => format!("'self' 'nonce-{n}' 'wasm-unsafe-eval'"),
        None => "'self'".to_string(),
    };
    format!(
        "default-src 'self'; script-src {script}; style-src 'self'; img-src 'self' data:; font-src 'self'; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let (Some(nonce), Some(res)) = (leptos::nonce::use_nonce(), use_context::<leptos_axum::ResponseOptions>()) {
        if let Ok(v) = http::HeaderValue::from_str(&csp(Some(&nonce))) {
            res.insert_header(http::header::CONTENT_SECURITY_POLICY, v);
        }
    }
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="paystage" href="/pkg/paystage.css" />
        <Title formatter=|t: String| if t.is_empty() { "Paystage".to_string() } else { format!("{t} · Paystage") } />
        <Router>
            <Routes fallback=|| view! { <Layout><NotFound /></Layout> }>
                <Route path=path!("/login") view=login::LoginPage />
                <Route path=path!("/") view=|| view! { <Layout><home::HomePage /></Layout> } />
                <Route path=path!("/customers") view=|| view! { <Layout><customers::CustomersPage /></Layout> } />
                <Route path=path!("/customers/:id/cards") view=|| view! { <Layout><customers::CustomerCardsPage /></Layout> } />
                <Route path=path!("/orders/:id/payment") view=|| view! { <Layout><payment::NewPaymentPage /></Layout> } />
                <Route path=path!("/orders/:id/cancel") view=|| view! { <Layout><cancel_order::CancelOrderPage /></Layout> } />
                <Route path=path!("/journals") view=|| view! { <Layout><journals::JournalsPage /></Layout> } />
                <Route path=path!("/deposits") view=|| view! { <Layout><account_deposit::AccountDepositPage /></Layout> } />
                <Route path=path!("/payments/authorizations") view=|| view! { <Layout><authorizations::AuthorizationsPage /></Layout> } />
                <Route
                    path=path!("/payments/authorizations/:id")
                    view=|| view! { <Layout><authorizations::AuthorizationDetailPage /></Layout> }
                />
                <Route path=path!("/orders") view=|| view! { <Layout><orders::OrdersPage /></Layout> } />
                <Route path=path!("/orders/new") view=|| view! { <Layout><new_order::NewOrderPage /></Layout> } />
                <Route path=path!("/orders/:id") view=|| view! { <Layout><order_detail::OrderDetailPage /></Layout> } />
                <Route path=path!("/payments/incomplete") view=|| view! { <Layout><incomplete::IncompletePage /></Layout> } />
                <Route
                    path=path!("/payments/process/:id")
                    view=|| view! { <Layout><incomplete::ProcessHistoryPage /></Layout> }
                />
                <Route path=path!("/admin/simulator") view=|| view! { <Layout><simulator::SimulatorPage /></Layout> } />
                <Route path=path!("/admin/features") view=|| view! { <Layout><features::FeaturesPage /></Layout> } />
                <Route path=path!("/admin/users") view=|| view! { <Layout><users::UsersPage /></Layout> } />
                <Route path=path!("/admin/audit") view=|| view! { <Layout><audit::AuditPage /></Layout> } />
                <Route
                    path=path!("/parameters/connectors")
                    view=|| view! { <Layout><connectors::ConnectorsPage /></Layout> }
                />
                <Route
                    path=path!("/parameters/electronic-payment-setup")
                    view=|| view! { <Layout><payment_setup::ElectronicPaymentSetupPage /></Layout> }
                />
                <Route path=path!("/parameters/:group") view=|| view! { <Layout><parameters::ParametersPage /></Layout> } />
            </Routes>
        </Router>
    }
}

#[component]
fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Page not found" />
        <div class="page-header">
            <h1>"Page not found"</h1>
            <p class="intro">"There is no page at this address. Use the navigation on the left."</p>
        </div>
    }
}
