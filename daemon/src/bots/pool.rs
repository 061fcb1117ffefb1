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
//! Every runner waiting with a sandbox uid counts against that uid's
//! `RLIMIT_NPROC` (root mode), which a hook running with the uid needs for
//! its own process and threads. So the runners waiting or being started
//! with one uid, across all kinds, are at most [`WarmPool::per_uid`]
//! (`warm_max`, and never more than a quarter of a hook's thread limit): a
//! hook always has its process and most of its threads. When a kind wants
//! a runner and its uid is full, it takes the place of a ready runner of the
//! least recently used kind on that uid whose family (the same spec but for
//! the uid: one bot) had no demand in the last second on any uid (that
//! runner is killed); with no such kind it goes without, and its hooks
//! start fresh sandboxes. The dispatcher, choosing a hook's uid,
//! prefers one a runner of the hook's bot waits with, else the one with the
//! most room ([`WarmPool::pick_uid`]).
//!
//! A runner that was not handed a job within `warm_idle_secs` tears itself
//! down; the pool hands out none within [`EXPIRY_MARGIN`] of that, and a
//! maintenance task replaces expired ones so that an idle daemon keeps its
//! floor.

use super::runner::{Pipes, command};
use hook_protocol::{HookJob, WarmSpec};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::process::Child;

/// The window over which demand is counted.
const DEMAND_WINDOW: Duration = Duration::from_secs(1);

