//! The pool of pre-warmed sandboxes: `sandbox-runner --prewarm` processes
//! that have confined themselves and started the interpreter on the harness
//! for one kind of hook, and wait for its job.
//!
//! A kind is everything that decides a sandbox's confinement (the job's
//! limits, network policy and runtime, which holds the sandbox uid) and the
//! interpreter's hash seed, which is fixed when the interpreter starts: the
//! runner refuses a job that differs from the spec it was warmed with. The
//! pool keeps, per kind, as many ready runners as hooks of that kind started
//! in the last second, at most `warm_max`. Each runner is handed one job and
//! is never reused: the pool only ever removes processes, and refills in the
//! background.
//!
//! A seeded bot's hooks carry the bot's own hash seed, so each such bot is a
//! kind of its own. Those kinds have no floor: only demand in the last
//! second keeps runners warm for them, and a kind with no runners and no
//! recent demand is forgotten, so that memory stays bounded however many
//! bots have run. `warm_min` is the floor of kinds without a hash seed (once
//! the kind has run). A job whose hash seed would come from its per-hook
//! entropy (one without `hash_seed`) never goes to a pre-warmed runner: no
//! runner could have been started for it.
//!
//! A runner that was not handed a job within `warm_idle_secs` tears itself
//! down; the pool hands out none within [`EXPIRY_MARGIN`] of that, and a
//! maintenance task replaces expired ones so that an idle daemon keeps its
//! floor.

use super::runner::{Pipes, command};
use hook_protocol::{HookJob, WarmSpec};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::process::Child;

/// The window over which demand is counted.
const DEMAND_WINDOW: Duration = Duration::from_secs(1);

/// A pre-warmed runner this close to its idle time is not handed a job (it
/// could tear itself down as the job arrives); it is replaced instead.
pub(crate) const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// Pre-warmed runners by kind.
pub(crate) struct WarmPool {
    runner: PathBuf,
    min: usize,
    max: usize,
    idle: Duration,
    kinds: Mutex<HashMap<String, Kind>>,
    /// Hooks a pre-warmed runner took and ran.
    served: AtomicU64,
    me: Weak<WarmPool>,
}

struct Kind {
    /// The spec line the kind's runners are started with.
    spec_line: Arc<Vec<u8>>,
    /// Whether the spec carries a hash seed (one bot's kind): no floor.
    seeded: bool,
    ready: VecDeque<WarmProcess>,
    /// Runners being started.
    starting: usize,
    /// When hooks of this kind started, within [`DEMAND_WINDOW`].
    taken: VecDeque<Instant>,
}

/// One pre-warmed runner, owned by the pool until it is handed its job.
pub(crate) struct WarmProcess {
    child: Child,
    pipes: Pipes,
    born: Instant,
}

impl WarmProcess {
    pub(crate) fn into_parts(self) -> (Child, Pipes) {
        (self.child, self.pipes)
    }
}

