-- capture_without_key: a table under DML capture whose key is dropped
-- (PostgreSQL allows it, and its own suite does it) records its statements
-- without rows, saying so; restore refuses such a change by name instead of
-- failing on rows it cannot find.  Capture resumes once a key is back.
SELECT fresh_ids();
CREATE TABLE kd (id int PRIMARY KEY, v text);
INSERT INTO kd SELECT g, 'v' || g FROM generate_series(1, 3) g;
SELECT guard.protect('kd');
ALTER TABLE kd DROP CONSTRAINT kd_pkey;
UPDATE kd SET v = v || '!' WHERE id <= 2;
DELETE FROM kd WHERE id = 3;
INSERT INTO kd VALUES (4, 'new');
SELECT change_id, kind, rows, snapshot_bytes, detail
  FROM guard.changes ORDER BY change_id;
SELECT count(*) AS chunks FROM guard.snapshot;

-- each of them is refused by name, alone or with its change set
SELECT expect_error($$SELECT guard.restore_change(2)$$);
SELECT expect_error($$SELECT guard.restore_change(3)$$);
SELECT expect_error(format('SELECT guard.restore(%s)',
						   (SELECT changeset_id FROM guard.changes WHERE change_id = 4)));
SELECT expect_error($$SELECT guard.restore_to('kd', now() - interval '1 hour')$$);
SELECT * FROM kd ORDER BY id;

-- a key again: capture resumes, and restores
ALTER TABLE kd ADD PRIMARY KEY (id);
UPDATE kd SET v = 'back' WHERE id = 4;
SELECT change_id, kind, rows, detail FROM guard.changes ORDER BY change_id DESC LIMIT 1;
SELECT relation, kind, rows_restored
  FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets));
SELECT * FROM kd ORDER BY id;

-- the replica identity index dropped: the same
CREATE TABLE ri (a int NOT NULL, v text);
CREATE UNIQUE INDEX ri_a ON ri (a);
ALTER TABLE ri REPLICA IDENTITY USING INDEX ri_a;
INSERT INTO ri VALUES (1, 'x');
SELECT guard.protect('ri');
DROP INDEX ri_a;
UPDATE ri SET v = 'y';
SELECT kind, rows, detail FROM guard.changes ORDER BY change_id DESC LIMIT 1;
SELECT expect_error(format('SELECT guard.restore_change(%s)',
						   (SELECT max(change_id) FROM guard.changes)));

SELECT guard.unprotect('kd');
SELECT guard.unprotect('ri');
DROP TABLE kd, ri;
