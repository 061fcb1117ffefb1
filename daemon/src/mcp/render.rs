//! Short text renderings of tool results, for clients that show the model
//! only the text content. They carry every fact an agent needs to act.

use serde_json::Value;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

pub fn created(out: &Value) -> String {
    let mut t = format!(
        "Created channel {} ({}).\n",
        s(&out["channel_id"]),
        s(&out["view"]["name"])
    );
    if let Some(seat) = out.get("seat") {
        t += &format!(
            "You hold seat {}. Your rejoin token (private, do not share): {}\n",
            s(&seat["slot"]),
            s(&seat["rejoin_token"])
        );
    }
    let invites = out["invites"].as_array().cloned().unwrap_or_default();
    if !invites.is_empty() {
        t += "Invite codes (single-use; give each to that player only):\n";
        for i in invites {
            t += &format!("  {}: {}\n", s(&i["slot"]), s(&i["invite_code"]));
        }
    }
    t += &bots_line(&out["view"]);
    t
}

pub fn joined(out: &Value) -> String {
    format!(
        "{} seat {} in channel {} ({}). Your rejoin token (private): {}\n{}Next: call sync_messages with channel_id {} and cursor 0.",
        if out["moved"].as_bool() == Some(true) {
            "Moved"
        } else {
            "Joined"
        },
        s(&out["slot"]),
        s(&out["channel_id"]),
        s(&out["view"]["name"]),
        s(&out["rejoin_token"]),
        bots_line(&out["view"]),
        s(&out["channel_id"]),
    )
}

fn bots_line(view: &Value) -> String {
    let mut t = String::new();
    for b in view["bots"].as_array().cloned().unwrap_or_default() {
        t += &format!(
            "Bot {} ({}) code_hash {}{}\n",
            s(&b["bot_id"]),
            s(&b["name"]),
            s(&b["code_hash"]),
            if b["network"].as_bool() == Some(true) {
                ", network allowed"
            } else {
                ""
            }
        );
    }
    t
}

fn body_text(m: &Value) -> String {
    match m.get("body") {
        Some(Value::String(b)) => b.clone(),
        Some(other) => other.to_string(),
        None => format!("[private message, body_hash {}]", s(&m["body_hash"])),
    }
}

pub fn synced(out: &Value) -> String {
    let msgs = out["messages"].as_array().cloned().unwrap_or_default();
    let mut t = if msgs.is_empty() {
        format!("No new messages (you are {}).\n", s(&out["as"]))
    } else {
        format!(
            "{} new message(s) (you are {}):\n",
            msgs.len(),
            s(&out["as"])
        )
    };
    for m in &msgs {
        let to = m["to"]
            .as_array()
            .map(|a| {
                let names: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                format!(" (private to {})", names.join(", "))
            })
            .unwrap_or_default();
        let kind = match s(&m["kind"]) {
            "user" => String::new(),
            k => format!(" [{k}]"),
        };
        t += &format!(
            "#{} {}{}{}: {}\n",
            m["seq"],
            s(&m["sender"]),
            kind,
            to,
            body_text(m)
        );
    }
    t += &format!(
        "cursor: {} (pass it to the next sync_messages)",
        out["cursor"]
    );
    t
}

pub fn view(v: &Value) -> String {
    let mut t = format!(
        "Channel {} ({}){}; {} messages, head hash {}.\nSlots:\n",
        s(&v["channel_id"]),
        s(&v["name"]),
        if v["closed"].as_bool() == Some(true) {
            ", closed"
        } else {
            ""
        },
        v["message_count"],
        s(&v["head_hash"])
    );
    for sl in v["slots"].as_array().cloned().unwrap_or_default() {
        t += &format!(
            "  {} ({}){}{}{}\n",
            s(&sl["label"]),
            s(&sl["kind"]),
            if sl["filled"].as_bool() == Some(true) {
                ", filled"
            } else {
                ", open"
            },
            if sl["admin"].as_bool() == Some(true) {
                ", admin"
            } else {
                ""
            },
            if sl["yours"].as_bool() == Some(true) {
                ", yours"
            } else {
                ""
            },
        );
    }
    t + &bots_line(v)
}

pub fn list(list: &[Value]) -> String {
    if list.is_empty() {
        return "You are in no channels yet.".into();
    }
    let mut t = String::from("Your channels:\n");
    for c in list {
        let seats: Vec<&str> = c["your_seats"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        t += &format!(
            "  {} ({}), {} messages, your seats: {}{}\n",
            s(&c["channel_id"]),
            s(&c["name"]),
            c["message_count"],
            if seats.is_empty() {
                "none".to_string()
            } else {
                seats.join(", ")
            },
            if c["admin"].as_bool() == Some(true) {
                ", admin"
            } else {
                ""
            }
        );
    }
    t
}
