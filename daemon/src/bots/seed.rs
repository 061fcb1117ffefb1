//! A bot's secret seed: what makes its hooks replayable, and how the
//! transcript commits to it and later reveals it.
//!
//! When a bot is attached the daemon draws 32 bytes from the OS's randomness
//! for it (its *seed*) and keeps them in the bot's row, out of every view and
//! log. Everything random the bot's hooks can reach comes from the seed: each
//! hook's job carries `entropy = Entropy::for_hook(seed, trigger seq)`, as
//! its clock the triggering message's `ts`, and as the interpreter's hash
//! seed `seed.python_hash_seed()` (the same for all the bot's hooks). So a
//! hook's posts and state are a function of the bot's code, its params, the
//! transcript up to the trigger and the seed.
//!
//! The seed must be fixed before play and secret during it: players who knew
//! it could predict every draw (GuessBot's target, Blackjack's deck). So the
//! `bot:attach` entry carries [`commitment`] of it and [`params_hash`] of the
//! bot's params, and when the channel closes a `bot:reveal` entry publishes
//! the seed and the bot's state salt. Anyone can then check the reveal opens
//! the commitment ([`check_reveal`]) and re-run every hook
//! (`mcp-multiplayer replay`, `docs/replay.md`).
//!
//! The salt of the bot's `state_hash`es is derived from the seed
//! ([`state_salt`]) rather than drawn on its own, so that the one commitment
//! covers it too: after the reveal nobody can claim another salt.

use crate::transcript::{self, canonical, sha256_tagged};
use hook_protocol::Entropy;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Domain tag of a seed commitment: `sha256(COMMITMENT_TAG || seed)`. The
/// tag keeps a commitment from being read as the hash of anything else the
/// daemon hashes.
pub const COMMITMENT_TAG: &[u8] = b"mcp-multiplayer bot seed v1\0";

/// Label of the block of the seed's generator the state salt is taken from
/// (the hooks' entropies use the label `hook`, so the two never meet).
pub const STATE_SALT_LABEL: &[u8] = b"state-salt";

/// A fresh seed from the OS's randomness.
pub fn draw() -> Entropy {
    Entropy::from_bytes(crate::secrets::new_seed())
}

