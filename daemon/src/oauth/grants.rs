//! Every SQL statement of the authorization server: clients (registered or
//! fetched as metadata documents), sign-ins waiting for approval, grants,
//! codes, refresh tokens, access tokens.
//!
//! What unauthenticated requests can make the server store is capped without
//! ever refusing everyone: unapproved clients and waiting sign-ins are
//! counted per address (`AddrKey`), and beyond a cap the oldest are dropped,
//! first from the same address, and for the total cap from the address
//! holding the most. A flood from one address thus only replaces its own
//! entries.
//!
//! Each operation that checks and then changes state (exchanging a code,
//! rotating a refresh token) runs inside one write closure. The store has a
//! single writer thread, so these run one at a time: concurrent refreshes of
//! one family are serialised without further locking.
//!
//! Write closures return `Ok(Err(OAuthError))` for a refusal whose side
//! effects must stick (a replayed code revokes its grant); an outer `Err`
//! would roll them back.

use super::{Lifetimes, OAuthError};
use crate::client_addr::AddrKey;
use crate::config::OAuthLimits;
use crate::secrets::{self, SecretKind};
use crate::store::db::Connection;
use crate::store::{Store, StoreError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

/// Clients registered but never approved are deleted after this long.
const UNAPPROVED_CLIENT_TTL_MS: i64 = 24 * 3600 * 1000;

/// How a client authenticates at the token endpoint (RFC 7591 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A public client: no secret, PKCE is its proof.
    None,
    ClientSecretPost,
    ClientSecretBasic,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::ClientSecretBasic => "client_secret_basic",
        }
    }

    pub fn parse(s: &str) -> Option<AuthMethod> {
        match s {
            "none" => Some(AuthMethod::None),
            "client_secret_post" => Some(AuthMethod::ClientSecretPost),
            "client_secret_basic" => Some(AuthMethod::ClientSecretBasic),
            _ => None,
        }
    }
}

/// A registered client.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub secret_hash: Option<Vec<u8>>,
    pub auth_method: AuthMethod,
    pub redirect_uris: Vec<String>,
    pub client_name: Option<String>,
    /// Whether refresh tokens are issued (it registered the grant type).
    pub refresh: bool,
    /// Whether the operator approved it at least once: then its redirect
    /// URIs may receive error responses too.
    pub approved: bool,
}

/// A client to store: from `/register`, or a fetched metadata document.
pub struct NewClient {
    pub client: Client,
    pub metadata: serde_json::Value,
    pub created_at: i64,
    /// Where the registration (or the sign-in that fetched the document)
    /// came from.
    pub from: AddrKey,
    /// For a metadata document: when to fetch it again (unix ms).
    pub metadata_expires_at: Option<i64>,
}

/// A client whose `client_id` is the URL of its metadata document, as kept.
pub struct DocumentClient {
    pub client: Client,
    /// When the document goes stale (unix ms).
    pub expires_at: i64,
}

/// Tokens handed out by `/token`.
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: Option<String>,
}

/// Stores a new client: first deletes expired unapproved clients and old
/// codes, then makes room under the caps (the oldest unapproved clients of
/// this address, then of the address holding the most), then inserts.
pub async fn register_client(
    store: &Store,
    new: NewClient,
    caps: &OAuthLimits,
) -> Result<(), OAuthError> {
    let per_address = i64::from(caps.unapproved_clients_per_address);
    let total = i64::from(caps.unapproved_clients_total);
    store
        .sql_write(move |c| {
            sweep_clients(c, new.created_at)?;
            let from = new.from.to_string();
            make_room(c, CLIENTS, &from, per_address, total)?;
            let cl = &new.client;
            c.execute(
                "INSERT INTO oauth_clients (client_id, secret_hash, auth_method, redirect_uris,
                   client_name, metadata, refresh, created_at, registered_from, metadata_expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    cl.client_id,
                    cl.secret_hash,
                    cl.auth_method.as_str(),
                    serde_json::to_string(&cl.redirect_uris).unwrap_or_default(),
                    cl.client_name,
                    new.metadata.to_string(),
                    cl.refresh,
                    new.created_at,
                    from,
                    new.metadata_expires_at,
                ],
            )?;
            Ok::<_, StoreError>(Ok(()))
        })
        .await?
}

/// Stores a freshly fetched metadata document: a new client (under the same
/// caps as a registration), or the new metadata of a known one, which keeps
/// its approval.
pub async fn store_document_client(
    store: &Store,
    new: NewClient,
    caps: &OAuthLimits,
) -> Result<(), OAuthError> {
    let per_address = i64::from(caps.unapproved_clients_per_address);
    let total = i64::from(caps.unapproved_clients_total);
    store
        .sql_write(move |c| {
            sweep_clients(c, new.created_at)?;
            let cl = &new.client;
            let known: bool = c
                .query_row(
                    "SELECT 1 FROM oauth_clients WHERE client_id = ?1",
                    params![cl.client_id],
                    |_| Ok(true),
                )
                .optional()?
                .unwrap_or(false);
            let from = new.from.to_string();
            if !known {
                make_room(c, CLIENTS, &from, per_address, total)?;
            }
            c.execute(
                "INSERT INTO oauth_clients (client_id, secret_hash, auth_method, redirect_uris,
                   client_name, metadata, refresh, created_at, registered_from, metadata_expires_at)
                 VALUES (?1, NULL, 'none', ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (client_id) DO UPDATE SET
                   redirect_uris = excluded.redirect_uris, client_name = excluded.client_name,
                   metadata = excluded.metadata, refresh = excluded.refresh,
                   metadata_expires_at = excluded.metadata_expires_at",
                params![
                    cl.client_id,
                    serde_json::to_string(&cl.redirect_uris).unwrap_or_default(),
                    cl.client_name,
                    new.metadata.to_string(),
                    cl.refresh,
                    new.created_at,
                    from,
                    new.metadata_expires_at,
                ],
            )?;
            Ok::<_, StoreError>(Ok(()))
        })
        .await?
}

/// Deletes clients never approved within a day (their waiting sign-ins go
/// with them) and codes long expired.
fn sweep_clients(c: &Connection, now: i64) -> Result<(), rusqlite::Error> {
    c.execute(
        "DELETE FROM oauth_clients WHERE approved_at IS NULL AND created_at < ?1",
        params![now - UNAPPROVED_CLIENT_TTL_MS],
    )?;
    c.execute(
        "DELETE FROM oauth_codes WHERE expires_at < ?1",
        params![now - 3600 * 1000],
    )?;
    Ok(())
}

