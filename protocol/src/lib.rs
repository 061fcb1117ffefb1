//! The job protocol between the daemon, `sandbox-runner` and the harness.
//!
//! The daemon spawns one runner process per bot hook, writes one [`HookJob`] as
//! JSON to the runner's stdin (then closes it), and reads one [`HookOutcome`] as
//! JSON from the runner's stdout. The runner in turn hands the harness its part
//! of the job and reads the hook's outcome from the interpreter's fd 3.
//!
//! This crate owns the whole contract: the types, the limits, the exit codes,
//! the protocol version, the one check of an outcome ([`Limits::check`])
//! that the runner applies to fd 3 and the daemon to the runner's output, and
//! the generator that makes a hook deterministic ([`determinism`]). It
//! depends only on serde and sha2, so the daemon links none of the runner's
//! Linux code.
//!
//! Everything the runner needs arrives in the job: the runner reads no config
//! file and no environment, which keeps it stateless and easy to test.
//!
//! # Exit codes
//! The runner's exit code tells the daemon what happened even when stdout could
//! not be parsed (see [`exit`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;

mod check;
pub mod determinism;
mod outcome_de;

pub use check::{
    MAX_ERROR_MESSAGE_CHARS, MAX_KIND_CHARS, MAX_TRACEBACK_CHARS, Origin, RESERVED_KINDS,
    Violation, canonical_size, check_kind, check_recipients,
};
pub use determinism::{Entropy, Timestamp};

/// Version of this protocol, which the daemon puts in every job.
///
/// Version 2 added the optional fields [`HookJob::entropy`] and
/// [`HookJob::now`]. A version-2 job without them is run exactly as a
/// version-1 job was, so the runner still accepts version 1
/// ([`OLDEST_PROTOCOL_VERSION`]); the number changed so that a runner older
/// than those fields refuses a job carrying them instead of silently running
/// the hook on real randomness and the real clock.
pub const PROTOCOL_VERSION: u32 = 2;

/// The oldest job version the runner still accepts (see [`PROTOCOL_VERSION`]).
pub const OLDEST_PROTOCOL_VERSION: u32 = 1;

/// Largest job the runner accepts on stdin.
pub const MAX_JOB_BYTES: usize = 4 * 1024 * 1024;

/// Largest result the daemon reads from the runner's stdout (1 MiB), and the
/// default of [`Limits::max_output_bytes`].
pub const MAX_RESULT_BYTES: usize = 1024 * 1024;

/// Documented exit codes of the `sandbox-runner` binary.
pub mod exit {
    /// The hook ran; stdout holds a [`super::HookOutcome::Ok`].
    pub const OK: i32 = 0;
    /// The hook failed in a way the bot caused (syntax, policy, exception,
    /// limits); stdout holds a [`super::HookOutcome::Error`].
    pub const HOOK_FAILED: i32 = 1;
    /// The job on stdin was malformed or too large.
    pub const BAD_JOB: i32 = 2;
    /// A confinement step did not take effect; the bot never ran.
    pub const CONFINEMENT_FAILED: i32 = 3;
    /// The hook exceeded its CPU or wall time.
    pub const TIMEOUT: i32 = 4;
    /// The hook exceeded its memory limit.
    pub const MEMORY: i32 = 5;
    /// The hook wrote more output than allowed.
    pub const OUTPUT_OVERRUN: i32 = 6;
    /// An internal runner error (a bug): the bot's result is unknown.
    pub const INTERNAL: i32 = 70;
}

