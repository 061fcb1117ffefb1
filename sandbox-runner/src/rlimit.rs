//! Applies the hook's resource limits (computed by `policy::rlimits`).
//!
//! They are set in the hook process before it drops its uid, so the hard
//! limits can be lowered below what an unprivileged user could raise back, and
//! each is read back: a limit that did not take effect fails the hook.

use crate::policy::{Resource, RlimitSetting};
use nix::sys::resource::{Resource as R, getrlimit, setrlimit};

fn resource(r: Resource) -> R {
    match r {
        Resource::Cpu => R::RLIMIT_CPU,
        Resource::AddressSpace => R::RLIMIT_AS,
        Resource::FileSize => R::RLIMIT_FSIZE,
        Resource::OpenFiles => R::RLIMIT_NOFILE,
        Resource::Processes => R::RLIMIT_NPROC,
        Resource::Core => R::RLIMIT_CORE,
        Resource::MemLock => R::RLIMIT_MEMLOCK,
        Resource::MsgQueue => R::RLIMIT_MSGQUEUE,
    }
}

/// Sets every limit and checks it reads back as set.
pub fn apply(settings: &[RlimitSetting]) -> Result<(), String> {
    for &(r, soft, hard) in settings {
        setrlimit(resource(r), soft, hard).map_err(|e| format!("{r:?}: {e}"))?;
        let got = getrlimit(resource(r)).map_err(|e| format!("{r:?}: {e}"))?;
        if got != (soft, hard) {
            return Err(format!(
                "{r:?} reads back as {got:?}, not {:?}",
                (soft, hard)
            ));
        }
    }
    Ok(())
}
