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
//! * ENETUNREACH (101): the runner's connect supervisor (netguard).
//! * ENOSPC / EFBIG: workspace tmpfs size and inodes / RLIMIT_FSIZE.
//! * a `limit` error: the runner's outcome check (`Limits::check`) on what
//!   fd 3 says (`outcome_cases`).
//!
//! Run as root (root mode) and as an unprivileged user (user-namespace mode);
//! `tests/steps/30-sandbox.sh` does both.

mod outcome_cases;
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
    // /usr/bin holds only the bound interpreter; its directory is not listable.
    assert_errno(&attack("return os.listdir('/usr/bin')"), EACCES);
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
    assert!(r.stderr.contains("Port(22)"), "{}", r.stderr);
}

#[test]
fn rewriting_the_address_during_connect_cannot_redirect_it() {
    // One thread keeps swapping the sockaddr between the allowed test host
    // and 127.0.0.1 while another connects with it. The supervisor connects
    // with its own checked copy, so every connect either reaches the test
    // host or is refused; none reaches (or is refused by) loopback.
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
         \x20   r = libc.connect(s.fileno(), buf, 16)\n\
         \x20   e = ctypes.get_errno() if r else 0\n\
         \x20   results.append([r, e, s.getpeername()[0] if r == 0 else None])\n\
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

#[test]
fn sendto_with_fastopen_cannot_bypass_the_connect_supervisor() {
    let r = attack_net(
        "s = socket.socket()\ns.sendto(b'GET /', socket.MSG_FASTOPEN, ('127.0.0.1', 80))\nreturn 'sent'",
        &[],
    );
    assert_errno(&r, EPERM);
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
    assert_eq!(v["env"], json!({"LANG": "C.UTF-8"}), "{v}");
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
    assert!(!bot.iter().any(|x| x == "ptrace" || x == "bind"));
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
