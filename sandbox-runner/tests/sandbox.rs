//! The sandbox suite: the built `sandbox-runner` runs real jobs through the
//! real harness (`bots/harness/harness.py`).
//!
//! Attack tests run with `--unchecked-language-layer` (Layer::OsOnly): the
//! harness then skips its `ast` check and facades, so bots may `import os`
//! and `ctypes`. That proves the OS layer holds on its own. Each test is named
//! after the attack, and asserts the errno (or kill) of the mechanism that
//! stops it, so a test fails if that mechanism is removed:
//!
//! * ENOENT: the path is not in the mount tree (tmpfs root, no /proc).
//! * EACCES (13): Landlock.
//! * EPERM (1): the seccomp allowlist's default answer.
//! * killed by SIGSYS: the seccomp kill list or architecture check.
//! * ENETUNREACH (101): the runner's connect supervisor (netguard), which also
//!   writes `refused connect to ADDR: WHY` on stderr.
//! * ENOPROTOOPT (92): the seccomp gate's `setsockopt` allowlist.
//! * ENOSPC / EFBIG: workspace tmpfs size and inodes / RLIMIT_FSIZE.
//! * a `limit` error: the runner's outcome check (`Limits::check`) on what
//!   fd 3 says (`outcome_cases`).
//!
//! Run as root (root mode) and as an unprivileged user (user-namespace mode);
//! `tests/steps/30-sandbox.sh` does both.

mod determinism;
mod fork;
mod outcome_cases;
mod prewarm;
mod util;

use hook_protocol::{Hook, HookError, HookOutcome, exit};
use serde_json::json;
use std::time::Duration;
use util::*;

const ENOENT: i32 = 2;
const EPERM: i32 = 1;
const EACCES: i32 = 13;
const EROFS: i32 = 30;
const EXDEV: i32 = 18;
const ENOSPC: i32 = 28;
const EFBIG: i32 = 27;
const ENETUNREACH: i32 = 101;
const ENOPROTOOPT: i32 = 92;
const EINPROGRESS: i32 = 115;
const EISCONN: i32 = 106;
const ECONNREFUSED: i32 = 111;

// ---------------------------------------------------------------------------
// Reading what is not the bot's

#[test]
fn read_etc_shadow_fails_because_etc_is_not_in_the_mount_tree() {
    assert_errno(&attack("return open('/etc/shadow').read()"), ENOENT);
}

#[test]
fn read_proc_self_mem_fails_because_there_is_no_proc() {
    assert_errno(
        &attack("return open('/proc/self/mem', 'rb').read(1)"),
        ENOENT,
    );
}

#[test]
fn read_proc_1_environ_fails_because_there_is_no_proc() {
    assert_errno(
        &attack("return open('/proc/1/environ', 'rb').read()"),
        ENOENT,
    );
}

#[test]
fn read_the_daemon_database_fails_because_its_directory_is_not_bound() {
    let dir = std::env::temp_dir().join(format!("sbx-daemon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("mcp-multiplayer.db");
    std::fs::write(&db, "SQLite format 3\0secret").unwrap();
    let r = attack(&format!(
        "return open({:?}, 'rb').read()",
        db.display().to_string()
    ));
    assert_errno(&r, ENOENT);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_private_keys_are_not_in_the_mount_tree() {
    // Only /etc/ssl/certs is bound, never /etc/ssl (which holds private/).
    assert_errno(&attack("return os.listdir('/etc/ssl/private')"), ENOENT);
    assert_errno(
        &attack("return open('/etc/ssl/openssl.cnf').read()"),
        ENOENT,
    );
}

#[test]
fn listing_root_is_refused_by_landlock() {
    assert_errno(&attack("return os.listdir('/')"), EACCES);
}

#[test]
fn reading_the_interpreter_tree_outside_its_binds_is_refused() {
    // The interpreter's directory (/usr/bin for Debian's) holds only the
    // bound interpreter and is not listable (Landlock); a file beside the
    // interpreter on the host is not in the mount tree.
    let python = python();
    let dir = std::path::Path::new(&python).parent().unwrap();
    assert_errno(
        &attack(&format!(
            "return os.listdir({:?})",
            dir.display().to_string()
        )),
        EACCES,
    );
    let mut beside: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("python")
        })
        .collect();
    beside.sort();
    let beside = beside.first().expect("a file beside the interpreter");
    assert_errno(
        &attack(&format!(
            "return open({:?}, 'rb').read(4).hex()",
            beside.display().to_string()
        )),
        ENOENT,
    );
    assert_errno(
        &attack("return open('/usr/bin/env', 'rb').read(4).hex()"),
        ENOENT,
    );
}

// ---------------------------------------------------------------------------
// Writing

#[test]
fn writing_outside_the_workspace_is_refused_by_the_read_only_mounts() {
    for path in ["/harness/evil.py", "/evil", "/etc/evil", "/dev/evil"] {
        let r = attack(&format!("open({path:?}, 'a').write('x')\nreturn 'written'"));
        assert_errno(&r, EROFS);
    }
    // An existing file: file permissions answer first (root-owned, 0644),
    // and Landlock and the read-only mount stand behind them.
    let r = attack("open('/harness/harness.py', 'a').write('x')\nreturn 'written'");
    assert_errno(&r, EACCES);
}

#[test]
fn writing_where_no_mount_flag_stops_it_is_refused_by_landlock() {
    // A device node ignores its mount's read-only flag; only Landlock's
    // read-only rule for /dev/zero refuses the write.
    let r = attack("open('/dev/zero', 'wb').write(b'x')\nreturn 'written'");
    assert_errno(&r, EACCES);
    // /dev/null is granted read-write (CPython and libraries use it).
    let r = attack("return open('/dev/null', 'w').write('x')");
    assert_eq!(r.result()["value"], json!(1));
}

#[test]
fn filling_the_workspace_stops_at_its_100_mb_tmpfs_size() {
    // Several files, each under RLIMIT_FSIZE, so the tmpfs size is what stops it.
    let r = attack(
        "chunk = b'x' * (1 << 20)\n\
         total = 0\n\
         try:\n\
         \x20   for i in range(20):\n\
         \x20       with open(f'/workspace/fill{i}', 'wb') as f:\n\
         \x20           for _ in range(30):\n\
         \x20               f.write(chunk); f.flush(); total += len(chunk)\n\
         except OSError as e:\n\
         \x20   return {'errno': e.errno, 'total': total}\n\
         return {'errno': None, 'total': total}",
    );
    let v = &r.result()["value"];
    assert_eq!(v["errno"], json!(ENOSPC), "{v}");
    let total = v["total"].as_u64().unwrap();
    assert!(total <= 100 << 20, "wrote {total} bytes");
    assert!(total >= 90 << 20, "stopped early at {total} bytes");
}

#[test]
fn a_64_mb_file_stops_at_rlimit_fsize() {
    let r = attack(
        "chunk = b'x' * (1 << 20)\n\
         f = open('/workspace/big', 'wb', buffering=0)\n\
         for i in range(64):\n\
         \x20   f.write(chunk)\n\
         return 'wrote 64 MiB'",
    );
    assert_errno(&r, EFBIG);
    let r = attack(
        "f = open('/workspace/big', 'wb', buffering=0)\n\
         try:\n\
         \x20   while True: f.write(b'x' * (1 << 20))\n\
         except OSError:\n\
         \x20   return os.fstat(f.fileno()).st_size",
    );
    assert_eq!(r.result()["value"], json!(32 << 20));
}

#[test]
fn a_hundred_thousand_files_stop_at_the_workspace_inode_cap() {
    let r = attack(
        "n = 0\n\
         try:\n\
         \x20   for i in range(100000):\n\
         \x20       open(f'/workspace/f{i}', 'w').close(); n += 1\n\
         except OSError as e:\n\
         \x20   return {'errno': e.errno, 'n': n}\n\
         return {'errno': None, 'n': n}",
    );
    let v = &r.result()["value"];
    assert_eq!(v["errno"], json!(ENOSPC), "{v}");
    assert!(v["n"].as_u64().unwrap() < 4096, "{v}");
}

// ---------------------------------------------------------------------------
// Executing

#[test]
fn exec_bin_sh_fails_because_it_is_not_in_the_mount_tree() {
    assert_errno(&attack("os.execv('/bin/sh', ['sh', '-c', 'id'])"), ENOENT);
}

#[test]
fn exec_of_a_file_dropped_in_the_workspace_is_refused_noexec_and_landlock() {
    let r = attack(
        "data = open(sys.executable, 'rb').read()\n\
         open('/workspace/py', 'wb').write(data)\n\
         os.chmod('/workspace/py', 0o755)\n\
         os.execv('/workspace/py', ['py', '-c', 'print(1)'])",
    );
    assert_errno(&r, EACCES);
}

#[test]
fn setuid_bit_in_the_workspace_grants_nothing_nosuid_noexec() {
    let r = attack(
        "data = open(sys.executable, 'rb').read()\n\
         open('/workspace/suid', 'wb').write(data)\n\
         os.chmod('/workspace/suid', 0o4755)\n\
         st = os.statvfs('/workspace')\n\
         try:\n\
         \x20   os.execv('/workspace/suid', ['x'])\n\
         except OSError as e:\n\
         \x20   return {'exec_errno': e.errno, 'nosuid': bool(st.f_flag & os.ST_NOSUID), 'noexec': bool(st.f_flag & os.ST_NOEXEC)}",
    );
    assert_eq!(
        r.result()["value"],
        json!({"exec_errno": EACCES, "nosuid": true, "noexec": true})
    );
}

#[test]
fn os_fork_is_refused_by_seccomp_clone_filter() {
    assert_errno(&attack("return os.fork()"), EPERM);
}

#[test]
fn subprocess_is_refused_by_seccomp() {
    let r = attack(
        "import subprocess\n\
         return subprocess.run([sys.executable, '-c', 'print(1)']).returncode",
    );
    assert_errno(&r, EPERM);
}

#[test]
fn multiprocessing_is_refused_by_seccomp() {
    let r = attack(
        "import multiprocessing\n\
         p = multiprocessing.get_context('fork').Process(target=print)\n\
         p.start()\n\
         return p.pid",
    );
    assert_errno(&r, EPERM);
}

#[test]
fn thread_bomb_stops_at_rlimit_nproc() {
    let src = attack_bot(
        "import threading\n\
         stop = threading.Event()\n\
         n = 0\n\
         try:\n\
         \x20   for i in range(1000):\n\
         \x20       threading.Thread(target=stop.wait, daemon=True).start(); n += 1\n\
         except RuntimeError as e:\n\
         \x20   stop.set()\n\
         \x20   return {'started': n, 'error': str(e)}\n\
         stop.set()\n\
         return {'started': n, 'error': None}",
    );
    let r = run_job_alone(&job(&src), Layer::OsOnly);
    let v = &r.result()["value"];
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("can't start new thread"),
        "{v}"
    );
    assert!(v["started"].as_u64().unwrap() < 16, "{v}");
}

