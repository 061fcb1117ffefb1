//! The tool surface as hosts see it, against a real daemon over HTTP: the
//! tool list (snapshotted), the seed's preset names, clamped limits, paged
//! lists and byte-budgeted sync pages, channel names, prompts, server info
//! and its icon, and reads that do not wait on slow clients.

use crate::util::*;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

fn snapshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/snapshots")
        .join(name)
}

/// The committed snapshot `name`, or with `UPDATE_SNAPSHOTS=1` rewrites it.
fn check_snapshot(name: &str, actual: &str) {
    let path = snapshot_path(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_SNAPSHOTS=1 writes it)", path.display()));
    assert_eq!(
        actual,
        expected,
        "the tool surface changed: {} (UPDATE_SNAPSHOTS=1 accepts it)",
        path.display()
    );
}

/// A tools/call result whole: (isError, structuredContent, text).
async fn call_full(mcp: &mut Mcp, tool: &str, args: Value) -> (bool, Value, String) {
    let r = mcp
        .rpc("tools/call", json!({"name": tool, "arguments": args}))
        .await
        .unwrap();
    let res = &r["result"];
    assert!(res.is_object(), "protocol error: {r}");
    (
        res["isError"].as_bool().unwrap_or(false),
        res["structuredContent"].clone(),
        res["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

struct Setup {
    _dir: TempDir,
    d: Daemon,
    token: String,
}

fn start(tag: &str, config: Option<&str>) -> Setup {
    let dir = TempDir::new(tag);
    let token = create_token(dir.path(), "alice");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config.unwrap_or("")).unwrap();
    let d = Daemon::start(dir.path(), &["--config", cfg.to_str().unwrap()]);
    Setup {
        _dir: dir,
        d,
        token,
    }
}

#[tokio::test]
async fn tools_list_matches_its_snapshot() {
    let s = start("surface-snap", None);
    let mut mcp = Mcp::connect(&s.d.mcp_url(), Some(&s.token)).await;
    let list = mcp.rpc("tools/list", json!({})).await.unwrap();
    let tools = &list["result"]["tools"];
    assert_eq!(tools.as_array().unwrap().len(), 12);
    check_snapshot(
        "tools-list.json",
        &(serde_json::to_string_pretty(tools).unwrap() + "\n"),
    );
}

#[tokio::test]
async fn the_seeds_preset_names_create_channels_and_show_one_canonical_name() {
    let s = start("surface-presets", None);
    let mut mcp = Mcp::connect(&s.d.mcp_url(), Some(&s.token)).await;
    for (asked, canonical) in [
        ("GuessBot", "GuessBot"),
        ("BlackjackBot", "BlackjackBot"),
        ("echo", "EchoBot"),
        ("sealed bid", "SealedBidBot"),
    ] {
        let created = mcp
            .ok(
                "create_channel",
                json!({"name": format!("{asked} game"), "slots": ["invite:alice", "invite:bob"],
                       "bot_preset": asked, "join_as": "alice"}),
            )
            .await;
        let cid = created["channel_id"].as_str().unwrap();
        assert_eq!(created["view"]["bots"][0]["name"], canonical, "{created}");
        let code = mcp
            .ok(
                "get_bot_code",
                json!({"channel_id": cid, "bot_id": "bot:referee"}),
            )
            .await;
        assert_eq!(code["preset"], canonical, "{asked}");
    }
    let (err, out, text) = call_full(
        &mut mcp,
        "create_channel",
        json!({"name": "x", "slots": ["a"], "bot_preset": "PokerBot"}),
    )
    .await;
    assert!(err);
    assert_eq!(out["error"]["code"], "BAD_REQUEST");
    for name in ["GuessBot", "BlackjackBot", "ContextExchangeBot"] {
        assert!(text.contains(name), "{text}");
    }
}

#[tokio::test]
async fn over_limit_numbers_are_clamped_and_the_result_says_so_in_both_forms() {
    let s = start("surface-clamp", None);
    let mut mcp = Mcp::connect(&s.d.mcp_url(), Some(&s.token)).await;
    let created = mcp
        .ok(
            "create_channel",
            json!({"name": "clamps", "slots": ["alice"], "join_as": "alice"}),
        )
        .await;
    let cid = created["channel_id"].as_str().unwrap();
    // Messages are waiting, so the clamped wait is never waited.
    let (err, out, text) = call_full(
        &mut mcp,
        "sync_messages",
        json!({"channel_id": cid, "cursor": 0, "wait_ms": 30000, "limit": 10000}),
    )
    .await;
    assert!(!err, "{out}");
    assert_eq!(
        out["clamped"],
        json!([
            {"argument": "limit", "requested": 10000, "used": 500},
            {"argument": "wait_ms", "requested": 30000, "used": 25000}
        ])
    );
    assert!(
        text.contains("wait_ms 30000 is outside its range; 25000 was used"),
        "{text}"
    );
    assert!(
        text.contains("limit 10000 is outside its range; 500 was used"),
        "{text}"
    );
    // Below the range too, and nothing to say when in range.
    let (_, out, _) = call_full(
        &mut mcp,
        "sync_messages",
        json!({"channel_id": cid, "cursor": 0, "wait_ms": -5, "limit": 0}),
    )
    .await;
    assert_eq!(out["messages"].as_array().unwrap().len(), 1);
    assert_eq!(out["clamped"][0]["used"], 1);
    assert_eq!(out["clamped"][1]["used"], 0);
    let (_, out, text) = call_full(
        &mut mcp,
        "sync_messages",
        json!({"channel_id": cid, "cursor": 0, "wait_ms": 0}),
    )
    .await;
    assert!(out.get("clamped").is_none(), "{out}");
    assert!(!text.contains("Note:"), "{text}");
    let (err, out, text) = call_full(&mut mcp, "list_channels", json!({"limit": 10000})).await;
    assert!(!err);
    assert_eq!(
        out["clamped"][0],
        json!({"argument": "limit", "requested": 10000, "used": 200})
    );
    assert!(
        text.contains("limit 10000 is outside its range; 200 was used"),
        "{text}"
    );
}

#[tokio::test]
async fn sync_pages_stop_at_the_byte_budget_and_say_more_is_waiting() {
    let budget = 64 * 1024;
    let s = start(
        "surface-budget",
        Some(&format!("max_sync_bytes = {budget}\n")),
    );
    let mut mcp = Mcp::connect(&s.d.mcp_url(), Some(&s.token)).await;
    let created = mcp
        .ok(
            "create_channel",
            json!({"name": "big", "slots": ["alice"], "join_as": "alice"}),
        )
        .await;
    let cid = created["channel_id"].as_str().unwrap().to_string();
    let pad = "x".repeat(20_000);
    for i in 0..10 {
        mcp.ok(
            "post_message",
            json!({"channel_id": cid, "body": {"n": i, "pad": pad}}),
        )
        .await;
    }
    let mut cursor = 0;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let (err, out, text) = call_full(
            &mut mcp,
            "sync_messages",
            json!({"channel_id": cid, "cursor": cursor, "wait_ms": 0}),
        )
        .await;
        assert!(!err, "{out}");
        pages += 1;
        let msgs = out["messages"].as_array().unwrap();
        let bytes = serde_json::to_string(msgs).unwrap().len();
        assert!(bytes <= budget, "page {pages} is {bytes} bytes of messages");
        seen.extend(msgs.iter().map(|m| m["seq"].as_i64().unwrap()));
        cursor = out["cursor"].as_i64().unwrap();
        if out["more"] == true {
            assert!(
                text.contains(&format!("call sync_messages again with cursor {cursor}")),
                "{text}"
            );
        } else {
            assert!(!text.contains("More messages"), "{text}");
            break;
        }
        assert!(pages < 20, "paging ends");
    }
    assert!(
        pages >= 4,
        "ten 20 KB posts take several 64 KiB pages, took {pages}"
    );
    let want: Vec<i64> = (1..=seen.len() as i64).collect();
    assert_eq!(seen, want, "every message once, in order");
    assert_eq!(seen.len(), 12, "channel:created, seat:filled and ten posts");
}

#[tokio::test]
async fn list_channels_and_resources_page_with_an_opaque_cursor() {
    // 55 channels in a minute: more than the hourly quota allows by default.
    let s = start(
        "surface-pages",
        Some("[quotas]\nchannels_per_hour = 1000\nopen_channels = 1000\n"),
    );
    let mut mcp = Mcp::connect(&s.d.mcp_url(), Some(&s.token)).await;
    let mut made = Vec::new();
    for i in 0..55 {
        let c = mcp
            .ok(
                "create_channel",
                json!({"name": format!("c{i}"), "slots": ["alice"], "join_as": "alice"}),
            )
            .await;
        made.push(c["channel_id"].as_str().unwrap().to_string());
    }
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = json!({"limit": 20});
        if let Some(c) = &cursor {
            args["cursor"] = json!(c);
        }
        let (err, out, text) = call_full(&mut mcp, "list_channels", args).await;
        assert!(!err, "{out}");
        let page = out["channels"].as_array().unwrap();
        assert!(page.len() <= 20);
        listed.extend(
            page.iter()
                .map(|c| c["channel_id"].as_str().unwrap().to_string()),
        );
        match out["next_cursor"].as_str() {
            Some(c) => {
                assert!(text.contains(c), "the text names the next cursor: {text}");
                cursor = Some(c.to_string());
            }
            None => break,
        }
    }
    made.reverse();
    assert_eq!(listed, made, "newest first, each once");
    let (err, out, _) = call_full(&mut mcp, "list_channels", json!({"cursor": "bogus"})).await;
    assert!(err);
    assert_eq!(out["error"]["code"], "BAD_REQUEST");

    // resources/list pages the same way (50 per page).
    let first = mcp.rpc("resources/list", json!({})).await.unwrap();
    let n1 = first["result"]["resources"].as_array().unwrap().len();
    let next = first["result"]["nextCursor"].as_str().unwrap().to_string();
    let second = mcp
        .rpc("resources/list", json!({"cursor": next}))
        .await
        .unwrap();
    let n2 = second["result"]["resources"].as_array().unwrap().len();
    assert_eq!((n1, n2), (50, 5));
    assert!(second["result"].get("nextCursor").is_none(), "{second}");
    let bad = mcp
        .rpc("resources/list", json!({"cursor": "bogus"}))
        .await
        .unwrap();
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
}

