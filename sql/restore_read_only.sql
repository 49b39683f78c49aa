-- restore_read_only: in a read-only transaction (as on a hot standby) the
-- dry runs and the drill only plan (src/undo_plan.c): they give the report
-- and the verdict of the dry run that writes and rolls back, write nothing
-- (no change set, no sequence value), lock nothing above ACCESS SHARE; a
-- real restore, and the dry run of a schema change, are refused.  The
-- plan's rows stay within work_mem (src/plan_store.c): past it, on disk,
-- with the same answers.
SELECT fresh_ids();

CREATE TABLE ro (id int PRIMARY KEY, a int, b text);
INSERT INTO ro SELECT g, g, 'b' || g FROM generate_series(1, 40) g;
CREATE TABLE ro_part (id int, region text, v int, PRIMARY KEY (id, region))
	PARTITION BY LIST (region);
CREATE TABLE ro_part_eu PARTITION OF ro_part FOR VALUES IN ('eu');
CREATE TABLE ro_part_us (v int, region text NOT NULL, id int NOT NULL);
ALTER TABLE ro_part ATTACH PARTITION ro_part_us FOR VALUES IN ('us');
INSERT INTO ro_part SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g
  FROM generate_series(1, 10) g;
SELECT guard.protect('ro'), guard.protect('ro_part');
SELECT now() AS before \gset

-- one change set: a row changed twice, a swap of keys, a shift, deletes,
-- inserts, a key reused in the same change set, a cross-partition move
BEGIN;
SELECT guard.label('incident');
UPDATE ro SET a = a + 100 WHERE id <= 5;
UPDATE ro SET a = a + 1000, b = 'twice' WHERE id <= 3;
UPDATE ro SET id = 1010 WHERE id = 10;
UPDATE ro SET id = 10 WHERE id = 11;
UPDATE ro SET id = 11 WHERE id = 1010;
UPDATE ro SET id = id + 100 WHERE id BETWEEN 20 AND 25;
DELETE FROM ro WHERE id IN (30, 31);
INSERT INTO ro VALUES (30, 0, 'reused'), (500, 5, 'new');
UPDATE ro_part SET region = 'eu' WHERE id = 3;
UPDATE ro_part SET v = -v WHERE id <= 4;
DELETE FROM ro_part WHERE id = 9;
COMMIT;
SELECT changeset_id AS cs FROM guard.changesets WHERE label = 'incident' \gset
-- later writes of another change set: conflicts
UPDATE ro SET a = -1 WHERE id IN (1, 4);
DELETE FROM ro WHERE id = 500;

-- the answers of the dry runs that write and roll back
SELECT array_agg(r::text ORDER BY change_id) AS rw_skip
  FROM guard.restore(:cs, dry_run => true, on_conflict => 'skip') r \gset
SELECT array_agg(r::text ORDER BY change_id) AS rw_overwrite
  FROM guard.restore(:cs, dry_run => true, on_conflict => 'overwrite') r \gset
SELECT array_agg(r::text ORDER BY change_id) AS rw_to
  FROM guard.restore_to('ro', :'before', dry_run => true, on_conflict => 'skip') r \gset
SELECT min(change_id) AS first FROM guard.change WHERE changeset_id = :cs \gset
SELECT array_agg(r::text ORDER BY change_id) AS rw_change
  FROM guard.restore_change(:first, dry_run => true, on_conflict => 'overwrite') r \gset
SELECT array_agg(r::text ORDER BY change_id) AS rw_drill
  FROM guard.verify_restore(:cs) r \gset
SELECT expect_error(format('SELECT * FROM guard.restore(%s, dry_run => true)', :cs)) AS rw_abort \gset

-- capture triggers left firing on origin only: a restore sets them ALWAYS,
-- a plan leaves them
ALTER TABLE ro ENABLE TRIGGER guard_capture_upd;

SELECT last_value AS changeset_seq FROM guard.changeset_id_seq \gset
SELECT last_value AS change_seq FROM guard.change_id_seq \gset
SELECT count(*) AS changesets FROM guard.changeset \gset

BEGIN READ ONLY;
SELECT change_id, changeset_id, relation, kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs, dry_run => true, on_conflict => 'skip') ORDER BY change_id;
SELECT array_agg(r::text ORDER BY change_id) = :'rw_skip' AS same_skip
  FROM guard.restore(:cs, dry_run => true, on_conflict => 'skip') r;
SELECT array_agg(r::text ORDER BY change_id) = :'rw_overwrite' AS same_overwrite
  FROM guard.restore(:cs, dry_run => true, on_conflict => 'overwrite') r;
SELECT array_agg(r::text ORDER BY change_id) = :'rw_to' AS same_restore_to
  FROM guard.restore_to('ro', :'before', dry_run => true, on_conflict => 'skip') r;
SELECT array_agg(r::text ORDER BY change_id) = :'rw_change' AS same_restore_change
  FROM guard.restore_change(:first, dry_run => true, on_conflict => 'overwrite') r;
SELECT * FROM guard.verify_restore(:cs) ORDER BY change_id;
SELECT array_agg(r::text ORDER BY change_id) = :'rw_drill' AS same_drill
  FROM guard.verify_restore(:cs) r;