// ---------------------------------------------------------------------------
// Memory, CPU, time, output

#[test]
fn a_4_gb_allocation_fails_at_rlimit_as() {
    let r = run_job(
        &job(&attack_bot("b = bytearray(4 << 30)\nreturn len(b)")),
        Layer::OsOnly,
    );
    assert!(
        matches!(r.error(), HookError::Memory { .. }),
        "{:?}",
        r.outcome
    );
    assert_eq!(r.code, exit::MEMORY);
}

#[test]
fn creeping_allocation_fails_at_rlimit_as() {
    // A smaller address space than the default keeps the test fast: the
    // zero-filled chunks are touched, so each one costs real time.
    let mut j = job(&attack_bot(
        "hoard = []\nwhile True:\n    hoard.append(bytearray(8 << 20))",
    ));
    j.limits.address_space_bytes = 256 << 20;
    let r = run_job(&j, Layer::OsOnly);
    assert!(
        matches!(r.error(), HookError::Memory { .. }),
        "{:?}",
        r.outcome
    );
    assert_eq!(r.code, exit::MEMORY);
}

#[test]
fn while_true_is_stopped_by_rlimit_cpu() {
    let mut j = job(&attack_bot("while True:\n    pass"));
    j.limits.cpu_secs = 1;
    let r = run_job(&j, Layer::OsOnly);
    // The CPU limit, not the (30 s) wall deadline, ended it.
    match r.error() {
        HookError::Timeout { message } => assert!(message.contains("CPU"), "{message}"),
        e => panic!("{e:?}"),
    }
    assert_eq!(r.code, exit::TIMEOUT);
}

#[test]
fn sleep_60_is_stopped_by_the_wall_deadline() {
    let mut j = job(&attack_bot("import time\ntime.sleep(60)"));
    j.limits.wall_ms = 1500;
    let r = run_job(&j, Layer::OsOnly);
    match r.error() {
        HookError::Timeout { message } => assert!(message.contains("wall"), "{message}"),
        e => panic!("{e:?}"),
    }
    assert_eq!(r.code, exit::TIMEOUT);
    assert!(r.elapsed < Duration::from_secs(5), "{:?}", r.elapsed);
}

#[test]
fn unbounded_stdout_on_fd_1_is_cut_off_as_output_overrun() {
    let r = run_job(
        &job(&attack_bot("while True:\n    os.write(1, b'x' * 65536)")),
        Layer::OsOnly,
    );
    assert!(
        matches!(r.error(), HookError::OutputOverrun { .. }),
        "{:?}",
        r.outcome
    );
    assert_eq!(r.code, exit::OUTPUT_OVERRUN);
}

#[test]
fn unbounded_writes_to_the_result_fd_are_cut_off_as_output_overrun() {
    let r = run_job(
        &job(&attack_bot("while True:\n    os.write(3, b'x' * 65536)")),
        Layer::OsOnly,
    );
    assert!(
        matches!(r.error(), HookError::OutputOverrun { .. }),
        "{:?}",
        r.outcome
    );
}

#[test]
fn a_forged_result_on_fd_3_is_still_held_to_the_post_limits() {
    let r = attack(
        "import json\n\
         doc = {'status': 'ok', 'state': {}, 'logs': '',\n\
         \x20      'posts': [{'type': 'spam', 'body': i} for i in range(1000)]}\n\
         os.write(3, json.dumps(doc).encode())\n\
         os._exit(0)",
    );
    match r.error() {
        HookError::Limit { message } => assert!(message.contains("1000 posts"), "{message}"),
        e => panic!("{e:?}"),
    }
    assert_eq!(r.code, exit::HOOK_FAILED);
}

#[test]
fn unbounded_print_through_the_language_layer_stays_bounded() {
    // 80 MB of prints: the harness keeps a bounded part as `logs`, the hook
    // still completes, and nothing reaches the runner's fd 1 or fd 3 unbounded.
    let src = "class P:\n    def __init__(self, ctx, params):\n        self.ctx = ctx\n    def on_init(self):\n        for i in range(200000):\n            print('spam' * 100)\n        self.ctx.post('done', {})\n";
    let r = run_job(&job(src), Layer::Checked);
    match &r.outcome {
        HookOutcome::Ok { posts, logs, .. } => {
            assert_eq!(posts.len(), 1);
            assert!(
                logs.starts_with("spamspam"),
                "{:?}",
                &logs[..logs.len().min(80)]
            );
            assert!(
                logs.len() <= hook_protocol::MAX_RESULT_BYTES / 4,
                "{} bytes of logs",
                logs.len()
            );
        }
        o => panic!("{o:?}"),
    }
}

// ---------------------------------------------------------------------------
// Network

#[test]
fn tcp_to_loopback_is_refused_by_the_connect_supervisor() {
    for addr in [
        "('127.0.0.1', 80)",
        "('127.0.0.1', 443)",
        "('::1', 80)",
        "('::ffff:127.0.0.1', 80)",
    ] {
        let family = if addr.contains("::") {
            "socket.AF_INET6"
        } else {
            "socket.AF_INET"
        };
        let r = attack_net(
            &format!(
                "s = socket.socket({family}, socket.SOCK_STREAM)\ns.settimeout(3)\ns.connect({addr})\nreturn 'connected'"
            ),
            &[],
        );
        assert_errno(&r, ENETUNREACH);
        assert!(r.stderr.contains("refused connect"), "{}", r.stderr);
    }
}

#[test]
fn tcp_to_the_metadata_service_is_refused_by_the_connect_supervisor() {
    let r = attack_net(
        "s = socket.create_connection(('169.254.169.254', 80), timeout=3)\nreturn 'connected'",
        &[],
    );
    assert_errno(&r, ENETUNREACH);
}

#[test]
fn tcp_to_a_private_address_is_refused_by_the_connect_supervisor() {
    // The target is a real private host, but one in a network namespace this
    // test owns, so nothing leaves the machine even if the check regressed.
    // (Every refused range is covered by netguard's unit tests.)
    let Some(host) = test_host() else {
        eprintln!("SKIPPED: no test host (run as root, or set SANDBOX_TEST_HTTP_ADDR/CIDR)");
        return;
    };
    let r = attack_net(
        &format!(
            "s = socket.create_connection(({:?}, 80), timeout=3)\nreturn 'connected'",
            host.addr
        ),
        &[],
    );
    assert_errno(&r, ENETUNREACH);
    // The same connect with the operator's exception succeeds.
    let r = attack_net(
        &format!(
            "s = socket.create_connection(({:?}, 80), timeout=3)\ns.close()\nreturn 'connected'",
            host.addr
        ),
        &[&host.cidr],
    );
    assert_eq!(r.result()["value"], json!("connected"));
}

#[test]
fn tcp_to_a_port_other_than_80_and_443_is_refused() {
    // A documentation address (TEST-NET-1): the port check answers first.
    let r = attack_net(
        "s = socket.create_connection(('192.0.2.1', 22), timeout=3)\nreturn 'connected'",
        &[],
    );
    assert_errno(&r, ENETUNREACH);
    assert!(
        r.stderr
            .contains("refused connect to 192.0.2.1:22: port 22 is not 80 or 443"),
        "{}",
        r.stderr
    );
}