/// One bot hook to run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HookJob {
    /// [`PROTOCOL_VERSION`] (or an older version down to
    /// [`OLDEST_PROTOCOL_VERSION`]); see [`HookJob::version_problem`].
    pub version: u32,
    /// The bot's exact source and parameters.
    pub bot: BotSpec,
    /// Which hook to call and its argument.
    pub hook: Hook,
    /// The channel as the bot sees it.
    pub context: HookContext,
    /// The bot's state as the last successful hook left it (a JSON object).
    pub state: Value,
    /// Resource limits for this hook.
    pub limits: Limits,
    /// Network permission.
    pub network: NetworkPolicy,
    /// Where the interpreter and harness live; set by the daemon's config.
    pub runtime: Runtime,
    /// The hook's own secret seed. When present, every source of randomness
    /// the bot can reach draws from it and the interpreter's string hashes
    /// are seeded from it, or from `hash_seed` when set (see
    /// [`determinism`]), so the same job gives the same outcome. Absent (the default): the OS's randomness, as before.
    /// Ignored by [`Hook::Inspect`], which runs no bot code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy: Option<Entropy>,
    /// The triggering message's `ts`. When present, the wall clock the bot
    /// reads (`time.time()`, `datetime.now()`, ...) stands still at it; the
    /// clocks that measure durations stay real (see [`determinism`]).
    /// Absent (the default): the real clock, as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<Timestamp>,
    /// The interpreter's hash seed (`PYTHONHASHSEED`), when it is not the
    /// one `entropy` gives: the daemon sets it per bot, to
    /// [`Entropy::python_hash_seed`] of the bot's seed, so that every hook
    /// of one bot starts an interpreter seeded alike and a pre-warmed
    /// sandbox can serve it. Absent (the default): derived from `entropy`
    /// when the job has it, else the interpreter's own random seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_seed: Option<u32>,
}

impl HookJob {
    /// The hash seed the interpreter must start with: `hash_seed`, else the
    /// one `entropy` gives, else none (the interpreter's own).
    pub fn python_hash_seed(&self) -> Option<u32> {
        self.hash_seed
            .or_else(|| self.entropy.as_ref().map(Entropy::python_hash_seed))
    }

    /// The job's JSON with `bot.compiled` set to `compiled`: the bytes
    /// `serde_json::to_vec` gives for a copy of the job with that field
    /// set, without copying the job (its source, state and bytecode).
    ///
    /// # Errors
    /// As `serde_json::to_vec` (a state or parameter that JSON cannot hold).
    pub fn to_json_with_compiled(
        &self,
        compiled: Option<&CompiledBot>,
    ) -> serde_json::Result<Vec<u8>> {
        let b = &self.bot;
        serde_json::to_vec(&JobWire {
            version: self.version,
            bot: BotWire {
                name: &b.name,
                source: &b.source,
                params: &b.params,
                compiled,
            },
            hook: &self.hook,
            context: &self.context,
            state: &self.state,
            limits: &self.limits,
            network: &self.network,
            runtime: &self.runtime,
            entropy: self.entropy.as_ref(),
            now: self.now.as_ref(),
            hash_seed: self.hash_seed,
        })
    }

    /// Why the runner must refuse this job's version, or `None`.
    ///
    /// A job is of a version from [`OLDEST_PROTOCOL_VERSION`] to
    /// [`PROTOCOL_VERSION`]; `entropy`, `now` and `hash_seed` need version
    /// 2, since a runner that predates them would ignore them.
    pub fn version_problem(&self) -> Option<String> {
        if !(OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&self.version) {
            return Some(format!(
                "job version {} (this runner speaks {OLDEST_PROTOCOL_VERSION} to {PROTOCOL_VERSION})",
                self.version
            ));
        }
        if self.version < 2
            && (self.entropy.is_some() || self.now.is_some() || self.hash_seed.is_some())
        {
            return Some(format!(
                "a job of version {} cannot carry entropy, now or hash_seed (they need version 2)",
                self.version
            ));
        }
        None
    }
}

/// [`HookJob`] as it is written, borrowed: the same fields, in the same
/// order, with the same attributes (`to_json_with_compiled_is_to_vec_of_the_job_with_it`
/// checks the bytes).
#[derive(Serialize)]
struct JobWire<'a> {
    version: u32,
    bot: BotWire<'a>,
    hook: &'a Hook,
    context: &'a HookContext,
    state: &'a Value,
    limits: &'a Limits,
    network: &'a NetworkPolicy,
    runtime: &'a Runtime,
    #[serde(skip_serializing_if = "Option::is_none")]
    entropy: Option<&'a Entropy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    now: Option<&'a Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash_seed: Option<u32>,
}

/// [`BotSpec`] as it is written, borrowed.
#[derive(Serialize)]
struct BotWire<'a> {
    name: &'a str,
    source: &'a str,
    params: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    compiled: Option<&'a CompiledBot>,
}

/// A bot's source and the parameters the channel creator gave it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BotSpec {
    /// Display name (from the manifest or the class name).
    pub name: String,
    /// The exact source bytes whose SHA-256 the channel announced.
    pub source: String,
    /// `bot_params` from `create_channel`/`attach_bot` (a JSON object).
    #[serde(default)]
    pub params: Value,
    /// The language layer's verdict and bytecode for exactly this source, as
    /// the `inspect` hook produced them at attach (see [`CompiledBot`]).
    /// With it the harness skips the check and the compile after verifying
    /// that it belongs to this source; absent, it checks and compiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiled: Option<CompiledBot>,
}

