//! The builtin bots by name.
//!
//! Each builtin has one canonical name, the one its class and manifest carry
//! (`GuessBot`): tool schemas list it, results and errors show it, and new
//! attachments store it. People and agents copy names from many places, so
//! a request may spell a builtin any way that names it unambiguously: any
//! case, with or without the `Bot` suffix, with `_`, `-`, `.` or spaces
//! between words, or as its file name (`guess`, `sealed_bid`, `guess.py`).
//! The canonical names fold to distinct keys (a unit test checks it), so no
//! spelling names two builtins.

/// A builtin bot: its canonical name and its source file in `bots_dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The name schemas, results and errors show.
    pub name: &'static str,
    /// `bots_dir/<file>.py` holds its source.
    pub file: &'static str,
}

/// Every builtin, in the order the tool descriptions list them.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "GuessBot",
        file: "guess",
    },
    Preset {
        name: "BlackjackBot",
        file: "blackjack",
    },
    Preset {
        name: "EchoBot",
        file: "echo",
    },
    Preset {
        name: "FetchBot",
        file: "fetch",
    },
    Preset {
        name: "TlsCertBot",
        file: "tlscert",
    },
    Preset {
        name: "JudgeBot",
        file: "judge",
    },
    Preset {
        name: "SealedBidBot",
        file: "sealed_bid",
    },
    Preset {
        name: "ContextExchangeBot",
        file: "context_exchange",
    },
];

/// The canonical names, for schemas and messages.
pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.name).collect()
}

/// The builtin a request names, however it spells it.
pub fn resolve(asked: &str) -> Option<&'static Preset> {
    let key = fold(asked)?;
    PRESETS
        .iter()
        .find(|p| fold(p.name).as_deref() == Some(key.as_str()))
}

/// The canonical spelling of a stored preset name (rows written before the
/// canonical names were stored hold the file name); an unknown one as is.
pub fn canonical(stored: &str) -> String {
    resolve(stored).map_or_else(|| stored.to_string(), |p| p.name.to_string())
}

/// The builtin whose name a custom bot's announced `name` would pass for:
/// the same letters and digits, in any case, whatever else separates them
/// (`GuessBot`, `guess bot`, `GUESS_BOT`, `Guess·Bot`). A custom bot may
/// not announce itself so (players and their agents go by the name), while
/// other names that merely start like a builtin's (`Guess`, `EchoBot 2`)
/// stay free: every announcement says whether the code is a builtin.
pub fn impersonated(name: &str) -> Option<&'static Preset> {
    let key = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let k = key(name);
    PRESETS.iter().find(|p| key(p.name) == k)
}

/// The comparison key of a spelling: lower case, ASCII letters and digits
/// only, without a `.py` extension or a trailing `bot`. `None` for anything
/// with other characters (a path, say), which names no builtin.
fn fold(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s.strip_suffix(".py").unwrap_or(s);
    let mut key = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '_' | '-' | ' ' | '.' => {}
            c if c.is_ascii_alphanumeric() => key.push(c.to_ascii_lowercase()),
            _ => return None,
        }
    }
    if let Some(stem) = key.strip_suffix("bot")
        && !stem.is_empty()
    {
        key.truncate(stem.len());
    }
    (!key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_custom_name_passes_for_a_builtin_only_when_it_spells_the_builtins_name() {
        for name in [
            "GuessBot",
            "guessbot",
            "Guess Bot",
            "GUESS_BOT",
            "Guess\u{b7}Bot",
            " guess-bot ",
        ] {
            assert_eq!(
                impersonated(name).map(|p| p.name),
                Some("GuessBot"),
                "{name:?}"
            );
        }
        assert_eq!(
            impersonated("Sealed Bid Bot").map(|p| p.name),
            Some("SealedBidBot")
        );
        for name in [
            "Guess",
            "Echo",
            "EchoBot 2",
            "GuessBotPro",
            "bot",
            "Tally",
            "",
        ] {
            assert_eq!(impersonated(name), None, "{name:?}");
        }
    }

    #[test]
    fn the_seeds_names_and_the_file_names_both_resolve_to_one_canonical_name() {
        let cases = [
            ("GuessBot", "GuessBot"),
            ("guessbot", "GuessBot"),
            ("GUESS", "GuessBot"),
            ("guess", "GuessBot"),
            ("Guess Bot", "GuessBot"),
            ("guess_bot", "GuessBot"),
            ("guess-bot", "GuessBot"),
            ("guess.py", "GuessBot"),
            ("BlackjackBot", "BlackjackBot"),
            ("black-jack", "BlackjackBot"),
            ("EchoBot", "EchoBot"),
            ("sealed_bid", "SealedBidBot"),
            ("Sealed Bid Bot", "SealedBidBot"),
            ("SealedBid", "SealedBidBot"),
            ("tlscert", "TlsCertBot"),
            ("TLS-Cert", "TlsCertBot"),
            ("context_exchange", "ContextExchangeBot"),
            ("  JudgeBot ", "JudgeBot"),
        ];
        for (asked, want) in cases {
            assert_eq!(resolve(asked).map(|p| p.name), Some(want), "{asked:?}");
        }
    }

    #[test]
    fn paths_and_unknown_names_resolve_to_nothing() {
        for asked in [
            "",
            "bot",
            "Bot",
            "nope",
            "../guess",
            "guess/../echo",
            "bots/guess.py",
            "guess\0",
            "gue$s",
            "pokerbot",
            "ｇｕｅｓｓ",
        ] {
            assert_eq!(resolve(asked), None, "{asked:?}");
        }
    }

    #[test]
    fn no_spelling_names_two_builtins() {
        let keys: HashSet<String> = PRESETS.iter().map(|p| fold(p.name).unwrap()).collect();
        assert_eq!(keys.len(), PRESETS.len());
        for p in PRESETS {
            assert_eq!(resolve(p.file), Some(p), "{p:?}: the file name names it");
            assert_eq!(resolve(p.name), Some(p));
        }
        assert_eq!(canonical("guess"), "GuessBot");
        assert_eq!(canonical("custom"), "custom");
    }

    #[test]
    fn each_builtin_file_announces_its_canonical_name() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bots");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                (p.extension()? == "py")
                    .then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
            })
            .collect();
        files.sort();
        let mut listed: Vec<String> = PRESETS.iter().map(|p| p.file.to_string()).collect();
        listed.sort();
        assert_eq!(
            files, listed,
            "every bots/*.py is a listed builtin and back"
        );
        for p in PRESETS {
            let src = std::fs::read_to_string(dir.join(format!("{}.py", p.file))).unwrap();
            assert!(
                src.contains(&format!("\"name\": \"{}\"", p.name)),
                "{}.py's MANIFEST names it {}",
                p.file,
                p.name
            );
        }
    }
}
