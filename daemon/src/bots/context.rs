//! What a hook's `ctx.players` holds, as a function of the transcript up to
//! the message that triggered it.
//!
//! A hook must be replayable from the transcript alone, so nothing it is
//! given may come from tables that moved on after its trigger: a seat kicked
//! or filled while the hook waited in the queue must not change what the
//! hook sees. Every change of a seat is announced in the chain
//! (`channel:created` lists the slots in seat order; `seat:filled`,
//! `seat:moved` and `seat:kicked` change them), so the players at a trigger
//! are a fold of the chain up to it ([`Seats`], what a replayer computes).
//!
//! The daemon gets the same answer without reading the whole chain for
//! every hook: it takes the slots as they are now and undoes the seat events
//! committed after the trigger ([`players_at`]). Both are tested to agree.

use crate::model::{Event, SlotDecl, SlotKind};
use crate::store::SlotRecord;
use hook_protocol::Player;

/// The player seats of a channel, folded from its transcript.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Seats {
    players: Vec<Player>,
}

fn player(label: &str, filled: bool) -> Player {
    Player {
        label: label.to_string(),
        slot: format!("invite:{label}"),
        filled,
    }
}

impl Seats {
    /// The seats `channel:created` announced, all empty (a creator's own
    /// seat is announced by a `seat:filled` of its own).
    pub fn created(slots: &[SlotDecl]) -> Seats {
        Seats {
            players: slots
                .iter()
                .filter(|s| s.kind == SlotKind::Invite)
                .map(|s| player(&s.label, false))
                .collect(),
        }
    }

    /// Applies one event of the transcript; events that do not move a seat
    /// change nothing.
    pub fn apply(&mut self, event: &Event) {
        let (slot, filled) = match event {
            Event::SeatFilled { slot } | Event::SeatMoved { slot } => (slot, true),
            Event::SeatKicked { slot } => (slot, false),
            _ => return,
        };
        if let Some(p) = self.players.iter_mut().find(|p| &p.label == slot) {
            p.filled = filled;
        }
    }

    /// `ctx.players`: every player seat in seat order, filled or not.
    pub fn players(&self) -> Vec<Player> {
        self.players.clone()
    }
}

/// The players as they were right after the trigger: `slots_now` (in seat
/// order) with the seat events committed after the trigger (`later`, in
/// transcript order) undone. A `seat:filled` found an empty seat, a
/// `seat:moved` and a `seat:kicked` a filled one.
pub fn players_at<'a>(
    slots_now: &[SlotRecord],
    later: impl DoubleEndedIterator<Item = &'a Event>,
) -> Vec<Player> {
    let mut players: Vec<Player> = slots_now
        .iter()
        .filter(|s| s.kind == SlotKind::Invite)
        .map(|s| player(&s.label, s.holder.is_some()))
        .collect();
    for event in later.rev() {
        let (slot, before) = match event {
            Event::SeatFilled { slot } => (slot, false),
            Event::SeatMoved { slot } | Event::SeatKicked { slot } => (slot, true),
            _ => continue,
        };
        if let Some(p) = players.iter_mut().find(|p| &p.label == slot) {
            p.filled = before;
        }
    }
    players
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(label: &str, kind: SlotKind) -> SlotDecl {
        SlotDecl {
            label: label.into(),
            kind,
        }
    }

    fn filled(ps: &[Player]) -> Vec<(String, bool)> {
        ps.iter().map(|p| (p.label.clone(), p.filled)).collect()
    }

    /// Plays a random history of joins, moves and kicks the daemon allows
    /// (fill an empty seat; move or kick a filled one) and checks, at every
    /// point, that undoing the later events from the final slots gives the
    /// fold up to that point.
    #[test]
    fn undoing_later_seat_events_from_the_slots_now_equals_folding_the_chain() {
        let slots = [
            decl("alice", SlotKind::Invite),
            decl("bot:referee", SlotKind::Bot),
            decl("bob", SlotKind::Invite),
            decl("carol", SlotKind::Invite),
        ];
        for round in 0u64..200 {
            // A small deterministic generator: every round a different history.
            let mut x = round
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut next = |n: u64| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 33) % n
            };
            let mut fold = Seats::created(&slots);
            let mut history: Vec<Event> = vec![Event::ChannelCreated {
                name: "t".into(),
                slots: slots.to_vec(),
                allow_network: false,
                transcript_format: Some(2),
            }];
            let mut snapshots = vec![fold.players()];
            for _ in 0..next(12) {
                let labels = ["alice", "bob", "carol"];
                let label = labels[next(3) as usize].to_string();
                let is_filled = fold.players().iter().any(|p| p.label == label && p.filled);
                let event = match (is_filled, next(3)) {
                    (false, _) => Event::SeatFilled { slot: label },
                    (true, 0) => Event::SeatMoved { slot: label },
                    (true, 1) => Event::SeatKicked { slot: label },
                    (true, _) => Event::ChannelRenamed { name: "x".into() },
                };
                fold.apply(&event);
                history.push(event);
                snapshots.push(fold.players());
            }
            let now: Vec<SlotRecord> = slots
                .iter()
                .map(|s| SlotRecord {
                    label: s.label.clone(),
                    kind: s.kind,
                    holder: fold
                        .players()
                        .iter()
                        .any(|p| p.label == s.label && p.filled)
                        .then(|| "principal".to_string()),
                    has_bot: s.kind == SlotKind::Bot,
                    private_from: 0,
                })
                .collect();
            for (i, want) in snapshots.iter().enumerate() {
                let got = players_at(&now, history[i + 1..].iter());
                assert_eq!(filled(&got), filled(want), "round {round}, after event {i}");
                assert_eq!(&got, want);
            }
        }
    }

    #[test]
    fn a_seat_kicked_after_the_trigger_was_still_filled_at_it() {
        let now = vec![SlotRecord {
            label: "bob".into(),
            kind: SlotKind::Invite,
            holder: None,
            has_bot: false,
            private_from: 0,
        }];
        let later = [Event::SeatKicked { slot: "bob".into() }];
        assert_eq!(
            filled(&players_at(&now, later.iter())),
            vec![("bob".to_string(), true)]
        );
        assert_eq!(
            players_at(&now, [].iter())[0],
            Player {
                label: "bob".into(),
                slot: "invite:bob".into(),
                filled: false
            }
        );
    }
}
