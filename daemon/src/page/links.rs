//! Who may open a channel's page, and the links that say so.
//!
//! Three kinds of link (`store::PageLinkKind`), each a secret of 256 random
//! bits that the store keeps only as its SHA-256:
//!
//! - a **spectator link**, minted by any member with `share_channel`: it
//!   shows the channel as a member who is neither sender nor recipient of
//!   its private messages sees it (public messages; private ones as entries
//!   without their bodies) and nothing a member alone may see (no invites,
//!   rejoin tokens or seats' holders). Reusable until it expires (a week by
//!   default) or the channel's admin revokes it.
//! - a **member link**, minted by a member for their own seat: it works
//!   once, for ten minutes, and is exchanged for
//! - a **member session**: the page's cookie, valid twelve hours, that shows
//!   the channel as that seat reads it (its own private messages too) while
//!   the principal still holds the seat.
//!
//! Every request and every wake-up of a page's event stream checks its link
//! again in the snapshot it reads messages from ([`check`]), so a revoked or
//! expired link, or a member who lost the seat, gets nothing committed after
//! that.

use crate::channels::ToolError;
use crate::channels::rules;
use crate::model::{PageAudience, Principal, Shared, SharesRevoked};
use crate::secrets::{self, SecretKind};
use crate::store::{NewPageLink, PageLinkKind, PageLinkRecord, ReadTx, Store, StoreError};
use std::time::Duration;

/// How long a spectator link lives unless the member says otherwise.
pub const DEFAULT_SPECTATOR_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest a spectator link may live.
pub const MAX_SPECTATOR_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long a one-time member link may wait to be opened.
pub const MEMBER_LINK_TTL: Duration = Duration::from_secs(10 * 60);
/// How long the page's member session (its cookie) lasts.
pub const MEMBER_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Who reads the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Viewer {
    /// A spectator: what a member who is not addressed sees.
    Spectator,
    /// A member, as this seat.
    Member { seat: String },
}

/// A link that admits its holder to one channel's page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Access {
    pub link_id: String,
    pub channel_id: String,
    pub viewer: Viewer,
    /// Unix milliseconds.
    pub expires_at: Option<i64>,
}

/// Why a link does not admit its holder. The page tells the browser only
/// that the link does not work; the reason goes to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No such link, or one of another channel.
    Unknown,
    Revoked,
    Expired,
    /// A member session whose principal no longer holds the seat.
    SeatLost,
    /// The channel is gone.
    NoChannel,
}

impl Denied {
    pub fn as_str(self) -> &'static str {
        match self {
            Denied::Unknown => "unknown",
            Denied::Revoked => "revoked",
            Denied::Expired => "expired",
            Denied::SeatLost => "seat lost",
            Denied::NoChannel => "no channel",
        }
    }
}

/// Whether `link` (found by the hash of `secret`) admits its holder to
/// `channel_id` at `now`, as what kind of link. Pure: the caller read the
/// link and the seats of its principal in one snapshot.
pub(crate) fn admits(
    link: Option<&PageLinkRecord>,
    secret: &str,
    channel_id: &str,
    now: i64,
    seats_of_member: &[String],
) -> Result<Access, Denied> {
    let Some(link) = link else {
        return Err(Denied::Unknown);
    };
    if !secrets::hashes_equal(&link.stored_hash, &secrets::hash_secret(secret))
        || link.channel_id != channel_id
    {
        return Err(Denied::Unknown);
    }
    if link.revoked_at.is_some() {
        return Err(Denied::Revoked);
    }
    if link.expires_at.is_some_and(|e| now >= e) {
        return Err(Denied::Expired);
    }
    let viewer = match (&link.kind, &link.member) {
        (PageLinkKind::Spectator, _) => Viewer::Spectator,
        (PageLinkKind::MemberLink | PageLinkKind::MemberSession, Some((_, seat))) => {
            if !seats_of_member.iter().any(|s| s == seat) {
                return Err(Denied::SeatLost);
            }
            Viewer::Member { seat: seat.clone() }
        }
        // A member kind always has its principal and seat (a CHECK in the
        // table); a row without is treated as unknown.
        (_, None) => return Err(Denied::Unknown),
    };
    Ok(Access {
        link_id: link.id.clone(),
        channel_id: link.channel_id.clone(),
        viewer,
        expires_at: link.expires_at,
    })
}

