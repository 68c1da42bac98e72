//! Every page, where it sits in the navigation, and who may open it. The server's page guard and
//! the navigation both read this table, so a page cannot be shown in one and unguarded in the other.
use payments::domain::access::Role;

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

const ADMIN: &[Role] = &[Role::Administrator];
const ORDERS: &[Role] = &[Role::Finance, Role::CallCenter];
const FINANCE: &[Role] = &[Role::Finance];

pub const PAGES: &[PageDef] = &[
    PageDef { path: "/", title: "Overview", group: NavGroup::Home, roles: &[] },
    PageDef { path: "/orders", title: "Sales orders", group: NavGroup::AccountsReceivable, roles: ORDERS },
    PageDef { path: "/orders/new", title: "New sales order", group: NavGroup::AccountsReceivable, roles: ORDERS },
    PageDef { path: "/payments/incomplete", title: "Incomplete cards payment", group: NavGroup::AccountsReceivable, roles: FINANCE },
    PageDef { path: "/journals", title: "Journals", group: NavGroup::AccountsReceivable, roles: FINANCE },
    PageDef { path: "/payments/authorizations", title: "Authorization management", group: NavGroup::RetailAndCommerce, roles: ORDERS },
    PageDef {
        path: "/parameters/accounts-receivable",
        title: "Accounts receivable parameters",
        group: NavGroup::AccountsReceivable,
        roles: ADMIN,
    },
    PageDef { path: "/customers", title: "Customers", group: NavGroup::RetailAndCommerce, roles: &[Role::Finance, Role::CallCenter] },
    PageDef { path: "/deposits", title: "Customer account deposit", group: NavGroup::RetailAndCommerce, roles: ORDERS },
    PageDef { path: "/parameters/commerce", title: "Commerce parameters", group: NavGroup::RetailAndCommerce, roles: ADMIN },
    PageDef { path: "/parameters/call-center", title: "Call center parameters", group: NavGroup::RetailAndCommerce, roles: ADMIN },
    PageDef { path: "/parameters/payment-properties", title: "Payment properties", group: NavGroup::RetailAndCommerce, roles: ADMIN },
    PageDef { path: "/parameters/connectors", title: "Payment connectors", group: NavGroup::RetailAndCommerce, roles: ADMIN },
    PageDef {
        path: "/parameters/electronic-payment-setup",
        title: "Electronic payment setup",
        group: NavGroup::RetailAndCommerce,
        roles: ADMIN,
    },
    PageDef { path: "/admin/features", title: "Feature management", group: NavGroup::SystemAdministration, roles: ADMIN },
    PageDef { path: "/admin/users", title: "Users", group: NavGroup::SystemAdministration, roles: ADMIN },
    PageDef { path: "/admin/audit", title: "Audit log", group: NavGroup::SystemAdministration, roles: ADMIN },
    PageDef { path: "/admin/simulator", title: "Processor simulator", group: NavGroup::SystemAdministration, roles: ADMIN },
];

/// Pages reached from other pages, not listed in the navigation; `:id` matches one path segment.
pub const DETAIL_PAGES: &[PageDef] = &[
    PageDef { path: "/orders/:id", title: "Sales order", group: NavGroup::AccountsReceivable, roles: ORDERS },
    PageDef { path: "/payments/process/:id", title: "Payment stages", group: NavGroup::AccountsReceivable, roles: FINANCE },
    PageDef { path: "/orders/:id/payment", title: "New payment", group: NavGroup::AccountsReceivable, roles: ORDERS },
    PageDef { path: "/orders/:id/cancel", title: "Cancel order", group: NavGroup::AccountsReceivable, roles: FINANCE },
    PageDef { path: "/journals.csv", title: "Journals (CSV)", group: NavGroup::AccountsReceivable, roles: FINANCE },
    PageDef { path: "/payments/authorizations/:id", title: "Authorization", group: NavGroup::RetailAndCommerce, roles: ORDERS },
    PageDef { path: "/customers/:id/cards", title: "Customer credit cards", group: NavGroup::RetailAndCommerce, roles: ORDERS },
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

/// Pages anyone may open.
pub const PUBLIC_PATHS: &[&str] = &["/login"];

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
