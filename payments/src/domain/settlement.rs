//! Terminate with follow-through (seed 000: "You must then follow these steps"; R-PIP-4, R-LED-1;
//! issue #44): a terminated card payment leaves its invoice's receivable open, and the settling
//! entry closes it with a new balanced journal: the payment received by other means, written
//! off, or the invoice reversed. The receivable never stays open silently: until it is settled,
//! reconciliation lists the terminated payment as a break.
use super::money::{Currency, Money};
use super::order::{accounts, coded_enum, JournalLine};
use serde::{Deserialize, Serialize};

coded_enum!(
    /// Why a payment process is terminated (a fixed list, with the user's own words added).
    TerminateReason {
        PaidOtherwise = "paid_otherwise" / "The customer paid by other means",
        CardUnusable = "card_unusable" / "The card cannot be charged",
        Disputed = "disputed" / "The customer disputes the invoice",
        ChargedElsewhere = "charged_elsewhere" / "Charged already, outside this process",
        Other = "other" / "Other",
    }
);

coded_enum!(
    /// How a terminated payment's open receivable is settled.
    SettleHow {
        /// Dr Bank, Cr Accounts receivable (or the other way for a credit note): the money came
        /// or went by bank transfer, cheque or cash, outside the card process.
        ReceivedOtherwise = "received_otherwise" / "Received by other means",
        /// Dr Bad debt expense, Cr Accounts receivable: the merchant gives up the amount.
        WriteOff = "write_off" / "Written off",
        /// The invoice's own journal mirrored: revenue, charges and tax taken back.
        Reverse = "reverse" / "Invoice reversed",
    }
);

/// Why a settling entry cannot be made as asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettleRefusal {
    #[error("Nothing is open on this invoice's receivable; it is settled.")]
    NothingOpen,
    #[error("Only what a customer owes can be written off; this credit note is owed to the customer.")]
    WriteOffOfCredit,
    #[error("Part of this invoice is already settled; reverse it only in full. Settle the {open} left by other means or write it off.")]
    PartlySettled { open: String },
}

/// The settling entry's lines for an open receivable of `open_minor` (positive: the customer
/// owes it; negative: it is owed to the customer). `invoice_lines` is the invoice's own journal,
/// which a reversal mirrors when nothing of it is settled yet (its receivable line equals the
/// open amount).
pub fn settling_lines(how: SettleHow, open_minor: i64, currency: Currency, invoice_lines: &[JournalLine]) -> Result<Vec<JournalLine>, SettleRefusal> {
    if open_minor == 0 {
        return Err(SettleRefusal::NothingOpen);
    }
    let open = Money::from_minor(open_minor.abs(), currency);
    let against = |account: &str| {
        if open_minor > 0 {
            vec![JournalLine::debit(account, open), JournalLine::credit(accounts::ACCOUNTS_RECEIVABLE, open)]
        } else {
            vec![JournalLine::debit(accounts::ACCOUNTS_RECEIVABLE, open), JournalLine::credit(account, open)]
        }
    };
    match how {
        SettleHow::ReceivedOtherwise => Ok(against(accounts::BANK)),
        SettleHow::WriteOff if open_minor < 0 => Err(SettleRefusal::WriteOffOfCredit),
        SettleHow::WriteOff => Ok(against(accounts::BAD_DEBT)),
        SettleHow::Reverse => {
            let receivable: i64 = invoice_lines.iter().filter(|l| l.account == accounts::ACCOUNTS_RECEIVABLE).map(|l| l.debit - l.credit).sum();
            if receivable != open_minor {
                return Err(SettleRefusal::PartlySettled { open: Money::from_minor(open_minor, currency).to_string() });
            }
            Ok(invoice_lines.iter().map(|l| JournalLine { account: l.account.clone(), debit: l.credit, credit: l.debit }).collect())
        }
    }
}

