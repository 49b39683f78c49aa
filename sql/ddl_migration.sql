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

SELECT guard.unprotect('users');
DROP TABLE users;
