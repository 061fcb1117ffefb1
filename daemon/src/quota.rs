//! Per-principal quotas and rate limits: what one token may cost the server.
//!
//! Two kinds, answered differently:
//! - **Rates** reset by themselves: posts per second (a token bucket per
//!   principal, in memory: a restart refilling it costs nothing), channels
//!   created per hour and bytes posted per UTC day (both counted in the
//!   database, so a restart does not reset them). Over a rate the tool error
//!   is `RATE_LIMITED` with `retry_after_ms`.
//! - **Standing quotas** change only when the caller does something: open
//!   channels (close one), messages and bytes per channel (start a new
//!   channel). Over one the error is `QUOTA_EXCEEDED`, saying what to do.
//!
//! A refusal names the limit (`data.limit`) and counts in `/metrics`. Bots
//! post on their channel's account: their messages and bytes count against
//! the channel's quotas, never against a principal, and a hook whose posts
//! would overrun them fails as a whole (one `bot:error`).
//!
//! The counted checks run inside the write that appends, so two racing posts
//! cannot both squeeze under a limit.

use crate::channels::{Code, ToolError};
use crate::config::QuotaConfig;
use crate::metrics::Metrics;
use crate::store::{ChannelRecord, DAY_MS, ReadTx, StoreError, Tx};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Buckets kept before idle (full) ones are dropped.
const BUCKETS_KEPT: usize = 10_000;

/// The quota checks, shared by the tools and the dispatcher. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Quotas {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: QuotaConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
    metrics: Option<Arc<Metrics>>,
}

