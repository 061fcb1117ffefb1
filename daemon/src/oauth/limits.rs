//! Per-address throttles, in memory: registrations (a token bucket) and the
//! passphrase backoff.
//!
//! Both count per [`AddrKey`] (an IPv4 address or an IPv6 /64, as
//! `client_addr` derives it) and never globally: a global bound is a switch
//! any stranger can flip to lock everyone out, the operator included.
//!
//! The passphrase backoff slows guessing without locking anyone out. An
//! address gets `passphrase_free_failures` wrong guesses; after that each
//! next guess must wait, 1 s after the first over, then twice as long each
//! time up to `passphrase_max_backoff_secs`. While it waits, a guess from
//! that address is not even judged (a lucky guess gains nothing); other
//! addresses are not affected. An hour without a wrong guess forgets the
//! address. Guessing is therefore bounded per address to a handful an hour
//! once the wait is long, and the operator, from any other address or with
//! `mcp-multiplayer approve` on the server, is never kept out.

use crate::client_addr::AddrKey;
use crate::config::OAuthLimits;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong guesses are forgotten after this long without another.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(3600);

/// Addresses remembered before the tables are pruned.
const MAX_TRACKED: usize = 10_000;

/// The verdict on a passphrase attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Accepted,
    /// Wrong; the next attempt from this address may come after this many
    /// seconds (0: at once).
    Wrong(u64),
    /// Not judged: this address must wait this many more seconds.
    Wait(u64),
}

pub struct Limits {
    cfg: OAuthLimits,
    register: Mutex<HashMap<AddrKey, Bucket>>,
    failures: Mutex<HashMap<AddrKey, Failures>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Failures {
    count: u32,
    last: Instant,
    next_allowed: Instant,
}

impl Limits {
    pub fn new(cfg: OAuthLimits) -> Limits {
        Limits {
            cfg,
            register: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &OAuthLimits {
        &self.cfg
    }

    /// Takes one registration from `addr`'s bucket; `Err(seconds)` until
    /// the next one is available.
    pub fn register(&self, addr: AddrKey) -> Result<(), u64> {
        self.register_at(addr, Instant::now())
    }

    fn register_at(&self, addr: AddrKey, now: Instant) -> Result<(), u64> {
        let burst = f64::from(self.cfg.registrations_per_minute);
        let per_sec = burst / 60.0;
        let Ok(mut map) = self.register.lock() else {
            return Err(1);
        };
        if map.len() > MAX_TRACKED {
            // Forget full buckets: they would allow a burst anyway.
            map.retain(|_, b| refill(b, now, burst, per_sec) < burst);
        }
        let b = map.entry(addr).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = refill(b, now, burst, per_sec);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / per_sec).ceil().max(1.0) as u64)
        }
    }

    /// Judges a passphrase attempt from `addr`: `check` runs only when the
    /// address need not wait, under the same lock that records a failure,
    /// so concurrent guesses cannot slip past the backoff.
    pub fn passphrase(&self, addr: AddrKey, check: impl FnOnce() -> bool) -> Attempt {
        self.passphrase_at(addr, Instant::now(), check)
    }

    fn passphrase_at(&self, addr: AddrKey, now: Instant, check: impl FnOnce() -> bool) -> Attempt {
        let Ok(mut map) = self.failures.lock() else {
            return Attempt::Wait(1);
        };
        if map.len() > MAX_TRACKED {
            map.retain(|_, f| now.saturating_duration_since(f.last) < FAILURE_MEMORY);
        }
        if let Some(f) = map.get(&addr) {
            if now.saturating_duration_since(f.last) >= FAILURE_MEMORY {
                map.remove(&addr);
            } else if now < f.next_allowed {
                let wait = f.next_allowed.saturating_duration_since(now);
                return Attempt::Wait(ceil_secs(wait));
            }
        }
        if check() {
            map.remove(&addr);
            return Attempt::Accepted;
        }
        let f = map.entry(addr).or_insert(Failures {
            count: 0,
            last: now,
            next_allowed: now,
        });
        f.count = f.count.saturating_add(1);
        f.last = now;
        let delay = self.backoff(f.count);
        f.next_allowed = now + delay;
        Attempt::Wrong(ceil_secs(delay))
    }

