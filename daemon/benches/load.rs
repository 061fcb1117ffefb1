//! Load generator for the daemon core: durable `post_message`
//! throughput and latency, long-poll wake latency with many waiters, RSS.
//!
//! Run it with `cargo bench -p mcp-multiplayer --bench load`. It starts the
//! release build of `mcp-multiplayer serve` (the binary cargo built for this
//! bench, or `MCPMP_BIN`) on 127.0.0.1:0 with a fresh state directory on the
//! same disk as the system's temporary directory, talks real MCP Streamable
//! HTTP to it, and prints Markdown tables (the ones in BENCHMARKS.md).
//!
//! Knobs (environment): `LOAD_SECS` measured seconds per concurrency level
//! (default 5, after 1 s of warm-up), `LOAD_WAITERS` long-poll waiters
//! (default 1000), `LOAD_WAKE_CHANNELS` channels they wait on (default 100),
//! `LOAD_PROTOCOLS` which MCP revisions to drive (`session,sessionless`),
//! `LOAD_ONLY` one part (`post`, `wake`, `herd`: only the one-channel wake
//! of all waiters, or `stores`), `LOAD_HERD_ROUNDS` posts to the herd
//! (default 3, the first not counted), `LOAD_IDLE_SECS` the wait before the
//! last memory reading (default 65), `LOAD_REARM_DELAY_MS` how long a
//! waiter waits after each answer before its next long-poll (default 0: at
//! once; a delay models clients a network round trip away, whose next
//! requests do not reach the daemon while it is still answering the herd).
//! `BENCH_QUOTAS=0` leaves the `[quotas]` and `[http]` sections out of the daemon's config
//! (for a daemon that predates it, run through `MCPMP_BIN`).
//!
//! `LOAD_ONLY=stores` compares the stores instead (docs/scale-out.md): the
//! same durable `post_message` load (`LOAD_LEVELS`, default 64 clients, 8 per
//! channel) against one daemon on SQLite, one daemon on PostgreSQL and two
//! daemons on one PostgreSQL database (clients alternate between the two, so
//! every channel has writers on both), in one run; then, for each setup, one
//! long-poll on each of `LOAD_WAKE_CHANNELS` channels (default 100) on the
//! last daemon, woken by posts made through the first (with two daemons, a
//! wake-up heard through PostgreSQL's notifications). `LOAD_POSTGRES` is the URL
//! of a database the bench may create schemas in (each setup gets a fresh
//! one); `tests/steps/50-postgres.sh` shows how to start a throw-away server.
//!
//! Two protocol modes: `session` speaks 2025-06-18 with an `initialize`
//! handshake and an `Mcp-Session-Id` per client (what most clients do today);
//! `sessionless` speaks 2026-07-28, every request self-contained.
//!
//! The load generator shares the machine's cores with the daemon, so the
//! numbers are what one box does with both; they are lower bounds for the
//! daemon alone. To take less of them, the long-poll waiters run on one
//! thread of their own and speak HTTP/1.1 by hand (`RawWaiter`): still a
//! complete MCP `tools/call` of `sync_messages` per request, every answer
//! checked.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

type Res<T> = Result<T, String>;

/// Clients that post into one channel (slots `p0`..`p7`).
const PER_CHANNEL: usize = 8;
const LEVELS: [usize; 4] = [1, 8, 32, 64];
/// Clock ticks per second of `/proc/PID/stat` times (USER_HZ; 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;
const WARMUP: Duration = Duration::from_secs(1);

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn main() {
    // Benches get `--bench` from cargo; nothing to parse.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("load: {e}");
        std::process::exit(1);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    /// 2025-06-18: `initialize`, then requests in an `Mcp-Session-Id`.
    Session,
    /// 2026-07-28: no handshake; every request carries its protocol context.
    Sessionless,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Session => "2025-06-18 (session)",
            Proto::Sessionless => "2026-07-28 (sessionless)",
        }
    }
}