impl WarmPool {
    /// A pool starting `runner`; with a tokio runtime, also its maintenance
    /// task (which ends with the pool).
    pub(crate) fn new(runner: PathBuf, min: usize, max: usize, idle: Duration) -> Arc<WarmPool> {
        let pool = Arc::new_cyclic(|me| WarmPool {
            runner,
            min: min.min(max),
            max,
            idle,
            kinds: Mutex::default(),
            served: AtomicU64::new(0),
            me: me.clone(),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&pool);
            let every = (idle / 4).max(Duration::from_secs(1));
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(pool) = weak.upgrade() else { return };
                    pool.maintain();
                }
            });
        }
        pool
    }

    /// Makes `job`'s kind known, so that its floor is warmed before its
    /// first hook.
    pub(crate) fn prime(&self, job: &HookJob) {
        if let Some((key, line, seeded)) = self.kind_of(job) {
            let deficit = {
                let mut kinds = lock(&self.kinds);
                let kind = kinds
                    .entry(key.clone())
                    .or_insert_with(|| Kind::new(line, seeded));
                self.deficit(kind)
            };
            self.start(&key, deficit);
        }
    }

    /// A ready runner for `job`'s kind, if there is one; schedules the refill
    /// either way.
    pub(crate) fn take(&self, job: &HookJob) -> Option<WarmProcess> {
        let (key, line, seeded) = self.kind_of(job)?;
        let now = Instant::now();
        let (found, deficit) = {
            let mut kinds = lock(&self.kinds);
            let kind = kinds
                .entry(key.clone())
                .or_insert_with(|| Kind::new(line, seeded));
            kind.taken.push_back(now);
            let mut found = None;
            while let Some(mut p) = kind.ready.pop_front() {
                if self.usable(&mut p, now) {
                    found = Some(p);
                    break;
                }
            }
            (found, self.deficit(kind))
        };
        self.start(&key, deficit);
        found
    }

    /// Counts a hook a pre-warmed runner took and ran.
    pub(crate) fn served_one(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// Hooks pre-warmed runners took and ran since the pool started.
    pub(crate) fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// The key and spec line of `job`'s kind, and whether it carries a hash
    /// seed; `None` for a job that cannot run pre-warmed.
    fn kind_of(&self, job: &HookJob) -> Option<(String, Arc<Vec<u8>>, bool)> {
        if self.max == 0 || (job.entropy.is_some() && job.hash_seed.is_none()) {
            return None;
        }
        let spec = WarmSpec::of(job, self.idle.as_millis() as u64);
        let seeded = spec.hash_seed.is_some();
        let mut line = serde_json::to_vec(&spec).ok()?;
        let key = String::from_utf8_lossy(&line).into_owned();
        line.push(b'\n');
        Some((key, Arc::new(line), seeded))
    }

    /// Whether a ready runner may still be handed a job (alive, not about
    /// to expire). One that may not is dropped, which kills it.
    fn usable(&self, p: &mut WarmProcess, now: Instant) -> bool {
        let fresh = now.saturating_duration_since(p.born) + EXPIRY_MARGIN < self.idle;
        fresh && matches!(p.child.try_wait(), Ok(None))
    }

    /// How many runners `kind` should start now.
    fn deficit(&self, kind: &mut Kind) -> usize {
        let now = Instant::now();
        while kind
            .taken
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > DEMAND_WINDOW)
        {
            kind.taken.pop_front();
        }
        let floor = if kind.seeded { 0 } else { self.min };
        let target = kind.taken.len().clamp(floor, self.max);
        let have = kind.ready.len() + kind.starting;
        let deficit = target.saturating_sub(have);
        kind.starting += deficit;
        deficit
    }

    /// Drops expired and dead runners of every kind, forgets the seeded
    /// kinds left with nothing, and refills each kind.
    fn maintain(&self) {
        let now = Instant::now();
        let todo: Vec<(String, usize)> = {
            let mut kinds = lock(&self.kinds);
            let todo = kinds
                .iter_mut()
                .map(|(key, kind)| {
                    let ready = std::mem::take(&mut kind.ready);
                    for mut p in ready {
                        if self.usable(&mut p, now) {
                            kind.ready.push_back(p);
                        }
                    }
                    (key.clone(), self.deficit(kind))
                })
                .collect();
            kinds.retain(|_, kind| !kind.forgettable());
            todo
        };
        for (key, n) in todo {
            self.start(&key, n);
        }
    }

    /// Starts `n` runners of kind `key` in the background (tokio worker
    /// threads: the runner's PDEATHSIG follows the thread that spawned it).
    fn start(&self, key: &str, n: usize) {
        if n == 0 {
            return;
        }
        let (Some(me), Ok(rt)) = (self.me.upgrade(), tokio::runtime::Handle::try_current()) else {
            if let Some(kind) = lock(&self.kinds).get_mut(key) {
                kind.starting = kind.starting.saturating_sub(n);
            }
            return;
        };
        for _ in 0..n {
            let (me, key) = (me.clone(), key.to_string());
            rt.spawn(async move {
                let line = lock(&me.kinds).get(&key).map(|k| k.spec_line.clone());
                let started = match line {
                    Some(line) => me.spawn_one(&line).await,
                    None => None,
                };
                let mut kinds = lock(&me.kinds);
                if let Some(kind) = kinds.get_mut(&key) {
                    kind.starting = kind.starting.saturating_sub(1);
                    if let Some(p) = started {
                        kind.ready.push_back(p);
                    }
                }
            });
        }
    }

    async fn spawn_one(&self, spec_line: &[u8]) -> Option<WarmProcess> {
        let mut cmd = command(&self.runner);
        cmd.arg("--prewarm");
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(runner = %self.runner.display(), error = %e, "cannot pre-warm a sandbox");
                return None;
            }
        };
        let born = Instant::now();
        let mut stdin = child.stdin.take()?;
        if let Err(e) = stdin.write_all(spec_line).await {
            tracing::warn!(error = %e, "a pre-warmed sandbox did not take its spec");
            return None;
        }
        Some(WarmProcess {
            pipes: Pipes {
                stdin: Some(stdin),
                stdout: child.stdout.take(),
                stderr: child.stderr.take(),
            },
            child,
            born,
        })
    }
}

impl Kind {
    fn new(spec_line: Arc<Vec<u8>>, seeded: bool) -> Kind {
        Kind {
            spec_line,
            seeded,
            ready: VecDeque::new(),
            starting: 0,
            taken: VecDeque::new(),
        }
    }

