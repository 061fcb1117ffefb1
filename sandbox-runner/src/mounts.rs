//! The hook's file system: a read-only tmpfs root holding only the binds of
//! the [`RootPlan`], a `noexec` workspace tmpfs, no `/proc`, then
//! `pivot_root` and a lazy unmount of the old root so it is unreachable
//! (unlike `chroot`, which a process with the right capability can leave).
//!
//! Every source is opened (`O_PATH`) before anything is mounted and bound from
//! `/proc/self/fd/N`, so a source below the mount point of the new root (a
//! harness under `/tmp`, say) is still found, and a symlink swapped after the
//! check cannot redirect a bind.

use crate::policy::{Bind, HostLayout, PathAccess, RootPlan};
use hook_protocol::Runtime;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where the new root is assembled before `pivot_root` (inside the runner's
/// own mount namespace, so the host's `/tmp` is untouched).
const BASE: &str = "/tmp";

/// The loader path x86_64 binaries ask for (their `PT_INTERP`).
#[cfg(target_arch = "x86_64")]
const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";
#[cfg(target_arch = "x86_64")]
const TRIPLET: &str = "x86_64-linux-gnu";
#[cfg(target_arch = "aarch64")]
const LOADER: &str = "/lib/ld-linux-aarch64.so.1";
#[cfg(target_arch = "aarch64")]
const TRIPLET: &str = "aarch64-linux-gnu";

/// Resolves the host paths the plan needs. Fails when the interpreter is not
/// an absolute path to a real `pythonX.Y` binary or a directory is missing.
pub fn resolve_host(rt: &Runtime, want_dns: bool) -> Result<HostLayout, String> {
    if !rt.python.is_absolute() {
        return Err(format!("runtime.python {:?} is not absolute", rt.python));
    }
    let python = canonical(&rt.python)?;
    let name = python
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("bad interpreter path {python:?}"))?;
    let version = name
        .strip_prefix("python")
        .filter(|v| v.contains('.') && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("interpreter {python:?} is not a real pythonX.Y binary (a shim?)")
        })?;
    let prefix = python
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("interpreter {python:?} has no prefix"))?;
    let stdlib = canonical(&prefix.join("lib").join(format!("python{version}")))?;

    let mut lib_dirs = Vec::new();
    if prefix != Path::new("/usr") {
        // pyenv and other self-built prefixes keep libpython and friends here.
        lib_dirs.push(canonical(&prefix.join("lib"))?);
    }
    for d in [format!("/usr/lib/{TRIPLET}"), format!("/lib/{TRIPLET}")] {
        if let Ok(c) = canonical(Path::new(&d))
            && !lib_dirs.iter().any(|x: &PathBuf| c.starts_with(x))
        {
            lib_dirs.push(c);
        }
    }
    // The loader the interpreter names (a store path on NixOS), else the
    // architecture's usual one.
    let asked = interpreter_of(&python).unwrap_or_else(|| PathBuf::from(LOADER));
    let loader = (canonical(&asked)?, asked);
    let system_dirs = rt
        .system_dirs
        .iter()
        .map(|d| canonical(d))
        .collect::<Result<Vec<_>, _>>()?;

    let mut tls = Vec::new();
    if let Ok(certs) = canonical(Path::new("/etc/ssl/certs"))
        && certs.is_dir()
    {
        tls.push((certs, PathBuf::from("/etc/ssl/certs"), true));
    }
    // OpenSSL's default CA file (Python's ssl.create_default_context); on
    // Debian a link to /etc/ssl/certs/ca-certificates.crt.
    if let Ok(bundle) = canonical(Path::new("/usr/lib/ssl/cert.pem"))
        && bundle.is_file()
    {
        tls.push((bundle, PathBuf::from("/usr/lib/ssl/cert.pem"), false));
    }

    let harness_dir = canonical(&rt.harness_dir)?;
    if !harness_dir.join("harness.py").is_file() {
        return Err(format!("no harness.py in {harness_dir:?}"));
    }
    let python_path = rt
        .python_path
        .iter()
        .map(|p| canonical(p))
        .collect::<Result<Vec<_>, _>>()?;
    let nameservers = if want_dns {
        std::fs::read_to_string("/etc/resolv.conf")
            .map(|t| crate::policy::parse_nameservers(&t))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(HostLayout {
        system_dirs,
        python,
        stdlib,
        lib_dirs,
        loader,
        tls,
        harness_dir,
        python_path,
        nameservers,
    })
}

