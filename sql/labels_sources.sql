-- labels_sources: each change carries the label in force when it was made
-- and where it came from: guard.label(), the setting guard.label, or the
-- bookkeeping row a migration tool writes (in the migration's transaction,
-- or after it in the same session).
SELECT fresh_ids();
CREATE TABLE accounts (id int PRIMARY KEY, email text, pw text);
INSERT INTO accounts SELECT g, 'u' || g || '@example.com', 'hash' || g FROM generate_series(1, 6) g;
SELECT guard.protect('accounts');

CREATE FUNCTION show_changes() RETURNS TABLE (change_id bigint, changeset_id bigint,
	kind text, label text, label_source text, bookkeeping text)
LANGUAGE sql AS $$
	SELECT change_id, changeset_id, kind, label, label_source,
		   (bookkeeping - 'row')::text
	  FROM guard.changes ORDER BY change_id
$$;

-- the setting, for whatever is written while it is set (any role may set it)
CREATE ROLE regress_label_user;
GRANT ALL ON accounts TO regress_label_user;
SET ROLE regress_label_user;
SET guard.label = 'ticket-42';
UPDATE accounts SET email = 'a@example.com' WHERE id = 1;
RESET guard.label;
UPDATE accounts SET email = 'b@example.com' WHERE id = 1;
RESET ROLE;

-- guard.label() is in force for the rest of its transaction, over the
-- setting, and names the transaction's changes made before it with none
BEGIN;
UPDATE accounts SET email = 'c@example.com' WHERE id = 2;
SELECT guard.label('fix emails') > 0 AS labelled;
SET LOCAL guard.label = 'ignored while guard.label() is in force';
UPDATE accounts SET email = 'd@example.com' WHERE id = 2;
COMMIT;
-- ... and a subtransaction that rolled back takes its guard.label() along
BEGIN;
SAVEPOINT s;
SELECT guard.label('rolled back') > 0 AS labelled;
ROLLBACK TO SAVEPOINT s;
UPDATE accounts SET email = 'e@example.com' WHERE id = 2;
SELECT guard.label('kept') > 0 AS labelled;
COMMIT;
SELECT * FROM show_changes();
SELECT fresh_ids();
-- a new session: none of its changes waits for a label yet
\c

-- Django: a row in django_migrations after each migration; several in one
-- transaction leave one part each
CREATE TABLE django_migrations (id serial PRIMARY KEY, app varchar(255) NOT NULL,
	name varchar(255) NOT NULL, applied timestamptz NOT NULL);
BEGIN;
UPDATE accounts SET pw = 'x' WHERE id = 1;
INSERT INTO django_migrations (app, name, applied) VALUES ('shop', '0001_initial', now());
UPDATE accounts SET pw = 'y' WHERE id = 2;
DELETE FROM accounts WHERE id = 6;
INSERT INTO django_migrations (app, name, applied) VALUES ('shop', '0002_cleanup', now());
COMMIT;
-- a migration whose row is written after its transaction commits (Django
-- with deferred SQL, or a migration run outside a transaction): the row
-- names the session's changes made since the previous one, across
-- transactions
UPDATE accounts SET pw = 'z' WHERE id = 3;
UPDATE accounts SET pw = 'z' WHERE id = 4;
INSERT INTO django_migrations (app, name, applied) VALUES ('shop', '0003_outside', now());
-- a row naming nothing: no label to give
INSERT INTO django_migrations (app, name, applied) VALUES ('shop', '0004_noop', now());
SELECT * FROM show_changes();
SELECT changeset_id, label, labels, changes FROM guard.changesets ORDER BY 1;
SELECT fresh_ids();
\c

-- Rails (schema_migrations, a version) and golang-migrate (the same table
-- name with a dirty flag, written before the migration, in a transaction
-- of its own, and again after it)
CREATE SCHEMA rails;
CREATE TABLE rails.schema_migrations (version varchar PRIMARY KEY);
BEGIN;
UPDATE accounts SET pw = 'rails' WHERE id = 1;
INSERT INTO rails.schema_migrations VALUES ('20261129000001');
COMMIT;
CREATE SCHEMA golang;
CREATE TABLE golang.schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL);
BEGIN;
TRUNCATE golang.schema_migrations;
INSERT INTO golang.schema_migrations VALUES (3, true);
COMMIT;
UPDATE accounts SET pw = 'golang' WHERE id = 1;
UPDATE accounts SET pw = 'golang' WHERE id = 2;
BEGIN;
TRUNCATE golang.schema_migrations;
INSERT INTO golang.schema_migrations VALUES (3, false);
COMMIT;
UPDATE accounts SET pw = 'after golang' WHERE id = 1;
-- an aborted bookkeeping transaction puts nothing in force
BEGIN;
INSERT INTO golang.schema_migrations VALUES (4, true);
ROLLBACK;
UPDATE accounts SET pw = 'still none' WHERE id = 1;
SELECT * FROM show_changes();
SELECT fresh_ids();
\c

