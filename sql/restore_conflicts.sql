-- restore_conflicts: a later write to a column the change did not touch is
-- kept; a later write to a column it did touch is a conflict, handled as
-- on_conflict says.  Deleted rows whose key exists again and inserted rows
-- changed since are conflicts too.
SELECT fresh_ids();
CREATE TABLE users (id int PRIMARY KEY, email text, password_hash text, last_login int);
INSERT INTO users SELECT g, 'u' || g || '@x', md5(g::text), 0 FROM generate_series(1, 20) g;
SELECT guard.protect('users');

BEGIN;
SELECT guard.label('buggy backfill') AS cs \gset
UPDATE users SET password_hash = 'oops' WHERE id <= 17;
COMMIT;
-- later, unrelated writes
INSERT INTO users VALUES (21, 'new@x', 'h21', 0);
UPDATE users SET last_login = 7 WHERE id IN (1, 18);
UPDATE users SET email = 'edited@x' WHERE id = 3;
-- and two later writes to the very column the backfill broke
UPDATE users SET password_hash = 'reset-by-user' WHERE id = 4;
UPDATE users SET password_hash = 'reset-again', email = 'e@x' WHERE id = 5;

-- abort (the default): an ERROR naming the count, keys and change sets
SELECT expect_error('SELECT * FROM guard.restore(' || :cs || ')');
SELECT count(*) FROM users WHERE password_hash = 'oops';

-- the dry run of skip, then skip: conflicting columns keep the later value
CREATE TABLE dry AS SELECT * FROM guard.restore(:cs, dry_run => true, on_conflict => 'skip');
SELECT count(*) FROM users WHERE password_hash = 'oops';
CREATE TABLE real AS SELECT * FROM guard.restore(:cs, on_conflict => 'skip');
SELECT rows_restored, rows_skipped, conflicts FROM real;
SELECT (SELECT string_agg(d::text, ';') FROM dry d) = (SELECT string_agg(r::text, ';') FROM real r) AS dry_run_matches;
SELECT id, email, password_hash = md5(id::text) AS hash_restored, password_hash, last_login
  FROM users WHERE id IN (1, 3, 4, 5, 17, 18, 21) ORDER BY id;
SELECT count(*) FROM users WHERE password_hash = 'oops';

-- overwrite: the change's before-values win
UPDATE users SET password_hash = 'oops', email = 'again' WHERE id IN (6, 7);
SELECT max(changeset_id) AS cs2 FROM guard.changesets \gset
UPDATE users SET password_hash = 'later' WHERE id = 6;
UPDATE users SET email = 'kept' WHERE id = 7;
SELECT rows_restored, rows_skipped, conflicts FROM guard.restore(:cs2, on_conflict => 'overwrite');
SELECT id, email, password_hash = md5(id::text) AS hash_restored FROM users WHERE id IN (6, 7) ORDER BY id;

-- a deleted row whose key exists again
DELETE FROM users WHERE id = 8;
SELECT max(changeset_id) AS del_cs FROM guard.changesets \gset
INSERT INTO users VALUES (8, 'reborn@x', 'h', 0);
SELECT expect_error('SELECT * FROM guard.restore(' || :del_cs || ')');
SELECT rows_restored, rows_skipped, conflicts FROM guard.restore(:del_cs, dry_run => true, on_conflict => 'skip');
SELECT rows_restored, rows_skipped, conflicts FROM guard.restore(:del_cs, on_conflict => 'overwrite');
SELECT id, email, password_hash = md5(id::text) AS hash_restored FROM users WHERE id = 8;

-- an inserted row changed since
INSERT INTO users VALUES (30, 'temp@x', 'h30', 0), (31, 'temp2@x', 'h31', 0);
SELECT max(changeset_id) AS ins_cs FROM guard.changesets \gset
UPDATE users SET last_login = 1 WHERE id = 30;
SELECT expect_error('SELECT * FROM guard.restore(' || :ins_cs || ')');
SELECT rows_restored, rows_skipped, conflicts FROM guard.restore(:ins_cs, on_conflict => 'skip');
SELECT id FROM users WHERE id IN (30, 31) ORDER BY id;

-- an updated row deleted since cannot be written back: a conflict
UPDATE users SET email = 'gone soon' WHERE id = 9;
SELECT max(changeset_id) AS gone_cs FROM guard.changesets \gset
DELETE FROM users WHERE id = 9;
SELECT expect_error('SELECT * FROM guard.restore(' || :gone_cs || ')');
SELECT rows_restored, rows_skipped, conflicts FROM guard.restore(:gone_cs, on_conflict => 'overwrite');

DROP TABLE users, dry, real;
