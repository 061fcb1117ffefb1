//! Prompts: the three things people ask their agent to do here, as
//! templates a host can offer (`/` commands in several clients). Each one
//! spells out the tool calls, so a model that has never seen this server
//! gets the flow right the first time.

use crate::bots::presets;
use crate::channels::SlotSpec;
use crate::model::SlotKind;
use rmcp::model::{GetPromptResult, JsonObject, Prompt, PromptArgument, PromptMessage, Role};
use serde_json::{Value, json};

/// The prompts `prompts/list` offers.
pub fn list() -> Vec<Prompt> {
    vec![
        Prompt::new(
            "start_game",
            Some("Create a channel with a referee bot, take your seat, and get the invite code to send to a friend; then follow the game."),
            Some(vec![
                PromptArgument::new("game")
                    .with_title("Game")
                    .with_description(format!(
                        "The referee bot: {} (default GuessBot).",
                        presets::names().join(", ")
                    ))
                    .with_required(false),
                PromptArgument::new("friend")
                    .with_title("Friend's seat")
                    .with_description("A name for your friend's seat: letters, digits, _ or - (default friend).")
                    .with_required(false),
                PromptArgument::new("me")
                    .with_title("Your seat")
                    .with_description("A name for your own seat (default me).")
                    .with_required(false),
            ]),
        )
        .with_title("Start a game with a friend"),
        Prompt::new(
            "join_with_invite",
            Some("Take the seat an invite code names, check the channel's bots, and follow the conversation."),
            Some(vec![
                PromptArgument::new("invite_code")
                    .with_title("Invite code")
                    .with_description("The code you were given (mcpmp_inv_...).")
                    .with_required(true),
            ]),
        )
        .with_title("Join with an invite code"),
        Prompt::new(
            "verify_game",
            Some("Read a channel's whole transcript and check its bots' code, commitments and the hash chain."),
            Some(vec![
                PromptArgument::new("channel_id")
                    .with_title("Channel")
                    .with_description("The channel's id (ch_...); list_channels shows yours.")
                    .with_required(true),
            ]),
        )
        .with_title("Verify a finished game"),
    ]
}

/// One argument as text, if given and not blank.
fn arg<'a>(args: Option<&'a JsonObject>, name: &str) -> Option<&'a str> {
    args?
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn required<'a>(args: Option<&'a JsonObject>, name: &str) -> Result<&'a str, String> {
    arg(args, name).ok_or_else(|| format!("this prompt needs the argument {name}"))
}

/// A player seat's name, as `create_channel` will accept it.
fn seat(args: Option<&JsonObject>, name: &str, default: &str) -> Result<String, String> {
    let s = arg(args, name).unwrap_or(default);
    match SlotSpec::parse(s) {
        Ok(spec) if spec.kind == SlotKind::Invite => Ok(spec.label),
        _ => Err(format!(
            "{name} {s:?} is not a seat name: use 1-32 letters, digits, _ or -"
        )),
    }
}