async fn run() -> Res<()> {
    let secs = env_num("LOAD_SECS", 5);
    let waiters = env_num("LOAD_WAITERS", 1000) as usize;
    let wake_channels = env_num("LOAD_WAKE_CHANNELS", 100) as usize;
    let protos: Vec<Proto> = std::env::var("LOAD_PROTOCOLS")
        .unwrap_or_else(|_| "session,sessionless".into())
        .split(',')
        .filter_map(|p| match p.trim() {
            "session" => Some(Proto::Session),
            "sessionless" => Some(Proto::Sessionless),
            _ => None,
        })
        .collect();
    let measure = Duration::from_secs(secs);
    let levels: Vec<usize> = std::env::var("LOAD_LEVELS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| LEVELS.to_vec());
    let only = std::env::var("LOAD_ONLY").unwrap_or_default();
    if only == "stores" {
        return stores(measure).await;
    }

    let dir = std::env::temp_dir().join(format!("mcpmp-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let max_clients = *levels.iter().max().unwrap_or(&1);
    let tokens: Vec<String> = (0..max_clients)
        .map(|i| create_token(&dir, &format!("poster{i}")))
        .collect::<Res<_>>()?;
    let waiter_token = create_token(&dir, "waiter")?;
    let wake_poster_token = create_token(&dir, "wake-poster")?;

    let daemon = Daemon::start(&dir)?;
    let rss_start = rss(daemon.pid());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .build()
        .map_err(|e| e.to_string())?;
    let url = daemon.mcp_url();
    println!(
        "machine: {} cores, {} GiB RAM; daemon {} (pid {}); state on {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_gib(),
        daemon.bin.display(),
        daemon.pid(),
        dir.display()
    );
    println!(
        "load average before the run: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    // Posting channels: clients 8g..8g+7 share channel g.
    let mut post_channels = Vec::new();
    for g in 0..max_clients.div_ceil(PER_CHANNEL) {
        let members: Vec<&String> = tokens
            .iter()
            .skip(g * PER_CHANNEL)
            .take(PER_CHANNEL)
            .collect();
        let cid = make_channel(&http, &url, &members, &format!("load-{g}")).await?;
        post_channels.push(cid);
    }

    if only.is_empty() || only == "post" {
        println!();
        println!(
            "### Durable post_message ({secs} s per level after {} s warm-up)",
            WARMUP.as_secs()
        );
        println!();
        println!(
            "CPU columns: CPU time the daemon and the load generator used per acknowledged post during the whole level (warm-up included)."
        );
        println!();
        println!(
            "| protocol | clients | posts/s | p50 ms | p99 ms | max ms | daemon CPU µs/post | loadgen CPU µs/post |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for &proto in &protos {
            for &n in &levels {
                let cpu0 = (cpu_secs(daemon.pid()), cpu_secs(std::process::id()));
                let r =
                    post_load(&http, &url, proto, &tokens[..n], &post_channels, measure).await?;
                let d = cpu_secs(daemon.pid()) - cpu0.0;
                let g = cpu_secs(std::process::id()) - cpu0.1;
                let per = |c: f64| c * 1e6 / r.total.max(1) as f64;
                println!(
                    "| {} | {n} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} |",
                    proto.name(),
                    r.rate,
                    ms(pct(&r.lat, 50.0)),
                    ms(pct(&r.lat, 99.0)),
                    ms(r.lat.last().copied().unwrap_or_default()),
                    per(d),
                    per(g),
                );
            }
        }
    }

    // Wake latency: `waiters` long-polls spread over `wake_channels`
    // channels; one post per channel in turn.
    let mut wake_ids = Vec::new();
    for k in 0..wake_channels.max(1) {
        let members = [&wake_poster_token, &waiter_token];
        wake_ids.push(make_channel(&http, &url, &members, &format!("wake-{k}")).await?);
    }
    let herd_id = make_channel(&http, &url, &[&wake_poster_token, &waiter_token], "herd").await?;
    println!();
    println!("### Long-poll wake latency ({waiters} waiting sync_messages calls)");
    println!();
    println!(
        "Latency from just before the post is sent (and, in brackets, from its acknowledgement) to each waiter's return. CPU columns: CPU time per wake-up during the counted rounds, the waiters' next long-polls included."
    );
    println!();
    println!(
        "| protocol | waiters | layout | wakes | p50 ms | p99 ms | max ms | daemon CPU µs/wake | loadgen CPU µs/wake |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|");
    let herd_rounds = env_num("LOAD_HERD_ROUNDS", 3).max(2) as usize;
    for &proto in protos
        .iter()
        .filter(|_| only.is_empty() || only == "wake" || only == "herd")
    {
        if only != "herd" {
            let spread = wake_load(
                std::slice::from_ref(&daemon.pid()),
                &http,
                (&url, &url),
                proto,
                &waiter_token,
                &wake_poster_token,
                &wake_ids,
                waiters,
                2,
            )
            .await?;
            print_wake(
                proto,
                waiters,
                &format!(
                    "{} channels, one post wakes {}",
                    wake_ids.len(),
                    waiters / wake_ids.len()
                ),
                &spread,
            );
        }
        let herd = wake_load(
            std::slice::from_ref(&daemon.pid()),
            &http,
            (&url, &url),
            proto,
            &waiter_token,
            &wake_poster_token,
            std::slice::from_ref(&herd_id),
            waiters,
            herd_rounds,
        )
        .await?;
        print_wake(
            proto,
            waiters,
            &format!("1 channel, one post wakes all {waiters}"),
            &herd,
        );
    }

    // Let the server drop finished connections and sessions' work.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss(daemon.pid());
    // rmcp keeps a session's finished-request caches for 60 s and idle
    // sessions for 5 min; measure again once the former have gone.
    let idle_secs = env_num("LOAD_IDLE_SECS", 65);
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let rss_idle = rss(daemon.pid());
    println!();
    println!("### Daemon memory");
    println!();
    println!("| when | VmRSS | VmHWM (peak) |");
    println!("|---|---:|---:|");
    println!(
        "| idle after start | {} | {} |",
        kib(rss_start.0),
        kib(rss_start.1)
    );
    println!(
        "| idle after the load above | {} | {} |",
        kib(rss_after.0),
        kib(rss_after.1)
    );
    println!(
        "| {idle_secs} s after that | {} | {} |",
        kib(rss_idle.0),
        kib(rss_idle.1)
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// One store setup of the `stores` mode.
struct Setup {
    name: &'static str,
    daemons: usize,
    /// The database environment of its daemons and token commands.
    env: Vec<(String, String)>,
}

/// `LOAD_ONLY=stores`: SQLite, PostgreSQL with one daemon, PostgreSQL with two.
async fn stores(measure: Duration) -> Res<()> {
    let pg = std::env::var("LOAD_POSTGRES")
        .map_err(|_| "LOAD_ONLY=stores needs LOAD_POSTGRES=postgres://USER@HOST/DB (a database the bench may create schemas in)".to_string())?;
    let levels: Vec<usize> = std::env::var("LOAD_LEVELS")
        .unwrap_or_else(|_| "64".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let max_clients = *levels.iter().max().unwrap_or(&64);
    let schema_url = |tag: &str| -> Res<Vec<(String, String)>> {
        let schema = format!("bench_{tag}_{}", std::process::id());
        let url = pg.clone();
        let s = schema.clone();
        // The synchronous client may not run on the runtime's threads.
        std::thread::spawn(move || -> Res<()> {
            use std::str::FromStr;
            let mut c = postgres::Config::from_str(&url)
                .map_err(|e| e.to_string())?
                .connect(postgres::NoTls)
                .map_err(|e| format!("LOAD_POSTGRES: {e}"))?;
            c.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {s} CASCADE; CREATE SCHEMA {s}"
            ))
            .map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| "schema thread panicked".to_string())??;
        let sep = if pg.contains('?') { '&' } else { '?' };
        Ok(vec![(
            "MCP_MULTIPLAYER_DATABASE".into(),
            format!("{pg}{sep}options=-c%20search_path%3D{schema}"),
        )])
    };
    let setups = [
        Setup {
            name: "SQLite",
            daemons: 1,
            env: vec![("MCP_MULTIPLAYER_DATABASE".into(), "sqlite".into())],
        },
        Setup {
            name: "PostgreSQL",
            daemons: 1,
            env: schema_url("one")?,
        },
        Setup {
            name: "PostgreSQL",
            daemons: 2,
            env: schema_url("two")?,
        },
    ];
    println!(
        "machine: {} cores, {} GiB RAM; load average before the run: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_gib(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!();
    println!(
        "### Durable post_message by store ({} s per level after {} s warm-up, 2025-06-18 sessions, {PER_CHANNEL} clients per channel)",
        measure.as_secs(),
        WARMUP.as_secs()
    );
    println!();
    println!(
        "| store | daemons | clients | posts/s | p50 ms | p99 ms | max ms | daemons' CPU µs/post | load average after |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let wake_channels = env_num("LOAD_WAKE_CHANNELS", 100).max(1) as usize;
    let mut wakes = Vec::new();
    for setup in &setups {
        let root = std::env::temp_dir().join(format!(
            "mcpmp-load-stores-{}-{}",
            std::process::id(),
            setup.daemons
        ));
        let dirs: Vec<PathBuf> = (0..setup.daemons)
            .map(|i| root.join(format!("d{i}")))
            .collect();
        for d in &dirs {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        let tokens: Vec<String> = (0..max_clients)
            .map(|i| create_token_env(&dirs[0], &format!("poster{i}"), &setup.env))
            .collect::<Res<_>>()?;
        let waiter_token = create_token_env(&dirs[0], "waiter", &setup.env)?;
        let wake_poster_token = create_token_env(&dirs[0], "wake-poster", &setup.env)?;
        let daemons: Vec<Daemon> = dirs
            .iter()
            .map(|d| Daemon::start_env(d, &setup.env))
            .collect::<Res<_>>()?;
        let urls: Vec<String> = daemons.iter().map(Daemon::mcp_url).collect();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(usize::MAX)
            .build()
            .map_err(|e| e.to_string())?;
        let mut channels = Vec::new();
        for g in 0..max_clients.div_ceil(PER_CHANNEL) {
            let members: Vec<&String> = tokens
                .iter()
                .skip(g * PER_CHANNEL)
                .take(PER_CHANNEL)
                .collect();
            channels.push(make_channel(&http, &urls[0], &members, &format!("store-{g}")).await?);
        }
        for &n in &levels {
            let cpu0: f64 = daemons.iter().map(|d| cpu_secs(d.pid())).sum();
            let r = post_load_on(
                &http,
                &urls,
                Proto::Session,
                &tokens[..n],
                &channels,
                measure,
            )
            .await?;
            let cpu = daemons.iter().map(|d| cpu_secs(d.pid())).sum::<f64>() - cpu0;
            println!(
                "| {} | {} | {n} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {} |",
                setup.name,
                setup.daemons,
                r.rate,
                ms(pct(&r.lat, 50.0)),
                ms(pct(&r.lat, 99.0)),
                ms(r.lat.last().copied().unwrap_or_default()),
                cpu * 1e6 / r.total.max(1) as f64,
                std::fs::read_to_string("/proc/loadavg")
                    .unwrap_or_default()
                    .split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        // One long-poll on each of `wake_channels` channels, on the last
        // daemon; the posts that wake them go through the first (with two
        // daemons, a commit heard through PostgreSQL's notifications).
        let mut wake_ids = Vec::new();
        for k in 0..wake_channels {
            let members = [&wake_poster_token, &waiter_token];
            wake_ids.push(make_channel(&http, &urls[0], &members, &format!("wake-{k}")).await?);
        }
        let pids: Vec<u32> = daemons.iter().map(Daemon::pid).collect();
        let w = wake_load(
            &pids,
            &http,
            (&urls[0], &urls[urls.len() - 1]),
            Proto::Session,
            &waiter_token,
            &wake_poster_token,
            &wake_ids,
            wake_ids.len(),
            3,
        )
        .await?;
        wakes.push(format!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0} |",
            setup.name,
            setup.daemons,
            w.from_ack.len(),
            w.p(&w.from_ack, 50.0),
            w.p(&w.from_ack, 99.0),
            w.p(&w.from_ack, 100.0),
            w.cpu.0 * 1e6 / w.from_ack.len().max(1) as f64,
        ));
        drop(daemons);
        let _ = std::fs::remove_dir_all(&root);
    }
    println!();
    println!(
        "### Long-poll wake by store ({wake_channels} channels, one waiting sync_messages each on the last daemon, posts through the first; 2 rounds after 1 of warm-up)"
    );
    println!();
    println!(
        "Latency from the post's acknowledgement to the waiter's return; with two daemons the waiter hears of the post through PostgreSQL's notification. CPU: the daemons', per post and the wake-up it makes (the waiter's next long-poll included)."
    );
    println!();
    println!(
        "| store | daemons | wakes | p50 ms | p99 ms | max ms | daemons' CPU µs/post and wake |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in &wakes {
        println!("{row}");
    }
    Ok(())
}

fn print_wake(proto: Proto, waiters: usize, layout: &str, w: &Wake) {
    println!(
        "| {} | {waiters} | {layout} | {} | {:.2} ({:.2}) | {:.2} ({:.2}) | {:.2} ({:.2}) | {:.0} | {:.0} |",
        proto.name(),
        w.from_send.len(),
        w.p(&w.from_send, 50.0),
        w.p(&w.from_ack, 50.0),
        w.p(&w.from_send, 99.0),
        w.p(&w.from_ack, 99.0),
        w.p(&w.from_send, 100.0),
        w.p(&w.from_ack, 100.0),
        w.cpu.0 * 1e6 / w.from_send.len().max(1) as f64,
        w.cpu.1 * 1e6 / w.from_send.len().max(1) as f64,
    );
}

struct PostResult {
    rate: f64,
    lat: Vec<Duration>,
    /// Posts acknowledged during the whole level, warm-up included.
    total: u64,
}

/// `clients` post as fast as they can, each waiting for its acknowledgement
/// before the next post; only posts started after the warm-up count.
async fn post_load(
    http: &reqwest::Client,
    url: &str,
    proto: Proto,
    tokens: &[String],
    channels: &[String],
    measure: Duration,
) -> Res<PostResult> {
    post_load_on(http, &[url.to_string()], proto, tokens, channels, measure).await
}

/// [`post_load`] with the clients spread over several daemons (client `i`
/// on `urls[i % urls.len()]`).
async fn post_load_on(
    http: &reqwest::Client,
    urls: &[String],
    proto: Proto,
    tokens: &[String],
    channels: &[String],
    measure: Duration,
) -> Res<PostResult> {
    let mut clients = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let url = &urls[i % urls.len()];
        clients.push(Client::connect(http.clone(), url, t, proto).await?);
    }
    let start = Instant::now() + Duration::from_millis(50);
    let warm_end = start + WARMUP;
    let end = warm_end + measure;
    let mut tasks = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let cid = channels[i / PER_CHANNEL].clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let mut lat = Vec::new();
            let mut n = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let body = format!(
                    "message {n} from p{}: hello, this is a benchmark post",
                    i % PER_CHANNEL
                );
                c.call("post_message", json!({"channel_id": cid, "body": body}))
                    .await?;
                n += 1;
                if t0 >= warm_end && Instant::now() <= end {
                    lat.push(t0.elapsed());
                }
            }
            Ok::<_, String>((lat, n))
        }));
    }
    let mut lat = Vec::new();
    let mut total = 0;
    for t in tasks {
        let (l, n) = t.await.map_err(|e| e.to_string())??;
        lat.extend(l);
        total += n;
    }
    lat.sort();
    Ok(PostResult {
        rate: lat.len() as f64 / measure.as_secs_f64(),
        lat,
        total,
    })
}

/// Signed wake latencies in microseconds.
struct Wake {
    from_send: Vec<i64>,
    from_ack: Vec<i64>,
    /// CPU seconds the daemon and the load generator used during the
    /// counted rounds (waiters re-arming included).
    cpu: (f64, f64),
}

impl Wake {
    fn p(&self, v: &[i64], p: f64) -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i.min(v.len() - 1)] as f64 / 1000.0
    }
}

/// A waiter's report: channel index, the first seq it received, when.
type Report = (usize, i64, Instant);

/// `n_waiters` long-polls through `url`, spread evenly over `channels`; the
/// poster, through `post_url` (the same daemon, or another on the same
/// database), posts to each channel in turn, `rounds` times, and after each
/// post waits until all of that channel's waiters returned with it (they
/// re-arm at once). The first round is warm-up and not recorded.
#[allow(clippy::too_many_arguments)]
async fn wake_load(
    daemon_pids: &[u32],
    http: &reqwest::Client,
    (post_url, url): (&str, &str),
    proto: Proto,
    waiter_token: &str,
    poster_token: &str,
    channels: &[String],
    n_waiters: usize,
    rounds: usize,
) -> Res<Wake> {
    let mut poster = Client::connect(http.clone(), post_url, poster_token, proto).await?;
    let mut cursors = Vec::new();
    for cid in channels {
        let info = poster
            .call("get_channel_info", json!({"channel_id": cid}))
            .await?;
        cursors.push(info["message_count"].as_i64().ok_or("no message_count")?);
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Report>();
    let mut per_channel = vec![0usize; channels.len()];
    let mut raw = Vec::with_capacity(n_waiters);
    for w in 0..n_waiters {
        let k = w % channels.len();
        per_channel[k] += 1;
        let c = Client::connect(http.clone(), url, waiter_token, proto).await?;
        raw.push((k, RawWaiter::open(&c)?, channels[k].clone(), cursors[k]));
    }
    // The waiters run on one thread of their own, each on its own HTTP/1.1
    // connection written and read by hand: a thousand reqwest clients on the
    // bench's runtime used 45-75 µs of CPU per wake-up, taken from the two
    // cores the daemon runs on. They still send a complete MCP request
    // (bearer token, protocol version, session id or `_meta`) and check
    // the status, the JSON-RPC id and `isError` of every answer.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let waiters_thread = std::thread::spawn(move || -> Res<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for (k, w, cid, cursor) in raw {
                let tx = tx.clone();
                set.spawn(async move {
                    let mut w = w.attach()?;
                    w.wait_forever(&cid, cursor, k, &tx).await
                });
            }
            drop(tx);
            let mut stop_rx = stop_rx;
            tokio::select! {
                _ = stop_rx.wait_for(|s| *s) => {}
                Some(Ok(Err(e))) = set.join_next() => {
                    eprintln!("load: a waiter failed: {e}");
                }
            }
            set.abort_all();
        });
        Ok(())
    });
    // The waiters' requests must reach the daemon and subscribe before the
    // first post; nothing tells a client that its long-poll is parked, so
    // give them a moment (this is set-up, not measured).
    tokio::time::sleep(Duration::from_millis(500 + n_waiters as u64)).await;
    let mut out = Wake {
        from_send: Vec::new(),
        from_ack: Vec::new(),
        cpu: (0.0, 0.0),
    };
    let mut cpu0 = (0.0, 0.0);
    for round in 0..rounds {
        if round == 1 || rounds == 1 {
            cpu0 = (cpu_of(daemon_pids), cpu_secs(std::process::id()));
        }
        for (k, cid) in channels.iter().enumerate() {
            let t_send = Instant::now();
            let ack = poster
                .call(
                    "post_message",
                    json!({"channel_id": cid, "body": format!("wake {round}")}),
                )
                .await?;
            let t_ack = Instant::now();
            let seq = ack["seq"].as_i64().ok_or("no seq")?;
            let mut got = 0;
            while got < per_channel[k] {
                let (ch, s, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                    .await
                    .map_err(|_| format!("waiters of channel {k} did not wake within 30 s"))?
                    .ok_or("waiters gone")?;
                if ch != k || s != seq {
                    return Err(format!(
                        "unexpected wake: channel {ch} seq {s}, expected {k} {seq}"
                    ));
                }
                got += 1;
                if round > 0 || rounds == 1 {
                    out.from_send.push(signed_us(at, t_send));
                    out.from_ack.push(signed_us(at, t_ack));
                }
            }
            if channels.len() == 1 && round + 1 < rounds {
                // Everyone re-arms after a herd wake-up; let them park again.
                tokio::time::sleep(Duration::from_millis(500 + n_waiters as u64)).await;
            }
        }
    }
    out.cpu = (
        cpu_of(daemon_pids) - cpu0.0,
        cpu_secs(std::process::id()) - cpu0.1,
    );
    let _ = stop_tx.send(true);
    tokio::task::spawn_blocking(move || waiters_thread.join())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|_| "the waiters' thread panicked")??;
    out.from_send.sort();
    out.from_ack.sort();
    Ok(out)
}

