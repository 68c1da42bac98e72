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

pub const PAGES: &[PageDef] = &[
    PageDef { path: "/", title: "Overview", group: NavGroup::Home, roles: &[] },
    PageDef {
        path: "/parameters/accounts-receivable",
        title: "Accounts receivable parameters",
        group: NavGroup::AccountsReceivable,
        roles: ADMIN,
    },
    PageDef { path: "/customers", title: "Customers", group: NavGroup::RetailAndCommerce, roles: &[Role::Finance, Role::CallCenter] },
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
];

/// Pages anyone may open.
pub const PUBLIC_PATHS: &[&str] = &["/login"];

pub fn page_for(path: &str) -> Option<&'static PageDef> {
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    PAGES.iter().find(|p| p.path == path)
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
    fn lookup_ignores_a_trailing_slash() {
        assert_eq!(page_for("/admin/features/").map(|p| p.title), Some("Feature management"));
        assert!(page_for("/nowhere").is_none());
    }
}