#[tokio::test]
async fn channel_names_are_normalised_and_invisible_control_or_bidi_names_refused() {
    let s = start("surface-names", None);
    let mut mcp = Mcp::connect(&s.d.mcp_url(), Some(&s.token)).await;
    for (name, why) in [
        ("\u{200B}\u{200D}", "no visible characters"),
        ("   ", "no visible characters"),
        ("two\nlines", "U+000A"),
        ("invoice\u{202E}fdp.exe", "U+202E"),
        ("\u{2067}x", "U+2067"),
    ] {
        let (err, out, text) = call_full(
            &mut mcp,
            "create_channel",
            json!({"name": name, "slots": ["alice"]}),
        )
        .await;
        assert!(err, "{name:?} accepted: {out}");
        assert_eq!(out["error"]["code"], "BAD_REQUEST");
        assert!(text.contains(why), "{name:?}: {text}");
    }
    let created = mcp
        .ok(
            "create_channel",
            json!({"name": " Cafe\u{0301} ", "slots": ["alice"], "join_as": "alice"}),
        )
        .await;
    assert_eq!(created["view"]["name"], "Caf\u{e9}");
    let cid = created["channel_id"].as_str().unwrap();
    let (err, out, _) = call_full(
        &mut mcp,
        "update_channel",
        json!({"channel_id": cid, "op": "rename", "name": "\u{202D}x"}),
    )
    .await;
    assert!(err, "{out}");
}

