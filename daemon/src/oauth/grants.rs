//! Every SQL statement of the authorization server: clients, grants, codes,
//! refresh tokens, access tokens.
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
use crate::secrets::{self, SecretKind};
use crate::store::{Store, StoreError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

/// Clients registered but never approved are deleted after this long.
const UNAPPROVED_CLIENT_TTL_MS: i64 = 24 * 3600 * 1000;
/// Most unapproved clients kept at once (bounds what `/register` can store).
const MAX_UNAPPROVED_CLIENTS: i64 = 10_000;

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
}

/// A client to store (from `/register`).
pub struct NewClient {
    pub client: Client,
    pub metadata: serde_json::Value,
    pub created_at: i64,
}

/// Tokens handed out by `/token`.
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: Option<String>,
}

/// Stores a new client, after deleting expired unapproved ones.
pub async fn register_client(store: &Store, new: NewClient) -> Result<(), OAuthError> {
    store
        .sql_write(move |c| {
            c.execute(
                "DELETE FROM oauth_clients WHERE approved_at IS NULL AND created_at < ?1",
                params![new.created_at - UNAPPROVED_CLIENT_TTL_MS],
            )?;
            c.execute(
                "DELETE FROM oauth_codes WHERE expires_at < ?1",
                params![new.created_at - 3600 * 1000],
            )?;
            let unapproved: i64 = c.query_row(
                "SELECT count(*) FROM oauth_clients WHERE approved_at IS NULL",
                [],
                |r| r.get(0),
            )?;
            if unapproved >= MAX_UNAPPROVED_CLIENTS {
                return Ok(Err(OAuthError::rate_limited(600)));
            }
            let cl = &new.client;
            c.execute(
                "INSERT INTO oauth_clients (client_id, secret_hash, auth_method, redirect_uris,
                   client_name, metadata, refresh, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    cl.client_id,
                    cl.secret_hash,
                    cl.auth_method.as_str(),
                    serde_json::to_string(&cl.redirect_uris).unwrap_or_default(),
                    cl.client_name,
                    new.metadata.to_string(),
                    cl.refresh,
                    new.created_at,
                ],
            )?;
            Ok::<_, StoreError>(Ok(()))
        })
        .await?
}

/// The client `client_id`, if registered.
pub async fn client(store: &Store, client_id: &str) -> Result<Option<Client>, StoreError> {
    let id = client_id.to_string();
    store
        .sql_read(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT client_id, secret_hash, auth_method, redirect_uris, client_name, refresh
                     FROM oauth_clients WHERE client_id = ?1",
                )?
                .query_row(params![id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<Vec<u8>>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, bool>(5)?,
                    ))
                })
                .optional()?;
            Ok::<_, StoreError>(row.map(
                |(client_id, secret_hash, m, uris, client_name, refresh)| Client {
                    client_id,
                    secret_hash,
                    auth_method: AuthMethod::parse(&m).unwrap_or(AuthMethod::ClientSecretBasic),
                    redirect_uris: serde_json::from_str(&uris).unwrap_or_default(),
                    client_name,
                    refresh,
                },
            ))
        })
        .await
}

/// What an approval binds into its code.
pub struct Approval {
    pub client_id: String,
    pub principal_name: String,
    pub resource: String,
    pub redirect_uri: String,
    pub code_challenge: String,
}

