-- cache_invalidation: guard caches what it knows of a table (policy, key,
-- layout, invariants and their compiled row checks) per relation; a change
-- to any of them applies to the very next statement of the session.
SELECT fresh_ids();
CREATE TABLE acct (id int PRIMARY KEY, balance int NOT NULL);
INSERT INTO acct SELECT g, 100 FROM generate_series(1, 10) g;
SELECT guard.protect('acct');
CREATE FUNCTION acct_md5() RETURNS text LANGUAGE sql AS
$$ SELECT md5(string_agg(a::text, '|' ORDER BY id)) FROM acct a $$;

-- the policy: cached by the first write, replaced by protect()
UPDATE acct SET balance = balance + 1 WHERE id <= 5;
SELECT guard.protect('acct', max_rows => 3);
SELECT expect_error($$UPDATE acct SET balance = balance + 1 WHERE id <= 5$$);
UPDATE acct SET balance = balance + 1 WHERE id <= 3;
SELECT guard.protect('acct');
UPDATE acct SET balance = balance + 1 WHERE id <= 5;
-- ... also within one transaction
BEGIN;
SELECT guard.protect('acct', max_rows => 3);
SELECT expect_error($$UPDATE acct SET balance = balance + 1 WHERE id <= 5$$);
ROLLBACK;
UPDATE acct SET balance = balance + 1 WHERE id <= 5;
SELECT kind, rows FROM guard.changes ORDER BY change_id;

-- a partition follows the policy of its protected ancestor
CREATE TABLE parted (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
INSERT INTO parted SELECT g, g FROM generate_series(1, 10) g;
SELECT guard.protect('parted');
UPDATE parted_1 SET v = v + 1 WHERE id <= 5;
SELECT guard.protect('parted', max_rows => 3);
SELECT expect_error($$UPDATE parted_1 SET v = v + 1 WHERE id <= 5$$);
-- its deferred row checks find failing rows by the partition's key
SELECT guard.protect('parted');
SELECT guard.add_invariant('parted', 'v_small', row_check => 'v < 100');
UPDATE parted_1 SET v = 500 WHERE id = 1;
-- unprotected, the table keeps its invariants, checked on demand
SELECT guard.unprotect('parted');
UPDATE parted_1 SET v = v + 1 WHERE id <= 5;
SELECT invariant, ok, failing_rows FROM guard.check_invariants('parted');

-- an invariant applies from the next statement, and no longer once dropped
-- (deferred: the violation is found at commit)
SELECT guard.add_invariant('acct', 'non_negative', row_check => 'balance >= 0');
UPDATE acct SET balance = -1 WHERE id = 1;
SELECT guard.drop_invariant('acct', 'non_negative');
UPDATE acct SET balance = -1 WHERE id = 1;
UPDATE acct SET balance = 100 WHERE id = 1;
-- redeclared with another row check, the new one is compiled
SELECT guard.add_invariant('acct', 'bounded', row_check => 'balance < 1000',
	deferred => false);
SELECT expect_error($$UPDATE acct SET balance = 1500 WHERE id = 1$$);
SELECT guard.drop_invariant('acct', 'bounded');
SELECT guard.add_invariant('acct', 'bounded', row_check => 'balance < 2000',
	deferred => false);
UPDATE acct SET balance = 1500 WHERE id = 1;
SELECT expect_error($$UPDATE acct SET balance = 2500 WHERE id = 1$$);
SELECT guard.drop_invariant('acct', 'bounded');
-- a function the compiled check inlined is replaced: the check follows
CREATE FUNCTION acct_limit() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 5000';
SELECT guard.add_invariant('acct', 'under_limit', row_check => 'balance < acct_limit()',
	deferred => false);
UPDATE acct SET balance = 4000 WHERE id = 2;
CREATE OR REPLACE FUNCTION acct_limit() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 3000';
SELECT expect_error($$UPDATE acct SET balance = 3500 WHERE id = 2$$);
SELECT guard.drop_invariant('acct', 'under_limit');
UPDATE acct SET balance = 100 WHERE id IN (1, 2);
-- an invariant added in a transaction that rolls back is gone with it
BEGIN;
SELECT guard.add_invariant('acct', 'positive', row_check => 'balance > 0',
	deferred => false);
SELECT expect_error($$UPDATE acct SET balance = 0 WHERE id = 3$$);
ROLLBACK;
UPDATE acct SET balance = 0 WHERE id = 3;
UPDATE acct SET balance = 100 WHERE id = 3;

-- a failing row's key is printed right when the key column comes after
-- the columns the check reads, and nothing is captured
CREATE TABLE keyed_last (v int, k text PRIMARY KEY);
SELECT guard.protect('keyed_last', capture => 'ddl');
SELECT guard.add_invariant('keyed_last', 'v_positive', row_check => 'v > 0',
	deferred => false);
SELECT expect_error($$INSERT INTO keyed_last VALUES (-1, 'the key')$$);
DROP TABLE keyed_last;

-- a new column: the next write records the new layout, and restores exactly
SELECT fresh_ids();
UPDATE acct SET balance = balance - 1 WHERE id <= 2;
ALTER TABLE acct ADD COLUMN note text;
SELECT acct_md5() AS before_md5 \gset
UPDATE acct SET note = 'n' || id, balance = balance - 1 WHERE id <= 4;
SELECT c.kind, l.attnames, l.keyatts
  FROM guard.change c JOIN guard.layout l USING (layout_id)
 ORDER BY c.change_id;
SELECT max(change_id) AS last_change FROM guard.changes \gset
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore_change(:last_change);
SELECT acct_md5() = :'before_md5' AS restored;
-- a column dropped in a transaction that rolls back: its layout is forgotten
BEGIN;
ALTER TABLE acct DROP COLUMN note;
UPDATE acct SET balance = balance - 1 WHERE id = 1;
ROLLBACK;
UPDATE acct SET note = 'after rollback' WHERE id = 1;
SELECT l.attnames FROM guard.change c JOIN guard.layout l USING (layout_id)
 ORDER BY c.change_id DESC LIMIT 1;

-- a layout row written by a transaction or subtransaction that aborts is
-- forgotten with it: the next change stores it again
CREATE TABLE fresh (id int PRIMARY KEY, v int);
INSERT INTO fresh VALUES (1, 1);
CREATE TABLE fresh2 (id int PRIMARY KEY, v int);
INSERT INTO fresh2 VALUES (1, 1);
SELECT guard.protect('fresh'), guard.protect('fresh2');
BEGIN;
UPDATE fresh SET v = 2;
ROLLBACK;
UPDATE fresh SET v = 3;
BEGIN;
SAVEPOINT s;
UPDATE fresh2 SET v = 2;
ROLLBACK TO SAVEPOINT s;
UPDATE fresh2 SET v = 3;
COMMIT;
SELECT c.relation, count(*) AS changes, count(l.layout_id) AS with_layout
  FROM guard.change c LEFT JOIN guard.layout l USING (layout_id)
 WHERE c.relid IN ('fresh'::regclass, 'fresh2'::regclass)
 GROUP BY 1 ORDER BY 1;

DROP TABLE acct, parted, fresh, fresh2;
DROP FUNCTION acct_md5(), acct_limit();
