//! Authorization exposure (seeds 001/002: "open authorizations that exceed the order total",
//! issue #44): what an order's open authorizations still hold on the customer's card against what
//! the order still has to charge to it, and how the excess is released. One decision function,
//! [`assess`], serves the Authorization exposure page, its Release action and reconciliation's
//! open-hold break, so the three never disagree.
//!
//! An order's *need* is what remains to invoice less the deposit not yet applied (R-PRE-2), the
//! same figure the pipeline's authorize stage covers (R-CAP-3); a cancelled order needs nothing.
//! A hold counts while its authorization is open and not past its expiry. While a payment process
//! of the order is running or incomplete, or a request to the processor is unresolved, an invoice
//! posted may still be waiting for its capture: the need is not known, so nothing is judged and
//! nothing is released.
//!
//! The release keeps the newest holds, because the capture stage captures against the order's
//! newest open authorization; every older hold the need does not reach is voided, and the one
//! hold the need reaches only partly is adjusted down to what is captured on it plus its share
//! (R-AUT-2's adjustment, asked by the user on this page).
use chrono::{DateTime, Utc};
use super::money::Money;
use super::order::OrderStatus;
use serde::{Deserialize, Serialize};

/// An open authorization of the order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub authorization_id: i32,
    pub payment_line_id: i32,
    pub reference: String,
    pub amount_minor: i64,
    pub captured_minor: i64,
    pub expires_at: DateTime<Utc>,
}

impl Hold {
    /// What it still holds on the card.
    pub fn left_minor(&self) -> i64 {
        (self.amount_minor - self.captured_minor).max(0)
    }
}

/// What the assessment reads of one order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExposureFacts {
    /// Left to invoice (lines, charges and tax, as the next invoices would compute it).
    pub balance_minor: i64,
    /// The deposit paid and not yet applied to an invoice.
    pub unapplied_deposit_minor: i64,
    pub cancelled: bool,
    /// Open authorizations (status open, whatever their expiry).
    pub holds: Vec<Hold>,
    /// Why the need is not known now (a payment in progress or incomplete, a request unresolved).
    pub waiting: Option<String>,
}

/// One step of releasing the excess.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Release {
    /// Void what is left of the authorization.
    Void { authorization_id: i32, reference: String, release_minor: i64 },
    /// Adjust the authorization down to `to_minor` (its captured amount plus what the order
    /// still needs of it).
    Reduce { authorization_id: i32, reference: String, from_minor: i64, to_minor: i64, release_minor: i64 },
}

impl Release {
    pub fn release_minor(&self) -> i64 {
        match self {
            Release::Void { release_minor, .. } | Release::Reduce { release_minor, .. } => *release_minor,
        }
    }

    pub fn authorization_id(&self) -> i32 {
        match self {
            Release::Void { authorization_id, .. } | Release::Reduce { authorization_id, .. } => *authorization_id,
        }
    }
}

/// A processor reference as a list shows it: long ones (a PSP's 30-odd characters) cut to their
/// last 8, which is what finance users match against the processor's portal.
pub fn short_reference(reference: &str) -> String {
    let chars: Vec<char> = reference.chars().collect();
    if chars.len() <= 14 {
        reference.to_string()
    } else {
        format!("…{}", chars[chars.len() - 8..].iter().collect::<String>())
    }
}

/// An order's exposure at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    /// What the live holds keep on the card.
    pub held_minor: i64,
    /// What the order still has to charge to the card; None while [`Assessment::waiting`].
    pub need_minor: Option<i64>,
    /// Held beyond the need (0 when waiting).
    pub excess_minor: i64,
    /// How the excess is released, newest hold kept first; empty when there is none.
    pub releases: Vec<Release>,
    /// What each live hold keeps for the order once the excess is released (all it holds while
    /// waiting): the money an expiry of that hold would put at risk.
    pub kept: Vec<(i32, i64)>,
    pub waiting: Option<String>,
}

impl Assessment {
    /// What hold `authorization_id` keeps for the order (0 for a hold that is not live).
    pub fn kept_by(&self, authorization_id: i32) -> i64 {
        self.kept.iter().find(|(id, _)| *id == authorization_id).map_or(0, |(_, k)| *k)
    }
}