/// A token bucket: `tokens` at `at`, refilled at the configured rate.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Quotas {
    pub fn new(cfg: QuotaConfig, metrics: Option<Arc<Metrics>>) -> Quotas {
        Quotas {
            inner: Arc::new(Inner {
                cfg,
                buckets: Mutex::default(),
                metrics,
            }),
        }
    }

    /// No practical limit (services built without a configuration).
    pub fn unlimited() -> Quotas {
        Quotas::new(QuotaConfig::unlimited(), None)
    }

    fn refused(&self, e: ToolError, limit: &str) -> ToolError {
        if let Some(m) = &self.inner.metrics {
            m.rate_limited(limit);
        }
        e
    }

    fn rate_limited(&self, limit: &str, retry_after_ms: u64, message: String) -> ToolError {
        let e = ToolError::new(Code::RateLimited, message)
            .with_data(json!({"limit": limit, "retry_after_ms": retry_after_ms}));
        self.refused(e, limit)
    }

    fn exceeded(&self, limit: &str, message: String) -> ToolError {
        let e = ToolError::new(Code::QuotaExceeded, message).with_data(json!({"limit": limit}));
        self.refused(e, limit)
    }

    /// Takes one post from `principal`'s bucket.
    ///
    /// # Errors
    /// `RATE_LIMITED` when the bucket is empty, with the wait until the next
    /// post is allowed.
    pub fn take_post(&self, principal: &str) -> Result<(), ToolError> {
        let cfg = &self.inner.cfg;
        let now = Instant::now();
        let mut buckets = self.inner.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= BUCKETS_KEPT && !buckets.contains_key(principal) {
            // Full buckets are the same as no bucket.
            buckets.retain(|_, b| level(b, now, cfg) < f64::from(cfg.post_burst));
        }
        let b = buckets.entry(principal.to_string()).or_insert(Bucket {
            tokens: f64::from(cfg.post_burst),
            at: now,
        });
        let tokens = level(b, now, cfg);
        if tokens >= 1.0 {
            *b = Bucket {
                tokens: tokens - 1.0,
                at: now,
            };
            return Ok(());
        }
        drop(buckets);
        let wait_ms = ((1.0 - tokens) / cfg.posts_per_second * 1000.0)
            .ceil()
            .max(1.0) as u64;
        Err(self.rate_limited(
            "posts_per_second",
            wait_ms,
            format!(
                "You are posting faster than this server allows ({} posts per second, bursts of {}). Wait {wait_ms} ms (retry_after_ms), then post again.",
                cfg.posts_per_second, cfg.post_burst
            ),
        ))
    }

    /// Checks that `principal` may create one more channel now.
    ///
    /// # Errors
    /// `RATE_LIMITED` over the hourly count, `QUOTA_EXCEEDED` over the open
    /// channels.
    pub fn check_create(
        &self,
        tx: &dyn ReadTx,
        principal: &str,
        now_ms: i64,
    ) -> Result<(), ToolError> {
        let cfg = &self.inner.cfg;
        let (created, oldest) = tx.channels_created_since(principal, now_ms - HOUR_MS)?;
        if created >= u64::from(cfg.channels_per_hour) {
            let wait = oldest.map_or(HOUR_MS, |t| t + HOUR_MS - now_ms).max(1);
            return Err(self.rate_limited(
                "channels_per_hour",
                wait as u64,
                format!(
                    "You created {created} channels in the last hour, the most this server allows ({}). Reuse one of your channels, or try again in {wait} ms (retry_after_ms).",
                    cfg.channels_per_hour
                ),
            ));
        }
        let open = tx.open_channels(principal)?;
        if open >= u64::from(cfg.open_channels) {
            return Err(self.exceeded(
                "open_channels",
                format!(
                    "You administer {open} open channels, the most this server allows ({}). Close one you no longer need (update_channel with op \"close\"), then create this one.",
                    cfg.open_channels
                ),
            ));
        }
        Ok(())
    }

    /// Charges a user post of `bytes` to its channel and to `principal`'s
    /// day, inside the write that appends it.
    ///
    /// # Errors
    /// `QUOTA_EXCEEDED` when the channel is full, `RATE_LIMITED` over the
    /// principal's daily bytes (with the wait until the UTC day turns).
    pub fn charge_post(
        &self,
        tx: &mut dyn Tx,
        ch: &ChannelRecord,
        principal: &str,
        bytes: u64,
        now_ms: i64,
    ) -> Result<(), ToolError> {
        self.check_channel_tool(tx, ch, 1, bytes)?;
        let cfg = &self.inner.cfg;
        let day = now_ms.div_euclid(DAY_MS);
        let today = tx.principal_bytes(principal, day)?;
        if today.saturating_add(bytes) > cfg.bytes_per_principal_per_day {
            let wait = ((day + 1) * DAY_MS - now_ms).max(1) as u64;
            return Err(self.rate_limited(
                "bytes_per_principal_per_day",
                wait,
                format!(
                    "You posted {today} bytes today (UTC); this {bytes}-byte message would pass the daily limit of {} bytes. It resets in {wait} ms (retry_after_ms); shorter messages may still fit.",
                    cfg.bytes_per_principal_per_day
                ),
            ));
        }
        tx.add_usage(&ch.id, Some((principal, day)), bytes)?;
        Ok(())
    }

    /// Charges a bot's posts (`count` messages, `bytes` in all) to its
    /// channel, inside the write that commits them.
    ///
    /// # Errors
    /// The reason, for the hook's `bot:error`, when they do not fit; a
    /// storage failure as such.
    pub fn charge_bot(
        &self,
        tx: &mut dyn Tx,
        ch: &ChannelRecord,
        count: u64,
        bytes: u64,
    ) -> Result<Result<(), String>, StoreError> {
        match self.check_channel(tx, ch, count, bytes) {
            Ok(()) => {}
            Err(Overrun::Store(e)) => return Err(e),
            Err(Overrun::Over(limit, msg)) => {
                if let Some(m) = &self.inner.metrics {
                    m.rate_limited(limit);
                }
                return Ok(Err(msg));
            }
        }
        if bytes > 0 {
            tx.add_usage(&ch.id, None, bytes)?;
        }
        Ok(Ok(()))
    }

    fn check_channel_tool(
        &self,
        tx: &dyn ReadTx,
        ch: &ChannelRecord,
        count: u64,
        bytes: u64,
    ) -> Result<(), ToolError> {
        match self.check_channel(tx, ch, count, bytes) {
            Ok(()) => Ok(()),
            Err(Overrun::Store(e)) => Err(e.into()),
            Err(Overrun::Over(limit, msg)) => Err(self.exceeded(limit, msg)),
        }
    }

    /// Whether `count` more messages of `bytes` fit in the channel.
    fn check_channel(
        &self,
        tx: &dyn ReadTx,
        ch: &ChannelRecord,
        count: u64,
        bytes: u64,
    ) -> Result<(), Overrun> {
        let cfg = &self.inner.cfg;
        let messages = ch.last_seq.max(0) as u64;
        if messages.saturating_add(count) > cfg.messages_per_channel {
            return Err(Overrun::Over(
                "messages_per_channel",
                ChannelRefusal::Messages {
                    holds: messages,
                    limit: cfg.messages_per_channel,
                }
                .text(),
            ));
        }
        let used = tx.channel_bytes(&ch.id)?;
        if used.saturating_add(bytes) > cfg.bytes_per_channel {
            return Err(Overrun::Over(
                "bytes_per_channel",
                ChannelRefusal::Bytes {
                    used,
                    adding: bytes,
                    limit: cfg.bytes_per_channel,
                }
                .text(),
            ));
        }
        Ok(())
    }
}

