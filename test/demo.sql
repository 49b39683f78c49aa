-- test/demo.sql: replay of the outage guard exists for, as an operator sees it.
--
-- A deployment meant to add display_name to users; a slip in its backfill
-- also overwrote password_hash for 85% of the users, who could no longer log
-- in.  Run by test/run-demo.sh (`make demo`) in a throwaway cluster that
-- preloads guard; psql stops at the first error.
\set ON_ERROR_STOP on
\set QUIET on
\pset footer off
\pset null '(null)'
SET client_min_messages = warning;

\echo
\echo '=== 1. The application: 100,000 users and a login probe ==='
\echo

-- How the application stores passwords: salted SHA-256, kept as
-- 'sha256$<salt>$<hex digest>'.
CREATE FUNCTION app_password_hash(salt text, password text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 'sha256$' || salt || '$'
	|| encode(sha256(convert_to(salt || password, 'UTF8')), 'hex');

-- Every account of this replay has a known password, 'pw-<id>' (as the QA
-- accounts of a staging copy would); 15% of the users never logged in.
CREATE TABLE users (
	id				bigint PRIMARY KEY,
	email			text NOT NULL UNIQUE,
	password_hash	text NOT NULL,
	created_at		timestamptz NOT NULL,
	last_login		timestamptz
);
INSERT INTO users (id, email, password_hash, created_at, last_login)
SELECT g,
	   format('User.%s@Example.com', g),
	   app_password_hash(substr(md5('salt' || g), 1, 8), 'pw-' || g),
	   timestamptz '2020-01-01 00:00+00' + g * interval '17 minutes',
	   CASE WHEN g % 20 >= 3
			THEN timestamptz '2026-11-01 00:00+00' + (g % 1000) * interval '1 minute'
	   END
  FROM generate_series(1, 100000) g;
ANALYZE users;

-- The login probe the on-call engineer watches: the share of users whose
-- known password still matches their stored hash, i.e. who can log in.
CREATE FUNCTION login_probe()
RETURNS numeric LANGUAGE sql STABLE
RETURN (SELECT round(100.0 * count(*) FILTER (
							WHERE u.password_hash = app_password_hash(
								split_part(u.password_hash, '$', 2), 'pw-' || u.id))
					 / count(*), 1)
		  FROM users u);

SELECT count(*) AS users,
	   count(last_login) AS users_who_logged_in,
	   login_probe() AS "% users who can log in"
  FROM users;
SELECT id, email, password_hash, last_login FROM users ORDER BY id LIMIT 3;

\echo
\echo '=== 2. The DBA puts users under guard ==='
\echo
\set ECHO queries
CREATE EXTENSION guard;
SELECT guard.protect('users');
\set ECHO none
SELECT relation, capture, mode, min_rows, max_rows, max_fraction, require_where
  FROM guard.policies;

\echo
\echo '--- and declares what must stay true: users can log in ---'
\set ECHO queries
SELECT guard.add_invariant('users', 'logins_work',
	query => 'SELECT login_probe() >= 99');
SELECT guard.add_invariant('users', 'hash_format',
	row_check => $$password_hash LIKE 'sha256$%$%'$$);
\set ECHO none
SELECT relation, name, kind, deferred FROM guard.invariants ORDER BY name;

\echo
\echo '=== 2b. Before the deployment, the DBA rehearses migration 2026_11_add_display_name ==='
\echo '    (guard.rehearse runs it on the real data, statement by statement, with the'
\echo '     checks that would run at commit, then rolls everything back)'
\echo
\set ECHO queries
CREATE TEMP TABLE rehearsal AS
SELECT * FROM guard.rehearse($migration$
BEGIN;
SELECT guard.label('2026_11_add_display_name');
ALTER TABLE users ADD COLUMN display_name text;
UPDATE users
   SET display_name = initcap(replace(split_part(email, '@', 1), '.', ' ')),
	   password_hash = lower(email)
 WHERE last_login IS NOT NULL;
COMMIT;
$migration$);
\set ECHO none
SELECT step, kind, rows, locks, invariants, outcome FROM rehearsal ORDER BY step;
SELECT split_part(message, E'\n', 1) AS "the would-be COMMIT" FROM rehearsal WHERE kind = 'COMMIT';
\echo 'The ALTER TABLE takes an ACCESS EXCLUSIVE lock; the backfill breaks both'
\echo 'invariants, and the commit would fail. Nothing was kept:'
SELECT count(*) AS display_name_columns,
	   (SELECT count(*) FROM guard.changes) AS changes_recorded,
	   login_probe() AS "% users who can log in"
  FROM pg_attribute
 WHERE attrelid = 'users'::regclass AND attname = 'display_name' AND NOT attisdropped;
\echo 'The warning was not read: the deployment goes ahead.'

\echo
\echo '=== 3. In enforce mode, the buggy migration is stopped before it commits ==='
\echo
\set ECHO queries
BEGIN;
SELECT guard.label('2026_11_add_display_name') AS changeset_id;
ALTER TABLE users ADD COLUMN display_name text;
UPDATE users
   SET display_name = initcap(replace(split_part(email, '@', 1), '.', ' ')),
	   password_hash = lower(email)
 WHERE last_login IS NOT NULL;
\set ON_ERROR_STOP off
COMMIT;
\set ON_ERROR_STOP on
\set ECHO none
SELECT login_probe() AS "% users who can log in";
\echo 'The ERROR above is what the deployment tool sees: the transaction rolled'
\echo 'back, no user was touched.  Now replay the day without that safety net:'
\echo 'the DBA had set the table to warn mode, so the migration commits.'
\set ECHO queries
SELECT guard.protect('users', mode => 'warn');
\set ECHO none

\echo
\echo '=== 3b. In warn mode the deployment runs migration 2026_11_add_display_name ==='
\echo '    (one transaction, as the migration tool runs it; the backfill meant'
\echo '     "email = lower(email)" but wrote "password_hash = lower(email)")'
\echo
\set ECHO queries
BEGIN;
SELECT guard.label('2026_11_add_display_name') AS changeset_id;
ALTER TABLE users ADD COLUMN display_name text;
UPDATE users
   SET display_name = initcap(replace(split_part(email, '@', 1), '.', ' ')),
	   password_hash = lower(email)
 WHERE last_login IS NOT NULL;
COMMIT;
\set ECHO none

\echo
\echo '=== 4. Minutes later: the login probe pages the on-call engineer ==='
\echo '    (and guard has recorded the violations and sent a NOTIFY on channel guard)'
\echo
SELECT login_probe() AS "% users who can log in";
SELECT invariant, rows, sample_keys[1:3] AS sample_keys FROM guard.violations ORDER BY violation_id;
SELECT id, email, display_name, password_hash FROM users ORDER BY id LIMIT 5;

\echo
\echo '=== 5. What guard captured: the change set of the migration ==='
\echo
SELECT changeset_id, label, role, changes, rows,
	   pg_size_pretty(snapshot_bytes) AS snapshot, relations
  FROM guard.changesets
 ORDER BY changeset_id;

\echo
\echo '--- its changes ---'
SELECT change_id, relation, kind, rows,
	   pg_size_pretty(snapshot_bytes) AS snapshot, state,
	   regexp_replace(statement, '\s+', ' ', 'g') AS statement
  FROM guard.changes
 WHERE changeset_id = (SELECT changeset_id FROM guard.changesets
						WHERE label = '2026_11_add_display_name')
 ORDER BY change_id;

\echo
\echo '--- guard.diff of the UPDATE: the old password hashes are kept ---'
SELECT change_id AS update_change_id
  FROM guard.changes
 WHERE kind = 'UPDATE' AND relation = 'public.users'
 ORDER BY change_id DESC LIMIT 1 \gset
SELECT key, "column", before, after
  FROM guard.diff(:update_change_id)
 WHERE "column" IN ('password_hash', 'display_name')
 ORDER BY substring(key FROM '[0-9]+')::bigint, "column"
 LIMIT 6;

\echo
\echo '--- every overwritten hash is in the snapshot, and still verifies ---'
SELECT count(*) AS hashes_captured,
	   count(*) FILTER (WHERE d.before = app_password_hash(
								split_part(d.before, '$', 2), 'pw-' || u.id))
		 AS would_log_in_again
  FROM guard.diff(:update_change_id) d
  JOIN users u ON d.key = format('(id)=(%s)', u.id)
 WHERE d."column" = 'password_hash';

\echo
\echo '=== 6. Meanwhile the application keeps writing ==='
\echo '    (new sign-ups, logins of users the migration did not touch, and a'
\echo '     user the migration broke who changes their email address)'
\echo
\set ECHO queries
INSERT INTO users (id, email, password_hash, created_at)
SELECT g, format('New.%s@Example.com', g),
	   app_password_hash(substr(md5('salt' || g), 1, 8), 'pw-' || g), now()
  FROM generate_series(100001, 100050) g;
UPDATE users SET last_login = now() WHERE id IN (1, 2, 20, 40, 60);
UPDATE users SET email = 'Ada.Lovelace@Example.com' WHERE id = 43;
\set ECHO none

\echo
\echo '=== 7. The on-call engineer: list, dry run, restore ==='
\echo
\echo '--- 7a. what changed recently ---'
SELECT changeset_id, at::time(0) AS at, label, changes, rows, relations
  FROM guard.changesets ORDER BY changeset_id DESC LIMIT 5;
SELECT changeset_id AS bad_changeset FROM guard.changesets
 WHERE label = '2026_11_add_display_name' \gset

\echo
\echo '--- 7a2. a user who cannot log in: their row before the migration, and since ---'
\set ECHO queries
SELECT change_id, at::time(0) AS at, kind, "column", before, after
  FROM guard.history('users', '{"id": 43}');
\set ECHO none

\echo
\echo '--- 7b. dry run: what a restore would do (nothing is changed) ---'
\set ECHO queries
SELECT change_id, kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:bad_changeset, dry_run => true);
\set ECHO none
\echo 'No conflict: the later writes touched rows or columns the migration did not'
\echo '(user 43 changed their email; the migration broke their password hash).'
\echo 'Newest first: the backfill UPDATE is undone, then the ADD COLUMN.'

\echo
\echo '--- 7c. restore ---'
SELECT clock_timestamp() AS restore_started \gset
\set ECHO queries
SELECT change_id, kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:bad_changeset);
\set ECHO none
SELECT round(extract(epoch FROM clock_timestamp() - :'restore_started'::timestamptz), 2)
	   AS "restore took (s)";

\echo
\echo '=== 8. After the restore ==='
\echo
SELECT login_probe() AS "% users who can log in";
SELECT count(*) FILTER (WHERE id > 100000) AS new_signups_kept,
	   count(*) FILTER (WHERE id IN (1, 2, 20, 40, 60) AND last_login > now() - interval '1 hour')
		 AS recent_logins_kept,
	   max(email) FILTER (WHERE id = 43) AS profile_edit_kept
  FROM users;
SELECT count(*) AS display_name_columns FROM pg_attribute
 WHERE attrelid = 'users'::regclass AND attname = 'display_name' AND NOT attisdropped;
SELECT changeset_id, label, restore_of, changes, rows
  FROM guard.changesets ORDER BY changeset_id DESC LIMIT 1;
\echo 'Every later write is kept, the added column is gone, users can log in.'
\echo 'The restore is a change set of its own: guard.restore() of it would redo'
\echo 'the migration.'
\echo