SELECT expect_error(format('SELECT * FROM guard.restore(%s, dry_run => true)', :cs)) = :'rw_abort'
  AS same_abort;
-- nothing above ACCESS SHARE on the tables
SELECT DISTINCT mode FROM pg_locks
 WHERE pid = pg_backend_pid() AND locktype = 'relation'
   AND relation IN ('ro'::regclass, 'ro_part'::regclass, 'ro_part_eu'::regclass,
					'ro_part_us'::regclass);
-- a real restore is refused, saying where a dry run works
SELECT expect_error(format('SELECT * FROM guard.restore(%s)', :cs));
SELECT expect_error(format($$SELECT * FROM guard.restore_to('ro', %L)$$, :'before'));
SELECT expect_error(format('SELECT * FROM guard.restore_change(%s)', :first));
COMMIT;

-- nothing was written
SELECT (SELECT last_value FROM guard.changeset_id_seq) = :changeset_seq AS changeset_seq_same,
	   (SELECT last_value FROM guard.change_id_seq) = :change_seq AS change_seq_same,
	   (SELECT count(*) FROM guard.changeset) = :changesets AS changesets_same;

SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'ro'::regclass AND tgname = 'guard_capture_upd';

-- the real restore of what the plan showed gives the rows back
SELECT change_id, changeset_id, relation, kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs, on_conflict => 'skip') ORDER BY change_id;
SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'ro'::regclass AND tgname = 'guard_capture_upd';
SELECT id, a, b FROM ro WHERE id IN (1, 2, 3, 4, 5, 10, 11, 20, 30, 31, 120, 500) ORDER BY id;
SELECT tableoid::regclass, * FROM ro_part ORDER BY id;

-- a schema change cannot be planned without writing
ALTER TABLE ro ADD COLUMN c int;
SELECT max(changeset_id) AS ddl_cs FROM guard.changes WHERE kind = 'ADD COLUMN' \gset
BEGIN READ ONLY;
SELECT regexp_replace(expect_error(format('SELECT * FROM guard.restore(%s, dry_run => true)', :ddl_cs)),
					  'change \d+', 'change N');
COMMIT;
-- where it can write, the dry run of a schema change works
SELECT relation, kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:ddl_cs, dry_run => true);

-- a migration tool's bookkeeping row: the plan counts what the restore
-- would do to it, and reports it as the dry run that writes does
CREATE TABLE knex_migrations (id serial PRIMARY KEY, name varchar(255), batch int,
	migration_time timestamptz);
-- (a new session knows the tool's table)
\c
BEGIN;
UPDATE ro SET a = 0 WHERE id BETWEEN 32 AND 35;
INSERT INTO knex_migrations (name, batch, migration_time) VALUES ('001_zero.js', 1, now());
COMMIT;
SELECT max(changeset_id) AS knex_cs FROM guard.changes WHERE label = '001_zero.js' \gset
SELECT array_agg(r::text ORDER BY change_id, kind) AS rw_knex
  FROM guard.restore(:knex_cs, dry_run => true) r \gset
BEGIN READ ONLY;
SELECT change_id IS NULL AS bookkeeping, relation, kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:knex_cs, dry_run => true) ORDER BY change_id, kind;
SELECT array_agg(r::text ORDER BY change_id, kind) = :'rw_knex' AS same_knex
  FROM guard.restore(:knex_cs, dry_run => true) r;
COMMIT;
SELECT name FROM knex_migrations;

-- past work_mem the plan's rows go to temporary files: the same answers
CREATE TABLE ro_big (id int PRIMARY KEY, v int, pad text);
INSERT INTO ro_big SELECT g, g, repeat('p', 50) FROM generate_series(1, 3000) g;
SELECT guard.protect('ro_big');
BEGIN;
SELECT guard.label('big') > 0 AS labelled;
UPDATE ro_big SET v = -v;
UPDATE ro_big SET id = id + 3000 WHERE id > 1000;
DELETE FROM ro_big WHERE id % 7 = 0;
INSERT INTO ro_big VALUES (7, 7, 'new');
UPDATE ro_big SET pad = 'changed' WHERE id % 3 = 0;
COMMIT;
SELECT changeset_id AS big FROM guard.changesets WHERE label = 'big' \gset
SET work_mem = '64kB';
SELECT array_agg(r::text ORDER BY change_id) AS rw_big
  FROM guard.restore(:big, dry_run => true) r \gset
SELECT array_agg(r::text ORDER BY change_id) AS rw_big_drill
  FROM guard.verify_restore(:big) r \gset
BEGIN READ ONLY;
SELECT relation, kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:big, dry_run => true) ORDER BY change_id;
SELECT array_agg(r::text ORDER BY change_id) = :'rw_big' AS same_big
  FROM guard.restore(:big, dry_run => true) r;
SELECT array_agg(r::text ORDER BY change_id) = :'rw_big_drill' AS same_big_drill,
	   bool_and(ok) AS drill_ok
  FROM guard.verify_restore(:big) r;
COMMIT;
RESET work_mem;

DROP TABLE ro, ro_part, ro_big, knex_migrations;
