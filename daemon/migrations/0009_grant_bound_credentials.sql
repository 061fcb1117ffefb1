-- What the red-team review of the OAuth server and the channel page found
-- missing: every credential a grant made ends with the grant, a grant has one
-- live refresh chain, a code is redeemed with the redirect URI it was sent
-- to, and sign-ins whose code was never redeemed are deleted.

-- The OAuth grant whose principal minted a page link (NULL for a link minted
-- with a CLI token, or without authentication). Revoking the grant revokes
-- the link (oauth::grants::revoke_family), and a link whose grant is revoked
-- admits nobody (store::links::by_hash). An OAuth principal has exactly one
-- grant (each approval makes a new principal), so links made before this
-- migration get their grant from their creator; those of a grant already
-- revoked are revoked now.
ALTER TABLE page_links ADD COLUMN grant_id TEXT REFERENCES oauth_grants(family_id);
UPDATE page_links SET grant_id =
    (SELECT g.family_id FROM oauth_grants g WHERE g.principal_id = page_links.created_by);
UPDATE page_links SET revoked_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000
 WHERE revoked_at IS NULL
   AND grant_id IN (SELECT family_id FROM oauth_grants WHERE revoked_at IS NOT NULL);
CREATE INDEX page_links_grant ON page_links(grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX page_links_creator ON page_links(created_by);

-- Whether the authorization request named its redirect_uri: then the token
-- request must send the same one (OAuth 2.1 §4.1.3). Requests waiting for
-- approval carry it to their code.
ALTER TABLE oauth_pending ADD COLUMN redirect_uri_given INTEGER NOT NULL DEFAULT 1;
ALTER TABLE oauth_codes ADD COLUMN redirect_uri_given INTEGER NOT NULL DEFAULT 1;

-- When a grant's code was first exchanged for tokens. A grant never redeemed
-- once its code expired is deleted with its principal (a flood of GET
-- /authorize in auto mode leaves nothing behind).
ALTER TABLE oauth_grants ADD COLUMN redeemed_at INTEGER;
UPDATE oauth_grants SET redeemed_at = created_at
 WHERE EXISTS (SELECT 1 FROM access_tokens t WHERE t.family_id = oauth_grants.family_id);
CREATE INDEX oauth_grants_unredeemed ON oauth_grants(created_at) WHERE redeemed_at IS NULL;

-- What deleting a lapsed grant and its principal looks up (foreign keys
-- included), and what a new page link's grant is found by.
CREATE INDEX oauth_codes_family ON oauth_codes(family_id);
CREATE INDEX oauth_grants_principal ON oauth_grants(principal_id);
CREATE INDEX page_links_principal ON page_links(principal_id) WHERE principal_id IS NOT NULL;

-- A grant's refresh tokens form one chain: parent_hash is the token a
-- refresh token replaced (NULL for the first, from the code). Once one of a
-- token's successors is used, its other successors and the token itself are
-- superseded: any later use of them is a replay and revokes the grant.
ALTER TABLE oauth_refresh_tokens ADD COLUMN parent_hash BLOB;
ALTER TABLE oauth_refresh_tokens ADD COLUMN superseded_at INTEGER;
CREATE INDEX oauth_refresh_tokens_parent ON oauth_refresh_tokens(parent_hash)
 WHERE parent_hash IS NOT NULL;
