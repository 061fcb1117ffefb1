//! Redirect URIs: which ones a client may register, in what form they are
//! stored, and which requested URI matches a registered one.
//!
//! The authorization code travels to the redirect URI, so this decides where
//! codes can go. Three kinds are accepted:
//!
//! - `https` URIs (web clients such as claude.ai);
//! - `http` on a loopback address, `127.0.0.1`, `[::1]` or `localhost`
//!   (native clients with a local callback server, RFC 8252 §7.3). These
//!   match on scheme, host, path and query with **any port**, because a
//!   native client takes whatever port is free when it signs in (VS Code
//!   registers `http://127.0.0.1:33418/` and falls back to another one);
//! - a private-use scheme the operator allows (RFC 8252 §7.1), by default
//!   `cursor`, `vscode` and `vscode-insiders`. Only an allowlist: many
//!   schemes an OS knows forward to the web (browsers register their own
//!   schemes that open any URL, Android's `intent:` has a web fallback,
//!   websites register `web+` handlers), so "any scheme but a few dangerous
//!   ones" would let a code reach a web page. The reverse-DNS convention of
//!   RFC 8252 does not help either: it names who should own a scheme, not who
//!   does, and Cursor's own `cursor://` does not follow it.
//!
//! Everything else is refused, and so is any URI with a fragment, user
//! information, whitespace or a control character. What is stored is the
//! parsed, normalised serialisation, never the text as sent.

use crate::config::forbidden_redirect_scheme;
use url::{Host, Url};

/// Longest redirect URI, in bytes.
pub const MAX_URI_LEN: usize = 2000;

/// What a redirect URI is, for matching and for the approval page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Https,
    /// `http` on a loopback host: any port matches.
    Loopback,
    /// An allowed private-use scheme: opens a native app.
    Custom,
}

/// Parses a redirect URI and checks it against the policy; returns it
/// normalised, with its kind.
///
/// # Errors
/// A sentence saying what is wrong with the URI and what is accepted.
pub fn check(raw: &str, custom_schemes: &[String]) -> Result<(Url, Kind), String> {
    if raw.len() > MAX_URI_LEN {
        return Err(format!("a redirect URI is longer than {MAX_URI_LEN} bytes"));
    }
    // The URL parser would silently strip surrounding whitespace and drop
    // tabs and newlines inside: refuse them before it sees the text, so that
    // what is stored is what the client will send back.
    if let Some(c) = raw.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "redirect URI {:?} contains {}: send it without spaces, control characters or raw non-ASCII (percent-encode them)",
            shorten(raw),
            describe(c)
        ));
    }
    let u = Url::parse(raw)
        .map_err(|_| format!("redirect URI {:?} is not an absolute URL", shorten(raw)))?;
    if u.fragment().is_some() {
        return Err(format!(
            "redirect URI {:?} must not have a fragment (#…)",
            shorten(raw)
        ));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "redirect URI {:?} must not carry a user name or password",
            shorten(raw)
        ));
    }
    let kind = match u.scheme() {
        "https" if u.host().is_some() => Kind::Https,
        "http" if is_loopback(&u) => Kind::Loopback,
        "http" | "https" => {
            return Err(format!(
                "redirect URI {:?} must use https, or http on a loopback address (127.0.0.1, [::1], localhost)",
                shorten(raw)
            ));
        }
        s if forbidden_redirect_scheme(s) => {
            return Err(format!(
                "redirect URI {:?}: the scheme {s}: is never accepted (a browser would run it, read local data with it or hand the code to a web page)",
                shorten(raw)
            ));
        }
        s if custom_schemes.iter().any(|c| c == s) => {
            if u.cannot_be_a_base() {
                return Err(format!(
                    "redirect URI {:?} must have a path (like {s}://app/callback or {s}:/callback)",
                    shorten(raw)
                ));
            }
            Kind::Custom
        }
        s => {
            return Err(format!(
                "redirect URI {:?}: the private-use scheme {s}: is not allowed on this server (allowed: {}; the operator can add it to auth.custom_redirect_schemes)",
                shorten(raw),
                if custom_schemes.is_empty() {
                    "none".to_string()
                } else {
                    custom_schemes.join(", ")
                }
            ));
        }
    };
    Ok((u, kind))
}

