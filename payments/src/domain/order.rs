//! Sales orders, payment lines, authorizations, invoices and journals: their states, the invoice
//! arithmetic (R-MON-1: rounded once, at [`invoice_amounts`]) and balanced journals (R-LED-1).
use super::money::{Currency, Money, MoneyError};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

macro_rules! coded_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $code:literal / $label:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable code stored in the database.
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }

            pub fn from_code(code: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.code() == code)
            }

            /// The words a finance user reads.
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }
        }
    };
}
pub(crate) use coded_enum;

coded_enum!(
    /// Where a sales order stands with respect to invoicing.
    OrderStatus {
        Open = "open" / "Open order",
        PartiallyInvoiced = "partially_invoiced" / "Partially invoiced",
        Invoiced = "invoiced" / "Invoiced",
        /// Cancelled; its deposit refunded less the cancellation charge (R-PRE-4).
        Cancelled = "cancelled" / "Cancelled",
    }
);

coded_enum!(
    /// What a posted customer document is (`invoices.kind`): an invoice charges the customer, a
    /// credit note (returns, R-PRE-5) gives back; their amounts carry the sign.
    DocumentKind {
        Invoice = "invoice" / "Invoice",
        CreditNote = "credit_note" / "Credit note",
    }
);

impl DocumentKind {
    /// The prefix of the document's number (`INV-000042`, `CRN-000043`).
    pub fn number_prefix(self) -> &'static str {
        match self {
            DocumentKind::Invoice => "INV",
            DocumentKind::CreditNote => "CRN",
        }
    }
}

coded_enum!(
    /// How a payment line is paid.
    Tender {
        Card = "card" / "Card",
        Cash = "cash" / "Cash",
        CustomerAccount = "customer_account" / "Customer account",
    }
);

coded_enum!(
    /// A payment line's payment tracking status.
    PaymentStatus {
        PendingAuthorization = "pending_authorization" / "Pending Authorization",
        Authorized = "authorized" / "Authorized",
        Paid = "paid" / "Paid",
        Declined = "declined" / "Declined",
        /// An expired authorization voided by hand (R-AUT-5).
        Voided = "voided" / "Voided",
        /// Superseded by a new payment taken on the order (R-AUT-4/5).
        Replaced = "replaced" / "Replaced by a new payment",
    }
);

coded_enum!(
    AuthorizationStatus {
        /// Can be captured against.
        Open = "open" / "Open",
        /// Captured in full.
        FullyCaptured = "fully_captured" / "Fully captured",
        /// Captured once on the legacy path; the remainder was released and re-authorized.
        Closed = "closed" / "Closed",
        Voided = "voided" / "Voided",
        Expired = "expired" / "Expired",
        /// An adjustment was declined: the original is considered declined (R-AUT-2).
        Declined = "declined" / "Declined",
    }
);

coded_enum!(
    /// A request to the processor, as Paystage recorded it. `Pending` is written before the call;
    /// `Unknown` means the call timed out and the processor must be asked (R-CAP-5).
    RequestStatus {
        Pending = "pending" / "Sent, no answer yet",
        Succeeded = "succeeded" / "Approved",
        Declined = "declined" / "Declined",
        Failed = "failed" / "Not processed",
        Unknown = "unknown" / "Outcome unknown",
    }
);

coded_enum!(
    /// The payment operations of the connector, as named in the payment reference data.
    Command {
        Authorize = "authorize" / "Authorize",
        Capture = "capture" / "Capture",
        Refund = "refund" / "Refund",
        Void = "void" / "Void",
        Adjust = "adjust" / "Adjust authorization",
    }
);

