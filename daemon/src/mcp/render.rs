//! Short text renderings of tool results, for clients that show the model
//! only the text content. They carry every fact an agent needs to act.

use crate::model::{
    Attached, BotCode, BotInfo, ChannelList, ChannelView, Created, Joined, MessageKind, Posted,
    Synced, Updated,
};
use serde_json::Value;

pub(super) fn created(out: &Created) -> String {
    let mut t = format!("Created channel {} ({}).\n", out.channel_id, out.view.name);
    if let Some(seat) = &out.seat {
        t += &format!(
            "You hold seat {}. Your rejoin token (private, do not share): {}\n",
            seat.slot, seat.rejoin_token
        );
    }
    if !out.invites.is_empty() {
        t += "Invite codes (single-use; give each to that player only):\n";
        for i in &out.invites {
            t += &format!("  {}: {}\n", i.slot, i.invite_code);
        }
    }
    t += &bots_line(&out.view.bots);
    t
}

pub(super) fn joined(out: &Joined) -> String {
    format!(
        "{} seat {} in channel {} ({}). Your rejoin token (private): {}\n{}Next: call sync_messages with channel_id {} and cursor 0.",
        if out.moved { "Moved" } else { "Joined" },
        out.slot,
        out.channel_id,
        out.view.name,
        out.rejoin_token,
        bots_line(&out.view.bots),
        out.channel_id,
    )
}

pub(super) fn posted(p: &Posted) -> String {
    format!("Posted as {} (seq {}, hash {}).", p.sender, p.seq, p.hash)
}

fn bots_line(bots: &[BotInfo]) -> String {
    let mut t = String::new();
    for b in bots {
        t += &format!(
            "Bot {} ({}) code_hash {}{}\n",
            b.bot_id,
            b.name,
            b.code_hash,
            if b.network { ", network allowed" } else { "" }
        );
    }
    t
}

fn body_text(body: Option<&Value>, body_hash: Option<&str>) -> String {
    match body {
        Some(Value::String(b)) => b.clone(),
        Some(other) => other.to_string(),
        None => format!(
            "[private message, body_hash {}]",
            body_hash.unwrap_or_default()
        ),
    }
}

pub(super) fn synced(out: &Synced) -> String {
    let mut t = if out.messages.is_empty() {
        format!("No new messages (you are {}).\n", out.as_seat)
    } else {
        format!(
            "{} new message(s) (you are {}):\n",
            out.messages.len(),
            out.as_seat
        )
    };
    for m in &out.messages {
        let to =
            m.to.as_ref()
                .map(|a| format!(" (private to {})", a.join(", ")))
                .unwrap_or_default();
        let kind = match m.kind {
            MessageKind::User => String::new(),
            k => format!(" [{}]", k.as_str()),
        };
        t += &format!(
            "#{} {}{}{}: {}\n",
            m.seq,
            m.sender,
            kind,
            to,
            body_text(m.body.as_ref(), m.body_hash.as_deref())
        );
    }
    t += &format!("cursor: {} (pass it to the next sync_messages)", out.cursor);
    t
}

pub(super) fn view(v: &ChannelView) -> String {
    let mut t = format!(
        "Channel {} ({}){}; {} messages, head hash {}.\nSlots:\n",
        v.channel_id,
        v.name,
        if v.closed { ", closed" } else { "" },
        v.message_count,
        v.head_hash
    );
    for sl in &v.slots {
        t += &format!(
            "  {} ({}){}{}{}\n",
            sl.label,
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
            c.channel_id,
            c.name,
            c.message_count,
            if c.your_seats.is_empty() {
                "none".to_string()
            } else {
                c.your_seats.join(", ")
            },
            if c.admin { ", admin" } else { "" }
        );
    }
    t
}

pub(super) fn bot_code(b: &BotCode) -> String {
    format!(
        "Bot {} ({}), code_hash {}, manifest_hash {}, network {}.\n--- source ---\n{}",
        b.bot_id, b.name, b.code_hash, b.manifest_hash, b.network, b.source
    )
}

pub(super) fn updated(u: &Updated) -> String {
    format!("Done: {}", serde_json::to_value(u).unwrap_or(Value::Null))
}

pub(super) fn attached(a: &Attached) -> String {
    format!(
        "Attached {} as {} (code_hash {}).",
        a.name, a.bot_id, a.code_hash
    )
}
