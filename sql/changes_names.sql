-- changes_names: a change record names the table (schema-qualified, quoted)
-- and the role that made it, as they are when the change is made.  Both
-- are cached per backend (changes.c): a rename of the table, of its
-- schema or of the role shows in the next change of the same session.
CREATE SCHEMA cn;
CREATE TABLE cn.t (id int PRIMARY KEY, v int);
INSERT INTO cn.t VALUES (1, 0);
SELECT guard.protect('cn.t');
CREATE ROLE regress_cn_writer;
GRANT USAGE ON SCHEMA cn TO regress_cn_writer;
GRANT ALL ON cn.t TO regress_cn_writer;
CREATE FUNCTION cn_last() RETURNS TABLE (relation text, role text)
LANGUAGE sql AS $$
	SELECT relation, role FROM guard.changes ORDER BY change_id DESC LIMIT 1
$$;

UPDATE cn.t SET v = v + 1;
SELECT * FROM cn_last();
-- the schema renamed: no relcache invalidation for the table, the name
-- must still follow
ALTER SCHEMA cn RENAME TO "CN 2";
UPDATE "CN 2".t SET v = v + 1;
SELECT * FROM cn_last();
-- the table renamed, then moved to another schema
ALTER TABLE "CN 2".t RENAME TO "T";
UPDATE "CN 2"."T" SET v = v + 1;
SELECT * FROM cn_last();
CREATE SCHEMA cn3;
ALTER TABLE "CN 2"."T" SET SCHEMA cn3;
GRANT USAGE ON SCHEMA cn3 TO regress_cn_writer;
UPDATE cn3."T" SET v = v + 1;
SELECT * FROM cn_last();
-- another role, then that role renamed
SET ROLE regress_cn_writer;
UPDATE cn3."T" SET v = v + 1;
RESET ROLE;
SELECT * FROM cn_last();
ALTER ROLE regress_cn_writer RENAME TO regress_cn_renamed;
SET ROLE regress_cn_renamed;
UPDATE cn3."T" SET v = v + 1;
RESET ROLE;
SELECT * FROM cn_last();

SELECT guard.unprotect('cn3."T"');
DROP TABLE cn3."T";
DROP SCHEMA "CN 2", cn3;
DROP FUNCTION cn_last();
DROP ROLE regress_cn_renamed;