coded_enum!(
    JournalKind {
        CustomerInvoice = "customer_invoice" / "Customer invoice",
        CustomerPayment = "customer_payment" / "Customer payment journal",
        /// A payment taken in cash (R-PRE-2).
        Cash = "cash" / "Cash journal",
        /// Money given back: a cancelled deposit or a return (R-PRE-4/5).
        RefundPayment = "refund_payment" / "Refund payment journal",
        /// A deposit applied to an invoice on pickup or delivery (R-PRE-2).
        PrepaymentSettlement = "prepayment_settlement" / "Prepayment settlement",
        /// The part of a cancelled deposit the merchant keeps (R-PRE-4).
        CancellationCharge = "cancellation_charge" / "Cancellation charge",
        /// Undoes a capture or refund the processor reported failed after answering (R-LED-1:
        /// corrections are new entries).
        ProcessorReversal = "processor_reversal" / "Processor failure reversal",
        /// Settles the receivable a terminated card payment left open (issue #44).
        TerminatedSettlement = "terminated_settlement" / "Settlement of a terminated payment",
    }
);

/// Ledger accounts Paystage posts to.
pub mod accounts {
    pub const ACCOUNTS_RECEIVABLE: &str = "Accounts receivable";
    pub const SALES_REVENUE: &str = "Sales revenue";
    pub const CHARGES_REVENUE: &str = "Freight and charges";
    pub const SALES_TAX: &str = "Sales tax payable";
    pub const CARD_CLEARING: &str = "Card clearing";
    pub const CASH: &str = "Cash";
    /// What customers paid in advance: a liability until applied to an invoice (R-PRE).
    pub const CUSTOMER_PREPAYMENTS: &str = "Customer prepayments";
    pub const CANCELLATION_CHARGES: &str = "Cancellation charges revenue";
    /// Money received or paid back outside the card process (a terminated payment settled by
    /// bank transfer, cheque or cash).
    pub const BANK: &str = "Bank";
    /// A receivable the merchant gave up.
    pub const BAD_DEBT: &str = "Bad debt expense";
}

/// One line of an invoice being drawn up: quantity × unit price.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvoiceLineInput {
    pub quantity: i64,
    pub unit_price: Money,
}

/// What an invoice amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceAmounts {
    pub lines: Money,
    pub charges: Money,
    pub tax: Money,
    pub total: Money,
}

/// The invoice arithmetic: lines at full precision, tax on lines and charges rounded once to the
/// minor unit (half away from zero). `charges` are invoiced with the first invoice of an order.
pub fn invoice_amounts(
    lines: &[InvoiceLineInput],
    charges: Money,
    tax_percent: Decimal,
    currency: Currency,
) -> Result<InvoiceAmounts, MoneyError> {
    let mut sum = Money::zero(currency);
    for l in lines {
        let minor = l.unit_price.minor().checked_mul(l.quantity).ok_or(MoneyError::Overflow)?;
        sum = sum.checked_add(Money::from_minor(minor, l.unit_price.currency()))?;
    }
    let taxable = sum.checked_add(charges)?;
    let tax = taxable.percentage(tax_percent)?;
    Ok(InvoiceAmounts { lines: sum, charges, tax, total: taxable.checked_add(tax)? })
}

/// One order line as invoicing sees it: ordered, invoiced so far and credited so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineState {
    pub quantity: i64,
    pub invoiced: i64,
    pub credited: i64,
    pub unit_price: Money,
}

/// What an order's documents are computed from: its lines as they stand, its charges and its tax.
///
/// Tax is allocated cumulatively (R-MON-3): a document's tax is the tax on everything its kind has
/// taken so far including it, rounded once, less the same for what was taken before it. So the
/// invoices' taxes add up to the order's tax (rounded once on the whole) whatever the split, the
/// last invoice taking the rounding remainder; and credit notes' taxes add up to the tax on all
/// the lines they credit, rounded once. Charges go with the first invoice and are never credited.
#[derive(Clone, Copy, Debug)]
pub struct OrderBasis<'a> {
    pub lines: &'a [LineState],
    pub charges: Money,
    pub tax_percent: Decimal,
    pub currency: Currency,
}

