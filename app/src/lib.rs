//! Paystage's user interface: server-rendered Leptos pages that hydrate in the browser, and the
//! server functions they call. Server functions stay thin: check the role, parse, call one
//! `payments` service, map the error.
#![recursion_limit = "256"]

pub mod auth;
pub mod components;
pub mod error;
pub mod nav;
pub mod pages;
mod routes;
#[cfg(feature = "ssr")]
pub mod state;

use components::Layout;
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::Lazy;
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
                <Route path=path!("/") view={Lazy::<routes::HomeRoute>::new()} />
                <Route path=path!("/customers") view={Lazy::<routes::CustomersRoute>::new()} />
                <Route path=path!("/customers/:id/cards") view={Lazy::<routes::CustomerCardsRoute>::new()} />
                <Route path=path!("/customers/:id") view={Lazy::<routes::CustomerRoute>::new()} />
                <Route path=path!("/orders/:id/payment") view={Lazy::<routes::NewPaymentRoute>::new()} />
                <Route path=path!("/orders/:id/cancel") view={Lazy::<routes::CancelOrderRoute>::new()} />
                <Route path=path!("/journals") view={Lazy::<routes::JournalsRoute>::new()} />
                <Route path=path!("/reconciliation") view={Lazy::<routes::ReconciliationRoute>::new()} />
                <Route path=path!("/payments/exposure") view={Lazy::<routes::ExposureRoute>::new()} />
                <Route path=path!("/payments/expiry-forecast") view={Lazy::<routes::ForecastRoute>::new()} />
                <Route path=path!("/invoices/open") view={Lazy::<routes::OpenInvoicesRoute>::new()} />
                <Route path=path!("/payments/notifications") view={Lazy::<routes::NotificationsRoute>::new()} />
                <Route path=path!("/deposits") view={Lazy::<routes::AccountDepositRoute>::new()} />
                <Route path=path!("/payments/authorizations") view={Lazy::<routes::AuthorizationsRoute>::new()} />
                <Route path=path!("/payments/authorizations/:id") view={Lazy::<routes::AuthorizationDetailRoute>::new()} />
                <Route path=path!("/orders") view={Lazy::<routes::OrdersRoute>::new()} />
                <Route path=path!("/orders/new") view={Lazy::<routes::NewOrderRoute>::new()} />
                <Route path=path!("/orders/:id") view={Lazy::<routes::OrderDetailRoute>::new()} />
                <Route path=path!("/payments/incomplete") view={Lazy::<routes::IncompleteRoute>::new()} />
                <Route path=path!("/payments/process/:id") view={Lazy::<routes::ProcessHistoryRoute>::new()} />
                <Route path=path!("/admin/simulator") view={Lazy::<routes::SimulatorRoute>::new()} />
                <Route path=path!("/admin/features") view={Lazy::<routes::FeaturesRoute>::new()} />
                <Route path=path!("/admin/users") view={Lazy::<routes::UsersRoute>::new()} />
                <Route path=path!("/admin/audit") view={Lazy::<routes::AuditRoute>::new()} />
                <Route path=path!("/parameters/stores") view={Lazy::<routes::ChannelsRoute>::new()} />
                <Route path=path!("/parameters/connectors") view={Lazy::<routes::ConnectorsRoute>::new()} />
                <Route path=path!("/parameters/electronic-payment-setup") view={Lazy::<routes::ElectronicPaymentSetupRoute>::new()} />
                <Route path=path!("/parameters/:group") view={Lazy::<routes::ParametersRoute>::new()} />
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