#[tokio::test]
async fn server_info_names_itself_with_an_icon_it_serves_and_prompts_are_real() {
    let s = start("surface-info", None);
    let http = reqwest::Client::new();
    let init = http
        .post(s.d.mcp_url())
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "it", "version": "0"}}}),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let init = parse_response(&init, 1).unwrap();
    let info = &init["result"]["serverInfo"];
    assert_eq!(info["name"], "mcp-multiplayer");
    assert!(
        info["title"].is_string() && info["description"].is_string(),
        "{info}"
    );
    assert!(
        info["websiteUrl"].as_str().unwrap().starts_with("https://"),
        "{info}"
    );
    let icons = info["icons"].as_array().unwrap();
    assert!(!icons.is_empty());
    for icon in icons {
        let src = icon["src"].as_str().unwrap();
        assert!(
            src.starts_with(&s.d.base),
            "served by the daemon itself: {src}"
        );
        let r = http.get(src).send().await.unwrap();
        assert_eq!(r.status(), 200, "{src}");
        let mime = r.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(mime, icon["mimeType"].as_str().unwrap());
        let bytes = r.bytes().await.unwrap();
        match mime.as_str() {
            "image/png" => assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n")),
            "image/svg+xml" => assert!(bytes.starts_with(b"<svg")),
            other => panic!("unexpected icon type {other}"),
        }
    }
    assert!(init["result"]["capabilities"]["prompts"].is_object());

    let mut mcp = Mcp::connect(&s.d.mcp_url(), Some(&s.token)).await;
    let list = mcp.rpc("prompts/list", json!({})).await.unwrap();
    let names: Vec<&str> = list["result"]["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["start_game", "join_with_invite", "verify_game"]);
    let got = mcp
        .rpc(
            "prompts/get",
            json!({"name": "start_game", "arguments": {"game": "blackjack", "friend": "bob"}}),
        )
        .await
        .unwrap();
    let text = got["result"]["messages"][0]["content"]["text"]
        .as_str()
        .unwrap();
    // The create_channel call the prompt spells out really works.
    let start = text.find("{\"").unwrap();
    let end = text[start..].find("}.\n").unwrap() + start + 1;
    let args: Value = serde_json::from_str(&text[start..end]).unwrap();
    let created = mcp.ok("create_channel", args).await;
    assert_eq!(created["view"]["bots"][0]["name"], "BlackjackBot");
    assert_eq!(created["invites"][0]["slot"], "bob");
    let missing = mcp
        .rpc(
            "prompts/get",
            json!({"name": "verify_game", "arguments": {}}),
        )
        .await
        .unwrap();
    assert_eq!(missing["error"]["code"], -32602, "{missing}");
}

