//! Who may do what. The role a page or action needs is declared once, here and in the app's route
//! table, and checked on the server for every page and every server function.
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Features, parameters, users, the audit log.
    Administrator,
    /// Invoicing, incomplete payments, authorization management, journals.
    Finance,
    /// Orders, payments, customer cards.
    CallCenter,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Administrator, Role::Finance, Role::CallCenter];

    /// The stable code stored in the database.
    pub fn code(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Finance => "finance",
            Role::CallCenter => "call_center",
        }
    }

    pub fn from_code(code: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.code() == code)
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Administrator => "Administrator",
            Role::Finance => "Finance",
            Role::CallCenter => "Call center",
        }
    }
}

/// The signed-in user as pages and server functions see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentUser {
    pub id: i32,
    pub username: String,
    pub display_name: String,
    pub roles: Vec<Role>,
}

impl CurrentUser {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// True when the user holds at least one of `roles` (an empty list means any signed-in user).
    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.is_empty() || roles.iter().any(|r| self.has(*r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_codes_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::from_code(role.code()), Some(role));
        }
        assert_eq!(Role::from_code("root"), None);
    }

    #[test]
    fn has_any_requires_one_of_the_roles() {
        let user = CurrentUser { id: 1, username: "f".into(), display_name: "F".into(), roles: vec![Role::Finance] };
        assert!(user.has_any(&[Role::Administrator, Role::Finance]));
        assert!(!user.has_any(&[Role::Administrator]));
        assert!(user.has_any(&[]));
    }
}
