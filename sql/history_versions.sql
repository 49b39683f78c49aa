-- history_versions: guard.history(rel, key, since) lists every captured
-- version of a table's rows, or of one row, oldest first, with the value
-- of each changed column before and right after the change.
SELECT fresh_ids();
CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, pw text, last_login date);
INSERT INTO users VALUES (1, 'ada@example.com', 'h1', NULL), (2, 'bob@example.com', 'h2', NULL),
	(3, 'cy@example.com', 'h3', '2026-01-01');
SELECT guard.protect('users');
BEGIN;
SELECT guard.label('2026_11_add_display_name') IS NOT NULL AS labelled;
ALTER TABLE users ADD COLUMN display_name text;
UPDATE users SET display_name = initcap(split_part(email, '@', 1)), pw = lower(email);
COMMIT;
SELECT clock_timestamp() AS after_migration \gset
UPDATE users SET email = 'ada.lovelace@example.com' WHERE id = 1;
UPDATE users SET id = 20 WHERE id = 2;
DELETE FROM users WHERE id = 3;
INSERT INTO users (id, email) VALUES (4, 'dee@example.com');
ALTER TABLE users RENAME COLUMN last_login TO seen;

-- every version of every row, oldest first
SELECT changeset_id, change_id, role = current_user AS by_me, label, kind, row_key,
	   "column", before, after
  FROM guard.history('users');

-- one row: what user 1 looked like before the migration, and since
SELECT change_id, kind, "column", before, after
  FROM guard.history('users', '{"id": 1}');
-- a row whose key changed is found under either key
SELECT change_id, kind, row_key, "column", before, after
  FROM guard.history('users', '{"id": 20}');
-- only the changes from a time on
SELECT change_id, kind, row_key, "column", before, after
  FROM guard.history('users', since => :'after_migration');
-- the time of each version is when its statement started, oldest first
SELECT bool_and(at <= clock_timestamp()) AS in_the_past,
	   array_agg(DISTINCT change_id ORDER BY change_id) AS changes
  FROM guard.history('users');

-- bad input
SELECT expect_error($$SELECT * FROM guard.history('no_such_table')$$);
SELECT expect_error($$SELECT * FROM guard.history(NULL)$$);
SELECT expect_error($$SELECT * FROM guard.history('users', '{"uid": 1}')$$);
SELECT expect_error($$SELECT * FROM guard.history('users', '[1]')$$);
SELECT expect_error($$SELECT * FROM guard.history('users', '{"id": "x"}')$$);
CREATE VIEW users_view AS SELECT * FROM users;
SELECT expect_error($$SELECT * FROM guard.history('users_view')$$);
DROP VIEW users_view;
-- a time in the future: no change yet
SELECT count(*) FROM guard.history('users', since => now() + interval '1 day');
-- a table guard never protected has no history
CREATE TABLE plain (id int PRIMARY KEY);
SELECT count(*) FROM guard.history('plain');

-- purged captures: with no time given, history starts after them; asked
-- for a time before them, it refuses
SELECT expired_changes > 0 AS expired FROM guard.purge('0 seconds');
UPDATE users SET email = 'new@example.com' WHERE id = 4;
SELECT change_id, kind, row_key, "column", before, after FROM guard.history('users');
SELECT expect_error(format('SELECT * FROM guard.history(%L, since => %L)', 'users', :'after_migration'));

DROP TABLE users, plain;
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
