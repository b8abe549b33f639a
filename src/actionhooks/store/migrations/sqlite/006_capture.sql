-- Capture at the source (docs/capture.md): profiles, the state of derived unique events, account settings and
-- the accounts' tracking keys.

-- A profile's data as JSON (list_id, email, phone, fields, subscriptions); a deleted profile keeps its row with
-- body NULL (a tombstone: later messages get custom_data null).
CREATE TABLE profiles (
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    profile_id TEXT NOT NULL,
    list_id INTEGER,
    body BLOB,
    updated_at REAL NOT NULL,
    PRIMARY KEY (account_id, profile_id)
);

-- What derivation has seen: a mark per (rule, scope), e.g. the first open of a message by a profile. A mark
-- counts until expires_at (docs/capture.md#the-uniqueness-window); expired ones are removed by retention.
CREATE TABLE derive_marks (
    account_id INTEGER NOT NULL,
    mark TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (account_id, mark)
);
CREATE INDEX derive_marks_expiry ON derive_marks (expires_at);

-- An account's settings: derivation on or off.
CREATE TABLE account_settings (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id),
    derive INTEGER NOT NULL DEFAULT 1
);

-- HMAC keys signing an account's tracking tokens, sealed with ACTIONHOOKS_SECRET_KEY; the newest unretired one
-- signs, every unretired one verifies (rotation).
CREATE TABLE tracking_keys (
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    key_id TEXT NOT NULL,
    sealed BLOB NOT NULL,
    created_at REAL NOT NULL,
    retired_at REAL,
    PRIMARY KEY (account_id, key_id)
);
