//! What runs a hook: the [`HookRunner`] seam, and its real implementation,
//! which hands each hook to a pre-warmed `sandbox-runner` from the pool
//! ([`super::pool`]) or spawns a fresh one.
//!
//! The daemon never forks itself (it is a multi-threaded tokio process): it
//! spawns the runner binary with pipes, in its own process group, writes the
//! job, and reads at most [`MAX_RESULT_BYTES`] of result. If the runner
//! overruns the wall deadline (plus a grace for its own clean-up) the daemon
//! kills the whole process group. For a pre-warmed runner the deadline counts
//! from the hand-over, as the runner's own does.
//!
//! It also keeps what the harness's `inspect` hook produced for each source
//! (the checked, compiled bot: [`CompiledBot`]) and puts it in the later
//! hooks of that source, so that they skip the check and the compile. Only
//! `inspect` outcomes, which run no bot code, fill that cache. Bytecode
//! depends on the interpreter's hash seed (a set display of constants is a
//! frozenset constant, whose order is the compiling interpreter's), so the
//! cache is kept per hash seed too: a seeded bot's hooks get bytecode an
//! inspection compiled under that bot's own hash seed, which the harness
//! makes iterate exactly as the hook's own compile would.

use super::pool::{WarmPool, WarmProcess};
use super::templates::Templates;
use hook_protocol::{CompiledBot, Hook, HookError, HookJob, HookOutcome, MAX_RESULT_BYTES, exit};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};

/// Time the runner gets beyond the hook's wall limit to report by itself.
pub(crate) const GRACE: Duration = Duration::from_millis(1500);

/// Inspections run at once to refill the checked-once cache, at most; a
/// source whose refill does not fit is tried again at its next hook.
const MAX_REFILLS: usize = 2;

/// Checked-once bots kept at most (a full cache is emptied and refills as
/// hooks run: an `inspect` per source).
const MAX_COMPILED: usize = 1024;

/// A boxed future, so that [`HookRunner`] can be used as a trait object.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs one hook job to its outcome. Every failure (a crash, a timeout, a
/// runner that cannot start) is a [`HookOutcome::Error`], never a panic.
pub(crate) trait HookRunner: Send + Sync + 'static {
    fn run<'a>(&'a self, job: &'a HookJob) -> BoxFuture<'a, HookOutcome>;

    /// Which of the free sandbox uids `free` to run `job` with (an index in
    /// it), if it matters: one a sandbox is ready with for `job` saves a
    /// sandbox start.
    fn pick_uid(&self, _job: &HookJob, _free: &[u32]) -> Option<usize> {
        None
    }

    /// A uid of the runner's own to run `job` with, outside the hooks'
    /// (its bot's fork template's), if it has one; the caller (the
    /// dispatcher, a replay) then calls [`HookRunner::release_uid`] once the
    /// hook is done.
    fn reserve_uid(&self, _job: &HookJob) -> Option<u32> {
        None
    }

    /// The hook given a uid by [`HookRunner::reserve_uid`] is done;
    /// whether it ran in a fork template.
    fn release_uid(&self, _job: &HookJob) -> bool {
        false
    }
}

/// The real runner: one confined `sandbox-runner` process per hook, never
/// reused, pre-warmed when the pool has one of the job's kind.
pub(crate) struct Sandbox {
    /// Path of the `sandbox-runner` binary.
    pub runner: PathBuf,
    /// Pre-warmed runners; `None` when `warm_max` is 0.
    pool: Option<Arc<WarmPool>>,
    /// Fork templates of seeded bots; `None` unless `fork_templates`.
    templates: Option<Arc<Templates>>,
    compiled: Arc<Compiled>,
    /// The sandbox uid inspections run with (not a hook's).
    inspect_uid: u32,
}

/// Checked-once bots by the SHA-256 of their source (as the daemon
/// computed it), network mode (which the check depends on) and hash seed
/// (which the bytecode depends on).
#[derive(Default)]
struct Compiled {
    by_source: Mutex<HashMap<[u8; 32], Arc<CompiledBot>>>,
    /// Sources whose `inspect` is running to fill the cache.
    pending: Mutex<HashSet<[u8; 32]>>,
}