/// A capped table of entries that unauthenticated requests create.
struct Capped {
    table: &'static str,
    key: &'static str,
    /// The column holding the address the entry came from.
    from: &'static str,
    /// Which rows count against the caps.
    counted: &'static str,
}

const CLIENTS: Capped = Capped {
    table: "oauth_clients",
    key: "client_id",
    from: "registered_from",
    counted: "approved_at IS NULL",
};

const PENDING: Capped = Capped {
    table: "oauth_pending",
    key: "id",
    from: "requested_from",
    counted: "TRUE",
};

/// Makes room for one more entry from `from`: drops the oldest of `from`'s
/// beyond `per_address - 1`, then, while the total is at `total` or more,
/// the oldest of the address holding the most.
fn make_room(
    c: &Connection,
    t: Capped,
    from: &str,
    per_address: i64,
    total: i64,
) -> Result<(), rusqlite::Error> {
    let Capped {
        table,
        key,
        from: col,
        counted,
    } = t;
    let mine: i64 = c.query_row(
        &format!("SELECT count(*) FROM {table} WHERE {counted} AND {col} IS NOT DISTINCT FROM ?1"),
        params![from],
        |r| r.get(0),
    )?;
    if mine >= per_address {
        let n = c.execute(
            &format!(
                "DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table}
                   WHERE {counted} AND {col} IS NOT DISTINCT FROM ?1 ORDER BY created_at LIMIT ?2)"
            ),
            params![from, mine - per_address + 1],
        )?;
        tracing::warn!(table, %from, dropped = n, "per-address cap reached; dropped the oldest");
    }
    let all: i64 = c.query_row(
        &format!("SELECT count(*) FROM {table} WHERE {counted}"),
        params![],
        |r| r.get(0),
    )?;
    if all >= total {
        let biggest: Option<String> = c
            .query_row(
                &format!(
                    "SELECT {col} FROM {table} WHERE {counted}
                     GROUP BY {col} ORDER BY count(*) DESC, min(created_at) LIMIT 1"
                ),
                params![],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let n = c.execute(
            &format!(
                "DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table}
                   WHERE {counted} AND {col} IS NOT DISTINCT FROM ?1 ORDER BY created_at LIMIT ?2)"
            ),
            params![biggest, all - total + 1],
        )?;
        tracing::warn!(table, from = ?biggest, dropped = n, "total cap reached; dropped the oldest of the address holding the most");
    }
    Ok(())
}

/// The client `client_id`, if registered.
pub async fn client(store: &Store, client_id: &str) -> Result<Option<Client>, StoreError> {
    let id = client_id.to_string();
    store
        .sql_read(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT client_id, secret_hash, auth_method, redirect_uris, client_name, refresh,
                            approved_at IS NOT NULL, metadata_expires_at
                     FROM oauth_clients WHERE client_id = ?1",
                )?
                .query_row(params![id], |r| {
                    Ok((
                        Client {
                            client_id: r.get(0)?,
                            secret_hash: r.get(1)?,
                            auth_method: AuthMethod::parse(&r.get::<_, String>(2)?)
                                .unwrap_or(AuthMethod::ClientSecretBasic),
                            redirect_uris: serde_json::from_str(&r.get::<_, String>(3)?)
                                .unwrap_or_default(),
                            client_name: r.get(4)?,
                            refresh: r.get(5)?,
                            approved: r.get(6)?,
                        },
                        r.get::<_, Option<i64>>(7)?,
                    ))
                })
                .optional()?;
            Ok::<_, StoreError>(row)
        })
        .await
        .map(|row| row.map(|(client, _)| client))
}