/// Reads release their database connection before the answer is written:
/// clients that ask for large pages and never read the answer hold no read
/// slot, so more of them than there are pooled connections do not stop
/// anyone else's reads.
#[tokio::test]
async fn clients_that_never_read_their_answers_do_not_hold_up_other_reads() {
    use tokio::io::AsyncWriteExt;
    let s = start("surface-slow", None);
    let mut mcp = Mcp::connect(&s.d.mcp_url(), Some(&s.token)).await;
    let created = mcp
        .ok(
            "create_channel",
            json!({"name": "slow", "slots": ["alice"], "join_as": "alice"}),
        )
        .await;
    let cid = created["channel_id"].as_str().unwrap().to_string();
    let pad = "y".repeat(60_000);
    for i in 0..20 {
        mcp.ok(
            "post_message",
            json!({"channel_id": cid, "body": {"n": i, "pad": pad}}),
        )
        .await;
    }
    let addr = s.d.base.trim_start_matches("http://").to_string();
    let session = mcp.session.clone().unwrap();
    let body = json!({"jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": {
        "name": "sync_messages", "arguments": {"channel_id": cid, "cursor": 0, "wait_ms": 0}}})
    .to_string();
    // More stalled readers than the store has read connections (16).
    let mut stalled = Vec::new();
    for _ in 0..24 {
        let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let req = format!(
            "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Session-Id: {session}\r\nMcp-Protocol-Version: 2025-06-18\r\nContent-Length: {}\r\n\r\n{body}",
            s.token,
            body.len()
        );
        sock.write_all(req.as_bytes()).await.unwrap();
        stalled.push(sock); // never read
    }
    // Wait until the daemon has answered all of them (its tool-call
    // counter): from then on each holds an answer nobody reads. How long
    // building 24 large answers takes depends on the machine, not on what is
    // tested here.
    let metrics = format!("{}/metrics", s.d.base);
    let answered = || async {
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(
                    "mcp_multiplayer_tool_calls_total{tool=\"sync_messages\",outcome=\"ok\"} ",
                )
            })
            .map_or(0, |v| v.trim().parse::<u64>().unwrap())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while answered().await < 24 {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not answer the 24 syncs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            mcp.call("get_channel_info", json!({"channel_id": cid})),
        )
        .await
        .expect("a read answered while 24 clients sit on their answers");
        assert!(!r.unwrap().0);
    }
    drop(stalled);
}
