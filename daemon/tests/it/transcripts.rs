//! Signed heads, exports and offline verification against a real daemon:
//! what a member takes away verifies with `mcp-multiplayer verify` alone,
//! a tampered copy does not, and the signing key is published, rotated and
//! protected as `docs/transcripts.md` says.

use crate::util::{Daemon, Mcp, TempDir, create_token, daemon_bin};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// `mcp-multiplayer verify FILE ARGS...`: exit code and stdout.
fn verify(file: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(daemon_bin())
        .arg("verify")
        .arg(file)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn save(dir: &Path, name: &str, v: &Value) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    p
}

async fn http_export(d: &Daemon, token: Option<&str>, cid: &str) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}/channels/{cid}/export", d.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// Drops what differs between two exports of the same entries made at
/// different moments.
fn entries(doc: &Value) -> &Value {
    &doc["entries"]
}

#[tokio::test]
async fn a_members_export_verifies_offline_and_a_tampered_copy_names_its_seq() {
    let dir = TempDir::new("transcripts");
    let names = ["alice", "bob", "carol", "dave"];
    let tokens: Vec<String> = names.iter().map(|n| create_token(dir.path(), n)).collect();
    let d = Daemon::start(dir.path(), &[]);
    let mut alice = Mcp::connect(&d.mcp_url(), Some(&tokens[0])).await;
    let mut bob = Mcp::connect(&d.mcp_url(), Some(&tokens[1])).await;
    let mut carol = Mcp::connect(&d.mcp_url(), Some(&tokens[2])).await;
    let created = alice
        .ok(
            "create_channel",
            json!({"name": "proof", "slots": ["invite:alice", "invite:bob", "invite:carol"], "join_as": "alice"}),
        )
        .await;
    let cid = created["channel_id"].as_str().unwrap().to_string();
    for (who, i) in [(&mut bob, 0), (&mut carol, 1)] {
        who.ok(
            "join_channel",
            json!({"invite_code": created["invites"][i]["invite_code"]}),
        )
        .await;
    }
    alice
        .ok(
            "post_message",
            json!({"channel_id": cid, "body": "hello all"}),
        )
        .await;
    alice
        .ok(
            "post_message",
            json!({"channel_id": cid, "body": {"bid": 450, "x": 1.5e-7, "y": 1e21}, "to": "bob"}),
        )
        .await;
    bob.ok("post_message", json!({"channel_id": cid, "body": "seen"}))
        .await;

    // Every sync result carries a head at its cursor, by the published key.
    let synced = bob
        .ok(
            "sync_messages",
            json!({"channel_id": cid, "cursor": 0, "wait_ms": 0}),
        )
        .await;
    let head = &synced["signed_head"];
    assert_eq!(head["seq"], synced["cursor"]);
    let last = synced["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(head["head_hash"], last["hash"]);
    let keys: Value = reqwest::get(format!("{}/.well-known/mcp-multiplayer/keys.json", d.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key_id = keys["keys"][0]["key_id"].as_str().unwrap().to_string();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    assert_eq!(head["key_id"], key_id.as_str());
    let info = bob.ok("get_channel_info", json!({"channel_id": cid})).await;
    assert_eq!(info["signing_key"], key_id.as_str());
    let keys_file = save(dir.path(), "keys.json", &keys);

    // The tool's export and the HTTP one hold the same entries.
    let by_tool = alice
        .ok("export_transcript", json!({"channel_id": cid}))
        .await;
    let resp = http_export(&d, Some(&tokens[0]), &cid).await;
    assert_eq!(resp.status(), 200);
    let by_http: Value = resp.json().await.unwrap();
    assert_eq!(entries(&by_tool), entries(&by_http));
    assert_eq!(by_http["format"], "mcp-multiplayer-transcript");
    assert_eq!(by_http["version"], 1);
    assert!(by_http.get("page").is_none());
    let n = by_http["entries"].as_array().unwrap().len() as i64;
    assert_eq!(
        by_http["signed_heads"].as_array().unwrap().last().unwrap()["seq"],
        n
    );

    // Each member's view verifies; carol's has the private bid as a hash.
    let alice_file = save(dir.path(), "alice.json", &by_http);
    let (code, out) = verify(&alice_file, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("VERIFIED"), "{out}");
    let carols = carol
        .ok("export_transcript", json!({"channel_id": cid}))
        .await;
    assert!(
        carols["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["redacted"] == true && m.get("body").is_none())
    );
    let (code, out) = verify(&save(dir.path(), "carol.json", &carols), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("reader: the 0 private bod(ies) shown"),
        "{out}"
    );
    // Attack: alice's export relabelled as carol's (`exported_as` is the
    // document's word, under no signature) to show a third party what carol
    // "saw". It shows the bid alice sent bob, which carol never receives:
    // `verify`'s reader check fails it at the bid's seq.
    let bid_seq = by_http["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m.get("to").is_some())
        .unwrap()["seq"]
        .as_i64()
        .unwrap();
    let mut relabelled = by_http.clone();
    relabelled["exported_as"] = json!("carol");
    let (code, out) = verify(
        &save(dir.path(), "relabelled.json", &relabelled),
        &["--json"],
    );
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["first_bad_seq"], bid_seq, "{out}");
    assert!(out.contains("it is not \\\"carol\\\"'s export"), "{out}");
    // Pinned to the published key list or its fingerprint: still verified;
    // pinned to another key: nothing is vouched for.
    let (code, out) = verify(&alice_file, &["--keys", keys_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify(&alice_file, &["--key", &key_id]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify(&alice_file, &["--key", "sha256:00"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("first bad seq 1"), "{out}");

    // A changed byte in a public body: caught at its seq.
    let mut tampered = by_http.clone();
    let seq = tampered["entries"]
        .as_array()
        .unwrap()
        .iter()
        .position(|m| m["body"] == "hello all")
        .unwrap();
    tampered["entries"][seq]["body"] = json!("hello alL");
    let (code, out) = verify(&save(dir.path(), "bad.json", &tampered), &["--json"]);
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["first_bad_seq"], seq as i64 + 1, "{out}");
    // Unreadable input is exit 2.
    std::fs::write(dir.path().join("junk.json"), "{").unwrap();
    assert_eq!(verify(&dir.path().join("junk.json"), &[]).0, 2);

    // HTTP: a bearer token is required, and a seat.
    assert_eq!(http_export(&d, None, &cid).await.status(), 401);
    let r = http_export(&d, Some(&tokens[3]), &cid).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "NOT_MEMBER");
    assert_eq!(
        http_export(&d, Some(&tokens[0]), "ch_none").await.status(),
        404
    );
}

#[tokio::test]
async fn a_channel_bigger_than_a_page_exports_in_pages_and_streams_whole() {
    let dir = TempDir::new("transcripts-pages");
    let token = create_token(dir.path(), "alice");
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "max_sync_bytes = 65536\n[quotas]\nposts_per_second = 100000.0\npost_burst = 100000\n",
    )
    .unwrap();
    let d = Daemon::start(dir.path(), &["--config", cfg.to_str().unwrap()]);
    let mut mcp = Mcp::connect(&d.mcp_url(), Some(&token)).await;
    let created = mcp
        .ok(
            "create_channel",
            json!({"name": "big", "slots": ["alice"], "join_as": "alice"}),
        )
        .await;
    let cid = created["channel_id"].as_str().unwrap().to_string();
    let pad = "x".repeat(20_000);
    for i in 0..12 {
        mcp.ok(
            "post_message",
            json!({"channel_id": cid, "body": {"n": i, "pad": pad}}),
        )
        .await;
        if i % 3 == 0 {
            // Heads held along the way, as syncing members leave them.
            mcp.ok(
                "sync_messages",
                json!({"channel_id": cid, "cursor": 0, "limit": 500, "wait_ms": 0}),
            )
            .await;
        }
    }
    // Page by page through the tool.
    let mut joined: Option<Value> = None;
    let mut after = 0;
    let mut pages = 0;
    loop {
        let page = mcp
            .ok(
                "export_transcript",
                json!({"channel_id": cid, "after": after}),
            )
            .await;
        pages += 1;
        let p = page["page"].clone();
        assert_eq!(p["after"], after);
        let first = page["entries"][0]["seq"].as_i64().unwrap();
        assert_eq!(first, after + 1, "pages join without a gap");
        assert_eq!(
            page["signed_heads"].as_array().unwrap().last().unwrap()["seq"],
            p["cursor"]
        );
        match &mut joined {
            None => joined = Some(page.clone()),
            Some(j) => {
                for k in ["entries", "signed_heads"] {
                    let more = page[k].as_array().unwrap().clone();
                    j[k].as_array_mut().unwrap().extend(more);
                }
            }
        }
        after = p["cursor"].as_i64().unwrap();
        if p["more"] == false {
            break;
        }
        assert!(pages < 20);
    }
    assert!(pages >= 3, "{pages} pages");
    let mut joined = joined.unwrap();
    // The page marker makes it a page, refused as a whole document...
    let (code, out) = verify(&save(dir.path(), "page.json", &joined), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("a page"), "{out}");
    // ...and without it the joined pages verify.
    joined.as_object_mut().unwrap().remove("page");
    joined.as_object_mut().unwrap().remove("_text");
    let (code, out) = verify(&save(dir.path(), "joined.json", &joined), &[]);
    assert_eq!(code, 0, "{out}");

    // Over HTTP the same entries come in one streamed document.
    let streamed: Value = http_export(&d, Some(&token), &cid)
        .await
        .json()
        .await
        .unwrap();
    assert!(streamed.get("page").is_none());
    assert_eq!(entries(&streamed), entries(&joined));
    let heads = streamed["signed_heads"].as_array().unwrap();
    assert!(heads.len() >= 4, "held heads come along: {}", heads.len());
    let (code, out) = verify(&save(dir.path(), "streamed.json", &streamed), &[]);
    assert_eq!(code, 0, "{out}");
}

fn key_cli(state_dir: &Path, op: &str) -> (bool, String, String) {
    let out = Command::new(daemon_bin())
        .args(["key", op, "--state-dir"])
        .arg(state_dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn after_a_key_rotation_old_and_new_exports_verify_against_the_published_keys() {
    let dir = TempDir::new("transcripts-rotate");
    let token = create_token(dir.path(), "alice");
    let mut d = Daemon::start(dir.path(), &[]);
    let mut mcp = Mcp::connect(&d.mcp_url(), Some(&token)).await;
    let created = mcp
        .ok(
            "create_channel",
            json!({"name": "r", "slots": ["alice"], "join_as": "alice"}),
        )
        .await;
    let cid = created["channel_id"].as_str().unwrap().to_string();
    mcp.ok("post_message", json!({"channel_id": cid, "body": "before"}))
        .await;
    let old = mcp
        .ok("export_transcript", json!({"channel_id": cid}))
        .await;
    let old_key = old["keys"][0]["key_id"].as_str().unwrap().to_string();
    d.kill9();

    let (ok, new_key, err) = key_cli(dir.path(), "rotate");
    assert!(ok, "{err}");
    let new_key = new_key.trim().to_string();
    assert_ne!(new_key, old_key);
    assert!(err.contains("next start"), "{err}");

    let d = Daemon::start(dir.path(), &[]);
    let mut mcp = Mcp::connect(&d.mcp_url(), Some(&token)).await;
    mcp.ok("post_message", json!({"channel_id": cid, "body": "after"}))
        .await;
    let new = mcp
        .ok("export_transcript", json!({"channel_id": cid}))
        .await;
    let keys: Value = reqwest::get(format!("{}/.well-known/mcp-multiplayer/keys.json", d.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = keys["keys"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["key_id"], old_key.as_str());
    assert!(list[0]["valid_until"].is_string());
    assert_eq!(list[1]["key_id"], new_key.as_str());
    assert!(list[1].get("valid_until").is_none());
    assert_eq!(
        new["signed_heads"].as_array().unwrap().last().unwrap()["key_id"],
        new_key.as_str()
    );
    let keys_file = save(dir.path(), "keys.json", &keys);
    for (name, doc) in [("old.json", &old), ("new.json", &new)] {
        let (code, out) = verify(
            &save(dir.path(), name, doc),
            &["--keys", keys_file.to_str().unwrap()],
        );
        assert_eq!(code, 0, "{name}: {out}");
    }
    let (ok, shown, _) = key_cli(dir.path(), "show");
    assert!(ok);
    assert!(
        shown.contains(&new_key) && !shown.contains("PRIVATE"),
        "{shown}"
    );
}

#[test]
fn a_signing_key_other_users_can_read_stops_the_daemon_with_a_sentence() {
    let dir = TempDir::new("transcripts-mode");
    let (ok, _, err) = key_cli(dir.path(), "rotate");
    assert!(ok, "{err}");
    let key = dir.path().join("signing-key.pem");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(daemon_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("can be read by other users"), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!err.contains("BEGIN PRIVATE KEY"), "{err}");
}