/// The client whose `client_id` is the URL of a metadata document, if it
/// was fetched before (fresh or not).
pub async fn document_client(
    store: &Store,
    client_id: &str,
) -> Result<Option<DocumentClient>, StoreError> {
    let id = client_id.to_string();
    store
        .sql_read(move |c| {
            c.query_row(
                "SELECT client_id, redirect_uris, client_name, refresh, approved_at IS NOT NULL,
                        metadata_expires_at
                 FROM oauth_clients WHERE client_id = ?1 AND metadata_expires_at IS NOT NULL",
                params![id],
                |r| {
                    Ok(DocumentClient {
                        client: Client {
                            client_id: r.get(0)?,
                            secret_hash: None,
                            auth_method: AuthMethod::None,
                            redirect_uris: serde_json::from_str(&r.get::<_, String>(1)?)
                                .unwrap_or_default(),
                            client_name: r.get(2)?,
                            refresh: r.get(3)?,
                            approved: r.get(4)?,
                        },
                        expires_at: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(StoreError::from)
        })
        .await
}

/// What an approval binds into its code.
pub struct Approval {
    pub client_id: String,
    pub principal_name: String,
    pub resource: String,
    pub redirect_uri: String,
    /// Whether the authorization request named `redirect_uri`: then the
    /// token request must send it (OAuth 2.1 §4.1.3).
    pub redirect_uri_given: bool,
    pub code_challenge: String,
    /// The waiting sign-in this approval completes, consumed with it.
    pub pending: Option<String>,
}

/// Records an approval: a new principal and grant, and a single-use code for
/// it. Returns the code, or `None` when the waiting sign-in it completes was
/// already used or dropped (a double submit).
///
/// Each approval makes a new principal with exactly one grant: the page
/// links a principal mints record that grant (`store::links::insert`), and
/// revoking it revokes them.
///
/// In `auto` mode anything that can GET `/authorize` on loopback approves
/// (a web page in the user's browser can), so what approvals store is
/// bounded: first grants whose code lapsed unredeemed are deleted with their
/// principals ([`sweep_unredeemed`]), then, beyond `max_unredeemed` grants
/// still waiting for their code to be redeemed, the oldest of them. A real
/// client redeems its code within seconds of the redirect.
pub async fn approve(
    store: &Store,
    a: Approval,
    life: Lifetimes,
    max_unredeemed: u32,
) -> Result<Option<String>, StoreError> {
    let code = secrets::new_secret(SecretKind::AuthCode);
    let code_hash = secrets::hash_secret(&code);
    store
        .sql_write(move |c| {
            let now = secrets::now_ms();
            sweep_unredeemed(c, now, i64::from(max_unredeemed))?;
            if let Some(id) = &a.pending {
                let n = c.execute("DELETE FROM oauth_pending WHERE id = ?1", params![id])?;
                if n == 0 {
                    return Ok(None);
                }
            }
            let principal = secrets::new_id("p_");
            let family = secrets::new_id("g_");
            c.execute(
                "INSERT INTO principals (id, name, kind, created_at) VALUES (?1, ?2, 'oauth', ?3)",
                params![principal, a.principal_name, now],
            )?;
            c.execute(
                "INSERT INTO oauth_grants (family_id, client_id, principal_id, resource, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![family, a.client_id, principal, a.resource, now],
            )?;
            c.execute(
                "INSERT INTO oauth_codes (code_hash, family_id, redirect_uri, code_challenge, expires_at,
                   redirect_uri_given)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    code_hash,
                    family,
                    a.redirect_uri,
                    a.code_challenge,
                    now + life.code_ms,
                    a.redirect_uri_given,
                ],
            )?;
            c.execute(
                "UPDATE oauth_clients SET approved_at = ?2 WHERE client_id = ?1 AND approved_at IS NULL",
                params![a.client_id, now],
            )?;
            tracing::info!(client_id = ?a.client_id, principal = %principal, "oauth grant approved");
            Ok::<_, StoreError>(Some(code))
        })
        .await
}

/// Most lapsed grants one approval deletes (more than it adds, so a backlog,
/// like the one a flood left before this sweep existed, drains).
const SWEEP_BATCH: i64 = 256;

/// Deletes grants never redeemed whose code can no longer be (expired, or
/// gone), with their principals, which never authenticated and so own
/// nothing; then, while `max_unredeemed` or more grants still wait for
/// their code, the oldest of them (their sign-in fails at `/token` as an
/// unknown code). Returns how many grants it deleted.
fn sweep_unredeemed(c: &Connection, now: i64, max_unredeemed: i64) -> Result<usize, StoreError> {
    let lapsed = families(
        c,
        "SELECT family_id, principal_id FROM oauth_grants g
         WHERE redeemed_at IS NULL AND NOT EXISTS
           (SELECT 1 FROM oauth_codes k WHERE k.family_id = g.family_id AND k.expires_at > ?1)
         ORDER BY created_at LIMIT ?2",
        params![now, SWEEP_BATCH],
    )?;
    forget_grants(c, &lapsed)?;
    let waiting: i64 = c.query_row(
        "SELECT count(*) FROM oauth_grants WHERE redeemed_at IS NULL",
        params![],
        |r| r.get(0),
    )?;
    let mut dropped = Vec::new();
    if waiting >= max_unredeemed {
        dropped = families(
            c,
            "SELECT family_id, principal_id FROM oauth_grants WHERE redeemed_at IS NULL
             ORDER BY created_at LIMIT ?1",
            params![waiting - max_unredeemed + 1],
        )?;
        forget_grants(c, &dropped)?;
        tracing::warn!(
            dropped = dropped.len(),
            "too many sign-ins waiting for their code to be redeemed; dropped the oldest"
        );
    }
    Ok(lapsed.len() + dropped.len())
}

fn families(
    c: &Connection,
    sql: &str,
    p: &[&dyn rusqlite::ToSql],
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(c.prepare(sql)?
        .query_map(p, |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?)
}

/// Deletes never-redeemed grants and everything of theirs: codes, tokens
/// (none were issued), and their principals when no other grant names them.
fn forget_grants(c: &Connection, grants: &[(String, String)]) -> Result<(), StoreError> {
    for (family, principal) in grants {
        for sql in [
            "DELETE FROM oauth_codes WHERE family_id = ?1",
            "DELETE FROM oauth_refresh_tokens WHERE family_id = ?1",
            "DELETE FROM access_tokens WHERE family_id = ?1",
            "DELETE FROM oauth_grants WHERE family_id = ?1 AND redeemed_at IS NULL",
        ] {
            c.execute(sql, params![family])?;
        }
        c.execute(
            "DELETE FROM principals WHERE id = ?1 AND kind = 'oauth'
               AND NOT EXISTS (SELECT 1 FROM oauth_grants WHERE principal_id = ?1)",
            params![principal],
        )?;
    }
    Ok(())
}

// ------------------------------------------------- sign-ins awaiting approval

/// A validated authorization request waiting on the approval page.
#[derive(Debug, Clone)]
pub struct PendingRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// Whether the request named `redirect_uri` (see [`Approval`]).
    pub redirect_uri_given: bool,
    pub state: Option<String>,
    pub code_challenge: String,
    pub resource: String,
}

/// A waiting sign-in as stored.
#[derive(Debug, Clone)]
pub struct Pending {
    pub request: PendingRequest,
    pub csrf_hash: Vec<u8>,
    /// Approved out of band (`mcp-multiplayer approve`).
    pub approved: bool,
}

/// A waiting sign-in as `mcp-multiplayer approve` lists it.
#[derive(Debug, Clone)]
pub struct PendingSummary {
    pub id: String,
    pub client_id: String,
    pub client_name: Option<String>,
    pub redirect_uri: String,
    pub requested_from: String,
    pub created_at: i64,
    pub approved: bool,
}

/// Stores a sign-in shown on the approval page, under the caps; returns its
/// id (a short code the operator can read out).
pub async fn insert_pending(
    store: &Store,
    req: PendingRequest,
    csrf_hash: Vec<u8>,
    from: AddrKey,
    ttl_ms: i64,
    caps: &OAuthLimits,
) -> Result<String, StoreError> {
    let per_address = i64::from(caps.pending_approvals_per_address);
    let total = i64::from(caps.pending_approvals_total);
    store
        .sql_write(move |c| {
            let now = secrets::now_ms();
            c.execute(
                "DELETE FROM oauth_pending WHERE expires_at <= ?1",
                params![now],
            )?;
            let from = from.to_string();
            make_room(c, PENDING, &from, per_address, total)?;
            let id = loop {
                let id = pending_code();
                let taken: bool = c
                    .query_row(
                        "SELECT 1 FROM oauth_pending WHERE id = ?1",
                        params![id],
                        |_| Ok(true),
                    )
                    .optional()?
                    .unwrap_or(false);
                if !taken {
                    break id;
                }
            };
            c.execute(
                "INSERT INTO oauth_pending (id, csrf_hash, client_id, redirect_uri, state,
                   code_challenge, resource, requested_from, created_at, expires_at,
                   redirect_uri_given)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    id,
                    csrf_hash,
                    req.client_id,
                    req.redirect_uri,
                    req.state,
                    req.code_challenge,
                    req.resource,
                    from,
                    now,
                    now + ttl_ms,
                    req.redirect_uri_given,
                ],
            )?;
            Ok::<_, StoreError>(id)
        })
        .await
}

