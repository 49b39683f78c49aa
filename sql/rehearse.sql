-- rehearse: guard.rehearse() runs a migration script statement by
-- statement with guard active, reports each one, and leaves the database
-- exactly as it was.
SELECT fresh_ids();
CREATE TABLE accounts (id int PRIMARY KEY, email text NOT NULL, pw text NOT NULL,
					   balance numeric NOT NULL);
INSERT INTO accounts SELECT g, 'user' || g || '@example.com', 'sha256$' || md5(g::text), g * 10
  FROM generate_series(1, 200) g;
CREATE TABLE orders (id serial PRIMARY KEY,
					 account_id int REFERENCES accounts DEFERRABLE INITIALLY DEFERRED,
					 amount numeric);
INSERT INTO orders (account_id, amount) VALUES (1, 5), (2, 7);
SELECT guard.protect('accounts');
SELECT guard.protect('orders');
SELECT guard.add_invariant('accounts', 'hash_format', row_check => $$pw LIKE 'sha256$%'$$);
SELECT guard.add_invariant('accounts', 'no_debt', query => 'SELECT min(balance) >= 0 FROM accounts',
						   deferred => false);
UPDATE accounts SET balance = balance + 1 WHERE id <= 3;	-- guard has records

-- the state rehearse must leave as it found: guard's records and sequences,
-- the tables, their catalog rows
CREATE FUNCTION rehearse_state() RETURNS TABLE (what text, md5 text)
LANGUAGE sql AS $$
	SELECT 'guard.change', md5(string_agg(c::text, ',' ORDER BY change_id)) FROM guard.change c
	UNION ALL SELECT 'guard.changeset', md5(string_agg(c::text, ',' ORDER BY changeset_id)) FROM guard.changeset c
	UNION ALL SELECT 'guard.snapshot', md5(string_agg(s::text, ',' ORDER BY change_id, chunk)) FROM guard.snapshot s
	UNION ALL SELECT 'guard.layout', md5(string_agg(l::text, ',' ORDER BY layout_id)) FROM guard.layout l
	UNION ALL SELECT 'guard.violation', md5(string_agg(v::text, ',' ORDER BY violation_id)) FROM guard.violation v
	UNION ALL SELECT 'guard.pending', md5(string_agg(p::text, ',')) FROM guard.pending p
	UNION ALL SELECT 'guard sequences', md5(string_agg(s, ','))
	  FROM (SELECT last_value || '/' || is_called FROM guard.change_id_seq
			UNION ALL SELECT last_value || '/' || is_called FROM guard.changeset_id_seq
			UNION ALL SELECT last_value || '/' || is_called FROM guard.layout_id_seq
			UNION ALL SELECT last_value || '/' || is_called FROM guard.violation_id_seq) q(s)
	UNION ALL SELECT 'accounts', md5(string_agg(a::text, ',' ORDER BY id)) FROM accounts a
	UNION ALL SELECT 'orders', md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o
	UNION ALL SELECT 'pg_class', md5(string_agg(c::text, ',' ORDER BY oid)) FROM pg_class c
	 WHERE oid IN ('accounts'::regclass, 'orders'::regclass, 'accounts_pkey'::regclass)
	UNION ALL SELECT 'pg_attribute', md5(string_agg(a::text, ',' ORDER BY attrelid, attnum))
	  FROM pg_attribute a WHERE attrelid IN ('accounts'::regclass, 'orders'::regclass)
	UNION ALL SELECT 'pg_index', md5(string_agg(i::text, ',' ORDER BY indexrelid)) FROM pg_index i
	 WHERE indrelid = 'accounts'::regclass
	UNION ALL SELECT 'pg_trigger', md5(string_agg(t::text, ',' ORDER BY oid)) FROM pg_trigger t
	 WHERE tgrelid = 'accounts'::regclass
$$;
CREATE TEMP TABLE before_rehearsal AS SELECT * FROM rehearse_state();
SELECT last_value AS orders_seq FROM orders_id_seq \gset

-- the buggy migration: its backfill breaks the deferred row check
SELECT step, statement, kind, relation, rows, locks, duration IS NOT NULL AS timed,
	   invariants, snapshot_bytes, outcome, message
  FROM guard.rehearse($$
BEGIN;
ALTER TABLE accounts ADD COLUMN display_name text;
-- backfill
UPDATE accounts SET display_name = initcap(split_part(email, '@', 1)),
					pw = lower(email)
 WHERE id > 150;
CREATE INDEX CONCURRENTLY accounts_display_name ON accounts (display_name);
CREATE INDEX accounts_email ON accounts (email);
ANALYZE accounts;
INSERT INTO orders (account_id, amount) VALUES (3, 9);
COMMIT;
$$);

