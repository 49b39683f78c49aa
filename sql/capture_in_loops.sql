-- capture_in_loops: the records of many statements run by one top-level
-- statement (a PL/pgSQL loop: guard keeps guard.change open across them,
-- see writer.c) commit, roll back and read back as those of separate
-- statements do: exception blocks, DDL in the loop, two-phase commit.
CREATE TABLE acct (id int PRIMARY KEY, n int NOT NULL, note text);
INSERT INTO acct SELECT g, 0, 'n' || g FROM generate_series(1, 100) g;
SELECT guard.protect('acct');
SELECT md5(string_agg(a::text, ',' ORDER BY id)) AS before FROM acct a \gset
SELECT coalesce(max(change_id), 0) AS mark FROM guard.change \gset

-- 100 one-row UPDATEs; every third, the first included (guard.change is
-- opened in a subtransaction that aborts), in an exception block that fails
DO $$
BEGIN
	FOR i IN 1..100 LOOP
		IF i % 3 = 1 THEN
			BEGIN
				UPDATE acct SET n = n + 1 WHERE id = i;
				RAISE EXCEPTION 'undo %', i;
			EXCEPTION WHEN raise_exception THEN NULL;
			END;
		ELSE
			UPDATE acct SET n = n + 1 WHERE id = i;
		END IF;
	END LOOP;
	-- the records written so far are there for the block's own queries
	RAISE NOTICE 'changes seen inside the block: %',
		(SELECT count(*) FROM guard.change WHERE relid = 'acct'::regclass);
END $$;
SELECT max(changeset_id) AS cs1 FROM guard.change \gset
-- one change per UPDATE that stayed, in one change set
SELECT count(*) AS changes, count(DISTINCT changeset_id) AS changesets
  FROM guard.change WHERE change_id > :mark;
SELECT count(*) FILTER (WHERE n = 1) AS updated, count(*) FILTER (WHERE n = 0) AS untouched
  FROM acct;
-- the records are found through each index as through the heap
SET enable_seqscan = off;
SELECT count(*) AS by_key FROM guard.change WHERE change_id > :mark;
SELECT count(*) AS by_changeset FROM guard.change
 WHERE changeset_id = (SELECT max(changeset_id) FROM guard.change);
RESET enable_seqscan;

-- DDL inside the loop (a utility statement closes the kept writer; the
-- next record opens another), then the whole change set undone at once
DO $$
BEGIN
	UPDATE acct SET note = 'x' WHERE id <= 10;
	ALTER TABLE acct ADD COLUMN extra int;
	UPDATE acct SET extra = id WHERE id <= 20;
	FOR i IN 1..5 LOOP
		UPDATE acct SET n = n + 10 WHERE id = i;
	END LOOP;
	ALTER TABLE acct DROP COLUMN extra;
	DELETE FROM acct WHERE id > 95;
END $$;
SELECT max(changeset_id) AS cs2 FROM guard.change \gset
SELECT kind, count(*) FROM guard.change WHERE changeset_id = :cs2
 GROUP BY kind ORDER BY kind;
SELECT count(*) AS restored_changes FROM guard.restore(:cs2);
SELECT count(*) AS restored_changes FROM guard.restore(:cs1);
SELECT md5(string_agg(a::text, ',' ORDER BY id)) = :'before' AS exact FROM acct a;

-- a loop in a prepared transaction: its records commit with it
BEGIN;
DO $$ BEGIN FOR i IN 1..10 LOOP UPDATE acct SET n = n + 1 WHERE id = i; END LOOP; END $$;
PREPARE TRANSACTION 'guard_loop';
COMMIT PREPARED 'guard_loop';
SELECT count(*) AS prepared_changes FROM guard.change
 WHERE changeset_id = (SELECT max(changeset_id) FROM guard.change);

-- and one rolled back leaves nothing
SELECT count(*) AS before_rollback FROM guard.change \gset
BEGIN;
DO $$ BEGIN FOR i IN 1..10 LOOP UPDATE acct SET n = n + 1 WHERE id = i; END LOOP; END $$;
ROLLBACK;
SELECT count(*) - :before_rollback AS left_by_rollback FROM guard.change;
DROP TABLE acct;
