//! In-memory rate limits: client registrations per IP (token bucket) and the
//! passphrase lockout (failures per IP and in total, over a sliding window).
//!
//! The lockout is what makes the passphrase not brute-forceable at speed: at
//! most [`PER_IP_FAILURES`] wrong guesses per address and [`GLOBAL_FAILURES`]
//! in all per [`FAILURE_WINDOW`], whatever the concurrency (the check and the
//! bookkeeping happen under one lock). While locked, even the right
//! passphrase is refused, so a lucky guess gains nothing. The price: someone
//! who can reach the page can lock the operator out of approving new clients
//! for a while; already approved clients keep working.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong passphrases one address may try per window.
pub const PER_IP_FAILURES: usize = 5;
/// Wrong passphrases all addresses together may try per window.
pub const GLOBAL_FAILURES: usize = 20;
/// The sliding window of the lockout.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Registrations one address may burst.
const REGISTER_BURST: f64 = 10.0;
/// Sustained registrations per address: one per this many seconds.
const REGISTER_REFILL_SECS: f64 = 6.0;

/// Addresses remembered before the tables are pruned.
const MAX_TRACKED: usize = 10_000;

/// The verdict on a passphrase attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Accepted,
    Wrong,
    /// Locked out; retry after this many seconds.
    Locked(u64),
}

#[derive(Default)]
pub struct Limits {
    register: Mutex<HashMap<IpAddr, Bucket>>,
    failures: Mutex<Failures>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
struct Failures {
    per_ip: HashMap<IpAddr, VecDeque<Instant>>,
    global: VecDeque<Instant>,
}

impl Limits {
    /// Takes one registration from `ip`'s bucket; `Err(seconds)` to wait.
    pub fn register(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut map) = self.register.lock() else {
            return Err(60);
        };
        if map.len() > MAX_TRACKED {
            // Forget full buckets: they would allow a burst anyway.
            map.retain(|_, b| refill(b, now) < REGISTER_BURST);
        }
        let b = map.entry(ip).or_insert(Bucket {
            tokens: REGISTER_BURST,
            at: now,
        });
        b.tokens = refill(b, now);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) * REGISTER_REFILL_SECS).ceil() as u64)
        }
    }

    /// Judges a passphrase attempt from `ip`: `check` runs only when neither
    /// the address nor the server is locked out, under the same lock that
    /// records a failure, so concurrent guesses cannot slip past the bound.
    pub fn passphrase(&self, ip: IpAddr, check: impl FnOnce() -> bool) -> Attempt {
        let now = Instant::now();
        let Ok(mut f) = self.failures.lock() else {
            return Attempt::Locked(FAILURE_WINDOW.as_secs());
        };
        let Failures { per_ip, global } = &mut *f;
        prune(global, now);
        if per_ip.len() > MAX_TRACKED {
            per_ip.retain(|_, q| {
                prune(q, now);
                !q.is_empty()
            });
        }
        let mine = per_ip.entry(ip).or_default();
        prune(mine, now);
        if let Some(wait) = lock_wait(mine, PER_IP_FAILURES, now)
            .or_else(|| lock_wait(global, GLOBAL_FAILURES, now))
        {
            return Attempt::Locked(wait);
        }
        if check() {
            mine.clear();
            Attempt::Accepted
        } else {
            mine.push_back(now);
            global.push_back(now);
            Attempt::Wrong
        }
    }
}

fn refill(b: &Bucket, now: Instant) -> f64 {
    let secs = now.saturating_duration_since(b.at).as_secs_f64();
    (b.tokens + secs / REGISTER_REFILL_SECS).min(REGISTER_BURST)
}

/// Seconds until `q` holds fewer than `max` failures again, if it is full.
fn lock_wait(q: &VecDeque<Instant>, max: usize, now: Instant) -> Option<u64> {
    if q.len() < max {
        return None;
    }
    let oldest = q.front()?;
    let wait = (*oldest + FAILURE_WINDOW).saturating_duration_since(now);
    Some(wait.as_secs().max(1))
}

fn prune(q: &mut VecDeque<Instant>, now: Instant) {
    while q
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= FAILURE_WINDOW)
    {
        q.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn an_address_is_locked_after_its_failures_even_with_the_right_passphrase() {
        let l = Limits::default();
        for _ in 0..PER_IP_FAILURES {
            assert_eq!(l.passphrase(ip(1), || false), Attempt::Wrong);
        }
        assert!(matches!(l.passphrase(ip(1), || true), Attempt::Locked(s) if s > 0));
        // Another address is not locked yet.
        assert_eq!(l.passphrase(ip(2), || true), Attempt::Accepted);
    }

    #[test]
    fn the_global_bound_stops_guessing_from_many_addresses() {
        let l = Limits::default();
        let mut wrong = 0;
        for n in 0..100u8 {
            for _ in 0..2 {
                if l.passphrase(ip(n), || false) == Attempt::Wrong {
                    wrong += 1;
                }
            }
        }
        assert_eq!(wrong, GLOBAL_FAILURES);
        assert!(matches!(l.passphrase(ip(200), || true), Attempt::Locked(_)));
    }

    #[test]
    fn registrations_burst_then_wait() {
        let l = Limits::default();
        for _ in 0..REGISTER_BURST as usize {
            assert!(l.register(ip(1)).is_ok());
        }
        let wait = l.register(ip(1)).unwrap_err();
        assert!((1..=REGISTER_REFILL_SECS as u64).contains(&wait), "{wait}");
        assert!(l.register(ip(2)).is_ok());
    }
}
