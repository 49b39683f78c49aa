-- labels_discard: a connection pooler resets a server session between its
-- clients with DISCARD ALL.  What a migration tool put in force for the
-- session (golang-migrate's label, written before the migration) and the
-- change sets waiting for a bookkeeping row (Django's, written after) are
-- the client's: they do not carry over to the next client.
CREATE TABLE ld (id int PRIMARY KEY, v text);
INSERT INTO ld SELECT g, 'v' || g FROM generate_series(1, 4) g;
SELECT guard.protect('ld');
CREATE TABLE django_migrations (id serial PRIMARY KEY, app varchar(255) NOT NULL,
	name varchar(255) NOT NULL, applied timestamptz NOT NULL);
CREATE SCHEMA golang;
CREATE TABLE golang.schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL);
CREATE FUNCTION ld_labels() RETURNS TABLE (v text, label text, label_source text)
LANGUAGE sql AS $$
	SELECT s.v, c.label, c.label_source
	  FROM guard.changes c
	  CROSS JOIN LATERAL (SELECT d.after FROM guard.diff(c.change_id) d LIMIT 1) s(v)
	 WHERE c.relation = 'public.ld' ORDER BY c.change_id
$$;
\c

-- Django: the row written after the transaction names the session's
-- changes since the previous row ...
UPDATE ld SET v = 'client A, named' WHERE id = 1;
INSERT INTO django_migrations (app, name, applied) VALUES ('shop', '0001_a', now());
-- ... but not those of the client before a DISCARD ALL
UPDATE ld SET v = 'client A, left unnamed' WHERE id = 2;
DISCARD ALL;
INSERT INTO django_migrations (app, name, applied) VALUES ('shop', '0002_b', now());

-- golang-migrate: the dirty row puts a label in force for the session's
-- next changes, until the clean row ...
BEGIN;
TRUNCATE golang.schema_migrations;
INSERT INTO golang.schema_migrations VALUES (7, true);
COMMIT;
UPDATE ld SET v = 'client C, labelled' WHERE id = 3;
-- ... and not for the next client's
DISCARD ALL;
UPDATE ld SET v = 'client D, no label' WHERE id = 4;

SELECT * FROM ld_labels();

SELECT guard.unprotect('ld');
DROP TABLE ld, django_migrations, golang.schema_migrations;
DROP SCHEMA golang;
DROP FUNCTION ld_labels();