fn source_key(job: &HookJob) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([u8::from(job.network.allowed)]);
    match job.python_hash_seed() {
        Some(seed) => h.update([&[1][..], &seed.to_be_bytes()].concat()),
        None => h.update([0]),
    }
    h.update(job.bot.source.as_bytes());
    h.finalize().into()
}

impl Sandbox {
    pub(crate) fn new(runner: PathBuf, pool: Option<Arc<WarmPool>>, inspect_uid: u32) -> Self {
        Sandbox {
            runner,
            pool,
            templates: None,
            compiled: Arc::default(),
            inspect_uid,
        }
    }

    pub(crate) fn pool(&self) -> Option<&Arc<WarmPool>> {
        self.pool.as_ref()
    }

    /// With fork templates for seeded bots.
    pub(crate) fn with_templates(mut self, templates: Arc<Templates>) -> Self {
        self.templates = Some(templates);
        self
    }

    /// Runs a hook (not an inspection) in its bot's fork template when it
    /// holds one's uid, else pre-warmed or fresh; `input` is the job as
    /// written to the runner (with `bot.compiled` filled in from the cache).
    async fn run_hook(&self, job: &HookJob, input: &[u8]) -> HookOutcome {
        if let Some(t) = &self.templates
            && t.holds(job)
        {
            if let Some(o) = t.run(job, input).await {
                return o;
            }
            // No pool on a template's uid: its sandboxes would wait there.
            return run_job(&self.runner, job, input).await;
        }
        run_pooled(&self.runner, self.pool.as_deref(), job, input).await
    }
}

impl HookRunner for Sandbox {
    fn pick_uid(&self, job: &HookJob, free: &[u32]) -> Option<usize> {
        self.pool.as_ref().and_then(|p| p.pick_uid(job, free))
    }

    fn reserve_uid(&self, job: &HookJob) -> Option<u32> {
        self.templates.as_ref().and_then(|t| t.reserve(job))
    }

    fn release_uid(&self, job: &HookJob) -> bool {
        self.templates.as_ref().is_some_and(|t| t.release(job))
    }

    fn run<'a>(&'a self, job: &'a HookJob) -> BoxFuture<'a, HookOutcome> {
        Box::pin(async move {
            let key = source_key(job);
            if job.hook == Hook::Inspect {
                let input = match encode(job, job.bot.compiled.as_ref()) {
                    Ok(i) => i,
                    Err(e) => return internal(e),
                };
                let mut outcome = run_pooled(&self.runner, self.pool.as_deref(), job, &input).await;
                self.compiled.keep(key, &mut outcome);
                return outcome;
            }
            // A hook whose hash seed comes from its own entropy checks and
            // compiles its bot itself: no inspection ran under that hash
            // seed. (The dispatcher and replay leave `bot.compiled` empty;
            // only this cache fills it.)
            let own_seed = job.entropy.is_some() && job.hash_seed.is_none();
            let cached = if own_seed || job.bot.compiled.is_some() {
                None
            } else {
                let cached = lock(&self.compiled.by_source).get(&key).cloned();
                if cached.is_none() {
                    // After a restart, or a seeded bot's first hook (its
                    // attach was inspected under no hash seed): inspect the
                    // source again, beside this hook, so that its later
                    // hooks skip the check.
                    self.refill_compiled(job, key);
                }
                cached
            };
            // The job as the runner reads it, with the cached compiled bot
            // spliced in: encoded once, never copied.
            let compiled = job.bot.compiled.as_ref().or(cached.as_deref());
            match encode(job, compiled) {
                Ok(input) => self.run_hook(job, &input).await,
                Err(e) => internal(e),
            }
        })
    }
}

