//! The two escapes the hand-written pages (the processor's acceptance pages, the web shop) need.

/// Escapes text for an HTML element or a double-quoted attribute.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Percent-encodes a query-string value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// For someone who is not signed in (a shopper, whoever is at the acceptance page) when something
/// failed that is not theirs to fix: logs `detail` under a new reference and returns the
/// reference, the only thing they are shown (issue #40).
pub fn log_reference(what: &str, detail: &dyn std::fmt::Display) -> String {
    let reference = uuid::Uuid::new_v4().simple().to_string()[..10].to_uppercase();
    tracing::warn!(reference = %reference, detail = %detail, "{what}");
    reference
}

/// "`what` Please try again in a moment. If it happens again, give reference …", logged.
pub fn public_failure(what: &str, detail: &dyn std::fmt::Display) -> String {
    format!("{what} Please try again in a moment. If it happens again, give reference {}.", log_reference(what, detail))
}
