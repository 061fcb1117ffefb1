//! No secret reaches the log at any level: the daemon runs at `trace`,
//! every tool and the OAuth flow run through it, and the log is searched
//! for every secret the test handled.

use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::Digest;

const REDIRECT: &str = "http://127.0.0.1:9/callback";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Register a confidential client, authorize (auto approval on loopback),
/// exchange the code, refresh: every secret of the flow.
pub(crate) async fn oauth_flow(base: &str, secrets: &mut Vec<String>) -> (String, String) {
    let http = no_redirects();
    let reg: Value = http
        .post(format!("{base}/register"))
        .json(&json!({"client_name": "logs", "redirect_uris": [REDIRECT],
                      "token_endpoint_auth_method": "client_secret_post"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = reg["client_id"].as_str().unwrap().to_string();
    let client_secret = reg["client_secret"].as_str().unwrap().to_string();
    secrets.push(client_secret.clone());
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    secrets.push(verifier.clone());
    let r = http
        .get(format!("{base}/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "st"),
            ("resource", &format!("{base}/mcp")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = loc
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    secrets.push(code.clone());
    let tokens: Value = http
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("client_id", &client_id),
            ("client_secret", &client_secret),
            ("redirect_uri", REDIRECT),
            ("resource", &format!("{base}/mcp")),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    secrets.extend([access, refresh.clone()]);
    let refreshed: Value = http
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &client_id),
            ("client_secret", &client_secret),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access2 = refreshed["access_token"].as_str().unwrap().to_string();
    secrets.push(access2.clone());
    secrets.extend(refreshed["refresh_token"].as_str().map(str::to_string));
    (client_id, access2)
}

/// A bot that keeps a secret in its state and never posts it.
const KEEPER: &str = "class Keeper:\n    def __init__(self, ctx, params):\n        self.ctx = ctx\n    def on_init(self):\n        self.ctx.set_state({'hidden': 'STATE_MARKER'})\n    def on_message(self, msg):\n        s = self.ctx.get_state()\n        s['n'] = s.get('n', 0) + 1\n        self.ctx.set_state(s)\n        self.ctx.post('seen', {'n': s['n']})\n";

#[tokio::test]
async fn no_secret_is_logged_at_trace_through_every_tool_and_the_oauth_flow() {
    let dir = TempDir::new("logs");
    let cli_token = create_token(dir.path(), "alice");
    let d = Server::start(
        dir.path(),
        &Opts {
            log: Some("trace".into()),
            ..Opts::default()
        },
    );
    let mut secrets = vec![cli_token.clone()];
    let (_, oauth_token) = oauth_flow(&d.base, &mut secrets).await;

    let marker = format!("{:032x}", rand::random::<u128>());
    let state_marker = format!("st{:030x}", rand::random::<u128>());
    let private_marker = format!("pv{:030x}", rand::random::<u128>());
    let bot = KEEPER.replace("STATE_MARKER", &state_marker);

    let mut alice = Mcp::connect(&d.url(), Some(&cli_token)).await;
    secrets.extend(alice.session.clone());
    let mut bob = Mcp::connect(&d.url(), Some(&oauth_token)).await;
    secrets.extend(bob.session.clone());
    let created = alice
        .ok(
            "create_channel",
            json!({"name": format!("logs-{marker}"), "slots": ["invite:alice", "invite:bob", "invite:carol", "bot:keeper"],
                   "join_as": "alice", "bot_code": bot}),
        )
        .await;
    let cid = created["channel_id"].as_str().unwrap().to_string();
    secrets.push(
        created["seat"]["rejoin_token"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    for i in created["invites"].as_array().unwrap() {
        secrets.push(i["invite_code"].as_str().unwrap().to_string());
    }
    let joined = bob
        .ok(
            "join_channel",
            json!({"invite_code": created["invites"][0]["invite_code"]}),
        )
        .await;
    let rejoin = joined["rejoin_token"].as_str().unwrap().to_string();
    secrets.push(rejoin.clone());
    // Moving the seat with the rejoin token issues another.
    let moved = bob.ok("join_channel", json!({"invite_code": rejoin})).await;
    secrets.push(moved["rejoin_token"].as_str().unwrap().to_string());
    alice
        .ok(
            "post_message",
            json!({"channel_id": cid, "body": {"say": "public"}}),
        )
        .await;
    alice
        .ok(
            "post_message",
            json!({"channel_id": cid, "body": {"secret": private_marker}, "to": ["bob"]}),
        )
        .await;
    secrets.push(private_marker.clone());
    bob.ok(
        "sync_messages",
        json!({"channel_id": cid, "cursor": 0, "wait_ms": 0}),
    )
    .await;
    bob.ok("get_channel_info", json!({"channel_id": cid})).await;
    bob.ok(
        "get_bot_code",
        json!({"channel_id": cid, "bot_id": "bot:keeper"}),
    )
    .await;
    bob.ok("list_channels", json!({})).await;
    let reissued = alice
        .ok(
            "update_channel",
            json!({"channel_id": cid, "op": "new_invite", "slot": "carol"}),
        )
        .await;
    secrets.push(
        reissued["invite"]["invite_code"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let kicked = alice
        .ok(
            "update_channel",
            json!({"channel_id": cid, "op": "kick", "slot": "bob"}),
        )
        .await;
    secrets.push(
        kicked["invite"]["invite_code"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    alice
        .ok(
            "attach_bot",
            json!({"channel_id": cid, "bot_preset": "echo", "slot": "echo"}),
        )
        .await;
    // Refusals log too: a wrong invite (its text is a secret-shaped guess).
    let guess = format!("mcpmp_inv_{marker}");
    let (err, _) = bob
        .call("join_channel", json!({"invite_code": guess}))
        .await
        .unwrap();
    assert!(err);
    secrets.push(guess);
    // The bot's state has reached the database by the time a later sync
    // sees its post.
    let mut cursor = 0;
    let mut saw_bot = false;
    for _ in 0..20 {
        let v = alice
            .ok(
                "sync_messages",
                json!({"channel_id": cid, "cursor": cursor, "wait_ms": 2000}),
            )
            .await;
        cursor = v["cursor"].as_i64().unwrap();
        saw_bot |= v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["sender"] == "bot:keeper" && m["kind"] == "bot");
        if saw_bot {
            break;
        }
    }
    assert!(saw_bot, "the keeper bot never ran");
    secrets.push(state_marker);
    alice
        .ok("update_channel", json!({"channel_id": cid, "op": "close"}))
        .await;
    // The bots' seeds, secret until this close revealed them: no level
    // logged them (nor the state salts derived from them), before or at
    // the reveal.
    let all = alice
        .ok(
            "sync_messages",
            json!({"channel_id": cid, "cursor": 0, "limit": 500, "wait_ms": 0}),
        )
        .await;
    let reveals: Vec<&Value> = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["body"]["type"] == "bot:reveal")
        .collect();
    assert_eq!(reveals.len(), 2, "both bots' seeds are revealed at close");
    for r in reveals {
        for k in ["seed", "state_salt"] {
            secrets.push(r["body"][k].as_str().unwrap().to_string());
        }
    }

    // Let the writer and the log drain: stop the daemon.
    let mut d = d;
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(15)).is_some());
    let log = d.log_text();
    assert!(
        log.lines().count() > 50,
        "the log is nearly empty: is trace on?\n{log}"
    );
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "not a trace log"
    );
    for s in &secrets {
        assert!(s.len() >= 16, "a short secret would match by chance: {s}");
        assert!(
            !log.contains(s.as_str()),
            "secret {s:?} found in the trace log"
        );
    }
}
