-- trash_drop_tablespace: DROP TABLESPACE of a tablespace that holds only
-- dropped protected tables (and their indexes) succeeds, as it would
-- without guard: guard drops those tables from its trash for good first,
-- with a NOTICE for each, in a transaction of its own (their files go only
-- at commit).  When the DROP TABLESPACE fails anyway (the tablespace holds
-- live tables, the caller does not own it, a transaction block), the
-- trash is left as it was and PostgreSQL's own error is raised.
SELECT fresh_ids();
CREATE FUNCTION trashed() RETURNS TABLE (relation text, state text, purged text) LANGUAGE sql AS $$
	SELECT relation, state, detail->>'purged' FROM guard.changes WHERE kind = 'DROP TABLE' ORDER BY change_id
$$;
SET allow_in_place_tablespaces = true;
CREATE TABLESPACE regress_guard_space LOCATION '';

-- a table, a partitioned table, and a table whose index alone is there
CREATE TABLE t_heap (id int PRIMARY KEY, v text) TABLESPACE regress_guard_space;
INSERT INTO t_heap VALUES (1, repeat('x', 10000));
CREATE TABLE t_parted (id int PRIMARY KEY) PARTITION BY RANGE (id) TABLESPACE regress_guard_space;
CREATE TABLE t_parted_1 PARTITION OF t_parted FOR VALUES FROM (1) TO (10);
CREATE TABLE t_index (id int PRIMARY KEY USING INDEX TABLESPACE regress_guard_space);
CREATE TABLE t_elsewhere (id int PRIMARY KEY);
SELECT guard.protect(t) FROM unnest(ARRAY['t_heap', 't_parted', 't_index', 't_elsewhere']) t;
DROP TABLE t_heap, t_parted, t_index, t_elsewhere;

-- a live table still there: PostgreSQL's error (the trashed partitioned
-- table is not among the objects it lists), the trash untouched
CREATE TABLE live (id int) TABLESPACE regress_guard_space;
DROP TABLESPACE regress_guard_space;
SELECT relation, state FROM trashed();
DROP TABLE live;
CREATE TABLE live_parted (id int) PARTITION BY LIST (id) TABLESPACE regress_guard_space;
DROP TABLESPACE regress_guard_space;
DROP TABLE live_parted;

-- in a transaction block: PostgreSQL's error, the trash untouched
BEGIN;
DROP TABLESPACE regress_guard_space;
ROLLBACK;
-- not its owner: PostgreSQL's error, the trash untouched
CREATE ROLE regress_guard_nobody;
SET ROLE regress_guard_nobody;
DROP TABLESPACE regress_guard_space;
RESET ROLE;
DROP ROLE regress_guard_nobody;
SELECT relation, state FROM trashed();

-- the tablespace holds nothing else: it goes, and so do the trashed
-- tables stored there; the others stay in the trash
DROP TABLESPACE regress_guard_space;
SELECT * FROM trashed();
SELECT count(*) FROM pg_tablespace WHERE spcname = 'regress_guard_space';
SELECT regexp_replace(relname, '^[0-9]+_', 'N_') AS in_trash FROM pg_class
 WHERE relnamespace = 'guard_trash'::regnamespace ORDER BY 1;
SELECT expect_error($$SELECT * FROM guard.undrop('t_heap')$$);
SELECT kind FROM guard.undrop('t_elsewhere');
DROP TABLE t_elsewhere;

DROP FUNCTION trashed();
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