/// A bot source checked and compiled once, at attach, by the harness's
/// `inspect` hook (which runs no bot code), for later hooks of the same
/// source to reuse.
///
/// The daemon keeps it, keyed by the source's hash, and puts it in each
/// hook's [`BotSpec`]; it never comes from a hook that ran bot code. The
/// harness uses it only when every binding matches what it computes itself
/// before the job's bot runs: the SHA-256 of the job's source, the network
/// mode the check ran in, the digest of the checker's own files, and the
/// interpreter's bytecode tag. Otherwise it checks and compiles the source
/// as if the field were absent. The contents are the harness's business
/// (bots/harness/PROTOCOL.md, "Checked once"); the daemon only carries them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompiledBot {
    /// Lowercase hex SHA-256 of the exact source bytes.
    pub source_sha256: String,
    /// Whether the check ran for a network bot (the rules differ).
    pub network: bool,
    /// Digest of the checker's files and the interpreter's bytecode tag.
    pub checker: String,
    /// The hash seed of the interpreter that compiled it (the inspection's
    /// `hash_seed`); absent: a random one. The bytecode's set constants
    /// iterate in its order, so the harness uses it only under the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_seed: Option<u32>,
    /// The bot class the harness selected.
    pub class_name: String,
    /// The checked, rewritten module's bytecode (`marshal`, base64).
    pub code: String,
}

/// What a pre-warmed runner (`sandbox-runner --prewarm`) is started with:
/// everything that decides its confinement, none of the hook. It confines
/// itself and starts the interpreter on the harness from this alone, then
/// waits for one [`HookJob`] whose `limits`, `network` and `runtime` are
/// exactly these and whose interpreter hash seed
/// ([`HookJob::python_hash_seed`]) is `hash_seed`: the seed is fixed when
/// the interpreter starts, before the job is known.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WarmSpec {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    pub limits: Limits,
    pub network: NetworkPolicy,
    pub runtime: Runtime,
    /// How long the runner waits for its job once it is ready; then it
    /// tears the sandbox down and exits without running anything.
    pub idle_ms: u64,
    /// The interpreter's hash seed (`PYTHONHASHSEED`); absent: the
    /// interpreter's own, for jobs without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_seed: Option<u32>,
    /// A fork template retires after this many hooks, if that is fewer than
    /// the runner's own limit (20,000); absent: that limit. The daemon
    /// leaves it out; it exists so that retirement can be exercised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_after_hooks: Option<u32>,
}

impl WarmSpec {
    /// The spec a pre-warmed runner for `job` is started with.
    pub fn of(job: &HookJob, idle_ms: u64) -> WarmSpec {
        WarmSpec {
            version: PROTOCOL_VERSION,
            limits: job.limits.clone(),
            network: job.network.clone(),
            runtime: job.runtime.clone(),
            idle_ms,
            hash_seed: job.python_hash_seed(),
            retire_after_hooks: None,
        }
    }

    /// Why a runner started with this spec must refuse `job`, or `None`.
    pub fn mismatch(&self, job: &HookJob) -> Option<String> {
        if let Some(problem) = job.version_problem() {
            return Some(problem);
        }
        if job.python_hash_seed() != self.hash_seed {
            return Some(
                "the job's hash_seed differs from the one this sandbox's interpreter was \
                 started with"
                    .into(),
            );
        }
        for (what, differs) in [
            ("limits", job.limits != self.limits),
            ("network", job.network != self.network),
            ("runtime", job.runtime != self.runtime),
        ] {
            if differs {
                return Some(format!(
                    "the job's {what} differ from those this sandbox was pre-warmed with"
                ));
            }
        }
        None
    }
}

/// The hook to call. Serialized as `{"name": "on_message", "message": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Hook {
    /// Not a bot method: the harness runs the language layer over the source
    /// and extracts the manifest (module-level `MANIFEST` literal, bot class
    /// name, hooks defined) without executing any bot code. The result is
    /// [`HookOutcome::Ok`] with `manifest` set and no posts.
    Inspect,
    /// Called once when the bot is attached.
    OnInit,
    /// Called when a seat fills; `player` is the slot label.
    OnJoin { player: String },
    /// Called for each user message the bot may see.
    OnMessage { message: Value },
}

