//! The HTML pages of `/authorize`: the approval form and error pages.
//!
//! Small and static: no script, inline style only, every dynamic value
//! escaped. Served with a CSP that forbids framing (clickjacking) and loading
//! anything, and without a referrer (the URL carries OAuth parameters).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;background:#f6f7f9;color:#1d2330;margin:0}\
main{max-width:30rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08)}\
h1{font-size:1.3rem;margin:0 0 1rem}p{margin:.6rem 0}ul{padding-left:1.2rem}code{font-size:.9em;word-break:break-all}\
.muted{color:#5b6475;font-size:.9rem}.err{background:#fdecec;color:#8a1c1c;padding:.6rem .8rem;border-radius:8px}\
label{display:block;margin:1.2rem 0 .3rem;font-weight:600}input[type=password]{width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;border:1px solid #c5cad3;border-radius:8px}\
.row{display:flex;flex-direction:row-reverse;gap:.6rem;margin-top:1.2rem}button{flex:1;padding:.7rem;font-size:1rem;border-radius:8px;border:1px solid #c5cad3;background:#fff;cursor:pointer}\
button.primary{background:#1f5fd6;border-color:#1f5fd6;color:#fff}";

/// A full page with the security headers every `/authorize` page carries.
pub fn page(status: StatusCode, title: &str, body_html: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{t} · mcp-multiplayer</title><style>{STYLE}</style></head>\
         <body><main><h1>{t}</h1>{body_html}</main></body></html>",
        t = esc(title)
    );
    let mut r = (status, Html(html)).into_response();
    let h = r.headers_mut();
    super::error::no_store(h);
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// An error shown in the browser instead of a redirect (RFC 6749 §4.1.2.1:
/// never redirect to an unverified URI).
pub fn error(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        title,
        &format!(
            "<p class=\"err\">{}</p><p class=\"muted\">Start the connection again from your MCP client. If it keeps failing, the server's log has the details.</p>",
            esc(message)
        ),
    )
}

/// What the approval form shows.
pub struct ApprovalForm<'a> {
    /// The waiting sign-in's code, also what `mcp-multiplayer approve` takes.
    pub request_id: &'a str,
    pub client_name: &'a str,
    pub client_id: &'a str,
    /// For a client known by its metadata document: the host that publishes
    /// it, the one thing about the client that is verified.
    pub published_by: Option<&'a str>,
    /// Where the code goes, in words (`redirect::destination`).
    pub destination: &'a str,
    pub resource: &'a str,
    pub error: Option<&'a str>,
}

/// The passphrase page: which client asks, what it gets, the field, and the
/// way to approve from the server instead.
///
/// Approve comes first in the markup (shown second): pressing Enter in the
/// field submits with the first button (HTML implicit submission).
pub fn approval(status: StatusCode, f: &ApprovalForm<'_>) -> Response {
    let error = f
        .error
        .map(|e| format!("<p class=\"err\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    let publisher = f
        .published_by
        .map(|h| {
            format!(
                "<p>Its description is published by <strong>{}</strong>.</p>",
                esc(h)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "{error}<p><strong>{name}</strong> asks to use this mcp-multiplayer server.</p>{publisher}\
         <p>If you approve, it gets its own identity here and can, on your behalf:</p>\
         <ul><li>create channels and join them with invite codes</li>\
         <li>post and read messages in the channels it has joined</li>\
         <li>attach bots to channels it administers</li></ul>\
         <p class=\"muted\">Resource <code>{resource}</code><br>\
         Client <code>{client_id}</code><br>After approval you return to <code>{destination}</code>.</p>\
         <form method=\"post\" action=\"/authorize\">\
         <input type=\"hidden\" name=\"request\" value=\"{rid}\">\
         <label for=\"passphrase\">Server passphrase</label>\
         <input type=\"password\" id=\"passphrase\" name=\"passphrase\" autocomplete=\"current-password\" autofocus>\
         <div class=\"row\"><button class=\"primary\" type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></div>\
         </form>\
         <form method=\"post\" action=\"/authorize\">\
         <input type=\"hidden\" name=\"request\" value=\"{rid}\">\
         <p class=\"muted\">Or approve on the server, without the passphrase: \
         <code>mcp-multiplayer approve {rid}</code>, then \
         <button type=\"submit\" name=\"decision\" value=\"continue\">Continue</button></p>\
         </form><p class=\"muted\">Only the operator of this server can approve. If you did not start this sign-in, deny it.</p>",
        name = esc(f.client_name),
        resource = esc(f.resource),
        client_id = esc(f.client_id),
        destination = esc(f.destination),
        rid = esc(f.request_id),
    );
    page(status, "Approve a client", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }
}
