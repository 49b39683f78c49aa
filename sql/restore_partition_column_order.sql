-- restore_partition_column_order: partitions whose columns are in another
-- order than the parent's (an attached table, a dropped column) are read by
-- column name: no crash, no false conflict, an exact restore; and a change
-- whose rows may sit in a partition detached since is refused, not written
-- into the DEFAULT partition.
SELECT fresh_ids();

-- rows_md5(rel): md5 of the rows as text and of their binary send forms
CREATE FUNCTION rows_md5(rel regclass) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r text;
BEGIN
	EXECUTE format('SELECT md5(string_agg(t::text, %L ORDER BY t::text)) || %L ||'
				   ' md5(string_agg(record_send(t), %L::bytea ORDER BY record_send(t))) FROM %s t',
				   '|', ' ', '\x00', rel) INTO r;
	RETURN r;
END
$$;

-- the parent has a dropped column; one partition is an attached table
-- whose columns are in another order, with a dropped column of its own
CREATE TABLE ev (gone int, id int, region text, payload text, n numeric, PRIMARY KEY (id, region))
	PARTITION BY LIST (region);
ALTER TABLE ev DROP COLUMN gone;
CREATE TABLE ev_eu PARTITION OF ev FOR VALUES IN ('eu');
CREATE TABLE ev_us (n numeric, junk text, payload text, region text NOT NULL, id int NOT NULL);
ALTER TABLE ev_us DROP COLUMN junk;
ALTER TABLE ev ATTACH PARTITION ev_us FOR VALUES IN ('us');
CREATE TABLE ev_other PARTITION OF ev DEFAULT;
INSERT INTO ev SELECT g, CASE WHEN g % 3 = 0 THEN 'eu' WHEN g % 3 = 1 THEN 'us' ELSE 'asia' END,
	   'p' || g, g * 1.5 FROM generate_series(1, 30) g;
SELECT guard.protect('ev');
SELECT attname, attnum FROM pg_attribute WHERE attrelid = 'ev_us'::regclass AND attnum > 0 ORDER BY attnum;
CREATE TABLE ev_expected AS SELECT * FROM ev;

-- one change set through the parent: every kind of write, and a row moved
-- across partitions
BEGIN;
SELECT guard.label('through the parent') AS cs \gset
UPDATE ev SET payload = payload || '!', n = n * 2 WHERE id <= 20;
DELETE FROM ev WHERE id BETWEEN 21 AND 24;
INSERT INTO ev VALUES (100, 'us', 'new', 1), (101, 'eu', 'new', 2);
UPDATE ev SET region = 'us' WHERE id = 3;
COMMIT;
-- a later write to a column the change set did not touch
UPDATE ev SET n = 0 WHERE id = 25;
UPDATE ev_expected SET n = 0 WHERE id = 25;

SELECT kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs, dry_run => true) ORDER BY change_id;
SELECT relation, rows_checked, rows_matching, ok FROM guard.verify_restore(:cs) ORDER BY change_id;
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore(:cs) ORDER BY change_id;
SELECT rows_md5('ev') = rows_md5('ev_expected') AS exact,
	   (SELECT tableoid::regclass FROM ev WHERE id = 3) AS moved_back_to;

-- a later write to a column the change wrote is still a conflict
UPDATE ev SET payload = 'x' WHERE id = 1;
SELECT max(changeset_id) AS cs2 FROM guard.changesets \gset
UPDATE ev SET payload = 'later' WHERE id = 1;
SELECT expect_error('SELECT * FROM guard.restore(' || :cs2 || ')');

-- a partition detached after the change: restore refuses the rows that
-- may be in it, before anything changes
DELETE FROM ev WHERE id IN (4, 6, 7);
SELECT max(changeset_id) AS del_cs FROM guard.changesets \gset
UPDATE ev SET payload = 'upd' WHERE id IN (10, 12);
SELECT max(changeset_id) AS upd_cs FROM guard.changesets \gset
ALTER TABLE ev DETACH PARTITION ev_us;
SELECT expect_error('SELECT * FROM guard.restore(' || :del_cs || ', dry_run => true)');
SELECT expect_error('SELECT * FROM guard.restore(' || :upd_cs || ')');
SELECT count(*) AS nothing_in_default FROM ev_other WHERE id IN (4, 7, 10);
-- rows that are all still in the table restore as usual
UPDATE ev SET payload = 'eu only' WHERE id = 9;
SELECT rows_restored, conflicts FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets));
-- attached again, the partition's rows restore where they were
ALTER TABLE ev ATTACH PARTITION ev_us FOR VALUES IN ('us');
SELECT rows_restored, conflicts FROM guard.restore(:upd_cs);
SELECT rows_restored, conflicts FROM guard.restore(:del_cs);
SELECT id, region, payload FROM ev WHERE id IN (4, 6, 7, 10, 12) ORDER BY id;
SELECT tableoid::regclass AS partition, count(*) FROM ev WHERE id IN (4, 7, 10) GROUP BY 1;

DROP TABLE ev, ev_expected;
DROP FUNCTION rows_md5(regclass);