/// `LOAD_REARM_DELAY_MS`: how long a waiter waits before its next long-poll.
fn rearm_delay() -> Option<Duration> {
    static D: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *D.get_or_init(|| {
        let ms = env_num("LOAD_REARM_DELAY_MS", 0);
        (ms > 0).then(|| Duration::from_millis(ms))
    })
}

fn signed_us(at: Instant, from: Instant) -> i64 {
    if at >= from {
        (at - from).as_micros() as i64
    } else {
        -((from - at).as_micros() as i64)
    }
}

/// A channel with one seat per token; the first creates it.
async fn make_channel(
    http: &reqwest::Client,
    url: &str,
    members: &[&String],
    name: &str,
) -> Res<String> {
    let slots: Vec<String> = (0..members.len()).map(|i| format!("p{i}")).collect();
    let mut admin = Client::connect(http.clone(), url, members[0], Proto::Sessionless).await?;
    let v = admin
        .call(
            "create_channel",
            json!({"name": name, "slots": slots, "join_as": "p0"}),
        )
        .await?;
    let cid = v["channel_id"].as_str().ok_or("no channel_id")?.to_string();
    for inv in v["invites"].as_array().ok_or("no invites")? {
        let slot = inv["slot"].as_str().ok_or("no slot")?;
        let i: usize = slot
            .trim_start_matches('p')
            .parse()
            .map_err(|_| "bad slot")?;
        let mut c = Client::connect(http.clone(), url, members[i], Proto::Sessionless).await?;
        c.call("join_channel", json!({"invite_code": inv["invite_code"]}))
            .await?;
    }
    Ok(cid)
}

