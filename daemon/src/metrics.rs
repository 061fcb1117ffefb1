//! The series `/metrics` exports (Prometheus text format 0.0.4), kept in
//! plain atomics.
//!
//! Every label set is known in advance (routes, status codes, tool names,
//! error codes, limit names), so each series is a fixed slot in an array of
//! `AtomicU64`: recording is one or two relaxed `fetch_add`s and never takes
//! a lock. The only map is the sandbox failures by confinement step, whose
//! step names come from the runner; those are rare. Histograms have fixed
//! buckets; the exporter renders cumulative counts as Prometheus expects.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Routes, as `/metrics` labels them.
pub const ROUTES: &[&str] = &[
    "/mcp",
    "/healthz",
    "/metrics",
    "/register",
    "/authorize",
    "/token",
    "/revoke",
    "/.well-known",
    "/c",
    "other",
];

/// Status codes counted one by one; the rest count as `other`.
const STATUSES: &[u16] = &[
    200, 201, 202, 204, 302, 303, 304, 400, 401, 403, 404, 405, 406, 408, 409, 413, 415, 422, 429,
    500, 502, 503, 504,
];

/// The tools, as `/metrics` labels them (anything else is `other`).
pub const TOOLS: &[&str] = &[
    "create_channel",
    "join_channel",
    "post_message",
    "sync_messages",
    "get_channel_info",
    "get_bot_code",
    "list_channels",
    "update_channel",
    "attach_bot",
    "share_channel",
    "revoke_shares",
    "other",
];

/// Tool outcomes: `ok`, a tool error's code, or a JSON-RPC error.
pub const TOOL_OUTCOMES: &[&str] = &[
    "ok",
    "INVITE_INVALID",
    "REJOIN_TOKEN_INVALID",
    "CHANNEL_NOT_FOUND",
    "CHANNEL_CLOSED",
    "NOT_MEMBER",
    "NOT_ADMIN",
    "SLOT_ALREADY_FILLED",
    "SLOT_REQUIRED",
    "UNKNOWN_SLOT",
    "BAD_REQUEST",
    "RATE_LIMITED",
    "QUOTA_EXCEEDED",
    "BOT_ERROR",
    "INTERNAL",
    "other_error",
    "protocol_error",
];

/// Hook outcomes: `ok` or the failure's kind.
pub const HOOK_OUTCOMES: &[&str] = &[
    "ok",
    "syntax",
    "policy",
    "exception",
    "memory",
    "output_overrun",
    "limit",
    "timeout",
    "confinement",
    "internal",
];

/// The quotas and rate limits a refusal names.
pub const LIMITS: &[&str] = &[
    "posts_per_second",
    "channels_per_hour",
    "open_channels",
    "messages_per_channel",
    "bytes_per_channel",
    "bytes_per_principal_per_day",
];

/// Why the server closed a connection itself.
pub const CONN_CLOSES: &[&str] = &[
    "header_timeout",
    "idle_timeout",
    "write_timeout",
    "evicted",
    "refused",
];

/// Seconds: request and tool latencies, hook durations.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Seconds: a commit's time (fsync dominated).
const COMMIT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Writes per committed transaction.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// A histogram with fixed upper bounds.
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, plus the overflow (`+Inf`) bucket.
    counts: Box<[AtomicU64]>,
    /// Sum of observations in millionths of the unit.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6).max(0.0) as u64, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

