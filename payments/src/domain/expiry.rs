//! When an authorization expires and what its expiry changes (R-AUT-3, R-AUT-4, R-PAR-6): pure
//! decisions over plain facts. Where they are read and stored (the watermark, settling an order,
//! the job) is `ledger::expiry`.
use crate::domain::order::{AuthorizationStatus, PaymentStatus};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};

/// R-AUT-3, R-PAR-6: how many days an authorization lives. The store's pre-authorization duration
/// for the payment type wins (at least one day); without one, the accounts-receivable parameter.
pub fn expiry_days(store_duration: Option<i32>, ar_days: u32) -> u32 {
    match store_duration {
        Some(days) => days.max(1).unsigned_abs(),
        None => ar_days,
    }
}

/// An authorization as expiry sees it.
#[derive(Clone, Copy, Debug)]
pub struct AuthorizationFacts {
    pub id: i32,
    pub payment_line_id: i32,
    pub expires_at: DateTime<Utc>,
    pub status: AuthorizationStatus,
}

/// A card payment line as expiry sees it.
#[derive(Clone, Copy, Debug)]
pub struct LineFacts {
    pub id: i32,
    pub status: PaymentStatus,
}

/// What expiry changes on one order that has not been settled since.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overlay {
    /// Open authorizations the job has expired.
    pub expired: HashSet<i32>,
    /// Card payment lines expiry moved, with the status they now have.
    pub lines: HashMap<i32, PaymentStatus>,
    /// Expiry holds the order (Do not process).
    pub hold: bool,
}

impl Overlay {
    pub fn is_empty(&self) -> bool {
        self.expired.is_empty() && self.lines.is_empty() && !self.hold
    }
}

/// R-AUT-4 for one order, the job having expired everything through `expired_through`: each open
/// authorization expiring then or before is expired; a card line that was Authorized and that no
/// later open authorization still covers reads Pending Authorization (Declined for an online
/// storefront order); the order is held when no open authorization of it expires later.
pub fn derive(expired_through: DateTime<Utc>, authorizations: &[AuthorizationFacts], lines: &[LineFacts], online: bool) -> Overlay {
    let open: Vec<&AuthorizationFacts> = authorizations.iter().filter(|a| a.status == AuthorizationStatus::Open).collect();
    let expired: HashSet<i32> = open.iter().filter(|a| a.expires_at <= expired_through).map(|a| a.id).collect();
    if expired.is_empty() {
        return Overlay::default();
    }
    let live = |line: Option<i32>| open.iter().any(|a| a.expires_at > expired_through && line.is_none_or(|l| a.payment_line_id == l));
    let moved = if online { PaymentStatus::Declined } else { PaymentStatus::PendingAuthorization };
    let lines = lines
        .iter()
        .filter(|l| l.status == PaymentStatus::Authorized)
        .filter(|l| open.iter().any(|a| a.payment_line_id == l.id && expired.contains(&a.id)) && !live(Some(l.id)))
        .map(|l| (l.id, moved))
        .collect();
    Overlay { expired, lines, hold: !live(None) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, day, 12, 0, 0).unwrap()
    }

    fn auth(id: i32, line: i32, expires: u32, status: AuthorizationStatus) -> AuthorizationFacts {
        AuthorizationFacts { id, payment_line_id: line, expires_at: at(expires), status }
    }

    fn line(id: i32, status: PaymentStatus) -> LineFacts {
        LineFacts { id, status }
    }

    #[test]
    fn an_open_authorization_at_or_before_the_watermark_expires_its_line_and_holds_the_order() {
        // R-AUT-4: expiring at the watermark counts (the job's `expires_at <= now`).
        let o = derive(at(10), &[auth(7, 3, 10, AuthorizationStatus::Open)], &[line(3, PaymentStatus::Authorized)], false);
        assert_eq!(o.expired, HashSet::from([7]));
        assert_eq!(o.lines, HashMap::from([(3, PaymentStatus::PendingAuthorization)]));
        assert!(o.hold);
        // Online storefront: Declined instead (R-AUT-4).
        let o = derive(at(10), &[auth(7, 3, 9, AuthorizationStatus::Open)], &[line(3, PaymentStatus::Authorized)], true);
        assert_eq!(o.lines, HashMap::from([(3, PaymentStatus::Declined)]));
    }

    #[test]
    fn nothing_changes_before_the_watermark_or_for_closed_authorizations() {
        assert!(derive(at(10), &[auth(7, 3, 11, AuthorizationStatus::Open)], &[line(3, PaymentStatus::Authorized)], false).is_empty());
        // Fully captured or voided authorizations have nothing left to expire.
        for st in [AuthorizationStatus::FullyCaptured, AuthorizationStatus::Voided, AuthorizationStatus::Expired] {
            assert!(derive(at(10), &[auth(7, 3, 1, st)], &[line(3, PaymentStatus::Authorized)], false).is_empty(), "{st:?}");
        }
    }

    #[test]
    fn a_later_open_authorization_keeps_its_line_and_order_covered() {
        // The line has a second authorization that expires after the watermark: the first one
        // is expired, but the line stays Authorized and the order is not held.
        let auths = [auth(7, 3, 5, AuthorizationStatus::Open), auth(8, 3, 20, AuthorizationStatus::Open)];
        let o = derive(at(10), &auths, &[line(3, PaymentStatus::Authorized)], false);
        assert_eq!(o.expired, HashSet::from([7]));
        assert!(o.lines.is_empty() && !o.hold, "{o:?}");
        // Another line's live authorization covers the order, not the lapsed line.
        let auths = [auth(7, 3, 5, AuthorizationStatus::Open), auth(8, 4, 20, AuthorizationStatus::Open)];
        let o = derive(at(10), &auths, &[line(3, PaymentStatus::Authorized), line(4, PaymentStatus::Authorized)], false);
        assert_eq!(o.lines, HashMap::from([(3, PaymentStatus::PendingAuthorization)]));
        assert!(!o.hold);
    }

    #[test]
    fn only_authorized_lines_move() {
        // A line already replaced by a new payment keeps its status.
        let o = derive(at(10), &[auth(7, 3, 5, AuthorizationStatus::Open)], &[line(3, PaymentStatus::Replaced)], false);
        assert!(o.lines.is_empty());
        assert!(o.hold);
    }

    #[test]
    fn the_store_duration_wins_and_is_at_least_a_day() {
        // R-PAR-6: the store's duration for the payment type, else the AR days (R-AUT-3).
        assert_eq!(expiry_days(Some(9), 7), 9);
        assert_eq!(expiry_days(None, 7), 7);
        assert_eq!(expiry_days(Some(0), 7), 1);
        assert_eq!(expiry_days(Some(-3), 7), 1);
    }
}
