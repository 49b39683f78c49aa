-- capture_kinds: every kind of write to a protected table is captured, in
-- the same transaction, one change per statement and table.
CREATE TABLE acct (id int PRIMARY KEY, owner text NOT NULL, balance numeric);
INSERT INTO acct SELECT g, 'owner' || g, g * 10 FROM generate_series(1, 20) g;
SELECT guard.protect('acct');

-- show_changes(n): the n newest changes of acct; last_diff(): what the
-- newest one captured
CREATE FUNCTION show_changes(n int) RETURNS TABLE (kind text, rows bigint, statement text)
LANGUAGE sql AS $$
	SELECT kind, rows, statement FROM guard.changes
	 WHERE relation = 'public.acct'
	 ORDER BY change_id DESC LIMIT n
$$;
CREATE FUNCTION last_diff()
RETURNS TABLE (key text, "column" text, before text, after text)
LANGUAGE sql AS $$
	SELECT * FROM guard.diff((SELECT max(change_id) FROM guard.changes
							   WHERE relation = 'public.acct'))
$$;

-- UPDATE: only the columns that changed, with their before-values
UPDATE acct SET balance = balance + 1 WHERE id <= 3;
SELECT * FROM show_changes(1);
SELECT * FROM last_diff() ORDER BY 1, 2;

-- an UPDATE that writes identical values records no change
UPDATE acct SET owner = owner WHERE id = 4;
SELECT * FROM show_changes(1);

-- an UPDATE of the key: found again by its new key, old key kept
UPDATE acct SET id = 100 WHERE id = 5;
SELECT * FROM last_diff() ORDER BY 1, 2;

-- DELETE: the whole row
DELETE FROM acct WHERE id IN (6, 7);
SELECT * FROM show_changes(1);
SELECT * FROM last_diff() ORDER BY 1, 2;

-- INSERT: the key (after shows the row as it is now)
INSERT INTO acct VALUES (21, 'new', 0), (22, 'newer', NULL);
SELECT * FROM show_changes(1);
SELECT * FROM last_diff() ORDER BY 1, 2;

-- COPY FROM
COPY acct FROM stdin;
23	copied	1.50
24	copied	\N
\.
SELECT * FROM show_changes(1);

-- INSERT ... ON CONFLICT: inserted and updated rows, one change
INSERT INTO acct VALUES (1, 'upserted', 0), (25, 'fresh', 5)
	ON CONFLICT (id) DO UPDATE SET owner = excluded.owner;
SELECT * FROM show_changes(1);
SELECT * FROM last_diff() ORDER BY 1, 2;

-- MERGE: updates, deletes and inserts of one statement, one change
CREATE TABLE acct_src (id int, owner text, op text);
INSERT INTO acct_src VALUES (2, 'merged', 'u'), (3, NULL, 'd'), (26, 'merged-in', 'i');
MERGE INTO acct a USING acct_src s ON a.id = s.id
	WHEN MATCHED AND s.op = 'd' THEN DELETE
	WHEN MATCHED THEN UPDATE SET owner = s.owner
	WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.owner, 0);
SELECT * FROM show_changes(1);
SELECT * FROM last_diff() ORDER BY 1, 2;

-- a row-by-row loop is captured as completely as one bulk statement
DO $$
BEGIN
	FOR i IN 8..12 LOOP
		UPDATE acct SET balance = -i WHERE id = i;
	END LOOP;
END
$$;
SELECT * FROM show_changes(5);
SELECT count(*) AS loop_rows FROM guard.changes c, guard.diff(c.change_id) d
 WHERE c.relation = 'public.acct' AND c.statement LIKE 'UPDATE acct SET balance = -i%';

-- the same row updated twice in one transaction: both before-images kept
BEGIN;
UPDATE acct SET owner = 'first' WHERE id = 13;
UPDATE acct SET owner = 'second' WHERE id = 13;
COMMIT;
SELECT d.before, d.after FROM guard.changes c, guard.diff(c.change_id) d
 WHERE c.relation = 'public.acct' AND c.statement LIKE '%WHERE id = 13'
 ORDER BY c.change_id;

-- a statement that touches no row records nothing
SELECT count(*) AS before_count FROM guard.changes WHERE relation = 'public.acct' \gset
UPDATE acct SET owner = 'x' WHERE false;
DELETE FROM acct WHERE id < 0;
SELECT count(*) - :before_count AS new_changes FROM guard.changes WHERE relation = 'public.acct';

-- an unprotected table gets no capture
CREATE TABLE plain (id int PRIMARY KEY, v text);
INSERT INTO plain VALUES (1, 'a');
UPDATE plain SET v = 'b';
SELECT count(*) FROM guard.changes WHERE relation = 'public.plain';

-- a protected table without capture of DML gets none either
SELECT guard.protect('plain', capture => 'ddl');
UPDATE plain SET v = 'c';
SELECT count(*) FROM guard.changes WHERE relation = 'public.plain';

-- a foreign key's action is named by what it does to the child: ON DELETE
-- SET NULL is an UPDATE of the child, ON DELETE CASCADE a DELETE
CREATE TABLE fk_parent (id int PRIMARY KEY);
CREATE TABLE fk_setnull (id int PRIMARY KEY, parent int REFERENCES fk_parent ON DELETE SET NULL);
CREATE TABLE fk_cascade (id int PRIMARY KEY, parent int REFERENCES fk_parent ON DELETE CASCADE);
INSERT INTO fk_parent VALUES (1), (2);
INSERT INTO fk_setnull VALUES (10, 1), (11, 2);
INSERT INTO fk_cascade VALUES (20, 1), (21, 2);
SELECT guard.protect('fk_parent'), guard.protect('fk_setnull'), guard.protect('fk_cascade');
DELETE FROM fk_parent WHERE id = 1;
SELECT relation, kind, rows FROM guard.changes
WHERE relation IN ('public.fk_parent', 'public.fk_setnull', 'public.fk_cascade')
ORDER BY change_id;

DROP TABLE acct, acct_src, plain, fk_setnull, fk_cascade, fk_parent;
DROP FUNCTION show_changes(int), last_diff();