/// A refusal for a channel's quotas, as its text states it. A hook's
/// `bot:error` repeats the text when the daemon refused the hook's posts for
/// them; `replay` reads it back ([`ChannelRefusal::parse`]) to check what
/// the transcript can show (the channel's message count, the posts' bytes)
/// and to tell such hooks, refused for the daemon's configuration, from the
/// others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelRefusal {
    /// The channel held `holds` messages; at most `limit`.
    Messages { holds: u64, limit: u64 },
    /// The channel's messages held `used` bytes; `adding` more would pass
    /// `limit`.
    Bytes { used: u64, adding: u64, limit: u64 },
}

const MESSAGES_FULL: &str = "This channel holds ";
const BYTES_FULL: &str = "This channel's messages hold ";
const GO_ON: &str = ". Start a new channel to go on.";

impl ChannelRefusal {
    /// The refusal's text, as the tools and a `bot:error` give it.
    pub fn text(&self) -> String {
        match self {
            ChannelRefusal::Messages { holds, limit } => {
                format!("{MESSAGES_FULL}{holds} messages, its limit is {limit}{GO_ON}")
            }
            ChannelRefusal::Bytes {
                used,
                adding,
                limit,
            } => format!(
                "{BYTES_FULL}{used} bytes; {adding} more would pass its limit of {limit} bytes{GO_ON}"
            ),
        }
    }

    /// The refusal a text states, if it is one ([`ChannelRefusal::text`]'s
    /// inverse).
    pub fn parse(text: &str) -> Option<ChannelRefusal> {
        let num = |s: &str| -> Option<u64> {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        let rest = text.strip_suffix(GO_ON)?;
        if let Some(rest) = rest.strip_prefix(MESSAGES_FULL) {
            let (holds, limit) = rest.split_once(" messages, its limit is ")?;
            return Some(ChannelRefusal::Messages {
                holds: num(holds)?,
                limit: num(limit)?,
            });
        }
        let rest = rest.strip_prefix(BYTES_FULL)?.strip_suffix(" bytes")?;
        let (used, rest) = rest.split_once(" bytes; ")?;
        let (adding, limit) = rest.split_once(" more would pass its limit of ")?;
        Some(ChannelRefusal::Bytes {
            used: num(used)?,
            adding: num(adding)?,
            limit: num(limit)?,
        })
    }
}

const HOUR_MS: i64 = 3_600_000;

/// The bucket's level at `now`.
fn level(b: &Bucket, now: Instant, cfg: &QuotaConfig) -> f64 {
    let refill = now.saturating_duration_since(b.at).as_secs_f64() * cfg.posts_per_second;
    (b.tokens + refill).min(f64::from(cfg.post_burst))
}

/// A channel check's failure: over a limit, or the store failed.
enum Overrun {
    Over(&'static str, String),
    Store(StoreError),
}

impl From<StoreError> for Overrun {
    fn from(e: StoreError) -> Self {
        Overrun::Store(e)
    }
}

#[cfg(test)]
mod tests {
    use super::ChannelRefusal;

    #[test]
    fn a_channel_refusal_reads_back_from_its_text_and_nothing_else_reads_as_one() {
        for r in [
            ChannelRefusal::Messages { holds: 7, limit: 7 },
            ChannelRefusal::Messages {
                holds: 0,
                limit: u64::MAX,
            },
            ChannelRefusal::Bytes {
                used: 3067,
                adding: 3057,
                limit: 5000,
            },
        ] {
            assert_eq!(
                ChannelRefusal::parse(&r.text()),
                Some(r.clone()),
                "{}",
                r.text()
            );
        }
        for text in [
            "",
            "This channel holds 7 messages, its limit is 7.",
            "This channel holds -1 messages, its limit is 7. Start a new channel to go on.",
            "This channel holds 7 messages, its limit is 7 . Start a new channel to go on.",
            "This channel holds +7 messages, its limit is 7. Start a new channel to go on.",
            "This channel's messages hold 1 bytes; 2 more would pass its limit of 3. Start a new channel to go on.",
            "Bot raised: This channel holds 7 messages, its limit is 7. Start a new channel to go on.",
        ] {
            assert_eq!(ChannelRefusal::parse(text), None, "{text:?}");
        }
    }
}