impl Hook {
    /// The Python method name.
    pub fn method(&self) -> &'static str {
        match self {
            Hook::Inspect => "inspect",
            Hook::OnInit => "on_init",
            Hook::OnJoin { .. } => "on_join",
            Hook::OnMessage { .. } => "on_message",
        }
    }
}

/// What `ctx` exposes about the channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HookContext {
    pub channel_id: String,
    /// The bot's slot id, e.g. `bot:referee`.
    pub bot_id: String,
    /// Every non-bot slot of the channel, filled or not.
    pub players: Vec<Player>,
}

/// One seat as a bot sees it. No secret is ever part of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Player {
    /// Slot label, e.g. `alice`.
    pub label: String,
    /// Slot id, e.g. `invite:alice`.
    pub slot: String,
    /// Whether a principal holds this seat.
    pub filled: bool,
}

/// Per-hook limits. The defaults are the daemon's defaults and the base of
/// the table of edge cases (`protocol/tests/outcome-cases.json`).
///
/// The last four are the protocol's: the runner passes them to the harness,
/// and [`Limits::check`] holds every outcome to them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    /// Wall-clock budget for the whole hook, enforced by the runner (and by the
    /// daemon, which kills the runner's process group a little later).
    pub wall_ms: u64,
    /// RLIMIT_CPU soft limit in seconds (hard = soft + 1).
    pub cpu_secs: u64,
    /// RLIMIT_AS in bytes.
    pub address_space_bytes: u64,
    /// Size of the workspace tmpfs in bytes.
    pub workspace_bytes: u64,
    /// Inodes of the workspace tmpfs.
    pub workspace_inodes: u64,
    /// RLIMIT_FSIZE in bytes.
    pub file_size_bytes: u64,
    /// RLIMIT_NOFILE.
    pub open_files: u64,
    /// Threads the hook may have (RLIMIT_NPROC in root mode, counted per uid).
    pub threads: u64,
    /// Posts one hook may make.
    pub max_posts: usize,
    /// Size of one post's body, measured by [`canonical_size`].
    pub max_post_bytes: usize,
    /// Size of the state, measured by [`canonical_size`].
    pub max_state_bytes: usize,
    /// Bytes of result plus captured prints the runner accepts from the hook.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall_ms: 5_000,
            cpu_secs: 5,
            address_space_bytes: 1024 * 1024 * 1024,
            workspace_bytes: 100 * 1024 * 1024,
            workspace_inodes: 4096,
            file_size_bytes: 32 * 1024 * 1024,
            open_files: 64,
            threads: 16,
            max_posts: 20,
            max_post_bytes: 64 * 1024,
            max_state_bytes: 256 * 1024,
            max_output_bytes: MAX_RESULT_BYTES,
        }
    }
}

/// Whether and where the hook may connect.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NetworkPolicy {
    /// `allow_network` of the channel. Without it the hook gets a fresh,
    /// empty network namespace.
    pub allowed: bool,
    /// Exceptions to the refused ranges (CIDR strings), from the operator's
    /// config; used by tests to reach a test host in a private range.
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    /// Further refused addresses (CIDR strings): the daemon's own addresses.
    #[serde(default)]
    pub deny_cidrs: Vec<String>,
}

/// Paths the runner binds into the sandbox and execs. Trusted: they come from
/// the operator's config, never from a bot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Runtime {
    /// Absolute path of a real Python 3 binary (never a shim script).
    pub python: PathBuf,
    /// Interpreter flags, `-I -S -B` by default. For a job with a hash seed
    /// ([`HookJob::python_hash_seed`]) the runner drops `-E` and replaces
    /// `-I` by `-s -P`, so that the interpreter reads the hash seed the
    /// runner puts in its (otherwise empty) environment.
    pub python_args: Vec<String>,
    /// Directory holding `harness.py` (bound read-only).
    pub harness_dir: PathBuf,
    /// Extra read-only directories put on `sys.path` (e.g. the one holding
    /// `requests` for network bots).
    #[serde(default)]
    pub python_path: Vec<PathBuf>,
    /// Directories bound read-only at their own path before anything else,
    /// for interpreters whose loader and libraries live outside the usual
    /// places: on NixOS, `/nix/store`. Empty on a conventional system.
    #[serde(default)]
    pub system_dirs: Vec<PathBuf>,
    /// Uid and gid the hook runs as when the runner starts as root.
    pub sandbox_uid: u32,
    pub sandbox_gid: u32,
}

