//! Per-hook latency of the built `sandbox-runner`, end to end through the
//! real harness: spawn, confine, run the hook, read the outcome.
//!
//! `cargo bench -p sandbox-runner --bench latency` (as root for root mode, as
//! another user for user-namespace mode). `SANDBOX_BENCH_RUNS` sets the
//! number of runs per case (default 200). Prints p50/p99 of the wall time
//! seen by the caller, of `timings.confine_us` (runner start to the
//! interpreter's exec: the confinement steps' own cost) and of each step
//! (`--trace-steps`), next to bare interpreter start-up and the harness run
//! without the runner. The cases run interleaved, one round after another.

use hook_protocol::{
    BotSpec, Hook, HookContext, HookJob, HookOutcome, Limits, NetworkPolicy, Runtime,
};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TRIVIAL: &str = "class Trivial:\n    def __init__(self, ctx, params):\n        self.ctx = ctx\n    def on_init(self):\n        self.ctx.post('ok', {})\n";
const IMPORTS: &str = "import json, hashlib, random\nclass Imports:\n    def __init__(self, ctx, params):\n        self.ctx = ctx\n    def on_init(self):\n        h = hashlib.sha256(json.dumps({'r': random.random()}).encode()).hexdigest()\n        self.ctx.post('ok', {'h': h})\n";

fn job(source: &str, network: bool) -> HookJob {
    HookJob {
        version: hook_protocol::PROTOCOL_VERSION,
        bot: BotSpec {
            name: "bench".into(),
            source: source.into(),
            params: serde_json::json!({}),
            compiled: None,
        },
        hook: Hook::OnInit,
        context: HookContext {
            channel_id: "ch_bench".into(),
            bot_id: "bot:bench".into(),
            players: vec![],
        },
        state: serde_json::json!({}),
        limits: Limits::default(),
        network: NetworkPolicy {
            allowed: network,
            ..Default::default()
        },
        runtime: Runtime {
            python: "/usr/bin/python3".into(),
            python_args: vec!["-I".into(), "-S".into(), "-B".into()],
            harness_dir: std::env::var_os("SANDBOX_TEST_HARNESS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bots/harness")
                }),
            python_path: vec![],
            sandbox_uid: 65534,
            sandbox_gid: 65534,
            system_dirs: Vec::new(),
        },
        entropy: None,
        now: None,
        hash_seed: None,
    }
}

/// One hook: (wall time, confine_us, per-step micros from `--trace-steps`).
fn once(input: &[u8]) -> (Duration, u64, Vec<(String, u64)>) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sandbox-runner"))
        .arg("--trace-steps")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sandbox-runner");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write job");
    let out = child.wait_with_output().expect("wait");
    let elapsed = start.elapsed();
    let steps = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("sandbox-runner: step ")?;
            let (name, us) = rest.rsplit_once(" +")?;
            Some((name.to_string(), us.strip_suffix(" us")?.parse().ok()?))
        })
        .collect();
    match serde_json::from_slice::<HookOutcome>(&out.stdout) {
        Ok(HookOutcome::Ok { timings, .. }) => (elapsed, timings.confine_us, steps),
        other => panic!(
            "hook failed: {other:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{name:<62} p50 {:>7.2} ms   p99 {:>7.2} ms   (n={})",
        pct(&ms, 0.50),
        pct(&ms, 0.99),
        ms.len()
    );
}

/// One measurement: wall time, and for runner cases `confine_us` and the
/// per-step split.
struct Sample {
    wall_ms: f64,
    confine_ms: Option<f64>,
    steps: Vec<(String, f64)>,
}

/// A case of the benchmark; all cases run interleaved, round by round, so
/// that a burst of load on the machine hits every case alike.
enum Case {
    Bare(&'static [&'static str]),
    UnconfinedHarness(Vec<u8>),
    Runner(Vec<u8>),
}

impl Case {
    fn harness_input(source: &str) -> Vec<u8> {
        let j = job(source, false);
        serde_json::to_vec(&serde_json::json!({
            "bot": j.bot, "hook": j.hook, "context": j.context, "state": j.state,
            "limits": {"max_posts": 20, "max_post_bytes": 65536, "max_state_bytes": 262144,
                       "max_output_bytes": 1048576},
            "network": false, "workspace": "/tmp", "sys_path": [],
        }))
        .expect("input")
    }

