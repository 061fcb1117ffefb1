-- The PostgreSQL schema, at the version of SQLite's migrations 0001 to 0005
-- (the comments there say what each table and column is for). Integers are
-- BIGINT (unix ms, seqs, counts and 0/1 flags alike), blobs BYTEA; the
-- statements the daemon runs are the same on both engines.

CREATE TABLE principals (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE access_tokens (
    token_hash    BYTEA PRIMARY KEY,
    principal_id  TEXT NOT NULL REFERENCES principals(id),
    kind          TEXT NOT NULL,
    resource      TEXT,
    expires_at    BIGINT,
    created_at    BIGINT NOT NULL,
    revoked       BIGINT NOT NULL DEFAULT 0,
    family_id     TEXT
);
CREATE INDEX access_tokens_principal ON access_tokens(principal_id);

CREATE TABLE channels (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    admin_principal  TEXT NOT NULL REFERENCES principals(id),
    created_at       BIGINT NOT NULL,
    closed           BIGINT NOT NULL DEFAULT 0,
    allow_network    BIGINT NOT NULL DEFAULT 0,
    last_seq         BIGINT NOT NULL DEFAULT 0,
    head_hash        TEXT NOT NULL
);
CREATE INDEX channels_admin ON channels(admin_principal);

CREATE TABLE slots (
    channel_id    TEXT NOT NULL REFERENCES channels(id),
    label         TEXT NOT NULL,
    kind          TEXT NOT NULL,
    position      BIGINT NOT NULL,
    principal_id  TEXT REFERENCES principals(id),
    invite_hash   BYTEA,
    rejoin_hash   BYTEA,
    joined_at     BIGINT,
    PRIMARY KEY (channel_id, label)
);
CREATE UNIQUE INDEX slots_invite ON slots(invite_hash) WHERE invite_hash IS NOT NULL;
CREATE UNIQUE INDEX slots_rejoin ON slots(rejoin_hash) WHERE rejoin_hash IS NOT NULL;
CREATE INDEX slots_principal ON slots(principal_id, channel_id);

CREATE TABLE messages (
    channel_id  TEXT NOT NULL REFERENCES channels(id),
    seq         BIGINT NOT NULL,
    sender      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    body        TEXT NOT NULL,
    recipients  TEXT,
    body_hash   TEXT NOT NULL,
    body_salt   TEXT,
    ts          TEXT NOT NULL,
    hash        TEXT NOT NULL,
    cause       BIGINT,
    state_hash  TEXT,
    PRIMARY KEY (channel_id, seq)
);

CREATE TABLE bots (
    channel_id     TEXT NOT NULL REFERENCES channels(id),
    bot_id         TEXT NOT NULL,
    name           TEXT NOT NULL,
    preset         TEXT,
    source         TEXT NOT NULL,
    code_hash      TEXT NOT NULL,
    manifest       TEXT NOT NULL,
    manifest_hash  TEXT NOT NULL,
    params         TEXT NOT NULL,
    network        BIGINT NOT NULL,
    state          TEXT NOT NULL DEFAULT '{}',
    cursor         BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    state_salt     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (channel_id, bot_id)
);

CREATE TABLE oauth_clients (
    client_id            TEXT PRIMARY KEY,
    secret_hash          BYTEA,
    auth_method          TEXT NOT NULL,
    redirect_uris        TEXT NOT NULL,
    client_name          TEXT,
    metadata             TEXT NOT NULL,
    refresh              BIGINT NOT NULL,
    created_at           BIGINT NOT NULL,
    approved_at          BIGINT,
    registered_from      TEXT,
    metadata_expires_at  BIGINT
);
CREATE INDEX oauth_clients_unapproved ON oauth_clients(created_at) WHERE approved_at IS NULL;
CREATE INDEX oauth_clients_unapproved_from ON oauth_clients(registered_from, created_at)
    WHERE approved_at IS NULL;

CREATE TABLE oauth_grants (
    family_id     TEXT PRIMARY KEY,
    client_id     TEXT NOT NULL REFERENCES oauth_clients(client_id),
    principal_id  TEXT NOT NULL REFERENCES principals(id),
    resource      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);

CREATE TABLE oauth_codes (
    code_hash       BYTEA PRIMARY KEY,
    family_id       TEXT NOT NULL REFERENCES oauth_grants(family_id),
    redirect_uri    TEXT NOT NULL,
    code_challenge  TEXT NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT
);
CREATE INDEX oauth_codes_expiry ON oauth_codes(expires_at);

CREATE TABLE oauth_refresh_tokens (
    token_hash  BYTEA PRIMARY KEY,
    family_id   TEXT NOT NULL REFERENCES oauth_grants(family_id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    rotated_at  BIGINT
);
CREATE INDEX oauth_refresh_tokens_family ON oauth_refresh_tokens(family_id);
CREATE INDEX access_tokens_family ON access_tokens(family_id) WHERE family_id IS NOT NULL;

CREATE TABLE oauth_pending (
    id              TEXT PRIMARY KEY,
    csrf_hash       BYTEA NOT NULL,
    client_id       TEXT NOT NULL REFERENCES oauth_clients(client_id) ON DELETE CASCADE,
    redirect_uri    TEXT NOT NULL,
    state           TEXT,
    code_challenge  TEXT NOT NULL,
    resource        TEXT NOT NULL,
    requested_from  TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    approved_at     BIGINT
);
CREATE INDEX oauth_pending_from ON oauth_pending(requested_from, created_at);
CREATE INDEX oauth_pending_expiry ON oauth_pending(expires_at);

CREATE TABLE channel_usage (
    channel_id  TEXT PRIMARY KEY REFERENCES channels(id),
    body_bytes  BIGINT NOT NULL
);

CREATE TABLE principal_usage (
    principal_id  TEXT NOT NULL REFERENCES principals(id),
    day           BIGINT NOT NULL,
    body_bytes    BIGINT NOT NULL,
    PRIMARY KEY (principal_id, day)
);

CREATE INDEX channels_admin_created ON channels(admin_principal, created_at);
CREATE INDEX channels_admin_open ON channels(admin_principal) WHERE closed = 0;

CREATE TABLE health_probe (
    id  BIGINT PRIMARY KEY CHECK (id = 1),
    at  BIGINT NOT NULL
);

-- What the temporary triggers of SQLite's writer connection do
-- (store/tokens.rs): a transaction that changes or deletes a token row is
-- marked, and the writer then tells every daemon, in its commit
-- notification, to forget the tokens it remembers as valid.
CREATE FUNCTION mcpmp_token_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('mcpmp.tokens_changed', '1', true);
    RETURN NULL;
END
$$;
CREATE TRIGGER access_tokens_changed AFTER UPDATE OR DELETE ON access_tokens
    FOR EACH ROW EXECUTE FUNCTION mcpmp_token_changed();