/// Assesses an order's holds at `now`.
pub fn assess(f: &ExposureFacts, now: DateTime<Utc>) -> Assessment {
    let mut live: Vec<&Hold> = f.holds.iter().filter(|h| h.expires_at > now && h.left_minor() > 0).collect();
    let held_minor = live.iter().fold(0i64, |sum, h| sum.saturating_add(h.left_minor()));
    if let Some(why) = &f.waiting {
        let kept = live.iter().map(|h| (h.authorization_id, h.left_minor())).collect();
        return Assessment { held_minor, need_minor: None, excess_minor: 0, releases: Vec::new(), kept, waiting: Some(why.clone()) };
    }
    let need_minor = if f.cancelled { 0 } else { (f.balance_minor - f.unapplied_deposit_minor).max(0) };
    // Newest first: the hold the capture stage will use is the last one given up.
    live.sort_by(|a, b| b.authorization_id.cmp(&a.authorization_id));
    let mut still = need_minor;
    let mut releases = Vec::new();
    let mut kept = Vec::new();
    for h in live {
        let left = h.left_minor();
        kept.push((h.authorization_id, left.min(still)));
        if still >= left {
            still -= left;
        } else if still == 0 {
            releases.push(Release::Void { authorization_id: h.authorization_id, reference: h.reference.clone(), release_minor: left });
        } else {
            let to_minor = h.captured_minor + still;
            releases.push(Release::Reduce { authorization_id: h.authorization_id, reference: h.reference.clone(), from_minor: h.amount_minor, to_minor, release_minor: left - still });
            still = 0;
        }
    }
    let excess_minor = releases.iter().fold(0i64, |sum, r| sum.saturating_add(r.release_minor()));
    Assessment { held_minor, need_minor: Some(need_minor), excess_minor, releases, kept, waiting: None }
}

// The Authorization exposure page's rows (`service::exposure::page`).

/// One hold as the page shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldView {
    pub payment_line_id: i32,
    pub reference: String,
    /// "Visa •••• 1111".
    pub card: String,
    pub left: Money,
    pub expires_at: DateTime<Utc>,
}

/// One order with live holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderExposure {
    pub order_id: i32,
    pub order_number: String,
    pub order_status: OrderStatus,
    pub customer_id: i32,
    pub customer_account: String,
    pub customer_name: String,
    pub channel_name: String,
    pub holds: Vec<HoldView>,
    pub held: Money,
    /// What the order still has to charge to the card; None while its payment is not settled.
    pub need: Option<Money>,
    pub excess: Money,
    /// What Release would do, in words, one step per authorization.
    pub release_steps: Vec<String>,
    /// Why nothing is judged now.
    pub waiting: Option<String>,
}

/// One customer's holds in one currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerExposure {
    pub customer_id: i32,
    pub account: String,
    pub name: String,
    pub orders: u64,
    /// Orders whose holds exceed what they still have to charge.
    pub flagged: u64,
    pub held: Money,
    pub need: Money,
    pub excess: Money,
}

/// Everything held, in one currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposureTotal {
    pub held: Money,
    pub excess: Money,
    pub orders: u64,
    pub flagged: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposurePage {
    pub as_of: DateTime<Utc>,
    /// One per currency.
    pub totals: Vec<ExposureTotal>,
    /// Customers with a flagged order first, the largest excess first.
    pub customers: Vec<CustomerExposure>,
    /// This page of orders, the largest excess first.
    pub orders: Vec<OrderExposure>,
    pub page: u64,
    pub pages: u64,
    /// Orders the filter keeps.
    pub total: u64,
}

