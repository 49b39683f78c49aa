-- restore_dropped_table_blocked: a change of a table that a later change
-- set dropped is not written into the trashed table: the restore is refused
-- before anything changes, naming the DROP's change set to restore first;
-- restoring that one, then the change, gives the table back exactly.
SELECT fresh_ids();
CREATE TABLE ledger (id int PRIMARY KEY, amount numeric, memo text);
INSERT INTO ledger SELECT g, g * 10, 'entry ' || g FROM generate_series(1, 10) g;
SELECT guard.protect('ledger');
CREATE TABLE other (id int PRIMARY KEY, v text);
INSERT INTO other VALUES (1, 'untouched');
SELECT guard.protect('other');
SELECT md5(string_agg(l::text, '|' ORDER BY id)) || md5(string_agg(encode(record_send(l), 'hex'), '|' ORDER BY id))
	AS before_md5 FROM ledger l \gset

BEGIN;
SELECT guard.label('bad fix') AS fix \gset
UPDATE ledger SET amount = 0 WHERE id <= 3;
DELETE FROM ledger WHERE id = 10;
UPDATE other SET v = 'touched';
COMMIT;
BEGIN;
SELECT guard.label('cleanup') AS drop_cs \gset
DROP TABLE ledger;
COMMIT;

-- refused, for the change set and each of its changes, in a dry run too
SELECT expect_error('SELECT * FROM guard.restore(' || :fix || ')');
SELECT expect_error('SELECT * FROM guard.restore(' || :fix || ', dry_run => true)');
SELECT expect_error('SELECT * FROM guard.restore_change('
					|| (SELECT min(change_id) FROM guard.changes WHERE changeset_id = :fix) || ')');
-- nothing changed: the other table of the change set is as it was
SELECT v FROM other;
SELECT state, count(*) FROM guard.changes WHERE changeset_id = :fix GROUP BY state;

-- undo the DROP first, then the change set
SELECT kind, rows_restored FROM guard.restore(:drop_cs);
SELECT kind, rows_restored FROM guard.restore(:fix) ORDER BY change_id DESC;
SELECT md5(string_agg(l::text, '|' ORDER BY id)) || md5(string_agg(encode(record_send(l), 'hex'), '|' ORDER BY id))
	= :'before_md5' AS restored FROM ledger l;
SELECT v FROM other;

-- a schema change of a trashed table is refused the same way
BEGIN;
SELECT guard.label('add column') AS add_cs \gset
ALTER TABLE ledger ADD COLUMN extra int;
COMMIT;
BEGIN;
SELECT guard.label('drop again') AS drop2 \gset
DROP TABLE ledger;
COMMIT;
SELECT expect_error('SELECT * FROM guard.restore(' || :add_cs || ')');

SELECT kind, rows_restored FROM guard.restore(:drop2);
SELECT kind, rows_restored FROM guard.restore(:add_cs);
SELECT count(*) AS extra_columns FROM pg_attribute WHERE attrelid = 'ledger'::regclass AND attname = 'extra';

-- a change set that writes and then drops the table: the DROP is newer, so
-- it is undone first
BEGIN;
SELECT guard.label('write and drop') AS both_cs \gset
UPDATE ledger SET memo = 'last words';
DROP TABLE ledger;
COMMIT;
SELECT kind, rows_restored FROM guard.restore(:both_cs) ORDER BY change_id DESC;
SELECT md5(string_agg(l::text, '|' ORDER BY id)) || md5(string_agg(encode(record_send(l), 'hex'), '|' ORDER BY id))
	= :'before_md5' AS restored FROM ledger l;

SELECT guard.unprotect('ledger');
SELECT guard.unprotect('other');
DROP TABLE ledger, other;
