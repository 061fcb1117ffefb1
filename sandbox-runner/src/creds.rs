//! Who the hook runs as: no capabilities in any set, and in root mode the
//! dedicated sandbox uid/gid with no supplementary groups.
//!
//! Each step is read back; a credential that did not change fails the hook
//! (fail closed).

use crate::policy::Mode;
use nix::unistd::{Gid, Uid, getgroups, getresgid, getresuid, setgroups, setresgid, setresuid};

const CAP_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops every capability (bounding set, ambient, then effective, permitted
/// and inheritable) and, in root mode, switches to `ids`. Checks the result.
pub fn drop_privileges(mode: Mode, ids: (u32, u32)) -> Result<(), String> {
    // The bounding set needs CAP_SETPCAP, so it goes first.
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments; EINVAL past the last cap is fine.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return Err(format!(
                "drop bounding cap {cap}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    // SAFETY: prctl with integer arguments.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(format!(
            "clear ambient caps: {}",
            std::io::Error::last_os_error()
        ));
    }
    let (uid, gid) = (Uid::from_raw(ids.0), Gid::from_raw(ids.1));
    if mode == Mode::Root {
        setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
        setresgid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
        setresuid(uid, uid, uid).map_err(|e| format!("setresuid: {e}"))?;
    }
    set_caps_zero()?;

    // Read everything back.
    let r = getresuid().map_err(|e| e.to_string())?;
    let g = getresgid().map_err(|e| e.to_string())?;
    if [r.real, r.effective, r.saved] != [uid; 3] || [g.real, g.effective, g.saved] != [gid; 3] {
        return Err(format!("ids are {r:?}/{g:?}, not {ids:?}"));
    }
    if ids.0 == 0 {
        return Err("refusing to run a hook as uid 0".into());
    }
    if mode == Mode::Root && !getgroups().map_err(|e| e.to_string())?.is_empty() {
        return Err("supplementary groups remain".into());
    }
    let caps = get_caps()?;
    if caps
        .iter()
        .any(|c| c.effective | c.permitted | c.inheritable != 0)
    {
        return Err("capabilities remain after capset".into());
    }
    // SAFETY: prctl with integer arguments; reads bounding-set membership.
    if (0..41).any(|cap| unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) } == 1) {
        return Err("bounding set not empty".into());
    }
    Ok(())
}

fn set_caps_zero() -> Result<(), String> {
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: hdr and data are valid, properly laid out v3 capability structs
    // that live across the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(format!("capset: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn get_caps() -> Result<[CapData; 2], String> {
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: as in set_caps_zero; the kernel writes two CapData entries.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut hdr as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(format!("capget: {}", std::io::Error::last_os_error()));
    }
    Ok(data)
}