    fn runner(source: &str, network: bool) -> Case {
        Case::Runner(serde_json::to_vec(&job(source, network)).expect("job"))
    }

    fn sample(&self) -> Sample {
        match self {
            Case::Bare(args) => {
                let start = Instant::now();
                let st = Command::new("/usr/bin/python3")
                    .args(*args)
                    .status()
                    .expect("python3");
                assert!(st.success());
                Sample {
                    wall_ms: start.elapsed().as_secs_f64() * 1e3,
                    confine_ms: None,
                    steps: vec![],
                }
            }
            Case::UnconfinedHarness(input) => {
                // `sh` only redirects fd 3 for the result.
                let script = format!(
                    "exec /usr/bin/python3 -I -S -B {}/harness.py 3>/dev/null",
                    job("", false).runtime.harness_dir.display()
                );
                let start = Instant::now();
                let mut child = Command::new("/bin/sh")
                    .args(["-c", &script])
                    .stdin(Stdio::piped())
                    .spawn()
                    .expect("sh");
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(input)
                    .expect("write");
                assert!(child.wait().expect("wait").success());
                Sample {
                    wall_ms: start.elapsed().as_secs_f64() * 1e3,
                    confine_ms: None,
                    steps: vec![],
                }
            }
            Case::Runner(input) => {
                let (d, c, steps) = once(input);
                Sample {
                    wall_ms: d.as_secs_f64() * 1e3,
                    confine_ms: Some(c as f64 / 1e3),
                    steps: steps
                        .into_iter()
                        .map(|(n, us)| (n, us as f64 / 1e3))
                        .collect(),
                }
            }
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // useful either: run a short smoke pass unless asked for a real one.
    let runs: usize = std::env::var("SANDBOX_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if std::env::args().any(|a| a == "--bench") {
            200
        } else {
            3
        });
    let mode = if std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
    {
        "root mode"
    } else {
        "user-namespace mode"
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("sandbox-runner latency, {mode}, {cpus} CPUs, {runs} runs per case, interleaved");
    let cases: Vec<(&str, Case)> = vec![
        (
            "bare python -I -S -B -c pass",
            Case::Bare(&["-I", "-S", "-B", "-c", "pass"]),
        ),
        (
            "bare python -c 'import json,hashlib,random'",
            Case::Bare(&["-I", "-S", "-B", "-c", "import json,hashlib,random"]),
        ),
        (
            "unconfined harness, trivial hook",
            Case::UnconfinedHarness(Case::harness_input(TRIVIAL)),
        ),
        (
            "unconfined harness, json,hashlib,random",
            Case::UnconfinedHarness(Case::harness_input(IMPORTS)),
        ),
        ("trivial hook", Case::runner(TRIVIAL, false)),
        ("json,hashlib,random hook", Case::runner(IMPORTS, false)),
        (
            "json,hashlib,random hook, network",
            Case::runner(IMPORTS, true),
        ),
    ];
    for (_, case) in &cases {
        for _ in 0..3 {
            let _ = case.sample(); // warm the page cache
        }
    }
    let mut samples: Vec<Vec<Sample>> = cases.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for (i, (_, case)) in cases.iter().enumerate() {
            samples[i].push(case.sample());
        }
    }
    for ((name, case), samples) in cases.iter().zip(samples) {
        let is_runner = matches!(case, Case::Runner(_));
        let label = if is_runner {
            format!("{name}: whole hook")
        } else {
            name.to_string()
        };
        report(&label, samples.iter().map(|s| s.wall_ms).collect());
        if !is_runner {
            continue;
        }
        report(
            &format!("{name}: confinement (start to exec)"),
            samples.iter().filter_map(|s| s.confine_ms).collect(),
        );
        let mut steps: Vec<(String, Vec<f64>)> = Vec::new();
        for s in &samples {
            for (step, ms) in &s.steps {
                match steps.iter_mut().find(|(n, _)| n == step) {
                    Some((_, v)) => v.push(*ms),
                    None => steps.push((step.clone(), vec![*ms])),
                }
            }
        }
        for (step, ms) in steps {
            report(&format!("    step {step}"), ms);
        }
    }
}