/// Whether the redirect URI a request names matches one the client
/// registered: exactly (after normalisation), or for loopback `http` on
/// scheme, host, path and query with any port (RFC 8252 §7.3).
pub fn matches(registered: &str, requested: &Url) -> bool {
    let Ok(reg) = Url::parse(registered) else {
        return false;
    };
    if reg == *requested {
        return true;
    }
    reg.scheme() == "http"
        && requested.scheme() == "http"
        && is_loopback(&reg)
        && reg.host() == requested.host()
        && reg.path() == requested.path()
        && reg.query() == requested.query()
        && reg.fragment().is_none()
        && requested.fragment().is_none()
}

/// Whether `u`'s host is a loopback literal or `localhost`.
fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(Host::Domain(d)) => d == "localhost",
        Some(Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        None => false,
    }
}

/// Where a code sent to `u` ends up, in words for the approval page.
pub fn destination(u: &str) -> String {
    match Url::parse(u) {
        Ok(u) if u.scheme() == "https" => u.origin().ascii_serialization(),
        Ok(u) if u.scheme() == "http" => format!(
            "a program on your own computer ({})",
            u.origin().ascii_serialization()
        ),
        Ok(u) => format!(
            "the app that opens {}: links ({}://{})",
            u.scheme(),
            u.scheme(),
            u.host_str().unwrap_or("")
        ),
        Err(_) => String::new(),
    }
}

fn describe(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        '\r' | '\n' => "a line break".into(),
        '\t' => "a tab".into(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c => format!("the character U+{:04X}", c as u32),
    }
}

