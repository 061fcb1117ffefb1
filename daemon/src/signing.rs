//! The daemon's signing key, the list of its public keys, and the heads it
//! signs.
//!
//! A transcript's hash chain shows that a record is consistent; a signature
//! on its head shows that this daemon kept that record. The key is Ed25519,
//! read from a configured file or the systemd credential `signing-key`, or
//! generated on first start into the state directory (mode 0600). A key file
//! other users can read is refused: whoever holds the key can forge any
//! transcript this daemon could have signed.
//!
//! The public keys are listed, oldest first, with the period each signed
//! in, in `signing-keys.json` next to the database; the daemon updates the
//! list when it starts with a key it has not signed with before (after
//! `mcp-multiplayer key rotate`, or a new credential), so old transcripts
//! still verify. The list is what `/.well-known/mcp-multiplayer/keys.json`
//! serves and every export carries.
//!
//! A signed head covers `{channel_id, seq, head_hash, time, key_id}`: the
//! signed bytes are [`HEAD_TAG`] followed by the RFC 8785 canonical JSON of
//! those five fields (`docs/transcripts.md` defines it byte for byte). Heads
//! are signed when first asked for, by a sync result or an export, and kept
//! by `(channel, seq)` in a bounded cache: posting signs nothing.
//!
//! The private key never leaves this module: it is not in `Debug` output,
//! logs or `config show`.

use crate::model::Seq;
use crate::secrets::{now_ms, rfc3339_ms};
use crate::transcript::canonical;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand::TryRngCore;
use rand::rngs::OsRng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// The domain-separation tag in front of every signed head: a head
/// signature can never be taken for a signature of anything else this key
/// signs (which would get a tag of its own).
pub const HEAD_TAG: &[u8] = b"mcp-multiplayer/signed-head/v1\n";

/// The generated key's file in the state directory (PKCS#8 PEM).
pub const KEY_FILE: &str = "signing-key.pem";
/// The public key list in the state directory.
pub const KEY_LIST_FILE: &str = "signing-keys.json";
/// The systemd credential name the key is read from when loaded.
pub const CREDENTIAL: &str = "signing-key";
/// The only algorithm.
pub const ALGORITHM: &str = "Ed25519";

/// Heads kept per channel, and in all.
const CACHE_PER_CHANNEL: usize = 1024;
const CACHE_TOTAL: usize = 100_000;

/// A problem with the signing key, reported at start-up.
#[derive(Debug, Error)]
pub enum SigningError {
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SigningError {
    let path = path.to_path_buf();
    move |source| SigningError::Io { what, path, source }
}

/// One public key of the daemon's, with the period it signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PublicKey {
    /// `sha256:` + hex of the SHA-256 of the 32 public key bytes (also its
    /// fingerprint).
    pub key_id: String,
    /// Always `Ed25519`.
    pub algorithm: String,
    /// The 32 public key bytes, base64url without padding (a JWK's `x`).
    pub public_key: String,
    /// From when it signed (RFC 3339 UTC with milliseconds).
    pub valid_from: String,
    /// Until when it signed; absent for the current key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
}

/// The daemon's public keys, oldest first; the last one signs now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KeyList {
    pub keys: Vec<PublicKey>,
}

/// The daemon's signed statement that channel `channel_id` had `head_hash`
/// as the chain hash of its entry `seq` at `time`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SignedHead {
    pub channel_id: String,
    pub seq: Seq,
    /// The chain hash (`hash`) of entry `seq`: 64 lowercase hex.
    pub head_hash: String,
    /// When it was signed (RFC 3339 UTC with milliseconds).
    pub time: String,
    /// The signing key's id (see the key list).
    pub key_id: String,
    /// Ed25519 over `mcp-multiplayer/signed-head/v1\n` + the RFC 8785 JSON
    /// of the other five fields; base64url without padding.
    pub signature: String,
}

/// `sha256:<hex>` of a public key's 32 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// The exact bytes a head's signature covers.
pub fn head_message(
    channel_id: &str,
    seq: Seq,
    head_hash: &str,
    time: &str,
    key_id: &str,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Unsigned<'a> {
        channel_id: &'a str,
        head_hash: &'a str,
        key_id: &'a str,
        seq: Seq,
        time: &'a str,
    }
    let body = canonical(&Unsigned {
        channel_id,
        head_hash,
        key_id,
        seq,
        time,
    });
    let mut m = Vec::with_capacity(HEAD_TAG.len() + body.len());
    m.extend_from_slice(HEAD_TAG);
    m.extend_from_slice(body.as_bytes());
    m
}

