-- SQLite's 0007_page_links.sql (its comments say what each kind of link
-- is): links to a channel's web page, stored by the SHA-256 of their secret.
CREATE TABLE page_links (
    id            TEXT PRIMARY KEY,
    channel_id    TEXT NOT NULL REFERENCES channels(id),
    secret_hash   BYTEA NOT NULL UNIQUE,
    kind          TEXT NOT NULL CHECK (kind IN ('spectator', 'member_link', 'member_session')),
    principal_id  TEXT REFERENCES principals(id),
    seat          TEXT,
    created_by    TEXT NOT NULL REFERENCES principals(id),
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT,
    CHECK ((kind = 'spectator') = (seat IS NULL))
);
CREATE INDEX page_links_channel ON page_links(channel_id);
