//! Every page, where it sits in the navigation, and who may open it. The server's page guard and
//! the navigation both read this table, so a page cannot be shown in one and unguarded in the other.
use payments::domain::access::Role;
use NavGroup::{AccountsReceivable, Home, RetailAndCommerce, SystemAdministration};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NavGroup {
    Home,
    AccountsReceivable,
    RetailAndCommerce,
    SystemAdministration,
}

impl NavGroup {
    pub const ALL: [NavGroup; 4] =
        [NavGroup::Home, NavGroup::AccountsReceivable, NavGroup::RetailAndCommerce, NavGroup::SystemAdministration];

    pub fn label(self) -> &'static str {
        match self {
            NavGroup::Home => "Home",
            NavGroup::AccountsReceivable => "Accounts receivable",
            NavGroup::RetailAndCommerce => "Retail and Commerce",
            NavGroup::SystemAdministration => "System administration",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageDef {
    pub path: &'static str,
    pub title: &'static str,
    pub group: NavGroup,
    /// Roles that may open the page; empty means any signed-in user.
    pub roles: &'static [Role],
}

const fn page(path: &'static str, title: &'static str, group: NavGroup, roles: &'static [Role]) -> PageDef {
    PageDef { path, title, group, roles }
}

const ADMIN: &[Role] = &[Role::Administrator];
const ORDERS: &[Role] = &[Role::Finance, Role::CallCenter];
const FINANCE: &[Role] = &[Role::Finance];
const FINANCE_ADMIN: &[Role] = &[Role::Finance, Role::Administrator];
/// Customers are set up by finance, the call center, and administrators setting up a store.
const CUSTOMERS: &[Role] = &[Role::Finance, Role::CallCenter, Role::Administrator];

pub const PAGES: &[PageDef] = &[
    page("/", "Overview", Home, &[]),
    page("/orders", "Sales orders", AccountsReceivable, ORDERS),
    page("/orders/new", "New sales order", AccountsReceivable, ORDERS),
    page("/invoices/open", "Open customer invoices", AccountsReceivable, FINANCE),
    page("/payments/incomplete", "Incomplete cards payment", AccountsReceivable, FINANCE),
    page("/journals", "Journals", AccountsReceivable, FINANCE),
    page("/reconciliation", "Reconciliation", AccountsReceivable, FINANCE),
    page("/payments/exposure", "Authorization exposure", AccountsReceivable, FINANCE),
    page("/payments/expiry-forecast", "Expiry forecast", AccountsReceivable, FINANCE),
    page("/payments/notifications", "Processor notifications", AccountsReceivable, FINANCE_ADMIN),
    page("/payments/authorizations", "Authorization management", RetailAndCommerce, ORDERS),
    page("/parameters/accounts-receivable", "Accounts receivable parameters", AccountsReceivable, ADMIN),
    page("/customers", "Customers", RetailAndCommerce, CUSTOMERS),
    page("/deposits", "Customer account deposit", RetailAndCommerce, ORDERS),
    page("/parameters/commerce", "Commerce parameters", RetailAndCommerce, ADMIN),
    page("/parameters/call-center", "Call center parameters", RetailAndCommerce, ADMIN),
    page("/parameters/payment-properties", "Payment properties", RetailAndCommerce, ADMIN),
    page("/parameters/stores", "Stores and channels", RetailAndCommerce, ADMIN),
    page("/parameters/connectors", "Payment connectors", RetailAndCommerce, ADMIN),
    page("/parameters/electronic-payment-setup", "Electronic payment setup", RetailAndCommerce, ADMIN),
    page("/admin/features", "Feature management", SystemAdministration, ADMIN),
    page("/admin/users", "Users", SystemAdministration, ADMIN),
    page("/admin/audit", "Audit log", SystemAdministration, ADMIN),
    page("/admin/simulator", "Processor faults", SystemAdministration, ADMIN),
];

/// Pages reached from other pages, not listed in the navigation; `:id` matches one path segment.
pub const DETAIL_PAGES: &[PageDef] = &[
    page("/orders/:id", "Sales order", AccountsReceivable, ORDERS),
    page("/payments/process/:id", "Payment stages", AccountsReceivable, FINANCE),
    page("/orders/:id/payment", "New payment", AccountsReceivable, ORDERS),
    page("/orders/:id/cancel", "Cancel order", AccountsReceivable, FINANCE),
    page("/journals.csv", "Journals (CSV)", AccountsReceivable, FINANCE),
    page("/reconciliation.csv", "Reconciliation breaks (CSV)", AccountsReceivable, FINANCE),
    page("/payments/authorizations/:id", "Authorization", RetailAndCommerce, ORDERS),
    page("/customers/:id/cards", "Customer credit cards", RetailAndCommerce, ORDERS),
    page("/customers/:id", "Customer", RetailAndCommerce, CUSTOMERS),
];

fn matches_pattern(pattern: &str, path: &str) -> bool {
    let (mut p, mut q) = (pattern.split('/'), path.split('/'));
    loop {
        match (p.next(), q.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.starts_with(':') => {
                if b.is_empty() {
                    return false;
                }
            }
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// Paths anyone may open, with any method: sign-in, the health check, the web shop, the processor's
/// card page (which sends the browser on to the processor's hosted page) and the icon; and every path under [`PUBLIC_PREFIXES`].
pub const PUBLIC_PATHS: &[&str] = &["/login", "/healthz", "/shop", "/processor/acceptance", "/favicon.svg"];

/// The built browser bundle and stylesheet.
pub const PUBLIC_PREFIXES: &[&str] = &["/pkg/"];

/// Server functions: each checks its caller's session and roles itself (the role matrix).
pub const SERVER_FUNCTION_PREFIX: &str = "/api/";

/// What the server's guard does with a request for a path (issue #40: deny by default). Every
/// path is public by name, a server function, or a page in [`PAGES`] / [`DETAIL_PAGES`] needing a
/// session and the page's roles, for every method; anything else is refused as not found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    ServerFunction,
    Page(&'static PageDef),
    Unknown,
}

pub fn access(path: &str) -> Access {
    if PUBLIC_PATHS.contains(&path) || PUBLIC_PREFIXES.iter().any(|p| path.starts_with(p)) {
        Access::Public
    } else if path.starts_with(SERVER_FUNCTION_PREFIX) {
        Access::ServerFunction
    } else {
        page_for(path).map_or(Access::Unknown, Access::Page)
    }
}

/// `raw` if it is a path on this site a browser can be sent to, else `None`: it starts with one
/// `/`, and every character is printable ASCII other than `\` (no control characters, no spaces,
/// which browsers drop or rewrite, turning `/<TAB>/evil.test` into `//evil.test`).
pub fn local_path(raw: &str) -> Option<&str> {
    let ok = raw.starts_with('/') && !raw.starts_with("//") && raw.len() <= 2048 && raw.chars().all(|c| c.is_ascii_graphic() && c != '\\');
    ok.then_some(raw)
}

pub fn page_for(path: &str) -> Option<&'static PageDef> {
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    PAGES.iter().find(|p| p.path == path).or_else(|| DETAIL_PAGES.iter().find(|p| matches_pattern(p.path, path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_and_admin_page_is_administrator_only() {
        for p in PAGES.iter().filter(|p| p.path.starts_with("/parameters") || p.path.starts_with("/admin")) {
            assert_eq!(p.roles, ADMIN, "{}", p.path);
        }
    }

    #[test]
    fn redirect_targets_are_local_paths_only() {
        // Issue #40: parsed, not prefix-checked.
        for ok in ["/", "/orders/12?x=1", "/shop", "/%2F/x"] {
            assert_eq!(local_path(ok), Some(ok), "{ok:?}");
        }
        for bad in ["//evil.test", "/\t/evil.test", "/\\evil.test", "/\r\nSet-Cookie: x", "https://evil.test", "evil", "", "/ space", "/é", "/\u{202e}x", "\\/evil"] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
        assert_eq!(local_path(&format!("/{}", "a".repeat(3000))), None);
    }

    #[test]
    fn every_path_is_public_a_server_function_or_a_guarded_page() {
        assert_eq!(access("/login"), Access::Public);
        assert_eq!(access("/pkg/paystage.wasm"), Access::Public);
        assert_eq!(access("/api/login"), Access::ServerFunction);
        assert!(matches!(access("/journals.csv"), Access::Page(p) if p.roles == FINANCE));
        assert!(matches!(access("/orders/7"), Access::Page(_)));
        assert_eq!(access("/etc/passwd"), Access::Unknown);
        assert_eq!(access("/parameters/nope"), Access::Unknown);
        assert_eq!(access("/pkg"), Access::Unknown);
    }

    #[test]
    fn detail_pages_are_guarded_by_pattern() {
        assert_eq!(page_for("/orders/12").map(|p| p.roles), Some(ORDERS));
        assert_eq!(page_for("/orders/new").map(|p| p.title), Some("New sales order"));
        assert_eq!(page_for("/payments/process/3").map(|p| p.roles), Some(FINANCE));
        assert!(page_for("/orders/12/extra").is_none());
    }

    #[test]
    fn lookup_ignores_a_trailing_slash() {
        assert_eq!(page_for("/admin/features/").map(|p| p.title), Some("Feature management"));
        assert!(page_for("/nowhere").is_none());
    }
}