/// A minimal MCP client: JSON-RPC `tools/call` over Streamable HTTP.
struct Client {
    http: reqwest::Client,
    url: String,
    auth: String,
    proto: Proto,
    session: Option<String>,
    next_id: u64,
}

impl Client {
    async fn connect(http: reqwest::Client, url: &str, token: &str, proto: Proto) -> Res<Client> {
        let mut c = Client {
            http,
            url: url.to_string(),
            auth: format!("Bearer {token}"),
            proto,
            session: None,
            next_id: 1,
        };
        if proto == Proto::Session {
            c.rpc(
                "initialize",
                json!({"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "load", "version": "0"}}),
                None,
            )
            .await?;
            let body = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            c.request(&body, "notifications/initialized", None)
                .send()
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(c)
    }

    fn request(&self, body: &Value, method: &str, name: Option<&str>) -> reqwest::RequestBuilder {
        self.request_text(body.to_string(), method, name)
    }

    fn request_text(
        &self,
        body: String,
        method: &str,
        name: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let version = match self.proto {
            Proto::Session => "2025-06-18",
            Proto::Sessionless => "2026-07-28",
        };
        let mut r = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", &self.auth)
            .header("mcp-protocol-version", version)
            .body(body);
        if let Some(s) = &self.session {
            r = r.header("mcp-session-id", s);
        }
        if self.proto == Proto::Sessionless {
            r = r.header("mcp-method", method);
            if let Some(n) = name {
                r = r.header("mcp-name", n);
            }
        }
        r
    }

    async fn rpc(&mut self, method: &str, mut params: Value, name: Option<&str>) -> Res<Value> {
        let id = self.next_id;
        self.next_id += 1;
        if self.proto == Proto::Sessionless {
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            });
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = self
            .request(&body, method, name)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if let Some(s) = resp.headers().get("mcp-session-id") {
            self.session = s.to_str().ok().map(str::to_string);
        }
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{method}: HTTP {status}: {text}"));
        }
        parse_response(&text, id).ok_or_else(|| format!("{method}: no response {id} in {text}"))
    }

    /// Calls a tool; its structured content, or an error if it failed.
    async fn call(&mut self, tool: &str, args: Value) -> Res<Value> {
        let r = self
            .rpc(
                "tools/call",
                json!({"name": tool, "arguments": args}),
                Some(tool),
            )
            .await?;
        let res = r.get("result").ok_or_else(|| format!("{tool}: {r}"))?;
        if res["isError"].as_bool().unwrap_or(false) {
            return Err(format!("{tool} failed: {}", res["structuredContent"]));
        }
        Ok(res["structuredContent"].clone())
    }
}

/// What a waiter reads of a `sync_messages` result. The clients share the
/// cores with the daemon, so a thousand waiters parse only what the bench
/// needs (serde skips the rest without building it).
#[derive(serde::Deserialize)]
struct WaitReply {
    id: u64,
    result: WaitResult,
}

#[derive(serde::Deserialize)]
struct WaitResult {
    #[serde(rename = "isError", default)]
    is_error: bool,
    #[serde(rename = "structuredContent")]
    structured: WaitSynced,
}

#[derive(serde::Deserialize)]
struct WaitSynced {
    #[serde(default)]
    cursor: i64,
    #[serde(default)]
    messages: Vec<WaitMessage>,
}

#[derive(serde::Deserialize)]
struct WaitMessage {
    seq: i64,
}

/// A waiter's long-polls over one HTTP/1.1 connection of its own, written
/// and read by hand (see `wake_load`).
struct RawWaiter {
    conn: std::net::TcpStream,
    /// The request head up to (not including) `content-length`.
    head: String,
    proto: Proto,
    next_id: u64,
}

/// A [`RawWaiter`] on the runtime that drives it.
struct RawConn {
    conn: tokio::net::TcpStream,
    head: String,
    proto: Proto,
    next_id: u64,
    buf: Vec<u8>,
}

impl RawWaiter {
    /// A connection for `c`'s principal, protocol and session.
    fn open(c: &Client) -> Res<RawWaiter> {
        let rest = c.url.strip_prefix("http://").ok_or("not an http:// URL")?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let conn = std::net::TcpStream::connect(authority).map_err(|e| e.to_string())?;
        conn.set_nodelay(true).map_err(|e| e.to_string())?;
        conn.set_nonblocking(true).map_err(|e| e.to_string())?;
        let version = match c.proto {
            Proto::Session => "2025-06-18",
            Proto::Sessionless => "2026-07-28",
        };
        let mut head = format!(
            "POST /{path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nauthorization: {}\r\nmcp-protocol-version: {version}\r\n",
            c.auth
        );
        if let Some(s) = &c.session {
            head.push_str(&format!("mcp-session-id: {s}\r\n"));
        }
        if c.proto == Proto::Sessionless {
            head.push_str("mcp-method: tools/call\r\nmcp-name: sync_messages\r\n");
        }
        Ok(RawWaiter {
            conn,
            head,
            proto: c.proto,
            next_id: c.next_id,
        })
    }

