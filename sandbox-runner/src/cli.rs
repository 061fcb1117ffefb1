//! Command line, job input and outcome output; the exit code follows the
//! outcome (see `hook_protocol::exit`).

use crate::{namespaces, policy, sandbox};
use hook_protocol::{HookError, HookJob, HookOutcome, MAX_JOB_BYTES, exit};
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
    code
}

fn bad_job(message: String) -> i32 {
    let o = HookOutcome::Error {
        error: HookError::Internal { message },
    };
    emit(&o, exit::BAD_JOB)
}

const USAGE: &str = "usage: sandbox-runner [--trace-steps] [--unchecked-language-layer] < job.json\n       sandbox-runner policy --json";

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
    for a in &args {
        match a.as_str() {
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

fn confinement(step: &str, message: String) -> HookOutcome {
    HookOutcome::Error {
        error: HookError::Confinement {
            step: step.into(),
            message,
        },
    }
}
