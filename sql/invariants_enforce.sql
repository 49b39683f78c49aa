-- invariants_enforce: in enforce mode a violation is an ERROR naming the
-- invariant, the table, the change and up to 5 failing keys; the
-- transaction keeps nothing of the change.  Immediate invariants are checked
-- at the end of each statement, deferred ones at COMMIT.
SELECT fresh_ids();
CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, email text);
INSERT INTO accounts SELECT g, 100, 'a' || g || '@x' FROM generate_series(1, 20) g;
SELECT guard.protect('accounts', mode => 'enforce');
SELECT guard.add_invariant('accounts', 'balance_not_negative', row_check => 'balance >= 0', deferred => false);
SELECT guard.add_invariant('accounts', 'emails_unique',
	query => 'SELECT count(email) = count(DISTINCT email) FROM public.accounts');
SELECT guard.add_invariant('accounts', 'total_balance', row_check => 'balance <= 1000');
SELECT md5(string_agg(a::text, ',' ORDER BY id)) AS md5_before FROM accounts a \gset
SELECT count(*) AS changes_before FROM guard.changes \gset

-- an immediate row check fails at the end of the statement
SELECT expect_error($$UPDATE accounts SET balance = balance - 150 + id * 10 WHERE id <= 12$$);
SELECT expect_error($$INSERT INTO accounts VALUES (100, -1, NULL)$$);
-- a row the statement did not write is not this statement's violation
-- (check_invariants finds such rows on demand)

-- an immediate row check fails even if a later statement would fix it
BEGIN;
SELECT expect_error($$UPDATE accounts SET balance = -1 WHERE id = 1$$);
ROLLBACK;

-- a deferred row check: a transient violation fixed in the same transaction passes
BEGIN;
UPDATE accounts SET balance = 5000 WHERE id = 2;
UPDATE accounts SET balance = 500 WHERE id = 2;
COMMIT;
SELECT balance FROM accounts WHERE id = 2;
-- ... and one left at COMMIT fails it, with nothing kept
BEGIN;
UPDATE accounts SET balance = 5000 WHERE id IN (3, 4, 5, 6, 7, 8);
UPDATE accounts SET balance = 50 WHERE id = 3;
DELETE FROM accounts WHERE id = 4;
COMMIT;
SELECT id, balance FROM accounts WHERE id BETWEEN 3 AND 8 ORDER BY id;

-- a deferred query invariant: a transient duplicate is fine, a lasting one is not
BEGIN;
UPDATE accounts SET email = 'dup@x' WHERE id IN (9, 10);
UPDATE accounts SET email = 'a10@x' WHERE id = 10;
COMMIT;
BEGIN;
UPDATE accounts SET email = 'dup@x' WHERE id IN (9, 10);
COMMIT;
SELECT id, email FROM accounts WHERE id IN (9, 10) ORDER BY id;

-- SET CONSTRAINTS ALL IMMEDIATE checks deferred invariants on the spot, and
-- makes them immediate for the rest of the transaction, as for constraints
BEGIN;
UPDATE accounts SET balance = 2000 WHERE id = 11;
SELECT expect_error($$SET CONSTRAINTS ALL IMMEDIATE$$);
ROLLBACK;
BEGIN;
UPDATE accounts SET balance = 200 WHERE id = 11;
SET CONSTRAINTS ALL IMMEDIATE;
UPDATE accounts SET balance = 2000 WHERE id = 12;
COMMIT;
SELECT id, balance FROM accounts WHERE id IN (11, 12) ORDER BY id;

-- a violation inside a savepoint that is rolled back leaves nothing to check
BEGIN;
SAVEPOINT s;
UPDATE accounts SET balance = 9000 WHERE id = 13;
ROLLBACK TO s;
UPDATE accounts SET balance = 130 WHERE id = 13;
COMMIT;
SELECT balance FROM accounts WHERE id = 13;

-- nothing of the failed attempts was kept
SELECT count(*) FROM accounts WHERE balance < 0 OR balance > 1000;
SELECT count(*) FROM guard.violations;

-- check_invariants, on demand over the whole table
SELECT relation, invariant, kind, ok, failing_rows, sample_keys FROM guard.check_invariants('accounts') ORDER BY invariant;
SET guard.enabled = off;
UPDATE accounts SET balance = -7 WHERE id IN (14, 15);
RESET guard.enabled;
SELECT relation, invariant, kind, ok, failing_rows, sample_keys FROM guard.check_invariants('accounts') ORDER BY invariant;
SELECT relation, invariant, ok FROM guard.check_invariants() ORDER BY invariant;

DROP TABLE accounts;
