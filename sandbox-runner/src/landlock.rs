//! Landlock for the hook process: read-only (never execute) for the bound
//! trees, execute only for the interpreter and the ELF loader, read-write
//! without execute for the workspace, TCP connect only to the allowed ports,
//! TCP bind never, and signal plus abstract-unix-socket scoping.
//!
//! Handled rights come from ABI 6 (the highest this code was tested
//! against); the ruleset must report `FullyEnforced` or the hook fails.

use crate::policy::{PathAccess, PathRule};
use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

const ABI_USED: ABI = ABI::V6;

/// Landlock rights for one path rule. Read-only means `ReadFile|ReadDir`, not
/// `AccessFs::from_read()`, which includes `Execute`.
pub fn rights(access: PathAccess, is_dir: bool) -> BitFlags<AccessFs> {
    let dir_only = AccessFs::ReadDir
        | AccessFs::RemoveDir
        | AccessFs::RemoveFile
        | AccessFs::MakeChar
        | AccessFs::MakeDir
        | AccessFs::MakeReg
        | AccessFs::MakeSock
        | AccessFs::MakeFifo
        | AccessFs::MakeBlock
        | AccessFs::MakeSym
        | AccessFs::Refer;
    let r = match access {
        PathAccess::ReadOnly => AccessFs::ReadFile | AccessFs::ReadDir,
        PathAccess::Execute => AccessFs::ReadFile | AccessFs::Execute,
        PathAccess::DeviceReadWrite => {
            AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate
        }
        PathAccess::DeviceRead => AccessFs::ReadFile.into(),
        PathAccess::Workspace => {
            AccessFs::from_all(ABI_USED)
                & !AccessFs::Execute
                & !AccessFs::MakeChar
                & !AccessFs::MakeBlock
                & !AccessFs::MakeSock
                & !AccessFs::MakeFifo
                & !AccessFs::IoctlDev
        }
    };
    if is_dir { r } else { r & !dir_only }
}

/// Restricts the calling process (and what it execs) for good.
pub fn restrict_self(rules: &[PathRule], connect_ports: &[u16]) -> Result<(), String> {
    let e = |e: landlock::RulesetError| e.to_string();
    let mut created = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI_USED))
        .map_err(e)?
        .handle_access(AccessNet::from_all(ABI_USED))
        .map_err(e)?
        .scope(Scope::from_all(ABI_USED))
        .map_err(e)?
        .create()
        .map_err(e)?;
    for rule in rules {
        let fd =
            PathFd::new(&rule.path).map_err(|err| format!("{}: {err}", rule.path.display()))?;
        created = created
            .add_rule(PathBeneath::new(fd, rights(rule.access, rule.is_dir)))
            .map_err(e)?;
    }
    for port in connect_ports {
        created = created
            .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
            .map_err(e)?;
    }
    let status = created.restrict_self().map_err(e)?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(format!("ruleset {:?}, not fully enforced", status.ruleset));
    }
    if !status.no_new_privs {
        return Err("no_new_privs not set".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_never_includes_execute_or_write() {
        for is_dir in [true, false] {
            let r = rights(PathAccess::ReadOnly, is_dir);
            assert!(!r.contains(AccessFs::Execute));
            assert!(!r.contains(AccessFs::WriteFile));
            assert!(r.contains(AccessFs::ReadFile));
        }
        assert!(
            AccessFs::from_read(ABI_USED).contains(AccessFs::Execute),
            "why we avoid from_read"
        );
    }

    #[test]
    fn workspace_is_read_write_without_execute_or_devices() {
        let w = rights(PathAccess::Workspace, true);
        for yes in [
            AccessFs::WriteFile,
            AccessFs::MakeReg,
            AccessFs::MakeDir,
            AccessFs::RemoveFile,
            AccessFs::Truncate,
        ] {
            assert!(w.contains(yes), "{yes:?}");
        }
        for no in [
            AccessFs::Execute,
            AccessFs::MakeChar,
            AccessFs::MakeBlock,
            AccessFs::MakeSock,
            AccessFs::IoctlDev,
        ] {
            assert!(!w.contains(no), "{no:?}");
        }
    }

    #[test]
    fn only_execute_rules_grant_execute() {
        for a in [
            PathAccess::ReadOnly,
            PathAccess::DeviceRead,
            PathAccess::DeviceReadWrite,
            PathAccess::Workspace,
        ] {
            assert!(!rights(a, false).contains(AccessFs::Execute), "{a:?}");
        }
        assert!(rights(PathAccess::Execute, false).contains(AccessFs::Execute));
    }
}
