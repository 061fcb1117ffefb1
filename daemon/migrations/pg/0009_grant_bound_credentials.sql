-- SQLite's 0008_grant_bound_credentials.sql (its comments say why): page
-- links record the grant that minted them, codes whether redirect_uri was
-- named, grants when they were redeemed, refresh tokens their parent.
ALTER TABLE page_links ADD COLUMN grant_id TEXT REFERENCES oauth_grants(family_id);
UPDATE page_links SET grant_id =
    (SELECT g.family_id FROM oauth_grants g WHERE g.principal_id = page_links.created_by);
UPDATE page_links SET revoked_at = (extract(epoch FROM now()) * 1000)::BIGINT
 WHERE revoked_at IS NULL
   AND grant_id IN (SELECT family_id FROM oauth_grants WHERE revoked_at IS NOT NULL);
CREATE INDEX page_links_grant ON page_links(grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX page_links_creator ON page_links(created_by);

ALTER TABLE oauth_pending ADD COLUMN redirect_uri_given BIGINT NOT NULL DEFAULT 1;
ALTER TABLE oauth_codes ADD COLUMN redirect_uri_given BIGINT NOT NULL DEFAULT 1;

ALTER TABLE oauth_grants ADD COLUMN redeemed_at BIGINT;
UPDATE oauth_grants SET redeemed_at = created_at
 WHERE EXISTS (SELECT 1 FROM access_tokens t WHERE t.family_id = oauth_grants.family_id);
CREATE INDEX oauth_grants_unredeemed ON oauth_grants(created_at) WHERE redeemed_at IS NULL;

CREATE INDEX oauth_codes_family ON oauth_codes(family_id);
CREATE INDEX oauth_grants_principal ON oauth_grants(principal_id);
CREATE INDEX page_links_principal ON page_links(principal_id) WHERE principal_id IS NOT NULL;

ALTER TABLE oauth_refresh_tokens ADD COLUMN parent_hash BYTEA;
ALTER TABLE oauth_refresh_tokens ADD COLUMN superseded_at BIGINT;
CREATE INDEX oauth_refresh_tokens_parent ON oauth_refresh_tokens(parent_hash)
 WHERE parent_hash IS NOT NULL;