impl Sandbox {
    fn refill_compiled(&self, job: &HookJob, key: [u8; 32]) {
        {
            let mut pending = lock(&self.compiled.pending);
            if pending.len() >= MAX_REFILLS || !pending.insert(key) {
                return;
            }
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            lock(&self.compiled.pending).remove(&key);
            return;
        };
        let mut inspect = job.clone();
        inspect.hook = Hook::Inspect;
        inspect.state = serde_json::json!({});
        inspect.context.players.clear();
        inspect.entropy = None;
        inspect.now = None;
        // Under the hook's own hash seed (`source_key` includes it), with
        // the inspections' uid, beside the hook's.
        inspect.hash_seed = job.python_hash_seed();
        inspect.runtime.sandbox_uid = self.inspect_uid;
        // No sandbox is pre-warmed for one bot's inspection: it runs once.
        let pool = self.pool.clone().filter(|_| inspect.hash_seed.is_none());
        let (runner, compiled) = (self.runner.clone(), self.compiled.clone());
        rt.spawn(async move {
            let mut outcome = match encode(&inspect, inspect.bot.compiled.as_ref()) {
                Ok(input) => run_pooled(&runner, pool.as_deref(), &inspect, &input).await,
                Err(e) => internal(e),
            };
            compiled.keep(key, &mut outcome);
            lock(&compiled.pending).remove(&key);
        });
    }
}

