//! The page's HTML, written with `maud`: every interpolated string is
//! escaped by the template engine, so a body, a name or a bot's source that
//! holds markup shows as text. No inline script or style: the page loads its
//! one script and one stylesheet from the daemon (see `page.js`), which the
//! Content-Security-Policy enforces.
//!
//! The transcript is rendered here for readers without JavaScript; the
//! script renders the same entries again from the data it verified (see
//! `docs/page.md`), with the same words.

use super::highlight;
use super::links::Viewer;
use crate::model::{BotCode, BotPostBody, Event, MessageKind, MessageView, SignedHead};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

/// The stylesheet and script, versioned by their content so that a cached
/// copy of an older daemon's is never used.
pub(crate) struct Assets {
    pub css: String,
    pub js: String,
}

/// Everything the page shows.
pub(crate) struct PageModel<'a> {
    pub channel_id: &'a str,
    pub name: &'a str,
    pub closed: bool,
    pub viewer: &'a Viewer,
    pub slots: Vec<(String, bool)>,
    pub messages: &'a [MessageView],
    /// More messages than the page renders; the script fetches the rest.
    pub truncated: bool,
    /// The daemon's signed head at the last message rendered.
    pub head: Option<&'a SignedHead>,
    pub bots: &'a [BotCode],
    pub assets: &'a Assets,
}

fn head(title: &str, assets: &Assets) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light dark";
            meta name="referrer" content="no-referrer";
            title { (title) }
            link rel="icon" type="image/svg+xml" href="/icon.svg";
            link rel="stylesheet" href=(assets.css);
        }
    }
}

/// The channel page.
pub(crate) fn page(m: &PageModel<'_>) -> Markup {
    let title = format!("{} · mcp-multiplayer", m.name);
    let as_whom = match m.viewer {
        Viewer::Spectator => "You are watching as a spectator: public messages, and private ones without their bodies.".to_string(),
        Viewer::Member { seat } => format!("You are viewing as {seat}: your own private messages included."),
    };
    let export_name = crate::http::transcripts::file_name(m.channel_id);
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&title, m.assets))
            body data-channel=(m.channel_id) data-events=(format!("/c/{}/events", m.channel_id))
                data-viewer=(match m.viewer { Viewer::Spectator => "", Viewer::Member { seat } => seat.as_str() })
                data-closed=(if m.closed { "1" } else { "" }) {
                a.skip href="#transcript" { "Skip to the transcript" }
                header {
                    h1 { (m.name) }
                    p.sub {
                        "Channel " code { (m.channel_id) }
                        " · " span #count { (m.messages.len()) } " messages"
                        @if m.closed { " · closed" }
                        " · seats: "
                        @for (i, (label, filled)) in m.slots.iter().enumerate() {
                            @if i > 0 { ", " }
                            span.slot.filled[*filled] { (label) }
                        }
                    }
                    p.sub { (as_whom) }
                }
                main {
                    section #verification aria-labelledby="verify-h"
                        data-head=[m.head.and_then(|h| serde_json::to_string(h).ok())] {
                        h2 #verify-h { "Verification" }
                        p #verify-status .status.pending role="status" aria-live="polite" {
                            "Not checked: your browser checks the transcript's hash chain and the server's signatures when JavaScript runs. Without it, what follows is what the server says."
                        }
                        ul #claims {}
                        p {
                            a #export href=(format!("/c/{}/export", m.channel_id)) download=(export_name) {
                                "Download the signed transcript"
                            }
                            " and check it offline, without this server:"
                        }
                        pre.command { code { "mcp-multiplayer verify " (export_name) } }
                    }
                    section aria-labelledby="transcript-h" {
                        h2 #transcript-h { "Transcript" }
                        @if m.truncated {
                            p.note { "The newest messages are loaded by the page's script." }
                        }
                        ol #transcript aria-live="off" {
                            @for msg in m.messages { (message(msg)) }
                        }
                        p #live .note role="status" aria-live="polite" {}
                    }
                    section aria-labelledby="bots-h" {
                        h2 #bots-h { "Bots" }
                        @if m.bots.is_empty() { p { "No bot is attached to this channel." } }
                        @for b in m.bots { (bot_panel(b)) }
                    }
                }
                footer { p { "Served by mcp-multiplayer. Nothing on this page comes from another site." } }
                script src=(m.assets.js) {}
            }
        }
    }
}

/// The page shown when a link does not (or no longer) work.
pub(crate) fn denied(assets: &Assets) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Link not valid · mcp-multiplayer", assets))
            body {
                main {
                    h1 { "This link does not open the channel" }
                    p { "It may have expired or been revoked by the channel's admin, or it was copied incompletely. A one-time link for a member works only once." }
                    p { "Ask a member of the channel for a new link (they make one with the share_channel tool)." }
                }
            }
        }
    }
}

/// One transcript entry, in words.
pub(crate) fn message(m: &MessageView) -> Markup {
    let kind = match m.kind {
        MessageKind::User => "user",
        MessageKind::Bot => "bot",
        MessageKind::System => "system",
        MessageKind::Control => "control",
    };
    let parts = words(m);
    html! {
        li.msg.(format!("msg-{kind}")).private[m.to.is_some()] id=(format!("m-{}", m.seq)) data-seq=(m.seq) {
            div.meta {
                span.seq { "#" (m.seq) }
                " "
                span.sender { (m.sender) }
                @if let Some(tag) = &parts.tag { " " span.tag { (tag) } }
                @if let Some(to) = &m.to { " " span.to { "private to " (to.join(", ")) } }
                @if let Some(c) = m.cause { " " span.cause { "after #" (c) } }
                " "
                time datetime=(m.ts) { (m.ts.get(11..19).unwrap_or(&m.ts)) }
            }
            @if let Some(t) = &parts.text { p.text { (t) } }
            @if let Some(d) = &parts.data { pre.data { (d) } }
        }
    }
}

