-- restore_verify: the drill restores in a subtransaction, compares with the
-- snapshot, rolls back and reports.
CREATE TABLE docs (id int PRIMARY KEY, body text, meta jsonb, n numeric);
INSERT INTO docs SELECT g, repeat(md5(g::text), 3000), jsonb_build_object('v', g), g / 4.0
  FROM generate_series(1, 10) g;
SELECT guard.protect('docs');
SELECT md5(string_agg(d::text, ',' ORDER BY id)) AS docs_md5 FROM docs d \gset
BEGIN;
UPDATE docs SET body = 'short', n = 1.000 WHERE id <= 5;
UPDATE docs SET meta = NULL WHERE id = 1;
DELETE FROM docs WHERE id = 10;
INSERT INTO docs VALUES (11, 'x', '{}', 0);
COMMIT;
SELECT max(changeset_id) AS cs FROM guard.changesets \gset
SELECT relation, rows_checked, rows_matching, ok FROM guard.verify_restore(:cs) ORDER BY change_id;
-- the drill changed nothing and left the change set restorable
SELECT count(*) FROM docs WHERE body = 'short';
SELECT DISTINCT state FROM guard.changes WHERE changeset_id = :cs;
-- a later write to a column the change set touched makes the drill fail
UPDATE docs SET n = 99 WHERE id = 2;
SELECT relation, rows_checked, rows_matching, ok FROM guard.verify_restore(:cs) ORDER BY change_id;
SELECT count(*) FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets));
SELECT relation, rows_checked, rows_matching, ok FROM guard.verify_restore(:cs) ORDER BY change_id;
SELECT count(*) FROM guard.restore(:cs);
SELECT md5(string_agg(d::text, ',' ORDER BY id)) = :'docs_md5' AS restored FROM docs d;
SELECT expect_error($$SELECT * FROM guard.verify_restore(-5)$$);
DROP TABLE docs;