/// A message the bot posted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Post {
    /// The bot's own message type (`ctx.post(kind, ...)`), e.g. `commit`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Any JSON value.
    pub body: Value,
    /// Slot labels of the recipients of a private post.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<String>>,
}

/// What the runner prints on stdout.
///
/// Read as an internally tagged enum (`status`); see [`outcome_de`] for how.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HookOutcome {
    /// The hook returned.
    Ok {
        posts: Vec<Post>,
        /// The new state (a JSON object).
        state: Value,
        /// What the bot printed, trimmed; for `bot run`, never shown to players.
        #[serde(default)]
        logs: String,
        /// Time spent, for diagnostics.
        #[serde(default)]
        timings: Timings,
        /// Only for [`Hook::Inspect`]: `{name, version, summary, hooks, params,
        /// class_name}`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        manifest: Option<Value>,
    },
    /// The hook failed; nothing it did takes effect.
    Error { error: HookError },
}

/// Where the time went.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Timings {
    /// From runner start to the interpreter's exec.
    pub confine_us: u64,
    /// From exec to the result.
    pub hook_us: u64,
}

/// Why a hook failed.
///
/// The harness reports the first six kinds on fd 3. `Timeout`, `Confinement`
/// and `Internal` come only from the runner or the daemon: on fd 3 they are
/// forged, and [`Limits::check`] refuses them there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HookError {
    /// The source does not parse.
    Syntax { line: Option<u32>, message: String },
    /// The language layer refused the source (`Import of 'os' is not
    /// allowed`), or seccomp killed the hook.
    Policy { line: Option<u32>, message: String },
    /// The bot raised; the traceback is trimmed to the bot's own frames.
    Exception { message: String, traceback: String },
    /// Memory limit hit.
    Memory { message: String },
    /// Too much output.
    OutputOverrun { message: String },
    /// The outcome broke a limit or a rule of the protocol
    /// ([`Limits::check`]), at `ctx.post` or afterwards.
    Limit { message: String },
    /// CPU or wall time exhausted (runner or daemon only).
    Timeout { message: String },
    /// A confinement step did not take effect; the bot did not run (runner
    /// or daemon only).
    Confinement { step: String, message: String },
    /// The runner or harness misbehaved: a bad job, no or an unreadable
    /// result (runner or daemon only).
    Internal {
        message: String,
        /// The runner vouches that nothing of the bot ran for this job (a
        /// fork template refused it, or ended, or lost the child meant for
        /// it before the child read it), so the hook may run again, fresh
        /// ([`HookError::nothing_ran`]). Absent: false.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        nothing_ran: bool,
    },
}

impl HookError {
    /// An `Internal` error: something went wrong around the bot.
    pub fn internal(message: impl Into<String>) -> HookError {
        HookError::Internal {
            message: message.into(),
            nothing_ran: false,
        }
    }

    /// An `Internal` error for a job of which nothing of the bot ran: the
    /// daemon runs such a hook again in a fresh sandbox. Its message says
    /// so too, for people reading logs.
    pub fn nothing_ran(message: impl std::fmt::Display) -> HookError {
        HookError::Internal {
            message: format!("{message}; nothing ran"),
            nothing_ran: true,
        }
    }

    /// Whether the runner vouched that nothing of the bot ran.
    pub fn is_nothing_ran(&self) -> bool {
        matches!(
            self,
            HookError::Internal {
                nothing_ran: true,
                ..
            }
        )
    }

