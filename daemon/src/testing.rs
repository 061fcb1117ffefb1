//! Helpers for the library's unit tests: a real SQLite store in a temporary
//! directory, principals with real tokens, and a scripted [`HookRunner`] that
//! stands in for the sandbox (the layer below the dispatcher).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::bots::runner::{BoxFuture, HookRunner};
use crate::config::BotsConfig;
use crate::model::{Manifest, Principal};
use crate::store::{PreparedBot, Store, principals};
use crate::transcript;
use hook_protocol::{Hook, HookJob, HookOutcome, Post, Timings};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A store on a fresh file, removed (after the writer stopped) on drop; or,
/// when `MCPMP_TEST_POSTGRES` holds a PostgreSQL URL, on a fresh schema of
/// that database (the same tests, both backends: `tests/steps/50-postgres.sh`).
pub(crate) struct TempStore {
    pub dir: PathBuf,
    pub store: Store,
    /// The PostgreSQL connection settings, with the schema as search path.
    pg: Option<postgres::Config>,
}

/// A fresh schema in the test database `MCPMP_TEST_POSTGRES` names, and the
/// settings that connect to it.
pub(crate) fn postgres_schema() -> Option<postgres::Config> {
    use std::str::FromStr;
    let url = std::env::var("MCPMP_TEST_POSTGRES").ok()?;
    let mut cfg =
        postgres::Config::from_str(&url).expect("MCPMP_TEST_POSTGRES is a PostgreSQL URL");
    let schema = format!("t_{:016x}", rand::random::<u64>());
    crate::store::db::off_runtime(|| {
        let mut c = cfg
            .connect(postgres::NoTls)
            .expect("connect to MCPMP_TEST_POSTGRES");
        c.batch_execute(&format!("CREATE SCHEMA {schema}")).unwrap();
    });
    cfg.options(&format!("-c search_path={schema}"));
    Some(cfg)
}

