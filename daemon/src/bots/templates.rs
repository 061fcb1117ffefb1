//! Fork templates (`[bots] fork_templates`): one `sandbox-runner
//! --template` per seeded bot, which forks one confined child per hook
//! instead of starting an interpreter (docs/operations.md, "Fork
//! templates"; sandbox-runner/README.md for what a child shares).
//!
//! Only hooks of seeded bots without network get one: a seeded bot's hooks
//! all share its hash seed, which an interpreter fixes at its start (so
//! one template serves all of them, and no other bot), and a network bot's
//! connect supervisor listens on one process's seccomp filter.
//!
//! Each template holds a sandbox uid of its own, from a range after the
//! hooks' and the inspections' uids (`TEMPLATES` of them): the dispatcher
//! runs the bot's hooks with it ([`Templates::reserve`]), so that a
//! template never shares its uid with a concurrent hook of another bot,
//! whatever the free hook uids are (`RLIMIT_NPROC` counts per uid: the
//! template and its one child at a time). With every template uid taken, a
//! bot whose template is not running a hook and has had none for a second
//! gives its uid up to the next bot that asks (least recently used first);
//! else the asking bot goes without, and its hooks run as before.
//!
//! A hook waits at most [`WAIT_FOR_TEMPLATE`] for its template (busy with
//! the previous hook of the same bot); without one ready (not started yet,
//! retired, idle-exited, or failed) the hook runs in a fresh sandbox while
//! the template starts for the next. A template that did not run the job
//! (it refused it, could not confine its child, or ended before answering)
//! is dropped and the hook runs fresh: nothing of the bot ran.

use super::runner::{GRACE, command, kill_group};
use hook_protocol::{Hook, HookError, HookJob, HookOutcome, MAX_RESULT_BYTES, WarmSpec};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// How many templates (and template uids) at most.
pub(crate) const TEMPLATES: u32 = 16;

/// How long a hook waits for its bot's template before it runs fresh.
pub(crate) const WAIT_FOR_TEMPLATE: Duration = Duration::from_millis(60);

/// A bot whose template ran no hook for this long may lose its uid to
/// another bot.
const IDLE_BEFORE_EVICTION: Duration = Duration::from_secs(1);

/// The templates, one per seeded bot that ran recently.
pub(crate) struct Templates {
    runner: PathBuf,
    idle: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// By family: the template spec without its uid (one bot); at most
    /// `TEMPLATES`, so a list.
    by_family: Vec<(String, Slot)>,
    free_uids: Vec<u32>,
}

struct Slot {
    uid: u32,
    /// Hooks given this uid and not finished.
    in_use: usize,
    /// The last hook ran in the template.
    forked: bool,
    last_used: Instant,
    live: Arc<tokio::sync::Mutex<Option<Live>>>,
}

/// A running template.
struct Live {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Drop for Live {
    fn drop(&mut self) {
        kill_group(self.child.id());
    }
}

/// Whether `job` can run in a template.
pub(crate) fn eligible(job: &HookJob) -> bool {
    job.hash_seed.is_some() && !job.network.allowed && job.hook != Hook::Inspect
}

/// The bot's key: the template spec with the uid left out.
fn family(job: &HookJob) -> Option<String> {
    let mut spec = WarmSpec::of(job, 0);
    spec.runtime.sandbox_uid = 0;
    spec.runtime.sandbox_gid = 0;
    serde_json::to_string(&spec).ok()
}

impl Inner {
    fn slot_mut(&mut self, family: &str) -> Option<&mut Slot> {
        self.by_family
            .iter_mut()
            .find(|(f, _)| f == family)
            .map(|(_, s)| s)
    }
}

impl Templates {
    /// Templates of `runner`, with the uids `first_uid..first_uid +
    /// TEMPLATES`; each exits after `idle` without a hook.
    pub(crate) fn new(runner: PathBuf, idle: Duration, first_uid: u32) -> Templates {
        Templates {
            runner,
            idle,
            inner: Mutex::new(Inner {
                by_family: Vec::new(),
                free_uids: (0..TEMPLATES)
                    .rev()
                    .map(|i| first_uid.saturating_add(i))
                    .collect(),
            }),
        }
    }

