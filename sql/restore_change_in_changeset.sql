-- restore_change_in_changeset: one change of a change set of several
-- statements is restored on its own even where a later statement of the
-- same change set wrote the same rows (not a conflict); the restore records
-- which change set it undoes; a change is marked restored only if it was;
-- and the rest of the change set can still be restored, exactly.
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

CREATE TABLE mig (id int PRIMARY KEY, a text, b text, c text);
INSERT INTO mig SELECT g, 'a' || g, 'b' || g, 'c' || g FROM generate_series(1, 10) g;
SELECT guard.protect('mig');
CREATE TABLE mig_expected AS SELECT * FROM mig;

-- a migration of three statements in one transaction
BEGIN;
SELECT guard.label('migration') AS cs \gset
UPDATE mig SET a = a || '-1' WHERE id <= 6;
UPDATE mig SET a = upper(a), b = 'bb' WHERE id <= 3;
UPDATE mig SET c = 'c3' WHERE id BETWEEN 4 AND 6;
COMMIT;
SELECT min(change_id) AS first FROM guard.changes WHERE changeset_id = :cs \gset
-- a later, unrelated write
UPDATE mig SET c = 'later' WHERE id = 10;
UPDATE mig_expected SET c = 'later' WHERE id = 10;

-- the first statement alone: the rows the second one wrote again are not
-- conflicts of it
SELECT rows_restored, rows_skipped, conflicts FROM guard.restore_change(:first, dry_run => true);
SELECT rows_restored, rows_skipped, conflicts FROM guard.restore_change(:first);
SELECT id, a, b, c FROM mig WHERE id <= 7 ORDER BY id;
SELECT change_id - :first AS nth, state, restored_by IS NOT NULL AS has_restored_by
  FROM guard.changes WHERE changeset_id = :cs ORDER BY change_id;
SELECT label, restore_of = :cs AS restore_of_set FROM guard.changesets
 WHERE changeset_id = (SELECT restored_by FROM guard.changes WHERE change_id = :first);

-- the rest of the change set: the restore of the first statement already
-- put back what it wrote, the other columns come back, no conflict
SELECT change_id - :first AS nth, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs, dry_run => true) ORDER BY change_id;
SELECT relation, rows_checked, rows_matching, ok FROM guard.verify_restore(:cs) ORDER BY change_id;
SELECT change_id - :first AS nth, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs) ORDER BY change_id;
SELECT rows_md5('mig') = rows_md5('mig_expected') AS exact;
SELECT DISTINCT state FROM guard.changes WHERE changeset_id = :cs;
SELECT expect_error('SELECT * FROM guard.restore(' || :cs || ')');

-- a change whose every row is a conflict kept with skip is not restored:
-- it stays active, and can be restored later
UPDATE mig SET b = 'oops' WHERE id = 7;
SELECT max(changeset_id) AS cs2 FROM guard.changesets \gset
UPDATE mig SET b = 'later' WHERE id = 7;
SELECT rows_restored, rows_skipped, conflicts FROM guard.restore(:cs2, on_conflict => 'skip');
SELECT state, restored_by FROM guard.changes WHERE changeset_id = :cs2;
SELECT rows_restored, rows_skipped, conflicts FROM guard.restore(:cs2, on_conflict => 'overwrite');
SELECT state FROM guard.changes WHERE changeset_id = :cs2;
SELECT b FROM mig WHERE id = 7;

-- a later statement of the same change set deleted and inserted the rows
-- again: restoring the delete alone puts the old rows back in place
BEGIN;
SELECT guard.label('reload') AS cs3 \gset
DELETE FROM mig WHERE id IN (8, 9);
INSERT INTO mig VALUES (8, 'reloaded', 'reloaded', 'reloaded');
COMMIT;
SELECT min(change_id) AS del FROM guard.changes WHERE changeset_id = :cs3 \gset
SELECT rows_restored, rows_skipped, conflicts FROM guard.restore_change(:del);
SELECT id, a FROM mig WHERE id IN (8, 9) ORDER BY id;

-- restored together, the later statements of the change set do not vouch
-- for a column written outside guard since: still a conflict
BEGIN;
SELECT guard.label('twice') AS cs4 \gset
UPDATE mig SET a = 'one' WHERE id = 10;
UPDATE mig SET a = 'two' WHERE id = 10;
COMMIT;
SET guard.enabled = off;
UPDATE mig SET a = 'outside guard' WHERE id = 10;
RESET guard.enabled;
SELECT rows_restored, rows_skipped, conflicts FROM guard.restore(:cs4, on_conflict => 'skip') ORDER BY change_id;
SELECT a FROM mig WHERE id = 10;

DROP TABLE mig, mig_expected;
DROP FUNCTION rows_md5(regclass);
