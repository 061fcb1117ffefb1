-- Deterministic replay of bots (docs/replay.md): each bot attached from
-- now on gets a secret 32-byte seed from the OS's randomness, as 64 hex
-- digits. Every hook's randomness is derived from it, its `bot:attach`
-- entry carries a commitment to it, and it is revealed in the transcript
-- when the channel closes. NULL for bots attached before this migration:
-- their hooks ran on the OS's randomness and are not replayable.
ALTER TABLE bots ADD COLUMN seed TEXT;