/// `PT_INTERP` of an ELF file (read from its first 64 KiB).
fn interpreter_of(binary: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = Vec::with_capacity(64 * 1024);
    File::open(binary)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut head)
        .ok()?;
    crate::policy::elf_interpreter(&head)
}

fn canonical(p: &Path) -> Result<PathBuf, String> {
    std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn err(what: &str, path: &Path, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", path.display())
}

/// Builds the new root and pivots into it. On return the process's `/` is
/// the read-only tmpfs and its cwd is `/`.
pub fn build_root(plan: &RootPlan) -> Result<(), String> {
    // 1. Open every source first.
    let sources: Vec<(File, &Bind)> = plan
        .binds
        .iter()
        .map(|b| {
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
                .open(&b.source)
                .map(|f| (f, b))
                .map_err(|e| err("open", &b.source, e))
        })
        .collect::<Result<_, _>>()?;

    // 2. Nothing we do may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| err("make private", Path::new("/"), e))?;

    // 3. The new root.
    let base = Path::new(BASE);
    mount(
        Some("tmpfs"),
        base,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=1m,nr_inodes=256,mode=0755"),
    )
    .map_err(|e| err("mount tmpfs root at", base, e))?;

    for (file, b) in &sources {
        let target = inside(base, &b.target);
        if b.is_dir {
            mkdirs(&target)?;
        } else {
            if let Some(parent) = target.parent() {
                mkdirs(parent)?;
            }
            // Inside a read-only system dir bound earlier the mount point
            // already exists (and cannot be created).
            if !target.exists() {
                File::create(&target).map_err(|e| err("create", &target, e))?;
            }
        }
        let src = format!("/proc/self/fd/{}", file.as_raw_fd());
        mount(
            Some(src.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| err("bind", &b.source, e))?;
        remount_read_only(&target, device(b.access))?;
    }
    drop(sources);

    for (path, text) in &plan.files {
        let target = inside(base, path);
        if let Some(parent) = target.parent() {
            mkdirs(parent)?;
        }
        std::fs::write(&target, text).map_err(|e| err("write", &target, e))?;
    }

    // 4. The workspace: size and inode caps, no exec, no setuid, no devices.
    let ws = inside(base, &plan.workspace.target);
    mkdirs(&ws)?;
    mount(
        Some("tmpfs"),
        &ws,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(plan.workspace.tmpfs_options().as_str()),
    )
    .map_err(|e| err("mount workspace at", &ws, e))?;

    // 5. Switch roots; the old root is detached, not just hidden.
    std::env::set_current_dir(base).map_err(|e| err("chdir", base, e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| err("pivot_root", base, e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("detach old root", base, e))?;
    std::env::set_current_dir("/").map_err(|e| err("chdir", Path::new("/"), e))?;

    // 6. The root itself read-only (the workspace is its own mount).
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(|e| err("remount read-only", Path::new("/"), e))?;
    Ok(())
}

fn device(a: PathAccess) -> bool {
    matches!(a, PathAccess::DeviceRead | PathAccess::DeviceReadWrite)
}

fn inside(base: &Path, p: &Path) -> PathBuf {
    base.join(p.strip_prefix("/").unwrap_or(p))
}

fn mkdirs(p: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
        .map_err(|e| err("mkdir", p, e))
}

/// The kernel's statfs flag for relatime mounts (`ST_RELATIME`, 0x1000).
/// glibc's headers name it and musl's do not, so the static build spells it.
const ST_RELATIME: FsFlags = FsFlags::from_bits_retain(0x1000);

/// Remounts a bind read-only and nosuid, keeping the flags the kernel locks
/// in a user namespace (a remount that would clear them is refused).
fn remount_read_only(target: &Path, is_device: bool) -> Result<(), String> {
    let have = statvfs(target)
        .map_err(|e| err("statvfs", target, e))?
        .flags();
    let mut flags =
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID;
    if !is_device {
        flags |= MsFlags::MS_NODEV;
    }
    for (st, ms) in [
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if have.contains(st) {
            flags |= ms;
        }
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(|e| err("remount read-only", target, e))
}
