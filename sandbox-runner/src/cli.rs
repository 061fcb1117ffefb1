//! Command line, job input and outcome output; the exit code follows the
//! outcome (see `hook_protocol::exit`).

use crate::{namespaces, policy, sandbox};
use hook_protocol::{HookError, HookJob, HookOutcome, MAX_JOB_BYTES, WarmSpec, exit};
use std::io::{Read, Write};
use std::time::Instant;

/// The exit code documented for an outcome.
pub fn exit_code(o: &HookOutcome) -> i32 {
    match o {
        HookOutcome::Ok { .. } => exit::OK,
        HookOutcome::Error { error } => match error {
            HookError::Timeout { .. } => exit::TIMEOUT,
            HookError::Memory { .. } => exit::MEMORY,
            HookError::OutputOverrun { .. } => exit::OUTPUT_OVERRUN,
            HookError::Confinement { .. } => exit::CONFINEMENT_FAILED,
            HookError::Internal { .. } => exit::INTERNAL,
            HookError::Syntax { .. }
            | HookError::Policy { .. }
            | HookError::Exception { .. }
            | HookError::Limit { .. } => exit::HOOK_FAILED,
        },
    }
}

fn emit(o: &HookOutcome, code: i32) -> i32 {
    write_outcome(o);
    code
}

/// Writes `o` as one JSON line on stdout (its short reason on stderr when it
/// is an error): what the daemon reads of a hook, one-shot or templated.
pub fn write_outcome(o: &HookOutcome) {
    if let HookOutcome::Error { error } = o {
        eprintln!("sandbox-runner: {}", error.short_reason());
    }
    let text = serde_json::to_string(o).unwrap_or_else(|_| {
        r#"{"status":"error","error":{"kind":"internal","message":"unserializable outcome"}}"#
            .into()
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn bad_job(message: String) -> i32 {
    let o = HookOutcome::Error {
        error: HookError::internal(message),
    };
    emit(&o, exit::BAD_JOB)
}

const USAGE: &str = "usage: sandbox-runner [--trace-steps] [--unchecked-language-layer] < job.json\n       sandbox-runner --prewarm [--trace-steps] [--unchecked-language-layer] < spec-line+job.json\n       sandbox-runner --template [--unchecked-language-layer] < spec-line+job-lines\n       sandbox-runner policy --json";

/// Largest [`WarmSpec`] line a pre-warmed runner reads.
const MAX_SPEC_BYTES: usize = 64 * 1024;

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let started = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("policy") {
        if args.get(1).map(String::as_str) != Some("--json") {
            eprintln!("{USAGE}");
            return exit::BAD_JOB;
        }
        println!("{}", policy::policy_json());
        return exit::OK;
    }
    let mut opts = sandbox::Options::default();
    let mut prewarm = false;
    let mut template = false;
    for a in &args {
        match a.as_str() {
            // Confine ahead of the job: README.md, "Pre-warmed sandboxes".
            "--prewarm" => prewarm = true,
            // Fork one child per hook: README.md, "Fork templates".
            "--template" => template = true,
            // Test-only: see README.md, "The attack suite".
            "--unchecked-language-layer" => opts.unchecked_language_layer = true,
            "--trace-steps" => opts.trace_steps = true,
            _ => {
                eprintln!("{USAGE}");
                return exit::BAD_JOB;
            }
        }
    }

    // Before anything else: nothing inherited, die with the daemon, own session.
    if let Err(e) = namespaces::close_inherited_fds() {
        return emit(&confinement("fds", e.to_string()), exit::CONFINEMENT_FAILED);
    }
    if let Err(e) = namespaces::die_with_parent() {
        return emit(
            &confinement("namespaces", e.to_string()),
            exit::CONFINEMENT_FAILED,
        );
    }
    // Fails only when already a group leader (e.g. started from a shell with
    // job control); the session then is already our own.
    let _ = namespaces::new_session();

    if prewarm || template {
        return warm_main(&opts, started, template);
    }
    let mut buf = Vec::new();
    let stdin = std::io::stdin();
    if let Err(e) = stdin
        .lock()
        .take(MAX_JOB_BYTES as u64 + 1)
        .read_to_end(&mut buf)
    {
        return bad_job(format!("reading the job: {e}"));
    }
    if buf.len() > MAX_JOB_BYTES {
        return bad_job(format!("job larger than {MAX_JOB_BYTES} bytes"));
    }
    let job: HookJob = match serde_json::from_slice(&buf) {
        Ok(j) => j,
        Err(e) => return bad_job(format!("malformed job: {e}")),
    };
    if let Some(problem) = job.version_problem() {
        return bad_job(problem);
    }
    for list in [&job.network.allow_cidrs, &job.network.deny_cidrs] {
        if let Err(e) = policy::parse_cidrs(list) {
            return bad_job(format!("network policy: {e}"));
        }
    }
    let outcome = sandbox::run(&job, &opts, started);
    let code = exit_code(&outcome);
    emit(&outcome, code)
}

/// `--prewarm`: one line holding a [`WarmSpec`], then (any time within its
/// `idle_ms`) one job to EOF.
fn warm_main(opts: &sandbox::Options, started: Instant, template: bool) -> i32 {
    let (line, rest) = match read_spec_line() {
        Ok(v) => v,
        Err(e) => return bad_job(e),
    };
    let spec: WarmSpec = match serde_json::from_slice(&line) {
        Ok(s) => s,
        Err(e) => return bad_job(format!("malformed warm spec: {e}")),
    };
    if spec.version != hook_protocol::PROTOCOL_VERSION {
        return bad_job(format!(
            "warm spec version {} (this runner speaks {})",
            spec.version,
            hook_protocol::PROTOCOL_VERSION
        ));
    }
    for list in [&spec.network.allow_cidrs, &spec.network.deny_cidrs] {
        if let Err(e) = policy::parse_cidrs(list) {
            return bad_job(format!("network policy: {e}"));
        }
    }
    if template {
        return crate::template::serve(&spec, opts, started, rest);
    }
    match sandbox::prewarm(&spec, opts, started, rest) {
        sandbox::WarmEnd::Outcome(o) => {
            let code = exit_code(&o);
            emit(&o, code)
        }
        sandbox::WarmEnd::NoJob(why) => bad_job(why),
    }
}

/// The spec line (without its newline) and whatever followed it in the
/// same reads (the start of the job).
fn read_spec_line() -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    // The raw descriptor, not `Stdin`'s buffer: what follows the line must
    // stay unread for the job (or be returned in `rest`).
    let stdin = std::io::stdin();
    let fd = std::os::fd::AsFd::as_fd(&stdin);
    loop {
        if let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let rest = buf.split_off(i + 1);
            buf.pop();
            return Ok((buf, rest));
        }
        if buf.len() > MAX_SPEC_BYTES {
            return Err(format!("warm spec longer than {MAX_SPEC_BYTES} bytes"));
        }
        match nix::unistd::read(fd, &mut chunk) {
            Ok(0) => return Err("stdin closed before the warm spec line ended".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("reading the warm spec: {e}")),
        }
    }
}

fn confinement(step: &str, message: String) -> HookOutcome {
    HookOutcome::Error {
        error: HookError::Confinement {
            step: step.into(),
            message,
        },
    }
}
