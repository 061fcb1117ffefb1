-- What the quotas count (config `[quotas]`), kept with the data so that a
-- restart does not reset them. Bodies are counted in bytes of canonical JSON,
-- as stored.

-- Bytes of user and bot message bodies per channel (system and control
-- messages are the server's own and are not counted).
CREATE TABLE channel_usage (
    channel_id  TEXT PRIMARY KEY REFERENCES channels(id),
    body_bytes  INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO channel_usage (channel_id, body_bytes)
    SELECT channel_id, SUM(length(CAST(body AS BLOB))) FROM messages
    WHERE kind IN ('user', 'bot') GROUP BY channel_id;

-- Bytes of message bodies each principal posted per UTC day (day = unix
-- days). Rows of past days are dropped as the principal posts again.
CREATE TABLE principal_usage (
    principal_id  TEXT NOT NULL REFERENCES principals(id),
    day           INTEGER NOT NULL,
    body_bytes    INTEGER NOT NULL,
    PRIMARY KEY (principal_id, day)
) WITHOUT ROWID;

-- Channels created in the last hour, and open channels, per admin.
CREATE INDEX channels_admin_created ON channels(admin_principal, created_at);
CREATE INDEX channels_admin_open ON channels(admin_principal) WHERE closed = 0;

-- /healthz writes this one row: the cheapest write that proves the database
-- and its disk still take writes.
CREATE TABLE health_probe (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    at  INTEGER NOT NULL
);
