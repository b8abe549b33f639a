-- The log partitioned by ranges of seq (docs/operations.md#retention): retention drops a partition whole once every
-- event in it is due (no DELETE, no dead rows, no vacuum of the payloads). A unique index on a partitioned table
-- must include the partition key, so the uniqueness of producer-chosen ids (and derived events' ids) moves to the
-- narrow table event_ids, which is not partitioned: retention deletes a partition's ids in chunks before it drops
-- the partition. Ids the service generated (UUIDv7) are not kept there: nothing checks them.
--
-- This rewrites the log of an existing database (docs/operations.md#upgrading-an-existing-database): every event
-- is copied into the partitions, the keys into event_ids; the positions (seq) and the sequence's last value are
-- kept, so hook cursors still point where they did.

ALTER TABLE events RENAME TO events_unpartitioned;
ALTER INDEX events_account_type_seq RENAME TO events_unpartitioned_account_type_seq;

CREATE SEQUENCE log_seq AS BIGINT;

CREATE TABLE events (
    seq BIGINT NOT NULL DEFAULT nextval('log_seq'),
    account_id BIGINT NOT NULL,
    id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    list_id BIGINT,
    profile_id TEXT,
    received_at DOUBLE PRECISION NOT NULL,
    payload BYTEA NOT NULL
) PARTITION BY RANGE (seq);
ALTER SEQUENCE log_seq OWNED BY events.seq;

-- The partitions: [low, high) each, named events_p<low>; created ahead by the writer, dropped by retention.
-- keyed: some of its events have their ids in event_ids (deleted before the partition is dropped).
CREATE TABLE log_partitions (
    low BIGINT PRIMARY KEY,
    high BIGINT NOT NULL,
    keyed BOOLEAN NOT NULL DEFAULT FALSE
);

-- Producer-chosen and derived ids: unique per account across the whole log.
CREATE TABLE event_ids (
    account_id BIGINT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (account_id, id)
);

DO $$
DECLARE
    span CONSTANT BIGINT := 1000000;  -- the old events' partitions; the writer makes the next ones its own width
    last_seq BIGINT;
    called BOOLEAN;
    low BIGINT;
    high BIGINT;
    newest BIGINT;
BEGIN
    EXECUTE format('SELECT last_value, is_called FROM %s', pg_get_serial_sequence('events_unpartitioned', 'seq'))
        INTO last_seq, called;
    PERFORM setval('log_seq', last_seq, called);  -- positions are never reused: hook cursors stay valid
    SELECT MIN(seq) / span * span, MAX(seq) INTO low, newest FROM events_unpartitioned;
    -- partitions for the events kept (none for an empty log)
    WHILE low <= newest LOOP
        high := low + span;
        EXECUTE format('CREATE TABLE events_p%s PARTITION OF events FOR VALUES FROM (%s) TO (%s)', low, low, high);
        INSERT INTO log_partitions (low, high, keyed) VALUES (low, high, TRUE);
        low := high;
    END LOOP;
END
$$;

INSERT INTO events (seq, account_id, id, event_type, list_id, profile_id, received_at, payload)
    SELECT seq, account_id, id, event_type, list_id, profile_id, received_at, payload FROM events_unpartitioned;
-- every id of the old log (which ones the service generated is not known): the ids cost a little space until
-- their events leave the window
INSERT INTO event_ids (account_id, id) SELECT account_id, id FROM events_unpartitioned;
DROP TABLE events_unpartitioned;

-- the indexes after the copy (a bulk build, faster than one insert at a time)
ALTER TABLE events ADD CONSTRAINT log_pkey PRIMARY KEY (seq);
CREATE INDEX log_account_type_seq ON events (account_id, event_type, seq);
