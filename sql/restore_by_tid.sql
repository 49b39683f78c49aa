-- restore_by_tid: the UPDATE that writes rows back in place finds them by
-- the tid of the live row each was judged against (undo.c), not by a
-- second probe of the key index; where a trigger of the user's that fires
-- during a restore could move a row to another tid first, by key.
CREATE TABLE bt (id int PRIMARY KEY, v text, hits int NOT NULL DEFAULT 0);
INSERT INTO bt SELECT g, 'v' || g, 0 FROM generate_series(1, 10) g;
SELECT guard.protect('bt');
SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS before FROM bt t \gset
BEGIN;
INSERT INTO bt VALUES (100, 'new', 0);
UPDATE bt SET v = 'changed' WHERE id <= 5;
COMMIT;
SELECT max(changeset_id) AS cs FROM guard.changeset \gset
-- a plain table: every row back, exactly
SELECT kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs) ORDER BY change_id;
SELECT md5(string_agg(t::text, ',' ORDER BY id)) = :'before' AS exact FROM bt t;

-- one statement that inserts row 100 and updates row 1 (one change), and
-- a trigger that fires during a restore (ENABLE ALWAYS) and, when the
-- restore deletes the inserted row, updates row 1: row 1 is then at
-- another tid when its own UPDATE is written back, and is still reached
CREATE FUNCTION bt_count() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN UPDATE bt SET hits = hits + 1 WHERE id = 1; RETURN OLD; END $$;
CREATE TRIGGER bt_count AFTER DELETE ON bt FOR EACH ROW EXECUTE FUNCTION bt_count();
ALTER TABLE bt ENABLE ALWAYS TRIGGER bt_count;
INSERT INTO bt VALUES (100, 'new', 0), (1, 'changed', 0)
	ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v;
SELECT max(changeset_id) AS cs FROM guard.changeset \gset
SELECT kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs) ORDER BY change_id;
SELECT id, v, hits FROM bt WHERE id IN (1, 2, 100) ORDER BY id;
SELECT guard.unprotect('bt');
DROP TABLE bt;
DROP FUNCTION bt_count();
