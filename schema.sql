-- eventhubs-checkpointstore-sqlite: the only DDL of the store.
--
-- Each step starts with a line `-- version N` and upgrades a database from version N-1 to N.
-- A new database runs every step; an older one runs the steps it lacks. All steps run in one
-- transaction that also sets `PRAGMA user_version` to the last N, so an upgrade is atomic.
-- Never edit a step that has shipped: add a new one.
--
-- Keys: namespace, event_hub and consumer_group are stored folded to ASCII lowercase (they
-- match case-insensitively); partition_id is verbatim. Times are Unix time in nanoseconds, UTC,
-- stamped by the store when it writes.

-- version 1
CREATE TABLE ownership (
    namespace       TEXT    NOT NULL CHECK (length(namespace) > 0),
    event_hub       TEXT    NOT NULL CHECK (length(event_hub) > 0),
    consumer_group  TEXT    NOT NULL CHECK (length(consumer_group) > 0),
    partition_id    TEXT    NOT NULL CHECK (length(partition_id) > 0),
    -- NULL when released (never the empty string).
    owner_id        TEXT    CHECK (owner_id IS NULL OR length(owner_id) > 0),
    -- Rotated (a new UUID v4) by every successful claim.
    etag            TEXT    NOT NULL,
    last_modified   INTEGER NOT NULL,
    -- Ownership generation: +1 whenever a different owner takes the partition (the legacy
    -- EventProcessorHost epoch). Never decreases.
    epoch           INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, event_hub, consumer_group, partition_id)
) WITHOUT ROWID;

CREATE TABLE checkpoint (
    namespace       TEXT    NOT NULL CHECK (length(namespace) > 0),
    event_hub       TEXT    NOT NULL CHECK (length(event_hub) > 0),
    consumer_group  TEXT    NOT NULL CHECK (length(consumer_group) > 0),
    partition_id    TEXT    NOT NULL CHECK (length(partition_id) > 0),
    -- The opaque offset string, verbatim.
    event_offset    TEXT,
    sequence_number INTEGER,
    -- A row with neither position is a legacy StartOfStream placeholder: the legacy API reads
    -- it as offset "-1", sequence number 0; the modern API does not list it.
    PRIMARY KEY (namespace, event_hub, consumer_group, partition_id)
) WITHOUT ROWID;

-- version 2
-- The legacy EventProcessorHost lease's `event_processor_context`: an opaque string the legacy
-- API stores with the lease (the ownership row). The modern API neither reads nor changes it.
ALTER TABLE ownership ADD COLUMN event_processor_context TEXT;

-- version 3
-- The legacy EventProcessorHost lease token, fixed by a legacy acquire (or steal) and kept by
-- renewals, updates and checkpoints until the lease is released or lost, as an Azure blob lease
-- id is (the row's etag still rotates on every write). `lease_epoch` is the epoch it was issued
-- at: the token is current only while `owner_id` is set and `epoch` is still `lease_epoch`, so a
-- modern change of owner (which raises the epoch) ends it. The modern API neither reads nor
-- changes either column. A lease held when the file is upgraded keeps the token it had (the etag
-- of its last write, which is what earlier versions used as the token).
ALTER TABLE ownership ADD COLUMN lease_token TEXT;
ALTER TABLE ownership ADD COLUMN lease_epoch INTEGER;
UPDATE ownership SET lease_token = etag, lease_epoch = epoch WHERE owner_id IS NOT NULL;
