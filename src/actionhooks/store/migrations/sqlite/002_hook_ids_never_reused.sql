-- Hook ids are never reused after a delete: a reused id would hand a deleted hook's attempts and dead letters (kept
-- by hook id) to a new hook, and a client holding the old id would reach a stranger's hook. SQLite reuses the
-- largest rowid unless the key is AUTOINCREMENT, which cannot be added in place: rebuild the table, keeping its rows
-- and index. PostgreSQL's identity column never reuses ids.
CREATE TABLE hooks_rebuilt (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO hooks_rebuilt (
    id, account_id, settings, active, cursor, generation, created_at, updated_at, last_error, last_error_at
)
SELECT id, account_id, settings, active, cursor, generation, created_at, updated_at, last_error, last_error_at
FROM hooks;
DROP TABLE hooks;
ALTER TABLE hooks_rebuilt RENAME TO hooks;
CREATE INDEX hooks_account ON hooks (account_id, id);
-- ids deleted before this migration that still name attempts or dead letters are not handed out again either
DELETE FROM sqlite_sequence WHERE name IN ('hooks', 'hooks_rebuilt');
INSERT INTO sqlite_sequence (name, seq) VALUES ('hooks', max(
    coalesce((SELECT max(id) FROM hooks), 0),
    coalesce((SELECT max(hook_id) FROM attempts), 0),
    coalesce((SELECT max(hook_id) FROM dead_letters), 0)
));
