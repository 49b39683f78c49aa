-- restore_basic: guard.restore() undoes a change set newest first, in one
-- transaction, reports per change, is itself a change set, and refuses bad
-- input.
SELECT fresh_ids();
CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric, note text);
INSERT INTO accounts SELECT g, 'owner' || g, g * 1.50, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END
  FROM generate_series(1, 100) g;
SELECT guard.protect('accounts');
CREATE FUNCTION table_md5() RETURNS text LANGUAGE sql AS
$$ SELECT md5(string_agg(a::text, '|' ORDER BY id)) FROM accounts a $$;
SELECT table_md5() AS before_md5 \gset

-- one change set with every kind of write
BEGIN;
SELECT guard.label('bad batch') AS cs \gset
UPDATE accounts SET balance = 0, note = 'zeroed' WHERE id <= 40;
DELETE FROM accounts WHERE id BETWEEN 90 AND 95;
INSERT INTO accounts VALUES (101, 'new', 1, NULL), (102, 'newer', 2, 'x');
UPDATE accounts SET owner = 'twice' WHERE id = 1;
UPDATE accounts SET id = 1000 WHERE id = 50;
INSERT INTO accounts VALUES (2, 'dup', 0, NULL) ON CONFLICT (id) DO UPDATE SET owner = 'upserted';
COMMIT;
SELECT table_md5() AS after_md5 \gset
SELECT :'after_md5' <> :'before_md5' AS changed;

-- a dry run reports what the real run does, and changes nothing
CREATE TABLE dry AS SELECT * FROM guard.restore(:cs, dry_run => true);
SELECT table_md5() = :'after_md5' AS unchanged_by_dry_run;
SELECT state, count(*) FROM guard.changes WHERE changeset_id = :cs GROUP BY 1;
CREATE TABLE real AS SELECT * FROM guard.restore(:cs);
SELECT kind, rows_restored, rows_skipped, conflicts FROM real ORDER BY change_id DESC;
SELECT (SELECT string_agg(d::text, ';' ORDER BY change_id) FROM dry d) =
	   (SELECT string_agg(r::text, ';' ORDER BY change_id) FROM real r) AS dry_run_matches;

-- every value is back, bit for bit
SELECT table_md5() = :'before_md5' AS restored;
SELECT state, count(*) FROM guard.changes WHERE changeset_id = :cs GROUP BY 1;

-- the restore is a change set of its own
SELECT label = 'restore of change set ' || :cs AS labelled, restore_of = :cs AS undoes_it, changes, rows
  FROM guard.changesets WHERE restore_of = :cs;
SELECT changeset_id AS rcs FROM guard.changesets WHERE restore_of = :cs \gset

-- restoring the same change set twice is refused, and changes nothing
SELECT expect_error('SELECT * FROM guard.restore(' || :cs || ')');
SELECT table_md5() = :'before_md5' AS unchanged;

-- the restore can be restored: the bad batch is back
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore(:rcs) ORDER BY change_id DESC;
SELECT count(*) FILTER (WHERE balance = 0) AS zeroed, count(*) FILTER (WHERE id = 1000) AS moved
  FROM accounts;
-- ... and then the original change set can be restored again
SELECT kind, rows_restored FROM guard.restore(:cs) ORDER BY change_id DESC;
SELECT table_md5() = :'before_md5' AS restored_again;

-- bad input: an ERROR with a SQLSTATE, nothing changed
SELECT expect_error($$SELECT * FROM guard.restore(999999)$$);
SELECT expect_error($$SELECT * FROM guard.restore_change(999999)$$);
SELECT expect_error($$SELECT * FROM guard.restore(1, on_conflict => 'ignore')$$);
SELECT expect_error($$SELECT * FROM guard.restore(NULL)$$);
SELECT expect_error($$SELECT * FROM guard.restore(1, dry_run => NULL)$$);
SELECT expect_error($$SELECT * FROM guard.restore_to('no_such_table', now())$$);
SELECT guard.label('empty') AS empty_cs \gset
SELECT expect_error('SELECT * FROM guard.restore(' || :empty_cs || ')');
SELECT table_md5() = :'before_md5' AS unchanged;

-- restore_change undoes one change only
UPDATE accounts SET note = 'one' WHERE id = 10;
UPDATE accounts SET note = 'two' WHERE id = 11;
SELECT max(change_id) - 1 AS first_change FROM guard.changes \gset
SELECT kind, rows_restored FROM guard.restore_change(:first_change);
SELECT id, note FROM accounts WHERE id IN (10, 11) ORDER BY id;

DROP TABLE accounts, dry, real;
DROP FUNCTION table_md5();
