-- ddl_undo_indexes: CREATE INDEX and DROP INDEX on a protected table are
-- recorded with their own kind and undone, and their undo is undone too;
-- with CONCURRENTLY each is a change set of its own.
SELECT fresh_ids();
CREATE TABLE events (id int PRIMARY KEY, kind text, at timestamptz, payload jsonb);
INSERT INTO events SELECT g, 'k' || g % 3, '2026-01-01'::timestamptz + g * interval '1 hour',
	jsonb_build_object('n', g) FROM generate_series(1, 30) g;
SELECT guard.protect('events');

CALL check_undo('events', $$CREATE INDEX events_kind_idx ON events (kind)$$);
-- no name, an expression, a predicate, INCLUDE, storage parameters
CALL check_undo('events', $$CREATE INDEX ON events (lower(kind), at DESC) INCLUDE (id)
	WITH (fillfactor = 80) WHERE at > '2026-01-01'$$);
SELECT kind, detail ->> 'index' AS index FROM guard.changes WHERE kind = 'CREATE INDEX' ORDER BY change_id DESC LIMIT 1;
-- DROP INDEX: back with its comment, and as the index the table is clustered on
COMMENT ON INDEX events_kind_idx IS 'by kind';
ALTER TABLE events CLUSTER ON events_kind_idx;
CALL check_undo('events', $$DROP INDEX events_kind_idx$$);
-- DROP INDEX ... CASCADE: the foreign keys that relied on it come back
CREATE UNIQUE INDEX events_at_key ON events (at);
CREATE TABLE alerts (at timestamptz REFERENCES events (at));
CALL check_undo('events', $$DROP INDEX events_at_key CASCADE$$);
-- undoing CREATE INDEX drops what was built on it since, and says so
CREATE UNIQUE INDEX events_payload_key ON events (payload);
SELECT max(changeset_id) AS create_cs FROM guard.changesets \gset
CREATE TABLE mentions (payload jsonb REFERENCES events (payload));
SELECT kind, objects FROM guard.restore(:create_cs, dry_run => true);
SELECT kind, objects FROM guard.restore(:create_cs);

-- CONCURRENTLY: each command is its own change set, undone in a transaction
CREATE INDEX CONCURRENTLY events_payload_idx ON events USING gin (payload);
SELECT max(changeset_id) AS cic FROM guard.changesets \gset
DROP INDEX CONCURRENTLY events_payload_idx;
SELECT max(changeset_id) AS dic FROM guard.changesets \gset
SELECT changeset_id - :cic AS changeset, kind, detail ->> 'concurrently' AS concurrently
  FROM guard.changes WHERE changeset_id IN (:cic, :dic) ORDER BY change_id;
SELECT kind FROM guard.restore(:dic);
SELECT indexrelid::regclass FROM pg_index WHERE indexrelid = 'events_payload_idx'::regclass;
SELECT kind FROM guard.restore(:cic);
SELECT count(*) FROM pg_class WHERE relname = 'events_payload_idx';
-- an index on a table guard does not protect is not recorded
CREATE TABLE scratch (x int);
CREATE INDEX ON scratch (x);
SELECT count(*) FROM guard.changes WHERE relation = 'public.scratch';

SELECT guard.unprotect('events');
DROP TABLE alerts, mentions, events, scratch;

-- a partitioned table's index: PostgreSQL names the partitions' indexes
-- after the columns as they are named when it makes them.  A column
-- renamed, then the index dropped, or the column retyped (which rebuilds
-- the indexes on it): the undo gives the partitions' indexes back their
-- names, the undo of the undo theirs since
CREATE TABLE parted (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
CREATE TABLE parted_2 (v int, id int NOT NULL);
ALTER TABLE parted ATTACH PARTITION parted_2 FOR VALUES FROM (100) TO (200);
INSERT INTO parted SELECT g, g FROM generate_series(1, 150, 7) g;
CREATE INDEX parted_v ON parted (v);
SELECT guard.protect('parted');
CREATE FUNCTION parted_indexes() RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(format('%s: %s', indrelid::regclass, indexrelid::regclass), ', '
					  ORDER BY indrelid::regclass::text, indexrelid::regclass::text)
	  FROM pg_index WHERE indrelid IN ('parted_1'::regclass, 'parted_2'::regclass)
	   AND NOT indisprimary
$$;
SELECT parted_indexes() AS before \gset
BEGIN;
ALTER TABLE parted RENAME COLUMN v TO w;
DROP INDEX parted_v;
COMMIT;
SELECT max(changeset_id) AS cs FROM guard.changesets \gset
SELECT kind FROM guard.restore(:cs) ORDER BY change_id DESC;
SELECT parted_indexes() = :'before' AS names_back, parted_indexes();
BEGIN;
ALTER TABLE parted RENAME COLUMN v TO w;
ALTER TABLE parted ALTER COLUMN w TYPE bigint;
COMMIT;
SELECT max(changeset_id) AS cs FROM guard.changesets \gset
SELECT parted_indexes() AS after \gset
SELECT :'after' <> :'before' AS postgres_renamed_them, :'after' AS after;
SELECT kind FROM guard.restore(:cs) ORDER BY change_id DESC;
SELECT parted_indexes() = :'before' AS names_back;
SELECT max(changeset_id) AS undo FROM guard.changesets \gset
SELECT count(*) > 0 AS undone_again FROM guard.restore(:undo);
SELECT parted_indexes() = :'after' AS names_as_after;
SELECT guard.unprotect('parted');
DROP TABLE parted;
DROP FUNCTION parted_indexes();
