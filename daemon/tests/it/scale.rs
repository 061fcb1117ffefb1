//! Moving a deployment from SQLite to PostgreSQL (`migrate-store`): a
//! daemon on SQLite with principals, a bot, public and private messages, a
//! page link; the copy; the same tokens, chains, bot and link on PostgreSQL
//! afterwards. Runs
//! with `MCPMP_TEST_POSTGRES` (tests/steps/50-postgres.sh).

use crate::util::*;
use mcp_multiplayer::transcript;
use serde_json::{Value, json};
use std::process::Command;

fn sqlite() -> Vec<(String, String)> {
    vec![("MCP_MULTIPLAYER_DATABASE".into(), "sqlite".into())]
}

/// Every message of `cid` as `who` reads it, waiting until `until` holds.
async fn read_until(who: &mut Mcp, cid: &str, until: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    let mut cursor = 0;
    loop {
        let s = who
            .ok(
                "sync_messages",
                json!({"channel_id": cid, "cursor": cursor, "wait_ms": 10000}),
            )
            .await;
        all.extend(s["messages"].as_array().unwrap().iter().cloned());
        cursor = s["cursor"].as_i64().unwrap();
        if until(&all) {
            return all;
        }
    }
}

fn count(ms: &[Value], kind: &str) -> usize {
    ms.iter().filter(|m| m["kind"] == kind).count()
}

fn migrate(state_dir: &std::path::Path, to: &str) -> std::process::Output {
    Command::new(daemon_bin())
        .env("MCP_MULTIPLAYER_DATABASE", "sqlite")
        .args(["migrate-store", "--to", to, "--state-dir"])
        .arg(state_dir)
        .output()
        .unwrap()
}

#[tokio::test]
async fn migrate_store_copies_a_live_deployment_whose_tokens_chains_and_bots_carry_on() {
    if !on_postgres() {
        return;
    }
    let dir = TempDir::new("migrate");
    let ta = create_token_env(dir.path(), "alice", &sqlite());
    let tb = create_token_env(dir.path(), "bob", &sqlite());
    let (cid, head, before, page) = {
        let d = Daemon::start_env(dir.path(), &[], &sqlite());
        let mut alice = Mcp::connect(&d.mcp_url(), Some(&ta)).await;
        let mut bob = Mcp::connect(&d.mcp_url(), Some(&tb)).await;
        let ch = alice
            .ok(
                "create_channel",
                json!({"name": "moving", "slots": ["invite:alice", "invite:bob", "bot:referee"],
                       "bot_preset": "echo", "join_as": "alice"}),
            )
            .await;
        let cid = ch["channel_id"].as_str().unwrap().to_string();
        let invite = ch["invites"][0]["invite_code"]
            .as_str()
            .unwrap()
            .to_string();
        bob.ok("join_channel", json!({"invite_code": invite})).await;
        for i in 0..5 {
            alice
                .ok("post_message", json!({"channel_id": cid, "body": {"n": i}}))
                .await;
        }
        alice
            .ok(
                "post_message",
                json!({"channel_id": cid, "body": "for bob only", "to": ["bob"]}),
            )
            .await;
        // Every user message answered by the echo bot before the move.
        let before = read_until(&mut alice, &cid, |ms| {
            count(ms, "user") == 6 && count(ms, "bot") >= 5
        })
        .await;
        let info = alice
            .ok("get_channel_info", json!({"channel_id": cid}))
            .await;
        // A spectator link to the channel's page, kept by its hash only.
        let shared = bob.ok("share_channel", json!({"channel_id": cid})).await;
        let url = shared["url"].as_str().unwrap();
        let page = url[url.find("/c/").unwrap()..].to_string();
        (
            cid,
            info["head_hash"].as_str().unwrap().to_string(),
            before,
            page,
        )
    }; // the SQLite daemon is killed here: migrate-store runs on a stopped deployment

    let target_dir = TempDir::new("migrate-target");
    let target = db_env(target_dir.path());
    let url = target[0].1.clone();
    let out = migrate(dir.path(), &url);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("messages: "), "{text}");
    assert!(text.contains("every row checked"), "{text}");

    // A second copy into the same database is refused: it is not empty.
    let again = migrate(dir.path(), &url);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("empty database"));

    // A password on the command line is refused, and never echoed.
    let with_pw = migrate(dir.path(), "postgres://u:hunter2@127.0.0.1/x");
    let err = String::from_utf8_lossy(&with_pw.stderr);
    assert!(
        !with_pw.status.success() && err.contains("password") && !err.contains("hunter2"),
        "{err}"
    );

    // The same tokens, on PostgreSQL.
    let d = Daemon::start_env(target_dir.path(), &[], &target);
    let mut alice = Mcp::connect(&d.mcp_url(), Some(&ta)).await;
    let mut bob = Mcp::connect(&d.mcp_url(), Some(&tb)).await;
    let info = alice
        .ok("get_channel_info", json!({"channel_id": cid}))
        .await;
    assert_eq!(info["head_hash"].as_str(), Some(head.as_str()));
    let after = read_until(&mut alice, &cid, |_| true).await;
    assert_eq!(
        after, before,
        "alice reads exactly what she read before the move"
    );
    assert_eq!(
        transcript::verify_chain(&cid, &after).unwrap(),
        head,
        "the chain verifies to the same head"
    );
    // Bob still reads his private message; the bot goes on from its cursor:
    // one new echo for one new message, none for the old ones.
    let bobs = read_until(&mut bob, &cid, |_| true).await;
    assert!(bobs.iter().any(|m| m["body"] == json!("for bob only")));
    let bots_before = count(&after, "bot");
    bob.ok(
        "post_message",
        json!({"channel_id": cid, "body": "hello from postgres"}),
    )
    .await;
    let now = read_until(&mut alice, &cid, |ms| count(ms, "bot") > bots_before).await;
    assert_eq!(count(&now, "bot"), bots_before + 1);
    transcript::verify_chain(&cid, &now).unwrap();
    // The page link made on SQLite still opens the page.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(format!("{}{page}", d.base)).send().await.unwrap();
    assert_eq!(r.status(), 303, "the page link carried over");
}
