//! The one check of a hook's outcome, shared by the runner and the daemon.
//!
//! A hook's outcome is untrusted input: the harness writes it to fd 3, but a
//! bot that got past the language layer (or a network bot holding sockets)
//! can write that descriptor itself. So every rule about what an outcome may
//! contain lives here, once, and both the runner (on what fd 3 says) and the
//! daemon (on what the runner prints) call [`Limits::check`]. The harness
//! applies the same rules early, at the offending `ctx.post` line, as a
//! courtesy to bot authors; `protocol/tests/outcome-cases.json` is the table
//! of edge cases every layer is tested against, and
//! `bots/harness/PROTOCOL.md` states the rules for readers of the Python side.
//!
//! Sizes are measured one way everywhere: [`canonical_size`], the length in
//! bytes of the value's canonical JSON (RFC 8785), which is the form the
//! daemon stores and hashes.

use crate::{Hook, HookError, HookOutcome, Limits, Player, Post};
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;

/// Most characters in a post's type.
pub const MAX_KIND_CHARS: usize = 64;

/// Post types a bot may not use: the daemon's own message kinds. A bot's
/// post type is shown next to its message, so it must not read as a user,
/// system or control message. (Event types such as `seat:filled` hold a
/// `:`, which no post type may contain.)
pub const RESERVED_KINDS: [&str; 4] = ["system", "control", "user", "bot"];

/// Most characters in a [`HookError`]'s `message` (channel members read it).
pub const MAX_ERROR_MESSAGE_CHARS: usize = 2_000;

/// Most characters in an exception's `traceback`.
pub const MAX_TRACEBACK_CHARS: usize = 16_000;

/// Who wrote the outcome being checked.
///
/// The runner produces some errors itself (a confinement step failed, the
/// deadline passed, it misbehaved); the harness never does. An outcome read
/// from fd 3 that claims one of them was forged by bot code, while the same
/// error printed by the runner is genuine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Fd 3 of the hook: the harness, or bot code that reached the descriptor.
    Harness,
    /// The runner's stdout, as the daemon reads it.
    Runner,
}

/// Why an outcome breaks the protocol: one sentence a channel member can
/// read. It becomes [`HookError::Limit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(String);

impl Violation {
    fn new(message: impl Into<String>) -> Self {
        Violation(message.into())
    }

    /// The sentence.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Violation {}

impl From<Violation> for HookError {
    fn from(v: Violation) -> Self {
        HookError::Limit { message: v.0 }
    }
}

impl Limits {
    /// Checks a hook's outcome against these limits and the protocol's rules.
    ///
    /// `hook` is the hook that ran, `players` the job's `context.players`
    /// (the only labels a private post may name), `origin` who wrote the
    /// outcome. The rules, in the order they are checked (the first broken
    /// one is reported, the same one the harness reports at `ctx.post`):
    ///
    /// * each post in turn: at most `max_posts` posts; a type of 1 to
    ///   [`MAX_KIND_CHARS`] characters, a lowercase ASCII letter then `a-z`,
    ///   `0-9`, `_`, `.` or `-`, and none of [`RESERVED_KINDS`]; a body of at
    ///   most `max_post_bytes` ([`canonical_size`]); `to`, when present, a
    ///   non-empty list of player labels, each listed once;
    /// * the state: a JSON object of at most `max_state_bytes`;
    /// * `manifest` only on an `inspect` outcome, which must carry one (an
    ///   object) and make no posts;
    /// * an error: from fd 3 ([`Origin::Harness`]) only the kinds the harness
    ///   produces (syntax, policy, exception, limit, memory, output overrun);
    ///   its message at most [`MAX_ERROR_MESSAGE_CHARS`] characters, a
    ///   traceback at most [`MAX_TRACEBACK_CHARS`].
    ///
    /// # Errors
    /// The first rule the outcome breaks.
    ///
    /// # Example
    /// ```
    /// use hook_protocol::{Hook, HookOutcome, Limits, Origin, Player, Post};
    /// use serde_json::json;
    ///
    /// let players = [Player { label: "alice".into(), slot: "invite:alice".into(), filled: true }];
    /// let outcome = HookOutcome::Ok {
    ///     posts: vec![Post { kind: "system".into(), body: json!("hi"), to: None }],
    ///     state: json!({}),
    ///     logs: String::new(),
    ///     timings: Default::default(),
    ///     manifest: None,
    /// };
    /// let refused = Limits::default().check(&outcome, &Hook::OnInit, &players, Origin::Runner);
    /// assert_eq!(
    ///     refused.unwrap_err().message(),
    ///     "the post type 'system' is reserved for the daemon's own messages"
    /// );
    /// ```
    pub fn check(
        &self,
        outcome: &HookOutcome,
        hook: &Hook,
        players: &[Player],
        origin: Origin,
    ) -> Result<(), Violation> {
        match outcome {
            HookOutcome::Ok {
                posts,
                state,
                manifest,
                ..
            } => {
                for (i, post) in posts.iter().enumerate() {
                    if i >= self.max_posts {
                        return Err(Violation::new(format!(
                            "{} posts: at most {} posts per hook",
                            posts.len(),
                            self.max_posts
                        )));
                    }
                    self.check_post(post, players)?;
                }
                self.check_state(state)?;
                check_manifest(hook, posts, manifest.as_ref())
            }
            HookOutcome::Error { error } => check_error(error, origin),
        }
    }