/// What terminating a payment process would leave, shown before it is confirmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminatePreview {
    pub process_id: i32,
    pub invoice_number: String,
    pub order_number: String,
    pub amount: Money,
    /// Captured at the processor for this invoice (less what the processor reported failed).
    pub captured: Money,
    pub refunded: Money,
    /// The journals posted for the invoice: number, kind, what they put on its receivable.
    pub journals: Vec<(String, String, Money)>,
    /// What the journals leave open on the invoice's receivable.
    pub open: Money,
    /// What terminating would leave undone, in words (money moved without a journal, …).
    pub warnings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(m: i64) -> Money {
        Money::from_minor(m, Currency::USD)
    }

    fn invoice_journal() -> Vec<JournalLine> {
        vec![
            JournalLine::debit(accounts::ACCOUNTS_RECEIVABLE, usd(45_465)),
            JournalLine::credit(accounts::SALES_REVENUE, usd(42_000)),
            JournalLine::credit(accounts::SALES_TAX, usd(3_465)),
        ]
    }

    fn sums(lines: &[JournalLine]) -> (i64, i64) {
        (lines.iter().map(|l| l.debit).sum(), lines.iter().map(|l| l.credit).sum())
    }

    #[test]
    fn each_settling_entry_balances_and_closes_the_receivable_exactly() {
        for how in SettleHow::ALL {
            let lines = settling_lines(*how, 45_465, Currency::USD, &invoice_journal()).unwrap();
            let (d, c) = sums(&lines);
            assert_eq!(d, c, "{how:?} balances");
            let ar: i64 = lines.iter().filter(|l| l.account == accounts::ACCOUNTS_RECEIVABLE).map(|l| l.debit - l.credit).sum();
            assert_eq!(ar, -45_465, "{how:?} takes exactly the open amount off the receivable");
        }
        let reversed = settling_lines(SettleHow::Reverse, 45_465, Currency::USD, &invoice_journal()).unwrap();
        assert!(reversed.contains(&JournalLine::debit(accounts::SALES_TAX, usd(3_465))), "the tax is taken back: {reversed:?}");
    }

    #[test]
    fn a_credit_note_owed_to_the_customer_is_paid_otherwise_or_reversed_never_written_off() {
        let credit = vec![JournalLine::debit(accounts::SALES_REVENUE, usd(1_000)), JournalLine::credit(accounts::ACCOUNTS_RECEIVABLE, usd(1_000))];
        assert_eq!(settling_lines(SettleHow::ReceivedOtherwise, -1_000, Currency::USD, &credit).unwrap(), vec![JournalLine::debit(accounts::ACCOUNTS_RECEIVABLE, usd(1_000)), JournalLine::credit(accounts::BANK, usd(1_000))]);
        assert_eq!(settling_lines(SettleHow::WriteOff, -1_000, Currency::USD, &credit), Err(SettleRefusal::WriteOffOfCredit));
        assert_eq!(settling_lines(SettleHow::Reverse, -1_000, Currency::USD, &credit).unwrap()[0], JournalLine::credit(accounts::SALES_REVENUE, usd(1_000)));
    }

    #[test]
    fn nothing_open_or_a_partly_settled_reversal_is_refused() {
        assert_eq!(settling_lines(SettleHow::WriteOff, 0, Currency::USD, &invoice_journal()), Err(SettleRefusal::NothingOpen));
        assert!(matches!(settling_lines(SettleHow::Reverse, 10_000, Currency::USD, &invoice_journal()), Err(SettleRefusal::PartlySettled { .. })));
    }

    /// Hostile: random open amounts of both signs up to extreme values; every entry that is made
    /// balances and moves the receivable by exactly the open amount.
    #[test]
    fn random_open_amounts_settle_to_exactly_zero() {
        let mut seed: u64 = 0x5e77_1e;
        for _ in 0..3_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let open = (seed % (i64::MAX as u64 / 4)) as i64 * if seed % 3 == 0 { -1 } else { 1 };
            for how in [SettleHow::ReceivedOtherwise, SettleHow::WriteOff] {
                match settling_lines(how, open, Currency::USD, &[]) {
                    Ok(lines) => {
                        let (d, c) = sums(&lines);
                        assert_eq!(d, c);
                        let ar: i64 = lines.iter().filter(|l| l.account == accounts::ACCOUNTS_RECEIVABLE).map(|l| l.debit - l.credit).sum();
                        assert_eq!(open + ar, 0);
                    }
                    Err(e) => assert!(open == 0 || (how == SettleHow::WriteOff && open < 0), "{e}"),
                }
            }
        }
    }
}