fn counters(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// Every series the daemon exports, shared by all requests.
pub struct Metrics {
    http_requests: Box<[AtomicU64]>,
    http_latency: Box<[Histogram]>,
    tool_calls: Box<[AtomicU64]>,
    tool_latency: Box<[Histogram]>,
    hook_runs: Box<[AtomicU64]>,
    hook_duration: Box<[Histogram]>,
    sandbox_failures: Mutex<BTreeMap<String, u64>>,
    hooks_forked: AtomicU64,
    rate_limited: Box<[AtomicU64]>,
    conn_closed: Box<[AtomicU64]>,
    pub connections_open: AtomicI64,
    pub connections_accepted: AtomicU64,
    pub sessions_open: AtomicI64,
    pub sessions_expired: AtomicU64,
    pub sessions_displaced: AtomicU64,
    /// Requests refused for another principal's session id.
    pub sessions_foreign: AtomicU64,
    /// `sync_messages` calls answered by the direct long-poll path
    /// (`http::longpoll`) rather than through rmcp.
    pub sync_direct: AtomicU64,
    /// Open sessions that are asleep: idle, holding no tasks or buffers.
    pub sessions_asleep: AtomicI64,
    pub commit_batch: Histogram,
    pub commit_latency: Histogram,
    pub commit_failures: AtomicU64,
    pub posts: AtomicU64,
    pub auth_failures: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let hist = |n: usize, b: &'static [f64]| (0..n).map(|_| Histogram::new(b)).collect();
        Metrics {
            http_requests: counters(ROUTES.len() * (STATUSES.len() + 1)),
            http_latency: hist(ROUTES.len(), LATENCY_BUCKETS),
            tool_calls: counters(TOOLS.len() * TOOL_OUTCOMES.len()),
            tool_latency: hist(TOOLS.len(), LATENCY_BUCKETS),
            hook_runs: counters(HOOK_OUTCOMES.len()),
            hook_duration: hist(HOOK_OUTCOMES.len(), LATENCY_BUCKETS),
            sandbox_failures: Mutex::default(),
            hooks_forked: AtomicU64::new(0),
            rate_limited: counters(LIMITS.len()),
            conn_closed: counters(CONN_CLOSES.len()),
            connections_open: AtomicI64::new(0),
            connections_accepted: AtomicU64::new(0),
            sessions_open: AtomicI64::new(0),
            sessions_expired: AtomicU64::new(0),
            sessions_displaced: AtomicU64::new(0),
            sessions_foreign: AtomicU64::new(0),
            sync_direct: AtomicU64::new(0),
            sessions_asleep: AtomicI64::new(0),
            commit_batch: Histogram::new(BATCH_BUCKETS),
            commit_latency: Histogram::new(COMMIT_BUCKETS),
            commit_failures: AtomicU64::new(0),
            posts: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
        }
    }
}

fn index_of(list: &[&str], name: &str) -> usize {
    list.iter()
        .position(|x| *x == name)
        .unwrap_or(list.len() - 1)
}

/// The `/metrics` label of a request path.
pub fn route_of(path: &str) -> usize {
    if path.starts_with("/.well-known/") {
        return index_of(ROUTES, "/.well-known");
    }
    // The channel pages, their event streams and assets: one series, so
    // that channel ids do not multiply the series.
    if path.starts_with("/c/") || path.starts_with("/page/") {
        return index_of(ROUTES, "/c");
    }
    index_of(ROUTES, path)
}

impl Metrics {
    pub fn http_request(&self, route: usize, status: u16, took: Duration) {
        let s = STATUSES
            .iter()
            .position(|x| *x == status)
            .unwrap_or(STATUSES.len());
        self.http_requests[route * (STATUSES.len() + 1) + s].fetch_add(1, Ordering::Relaxed);
        self.http_latency[route].observe_duration(took);
    }

    /// A tool call: its name, and `ok`, its error code or `protocol_error`.
    pub fn tool_call(&self, tool: &str, outcome: &str, took: Duration) {
        let t = index_of(TOOLS, tool);
        let o = TOOL_OUTCOMES
            .iter()
            .position(|x| *x == outcome)
            .unwrap_or_else(|| index_of(TOOL_OUTCOMES, "other_error"));
        self.tool_calls[t * TOOL_OUTCOMES.len() + o].fetch_add(1, Ordering::Relaxed);
        self.tool_latency[t].observe_duration(took);
    }

    /// A hook that ran: `ok` or its failure kind (see [`HOOK_OUTCOMES`]),
    /// and for a confinement failure the step that did not take effect.
    pub fn hook_run(&self, outcome: &str, sandbox_step: Option<&str>, took: Duration) {
        let o = index_of(HOOK_OUTCOMES, outcome);
        self.hook_runs[o].fetch_add(1, Ordering::Relaxed);
        self.hook_duration[o].observe_duration(took);
        if let Some(step) = sandbox_step {
            // Step names come from the runner: keep the label short and tame.
            let step: String = step
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .take(32)
                .collect();
            let mut m = self
                .sandbox_failures
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if m.len() < 64 || m.contains_key(&step) {
                *m.entry(step).or_default() += 1;
            }
        }
    }