    /// The uid `job` runs with, if its bot has (or now gets) a template
    /// uid; [`Templates::release`] it when the hook is done.
    pub(crate) fn reserve(&self, job: &HookJob) -> Option<u32> {
        if !eligible(job) {
            return None;
        }
        let fam = family(job)?;
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        if let Some(slot) = inner.slot_mut(&fam) {
            slot.in_use += 1;
            slot.last_used = now;
            return Some(slot.uid);
        }
        let uid = match inner.free_uids.pop() {
            Some(uid) => uid,
            None => {
                // The least recently used bot whose template is idle.
                let victim = inner
                    .by_family
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, s))| {
                        s.in_use == 0
                            && now.saturating_duration_since(s.last_used) >= IDLE_BEFORE_EVICTION
                            && s.live.try_lock().is_ok()
                    })
                    .min_by_key(|(_, (_, s))| s.last_used)
                    .map(|(i, _)| i)?;
                // Dropping its `Live` (if nothing holds the lock) kills it.
                inner.by_family.swap_remove(victim).1.uid
            }
        };
        inner.by_family.push((
            fam,
            Slot {
                uid,
                in_use: 1,
                forked: false,
                last_used: now,
                live: Arc::default(),
            },
        ));
        Some(uid)
    }

    /// Whether `job` runs with its bot's template uid.
    pub(crate) fn holds(&self, job: &HookJob) -> bool {
        eligible(job)
            && family(job).is_some_and(|fam| {
                lock(&self.inner)
                    .slot_mut(&fam)
                    .is_some_and(|s| s.uid == job.runtime.sandbox_uid)
            })
    }

    /// The hook that [`Templates::reserve`] gave a uid is done; whether
    /// it ran in the template (a bot's hooks run one at a time: its
    /// channel's).
    pub(crate) fn release(&self, job: &HookJob) -> bool {
        let Some(fam) = family(job) else {
            return false;
        };
        match lock(&self.inner).slot_mut(&fam) {
            Some(slot) if slot.uid == job.runtime.sandbox_uid => {
                slot.in_use = slot.in_use.saturating_sub(1);
                std::mem::take(&mut slot.forked)
            }
            _ => false,
        }
    }

    /// Runs `job` (encoded as `input`, without its line's newline) in its
    /// bot's template: `None` when it did not run there (no template ready
    /// within [`WAIT_FOR_TEMPLATE`], or the template could not take it;
    /// nothing of the bot ran), and the caller runs it fresh.
    pub(crate) async fn run(&self, job: &HookJob, input: &[u8]) -> Option<HookOutcome> {
        if !eligible(job) {
            return None;
        }
        let fam = family(job)?;
        let live = {
            let mut inner = lock(&self.inner);
            match inner.slot_mut(&fam) {
                Some(s) if s.uid == job.runtime.sandbox_uid => s.live.clone(),
                _ => return None,
            }
        };
        let mut guard = tokio::time::timeout(WAIT_FOR_TEMPLATE, live.lock_owned())
            .await
            .ok()?;
        let alive = match guard.as_mut() {
            Some(l) => matches!(l.child.try_wait(), Ok(None)),
            None => false,
        };
        if !alive {
            // Started for the next hook; this one runs fresh meanwhile.
            *guard = self.spawn(job).await;
            return None;
        }
        let l = guard.as_mut()?;
        // The job and its newline in one write (JSON text holds no raw
        // newline).
        let mut line = Vec::with_capacity(input.len() + 1);
        line.extend_from_slice(input);
        line.push(b'\n');
        if l.stdin.write_all(&line).await.is_err() || l.stdin.flush().await.is_err() {
            *guard = None;
            return None;
        }
        let deadline = Duration::from_millis(job.limits.wall_ms) + GRACE;
        let mut out = Vec::new();
        let mut bounded = (&mut l.stdout).take(MAX_RESULT_BYTES as u64 + 1);
        let read = bounded.read_until(b'\n', &mut out);
        match tokio::time::timeout(deadline, read).await {
            Err(_) => {
                *guard = None;
                return Some(HookOutcome::Error {
                    error: HookError::Timeout {
                        message: format!("hook exceeded its {} ms wall time", job.limits.wall_ms),
                    },
                });
            }
            Ok(Err(_)) | Ok(Ok(0)) => {
                // The template ended (idle, retired, failed) before it took
                // the job.
                *guard = None;
                return None;
            }
            Ok(Ok(_)) => {}
        }
        if !out.ends_with(b"\n") {
            *guard = None;
            return Some(HookOutcome::Error {
                error: HookError::OutputOverrun {
                    message: format!("runner output exceeded {MAX_RESULT_BYTES} bytes"),
                },
            });
        }
        let outcome = serde_json::from_slice::<HookOutcome>(&out).ok();
        let ran = match &outcome {
            // Its child could not confine itself, or it refused the job:
            // the bot did not run; a fresh sandbox reports what is wrong,
            // if anything still is.
            Some(HookOutcome::Error {
                error: HookError::Confinement { .. },
            })
            | None => false,
            Some(HookOutcome::Error { error }) if error.is_nothing_ran() => false,
            Some(_) => true,
        };
        if !ran {
            tracing::warn!(
                ?outcome,
                "a fork template did not run a hook; it runs fresh"
            );
            *guard = None;
            return None;
        }
        if let Some(slot) = lock(&self.inner).slot_mut(&fam) {
            slot.forked = true;
        }
        outcome
    }

    /// Starts a template for `job`'s spec (it confines itself and warms up
    /// in the background; the first job it reads waits for that).
    async fn spawn(&self, job: &HookJob) -> Option<Live> {
        let spec = WarmSpec::of(job, self.idle.as_millis() as u64);
        let mut line = serde_json::to_vec(&spec).ok()?;
        line.push(b'\n');
        let mut cmd = command(&self.runner);
        // Its stderr repeats what its outcome lines say; nothing reads it.
        cmd.arg("--template").stderr(std::process::Stdio::null());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(runner = %self.runner.display(), error = %e, "cannot start a fork template");
                return None;
            }
        };
        let mut stdin = child.stdin.take()?;
        let stdout = BufReader::new(child.stdout.take()?);
        if stdin.write_all(&line).await.is_err() {
            kill_group(child.id());
            return None;
        }
        Some(Live {
            child,
            stdin,
            stdout,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hook_protocol::{BotSpec, HookContext, Limits, NetworkPolicy, Runtime};
    use serde_json::json;

    fn job(seed: u32) -> HookJob {
        HookJob {
            version: hook_protocol::PROTOCOL_VERSION,
            bot: BotSpec {
                name: "b".into(),
                source: String::new(),
                params: json!({}),
                compiled: None,
            },
            hook: Hook::OnInit,
            context: HookContext {
                channel_id: "c".into(),
                bot_id: "bot:b".into(),
                players: Vec::new(),
            },
            state: json!({}),
            limits: Limits::default(),
            network: NetworkPolicy::default(),
            runtime: Runtime {
                python: "/usr/bin/python3".into(),
                python_args: Vec::new(),
                harness_dir: "/h".into(),
                python_path: Vec::new(),
                sandbox_uid: 100,
                sandbox_gid: 100,
                system_dirs: Vec::new(),
            },
            entropy: None,
            now: None,
            hash_seed: Some(seed),
        }
    }

    #[test]
    fn only_seeded_hooks_without_network_get_a_template() {
        assert!(eligible(&job(1)));
        let mut j = job(1);
        j.hash_seed = None;
        assert!(!eligible(&j));
        let mut j = job(1);
        j.network.allowed = true;
        assert!(!eligible(&j));
        let mut j = job(1);
        j.hook = Hook::Inspect;
        assert!(!eligible(&j));
    }

    #[test]
    fn each_bot_keeps_its_own_uid_and_idle_bots_give_theirs_up_to_busy_ones() {
        let t = Templates::new("/nonexistent".into(), Duration::from_secs(60), 1000);
        let uids: Vec<u32> = (0..TEMPLATES)
            .map(|s| t.reserve(&job(s)).unwrap())
            .collect();
        let distinct: std::collections::HashSet<u32> = uids.iter().copied().collect();
        assert_eq!(distinct.len(), TEMPLATES as usize);
        assert!(uids.iter().all(|u| (1000..1000 + TEMPLATES).contains(u)));
        // The same bot again: its own uid (a second hook of it, as the
        // dispatcher would never run it concurrently, still counts).
        assert_eq!(t.reserve(&job(3)), Some(uids[3]));
        // All taken, every bot busy: the next bot goes without.
        assert_eq!(t.reserve(&job(99)), None);
        // Done, but used within the last second: still keeps its uid.
        for s in 0..TEMPLATES {
            let mut j = job(s);
            j.runtime.sandbox_uid = uids[s as usize];
            assert!(!t.release(&j), "nothing ran forked");
        }
        let mut j = job(3);
        j.runtime.sandbox_uid = uids[3];
        t.release(&j);
        assert_eq!(t.reserve(&job(99)), None);
        // Idle for a second: the least recently used bot gives its uid up.
        {
            let mut inner = lock(&t.inner);
            let fam = family(&job(5)).unwrap();
            inner.slot_mut(&fam).unwrap().last_used = Instant::now() - IDLE_BEFORE_EVICTION;
        }
        assert_eq!(t.reserve(&job(99)), Some(uids[5]));
        let mut j = job(99);
        j.runtime.sandbox_uid = uids[5];
        assert!(t.holds(&j));
        // Bot 5 has no uid any more: its hooks run as before.
        let mut j = job(5);
        j.runtime.sandbox_uid = uids[5];
        assert!(!t.holds(&j));
    }
}
