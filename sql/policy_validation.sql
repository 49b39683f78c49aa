-- policy_validation: every bad argument to guard.protect() is an ERROR with
-- a SQLSTATE and a hint, and changes nothing.
CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric);
CREATE TABLE nokey (a int, b text);
CREATE TABLE ri_only (a int NOT NULL, b text);
CREATE UNIQUE INDEX ri_only_a ON ri_only (a);
ALTER TABLE ri_only REPLICA IDENTITY USING INDEX ri_only_a;
CREATE VIEW accounts_v AS SELECT * FROM accounts;
CREATE SEQUENCE some_seq;

SELECT expect_error($$SELECT guard.protect('no_such_table')$$);
SELECT expect_error($$SELECT guard.protect(NULL)$$);
SELECT expect_error($$SELECT guard.protect('accounts', capture => 'everything')$$);
SELECT expect_error($$SELECT guard.protect('accounts', capture => 'DML')$$);
SELECT expect_error($$SELECT guard.protect('accounts', capture => NULL)$$);
SELECT expect_error($$SELECT guard.protect('accounts', mode => 'strict')$$);
SELECT expect_error($$SELECT guard.protect('accounts', min_rows => -1)$$);
SELECT expect_error($$SELECT guard.protect('accounts', max_rows => 0)$$);
SELECT expect_error($$SELECT guard.protect('accounts', min_rows => 100, max_rows => 10)$$);
SELECT expect_error($$SELECT guard.protect('accounts', max_fraction => 0)$$);
SELECT expect_error($$SELECT guard.protect('accounts', max_fraction => 1.5)$$);
SELECT expect_error($$SELECT guard.protect('accounts', max_fraction => -0.1)$$);
SELECT expect_error($$SELECT guard.protect('accounts', max_fraction => 'NaN')$$);
SELECT expect_error($$SELECT guard.protect('accounts', require_where => NULL)$$);
SELECT expect_error($$SELECT guard.protect('nokey')$$);
SELECT expect_error($$SELECT guard.protect('nokey', capture => 'dml')$$);
SELECT expect_error($$SELECT guard.protect('accounts_v')$$);
SELECT expect_error($$SELECT guard.protect('some_seq')$$);
SELECT expect_error($$SELECT guard.protect('pg_class')$$);
SELECT expect_error($$SELECT guard.protect('guard.policy')$$);
SELECT expect_error($$SELECT guard.unprotect('accounts')$$);

-- nothing was changed by any of these
SELECT count(*) AS policies FROM guard.policies;
SELECT guard_triggers('accounts') AS accounts, guard_triggers('nokey') AS nokey;

-- what is valid: a table without a key may still be protected for DDL only
SELECT guard.protect('nokey', capture => 'ddl');
SELECT guard_triggers('nokey');
-- a replica identity index is a key too
SELECT guard.protect('ri_only');
SELECT guard_triggers('ri_only');
-- boundaries
SELECT guard.protect('accounts', min_rows => 0, max_rows => 1, max_fraction => 1);
SELECT guard.protect('accounts', min_rows => 5, max_rows => 5, max_fraction => 0.0001);
SELECT relation, capture, mode, min_rows, max_rows, max_fraction, require_where
  FROM guard.policies ORDER BY relation::text;

-- protect() on a protected table updates its policy
SELECT guard.protect('accounts', capture => 'ddl', mode => 'warn', require_where => true);
SELECT relation, capture, mode, mode_from_setting, min_rows, max_rows, max_fraction, require_where
  FROM guard.policies WHERE relation = 'accounts'::regclass;
SELECT guard_triggers('accounts');
SELECT guard.protect('accounts', capture => 'dml');
SELECT relation, capture, mode, min_rows, max_rows, max_fraction, require_where
  FROM guard.policies WHERE relation = 'accounts'::regclass;
SELECT guard_triggers('accounts');

-- a failed update of the policy leaves the old one in place
SELECT expect_error($$SELECT guard.protect('accounts', capture => 'all', max_rows => -5)$$);
SELECT capture FROM guard.policies WHERE relation = 'accounts'::regclass;

-- unprotect removes the policy and the triggers
SELECT guard.unprotect('accounts');
SELECT count(*) FROM guard.policies WHERE relation = 'accounts'::regclass;
SELECT guard_triggers('accounts');
SELECT expect_error($$SELECT guard.unprotect('accounts')$$);

-- dropping a protected table drops its policy, every name of a DROP TABLE
SELECT guard.protect('accounts');
SELECT count(*) FROM guard.policies;
DROP VIEW accounts_v;
DROP TABLE accounts, nokey, ri_only;
SELECT count(*) FROM guard.policies;
SELECT count(*) FROM guard.policy WHERE relid::oid NOT IN (SELECT oid FROM pg_class);
DROP SEQUENCE some_seq;
