-- SQLite's 0008_sealed_seats.sql (its comment says what the column means):
-- the seq below which a kicked seat's private messages are sealed for every
-- later holder; 0 for a seat never kicked.
ALTER TABLE slots ADD COLUMN private_from BIGINT NOT NULL DEFAULT 0;