-- nothing changed: not the data, not the catalogs, not guard's records
-- or sequences
SELECT b.what, b.md5 IS NOT DISTINCT FROM a.md5 AS unchanged
  FROM before_rehearsal b JOIN rehearse_state() a USING (what) ORDER BY 1;
SELECT count(*) AS display_name_columns FROM pg_attribute
 WHERE attrelid = 'accounts'::regclass AND attname = 'display_name';
-- CREATE INDEX and ANALYZE write a table's statistics into pg_class in
-- place, outside the transaction: rehearse writes them back
ANALYZE accounts;
CREATE TEMP TABLE before_stats AS SELECT * FROM rehearse_state();
SELECT step, kind, rows, locks, outcome
  FROM guard.rehearse($$
INSERT INTO accounts SELECT g, 'new' || g, 'sha256$', 0 FROM generate_series(1000, 2999) g;
CREATE INDEX ON accounts (balance);
ANALYZE accounts;
$$);
SELECT b.what, b.md5 IS NOT DISTINCT FROM a.md5 AS unchanged
  FROM before_stats b JOIN rehearse_state() a USING (what)
 WHERE b.what IN ('pg_class', 'pg_index', 'accounts', 'guard sequences') ORDER BY 1;
SELECT relpages < 10 AND reltuples = 200 AS statistics_as_before
  FROM pg_class WHERE oid = 'accounts'::regclass;

-- a sequence of the database the script advanced stays advanced (as after
-- any rollback), and the report said so
SELECT last_value > :orders_seq AS orders_seq_advanced FROM orders_id_seq;

-- an immediate invariant stops the script where it fails; the rest is not
-- run, and the error is reported, not raised
SELECT step, kind, rows, invariants, outcome, message
  FROM guard.rehearse($$
UPDATE accounts SET balance = balance - 5 WHERE id = 1;
UPDATE accounts SET balance = balance - 100 WHERE id = 2;
DELETE FROM accounts WHERE id = 3;
$$);

-- a deferred foreign key fails at the would-be commit
SELECT step, kind, relation, rows, outcome, message
  FROM guard.rehearse($$INSERT INTO orders (account_id, amount) VALUES (9999, 1)$$);

-- statements that cannot run in a transaction block are reported, not run
SELECT step, kind, relation, outcome, message
  FROM guard.rehearse($$
VACUUM accounts;
CLUSTER;
REINDEX TABLE CONCURRENTLY accounts;
DROP INDEX CONCURRENTLY accounts_pkey;
CREATE DATABASE rehearse_nope;
COPY accounts FROM STDIN;
SAVEPOINT s;
SELECT count(*) FROM accounts;
$$);

-- rehearse needs the rights the script needs: a role without them gets
-- the statement's error in the report
CREATE ROLE regress_guard_rehearser;
GRANT SELECT ON accounts TO regress_guard_rehearser;
SET ROLE regress_guard_rehearser;
SELECT step, kind, rows, outcome, message
  FROM guard.rehearse($$SELECT * FROM accounts; UPDATE accounts SET balance = 0$$);
RESET ROLE;
REVOKE ALL ON accounts FROM regress_guard_rehearser;
DROP ROLE regress_guard_rehearser;

-- inside a transaction that already wrote: its change is not counted and
-- is kept
BEGIN;
UPDATE accounts SET balance = balance + 1 WHERE id = 10;
SELECT count(*) AS changes_before FROM guard.change;
SELECT step, kind, rows, snapshot_bytes > 0 AS captured, outcome
  FROM guard.rehearse($$UPDATE accounts SET balance = balance + 1 WHERE id <= 20$$);
SELECT count(*) AS changes_after FROM guard.change;
COMMIT;
SELECT balance FROM accounts WHERE id = 10;

-- bad input: a script that does not parse; an empty script
SELECT expect_error($$SELECT * FROM guard.rehearse('UPDATE accounts SET; SELECT 1')$$);
SELECT count(*) FROM guard.rehearse('  ');
SELECT count(*) FROM guard.rehearse(NULL);

DROP FUNCTION rehearse_state();
DROP TABLE orders, accounts;
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
