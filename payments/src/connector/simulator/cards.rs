//! The simulator's test cards: number checks and the payment method variant a number stands for.

pub(super) fn luhn_ok(number: &str) -> bool {
    let mut sum = 0;
    for (i, c) in number.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else { return false };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

pub(super) fn variant_of(number: &str) -> Option<(&'static str, &'static str)> {
    if let Some((_, v, b)) = crate::domain::views::TEST_CARDS.iter().find(|(n, _, _)| *n == number) {
        let behaviour = b.split(' ').next().unwrap_or("approve");
        return Some((v, behaviour));
    }
    let v = if number.starts_with("636368") {
        "interac"
    } else if number.starts_with('4') {
        "visa"
    } else if number.starts_with('5') || number.starts_with('2') {
        "mc"
    } else if number.starts_with("34") || number.starts_with("37") {
        "amex"
    } else if number.starts_with('6') {
        "discover"
    } else {
        return None;
    };
    Some((v, "approve"))
}

pub(super) use crate::connector::card_type;
