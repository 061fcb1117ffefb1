//! The daemon under hostile load: quotas, connection floods and slow
//! clients, shutdown with calls in flight, secrets and logs, a full disk
//! and a read-only database, memory under large reads.
//!
//! Each test reproduces a way one token or one unauthenticated peer could
//! take the daemon down, against a real `mcp-multiplayer serve`. The quick
//! ones run with the rest of the suite; those that need root (mounts,
//! another uid), lower the process's file limit, or run long are
//! `#[ignore]`d here and run by `tests/steps/70-robustness.sh`:
//! `cargo test -p mcp-multiplayer --test it robustness:: -- --include-ignored`.

mod connections;
mod health;
pub(crate) mod logs;
mod longpoll;
mod memory;
mod quotas;
mod sessions;
mod shutdown;

use crate::util::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// What to start a daemon with.
#[derive(Default, Clone)]
pub struct Opts {
    /// TOML written to `config.toml` in the state directory.
    pub config: String,
    pub env: Vec<(String, String)>,
    /// A command the daemon runs under (`prlimit`, `setpriv`).
    pub prefix: Vec<String>,
    /// What happens to stderr after the "listening" line.
    pub stderr: StderrAfterStart,
    /// `MCP_MULTIPLAYER_LOG` (default `info`).
    pub log: Option<String>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
pub enum StderrAfterStart {
    /// Copied into a log file.
    #[default]
    Logged,
    /// The read end is closed: every later write gets EPIPE.
    Closed,
    /// Kept open and never read: the pipe fills up.
    Unread,
}

/// A daemon started by a robustness test.
pub struct Server {
    pub child: Option<Child>,
    pub base: String,
    pub log: PathBuf,
    /// The unread stderr, kept open ([`StderrAfterStart::Unread`]).
    _held: Option<Box<dyn Read + Send>>,
}

impl Server {
    pub fn start(dir: &Path, opts: &Opts) -> Server {
        Self::try_start(dir, opts).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the daemon; `Err` with what it printed if it exited first.
    pub fn try_start(dir: &Path, opts: &Opts) -> Result<Server, String> {
        let cfg = dir.join("config.toml");
        std::fs::write(&cfg, &opts.config).unwrap();
        let log = dir.join(format!("daemon-{}.log", rand::random::<u32>()));
        let mut cmd = match opts.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(daemon_bin());
                c
            }
            None => Command::new(daemon_bin()),
        };
        cmd.envs(crate::util::db_env(dir))
            .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(dir)
            .arg("--config")
            .arg(&cfg)
            .env("MCP_MULTIPLAYER_LOG", opts.log.as_deref().unwrap_or("info"))
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start daemon");
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let base = loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).unwrap_or(0);
            if n == 0 {
                let _ = child.wait();
                return Err(seen);
            }
            seen.push_str(&line);
            if let Some(rest) = line.trim().strip_prefix("mcp-multiplayer listening on ") {
                break rest.to_string();
            }
        };
        let mut held: Option<Box<dyn Read + Send>> = None;
        match opts.stderr {
            StderrAfterStart::Logged => {
                let log2 = log.clone();
                std::thread::spawn(move || {
                    let mut f = std::fs::File::create(&log2).unwrap();
                    let _ = std::io::Write::write_all(&mut f, seen.as_bytes());
                    let _ = std::io::copy(&mut reader, &mut f);
                });
            }
            StderrAfterStart::Closed => drop(reader),
            StderrAfterStart::Unread => held = Some(Box::new(reader)),
        }
        Ok(Server {
            child: Some(child),
            base,
            log,
            _held: held,
        })
    }

    pub fn url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let (tx, rx) = mpsc::channel();
        let pid = child.id() as i32;
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(limit) {
            Ok(Ok(s)) => Some(s),
            _ => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                None
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A series' value from `/metrics` (first line that starts with `series`).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| {
                let (name, v) = l.rsplit_once(' ')?;
                (name == series).then(|| v.parse().unwrap())
            })
            .unwrap_or(0.0)
    }

    /// Resident memory of the daemon now and at its peak, in bytes.
    pub fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        (kb("VmRSS:"), kb("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One JSON-RPC `tools/call` in `session` (an [`Mcp`] client's), as raw
/// HTTP, so that many can run at once: (status, JSON-RPC response or body).
pub async fn raw_call(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    session: Option<&str>,
    tool: &str,
    args: Value,
) -> Result<(u16, Value), String> {
    let id = rand::random::<u32>() as u64;
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": tool, "arguments": args}});
    let mut r = http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&body);
    if let Some(s) = session {
        r = r.header("mcp-session-id", s);
    }
    let resp = r.send().await.map_err(|e| format!("send: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| format!("body: {e}"))?;
    Ok((
        status,
        parse_response(&text, id).unwrap_or(Value::String(text)),
    ))
}

/// The structured content of a JSON-RPC tool response, and whether it is a
/// tool error.
pub fn tool_result(v: &Value) -> Option<(bool, &Value)> {
    let r = v.get("result")?;
    Some((
        r["isError"].as_bool().unwrap_or(false),
        &r["structuredContent"],
    ))
}

/// A channel with `join_as` alice: (channel id, the invites by slot).
pub async fn channel(c: &mut Mcp, slots: &[&str]) -> (String, Value) {
    let slots: Vec<String> = slots.iter().map(|s| format!("invite:{s}")).collect();
    let v = c
        .ok(
            "create_channel",
            json!({"name": "robust", "slots": slots, "join_as": "alice"}),
        )
        .await;
    (
        v["channel_id"].as_str().unwrap().to_string(),
        v["invites"].clone(),
    )
}

/// Polls `f` until it is true, at most `limit`; for conditions only
/// observable from outside (a gauge in `/metrics`).
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
