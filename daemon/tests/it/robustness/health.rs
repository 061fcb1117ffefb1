//! `/healthz` tells a full disk and a database that takes no writes from a
//! healthy one; start-up refuses a database it cannot write, or one from a
//! newer release, with a sentence.

use super::*;

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs(TempDir);

impl Tmpfs {
    fn new(tag: &str, size: &str) -> Tmpfs {
        let d = TempDir::new(tag);
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(d.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs (needs root)");
        Tmpfs(d)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// Remounts with `opts`. A daemon killed just before leaves its
    /// sandboxes (pre-warmed ones, fork templates) exiting on their own for a
    /// moment, reparented away from the test; each one's mount namespace is a
    /// copy of ours holding this tmpfs, and the kernel refuses `remount,ro`
    /// (EBUSY) until they are gone. So the remount is retried while that
    /// lasts, for at most 10 s.
    fn remount(&self, opts: &str) {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let ok = Command::new("mount")
                .args(["-o", &format!("remount,{opts}")])
                .arg(self.path())
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success();
            if ok {
                return;
            }
            if std::time::Instant::now() >= until {
                let ps = Command::new("ps")
                    .args(["-eo", "pid,ppid,stat,comm"])
                    .output()
                    .unwrap();
                panic!(
                    "remount {opts} refused for 10 s; processes:\n{}",
                    String::from_utf8_lossy(&ps.stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

async fn health(d: &Server) -> (u16, Value) {
    let r = reqwest::get(format!("{}/healthz", d.base)).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
#[ignore = "mounts a tmpfs (root): tests/steps/70-robustness.sh"]
async fn a_full_disk_is_unhealthy_posts_fail_cleanly_and_health_returns_with_space() {
    let fs = Tmpfs::new("diskfull", "16m");
    let token = create_token(fs.path(), "alice");
    let d = Server::start(fs.path(), &Opts::default());
    let (s, h) = health(&d).await;
    assert_eq!(s, 200, "{h}");
    let mut c = Mcp::connect(&d.url(), Some(&token)).await;
    let (cid, _) = channel(&mut c, &["alice"]).await;

    // Fill the filesystem.
    let filler = fs.path().join("filler");
    let out = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!out.success(), "dd stops at ENOSPC");
    // A reading is reused for a second; the next one sees the full disk.
    let full = eventually(Duration::from_secs(5), || async {
        health(&d).await.0 == 503
    })
    .await;
    let (_, h) = health(&d).await;
    assert!(full, "{h}");
    assert_eq!(h["status"], "unhealthy");
    assert_eq!(h["disk"]["status"], "full", "{h}");

    // A post fails as a tool error, never HTTP 500, and the daemon lives.
    let http = reqwest::Client::new();
    let big = "y".repeat(60_000);
    let mut refused = false;
    for _ in 0..50 {
        let (status, v) = raw_call(
            &http,
            &d.url(),
            &token,
            c.session.as_deref(),
            "post_message",
            json!({"channel_id": cid, "body": big}),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{v}");
        let (is_error, r) = tool_result(&v).unwrap();
        if is_error {
            let msg = r["error"]["message"].as_str().unwrap();
            assert!(msg.contains("cannot store"), "{v}");
            refused = true;
            break;
        }
    }
    assert!(refused, "posts kept succeeding on a full disk");

    std::fs::remove_file(&filler).unwrap();
    let back = eventually(Duration::from_secs(5), || async {
        health(&d).await.0 == 200
    })
    .await;
    assert!(back, "{}", health(&d).await.1);
    c.ok(
        "post_message",
        json!({"channel_id": cid, "body": "room again"}),
    )
    .await;
}

#[tokio::test]
#[ignore = "mounts a tmpfs read-only and runs the daemon as another uid (root): tests/steps/70-robustness.sh"]
async fn start_up_refuses_a_database_it_cannot_write_with_a_sentence() {
    // A read-only filesystem.
    let fs = Tmpfs::new("rofs", "16m");
    {
        let d = Server::start(fs.path(), &Opts::default());
        drop(d);
    }
    fs.remount("ro");
    let out = Command::new(daemon_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(fs.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started on a read-only filesystem:\n{text}"
    );
    assert!(
        text.contains("cannot be written") && text.contains("read-only"),
        "{text}"
    );
    fs.remount("rw");

    // A file the service's user may not write.
    let dir = TempDir::new("rofile");
    {
        let d = Server::start(dir.path(), &Opts::default());
        drop(d);
    }
    let uid = 64_777u32;
    Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{uid}"))
        .arg(dir.path())
        .status()
        .unwrap();
    Command::new("chmod")
        .arg("0444")
        .arg(dir.path().join("mcp-multiplayer.db"))
        .status()
        .unwrap();
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
        ])
        .arg(daemon_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started on a read-only file:\n{text}"
    );
    assert!(text.contains("cannot be written"), "{text}");
    assert!(
        text.contains("owner and mode"),
        "says what to check: {text}"
    );
}

#[test]
fn a_database_from_a_newer_release_is_refused_with_a_sentence() {
    let dir = TempDir::new("newer");
    create_token(dir.path(), "alice");
    let db = dir.path().join("mcp-multiplayer.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.pragma_update(None, "user_version", 999).unwrap();
    }
    let out = Command::new(daemon_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("schema version 999") && text.contains("newer"),
        "{text}"
    );
    // The CLI too, and nothing was changed.
    let out = Command::new(daemon_bin())
        .args(["principal", "list", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let c = rusqlite::Connection::open(&db).unwrap();
    let v: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, 999);
}

/// An ext4 image mounted with `errors=remount-ro`, so that the kernel can be
/// made to turn it read-only under a running daemon (as after a disk error).
struct Ext4(TempDir, PathBuf);

impl Ext4 {
    fn new(tag: &str) -> Ext4 {
        let d = TempDir::new(tag);
        let img = std::env::temp_dir().join(format!("mcpmp-{tag}-{}.img", rand::random::<u32>()));
        let run = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
        run(Command::new("truncate").args(["-s", "64M"]).arg(&img));
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
        run(Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(&img)
            .arg(d.path()));
        Ext4(d, img)
    }

    /// Makes the kernel record an error on the filesystem: it goes read-only.
    fn fail(&self) {
        let out = Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(self.0.path())
            .output()
            .unwrap();
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let name = Path::new(&dev)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        std::fs::write(format!("/sys/fs/ext4/{name}/trigger_fs_error"), "1").unwrap();
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
        let _ = std::fs::remove_file(&self.1);
    }
}

#[tokio::test]
#[ignore = "mounts an ext4 image and makes the kernel turn it read-only (root): tests/steps/70-robustness.sh"]
async fn a_database_that_turns_read_only_under_the_daemon_is_unhealthy_and_posts_fail_cleanly() {
    let fs = Ext4::new("rofail");
    let token = create_token(fs.0.path(), "alice");
    let mut d = Server::start(fs.0.path(), &Opts::default());
    assert_eq!(health(&d).await.0, 200);
    let mut c = Mcp::connect(&d.url(), Some(&token)).await;
    let (cid, _) = channel(&mut c, &["alice"]).await;
    fs.fail();
    let unhealthy = eventually(Duration::from_secs(5), || async {
        health(&d).await.0 == 503
    })
    .await;
    let (_, h) = health(&d).await;
    assert!(unhealthy, "{h}");
    assert_eq!(h["database"], "read-only", "{h}");
    let http = reqwest::Client::new();
    let (status, v) = raw_call(
        &http,
        &d.url(),
        &token,
        c.session.as_deref(),
        "post_message",
        json!({"channel_id": cid, "body": "nowhere to go"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{v}");
    let (is_error, r) = tool_result(&v).unwrap();
    assert!(is_error, "{v}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot store"),
        "{v}"
    );
    // And it still stops on SIGTERM.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(15)).is_some());
}
