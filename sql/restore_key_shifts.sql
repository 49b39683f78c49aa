-- restore_key_shifts: keys shifted or swapped between rows, within one
-- statement or across the statements of one transaction, come back exactly
-- (all moved rows leave their keys before any takes its old one back); a
-- key moved away and then taken by a new row is a reported conflict, with
-- skip too, and the moves that wait for it conflict with it.
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

CREATE TABLE items (id int PRIMARY KEY, code text UNIQUE, v text, w text);
INSERT INTO items SELECT g, 'c' || g, 'v' || g, 'w' || g FROM generate_series(100, 160) g WHERE g <> 110;
SELECT guard.protect('items');
CREATE TABLE items_expected AS SELECT * FROM items;

-- the shift of issue 16, with other statements around it
BEGIN;
SELECT guard.label('renumber') AS cs \gset
UPDATE items SET v = v || '!' WHERE id > 145;
UPDATE items SET id = id - 1 WHERE id BETWEEN 111 AND 141;
INSERT INTO items VALUES (141, 'c141new', 'new', 'new');
UPDATE items SET w = 'moved ' || w WHERE id BETWEEN 120 AND 125;
COMMIT;
-- a later write to a column and a row the change set did not touch
UPDATE items SET w = 'later' WHERE id = 150;
UPDATE items_expected SET w = 'later' WHERE id = 150;
CREATE TABLE items_shifted AS SELECT * FROM items;
SELECT kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs, dry_run => true) ORDER BY change_id;
SELECT relation, rows_checked, rows_matching, ok FROM guard.verify_restore(:cs) ORDER BY change_id;
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore(:cs) ORDER BY change_id;
SELECT rows_md5('items') = rows_md5('items_expected') AS shift_exact;
-- the restore itself is restorable, and that too is exact, both ways
SELECT max(changeset_id) AS rcs FROM guard.changesets \gset
SELECT sum(rows_restored) AS rows, sum(conflicts) AS conflicts FROM guard.restore(:rcs);
SELECT rows_md5('items') = rows_md5('items_shifted') AS redo_exact;
SELECT max(changeset_id) AS rrcs FROM guard.changesets \gset
SELECT sum(rows_restored) AS rows, sum(conflicts) AS conflicts FROM guard.restore(:rrcs);
SELECT rows_md5('items') = rows_md5('items_expected') AS undo_again_exact;

-- a swap of two keys (and of a unique column) across three statements
BEGIN;
SELECT guard.label('swap') AS swap_cs \gset
UPDATE items SET id = 0, code = 'tmp' WHERE id = 101;
UPDATE items SET id = 101, code = 'c101' WHERE id = 102;
UPDATE items SET id = 102, code = 'c102' WHERE id = 0;
COMMIT;
-- and a key changed twice, a delete, then a shift into the freed key
BEGIN;
SELECT guard.label('twice') AS twice_cs \gset
UPDATE items SET id = 200 WHERE id = 160;
UPDATE items SET id = 201 WHERE id = 200;
DELETE FROM items WHERE id = 154;
UPDATE items SET id = id - 1 WHERE id BETWEEN 155 AND 159;
COMMIT;
SELECT relation, rows_checked, rows_matching, ok FROM guard.verify_restore(:twice_cs) ORDER BY change_id;
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore(:twice_cs) ORDER BY change_id;
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore(:swap_cs) ORDER BY change_id;
SELECT rows_md5('items') = rows_md5('items_expected') AS swaps_exact;

-- a key moved away and taken by a new row since: a conflict, not 23505
CREATE TABLE seq (id int PRIMARY KEY, v text);
INSERT INTO seq SELECT g, 'v' || g FROM generate_series(2, 5) g;
SELECT guard.protect('seq');
UPDATE seq SET id = id - 1 WHERE id <= 4;
SELECT max(changeset_id) AS down_cs FROM guard.changesets \gset
INSERT INTO seq VALUES (4, 'taken');
SELECT expect_error('SELECT * FROM guard.restore(' || :down_cs || ')');
-- skip: the row whose key was taken stays, and so do the rows that would
-- have taken its key back, down the chain
SELECT kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:down_cs, on_conflict => 'skip');
SELECT * FROM seq ORDER BY id;
SELECT state FROM guard.changes WHERE changeset_id = :down_cs;
-- a move whose key is free again still goes back
UPDATE seq SET id = 6 WHERE id = 4;
SELECT kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:down_cs, on_conflict => 'skip', dry_run => true);
-- overwrite: the moved rows win, the row that took the key is replaced
UPDATE seq SET id = 4 WHERE id = 6;
SELECT kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:down_cs, on_conflict => 'overwrite');
SELECT * FROM seq ORDER BY id;

DROP TABLE items, items_expected, items_shifted, seq;
DROP FUNCTION rows_md5(regclass);