#[test]
fn rewriting_the_address_during_connect_cannot_redirect_it() {
    // One thread keeps swapping the sockaddr between the allowed test host
    // and 127.0.0.1 while another connects with it. The supervisor reads the
    // address once and connects a socket of its own to that checked copy,
    // so every connect either reaches the test host or is refused; none
    // reaches (or is refused by) loopback. Every connected socket is the
    // supervisor's (another inode at the same descriptor number), never the
    // bot's own connected by the kernel.
    let Some(host) = test_host() else {
        eprintln!("SKIPPED: no test host (run as root, or set SANDBOX_TEST_HTTP_ADDR/CIDR)");
        return;
    };
    let body = format!(
        "import threading, struct\n\
         def sa(ip): return struct.pack('<H', 2) + struct.pack('>H', 80) + socket.inet_aton(ip) + bytes(8)\n\
         good, bad = sa({addr:?}), sa('127.0.0.1')\n\
         buf = ctypes.create_string_buffer(good, 16)\n\
         state = {{'stop': False}}\n\
         def flip():\n\
         \x20   while not state['stop']:\n\
         \x20       ctypes.memmove(buf, bad, 16)\n\
         \x20       ctypes.memmove(buf, good, 16)\n\
         t = threading.Thread(target=flip)\n\
         t.start()\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         results = []\n\
         for i in range(40):\n\
         \x20   s = socket.socket()\n\
         \x20   ino = os.fstat(s.fileno()).st_ino\n\
         \x20   r = libc.connect(s.fileno(), buf, 16)\n\
         \x20   e = ctypes.get_errno() if r else 0\n\
         \x20   peer = s.getpeername()[0] if r == 0 else None\n\
         \x20   results.append([r, e, peer, os.fstat(s.fileno()).st_ino != ino])\n\
         \x20   s.close()\n\
         state['stop'] = True\n\
         t.join()\n\
         return results",
        addr = host.addr
    );
    let r = attack_net(&body, &[&host.cidr]);
    let results = r.result()["value"].as_array().unwrap().clone();
    assert_eq!(results.len(), 40);
    for res in &results {
        if res[0] == json!(0) {
            assert_eq!(res[2], json!(host.addr), "{results:?}");
            assert_eq!(
                res[3],
                json!(true),
                "not the supervisor's socket: {results:?}"
            );
        } else {
            assert_eq!(res[1], json!(ENETUNREACH), "{results:?}");
        }
    }
}

#[test]
fn network_bots_resolve_over_tcp_only() {
    // The sandbox's resolv.conf lists the host's name servers with use-vc,
    // so glibc asks over TCP (UDP sockets are refused by seccomp).
    let r = attack_net("return open('/etc/resolv.conf').read()", &[]);
    let text = r.result()["value"].as_str().unwrap().to_string();
    assert!(text.contains("options use-vc"), "{text}");
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for ns in host.lines().filter(|l| l.starts_with("nameserver")) {
        assert!(text.contains(ns.trim()), "{ns} missing from {text}");
    }
    // Bots without network have no resolv.conf at all.
    assert_errno(&attack("return open('/etc/resolv.conf').read()"), ENOENT);
}

#[test]
fn bind_and_listen_are_refused_by_seccomp() {
    let r = attack_net(
        "s = socket.socket()\ns.bind(('0.0.0.0', 8080))\nreturn 'bound'",
        &[],
    );
    assert_errno(&r, EPERM);
    let r = attack_net("s = socket.socket()\ns.listen(5)\nreturn 'listening'", &[]);
    assert_errno(&r, EPERM);
}

#[test]
fn udp_send_is_refused_by_seccomp_socket_filter() {
    let r = attack_net(
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.sendto(b'x', ('1.1.1.1', 53))\nreturn 'sent'",
        &[],
    );
    assert_errno(&r, EPERM);
}

#[test]
fn unix_netlink_raw_and_packet_sockets_are_refused_by_seccomp() {
    for (family, kind) in [
        ("socket.AF_UNIX", "socket.SOCK_STREAM"),
        ("socket.AF_UNIX", "socket.SOCK_DGRAM"),
        ("socket.AF_NETLINK", "socket.SOCK_RAW"),
        ("socket.AF_INET", "socket.SOCK_RAW"),
        ("socket.AF_PACKET", "socket.SOCK_RAW"),
    ] {
        let r = attack_net(
            &format!("s = socket.socket({family}, {kind})\nreturn 'created'"),
            &[],
        );
        assert_errno(&r, EPERM);
    }
    let r = attack_net("a, b = socket.socketpair()\nreturn 'created'", &[]);
    assert_errno(&r, EPERM);
}

#[test]
fn a_bot_without_network_cannot_create_any_socket() {
    let r = attack("s = socket.socket()\nreturn 'created'");
    assert_errno(&r, EPERM);
}

/// Python that tries `connect(addr)` for each `name: (host, port)` of a dict
/// and returns `{name: "connected" | errno}`.
fn connect_each(targets: &str) -> String {
    format!(
        "out = {{}}\n\
         for name, addr in {targets}.items():\n\
         \x20   fam = socket.AF_INET6 if ':' in addr[0] else socket.AF_INET\n\
         \x20   s = socket.socket(fam, socket.SOCK_STREAM)\n\
         \x20   s.settimeout(5)\n\
         \x20   try:\n\
         \x20       s.connect(addr)\n\
         \x20       out[name] = 'connected'\n\
         \x20   except OSError as e:\n\
         \x20       out[name] = e.errno\n\
         \x20   s.close()\n\
         return out"
    )
}

#[test]
fn connect_to_this_hosts_own_address_is_refused_even_inside_allow_cidrs() {
    // The operator's allow_cidrs entry covers the whole veth /30, which holds
    // the test host (.2) and this host's own side (.1). A service on this
    // host's address (the reverse proxy, in production) must stay out of
    // reach; the test host next to it must not. Mechanism: the runner lists
    // the host's addresses over rtnetlink before the hook starts, and the
    // connect supervisor refuses them whatever allow_cidrs says.
    let Some(host) = test_host() else {
        eprintln!("SKIPPED: no test host (run as root, or set SANDBOX_TEST_HTTP_ADDR/CIDR)");
        return;
    };
    // Root mode can bind port 80: then an unguarded connect would succeed.
    let _service = std::net::TcpListener::bind((host.host_side.as_str(), 80)).ok();
    let targets = format!(
        "{{'own': ({own:?}, 80), 'own_tls': ({own:?}, 443), 'own_mapped': ('::ffff:{own}', 80), \
         'test_host': ({peer:?}, 80)}}",
        own = host.host_side,
        peer = host.addr
    );
    let r = attack_net(&connect_each(&targets), &[&host.cidr]);
    assert_eq!(
        r.result()["value"],
        json!({"own": ENETUNREACH, "own_tls": ENETUNREACH, "own_mapped": ENETUNREACH,
               "test_host": "connected"}),
        "stderr: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "refused connect to {}:80: an address of this host",
            host.host_side
        )),
        "{}",
        r.stderr
    );
}

#[test]
fn allow_cidrs_cannot_reopen_loopback_or_the_unspecified_address() {
    // An operator who allows everything still does not open the host itself:
    // 0.0.0.0 and :: connect to the host, 127/8 and ::1 are the host, and the
    // v4-mapped, v4-compatible and NAT64 forms embed them. Mechanism: the
    // connect supervisor's never-reopened ranges, checked on every embedded
    // IPv4 form.
    let targets = "{'lo': ('127.0.0.1', 80), 'lo8': ('127.1.2.3', 443), \
                   'any4': ('0.0.0.0', 80), 'any6': ('::', 80), 'lo6': ('::1', 80), \
                   'mapped': ('::ffff:127.0.0.1', 80), 'compat': ('::127.0.0.1', 80), \
                   'nat64': ('64:ff9b::7f00:1', 80), 'sixtofour': ('2002:7f00:1::1', 80)}";
    let r = attack_net(&connect_each(targets), &["0.0.0.0/0", "::/0"]);
    let v = r.result()["value"].clone();
    for name in [
        "lo",
        "lo8",
        "any4",
        "any6",
        "lo6",
        "mapped",
        "compat",
        "nat64",
        "sixtofour",
    ] {
        assert_eq!(v[name], json!(ENETUNREACH), "{name}: {v}\n{}", r.stderr);
    }
    // Each was refused by the supervisor (not by a missing route).
    assert_eq!(
        r.stderr.matches("refused connect to").count(),
        9,
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("this host itself"), "{}", r.stderr);
}

#[test]
fn an_address_this_host_answers_for_on_no_interface_is_refused_by_the_route_lookup() {
    // AnyIP: `ip route add local ADDR dev lo` makes this host accept
    // connections to ADDR although no interface carries it, so the address
    // list does not know it. Mechanism: before each connect the supervisor
    // asks the kernel how it would route the destination (RTM_GETROUTE) and
    // refuses anything not sent off the host as unicast.
    let Some(host) = test_host() else {
        eprintln!("SKIPPED: no test host (run as root, or set SANDBOX_TEST_HTTP_ADDR/CIDR)");
        return;
    };
    let Some(local) = host.local_route.clone() else {
        assert!(
            std::env::var("SANDBOX_TEST_REQUIRE_HOST").as_deref() != Ok("1"),
            "SANDBOX_TEST_REQUIRE_HOST=1 but no SANDBOX_TEST_LOCAL_ROUTE_ADDR"
        );
        eprintln!("SKIPPED: the test host has no local route");
        return;
    };
    let _service = std::net::TcpListener::bind((local.as_str(), 80)).ok();
    let r = attack_net(
        &connect_each(&format!("{{'anyip': ({local:?}, 80)}}")),
        &[&format!("{local}/32")],
    );
    assert_eq!(
        r.result()["value"],
        json!({"anyip": ENETUNREACH}),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "refused connect to {local}:80: this host routes it as local"
        )),
        "{}",
        r.stderr
    );
}

