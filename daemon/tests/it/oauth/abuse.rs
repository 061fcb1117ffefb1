//! Abuse of the unauthenticated endpoints: registration floods with forged
//! `X-Forwarded-For`, passphrase guessing, and the way around both for the
//! operator (`mcp-multiplayer approve`). Each test is an attack that must
//! fail to lock anyone out, and names what stops it.
//!
//! Different client addresses come from binding the test's connections to
//! other loopback addresses (127.0.0.2, 127.0.0.3, ...): real, distinct TCP
//! peers to the daemon.

use super::*;
use std::time::Instant;

/// A config file with top-level settings and `[auth]` settings.
fn config_with(dir: &Path, top: &str, auth: &str) -> Vec<String> {
    let p = dir.join("config.toml");
    std::fs::write(&p, format!("{top}\n[auth]\n{auth}\n")).unwrap();
    vec!["--config".into(), p.display().to_string()]
}

/// Registers a public client through `via`, with an optional
/// `X-Forwarded-For`; returns (status, body, Retry-After).
async fn register_via(
    via: &reqwest::Client,
    d: &Daemon,
    forwarded: Option<&str>,
) -> (u16, Value, Option<u64>) {
    let mut r = via.post(format!("{}/register", d.base)).json(
        &json!({"client_name": "it", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}),
    );
    if let Some(f) = forwarded {
        r = r.header("x-forwarded-for", f);
    }
    let r = r.send().await.unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (r.status().as_u16(), r.json().await.unwrap(), retry)
}

/// Whether the daemon still knows `client_id` (an unknown client gets the
/// "Unknown client" page at /authorize; a known one, in auto mode, a code).
async fn known(d: &Daemon, client_id: &str) -> bool {
    let (_, challenge) = pkce();
    let (st, _, body) = authorize(
        d,
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    match st {
        302 => true,
        400 if body.contains("Unknown client") => false,
        _ => panic!("{st}: {body}"),
    }
}

/// Signs `client_id` in (auto approval) and checks the token at /mcp.
async fn signs_in(d: &Daemon, client_id: &str) {
    let (verifier, challenge) = pkce();
    let code = code_for(d, client_id, &challenge).await;
    let (st, tok, _) = token(
        d,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", REDIRECT),
            ("client_id", client_id),
        ],
    )
    .await;
    assert_eq!(st, 200, "{tok}");
    assert_eq!(mcp_status(d, &s(&tok, "access_token")).await.0, 200);
}

fn forged(i: usize) -> String {
    format!(
        "{}.{}.{}.{}",
        1 + i % 200,
        (i / 200) % 250,
        i % 7,
        1 + i % 250
    )
}

/// The per-address token bucket (`limits::register`) throttles one
/// address; its `Retry-After` is when the next registration will pass, and
/// another address is not affected.
#[tokio::test]
async fn registration_is_throttled_per_address_with_a_correct_retry_hint() {
    let dir = TempDir::new("oauth-throttle");
    let d = start(&dir, &config(dir.path(), "registrations_per_minute = 6"));
    let via = http();
    let started = Instant::now();
    let mut created = 0;
    let mut refused = None;
    for _ in 0..10 {
        match register_via(&via, &d, None).await {
            (201, _, _) => created += 1,
            (429, v, retry) => {
                refused = Some((v, retry));
                break;
            }
            (st, v, _) => panic!("{st}: {v}"),
        }
    }
    // 6 a minute: a burst of 6, then one every 10 s (one more if the burst
    // itself took that long).
    let slack = (started.elapsed().as_secs() / 10) as usize;
    assert!((6..=6 + slack).contains(&created), "{created}");
    let (v, retry) = refused.expect("the 7th registration is throttled");
    assert_eq!(v["error"], "temporarily_unavailable");
    let retry = retry.expect("Retry-After on 429");
    assert!((1..=10).contains(&retry), "{retry}");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains(&format!("retry in {retry} s")),
        "the sentence says the same wait: {v}"
    );
    // Another address registers at once.
    let (st, v, _) = register_via(&http_from(2), &d, None).await;
    assert_eq!(st, 201, "{v}");
}