    /// A hook ran in a fork template.
    pub fn hook_forked(&self) {
        self.hooks_forked.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rate_limited(&self, limit: &str) {
        self.rate_limited[index_of(LIMITS, limit)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn conn_closed(&self, why: &str) {
        self.conn_closed[index_of(CONN_CLOSES, why)].fetch_add(1, Ordering::Relaxed);
    }

    /// Renders every series; `gauges` are read at scrape time by the caller.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let o = &mut out;
        let help = |o: &mut String, name: &str, kind: &str, text: &str| {
            let _ = writeln!(o, "# HELP {name} {text}\n# TYPE {name} {kind}");
        };
        help(
            o,
            "mcp_multiplayer_build_info",
            "gauge",
            "The running build.",
        );
        let _ = writeln!(
            o,
            "mcp_multiplayer_build_info{{version=\"{}\",schema=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            gauges.schema_version
        );
        help(
            o,
            "mcp_multiplayer_uptime_seconds",
            "gauge",
            "Seconds since start.",
        );
        let _ = writeln!(o, "mcp_multiplayer_uptime_seconds {}", gauges.uptime_secs);

        let n = STATUSES.len() + 1;
        help(
            o,
            "mcp_multiplayer_http_requests_total",
            "counter",
            "HTTP requests answered, by route and status.",
        );
        for (r, route) in ROUTES.iter().enumerate() {
            for s in 0..n {
                let v = self.http_requests[r * n + s].load(Ordering::Relaxed);
                if v > 0 {
                    let status = STATUSES.get(s).map_or("other".to_string(), u16::to_string);
                    let _ = writeln!(
                        o,
                        "mcp_multiplayer_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {v}"
                    );
                }
            }
        }
        help(
            o,
            "mcp_multiplayer_http_request_duration_seconds",
            "histogram",
            "Time to a response's headers, by route (long-polls included).",
        );
        for (r, route) in ROUTES.iter().enumerate() {
            if self.http_latency[r].count() > 0 {
                self.http_latency[r].render(
                    o,
                    "mcp_multiplayer_http_request_duration_seconds",
                    &format!("route=\"{route}\""),
                );
            }
        }
        help(
            o,
            "mcp_multiplayer_tool_calls_total",
            "counter",
            "MCP tool calls, by tool and outcome (ok, the tool error's code, or protocol_error).",
        );
        for (t, tool) in TOOLS.iter().enumerate() {
            for (i, outcome) in TOOL_OUTCOMES.iter().enumerate() {
                let v = self.tool_calls[t * TOOL_OUTCOMES.len() + i].load(Ordering::Relaxed);
                if v > 0 {
                    let _ = writeln!(
                        o,
                        "mcp_multiplayer_tool_calls_total{{tool=\"{tool}\",outcome=\"{outcome}\"}} {v}"
                    );
                }
            }
        }
        help(
            o,
            "mcp_multiplayer_tool_call_duration_seconds",
            "histogram",
            "Tool call time, by tool (sync_messages includes its wait).",
        );
        for (t, tool) in TOOLS.iter().enumerate() {
            if self.tool_latency[t].count() > 0 {
                self.tool_latency[t].render(
                    o,
                    "mcp_multiplayer_tool_call_duration_seconds",
                    &format!("tool=\"{tool}\""),
                );
            }
        }
        help(
            o,
            "mcp_multiplayer_hooks_total",
            "counter",
            "Bot hooks run, by outcome.",
        );
        for (i, outcome) in HOOK_OUTCOMES.iter().enumerate() {
            let v = self.hook_runs[i].load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "mcp_multiplayer_hooks_total{{outcome=\"{outcome}\"}} {v}"
            );
        }
        help(
            o,
            "mcp_multiplayer_hook_duration_seconds",
            "histogram",
            "Bot hook wall time in the sandbox, by outcome.",
        );
        for (i, outcome) in HOOK_OUTCOMES.iter().enumerate() {
            if self.hook_duration[i].count() > 0 {
                self.hook_duration[i].render(
                    o,
                    "mcp_multiplayer_hook_duration_seconds",
                    &format!("outcome=\"{outcome}\""),
                );
            }
        }
        help(
            o,
            "mcp_multiplayer_sandbox_failures_total",
            "counter",
            "Hooks stopped because a confinement step did not take effect, by step.",
        );
        for (step, v) in self
            .sandbox_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                o,
                "mcp_multiplayer_sandbox_failures_total{{step=\"{step}\"}} {v}"
            );
        }
        help(
            o,
            "mcp_multiplayer_hooks_forked_total",
            "counter",
            "Bot hooks run in a fork template.",
        );
        let _ = writeln!(
            o,
            "mcp_multiplayer_hooks_forked_total {}",
            self.hooks_forked.load(Ordering::Relaxed)
        );
        help(
            o,
            "mcp_multiplayer_hooks_prewarmed_total",
            "counter",
            "Bot hooks run in a pre-warmed sandbox.",
        );
        let _ = writeln!(
            o,
            "mcp_multiplayer_hooks_prewarmed_total {}",
            gauges.hooks_prewarmed
        );
        help(
            o,
            "mcp_multiplayer_sandbox_ready",
            "gauge",
            "1 when the start-up sandbox self-check passed.",
        );
        let _ = writeln!(
            o,
            "mcp_multiplayer_sandbox_ready {}",
            u8::from(gauges.sandbox_ready)
        );
        help(
            o,
            "mcp_multiplayer_rate_limited_total",
            "counter",
            "Tool calls refused by a quota or rate limit, by limit.",
        );
        for (i, limit) in LIMITS.iter().enumerate() {
            let v = self.rate_limited[i].load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "mcp_multiplayer_rate_limited_total{{limit=\"{limit}\"}} {v}"
            );
        }
        help(
            o,
            "mcp_multiplayer_sync_waiting",
            "gauge",
            "sync_messages calls parked waiting for a message.",
        );
        let _ = writeln!(o, "mcp_multiplayer_sync_waiting {}", gauges.sync_waiting);
        help(
            o,
            "mcp_multiplayer_page_streams",
            "gauge",
            "Channel pages' event streams open.",
        );
        let _ = writeln!(o, "mcp_multiplayer_page_streams {}", gauges.page_streams);
        help(
            o,
            "mcp_multiplayer_db_commit_batch_size",
            "histogram",
            "Writes per committed transaction (group commit).",
        );
        self.commit_batch
            .render(o, "mcp_multiplayer_db_commit_batch_size", "");
        help(
            o,
            "mcp_multiplayer_db_commit_duration_seconds",
            "histogram",
            "Time of one batch from BEGIN to COMMIT's return (fsync included).",
        );
        self.commit_latency
            .render(o, "mcp_multiplayer_db_commit_duration_seconds", "");
        help(
            o,
            "mcp_multiplayer_db_commit_failures_total",
            "counter",
            "Batches whose BEGIN or COMMIT failed (disk full, read-only database).",
        );
        let _ = writeln!(
            o,
            "mcp_multiplayer_db_commit_failures_total {}",
            self.commit_failures.load(Ordering::Relaxed)
        );
        help(
            o,
            "mcp_multiplayer_connections_open",
            "gauge",
            "Open HTTP connections.",
        );
        let _ = writeln!(
            o,
            "mcp_multiplayer_connections_open {}",
            self.connections_open.load(Ordering::Relaxed)
        );
        help(
            o,
            "mcp_multiplayer_connections_accepted_total",
            "counter",
            "HTTP connections accepted.",
        );
        let _ = writeln!(
            o,
            "mcp_multiplayer_connections_accepted_total {}",
            self.connections_accepted.load(Ordering::Relaxed)
        );
        help(
            o,
            "mcp_multiplayer_connections_closed_total",
            "counter",
            "Connections the server closed itself, by reason.",
        );
        for (i, why) in CONN_CLOSES.iter().enumerate() {
            let v = self.conn_closed[i].load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "mcp_multiplayer_connections_closed_total{{reason=\"{why}\"}} {v}"
            );
        }
        help(
            o,
            "mcp_multiplayer_sessions_open",
            "gauge",
            "Open MCP sessions.",
        );
        let _ = writeln!(
            o,
            "mcp_multiplayer_sessions_open {}",
            self.sessions_open.load(Ordering::Relaxed)
        );
        help(
            o,
            "mcp_multiplayer_sessions_asleep",
            "gauge",
            "Open MCP sessions asleep: idle, holding no tasks or buffers until their next request.",
        );
        let _ = writeln!(
            o,
            "mcp_multiplayer_sessions_asleep {}",
            self.sessions_asleep.load(Ordering::Relaxed)
        );
        help(
            o,
            "mcp_multiplayer_sessions_closed_total",
            "counter",
            "MCP sessions the server closed, by reason.",
        );
        let _ = writeln!(
            o,
            "mcp_multiplayer_sessions_closed_total{{reason=\"idle\"}} {}",
            self.sessions_expired.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            o,
            "mcp_multiplayer_sessions_closed_total{{reason=\"per_principal_cap\"}} {}",
            self.sessions_displaced.load(Ordering::Relaxed)
        );
        help(
            o,
            "mcp_multiplayer_sessions_foreign_total",
            "counter",
            "Requests refused (404) for a session id another principal holds.",
        );
        let _ = writeln!(
            o,
            "mcp_multiplayer_sessions_foreign_total {}",
            self.sessions_foreign.load(Ordering::Relaxed)
        );
        help(
            o,
            "mcp_multiplayer_sync_direct_total",
            "counter",
            "sync_messages calls answered by the direct long-poll path (also counted in tool_calls_total).",
        );
        let _ = writeln!(
            o,
            "mcp_multiplayer_sync_direct_total {}",
            self.sync_direct.load(Ordering::Relaxed)
        );
        help(
            o,
            "mcp_multiplayer_posts_total",
            "counter",
            "User messages posted.",
        );
        let _ = writeln!(
            o,
            "mcp_multiplayer_posts_total {}",
            self.posts.load(Ordering::Relaxed)
        );
        help(
            o,
            "mcp_multiplayer_auth_failures_total",
            "counter",
            "Requests refused for a missing or invalid token.",
        );
        let _ = writeln!(
            o,
            "mcp_multiplayer_auth_failures_total {}",
            self.auth_failures.load(Ordering::Relaxed)
        );
        help(
            o,
            "mcp_multiplayer_log_lines_dropped_total",
            "counter",
            "Log lines dropped because stderr was not being read.",
        );
        let _ = writeln!(
            o,
            "mcp_multiplayer_log_lines_dropped_total {}",
            crate::logging::dropped_lines()
        );
        out
    }
}