/// What a message shows: a tag (a bot post's type), its text, the rest of
/// its data as JSON.
pub(crate) struct Words {
    pub tag: Option<String>,
    pub text: Option<String>,
    pub data: Option<String>,
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The words of a message: what people read.
pub(crate) fn words(m: &MessageView) -> Words {
    let Some(body) = &m.body else {
        return Words {
            tag: None,
            text: Some(format!(
                "Private message; its body is hidden from you. The chain covers it as {}.",
                m.body_hash.as_deref().unwrap_or("?")
            )),
            data: None,
        };
    };
    match m.kind {
        MessageKind::User => match body {
            Value::String(s) => Words {
                tag: None,
                text: Some(s.clone()),
                data: None,
            },
            other => Words {
                tag: Some("JSON".into()),
                text: None,
                data: Some(compact(other)),
            },
        },
        MessageKind::Bot => match serde_json::from_value::<BotPostBody>(body.clone()) {
            Ok(post) => {
                let (text, rest) = match post.data {
                    Value::String(s) => (Some(s), None),
                    Value::Object(mut o) => match o.remove("text") {
                        Some(Value::String(s)) => {
                            (Some(s), (!o.is_empty()).then_some(Value::Object(o)))
                        }
                        Some(other) => {
                            o.insert("text".into(), other);
                            (None, Some(Value::Object(o)))
                        }
                        None => (None, (!o.is_empty()).then_some(Value::Object(o))),
                    },
                    other => (None, Some(other)),
                };
                Words {
                    tag: Some(post.kind),
                    text,
                    data: rest.as_ref().map(compact),
                }
            }
            Err(_) => Words {
                tag: None,
                text: None,
                data: Some(compact(body)),
            },
        },
        MessageKind::System | MessageKind::Control => Words {
            tag: None,
            text: Some(event_words(body)),
            data: None,
        },
    }
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// A system or control event in words (the same sentences the MCP text
/// renderings use, without their quoting scheme: here the template escapes).
pub(crate) fn event_words(body: &Value) -> String {
    let Ok(event) = serde_json::from_value::<Event>(body.clone()) else {
        return compact(body);
    };
    match event {
        Event::ChannelCreated {
            name,
            slots,
            allow_network,
            ..
        } => format!(
            "channel \u{201c}{name}\u{201d} created with slots {}; bot network {}.",
            slots
                .iter()
                .map(|s| s.label.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            on_off(allow_network)
        ),
        Event::ChannelRenamed { name } => format!("channel renamed to \u{201c}{name}\u{201d}."),
        Event::ChannelClosed => "channel closed: no more posts or joins.".into(),
        Event::SeatFilled { slot } => format!("{slot} joined."),
        Event::SeatMoved { slot } => {
            format!("{slot}'s seat moved to another connection (rejoin token).")
        }
        Event::SeatKicked { slot } => format!("{slot} was removed from their seat by the admin."),
        Event::BotAttach {
            bot_id,
            name,
            code_hash,
            network,
            origin,
            ..
        } => format!(
            "bot {bot_id} attached: {}\u{201c}{name}\u{201d}, code {code_hash}, network {}.",
            origin
                .map(|o| format!("{} ", o.words()))
                .unwrap_or_default(),
            on_off(network)
        ),
        Event::BotManifest { bot_id, manifest } => format!(
            "{bot_id} is \u{201c}{}\u{201d} version {}: {}",
            manifest.name, manifest.version, manifest.summary
        ),
        Event::BotError {
            bot_id,
            seq,
            reason,
        } => format!("{bot_id} failed on #{seq}: {reason}"),
        Event::BotState { bot_id } => format!("{bot_id} changed its state without posting."),
        Event::BotReveal { bot_id, seed, .. } => format!(
            "{bot_id}'s seed revealed at close: {seed}; it must open the seed commitment of its attach."
        ),
    }
}

/// A bot: name, manifest, network permission, hash, and its exact source,
/// highlighted.
fn bot_panel(b: &BotCode) -> Markup {
    let lines = b.source.lines().count();
    html! {
        article.bot data-bot=(b.bot_id) data-code-hash=(b.code_hash) {
            h3 { (b.manifest.name) " " code { (b.bot_id) } }
            p { (b.manifest.summary) }
            dl {
                dt { "Version" } dd { (b.manifest.version) }
                @if let Some(p) = &b.preset { dt { "Builtin" } dd { (p) } } @else { dt { "Code" } dd { "custom: supplied by a member, not one of the daemon's builtins" } }
                dt { "Network" } dd { @if b.network { "allowed (ports 80 and 443 of public addresses)" } @else { "none" } }
                dt { "Hooks" } dd { (b.manifest.hooks.join(", ")) }
                @if !b.params.is_empty() { dt { "Parameters" } dd { code { (compact(&Value::Object(b.params.clone()))) } } }
                dt { "Code SHA-256" } dd { code.hash { (b.code_hash) } " " span.code-check role="status" {} }
                dt { "Manifest SHA-256" } dd { code.hash { (b.manifest_hash) } }
            }
            details {
                summary { "Source (" (lines) " lines)" }
                pre.source { code { (source(&b.source)) } }
            }
        }
    }
}

/// The source as highlighted spans; their text is the source exactly.
fn source(src: &str) -> Markup {
    html! {
        @for (tok, text) in highlight::tokens(src) {
            @if let Some(class) = tok.class() { span class=(class) { (text) } } @else { (text) }
        }
    }
}
