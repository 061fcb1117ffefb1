-- The authorization server, second step: per-address caps, client metadata
-- documents, and sign-ins waiting for approval kept in the database (so the
-- `approve` command can see them, and a restart keeps them).

-- Where an unapproved client came from (an IPv4 address or an IPv6 /64), so
-- that the cap on unapproved clients drops that address's oldest ones first.
ALTER TABLE oauth_clients ADD COLUMN registered_from TEXT;
-- For a client whose client_id is the URL of its metadata document: when the
-- fetched document goes stale (unix ms). NULL for clients registered by DCR.
ALTER TABLE oauth_clients ADD COLUMN metadata_expires_at INTEGER;
CREATE INDEX oauth_clients_unapproved_from ON oauth_clients(registered_from, created_at)
    WHERE approved_at IS NULL;

-- An authorization request shown on the approval page, waiting for the
-- operator: the passphrase on the page, or `mcp-multiplayer approve ID`.
CREATE TABLE oauth_pending (
    id              TEXT PRIMARY KEY,     -- short code shown on the page and by `approve`
    csrf_hash       BLOB NOT NULL,        -- SHA-256 of the cookie that binds the form to its browser
    client_id       TEXT NOT NULL REFERENCES oauth_clients(client_id) ON DELETE CASCADE,
    redirect_uri    TEXT NOT NULL,        -- as requested (normalised), one the client registered
    state           TEXT,
    code_challenge  TEXT NOT NULL,
    resource        TEXT NOT NULL,
    requested_from  TEXT NOT NULL,        -- address key of the browser that opened the page
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    approved_at     INTEGER               -- set by `mcp-multiplayer approve`
) WITHOUT ROWID;
CREATE INDEX oauth_pending_from ON oauth_pending(requested_from, created_at);
CREATE INDEX oauth_pending_expiry ON oauth_pending(expires_at);
