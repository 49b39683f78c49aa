-- restore_estimate: a dry run's estimated_seconds comes from the rates of
-- earlier real restores in this database, per kind of change: NULL before
-- the first restore of that kind, positive after it.  The real restore
-- reports the same estimate as its dry run (it has the same history), and
-- records its own rate.  guard.restore_rate is guard's own.  Nothing is
-- asserted of the values themselves, which depend on the machine.
SELECT fresh_ids();
DELETE FROM guard.restore_rate;

CREATE TABLE est (id int PRIMARY KEY, v text);
INSERT INTO est SELECT g, 'v' || g FROM generate_series(1, 200) g;
SELECT guard.protect('est');

UPDATE est SET v = 'x' WHERE id <= 100;
SELECT max(changeset_id) AS cs1 FROM guard.changesets \gset

-- no restore yet: no estimate
CREATE TABLE dry AS SELECT * FROM guard.restore(:cs1, dry_run => true);
SELECT kind, rows_restored, estimated_seconds IS NULL AS no_estimate FROM dry;
CREATE TABLE real AS SELECT * FROM guard.restore(:cs1);
SELECT kind, rows_restored, estimated_seconds IS NULL AS no_estimate FROM real;
SELECT (SELECT d::text FROM dry d) IS NOT DISTINCT FROM (SELECT r::text FROM real r) AS dry_run_matches;

-- the real restore recorded its rate
SELECT kind, rows, seconds > 0 AS timed FROM guard.restore_rate;

-- another UPDATE: now estimated, the same by the dry run and the restore
UPDATE est SET v = 'y' WHERE id > 150;
SELECT max(changeset_id) AS cs2 FROM guard.changesets \gset
DROP TABLE dry, real;
CREATE TABLE dry AS SELECT * FROM guard.restore(:cs2, dry_run => true);
SELECT kind, rows_restored, estimated_seconds > 0 AS estimated FROM dry;
CREATE TABLE real AS SELECT * FROM guard.restore(:cs2);
SELECT (SELECT d::text FROM dry d) = (SELECT r::text FROM real r) AS dry_run_matches;
SELECT kind, count(*) FROM guard.restore_rate GROUP BY kind;

-- a DELETE has no rate of its own yet
DELETE FROM est WHERE id <= 10;
SELECT max(changeset_id) AS cs3 FROM guard.changesets \gset
SELECT kind, estimated_seconds IS NULL AS no_estimate
  FROM guard.restore(:cs3, dry_run => true);

-- a dry run records nothing
SELECT count(*) FROM guard.restore_rate;

-- the rates are guard's own: other roles cannot read them
CREATE ROLE estimate_reader;
SET ROLE estimate_reader;
SELECT expect_error('SELECT * FROM guard.restore_rate');
RESET ROLE;
DROP ROLE estimate_reader;

-- no restore running in this session now
SELECT count(*) FROM guard.restore_progress();

DROP TABLE est, dry, real;
