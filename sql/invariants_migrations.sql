-- invariants_migrations: invariants in real migrations.  add_invariant
-- checks the rows already there (refused in enforce mode, a WARNING in
-- warn mode) unless accept_existing takes them as they are, like NOT
-- VALID; validate_invariant validates it later.  A schema change that
-- writes no value (ADD COLUMN without default, RENAME, SET DEFAULT) checks
-- nothing over the table; one that does (ADD COLUMN with a default, ALTER
-- COLUMN TYPE) checks the validated invariants over the whole table.  A
-- RENAME must leave the row checks compiling.  Enforce-mode DETAILs name
-- the statement, never a change id that the rollback takes away.
SELECT fresh_ids();
CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, owner text);
INSERT INTO accounts
SELECT g, CASE WHEN g IN (3, 7) THEN -5 ELSE 100 END, 'o' || g FROM generate_series(1, 10) g;
SELECT guard.protect('accounts', mode => 'enforce');

-- rows that already fail: refused, as ADD CONSTRAINT ... CHECK would be
SELECT expect_error($$SELECT guard.add_invariant('accounts', 'no_debt', row_check => 'balance >= 0')$$);
SELECT count(*) FROM guard.invariants;
-- a query invariant must hold when added; accept_existing is for row checks
SELECT expect_error($$SELECT guard.add_invariant('accounts', 'few', query => 'SELECT count(*) < 5 FROM public.accounts')$$);
SELECT expect_error($$SELECT guard.add_invariant('accounts', 'few', query => 'SELECT count(*) < 5 FROM public.accounts', accept_existing => true)$$);
SELECT expect_error($$SELECT guard.add_invariant('accounts', 'x', row_check => 'true', accept_existing => NULL)$$);

-- accept_existing: added without looking, not validated
SELECT guard.add_invariant('accounts', 'no_debt', row_check => 'balance >= 0', accept_existing => true);
SELECT guard.add_invariant('accounts', 'owner_set', row_check => 'owner IS NOT NULL', deferred => false);
SELECT guard.add_invariant('accounts', 'not_huge', row_check => 'balance < 1000');
SELECT name, deferred, validated FROM guard.invariants ORDER BY name;
-- the rows written from now on are checked, the accepted ones are not
UPDATE accounts SET balance = balance + 1 WHERE id IN (1, 2);
BEGIN;
UPDATE accounts SET balance = -1 WHERE id = 1;
COMMIT;
-- an accepted row that is written again is checked, as under NOT VALID
BEGIN;
UPDATE accounts SET owner = 'new owner' WHERE id = 3;
COMMIT;

-- the migration of the issue: ADD COLUMN without default, SET DEFAULT and
-- RENAME check nothing; ALTER COLUMN TYPE checks the validated invariants
-- over the table, not the one that accepted the rows there
BEGIN;
ALTER TABLE accounts ADD COLUMN note text;
ALTER TABLE accounts ALTER COLUMN note SET DEFAULT 'none';
ALTER TABLE accounts ALTER COLUMN balance TYPE bigint;
ALTER TABLE accounts RENAME TO accounts_v2;
ALTER TABLE accounts_v2 RENAME TO accounts;
COMMIT;
SELECT count(*) AS accepted_rows_still_there FROM accounts WHERE balance < 0;

-- a validated invariant is checked whole after a change that writes values,
-- and not after one that does not: rows made to fail behind guard's back
SET guard.enabled = off;
UPDATE accounts SET balance = 5000 WHERE id = 10;
RESET guard.enabled;
BEGIN;
ALTER TABLE accounts ADD COLUMN extra int;
ALTER TABLE accounts ALTER COLUMN balance SET STATISTICS 200;
COMMIT;
BEGIN;
ALTER TABLE accounts ADD COLUMN flag int DEFAULT 1;
COMMIT;
SELECT count(*) FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'flag';
-- an immediate one at once, at the end of the schema change
SELECT expect_error($$ALTER TABLE accounts ALTER COLUMN owner TYPE text USING NULL$$);
SET guard.enabled = off;
UPDATE accounts SET balance = 100 WHERE id = 10;
RESET guard.enabled;

-- a rename must leave the row checks compiling
SELECT expect_error($$ALTER TABLE accounts RENAME COLUMN owner TO holder$$);
BEGIN;
SELECT guard.drop_invariant('accounts', 'owner_set');
ALTER TABLE accounts RENAME COLUMN owner TO holder;
SELECT guard.add_invariant('accounts', 'owner_set', row_check => 'holder IS NOT NULL', deferred => false);
COMMIT;