impl TempStore {
    pub fn new() -> TempStore {
        let dir = std::env::temp_dir().join(format!(
            "mcpmp-unit-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let pg = postgres_schema();
        let store = match &pg {
            Some(cfg) => Store::open_postgres(cfg, &dir).unwrap(),
            None => Store::open(&dir.join("state.db")).unwrap(),
        };
        TempStore { dir, store, pg }
    }

    /// Another handle on the same database, as a restarted daemon (or a
    /// second daemon, on PostgreSQL) would open it.
    pub fn reopen(&self) -> Store {
        match &self.pg {
            Some(cfg) => Store::open_postgres(cfg, &self.dir).unwrap(),
            None => Store::open(&self.dir.join("state.db")).unwrap(),
        }
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        self.store.close();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CLI principal named `name`, resolved through its real token.
pub(crate) async fn principal(store: &Store, name: &str) -> Principal {
    let token = principals::create_cli_token(store, name).await.unwrap();
    principals::authenticate(store, &token, "http://test/mcp")
        .await
        .unwrap()
        .unwrap()
}

/// A bot ready to attach, defining `hooks`.
pub(crate) fn bot(name: &str, hooks: &[&str]) -> PreparedBot {
    let source = format!("class {name}:\n    pass\n");
    let manifest = Manifest {
        name: name.to_string(),
        version: "1".into(),
        summary: String::new(),
        hooks: hooks.iter().map(|h| h.to_string()).collect(),
        params: Map::new(),
        network: false,
    };
    PreparedBot {
        name: name.to_string(),
        preset: None,
        code_hash: transcript::sha256_tagged(source.as_bytes()),
        manifest_hash: transcript::sha256_tagged(transcript::canonical(&manifest).as_bytes()),
        source,
        manifest,
        params: Map::new(),
        network: false,
        seed: crate::bots::seed::draw(),
    }
}

/// A bots configuration whose paths are never used (the runner is scripted).
pub(crate) fn bots_config(max_parallel_hooks: usize) -> BotsConfig {
    BotsConfig {
        runner: PathBuf::from("/nonexistent/sandbox-runner"),
        python: PathBuf::from("/usr/bin/python3"),
        python_args: vec!["-I".into(), "-S".into(), "-B".into()],
        bots_dir: PathBuf::from("/nonexistent/bots"),
        python_path: Vec::new(),
        max_parallel_hooks,
        sandbox_uid: 60000,
        sandbox_gid: 60000,
        network_allow_cidrs: Vec::new(),
        system_dirs: Vec::new(),
        warm_min: 0,
        warm_max: 0,
        warm_idle_secs: 300,
        fork_templates: false,
    }
}

/// A successful outcome.
pub(crate) fn ok(posts: Vec<Post>, state: Value) -> HookOutcome {
    HookOutcome::Ok {
        posts,
        state,
        logs: String::new(),
        timings: Timings::default(),
        manifest: None,
    }
}

/// A public post.
pub(crate) fn post(kind: &str, body: Value) -> Post {
    Post {
        kind: kind.to_string(),
        body,
        to: None,
    }
}

/// One hook the scripted runner was asked to run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    pub channel: String,
    pub bot: String,
    /// `on_init`, `on_join:alice`, `on_message:<body>`.
    pub hook: String,
    pub state: Value,
    pub uid: u32,
}

impl Call {
    fn of(job: &HookJob) -> Call {
        let hook = match &job.hook {
            Hook::OnJoin { player } => format!("on_join:{player}"),
            Hook::OnMessage { message } => format!("on_message:{}", message["body"]),
            other => other.method().to_string(),
        };
        Call {
            channel: job.context.channel_id.clone(),
            bot: job.context.bot_id.clone(),
            hook,
            state: job.state.clone(),
            uid: job.runtime.sandbox_uid,
        }
    }
}

type Script = dyn Fn(HookJob) -> BoxFuture<'static, HookOutcome> + Send + Sync;

/// A [`HookRunner`] that records every job and answers from a script.
pub(crate) struct Scripted {
    script: Box<Script>,
    calls: Mutex<Vec<Call>>,
    in_flight: Mutex<HashMap<String, usize>>,
    /// Most hooks of one channel seen running at once.
    pub max_per_channel: Mutex<usize>,
}

impl Scripted {
    /// Answers every hook at once with `f(job)`.
    pub fn answering(f: impl Fn(&HookJob) -> HookOutcome + Send + Sync + 'static) -> Arc<Scripted> {
        Self::with(move |job| {
            let out = f(&job);
            Box::pin(async move { out })
        })
    }

    /// Answers with the future `f(job)` returns.
    pub fn with(
        f: impl Fn(HookJob) -> BoxFuture<'static, HookOutcome> + Send + Sync + 'static,
    ) -> Arc<Scripted> {
        Arc::new(Scripted {
            script: Box::new(f),
            calls: Mutex::default(),
            in_flight: Mutex::default(),
            max_per_channel: Mutex::new(0),
        })
    }

    /// Every hook run so far, in the order they started.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The hooks run so far in one channel, as `on_init`, `on_join:alice`...
    pub fn hooks_in(&self, channel: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.channel == channel)
            .map(|c| c.hook)
            .collect()
    }
}

impl HookRunner for Scripted {
    fn run<'a>(&'a self, job: &'a HookJob) -> BoxFuture<'a, HookOutcome> {
        Box::pin(async move {
            let channel = job.context.channel_id.clone();
            self.calls.lock().unwrap().push(Call::of(job));
            {
                let mut f = self.in_flight.lock().unwrap();
                let n = f.entry(channel.clone()).or_default();
                *n += 1;
                let mut max = self.max_per_channel.lock().unwrap();
                *max = (*max).max(*n);
            }
            let out = (self.script)(job.clone()).await;
            *self.in_flight.lock().unwrap().entry(channel).or_default() -= 1;
            out
        })
    }
}

/// An echo bot's answer: one `echo` post with the message body, and a
/// counter in the state.
pub(crate) fn echo(job: &HookJob) -> HookOutcome {
    let seen = job.state["seen"].as_i64().unwrap_or(0) + 1;
    match &job.hook {
        Hook::OnMessage { message } => ok(
            vec![post("echo", json!({"body": message["body"]}))],
            json!({"seen": seen}),
        ),
        _ => ok(Vec::new(), json!({"seen": seen})),
    }
}