    /// Registers the connection with the current runtime.
    fn attach(self) -> Res<RawConn> {
        Ok(RawConn {
            conn: tokio::net::TcpStream::from_std(self.conn).map_err(|e| e.to_string())?,
            head: self.head,
            proto: self.proto,
            next_id: self.next_id,
            buf: Vec::with_capacity(16 * 1024),
        })
    }
}

impl RawConn {
    /// Long-polls `cid` from `cursor` again and again, reporting each first
    /// message received; returns only on an error.
    async fn wait_forever(
        &mut self,
        cid: &str,
        mut cursor: i64,
        k: usize,
        tx: &mpsc::UnboundedSender<Report>,
    ) -> Res<()> {
        loop {
            let v = self.wait_sync(cid, cursor).await?;
            let now = Instant::now();
            if let Some(first) = v.messages.first() {
                let _ = tx.send((k, first.seq, now));
            }
            cursor = v.cursor;
            if let Some(d) = rearm_delay() {
                tokio::time::sleep(d).await;
            }
        }
    }

    /// One long-polling `sync_messages` (25 s), read for its first
    /// message's seq and the next cursor.
    async fn wait_sync(&mut self, cid: &str, cursor: i64) -> Res<WaitSynced> {
        use tokio::io::AsyncWriteExt;
        let id = self.next_id;
        self.next_id += 1;
        let meta = match self.proto {
            Proto::Session => "",
            Proto::Sessionless => {
                r#","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#
            }
        };
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"sync_messages","arguments":{{"channel_id":"{cid}","cursor":{cursor},"wait_ms":25000}}{meta}}}}}"#
        );
        let req = format!("{}content-length: {}\r\n\r\n{body}", self.head, body.len());
        self.conn
            .write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let (status, body) = self.response().await?;
        if status != 200 {
            return Err(format!(
                "sync_messages: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        // A JSON body, or SSE whose `data:` line carries the response (the
        // only event of a finished call, after an optional priming event).
        let text = std::str::from_utf8(&body).map_err(|e| e.to_string())?;
        let json = if text.starts_with('{') {
            text
        } else {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim)
                .find(|d| d.starts_with('{'))
                .ok_or_else(|| format!("sync_messages: no response {id} in {text}"))?
        };
        let r: WaitReply = serde_json::from_str(json).map_err(|e| format!("{e}: {json}"))?;
        if r.id != id {
            return Err(format!("sync_messages: answer to {} for {id}", r.id));
        }
        if r.result.is_error {
            return Err(format!("sync_messages failed: {json}"));
        }
        Ok(r.result.structured)
    }

    /// Reads more of the connection into the buffer.
    async fn fill(&mut self) -> Res<()> {
        use tokio::io::AsyncReadExt;
        let n = self
            .conn
            .read_buf(&mut self.buf)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the daemon closed the connection".into());
        }
        Ok(())
    }

    /// One response: its status and body (`Content-Length` or chunked).
    async fn response(&mut self) -> Res<(u16, Vec<u8>)> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|e| e.to_string())?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("no status line")?;
        let mut length = None;
        let mut chunked = false;
        for line in head.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
        self.buf.drain(..head_end);
        let mut body = Vec::new();
        if chunked {
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    self.fill().await?;
                };
                let size_text =
                    std::str::from_utf8(&self.buf[..line_end]).map_err(|e| e.to_string())?;
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|e| format!("chunk size {size_text:?}: {e}"))?;
                // The chunk, then its CRLF (after the last, empty chunk: the
                // CRLF that ends the trailers, which are never sent here).
                while self.buf.len() < line_end + 2 + size + 2 {
                    self.fill().await?;
                }
                body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    break;
                }
            }
        } else {
            let n = length.unwrap_or(0);
            while self.buf.len() < n {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buf[..n]);
            self.buf.drain(..n);
        }
        Ok((status, body))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_response(text: &str, id: u64) -> Option<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return Some(v);
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v["id"].as_u64() == Some(id))
}

