-- ddl_undo_migrations: what migration tools run, undone in one call: the
-- outage's mixed migration together with a Django AddField (ADD COLUMN ...
-- DEFAULT, then DROP DEFAULT), knex- and node-pg-migrate-style changes; and
-- restore_to across ADD, DROP, RENAME, ALTER TYPE and TRUNCATE, exact, its
-- undo exact, and a second restore_to exact.
SELECT fresh_ids();
CREATE TABLE users (id int PRIMARY KEY, email text, password_hash text, created date DEFAULT '2026-01-01');
INSERT INTO users SELECT g, 'u' || g || '@x', md5('pw' || g) FROM generate_series(1, 50) g;
SELECT guard.protect('users');
SELECT catalog_fingerprint('users') AS fp0, table_data('users') AS data0 \gset

-- one transaction: Django's AddField with a default, the outage's backfill
-- that corrupts another column, an index, a constraint, a NOT NULL
BEGIN;
SELECT guard.label('0042_add_display_name');
ALTER TABLE users ADD COLUMN display_name varchar(100) DEFAULT '' NOT NULL;
ALTER TABLE users ALTER COLUMN display_name DROP DEFAULT;
UPDATE users SET display_name = initcap(split_part(email, '@', 1)), password_hash = lower(email);
CREATE INDEX users_display_name_idx ON users (display_name);
ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
COMMENT ON COLUMN users.display_name IS 'shown to others';
COMMIT;
SELECT changeset_id AS migration FROM guard.changesets WHERE label = '0042_add_display_name' \gset
SELECT kind FROM guard.changes WHERE changeset_id = :migration ORDER BY change_id;
SELECT kind, rows_restored, objects FROM guard.restore(:migration, dry_run => true);
SELECT kind, rows_restored FROM guard.restore(:migration);
SELECT ARRAY(SELECT fingerprint_diff(:'fp0', catalog_fingerprint('users'))) AS catalog_differences, table_data('users') = :'data0' AS same_rows;
-- the restore of the migration is restored: the migration is back, exactly
SELECT kind FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets));
SELECT count(*) FILTER (WHERE password_hash = lower(email)) AS corrupted, count(display_name) AS named FROM users;
SELECT kind FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets));
SELECT ARRAY(SELECT fingerprint_diff(:'fp0', catalog_fingerprint('users'))) AS catalog_differences, table_data('users') = :'data0' AS same_rows;

-- knex and node-pg-migrate style: alter a column's type, default and NOT
-- NULL in one statement, rename, comment
BEGIN;
ALTER TABLE users ALTER COLUMN created TYPE timestamptz, ALTER COLUMN created SET DEFAULT now(),
	ALTER COLUMN created SET NOT NULL;
ALTER TABLE users RENAME COLUMN created TO created_at;
COMMENT ON TABLE users IS 'people';
COMMIT;
SELECT kind, rows_restored FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets));
SELECT ARRAY(SELECT fingerprint_diff(:'fp0', catalog_fingerprint('users'))) AS catalog_differences, table_data('users') = :'data0' AS same_rows;

-- restore_to across ADD, DROP, RENAME, ALTER TYPE and TRUNCATE
SELECT clock_timestamp() AS mark \gset
ALTER TABLE users ADD COLUMN plan text DEFAULT 'free';
UPDATE users SET plan = 'pro' WHERE id % 5 = 0;
ALTER TABLE users RENAME COLUMN email TO login;
ALTER TABLE users ALTER COLUMN id TYPE bigint;
ALTER TABLE users DROP COLUMN password_hash;
TRUNCATE users;
INSERT INTO users (id, login, plan) VALUES (1, 'fresh@x', 'free');
SELECT catalog_fingerprint('users') AS fp_late, table_data('users') AS data_late \gset
SELECT kind, rows_restored FROM guard.restore_to('users', :'mark', dry_run => true);
SELECT kind, rows_restored FROM guard.restore_to('users', :'mark');
SELECT ARRAY(SELECT fingerprint_diff(:'fp0', catalog_fingerprint('users'))) AS catalog_differences, table_data('users') = :'data0' AS same_rows;
-- its undo gives back the state it undid
SELECT count(*) AS undone FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets));
SELECT ARRAY(SELECT fingerprint_diff(:'fp_late', catalog_fingerprint('users'))) AS catalog_differences, table_data('users') = :'data_late' AS same_rows;
-- and a second restore_to is exact again
SELECT count(*) AS undone FROM guard.restore_to('users', :'mark');
SELECT ARRAY(SELECT fingerprint_diff(:'fp0', catalog_fingerprint('users'))) AS catalog_differences, table_data('users') = :'data0' AS same_rows;
SELECT count(*) FROM guard.restore_to('users', :'mark');

SELECT guard.unprotect('users');
DROP TABLE users;
