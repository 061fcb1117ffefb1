//! Client ID Metadata Documents: a `client_id` that is an https URL names a
//! JSON document, published by the client, that registers it (the MCP
//! authorization spec from 2025-11-25, draft-ietf-oauth-client-id-metadata-document).
//!
//! Fetching a URL a stranger chose is a server-side request on their behalf,
//! so the fetch is fenced in:
//!
//! - `https` only, to a host name or address that is public: the name is
//!   resolved first, every address it resolves to must be public (no
//!   loopback, private, link-local, shared, documentation or otherwise
//!   reserved range), and the connection goes to the checked address, so a
//!   second, different DNS answer cannot steer it elsewhere;
//! - no redirects (the document must be served at its URL), no proxy from
//!   the environment, a time limit on the whole fetch, a size limit on the
//!   body ([`MAX_DOCUMENT_BYTES`]);
//! - the document must be a JSON object whose `client_id` is exactly the URL
//!   (simple string comparison, no normalisation), for a public client
//!   (`none`; a document cannot hold a shared secret), with redirect URIs
//!   that pass the same policy as a registration.
//!
//! A fetched document is kept in `oauth_clients` like a registered client,
//! which is what grants and tokens refer to; its HTTP caching headers say
//! when `/authorize` fetches it again ([`freshness`]).
//!
//! For tests only, `auth.test_only_loopback_client_metadata` also allows
//! plain `http` to loopback addresses (and nothing else that is not public).

use super::OAuthError;
use super::register::{self, Registration};
use serde_json::{Map, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use url::{Host, Url};

/// Largest document accepted. Generous on purpose: claude.ai's document is
/// larger than the 5 KB some servers allow, which made them refuse it.
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024;
/// The whole fetch: resolving, connecting, TLS, headers and body.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Resolving the host name.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// Freshness when the response names none.
const DEFAULT_FRESHNESS: Duration = Duration::from_secs(300);
/// Longest freshness honoured, whatever the response says.
const MAX_FRESHNESS: Duration = Duration::from_secs(24 * 3600);

/// How a fetch may reach its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// https to public addresses only.
    Public,
    /// Also plain http to loopback addresses (tests).
    AlsoLoopbackHttp,
}

/// A client metadata document that passed every check.
#[derive(Debug)]
pub struct Fetched {
    pub registration: Registration,
    /// How long it may be reused for new sign-ins (zero: fetch again next
    /// time).
    pub fresh_for: Duration,
}

/// Whether `client_id` is meant as a metadata document URL.
pub fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

/// Checks a client identifier URL (the draft's rules: https, a path, no dot
/// segments, no fragment, no user information) and returns it parsed.
///
/// # Errors
/// A sentence saying what is wrong.
pub fn check_url(client_id: &str, reach: Reach) -> Result<Url, String> {
    if client_id.len() > super::redirect::MAX_URI_LEN
        || client_id.chars().any(|c| !c.is_ascii_graphic())
    {
        return Err(
            "the client_id URL is too long or contains spaces or control characters".into(),
        );
    }
    let u = Url::parse(client_id).map_err(|_| "the client_id is not a URL".to_string())?;
    let loopback_http = reach == Reach::AlsoLoopbackHttp
        && u.scheme() == "http"
        && u.host().is_some_and(|h| host_is_loopback(&h));
    if u.scheme() != "https" && !loopback_http {
        return Err("a client_id URL must use https".into());
    }
    if u.fragment().is_some() || !u.username().is_empty() || u.password().is_some() {
        return Err("a client_id URL must not have a fragment or user information".into());
    }
    if u.path() == "/" {
        return Err("a client_id URL must have a path (the document's location)".into());
    }
    if has_dot_segment(client_id) {
        return Err("a client_id URL must not contain . or .. path segments".into());
    }
    Ok(u)
}