/// Why a signed head is not valid (the head's structure and its signature;
/// whether it matches a chain is the caller's check).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeadError {
    #[error("signed by key {0}, which is not in the key list")]
    UnknownKey(String),
    #[error("the key list's entry {0} is malformed: {1}")]
    BadKey(String, String),
    #[error("the signature is not valid for key {0}")]
    BadSignature(String),
    #[error("signed at {time}, outside the period of key {key_id} ({from} to {until})")]
    OutsidePeriod {
        key_id: String,
        time: String,
        from: String,
        until: String,
    },
}

impl PublicKey {
    /// The key, checked against its id and algorithm.
    ///
    /// # Errors
    /// [`HeadError::BadKey`] naming what is wrong.
    pub fn verifying_key(&self) -> Result<VerifyingKey, HeadError> {
        let bad = |why: &str| HeadError::BadKey(self.key_id.clone(), why.to_string());
        if self.algorithm != ALGORITHM {
            return Err(bad("its algorithm is not Ed25519"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(&self.public_key)
            .map_err(|_| bad("public_key is not base64url"))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| bad("public_key is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&arr).map_err(|_| bad("not an Ed25519 point"))?;
        if key_id(&key) != self.key_id {
            return Err(bad("key_id is not the SHA-256 of public_key"));
        }
        Ok(key)
    }
}

/// Checks a head's signature against `keys`: the key is listed and well
/// formed, the signature verifies over [`head_message`], and the head's time
/// lies within the key's period.
///
/// # Errors
/// The first of these that fails.
pub fn verify_head(head: &SignedHead, keys: &[PublicKey]) -> Result<(), HeadError> {
    let entry = keys
        .iter()
        .find(|k| k.key_id == head.key_id)
        .ok_or_else(|| HeadError::UnknownKey(head.key_id.clone()))?;
    let key = entry.verifying_key()?;
    let bad = || HeadError::BadSignature(head.key_id.clone());
    let sig = URL_SAFE_NO_PAD.decode(&head.signature).map_err(|_| bad())?;
    let sig = Signature::from_slice(&sig).map_err(|_| bad())?;
    let msg = head_message(
        &head.channel_id,
        head.seq,
        &head.head_hash,
        &head.time,
        &head.key_id,
    );
    key.verify_strict(&msg, &sig).map_err(|_| bad())?;
    // The fixed-width time format compares as a string.
    let after_start = entry.valid_from.as_str() <= head.time.as_str();
    let before_end = entry
        .valid_until
        .as_deref()
        .is_none_or(|u| head.time.as_str() <= u);
    if !(after_start && before_end) {
        return Err(HeadError::OutsidePeriod {
            key_id: head.key_id.clone(),
            time: head.time.clone(),
            from: entry.valid_from.clone(),
            until: entry.valid_until.clone().unwrap_or_else(|| "now".into()),
        });
    }
    Ok(())
}

/// Where the signing key comes from, in order of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `signing_key_file` (or `MCP_MULTIPLAYER_SIGNING_KEY_FILE`): must exist.
    Configured(PathBuf),
    /// The systemd credential (`LoadCredential=signing-key:...`).
    Credential(PathBuf),
    /// Generated on first start into the state directory.
    StateDir(PathBuf),
}

impl KeySource {
    /// The source the configuration names: a configured file, else the
    /// credential when systemd passed one, else the state directory's file.
    pub fn resolve(
        configured: Option<&Path>,
        credentials_dir: Option<&Path>,
        state_dir: &Path,
    ) -> KeySource {
        if let Some(p) = configured {
            return KeySource::Configured(p.to_path_buf());
        }
        if let Some(dir) = credentials_dir {
            let p = dir.join(CREDENTIAL);
            if p.exists() {
                return KeySource::Credential(p);
            }
        }
        KeySource::StateDir(state_dir.join(KEY_FILE))
    }

    pub fn path(&self) -> &Path {
        match self {
            KeySource::Configured(p) | KeySource::Credential(p) | KeySource::StateDir(p) => p,
        }
    }
}

/// The signing key, the key list and the head cache. Cheap to clone.
#[derive(Clone)]
pub struct Signer(Arc<Inner>);

struct Inner {
    key: SigningKey,
    key_id: String,
    keys: KeyList,
    cache: Mutex<HeadCache>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The public key id only; never the key.
        f.debug_struct("Signer")
            .field("key_id", &self.0.key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct HeadCache {
    by_channel: HashMap<String, BTreeMap<Seq, SignedHead>>,
    total: usize,
}

fn random_seed() -> [u8; 32] {
    let mut b = [0u8; 32];
    // The OS RNG failing is not recoverable: there is no safe fallback.
    #[allow(clippy::expect_used)]
    OsRng
        .try_fill_bytes(&mut b)
        .expect("the operating system's random number generator failed");
    b
}

/// Writes a new PKCS#8 PEM key file at `path`, mode 0600, which must not
/// exist. Returns the key.
fn generate_key_file(path: &Path) -> Result<SigningKey, SigningError> {
    let key = SigningKey::from_bytes(&random_seed());
    // PKCS#8 v1 (the private key alone), as `openssl genpkey` writes it:
    // the form every tool reads.
    let pem = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
    .map_err(|e| SigningError::Invalid(format!("cannot encode a new signing key: {e}")))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("create", path))?;
    f.write_all(pem.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io("write", path))?;
    Ok(key)
}

/// Reads a key file, refusing one that other users may read.
fn read_key_file(path: &Path) -> Result<SigningKey, SigningError> {
    let meta = std::fs::metadata(path).map_err(io("read", path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SigningError::Invalid(format!(
            "the signing key {} can be read by other users (mode {mode:04o}); whoever reads it can forge this daemon's signed transcripts. Run `chmod 600 {}` (owned by the service's user) and start again",
            path.display(),
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(io("read", path))?;
    SigningKey::from_pkcs8_pem(text.trim()).map_err(|_| {
        SigningError::Invalid(format!(
            "{} is not an Ed25519 private key in PKCS#8 PEM (\"-----BEGIN PRIVATE KEY-----\"); make one with `openssl genpkey -algorithm ed25519`",
            path.display()
        ))
    })
}

fn public_entry(key: &VerifyingKey, from: String) -> PublicKey {
    PublicKey {
        key_id: key_id(key),
        algorithm: ALGORITHM.into(),
        public_key: URL_SAFE_NO_PAD.encode(key.as_bytes()),
        valid_from: from,
        valid_until: None,
    }
}

fn read_key_list(path: &Path) -> Result<KeyList, SigningError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            SigningError::Invalid(format!(
                "{} is not a key list ({e}); it lists the daemon's public keys: restore it from a backup",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeyList::default()),
        Err(e) => Err(io("read", path)(e)),
    }
}

fn write_key_list(path: &Path, list: &KeyList) -> Result<(), SigningError> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(list).unwrap_or_default() + "\n";
    std::fs::write(&tmp, text).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("replace", path))
}

/// The key list with `key` as the current key from `now` on: unchanged when
/// it is already current; otherwise the current key's period ends now and
/// `key` is appended.
///
/// # Errors
/// `key` is a retired key: heads it signed from now on would fall outside
/// its period, so no verifier would accept them.
fn with_current(mut list: KeyList, key: &VerifyingKey, now: &str) -> Result<KeyList, SigningError> {
    let id = key_id(key);
    if list.keys.last().is_some_and(|k| k.key_id == id) {
        return Ok(list);
    }
    if let Some(old) = list.keys.iter().find(|k| k.key_id == id) {
        return Err(SigningError::Invalid(format!(
            "the signing key {id} was retired at {}; heads it signed now would not verify. Use a new key (`mcp-multiplayer key rotate`, or a new credential)",
            old.valid_until.as_deref().unwrap_or("?")
        )));
    }
    if let Some(last) = list.keys.last_mut() {
        last.valid_until = Some(now.to_string());
    }
    list.keys.push(public_entry(key, now.to_string()));
    Ok(list)
}

impl Signer {
    /// Opens the signing key from `source` (generating the state
    /// directory's on first start) and brings the key list in `state_dir`
    /// up to date.
    ///
    /// # Errors
    /// A key file others can read, one that is not an Ed25519 PKCS#8 key, a
    /// configured file that is missing, a retired key, unwritable files.
    pub fn open(source: &KeySource, state_dir: &Path) -> Result<Signer, SigningError> {
        let key = match source {
            KeySource::StateDir(p) if !p.exists() => {
                let key = generate_key_file(p)?;
                tracing::info!(key_id = %key_id(&key.verifying_key()), file = %p.display(),
                    "generated the daemon's signing key");
                key
            }
            other => read_key_file(other.path())?,
        };
        let list_path = state_dir.join(KEY_LIST_FILE);
        let before = read_key_list(&list_path)?;
        let list = with_current(before.clone(), &key.verifying_key(), &rfc3339_ms(now_ms()))?;
        if list != before {
            write_key_list(&list_path, &list)?;
        }
        Ok(Signer::from_parts(key, list))
    }

    fn from_parts(key: SigningKey, keys: KeyList) -> Signer {
        Signer(Arc::new(Inner {
            key_id: key_id(&key.verifying_key()),
            key,
            keys,
            cache: Mutex::default(),
        }))
    }

    /// A fresh key held in memory only (tests, and daemons built without a
    /// state directory).
    pub fn ephemeral() -> Signer {
        let key = SigningKey::from_bytes(&random_seed());
        let list = KeyList {
            keys: vec![public_entry(&key.verifying_key(), rfc3339_ms(0))],
        };
        Signer::from_parts(key, list)
    }

    /// The current key's id (its fingerprint).
    pub fn key_id(&self) -> &str {
        &self.0.key_id
    }

    /// Every public key, oldest first.
    pub fn keys(&self) -> &KeyList {
        &self.0.keys
    }

    /// The head at `seq` (whose chain hash is `head_hash`), signed now or
    /// taken from the cache.
    pub fn head(&self, channel_id: &str, seq: Seq, head_hash: &str) -> SignedHead {
        if let Ok(cache) = self.0.cache.lock()
            && let Some(h) = cache.by_channel.get(channel_id).and_then(|m| m.get(&seq))
            && h.head_hash == head_hash
        {
            return h.clone();
        }
        let time = rfc3339_ms(now_ms());
        let msg = head_message(channel_id, seq, head_hash, &time, &self.0.key_id);
        let signature = URL_SAFE_NO_PAD.encode(self.0.key.sign(&msg).to_bytes());
        let head = SignedHead {
            channel_id: channel_id.to_string(),
            seq,
            head_hash: head_hash.to_string(),
            time,
            key_id: self.0.key_id.clone(),
            signature,
        };
        if let Ok(mut cache) = self.0.cache.lock() {
            cache.insert(head.clone());
        }
        head
    }

    /// The heads held for a channel up to `seq`, ascending.
    pub fn heads_until(&self, channel_id: &str, seq: Seq) -> Vec<SignedHead> {
        self.0
            .cache
            .lock()
            .ok()
            .and_then(|c| {
                c.by_channel
                    .get(channel_id)
                    .map(|m| m.range(..=seq).map(|(_, h)| h.clone()).collect())
            })
            .unwrap_or_default()
    }
}

impl HeadCache {
    fn insert(&mut self, head: SignedHead) {
        if self.total >= CACHE_TOTAL {
            // A cache: every head can be signed again. Dropping whole
            // channels keeps this O(1) per head on average.
            let victims: Vec<String> = self.by_channel.keys().take(16).cloned().collect();
            for v in victims {
                if let Some(m) = self.by_channel.remove(&v) {
                    self.total -= m.len();
                }
            }
        }
        let m = self.by_channel.entry(head.channel_id.clone()).or_default();
        if m.insert(head.seq, head).is_none() {
            self.total += 1;
        }
        if m.len() > CACHE_PER_CHANNEL {
            m.pop_first();
            self.total -= 1;
        }
    }
}

/// `config check`: whether `source` holds a usable key (or the state
/// directory's will be generated), as a sentence; the key is not shown.
///
/// # Errors
/// What `serve` would refuse about the key file.
pub fn check(source: &KeySource) -> Result<String, SigningError> {
    match source {
        KeySource::StateDir(p) if !p.exists() => Ok(format!(
            "no signing key yet: the daemon generates {} on first start",
            p.display()
        )),
        other => {
            let key = read_key_file(other.path())?;
            Ok(format!(
                "the signing key {} is private and readable (key id {})",
                other.path().display(),
                key_id(&key.verifying_key())
            ))
        }
    }
}

/// `mcp-multiplayer key rotate`: replaces the state directory's key with a
/// new one. The daemon signs with it from its next start, when it ends the
/// old key's period in the key list (the old key stays listed). Returns the
/// new key's id.
///
/// # Errors
/// The key comes from a configured file or a credential (replace that
/// instead), or the files cannot be written.
pub fn rotate(source: &KeySource) -> Result<String, SigningError> {
    let KeySource::StateDir(path) = source else {
        return Err(SigningError::Invalid(format!(
            "the signing key is read from {}, not generated by the daemon: put a new key there (`openssl genpkey -algorithm ed25519`) and restart the daemon; it lists the new key from then on and keeps the old one listed",
            source.path().display()
        )));
    };
    let tmp = path.with_extension("pem.new");
    let _ = std::fs::remove_file(&tmp);
    let key = generate_key_file(&tmp)?;
    std::fs::rename(&tmp, path).map_err(io("replace", path))?;
    Ok(key_id(&key.verifying_key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("mcpmp-signing-{}", crate::secrets::new_salt()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_head_signs_the_tagged_canonical_json_of_its_five_fields() {
        let s = Signer::ephemeral();
        let h = s.head("ch_1", 7, &"ab".repeat(32));
        let msg = head_message("ch_1", 7, &"ab".repeat(32), &h.time, s.key_id());
        let text = String::from_utf8(msg).unwrap();
        assert_eq!(
            text,
            format!(
                "mcp-multiplayer/signed-head/v1\n{{\"channel_id\":\"ch_1\",\"head_hash\":\"{}\",\"key_id\":\"{}\",\"seq\":7,\"time\":\"{}\"}}",
                "ab".repeat(32),
                s.key_id(),
                h.time
            )
        );
        assert_eq!(verify_head(&h, &s.keys().keys), Ok(()));
        // Cached by (channel, seq): the same head again.
        assert_eq!(s.head("ch_1", 7, &"ab".repeat(32)), h);
        assert_eq!(s.heads_until("ch_1", 7), vec![h]);
    }

    #[test]
    fn every_changed_field_or_foreign_key_breaks_a_head() {
        let s = Signer::ephemeral();
        let other = Signer::ephemeral();
        let h = s.head("ch_1", 3, &"cd".repeat(32));
        let keys = &s.keys().keys;
        let mut cases: Vec<(&str, SignedHead)> = Vec::new();
        let mut c = h.clone();
        c.channel_id = "ch_2".into();
        cases.push(("channel", c));
        let mut c = h.clone();
        c.seq = 4;
        cases.push(("seq", c));
        let mut c = h.clone();
        c.head_hash = "ce".repeat(32);
        cases.push(("hash", c));
        let mut c = h.clone();
        c.time = "2026-01-01T00:00:00.001Z".into();
        cases.push(("time", c));
        for (what, c) in cases {
            assert_eq!(
                verify_head(&c, keys),
                Err(HeadError::BadSignature(s.key_id().into())),
                "{what}"
            );
        }
        // Signed by another key that is not listed.
        let forged = other.head("ch_1", 3, &"cd".repeat(32));
        assert!(matches!(
            verify_head(&forged, keys),
            Err(HeadError::UnknownKey(_))
        ));
        // Another key's signature under this key's id.
        let mut swapped = forged.clone();
        swapped.key_id = s.key_id().into();
        assert!(matches!(
            verify_head(&swapped, keys),
            Err(HeadError::BadSignature(_))
        ));
        // A listed key whose id is not its hash.
        let mut lying = keys.clone();
        lying[0].public_key = other.keys().keys[0].public_key.clone();
        assert!(matches!(
            verify_head(&h, &lying),
            Err(HeadError::BadKey(..))
        ));
    }

    #[test]
    fn a_head_outside_its_keys_period_is_refused() {
        let s = Signer::ephemeral();
        let h = s.head("ch_1", 1, &"00".repeat(32));
        let mut keys = s.keys().keys.clone();
        keys[0].valid_until = Some("2001-01-01T00:00:00.000Z".into());
        assert!(matches!(
            verify_head(&h, &keys),
            Err(HeadError::OutsidePeriod { .. })
        ));
    }

    #[test]
    fn the_state_dir_key_is_generated_0600_and_reused() {
        let d = dir();
        let src = KeySource::resolve(None, None, &d);
        assert_eq!(src, KeySource::StateDir(d.join(KEY_FILE)));
        let a = Signer::open(&src, &d).unwrap();
        let mode = std::fs::metadata(d.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = Signer::open(&src, &d).unwrap();
        assert_eq!(a.key_id(), b.key_id());
        assert_eq!(b.keys().keys.len(), 1);
        let text = std::fs::read_to_string(d.join(KEY_FILE)).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
        // The key is not in the Debug output, nor in the key list.
        assert!(!format!("{a:?}").contains("PRIVATE"));
        let list = std::fs::read_to_string(d.join(KEY_LIST_FILE)).unwrap();
        let der = text.lines().nth(1).unwrap();
        assert!(!list.contains(der));
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_with_a_sentence() {
        let d = dir();
        let src = KeySource::resolve(None, None, &d);
        Signer::open(&src, &d).unwrap();
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(d.join(KEY_FILE), std::fs::Permissions::from_mode(mode))
                .unwrap();
            let e = Signer::open(&src, &d).unwrap_err().to_string();
            assert!(e.contains("can be read by other users"), "{e}");
            assert!(e.contains("chmod 600"), "{e}");
        }
    }

    #[test]
    fn rotation_keeps_the_old_key_listed_with_its_period() {
        let d = dir();
        let src = KeySource::resolve(None, None, &d);
        let old = Signer::open(&src, &d).unwrap();
        let old_head = old.head("ch_1", 5, &"11".repeat(32));
        let new_id = rotate(&src).unwrap();
        assert_ne!(new_id, old.key_id());
        let new = Signer::open(&src, &d).unwrap();
        assert_eq!(new.key_id(), new_id);
        let keys = &new.keys().keys;
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].key_id, old.key_id());
        assert!(keys[0].valid_until.is_some());
        assert_eq!(keys[1].valid_from, keys[0].valid_until.clone().unwrap());
        // Old heads still verify against the new list; new heads too.
        assert_eq!(verify_head(&old_head, keys), Ok(()));
        let new_head = new.head("ch_1", 6, &"22".repeat(32));
        assert_eq!(verify_head(&new_head, keys), Ok(()));
        // The retired key cannot come back.
        let list = read_key_list(&d.join(KEY_LIST_FILE)).unwrap();
        let e =
            with_current(list, &old.0.key.verifying_key(), "2099-01-01T00:00:00.000Z").unwrap_err();
        assert!(e.to_string().contains("was retired"), "{e}");
    }

    #[test]
    fn a_configured_or_credential_key_is_read_and_not_rotated_here() {
        let d = dir();
        let creds = dir();
        // A credential in the directory systemd names wins over the state dir.
        let pem = SigningKey::from_bytes(&[7u8; 32])
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        let cred = creds.join(CREDENTIAL);
        std::fs::write(&cred, pem.as_bytes()).unwrap();
        std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o400)).unwrap();
        let src = KeySource::resolve(None, Some(&creds), &d);
        assert_eq!(src, KeySource::Credential(cred.clone()));
        let s = Signer::open(&src, &d).unwrap();
        assert_eq!(
            s.key_id(),
            key_id(&SigningKey::from_bytes(&[7u8; 32]).verifying_key())
        );
        assert!(!d.join(KEY_FILE).exists(), "nothing generated");
        let e = rotate(&src).unwrap_err().to_string();
        assert!(e.contains("put a new key there"), "{e}");
        // A configured file wins over both, and must exist.
        let missing = d.join("nope.pem");
        let src = KeySource::resolve(Some(&missing), Some(&creds), &d);
        assert_eq!(src, KeySource::Configured(missing));
        assert!(Signer::open(&src, &d).is_err());
        // Not a key.
        let junk = d.join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = Signer::open(&KeySource::Configured(junk), &d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("PKCS#8"), "{e}");
    }
}
