//! Every tool publishes an `outputSchema`, and every result a real daemon
//! returns over HTTP, success or tool error, validates against it (checked
//! by an independent JSON Schema validator).

use crate::util::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The tools' output schemas, compiled, from `tools/list`.
struct Schemas(BTreeMap<String, (Value, jsonschema::Validator)>);

impl Schemas {
    async fn fetch(mcp: &mut Mcp) -> Schemas {
        let list = mcp.rpc("tools/list", json!({})).await.unwrap();
        let tools = list["result"]["tools"].as_array().unwrap().clone();
        let mut out = BTreeMap::new();
        for t in tools {
            let name = t["name"].as_str().unwrap().to_string();
            let schema = t
                .get("outputSchema")
                .cloned()
                .unwrap_or_else(|| panic!("{name} publishes no outputSchema"));
            // Clients of the 2025 revisions require an object root.
            assert_eq!(schema["type"], "object", "{name}: {schema}");
            let v = jsonschema::validator_for(&schema)
                .unwrap_or_else(|e| panic!("{name}: invalid schema: {e}\n{schema}"));
            out.insert(name, (schema, v));
        }
        Schemas(out)
    }

    /// Checks one result against its tool's schema; returns it.
    fn check(
        &self,
        tool: &str,
        (is_error, content): (bool, Value),
        called: &mut BTreeSet<String>,
    ) -> Value {
        let (schema, v) = &self.0[tool];
        let errors: Vec<String> = v.iter_errors(&content).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{tool} (isError {is_error}) result does not match its outputSchema: {errors:?}\nresult: {content}\nschema: {schema}"
        );
        called.insert(tool.to_string());
        content
    }

    /// A call that must succeed and validate.
    async fn ok(
        &self,
        mcp: &mut Mcp,
        tool: &str,
        args: Value,
        called: &mut BTreeSet<String>,
    ) -> Value {
        let r = mcp.call(tool, args.clone()).await.unwrap();
        assert!(!r.0, "{tool}({args}) failed: {}", r.1);
        self.check(tool, r, called)
    }

    /// A call that must fail with `code` and validate.
    async fn fails(&self, mcp: &mut Mcp, tool: &str, args: Value, code: &str) -> Value {
        let r = mcp.call(tool, args.clone()).await.unwrap();
        assert!(r.0, "{tool}({args}) should have failed: {}", r.1);
        assert_eq!(r.1["error"]["code"], code, "{}", r.1);
        let mut ignored = BTreeSet::new();
        self.check(tool, r, &mut ignored)
    }
}