/// Values read at scrape time from their owners.
pub struct Gauges {
    pub schema_version: i64,
    pub uptime_secs: u64,
    pub sync_waiting: i64,
    pub sandbox_ready: bool,
    /// Channel pages' event streams open now.
    pub page_streams: usize,
    /// Hooks run in a pre-warmed sandbox (a counter its owner keeps).
    pub hooks_prewarmed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_render_with_their_labels_and_cumulative_buckets() {
        let m = Metrics::default();
        m.http_request(route_of("/mcp"), 200, Duration::from_millis(3));
        m.http_request(route_of("/mcp"), 200, Duration::from_millis(40));
        m.http_request(
            route_of("/.well-known/oauth-authorization-server"),
            418,
            Duration::ZERO,
        );
        m.tool_call("post_message", "RATE_LIMITED", Duration::from_millis(1));
        m.tool_call("no_such_tool", "protocol_error", Duration::from_millis(1));
        m.hook_run(
            "confinement",
            Some("landlock\n{evil=\"1\"}"),
            Duration::from_millis(5),
        );
        m.rate_limited("posts_per_second");
        m.commit_batch.observe(3.0);
        let text = m.render(&Gauges {
            schema_version: 3,
            uptime_secs: 1,
            sync_waiting: 2,
            page_streams: 3,
            sandbox_ready: true,
            hooks_prewarmed: 4,
        });
        assert!(
            text.contains("mcp_multiplayer_hooks_prewarmed_total 4"),
            "{text}"
        );
        assert!(
            text.contains("mcp_multiplayer_http_requests_total{route=\"/mcp\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "mcp_multiplayer_http_requests_total{route=\"/.well-known\",status=\"other\"} 1"
        ));
        assert!(text.contains(
            "mcp_multiplayer_http_request_duration_seconds_bucket{route=\"/mcp\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "mcp_multiplayer_http_request_duration_seconds_bucket{route=\"/mcp\",le=\"0.05\"} 2"
        ));
        assert!(
            text.contains("mcp_multiplayer_http_request_duration_seconds_count{route=\"/mcp\"} 2")
        );
        assert!(text.contains(
            "mcp_multiplayer_tool_calls_total{tool=\"post_message\",outcome=\"RATE_LIMITED\"} 1"
        ));
        assert!(text.contains(
            "mcp_multiplayer_tool_calls_total{tool=\"other\",outcome=\"protocol_error\"} 1"
        ));
        assert!(
            text.contains("mcp_multiplayer_sandbox_failures_total{step=\"landlockevil1\"} 1"),
            "labels stay tame: {text}"
        );
        assert!(text.contains("mcp_multiplayer_rate_limited_total{limit=\"posts_per_second\"} 1"));
        assert!(text.contains("mcp_multiplayer_db_commit_batch_size_bucket{le=\"4\"} 1"));
        assert!(text.contains("mcp_multiplayer_db_commit_batch_size_count 1"));
        assert!(text.contains("mcp_multiplayer_build_info{version=\""));
        assert!(text.contains("mcp_multiplayer_sync_waiting 2"));
        assert!(text.contains("mcp_multiplayer_page_streams 3"));
        // Every line is a comment or `name{labels} value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
