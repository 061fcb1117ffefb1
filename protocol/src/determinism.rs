//! What makes a hook a function of its inputs: the job's `entropy` and `now`.
//!
//! A referee is only checkable after the fact if running its code again on
//! the same inputs gives the same posts and state. Two inputs are not in the
//! transcript: the randomness a bot draws and the time it reads. The job
//! therefore carries both when the daemon wants the hook to be replayable:
//!
//! * [`Entropy`]: 32 secret bytes, the hook's own seed. Every source of
//!   randomness bot code can reach draws from the generator keyed by it
//!   ([`Entropy::block`], [`Entropy::stream`]): `os.urandom` (and with it
//!   `random.SystemRandom` and `secrets`) reads the stream labelled
//!   [`URANDOM`]; the n-th seeding of a Mersenne Twister from the OS (the
//!   `random` module's own generator, `random.Random()`, `random.seed()`)
//!   uses block n of [`RANDOM_SEED`]; the interpreter's string hashes use
//!   the seed [`Entropy::python_hash_seed`], which the runner passes as
//!   `PYTHONHASHSEED`.
//! * [`Timestamp`]: the triggering message's `ts`. The wall clock a bot
//!   reads (`time.time()`, `datetime.now()`, ...) stands still at it.
//!
//! The generator is HMAC-SHA256 in counter mode, so that anyone holding the
//! entropy (after the daemon reveals the seed it came from) can re-derive in
//! any language what a bot drew:
//!
//! ```text
//! block(label, i) = HMAC-SHA256(key = entropy, message = label || 0x00 || u64_be(i))
//! stream(label)   = block(label, 0) || block(label, 1) || block(label, 2) || ...
//! ```
//!
//! Labels are ASCII without NUL, so `label || 0x00` never collides between
//! labels. Entropy is a secret until the reveal: its `Debug` prints nothing
//! of it. `bots/harness/PROTOCOL.md` ("Determinism") says what the harness
//! does with each field and what stays outside their reach;
//! `protocol/tests/determinism-vectors.json` holds test vectors, computed
//! with Python's `hmac` module, that the crate and the harness are both
//! checked against.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Label of the stream `os.urandom` reads (and through it
/// `random.SystemRandom` and `secrets`), consumed in call order.
pub const URANDOM: &[u8] = b"urandom";
/// Label of the seeds of Mersenne Twister generators seeded "from the OS":
/// the n-th such seeding in a hook uses block n.
pub const RANDOM_SEED: &[u8] = b"random.seed";
/// Label of the interpreter's hash seed (`PYTHONHASHSEED`).
pub const PYTHON_HASH_SEED: &[u8] = b"pythonhashseed";
/// Label under which [`Entropy::for_hook`] derives a hook's entropy from a
/// bot's seed.
pub const HOOK: &[u8] = b"hook";

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// A hook's entropy: 32 secret bytes, sent as 64 lowercase hex digits.
///
/// When a job carries it, everything random a bot can reach comes from it
/// (see the module docs), so the same entropy and the same inputs give the
/// same outcome. Two hooks must never share one: the daemon derives each
/// hook's from the bot's secret seed and the triggering message's seq
/// ([`Entropy::for_hook`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Entropy([u8; 32]);

impl Entropy {
    /// Entropy from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Entropy {
        Entropy(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The entropy of one hook of a bot: block `seq` of the bot seed's
    /// stream [`HOOK`], i.e. `HMAC-SHA256(bot_seed, "hook" || 0x00 ||
    /// u64_be(seq))`, where `seq` is the triggering message's seq. Distinct
    /// seqs give independent entropies, and whoever learns one of them learns
    /// nothing of the bot seed or of the others; whoever is given the bot
    /// seed (when the daemon reveals it) re-derives them all.
    pub fn for_hook(bot_seed: &Entropy, seq: u64) -> Entropy {
        Entropy(bot_seed.block(HOOK, seq))
    }

    /// Block `index` of the stream `label`:
    /// `HMAC-SHA256(self, label || 0x00 || u64_be(index))`.
    pub fn block(&self, label: &[u8], index: u64) -> [u8; 32] {
        let mut message = Vec::with_capacity(label.len() + 9);
        message.extend_from_slice(label);
        message.push(0);
        message.extend_from_slice(&index.to_be_bytes());
        hmac_sha256(&self.0, &message)
    }

    /// The first `len` bytes of the stream `label`.
    pub fn stream(&self, label: &[u8], len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 32);
        let mut index = 0;
        while out.len() < len {
            out.extend_from_slice(&self.block(label, index));
            index += 1;
        }
        out.truncate(len);
        out
    }

