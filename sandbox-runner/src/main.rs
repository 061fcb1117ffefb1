//! `sandbox-runner`: confines itself, then runs one Python bot hook.
//!
//! Reads one `HookJob` (JSON, at most `MAX_JOB_BYTES`) on stdin, prints one
//! `HookOutcome` on stdout and exits with a code from `hook_protocol::exit`.
//! `sandbox-runner policy --json` prints the syscall and namespace lists the
//! packaging checks read. See README.md for the order of operations.

#[cfg(target_os = "linux")]
mod cli;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod creds;
#[cfg(target_os = "linux")]
mod landlock;
#[cfg(target_os = "linux")]
mod mounts;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod namespaces;
#[cfg(target_os = "linux")]
mod netguard;
#[cfg(target_os = "linux")]
mod policy;
#[cfg(target_os = "linux")]
mod rlimit;
#[cfg(target_os = "linux")]
mod rtnetlink;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod sandbox;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod seccomp;
#[cfg(target_os = "linux")]
mod sockdiag;
#[cfg(target_os = "linux")]
mod template;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod unotify;

#[cfg(target_os = "linux")]
fn main() {
    std::process::exit(cli::main());
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("sandbox-runner: only Linux can confine a hook");
    std::process::exit(hook_protocol::exit::CONFINEMENT_FAILED);
}
