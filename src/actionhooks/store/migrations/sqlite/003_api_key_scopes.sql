-- Several API keys per account, each named, scoped and revocable; the key each account had becomes an admin key
-- named "default". SQLite cannot change a primary key in place: the table is rebuilt.
CREATE TABLE api_keys_003 (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    key_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('ingest', 'admin')),
    created_at REAL NOT NULL,
    revoked_at REAL,
    last_used_at REAL
);
INSERT INTO api_keys_003 (account_id, key_hash, name, scope, created_at)
    SELECT account_id, key_hash, 'default', 'admin', created_at FROM api_keys ORDER BY created_at, rowid;
DROP TABLE api_keys;
ALTER TABLE api_keys_003 RENAME TO api_keys;
CREATE INDEX api_keys_account ON api_keys (account_id, id);