/// Records an approval: a new principal and grant, and a single-use code for
/// it. Returns the code.
pub async fn approve(store: &Store, a: Approval, life: Lifetimes) -> Result<String, StoreError> {
    let code = secrets::new_secret(SecretKind::AuthCode);
    let code_hash = secrets::hash_secret(&code);
    store
        .sql_write(move |c| {
            let now = secrets::now_ms();
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
                "INSERT INTO oauth_codes (code_hash, family_id, redirect_uri, code_challenge, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    code_hash,
                    family,
                    a.redirect_uri,
                    a.code_challenge,
                    now + life.code_ms
                ],
            )?;
            c.execute(
                "UPDATE oauth_clients SET approved_at = ?2 WHERE client_id = ?1 AND approved_at IS NULL",
                params![a.client_id, now],
            )?;
            tracing::info!(client_id = %a.client_id, principal = %principal, "oauth grant approved");
            Ok::<_, StoreError>(())
        })
        .await?;
    Ok(code)
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
                            g.client_id, g.principal_id, g.resource, g.revoked_at
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
                        ))
                    },
                )
                .optional()?;
            let Some((family, redirect, challenge, expires, used, client_id, principal, resource, revoked)) =
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
                tracing::warn!(client_id = %client_id, family = %family, "authorization code replayed; grant revoked");
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
            if x.redirect_uri.as_deref().is_some_and(|r| r != redirect) {
                return Ok(Err(OAuthError::invalid_grant(
                    "redirect_uri differs from the authorization request's",
                )));
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
            let issued = issue(c, &family, &principal, &resource, now, life, x.client.refresh)?;
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
/// refresh concurrently from two machines; both must succeed). A token
/// rotated longer ago is a replay: the whole family is revoked.
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
                            g.client_id, g.principal_id, g.resource, g.revoked_at
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
                        ))
                    },
                )
                .optional()?;
            let Some((family, expires, rotated, client_id, principal, resource, revoked)) = row
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
            match rotated {
                Some(at) if now >= at.saturating_add(life.grace_ms) => {
                    revoke_family(c, &family, now)?;
                    tracing::warn!(client_id = %client_id, family = %family, "refresh token reused after rotation; grant revoked");
                    return Ok(Err(OAuthError::invalid_grant(
                        "the refresh token was already used; the grant is revoked, sign in again",
                    )));
                }
                Some(_) => {
                    tracing::info!(client_id = %client_id, family = %family, "rotated refresh token used within the grace window");
                }
                None => {
                    c.execute(
                        "UPDATE oauth_refresh_tokens SET rotated_at = ?2 WHERE token_hash = ?1",
                        params![hash, now],
                    )?;
                }
            }
            let issued = issue(c, &family, &principal, &resource, now, life, true)?;
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
/// flag `authenticate` reads), its refresh tokens and codes are refused.
pub(super) fn revoke_family(c: &Connection, family: &str, now: i64) -> Result<(), rusqlite::Error> {
    c.execute(
        "UPDATE oauth_grants SET revoked_at = ?2 WHERE family_id = ?1 AND revoked_at IS NULL",
        params![family, now],
    )?;
    c.execute(
        "UPDATE access_tokens SET revoked = 1 WHERE family_id = ?1 AND revoked = 0",
        params![family],
    )?;
    Ok(())
}

/// Issues an access token (and a refresh token) of `family`.
fn issue(
    c: &Connection,
    family: &str,
    principal: &str,
    resource: &str,
    now: i64,
    life: Lifetimes,
    with_refresh: bool,
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
    let refresh_token = if with_refresh {
        let rt = secrets::new_secret(SecretKind::RefreshToken);
        c.execute(
            "INSERT INTO oauth_refresh_tokens (token_hash, family_id, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                secrets::hash_secret(&rt),
                family,
                now,
                now.saturating_add(life.refresh_ms)
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
        NewClient {
            client: Client {
                client_id: id.into(),
                secret_hash: None,
                auth_method: AuthMethod::None,
                redirect_uris: vec!["http://127.0.0.1:9/cb".into()],
                client_name: None,
                refresh: true,
            },
            metadata: serde_json::json!({}),
            created_at,
        }
    }

    #[tokio::test]
    async fn clients_never_approved_expire_and_approved_ones_stay() {
        let dir = std::env::temp_dir().join(format!(
            "mcpmp-grants-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let store = Store::open(&dir.join("t.db")).unwrap();
        let day = UNAPPROVED_CLIENT_TTL_MS;
        let now = secrets::now_ms();
        register_client(&store, new_client("old", now - 2 * day))
            .await
            .unwrap();
        register_client(&store, new_client("old-approved", now - 2 * day))
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
            code_challenge: "c".into(),
        };
        approve(&store, approval("old-approved"), life)
            .await
            .unwrap();
        // The next registration sweeps.
        register_client(&store, new_client("new", now))
            .await
            .unwrap();
        assert!(client(&store, "old").await.unwrap().is_none());
        assert!(client(&store, "old-approved").await.unwrap().is_some());
        assert!(client(&store, "new").await.unwrap().is_some());
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
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