    /// [`Limits::check`], applied: the outcome itself if it keeps the rules,
    /// otherwise a [`HookError::Limit`] saying which rule it broke.
    pub fn enforce(
        &self,
        outcome: HookOutcome,
        hook: &Hook,
        players: &[Player],
        origin: Origin,
    ) -> HookOutcome {
        match self.check(&outcome, hook, players, origin) {
            Ok(()) => outcome,
            Err(v) => HookOutcome::Error { error: v.into() },
        }
    }

    fn check_post(&self, post: &Post, players: &[Player]) -> Result<(), Violation> {
        check_kind(&post.kind)?;
        let size = canonical_size(&post.body);
        if size > self.max_post_bytes {
            return Err(Violation::new(format!(
                "a post body of {size} bytes is over the limit of {}",
                self.max_post_bytes
            )));
        }
        if let Some(to) = &post.to {
            check_recipients(to, players)?;
        }
        Ok(())
    }

    fn check_state(&self, state: &Value) -> Result<(), Violation> {
        if !state.is_object() {
            return Err(Violation::new("the state must be a JSON object"));
        }
        let size = canonical_size(state);
        if size > self.max_state_bytes {
            return Err(Violation::new(format!(
                "a state of {size} bytes is over the limit of {}",
                self.max_state_bytes
            )));
        }
        Ok(())
    }
}

/// Checks a post's type (`ctx.post(kind, ...)`); see [`Limits::check`].
///
/// # Errors
/// The rule the type breaks.
pub fn check_kind(kind: &str) -> Result<(), Violation> {
    let n = kind.chars().count();
    if n == 0 || n > MAX_KIND_CHARS {
        return Err(Violation::new(format!(
            "a post type has 1 to {MAX_KIND_CHARS} characters, not {n}"
        )));
    }
    let mut chars = kind.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c))
    {
        return Err(Violation::new(
            "a post type starts with a lowercase letter and holds only a-z, 0-9, '_', '.' and '-'",
        ));
    }
    if RESERVED_KINDS.contains(&kind) {
        return Err(Violation::new(format!(
            "the post type '{kind}' is reserved for the daemon's own messages"
        )));
    }
    Ok(())
}

