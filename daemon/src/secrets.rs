//! Secrets handed to clients (tokens, invite codes, rejoin tokens) and ids.
//!
//! Every secret carries 256 bits from the OS RNG and is stored only as its
//! SHA-256, compared in constant time. A secret's prefix says what it is, so a user who pastes
//! the wrong one gets a precise error, and so log scrubbing and secret
//! scanners can recognise them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a secret is for; its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    AccessToken,
    RefreshToken,
    Invite,
    Rejoin,
    AuthCode,
    ClientSecret,
    /// Binds the OAuth approval form to the browser that loaded it.
    FormToken,
    /// A read-only spectator link to a channel's page.
    PageView,
    /// A one-time link that opens a channel's page as a member's seat.
    PageLogin,
    /// The page cookie a one-time member link is exchanged for.
    PageSession,
}

impl SecretKind {
    pub fn prefix(self) -> &'static str {
        match self {
            SecretKind::AccessToken => "mcpmp_at_",
            SecretKind::RefreshToken => "mcpmp_rt_",
            SecretKind::Invite => "mcpmp_inv_",
            SecretKind::Rejoin => "mcpmp_rj_",
            SecretKind::AuthCode => "mcpmp_code_",
            SecretKind::ClientSecret => "mcpmp_cs_",
            SecretKind::FormToken => "mcpmp_form_",
            SecretKind::PageView => "mcpmp_view_",
            SecretKind::PageLogin => "mcpmp_pagein_",
            SecretKind::PageSession => "mcpmp_pgs_",
        }
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS RNG failing is not recoverable: there is no safe fallback.
    #[allow(clippy::expect_used)]
    OsRng
        .try_fill_bytes(&mut b)
        .expect("the operating system's random number generator failed");
    b
}

/// A fresh secret of the given kind (256 bits of entropy).
pub fn new_secret(kind: SecretKind) -> String {
    format!(
        "{}{}",
        kind.prefix(),
        URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    )
}

/// A fresh opaque id (96 bits), for things that are not secret.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(random_bytes::<12>()))
}

/// 128 random bits in hex: the salt of a private message's body hash, or of
/// a bot's state hashes.
pub fn new_salt() -> String {
    hex::encode(random_bytes::<16>())
}

/// 256 random bits: a bot's secret seed (`crate::bots::seed`).
pub fn new_seed() -> [u8; 32] {
    random_bytes::<32>()
}

/// SHA-256 of a secret: the only form in which it is stored.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Constant-time equality of two stored hashes.
pub fn hashes_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC timestamp with milliseconds, e.g. `2026-11-21T11:31:29.123Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's civil-from-days).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_long_and_distinct() {
        let a = new_secret(SecretKind::Invite);
        let b = new_secret(SecretKind::Invite);
        assert!(a.starts_with("mcpmp_inv_"));
        assert_eq!(a.len(), "mcpmp_inv_".len() + 43);
        assert_ne!(a, b);
        assert!(hashes_equal(&hash_secret(&a), &hash_secret(&a)));
        assert!(!hashes_equal(&hash_secret(&a), &hash_secret(&b)));
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_260_689_123), "2026-11-21T11:31:29.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
