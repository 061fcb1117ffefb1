//! The limits an operator can tune: connection hygiene (`[http]`) and
//! per-principal quotas (`[quotas]`).
//!
//! Every limit has a default that holds on the open internet; `0` never
//! means "unlimited" (an operator who wants a limit out of the way sets it
//! high). `docs/operations.md` lists each key with its default; keep the two
//! in step.

use super::ConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[http]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttp {
    pub header_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub write_timeout_secs: Option<u64>,
    pub body_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_unauthenticated_connections: Option<usize>,
    pub max_unauthenticated_per_peer: Option<usize>,
    pub drain_secs: Option<u64>,
    pub session_idle_secs: Option<u64>,
    pub session_sleep_secs: Option<u64>,
    pub max_sessions_per_principal: Option<usize>,
}

/// Connection hygiene: timeouts, connection caps, MCP sessions, shutdown.
#[derive(Debug, Clone, Serialize)]
pub struct HttpConfig {
    /// A request's line and headers must arrive within this time of its
    /// first byte (slow-header attacks). Default 10 s.
    #[serde(with = "secs", rename = "header_timeout_secs")]
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after
    /// this long. Longer than common reverse proxies' upstream idle time
    /// (nginx 60 s, Caddy 120 s... set your proxy's below it). Default 150 s.
    #[serde(with = "secs", rename = "idle_timeout_secs")]
    pub idle_timeout: Duration,
    /// A response write that makes no progress for this long (a client that
    /// stopped reading) closes the connection. Default 30 s.
    #[serde(with = "secs", rename = "write_timeout_secs")]
    pub write_timeout: Duration,
    /// A request body that sends nothing for this long is abandoned.
    /// Default 30 s.
    #[serde(with = "secs", rename = "body_timeout_secs")]
    pub body_timeout: Duration,
    /// Open connections, in total. `None` (the default): the open-file limit
    /// minus a reserve for the database, logs and bot runners.
    pub max_connections: Option<usize>,
    /// Connections that have not (yet) shown a valid bearer token, in total:
    /// the rest is reserved for authenticated traffic. Default: half of
    /// `max_connections`.
    pub max_unauthenticated_connections: Option<usize>,
    /// Unauthenticated connections from one peer address. A new connection
    /// beyond it closes that peer's oldest unauthenticated one (idle first).
    /// Behind a reverse proxy every connection has the proxy's address: size
    /// this for the proxy's unauthenticated traffic. Default 64.
    pub max_unauthenticated_per_peer: usize,
    /// How long shutdown waits for in-flight requests before it exits
    /// anyway. Default 10 s.
    #[serde(with = "secs", rename = "drain_secs")]
    pub drain: Duration,
    /// An MCP session with no request for this long is closed. Default 600 s.
    #[serde(with = "secs", rename = "session_idle_secs")]
    pub session_idle: Duration,
    /// An MCP session with no request for this long, no response stream
    /// open and no resource subscription is put to sleep: it keeps only its
    /// owner and its `initialize` parameters, and its next request wakes it
    /// (clients see no difference). Default 30 s.
    #[serde(with = "secs", rename = "session_sleep_secs")]
    pub session_sleep: Duration,
    /// Open MCP sessions per principal; a new one beyond it closes that
    /// principal's least recently used session. Default 32.
    pub max_sessions_per_principal: usize,
}

impl HttpConfig {
    pub(super) fn from_file(f: FileHttp) -> Result<HttpConfig, ConfigError> {
        let secs = |key: &str, v: Option<u64>, default: u64, max: u64| {
            let v = v.unwrap_or(default);
            if v == 0 || v > max {
                return Err(ConfigError::Invalid(format!(
                    "http.{key} = {v}: choose between 1 and {max} seconds"
                )));
            }
            Ok(Duration::from_secs(v))
        };
        let positive = |key: &str, v: Option<usize>| match v {
            Some(0) => Err(ConfigError::Invalid(format!(
                "http.{key} = 0: it must be at least 1 (set it high to keep it out of the way)"
            ))),
            other => Ok(other),
        };
        Ok(HttpConfig {
            header_timeout: secs("header_timeout_secs", f.header_timeout_secs, 10, 300)?,
            idle_timeout: secs("idle_timeout_secs", f.idle_timeout_secs, 150, 3600)?,
            write_timeout: secs("write_timeout_secs", f.write_timeout_secs, 30, 600)?,
            body_timeout: secs("body_timeout_secs", f.body_timeout_secs, 30, 600)?,
            max_connections: positive("max_connections", f.max_connections)?,
            max_unauthenticated_connections: positive(
                "max_unauthenticated_connections",
                f.max_unauthenticated_connections,
            )?,
            max_unauthenticated_per_peer: positive(
                "max_unauthenticated_per_peer",
                f.max_unauthenticated_per_peer,
            )?
            .unwrap_or(64),
            drain: secs("drain_secs", f.drain_secs, 10, 120)?,
            session_idle: secs("session_idle_secs", f.session_idle_secs, 600, 86_400)?,
            session_sleep: secs("session_sleep_secs", f.session_sleep_secs, 30, 86_400)?,
            max_sessions_per_principal: positive(
                "max_sessions_per_principal",
                f.max_sessions_per_principal,
            )?
            .unwrap_or(32),
        })
    }
}

