//! Shared helpers: a real daemon process and a small MCP client.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The daemon binary cargo built for these tests.
/// The daemon binary: the one cargo built, or `BENCH_DAEMON` (the benches
/// compare release binaries of other commits, with their runner beside them).
pub fn daemon_bin() -> PathBuf {
    std::env::var_os("BENCH_DAEMON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mcp-multiplayer")))
}

/// Whether the suite runs against PostgreSQL (`MCPMP_TEST_POSTGRES` holds
/// the URL of a test database; `tests/steps/50-postgres.sh` sets it).
pub fn on_postgres() -> bool {
    std::env::var_os("MCPMP_TEST_POSTGRES").is_some()
}

/// The environment that points a daemon (or a CLI command) using
/// `state_dir` at its database: nothing for SQLite (the file in the state
/// directory), or on PostgreSQL the URL of a schema of its own, named after
/// the state directory, so that every command given the same directory finds
/// the same data, as it would find the same file.
pub fn db_env(state_dir: &Path) -> Vec<(String, String)> {
    use sha2::Digest;
    let Ok(url) = std::env::var("MCPMP_TEST_POSTGRES") else {
        return Vec::new();
    };
    let digest = sha2::Sha256::digest(state_dir.as_os_str().as_encoded_bytes());
    let schema = format!("t_{}", hex::encode(&digest[..8]));
    let u = url.clone();
    let s = schema.clone();
    // The synchronous client may not run on the tests' runtime thread.
    std::thread::spawn(move || {
        use std::str::FromStr;
        let mut c = postgres::Config::from_str(&u)
            .unwrap()
            .connect(postgres::NoTls)
            .expect("connect to MCPMP_TEST_POSTGRES");
        c.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
            .unwrap();
    })
    .join()
    .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    vec![(
        "MCP_MULTIPLAYER_DATABASE".into(),
        format!("{url}{sep}options=-c%20search_path%3D{schema}"),
    )]
}

/// The daemon binary, pointed at `state_dir`'s database (see [`db_env`]).
pub fn daemon_cmd(state_dir: &Path) -> Command {
    let mut c = Command::new(daemon_bin());
    c.envs(db_env(state_dir));
    c
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "mcpmp-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running daemon. Killed (SIGKILL) on drop.
pub struct Daemon {
    pub child: Child,
    pub base: String,
    pub state_dir: PathBuf,
    pub stderr_log: PathBuf,
}

impl Daemon {
    /// Starts `serve --listen 127.0.0.1:0 --state-dir DIR EXTRA...` and waits
    /// for its "listening on" line (no sleeps: the line is the signal).
    pub fn start(state_dir: &Path, extra: &[&str]) -> Daemon {
        Daemon::start_env(state_dir, extra, &db_env(state_dir))
    }

    /// [`Daemon::start`] with `env` as its database environment (another
    /// daemon's schema, or `MCP_MULTIPLAYER_DATABASE=sqlite`).
    pub fn start_env(state_dir: &Path, extra: &[&str], env: &[(String, String)]) -> Daemon {
        let log = state_dir.join(format!("daemon-{}.log", rand::random::<u32>()));
        let mut child = Command::new(daemon_bin())
            .envs(env.iter().cloned())
            .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(state_dir)
            .args(extra)
            .env("MCP_MULTIPLAYER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start daemon");
        let stderr = child.stderr.take().unwrap();
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        let mut seen = String::new();
        let base = loop {
            line.clear();
            let n = reader.read_line(&mut line).unwrap();
            assert!(n > 0, "daemon exited before listening:\n{seen}");
            seen.push_str(&line);
            if let Some(rest) = line.trim().strip_prefix("mcp-multiplayer listening on ") {
                break rest.to_string();
            }
        };
        // Keep draining stderr into a file so the daemon never blocks on it.
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(&log2).unwrap();
            let _ = std::io::Write::write_all(&mut f, seen.as_bytes());
            let _ = std::io::copy(&mut reader, &mut f);
        });
        Daemon {
            child,
            base,
            state_dir: state_dir.to_path_buf(),
            stderr_log: log,
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `mcp-multiplayer token create NAME --state-dir DIR`.
pub fn create_token(state_dir: &Path, name: &str) -> String {
    create_token_env(state_dir, name, &db_env(state_dir))
}

/// [`create_token`] with `env` as the database environment.
pub fn create_token_env(state_dir: &Path, name: &str, env: &[(String, String)]) -> String {
    let out = Command::new(daemon_bin())
        .envs(env.iter().cloned())
        .args(["token", "create", name, "--state-dir"])
        .arg(state_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout).unwrap();
    let t = s.trim().to_string();
    assert_eq!(s.lines().count(), 1, "token create prints the token alone");
    t
}

/// A minimal MCP client over Streamable HTTP (protocol 2025-06-18, with a
/// session), enough to call tools.
pub struct Mcp {
    pub http: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
    pub session: Option<String>,
    next_id: u64,
}

impl Mcp {
    pub async fn connect(url: &str, token: Option<&str>) -> Mcp {
        let mut c = Mcp {
            http: reqwest::Client::new(),
            url: url.to_string(),
            token: token.map(str::to_string),
            session: None,
            next_id: 1,
        };
        let init = c
            .rpc(
                "initialize",
                json!({"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "it", "version": "0"}}),
            )
            .await
            .expect("initialize");
        assert!(init.get("result").is_some(), "{init}");
        c.notify("notifications/initialized").await;
        c
    }

    fn request(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(body);
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            r = r.header("mcp-session-id", s);
        }
        r
    }

    async fn notify(&mut self, method: &str) {
        let body = json!({"jsonrpc": "2.0", "method": method});
        let _ = self.request(&body).send().await;
    }

    /// One JSON-RPC request; returns the response object (result or error).
    pub async fn rpc(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = self
            .request(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if let Some(s) = resp.headers().get("mcp-session-id") {
            self.session = Some(s.to_str().unwrap().to_string());
        }
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("HTTP {status}: {text}"));
        }
        parse_response(&text, id).ok_or_else(|| format!("no response with id {id} in: {text}"))
    }

    /// Calls a tool; returns (is_error, structuredContent).
    pub async fn call(&mut self, tool: &str, args: Value) -> Result<(bool, Value), String> {
        let r = self
            .rpc("tools/call", json!({"name": tool, "arguments": args}))
            .await?;
        let res = r
            .get("result")
            .ok_or_else(|| format!("protocol error: {r}"))?;
        Ok((
            res["isError"].as_bool().unwrap_or(false),
            res["structuredContent"].clone(),
        ))
    }

    /// Calls a tool that must succeed.
    pub async fn ok(&mut self, tool: &str, args: Value) -> Value {
        let (err, v) = self.call(tool, args.clone()).await.unwrap();
        assert!(!err, "{tool}({args}) failed: {v}");
        v
    }
}

/// Finds the JSON-RPC response with `id` in a JSON or SSE body.
pub fn parse_response(text: &str, id: u64) -> Option<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return Some(v);
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v["id"].as_u64() == Some(id))
}
