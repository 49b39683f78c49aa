-- labels_restore: a labelled part of a change set restores alone; a
-- restore that undoes a whole migration tells its tool (the bookkeeping
-- row is deleted, or golang-migrate's version marked dirty) and says so in
-- its report; undoing that restore records the migration again.
SELECT fresh_ids();
\c
CREATE TABLE items (id int PRIMARY KEY, price int);
INSERT INTO items SELECT g, g * 10 FROM generate_series(1, 6) g;
SELECT guard.protect('items');
CREATE TABLE knex_migrations (id serial PRIMARY KEY, name varchar(255), batch int,
	migration_time timestamptz);

-- a batch of three migrations in one transaction, as knex runs them
BEGIN;
UPDATE items SET price = price + 1 WHERE id <= 2;
INSERT INTO knex_migrations (name, batch, migration_time) VALUES ('001_raise.js', 1, now());
UPDATE items SET price = 0 WHERE id >= 3;
DELETE FROM items WHERE id = 6;
INSERT INTO knex_migrations (name, batch, migration_time) VALUES ('002_corrupt.js', 1, now());
INSERT INTO items VALUES (7, 70);
INSERT INTO knex_migrations (name, batch, migration_time) VALUES ('003_add.js', 1, now());
COMMIT;

-- found by name in one query, with its parts
SELECT changeset_id, label, labels FROM guard.changesets
 WHERE '002_corrupt.js' = ANY (labels);
SELECT DISTINCT changeset_id AS cs FROM guard.changes WHERE label = '002_corrupt.js' \gset

-- the dry run reports what the restore would do, the bookkeeping row too
SELECT change_id, changeset_id, relation, kind, rows_restored, rows_skipped, conflicts, objects FROM guard.restore(:cs, dry_run => true, label => '002_corrupt.js');
SELECT name FROM knex_migrations ORDER BY id;
SELECT change_id, changeset_id, relation, kind, rows_restored, rows_skipped, conflicts, objects FROM guard.restore(:cs, label => '002_corrupt.js');
SELECT * FROM items ORDER BY id;
SELECT name FROM knex_migrations ORDER BY id;
SELECT label, restore_of FROM guard.changesets WHERE restore_of = :cs;
SELECT kind, label, state FROM guard.changes WHERE changeset_id = :cs ORDER BY change_id;

-- undoing the restore redoes the part and records the migration again
SELECT changeset_id AS rcs FROM guard.changesets WHERE restore_of = :cs \gset
SELECT change_id, changeset_id, relation, kind, rows_restored, rows_skipped, conflicts, objects FROM guard.restore(:rcs);
SELECT * FROM items ORDER BY id;
SELECT name FROM knex_migrations ORDER BY id;

-- a part restored alone while other parts' changes stay
SELECT change_id, changeset_id, relation, kind, rows_restored, rows_skipped, conflicts, objects FROM guard.restore(:cs, label => '001_raise.js');
SELECT name FROM knex_migrations ORDER BY id;

-- restore_change() of a migration's last change in effect tells the tool too
SELECT change_id AS c3 FROM guard.changes WHERE label = '003_add.js' \gset
SELECT change_id, changeset_id, relation, kind, rows_restored, rows_skipped, conflicts, objects FROM guard.restore_change(:c3);
SELECT name FROM knex_migrations ORDER BY id;

-- errors: no such label, a null label means the whole change set
SELECT expect_error('SELECT * FROM guard.restore(' || :cs || ', label => ''no such migration'')');
SELECT expect_error('SELECT * FROM guard.restore(' || :cs || ', on_conflict => NULL)');

-- the restoring role may not change the tool's table: the row is kept,
-- with a warning, and the report says so
CREATE ROLE regress_label_owner;
ALTER TABLE items OWNER TO regress_label_owner;
\c
BEGIN;
UPDATE items SET price = -1 WHERE id = 1;
INSERT INTO knex_migrations (name, batch, migration_time) VALUES ('004_negative.js', 2, now());
COMMIT;
SELECT DISTINCT changeset_id AS cs4 FROM guard.changes WHERE label = '004_negative.js' \gset
SET ROLE regress_label_owner;
SELECT change_id, changeset_id, relation, kind, rows_restored, rows_skipped, conflicts, objects FROM guard.restore(:cs4);
RESET ROLE;
SELECT name FROM knex_migrations ORDER BY id;

-- golang-migrate keeps only the current version: it is marked dirty
\c
CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL);
-- (a migration of two transactions: the version is marked dirty when the
-- last of its changes still in effect is undone)
INSERT INTO schema_migrations VALUES (5, true);
UPDATE items SET price = 55 WHERE id = 5;
UPDATE items SET price = 44 WHERE id = 4;
DELETE FROM schema_migrations;
INSERT INTO schema_migrations VALUES (5, false);
SELECT min(changeset_id) AS gcs1, max(changeset_id) AS gcs2 FROM guard.changes WHERE label = '5' \gset
SELECT change_id, changeset_id, relation, kind, rows_restored, rows_skipped, conflicts, objects FROM guard.restore(:gcs2);
TABLE schema_migrations;
SELECT change_id, changeset_id, relation, kind, rows_restored, rows_skipped, conflicts, objects FROM guard.restore(:gcs1);
TABLE schema_migrations;

DROP TABLE items, knex_migrations, schema_migrations;
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
DROP ROLE regress_label_owner;
