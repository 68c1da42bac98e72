//! Per-client-address rate limits (issue #40): a token bucket per address, kept in this server's
//! memory. Sign-in is limited so nobody can make the server hash passwords for them without end
//! (per-account locks are in `payments::service::access`); the anonymous web shop and the
//! processor's acceptance page are limited so they cannot be used to test stolen card numbers.
//! Several servers on one PostgreSQL each keep their own buckets, so the limits are per server.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A limit: a burst of `burst` requests, then one more every `every`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub every: Duration,
}

/// Sign-in attempts per client address: 30 at once, then one every 2 s (30 a minute). A person
/// signs in a few times a day; a script guessing passwords is slowed to a crawl, and the hashing
/// it can cause is bounded.
pub const SIGN_IN: Rate = Rate { burst: 30, every: Duration::from_secs(2) };
/// Web-shop checkouts and card entries on the acceptance page by shoppers who are not signed in,
/// per client address: 10 at once, then one every 30 s (2 a minute). A shopper needs one or two;
/// a card tester needs thousands.
pub const SHOP: Rate = Rate { burst: 10, every: Duration::from_secs(30) };
/// Addresses remembered at most; beyond it, addresses whose bucket is full again are forgotten
/// first (they would be allowed anyway).
const MAX_ADDRESSES: usize = 100_000;

#[derive(Debug)]
pub struct PerAddress {
    rate: Rate,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl PerAddress {
    pub fn new(rate: Rate) -> Self {
        PerAddress { rate, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request's token for `addr`, or says how long until one is available.
    pub fn take(&self, addr: &str, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.rate.burst);
        let per_sec = 1.0 / self.rate.every.as_secs_f64();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_ADDRESSES && !buckets.contains_key(addr) {
            buckets.retain(|_, (tokens, at)| *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec < burst);
            if buckets.len() >= MAX_ADDRESSES {
                // Every remembered address is mid-burst: refuse newcomers rather than grow.
                return Err(self.rate.every);
            }
        }
        let (tokens, at) = buckets.entry(addr.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval_per_address() {
        let l = PerAddress::new(Rate { burst: 3, every: Duration::from_secs(10) });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take("a", t0).is_ok());
        }
        let wait = l.take("a", t0).unwrap_err();
        assert!(wait > Duration::from_secs(9) && wait <= Duration::from_secs(10), "{wait:?}");
        assert!(l.take("b", t0).is_ok(), "another address has its own bucket");
        assert!(l.take("a", t0 + Duration::from_secs(5)).is_err());
        assert!(l.take("a", t0 + Duration::from_secs(10)).is_ok());
        assert!(l.take("a", t0 + Duration::from_secs(10)).is_err());
        for _ in 0..3 {
            assert!(l.take("a", t0 + Duration::from_secs(1000)).is_ok(), "refills up to the burst");
        }
        assert!(l.take("a", t0 + Duration::from_secs(1000)).is_err(), "never beyond the burst");
    }
}