-- Flyway, Liquibase, node-pg-migrate, knex
CREATE TABLE flyway_schema_history (installed_rank int PRIMARY KEY, version varchar(50),
	description varchar(200) NOT NULL, type varchar(20) NOT NULL, script varchar(1000) NOT NULL,
	checksum int, installed_by varchar(100) NOT NULL, installed_on timestamp NOT NULL DEFAULT now(),
	execution_time int NOT NULL, success boolean NOT NULL);
BEGIN;
UPDATE accounts SET email = 'flyway' WHERE id = 1;
INSERT INTO flyway_schema_history VALUES (1, '2', 'fix emails', 'SQL', 'V2__fix_emails.sql', 1, 'ops', now(), 5, true);
COMMIT;
CREATE TABLE databasechangelog (id varchar(255) NOT NULL, author varchar(255) NOT NULL,
	filename varchar(255) NOT NULL, dateexecuted timestamp NOT NULL, orderexecuted int NOT NULL,
	exectype varchar(10) NOT NULL, md5sum varchar(35));
BEGIN;
UPDATE accounts SET email = 'liquibase' WHERE id = 1;
INSERT INTO databasechangelog VALUES ('7', 'alice', 'db/changelog.xml', now(), 1, 'EXECUTED', 'x');
COMMIT;
CREATE TABLE pgmigrations (id serial PRIMARY KEY, name varchar(255) NOT NULL, run_on timestamp NOT NULL);
CREATE TABLE knex_migrations (id serial PRIMARY KEY, name varchar(255), batch int, migration_time timestamptz);
BEGIN;
UPDATE accounts SET email = 'pgm' WHERE id = 1;
INSERT INTO pgmigrations (name, run_on) VALUES ('1700000000001_fix', now());
UPDATE accounts SET email = 'knex' WHERE id = 2;
INSERT INTO knex_migrations (name, batch, migration_time) VALUES ('20261129_fix.js', 1, now());
COMMIT;
SELECT * FROM show_changes();

-- a restore's own changes are no migration's: no later row names them
SELECT changeset_id AS cs FROM guard.changes WHERE label = '1700000000001_fix' \gset
SELECT count(*) FROM guard.restore(:cs, label => '1700000000001_fix');
INSERT INTO pgmigrations (name, run_on) VALUES ('1700000000002_later', now());
SELECT change_id, kind, label, label_source FROM guard.changes
 WHERE changeset_id > :cs ORDER BY change_id;

-- a table with a tool's name but not its columns is not taken for it
CREATE SCHEMA other;
CREATE TABLE other.knex_migrations (id serial PRIMARY KEY, title text);
BEGIN;
UPDATE accounts SET email = 'not knex' WHERE id = 3;
INSERT INTO other.knex_migrations (title) VALUES ('nothing to do with knex');
COMMIT;
SELECT change_id, kind, label, label_source FROM guard.changes
 WHERE changeset_id > :cs ORDER BY change_id;

-- a row guard cannot read names nothing, and the tool goes on: the table's
-- owner may not use its schema (a WARNING), or row-level security hides the
-- row from its owner
CREATE ROLE regress_label_tool;
CREATE SCHEMA hidden;
CREATE TABLE hidden.knex_migrations (id serial PRIMARY KEY, name varchar(255), batch int,
	migration_time timestamptz);
ALTER TABLE hidden.knex_migrations OWNER TO regress_label_tool;
CREATE SCHEMA forced;
GRANT USAGE ON SCHEMA forced TO regress_label_tool;
CREATE TABLE forced.knex_migrations (id serial PRIMARY KEY, name varchar(255), batch int,
	migration_time timestamptz);
ALTER TABLE forced.knex_migrations OWNER TO regress_label_tool;
ALTER TABLE forced.knex_migrations ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
\c
BEGIN;
UPDATE accounts SET email = 'hidden' WHERE id = 4;
INSERT INTO hidden.knex_migrations (name, batch) VALUES ('hidden.js', 1);
COMMIT;
BEGIN;
UPDATE accounts SET email = 'forced' WHERE id = 4;
INSERT INTO forced.knex_migrations (name, batch) VALUES ('forced.js', 1);
COMMIT;
SELECT (SELECT count(*) FROM hidden.knex_migrations) AS hidden,
	   (SELECT count(*) FROM forced.knex_migrations) AS forced;
SELECT change_id, kind, label FROM guard.changes WHERE changeset_id > :cs ORDER BY change_id;

DROP FUNCTION show_changes();
DROP TABLE accounts, django_migrations, rails.schema_migrations, golang.schema_migrations,
	flyway_schema_history, databasechangelog, pgmigrations, knex_migrations, other.knex_migrations;
DROP TABLE hidden.knex_migrations, forced.knex_migrations;
DROP SCHEMA rails, golang, other, hidden, forced;
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
DROP ROLE regress_label_user, regress_label_tool;