/// The release daemon, killed on drop.
struct Daemon {
    child: Child,
    base: String,
    bin: PathBuf,
}

fn daemon_bin() -> PathBuf {
    std::env::var_os("MCPMP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mcp-multiplayer")))
}

impl Daemon {
    fn start(dir: &Path) -> Res<Daemon> {
        Daemon::start_env(dir, &[])
    }

    /// [`Daemon::start`] with `env` naming its database.
    fn start_env(dir: &Path, env: &[(String, String)]) -> Res<Daemon> {
        let bin = daemon_bin();
        // A benchmark measures capacity: per-principal quotas and the caps
        // on one principal's sessions and one address's connections (all
        // the bench's clients share a few tokens and 127.0.0.1) out of the way.
        let cfg = dir.join("bench.toml");
        // `BENCH_QUOTAS=0` leaves the section out, for a daemon that predates it.
        let quotas = std::env::var("BENCH_QUOTAS").map_or(true, |v| v != "0");
        std::fs::write(
            &cfg,
            if !quotas { "" } else { "[quotas]\nposts_per_second = 1e9\npost_burst = 1000000000\nchannels_per_hour = 1000000000\nopen_channels = 1000000000\nmessages_per_channel = 1000000000000\nbytes_per_channel = 1000000000000000\nbytes_per_principal_per_day = 1000000000000000\n[http]\nmax_sessions_per_principal = 100000\nmax_unauthenticated_per_peer = 100000\n" },
        )
        .map_err(|e| format!("writing {}: {e}", cfg.display()))?;
        let mut child = Command::new(&bin)
            .envs(env.iter().cloned())
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&cfg)
            .arg("--state-dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        let base = loop {
            line.clear();
            if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("daemon exited before listening".into());
            }
            if let Some(rest) = line.trim().strip_prefix("mcp-multiplayer listening on ") {
                break rest.to_string();
            }
        };
        let log = dir.join("daemon.log");
        std::thread::spawn(move || {
            if let Ok(mut f) = std::fs::File::create(log) {
                let _ = std::io::copy(&mut reader, &mut f);
            }
        });
        Ok(Daemon { child, base, bin })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn create_token(dir: &Path, name: &str) -> Res<String> {
    create_token_env(dir, name, &[])
}

fn create_token_env(dir: &Path, name: &str, env: &[(String, String)]) -> Res<String> {
    let out = Command::new(daemon_bin())
        .envs(env.iter().cloned())
        .args(["token", "create", name, "--state-dir"])
        .arg(dir)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// (VmRSS, VmHWM) in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User + system CPU seconds a process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / TICKS_PER_SEC
}

/// The CPU seconds of all of `pids`.
fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter().map(|&p| cpu_secs(p)).sum()
}

fn mem_gib() -> u64 {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |k| (k + (1 << 19)) >> 20)
}

fn kib(k: u64) -> String {
    format!("{:.1} MiB", k as f64 / 1024.0)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
