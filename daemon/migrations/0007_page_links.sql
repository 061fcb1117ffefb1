-- Links to a channel's web page (/c/<id>), stored by the SHA-256 of their
-- secret only.
--   spectator       a read-only link a member shared: what a member who is
--                   not addressed sees (public messages, private entries
--                   without bodies); reusable until it expires or is revoked.
--   member_link     a one-time link a member minted to open the page as
--                   their own seat; spent (revoked_at set) when used.
--   member_session  what a member link is exchanged for: the page's cookie,
--                   tied to the principal and the seat, re-checked against
--                   the seat on every request.
CREATE TABLE page_links (
    id            TEXT PRIMARY KEY,
    channel_id    TEXT NOT NULL REFERENCES channels(id),
    secret_hash   BLOB NOT NULL UNIQUE,
    kind          TEXT NOT NULL CHECK (kind IN ('spectator', 'member_link', 'member_session')),
    principal_id  TEXT REFERENCES principals(id),
    seat          TEXT,
    created_by    TEXT NOT NULL REFERENCES principals(id),
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    revoked_at    INTEGER,
    CHECK ((kind = 'spectator') = (seat IS NULL))
);
CREATE INDEX page_links_channel ON page_links(channel_id);
