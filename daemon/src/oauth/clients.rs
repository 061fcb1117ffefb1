//! The operator's view of OAuth clients and grants: what
//! `mcp-multiplayer client list|revoke` and `grant list|revoke` read and
//! change. Revoking reuses the authorization server's own revocation
//! (`grants::revoke_family`), so a revoked grant is refused exactly as one
//! revoked by token reuse is: its access tokens stop at once, its refresh
//! tokens and codes are refused.

use super::grants::revoke_family;
use crate::store::{Store, StoreError};
use rusqlite::params;

/// A registered client, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSummary {
    pub client_id: String,
    pub name: Option<String>,
    pub auth_method: String,
    pub redirect_uris: Vec<String>,
    /// Unix ms.
    pub created_at: i64,
    pub approved_at: Option<i64>,
    /// Grants not revoked.
    pub live_grants: i64,
}

/// An approved grant, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantSummary {
    pub family_id: String,
    pub client_id: String,
    pub client_name: Option<String>,
    pub principal_id: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// Access tokens not revoked and not expired.
    pub live_tokens: i64,
}

/// Every registered client, newest first.
pub async fn list_clients(store: &Store) -> Result<Vec<ClientSummary>, StoreError> {
    store
        .sql_read(|c| {
            let mut st = c.prepare(
                "SELECT c.client_id, c.client_name, c.auth_method, c.redirect_uris, c.created_at, c.approved_at,
                        (SELECT count(*) FROM oauth_grants g WHERE g.client_id = c.client_id AND g.revoked_at IS NULL)
                 FROM oauth_clients c ORDER BY c.created_at DESC, c.client_id",
            )?;
            let rows = st
                .query_map(params![], |r| {
                    let uris: String = r.get(3)?;
                    Ok(ClientSummary {
                        client_id: r.get(0)?,
                        name: r.get(1)?,
                        auth_method: r.get(2)?,
                        redirect_uris: serde_json::from_str(&uris).unwrap_or_default(),
                        created_at: r.get(4)?,
                        approved_at: r.get(5)?,
                        live_grants: r.get(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, StoreError>(rows)
        })
        .await
}

/// Every grant, newest first.
pub async fn list_grants(store: &Store) -> Result<Vec<GrantSummary>, StoreError> {
    let now = crate::secrets::now_ms();
    store
        .sql_read(move |c| {
            let mut st = c.prepare(
                "SELECT g.family_id, g.client_id, c.client_name, g.principal_id, g.created_at, g.revoked_at,
                        (SELECT count(*) FROM access_tokens t WHERE t.family_id = g.family_id
                           AND t.revoked = 0 AND (t.expires_at IS NULL OR t.expires_at > ?1))
                 FROM oauth_grants g LEFT JOIN oauth_clients c ON c.client_id = g.client_id
                 ORDER BY g.created_at DESC, g.family_id",
            )?;
            let rows = st
                .query_map(params![now], |r| {
                    Ok(GrantSummary {
                        family_id: r.get(0)?,
                        client_id: r.get(1)?,
                        client_name: r.get(2)?,
                        principal_id: r.get(3)?,
                        created_at: r.get(4)?,
                        revoked_at: r.get(5)?,
                        live_tokens: r.get(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, StoreError>(rows)
        })
        .await
}

/// Revokes one grant. `None` if there is no such grant; otherwise whether
/// it was live until now.
pub async fn revoke_grant(store: &Store, family_id: &str) -> Result<Option<bool>, StoreError> {
    let id = family_id.to_string();
    let now = crate::secrets::now_ms();
    store
        .sql_write(move |c| {
            let revoked_at: Option<Option<i64>> = c
                .query_row(
                    "SELECT revoked_at FROM oauth_grants WHERE family_id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            let Some(revoked_at) = revoked_at else {
                return Ok::<_, StoreError>(None);
            };
            revoke_family(c, &id, now)?;
            Ok(Some(revoked_at.is_none()))
        })
        .await
}

/// Revokes every grant of a client. `None` if there is no such client;
/// otherwise how many grants were live until now. The registration stays:
/// the client can get access again only through a new approval.
pub async fn revoke_client(store: &Store, client_id: &str) -> Result<Option<usize>, StoreError> {
    let id = client_id.to_string();
    let now = crate::secrets::now_ms();
    store
        .sql_write(move |c| {
            let known: i64 = c.query_row(
                "SELECT count(*) FROM oauth_clients WHERE client_id = ?1",
                params![id],
                |r| r.get(0),
            )?;
            if known == 0 {
                return Ok::<_, StoreError>(None);
            }
            let families: Vec<String> = c
                .prepare(
                    "SELECT family_id FROM oauth_grants WHERE client_id = ?1 AND revoked_at IS NULL",
                )?
                .query_map(params![id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for f in &families {
                revoke_family(c, f, now)?;
            }
            Ok(Some(families.len()))
        })
        .await
}