/// Runners waiting with one sandbox uid, at most, whatever `warm_max`: a
/// quarter of a hook's thread limit (`RLIMIT_NPROC`, counted per uid), so
/// that a hook running with that uid keeps its process and most threads,
/// and runners being killed to make room (gone a moment later) cannot take
/// what it needs either.
fn max_per_uid() -> usize {
    usize::try_from(hook_protocol::Limits::default().threads / 4)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// A pre-warmed runner this close to its idle time is not handed a job (it
/// could tear itself down as the job arrives); it is replaced instead.
pub(crate) const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// Pre-warmed runners by kind.
pub(crate) struct WarmPool {
    runner: PathBuf,
    min: usize,
    max: usize,
    /// Runners waiting or being started with one sandbox uid, at most.
    per_uid: usize,
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
    /// The sandbox uid of the kind's runners.
    uid: u32,
    /// The spec's key with the uid left out: the kinds of one family differ
    /// only in their uid.
    family: String,
    /// When a hook of this kind last started (or the kind was made known).
    last_used: Instant,
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

    /// Kills the runner and its sandbox (its process group) at once, so
    /// that its process leaves the uid's count.
    fn kill(self) {
        super::runner::kill_group(self.child.id());
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
            per_uid: max.min(max_per_uid()),
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
        if let Some(of) = self.kind_of(job) {
            let key = of.key.clone();
            let deficit = {
                let mut kinds = lock(&self.kinds);
                kinds.entry(key.clone()).or_insert_with(|| Kind::new(of));
                self.plan(&mut kinds, &key, false, &mut Vec::new())
            };
            self.start(&key, deficit);
        }
    }

    /// Which of the sandbox uids `free` to run `job` with (an index in
    /// it): one a ready runner of `job`'s family waits with, else the one
    /// with the fewest runners waiting or being started (room for the
    /// runner its hook will ask for); the last of equals.
    pub(crate) fn pick_uid(&self, job: &HookJob, free: &[u32]) -> Option<usize> {
        let of = self.kind_of(job)?;
        let kinds = lock(&self.kinds);
        let mut best: Option<(usize, (bool, usize))> = None;
        for (i, uid) in free.iter().enumerate() {
            let mut ready = false;
            let mut waiting = 0;
            for k in kinds.values().filter(|k| k.uid == *uid) {
                ready |= k.family == of.family && !k.ready.is_empty();
                waiting += k.ready.len() + k.starting;
            }
            // Ready first, then fewer waiting.
            let rank = (!ready, waiting);
            if best.is_none_or(|(_, r)| rank <= r) {
                best = Some((i, rank));
            }
        }
        best.map(|(i, _)| i)
    }

    /// A ready runner for `job`'s kind, if there is one; schedules the refill
    /// either way.
    pub(crate) fn take(&self, job: &HookJob) -> Option<WarmProcess> {
        let of = self.kind_of(job)?;
        let key = of.key.clone();
        let now = Instant::now();
        let mut evicted = Vec::new();
        let (found, deficit) = {
            let mut kinds = lock(&self.kinds);
            let kind = kinds.entry(key.clone()).or_insert_with(|| Kind::new(of));
            kind.taken.push_back(now);
            kind.last_used = now;
            let mut found = None;
            while let Some(mut p) = kind.ready.pop_front() {
                if self.usable(&mut p, now) {
                    found = Some(p);
                    break;
                }
                evicted.push(p);
            }
            (found, self.plan(&mut kinds, &key, true, &mut evicted))
        };
        for p in evicted {
            p.kill();
        }
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

    /// `job`'s kind; `None` for a job that cannot run pre-warmed.
    fn kind_of(&self, job: &HookJob) -> Option<KindOf> {
        if self.max == 0 || (job.entropy.is_some() && job.hash_seed.is_none()) {
            return None;
        }
        let mut spec = WarmSpec::of(job, self.idle.as_millis() as u64);
        let seeded = spec.hash_seed.is_some();
        let uid = spec.runtime.sandbox_uid;
        let mut line = serde_json::to_vec(&spec).ok()?;
        let key = String::from_utf8_lossy(&line).into_owned();
        line.push(b'\n');
        spec.runtime.sandbox_uid = 0;
        let family = serde_json::to_string(&spec).ok()?;
        Some(KindOf {
            key,
            line: Arc::new(line),
            seeded,
            uid,
            family,
        })
    }

    /// Whether a ready runner may still be handed a job (alive, not about
    /// to expire). One that may not is dropped, which kills it.
    fn usable(&self, p: &mut WarmProcess, now: Instant) -> bool {
        let fresh = now.saturating_duration_since(p.born) + EXPIRY_MARGIN < self.idle;
        fresh && matches!(p.child.try_wait(), Ok(None))
    }

    /// How many runners kind `key` should start now, within its uid's room
    /// (made, when `evict`, by taking ready runners on that uid of kinds
    /// whose family is idle, least recently used first, into `evicted`);
    /// counted as being started.
    fn plan(
        &self,
        kinds: &mut HashMap<String, Kind>,
        key: &str,
        evict: bool,
        evicted: &mut Vec<WarmProcess>,
    ) -> usize {
        let Some(kind) = kinds.get_mut(key) else {
            return 0;
        };
        let want = self.deficit(kind);
        let (uid, used) = (kind.uid, kind.last_used);
        if want == 0 {
            return 0;
        }
        let on_uid: usize = kinds
            .values()
            .filter(|k| k.uid == uid)
            .map(|k| k.ready.len() + k.starting)
            .sum();
        let mut room = self.per_uid.saturating_sub(on_uid);
        if evict && room < want {
            // Families (bots) with a hook in the last second keep their
            // runners, on every uid: a busy bot's hooks move between uids,
            // and a runner killed for another busy bot would be a start
            // wasted, which a busy daemon can least afford.
            let now = Instant::now();
            let busy: HashSet<&str> = kinds
                .values()
                .filter(|k| !k.idle(now))
                .map(|k| k.family.as_str())
                .collect();
            let victims: Vec<String> = kinds
                .iter()
                .filter(|(k, kind)| {
                    k.as_str() != key
                        && kind.uid == uid
                        && !kind.ready.is_empty()
                        && kind.last_used < used
                        && !busy.contains(kind.family.as_str())
                })
                .map(|(k, _)| k.clone())
                .collect();
            let mut victims: Vec<(Instant, String)> = victims
                .into_iter()
                .map(|k| (kinds[&k].last_used, k))
                .collect();
            victims.sort();
            for (_, victim) in victims {
                while room < want {
                    let Some(p) = kinds.get_mut(&victim).and_then(|k| k.ready.pop_front()) else {
                        break;
                    };
                    evicted.push(p);
                    room += 1;
                }
            }
        }
        let n = want.min(room);
        if let Some(kind) = kinds.get_mut(key) {
            kind.starting += n;
        }
        n
    }

    /// How many runners `kind` lacks (its last second's demand between its
    /// floor and `warm_max`, less what it has), dropping demand older than
    /// the window.
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
        target.saturating_sub(have)
    }

    /// Drops expired and dead runners of every kind, forgets the seeded
    /// kinds left with nothing, and refills each kind.
    fn maintain(&self) {
        let now = Instant::now();
        let mut dropped = Vec::new();
        let todo: Vec<(String, usize)> = {
            let mut kinds = lock(&self.kinds);
            for kind in kinds.values_mut() {
                let ready = std::mem::take(&mut kind.ready);
                for mut p in ready {
                    if self.usable(&mut p, now) {
                        kind.ready.push_back(p);
                    } else {
                        dropped.push(p);
                    }
                }
                self.deficit(kind);
            }
            kinds.retain(|_, kind| !kind.forgettable());
            let keys: Vec<String> = kinds.keys().cloned().collect();
            keys.into_iter()
                .map(|key| {
                    let n = self.plan(&mut kinds, &key, false, &mut Vec::new());
                    (key, n)
                })
                .collect()
        };
        for p in dropped {
            p.kill();
        }
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

/// What [`WarmPool::kind_of`] says of a job's kind.
struct KindOf {
    /// The kind's key: its spec line without the newline.
    key: String,
    line: Arc<Vec<u8>>,
    seeded: bool,
    uid: u32,
    family: String,
}

impl Kind {
    fn new(of: KindOf) -> Kind {
        Kind {
            spec_line: of.line,
            seeded: of.seeded,
            uid: of.uid,
            family: of.family,
            last_used: Instant::now(),
            ready: VecDeque::new(),
            starting: 0,
            taken: VecDeque::new(),
        }
    }

    /// No hook of this kind started within the demand window.
    fn idle(&self, now: Instant) -> bool {
        self.taken
            .back()
            .is_none_or(|t| now.saturating_duration_since(*t) > DEMAND_WINDOW)
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

    fn kind_on(uid: u32, seeded: bool) -> Kind {
        Kind::new(KindOf {
            key: String::new(),
            line: Arc::new(b"{}\n".to_vec()),
            seeded,
            uid,
            family: String::new(),
        })
    }

    fn kind() -> Kind {
        kind_on(0, false)
    }

    /// One bot's kind on `uid`.
    fn bot_on(uid: u32, bot: &str) -> Kind {
        let mut k = kind_on(uid, true);
        k.family = bot.to_string();
        k
    }

    /// A stand-in for a ready runner: a process that waits.
    fn waiting() -> WarmProcess {
        let mut child = command(std::path::Path::new("/bin/sleep"))
            .arg("600")
            .spawn()
            .unwrap();
        WarmProcess {
            pipes: Pipes {
                stdin: child.stdin.take(),
                stdout: child.stdout.take(),
                stderr: child.stderr.take(),
            },
            child,
            born: Instant::now(),
        }
    }

    #[tokio::test]
    async fn waiting_runners_per_uid_are_capped_and_idle_kinds_make_room() {
        let pool = WarmPool::new(
            PathBuf::from("/nonexistent"),
            1,
            8,
            Duration::from_secs(300),
        );
        assert_eq!(pool.per_uid, 4, "a quarter of the hook's 16 threads");
        let long_ago = Instant::now() - 10 * DEMAND_WINDOW;
        let mut kinds = HashMap::new();
        // Four bots' kinds on uid 7, one ready runner each (uid 7 is full),
        // used one after the other, none in the last second.
        for (i, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
            let mut k = bot_on(7, name);
            k.ready.push_back(waiting());
            k.last_used = long_ago + Duration::from_millis(i as u64);
            k.taken.push_back(k.last_used);
            kinds.insert(name.to_string(), k);
        }
        // Another uid has room of its own.
        let mut k = bot_on(8, "x");
        k.taken.push_back(Instant::now());
        kinds.insert("other uid".into(), k);
        let mut evicted = Vec::new();
        assert_eq!(pool.plan(&mut kinds, "other uid", false, &mut evicted), 1);
        // A fifth bot's hook on uid 7: without eviction (maintenance), no
        // room; with it, the least recently used kind's runner makes room.
        let mut e = bot_on(7, "e");
        e.taken.push_back(Instant::now());
        e.last_used = Instant::now();
        kinds.insert("e".into(), e);
        assert_eq!(pool.plan(&mut kinds, "e", false, &mut evicted), 0);
        assert!(evicted.is_empty());
        assert_eq!(pool.plan(&mut kinds, "e", true, &mut evicted), 1);
        assert_eq!(evicted.len(), 1);
        assert!(kinds["a"].ready.is_empty(), "the least recently used");
        assert_eq!(kinds["e"].starting, 1);
        // Its demand met, it wants no more; more demand than the uid has
        // room for takes the next idle kinds' places, one per runner.
        let e = kinds.get_mut("e").unwrap();
        e.taken.extend([Instant::now(); 2]);
        assert_eq!(pool.plan(&mut kinds, "e", true, &mut evicted), 2);
        assert!(kinds["b"].ready.is_empty() && kinds["c"].ready.is_empty());
        assert_eq!(kinds["d"].ready.len(), 1);
        // A kind whose bot had a hook in the last second, on another uid,
        // keeps its runner: with none idle left, the uid is full and the
        // hook goes without.
        let mut d8 = bot_on(8, "d");
        d8.taken.push_back(Instant::now());
        kinds.insert("d on 8".into(), d8);
        let e = kinds.get_mut("e").unwrap();
        e.taken.push_back(Instant::now());
        assert_eq!(pool.plan(&mut kinds, "e", true, &mut evicted), 0);
        assert_eq!(kinds["d"].ready.len(), 1);
        let on_7: usize = kinds
            .values()
            .filter(|k| k.uid == 7)
            .map(|k| k.ready.len() + k.starting)
            .sum();
        assert_eq!(on_7, pool.per_uid);
        // What was evicted is killed with its process group.
        let pids: Vec<u32> = evicted.iter().filter_map(|p| p.child.id()).collect();
        assert_eq!(pids.len(), 3);
        for p in evicted {
            p.kill();
        }
        for pid in pids {
            let gone = loop {
                match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                    Err(_) => break true,
                    Ok(s)
                        if s.rsplit_once(')')
                            .is_some_and(|(_, r)| r.trim_start().starts_with('Z')) =>
                    {
                        break true;
                    }
                    Ok(_) => tokio::task::yield_now().await,
                }
            };
            assert!(gone);
        }
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
        k.starting = 1;
        assert_eq!(pool.deficit(&mut k), 0, "one is already being started");
        let now = Instant::now();
        k.taken.extend([now, now, now]);
        assert_eq!(pool.deficit(&mut k), 2, "three hooks in the last second");
        k.starting = 3;
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
        let mut k = kind_on(0, true);
        assert_eq!(pool.deficit(&mut k), 0, "no floor");
        assert!(k.forgettable());
        k.taken.push_back(now);
        assert_eq!(pool.deficit(&mut k), 1, "a hook in the last second");
        k.starting = 1;
        assert!(!k.forgettable(), "one being started");
        k.starting = 0;
        k.taken[0] = now - 2 * DEMAND_WINDOW;
        assert_eq!(pool.deficit(&mut k), 0);
        assert!(k.forgettable());
        assert!(!kind().forgettable(), "kinds without a hash seed stay");
    }

    #[tokio::test]
    async fn a_hook_goes_to_a_uid_its_bot_has_a_runner_on_else_the_emptiest() {
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
        job.hash_seed = Some(7);
        let pool = WarmPool::new(
            PathBuf::from("/nonexistent"),
            1,
            4,
            Duration::from_secs(300),
        );
        let family = pool.kind_of(&job).unwrap().family;
        {
            let mut kinds = lock(&pool.kinds);
            // The bot has a runner on uid 7; another bot two on uid 8 and
            // one on uid 9 (being started).
            let mut mine = bot_on(7, &family);
            mine.ready.push_back(waiting());
            kinds.insert("mine".into(), mine);
            let mut other = bot_on(8, "other");
            other.ready.extend([waiting(), waiting()]);
            kinds.insert("other".into(), other);
            let mut third = bot_on(9, "third");
            third.starting = 1;
            kinds.insert("third".into(), third);
        }
        assert_eq!(
            pool.pick_uid(&job, &[8, 7, 9, 10]),
            Some(1),
            "its own runner"
        );
        assert_eq!(
            pool.pick_uid(&job, &[8, 9, 10, 11]),
            Some(3),
            "the last of the emptiest"
        );
        assert_eq!(pool.pick_uid(&job, &[8, 9]), Some(1), "the emptier");
        assert_eq!(pool.pick_uid(&job, &[]), None);
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
        let of = pool.kind_of(&job).unwrap();
        let (plain, seeded) = (of.key, of.seeded);
        assert!(!seeded);
        // A hook whose hash seed would come from its own entropy: never.
        let bot_seed: hook_protocol::Entropy = "00".repeat(32).parse().unwrap();
        job.entropy = Some(hook_protocol::Entropy::for_hook(&bot_seed, 1));
        assert!(pool.kind_of(&job).is_none());
        assert!(pool.take(&job).is_none());
        // With the bot's hash seed: one kind per bot, whatever the hook's
        // entropy.
        job.hash_seed = Some(crate::bots::seed::hash_seed(&bot_seed));
        let of = pool.kind_of(&job).unwrap();
        let (first, seeded, family) = (of.key, of.seeded, of.family);
        assert!(seeded && first != plain);
        // The same bot on another uid: another kind of the same family.
        job.runtime.sandbox_uid += 1;
        let of = pool.kind_of(&job).unwrap();
        assert!(of.key != first && of.family == family && of.uid == job.runtime.sandbox_uid);
        job.runtime.sandbox_uid -= 1;
        job.entropy = Some(hook_protocol::Entropy::for_hook(&bot_seed, 2));
        assert_eq!(pool.kind_of(&job).unwrap().key, first);
        job.hash_seed = Some(crate::bots::seed::hash_seed(&bot_seed) ^ 1);
        assert_ne!(pool.kind_of(&job).unwrap().key, first);
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
