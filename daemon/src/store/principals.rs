//! SQL of principals and bearer tokens (`principals`, `access_tokens`).
//!
//! Every `/mcp` request carries `Authorization: Bearer <token>`. Tokens are
//! opaque, stored only as SHA-256 hashes, and checked on every request for
//! expiry, revocation and audience. `mcp-multiplayer token create NAME` issues
//! long-lived tokens for scripts and headless agents; the OAuth server issues
//! short-lived ones into the same table.

use super::db::Connection;
use super::{Store, StoreError};
use crate::model::{Credential, Principal};
use crate::secrets::{self, SecretKind};
use rusqlite::{OptionalExtension, params};

/// Why a bearer token was refused. Never includes the token. (A missing
/// header is the HTTP layer's to see; it never reaches the store.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    /// Unknown, expired, revoked, or issued for another resource.
    Invalid,
}

/// Issues a long-lived token for the CLI principal `name`, creating the
/// principal on first use. Returns the token (shown once, stored hashed).
pub async fn create_cli_token(store: &Store, name: &str) -> Result<String, StoreError> {
    let token = secrets::new_secret(SecretKind::AccessToken);
    let hash = secrets::hash_secret(&token);
    let name = name.to_string();
    store
        .sql_write(move |c| {
            let now = secrets::now_ms();
            let existing: Option<String> = c
                .query_row(
                    "SELECT id FROM principals WHERE kind = 'cli' AND name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()?;
            let pid = match existing {
                Some(id) => id,
                None => {
                    let id = secrets::new_id("p_");
                    c.execute(
                        "INSERT INTO principals (id, name, kind, created_at) VALUES (?1, ?2, 'cli', ?3)",
                        params![id, name, now],
                    )?;
                    id
                }
            };
            c.execute(
                "INSERT INTO access_tokens (token_hash, principal_id, kind, created_at) VALUES (?1, ?2, 'cli', ?3)",
                params![hash, pid, now],
            )?;
            Ok::<_, StoreError>(())
        })
        .await?;
    Ok(token)
}

/// Revokes every token of the CLI principal `name`, and every channel page
/// link it minted with them (`super::links::revoke_of_principal`). Returns
/// how many tokens.
pub async fn revoke_cli_tokens(store: &Store, name: &str) -> Result<usize, StoreError> {
    let name = name.to_string();
    store
        .sql_write(move |c| {
            let n = c.execute(
                "UPDATE access_tokens SET revoked = 1 WHERE revoked = 0 AND principal_id IN
                 (SELECT id FROM principals WHERE kind = 'cli' AND name = ?1)",
                params![name],
            )?;
            let principal: Option<String> = c
                .query_row(
                    "SELECT id FROM principals WHERE kind = 'cli' AND name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(p) = principal {
                super::links::revoke_of_principal(c, &p, secrets::now_ms())?;
            }
            Ok::<_, StoreError>(n)
        })
        .await
}

/// The principal a bearer token names, if the token is valid for `resource`.
/// A token found valid is remembered until any token is revoked (see
/// [`super::tokens`]), so most requests need no database read.
pub async fn authenticate(
    store: &Store,
    token: &str,
    resource: &str,
) -> Result<Result<Principal, TokenRejection>, StoreError> {
    let hash = secrets::hash_secret(token);
    let cache = store.tokens();
    if let Some(p) = cache.get(&hash, resource, secrets::now_ms()) {
        return Ok(Ok(p));
    }
    // Taken before the read: a revocation committed meanwhile keeps what
    // the read found from being remembered.
    let as_of = cache.epoch();
    let key = hash.clone();
    let resource = resource.to_string();
    let found = store
        .sql_read(move |c| {
            #[allow(clippy::type_complexity)]
            let row: Option<(
                Vec<u8>,
                String,
                String,
                Option<String>,
                Option<i64>,
                i64,
            )> = c
                .prepare_cached(
                    "SELECT t.token_hash, p.id, p.name, t.resource, t.expires_at, t.revoked
                     FROM access_tokens t JOIN principals p ON p.id = t.principal_id
                     WHERE t.token_hash = ?1",
                )?
                .query_row(params![key], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .optional()?;
            let Some((stored, id, name, aud, exp, revoked)) = row else {
                return Ok(None);
            };
            let valid = secrets::hashes_equal(&stored, &key)
                && revoked == 0
                && exp.is_none_or(|e| e > secrets::now_ms())
                // RFC 8707: a token bound to a resource is good only there.
                && aud.as_deref().is_none_or(|a| a == resource);
            Ok::<_, StoreError>(valid.then_some((
                Principal {
                    id,
                    name,
                    credential: Credential::Token(stored),
                },
                aud,
                exp,
            )))
        })
        .await?;
    Ok(match found {
        Some((principal, aud, exp)) => {
            cache.put(hash, &principal, aud, exp, as_of);
            Ok(principal)
        }
        None => Err(TokenRejection::Invalid),
    })
}

/// Whether the credential a request was authenticated with is still good:
/// not revoked, not expired. A call that waits (a long-poll, a resource
/// subscription) asks this again before it delivers anything, in the same
/// read as what it delivers; the token's audience and principal cannot
/// change, so they are not asked again.
pub(super) fn credential_valid(
    c: &Connection,
    credential: &Credential,
) -> Result<bool, StoreError> {
    let hash = match credential {
        Credential::Unauthenticated => return Ok(true),
        Credential::Token(h) => h,
    };
    let row: Option<(Option<i64>, i64)> = c
        .prepare_cached("SELECT expires_at, revoked FROM access_tokens WHERE token_hash = ?1")?
        .query_row(params![hash], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.is_some_and(|(exp, revoked)| revoked == 0 && exp.is_none_or(|e| e > secrets::now_ms())))
}

/// The principal used when `--unsafe-no-auth` is on.
pub async fn anonymous_principal(store: &Store) -> Result<Principal, StoreError> {
    store
        .sql_write(|c| {
            c.execute(
                "INSERT INTO principals (id, name, kind, created_at) VALUES ('p_anonymous', 'anonymous', 'anonymous', ?1) ON CONFLICT DO NOTHING",
                params![secrets::now_ms()],
            )?;
            Ok::<_, StoreError>(Principal {
                id: "p_anonymous".into(),
                name: "anonymous".into(),
                credential: Credential::Unauthenticated,
            })
        })
        .await
}

/// A principal as `mcp-multiplayer principal list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalSummary {
    pub id: String,
    pub name: String,
    /// `cli`, `oauth` or `anonymous`.
    pub kind: String,
    /// Unix ms.
    pub created_at: i64,
    /// Access tokens not revoked and not expired.
    pub live_tokens: i64,
    /// Channels it administers.
    pub channels: i64,
    /// Seats it holds.
    pub seats: i64,
}

/// Every principal, oldest first.
pub async fn list(store: &Store) -> Result<Vec<PrincipalSummary>, StoreError> {
    let now = secrets::now_ms();
    store
        .sql_read(move |c| {
            let mut st = c.prepare(
                "SELECT p.id, p.name, p.kind, p.created_at,
                   (SELECT count(*) FROM access_tokens t WHERE t.principal_id = p.id AND t.revoked = 0
                      AND (t.expires_at IS NULL OR t.expires_at > ?1)),
                   (SELECT count(*) FROM channels ch WHERE ch.admin_principal = p.id),
                   (SELECT count(*) FROM slots s WHERE s.principal_id = p.id)
                 FROM principals p ORDER BY p.created_at, p.id",
            )?;
            let rows = st
                .query_map(params![now], |r| {
                    Ok(PrincipalSummary {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        kind: r.get(2)?,
                        created_at: r.get(3)?,
                        live_tokens: r.get(4)?,
                        channels: r.get(5)?,
                        seats: r.get(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, StoreError>(rows)
        })
        .await
}