/// `setsockopt` options that steer a connection's route, source or
/// interface, or change what the connection is: (level, name, optname,
/// socket family, value).
const STEERING_OPTIONS: &[(&str, &str, i32, &str, &str)] = &[
    // IPv6 extension headers: a routing header sends the SYN to its first
    // segment (::1) instead of the checked address.
    (
        "IPPROTO_IPV6",
        "IPV6_RTHDR",
        57,
        "AF_INET6",
        "SRH_TO_LOOPBACK",
    ),
    ("IPPROTO_IPV6", "IPV6_HOPOPTS", 54, "AF_INET6", "bytes(8)"),
    ("IPPROTO_IPV6", "IPV6_DSTOPTS", 59, "AF_INET6", "bytes(8)"),
    (
        "IPPROTO_IPV6",
        "IPV6_RTHDRDSTOPTS",
        55,
        "AF_INET6",
        "bytes(8)",
    ),
    ("IPPROTO_IPV6", "IPV6_2292PKTINFO", 2, "AF_INET6", "1"),
    ("IPPROTO_IPV6", "IPV6_2292HOPOPTS", 3, "AF_INET6", "1"),
    ("IPPROTO_IPV6", "IPV6_2292DSTOPTS", 4, "AF_INET6", "1"),
    ("IPPROTO_IPV6", "IPV6_2292RTHDR", 5, "AF_INET6", "1"),
    (
        "IPPROTO_IPV6",
        "IPV6_2292PKTOPTIONS",
        6,
        "AF_INET6",
        "SRH_TO_LOOPBACK",
    ),
    ("IPPROTO_IPV6", "IPV6_NEXTHOP", 9, "AF_INET6", "bytes(28)"),
    ("IPPROTO_IPV6", "IPV6_PKTINFO", 50, "AF_INET6", "bytes(20)"),
    ("IPPROTO_IPV6", "IPV6_TRANSPARENT", 75, "AF_INET6", "1"),
    ("IPPROTO_IPV6", "IPV6_UNICAST_IF", 76, "AF_INET6", "1"),
    ("IPPROTO_IPV6", "IPV6_FREEBIND", 78, "AF_INET6", "1"),
    // IPv4: loose source routing to 127.0.0.1, raw headers, foreign sources.
    ("IPPROTO_IP", "IP_OPTIONS", 4, "AF_INET", "LSRR_TO_LOOPBACK"),
    ("IPPROTO_IP", "IP_HDRINCL", 3, "AF_INET", "1"),
    ("IPPROTO_IP", "IP_TOS", 1, "AF_INET", "1"),
    ("IPPROTO_IP", "IP_PKTINFO", 8, "AF_INET", "1"),
    ("IPPROTO_IP", "IP_FREEBIND", 15, "AF_INET", "1"),
    ("IPPROTO_IP", "IP_TRANSPARENT", 19, "AF_INET", "1"),
    ("IPPROTO_IP", "IP_BIND_ADDRESS_NO_PORT", 24, "AF_INET", "1"),
    ("IPPROTO_IP", "IP_UNICAST_IF", 50, "AF_INET", "1"),
    // Sockets: an interface or a mark chooses the route; filters and ports.
    ("SOL_SOCKET", "SO_BINDTODEVICE", 25, "AF_INET", "b'lo'"),
    ("SOL_SOCKET", "SO_BINDTOIFINDEX", 62, "AF_INET", "1"),
    ("SOL_SOCKET", "SO_MARK", 36, "AF_INET", "1"),
    ("SOL_SOCKET", "SO_PRIORITY", 12, "AF_INET", "1"),
    ("SOL_SOCKET", "SO_REUSEPORT", 15, "AF_INET", "1"),
    ("SOL_SOCKET", "SO_ATTACH_FILTER", 26, "AF_INET", "bytes(16)"),
    // TCP: Fast Open's deferred connect, upper-layer protocols, repair mode.
    ("IPPROTO_TCP", "TCP_FASTOPEN_CONNECT", 30, "AF_INET", "1"),
    ("IPPROTO_TCP", "TCP_ULP", 31, "AF_INET", "b'tls'"),
    ("IPPROTO_TCP", "TCP_REPAIR", 19, "AF_INET", "1"),
    ("IPPROTO_TCP", "TCP_MD5SIG", 14, "AF_INET", "bytes(216)"),
    ("IPPROTO_TCP", "TCP_CONGESTION", 13, "AF_INET", "b'reno'"),
];

/// Python definitions of the option payloads named in `STEERING_OPTIONS`.
const STEERING_PAYLOADS: &str = "import struct\n\
    # A segment routing header (type 4) whose one segment is ::1.\n\
    SRH_TO_LOOPBACK = bytes([0, 2, 4, 0, 0, 0, 0, 0]) + socket.inet_pton(socket.AF_INET6, '::1')\n\
    # IP options: NOP, then loose source route via 127.0.0.1.\n\
    LSRR_TO_LOOPBACK = bytes([1, 131, 7, 4]) + socket.inet_aton('127.0.0.1')\n";

#[test]
fn ipv6_routing_header_steering_is_refused_by_the_setsockopt_allowlist() {
    // With a segment routing header to ::1, a connect the supervisor
    // approved for a public address would send its SYN to ::1.
    let r = attack_net(
        &format!(
            "{STEERING_PAYLOADS}\
             s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)\n\
             s.setsockopt(socket.IPPROTO_IPV6, 57, SRH_TO_LOOPBACK)\n\
             return 'routing header set'"
        ),
        &[],
    );
    assert_errno(&r, ENOPROTOOPT);
}

#[test]
fn every_option_that_steers_route_source_or_interface_is_refused_by_the_setsockopt_allowlist() {
    let mut body = String::from(STEERING_PAYLOADS);
    body.push_str("out = {}\n");
    for (level, name, opt, family, value) in STEERING_OPTIONS {
        body.push_str(&format!(
            "s = socket.socket(socket.{family}, socket.SOCK_STREAM)\n\
             try:\n\
             \x20   s.setsockopt(socket.{level}, {opt}, {value})\n\
             \x20   out['{name}'] = 0\n\
             except OSError as e:\n\
             \x20   out['{name}'] = e.errno\n\
             s.close()\n"
        ));
    }
    // What ordinary clients set still works (http.client and urllib3 set
    // TCP_NODELAY; keepalive and buffer sizes are common opt-ins).
    body.push_str(
        "s = socket.socket()\n\
         for level, opt, value in [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),\n\
         \x20                         (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),\n\
         \x20                         (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30),\n\
         \x20                         (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10),\n\
         \x20                         (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3),\n\
         \x20                         (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 5000),\n\
         \x20                         (socket.SOL_SOCKET, socket.SO_RCVBUF, 65536),\n\
         \x20                         (socket.SOL_SOCKET, socket.SO_SNDBUF, 65536),\n\
         \x20                         (socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 1)),\n\
         \x20                         (socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack('ll', 5, 0)),\n\
         \x20                         (socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack('ll', 5, 0))]:\n\
         \x20   s.setsockopt(level, opt, value)\n\
         out['ordinary'] = 'set'\n\
         return out",
    );
    let r = attack_net(&body, &[]);
    let v = r.result()["value"].clone();
    for (_, name, ..) in STEERING_OPTIONS {
        assert_eq!(v[*name], json!(ENOPROTOOPT), "{name}: {v}");
    }
    assert_eq!(v["ordinary"], json!("set"), "{v}");
}

#[test]
fn sendmsg_with_routing_or_source_ancillary_data_is_refused_by_seccomp() {
    // Per-packet routing headers, IP options and source/interface choice
    // ride in sendmsg's ancillary data, which seccomp cannot read; and
    // sendmsg's name could carry a destination. Ordinary clients never call
    // it, so the allowlist leaves it out.
    let r = attack_net(
        &format!(
            "{STEERING_PAYLOADS}\
             cases = {{\n\
             \x20   'rthdr': (socket.AF_INET6, [(socket.IPPROTO_IPV6, 57, SRH_TO_LOOPBACK)], ('::1', 80)),\n\
             \x20   'hopopts': (socket.AF_INET6, [(socket.IPPROTO_IPV6, 54, bytes(8))], ('::1', 80)),\n\
             \x20   'pktinfo6': (socket.AF_INET6, [(socket.IPPROTO_IPV6, 50, bytes(20))], ('::1', 80)),\n\
             \x20   'retopts': (socket.AF_INET, [(socket.IPPROTO_IP, 7, LSRR_TO_LOOPBACK)], ('127.0.0.1', 80)),\n\
             \x20   'pktinfo4': (socket.AF_INET, [(socket.IPPROTO_IP, 8, bytes(12))], ('127.0.0.1', 80)),\n\
             \x20   'name_only': (socket.AF_INET, [], ('127.0.0.1', 80)),\n\
             }}\n\
             out = {{}}\n\
             for name, (fam, anc, addr) in cases.items():\n\
             \x20   s = socket.socket(fam, socket.SOCK_STREAM)\n\
             \x20   try:\n\
             \x20       out[name] = s.sendmsg([b'GET / HTTP/1.0\\r\\n\\r\\n'], anc, 0, addr)\n\
             \x20   except OSError as e:\n\
             \x20       out[name] = e.errno\n\
             \x20   s.close()\n\
             return out"
        ),
        &[],
    );
    let v = r.result()["value"].clone();
    for name in [
        "rthdr",
        "hopopts",
        "pktinfo6",
        "retopts",
        "pktinfo4",
        "name_only",
    ] {
        assert_eq!(v[name], json!(EPERM), "{name}: {v}");
    }
}