impl OrderBasis<'_> {
    fn sum(&self, qty: impl Fn(usize, &LineState) -> i64) -> Result<Money, MoneyError> {
        let mut sum = Money::zero(self.currency);
        for (i, l) in self.lines.iter().enumerate() {
            let minor = l.unit_price.minor().checked_mul(qty(i, l)).ok_or(MoneyError::Overflow)?;
            sum = sum.checked_add(Money::from_minor(minor, l.unit_price.currency()))?;
        }
        Ok(sum)
    }

    fn first_invoice(&self) -> bool {
        self.lines.iter().all(|l| l.invoiced == 0)
    }

    /// The whole order: every line at its full quantity, the charges, tax rounded once.
    pub fn total(&self) -> Result<InvoiceAmounts, MoneyError> {
        let lines = self.sum(|_, l| l.quantity)?;
        let taxable = lines.checked_add(self.charges)?;
        let tax = taxable.percentage(self.tax_percent)?;
        Ok(InvoiceAmounts { lines, charges: self.charges, tax, total: taxable.checked_add(tax)? })
    }

    /// The next invoice, taking `take[i]` of line `i` (the caller checks each against what is open).
    pub fn invoice(&self, take: &[i64]) -> Result<InvoiceAmounts, MoneyError> {
        let first = self.first_invoice();
        let before_lines = self.sum(|_, l| l.invoiced)?;
        let before = before_lines.checked_add(if first { Money::zero(self.currency) } else { self.charges })?;
        let lines = self.sum(|i, _| take.get(i).copied().unwrap_or(0))?;
        let charges = if first { self.charges } else { Money::zero(self.currency) };
        let after = before.checked_add(lines)?.checked_add(charges)?;
        let tax = after.percentage(self.tax_percent)?.checked_sub(before.percentage(self.tax_percent)?)?;
        Ok(InvoiceAmounts { lines, charges, tax, total: lines.checked_add(charges)?.checked_add(tax)? })
    }

    /// What is left to invoice: an invoice of every line's open quantity.
    pub fn remaining(&self) -> Result<InvoiceAmounts, MoneyError> {
        let take: Vec<i64> = self.lines.iter().map(|l| l.quantity - l.invoiced).collect();
        self.invoice(&take)
    }

    /// The next credit note, crediting `take[i]` of line `i`; amounts are positive (what is refunded).
    pub fn credit(&self, take: &[i64]) -> Result<InvoiceAmounts, MoneyError> {
        let before = self.sum(|_, l| l.credited)?;
        let lines = self.sum(|i, _| take.get(i).copied().unwrap_or(0))?;
        let after = before.checked_add(lines)?;
        let tax = after.percentage(self.tax_percent)?.checked_sub(before.percentage(self.tax_percent)?)?;
        Ok(InvoiceAmounts { lines, charges: Money::zero(self.currency), tax, total: lines.checked_add(tax)? })
    }
}

/// A journal line: one side only, never negative.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalLine {
    pub account: String,
    pub debit: i64,
    pub credit: i64,
}