/// `prompts/get`.
///
/// # Errors
/// An unknown prompt or a missing or invalid argument, as a sentence.
pub fn get(name: &str, args: Option<&JsonObject>) -> Result<GetPromptResult, String> {
    let (description, text) = match name {
        "start_game" => {
            let asked = arg(args, "game").unwrap_or("GuessBot");
            let game = presets::resolve(asked).ok_or_else(|| {
                format!(
                    "game {asked:?} is not a builtin bot; choose one of {}",
                    presets::names().join(", ")
                )
            })?;
            let me = seat(args, "me", "me")?;
            let friend = seat(args, "friend", "friend")?;
            if me == friend {
                return Err("me and friend must be different seat names".into());
            }
            let create = json!({
                "name": format!("{} with {friend}", game.name),
                "slots": [format!("invite:{me}"), format!("invite:{friend}")],
                "bot_preset": game.name,
                "join_as": me,
            });
            (
                format!("Start a {} game with a friend", game.name),
                format!(
                    "Start a {game} game with a friend on mcp-multiplayer.\n\
                     1. Call create_channel with {create}.\n\
                     2. The result holds one invite code, for the seat {friend}. Show it to me so I can send it to my friend; it works once. Keep the rejoin token you received to yourself.\n\
                     3. Tell me the bot's name and code_hash from the result, and offer to show its source with get_bot_code.\n\
                     4. Then follow the channel: call sync_messages with the channel_id and the cursor the previous call returned (0 the first time), again and again; each call waits up to 20 s for news, and when more is true there is another page at once. Tell me what the bot and my friend say, and make my moves with post_message (text, or a JSON object when the bot asks for one).",
                    game = game.name,
                ),
            )
        }
        "join_with_invite" => {
            let code = required(args, "invite_code")?;
            (
                "Join a channel with an invite code".to_string(),
                format!(
                    "I was given an invite code to an mcp-multiplayer channel: {code}\n\
                     1. Call join_channel with {{\"invite_code\": {code:?}}}. Keep the rejoin token in the result private: it moves my seat to another device.\n\
                     2. Tell me the channel's name, my seat, the other seats, and each bot with its code_hash. For each bot, call get_bot_code and tell me in a few sentences what it does and what it commits to before play.\n\
                     3. Then follow the channel: call sync_messages with the channel_id and the cursor the previous call returned (0 the first time), again and again; each call waits up to 20 s, and when more is true there is another page at once. Tell me what the others say, and make my moves with post_message."
                ),
            )
        }
        "verify_game" => {
            let cid = required(args, "channel_id")?;
            (
                "Verify a finished game".to_string(),
                format!(
                    "Check that the game in channel {cid} was played fairly, using only what the channel shows.\n\
                     1. Read the whole transcript: call sync_messages with {{\"channel_id\": {cid:?}, \"cursor\": 0, \"wait_ms\": 0}}, then again with the returned cursor while more is true.\n\
                     2. For each bot announced by a system bot:attach message, call get_bot_code and check that its code_hash equals the announced one. Read the source: what does it commit to, and when does it reveal it?\n\
                     3. Check each commitment against its reveal, and that it was posted before the moves it binds (GuessBot: sha256 of \"target|nonce\" equals the commitment posted before the first guess; BlackjackBot: the revealed seed re-derives the deck that was dealt).\n\
                     4. If you can run code, check the hash chain: each message's hash is sha256(previous hash || RFC 8785 canonical JSON of {{seq, channel_id, sender, kind, ts, body}}), starting from 32 zero bytes; a private message counts by its body_hash in place of its body.\n\
                     Report what you checked, and anything that does not match."
                ),
            )
        }
        other => {
            return Err(format!(
                "no prompt {other:?}; the prompts are start_game, join_with_invite and verify_game"
            ));
        }
    };
    Ok(
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
            .with_description(description),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn args(v: Value) -> JsonObject {
        v.as_object().unwrap().clone()
    }

    fn text(r: &GetPromptResult) -> String {
        serde_json::to_value(&r.messages[0].content).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn every_listed_prompt_renders_with_its_required_arguments() {
        for p in list() {
            let mut given = JsonObject::new();
            for a in p.arguments.iter().flatten() {
                if a.required == Some(true) {
                    given.insert(a.name.clone(), json!("ch_x"));
                }
                assert!(
                    a.description.is_some(),
                    "{}.{} is described",
                    p.name,
                    a.name
                );
            }
            assert!(p.title.is_some() && p.description.is_some(), "{}", p.name);
            let r = get(&p.name, Some(&given)).unwrap();
            assert_eq!(r.messages.len(), 1);
            assert!(!text(&r).is_empty());
        }
    }

    #[test]
    fn start_game_names_the_canonical_bot_and_a_create_call_that_parses() {
        let r = get(
            "start_game",
            Some(&args(json!({"game": "blackjack", "friend": "bob"}))),
        )
        .unwrap();
        let t = text(&r);
        assert!(t.contains(r#""bot_preset":"BlackjackBot""#), "{t}");
        assert!(t.contains(r#""slots":["invite:me","invite:bob"]"#), "{t}");
        let r = get("start_game", None).unwrap();
        assert!(text(&r).contains("GuessBot"));
    }

    #[test]
    fn bad_or_missing_arguments_are_refused_with_a_sentence() {
        for (name, a, want) in [
            ("start_game", json!({"game": "chess"}), "choose one of"),
            ("start_game", json!({"friend": "a b"}), "not a seat name"),
            ("start_game", json!({"me": "x", "friend": "x"}), "different"),
            ("join_with_invite", json!({}), "invite_code"),
            ("verify_game", json!({"channel_id": "  "}), "channel_id"),
            ("nope", json!({}), "no prompt"),
        ] {
            let e = get(name, Some(&args(a))).unwrap_err();
            assert!(e.contains(want), "{name}: {e}");
        }
    }
}