#[test]
fn tcp_fast_open_cannot_connect_around_the_supervisor() {
    // Fast Open connects from sendto/sendmsg with MSG_FASTOPEN (no connect()
    // for the supervisor to see), or defers a connect's SYN with
    // TCP_FASTOPEN_CONNECT. Mechanisms: the seccomp sendto filter
    // (MSG_FASTOPEN or a destination: EPERM), sendmsg left out of the
    // allowlist (EPERM), the setsockopt allowlist (ENOPROTOOPT).
    let r = attack_net(
        "s = socket.socket()\ns.sendto(b'GET /', socket.MSG_FASTOPEN, ('127.0.0.1', 80))\nreturn 'sent'",
        &[],
    );
    assert_errno(&r, EPERM);
    let r = attack_net(
        "s = socket.socket(socket.AF_INET6)\ns.sendto(b'GET /', socket.MSG_FASTOPEN, ('::1', 443))\nreturn 'sent'",
        &[],
    );
    assert_errno(&r, EPERM);
    let r = attack_net(
        "s = socket.socket()\ns.sendmsg([b'GET /'], [], socket.MSG_FASTOPEN, ('127.0.0.1', 80))\nreturn 'sent'",
        &[],
    );
    assert_errno(&r, EPERM);
    let r = attack_net(
        "s = socket.socket()\ns.setsockopt(socket.IPPROTO_TCP, 30, 1)\nreturn 'deferred connect armed'",
        &[],
    );
    assert_errno(&r, ENOPROTOOPT);
}

#[test]
fn a_connect_from_a_thread_is_supervised_like_the_main_threads() {
    // Before, the supervisor could not open the calling thread and left its
    // connect hanging until the wall deadline. Mechanism: the supervisor
    // reads the calling thread's memory and descriptor (by the thread id the
    // notification carries), and SECCOMP_IOCTL_NOTIF_ADDFD installs its
    // socket in the calling thread's descriptor table.
    let host = test_host();
    let mut targets = String::from("{'refused': ('127.0.0.1', 80)");
    if let Some(h) = &host {
        targets.push_str(&format!(", 'allowed': ({:?}, 80)", h.addr));
    }
    targets.push('}');
    let body = format!(
        "import threading\n\
         out = {{}}\n\
         def go(name, addr, timeout):\n\
         \x20   s = socket.socket()\n\
         \x20   if timeout: s.settimeout(timeout)\n\
         \x20   try:\n\
         \x20       s.connect(addr)\n\
         \x20       out[name] = 'connected'\n\
         \x20   except OSError as e:\n\
         \x20       out[name] = e.errno\n\
         \x20   s.close()\n\
         threads = []\n\
         for name, addr in {targets}.items():\n\
         \x20   for timeout, kind in [(5, 'nonblocking'), (None, 'blocking')]:\n\
         \x20       threads.append(threading.Thread(target=go, args=(name + '_' + kind, addr, timeout)))\n\
         for t in threads: t.start()\n\
         for t in threads: t.join()\n\
         return out"
    );
    let mut j = with_network(job(&attack_bot(&body)), &[]);
    if let Some(h) = &host {
        j.network.allow_cidrs = vec![h.cidr.clone()];
    }
    // Short enough that a hanging connect fails the test quickly.
    j.limits.wall_ms = 10_000;
    let r = run_job(&j, Layer::OsOnly);
    let v = r.result()["value"].clone();
    assert_eq!(v["refused_nonblocking"], json!(ENETUNREACH), "{v}");
    assert_eq!(v["refused_blocking"], json!(ENETUNREACH), "{v}");
    if host.is_some() {
        assert_eq!(v["allowed_nonblocking"], json!("connected"), "{v}");
        assert_eq!(v["allowed_blocking"], json!("connected"), "{v}");
    } else {
        eprintln!("SKIPPED (in part): no test host for the allowed connect");
    }
}

#[test]
fn after_connect_the_bots_socket_is_the_supervisors_with_the_bots_mode_and_options() {
    // The supervisor connects a socket of its own, created with the hook's
    // uid and gid, to the address it checked, and installs it at the bot's
    // descriptor number (SECCOMP_IOCTL_NOTIF_ADDFD): another inode, the
    // checked peer, the hook as owner. It carries over what the bot set
    // before connecting: O_NONBLOCK (Python's timeouts), close-on-exec, and
    // the allowlisted options (recorded from the bot's setsockopt calls:
    // urllib3 sets TCP_NODELAY before it connects).
    let Some(host) = test_host() else {
        eprintln!("SKIPPED: no test host (run as root, or set SANDBOX_TEST_HTTP_ADDR/CIDR)");
        return;
    };
    let body = format!(
        "import fcntl, select, struct\n\
         HOST = {addr:?}\n\
         def report(s, ino, addr):\n\
         \x20   st = os.fstat(s.fileno())\n\
         \x20   return {{\n\
         \x20       'replaced': st.st_ino != ino,\n\
         \x20       'owner': [st.st_uid, st.st_gid],\n\
         \x20       'peer': list(s.getpeername()),\n\
         \x20       'nonblocking': bool(fcntl.fcntl(s.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK),\n\
         \x20       'cloexec': not os.get_inheritable(s.fileno()),\n\
         \x20       'nodelay': s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),\n\
         \x20       'keepalive': s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),\n\
         \x20       'keepidle': s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),\n\
         \x20       'linger': list(struct.unpack('ii', s.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8))),\n\
         \x20       'again': s.connect_ex(addr),\n\
         \x20   }}\n\
         def fetch(s):\n\
         \x20   s.setblocking(True)\n\
         \x20   s.sendall(b'GET /index.html HTTP/1.0\\r\\n\\r\\n')\n\
         \x20   data = b''\n\
         \x20   while True:\n\
         \x20       chunk = s.recv(4096)\n\
         \x20       if not chunk: break\n\
         \x20       data += chunk\n\
         \x20   return data.decode().split('\\r\\n\\r\\n', 1)[1]\n\
         out = {{'me': [os.getuid(), os.getgid()]}}\n\
         # Blocking, with options set before connect.\n\
         s = socket.socket()\n\
         ino = os.fstat(s.fileno()).st_ino\n\
         s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)\n\
         s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 77)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 3))\n\
         s.connect((HOST, 80))\n\
         out['blocking'] = report(s, ino, (HOST, 80))\n\
         out['blocking']['page'] = fetch(s)\n\
         s.close()\n\
         # Non-blocking: EINPROGRESS, then writability and SO_ERROR.\n\
         s = socket.socket(socket.AF_INET6)\n\
         ino = os.fstat(s.fileno()).st_ino\n\
         s.setblocking(False)\n\
         out['nb_first'] = s.connect_ex(('::ffff:' + HOST, 80))\n\
         out['nb_writable'] = bool(select.select([], [s], [], 5)[1])\n\
         out['nb_so_error'] = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)\n\
         out['nonblocking'] = report(s, ino, ('::ffff:' + HOST, 80))\n\
         out['nonblocking']['page'] = fetch(s)\n\
         s.close()\n\
         # A refused connect installs nothing; the socket may connect again,\n\
         # blocking and with a timeout (the refusal then comes via SO_ERROR).\n\
         for kind, timeout in [('refused_blocking', None), ('refused_timeout', 5)]:\n\
         \x20   s = socket.socket()\n\
         \x20   s.settimeout(timeout)\n\
         \x20   try:\n\
         \x20       s.connect((HOST, 443))\n\
         \x20       out[kind] = 'connected'\n\
         \x20   except OSError as e:\n\
         \x20       out[kind] = e.errno\n\
         \x20   s.connect((HOST, 80))\n\
         \x20   out[kind + '_then'] = [list(s.getpeername()), fetch(s)]\n\
         \x20   s.close()\n\
         return out",
        addr = host.addr
    );
    let r = attack_net(&body, &[&host.cidr]);
    assert_eq!(
        r.result()["ok"],
        json!(true),
        "{}\n{}",
        r.result(),
        r.stderr
    );
    let v = r.result()["value"].clone();
    let page = "hello from the test host\n";
    let me = v["me"].clone();
    let b = &v["blocking"];
    assert_eq!(b["replaced"], json!(true), "{v}");
    assert_eq!(b["owner"], me, "{v}");
    assert_eq!(b["peer"], json!([host.addr, 80]), "{v}");
    assert_eq!(b["nonblocking"], json!(false), "{v}");
    assert_eq!(b["cloexec"], json!(true), "{v}");
    assert_eq!(b["nodelay"], json!(1), "{v}");
    assert_eq!(b["keepalive"], json!(1), "{v}");
    assert_eq!(b["keepidle"], json!(77), "{v}");
    assert_eq!(b["linger"], json!([1, 3]), "{v}");
    assert_eq!(b["again"], json!(EISCONN), "{v}");
    assert_eq!(b["page"], json!(page), "{v}");

    assert_eq!(v["nb_first"], json!(EINPROGRESS), "{v}");
    assert_eq!(v["nb_writable"], json!(true), "{v}");
    assert_eq!(v["nb_so_error"], json!(0), "{v}");
    let nb = &v["nonblocking"];
    assert_eq!(nb["replaced"], json!(true), "{v}");
    assert_eq!(nb["owner"], me, "{v}");
    assert_eq!(nb["peer"][0], json!(format!("::ffff:{}", host.addr)), "{v}");
    assert_eq!(nb["nonblocking"], json!(true), "{v}");
    assert_eq!(nb["nodelay"], json!(0), "nothing set, nothing carried: {v}");
    assert_eq!(nb["again"], json!(EISCONN), "{v}");
    assert_eq!(nb["page"], json!(page), "{v}");

    for kind in ["refused_blocking", "refused_timeout"] {
        assert_eq!(v[kind], json!(ECONNREFUSED), "{kind}: {v}");
        assert_eq!(
            v[format!("{kind}_then")],
            json!([[host.addr, 80], page]),
            "{kind}: {v}"
        );
    }
}