    /// A one-line reason, safe to show to channel members.
    pub fn short_reason(&self) -> String {
        match self {
            HookError::Syntax { line, message } | HookError::Policy { line, message } => match line
            {
                Some(l) => format!("line {l}: {message}"),
                None => message.clone(),
            },
            HookError::Exception { message, .. } => format!("exception: {message}"),
            HookError::Timeout { message }
            | HookError::Memory { message }
            | HookError::OutputOverrun { message }
            | HookError::Limit { message }
            | HookError::Internal { message, .. } => message.clone(),
            HookError::Confinement { step, .. } => format!("sandbox could not confine ({step})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_ran_is_typed_and_on_the_wire_only_when_true() {
        let plain = serde_json::to_value(HookError::internal("x")).unwrap();
        assert_eq!(
            plain,
            serde_json::json!({"kind": "internal", "message": "x"})
        );
        let e = HookError::nothing_ran("the template ended");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"kind": "internal",
                               "message": "the template ended; nothing ran",
                               "nothing_ran": true})
        );
        assert!(
            serde_json::from_value::<HookError>(v)
                .unwrap()
                .is_nothing_ran()
        );
        // The words alone vouch for nothing.
        let worded = serde_json::json!({"kind": "internal", "message": "x; nothing ran"});
        assert!(
            !serde_json::from_value::<HookError>(worded)
                .unwrap()
                .is_nothing_ran()
        );
        assert!(
            !HookError::Limit {
                message: "nothing ran".into()
            }
            .is_nothing_ran()
        );
    }

    #[test]
    fn hook_wire_shape_is_tagged_by_name() {
        let v = serde_json::to_value(Hook::OnJoin {
            player: "bob".into(),
        })
        .unwrap();
        assert_eq!(v, serde_json::json!({"name": "on_join", "player": "bob"}));
        let v = serde_json::to_value(Hook::OnInit).unwrap();
        assert_eq!(v, serde_json::json!({"name": "on_init"}));
    }

    fn job_json() -> Value {
        serde_json::json!({
            "version": 1,
            "bot": {"name": "b", "source": "", "params": {}},
            "hook": {"name": "on_init"},
            "context": {"channel_id": "c", "bot_id": "bot:b", "players": []},
            "state": {},
            "limits": Limits::default(),
            "network": {"allowed": false},
            "runtime": {"python": "/usr/bin/python3", "python_args": [], "harness_dir": "/h",
                        "sandbox_uid": 1, "sandbox_gid": 1},
        })
    }

    #[test]
    fn to_json_with_compiled_is_to_vec_of_the_job_with_it() {
        let base: HookJob = serde_json::from_value(job_json()).unwrap();
        let compiled = CompiledBot {
            source_sha256: "ab".repeat(32),
            network: false,
            checker: "c\"k".into(),
            hash_seed: Some(7),
            class_name: "Bot".into(),
            code: "QUJD".into(),
        };
        let mut full = base.clone();
        full.version = PROTOCOL_VERSION;
        full.bot.source = "class B:\n    \"x\" \u{e9}\u{1f600}\t\\".into();
        full.bot.params = serde_json::json!({"z": 1, "a": [1.5, null, "s"]});
        full.hook = Hook::OnMessage {
            message: serde_json::json!({"seq": 3, "body": "hi"}),
        };
        full.state = serde_json::json!({"n": 2, "list": [{"k": "v"}]});
        full.context.players.push(Player {
            label: "alice".into(),
            slot: "invite:alice".into(),
            filled: true,
        });
        full.entropy = Some("11".repeat(32).parse().unwrap());
        full.now = Some("2026-11-21T11:31:29.123Z".parse().unwrap());
        full.hash_seed = Some(42);
        full.network.deny_cidrs.push("10.0.0.0/8".into());
        for job in [base, full] {
            for with in [None, Some(&compiled)] {
                for own in [None, Some(compiled.clone())] {
                    let mut job = job.clone();
                    job.bot.compiled = own;
                    let mut expected = job.clone();
                    expected.bot.compiled = with.cloned();
                    assert_eq!(
                        String::from_utf8(job.to_json_with_compiled(with).unwrap()).unwrap(),
                        serde_json::to_string(&expected).unwrap()
                    );
                }
            }
        }
    }

    #[test]
    fn a_job_without_the_determinism_fields_reads_and_writes_as_before() {
        let job: HookJob = serde_json::from_value(job_json()).unwrap();
        assert_eq!((&job.entropy, &job.now), (&None, &None));
        assert_eq!(job.version_problem(), None);
        let v = serde_json::to_value(&job).unwrap();
        assert!(v.get("entropy").is_none() && v.get("now").is_none(), "{v}");
    }

    #[test]
    fn the_determinism_fields_need_version_2_and_versions_outside_1_to_2_are_refused() {
        let mut v = job_json();
        v["entropy"] = serde_json::json!("00".repeat(32));
        v["now"] = serde_json::json!("2026-11-21T11:31:29.123Z");
        let mut job: HookJob = serde_json::from_value(v).unwrap();
        assert!(job.version_problem().unwrap().contains("need version 2"));
        job.version = PROTOCOL_VERSION;
        assert_eq!(job.version_problem(), None);
        let back = serde_json::to_value(&job).unwrap();
        assert_eq!(back["now"], "2026-11-21T11:31:29.123Z");
        assert_eq!(back["entropy"], "00".repeat(32));
        for version in [0, 3] {
            job.version = version;
            assert!(job.version_problem().unwrap().contains("1 to 2"));
        }
    }

    #[test]
    fn a_warm_spec_takes_only_a_job_of_its_own_kind_and_hash_seed() {
        let mut job: HookJob = serde_json::from_value(job_json()).unwrap();
        job.version = PROTOCOL_VERSION;
        let spec = WarmSpec::of(&job, 1000);
        assert_eq!(spec.mismatch(&job), None);
        // Round trip: what the runner reads is what the daemon wrote.
        let back: WarmSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
        // The bot, hook, state and context are the job's own business.
        let mut other = job.clone();
        other.bot.source = "class B: pass".into();
        other.state = serde_json::json!({"n": 1});
        assert_eq!(spec.mismatch(&other), None);
        let mut cases: Vec<(HookJob, &str)> = Vec::new();
        let mut j = job.clone();
        j.limits.wall_ms += 1;
        cases.push((j, "limits"));
        let mut j = job.clone();
        j.network.allowed = true;
        cases.push((j, "network"));
        let mut j = job.clone();
        j.runtime.sandbox_uid += 1;
        cases.push((j, "runtime"));
        let mut j = job.clone();
        j.entropy = Some("00".repeat(32).parse().unwrap());
        cases.push((j, "hash_seed"));
        let mut j = job.clone();
        j.hash_seed = Some(7);
        cases.push((j, "hash_seed"));
        let mut j = job.clone();
        j.version = 9;
        cases.push((j, "version"));
        for (j, why) in cases {
            let m = spec.mismatch(&j).unwrap_or_default();
            assert!(m.contains(why), "{why}: {m:?}");
        }
    }

    #[test]
    fn a_warm_spec_with_a_hash_seed_takes_every_hook_of_the_bot_it_was_warmed_for() {
        let mut job: HookJob = serde_json::from_value(job_json()).unwrap();
        job.version = PROTOCOL_VERSION;
        let bot_seed: Entropy = "11".repeat(32).parse().unwrap();
        job.hash_seed = Some(bot_seed.python_hash_seed());
        job.entropy = Some(Entropy::for_hook(&bot_seed, 1));
        let spec = WarmSpec::of(&job, 1000);
        assert_eq!(spec.hash_seed, Some(bot_seed.python_hash_seed()));
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["hash_seed"], bot_seed.python_hash_seed());
        assert_eq!(serde_json::from_value::<WarmSpec>(v).unwrap(), spec);
        // Another hook of the same bot: other entropy, the same hash seed.
        let mut later = job.clone();
        later.entropy = Some(Entropy::for_hook(&bot_seed, 9));
        assert_eq!(spec.mismatch(&later), None);
        // Another bot, or a job whose seed comes from its entropy.
        let mut other = job.clone();
        other.hash_seed = Some(bot_seed.python_hash_seed() ^ 1);
        assert!(spec.mismatch(&other).unwrap().contains("hash_seed"));
        let mut legacy = job.clone();
        legacy.hash_seed = None;
        assert!(spec.mismatch(&legacy).unwrap().contains("hash_seed"));
        // A job whose seed comes from its entropy still gets that seed.
        assert_eq!(
            legacy.python_hash_seed(),
            Some(Entropy::for_hook(&bot_seed, 1).python_hash_seed())
        );
        // The wire form: present only when set.
        let v = serde_json::to_value(&job).unwrap();
        assert_eq!(v["hash_seed"], bot_seed.python_hash_seed());
        let v = serde_json::to_value(&legacy).unwrap();
        assert!(v.get("hash_seed").is_none(), "{v}");
        let mut old = legacy;
        old.version = 1;
        old.entropy = None;
        old.hash_seed = Some(3);
        assert!(old.version_problem().unwrap().contains("need version 2"));
    }

    #[test]
    fn outcome_wire_shape_is_tagged_by_status() {
        let o = HookOutcome::Error {
            error: HookError::Timeout {
                message: "wall time 5000 ms exceeded".into(),
            },
        };
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["status"], "error");
        assert_eq!(v["error"]["kind"], "timeout");
        let back: HookOutcome = serde_json::from_value(v).unwrap();
        assert_eq!(back, o);
    }
}
