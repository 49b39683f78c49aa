-- capture_cross_partition_trigger: a cross-partition UPDATE whose
-- destination partition has a BEFORE INSERT trigger returning NULL is
-- accepted as PostgreSQL accepts it (the moved row is gone), and restore
-- gives back exactly the rows it replaced.  Such a statement's old and new
-- rows do not pair by position, so they are paired by key: a row updated
-- in place is an UPDATE, a moved row the DELETE and the INSERT that
-- PostgreSQL ran, a cancelled move a DELETE alone.
SELECT fresh_ids();
CREATE TABLE moves (id int, part int, v text, PRIMARY KEY (id, part))
	PARTITION BY LIST (part);
CREATE TABLE moves_1 PARTITION OF moves FOR VALUES IN (1);
CREATE TABLE moves_2 PARTITION OF moves FOR VALUES IN (2);
CREATE FUNCTION refuse_odd() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.id % 2 = 1 THEN
		RETURN NULL;
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER refuse_odd BEFORE INSERT ON moves_2
	FOR EACH ROW EXECUTE FUNCTION refuse_odd();
INSERT INTO moves SELECT g, 1, 'v' || g FROM generate_series(1, 6) g;
SELECT guard.protect('moves');
SELECT md5(string_agg(moves::text, ',' ORDER BY id, part)) AS m0 FROM moves \gset

-- rows 1..4 move to moves_2 (1 and 3 are cancelled there), 5 and 6 are
-- updated in place, in one statement
UPDATE moves SET part = CASE WHEN id <= 4 THEN 2 ELSE 1 END, v = v || '!';
SELECT tableoid::regclass, * FROM moves ORDER BY id, part;
SELECT change_id, kind, rows FROM guard.changes ORDER BY change_id;
SELECT * FROM guard.diff(1) ORDER BY key, "column";
SELECT * FROM guard.verify_restore(1);
SELECT relation, kind, rows_restored, rows_skipped, conflicts FROM guard.restore(1);
SELECT md5(string_agg(moves::text, ',' ORDER BY id, part)) = :'m0' AS same FROM moves;

-- keys swapped in place beside the moves (a deferrable key allows it):
-- paired by key, the swap is two updates
CREATE TABLE swaps (id int, part int, v text,
					PRIMARY KEY (id, part) DEFERRABLE INITIALLY DEFERRED)
	PARTITION BY LIST (part);
CREATE TABLE swaps_1 PARTITION OF swaps FOR VALUES IN (1);
CREATE TABLE swaps_2 PARTITION OF swaps FOR VALUES IN (2);
CREATE TRIGGER refuse_odd BEFORE INSERT ON swaps_2
	FOR EACH ROW EXECUTE FUNCTION refuse_odd();
INSERT INTO swaps SELECT g, 1, 'w' || g FROM generate_series(1, 6) g;
SELECT guard.protect('swaps');
SELECT md5(string_agg(swaps::text, ',' ORDER BY id, part)) AS s0 FROM swaps \gset
UPDATE swaps SET id = CASE id WHEN 1 THEN 2 WHEN 2 THEN 1 ELSE id END,
				 part = CASE WHEN id >= 3 THEN 2 ELSE 1 END;
SELECT * FROM swaps ORDER BY id, part;
SELECT relation, kind, rows_restored, conflicts
  FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets));
SELECT md5(string_agg(swaps::text, ',' ORDER BY id, part)) = :'s0' AS same FROM swaps;

-- MERGE: the same, beside its inserts and deletes
MERGE INTO moves USING (SELECT g FROM generate_series(1, 8) g) s ON moves.id = s.g
 WHEN MATCHED AND moves.id = 6 THEN DELETE
 WHEN MATCHED THEN UPDATE SET part = 2, v = 'm'
 WHEN NOT MATCHED THEN INSERT VALUES (s.g, 1, 'new');
SELECT * FROM moves ORDER BY id, part;
SELECT relation, kind, rows_restored, conflicts
  FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets));
SELECT md5(string_agg(moves::text, ',' ORDER BY id, part)) = :'m0' AS same FROM moves;

-- conflicts are judged row by row as for any DELETE, INSERT and UPDATE: a
-- moved row written since, a cancelled row's key taken again, a row
-- updated in place and written since
UPDATE moves SET part = CASE WHEN id <= 4 THEN 2 ELSE 1 END, v = v || '!';
SELECT max(changeset_id) AS moved FROM guard.changesets \gset
UPDATE moves SET v = 'later' WHERE id = 2;
INSERT INTO moves VALUES (1, 1, 'again');
UPDATE moves SET v = 'later' WHERE id = 5;
SELECT expect_error(format('SELECT guard.restore(%s)', :moved));
-- skipped: the later rows stay, the others come back.  The moved row
-- written since stays at (2, 2), and its old version comes back at
-- (2, 1) beside it: the move was kept as a DELETE and an INSERT
SELECT relation, kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:moved, on_conflict => 'skip');
SELECT * FROM moves ORDER BY id, part;

-- row checks alone (no capture) see the rows the statement wrote
DELETE FROM moves;
INSERT INTO moves SELECT g, 1, 'v' || g FROM generate_series(1, 6) g;
SELECT guard.protect('moves', capture => 'ddl');
SELECT guard.add_invariant('moves', 'v_not_bad', row_check => $$v <> 'bad'$$,
						   deferred => false);
UPDATE moves SET part = 2, v = 'ok' WHERE id <= 2;
SELECT expect_error($$UPDATE moves SET part = 2, v = 'bad' WHERE id <= 4$$);
SELECT * FROM moves ORDER BY id, part;

SELECT guard.unprotect('moves');
SELECT guard.unprotect('swaps');
DROP TABLE moves, swaps;
DROP FUNCTION refuse_odd();