/// Fetches, parses and validates the document at `url`.
///
/// # Errors
/// An [`OAuthError`] whose description says what went wrong (shown on the
/// error page; never a secret, never the body).
pub async fn fetch(
    url: &Url,
    client_id: &str,
    reach: Reach,
    custom_schemes: &[String],
) -> Result<Fetched, OAuthError> {
    let fail = |m: String| OAuthError::invalid_client(format!("client metadata document: {m}"));
    let host = url
        .host()
        .ok_or_else(|| fail("the URL has no host".into()))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| fail("the URL has no port".into()))?;
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(RESOLVE_TIMEOUT)
        .user_agent(concat!("mcp-multiplayer/", env!("CARGO_PKG_VERSION")))
        .https_only(reach == Reach::Public);
    match host {
        Host::Ipv4(ip) => allowed(IpAddr::V4(ip), reach).map_err(fail)?,
        Host::Ipv6(ip) => allowed(IpAddr::V6(ip), reach).map_err(fail)?,
        Host::Domain(name) => {
            let addr = resolve(name, port, reach).await.map_err(fail)?;
            // Connect to the address just checked, not to whatever the next
            // lookup says (DNS rebinding).
            builder = builder.resolve(name, addr);
        }
    }
    let client = builder
        .build()
        .map_err(|e| fail(format!("cannot set up the fetch ({e})")))?;
    let mut resp = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| fail(describe_fetch_error(&e)))?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(fail(format!(
            "the server answered {status} (a redirect); redirects are not followed, serve the document at its URL"
        )));
    }
    if status != reqwest::StatusCode::OK {
        return Err(fail(format!("the server answered {status}, not 200")));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(fail(format!("larger than {MAX_DOCUMENT_BYTES} bytes")));
    }
    let fresh_for = freshness(
        resp.headers()
            .get_all(reqwest::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| fail(describe_fetch_error(&e)))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(fail(format!("larger than {MAX_DOCUMENT_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    let registration = validate(&body, client_id, custom_schemes).map_err(fail)?;
    Ok(Fetched {
        registration,
        fresh_for,
    })
}

/// Validates a document's bytes as the metadata of `client_id`.
fn validate(
    body: &[u8],
    client_id: &str,
    custom_schemes: &[String],
) -> Result<Registration, String> {
    let mut doc: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => m,
        _ => return Err("not a JSON object".into()),
    };
    match doc.get("client_id") {
        Some(Value::String(id)) if id == client_id => {}
        Some(Value::String(id)) => {
            return Err(format!(
                "its client_id {:?} is not the URL it was fetched from",
                id.chars().take(200).collect::<String>()
            ));
        }
        _ => return Err("it has no client_id".into()),
    }
    if doc.contains_key("client_secret") || doc.contains_key("client_secret_expires_at") {
        return Err("a published document must not contain a client secret".into());
    }
    match doc.get("token_endpoint_auth_method") {
        None | Some(Value::Null) => {
            // Unlike registration, where the default is client_secret_basic,
            // a document describes a public client.
            doc.insert("token_endpoint_auth_method".into(), Value::from("none"));
        }
        Some(Value::String(m)) if m == "none" => {}
        Some(_) => {
            return Err(
                "token_endpoint_auth_method must be none: this server accepts metadata documents of public clients only".into(),
            );
        }
    }
    register::validate(&doc, custom_schemes).map_err(|e| e.description)
}

/// How long a response may be reused, from its `Cache-Control` values:
/// nothing for `no-store`, `no-cache` or `max-age=0`, else `max-age` up to
/// a day, else five minutes.
pub fn freshness<'a>(cache_control: impl IntoIterator<Item = &'a str>) -> Duration {
    let mut max_age = None;
    for directive in cache_control
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
    {
        if directive == "no-store" || directive == "no-cache" {
            return Duration::ZERO;
        }
        if let Some(v) = directive.strip_prefix("max-age=") {
            // A malformed max-age makes the response stale (RFC 9111 §4.2.1).
            max_age = Some(v.trim_matches('"').parse::<u64>().unwrap_or(0));
        }
    }
    match max_age {
        Some(s) => Duration::from_secs(s).min(MAX_FRESHNESS),
        None => DEFAULT_FRESHNESS,
    }
}

async fn resolve(name: &str, port: u16, reach: Reach) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)))
            .await
            .map_err(|_| format!("resolving {name} took too long"))?
            .map_err(|_| format!("cannot resolve {name}"))?
            .collect();
    let first = *addrs
        .first()
        .ok_or_else(|| format!("{name} has no address"))?;
    // Every address must be allowed: choosing among them would let one
    // public record carry a private one along.
    for a in &addrs {
        allowed(a.ip(), reach).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(first)
}

