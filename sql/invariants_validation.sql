-- invariants_validation: guard.add_invariant() checks what it is given at
-- once; a bad invariant is an ERROR with a SQLSTATE and adds nothing.
CREATE TABLE inv (id int PRIMARY KEY, balance int, email text, created date);
SELECT guard.protect('inv');
CREATE TABLE unprotected (id int PRIMARY KEY);

SELECT expect_error($$SELECT guard.add_invariant('inv', 'x')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', 'x', row_check => 'true', query => 'SELECT true')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', 'x', row_check => 'no_such_column > 0')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', 'x', row_check => 'balance')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', 'x', row_check => 'balance >')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', 'x', row_check => 'random() > 0.5')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', 'x', row_check => 'created < clock_timestamp()')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', 'x', row_check => 'balance > (SELECT 0)')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', 'x', row_check => 'count(*) > 0')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', 'x', row_check => 'generate_series(1, 2) > 0')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', 'x', row_check => 'true FROM pg_class')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', 'x', row_check => 'true; DROP TABLE inv')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', 'x', query => 'SELECT 1')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', 'x', query => 'SELECT true, false')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', 'x', query => 'DELETE FROM inv RETURNING true')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', 'x', query => 'WITH d AS (DELETE FROM inv RETURNING 1) SELECT true')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', 'x', query => 'SELECT true FROM no_such_table')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', 'x', query => 'SELECT true; SELECT false')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', '', row_check => 'true')$$);
SELECT expect_error($$SELECT guard.add_invariant('inv', NULL, row_check => 'true')$$);
SELECT expect_error($$SELECT guard.add_invariant('unprotected', 'x', row_check => 'true')$$);
SELECT expect_error($$SELECT guard.add_invariant('no_such_table', 'x', row_check => 'true')$$);
SELECT count(*) AS invariants FROM guard.invariants;

-- valid ones, and the name is unique per table
SELECT guard.add_invariant('inv', 'balance_not_negative', row_check => 'balance >= 0');
SELECT guard.add_invariant('inv', 'email_unique',
	query => 'SELECT count(email) = count(DISTINCT email) FROM inv', deferred => false);
SELECT guard.add_invariant('inv', 'stable_fn_ok', row_check => 'lower(email) = lower(email) OR email IS NULL');
SELECT expect_error($$SELECT guard.add_invariant('inv', 'balance_not_negative', row_check => 'true')$$);
SELECT relation, name, kind, row_check, query, deferred FROM guard.invariants ORDER BY name;

-- drop_invariant
SELECT guard.drop_invariant('inv', 'stable_fn_ok');
SELECT expect_error($$SELECT guard.drop_invariant('inv', 'stable_fn_ok')$$);
SELECT name FROM guard.invariants ORDER BY name;

-- only the owner or guard_admin
CREATE ROLE regress_guard_inv_other;
SET ROLE regress_guard_inv_other;
SELECT expect_error($$SELECT guard.add_invariant('inv', 'y', row_check => 'true')$$);
SELECT expect_error($$SELECT guard.drop_invariant('inv', 'balance_not_negative')$$);
RESET ROLE;
DROP ROLE regress_guard_inv_other;

-- a table without DML capture gets guard's triggers for its invariants
CREATE TABLE ddl_only (a int, b int);
SELECT guard.protect('ddl_only', capture => 'ddl');
SELECT guard_triggers('ddl_only');
SELECT guard.add_invariant('ddl_only', 'b_positive', row_check => 'b > 0', deferred => false);
SELECT guard_triggers('ddl_only');
SELECT expect_error($$INSERT INTO ddl_only VALUES (1, -1)$$);
INSERT INTO ddl_only VALUES (1, 1);
SELECT count(*) FROM guard.changes WHERE relation = 'public.ddl_only';
SELECT guard.drop_invariant('ddl_only', 'b_positive');
SELECT guard_triggers('ddl_only');

-- dropping a table drops its invariants
DROP TABLE inv, unprotected, ddl_only;
SELECT count(*) FROM guard.invariants;

-- check_invariants: a view or a foreign table is not a table (42809, no
-- crash); with no argument, a role sees the tables it may read and no other
CREATE TABLE inv_secret (id int PRIMARY KEY, v int);
CREATE TABLE inv_open (id int PRIMARY KEY, v int);
SELECT guard.protect('inv_secret'), guard.protect('inv_open');
SELECT guard.add_invariant('inv_secret', 'v_pos', row_check => 'v > 0');
SELECT guard.add_invariant('inv_open', 'v_pos', row_check => 'v > 0');
CREATE VIEW inv_view AS SELECT * FROM inv_open;
SELECT expect_error($$SELECT * FROM guard.check_invariants('inv_view')$$);
SELECT expect_error($$SELECT * FROM guard.check_invariants('guard.changes')$$);
CREATE ROLE regress_guard_checker;
GRANT SELECT ON inv_open TO regress_guard_checker;
SET ROLE regress_guard_checker;
SELECT relation, invariant, ok FROM guard.check_invariants() ORDER BY 1;
SELECT expect_error($$SELECT * FROM guard.check_invariants('inv_secret')$$);
RESET ROLE;
DROP VIEW inv_view;
DROP TABLE inv_secret, inv_open;
DROP ROLE regress_guard_checker;
