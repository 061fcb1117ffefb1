-- Causal order in the transcript (docs/bots.md, "Causal order"): a bot's
-- entries record the seq of the message whose hook wrote them, and the last
-- entry of a hook the salted hash of the bot's state after it. Both are part
-- of the hashed entry; NULL on entries written before they existed, which
-- hash as they always did.
ALTER TABLE messages ADD COLUMN cause INTEGER;
ALTER TABLE messages ADD COLUMN state_hash TEXT;

-- The secret salt of each bot's state_hash: 128 random bits, so that a small
-- state (a number from 1 to 100) cannot be found from its hash. Bots attached
-- before this migration get one from SQLite's CSPRNG-seeded generator.
ALTER TABLE bots ADD COLUMN state_salt TEXT NOT NULL DEFAULT '';
UPDATE bots SET state_salt = lower(hex(randomblob(16))) WHERE state_salt = '';