/// The waiting sign-in `id`, unless it expired.
pub async fn pending(store: &Store, id: &str) -> Result<Option<Pending>, StoreError> {
    let id = id.to_string();
    store
        .sql_read(move |c| {
            c.query_row(
                "SELECT client_id, redirect_uri, state, code_challenge, resource, csrf_hash,
                        approved_at IS NOT NULL, redirect_uri_given
                 FROM oauth_pending WHERE id = ?1 AND expires_at > ?2",
                params![id, secrets::now_ms()],
                |r| {
                    Ok(Pending {
                        request: PendingRequest {
                            client_id: r.get(0)?,
                            redirect_uri: r.get(1)?,
                            redirect_uri_given: r.get(7)?,
                            state: r.get(2)?,
                            code_challenge: r.get(3)?,
                            resource: r.get(4)?,
                        },
                        csrf_hash: r.get(5)?,
                        approved: r.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(StoreError::from)
        })
        .await
}

/// Forgets the waiting sign-in `id` (denied).
pub async fn remove_pending(store: &Store, id: &str) -> Result<bool, StoreError> {
    let id = id.to_string();
    store
        .sql_write(move |c| {
            let n = c.execute("DELETE FROM oauth_pending WHERE id = ?1", params![id])?;
            Ok::<_, StoreError>(n > 0)
        })
        .await
}

/// Every waiting sign-in that has not expired, oldest first.
pub async fn list_pending(store: &Store) -> Result<Vec<PendingSummary>, StoreError> {
    store
        .sql_read(move |c| {
            let mut st = c.prepare(
                "SELECT p.id, p.client_id, k.client_name, p.redirect_uri, p.requested_from,
                        p.created_at, p.approved_at IS NOT NULL
                 FROM oauth_pending p JOIN oauth_clients k ON k.client_id = p.client_id
                 WHERE p.expires_at > ?1 ORDER BY p.created_at",
            )?;
            let rows = st
                .query_map(params![secrets::now_ms()], |r| {
                    Ok(PendingSummary {
                        id: r.get(0)?,
                        client_id: r.get(1)?,
                        client_name: r.get(2)?,
                        redirect_uri: r.get(3)?,
                        requested_from: r.get(4)?,
                        created_at: r.get(5)?,
                        approved: r.get(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, StoreError>(rows)
        })
        .await
}

/// What the operator decided for a waiting sign-in out of band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

/// Approves (the browser then continues) or denies (forgets) the waiting
/// sign-in `id`; returns it as it was, or `None` if there is no such
/// sign-in or it expired.
pub async fn decide_pending(
    store: &Store,
    id: &str,
    decision: Decision,
) -> Result<Option<PendingSummary>, StoreError> {
    let id = id.to_string();
    store
        .sql_write(move |c| {
            let now = secrets::now_ms();
            let found = c
                .query_row(
                    "SELECT p.id, p.client_id, k.client_name, p.redirect_uri, p.requested_from,
                            p.created_at, p.approved_at IS NOT NULL
                     FROM oauth_pending p JOIN oauth_clients k ON k.client_id = p.client_id
                     WHERE p.id = ?1 AND p.expires_at > ?2",
                    params![id, now],
                    |r| {
                        Ok(PendingSummary {
                            id: r.get(0)?,
                            client_id: r.get(1)?,
                            client_name: r.get(2)?,
                            redirect_uri: r.get(3)?,
                            requested_from: r.get(4)?,
                            created_at: r.get(5)?,
                            approved: r.get(6)?,
                        })
                    },
                )
                .optional()?;
            if found.is_some() {
                match decision {
                    Decision::Approve => c.execute(
                        "UPDATE oauth_pending SET approved_at = ?2 WHERE id = ?1 AND approved_at IS NULL",
                        params![id, now],
                    )?,
                    Decision::Deny => {
                        c.execute("DELETE FROM oauth_pending WHERE id = ?1", params![id])?
                    }
                };
            }
            Ok::<_, StoreError>(found)
        })
        .await
}

/// Alphabet of the codes of waiting sign-ins: no 0/O, 1/I/L, U.
const PENDING_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTVWXYZ23456789";

/// A fresh code like `K7QF-2M9X` (about 39 bits): short enough to read from
/// the page and type into `mcp-multiplayer approve`. Not a secret: the form
/// is bound to its browser by a cookie, and approving needs the passphrase
/// or access to the server.
fn pending_code() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut s = String::with_capacity(9);
    for i in 0..8 {
        if i == 4 {
            s.push('-');
        }
        s.push(PENDING_ALPHABET[rng.random_range(0..PENDING_ALPHABET.len())] as char);
    }
    s
}

/// A code as the operator typed it, in its stored form (`k7qf2m9x` →
/// `K7QF-2M9X`); `None` if it cannot be one.
pub fn normalise_pending_code(typed: &str) -> Option<String> {
    let chars: Vec<char> = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if chars.len() != 8 || !chars.iter().all(|c| PENDING_ALPHABET.contains(&(*c as u8))) {
        return None;
    }
    let mut s: String = chars[..4].iter().collect();
    s.push('-');
    s.extend(&chars[4..]);
    Some(s)
}

/// The token request of the authorization code grant, client already
/// authenticated.
pub struct CodeExchange {
    pub client: Client,
    pub code: String,
    pub redirect_uri: Option<String>,
    pub code_verifier: String,
    pub resource: Option<String>,
}

/// Exchanges a code for tokens (RFC 6749 §4.1.3, RFC 7636 §4.6).
pub async fn exchange_code(
    store: &Store,
    x: CodeExchange,
    life: Lifetimes,
) -> Result<Issued, OAuthError> {
    let hash = secrets::hash_secret(&x.code);
    store
        .sql_write(move |c| {
            let now = secrets::now_ms();
            let row = c
                .query_row(
                    "SELECT k.family_id, k.redirect_uri, k.code_challenge, k.expires_at, k.used_at,
                            g.client_id, g.principal_id, g.resource, g.revoked_at, k.redirect_uri_given
                     FROM oauth_codes k JOIN oauth_grants g ON g.family_id = k.family_id
                     WHERE k.code_hash = ?1",
                    params![hash],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, Option<i64>>(4)?,
                            r.get::<_, String>(5)?,
                            r.get::<_, String>(6)?,
                            r.get::<_, String>(7)?,
                            r.get::<_, Option<i64>>(8)?,
                            r.get::<_, bool>(9)?,
                        ))
                    },
                )
                .optional()?;
            let Some((family, redirect, challenge, expires, used, client_id, principal, resource, revoked, redirect_given)) =
                row
            else {
                return Ok(Err(OAuthError::invalid_grant("unknown authorization code")));
            };
            if client_id != x.client.client_id {
                return Ok(Err(OAuthError::invalid_grant(
                    "the authorization code was issued to another client",
                )));
            }
            if used.is_some() {
                // RFC 6749 §4.1.2: a code used twice revokes what it issued.
                revoke_family(c, &family, now)?;
                tracing::warn!(client_id = ?client_id, family = %family, "authorization code replayed; grant revoked");
                return Ok(Err(OAuthError::invalid_grant(
                    "the authorization code was already used",
                )));
            }
            // Any presentation uses the code up, even a failing one: a stolen
            // code cannot be retried with other verifiers.
            c.execute(
                "UPDATE oauth_codes SET used_at = ?2 WHERE code_hash = ?1",
                params![hash, now],
            )?;
            if now >= expires {
                return Ok(Err(OAuthError::invalid_grant("the authorization code expired")));
            }
            if revoked.is_some() {
                return Ok(Err(OAuthError::invalid_grant("the grant was revoked")));
            }
            // OAuth 2.1 §4.1.3 (RFC 6749 §4.1.3): redirect_uri is REQUIRED
            // when the authorization request included it, and must be the
            // same. (The code is used up all the same.)
            match x.redirect_uri.as_deref() {
                None if redirect_given => {
                    return Ok(Err(OAuthError::invalid_request(
                        "redirect_uri is missing: the authorization request named one, so the token request must send the same (OAuth 2.1 section 4.1.3)",
                    )));
                }
                Some(r) if r != redirect => {
                    return Ok(Err(OAuthError::invalid_grant(
                        "redirect_uri differs from the authorization request's",
                    )));
                }
                _ => {}
            }
            if !pkce_s256_matches(&x.code_verifier, &challenge) {
                return Ok(Err(OAuthError::invalid_grant(
                    "code_verifier does not match the code_challenge",
                )));
            }
            if let Some(r) = &x.resource
                && *r != resource
            {
                return Ok(Err(OAuthError::invalid_target(format!(
                    "this grant is for the resource {resource}"
                ))));
            }
            let issued = issue(c, &family, &principal, &resource, now, life, x.client.refresh.then_some(None))?;
            // Redeemed: no longer a sign-in whose code may lapse unused
            // (`sweep_unredeemed`).
            c.execute(
                "UPDATE oauth_grants SET redeemed_at = ?2 WHERE family_id = ?1 AND redeemed_at IS NULL",
                params![family, now],
            )?;
            Ok::<_, StoreError>(Ok(issued))
        })
        .await?
}

/// The token request of the refresh token grant, client already
/// authenticated.
pub struct RefreshExchange {
    pub client: Client,
    pub refresh_token: String,
    pub resource: Option<String>,
}

/// Rotates a refresh token (OAuth 2.1 §4.3.1).
///
/// A current token is marked rotated and a new pair issued. A token rotated
/// less than the grace window ago still works (clients such as claude.ai
/// refresh concurrently from two machines, and a client whose response was
/// lost retries; both must succeed): it gets another successor. A token
/// rotated longer ago is a replay: the whole family is revoked.
///
/// The grace window never forks the grant into two chains that both live
/// on. Each refresh token records its parent (the token it replaced); the
/// first of a token's successors to be used wins: using it supersedes its
/// siblings (the other successors issued in the window) and its parent (the
/// window closes early). A superseded token is refused like a replay, and
/// revokes the family: a thief who redeemed a rotated token in the window
/// is detected as soon as either chain moves on.
pub async fn refresh(
    store: &Store,
    x: RefreshExchange,
    life: Lifetimes,
) -> Result<Issued, OAuthError> {
    let hash = secrets::hash_secret(&x.refresh_token);
    store
        .sql_write(move |c| {
            let now = secrets::now_ms();
            let row = c
                .query_row(
                    "SELECT t.family_id, t.expires_at, t.rotated_at,
                            g.client_id, g.principal_id, g.resource, g.revoked_at,
                            t.superseded_at, t.parent_hash
                     FROM oauth_refresh_tokens t JOIN oauth_grants g ON g.family_id = t.family_id
                     WHERE t.token_hash = ?1",
                    params![hash],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, Option<i64>>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, String>(5)?,
                            r.get::<_, Option<i64>>(6)?,
                            r.get::<_, Option<i64>>(7)?,
                            r.get::<_, Option<Vec<u8>>>(8)?,
                        ))
                    },
                )
                .optional()?;
            let Some((family, expires, rotated, client_id, principal, resource, revoked, superseded, parent)) = row
            else {
                return Ok(Err(OAuthError::invalid_grant("unknown refresh token")));
            };
            if client_id != x.client.client_id {
                return Ok(Err(OAuthError::invalid_grant(
                    "the refresh token was issued to another client",
                )));
            }
            if revoked.is_some() {
                return Ok(Err(OAuthError::invalid_grant("the grant was revoked")));
            }
            if now >= expires {
                return Ok(Err(OAuthError::invalid_grant("the refresh token expired")));
            }
            if let Some(r) = &x.resource
                && *r != resource
            {
                return Ok(Err(OAuthError::invalid_target(format!(
                    "this grant is for the resource {resource}"
                ))));
            }
            if superseded.is_some() {
                revoke_family(c, &family, now)?;
                tracing::warn!(client_id = ?client_id, family = %family, "superseded refresh token used (another chain of the grant moved on); grant revoked");
                return Ok(Err(OAuthError::invalid_grant(
                    "the refresh token was superseded by another refresh of the same grant; the grant is revoked, sign in again",
                )));
            }
            match rotated {
                Some(at) if now >= at.saturating_add(life.grace_ms) => {
                    revoke_family(c, &family, now)?;
                    tracing::warn!(client_id = ?client_id, family = %family, "refresh token reused after rotation; grant revoked");
                    return Ok(Err(OAuthError::invalid_grant(
                        "the refresh token was already used; the grant is revoked, sign in again",
                    )));
                }
                Some(_) => {
                    tracing::info!(client_id = ?client_id, family = %family, "rotated refresh token used within the grace window");
                }
                None => {
                    c.execute(
                        "UPDATE oauth_refresh_tokens SET rotated_at = ?2 WHERE token_hash = ?1",
                        params![hash, now],
                    )?;
                    // This successor of `parent` wins: the others issued in
                    // its grace window, and `parent` itself, are done.
                    if let Some(parent) = &parent {
                        c.execute(
                            "UPDATE oauth_refresh_tokens SET superseded_at = ?3
                             WHERE superseded_at IS NULL
                               AND ((parent_hash = ?1 AND token_hash <> ?2) OR token_hash = ?1)",
                            params![parent, hash, now],
                        )?;
                    }
                }
            }
            let issued = issue(c, &family, &principal, &resource, now, life, Some(Some(&hash)))?;
            Ok::<_, StoreError>(Ok(issued))
        })
        .await?
}

/// What `/revoke` was given (RFC 7009 §2.1).
pub enum Revocation {
    /// A refresh token: its whole grant goes.
    Family,
    /// An access token: only it goes.
    AccessToken,
    /// Unknown, or another client's: nothing happens (and the caller still
    /// answers 200, RFC 7009 §2.2).
    Nothing,
}

/// Revokes `token` if `client_id` holds it. A refresh token revokes its
/// family (RFC 7009 §2.1 SHOULD), an access token only itself.
pub async fn revoke(store: &Store, client_id: &str, token: &str) -> Result<Revocation, StoreError> {
    let hash = secrets::hash_secret(token);
    let client_id = client_id.to_string();
    store
        .sql_write(move |c| {
            let now = secrets::now_ms();
            let refresh_family: Option<String> = c
                .query_row(
                    "SELECT t.family_id FROM oauth_refresh_tokens t
                     JOIN oauth_grants g ON g.family_id = t.family_id
                     WHERE t.token_hash = ?1 AND g.client_id = ?2",
                    params![hash, client_id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(family) = refresh_family {
                revoke_family(c, &family, now)?;
                return Ok(Revocation::Family);
            }
            let n = c.execute(
                "UPDATE access_tokens SET revoked = 1
                 WHERE token_hash = ?1 AND kind = 'oauth' AND family_id IN
                   (SELECT family_id FROM oauth_grants WHERE client_id = ?2)",
                params![hash, client_id],
            )?;
            Ok::<_, StoreError>(if n > 0 {
                Revocation::AccessToken
            } else {
                Revocation::Nothing
            })
        })
        .await
}

/// Revokes a grant: its access tokens stop working at once (they carry the
/// flag `authenticate` reads), its refresh tokens and codes are refused, and
/// every channel page link minted under it (spectator links, member links,
/// member sessions) stops admitting anyone. Every revocation of a grant goes
/// through here: `/revoke`, a replayed code, a reused refresh token,
/// `grant revoke` and `client revoke`.
pub(super) fn revoke_family(c: &Connection, family: &str, now: i64) -> Result<(), StoreError> {
    c.execute(
        "UPDATE oauth_grants SET revoked_at = ?2 WHERE family_id = ?1 AND revoked_at IS NULL",
        params![family, now],
    )?;
    c.execute(
        "UPDATE access_tokens SET revoked = 1 WHERE family_id = ?1 AND revoked = 0",
        params![family],
    )?;
    let links = crate::store::links::revoke_of_grant(c, family, now)?;
    if links > 0 {
        tracing::info!(family = %family, links, "page links of a revoked grant revoked");
    }
    Ok(())
}

/// Issues an access token of `family`, and a refresh token when `refresh`
/// is `Some`: `Some(None)` for the first, `Some(Some(parent))` for the
/// successor of the refresh token `parent` (by hash).
fn issue(
    c: &Connection,
    family: &str,
    principal: &str,
    resource: &str,
    now: i64,
    life: Lifetimes,
    refresh: Option<Option<&[u8]>>,
) -> Result<Issued, rusqlite::Error> {
    let access = secrets::new_secret(SecretKind::AccessToken);
    c.execute(
        "INSERT INTO access_tokens (token_hash, principal_id, kind, resource, expires_at, created_at, family_id)
         VALUES (?1, ?2, 'oauth', ?3, ?4, ?5, ?6)",
        params![
            secrets::hash_secret(&access),
            principal,
            resource,
            now.saturating_add(life.access_ms),
            now,
            family
        ],
    )?;
    let refresh_token = if let Some(parent) = refresh {
        let rt = secrets::new_secret(SecretKind::RefreshToken);
        c.execute(
            "INSERT INTO oauth_refresh_tokens (token_hash, family_id, created_at, expires_at, parent_hash)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                secrets::hash_secret(&rt),
                family,
                now,
                now.saturating_add(life.refresh_ms),
                parent,
            ],
        )?;
        Some(rt)
    } else {
        None
    };
    Ok(Issued {
        access_token: access,
        expires_in: life.access_ms / 1000,
        refresh_token,
    })
}

/// RFC 7636 §4.6: `BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge`,
/// with the verifier 43-128 characters of the unreserved set (§4.1).
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !well_formed {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    secrets::hashes_equal(computed.as_bytes(), challenge.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_client(id: &str, created_at: i64) -> NewClient {
        from(id, created_at, 1)
    }

    fn from(id: &str, created_at: i64, addr: u8) -> NewClient {
        NewClient {
            client: Client {
                client_id: id.into(),
                secret_hash: None,
                auth_method: AuthMethod::None,
                redirect_uris: vec!["http://127.0.0.1:9/cb".into()],
                client_name: None,
                refresh: true,
                approved: false,
            },
            metadata: serde_json::json!({}),
            created_at,
            from: AddrKey::of(std::net::IpAddr::from([10, 0, 0, addr])),
            metadata_expires_at: None,
        }
    }

    fn temp_store() -> (std::path::PathBuf, Store) {
        let dir = std::env::temp_dir().join(format!(
            "mcpmp-grants-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let store = Store::open(&dir.join("t.db")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn clients_never_approved_expire_and_approved_ones_stay() {
        let (dir, store) = temp_store();
        let caps = OAuthLimits::default();
        let day = UNAPPROVED_CLIENT_TTL_MS;
        let now = secrets::now_ms();
        register_client(&store, new_client("old", now - 2 * day), &caps)
            .await
            .unwrap();
        register_client(&store, new_client("old-approved", now - 2 * day), &caps)
            .await
            .unwrap();
        let life = Lifetimes {
            access_ms: 1,
            refresh_ms: 1,
            code_ms: 1,
            grace_ms: 1,
        };
        let approval = |id: &str| Approval {
            client_id: id.into(),
            principal_name: "p".into(),
            resource: "http://x/mcp".into(),
            redirect_uri: "http://127.0.0.1:9/cb".into(),
            redirect_uri_given: true,
            code_challenge: "c".into(),
            pending: None,
        };
        approve(&store, approval("old-approved"), life, 1000)
            .await
            .unwrap();
        // The next registration sweeps.
        register_client(&store, new_client("new", now), &caps)
            .await
            .unwrap();
        assert!(client(&store, "old").await.unwrap().is_none());
        assert!(client(&store, "old-approved").await.unwrap().is_some());
        assert!(client(&store, "new").await.unwrap().is_some());
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A flood of registrations replaces only older unapproved clients, its
    /// own first; it never refuses one, and approved clients are never
    /// dropped.
    #[tokio::test]
    async fn caps_drop_the_oldest_and_never_refuse() {
        let (dir, store) = temp_store();
        let caps = OAuthLimits {
            unapproved_clients_per_address: 3,
            unapproved_clients_total: 5,
            ..OAuthLimits::default()
        };
        let now = secrets::now_ms();
        let life = Lifetimes {
            access_ms: 1,
            refresh_ms: 1,
            code_ms: 1,
            grace_ms: 1,
        };
        // The operator's client from address 9, approved.
        register_client(&store, from("mine", now, 9), &caps)
            .await
            .unwrap();
        approve(
            &store,
            Approval {
                client_id: "mine".into(),
                principal_name: "p".into(),
                resource: "r".into(),
                redirect_uri: "u".into(),
                redirect_uri_given: true,
                code_challenge: "c".into(),
                pending: None,
            },
            life,
            1000,
        )
        .await
        .unwrap();
        // Another unapproved one from address 8, then a flood from 1.
        register_client(&store, from("waiting", now + 1, 8), &caps)
            .await
            .unwrap();
        for i in 0..10 {
            register_client(&store, from(&format!("flood{i}"), now + 10 + i, 1), &caps)
                .await
                .unwrap();
        }
        // Address 1 keeps its 3 newest; address 8's client is untouched.
        for i in 0..7 {
            assert!(
                client(&store, &format!("flood{i}"))
                    .await
                    .unwrap()
                    .is_none(),
                "flood{i}"
            );
        }
        for i in 7..10 {
            assert!(
                client(&store, &format!("flood{i}"))
                    .await
                    .unwrap()
                    .is_some(),
                "flood{i}"
            );
        }
        assert!(client(&store, "waiting").await.unwrap().is_some());
        // Many addresses: the total cap drops the oldest of whoever holds
        // the most (address 1), and never an approved client.
        for a in 20..24u8 {
            register_client(
                &store,
                from(&format!("a{a}"), now + 100 + i64::from(a), a),
                &caps,
            )
            .await
            .unwrap();
        }
        assert!(client(&store, "mine").await.unwrap().is_some());
        assert!(
            client(&store, "a23").await.unwrap().is_some(),
            "the newest always stays"
        );
        let unapproved: i64 = store
            .sql_read(|c| {
                c.query_row(
                    "SELECT count(*) FROM oauth_clients WHERE approved_at IS NULL",
                    params![],
                    |r| r.get(0),
                )
                .map_err(StoreError::from)
            })
            .await
            .unwrap();
        assert_eq!(unapproved, 5);
        assert!(
            client(&store, "flood7").await.unwrap().is_none(),
            "address 1 paid first"
        );
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    const LIFE: Lifetimes = Lifetimes {
        access_ms: 60_000,
        refresh_ms: 60_000,
        code_ms: 60_000,
        grace_ms: 1,
    };

    /// An approved grant of client "c" with a channel page link its
    /// principal minted, and one a CLI principal minted; returns (family,
    /// hash of the grant's link, hash of the other link).
    async fn grant_with_page_links(store: &Store) -> (String, Vec<u8>, Vec<u8>) {
        let now = secrets::now_ms();
        register_client(store, new_client("c", now), &OAuthLimits::default())
            .await
            .unwrap();
        approve(
            store,
            Approval {
                client_id: "c".into(),
                principal_name: "p".into(),
                resource: "r".into(),
                redirect_uri: "u".into(),
                redirect_uri_given: true,
                code_challenge: "c".into(),
                pending: None,
            },
            LIFE,
            1000,
        )
        .await
        .unwrap();
        let (family, principal): (String, String) = store
            .sql_write(move |c| {
                let g: (String, String) = c.query_row(
                    "SELECT family_id, principal_id FROM oauth_grants WHERE client_id = 'c'",
                    params![],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                c.execute(
                    "INSERT INTO principals (id, name, kind, created_at) VALUES ('p_cli', 'cli', 'cli', ?1)",
                    params![now],
                )?;
                c.execute(
                    "INSERT INTO channels (id, name, admin_principal, created_at, head_hash)
                     VALUES ('ch_1', 'c', ?1, ?2, '00')",
                    params![g.1, now],
                )?;
                Ok::<_, StoreError>(g)
            })
            .await
            .unwrap();
        let (mine, other) = (secrets::hash_secret("mine"), secrets::hash_secret("other"));
        let (m, o) = (mine.clone(), other.clone());
        store
            .write(move |tx| {
                for (id, hash, by) in [("lnk_1", &m, principal.as_str()), ("lnk_2", &o, "p_cli")] {
                    tx.insert_page_link(&crate::store::NewPageLink {
                        id,
                        channel_id: "ch_1",
                        secret_hash: hash,
                        kind: crate::store::PageLinkKind::Spectator,
                        member: None,
                        created_by: by,
                        created_at: now,
                        expires_at: None,
                    })?;
                }
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        (family, mine, other)
    }

    async fn link_revoked_at(store: &Store, hash: Vec<u8>) -> Option<i64> {
        store
            .read(move |tx| tx.page_link(&hash))
            .await
            .unwrap()
            .unwrap()
            .revoked_at
    }

    /// Attack (red-team F1), in the store: a page link minted with a grant's
    /// token outlives the grant. Stopped by `revoke_family` revoking the
    /// links that record the grant (`store::links::revoke_of_grant`); a
    /// link another principal minted is untouched.
    #[tokio::test]
    async fn revoke_family_revokes_the_page_links_minted_under_the_grant() {
        let (dir, store) = temp_store();
        let (family, mine, other) = grant_with_page_links(&store).await;
        store
            .sql_write(move |c| revoke_family(c, &family, 5))
            .await
            .unwrap();
        let stored: Vec<Option<i64>> = store
            .sql_read(|c| {
                c.prepare("SELECT revoked_at FROM page_links ORDER BY id")?
                    .query_map(params![], |r| r.get(0))?
                    .collect::<Result<_, _>>()
                    .map_err(StoreError::from)
            })
            .await
            .unwrap();
        assert_eq!(
            stored,
            vec![Some(5), None],
            "the rows themselves are revoked"
        );
        assert_eq!(link_revoked_at(&store, mine).await, Some(5));
        assert_eq!(link_revoked_at(&store, other).await, None);
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Attack: a grant revoked by a path that forgets the page links (a
    /// future one, or SQL by hand) leaves its links working. Stopped by
    /// `store::links::by_hash`, which reads a link of a revoked grant as
    /// revoked.
    #[tokio::test]
    async fn a_link_of_a_grant_revoked_without_revoke_family_reads_as_revoked() {
        let (dir, store) = temp_store();
        let (family, mine, other) = grant_with_page_links(&store).await;
        store
            .sql_write(move |c| {
                c.execute(
                    "UPDATE oauth_grants SET revoked_at = 7 WHERE family_id = ?1",
                    params![family],
                )
                .map_err(StoreError::from)
            })
            .await
            .unwrap();
        assert_eq!(link_revoked_at(&store, mine).await, Some(7));
        assert_eq!(link_revoked_at(&store, other).await, None);
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    async fn count(store: &Store, sql: &'static str) -> i64 {
        store
            .sql_read(move |c| {
                c.query_row(sql, params![], |r| r.get(0))
                    .map_err(StoreError::from)
            })
            .await
            .unwrap()
    }

    /// Attack (red-team F3): in `auto` mode every GET `/authorize` (a web
    /// page in the user's browser can send them) stored a principal and a
    /// grant that nothing ever deleted: 3,000 GETs, 3,000 principals.
    /// Stopped by `sweep_unredeemed`, run by every approval: grants whose
    /// code lapsed unredeemed go with their principals, and grants still
    /// waiting are capped. A redeemed grant is never touched.
    #[tokio::test]
    async fn sign_ins_whose_code_is_never_redeemed_are_deleted_and_capped() {
        let (dir, store) = temp_store();
        register_client(
            &store,
            new_client("c", secrets::now_ms()),
            &OAuthLimits::default(),
        )
        .await
        .unwrap();
        let verifier = "v".repeat(43);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let approval = || Approval {
            client_id: "c".into(),
            principal_name: "flood".into(),
            resource: "r".into(),
            redirect_uri: "u".into(),
            redirect_uri_given: true,
            code_challenge: challenge.clone(),
            pending: None,
        };
        const PRINCIPALS: &str = "SELECT count(*) FROM principals WHERE kind = 'oauth'";
        const GRANTS: &str = "SELECT count(*) FROM oauth_grants";
        const WAITING: &str = "SELECT count(*) FROM oauth_grants WHERE redeemed_at IS NULL";

        // The real client's sign-in, redeemed.
        let code = approve(&store, approval(), LIFE, 1000)
            .await
            .unwrap()
            .unwrap();
        exchange_code(
            &store,
            CodeExchange {
                client: client(&store, "c").await.unwrap().unwrap(),
                code,
                redirect_uri: Some("u".into()),
                code_verifier: verifier.clone(),
                resource: None,
            },
            LIFE,
        )
        .await
        .unwrap();

        // A flood whose codes lapse: each approval deletes the ones before.
        let lapsing = Lifetimes { code_ms: 0, ..LIFE };
        for _ in 0..50 {
            approve(&store, approval(), lapsing, 1000).await.unwrap();
        }
        assert_eq!(
            count(&store, WAITING).await,
            1,
            "only the newest lapsed one"
        );
        assert_eq!(count(&store, GRANTS).await, 2);
        assert_eq!(count(&store, PRINCIPALS).await, 2);

        // A flood of live codes: capped, the oldest dropped.
        for _ in 0..20 {
            approve(&store, approval(), LIFE, 5).await.unwrap();
        }
        assert_eq!(count(&store, WAITING).await, 5);
        assert_eq!(count(&store, PRINCIPALS).await, 6, "5 waiting, 1 redeemed");
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM oauth_grants WHERE redeemed_at IS NOT NULL"
            )
            .await,
            1,
            "the redeemed grant stays"
        );
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pending_codes_are_short_and_typed_back_loosely() {
        let c = pending_code();
        assert_eq!(c.len(), 9);
        assert_eq!(
            normalise_pending_code(&c.to_lowercase().replace('-', "")),
            Some(c.clone())
        );
        assert_eq!(normalise_pending_code(&format!(" {c} ")), Some(c));
        assert_eq!(normalise_pending_code("K7QF-2M9"), None);
        assert_eq!(
            normalise_pending_code("K7QF-2M9O"),
            None,
            "O is not in the alphabet"
        );
    }

    #[test]
    fn pkce_matches_the_rfc_7636_example() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_s256_matches(verifier, challenge));
        assert!(!pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK",
            challenge
        ));
        assert!(!pkce_s256_matches("short", challenge));
    }
}