#[test]
fn a_network_bot_fetches_from_a_test_host_but_not_from_loopback() {
    let Some(host) = test_host() else {
        eprintln!("SKIPPED: no test host (run as root, or set SANDBOX_TEST_HTTP_ADDR/CIDR)");
        return;
    };
    let src = format!(
        "import requests\n\
         class Fetch:\n\
         \x20   def __init__(self, ctx, params):\n\
         \x20       self.ctx = ctx\n\
         \x20   def on_init(self):\n\
         \x20       r = requests.get('http://{}/index.html', timeout=5)\n\
         \x20       self.ctx.post('fetched', {{'status': r.status_code, 'text': r.text}})\n\
         \x20       try:\n\
         \x20           requests.get('http://127.0.0.1/', timeout=5)\n\
         \x20           self.ctx.post('loopback', {{'reached': True}})\n\
         \x20       except requests.exceptions.ConnectionError as e:\n\
         \x20           self.ctx.post('loopback', {{'reached': False, 'error': str(e)}})\n",
        host.addr
    );
    let j = with_network(job(&src), &[&host.cidr]);
    let r = run_job(&j, Layer::Checked);
    let posts = r.posts();
    assert_eq!(
        posts[0],
        json!({"status": 200, "text": "hello from the test host\n"})
    );
    assert_eq!(posts[1]["reached"], json!(false), "{posts:?}");
    assert!(
        posts[1]["error"]
            .as_str()
            .unwrap()
            .contains("Network is unreachable"),
        "{posts:?}"
    );

    // Without the operator's allow_cidrs entry the same host is refused.
    let r = run_job(&with_network(job(&src), &[]), Layer::Checked);
    let msg = format!("{:?}", r.outcome);
    assert!(msg.contains("Network is unreachable"), "{msg}");
}

#[test]
fn ordinary_http_clients_still_fetch_from_a_network_bot() {
    // The positive control of the setsockopt allowlist and the sendmsg
    // refusal: what ordinary bot code calls (http.client and urllib3 set
    // TCP_NODELAY) still works through the language layer.
    let Some(host) = test_host() else {
        eprintln!("SKIPPED: no test host (run as root, or set SANDBOX_TEST_HTTP_ADDR/CIDR)");
        return;
    };
    let src = format!(
        "import http.client\n\
         import socket\n\
         import urllib.request\n\
         import urllib3\n\
         import requests\n\
         HOST = {addr:?}\n\
         class Fetch:\n\
         \x20   def __init__(self, ctx, params):\n\
         \x20       self.ctx = ctx\n\
         \x20   def on_init(self):\n\
         \x20       out = {{}}\n\
         \x20       c = http.client.HTTPConnection(HOST, 80, timeout=5)\n\
         \x20       c.request('GET', '/index.html')\n\
         \x20       out['http.client'] = c.getresponse().read().decode()\n\
         \x20       c.close()\n\
         \x20       with urllib.request.urlopen('http://' + HOST + '/index.html', timeout=5) as r:\n\
         \x20           out['urllib'] = r.read().decode()\n\
         \x20       r = urllib3.PoolManager().request('GET', 'http://' + HOST + '/index.html')\n\
         \x20       out['urllib3'] = r.data.decode()\n\
         \x20       with requests.Session() as s:\n\
         \x20           out['requests'] = s.get('http://' + HOST + '/index.html', timeout=5).text\n\
         \x20       s = socket.create_connection((HOST, 80), timeout=5)\n\
         \x20       s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)\n\
         \x20       s.sendall(b'GET /index.html HTTP/1.0\\r\\n\\r\\n')\n\
         \x20       data = b''\n\
         \x20       while True:\n\
         \x20           chunk = s.recv(4096)\n\
         \x20           if not chunk:\n\
         \x20               break\n\
         \x20           data += chunk\n\
         \x20       s.close()\n\
         \x20       out['socket'] = data.decode().split('\\r\\n\\r\\n', 1)[1]\n\
         \x20       self.ctx.post('fetched', out)\n",
        addr = host.addr
    );
    let r = run_job(&with_network(job(&src), &[&host.cidr]), Layer::Checked);
    let page = "hello from the test host\n";
    assert_eq!(
        r.posts(),
        vec![json!({"http.client": page, "urllib": page, "urllib3": page,
                    "requests": page, "socket": page})],
        "{}",
        r.stderr
    );
}

// ---------------------------------------------------------------------------
// Signals, identity, inheritance

#[test]
fn kill_1_and_kill_minus_1_are_refused_by_seccomp() {
    assert_errno(&attack("os.kill(1, 9)\nreturn 'sent'"), EPERM);
    assert_errno(&attack("os.kill(-1, 9)\nreturn 'sent'"), EPERM);
}

#[test]
fn tgkill_of_another_process_is_refused_by_seccomp_argument_filter() {
    let r = attack(&ctypes_syscall(234, "1, 1, 9"));
    assert_eq!(r.result()["value"], json!({"ret": -1, "errno": EPERM}));
}

#[test]
fn setuid_0_is_killed_by_seccomp() {
    attack("os.setuid(0)\nreturn 'root'").assert_seccomp_killed();
}

#[test]
fn the_hook_runs_unprivileged_with_no_capabilities() {
    let r = attack(
        "return {'uid': os.getuid(), 'euid': os.geteuid(), 'gid': os.getgid(), 'groups': os.getgroups()}",
    );
    let v = &r.result()["value"];
    assert_eq!(v["uid"], json!(65534));
    assert_eq!(v["euid"], json!(65534));
    assert_eq!(v["gid"], json!(65534));
    assert_eq!(v["groups"], json!([]));
}