/// The attack: one peer floods `/register`, forging a new
/// `X-Forwarded-For` address each time to escape per-address limits and
/// fill the table for everyone. What stops it: with no `trusted_proxies`
/// (the default) the header is ignored (`client_addr`), so the whole flood
/// is one address: the bucket throttles it and the per-address cap keeps
/// only its newest few. Nobody else is refused.
#[tokio::test]
async fn a_registration_flood_with_forged_forwarded_headers_does_not_stop_a_fresh_registration() {
    let dir = TempDir::new("oauth-flood");
    let d = start(
        &dir,
        &config(
            dir.path(),
            "unapproved_clients_per_address = 5\nunapproved_clients_total = 50",
        ),
    );
    // A client that registered from elsewhere before the flood.
    let (st, earlier, _) = register_via(&http_from(3), &d, None).await;
    assert_eq!(st, 201);
    let earlier = s(&earlier, "client_id");
    let (st, first, _) = register_via(&http(), &d, Some("198.51.100.77")).await;
    assert_eq!(st, 201);
    let first = s(&first, "client_id");

    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let base = d.base.clone();
        set.spawn(async move {
            let via = http();
            let mut out = Vec::new();
            for i in 0..25 {
                let r = via
                    .post(format!("{base}/register"))
                    .header("x-forwarded-for", forged(worker * 25 + i))
                    .json(
                        &json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}),
                    )
                    .send()
                    .await
                    .unwrap();
                let retry = r.headers().get("retry-after").is_some();
                out.push((r.status().as_u16(), retry));
            }
            out
        });
    }
    let results: Vec<(u16, bool)> = set.join_all().await.into_iter().flatten().collect();
    let elapsed = started.elapsed().as_secs_f64();
    let created = results.iter().filter(|r| r.0 == 201).count();
    let throttled = results.iter().filter(|r| r.0 == 429).count();
    assert_eq!(created + throttled, 200, "{results:?}");
    assert!(
        results.iter().all(|r| r.0 != 429 || r.1),
        "every 429 says when to retry"
    );
    // One bucket for the whole flood: 30 a minute, one already used above.
    assert!(
        created <= 29 + (elapsed / 2.0).ceil() as usize,
        "the forged headers escaped the bucket: {created} in {elapsed:.1} s"
    );

    // A fresh client from another address registers and signs in.
    let (st, fresh, _) = register_via(&http_from(2), &d, None).await;
    assert_eq!(st, 201, "{fresh}");
    signs_in(&d, &s(&fresh, "client_id")).await;
    // The flood replaced only its own registrations: the first of them is
    // gone (more than 5 came after it from the same address), the client
    // from elsewhere is still there.
    assert!(!known(&d, &first).await, "the per-address cap dropped it");
    assert!(known(&d, &earlier).await, "another address's client stays");
    // The log names the flood by its real address, not the forged ones.
    let log = std::fs::read_to_string(&d.stderr_log).unwrap();
    assert!(
        log.contains("from=127.0.0.1"),
        "registrations are logged with the peer"
    );
    assert!(
        !log.contains("from=198.51.100.77"),
        "a forged header was believed"
    );
}