#[tokio::test]
async fn every_tool_result_validates_against_its_output_schema() {
    let dir = TempDir::new("schemas");
    let (ta, tb) = (
        create_token(dir.path(), "alice"),
        create_token(dir.path(), "bob"),
    );
    let d = Daemon::start(dir.path(), &[]);
    let mut alice = Mcp::connect(&d.mcp_url(), Some(&ta)).await;
    let mut bob = Mcp::connect(&d.mcp_url(), Some(&tb)).await;
    let s = Schemas::fetch(&mut alice).await;
    let mut called = BTreeSet::new();
    let c = &mut called;

    let created = s
        .ok(
            &mut alice,
            "create_channel",
            json!({"name": "schemas", "slots": ["invite:alice", "invite:bob", "bot:referee"],
                   "bot_preset": "echo", "join_as": "alice"}),
            c,
        )
        .await;
    let cid = created["channel_id"].as_str().unwrap().to_string();
    let invite = created["invites"][0]["invite_code"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok(&mut bob, "join_channel", json!({"invite_code": invite}), c)
        .await;
    s.ok(
        &mut alice,
        "post_message",
        json!({"channel_id": cid, "body": "hello"}),
        c,
    )
    .await;
    s.ok(
        &mut alice,
        "post_message",
        json!({"channel_id": cid, "body": {"secret": 1}, "to": "bot:referee"}),
        c,
    )
    .await;
    s.ok(
        &mut alice,
        "attach_bot",
        json!({"channel_id": cid, "bot_preset": "echo", "slot": "second"}),
        c,
    )
    .await;
    // Alice reads her private message to the bot whole, bob redacted.
    for who in [&mut bob, &mut alice] {
        let synced = s
            .ok(
                who,
                "sync_messages",
                json!({"channel_id": cid, "cursor": 0, "wait_ms": 0}),
                c,
            )
            .await;
        assert!(synced["messages"].as_array().unwrap().len() >= 5);
    }
    s.ok(&mut bob, "get_channel_info", json!({"channel_id": cid}), c)
        .await;
    let code = s
        .ok(
            &mut bob,
            "get_bot_code",
            json!({"channel_id": cid, "bot_id": "bot:referee"}),
            c,
        )
        .await;
    assert!(code["source"].as_str().unwrap().contains("class"));
    s.ok(&mut bob, "list_channels", json!({}), c).await;
    s.ok(
        &mut alice,
        "update_channel",
        json!({"channel_id": cid, "op": "rename", "name": "renamed"}),
        c,
    )
    .await;
    let kicked = s
        .ok(
            &mut alice,
            "update_channel",
            json!({"channel_id": cid, "op": "kick", "slot": "bob"}),
            c,
        )
        .await;
    // The kicked seat, refilled by a third principal.
    let tc = create_token(dir.path(), "carol");
    let mut carol = Mcp::connect(&d.mcp_url(), Some(&tc)).await;
    s.ok(
        &mut carol,
        "join_channel",
        json!({"invite_code": kicked["invite"]["invite_code"]}),
        c,
    )
    .await;
    let redacted = s
        .ok(
            &mut carol,
            "sync_messages",
            json!({"channel_id": cid, "cursor": 0, "wait_ms": 0}),
            c,
        )
        .await;
    assert!(
        redacted["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["redacted"] == true),
        "{redacted}"
    );
    // Carol's export: bob's private message to the bot, as its hash.
    let export = s
        .ok(
            &mut carol,
            "export_transcript",
            json!({"channel_id": cid}),
            c,
        )
        .await;
    assert_eq!(export["exported_as"], "bob");
    assert!(
        export["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["redacted"] == true)
    );
    let shared = s
        .ok(&mut carol, "share_channel", json!({"channel_id": cid}), c)
        .await;
    assert!(shared["url"].as_str().unwrap().contains("/c/"), "{shared}");
    s.fails(
        &mut carol,
        "revoke_shares",
        json!({"channel_id": cid}),
        "NOT_ADMIN",
    )
    .await;
    s.ok(&mut alice, "revoke_shares", json!({"channel_id": cid}), c)
        .await;
    s.ok(
        &mut alice,
        "update_channel",
        json!({"channel_id": cid, "op": "close"}),
        c,
    )
    .await;

    // Tool errors validate against the same schemas.
    s.fails(
        &mut bob,
        "sync_messages",
        json!({"channel_id": cid, "wait_ms": 0}),
        "NOT_MEMBER",
    )
    .await;
    s.fails(
        &mut carol,
        "post_message",
        json!({"channel_id": cid, "body": "late"}),
        "CHANNEL_CLOSED",
    )
    .await;
    s.fails(
        &mut carol,
        "join_channel",
        json!({"invite_code": "nope"}),
        "INVITE_INVALID",
    )
    .await;
    s.fails(
        &mut carol,
        "update_channel",
        json!({"channel_id": cid, "op": "close"}),
        "NOT_ADMIN",
    )
    .await;
    s.fails(
        &mut carol,
        "get_channel_info",
        json!({"channel_id": "ch_nope"}),
        "CHANNEL_NOT_FOUND",
    )
    .await;
    s.fails(
        &mut carol,
        "create_channel",
        json!({"name": "x", "slots": []}),
        "BAD_REQUEST",
    )
    .await;
    s.fails(
        &mut carol,
        "list_channels",
        json!({"extra": 1}),
        "BAD_REQUEST",
    )
    .await;
    s.fails(
        &mut carol,
        "get_bot_code",
        json!({"channel_id": cid, "bot_id": "bot:none"}),
        "UNKNOWN_SLOT",
    )
    .await;
    s.fails(
        &mut carol,
        "export_transcript",
        json!({"channel_id": cid, "after": 100_000}),
        "BAD_REQUEST",
    )
    .await;
    s.fails(
        &mut alice,
        "attach_bot",
        json!({"channel_id": cid, "bot_preset": "echo"}),
        "CHANNEL_CLOSED",
    )
    .await;

    let listed: BTreeSet<String> = s.0.keys().cloned().collect();
    assert_eq!(called, listed, "every listed tool was called and validated");
}
