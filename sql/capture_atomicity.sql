-- capture_atomicity: snapshot, change and change record commit or roll back
-- together, with statements, savepoints and transactions.
CREATE TABLE ledger (id int PRIMARY KEY, amount int CHECK (amount >= 0));
INSERT INTO ledger SELECT g, 100 FROM generate_series(1, 10) g;
SELECT guard.protect('ledger');
CREATE FUNCTION counts(OUT changesets bigint, OUT changes bigint, OUT chunks bigint)
LANGUAGE sql AS $$
	SELECT (SELECT count(*) FROM guard.changeset),
		   (SELECT count(*) FROM guard.change),
		   (SELECT count(*) FROM guard.snapshot)
$$;
SELECT * FROM counts() \gset start_

-- a rolled-back transaction leaves nothing
BEGIN;
UPDATE ledger SET amount = 0;
SELECT guard.label('rolled back') > 0 AS labelled;
ROLLBACK;
SELECT changesets - :start_changesets AS changesets, changes - :start_changes AS changes,
	   chunks - :start_chunks AS chunks FROM counts();

-- a failing statement leaves nothing, even after some rows were written
UPDATE ledger SET amount = amount - 150 + id * 10;
SELECT changesets - :start_changesets AS changesets, changes - :start_changes AS changes,
	   chunks - :start_chunks AS chunks FROM counts();

-- a rolled-back savepoint takes its captures, and only those
SELECT coalesce(max(change_id), 0) AS mark FROM guard.change \gset
BEGIN;
UPDATE ledger SET amount = 1 WHERE id = 1;
SAVEPOINT s1;
UPDATE ledger SET amount = 2 WHERE id = 2;
DELETE FROM ledger WHERE id = 3;
ROLLBACK TO s1;
UPDATE ledger SET amount = 4 WHERE id = 4;
COMMIT;
SELECT c.statement, d.key, d.before, d.after
  FROM guard.changes c, guard.diff(c.change_id) d
 WHERE c.change_id > :mark ORDER BY c.change_id;
SELECT changes - :start_changes AS changes FROM counts();
SELECT count(DISTINCT changeset_id) FROM guard.changes WHERE change_id > :mark;

-- the change set itself created inside a savepoint that rolls back
SELECT coalesce(max(change_id), 0) AS mark FROM guard.change \gset
BEGIN;
SAVEPOINT s1;
UPDATE ledger SET amount = 5 WHERE id = 5;
ROLLBACK TO s1;
UPDATE ledger SET amount = 6 WHERE id = 6;
SAVEPOINT s2;
UPDATE ledger SET amount = 7 WHERE id = 7;
RELEASE s2;
COMMIT;
SELECT cs.changeset_id = c.changeset_id AS same_changeset, c.statement
  FROM guard.changes c JOIN guard.changeset cs USING (changeset_id)
 WHERE c.change_id > :mark ORDER BY c.change_id;

-- an error trapped inside a function (a subtransaction) drops its capture
SELECT coalesce(max(change_id), 0) AS mark FROM guard.change \gset
DO $$
BEGIN
	UPDATE ledger SET amount = 8 WHERE id = 8;
	BEGIN
		UPDATE ledger SET amount = 9 WHERE id = 9;
		UPDATE ledger SET amount = -1 WHERE id = 9;
	EXCEPTION WHEN check_violation THEN
		NULL;
	END;
END
$$;
SELECT c.statement, d.key, d.before, d.after
  FROM guard.changes c, guard.diff(c.change_id) d
 WHERE c.change_id > :mark ORDER BY c.change_id;

-- a prepared transaction keeps its capture until it commits
BEGIN;
UPDATE ledger SET amount = 10 WHERE id = 10;
PREPARE TRANSACTION 'guard_2pc';
SELECT count(*) FROM guard.changes WHERE statement LIKE '%amount = 10%';
COMMIT PREPARED 'guard_2pc';
SELECT count(*) FROM guard.changes WHERE statement LIKE '%amount = 10%';

DROP FUNCTION counts();
DROP TABLE ledger;
