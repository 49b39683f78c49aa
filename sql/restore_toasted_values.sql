-- restore_toasted_values: values stored compressed inline, compressed out of
-- line and uncompressed out of line are recognised at restore as the values
-- the change wrote (no false conflicts), and come back bit for bit.
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
-- big(i, n): a value of about n kB that compresses poorly
CREATE FUNCTION big(i int, n int) RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(md5((i * 100000 + g)::text), '') FROM generate_series(1, n * 1024 / 32) g
$$;

CREATE TABLE docs (id int PRIMARY KEY, packed text, zipped text, raw text, arr int[], meta jsonb, note text);
ALTER TABLE docs ALTER COLUMN raw SET STORAGE EXTERNAL;
INSERT INTO docs
SELECT g, repeat('p' || g, 10000), repeat('z' || g, 100000), repeat('r' || g, 3000),
	   (SELECT array_agg(x * g) FROM generate_series(1, 3000) x),
	   jsonb_build_object('id', g, 'body', big(g + 50, 4)), 'n' || g
  FROM generate_series(1, 6) g;
SELECT guard.protect('docs');

-- how the values are stored: compressed inline, compressed and out of line,
-- uncompressed and out of line
SELECT pg_column_size(packed) < least(2000, octet_length(packed)) AS packed_inline,
	   pg_column_size(zipped) BETWEEN 2100 AND octet_length(zipped) - 1 AS zipped_out_of_line,
	   pg_column_size(raw) = octet_length(raw) AND octet_length(raw) > 2100 AS raw_out_of_line,
	   pg_column_size(meta) > 2100 AS meta_out_of_line
  FROM docs WHERE id = 1;

CREATE TABLE docs_expected AS SELECT * FROM docs;

-- one change set: insert, update and delete large values, and a small
-- update of rows holding large values
BEGIN;
SELECT guard.label('large values') AS cs \gset
INSERT INTO docs
SELECT g, repeat('q' || g, 10000), repeat('y' || g, 100000), big(g, 9),
	   (SELECT array_agg(x + g) FROM generate_series(1, 3000) x),
	   jsonb_build_object('id', g, 'body', big(g + 70, 5)), 'new'
  FROM generate_series(7, 9) g;
UPDATE docs SET zipped = repeat('w', 150000), raw = big(id + 30, 5), packed = repeat('v', 20000),
	   arr = arr || 1, meta = meta || '{"x": 1}' WHERE id IN (1, 2);
DELETE FROM docs WHERE id = 3;
UPDATE docs SET note = 'touched' WHERE id IN (4, 5);
COMMIT;

-- a later, unrelated write: another row, and a column the change set did
-- not write
UPDATE docs SET note = 'later' WHERE id IN (1, 6);
UPDATE docs_expected SET note = 'later' WHERE id IN (1, 6);

-- the dry run and the drill see no conflict
SELECT kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs, dry_run => true) ORDER BY change_id;
SELECT relation, rows_checked, rows_matching, ok FROM guard.verify_restore(:cs) ORDER BY change_id;
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore(:cs) ORDER BY change_id;
SELECT rows_md5('docs') = rows_md5('docs_expected') AS exact;

-- a restore of large values is itself restorable without conflicts
SELECT max(changeset_id) AS rcs FROM guard.changesets \gset
SELECT sum(conflicts) AS conflicts FROM guard.restore(:rcs, dry_run => true);

-- an UPDATE that only rewrote a large value's neighbour: the large value
-- (same TOAST pointer) is not captured, and restore leaves it alone
UPDATE docs SET note = 'again' WHERE id = 2;
SELECT max(changeset_id) AS cs2 FROM guard.changesets \gset
SELECT "column" FROM guard.diff((SELECT max(change_id) FROM guard.changes)) ORDER BY 1;
SELECT rows_restored, conflicts FROM guard.restore(:cs2);
SELECT rows_md5('docs') = rows_md5('docs_expected') AS still_exact;

DROP TABLE docs, docs_expected;
DROP FUNCTION rows_md5(regclass), big(int, int);