/// Whether the fetch may connect to `ip`.
fn allowed(ip: IpAddr, reach: Reach) -> Result<(), String> {
    if reach == Reach::AlsoLoopbackHttp && ip.is_loopback() {
        return Ok(());
    }
    if is_public(ip) {
        Ok(())
    } else {
        Err(format!(
            "{ip} is a private, loopback or reserved address; documents are fetched only from public addresses"
        ))
    }
}

/// Whether `ip` is a globally reachable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            let bits = u128::from(v6);
            let in_net = |net: u128, len: u32| bits >> (128 - len) == net >> (128 - len);
            if v6.is_unspecified() || v6.is_loopback() {
                return false;
            }
            // NAT64 (64:ff9b::/96): the IPv4 address inside decides.
            if in_net(0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96) {
                let v4 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
                return is_public_v4(v4);
            }
            !(in_net(0xfc00 << 112, 7)          // unique local
                || in_net(0xfe80 << 112, 10)    // link-local
                || in_net(0xfec0 << 112, 10)    // site-local (deprecated)
                || in_net(0xff00 << 112, 8)     // multicast
                || in_net(0x2001_0db8 << 96, 32) // documentation
                || in_net(0x2001 << 112, 32)    // Teredo: tunnels to anywhere
                || in_net(0x2002 << 112, 16)    // 6to4: tunnels to anywhere
                || in_net(0x0064_ff9b_0001 << 80, 48) // local-use NAT64
                || in_net(0x0100 << 112, 64)    // discard
                || s[0] == 0) // ::/16: IPv4-compatible and other reserved forms
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0                                  // "this network"
        || (a == 100 && (64..128).contains(&b))    // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0)          // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19))      // benchmarking
        || a >= 240) // reserved
}

fn host_is_loopback(h: &Host<&str>) -> bool {
    match h {
        Host::Domain(d) => *d == "localhost",
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => *ip == Ipv6Addr::LOCALHOST,
    }
}