/// Behind a reverse proxy the operator trusts, each forwarded client
/// counts on its own (the rightmost entry the proxy appended; entries to its
/// left are the client's and ignored). A flood from many addresses meets
/// the total cap, which drops the oldest of whoever holds the most, never
/// refuses, and leaves a one-off client alone.
#[tokio::test]
async fn behind_a_trusted_proxy_a_flood_from_many_addresses_never_locks_out() {
    let dir = TempDir::new("oauth-proxy-flood");
    let d = start(
        &dir,
        &config_with(
            dir.path(),
            "trusted_proxies = [\"127.0.0.1\"]",
            "registrations_per_minute = 100000\nunapproved_clients_per_address = 5\nunapproved_clients_total = 50",
        ),
    );
    let (st, lone, _) = register_via(&http(), &d, Some("203.0.113.9")).await;
    assert_eq!(st, 201);
    let lone = s(&lone, "client_id");
    let mut set = tokio::task::JoinSet::new();
    for worker in 0..6 {
        let base = d.base.clone();
        set.spawn(async move {
            let via = http();
            let mut statuses = Vec::new();
            for i in 0..50 {
                let n = worker * 50 + i;
                // The client forges whatever it likes on the left; the
                // proxy appends the real address (20 of them here).
                let xff = format!("{}, 10.9.9.9, 198.51.100.{}", forged(n), n % 20);
                let r = via
                    .post(format!("{base}/register"))
                    .header("x-forwarded-for", xff)
                    .json(
                        &json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}),
                    )
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status().as_u16());
            }
            statuses
        });
    }
    let statuses: Vec<u16> = set.join_all().await.into_iter().flatten().collect();
    assert!(
        statuses.iter().all(|s| *s == 201),
        "nothing is refused: {statuses:?}"
    );
    let (st, fresh, _) = register_via(&http(), &d, Some("203.0.113.7")).await;
    assert_eq!(st, 201);
    signs_in(&d, &s(&fresh, "client_id")).await;
    assert!(
        known(&d, &lone).await,
        "a one-off client outlives the flood"
    );
}

/// Opens an approval page through `via`; returns (request id, cookie).
async fn page_via(via: &reqwest::Client, base: &str, cid: &str) -> (String, String) {
    let (_, challenge) = pkce();
    let r = via
        .get(format!("{base}/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", cid),
            ("redirect_uri", REDIRECT),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("state", "pp"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let html = r.text().await.unwrap();
    let id = html
        .split("name=\"request\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert!(
        html.contains(&format!("mcp-multiplayer approve {id}")),
        "the page says how to approve on the server"
    );
    (id, cookie)
}

/// POSTs the approval form through `via`; returns (status, Retry-After,
/// Location, body).
async fn post_via(
    via: &reqwest::Client,
    base: &str,
    id: &str,
    cookie: &str,
    decision: &str,
    pass: &str,
) -> (u16, Option<u64>, Option<url::Url>, String) {
    let r = via
        .post(format!("{base}/authorize"))
        .header("cookie", cookie)
        .form(&[
            ("request", id),
            ("passphrase", pass),
            ("decision", decision),
        ])
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let loc = r
        .headers()
        .get("location")
        .map(|l| url::Url::parse(l.to_str().unwrap()).unwrap());
    (st, retry, loc, r.text().await.unwrap())
}

const PASS: &str = "correct horse battery staple";

/// The attack: guessing the passphrase at speed from one address. What
/// stops it: the per-address backoff (`limits::passphrase`), under one lock:
/// after 5 free wrong guesses each next one waits, and guesses during the
/// wait are not judged. Nothing about it touches other addresses.
#[tokio::test]
async fn passphrase_guessing_is_slowed_per_address() {
    let dir = TempDir::new("oauth-guess");
    let d = passphrase_daemon(&dir, PASS);
    let (cid, _) = client(&d, "none").await;
    let attacker = http();
    let (id, cookie) = page_via(&attacker, &d.base, &cid).await;
    let operator = http_from(2);
    let (op_id, op_cookie) = page_via(&operator, &d.base, &cid).await;

    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (d_base, id, cookie) = (d.base.clone(), id.clone(), cookie.clone());
        set.spawn(async move {
            let r = http()
                .post(format!("{d_base}/authorize"))
                .header("cookie", cookie)
                .form(&[
                    ("request", id.as_str()),
                    ("passphrase", &format!("guess {i}")),
                    ("decision", "approve"),
                ])
                .send()
                .await
                .unwrap();
            let retry: Option<u64> = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse().unwrap());
            (r.status().as_u16(), retry, r.text().await.unwrap())
        });
    }
    let results = set.join_all().await;
    let elapsed = started.elapsed().as_secs_f64();
    let judged = results.iter().filter(|r| r.0 == 403).count();
    let waited: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(judged + waited.len(), 40);
    // 5 free, then the 6th after 1 s, the 7th after 3 s, the 8th after 7 s...
    let allowed = 5 + (elapsed + 1.0).log2().floor() as usize;
    assert!(
        (5..=allowed).contains(&judged),
        "{judged} guesses judged in {elapsed:.1} s"
    );
    for (_, retry, body) in &waited {
        assert!(retry.is_some_and(|r| r >= 1), "Retry-After on every 429");
        assert!(body.contains("try again in"), "{body}");
        assert!(body.contains("approve on the server"), "{body}");
    }
    // The right passphrase from the guessing address: not judged while it
    // waits (a lucky guess gains nothing).
    let burst_end = Instant::now();
    let (st, retry, loc, _) = post_via(&attacker, &d.base, &id, &cookie, "approve", PASS).await;
    if st == 429 {
        assert!(retry.is_some_and(|r| r >= 1));
        assert!(loc.is_none());
    } else {
        assert_eq!(st, 303);
        assert!(
            burst_end.duration_since(started).as_secs_f64() >= 1.0,
            "judged during the wait"
        );
    }
    // The operator, elsewhere, is judged at once.
    let (st, _, loc, body) =
        post_via(&operator, &d.base, &op_id, &op_cookie, "approve", PASS).await;
    assert_eq!(st, 303, "{body}");
    assert!(query(&loc.unwrap(), "code").is_some());
}