/// The start of a long URI, for error messages.
pub(super) fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(120).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemes() -> Vec<String> {
        crate::config::DEFAULT_CUSTOM_REDIRECT_SCHEMES
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn ok(raw: &str) -> (String, Kind) {
        let (u, k) = check(raw, &schemes()).unwrap_or_else(|e| panic!("{raw}: {e}"));
        (u.to_string(), k)
    }

    #[test]
    fn accepted_kinds() {
        for (raw, kind) in [
            ("https://claude.ai/api/mcp/auth_callback", Kind::Https),
            ("https://claude.com/api/mcp/auth_callback", Kind::Https),
            ("https://vscode.dev/redirect", Kind::Https),
            ("https://example.com/cb?x=1", Kind::Https),
            ("http://127.0.0.1:33418/", Kind::Loopback),
            ("http://localhost:6274/oauth/callback", Kind::Loopback),
            ("http://[::1]:9/cb", Kind::Loopback),
            ("cursor://anysphere.cursor-mcp/oauth/callback", Kind::Custom),
            ("vscode://ms-vscode.vscode-mcp/authorize", Kind::Custom),
            ("vscode-insiders://x/cb", Kind::Custom),
        ] {
            assert_eq!(ok(raw), (raw.to_string(), kind));
        }
    }

    #[test]
    fn what_is_stored_is_the_normalised_form() {
        // VS Code sends `http://127.0.0.1` (older versions without the slash).
        assert_eq!(ok("http://127.0.0.1").0, "http://127.0.0.1/");
        assert_eq!(ok("HTTPS://Claude.AI:443/cb").0, "https://claude.ai/cb");
        assert_eq!(ok("http://localhost:80/cb").0, "http://localhost/cb");
        assert_eq!(
            ok("CURSOR://anysphere.cursor-mcp/x").0,
            "cursor://anysphere.cursor-mcp/x"
        );
    }

    /// Each of these would put a code somewhere other than the client's own
    /// callback, or store something other than what the client sends back;
    /// `check` is what refuses them.
    #[test]
    fn refused_redirect_uris() {
        for bad in [
            // plain http off loopback: readable on the network
            "http://example.com/cb",
            "http://127.0.0.2.nip.io/cb",
            "http://localhost.evil.com/cb",
            "http://127.0.0.2/cb",
            // schemes a browser runs or hands to the web
            "javascript:alert(1)",
            "JavaScript://%0aalert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox(1)",
            "file:///etc/passwd",
            "blob:https://example.com/uuid",
            "about:blank",
            "intent://x#Intent;scheme=https;S.browser_fallback_url=https%3A%2F%2Fevil;end",
            "web+evil://x/cb",
            "microsoft-edge:https://evil.example/",
            // a private-use scheme nobody allowed
            "com.example.app:/oauth2redirect",
            "myapp://callback",
            // allowed scheme without a path to speak of
            "cursor:callback",
            // fragments and user information
            "https://claude.ai/cb#frag",
            "https://claude.ai/cb#",
            "https://user:pw@claude.ai/cb",
            "https://user@claude.ai/cb",
            "cursor://anysphere.cursor-mcp/oauth/callback#x",
            // whitespace and control characters, which the parser would
            // silently strip
            " https://claude.ai/cb",
            "https://claude.ai/cb ",
            "https://claude.ai/cb\r\n",
            "https://claude.ai/\ncb",
            "https://claude.ai/c\tb",
            "https://claude.ai/cb\u{0}",
            "https://claude.ai/cb\u{7f}",
            "https://claude.ai/cb\u{202e}",
            "https://claudé.ai/cb",
            // not absolute
            "/relative",
            "",
        ] {
            assert!(check(bad, &schemes()).is_err(), "{bad:?} was accepted");
        }
        let long = format!("https://claude.ai/{}", "a".repeat(MAX_URI_LEN));
        assert!(check(&long, &schemes()).is_err());
        // With the allowlist emptied, Cursor's callback is refused too.
        assert!(check("cursor://anysphere.cursor-mcp/oauth/callback", &[]).is_err());
    }

    fn req(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn loopback_matches_any_port_and_nothing_else() {
        let reg = "http://127.0.0.1:33418/";
        assert!(matches(reg, &req("http://127.0.0.1:33418/")));
        assert!(matches(reg, &req("http://127.0.0.1:50123/")));
        assert!(matches(reg, &req("http://127.0.0.1/")));
        assert!(matches(
            "http://127.0.0.1/",
            &req("http://127.0.0.1:50123/")
        ));
        assert!(matches("http://[::1]:1/cb", &req("http://[::1]:2/cb")));
        assert!(matches(
            "http://localhost:1/cb",
            &req("http://localhost:2/cb")
        ));
        // Old rows stored as sent still match their normalised form.
        assert!(matches("http://127.0.0.1", &req("http://127.0.0.1:9/")));
        // Not: another path, query, host, or scheme.
        assert!(!matches(reg, &req("http://127.0.0.1:50123/evil")));
        assert!(!matches(
            "http://127.0.0.1:1/cb",
            &req("http://127.0.0.1:1/cb?x=1")
        ));
        assert!(!matches(
            "http://127.0.0.1:1/cb",
            &req("http://localhost:1/cb")
        ));
        assert!(!matches("http://127.0.0.1:1/cb", &req("http://[::1]:1/cb")));
        assert!(!matches(
            "http://127.0.0.1:1/cb",
            &req("https://127.0.0.1:1/cb")
        ));
    }

    #[test]
    fn everything_else_matches_exactly() {
        let reg = "https://claude.ai/api/mcp/auth_callback";
        assert!(matches(reg, &req(reg)));
        assert!(matches(
            reg,
            &req("https://CLAUDE.ai:443/api/mcp/auth_callback")
        ));
        assert!(!matches(
            reg,
            &req("https://claude.ai:8443/api/mcp/auth_callback")
        ));
        assert!(!matches(
            reg,
            &req("https://claude.ai/api/mcp/auth_callback/")
        ));
        assert!(!matches(
            reg,
            &req("https://claude.ai/api/mcp/auth_callback?x")
        ));
        let cursor = "cursor://anysphere.cursor-mcp/oauth/callback";
        assert!(matches(cursor, &req(cursor)));
        assert!(!matches(
            cursor,
            &req("cursor://anysphere.cursor-mcp/oauth/evil")
        ));
        assert!(!matches(
            cursor,
            &req("cursor://anysphere.cursor-mcp:1/oauth/callback")
        ));
    }

    #[test]
    fn the_approval_page_says_where_the_code_goes() {
        assert_eq!(
            destination("https://claude.ai/api/mcp/auth_callback"),
            "https://claude.ai"
        );
        assert!(destination("http://127.0.0.1:33418/").contains("your own computer"));
        assert!(
            destination("cursor://anysphere.cursor-mcp/oauth/callback")
                .contains("cursor://anysphere.cursor-mcp")
        );
    }
}
