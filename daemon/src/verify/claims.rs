//! The builtin bots' own claims, checked from their posts alone: what each
//! commits to before the players act and what its reveal must then
//! reproduce (the formats are in each bot's source and `docs/bots.md`).
//!
//! - GuessBot: the reveal opens the commitment (`sha256("<target>|<nonce>")`),
//!   the target lies in the announced range, every hint follows from the
//!   target, and the winner is the player whose guess was correct.
//! - BlackjackBot: per hand, `sha256(seed)` is the commitment posted before
//!   the deal; the deck the seed derives is the one revealed; every card
//!   dealt, hit and drawn by the dealer is the next card of that deck, and
//!   `cards_used` counts them.
//! - SealedBidBot: every revealed bid opens the commitment posted when it
//!   arrived (`sha256("<bidder>|<amount>|<salt>")`), the bidders are the
//!   ones who were committed, and the winner and price follow the rule.
//!
//! A bot is recognised by the name its `bot:attach` announced, which the
//! daemon lets only the builtin itself carry: an attach that says its code
//! is custom under a builtin's name fails (a daemon refuses such a bot, and
//! the builtin's checks would lend custom code the builtin's standing). An
//! attach from before attachments said builtin or custom is checked by name,
//! and the report says the code's origin is not recorded. The checks read
//! only public posts, so every member's export can be checked.

use super::{At, Report};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A bot's public post: its seq, its type and data.
struct Post<'a> {
    seq: i64,
    kind: &'a str,
    data: &'a Value,
}

fn posts_of<'a>(entries: &'a [Value], bot_id: &str) -> Vec<Post<'a>> {
    entries
        .iter()
        .filter(|e| e["kind"] == "bot" && e["sender"] == bot_id && e.get("to").is_none())
        .filter_map(|e| {
            Some(Post {
                seq: e["seq"].as_i64()?,
                kind: e["body"]["type"].as_str()?,
                data: &e["body"]["data"],
            })
        })
        .collect()
}

/// Runs the claim checks of every builtin bot the chain announced.
pub(super) fn check(r: &mut Report, entries: &[Value]) {
    for e in entries {
        if e["kind"] != "system" || e["body"]["type"] != "bot:attach" {
            continue;
        }
        let bot_id = e["body"]["bot_id"].as_str().unwrap_or("");
        let name = e["body"]["name"].as_str().unwrap_or("");
        let check = format!("{name} {bot_id}");
        let origin = e["body"]["origin"].as_str();
        if origin == Some("custom")
            && let Some(p) = crate::bots::presets::impersonated(name)
        {
            r.bad(
                check,
                At::Seq(e["seq"].as_i64().unwrap_or(0)),
                format!(
                    "custom code announced under the builtin {}'s name, which a daemon refuses: \
                     its posts are not checked as the builtin's, and its name says nothing about \
                     its code (read the source)",
                    p.name
                ),
            );
            continue;
        }
        let posts = posts_of(entries, bot_id);
        let result = match name {
            "GuessBot" => guess(&posts),
            "BlackjackBot" => blackjack(&posts),
            "SealedBidBot" => sealed_bid(&posts),
            _ => continue,
        };
        let unrecorded = if origin.is_none() {
            " (its bot:attach predates the record of builtin or custom code: compare its code_hash \
             with the builtin's to know it is the builtin)"
        } else {
            ""
        };
        match result {
            Ok(text) => r.ok(check, format!("{text}{unrecorded}")),
            Err((seq, why)) => r.bad(check, At::Seq(seq), format!("{why}{unrecorded}")),
        }
    }
}

type Claim = Result<String, (i64, String)>;