/// The attack that locked the operator out before: wrong guesses from many
/// addresses. What stops it now: there is no global bound to exhaust, only
/// per-address backoffs.
#[tokio::test]
async fn passphrase_guessing_from_many_addresses_does_not_lock_out_the_operator() {
    let dir = TempDir::new("oauth-guess-many");
    let d = passphrase_daemon(&dir, PASS);
    let (cid, _) = client(&d, "none").await;
    let mut set = tokio::task::JoinSet::new();
    for addr in 10..30u8 {
        let (base, cid) = (d.base.clone(), cid.clone());
        set.spawn(async move {
            let via = http_from(addr);
            let (id, cookie) = page_via(&via, &base, &cid).await;
            let mut judged = 0;
            for i in 0..8 {
                let (st, _, _, _) =
                    post_via(&via, &base, &id, &cookie, "approve", &format!("guess {i}")).await;
                if st == 403 {
                    judged += 1;
                }
            }
            judged
        });
    }
    let judged: usize = set.join_all().await.into_iter().sum();
    assert!(
        judged >= 20 * 5,
        "each address had its free guesses: {judged}"
    );
    // 100 and more wrong guesses in all (the old global lock was 20); the
    // operator signs in at once.
    let operator = http_from(2);
    let (id, cookie) = page_via(&operator, &d.base, &cid).await;
    let (st, _, loc, body) = post_via(&operator, &d.base, &id, &cookie, "approve", PASS).await;
    assert_eq!(st, 303, "{body}");
    assert!(query(&loc.unwrap(), "code").is_some());
}