/// Checks a private post's recipients against the channel's players.
///
/// # Errors
/// An empty list, a label that is not a player's (a bot's slot, a slot id,
/// an unknown name), or a label listed twice.
pub fn check_recipients(to: &[String], players: &[Player]) -> Result<(), Violation> {
    if to.is_empty() {
        return Err(Violation::new(
            "a private post needs at least one recipient",
        ));
    }
    let mut seen = HashSet::with_capacity(to.len());
    for label in to {
        if !players.iter().any(|p| &p.label == label) {
            return Err(Violation::new(format!(
                "a post is addressed to {}, which is not a player of this channel",
                quoted(label)
            )));
        }
        if !seen.insert(label.as_str()) {
            return Err(Violation::new(format!(
                "a post lists the recipient {} twice",
                quoted(label)
            )));
        }
    }
    Ok(())
}

fn check_manifest(hook: &Hook, posts: &[Post], manifest: Option<&Value>) -> Result<(), Violation> {
    match (hook, manifest) {
        (Hook::Inspect, Some(m)) => {
            if !m.is_object() {
                return Err(Violation::new("the manifest must be a JSON object"));
            }
            if !posts.is_empty() {
                return Err(Violation::new("the inspect hook makes no posts"));
            }
            Ok(())
        }
        (Hook::Inspect, None) => Err(Violation::new("the inspect hook must report a manifest")),
        (_, Some(_)) => Err(Violation::new("only the inspect hook reports a manifest")),
        (_, None) => Ok(()),
    }
}

fn check_error(error: &HookError, origin: Origin) -> Result<(), Violation> {
    let runner_only = match error {
        HookError::Timeout { .. } => Some("timeout"),
        HookError::Confinement { .. } => Some("confinement"),
        HookError::Internal { .. } => Some("internal"),
        HookError::Syntax { .. }
        | HookError::Policy { .. }
        | HookError::Exception { .. }
        | HookError::Memory { .. }
        | HookError::OutputOverrun { .. }
        | HookError::Limit { .. } => None,
    };
    if let (Origin::Harness, Some(kind)) = (origin, runner_only) {
        return Err(Violation::new(format!(
            "the hook reported an error of kind '{kind}', which only the sandbox runner or the daemon can report"
        )));
    }
    let (message, traceback) = match error {
        HookError::Exception { message, traceback } => (message, Some(traceback)),
        HookError::Syntax { message, .. }
        | HookError::Policy { message, .. }
        | HookError::Timeout { message }
        | HookError::Memory { message }
        | HookError::OutputOverrun { message }
        | HookError::Limit { message }
        | HookError::Confinement { message, .. }
        | HookError::Internal { message, .. } => (message, None),
    };
    let n = message.chars().count();
    if n > MAX_ERROR_MESSAGE_CHARS {
        return Err(Violation::new(format!(
            "an error message of {n} characters is over the limit of {MAX_ERROR_MESSAGE_CHARS}"
        )));
    }
    if let Some(tb) = traceback {
        let n = tb.chars().count();
        if n > MAX_TRACEBACK_CHARS {
            return Err(Violation::new(format!(
                "a traceback of {n} characters is over the limit of {MAX_TRACEBACK_CHARS}"
            )));
        }
    }
    Ok(())
}

/// A label for a message: JSON-quoted, cut to 40 characters, so a forged
/// label can neither break the line nor flood it.
fn quoted(label: &str) -> String {
    let cut: String = label.chars().take(40).collect();
    let q = serde_json::to_string(&cut).unwrap_or_else(|_| "\"?\"".into());
    if cut.len() < label.len() {
        format!("{q}…")
    } else {
        q
    }
}

/// The size of a JSON value as the protocol measures it: the length in bytes
/// of its canonical JSON (RFC 8785: no whitespace, keys sorted, strings in
/// UTF-8 with only `"`, `\` and control characters escaped, numbers written
/// as ECMAScript writes a double, e.g. `1.0` as `1` and `1e21` as `1e+21`).
/// That is the form the daemon stores and hashes, so a limit on it is a
/// limit on what the transcript carries.
pub fn canonical_size(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json_canonicalizer::to_writer(value, &mut count) {
        Ok(()) => count.0,
        // Unreachable for a `Value` (its numbers are finite), and a value
        // that cannot be measured is over every limit.
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests;
