CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    created_at REAL NOT NULL
);

CREATE TABLE api_keys (
    key_hash TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    created_at REAL NOT NULL
);

-- The event log: append-only, ordered by seq.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,
    id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    list_id INTEGER,
    profile_id TEXT,
    received_at REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE UNIQUE INDEX events_account_id ON events (account_id, id);
CREATE INDEX events_account_type_seq ON events (account_id, event_type, seq);

CREATE TABLE hooks (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    settings BLOB NOT NULL,
    active INTEGER NOT NULL,
    cursor INTEGER NOT NULL,
    generation INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_error TEXT,
    last_error_at REAL
);
CREATE INDEX hooks_account ON hooks (account_id, id);

CREATE TABLE attempts (
    id INTEGER PRIMARY KEY,
    hook_id INTEGER NOT NULL,
    at REAL NOT NULL,
    batch_id TEXT NOT NULL,
    events INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER,
    latency_ms REAL,
    response_excerpt TEXT,
    error TEXT
);
CREATE INDEX attempts_hook ON attempts (hook_id, id);

CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY,
    hook_id INTEGER NOT NULL,
    event_seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at REAL NOT NULL
);
CREATE INDEX dead_letters_hook ON dead_letters (hook_id, id);

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
