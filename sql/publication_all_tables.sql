-- publication_all_tables: in a database with guard, CREATE PUBLICATION ...
-- FOR ALL TABLES publishes every table but guard's own (src/publication.c):
-- it becomes FOR TABLES IN SCHEMA every schema but guard, guard_trash and
-- the system ones, and schemas created later join it at commit; protected
-- tables stay published (out while in the trash); guard's tables can still
-- be added by name; guard.publication follows renames and drops.
SET client_min_messages = error;	-- "wal_level is insufficient" varies
CREATE SCHEMA pub_a;
CREATE TABLE pub_a.t1 (id int PRIMARY KEY);
CREATE TABLE pub_plain (id int PRIMARY KEY, v text);
SELECT guard.protect('pub_plain');

CREATE PUBLICATION pub_all FOR ALL TABLES;
SELECT puballtables FROM pg_publication WHERE pubname = 'pub_all';
SELECT * FROM guard.publication;
-- the schemas: public and pub_a, not guard's nor the system ones
SELECT n.nspname FROM pg_publication_namespace pn
  JOIN pg_publication p ON p.oid = pn.pnpubid
  JOIN pg_namespace n ON n.oid = pn.pnnspid
 WHERE p.pubname = 'pub_all'
   AND (n.nspname IN ('public', 'pub_a', 'guard', 'guard_trash', 'information_schema')
		OR n.nspname LIKE 'pg\_%')
 ORDER BY 1;
-- the tables: the protected one and the other user tables, none of guard's
SELECT schemaname, tablename FROM pg_publication_tables
 WHERE pubname = 'pub_all' AND (tablename IN ('t1', 'pub_plain') OR schemaname LIKE 'guard%')
 ORDER BY 1, 2;

-- its tables and schemas cannot be changed, as with FOR ALL TABLES (with
-- PostgreSQL's errors); its options can
SELECT expect_error('ALTER PUBLICATION pub_all ADD TABLE pub_a.t1');
SELECT expect_error('ALTER PUBLICATION pub_all DROP TABLES IN SCHEMA pub_a');
SELECT expect_error('ALTER PUBLICATION pub_all SET TABLES IN SCHEMA pub_no_such_schema');
ALTER PUBLICATION pub_all SET (publish = 'insert, update');

-- a schema created later joins at commit; one rolled back does not
CREATE SCHEMA pub_b CREATE TABLE t2 (id int PRIMARY KEY);
BEGIN;
CREATE SCHEMA pub_rolled_back;
ROLLBACK;
BEGIN;
CREATE SCHEMA pub_c;
CREATE TABLE pub_c.t3 (id int PRIMARY KEY);
SAVEPOINT s;
CREATE SCHEMA pub_savepoint_rolled_back;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT schemaname, tablename FROM pg_publication_tables
 WHERE pubname = 'pub_all' AND schemaname LIKE 'pub\_%' ORDER BY 1, 2;

-- a dropped protected table leaves the publication with the table, and
-- comes back with it
DROP TABLE pub_plain;
SELECT count(*) AS published_in_trash FROM pg_publication_tables
 WHERE pubname = 'pub_all' AND schemaname = 'guard_trash';
SELECT count(*) AS undropped FROM guard.undrop('pub_plain');
SELECT schemaname, tablename FROM pg_publication_tables
 WHERE pubname = 'pub_all' AND tablename = 'pub_plain';

-- a publication made another way is left as it is
CREATE PUBLICATION pub_one FOR TABLE pub_a.t1;
CREATE SCHEMA pub_d;
SELECT count(*) AS pub_one_schemas FROM pg_publication_namespace pn
  JOIN pg_publication p ON p.oid = pn.pnpubid WHERE p.pubname = 'pub_one';
-- guard's tables can be added by name
CREATE PUBLICATION pub_guard FOR TABLE guard.change;
SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = 'pub_guard';

-- renames and drops are followed
ALTER PUBLICATION pub_all RENAME TO pub_all_renamed;
CREATE SCHEMA pub_e;
SELECT * FROM guard.publication;
SELECT count(*) AS pub_e_joined FROM pg_publication_namespace pn
  JOIN pg_publication p ON p.oid = pn.pnpubid
 WHERE p.pubname = 'pub_all_renamed' AND pn.pnnspid = 'pub_e'::regnamespace;
DROP PUBLICATION pub_all_renamed, pub_one, pub_guard;
SELECT count(*) AS managed FROM guard.publication;

-- only a superuser may make a publication FOR ALL TABLES: PostgreSQL's error
CREATE ROLE regress_guard_publisher;
SELECT current_database() AS db \gset
GRANT CREATE ON DATABASE :"db" TO regress_guard_publisher;
SET ROLE regress_guard_publisher;
SELECT expect_error('CREATE PUBLICATION pub_denied FOR ALL TABLES');
RESET ROLE;
REVOKE CREATE ON DATABASE :"db" FROM regress_guard_publisher;
DROP ROLE regress_guard_publisher;

-- the trigger that keeps a subscriber's records its own is on every table
-- of guard's, enabled for replica only
SELECT count(*) > 8 AS has_tables,
	   string_agg(c.relname, ', ') FILTER (WHERE t.tgenabled IS DISTINCT FROM 'R') AS without
  FROM pg_class c
  LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname = 'keep_local_records'
 WHERE c.relnamespace = 'guard'::regnamespace AND c.relkind = 'r';

DROP SCHEMA pub_a, pub_b, pub_c, pub_d, pub_e CASCADE;
RESET client_min_messages;
SELECT guard.unprotect('pub_plain');
DROP TABLE pub_plain;
