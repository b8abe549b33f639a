-- Replays and dead-letter redrives (docs/delivery.md#replay-and-redrive): a hook's *side deliveries*, each a row
-- with its own cursor, so a restart resumes them. Ids are never reused: they are part of the transport-level
-- dedupe ids of what a side delivery sends.
CREATE TABLE side_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hook_id INTEGER NOT NULL,
    kind TEXT NOT NULL,              -- replay | redrive
    state TEXT NOT NULL,             -- running | done | cancelled | failed
    from_at REAL,                    -- a replay's range of acceptance times [from_at, to_at)
    to_at REAL,
    event_types TEXT,                -- a replay's types, JSON (NULL: the hook's)
    cursor INTEGER NOT NULL,         -- a replay: every log position up to it is handled
    end_seq INTEGER NOT NULL,        -- a replay: the last log position it covers
    total INTEGER NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX side_deliveries_hook ON side_deliveries (hook_id, id);
CREATE INDEX side_deliveries_running ON side_deliveries (state) WHERE state = 'running';
-- one running replay per hook (the API's 409, race-free)
CREATE UNIQUE INDEX side_deliveries_one_replay ON side_deliveries (hook_id) WHERE kind = 'replay' AND state = 'running';

-- A dead letter queued for a redrive names it; it leaves the table once delivered, or the redrive lets it go
-- with the new reason.
ALTER TABLE dead_letters ADD COLUMN redrive_id INTEGER;
CREATE INDEX dead_letters_redrive ON dead_letters (redrive_id, event_seq, id) WHERE redrive_id IS NOT NULL;

-- The pruned horizon: the acceptance time of the newest event retention removed (one row, none before the first
-- pruning). A replay from before it would miss events: the API refuses it.
CREATE TABLE pruned_horizon (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL
);