/// Whether the path of `raw` (a URL) has a `.` or `..` segment, literally or
/// percent-encoded (the URL parser would resolve them away).
fn has_dot_segment(raw: &str) -> bool {
    let after_scheme = raw.split_once("://").map_or(raw, |(_, r)| r);
    let path = match after_scheme.find('/') {
        Some(i) => &after_scheme[i..],
        None => return false,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.split('/').any(|seg| {
        let s = seg.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    })
}

/// A fetch failure in words, without the URL's query or anything the peer
/// sent.
fn describe_fetch_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no complete answer within {} s", FETCH_TIMEOUT.as_secs())
    } else if e.is_connect() {
        "cannot connect to its host".into()
    } else if e.is_body() || e.is_decode() {
        "the answer broke off".into()
    } else {
        "the fetch failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_public_addresses_are_fetched_from() {
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "160.79.104.10",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "64:ff9b::101:101",
        ] {
            assert!(is_public(ip(public)), "{public}");
        }
        // Each of these reaches the server itself, its network, or a tunnel
        // to anywhere: SSRF targets that the address check must stop.
        for private in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254", // cloud metadata
            "100.64.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001:0:4136:e378::1",
            "2002:7f00:1::1",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "100::1",
        ] {
            assert!(!is_public(ip(private)), "{private} counted as public");
            assert!(allowed(ip(private), Reach::Public).is_err(), "{private}");
        }
        // The test switch opens loopback, and only loopback.
        assert!(allowed(ip("127.0.0.1"), Reach::AlsoLoopbackHttp).is_ok());
        assert!(allowed(ip("::1"), Reach::AlsoLoopbackHttp).is_ok());
        assert!(allowed(ip("10.0.0.1"), Reach::AlsoLoopbackHttp).is_err());
        assert!(allowed(ip("169.254.169.254"), Reach::AlsoLoopbackHttp).is_err());
    }

    #[test]
    fn client_id_urls_follow_the_drafts_rules() {
        for ok in [
            "https://claude.ai/oauth/mcp-oauth-client-metadata",
            "https://app.example.com/client.json",
            "https://app.example.com:8443/c?v=1",
        ] {
            assert!(check_url(ok, Reach::Public).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example.com/client.json",
            "http://127.0.0.1:9/client.json",
            "https://app.example.com",
            "https://app.example.com/",
            "https://app.example.com/a/../client.json",
            "https://app.example.com/./client.json",
            "https://app.example.com/a/%2E%2E/client.json",
            "https://app.example.com/client.json#x",
            "https://user:pw@app.example.com/client.json",
            "https://app.example.com/client .json",
            "ftp://app.example.com/client.json",
        ] {
            assert!(check_url(bad, Reach::Public).is_err(), "{bad}");
        }
        // The test switch allows http to loopback, nothing else.
        assert!(check_url("http://127.0.0.1:9/client.json", Reach::AlsoLoopbackHttp).is_ok());
        assert!(check_url("http://localhost:9/client.json", Reach::AlsoLoopbackHttp).is_ok());
        assert!(check_url("http://example.com/client.json", Reach::AlsoLoopbackHttp).is_err());
        assert!(check_url("http://10.0.0.1/client.json", Reach::AlsoLoopbackHttp).is_err());
    }

    fn schemes() -> Vec<String> {
        vec!["cursor".into()]
    }

    #[test]
    fn documents_are_validated() {
        let id = "https://app.example.com/client.json";
        let good = serde_json::json!({
            "client_id": id, "client_name": "App",
            "redirect_uris": ["http://127.0.0.1/cb", "https://app.example.com/cb"],
        });
        let r = validate(good.to_string().as_bytes(), id, &schemes()).unwrap();
        assert_eq!(r.auth_method, super::super::grants::AuthMethod::None);
        assert_eq!(r.client_name.as_deref(), Some("App"));
        assert!(r.refresh);
        for (what, doc) in [
            (
                "another client_id",
                serde_json::json!({"client_id": "https://evil.example/c.json", "redirect_uris": ["https://a.example/cb"]}),
            ),
            (
                "no client_id",
                serde_json::json!({"redirect_uris": ["https://a.example/cb"]}),
            ),
            (
                "client_id differs by normalisation",
                serde_json::json!({"client_id": "https://APP.example.com/client.json", "redirect_uris": ["https://a.example/cb"]}),
            ),
            (
                "a secret",
                serde_json::json!({"client_id": id, "client_secret": "s", "redirect_uris": ["https://a.example/cb"]}),
            ),
            (
                "a confidential method",
                serde_json::json!({"client_id": id, "token_endpoint_auth_method": "client_secret_basic", "redirect_uris": ["https://a.example/cb"]}),
            ),
            (
                "private_key_jwt",
                serde_json::json!({"client_id": id, "token_endpoint_auth_method": "private_key_jwt", "redirect_uris": ["https://a.example/cb"]}),
            ),
            ("no redirect URIs", serde_json::json!({"client_id": id})),
            (
                "a bad redirect URI",
                serde_json::json!({"client_id": id, "redirect_uris": ["javascript:alert(1)"]}),
            ),
            (
                "an http redirect off loopback",
                serde_json::json!({"client_id": id, "redirect_uris": ["http://app.example.com/cb"]}),
            ),
        ] {
            assert!(
                validate(doc.to_string().as_bytes(), id, &schemes()).is_err(),
                "{what}"
            );
        }
        assert!(validate(b"[]", id, &schemes()).is_err());
        assert!(validate(b"not json", id, &schemes()).is_err());
    }

    #[test]
    fn freshness_follows_cache_control() {
        assert_eq!(freshness([]), DEFAULT_FRESHNESS);
        assert_eq!(freshness(["public, max-age=600"]), Duration::from_secs(600));
        assert_eq!(freshness(["max-age=99999999"]), MAX_FRESHNESS);
        assert_eq!(freshness(["max-age=0"]), Duration::ZERO);
        assert_eq!(freshness(["max-age=abc"]), Duration::ZERO);
        assert_eq!(freshness(["max-age=600", "no-store"]), Duration::ZERO);
        assert_eq!(freshness(["No-Cache"]), Duration::ZERO);
    }
}