-- validate_invariant: refused while rows fail, then validated
SELECT expect_error($$SELECT guard.validate_invariant('accounts', 'no_debt')$$);
SELECT expect_error($$SELECT guard.validate_invariant('accounts', 'nope')$$);
UPDATE accounts SET balance = 0 WHERE balance < 0;
SELECT guard.validate_invariant('accounts', 'no_debt');
SELECT name, validated FROM guard.invariants ORDER BY name;
-- validated, it is checked whole after a change that writes values
SET guard.enabled = off;
UPDATE accounts SET balance = -9 WHERE id = 4;
RESET guard.enabled;
BEGIN;
ALTER TABLE accounts ALTER COLUMN balance TYPE int;
COMMIT;
SET guard.enabled = off;
UPDATE accounts SET balance = 9 WHERE id = 4;
RESET guard.enabled;

-- a multi-statement migration in enforce mode: the DETAIL names the
-- statement that wrote the failing rows, and no change id (the rollback
-- takes every id of the transaction away)
BEGIN;
ALTER TABLE accounts ADD COLUMN tier text;
UPDATE accounts SET tier = 'gold' WHERE id <= 5;
UPDATE accounts
   SET balance = -10
 WHERE id = 5;
UPDATE accounts SET tier = 'silver' WHERE id > 5;
COMMIT;
SELECT expect_error($$UPDATE accounts SET holder = NULL WHERE id = 2$$);
SELECT count(*) FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'tier';

-- warn mode: added over failing rows with a WARNING, not validated
CREATE TABLE readings (id int PRIMARY KEY, value int);
INSERT INTO readings VALUES (1, 5), (2, -3), (3, -4);
SELECT guard.protect('readings', mode => 'warn');
SELECT guard.add_invariant('readings', 'positive', row_check => 'value > 0');
SELECT guard.add_invariant('readings', 'some', query => 'SELECT count(*) > 10 FROM public.readings');
SELECT name, validated FROM guard.invariants WHERE relation = 'readings'::regclass ORDER BY name;
SELECT count(*) FROM guard.violations WHERE relation = 'public.readings';
SELECT guard.drop_invariant('readings', 'some');

-- keys of other types in the messages: citext and uuid
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS citext;
RESET client_min_messages;
CREATE TABLE members (email citext PRIMARY KEY, age int NOT NULL);
INSERT INTO members VALUES ('Ann@X.org', 12), ('bob@x.org', 40), ('Cy@x.org', 30);
SELECT guard.protect('members', mode => 'enforce');
SELECT expect_error($$SELECT guard.add_invariant('members', 'adult', row_check => 'age >= 18')$$);
SELECT guard.add_invariant('members', 'adult', row_check => 'age >= 18', accept_existing => true);
BEGIN;
UPDATE members SET age = 15 WHERE email = 'BOB@x.org';
UPDATE members SET age = 31 WHERE email = 'cy@X.ORG';
COMMIT;
UPDATE members SET age = 18 WHERE email = 'ann@x.org';
SELECT guard.validate_invariant('members', 'adult');

CREATE TABLE devices (id uuid PRIMARY KEY, temp int NOT NULL);
INSERT INTO devices VALUES ('00000000-0000-0000-0000-000000000001', 50),
	('00000000-0000-0000-0000-000000000002', 150);
SELECT guard.protect('devices', mode => 'enforce');
SELECT expect_error($$SELECT guard.add_invariant('devices', 'cool', row_check => 'temp < 100', deferred => false)$$);
SELECT guard.add_invariant('devices', 'cool', row_check => 'temp < 100', deferred => false, accept_existing => true);
ALTER TABLE devices ADD COLUMN label text;
ALTER TABLE devices ALTER COLUMN temp TYPE bigint;
SELECT expect_error($$UPDATE devices SET temp = temp + 100$$);

-- a table with foreign keys: a cascade deletes rows (nothing to check), a
-- later UPDATE fails the accepted invariant at commit
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (id int PRIMARY KEY,
					 customer_id int NOT NULL REFERENCES customers ON DELETE CASCADE,
					 amount int NOT NULL);
INSERT INTO customers VALUES (1, 'a'), (2, 'b');
INSERT INTO orders VALUES (1, 1, 10), (2, 1, 0), (3, 2, 5), (4, 2, -1);
SELECT guard.protect('customers', mode => 'enforce');
SELECT guard.protect('orders', mode => 'enforce');
SELECT expect_error($$SELECT guard.add_invariant('orders', 'positive', row_check => 'amount > 0')$$);
SELECT guard.add_invariant('orders', 'positive', row_check => 'amount > 0', accept_existing => true);
BEGIN;
ALTER TABLE orders ADD COLUMN note text;
DELETE FROM customers WHERE id = 1;
UPDATE orders SET amount = 0 WHERE id = 3;
COMMIT;
BEGIN;
ALTER TABLE orders ADD COLUMN note text;
DELETE FROM customers WHERE id = 1;
UPDATE orders SET amount = 6 WHERE id = 3;
COMMIT;
SELECT id, amount FROM orders ORDER BY id;

DROP TABLE accounts, readings, members, devices, orders, customers;
