-- A kicked seat's private history stays with the holder it was written for.
-- private_from: the seat's private messages (sent from it or to it) with a
-- lower seq are sealed; no later holder of the seat reads their bodies, only
-- their salted body_hash, as any non-addressee does. Set to the seq of the
-- seat's `seat:kicked` entry when the admin kicks it; 0 for a seat never
-- kicked. A seat moved with its holder's rejoin token keeps it unchanged.
ALTER TABLE slots ADD COLUMN private_from INTEGER NOT NULL DEFAULT 0;
