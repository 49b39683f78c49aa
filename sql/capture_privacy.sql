-- capture_privacy: a role that cannot read a table cannot read its
-- snapshots or change records; guard_admin can.
CREATE ROLE regress_guard_reader;
CREATE ROLE regress_guard_stranger;
CREATE ROLE regress_guard_auditor;
GRANT guard_admin TO regress_guard_auditor;
CREATE TABLE secrets (id int PRIMARY KEY, password text);
INSERT INTO secrets VALUES (1, 'hunter2');
GRANT SELECT ON secrets TO regress_guard_reader;
SELECT guard.protect('secrets');
UPDATE secrets SET password = 'changed';
SELECT max(change_id) AS cid FROM guard.changes WHERE relation = 'public.secrets' \gset

SET ROLE regress_guard_stranger;
SELECT expect_error('SELECT * FROM guard.diff(' || :cid || ')');
SELECT count(*) FROM guard.changes WHERE relation = 'public.secrets';
SELECT count(*) FROM guard.changesets WHERE relations LIKE '%secrets%';
SELECT expect_error($$SELECT * FROM guard.snapshot$$);
SELECT expect_error($$SELECT * FROM guard.changeset$$);
RESET ROLE;

SET ROLE regress_guard_reader;
SELECT "column", before FROM guard.diff(:cid);
SELECT kind, rows FROM guard.changes WHERE relation = 'public.secrets';
RESET ROLE;

-- a column-level grant is not enough to read whole before-images
CREATE TABLE partial (id int PRIMARY KEY, hidden text);
INSERT INTO partial VALUES (1, 'x');
GRANT SELECT (id) ON partial TO regress_guard_stranger;
SELECT guard.protect('partial');
UPDATE partial SET hidden = 'y';
SELECT max(change_id) AS pid FROM guard.changes WHERE relation = 'public.partial' \gset
SET ROLE regress_guard_stranger;
SELECT expect_error('SELECT * FROM guard.diff(' || :pid || ')');
SELECT count(*) FROM guard.changes WHERE relation = 'public.partial';
RESET ROLE;

SET ROLE regress_guard_auditor;
SELECT "column", before FROM guard.diff(:cid);
RESET ROLE;

-- an unknown change
SELECT expect_error($$SELECT * FROM guard.diff(-1)$$);

DROP TABLE secrets, partial;
-- dropped protected tables wait in guard's trash until purged
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
DROP ROLE regress_guard_reader, regress_guard_stranger, regress_guard_auditor;