/// Which orders the list keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposureFilter {
    /// Only orders whose holds exceed what they still have to charge.
    pub only_excess: bool,
    pub customer_id: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 8, 12, 0, 0).single().unwrap()
    }

    fn hold(id: i32, amount: i64, captured: i64) -> Hold {
        Hold { authorization_id: id, payment_line_id: id, reference: format!("A{id}"), amount_minor: amount, captured_minor: captured, expires_at: now() + chrono::Duration::days(3) }
    }

    fn facts(balance: i64, holds: Vec<Hold>) -> ExposureFacts {
        ExposureFacts { balance_minor: balance, unapplied_deposit_minor: 0, cancelled: false, holds, waiting: None }
    }

    #[test]
    fn long_references_are_cut_to_their_last_eight_characters() {
        assert_eq!(short_reference("auth_4f52dd0291b441e895fb3e91ec90d0e7"), "…ec90d0e7");
        assert_eq!(short_reference("SIM-AUTH-0001"), "SIM-AUTH-0001");
        assert_eq!(short_reference("ÄÖÜ-ÄÖÜ-ÄÖÜ-ÄÖÜ-é"), "…ÖÜ-ÄÖÜ-é", "cut on characters, not bytes");
    }

    #[test]
    fn a_hold_that_covers_the_balance_exactly_has_no_excess() {
        let a = assess(&facts(30_000, vec![hold(1, 30_000, 0)]), now());
        assert_eq!((a.held_minor, a.need_minor, a.excess_minor), (30_000, Some(30_000), 0));
        assert!(a.releases.is_empty());
    }

    #[test]
    fn overlapping_holds_void_the_older_and_keep_the_newest() {
        // Seeds 001/002: a partly captured authorization and a new one for the balance overlap.
        let a = assess(&facts(20_000, vec![hold(1, 30_000, 10_000), hold(2, 20_000, 0)]), now());
        assert_eq!(a.held_minor, 40_000);
        assert_eq!(a.excess_minor, 20_000);
        assert_eq!(a.releases, vec![Release::Void { authorization_id: 1, reference: "A1".into(), release_minor: 20_000 }]);
    }

    #[test]
    fn a_single_hold_above_the_balance_is_reduced_to_captured_plus_need() {
        let a = assess(&facts(12_345, vec![hold(7, 50_000, 10_000)]), now());
        assert_eq!(a.excess_minor, 27_655);
        assert_eq!(a.releases, vec![Release::Reduce { authorization_id: 7, reference: "A7".into(), from_minor: 50_000, to_minor: 22_345, release_minor: 27_655 }]);
    }

    #[test]
    fn a_cancelled_order_or_an_invoiced_one_needs_nothing_and_every_hold_is_voided() {
        let mut f = facts(5_000, vec![hold(1, 5_000, 0), hold(2, 700, 200)]);
        f.cancelled = true;
        let a = assess(&f, now());
        assert_eq!((a.need_minor, a.excess_minor), (Some(0), 5_500));
        assert!(a.releases.iter().all(|r| matches!(r, Release::Void { .. })));
        let a = assess(&facts(0, vec![hold(3, 900, 100)]), now());
        assert_eq!(a.releases, vec![Release::Void { authorization_id: 3, reference: "A3".into(), release_minor: 800 }]);
    }

    #[test]
    fn the_unapplied_deposit_lowers_the_need() {
        let mut f = facts(10_000, vec![hold(1, 10_000, 0)]);
        f.unapplied_deposit_minor = 2_500;
        let a = assess(&f, now());
        assert_eq!((a.need_minor, a.excess_minor), (Some(7_500), 2_500));
    }

    #[test]
    fn expired_and_fully_captured_holds_hold_nothing() {
        let mut old = hold(1, 9_000, 0);
        old.expires_at = now();
        let a = assess(&facts(0, vec![old, hold(2, 4_000, 4_000)]), now());
        assert_eq!((a.held_minor, a.excess_minor), (0, 0));
        assert!(a.releases.is_empty());
    }

    #[test]
    fn while_a_payment_is_in_progress_nothing_is_judged_or_released() {
        let mut f = facts(0, vec![hold(1, 9_000, 0)]);
        f.waiting = Some("The payment of INV-1 is incomplete.".into());
        let a = assess(&f, now());
        assert_eq!((a.held_minor, a.need_minor, a.excess_minor), (9_000, None, 0));
        assert!(a.releases.is_empty());
    }

    /// Hostile: random holds, balances and deposits up to extreme amounts. The releases sum to
    /// the excess exactly, never release what is captured, keep exactly the need where the holds
    /// reach it, and touch each authorization at most once.
    #[test]
    fn random_holds_release_exactly_the_excess_and_keep_exactly_the_need() {
        let mut seed: u64 = 0x5eed_e4b0;
        let mut next = move |m: i64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % (m as u64).max(1)) as i64
        };
        for round in 0..5_000 {
            let scale = if round % 10 == 0 { i64::MAX / 64 } else { 100_000 };
            let n = next(6);
            let holds: Vec<Hold> = (0..n)
                .map(|i| {
                    let amount = next(scale) + 1;
                    let mut h = hold(i as i32 + 1, amount, next(amount + 1));
                    if next(5) == 0 {
                        h.expires_at = now() - chrono::Duration::hours(1);
                    }
                    h
                })
                .collect();
            let mut f = facts(next(scale * 2), holds.clone());
            f.unapplied_deposit_minor = if next(3) == 0 { next(scale) } else { 0 };
            f.cancelled = next(8) == 0;
            let a = assess(&f, now());
            let need = a.need_minor.unwrap();
            let live_left: i64 = holds.iter().filter(|h| h.expires_at > now()).map(Hold::left_minor).sum();
            assert_eq!(a.held_minor, live_left);
            assert_eq!(a.excess_minor, (live_left - need).max(0), "round {round}");
            assert_eq!(a.releases.iter().map(Release::release_minor).sum::<i64>(), a.excess_minor);
            let mut kept = live_left;
            let mut seen = std::collections::BTreeSet::new();
            for r in &a.releases {
                assert!(seen.insert(r.authorization_id()), "round {round}: touched twice");
                let h = holds.iter().find(|h| h.authorization_id == r.authorization_id()).unwrap();
                assert!(h.expires_at > now());
                match r {
                    Release::Void { release_minor, .. } => assert_eq!(*release_minor, h.left_minor()),
                    Release::Reduce { to_minor, release_minor, from_minor, .. } => {
                        assert!(*to_minor > h.captured_minor && *to_minor < h.amount_minor, "round {round}");
                        assert_eq!(*from_minor - *to_minor, *release_minor);
                    }
                }
                kept -= r.release_minor();
            }
            assert_eq!(kept, live_left.min(need), "round {round}");
            assert_eq!(a.kept.iter().map(|(_, k)| k).sum::<i64>(), kept, "round {round}: what is kept is what is not released");
            assert!(a.releases.iter().filter(|r| matches!(r, Release::Reduce { .. })).count() <= 1);
        }
    }
}
