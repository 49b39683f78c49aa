-- trash_unlinks_foreign_keys: a dropped protected table is gone for the
-- foreign keys of the live tables, both ways; the undo makes them again.
SELECT fresh_ids();
CREATE TABLE pk (id int PRIMARY KEY);
CREATE TABLE f (id int PRIMARY KEY, p int REFERENCES pk ON DELETE CASCADE);
INSERT INTO pk SELECT generate_series(1, 5);
INSERT INTO f VALUES (1, 1), (2, 2);
SELECT guard.protect('pk');
SELECT guard.protect('f');
CREATE FUNCTION fks() RETURNS TABLE (tbl text, fk text, def text, valid bool) LANGUAGE sql AS $$
	SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated
	  FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text IN ('pk', 'f', 'pfk')
	 ORDER BY 1, 2
$$;

-- the referencing table dropped: the referenced one is free of it
DROP TABLE f;
DELETE FROM pk WHERE id = 5;
TRUNCATE pk;
INSERT INTO pk SELECT generate_series(1, 5);
SELECT kind FROM guard.undrop('f');
SELECT * FROM fks();
SELECT * FROM f ORDER BY id;
SELECT expect_error($$INSERT INTO f VALUES (3, 99)$$);

-- TRUNCATE ... CASCADE does not reach into the trash
DROP TABLE f;
TRUNCATE pk CASCADE;
INSERT INTO pk SELECT generate_series(1, 5);
SELECT kind FROM guard.undrop('f');
SELECT count(*) AS rows_kept FROM f;

-- the referenced table dropped (CASCADE, as PostgreSQL requires): the
-- referencing table's foreign key goes, and comes back with the undo
SELECT expect_error($$DROP TABLE pk$$);
DROP TABLE pk CASCADE;
SELECT * FROM fks();
INSERT INTO f VALUES (3, 99);
DELETE FROM f WHERE id = 3;
SELECT kind FROM guard.undrop('pk');
SELECT * FROM fks();

-- rows written meanwhile that break the key: it comes back NOT VALID
DROP TABLE pk CASCADE;
INSERT INTO f VALUES (4, 77);
SELECT kind FROM guard.undrop('pk');
SELECT * FROM fks();
DELETE FROM f WHERE id = 4;
ALTER TABLE f VALIDATE CONSTRAINT f_p_fkey;

-- both dropped, by one statement or two: the key comes back with the
-- second undo, whichever order they come back in
DROP TABLE pk, f;
SELECT kind FROM guard.undrop('pk');
SELECT count(*) AS fks FROM pg_constraint WHERE contype = 'f' AND confrelid = 'pk'::regclass;
SELECT kind FROM guard.undrop('f');
SELECT * FROM fks();
DROP TABLE f;
DROP TABLE pk;
SELECT kind FROM guard.undrop('f');
SELECT count(*) AS fks FROM pg_constraint WHERE contype = 'f' AND conrelid = 'f'::regclass;
SELECT kind FROM guard.undrop('pk');
SELECT * FROM fks();
DROP TABLE f, pk;
SELECT changeset_id AS both_dropped FROM guard.changes ORDER BY change_id DESC LIMIT 1 \gset
SELECT relation, kind FROM guard.restore(:both_dropped) ORDER BY change_id DESC;
SELECT * FROM fks();

-- DROP ... CASCADE while deferred foreign key checks are pending
CREATE TABLE refd (id int PRIMARY KEY);
CREATE TABLE refs (id int PRIMARY KEY, r int REFERENCES refd DEFERRABLE INITIALLY DEFERRED);
SELECT guard.protect('refd');
BEGIN;
INSERT INTO refs VALUES (1, 1);
DROP TABLE refd CASCADE;
COMMIT;
SELECT * FROM refs;

-- a partitioned table referencing a protected table, dropped with it
CREATE TABLE pfk (id int, p int REFERENCES pk) PARTITION BY RANGE (id);
CREATE TABLE pfk1 PARTITION OF pfk FOR VALUES FROM (0) TO (10);
INSERT INTO pfk VALUES (1, 1);
DROP TABLE f;
DROP TABLE pk, pfk;
SELECT to_regclass('pfk') IS NULL AS pfk_gone, to_regclass('pk') IS NULL AS pk_gone;
SELECT kind FROM guard.undrop('pk');
SELECT kind FROM guard.undrop('f');
SELECT * FROM fks();

DROP TABLE f, pk, refs;
DROP FUNCTION fks();
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
