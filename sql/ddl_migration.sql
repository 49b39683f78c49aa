-- ddl_migration: the outage's migration (ADD COLUMN, then a backfill that
-- corrupts another column) is undone by one guard.restore(), newest first;
-- a restore that a later schema change blocks names what to restore first.
SELECT fresh_ids();
CREATE TABLE users (id int PRIMARY KEY, email text, password_hash text);
INSERT INTO users SELECT g, 'u' || g || '@x', md5('pw' || g) FROM generate_series(1, 100) g;
SELECT guard.protect('users');
SELECT md5(string_agg(u::text, ',' ORDER BY id)) AS before FROM users u \gset

BEGIN;
SELECT guard.label('2026_11_add_display_name');
ALTER TABLE users ADD COLUMN display_name text;
UPDATE users SET display_name = initcap(split_part(email, '@', 1)), password_hash = lower(email)
 WHERE id % 100 < 85;
COMMIT;
-- later, unrelated writes that must be kept
INSERT INTO users VALUES (101, 'new@x', md5('pw101'), 'New');
UPDATE users SET email = 'changed@x' WHERE id = 90;

SELECT changeset_id AS migration FROM guard.changesets WHERE label = '2026_11_add_display_name' \gset
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore(:migration, dry_run => true, on_conflict => 'skip');
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore(:migration, on_conflict => 'skip');
SELECT count(*) FILTER (WHERE password_hash = md5('pw' || id)) AS good_hashes, count(*) AS users FROM users;
SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'display_name';
SELECT email FROM users WHERE id IN (90, 101) ORDER BY id;

-- blocked: an UPDATE whose column a later change set dropped
UPDATE users SET email = 'x' || email WHERE id <= 3;
SELECT max(changeset_id) AS upd FROM guard.changesets \gset
ALTER TABLE users DROP COLUMN email;
SELECT max(changeset_id) AS dropper FROM guard.changesets \gset
SELECT expect_error('SELECT * FROM guard.restore(' || :upd || ')');
-- restoring the later change set first unblocks it
SELECT kind FROM guard.restore(:dropper);
SELECT kind, rows_restored FROM guard.restore(:upd);
SELECT email FROM users WHERE id <= 3 ORDER BY id;

-- a migration over many rows: the undo of ADD COLUMN snapshots the column
-- in many chunks from inside the restore (dry run and real)
CREATE TABLE wide AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 20000) g;
ALTER TABLE wide ADD PRIMARY KEY (id);
SELECT guard.protect('wide');
SELECT md5(string_agg(w::text, ',' ORDER BY id)) AS wide0 FROM wide w \gset
BEGIN;
SELECT guard.label('wide migration') AS wide_cs \gset
ALTER TABLE wide ADD COLUMN extra text;
UPDATE wide SET extra = h, h = 'x' WHERE id % 10 < 8;
COMMIT;
SELECT kind, rows_restored FROM guard.restore(:wide_cs, dry_run => true);
SELECT kind, rows_restored FROM guard.restore(:wide_cs);
SELECT md5(string_agg(w::text, ',' ORDER BY id)) = :'wide0' AS wide_back FROM wide w;
SELECT kind, rows FROM guard.changes WHERE changeset_id = (SELECT max(changeset_id) FROM guard.changesets)
 ORDER BY change_id;

SELECT guard.unprotect('users');
SELECT guard.unprotect('wide');
DROP TABLE users, wide;
