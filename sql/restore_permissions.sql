-- restore_permissions: only the table's owner or guard_admin may restore,
-- and a refused restore changes nothing.
CREATE ROLE regress_guard_tabowner;
CREATE ROLE regress_guard_writer;
CREATE ROLE regress_guard_restorer;
GRANT guard_admin TO regress_guard_restorer;
GRANT CREATE ON SCHEMA public TO regress_guard_tabowner;
SET ROLE regress_guard_tabowner;
CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t VALUES (1, 'a'), (2, 'b');
SELECT guard.protect('t');
GRANT ALL ON t TO regress_guard_writer;
RESET ROLE;

SET ROLE regress_guard_writer;
UPDATE t SET v = 'broken';
SELECT max(changeset_id) AS cs FROM guard.changesets \gset
SELECT expect_error('SELECT * FROM guard.restore(' || :cs || ')');
SELECT expect_error('SELECT * FROM guard.restore(' || :cs || ', dry_run => true)');
SELECT v FROM t ORDER BY id;
RESET ROLE;

SET ROLE regress_guard_restorer;
SELECT rows_restored FROM guard.restore(:cs);
RESET ROLE;
SELECT v FROM t ORDER BY id;

SET ROLE regress_guard_tabowner;
UPDATE t SET v = 'again';
SELECT rows_restored FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets WHERE label IS NULL));
SELECT v FROM t ORDER BY id;
DROP TABLE t;
RESET ROLE;
REVOKE CREATE ON SCHEMA public FROM regress_guard_tabowner;
-- dropped protected tables wait in guard's trash until purged
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
DROP ROLE regress_guard_tabowner, regress_guard_writer, regress_guard_restorer;
