//! Deposits and prepayments (R-PRE-1..5): the deposit asked for, how a payment splits over tenders,
//! what a cancellation keeps and gives back, and how a refund goes back by the original tenders.
//! Pure arithmetic on minor units; every amount is rounded once, here.
use super::money::{Money, MoneyError};
use super::order::Tender;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The deposit proposed for an order: `percent` of its total, rounded to the minor unit (R-PRE-2).
pub fn default_deposit(total: Money, percent: Decimal) -> Result<Money, MoneyError> {
    total.percentage(percent)
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DepositError {
    #[error("A deposit cannot be negative.")]
    Negative,
    #[error("A deposit must be more than zero.")]
    Zero,
    #[error("The deposit ({deposit}) cannot be more than the order total ({total}).")]
    AboveTotal { deposit: Money, total: Money },
    #[error("The tenders ({paid}) must add up to the deposit ({deposit}).")]
    TendersDoNotAddUp { paid: Money, deposit: Money },
    #[error("{0}")]
    Money(#[from] MoneyError),
}

/// Checks a deposit the user typed against the order total: more than zero, at most the total.
pub fn check_deposit(deposit: Money, total: Money) -> Result<(), DepositError> {
    if deposit.minor() < 0 {
        return Err(DepositError::Negative);
    }
    if deposit.minor() == 0 {
        return Err(DepositError::Zero);
    }
    if deposit.minor() > total.minor() {
        return Err(DepositError::AboveTotal { deposit, total });
    }
    Ok(())
}

/// What a cancellation does with the deposits paid (R-PRE-4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancellationPlan {
    pub paid: i64,
    pub charge: i64,
    /// Per deposit line (in the order given): the amount given back by that line's tender.
    pub refunds: Vec<(Tender, i64)>,
}

impl CancellationPlan {
    pub fn refund_total(&self) -> i64 {
        self.refunds.iter().map(|r| r.1).sum()
    }
}

/// The cancellation charge is `percent` of the order total `base`, rounded once, and never more
/// than was paid (the merchant keeps part of the deposit, it bills nothing more); it is kept first from cash,
/// then from customer account, then from card lines, so that as little as possible has to go back
/// through the processor. Each line gets back what it paid less its share of the charge.
pub fn cancellation_plan(lines: &[(Tender, Money)], base: Money, percent: Decimal) -> Result<CancellationPlan, MoneyError> {
    let currency = match lines.first() {
        Some(l) => l.1.currency(),
        None => return Ok(CancellationPlan { paid: 0, charge: 0, refunds: vec![] }),
    };
    let mut paid = Money::zero(currency);
    for l in lines {
        paid = paid.checked_add(l.1)?;
    }
    let charge = base.percentage(percent)?.minor().clamp(0, paid.minor());
    Ok(allocate_charge(lines, charge))
}

/// Splits a charge already decided over the deposit lines (cash, then customer account, then card).
pub fn allocate_charge(lines: &[(Tender, Money)], charge: i64) -> CancellationPlan {
    let paid: i64 = lines.iter().map(|l| l.1.minor()).sum();
    let charge = charge.clamp(0, paid.max(0));
    let mut refunds: Vec<(Tender, i64)> = lines.iter().map(|l| (l.0, l.1.minor())).collect();
    let mut left = charge;
    for tender in [Tender::Cash, Tender::CustomerAccount, Tender::Card] {
        for r in refunds.iter_mut().filter(|r| r.0 == tender) {
            let take = left.min(r.1);
            r.1 -= take;
            left -= take;
        }
    }
    CancellationPlan { paid, charge, refunds }
}

/// A refund of `amount` by the original tenders (R-PRE-5): card first, up to what the card can
/// still give back, then cash. Returns (card, cash); an amount beyond both is refused by the caller.
pub fn refund_split(amount: i64, card_refundable: i64, cash_refundable: i64) -> (i64, i64) {
    let card = amount.min(card_refundable.max(0));
    let cash = (amount - card).min(cash_refundable.max(0));
    (card, cash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Currency;
    use std::str::FromStr;

    fn usd(minor: i64) -> Money {
        Money::from_minor(minor, Currency::USD)
    }
    fn pct(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn default_deposit_rounds_once() {
        // R-PRE-2: 30 % of 123.45 = 37.035 → 37.04 (half away from zero).
        assert_eq!(default_deposit(usd(12345), pct("30")).unwrap(), usd(3704));
        assert_eq!(default_deposit(usd(20000), pct("30")).unwrap(), usd(6000));
    }

    #[test]
    fn deposits_must_be_positive_and_at_most_the_total() {
        // R-PRE-1/2: negative amounts are refused.
        assert_eq!(check_deposit(usd(-1), usd(100)), Err(DepositError::Negative));
        assert_eq!(check_deposit(usd(0), usd(100)), Err(DepositError::Zero));
        assert!(matches!(check_deposit(usd(101), usd(100)), Err(DepositError::AboveTotal { .. })));
        assert_eq!(check_deposit(usd(100), usd(100)), Ok(()));
    }

    #[test]
    fn cancellation_keeps_the_charge_from_cash_first() {
        // R-PRE-4: 10 % of a 200.00 order = 20.00 kept of 60.00 paid half card, half cash; from the cash.
        let p = cancellation_plan(&[(Tender::Card, usd(3000)), (Tender::Cash, usd(3000))], usd(20000), pct("10")).unwrap();
        assert_eq!(p.charge, 2000);
        assert_eq!(p.refunds, vec![(Tender::Card, 3000), (Tender::Cash, 1000)]);
        assert_eq!(p.refund_total() + p.charge, p.paid);
    }

    #[test]
    fn a_charge_larger_than_the_cash_spills_onto_the_card() {
        let p = cancellation_plan(&[(Tender::Card, usd(9000)), (Tender::Cash, usd(100))], usd(9100), pct("10")).unwrap();
        assert_eq!(p.charge, 910);
        assert_eq!(p.refunds, vec![(Tender::Card, 8190), (Tender::Cash, 0)]);
        // Never more than was paid.
        let capped = cancellation_plan(&[(Tender::Cash, usd(500))], usd(100000), pct("10")).unwrap();
        assert_eq!((capped.charge, capped.refund_total()), (500, 0));
    }

    #[test]
    fn charge_is_exact_to_the_minor_unit() {
        // 12.5 % of 0.05 = 0.00625 → 0.01; the rest goes back.
        let p = cancellation_plan(&[(Tender::Card, usd(5))], usd(5), pct("12.5")).unwrap();
        assert_eq!((p.charge, p.refund_total()), (1, 4));
        let none = cancellation_plan(&[], usd(1000), pct("10")).unwrap();
        assert_eq!((none.paid, none.charge, none.refund_total()), (0, 0, 0));
        let all = cancellation_plan(&[(Tender::Cash, usd(999))], usd(999), pct("100")).unwrap();
        assert_eq!((all.charge, all.refund_total()), (999, 0));
    }

    #[test]
    fn refunds_go_back_by_card_first_then_cash() {
        // R-PRE-5
        assert_eq!(refund_split(1000, 600, 1000), (600, 400));
        assert_eq!(refund_split(500, 600, 1000), (500, 0));
        assert_eq!(refund_split(500, 0, 300), (0, 300));
    }
}