impl Compiled {
    /// Takes the checked-once bot out of an `inspect` outcome's manifest
    /// (where the harness reports it) and keeps it for `key`'s source.
    fn keep(&self, key: [u8; 32], outcome: &mut HookOutcome) {
        let HookOutcome::Ok {
            manifest: Some(serde_json::Value::Object(m)),
            ..
        } = outcome
        else {
            return;
        };
        let Some(raw) = m.remove("compiled") else {
            return;
        };
        match serde_json::from_value::<CompiledBot>(raw) {
            Ok(c) => {
                let mut by_source = lock(&self.by_source);
                if by_source.len() >= MAX_COMPILED {
                    by_source.clear();
                }
                by_source.insert(key, Arc::new(c));
            }
            Err(e) => tracing::warn!(error = %e, "inspect reported a malformed compiled bot"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `job` as the runner reads it, with `bot.compiled` set to `compiled`.
fn encode(job: &HookJob, compiled: Option<&CompiledBot>) -> Result<Vec<u8>, String> {
    job.to_json_with_compiled(compiled)
        .map_err(|e| format!("cannot encode job: {e}"))
}

/// Runs `job` (encoded as `input`) in a pre-warmed runner of its kind when
/// the pool has one, else in a fresh runner.
///
/// A pre-warmed runner that answers exit 2 (it took no job: it had expired
/// or refused it) or 3 (its confinement had failed before the job) never
/// ran the bot, so the hook then runs again in a fresh runner, which reports
/// what is wrong, if anything still is.
pub(crate) async fn run_pooled(
    runner: &Path,
    pool: Option<&WarmPool>,
    job: &HookJob,
    input: &[u8],
) -> HookOutcome {
    let Some(pool) = pool else {
        return run_job(runner, job, input).await;
    };
    match pool.take(job) {
        Some(warm) => {
            let (outcome, code) = warm.hand_over(job, input).await;
            if matches!(code, Some(exit::BAD_JOB | exit::CONFINEMENT_FAILED)) {
                tracing::warn!(
                    exit = ?code,
                    outcome = ?outcome,
                    "a pre-warmed sandbox did not take its job; running it in a fresh one"
                );
                run_job(runner, job, input).await
            } else {
                pool.served_one();
                outcome
            }
        }
        None => run_job(runner, job, input).await,
    }
}

/// The `sandbox-runner` command: its own process group, an empty
/// environment, pipes, killed with the daemon's handle.
pub(crate) fn command(runner: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(runner);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// Runs one job (encoded as `input`) in a fresh runner and returns its
/// outcome. Never panics; every failure is a [`HookOutcome::Error`].
async fn run_job(runner: &Path, job: &HookJob, input: &[u8]) -> HookOutcome {
    let mut child = match command(runner).spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(runner = %runner.display(), error = %e, "cannot start sandbox-runner");
            return HookOutcome::Error {
                error: HookError::Confinement {
                    step: "spawn".into(),
                    message: format!("cannot start {}: {e}", runner.display()),
                },
            };
        }
    };
    let pipes = Pipes {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
    };
    drive(child, pipes, input, job).await.0
}

/// A runner's stdio, as the daemon holds it.
pub(crate) struct Pipes {
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

impl WarmProcess {
    /// Hands `job` (encoded as `input`) to this pre-warmed runner and waits
    /// for its outcome; the runner's exit code too.
    async fn hand_over(self, job: &HookJob, input: &[u8]) -> (HookOutcome, Option<i32>) {
        let (child, pipes) = self.into_parts();
        drive(child, pipes, input, job).await
    }
}

/// Writes `input` (then EOF), reads the outcome, enforces the deadline.
async fn drive(
    mut child: Child,
    pipes: Pipes,
    input: &[u8],
    job: &HookJob,
) -> (HookOutcome, Option<i32>) {
    let pid = child.id();
    let Pipes {
        mut stdin,
        mut stdout,
        mut stderr,
    } = pipes;
    let deadline = Duration::from_millis(job.limits.wall_ms) + GRACE;
    let work = async {
        if let Some(mut s) = stdin.take() {
            // A runner that refuses the job closes stdin early; its exit
            // status says why.
            let _ = s.write_all(input).await;
            let _ = s.shutdown().await;
        }
        let mut out = Vec::new();
        let mut err = Vec::new();
        let read_out = async {
            if let Some(s) = stdout.as_mut() {
                let _ = s
                    .take(MAX_RESULT_BYTES as u64 + 1)
                    .read_to_end(&mut out)
                    .await;
            }
        };
        let read_err = async {
            if let Some(s) = stderr.as_mut() {
                let _ = s.take(16 * 1024).read_to_end(&mut err).await;
            }
        };
        tokio::join!(read_out, read_err);
        let status = child.wait().await;
        (out, err, status)
    };
    let (out, err, status) = match tokio::time::timeout(deadline, work).await {
        Ok(r) => r,
        Err(_) => {
            kill_group(pid);
            let o = HookOutcome::Error {
                error: HookError::Timeout {
                    message: format!("hook exceeded its {} ms wall time", job.limits.wall_ms),
                },
            };
            return (o, None);
        }
    };
    kill_group(pid);
    let code = status.ok().and_then(|s| s.code());
    if out.len() > MAX_RESULT_BYTES {
        let o = HookOutcome::Error {
            error: HookError::OutputOverrun {
                message: format!("runner output exceeded {MAX_RESULT_BYTES} bytes"),
            },
        };
        return (o, code);
    }
    let outcome = match serde_json::from_slice::<HookOutcome>(&out) {
        Ok(o) => o,
        Err(_) => {
            let stderr_tail = String::from_utf8_lossy(&err);
            tracing::warn!(exit = ?code, stderr = %stderr_tail.trim(), "sandbox-runner gave no result");
            match code {
                Some(exit::CONFINEMENT_FAILED) => HookOutcome::Error {
                    error: HookError::Confinement {
                        step: "unknown".into(),
                        message: "the sandbox could not confine the hook".into(),
                    },
                },
                Some(exit::TIMEOUT) => HookOutcome::Error {
                    error: HookError::Timeout {
                        message: "hook exceeded its time".into(),
                    },
                },
                Some(exit::MEMORY) => HookOutcome::Error {
                    error: HookError::Memory {
                        message: "hook exceeded its memory".into(),
                    },
                },
                _ => internal(format!("sandbox-runner exited with {code:?} and no result")),
            }
        }
    };
    (outcome, code)
}

fn internal(message: String) -> HookOutcome {
    HookOutcome::Error {
        error: HookError::internal(message),
    }
}

/// Kills the runner's process group (it leads its own group).
pub(crate) fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