/// The commitment a `bot:attach` entry carries:
/// `"sha256:" + hex(sha256("mcp-multiplayer bot seed v1" || 0x00 || seed))`.
/// The seed is 256 uniformly random bits, so the hash hides it without a
/// separate nonce.
pub fn commitment(seed: &Entropy) -> String {
    let mut h = Sha256::new();
    h.update(COMMITMENT_TAG);
    h.update(seed.as_bytes());
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// The bot's state salt: the first 16 bytes of block 0 of the seed's stream
/// `state-salt`, in lowercase hex (32 digits, the form of every salt).
pub fn state_salt(seed: &Entropy) -> String {
    hex::encode(&seed.block(STATE_SALT_LABEL, 0)[..16])
}

/// `params_hash` of a `bot:attach` entry: `sha256:` of the params' canonical
/// JSON (RFC 8785), so that a replayer knows the params it is given are the
/// ones the bot ran with.
pub fn params_hash(params: &Map<String, Value>) -> String {
    sha256_tagged(canonical(params).as_bytes())
}

/// The entropy of the hook a message at `trigger` runs.
pub fn hook_entropy(seed: &Entropy, trigger: i64) -> Entropy {
    Entropy::for_hook(seed, u64::try_from(trigger).unwrap_or(0))
}

/// The interpreter's hash seed for every hook of the bot: the one the seed
/// itself gives as entropy ([`Entropy::python_hash_seed`]). One per bot, not
/// per hook, so that a sandbox pre-warmed for the bot can serve its hooks.
pub fn hash_seed(seed: &Entropy) -> u32 {
    seed.python_hash_seed()
}

/// Why a `bot:reveal` does not open its bot's commitment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadReveal(pub String);

/// Checks a `bot:reveal`: the seed is 64 lowercase hex digits, opens the
/// `seed_commitment` of the bot's `bot:attach`, and the revealed state salt
/// is the one derived from it. Returns the seed.
///
/// # Errors
/// Which of the three failed, in a sentence.
pub fn check_reveal(
    commitment_at_attach: &str,
    seed_hex: &str,
    revealed_salt: &str,
) -> Result<Entropy, BadReveal> {
    let seed: Entropy = seed_hex
        .parse()
        .map_err(|e| BadReveal(format!("the revealed seed is malformed: {e}")))?;
    let opened = commitment(&seed);
    if opened != commitment_at_attach {
        return Err(BadReveal(format!(
            "the revealed seed does not open the seed commitment ({opened} is not {commitment_at_attach})"
        )));
    }
    if state_salt(&seed) != revealed_salt {
        return Err(BadReveal(
            "the revealed state salt is not the one the seed derives".into(),
        ));
    }
    Ok(seed)
}

/// `state_hash` of a state under a seed's salt (what the chain records after
/// each hook).
pub fn state_hash_under(seed: &Entropy, state: &Value) -> String {
    transcript::state_hash(&state_salt(seed), &transcript::CanonicalJson::of(state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SEED: &str = "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b";

    fn seed() -> Entropy {
        SEED.parse().unwrap()
    }

    #[test]
    fn the_commitment_is_the_tagged_sha256_of_the_seed_bytes() {
        // Computed independently: printf 'mcp-multiplayer bot seed v1\0' ; 32 bytes 0x0b.
        let mut pre = b"mcp-multiplayer bot seed v1\x00".to_vec();
        pre.extend([0x0b; 32]);
        let want = format!("sha256:{}", hex::encode(Sha256::digest(&pre)));
        assert_eq!(commitment(&seed()), want);
        assert_ne!(commitment(&draw()), commitment(&draw()), "seeds are fresh");
    }

    #[test]
    fn the_state_salt_and_hook_entropies_come_from_distinct_labels() {
        let s = seed();
        let salt = state_salt(&s);
        assert_eq!(salt.len(), 32);
        assert_eq!(salt, hex::encode(&s.block(b"state-salt", 0)[..16]));
        // A hook's entropy is block `seq` of label "hook": never the salt's block.
        let e = hook_entropy(&s, 7);
        assert_eq!(e, Entropy::for_hook(&s, 7));
        assert_eq!(e.as_bytes(), &s.block(b"hook", 7));
        assert_ne!(hook_entropy(&s, 7), hook_entropy(&s, 8));
        // The hash seed is the bot's, the same for every hook.
        assert_eq!(hash_seed(&s), s.python_hash_seed());
        assert_ne!(hash_seed(&s), e.python_hash_seed());
        assert!(!hex::encode(e.as_bytes()).starts_with(&salt));
    }

    #[test]
    fn a_reveal_opens_only_its_own_commitment() {
        let s = seed();
        let c = commitment(&s);
        let salt = state_salt(&s);
        assert_eq!(check_reveal(&c, SEED, &salt), Ok(s.clone()));
        // A wrong seed: one hex digit changed.
        let wrong = format!("0c{}", &SEED[2..]);
        let e = check_reveal(&c, &wrong, &salt).unwrap_err();
        assert!(e.0.contains("does not open"), "{e:?}");
        // The right seed, another salt (a server hiding a state).
        let e = check_reveal(&c, SEED, &"00".repeat(16)).unwrap_err();
        assert!(e.0.contains("state salt"), "{e:?}");
        // Malformed seeds are refused with what is wrong.
        for bad in ["", "0B".repeat(32).as_str(), &SEED[..62]] {
            let e = check_reveal(&c, bad, &salt).unwrap_err();
            assert!(e.0.contains("malformed"), "{bad}: {e:?}");
        }
    }

    #[test]
    fn the_params_hash_is_of_the_canonical_params() {
        let a: Map<String, Value> = serde_json::from_value(json!({"max": 64.0, "min": 1})).unwrap();
        let b: Map<String, Value> = serde_json::from_value(json!({"min": 1, "max": 64})).unwrap();
        assert_eq!(params_hash(&a), params_hash(&b));
        assert_eq!(params_hash(&a), sha256_tagged(br#"{"max":64,"min":1}"#));
        let c: Map<String, Value> = serde_json::from_value(json!({"min": 1, "max": 65})).unwrap();
        assert_ne!(params_hash(&a), params_hash(&c));
    }

    #[test]
    fn the_state_hash_under_a_seed_is_the_transcripts_state_hash() {
        let s = seed();
        let state = json!({"target": 42});
        assert_eq!(
            state_hash_under(&s, &state),
            sha256_tagged(format!("{}:{{\"target\":42}}", state_salt(&s)).as_bytes())
        );
    }
}
