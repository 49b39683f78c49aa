-- restore_key_order: restore judges each captured row against its live
-- version, found by key.  When the snapshot's keys come in ascending order
-- it steps one index scan forward instead of descending from the root for
-- each key (rows.c, ordered fetches); any other order falls back to a
-- descent.  Every order of keys, gaps, keys deleted or written since and
-- keys inserted in between must give the same, exact result.

-- the result of undoing the last change set, and whether the table is
-- back to what it held before (ko.before)
CREATE TABLE ko_before (tbl text PRIMARY KEY, md5 text);
CREATE FUNCTION ko_save(name text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE h text;
BEGIN
	EXECUTE format('SELECT md5(string_agg(t::text, %L ORDER BY t::text)) FROM %I t', ',', name) INTO h;
	DELETE FROM ko_before b WHERE b.tbl = name;
	INSERT INTO ko_before VALUES (name, h);
END $$;
CREATE FUNCTION ko_exact(tbl text) RETURNS bool LANGUAGE plpgsql AS $$
DECLARE h text;
BEGIN
	EXECUTE format('SELECT md5(string_agg(t::text, %L ORDER BY t::text)) FROM %I t', ',', tbl) INTO h;
	RETURN h = (SELECT md5 FROM ko_before b WHERE b.tbl = ko_exact.tbl);
END $$;

-- 1. int keys stored in three physical orders: ascending, descending,
--    shuffled; every row updated, then every row restored
CREATE TABLE ko_asc (id int PRIMARY KEY, v int);
CREATE TABLE ko_desc (id int PRIMARY KEY, v int);
CREATE TABLE ko_shuf (id int PRIMARY KEY, v int);
INSERT INTO ko_asc SELECT g, g FROM generate_series(1, 3000) g;
INSERT INTO ko_desc SELECT g, g FROM generate_series(3000, 1, -1) g;
INSERT INTO ko_shuf SELECT g, g FROM generate_series(1, 3000) g ORDER BY (g * 7919) % 3001;
SELECT guard.protect('ko_asc'), guard.protect('ko_desc'), guard.protect('ko_shuf');
SELECT ko_save('ko_asc'), ko_save('ko_desc'), ko_save('ko_shuf');
UPDATE ko_asc SET v = v + 1;
SELECT max(changeset_id) AS cs_asc FROM guard.changeset \gset
UPDATE ko_desc SET v = v + 1;
SELECT max(changeset_id) AS cs_desc FROM guard.changeset \gset
UPDATE ko_shuf SET v = v + 1;
SELECT max(changeset_id) AS cs_shuf FROM guard.changeset \gset
SELECT relation, rows_restored, rows_skipped, conflicts FROM guard.restore(:cs_asc);
SELECT relation, rows_restored, rows_skipped, conflicts FROM guard.restore(:cs_desc);
SELECT relation, rows_restored, rows_skipped, conflicts FROM guard.restore(:cs_shuf);
SELECT ko_exact('ko_asc') AS asc_exact, ko_exact('ko_desc') AS desc_exact,
	ko_exact('ko_shuf') AS shuf_exact;

-- 2. keys in order with gaps of every width (1 row in 2, in 7, in 50),
--    some deleted since, some updated since by another change set, and
--    new keys inserted between the captured ones since: skip mode keeps
--    what was written since and puts every other captured row back
UPDATE ko_asc SET v = -v WHERE id % 2 = 0 OR id % 7 = 0 OR id % 50 = 0;
SELECT max(changeset_id) AS cs FROM guard.changeset \gset
DELETE FROM ko_asc WHERE id IN (14, 700, 701, 702, 2450);
UPDATE ko_asc SET v = 0 WHERE id IN (2, 1000, 2998);
INSERT INTO ko_asc SELECT g, 0 FROM generate_series(3001, 3010) g;
DELETE FROM ko_asc WHERE id BETWEEN 100 AND 110;
INSERT INTO ko_asc VALUES (100, 5), (104, 5), (106, 5);
SELECT rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs, dry_run => true, on_conflict => 'skip');
SELECT rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs, on_conflict => 'skip');
-- rows written since kept, every other captured row back
SELECT count(*) FILTER (WHERE v < 0) AS still_negated,
	count(*) FILTER (WHERE v = 0) AS zeroed_since,
	count(*) FILTER (WHERE id IN (100, 104, 106)) AS reinserted_since,
	count(*) AS total
  FROM ko_asc;
SELECT id, v FROM ko_asc WHERE id IN (2, 4, 14, 100, 102, 104, 106, 112, 1000, 2998, 3000)
  ORDER BY id;

-- 3. text keys under the default collation and under "C", citext and
--    uuid keys: their index order is not the order of their bytes
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS citext;
RESET client_min_messages;
CREATE TABLE ko_text (k text PRIMARY KEY, v int);
CREATE TABLE ko_c (k text COLLATE "C" PRIMARY KEY, v int);
CREATE TABLE ko_ci (k citext PRIMARY KEY, v int);
CREATE TABLE ko_uuid (k uuid PRIMARY KEY, v int);
INSERT INTO ko_text SELECT w, g FROM generate_series(1, 500) g,
	LATERAL (SELECT (ARRAY['a', 'B', 'b', 'A', 'é', 'Z', '_', '1'])[g % 8 + 1] || g AS w) x;
INSERT INTO ko_c SELECT k, v FROM ko_text;
INSERT INTO ko_ci SELECT k || '-' || v, v FROM ko_text;
INSERT INTO ko_uuid SELECT md5(g::text)::uuid, g FROM generate_series(1, 500) g;
SELECT guard.protect('ko_text'), guard.protect('ko_c'), guard.protect('ko_ci'),
	guard.protect('ko_uuid');
SELECT ko_save('ko_text'), ko_save('ko_c'), ko_save('ko_ci'), ko_save('ko_uuid');
BEGIN;
UPDATE ko_text SET v = v + 1;
UPDATE ko_c SET v = v + 1 WHERE v % 3 <> 0;
UPDATE ko_ci SET v = v + 1;
UPDATE ko_uuid SET v = v + 1 WHERE v % 2 = 0;
COMMIT;
SELECT max(changeset_id) AS cs FROM guard.changeset \gset
SELECT relation, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs) ORDER BY change_id;
SELECT ko_exact('ko_text') AS text_exact, ko_exact('ko_c') AS c_exact,
	ko_exact('ko_ci') AS citext_exact, ko_exact('ko_uuid') AS uuid_exact;

-- 4. a conflict on one row in the middle of an ordered run aborts (ZG002)
SELECT ko_save('ko_uuid');
UPDATE ko_uuid SET v = v * 10;
SELECT max(changeset_id) AS cs FROM guard.changeset \gset
UPDATE ko_uuid SET v = -1 WHERE v = 2500;
\set VERBOSITY sqlstate
SELECT * FROM guard.restore(:cs);
\set VERBOSITY default
SELECT rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs, on_conflict => 'skip');
SELECT count(*) FILTER (WHERE v = -1) AS kept, count(*) FILTER (WHERE v > 500) AS still_scaled
  FROM ko_uuid;

SELECT guard.unprotect(t) FROM unnest(ARRAY['ko_asc', 'ko_desc', 'ko_shuf', 'ko_text', 'ko_c',
	'ko_ci', 'ko_uuid']::regclass[]) t;
DROP TABLE ko_asc, ko_desc, ko_shuf, ko_text, ko_c, ko_ci, ko_uuid, ko_before;
DROP FUNCTION ko_save(text), ko_exact(text);
