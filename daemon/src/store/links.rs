//! SQL of the channel page's links (`page_links` table): spectator links,
//! one-time member links and the member sessions they are exchanged for.
//! Only secrets' SHA-256 hashes are stored; the page (`crate::page`) decides
//! who a link admits.
//!
//! A link ends with the credential that made it. Each link records the OAuth
//! grant of the principal that minted it (`grant_id`; an OAuth principal has
//! exactly one grant, made with it by `oauth::grants::approve`): revoking
//! the grant revokes its links ([`revoke_of_grant`], called by
//! `oauth::grants::revoke_family`, which every grant revocation goes
//! through), and a link whose grant is revoked is read back as revoked even
//! if a revocation path forgot it ([`by_hash`]). Revoking a CLI principal's
//! tokens revokes every link it minted ([`revoke_of_principal`]).

use super::StoreError;
use super::db::Connection;
use super::tx::{NewPageLink, PageLinkKind, PageLinkRecord};
use rusqlite::{OptionalExtension, params};

impl PageLinkKind {
    fn as_str(self) -> &'static str {
        match self {
            PageLinkKind::Spectator => "spectator",
            PageLinkKind::MemberLink => "member_link",
            PageLinkKind::MemberSession => "member_session",
        }
    }

    fn parse(s: &str) -> Result<PageLinkKind, StoreError> {
        match s {
            "spectator" => Ok(PageLinkKind::Spectator),
            "member_link" => Ok(PageLinkKind::MemberLink),
            "member_session" => Ok(PageLinkKind::MemberSession),
            other => Err(StoreError::Corrupt {
                what: "page link kind",
                detail: other.to_string(),
            }),
        }
    }
}

/// Stores a link, recording the grant of the principal that minted it (a
/// member session's creator is the member link's, so it inherits the
/// link's grant).
pub(super) fn insert(c: &Connection, link: &NewPageLink<'_>) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO page_links (id, channel_id, secret_hash, kind, principal_id, seat, created_by, created_at, expires_at, grant_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,
                 (SELECT family_id FROM oauth_grants WHERE principal_id = ?7))",
        params![
            link.id,
            link.channel_id,
            link.secret_hash,
            link.kind.as_str(),
            link.member.map(|(p, _)| p),
            link.member.map(|(_, s)| s),
            link.created_by,
            link.created_at,
            link.expires_at,
        ],
    )?;
    Ok(())
}

pub(super) fn by_hash(c: &Connection, hash: &[u8]) -> Result<Option<PageLinkRecord>, StoreError> {
    let row = c
        .prepare_cached(
            // A link of a revoked grant is revoked (as of the grant's
            // revocation), whichever path revoked the grant.
            "SELECT l.id, l.channel_id, l.secret_hash, l.kind, l.principal_id, l.seat, l.expires_at,
                    COALESCE(l.revoked_at, g.revoked_at)
             FROM page_links l LEFT JOIN oauth_grants g ON g.family_id = l.grant_id
             WHERE l.secret_hash = ?1",
        )?
        .query_row(params![hash], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, Option<i64>>(7)?,
            ))
        })
        .optional()?;
    let Some((id, channel_id, stored_hash, kind, principal, seat, expires_at, revoked_at)) = row
    else {
        return Ok(None);
    };
    Ok(Some(PageLinkRecord {
        id,
        channel_id,
        stored_hash,
        kind: PageLinkKind::parse(&kind)?,
        member: principal.zip(seat),
        expires_at,
        revoked_at,
    }))
}

/// Revokes the channel's live links (one, when `only` names it); returns
/// how many it revoked.
pub(super) fn revoke(
    c: &Connection,
    channel_id: &str,
    only: Option<&str>,
    now: i64,
) -> Result<usize, StoreError> {
    Ok(c.execute(
        "UPDATE page_links SET revoked_at = ?1
         WHERE channel_id = ?2 AND revoked_at IS NULL AND (CAST(?3 AS TEXT) IS NULL OR id = ?3)",
        params![now, channel_id, only],
    )?)
}

/// Revokes every live link minted under the OAuth grant `family` (spectator
/// links, member links and the member sessions they were exchanged for);
/// returns how many. Open page streams notice at their next wake-up (a
/// commit to the channel, or the keep-alive), and show nothing committed
/// after this.
pub(crate) fn revoke_of_grant(c: &Connection, family: &str, now: i64) -> Result<usize, StoreError> {
    Ok(c.execute(
        "UPDATE page_links SET revoked_at = ?2 WHERE grant_id = ?1 AND revoked_at IS NULL",
        params![family, now],
    )?)
}

/// Revokes every live link the principal `principal` minted (its member
/// links and sessions are its own); returns how many. For a CLI principal whose tokens were all
/// revoked: every link it made was made with one of them.
pub(crate) fn revoke_of_principal(
    c: &Connection,
    principal: &str,
    now: i64,
) -> Result<usize, StoreError> {
    Ok(c.execute(
        "UPDATE page_links SET revoked_at = ?2
         WHERE created_by = ?1 AND revoked_at IS NULL",
        params![principal, now],
    )?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::{MIGRATIONS, Store};
    use crate::store::ReadTx;

    /// A database from before page links recorded their grant (version 7)
    /// migrates: each link gets the grant of its creator, the links of a
    /// grant already revoked are revoked, a CLI principal's link has none.
    #[tokio::test]
    async fn links_from_before_migration_9_get_their_creators_grant() {
        let dir = std::env::temp_dir().join(format!("mcpmp-links-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..7] {
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "user_version", 7).unwrap();
            c.execute_batch(
                "INSERT INTO principals VALUES ('p_gone', 'a', 'oauth', 0), ('p_live', 'b', 'oauth', 0),
                                               ('p_cli', 'c', 'cli', 0);
                 INSERT INTO oauth_clients (client_id, auth_method, redirect_uris, metadata, refresh, created_at)
                   VALUES ('c', 'none', '[]', '{}', 1, 0);
                 INSERT INTO oauth_grants (family_id, client_id, principal_id, resource, created_at, revoked_at)
                   VALUES ('g_gone', 'c', 'p_gone', 'r', 0, 5), ('g_live', 'c', 'p_live', 'r', 0, NULL);
                 INSERT INTO channels (id, name, admin_principal, created_at, head_hash)
                   VALUES ('ch1', 'x', 'p_live', 0, '00');
                 INSERT INTO page_links (id, channel_id, secret_hash, kind, principal_id, seat, created_by, created_at)
                   VALUES ('l_gone', 'ch1', x'01', 'member_session', 'p_gone', 'a', 'p_gone', 0),
                          ('l_live', 'ch1', x'02', 'spectator', NULL, NULL, 'p_live', 0),
                          ('l_cli', 'ch1', x'03', 'spectator', NULL, NULL, 'p_cli', 0);",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let rows: Vec<(String, Option<String>, bool)> = store
            .sql_read(|c| {
                c.prepare(
                    "SELECT id, grant_id, revoked_at IS NOT NULL FROM page_links ORDER BY id",
                )?
                .query_map(rusqlite::params![], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<_, _>>()
                .map_err(super::StoreError::from)
            })
            .await
            .unwrap();
        assert_eq!(
            rows,
            vec![
                ("l_cli".into(), None, false),
                ("l_gone".into(), Some("g_gone".into()), true),
                ("l_live".into(), Some("g_live".into()), false),
            ]
        );
        let live = store
            .read(|tx: &dyn ReadTx| tx.page_link(&[2]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(live.revoked_at, None);
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