    /// The wait after the `n`th wrong guess in a row.
    fn backoff(&self, n: u32) -> Duration {
        let free = self.cfg.passphrase_free_failures;
        if n < free.max(1) {
            return Duration::ZERO;
        }
        let doublings = (n - free.max(1)).min(32);
        let secs = 1u64
            .checked_shl(doublings)
            .unwrap_or(u64::MAX)
            .min(self.cfg.passphrase_max_backoff_secs);
        Duration::from_secs(secs)
    }
}

fn refill(b: &Bucket, now: Instant, burst: f64, per_sec: f64) -> f64 {
    let secs = now.saturating_duration_since(b.at).as_secs_f64();
    (b.tokens + secs * per_sec).min(burst)
}

fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs();
    if d.subsec_nanos() > 0 { s + 1 } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> AddrKey {
        AddrKey::of(std::net::IpAddr::from([10, 0, 0, n]))
    }

    fn limits() -> Limits {
        Limits::new(OAuthLimits::default())
    }

    #[test]
    fn guesses_beyond_the_free_ones_wait_twice_as_long_each_time() {
        let l = limits();
        let t0 = Instant::now();
        let free = l.cfg.passphrase_free_failures;
        for _ in 1..free {
            assert_eq!(l.passphrase_at(addr(1), t0, || false), Attempt::Wrong(0));
        }
        assert_eq!(l.passphrase_at(addr(1), t0, || false), Attempt::Wrong(1));
        // Waiting: not judged, even with the right passphrase.
        let mut judged = false;
        assert_eq!(
            l.passphrase_at(addr(1), t0, || {
                judged = true;
                true
            }),
            Attempt::Wait(1)
        );
        assert!(!judged, "a guess during the wait is never checked");
        let mut t = t0 + Duration::from_secs(1);
        let mut expected = 2;
        for _ in 0..12 {
            assert_eq!(
                l.passphrase_at(addr(1), t, || false),
                Attempt::Wrong(expected)
            );
            assert!(
                matches!(l.passphrase_at(addr(1), t, || true), Attempt::Wait(w) if w == expected)
            );
            t += Duration::from_secs(expected);
            expected = (expected * 2).min(l.cfg.passphrase_max_backoff_secs);
        }
        assert_eq!(expected, 900, "capped");
        // The right passphrase, once the wait is over, is accepted and
        // clears the address.
        assert_eq!(l.passphrase_at(addr(1), t, || true), Attempt::Accepted);
        assert_eq!(l.passphrase_at(addr(1), t, || false), Attempt::Wrong(0));
    }

    #[test]
    fn guessing_from_many_addresses_never_keeps_out_another() {
        let l = limits();
        let t = Instant::now();
        for n in 0..200u8 {
            for _ in 0..20 {
                let _ = l.passphrase_at(addr(n), t, || false);
            }
        }
        // The operator, from an address that did not guess: judged at once.
        assert_eq!(l.passphrase_at(addr(250), t, || true), Attempt::Accepted);
    }

    #[test]
    fn an_hour_without_a_wrong_guess_forgets_the_address() {
        let l = limits();
        let t = Instant::now();
        for _ in 0..8 {
            let _ = l.passphrase_at(addr(1), t + Duration::from_secs(3000), || false);
        }
        let later = t + Duration::from_secs(3000) + FAILURE_MEMORY;
        assert_eq!(l.passphrase_at(addr(1), later, || false), Attempt::Wrong(0));
    }

    #[test]
    fn registrations_burst_then_refill_per_address() {
        let l = limits();
        let t = Instant::now();
        let burst = l.cfg.registrations_per_minute;
        for _ in 0..burst {
            assert!(l.register_at(addr(1), t).is_ok());
        }
        // 30 a minute: the next token in 2 s.
        assert_eq!(l.register_at(addr(1), t), Err(2));
        assert!(
            l.register_at(addr(2), t).is_ok(),
            "other addresses unaffected"
        );
        assert!(l.register_at(addr(1), t + Duration::from_secs(2)).is_ok());
        assert!(l.register_at(addr(1), t + Duration::from_secs(2)).is_err());
    }
}
