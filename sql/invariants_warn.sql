-- invariants_warn: in warn mode a violation lets the change commit, logs a
-- WARNING, records a row in guard.violations, and notifies (the NOTIFY
-- itself is tested by test/specs/invariant_notify.spec).
SELECT fresh_ids();
CREATE TABLE users (id int PRIMARY KEY, password_hash text, email text);
INSERT INTO users SELECT g, md5(g::text), 'u' || g FROM generate_series(1, 10) g;
SELECT guard.protect('users', mode => 'warn');
SELECT guard.add_invariant('users', 'hash_looks_like_md5',
	row_check => $$password_hash ~ '^[0-9a-f]{32}$'$$, deferred => false);
SELECT guard.add_invariant('users', 'logins_possible',
	query => $$SELECT count(*) FILTER (WHERE password_hash ~ '^[0-9a-f]{32}$') >= 0.9 * count(*) FROM public.users$$);

BEGIN;
SELECT guard.label('bad backfill');
UPDATE users SET password_hash = lower(email) WHERE id <= 7;
COMMIT;
SELECT count(*) FROM users WHERE password_hash !~ '^[0-9a-f]{32}$';
SELECT relation, invariant, rows, sample_keys,
	   changeset_id = (SELECT changeset_id FROM guard.changesets WHERE label = 'bad backfill') AS same_changeset,
	   change_id IS NOT NULL AS has_change
  FROM guard.violations ORDER BY violation_id;

-- guard.mode decides for a policy without a mode
SELECT guard.protect('users', mode => NULL);
SET guard.mode = 'warn';
UPDATE users SET password_hash = 'x' WHERE id = 8;
RESET guard.mode;
SELECT expect_error($$UPDATE users SET password_hash = 'y' WHERE id = 9$$);
SELECT count(*) FROM guard.violations;

-- a role that cannot read the table does not see its violations
CREATE ROLE regress_guard_nobody;
SET ROLE regress_guard_nobody;
SELECT count(*) FROM guard.violations;
SELECT expect_error($$SELECT * FROM guard.violation$$);
RESET ROLE;
DROP ROLE regress_guard_nobody;

-- the violation is undone like any change: restore the bad backfill
SELECT rows_restored FROM guard.restore((SELECT changeset_id FROM guard.changesets WHERE label = 'bad backfill'),
										on_conflict => 'skip');
SELECT count(*) FROM users WHERE password_hash !~ '^[0-9a-f]{32}$';
DROP TABLE users;
