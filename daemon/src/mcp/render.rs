//! Text renderings of tool results, for clients that show the model only the
//! text content (claude.ai does): every fact an agent needs to act, in a form
//! nobody but the daemon can write.
//!
//! The other agent in a channel is an adversary, and what it wrote reaches
//! this agent's model as text. So the text has two kinds of lines and no
//! third: lines the daemon writes, which start at the margin (a message's
//! header starts with `#SEQ`), and lines someone else wrote, every one of
//! them quoted behind [`QUOTE`]. A body, a bot's text, a bot's source, are
//! cut into lines at `\n` only and every line is quoted, so no body can end
//! its quote and start a line of its own. Text from others that sits inside a
//! daemon line (a channel or bot name, a bot's error, a bot's data) is a
//! JSON string or JSON value on that one line. Characters a reader could take
//! for a line break or that reorder or hide text (control characters, CR,
//! U+2028/2029, NEL, bidi overrides and isolates, zero-width and tag
//! characters...; [`is_hazard`]) never appear raw: in quoted text they show
//! as `\u{XXXX}` (a backslash that would read as such an escape shows as
//! `\u{5C}`, so the escaping can be undone exactly), in JSON as JSON's own
//! `\uXXXX`.
//!
//! Bot and system messages read as what they say: a bot post shows its
//! `text` (quoted), then the rest of its data on a `data:` line; system
//! events are sentences ("alice joined."); a bot's manifest is summarised
//! with a pointer to `get_bot_code`. Errors carry what their structured data
//! lists (valid slots, your seats).

use crate::channels::ToolError;
use crate::model::{
    Attached, BotCode, BotInfo, BotPostBody, ChannelList, ChannelView, Created, Event, Joined,
    MessageKind, MessageView, PageAudience, Posted, Shared, SharesRevoked, SlotDecl, Synced,
    TranscriptExport, Updated,
};
use serde_json::Value;
use std::fmt::Write;

/// What starts every line of text the daemon did not write.
pub(crate) const QUOTE: &str = "  │ ";

/// What starts the line with the rest of a bot post's data (written by the
/// bot, shown as one line of JSON).
pub(crate) const DATA: &str = "  data: ";

/// The one-line reminder under a list of messages.
const LEGEND: &str = "(Lines starting with \"  │ \" quote what a message's sender wrote; every other line is from the server.)";

/// Longest bot summary shown in a manifest line, in characters.
const SUMMARY_CHARS: usize = 200;

/// Characters that never reach a rendering raw: anything a renderer, a
/// terminal or a model could read as a line break, or that reorders or hides
/// text. Tab stays (it breaks nothing).
pub(crate) fn is_hazard(c: char) -> bool {
    matches!(c,
        // C0 controls (\n, \r, VT, FF, the FS/GS/RS separators...), DEL,
        // and C1 controls (NEL).
        '\u{0}'..='\u{8}' | '\u{A}'..='\u{1F}' | '\u{7F}'..='\u{9F}'
        // Soft hyphen, combining grapheme joiner, Arabic letter mark,
        // Hangul fillers, Mongolian vowel separator: invisible.
        | '\u{AD}' | '\u{34F}' | '\u{61C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{3164}' | '\u{FFA0}'
        // Zero-width space/joiners, LRM/RLM; line and paragraph
        // separators; bidi embeddings and overrides; word joiner,
        // invisible operators, bidi isolates, deprecated format controls.
        | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
        // Variation selectors that carry no emoji presentation (they can
        // smuggle bytes), BOM, interlinear annotations.
        | '\u{FE00}'..='\u{FE0D}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'
        // Musical-symbol format controls, tag characters (invisible ASCII),
        // more variation selectors.
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E007F}' | '\u{E0100}'..='\u{E01EF}'
    )
}

