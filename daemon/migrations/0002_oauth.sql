-- The OAuth 2.1 authorization server. Secrets (client secrets,
-- codes, refresh tokens) are stored only as SHA-256 hashes; access tokens live
-- in access_tokens (kind 'oauth', resource = audience, family_id = grant).

-- Clients registered through /register (RFC 7591).
CREATE TABLE oauth_clients (
    client_id      TEXT PRIMARY KEY,
    secret_hash    BLOB,                  -- NULL for public clients ('none')
    auth_method    TEXT NOT NULL,         -- 'none' | 'client_secret_post' | 'client_secret_basic'
    redirect_uris  TEXT NOT NULL,         -- JSON array; /authorize matches exactly
    client_name    TEXT,
    metadata       TEXT NOT NULL,         -- the registered metadata as echoed, without the secret
    refresh        INTEGER NOT NULL,      -- 1 if refresh_token is among its grant types
    created_at     INTEGER NOT NULL,      -- unix ms
    approved_at    INTEGER                -- first approval; clients never approved expire
) WITHOUT ROWID;
CREATE INDEX oauth_clients_unapproved ON oauth_clients(created_at) WHERE approved_at IS NULL;

-- An approved grant: one principal, one family of tokens.
CREATE TABLE oauth_grants (
    family_id     TEXT PRIMARY KEY,
    client_id     TEXT NOT NULL REFERENCES oauth_clients(client_id),
    principal_id  TEXT NOT NULL REFERENCES principals(id),
    resource      TEXT NOT NULL,          -- RFC 8707 audience of every token of the grant
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER
) WITHOUT ROWID;

-- Authorization codes: single use, short-lived. A used code is kept until it
-- expires so that a replay can be told from garbage (and revokes the grant).
CREATE TABLE oauth_codes (
    code_hash       BLOB PRIMARY KEY,
    family_id       TEXT NOT NULL REFERENCES oauth_grants(family_id),
    redirect_uri    TEXT NOT NULL,
    code_challenge  TEXT NOT NULL,        -- PKCE S256: BASE64URL(SHA256(verifier))
    expires_at      INTEGER NOT NULL,
    used_at         INTEGER
) WITHOUT ROWID;
CREATE INDEX oauth_codes_expiry ON oauth_codes(expires_at);

-- Refresh tokens rotate: each use marks the token rotated and issues a new one.
-- A rotated token is honoured for a grace window; after it, its use revokes the
-- family (OAuth 2.1 §4.3.1, refresh token reuse detection).
CREATE TABLE oauth_refresh_tokens (
    token_hash  BLOB PRIMARY KEY,
    family_id   TEXT NOT NULL REFERENCES oauth_grants(family_id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    rotated_at  INTEGER
) WITHOUT ROWID;
CREATE INDEX oauth_refresh_tokens_family ON oauth_refresh_tokens(family_id);

-- Revoking a family revokes its access tokens in one statement.
CREATE INDEX access_tokens_family ON access_tokens(family_id) WHERE family_id IS NOT NULL;