    /// The interpreter's hash seed for this hook: the first four bytes of
    /// stream [`PYTHON_HASH_SEED`] as a big-endian `u32` (the range
    /// `PYTHONHASHSEED` accepts). It fixes the hashes of `str` and `bytes`,
    /// and with them the iteration order of sets and the slots of dicts
    /// keyed by strings.
    pub fn python_hash_seed(&self) -> u32 {
        let b = self.block(PYTHON_HASH_SEED, 0);
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The wire form: 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 15)] as char);
        }
        s
    }
}

/// Why a job's `entropy` or `now` is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadField(String);

impl fmt::Display for BadField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadField {}

impl FromStr for Entropy {
    type Err = BadField;

    /// Exactly 64 lowercase hex digits: one spelling per value, so that a
    /// replayer comparing jobs compares bytes.
    fn from_str(s: &str) -> Result<Entropy, BadField> {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(BadField(format!(
                "entropy must be 64 lowercase hex digits (32 bytes), not {} characters",
                s.chars().count()
            )));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => out[i] = hi << 4 | lo,
                _ => {
                    return Err(BadField(
                        "entropy must be 64 lowercase hex digits (0-9, a-f)".into(),
                    ));
                }
            }
        }
        Ok(Entropy(out))
    }
}

/// Prints nothing of the value: entropy is secret until its seed is revealed,
/// and jobs end up in logs.
impl fmt::Debug for Entropy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Entropy(<secret>)")
    }
}

impl Serialize for Entropy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Entropy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Entropy, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An instant in UTC with millisecond precision, written as the transcript
/// writes a message's `ts`: `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339 with
/// exactly three fraction digits and `Z`), from 1970 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    unix_ms: i64,
}

/// Largest instant a [`Timestamp`] holds: 9999-12-31T23:59:59.999Z.
const MAX_UNIX_MS: i64 = 253_402_300_799_999;

impl Timestamp {
    /// The instant `unix_ms` milliseconds after the Unix epoch, if it lies in
    /// 1970..=9999.
    pub fn from_unix_ms(unix_ms: i64) -> Option<Timestamp> {
        (0..=MAX_UNIX_MS)
            .contains(&unix_ms)
            .then_some(Timestamp { unix_ms })
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_ms(&self) -> i64 {
        self.unix_ms
    }
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count from 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

impl FromStr for Timestamp {
    type Err = BadField;

    fn from_str(s: &str) -> Result<Timestamp, BadField> {
        let bad = || {
            BadField(format!(
                "now must be a UTC time written YYYY-MM-DDTHH:MM:SS.mmmZ (as a message's ts), \
                 from 1970 to 9999; got {:?}",
                s.chars().take(40).collect::<String>()
            ))
        };
        let b = s.as_bytes();
        const SHAPE: &[u8; 24] = b"dddd-dd-ddTdd:dd:dd.dddZ";
        if b.len() != SHAPE.len()
            || !b.iter().zip(SHAPE).all(|(&c, &want)| match want {
                b'd' => c.is_ascii_digit(),
                _ => c == want,
            })
        {
            return Err(bad());
        }
        let num = |from: usize, to: usize| {
            b[from..to]
                .iter()
                .fold(0i64, |n, &c| n * 10 + i64::from(c - b'0'))
        };
        let (y, mo, d) = (num(0, 4), num(5, 7), num(8, 10));
        let (h, mi, sec, ms) = (num(11, 13), num(14, 16), num(17, 19), num(20, 23));
        if y < 1970 || !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
            return Err(bad());
        }
        if h > 23 || mi > 59 || sec > 59 {
            return Err(bad());
        }
        let days = days_from_civil(y, mo, d);
        Ok(Timestamp {
            unix_ms: ((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + ms,
        })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.unix_ms.rem_euclid(1000);
        let secs = self.unix_ms.div_euclid(1000);
        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
        let t = secs.rem_euclid(86_400);
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            t / 3600,
            t / 60 % 60,
            t % 60
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
