-- Retention (docs/operations.md#retention): delivered attempts are counted here per hook and 10-second period
-- (the rows of the attempts table keep only each hook's newest delivered attempts, and every failed one).
CREATE TABLE delivery_counts (
    hook_id INTEGER NOT NULL,
    period_start REAL NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    dead_lettered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hook_id, period_start)
);
CREATE INDEX delivery_counts_period ON delivery_counts (period_start);
CREATE INDEX attempts_hook_outcome ON attempts (hook_id, outcome, id);

-- Events a hook had not delivered when retention removed them.
ALTER TABLE hooks ADD COLUMN expired_undelivered INTEGER NOT NULL DEFAULT 0;

-- Background jobs run in one process of those sharing the database: the one holding the lease.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL
);