impl JournalLine {
    pub fn debit(account: &str, amount: Money) -> Self {
        JournalLine { account: account.into(), debit: amount.minor(), credit: 0 }
    }
    pub fn credit(account: &str, amount: Money) -> Self {
        JournalLine { account: account.into(), debit: 0, credit: amount.minor() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("the journal does not balance: debits {debits} ≠ credits {credits}")]
    Unbalanced { debits: i64, credits: i64 },
    #[error("a journal line has a negative amount or both a debit and a credit")]
    BadLine,
    #[error("a journal needs at least two lines")]
    TooFewLines,
}

/// A journal ready to post: at least two lines, each one-sided and non-negative, zero lines
/// dropped, debits equal to credits (R-LED-1).
pub fn balanced(lines: Vec<JournalLine>) -> Result<Vec<JournalLine>, JournalError> {
    let lines: Vec<JournalLine> = lines.into_iter().filter(|l| l.debit != 0 || l.credit != 0).collect();
    if lines.iter().any(|l| l.debit < 0 || l.credit < 0 || (l.debit > 0 && l.credit > 0)) {
        return Err(JournalError::BadLine);
    }
    if lines.len() < 2 {
        return Err(JournalError::TooFewLines);
    }
    let debits: i64 = lines.iter().map(|l| l.debit).sum();
    let credits: i64 = lines.iter().map(|l| l.credit).sum();
    if debits != credits {
        return Err(JournalError::Unbalanced { debits, credits });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn usd(minor: i64) -> Money {
        Money::from_minor(minor, Currency::USD)
    }

    #[test]
    fn invoice_tax_is_rounded_once_on_the_total() {
        // R-MON-1: 3 × 3.33 + 1 × 0.01 = 10.00; 8.25 % of 10.00 + 0.05 charges = 0.829125 → 0.83.
        let a = invoice_amounts(
            &[InvoiceLineInput { quantity: 3, unit_price: usd(333) }, InvoiceLineInput { quantity: 1, unit_price: usd(1) }],
            usd(5),
            Decimal::from_str("8.25").unwrap(),
            Currency::USD,
        )
        .unwrap();
        assert_eq!((a.lines.minor(), a.charges.minor(), a.tax.minor(), a.total.minor()), (1000, 5, 83, 1088));
    }

    fn line(quantity: i64, price: i64) -> LineState {
        LineState { quantity, invoiced: 0, credited: 0, unit_price: usd(price) }
    }

    #[test]
    fn split_invoices_with_tax_add_up_to_the_order_total() {
        // R-MON-3, issue #39 item 0: 1 × 249.99 and 2 × 89.95 at 8.25 % is 465.36; invoiced line by
        // line it was 270.61 + 194.74 = 465.35, a cent never invoiced nor captured.
        let mut lines = vec![line(1, 24_999), line(2, 8_995)];
        fn basis(lines: &[LineState]) -> OrderBasis<'_> {
            OrderBasis { lines, charges: usd(0), tax_percent: Decimal::from_str("8.25").unwrap(), currency: Currency::USD }
        }
        assert_eq!(basis(&lines).total().unwrap().total.minor(), 46_536);
        let first = basis(&lines).invoice(&[1, 0]).unwrap();
        assert_eq!(first.total.minor(), 27_061);
        lines[0].invoiced = 1;
        assert_eq!(basis(&lines).remaining().unwrap().total.minor(), 19_475);
        let second = basis(&lines).invoice(&[0, 2]).unwrap();
        assert_eq!(first.total.minor() + second.total.minor(), 46_536);
    }

    mod splits {
        use super::*;
        use proptest::prelude::*;

        /// A random part of each line's `open` quantity, or all of it once the picks run out.
        fn take(lines: &[LineState], pick: Option<&[u8]>, open: impl Fn(&LineState) -> i64) -> Vec<i64> {
            lines.iter().enumerate().map(|(i, l)| pick.map_or(open(l), |p| i64::from(p[i]) % (open(l) + 1))).collect()
        }

        fn currency() -> impl Strategy<Value = Currency> {
            prop::sample::select([Currency::COMMON.as_slice(), &[Currency::KWD]].concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            /// R-MON-3: whatever the lines, tax rate, charges and split into invoices and credit
            /// notes, the invoices add up to the order total and the credit notes to the tax and
            /// lines they credit, to the minor unit, in every currency.
            #[test]
            fn documents_add_up(
                cur in currency(),
                raw in prop::collection::vec((1i64..=50, 1i64..=100_000_000), 1..6),
                tax_bp in 0i64..=1_000_000,
                charges in 0i64..=1_000_000,
                picks in prop::collection::vec(prop::collection::vec(0u8..=255, 6), 1..40),
            ) {
                let tax_percent = Decimal::new(tax_bp, 4);
                let mut lines: Vec<LineState> = raw.iter().map(|(q, p)| LineState { quantity: *q, invoiced: 0, credited: 0, unit_price: Money::from_minor(*p, cur) }).collect();
                let charges = Money::from_minor(charges, cur);
                fn basis_of(lines: &[LineState], charges: Money, tax_percent: Decimal, currency: Currency) -> OrderBasis<'_> {
                    OrderBasis { lines, charges, tax_percent, currency }
                }
                let whole = basis_of(&lines, charges, tax_percent, cur).total().unwrap();
                let (mut invoiced, mut tax, mut k) = (0i64, 0i64, 0usize);
                // Invoice random parts until nothing is left; the last round takes the rest.
                while lines.iter().any(|l| l.invoiced < l.quantity) {
                    let pick = picks.get(k).cloned();
                    k += 1;
                    let take = take(&lines, pick.as_deref(), |l| l.quantity - l.invoiced);
                    if take.iter().all(|t| *t == 0) { continue; }
                    let doc = basis_of(&lines, charges, tax_percent, cur).invoice(&take).unwrap();
                    prop_assert!(doc.tax.minor() >= 0);
                    invoiced += doc.total.minor();
                    tax += doc.tax.minor();
                    for (l, t) in lines.iter_mut().zip(&take) { l.invoiced += t; }
                }
                prop_assert_eq!(invoiced, whole.total.minor());
                prop_assert_eq!(tax, whole.tax.minor());
                prop_assert_eq!(basis_of(&lines, charges, tax_percent, cur).remaining().unwrap().total.minor(), 0);
                // Credit random parts until everything is credited.
                let (mut credited, mut k) = (0i64, 0usize);
                while lines.iter().any(|l| l.credited < l.invoiced) {
                    let pick = picks.get(k).cloned();
                    k += 1;
                    let take = take(&lines, pick.as_deref(), |l| l.invoiced - l.credited);
                    if take.iter().all(|t| *t == 0) { continue; }
                    let doc = basis_of(&lines, charges, tax_percent, cur).credit(&take).unwrap();
                    prop_assert!(doc.tax.minor() >= 0);
                    credited += doc.total.minor();
                    for (l, t) in lines.iter_mut().zip(&take) { l.credited += t; }
                }
                let all_lines = whole.lines;
                prop_assert_eq!(credited, all_lines.checked_add(all_lines.percentage(tax_percent).unwrap()).unwrap().minor());
                prop_assert!(credited <= invoiced);
            }
        }
    }

    #[test]
    fn invoice_refuses_mixed_currencies_and_overflow() {
        let eur = Money::from_minor(100, Currency::EUR);
        let mixed = invoice_amounts(&[InvoiceLineInput { quantity: 1, unit_price: eur }], usd(0), Decimal::ZERO, Currency::USD);
        assert_eq!(mixed, Err(MoneyError::CurrencyMismatch("USD", "EUR")));
        let huge = invoice_amounts(&[InvoiceLineInput { quantity: i64::MAX, unit_price: usd(2) }], usd(0), Decimal::ZERO, Currency::USD);
        assert_eq!(huge, Err(MoneyError::Overflow));
    }

    #[test]
    fn journals_must_balance() {
        // R-LED-1
        let ok = balanced(vec![JournalLine::debit("A", usd(500)), JournalLine::credit("B", usd(500)), JournalLine::credit("C", usd(0))]);
        assert_eq!(ok.unwrap().len(), 2, "zero lines are dropped");
        assert_eq!(
            balanced(vec![JournalLine::debit("A", usd(500)), JournalLine::credit("B", usd(499))]),
            Err(JournalError::Unbalanced { debits: 500, credits: 499 })
        );
        assert_eq!(balanced(vec![JournalLine::debit("A", usd(-5)), JournalLine::credit("B", usd(-5))]), Err(JournalError::BadLine));
        assert_eq!(balanced(vec![JournalLine::debit("A", usd(0)), JournalLine::credit("B", usd(0))]), Err(JournalError::TooFewLines));
    }

    #[test]
    fn codes_round_trip() {
        for s in RequestStatus::ALL {
            assert_eq!(RequestStatus::from_code(s.code()), Some(*s));
        }
        assert_eq!(PaymentStatus::PendingAuthorization.label(), "Pending Authorization");
    }
}
