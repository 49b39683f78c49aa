-- ddl_partition_drop: nothing is lost silently.  A DROP TABLE of one
-- partition of a protected table, and a DETACH followed by a DROP, are
-- recorded and undone; a TRUNCATE of a table protected with capture =>
-- 'ddl' and no key is recorded.
SELECT fresh_ids();
CREATE TABLE m (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (1) TO (100);
CREATE TABLE m2 PARTITION OF m FOR VALUES FROM (100) TO (200) PARTITION BY RANGE (id);
CREATE TABLE m2a PARTITION OF m2 FOR VALUES FROM (100) TO (150);
CREATE TABLE m2b PARTITION OF m2 FOR VALUES FROM (150) TO (200);
INSERT INTO m SELECT g, 'v' || g FROM generate_series(1, 199) g;
SELECT guard.protect('m');
SELECT md5(string_agg(m::text, ',' ORDER BY id)) AS m0 FROM m \gset

-- one partition (itself partitioned) dropped: recorded, and undone with
-- its own partitions, attached again with its bounds
DROP TABLE m2;
SELECT count(*) FROM m;
SELECT relation, kind FROM guard.changes ORDER BY change_id;
SELECT kind FROM guard.undrop('m2');
SELECT md5(string_agg(m::text, ',' ORDER BY id)) = :'m0' AS same FROM m;
SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'm2';

-- a leaf dropped with the whole change set undone by guard.restore
DROP TABLE m1;
SELECT relation, kind FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets));
SELECT md5(string_agg(m::text, ',' ORDER BY id)) = :'m0' AS same FROM m;

-- detached, then dropped: the detached table keeps the policy, so its
-- DROP is kept too
ALTER TABLE m DETACH PARTITION m1;
SELECT relation, capture FROM guard.policies ORDER BY 1;
DROP TABLE m1;
SELECT relation, kind, detail->>'detached' AS detached FROM guard.changes ORDER BY change_id DESC LIMIT 2;
SELECT kind FROM guard.undrop('m1');
SELECT count(*) FROM m1;
ALTER TABLE m ATTACH PARTITION m1 FOR VALUES FROM (1) TO (100);
SELECT md5(string_agg(m::text, ',' ORDER BY id)) = :'m0' AS same FROM m;

-- TRUNCATE of a table protected for its schema changes only, without key
CREATE TABLE nokey (a int, b text);
INSERT INTO nokey VALUES (1, 'a'), (1, 'a'), (2, NULL);
SELECT guard.protect('nokey', capture => 'ddl');
SELECT md5(string_agg(nokey::text, ',' ORDER BY nokey::text)) AS n0 FROM nokey \gset
TRUNCATE nokey;
SELECT relation, kind, rows FROM guard.changes ORDER BY change_id DESC LIMIT 1;
-- and undone: the rows come back as they were, duplicates and NULLs too
SELECT relation, kind, rows_restored
  FROM guard.restore((SELECT max(changeset_id) FROM guard.changes WHERE relation = 'public.nokey'));
SELECT md5(string_agg(nokey::text, ',' ORDER BY nokey::text)) = :'n0' AS same, count(*) FROM nokey;

DROP TABLE m, nokey;
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
