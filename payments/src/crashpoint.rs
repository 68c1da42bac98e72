//! Crash points for crash tests: `PAYSTAGE_CRASH_AT=point[,point…]` makes this process kill itself
//! with SIGKILL the first time it reaches one of the named points, so a test can stop a real server
//! exactly between two stages, or between a processor request's durable intent and its outcome, and
//! then check that recovery finishes the work without charging twice. Unset (always, in production)
//! a crash point costs one atomic load.
//!
//! Points: `after:<stage>` once a stage's result is recorded (stages `post_invoice`,
//! `capture_or_refund`, `post_payment_journal`, `authorize_remaining`); `<command>:intent` after the
//! intent is written and before the processor is called, and `<command>:sent` after the processor
//! answered and before the outcome is written (commands `capture`, `authorize`, `refund`, and `renew` with `renew:recorded` once the renewal is
//! recorded and before the old hold is voided).
use std::sync::OnceLock;

/// Every crash point the pipeline has, for tests and the documentation.
pub const POINTS: &[&str] = &[
    "after:post_invoice",
    "capture:intent",
    "capture:sent",
    "after:capture_or_refund",
    "after:post_payment_journal",
    "authorize:intent",
    "authorize:sent",
    "refund:intent",
    "refund:sent",
    "renew:intent",
    "renew:sent",
    "renew:recorded",
];

fn configured() -> &'static [String] {
    static POINTS_SET: OnceLock<Vec<String>> = OnceLock::new();
    POINTS_SET.get_or_init(|| {
        std::env::var("PAYSTAGE_CRASH_AT")
            .map(|v| v.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect())
            .unwrap_or_default()
    })
}

/// Kills this process with SIGKILL if `point` is a configured crash point.
pub fn hit(point: &str) {
    let points = configured();
    if points.is_empty() || !points.iter().any(|p| p == point) {
        return;
    }
    eprintln!("paystage: crash point {point} reached; killing this process with SIGKILL");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
    // SIGKILL cannot be caught; should the signal not arrive, stop anyway without unwinding.
    std::process::abort();
}