/// Checks `secret` for `channel_id` inside a read (or write) snapshot.
///
/// # Errors
/// The outer error is the store's; the inner says why the link is refused.
pub(crate) fn check(
    tx: &dyn ReadTx,
    channel_id: &str,
    secret: &str,
    now: i64,
) -> Result<Result<(Access, PageLinkKind), Denied>, StoreError> {
    let link = tx.page_link(&secrets::hash_secret(secret))?;
    let seats = match link.as_ref().and_then(|l| l.member.as_ref()) {
        Some((principal, _)) => tx.seats_of(channel_id, principal)?,
        None => Vec::new(),
    };
    let access = admits(link.as_ref(), secret, channel_id, now, &seats);
    if access.is_ok() && tx.channel(channel_id)?.is_none() {
        return Ok(Err(Denied::NoChannel));
    }
    Ok(access.map(|a| (a, link.map_or(PageLinkKind::Spectator, |l| l.kind))))
}

/// What `share_channel` asks for.
#[derive(Debug, Clone)]
pub(crate) struct ShareRequest {
    pub channel_id: String,
    pub audience: PageAudience,
    /// Which seat a member link opens, for a principal with several.
    pub slot: Option<String>,
    /// A spectator link's lifetime (default [`DEFAULT_SPECTATOR_TTL`]).
    pub expires_in: Option<Duration>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Mints a link to the channel's page: a spectator link (any member or the
/// admin) or a one-time member link for the caller's own seat.
///
/// # Errors
/// `CHANNEL_NOT_FOUND`, `NOT_MEMBER` (and the seat errors of
/// `rules::resolve_seat` for a member link), `BAD_REQUEST` for a lifetime
/// out of range.
pub(crate) async fn share(
    store: &Store,
    origin: &str,
    who: &Principal,
    req: ShareRequest,
) -> Result<Shared, ToolError> {
    let ttl = match req.audience {
        PageAudience::Spectators => req.expires_in.unwrap_or(DEFAULT_SPECTATOR_TTL),
        PageAudience::Me => {
            if req.expires_in.is_some() {
                return Err(ToolError::bad(
                    "expires_in_hours is for spectator links; a link for you always lasts ten minutes and works once. Leave it out.",
                ));
            }
            MEMBER_LINK_TTL
        }
    };
    if ttl.is_zero() || ttl > MAX_SPECTATOR_TTL {
        return Err(ToolError::bad(
            "expires_in_hours must be between 1 and 8760 (a year).",
        ));
    }
    let who = who.clone();
    let origin = origin.to_string();
    store
        .write(move |tx| {
            let ch = rules::found(tx.channel(&req.channel_id)?, &req.channel_id)?;
            let seats = tx.seats_of(&ch.id, &who.id)?;
            rules::require_reader(&ch, &who, &seats)?;
            let (kind, secret_kind, seat) = match req.audience {
                PageAudience::Spectators => (PageLinkKind::Spectator, SecretKind::PageView, None),
                PageAudience::Me => (
                    PageLinkKind::MemberLink,
                    SecretKind::PageLogin,
                    Some(rules::resolve_seat(&seats, req.slot.as_deref())?),
                ),
            };
            let now = secrets::now_ms();
            let expires_at = now.saturating_add(ms(ttl));
            let id = secrets::new_id("lnk_");
            let secret = secrets::new_secret(secret_kind);
            tx.insert_page_link(&NewPageLink {
                id: &id,
                channel_id: &ch.id,
                secret_hash: &secrets::hash_secret(&secret),
                kind,
                member: seat.as_deref().map(|s| (who.id.as_str(), s)),
                created_by: &who.id,
                created_at: now,
                expires_at: Some(expires_at),
            })?;
            Ok(Shared {
                url: format!("{origin}/c/{}?key={secret}", ch.id),
                link_id: id,
                channel_id: ch.id.clone(),
                audience: req.audience,
                seat,
                expires_at: secrets::rfc3339_ms(expires_at),
            })
        })
        .await
}

/// Revokes the channel's page links (admin only): one by its `link_id`, or
/// every spectator link, unused member link and member session. Open pages
/// lose their event stream at once.
///
/// # Errors
/// `CHANNEL_NOT_FOUND`, `NOT_ADMIN`; `UNKNOWN_SLOT`-like `BAD_REQUEST` when
/// `link_id` names no live link of the channel.
pub(crate) async fn revoke(
    store: &Store,
    who: &Principal,
    channel_id: &str,
    link_id: Option<String>,
) -> Result<SharesRevoked, ToolError> {
    let who = who.clone();
    let cid = channel_id.to_string();
    store
        .write(move |tx| {
            let ch = rules::found(tx.channel(&cid)?, &cid)?;
            rules::require_admin(&ch, &who, "revoke the channel's page links")?;
            let n = tx.revoke_page_links(&ch.id, link_id.as_deref(), secrets::now_ms())?;
            if n == 0
                && let Some(id) = &link_id
            {
                return Err(ToolError::bad(format!(
                    "No live page link {id:?} in this channel (it may be revoked or spent already). Leave link_id out to revoke all of them."
                )));
            }
            Ok(SharesRevoked {
                channel_id: ch.id.clone(),
                revoked: n as u64,
            })
        })
        .await
}

/// Exchanges a one-time member link for a member session: spends the link
/// and returns the session's secret (the page's cookie) with its expiry.
/// Any other link is returned unchanged (a spectator link is its own cookie).
///
/// # Errors
/// The outer error is the store's; the inner says why the link is refused.
pub(crate) async fn redeem(
    store: &Store,
    channel_id: &str,
    secret: &str,
) -> Result<Result<(String, Access), Denied>, StoreError> {
    let cid = channel_id.to_string();
    let secret = secret.to_string();
    store
        .write(move |tx| {
            let now = secrets::now_ms();
            let (access, kind) = match check(&*tx, &cid, &secret, now)? {
                Ok(a) => a,
                Err(d) => return Ok(Err(d)),
            };
            if kind != PageLinkKind::MemberLink {
                return Ok(Ok((secret, access)));
            }
            let Viewer::Member { seat } = &access.viewer else {
                return Ok(Err(Denied::Unknown));
            };
            // Spent in the same write that makes the session: a link opened
            // twice at once makes one session.
            if tx.revoke_page_links(&cid, Some(&access.link_id), now)? != 1 {
                return Ok(Err(Denied::Revoked));
            }
            let principal = tx
                .page_link(&secrets::hash_secret(&secret))?
                .and_then(|l| l.member)
                .map(|(p, _)| p)
                .unwrap_or_default();
            let session = secrets::new_secret(SecretKind::PageSession);
            let id = secrets::new_id("lnk_");
            let expires_at = now.saturating_add(ms(MEMBER_SESSION_TTL));
            tx.insert_page_link(&NewPageLink {
                id: &id,
                channel_id: &cid,
                secret_hash: &secrets::hash_secret(&session),
                kind: PageLinkKind::MemberSession,
                member: Some((&principal, seat)),
                created_by: &principal,
                created_at: now,
                expires_at: Some(expires_at),
            })?;
            let access = Access {
                link_id: id,
                channel_id: cid.clone(),
                viewer: access.viewer.clone(),
                expires_at: Some(expires_at),
            };
            Ok(Ok((session, access)))
        })
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn link(kind: PageLinkKind, secret: &str) -> PageLinkRecord {
        PageLinkRecord {
            id: "lnk_1".into(),
            channel_id: "ch_1".into(),
            stored_hash: secrets::hash_secret(secret),
            kind,
            member: (kind != PageLinkKind::Spectator).then(|| ("p1".into(), "alice".into())),
            expires_at: Some(1000),
            revoked_at: None,
        }
    }

    #[test]
    fn a_spectator_link_admits_a_spectator_of_its_own_channel_until_it_expires() {
        let l = link(PageLinkKind::Spectator, "s");
        let a = admits(Some(&l), "s", "ch_1", 999, &[]).unwrap();
        assert_eq!(a.viewer, Viewer::Spectator);
        assert_eq!(
            admits(Some(&l), "s", "ch_1", 1000, &[]),
            Err(Denied::Expired)
        );
        assert_eq!(admits(Some(&l), "s", "ch_2", 1, &[]), Err(Denied::Unknown));
        assert_eq!(admits(Some(&l), "t", "ch_1", 1, &[]), Err(Denied::Unknown));
        assert_eq!(admits(None, "s", "ch_1", 1, &[]), Err(Denied::Unknown));
    }

    #[test]
    fn a_revoked_link_admits_nobody() {
        let mut l = link(PageLinkKind::Spectator, "s");
        l.revoked_at = Some(5);
        assert_eq!(admits(Some(&l), "s", "ch_1", 1, &[]), Err(Denied::Revoked));
    }

    #[test]
    fn a_member_session_admits_only_while_its_principal_holds_the_seat() {
        let l = link(PageLinkKind::MemberSession, "m");
        let a = admits(Some(&l), "m", "ch_1", 1, &["alice".into()]).unwrap();
        assert_eq!(
            a.viewer,
            Viewer::Member {
                seat: "alice".into()
            }
        );
        assert_eq!(
            admits(Some(&l), "m", "ch_1", 1, &["bob".into()]),
            Err(Denied::SeatLost)
        );
        assert_eq!(admits(Some(&l), "m", "ch_1", 1, &[]), Err(Denied::SeatLost));
    }
}