fn guess(posts: &[Post<'_>]) -> Claim {
    let Some(commit) = posts.iter().find(|p| p.kind == "commit") else {
        return Ok("no commitment posted yet: nothing to check".into());
    };
    let commitment = commit.data["commitment"].as_str().unwrap_or("");
    let Some(reveal) = posts.iter().find(|p| p.kind == "reveal") else {
        return Ok(format!(
            "committed at seq {} and not revealed yet: the hints can be checked once it is",
            commit.seq
        ));
    };
    let d = reveal.data;
    let (Some(target), Some(nonce)) = (d["target"].as_i64(), d["nonce"].as_str()) else {
        return Err((
            reveal.seq,
            "the reveal has no integer target and string nonce".into(),
        ));
    };
    if sha256_hex(&format!("{target}|{nonce}")) != commitment {
        return Err((
            reveal.seq,
            format!(
                "sha256(\"{target}|{nonce}\") is not the commitment {commitment} of seq {}",
                commit.seq
            ),
        ));
    }
    if let (Some(lo), Some(hi)) = (
        commit.data["range"][0].as_i64(),
        commit.data["range"][1].as_i64(),
    ) && !(lo..=hi).contains(&target)
    {
        return Err((
            reveal.seq,
            format!("target {target} is outside the announced range {lo}..{hi}"),
        ));
    }
    let mut hints = 0;
    let mut winner = Value::Null;
    for p in posts.iter().filter(|p| p.kind == "hint") {
        let Some(g) = p.data["guess"].as_i64() else {
            return Err((p.seq, "a hint without an integer guess".into()));
        };
        let want = match g.cmp(&target) {
            std::cmp::Ordering::Equal => "correct",
            std::cmp::Ordering::Less => "higher",
            std::cmp::Ordering::Greater => "lower",
        };
        if p.data["hint"] != want {
            return Err((
                p.seq,
                format!(
                    "the hint for guess {g} says {}, but the revealed target {target} makes it {want}",
                    p.data["hint"]
                ),
            ));
        }
        if want == "correct" && winner.is_null() {
            winner = p.data["player"].clone();
        }
        hints += 1;
    }
    if d["winner"] != winner {
        return Err((
            reveal.seq,
            format!(
                "the reveal names winner {}, but the correct guess was {}",
                d["winner"], winner
            ),
        ));
    }
    Ok(format!(
        "the reveal at seq {} opens the commitment of seq {} (target {target}), and all {hints} hint(s) follow from it",
        reveal.seq, commit.seq
    ))
}

/// The deck a Blackjack seed derives: Fisher-Yates over AS..KS, AH..KH,
/// AD..KD, AC..KC with `j = int(sha256("<seed>:<i>")) mod (i + 1)`.
pub(crate) fn blackjack_deck(seed: &str) -> Vec<String> {
    let mut deck: Vec<String> = "SHDC"
        .chars()
        .flat_map(|s| "A23456789TJQK".chars().map(move |r| format!("{r}{s}")))
        .collect();
    for i in (1..52usize).rev() {
        let digest = Sha256::digest(format!("{seed}:{i}").as_bytes());
        // int(digest) mod (i + 1), big-endian, without a big-integer type.
        let m = (i + 1) as u32;
        let j = digest
            .iter()
            .fold(0u32, |acc, b| (acc * 256 + u32::from(*b)) % m) as usize;
        deck.swap(i, j);
    }
    deck
}

/// One hand being re-dealt from its revealed seed.
struct Hand {
    deck: Vec<String>,
    pos: usize,
}

impl Hand {
    fn next(&mut self) -> Option<&str> {
        let c = self.deck.get(self.pos)?;
        self.pos += 1;
        Some(c)
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn blackjack(posts: &[Post<'_>]) -> Claim {
    let mut checked_hands = 0;
    let mut cards = 0;
    let mut pending = 0;
    for commit in posts.iter().filter(|p| p.kind == "commit") {
        let hand_no = &commit.data["hand"];
        let commitment = commit.data["commitment"].as_str().unwrap_or("");
        // This hand's posts: from its commitment to its reveal.
        let in_hand: Vec<&Post<'_>> = posts
            .iter()
            .filter(|p| p.seq > commit.seq)
            .take_while(|p| !(p.kind == "commit" && p.data["hand"] != *hand_no))
            .collect();
        let Some(reveal) = in_hand
            .iter()
            .find(|p| p.kind == "reveal" && p.data["hand"] == *hand_no)
        else {
            if in_hand.iter().any(|p| p.kind == "deal") {
                pending += 1;
            }
            continue;
        };
        let seed = reveal.data["seed"].as_str().unwrap_or("");
        if sha256_hex(seed) != commitment {
            return Err((
                reveal.seq,
                format!(
                    "hand {hand_no}: sha256 of the revealed seed is not the commitment of seq {}",
                    commit.seq
                ),
            ));
        }
        let deck = blackjack_deck(seed);
        if reveal.data.get("deck").is_some() && strs(&reveal.data["deck"]) != deck {
            return Err((
                reveal.seq,
                format!("hand {hand_no}: the revealed deck is not the one the seed derives"),
            ));
        }
        let mut h = Hand { deck, pos: 0 };
        let mut dealer: Vec<String> = Vec::new();
        for p in in_hand.iter().take_while(|p| p.seq <= reveal.seq) {
            let bad = |why: String| Err((p.seq, format!("hand {hand_no}: {why}")));
            match p.kind {
                "deal" => {
                    let order = strs(&p.data["order"]);
                    let mut hands: Vec<Vec<String>> = vec![Vec::new(); order.len()];
                    for _ in 0..2 {
                        for hand in hands.iter_mut() {
                            hand.push(h.next().unwrap_or("").to_string());
                        }
                        dealer.push(h.next().unwrap_or("").to_string());
                    }
                    for (player, want) in order.iter().zip(&hands) {
                        let got = strs(&p.data["players"][*player]["cards"]);
                        if got != *want {
                            return bad(format!(
                                "{player} was dealt {got:?}, but the deck deals {want:?}"
                            ));
                        }
                    }
                    if p.data["dealer_up"].as_str() != dealer.first().map(String::as_str) {
                        return bad(format!(
                            "the dealer shows {}, but the deck deals {:?}",
                            p.data["dealer_up"],
                            dealer.first()
                        ));
                    }
                    cards += h.pos;
                }
                "card" => {
                    let want = h.next().unwrap_or("").to_string();
                    if p.data["card"].as_str() != Some(want.as_str()) {
                        return bad(format!(
                            "{} drew {}, but the next card of the deck is {want}",
                            p.data["player"], p.data["card"]
                        ));
                    }
                    cards += 1;
                }
                "dealer" => {
                    let got = strs(&p.data["cards"]);
                    if got.len() < 2 || got[..2] != [dealer[0].as_str(), dealer[1].as_str()] {
                        return bad(format!(
                            "the dealer's hand {got:?} does not start with the dealt {dealer:?}"
                        ));
                    }
                    for c in &got[2..] {
                        let want = h.next().unwrap_or("").to_string();
                        if *c != want {
                            return bad(format!(
                                "the dealer drew {c}, but the next card of the deck is {want}"
                            ));
                        }
                        cards += 1;
                    }
                }
                "reveal" if reveal.data["cards_used"].as_u64() != Some(h.pos as u64) => {
                    return bad(format!(
                        "the reveal says {} cards were used, but the hand used {}",
                        reveal.data["cards_used"], h.pos
                    ));
                }
                _ => {}
            }
        }
        checked_hands += 1;
    }
    Ok(format!(
        "{checked_hands} hand(s): each revealed seed opens its commitment and re-derives all {cards} card(s) dealt{}",
        if pending > 0 {
            format!("; {pending} hand(s) not revealed yet")
        } else {
            String::new()
        }
    ))
}

fn sealed_bid(posts: &[Post<'_>]) -> Claim {
    let committed: Vec<&Post<'_>> = posts.iter().filter(|p| p.kind == "bid_committed").collect();
    let Some(reveal) = posts.iter().find(|p| p.kind == "reveal") else {
        return Ok(format!(
            "{} bid(s) committed, not revealed yet",
            committed.len()
        ));
    };
    let bids = reveal.data["bids"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let bad = |why: String| Err((reveal.seq, why));
    for b in bids {
        let bidder = b["bidder"].as_str().unwrap_or("");
        let (Some(amount), Some(salt)) = (b["amount"].as_i64(), b["salt"].as_str()) else {
            return bad(format!("{bidder}'s bid has no integer amount and salt"));
        };
        let opened = sha256_hex(&format!("{bidder}|{amount}|{salt}"));
        let Some(c) = committed
            .iter()
            .find(|c| c.seq < reveal.seq && c.data["bidder"] == bidder)
        else {
            return bad(format!("{bidder}'s bid was never committed"));
        };
        if c.data["commitment"].as_str() != Some(opened.as_str()) {
            return bad(format!(
                "sha256(\"{bidder}|{amount}|{salt}\") is not the commitment posted at seq {}",
                c.seq
            ));
        }
    }
    for c in committed.iter().filter(|c| c.seq < reveal.seq) {
        if !bids.iter().any(|b| b["bidder"] == c.data["bidder"]) {
            return bad(format!(
                "{}'s committed bid (seq {}) is missing from the reveal",
                c.data["bidder"], c.seq
            ));
        }
    }
    // Highest amount wins, ties to the earliest bid; second price pays the
    // runner-up's amount.
    let mut ranked: Vec<&Value> = bids.iter().collect();
    ranked.sort_by_key(|b| {
        (
            -b["amount"].as_i64().unwrap_or(0),
            b["seq"].as_i64().unwrap_or(0),
        )
    });
    if let Some(w) = ranked.first() {
        let price = if reveal.data["rule"] == "second_price" && ranked.len() > 1 {
            &ranked[1]["amount"]
        } else {
            &w["amount"]
        };
        if reveal.data["winner"] != w["bidder"] || reveal.data["price"] != *price {
            return bad(format!(
                "the reveal names {} paying {}, but the bids make it {} paying {}",
                reveal.data["winner"], reveal.data["price"], w["bidder"], price
            ));
        }
    }
    Ok(format!(
        "the reveal at seq {} opens all {} committed bid(s); winner {} at {}",
        reveal.seq,
        bids.len(),
        reveal.data["winner"],
        reveal.data["price"]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blackjack_deck_matches_the_bots_own_derivation() {
        // Vectors from bots/blackjack.py's derive_deck, an independent
        // implementation of the same documented derivation.
        let zeros = "4D 2H 7C TC 5S KH 6C 3C 3D JD 8C 2S 9C 8H 7D 6S 6H 4S 6D 9S AS 7H QC JC JH 2D AD QS TD AH TS TH QH JS KC 8S 5D 8D 5H 9D KD 4C 4H AC QD KS 5C 3H 7S 2C 9H 3S";
        assert_eq!(blackjack_deck(&"00".repeat(32)).join(" "), zeros);
        assert_eq!(
            blackjack_deck(&"ab".repeat(32))[..10].join(" "),
            "9H 5S 3H 7C 8D 3D 4S 7D 4H KS"
        );
    }
}
