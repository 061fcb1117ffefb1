-- Principals: who acts. A CLI token names one; an approved OAuth grant is one.
CREATE TABLE principals (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,            -- 'cli' | 'oauth' | 'anonymous'
    created_at  INTEGER NOT NULL          -- unix ms
);

-- Bearer access tokens, stored only as SHA-256 hashes.
CREATE TABLE access_tokens (
    token_hash    BLOB PRIMARY KEY,
    principal_id  TEXT NOT NULL REFERENCES principals(id),
    kind          TEXT NOT NULL,          -- 'cli' | 'oauth'
    resource      TEXT,                   -- audience; NULL for CLI tokens (any resource of this daemon)
    expires_at    INTEGER,                -- unix ms; NULL = no expiry
    created_at    INTEGER NOT NULL,
    revoked       INTEGER NOT NULL DEFAULT 0,
    family_id     TEXT                    -- OAuth grant the token belongs to
) WITHOUT ROWID;
CREATE INDEX access_tokens_principal ON access_tokens(principal_id);

CREATE TABLE channels (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    admin_principal  TEXT NOT NULL REFERENCES principals(id),
    created_at       INTEGER NOT NULL,
    closed           INTEGER NOT NULL DEFAULT 0,
    allow_network    INTEGER NOT NULL DEFAULT 0,
    last_seq         INTEGER NOT NULL DEFAULT 0,
    head_hash        TEXT NOT NULL
);
CREATE INDEX channels_admin ON channels(admin_principal);

-- Slots and the seats that fill them. label: 'alice' for invite slots,
-- 'bot:referee' for bot slots. Secrets (invite, rejoin) only as hashes.
CREATE TABLE slots (
    channel_id    TEXT NOT NULL REFERENCES channels(id),
    label         TEXT NOT NULL,
    kind          TEXT NOT NULL,          -- 'invite' | 'bot'
    position      INTEGER NOT NULL,
    principal_id  TEXT REFERENCES principals(id),
    invite_hash   BLOB,
    rejoin_hash   BLOB,
    joined_at     INTEGER,
    PRIMARY KEY (channel_id, label)
) WITHOUT ROWID;
CREATE UNIQUE INDEX slots_invite ON slots(invite_hash) WHERE invite_hash IS NOT NULL;
CREATE UNIQUE INDEX slots_rejoin ON slots(rejoin_hash) WHERE rejoin_hash IS NOT NULL;
CREATE INDEX slots_principal ON slots(principal_id, channel_id);

-- The transcript. body is canonical JSON; for a private message the chain
-- covers body_hash instead of body (docs/architecture.md), salted with body_salt so that
-- a short private body cannot be found by hashing guesses.
CREATE TABLE messages (
    channel_id  TEXT NOT NULL REFERENCES channels(id),
    seq         INTEGER NOT NULL,
    sender      TEXT NOT NULL,
    kind        TEXT NOT NULL,            -- 'user' | 'bot' | 'system' | 'control'
    body        TEXT NOT NULL,
    recipients  TEXT,                     -- JSON array of slot labels; NULL = public
    body_hash   TEXT NOT NULL,
    body_salt   TEXT,                     -- private messages only; shown to their readers
    ts          TEXT NOT NULL,
    hash        TEXT NOT NULL,
    PRIMARY KEY (channel_id, seq)
) WITHOUT ROWID;

-- Bots attached to channels: the exact source that runs and its state.
CREATE TABLE bots (
    channel_id     TEXT NOT NULL REFERENCES channels(id),
    bot_id         TEXT NOT NULL,         -- the bot slot's label, e.g. 'bot:referee'
    name           TEXT NOT NULL,
    preset         TEXT,
    source         TEXT NOT NULL,
    code_hash      TEXT NOT NULL,
    manifest       TEXT NOT NULL,
    manifest_hash  TEXT NOT NULL,
    params         TEXT NOT NULL,
    network        INTEGER NOT NULL,
    state          TEXT NOT NULL DEFAULT '{}',
    -- Hooks are driven by the transcript: the bot has handled every message
    -- with seq <= cursor. A hook's effects and the cursor move commit together,
    -- so a crash neither loses nor repeats a hook.
    cursor         INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (channel_id, bot_id)
) WITHOUT ROWID;