/// One line of someone else's text, made safe to show: hazards (and `\n`,
/// for text that is not split first) as `\u{XXXX}`; a backslash that starts
/// `u{` as `\u{5C}`, so that [`unescape`] gives back the exact text.
pub(crate) fn escape(s: &str) -> String {
    if !may_need_escaping(s) {
        return s.to_string();
    }
    if !has_hazard(s) {
        return escape_backslashes(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if is_hazard(c) || (c == '\\' && starts_escape(&chars)) {
            let _ = write!(out, "\\u{{{:X}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// [`escape`] of text with no hazard in it: only a backslash that starts
/// `u{` changes, to `\u{5C}` (`\u{` cannot overlap itself, so replacing
/// every occurrence is the same as looking at every backslash).
fn escape_backslashes(s: &str) -> String {
    if s.contains("\\u{") {
        s.replace("\\u{", "\\u{5C}u{")
    } else {
        s.to_string()
    }
}

fn has_hazard(s: &str) -> bool {
    s.chars().any(is_hazard)
}

/// Whether `s` has a byte that could start something [`escape`] changes
/// (an ASCII control, DEL, a backslash, any non-ASCII character): the
/// common all-ASCII text is copied without looking at its characters.
fn may_need_escaping(s: &str) -> bool {
    // `is_ascii` and `contains(char)` run word- and memchr-fast; the control
    // scan is the one pass over every byte.
    !s.is_ascii() || s.contains('\\') || s.bytes().any(|b| b < 0x20 || b == 0x7F)
}

/// The daemon's own sentence, which may echo input: hazards as `\u{XXXX}`,
/// nothing else touched (it is read, never decoded).
fn defang(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_hazard(c) {
            let _ = write!(out, "\\u{{{:X}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// The characters after a backslash read `u{`.
fn starts_escape(rest: &std::iter::Peekable<std::str::Chars<'_>>) -> bool {
    let mut it = rest.clone();
    it.next() == Some('u') && it.next() == Some('{')
}

/// Undoes [`escape`].
#[cfg(test)]
pub(crate) fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\\u{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        let decoded = after.find('}').and_then(|j| {
            let c = u32::from_str_radix(&after[..j], 16)
                .ok()
                .and_then(char::from_u32)?;
            Some((c, j))
        });
        match decoded {
            Some((c, j)) => {
                out.push(c);
                rest = &after[j + 1..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Someone else's text as quoted lines (cut at `\n` only), and how many.
fn quote_block(text: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len() + 16);
    let mut n = 0;
    for line in text.split('\n') {
        out.push_str(QUOTE);
        out.push_str(&escape(line));
        out.push('\n');
        n += 1;
    }
    (out, n)
}

/// A value as one line of JSON, with every hazard as a JSON `\uXXXX`
/// escape (they can only occur inside strings, where that escape means the
/// same character).
pub(crate) fn json_text(v: &Value) -> String {
    let raw = v.to_string();
    // serde_json escapes the C0 controls; what is left is DEL and non-ASCII.
    if raw.is_ascii() && !raw.contains('\u{7F}') {
        return raw;
    }
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if is_hazard(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Someone else's string inside a daemon line: a JSON string literal.
pub(crate) fn quoted(s: &str) -> String {
    json_text(&Value::String(s.to_string()))
}

/// A slot label, bot id or post type inside a daemon line: bare when it is
/// made of the characters such names are made of, else quoted (the daemon
/// only makes plain ones; this keeps a corrupt or future one on its line).
pub(crate) fn label(s: &str) -> String {
    // Not ending in ':', which would run into the colon ending a header.
    let plain = !s.is_empty()
        && !s.ends_with(':')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-:.".contains(c));
    if plain { s.to_string() } else { quoted(s) }
}

fn labels(list: &[String]) -> String {
    list.iter().map(|l| label(l)).collect::<Vec<_>>().join(", ")
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

pub(super) fn created(out: &Created) -> String {
    let mut t = format!(
        "Created channel {} ({}).\n",
        label(&out.channel_id),
        quoted(&out.view.name)
    );
    if let Some(seat) = &out.seat {
        t += &format!(
            "You hold seat {}. Your rejoin token (private, do not share): {}\n",
            label(&seat.slot),
            seat.rejoin_token
        );
    }
    if !out.invites.is_empty() {
        t += "Invite codes (single-use; give each to that player only):\n";
        for i in &out.invites {
            t += &format!("  {}: {}\n", label(&i.slot), i.invite_code);
        }
    }
    t += &bots_line(&out.view.bots);
    t
}

pub(super) fn joined(out: &Joined) -> String {
    format!(
        "{} seat {} in channel {} ({}). Your rejoin token (private): {}\n{}Next: call sync_messages with channel_id {} and cursor 0.",
        if out.moved { "Moved" } else { "Joined" },
        label(&out.slot),
        label(&out.channel_id),
        quoted(&out.view.name),
        out.rejoin_token,
        bots_line(&out.view.bots),
        label(&out.channel_id),
    )
}

pub(super) fn posted(p: &Posted) -> String {
    format!(
        "Posted as {} (seq {}, hash {}).",
        label(&p.sender),
        p.seq,
        p.hash
    )
}

fn bots_line(bots: &[BotInfo]) -> String {
    let mut t = String::new();
    for b in bots {
        t += &format!(
            "Bot {} ({}, {}) code_hash {}{}\n",
            label(&b.bot_id),
            quoted(&b.name),
            b.origin.words(),
            b.code_hash,
            if b.network { ", network allowed" } else { "" }
        );
    }
    t
}

pub(super) fn synced(out: &Synced) -> String {
    let mut t = if out.messages.is_empty() {
        format!("No new messages (you are {}).\n", label(&out.as_seat))
    } else {
        format!(
            "{} new message(s) (you are {}):\n{LEGEND}\n",
            out.messages.len(),
            label(&out.as_seat)
        )
    };
    for m in &out.messages {
        t += &message(m);
    }
    t += &format!("cursor: {} (pass it to the next sync_messages)", out.cursor);
    t
}

/// One message: its header line, then what its sender wrote, quoted.
pub(crate) fn message(m: &MessageView) -> String {
    let mut head = format!("#{} {}", m.seq, label(&m.sender));
    if let Some(to) = &m.to {
        head += &format!(" to {}", labels(to));
    }
    let mut tags: Vec<String> = Vec::new();
    let after = m.cause.map(|c| format!("after #{c}"));
    let Some(body) = &m.body else {
        // A private message this reader may not read.
        tags.extend(after);
        tags.push(format!(
            "private; you cannot read it; body_hash {}",
            m.body_hash.as_deref().unwrap_or_default()
        ));
        return format!("{head} ({})\n", tags.join(", "));
    };
    let (block, data) = match m.kind {
        MessageKind::User => match body {
            Value::String(s) => (Some(s.clone()), None),
            other => {
                tags.push("JSON".into());
                // One line, and `json_text` left no hazard in it: only its
                // backslashes need a look (this keeps a 1 MiB page cheap).
                let line = format!("{QUOTE}{}\n", escape_backslashes(&json_text(other)));
                return format!("{head} ({}):\n{line}", tags_with(tags, m.to.is_some()));
            }
        },
        MessageKind::Bot => match serde_json::from_value::<BotPostBody>(body.clone()) {
            Ok(post) => {
                tags.push(label(&post.kind));
                tags.extend(after);
                bot_text(post.data)
            }
            Err(_) => (None, Some(body.clone())),
        },
        MessageKind::System | MessageKind::Control => {
            let mut line = head;
            if let Some(a) = after {
                line += &format!(" ({a})");
            }
            return format!("{line}: {}\n", event_sentence(body));
        }
    };
    if m.to.is_some() {
        tags.push("private".into());
    }
    let quoted_block = block.map(|b| quote_block(&b));
    if let Some((_, n)) = &quoted_block
        && *n > 1
    {
        tags.push(format!("{n} lines"));
    }
    let mut t = head;
    if !tags.is_empty() {
        t += &format!(" ({})", tags.join(", "));
    }
    t += ":\n";
    if let Some((b, _)) = quoted_block {
        t += &b;
    }
    if let Some(d) = data {
        t += &format!("{DATA}{}\n", json_text(&d));
    }
    t
}

/// The header's tags, with `private` last when the message is private.
fn tags_with(mut tags: Vec<String>, private: bool) -> String {
    if private {
        tags.push("private".into());
    }
    tags.join(", ")
}

/// A bot post's readable text and the rest of its data: a string is all
/// text; an object's string `text` comes first, the other fields after.
fn bot_text(data: Value) -> (Option<String>, Option<Value>) {
    match data {
        Value::String(s) => (Some(s), None),
        Value::Object(mut o) => match o.get("text") {
            Some(Value::String(_)) => {
                let text = match o.remove("text") {
                    Some(Value::String(s)) => s,
                    _ => String::new(),
                };
                let rest = (!o.is_empty()).then_some(Value::Object(o));
                (Some(text), rest)
            }
            _ => (None, Some(Value::Object(o))),
        },
        other => (None, Some(other)),
    }
}

/// A system or control event in words (the daemon's own line).
fn event_sentence(body: &Value) -> String {
    let Ok(event) = serde_json::from_value::<Event>(body.clone()) else {
        return json_text(body);
    };
    match event {
        Event::ChannelCreated {
            name,
            slots,
            allow_network,
            ..
        } => format!(
            "channel {} created with slots {}; bot network {}.",
            quoted(&name),
            slots
                .iter()
                .map(|SlotDecl { label: l, .. }| label(l))
                .collect::<Vec<_>>()
                .join(", "),
            on_off(allow_network)
        ),
        Event::ChannelRenamed { name } => format!("channel renamed to {}.", quoted(&name)),
        Event::ChannelClosed => "channel closed: no more posts or joins.".into(),
        Event::SeatFilled { slot } => format!("{} joined.", label(&slot)),
        Event::SeatMoved { slot } => format!(
            "{}'s seat moved to another connection (rejoin token).",
            label(&slot)
        ),
        Event::SeatKicked { slot } => {
            format!("{} was removed from their seat by the admin.", label(&slot))
        }
        Event::BotAttach {
            bot_id,
            name,
            code_hash,
            manifest_hash,
            network,
            seed_commitment,
            origin,
            ..
        } => format!(
            "bot {} attached: {}{}, code_hash {}, manifest_hash {}, network {}{}.",
            label(&bot_id),
            origin
                .map(|o| format!("{} ", o.words()))
                .unwrap_or_default(),
            quoted(&name),
            label(&code_hash),
            label(&manifest_hash),
            on_off(network),
            seed_commitment
                .map(|c| format!(", seed_commitment {} (revealed at close)", label(&c)))
                .unwrap_or_default()
        ),
        Event::BotManifest { bot_id, manifest } => {
            let mut summary: String = manifest.summary.chars().take(SUMMARY_CHARS).collect();
            if manifest.summary.chars().count() > SUMMARY_CHARS {
                summary.push('…');
            }
            let params: Vec<String> = manifest.params.keys().map(|k| label(k)).collect();
            format!(
                "{} is {} version {}: {}; hooks {}; params {}; network {}. Full manifest and source: get_bot_code with bot_id {}.",
                label(&bot_id),
                quoted(&manifest.name),
                quoted(&manifest.version),
                quoted(&summary),
                if manifest.hooks.is_empty() {
                    "none".to_string()
                } else {
                    labels(&manifest.hooks)
                },
                if params.is_empty() {
                    "none".to_string()
                } else {
                    params.join(", ")
                },
                on_off(manifest.network),
                label(&bot_id),
            )
        }
        Event::BotError { bot_id, reason, .. } => format!(
            "{}'s hook failed and changed nothing: {}",
            label(&bot_id),
            quoted(&reason)
        ),
        Event::BotState { bot_id } => format!(
            "{} updated its state without posting (state_hash on this entry).",
            label(&bot_id)
        ),
        Event::BotReveal { bot_id, seed, .. } => format!(
            "{}'s seed revealed: {} (it opens the seed_commitment of its attachment; its hooks can now be replayed).",
            label(&bot_id),
            label(&seed)
        ),
    }
}

pub(super) fn view(v: &ChannelView) -> String {
    let mut t = format!(
        "Channel {} ({}){}; {} messages, head hash {}.\nSlots:\n",
        label(&v.channel_id),
        quoted(&v.name),
        if v.closed { ", closed" } else { "" },
        v.message_count,
        v.head_hash
    );
    for sl in &v.slots {
        t += &format!(
            "  {} ({}){}{}{}\n",
            label(&sl.label),
            sl.kind.as_str(),
            if sl.filled { ", filled" } else { ", open" },
            if sl.admin { ", admin" } else { "" },
            if sl.yours { ", yours" } else { "" },
        );
    }
    t + &bots_line(&v.bots)
}

pub(super) fn list(list: &ChannelList) -> String {
    if list.channels.is_empty() {
        return "You are in no channels yet.".into();
    }
    let mut t = String::from("Your channels:\n");
    for c in &list.channels {
        t += &format!(
            "  {} ({}), {} messages, your seats: {}{}\n",
            label(&c.channel_id),
            quoted(&c.name),
            c.message_count,
            if c.your_seats.is_empty() {
                "none".to_string()
            } else {
                labels(&c.your_seats)
            },
            if c.admin { ", admin" } else { "" }
        );
    }
    t
}

pub(super) fn bot_code(b: &BotCode) -> String {
    let (source, lines) = quote_block(&b.source);
    format!(
        "Bot {} ({}{}), code_hash {}, manifest_hash {}, network {}.\nParams: {}\nManifest: {}\nSource, {lines} line(s), each quoted behind \"  │ \" (code_hash is the SHA-256 of the exact source bytes in the structured result; here, characters that could hide or reorder text show as \\u{{XXXX}}):\n{source}End of source.",
        label(&b.bot_id),
        quoted(&b.name),
        b.preset
            .as_deref()
            .map(|p| format!(", preset {}", label(p)))
            .unwrap_or_default(),
        b.code_hash,
        b.manifest_hash,
        on_off(b.network),
        json_text(&Value::Object(b.params.clone())),
        json_text(&serde_json::to_value(&b.manifest).unwrap_or(Value::Null)),
    )
}

pub(super) fn exported(d: &TranscriptExport) -> String {
    let (first, last) = (
        d.entries.first().map_or(0, |m| m.seq),
        d.entries.last().map_or(0, |m| m.seq),
    );
    let head = d.signed_heads.last().map_or_else(
        || "no signed head".to_string(),
        |h| format!("signed head at seq {} by key {}", h.seq, h.key_id),
    );
    let mut t = format!(
        "Transcript export of channel {} as {}: entries {first} to {last}, {} bot(s), {head}.\nThe document is this result's structured content (format {}, version {}): save it as a JSON file and check it offline with `mcp-multiplayer verify FILE` or tools/verify_transcript.py. Compare the key id with the one at /.well-known/mcp-multiplayer/keys.json on the server.",
        label(&d.channel.channel_id),
        label(&d.exported_as),
        d.bots.len(),
        label(&d.format),
        d.version,
    );
    if let Some(p) = d.page.as_ref().filter(|p| p.more) {
        t += &format!(
            "\nMore entries follow: call export_transcript again with after {}, then join the pages' entries and signed_heads.",
            p.cursor
        );
    }
    t
}

pub(super) fn updated(u: &Updated) -> String {
    let mut t = Vec::new();
    if let Some(name) = &u.renamed {
        t.push(format!("Renamed the channel to {}.", quoted(name)));
    }
    if let Some(slot) = &u.kicked {
        t.push(format!(
            "Removed the holder of seat {}; the seat is open again.",
            label(slot)
        ));
    }
    if let Some(i) = &u.invite {
        t.push(format!(
            "New invite for seat {} (single-use; give it to that player only): {}",
            label(&i.slot),
            i.invite_code
        ));
    }
    if u.closed == Some(true) {
        t.push("The channel is closed: no more posts or joins.".into());
    }
    if t.is_empty() {
        t.push("Done.".into());
    }
    t.join("\n")
}

pub(super) fn shared(s: &Shared) -> String {
    let who = match (&s.audience, &s.seat) {
        (PageAudience::Me, Some(seat)) => format!(
            "a one-time link that opens the page as your seat {}; it works once",
            label(seat)
        ),
        _ => "a read-only spectator link: whoever holds it sees public messages and the entries of private ones without their bodies".to_string(),
    };
    format!(
        "Made {who}, until {} (link_id {}, for revoke_shares). Hand the URL only to whom you mean to:\n{}",
        s.expires_at,
        label(&s.link_id),
        s.url
    )
}

pub(super) fn shares_revoked(r: &SharesRevoked) -> String {
    format!(
        "Revoked {} link(s) to the page of channel {}; pages open with them stop updating.",
        r.revoked,
        label(&r.channel_id)
    )
}

pub(super) fn attached(a: &Attached) -> String {
    format!(
        "Attached {} {} as {} (code_hash {}, manifest_hash {}, network {}).",
        a.origin.words(),
        quoted(&a.name),
        label(&a.bot_id),
        a.code_hash,
        a.manifest_hash,
        on_off(a.network)
    )
}

/// A tool error: its code and sentence, with the lists its structured data
/// carries (valid slots, your seats, bots) when the sentence does not
/// already name them all.
pub(super) fn error(e: &ToolError) -> String {
    let mut t = format!("Error {}: {}", e.code.as_str(), defang(&e.message));
    if let Some(Value::Object(data)) = &e.data {
        for (key, v) in data {
            let Value::Array(items) = v else { continue };
            let items: Vec<String> = items
                .iter()
                .map(|i| match i {
                    Value::String(s) => label(s),
                    other => json_text(other),
                })
                .collect();
            if !items.is_empty() && t.contains(&items.join(", ")) {
                continue;
            }
            t += &format!(
                "\n{}: {}",
                key.replace('_', " "),
                if items.is_empty() {
                    "none".to_string()
                } else {
                    items.join(", ")
                }
            );
        }
    }
    t
}

/// A channel resource's JSON, with hazards escaped.
pub(super) fn resource(v: &Value) -> String {
    json_text(v)
}

#[cfg(test)]
mod tests;