/// `mcp-multiplayer approve`: lists waiting sign-ins, approves one by its
/// code without the passphrase, also when the operator's own address is in
/// backoff (behind a proxy without `trusted_proxies`, everyone is), and a
/// waiting sign-in survives a restart.
#[tokio::test]
async fn approve_on_the_server_lists_and_approves_waiting_sign_ins_across_a_restart() {
    let dir = TempDir::new("oauth-approve-cli");
    let mut d = passphrase_daemon(&dir, PASS);
    let (cid, _) = client(&d, "none").await;
    let via = http();

    // Part 1: the operator's address is being guessed from.
    let (id, cookie) = page_via(&via, &d.base, &cid).await;
    for i in 0..12 {
        let _ = post_via(
            &via,
            &d.base,
            &id,
            &cookie,
            "approve",
            &format!("guess {i}"),
        )
        .await;
    }
    let (st, _, _, body) = post_via(&via, &d.base, &id, &cookie, "continue", "").await;
    assert_eq!(st, 409, "not approved on the server yet");
    assert!(
        body.contains(&format!("mcp-multiplayer approve {id}")),
        "{body}"
    );
    let listed = approve_cli(dir.path(), &[]);
    assert!(listed.0, "{}", listed.2);
    assert!(listed.1.contains(&id), "{}", listed.1);
    assert!(
        listed.1.contains("it (client mcpmp_client_"),
        "{}",
        listed.1
    );
    assert!(
        listed
            .1
            .contains("returns to a program on your own computer (http://127.0.0.1:9)"),
        "{}",
        listed.1
    );
    // Typed loosely: lower case, no dash.
    let (ok, out, err) = approve_cli(dir.path(), &[&id.to_lowercase().replace('-', "")]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("Approved {id}")), "{out}");
    let (st, _, loc, body) = post_via(&via, &d.base, &id, &cookie, "continue", "").await;
    assert_eq!(st, 303, "{body}");
    let loc = loc.unwrap();
    assert_eq!(query(&loc, "state").as_deref(), Some("pp"));
    assert_eq!(query(&loc, "iss").as_deref(), Some(d.base.as_str()));
    assert!(query(&loc, "code").is_some());
    // Used up: the listing no longer shows it.
    assert!(!approve_cli(dir.path(), &[]).1.contains(&id));

    // Part 2: a sign-in waiting across a restart of the daemon.
    let (verifier, challenge) = pkce();
    let r = via
        .get(format!("{}/authorize", d.base))
        .query(&[
            ("response_type", "code"),
            ("client_id", cid.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    let cookie2 = r.headers()["set-cookie"].to_str().unwrap();
    let cookie2 = cookie2.split(';').next().unwrap().to_string();
    let html = r.text().await.unwrap();
    let id2 = html
        .split("name=\"request\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    d.kill9();
    let args = config(
        dir.path(),
        &format!(
            "approval = \"passphrase\"\npassphrase_file = {:?}",
            dir.path().join("passphrase").display().to_string()
        ),
    );
    let d = start(&dir, &args);
    let (ok, out, _) = approve_cli(dir.path(), &[&id2]);
    assert!(ok && out.contains("Approved"), "{out}");
    let (st, _, loc, body) = post_via(&via, &d.base, &id2, &cookie2, "continue", "").await;
    assert_eq!(st, 303, "{body}");
    let code = query(&loc.unwrap(), "code").unwrap();
    let (st, tok, _) = token(
        &d,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", REDIRECT),
            ("client_id", &cid),
        ],
    )
    .await;
    assert_eq!(st, 200, "{tok}");
    assert!(s(&tok, "access_token").starts_with("mcpmp_at_"));
    // (Not used at /mcp: the restarted daemon listens on another port, so
    // its resource is another URL than the one this sign-in was for.)

    // Part 3: denied on the server; unknown codes are refused clearly.
    let (id3, cookie3) = page_via(&via, &d.base, &cid).await;
    let (ok, out, _) = approve_cli(dir.path(), &["--deny", &id3]);
    assert!(ok && out.contains("Denied"), "{out}");
    let (st, _, loc, body) = post_via(&via, &d.base, &id3, &cookie3, "continue", "").await;
    assert_eq!(st, 400, "{body}");
    assert!(loc.is_none());
    let (ok, _, err) = approve_cli(dir.path(), &["ABCD-EFGH"]);
    assert!(!ok);
    assert!(err.contains("no sign-in ABCD-EFGH is waiting"), "{err}");
    let (ok, _, err) = approve_cli(dir.path(), &["nonsense"]);
    assert!(!ok);
    assert!(err.contains("not a sign-in code"), "{err}");
}

/// `mcp-multiplayer approve ARGS --state-dir DIR`: (success, stdout, stderr).
fn approve_cli(state_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = crate::util::daemon_cmd(state_dir)
        .arg("approve")
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Registering a client must not make the server an open redirector: an
/// error about a request goes back to the redirect URI only once the
/// operator approved that client (or in `auto` mode, where everyone is);
/// before, it is a page. A denial the user chose goes back.
#[tokio::test]
async fn errors_go_back_only_to_a_redirect_uri_the_operator_approved() {
    let dir = TempDir::new("oauth-open-redirect");
    let d = passphrase_daemon(&dir, PASS);
    let (cid, _) = client(&d, "none").await;
    let no_pkce = [
        ("response_type", "code"),
        ("client_id", cid.as_str()),
        ("redirect_uri", REDIRECT),
        ("state", "s"),
    ];
    let (st, loc, body) = authorize(&d, &no_pkce).await;
    assert_eq!(st, 400, "{body}");
    assert!(loc.is_none(), "no redirect for a client nobody approved");
    assert!(
        body.contains("invalid_request") && body.contains("PKCE"),
        "{body}"
    );

    // Denied on the page: the user chose to go back.
    let via = http();
    let (id, cookie) = page_via(&via, &d.base, &cid).await;
    let (st, _, loc, _) = post_via(&via, &d.base, &id, &cookie, "deny", "").await;
    assert_eq!(st, 302);
    let loc = loc.unwrap();
    assert_eq!(query(&loc, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&loc, "iss").as_deref(), Some(d.base.as_str()));

    // Once approved, errors go back to it, with state and iss.
    let (id, cookie) = page_via(&via, &d.base, &cid).await;
    let (st, _, _, _) = post_via(&via, &d.base, &id, &cookie, "approve", PASS).await;
    assert_eq!(st, 303);
    let (st, loc, _) = authorize(&d, &no_pkce).await;
    assert_eq!(st, 302);
    let loc = loc.unwrap();
    assert!(loc.as_str().starts_with(REDIRECT));
    assert_eq!(query(&loc, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query(&loc, "state").as_deref(), Some("s"));
    assert_eq!(query(&loc, "iss").as_deref(), Some(d.base.as_str()));
}

/// Reads the daemon's log until it holds `marker` (the daemon writes it
/// from another thread); panics after ten seconds.
async fn log_with(d: &Daemon, marker: &str) -> String {
    let until = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&d.stderr_log).unwrap_or_default();
        if log.contains(marker) {
            return log;
        }
        assert!(Instant::now() < until, "{marker:?} never logged:\n{log}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Attack (red-team F2): an unauthenticated `/authorize` whose `resource`
/// carries a newline and an escape sequence forges a log line ("passphrase
/// accepted", "tokens issued") and writes terminal escapes into the default
/// text log. Stopped twice: the refusal quotes the value (`{:?}`, in
/// `authorize::validate`) and is logged with `?`, and every log line passes
/// through `logging::one_line`, which escapes control characters.
#[tokio::test]
async fn a_forged_resource_cannot_forge_a_log_line() {
    let dir = TempDir::new("oauth-log-injection");
    let d = start(&dir, &[]);
    let (cid, _) = client(&d, "none").await;
    let (_, challenge) = pkce();
    let forged = "x\n2026-12-05T12:00:00.000000Z  INFO mcp_multiplayer::oauth::token: tokens issued client_id=FORGED\u{1b}[31m red\r";
    let (st, loc, _) = authorize(
        &d,
        &[
            ("response_type", "code"),
            ("client_id", &cid),
            ("redirect_uri", REDIRECT),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("resource", forged),
        ],
    )
    .await;
    assert_eq!(st, 302);
    assert_eq!(
        query(&loc.unwrap(), "error").as_deref(),
        Some("invalid_target")
    );
    let log = log_with(&d, "authorization request refused").await;
    assert!(!log.contains('\u{1b}'), "a raw ESC reached the log");
    assert!(!log.contains('\r'), "a raw CR reached the log");
    for line in log.lines() {
        assert!(
            !line.starts_with("2026-12-05T12:00:00.000000Z"),
            "forged line: {line:?}"
        );
    }
    let refused = log
        .lines()
        .find(|l| l.contains("authorization request refused"))
        .unwrap();
    assert!(
        refused.contains("FORGED"),
        "the value is logged, on its line"
    );
}