#[test]
fn inherited_fds_and_environment_do_not_reach_the_hook() {
    use std::os::unix::fs::MetadataExt;
    let secret = std::env::temp_dir().join(format!("sbx-secret-{}", std::process::id()));
    std::fs::write(&secret, "secret").unwrap();
    let ino = std::fs::metadata(&secret).unwrap().ino();
    let file = std::fs::File::open(&secret).unwrap();
    let body = "fds = {}\n\
                for fd in range(3, 1024):\n\
                \x20   try: fds[str(fd)] = os.fstat(fd).st_ino\n\
                \x20   except OSError as e: pass\n\
                return {'env': dict(os.environ), 'fds': fds}";
    let r = {
        run_job_with(&job(&attack_bot(body)), Layer::OsOnly, |cmd| {
            use std::os::unix::process::CommandExt;
            cmd.env("DAEMON_SECRET", "hunter2");
            let raw = std::os::fd::AsRawFd::as_raw_fd(&file);
            // SAFETY: only async-signal-safe dup2 between fork and exec; it
            // puts the secret file at fd 7 without close-on-exec.
            #[allow(unsafe_code)]
            unsafe {
                cmd.pre_exec(move || {
                    if libc_dup2(raw, 7) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
    };
    let v = &r.result()["value"];
    // Through a template the job has a hash seed (templates serve seeded
    // bots), which the interpreter reads from its environment.
    let want = if forked() {
        json!({"LANG": "C.UTF-8", "PYTHONHASHSEED": "4242"})
    } else {
        json!({"LANG": "C.UTF-8"})
    };
    assert_eq!(v["env"], want, "{v}");
    let fds = v["fds"].as_object().unwrap();
    assert!(
        fds.values().all(|i| i.as_u64() != Some(ino)),
        "the inherited fd reached the hook: {fds:?}"
    );
    drop(file);
    let _ = std::fs::remove_file(&secret);
}

#[allow(unsafe_code)]
fn libc_dup2(from: i32, to: i32) -> i32 {
    unsafe extern "C" {
        fn dup2(oldfd: i32, newfd: i32) -> i32;
    }
    // SAFETY: dup2 on descriptors of this (forked, about to exec) process.
    unsafe { dup2(from, to) }
}

#[test]
fn symlink_to_a_host_file_resolves_inside_the_sandbox() {
    let r = attack("os.symlink('/etc/passwd', '/workspace/l')\nreturn open('/workspace/l').read()");
    assert_errno(&r, ENOENT);
    let r = attack(
        "os.symlink('/harness/harness.py', '/workspace/h')\nopen('/workspace/h', 'a').write('x')\nreturn 'written'",
    );
    assert_errno(&r, EACCES);
}

#[test]
fn hardlink_to_a_file_outside_the_workspace_is_refused() {
    let r = attack("os.link('/harness/harness.py', '/workspace/h')\nreturn 'linked'");
    let v = r.result();
    let errno = v["errno"].as_i64().unwrap() as i32;
    // Another mount (EXDEV) and Landlock (EACCES): either stops it.
    assert!(errno == EXDEV || errno == EACCES, "{v}");
}

// ---------------------------------------------------------------------------
// Raw system calls through ctypes: the seccomp kill list

macro_rules! killed_syscall {
    ($name:ident, $nr:expr, $args:expr) => {
        #[test]
        fn $name() {
            attack(&ctypes_syscall($nr, $args)).assert_seccomp_killed();
        }
    };
}

killed_syscall!(ctypes_ptrace_is_killed_by_seccomp, 101, "16, 1, 0, 0");
killed_syscall!(ctypes_unshare_is_killed_by_seccomp, 272, "0x10000000");
killed_syscall!(
    ctypes_mount_is_killed_by_seccomp,
    165,
    "b'none', b'/workspace', b'tmpfs', 0, 0"
);
killed_syscall!(ctypes_bpf_is_killed_by_seccomp, 321, "0, 0, 0");
killed_syscall!(ctypes_keyctl_is_killed_by_seccomp, 250, "0, 0, 0");
killed_syscall!(ctypes_io_uring_setup_is_killed_by_seccomp, 425, "8, 0");
killed_syscall!(ctypes_userfaultfd_is_killed_by_seccomp, 323, "0");
killed_syscall!(
    ctypes_perf_event_open_is_killed_by_seccomp,
    298,
    "0, 0, -1, -1, 0"
);
killed_syscall!(ctypes_memfd_create_is_killed_by_seccomp, 319, "b'x', 0");
killed_syscall!(
    ctypes_process_vm_readv_is_killed_by_seccomp,
    310,
    "1, 0, 1, 0, 1, 0"
);
killed_syscall!(ctypes_setns_is_killed_by_seccomp, 308, "0, 0");

#[test]
fn x32_syscall_numbers_are_killed_by_the_gate() {
    // getpid with the x32 bit set.
    attack(&ctypes_syscall(0x4000_0000 + 39, "")).assert_seccomp_killed();
}

#[test]
fn raw_fork_and_vfork_syscalls_are_refused_by_seccomp() {
    for nr in [57, 58] {
        let r = attack(&ctypes_syscall(nr, ""));
        assert_eq!(
            r.result()["value"],
            json!({"ret": -1, "errno": EPERM}),
            "syscall {nr}"
        );
    }
}

#[test]
fn tiocsti_and_other_ioctls_are_refused_by_seccomp_argument_filter() {
    // TIOCSTI would push input into a terminal; only five ioctls are allowed.
    let r = attack(
        "import fcntl\n\
         fcntl.ioctl(0, 0x5412, b'x')\n\
         return 'injected'",
    );
    assert_errno(&r, EPERM);
}

#[test]
fn clone3_answers_enosys_so_threads_still_work() {
    let r = attack(&ctypes_syscall(435, "0, 0"));
    assert_eq!(r.result()["value"], json!({"ret": -1, "errno": 38}));
}

#[test]
fn a_32_bit_int_0x80_syscall_is_killed_by_the_architecture_check() {
    // mov eax, 20 (getpid on i386); int 0x80; ret
    attack(
        "import mmap\n\
         code = b'\\xb8\\x14\\x00\\x00\\x00\\xcd\\x80\\xc3'\n\
         m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n\
         m.write(code)\n\
         addr = ctypes.addressof(ctypes.c_char.from_buffer(m))\n\
         return ctypes.CFUNCTYPE(ctypes.c_int)(addr)()",
    )
    .assert_seccomp_killed();
}

#[test]
fn sysv_shared_memory_is_refused_by_seccomp() {
    let r = attack(
        "libc = ctypes.CDLL(None, use_errno=True)\n\
         r = libc.shmget(0, 4096, 0o1600)\n\
         return {'ret': r, 'errno': ctypes.get_errno()}",
    );
    assert_eq!(r.result()["value"], json!({"ret": -1, "errno": EPERM}));
}

#[test]
fn the_hook_sees_its_own_empty_namespaces() {
    let r = attack(
        "import socket as s\n\
         return {'hostname': s.gethostname(), 'pid': os.getpid()}",
    );
    let v = &r.result()["value"];
    assert_eq!(v["hostname"], json!("sandbox"));
    assert!(
        v["pid"].as_u64().unwrap() <= 3,
        "not in a fresh PID namespace: {v}"
    );
}

// ---------------------------------------------------------------------------
// Positive controls (the real harness, language layer on)

fn checked(src: &str) -> Run {
    run_job(&job(src), Layer::Checked)
}

#[test]
fn every_allowlisted_module_imports() {
    let modules = [
        "json",
        "math",
        "random",
        "datetime",
        "time",
        "re",
        "base64",
        "hashlib",
        "hmac",
        "secrets",
        "typing",
        "copy",
        "collections",
        "itertools",
        "functools",
        "io",
        "traceback",
        "sys",
        "email",
        "warnings",
        "weakref",
        "string",
        "decimal",
        "fractions",
        "statistics",
    ];
    let mut src = String::new();
    for m in modules {
        src.push_str(&format!("import {m}\n"));
    }
    src.push_str("class M:\n    def __init__(self, ctx, params):\n        self.ctx = ctx\n    def on_init(self):\n        self.ctx.post('ok', {'n': ");
    src.push_str(&modules.len().to_string());
    src.push_str("})\n");
    let r = checked(&src);
    assert_eq!(r.posts(), vec![json!({"n": modules.len()})]);
}

#[test]
fn network_modules_import_for_network_bots() {
    let modules = [
        "socket",
        "ssl",
        "http.client",
        "urllib.parse",
        "urllib3",
        "requests",
        "certifi",
        "idna",
        "charset_normalizer",
    ];
    let mut src = String::new();
    for m in modules {
        src.push_str(&format!("import {m}\n"));
    }
    src.push_str("class M:\n    def __init__(self, ctx, params):\n        self.ctx = ctx\n    def on_init(self):\n        self.ctx.post('ok', {})\n");
    let r = run_job(&with_network(job(&src), &[]), Layer::Checked);
    assert_eq!(r.posts(), vec![json!({})], "{:?}", r.outcome);
}

#[test]
fn tls_finds_the_ca_certificates_for_network_bots() {
    let src = "import ssl\nimport certifi\nclass T:\n    def __init__(self, ctx, params):\n        self.ctx = ctx\n    def on_init(self):\n        c = ssl.create_default_context()\n        n = c.cert_store_stats()['x509_ca']\n        c2 = ssl.create_default_context(cafile=certifi.where())\n        self.ctx.post('tls', {'default': n > 50, 'certifi': c2.cert_store_stats()['x509_ca'] > 50})\n";
    let r = run_job(&with_network(job(src), &[]), Layer::Checked);
    assert_eq!(
        r.posts(),
        vec![json!({"default": true, "certifi": true})],
        "{:?}",
        r.outcome
    );
}

#[test]
fn loops_comprehensions_classes_and_exceptions_work() {
    let src = r#"
class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

class Calc:
    def __init__(self, ctx, params):
        self.ctx = ctx
    def on_init(self):
        total = 0
        for i in range(10):
            total += i
        squares = [i * i for i in range(5)]
        evens = {i for i in range(10) if i % 2 == 0}
        names = {k: len(k) for k in ["a", "bb"]}
        gen = sum(x for x in range(4))
        try:
            raise ValueError("boom")
        except ValueError as e:
            caught = str(e)
        p = Point(2, 3)
        self.ctx.post("calc", {"total": total, "squares": squares, "evens": sorted(evens),
                               "names": names, "gen": gen, "caught": caught, "p": [p.x, p.y]})
"#;
    let r = checked(src);
    assert_eq!(
        r.posts(),
        vec![
            json!({"total": 45, "squares": [0, 1, 4, 9, 16], "evens": [0, 2, 4, 6, 8],
                    "names": {"a": 1, "bb": 2}, "gen": 6, "caught": "boom", "p": [2, 3]})
        ]
    );
}

#[test]
fn state_round_trips_and_messages_reach_the_bot() {
    let src = r#"
class Counter:
    def __init__(self, ctx, params):
        self.ctx = ctx
    def on_message(self, msg):
        s = self.ctx.get_state()
        s["n"] = s.get("n", 0) + 1
        s["last"] = msg["body"]
        self.ctx.set_state(s)
        self.ctx.post("count", {"n": s["n"]}, to=["alice"])
"#;
    let mut j = job(src);
    j.state = json!({"n": 41});
    j.hook = Hook::OnMessage {
        message: json!({"seq": 1, "sender": "alice", "body": "hi"}),
    };
    let r = run_job(&j, Layer::Checked);
    match &r.outcome {
        HookOutcome::Ok {
            posts,
            state,
            timings,
            ..
        } => {
            assert_eq!(state, &json!({"n": 42, "last": "hi"}));
            assert_eq!(posts[0].to, Some(vec!["alice".to_string()]));
            assert!(timings.confine_us > 0 && timings.hook_us > 0, "{timings:?}");
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(r.code, exit::OK);
}

#[test]
fn the_language_layer_still_refuses_import_os_without_the_test_switch() {
    let r = checked(
        "import os\nclass B:\n    def __init__(self, ctx, params):\n        pass\n    def on_init(self):\n        pass\n",
    );
    match r.error() {
        HookError::Policy { line, message } => {
            assert_eq!(*line, Some(1));
            assert!(message.contains("'os'"), "{message}");
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(r.code, exit::HOOK_FAILED);
}

// ---------------------------------------------------------------------------
// Fail closed

#[test]
fn a_shim_interpreter_is_refused_before_anything_runs() {
    let dir = std::env::temp_dir().join(format!("sbx-shim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shim = dir.join("python3");
    std::fs::write(&shim, "#!/bin/sh\nexec /usr/bin/python3 \"$@\"\n").unwrap();
    let mut j = job("class B:\n    pass\n");
    j.runtime.python = shim;
    let r = run_job(&j, Layer::Checked);
    match r.error() {
        HookError::Confinement { step, .. } => assert_eq!(step, "layout"),
        e => panic!("{e:?}"),
    }
    assert_eq!(r.code, exit::CONFINEMENT_FAILED);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the runner (as root) without one capability, through `setpriv`.
fn run_without_capability(cap: &str) -> Option<Run> {
    if !is_root() {
        eprintln!("SKIPPED: dropping a capability of root needs root mode");
        return None;
    }
    let j = job("class B:\n    pass\n");
    Some(run_job_with(&j, Layer::Checked, |cmd| {
        let runner = runner();
        *cmd = std::process::Command::new("setpriv");
        cmd.arg("--bounding-set")
            .arg(format!("-{cap}"))
            .arg("--inh-caps")
            .arg(format!("-{cap}"))
            .arg(runner)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
    }))
}

/// Runs a job with `socket(AF_NETLINK, ...)` refused for the runner, as a
/// systemd unit's `RestrictAddressFamilies=` without `AF_NETLINK` would.
fn run_without_netlink(j: &hook_protocol::HookJob) -> Run {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    let netlink = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        libc::AF_NETLINK as u64,
    )
    .expect("condition");
    let filter = SeccompFilter::new(
        [(
            libc::SYS_socket,
            vec![SeccompRule::new(vec![netlink]).expect("rule")],
        )]
        .into_iter()
        .collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EAFNOSUPPORT as u32),
        TargetArch::x86_64,
    )
    .expect("filter");
    let prog: BpfProgram = filter.try_into().expect("compile");
    run_job_with(j, Layer::Checked, |cmd| {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only prctl and seccomp run, on a
        // program compiled before the fork.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || seccompiler::apply_filter(&prog).map_err(std::io::Error::other));
        }
    })
}

#[test]
fn without_rtnetlink_a_network_hook_fails_closed() {
    // Without the host's address list the supervisor could not keep the bot
    // off this host: the hook must not run at all. Mechanism: the runner's
    // `network` confinement step.
    let src = "class B:\n    def on_init(self):\n        self.ctx.post('ran', {})\n";
    let r = run_without_netlink(&with_network(job(src), &[]));
    match r.error() {
        HookError::Confinement { step, message } => {
            assert_eq!(step, "network");
            assert!(message.contains("AF_NETLINK"), "{message}");
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(r.code, exit::CONFINEMENT_FAILED);
    // A bot without network needs no netlink and still runs.
    let r = run_without_netlink(&job(src));
    assert_eq!(r.posts(), vec![json!({})], "{}", r.stderr);
}

#[test]
fn refused_namespaces_fail_closed() {
    let Some(r) = run_without_capability("sys_admin") else {
        return;
    };
    match r.error() {
        HookError::Confinement { step, .. } => assert_eq!(step, "namespaces"),
        e => panic!("{e:?}"),
    }
    assert_eq!(r.code, exit::CONFINEMENT_FAILED);
}

#[test]
fn a_refused_uid_change_fails_closed() {
    for cap in ["setuid", "setpcap"] {
        let Some(r) = run_without_capability(cap) else {
            return;
        };
        match r.error() {
            HookError::Confinement { step, .. } => assert_eq!(step, "credentials", "{cap}"),
            e => panic!("{cap}: {e:?}"),
        }
        assert_eq!(r.code, exit::CONFINEMENT_FAILED);
    }
}

#[test]
fn sandbox_uid_0_is_refused() {
    let mut j = job("class B:\n    pass\n");
    j.runtime.sandbox_uid = 0;
    let r = run_job(&j, Layer::Checked);
    assert!(
        matches!(r.error(), HookError::Confinement { .. }),
        "{:?}",
        r.outcome
    );
    assert_eq!(r.code, exit::CONFINEMENT_FAILED);
}

#[test]
fn a_malformed_job_exits_bad_job() {
    let out = std::process::Command::new(runner())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::BAD_JOB));
    let o: HookOutcome = serde_json::from_slice(&out.stdout).unwrap();
    assert!(matches!(
        o,
        HookOutcome::Error {
            error: HookError::Internal { .. }
        }
    ));
}

#[test]
fn a_malformed_cidr_is_a_bad_job() {
    let mut j = with_network(job("class B:\n    pass\n"), &["10.0.0.0/99"]);
    j.network.deny_cidrs = vec![];
    let r = run_job(&j, Layer::Checked);
    assert!(
        matches!(r.error(), HookError::Internal { .. }),
        "{:?}",
        r.outcome
    );
    assert_eq!(r.code, exit::BAD_JOB);
}

#[test]
fn a_job_of_another_version_is_a_bad_job() {
    if forked() {
        return; // a template refuses it and goes on: fork::a_job_that_differs_from_the_spec_...
    }
    let mut j = job("class B:\n    pass\n");
    j.version = 99;
    let r = run_job(&j, Layer::Checked);
    assert_eq!(r.code, exit::BAD_JOB);
}

#[test]
fn policy_json_lists_syscalls_and_namespaces() {
    let out = std::process::Command::new(runner())
        .args(["policy", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let confine = v["confine_syscalls"].as_array().unwrap();
    for s in ["unshare", "pivot_root", "landlock_restrict_self", "seccomp"] {
        assert!(confine.iter().any(|x| x == s), "{s}");
    }
    let bot = v["bot_syscalls"].as_array().unwrap();
    assert!(bot.iter().any(|x| x == "read"));
    assert!(
        !bot.iter()
            .any(|x| x == "ptrace" || x == "bind" || x == "sendmsg")
    );
    // The runner asks the host's routing over rtnetlink (a unit must allow it).
    assert_eq!(v["address_families"]["runner"], json!(["AF_NETLINK"]));
    assert_eq!(
        v["namespaces"],
        json!(["user", "mnt", "pid", "ipc", "uts", "net"])
    );
}

/// A NixOS-like layout, made here with `patchelf`: the interpreter, its ELF
/// loader and a library it needs each live in their own "store path", and
/// the library exists nowhere else. With the store among
/// `runtime.system_dirs` the hook runs (loader found by `PT_INTERP`, library
/// by `RUNPATH`); without it the interpreter cannot start and the hook fails
/// with nothing run. Mechanism: the mount plan (system dirs bound read-only
/// first) and Landlock's execute rule on the `PT_INTERP` loader.
#[test]
fn store_layout_interpreter_runs_only_with_its_store_bound() {
    let Ok(patchelf) = which("patchelf") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "patchelf is missing (tests/steps/30-sandbox.sh installs it)"
        );
        eprintln!("SKIPPED: no patchelf");
        return;
    };
    let root = std::env::temp_dir().join(format!("mcpmp-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let store = root.join("store");
    let py_bin = store.join("aaaa-python3-3.11/bin");
    let py_lib = store.join("aaaa-python3-3.11/lib");
    let glibc = store.join("bbbb-glibc/lib");
    let extra = store.join("cccc-extra/lib");
    for d in [&py_bin, &py_lib, &glibc, &extra] {
        std::fs::create_dir_all(d).unwrap();
    }
    let python = py_bin.join("python3.11");
    std::fs::copy("/usr/bin/python3.11", &python).unwrap();
    std::os::unix::fs::symlink("/usr/lib/python3.11", py_lib.join("python3.11")).unwrap();
    let loader = glibc.join("ld-linux-x86-64.so.2");
    std::fs::copy(
        std::fs::canonicalize("/lib64/ld-linux-x86-64.so.2").unwrap(),
        &loader,
    )
    .unwrap();
    // A library only the store has, which the interpreter needs.
    let c_src = root.join("storeonly.c");
    std::fs::write(&c_src, "int mcpmp_store_only(void) { return 1; }\n").unwrap();
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(extra.join("libstoreonly.so"))
        .arg(&c_src)
        .status()
        .unwrap();
    assert!(status.success(), "cc failed");
    // One change per call: patchelf 0.14 mixes up combined operations.
    for args in [
        vec!["--add-needed".into(), "libstoreonly.so".into()],
        vec!["--set-rpath".into(), extra.clone().into_os_string()],
        vec!["--set-interpreter".into(), loader.clone().into_os_string()],
    ] {
        let args: Vec<std::ffi::OsString> = args;
        let status = std::process::Command::new(&patchelf)
            .args(&args)
            .arg(&python)
            .status()
            .unwrap();
        assert!(status.success(), "patchelf {args:?}");
    }
    // The patched interpreter works outside the sandbox.
    let out = std::process::Command::new(&python)
        .args(["-c", "print(6*7)"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42", "{out:?}");
    // Readable by the sandbox uid in root mode, and by the test's own uid.
    std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&root)
        .status()
        .unwrap();

    let src = "class B:\n    def on_init(self):\n        import math\n        self.ctx.post('sqrt', math.sqrt(16))\n";
    let mut j = job(src);
    j.runtime.python = python.clone();
    j.runtime.system_dirs = vec![store.clone()];
    let r = run_job(&j, Layer::Checked);
    assert_eq!(r.posts(), vec![json!(4.0)], "{}", r.stderr);

    j.runtime.system_dirs = Vec::new();
    let r = run_job(&j, Layer::Checked);
    assert!(
        matches!(r.outcome, HookOutcome::Error { .. }) && r.stderr.contains("libstoreonly.so"),
        "without its store the interpreter must not find its library: {:?} {}",
        r.outcome,
        r.stderr
    );
    let _ = std::fs::remove_dir_all(&root);
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
