-- Every upgrade step: guard installed at 0.1 and updated step by step has
-- exactly the objects of a fresh CREATE EXTENSION guard (run last: it drops
-- and recreates the extension).
CREATE TEMP TABLE fresh AS
SELECT pg_catalog.pg_describe_object(classid, objid, objsubid) AS object
FROM pg_catalog.pg_depend
WHERE refclassid = 'pg_catalog.pg_extension'::regclass
  AND refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'guard')
  AND deptype = 'e';
SELECT count(*) > 20 AS has_objects FROM fresh;
SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'guard';

SET client_min_messages = warning;
DROP EXTENSION guard CASCADE;
RESET client_min_messages;
CREATE EXTENSION guard VERSION '0.1';
SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'guard';
ALTER EXTENSION guard UPDATE;
SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'guard';

CREATE TEMP TABLE upgraded AS
SELECT pg_catalog.pg_describe_object(classid, objid, objsubid) AS object
FROM pg_catalog.pg_depend
WHERE refclassid = 'pg_catalog.pg_extension'::regclass
  AND refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'guard')
  AND deptype = 'e';
-- no object only in one of them
(SELECT 'only fresh' AS side, object FROM fresh EXCEPT SELECT 'only fresh', object FROM upgraded)
UNION ALL
(SELECT 'only upgraded', object FROM upgraded EXCEPT SELECT 'only upgraded', object FROM fresh)
ORDER BY 1, 2;
-- and the upgraded extension works
CREATE TABLE upgrade_t (id int PRIMARY KEY, v text);
INSERT INTO upgrade_t VALUES (1, 'a');
SELECT guard.protect('upgrade_t');
UPDATE upgrade_t SET v = 'b';
SELECT kind, rows FROM guard.changes WHERE relation = 'public.upgrade_t';
