-- SQLite's 0006_bot_seeds.sql: each bot's secret seed (64 hex digits), NULL
-- for bots attached before seeds existed.
ALTER TABLE bots ADD COLUMN seed TEXT;