    /// A seeded kind with no runners, none being started and no demand
    /// left in the window (call after [`WarmPool::deficit`], which drops
    /// old demand): nothing would ever warm it again until its bot runs.
    fn forgettable(&self) -> bool {
        self.seeded && self.ready.is_empty() && self.starting == 0 && self.taken.is_empty()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind() -> Kind {
        Kind::new(Arc::new(b"{}\n".to_vec()), false)
    }

    #[test]
    fn each_kind_aims_at_last_seconds_demand_between_floor_and_ceiling() {
        // Outside a runtime: nothing is started, only counted.
        let pool = WarmPool::new(
            PathBuf::from("/nonexistent"),
            1,
            4,
            Duration::from_secs(300),
        );
        let mut k = kind();
        assert_eq!(pool.deficit(&mut k), 1, "the floor, with no demand");
        assert_eq!(pool.deficit(&mut k), 0, "one is already being started");
        let now = Instant::now();
        k.taken.extend([now, now, now]);
        assert_eq!(pool.deficit(&mut k), 2, "three hooks in the last second");
        k.taken.extend([now; 10]);
        assert_eq!(pool.deficit(&mut k), 1, "never more than the ceiling");
        // Demand older than the window no longer counts.
        let mut k = kind();
        k.taken.push_back(now - 2 * DEMAND_WINDOW);
        k.taken.push_back(now - 2 * DEMAND_WINDOW);
        assert_eq!(pool.deficit(&mut k), 1);
        assert!(k.taken.is_empty());
        // One bot's kind (with a hash seed): no floor; only demand counts,
        // and with nothing left it may be forgotten.
        let mut k = Kind::new(Arc::new(b"{}\n".to_vec()), true);
        assert_eq!(pool.deficit(&mut k), 0, "no floor");
        assert!(k.forgettable());
        k.taken.push_back(now);
        assert_eq!(pool.deficit(&mut k), 1, "a hook in the last second");
        assert!(!k.forgettable(), "one being started");
        k.starting = 0;
        k.taken[0] = now - 2 * DEMAND_WINDOW;
        assert_eq!(pool.deficit(&mut k), 0);
        assert!(k.forgettable());
        assert!(!kind().forgettable(), "kinds without a hash seed stay");
    }

    #[test]
    fn seeded_jobs_run_pre_warmed_per_bot_and_a_pool_of_zero_never() {
        let bots = crate::bots::Bots::with_runner(
            crate::testing::bots_config(4),
            crate::testing::Scripted::answering(|_| unreachable!("nothing runs")),
        );
        let mut job = bots.job(
            hook_protocol::BotSpec {
                name: "b".into(),
                source: String::new(),
                params: serde_json::json!({}),
                compiled: None,
            },
            hook_protocol::Hook::OnInit,
            hook_protocol::HookContext {
                channel_id: "c".into(),
                bot_id: "bot:b".into(),
                players: Vec::new(),
            },
            serde_json::json!({}),
            false,
        );
        let pool = WarmPool::new(
            PathBuf::from("/nonexistent"),
            1,
            4,
            Duration::from_secs(300),
        );
        assert!(pool.kind_of(&job).is_some());
        let off = WarmPool::new(
            PathBuf::from("/nonexistent"),
            0,
            0,
            Duration::from_secs(300),
        );
        assert!(off.kind_of(&job).is_none());
        let (plain, _, seeded) = pool.kind_of(&job).unwrap();
        assert!(!seeded);
        // A hook whose hash seed would come from its own entropy: never.
        let bot_seed: hook_protocol::Entropy = "00".repeat(32).parse().unwrap();
        job.entropy = Some(hook_protocol::Entropy::for_hook(&bot_seed, 1));
        assert!(pool.kind_of(&job).is_none());
        assert!(pool.take(&job).is_none());
        // With the bot's hash seed: one kind per bot, whatever the hook's
        // entropy.
        job.hash_seed = Some(crate::bots::seed::hash_seed(&bot_seed));
        let (first, _, seeded) = pool.kind_of(&job).unwrap();
        assert!(seeded && first != plain);
        job.entropy = Some(hook_protocol::Entropy::for_hook(&bot_seed, 2));
        assert_eq!(pool.kind_of(&job).unwrap().0, first);
        job.hash_seed = Some(crate::bots::seed::hash_seed(&bot_seed) ^ 1);
        assert_ne!(pool.kind_of(&job).unwrap().0, first);
        assert!(off.kind_of(&job).is_none());
        // Outside a runtime nothing starts; the kind is known, then
        // forgotten once nothing is left of it.
        assert!(pool.take(&job).is_none());
        assert_eq!(lock(&pool.kinds).len(), 1);
        for k in lock(&pool.kinds).values_mut() {
            k.taken.clear();
        }
        pool.maintain();
        assert!(lock(&pool.kinds).is_empty());
    }
}
