//! Every page but the sign-in page is a lazy route (Leptos 0.8's `LazyRoute`): its code is split
//! out of the main wasm module into chunks (`scripts/build-site.sh` runs wasm-split), which the
//! browser loads when a page of its area is first shown. The server renders every page whole and
//! names the chunks the page needs in preload links, so hydration does not wait on a waterfall.
//! The pages are grouped in four areas, one split point each; the pages load their own data, so
//! `data()` has nothing to start before the chunk arrives.
use crate::components::Layout;
use crate::pages::*;
use leptos::prelude::*;
use leptos_router::LazyRoute;

/// `lazy_area! { chunk_fn, __preload_chunk_fn: Pages { Route => module::Page, … } }`: one route
/// type per page, all of whose views sit behind one lazy function, so the pages of an area share
/// one split point. `__preload_chunk_fn` is the function `#[lazy]` defines to load the chunk (a
/// macro_rules macro cannot build its name). Splitting per page made 400 chunk files (one per set
/// of pages sharing code) and up to 207 requests for one page; per area it makes 16 files.
macro_rules! lazy_area {
    ($chunk:ident, $preload:ident: $pages:ident { $($route:ident => $($page:ident)::+,)* }) => {
        #[derive(Clone, Copy)]
        pub enum $pages {
            $($route,)*
        }

        #[leptos::lazy]
        fn $chunk(page: $pages) -> AnyView {
            match page {
                $($pages::$route => view! { <Layout>{$($page)::+()}</Layout> }.into_any(),)*
            }
        }

        $(
            pub struct $route;

            impl LazyRoute for $route {
                fn data() -> Self {
                    Self
                }

                async fn view(_this: Self) -> AnyView {
                    $chunk($pages::$route).await
                }

                async fn preload() {
                    #[cfg(target_arch = "wasm32")]
                    $preload().await;
                }
            }
        )*
    };
}

lazy_area! {
    orders_pages, __preload_orders_pages: OrderPages {
        OrdersRoute => orders::OrdersPage,
        OrderDetailRoute => order_detail::OrderDetailPage,
        NewOrderRoute => new_order::NewOrderPage,
        NewPaymentRoute => payment::NewPaymentPage,
        CancelOrderRoute => cancel_order::CancelOrderPage,
    }
}

lazy_area! {
    payment_pages, __preload_payment_pages: PaymentPages {
        AuthorizationsRoute => authorizations::AuthorizationsPage,
        AuthorizationDetailRoute => authorizations::AuthorizationDetailPage,
        IncompleteRoute => incomplete::IncompletePage,
        ProcessHistoryRoute => incomplete::ProcessHistoryPage,
    }
}

lazy_area! {
    finance_pages, __preload_finance_pages: FinancePages {
        HomeRoute => home::HomePage,
        JournalsRoute => journals::JournalsPage,
        ReconciliationRoute => reconciliation::ReconciliationPage,
        ExposureRoute => exposure::ExposurePage,
        ForecastRoute => forecast::ForecastPage,
        OpenInvoicesRoute => open_invoices::OpenInvoicesPage,
        NotificationsRoute => notifications::NotificationsPage,
        AccountDepositRoute => account_deposit::AccountDepositPage,
        CustomersRoute => customers::CustomersPage,
        CustomerCardsRoute => customers::CustomerCardsPage,
        CustomerRoute => customers::CustomerPage,
    }
}

lazy_area! {
    admin_pages, __preload_admin_pages: AdminPages {
        SimulatorRoute => simulator::SimulatorPage,
        FeaturesRoute => features::FeaturesPage,
        UsersRoute => users::UsersPage,
        AuditRoute => audit::AuditPage,
        ChannelsRoute => channels::ChannelsPage,
        ConnectorsRoute => connectors::ConnectorsPage,
        ElectronicPaymentSetupRoute => payment_setup::ElectronicPaymentSetupPage,
        ParametersRoute => parameters::ParametersPage,
    }
}
