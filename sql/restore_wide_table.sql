-- restore_wide_table: a table of 1,200 columns (more than the 831 that fit
-- the rows to write back when each column took two entries of a target
-- list of at most 1664) is restored exactly: UPDATE of a few columns and of
-- all, DELETE, INSERT, and a key move.
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

DO $$
BEGIN
	EXECUTE (SELECT format('CREATE TABLE wide (id int PRIMARY KEY, note text, %s)',
						   string_agg(format('c%s int2 DEFAULT %s', g, g % 100), ', ' ORDER BY g))
			   FROM generate_series(1, 1198) g);
END
$$;
SELECT count(*) AS columns FROM pg_attribute WHERE attrelid = 'wide'::regclass AND attnum > 0;
INSERT INTO wide (id, note) SELECT g, 'n' || g FROM generate_series(1, 20) g;
SELECT guard.protect('wide');
CREATE TABLE wide_expected AS SELECT * FROM wide;

BEGIN;
SELECT guard.label('wide') AS cs \gset
UPDATE wide SET c5 = 0, c1000 = 0 WHERE id <= 5;
DO $$
BEGIN
	EXECUTE (SELECT format('UPDATE wide SET %s WHERE id BETWEEN 6 AND 10',
						   string_agg(format('c%s = c%s + 1', g, g), ', ' ORDER BY g))
			   FROM generate_series(1, 1198) g);
END
$$;
DELETE FROM wide WHERE id BETWEEN 11 AND 13;
INSERT INTO wide (id, note, c1198) VALUES (21, 'new', 7);
UPDATE wide SET id = id + 100, c7 = 7 WHERE id IN (14, 15);
COMMIT;
-- a later, unrelated write
UPDATE wide SET note = 'later' WHERE id = 20;
UPDATE wide_expected SET note = 'later' WHERE id = 20;

SELECT kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs, dry_run => true) ORDER BY change_id;
SELECT relation, rows_checked, rows_matching, ok FROM guard.verify_restore(:cs) ORDER BY change_id;
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore(:cs) ORDER BY change_id;
SELECT rows_md5('wide') = rows_md5('wide_expected') AS exact;

-- and the restore of the restore
SELECT sum(rows_restored) AS rows, sum(conflicts) AS conflicts
  FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets));
SELECT count(*) FILTER (WHERE c5 = 0) AS redone, count(*) FILTER (WHERE id > 100) AS moved FROM wide;

DROP TABLE wide, wide_expected;
DROP FUNCTION rows_md5(regclass);
