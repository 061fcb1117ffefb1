//! What runs a hook: the [`HookRunner`] seam, and its real implementation,
//! which spawns `sandbox-runner` for each hook.
//!
//! The daemon never forks itself (it is a multi-threaded tokio process): it
//! spawns the runner binary with pipes, in its own process group, writes the
//! job, and reads at most [`MAX_RESULT_BYTES`] of result. If the runner
//! overruns the wall deadline (plus a grace for its own clean-up) the daemon
//! kills the whole process group.

use hook_protocol::{HookError, HookJob, HookOutcome, MAX_RESULT_BYTES, exit};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Time the runner gets beyond the hook's wall limit to report by itself.
const GRACE: Duration = Duration::from_millis(1500);

/// A boxed future, so that [`HookRunner`] can be used as a trait object.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs one hook job to its outcome. Every failure (a crash, a timeout, a
/// runner that cannot start) is a [`HookOutcome::Error`], never a panic.
pub(crate) trait HookRunner: Send + Sync + 'static {
    fn run<'a>(&'a self, job: &'a HookJob) -> BoxFuture<'a, HookOutcome>;
}

/// The real runner: a fresh, confined `sandbox-runner` process per hook.
pub(crate) struct Sandbox {
    /// Path of the `sandbox-runner` binary.
    pub runner: PathBuf,
}

impl HookRunner for Sandbox {
    fn run<'a>(&'a self, job: &'a HookJob) -> BoxFuture<'a, HookOutcome> {
        Box::pin(run_job(&self.runner, job))
    }
}

/// Runs one job and returns its outcome. Never panics; every failure is a
/// [`HookOutcome::Error`].
async fn run_job(runner: &Path, job: &HookJob) -> HookOutcome {
    let input = match serde_json::to_vec(job) {
        Ok(v) => v,
        Err(e) => return internal(format!("cannot encode job: {e}")),
    };
    let mut cmd = tokio::process::Command::new(runner);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
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
    let pid = child.id();
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let deadline = Duration::from_millis(job.limits.wall_ms) + GRACE;
    let work = async {
        if let Some(mut s) = stdin.take() {
            // A runner that refuses the job closes stdin early; its exit
            // status says why.
            let _ = s.write_all(&input).await;
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
            return HookOutcome::Error {
                error: HookError::Timeout {
                    message: format!("hook exceeded its {} ms wall time", job.limits.wall_ms),
                },
            };
        }
    };
    kill_group(pid);
    if out.len() > MAX_RESULT_BYTES {
        return HookOutcome::Error {
            error: HookError::OutputOverrun {
                message: format!("runner output exceeded {MAX_RESULT_BYTES} bytes"),
            },
        };
    }
    let code = status.ok().and_then(|s| s.code());
    match serde_json::from_slice::<HookOutcome>(&out) {
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
    }
}

fn internal(message: String) -> HookOutcome {
    HookOutcome::Error {
        error: HookError::Internal { message },
    }
}

/// Kills the runner's process group (it leads its own group).
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