/// `[quotas]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileQuotas {
    pub posts_per_second: Option<f64>,
    pub post_burst: Option<u32>,
    pub channels_per_hour: Option<u32>,
    pub open_channels: Option<u32>,
    pub messages_per_channel: Option<u64>,
    pub bytes_per_channel: Option<u64>,
    pub bytes_per_principal_per_day: Option<u64>,
}

/// Per-principal quotas and rate limits. A principal over one gets the tool
/// error `RATE_LIMITED` (with `retry_after_ms`) or `QUOTA_EXCEEDED`; other
/// principals are not affected.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QuotaConfig {
    /// Sustained user posts per second per principal. Default 5.
    pub posts_per_second: f64,
    /// Posts a principal may send at once before the rate applies. Default 20.
    pub post_burst: u32,
    /// Channels a principal may create in any hour. Default 30.
    pub channels_per_hour: u32,
    /// Channels a principal administers that are not closed. Default 100.
    pub open_channels: u32,
    /// Transcript entries of one channel (user, bot and system messages
    /// alike; joins and announcements are never refused). Default 50,000.
    pub messages_per_channel: u64,
    /// Bytes of user and bot message bodies (canonical JSON) in one channel.
    /// Bots' posts count here, not against a principal. Default 64 MiB.
    pub bytes_per_channel: u64,
    /// Bytes of message bodies one principal may post per UTC day. Kept in
    /// the database, so a restart does not reset it. Default 256 MiB.
    pub bytes_per_principal_per_day: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            posts_per_second: 5.0,
            post_burst: 20,
            channels_per_hour: 30,
            open_channels: 100,
            messages_per_channel: 50_000,
            bytes_per_channel: 64 * 1024 * 1024,
            bytes_per_principal_per_day: 256 * 1024 * 1024,
        }
    }
}

impl QuotaConfig {
    /// No practical limit: services built without a configuration (unit
    /// tests of other features, CLI commands).
    pub fn unlimited() -> Self {
        QuotaConfig {
            posts_per_second: 1e9,
            post_burst: u32::MAX,
            channels_per_hour: u32::MAX,
            open_channels: u32::MAX,
            messages_per_channel: u64::MAX,
            bytes_per_channel: u64::MAX,
            bytes_per_principal_per_day: u64::MAX,
        }
    }

    pub(super) fn from_file(f: FileQuotas) -> Result<QuotaConfig, ConfigError> {
        let d = QuotaConfig::default();
        let q = QuotaConfig {
            posts_per_second: f.posts_per_second.unwrap_or(d.posts_per_second),
            post_burst: f.post_burst.unwrap_or(d.post_burst),
            channels_per_hour: f.channels_per_hour.unwrap_or(d.channels_per_hour),
            open_channels: f.open_channels.unwrap_or(d.open_channels),
            messages_per_channel: f.messages_per_channel.unwrap_or(d.messages_per_channel),
            bytes_per_channel: f.bytes_per_channel.unwrap_or(d.bytes_per_channel),
            bytes_per_principal_per_day: f
                .bytes_per_principal_per_day
                .unwrap_or(d.bytes_per_principal_per_day),
        };
        if !(q.posts_per_second.is_finite() && q.posts_per_second > 0.0) {
            return Err(ConfigError::Invalid(format!(
                "quotas.posts_per_second = {}: give a positive number (0.5 is one post every two seconds)",
                q.posts_per_second
            )));
        }
        let zero = [
            ("post_burst", u64::from(q.post_burst)),
            ("channels_per_hour", u64::from(q.channels_per_hour)),
            ("open_channels", u64::from(q.open_channels)),
            ("messages_per_channel", q.messages_per_channel),
            ("bytes_per_channel", q.bytes_per_channel),
            ("bytes_per_principal_per_day", q.bytes_per_principal_per_day),
        ]
        .into_iter()
        .find(|(_, v)| *v == 0);
        if let Some((key, _)) = zero {
            return Err(ConfigError::Invalid(format!(
                "quotas.{key} = 0 would refuse everything; give a positive limit"
            )));
        }
        Ok(q)
    }
}

/// Durations in whole seconds, as the file writes them.
mod secs {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_hold_and_zero_is_refused_with_the_key() {
        let h = HttpConfig::from_file(FileHttp::default()).unwrap();
        assert_eq!(h.header_timeout, Duration::from_secs(10));
        assert!(
            h.idle_timeout > Duration::from_secs(120),
            "outlives proxies' idle pools"
        );
        assert_eq!(h.max_connections, None);
        let q = QuotaConfig::from_file(FileQuotas::default()).unwrap();
        assert_eq!(q, QuotaConfig::default());

        let err = HttpConfig::from_file(toml::from_str("header_timeout_secs = 0").unwrap())
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("http.header_timeout_secs"),
            "{err}"
        );
        let err = HttpConfig::from_file(toml::from_str("max_connections = 0").unwrap())
            .err()
            .unwrap();
        assert!(err.to_string().contains("http.max_connections"), "{err}");
        let err = QuotaConfig::from_file(toml::from_str("open_channels = 0").unwrap())
            .err()
            .unwrap();
        assert!(err.to_string().contains("quotas.open_channels"), "{err}");
        let err = QuotaConfig::from_file(toml::from_str("posts_per_second = -1.0").unwrap())
            .err()
            .unwrap();
        assert!(err.to_string().contains("posts_per_second"), "{err}");
    }
}
