-- policy_view: guard.policies shows each protected table's policy, with the
-- mode it gets from guard.mode when it names none.
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."Orders" (id bigint PRIMARY KEY, total numeric);
CREATE TABLE items (sku text PRIMARY KEY, qty int);
SELECT guard.protect('"Sales"."Orders"', mode => 'enforce', max_rows => 1000, require_where => true);
SELECT guard.protect('items', capture => 'dml', min_rows => 10, max_fraction => 0.25);

SELECT relation, capture, mode, mode_from_setting, min_rows, max_rows,
	   max_fraction, require_where, created_by
  FROM guard.policies ORDER BY relation::text;

-- the mode of a policy without one follows guard.mode
SET guard.mode = 'warn';
SELECT relation, mode, mode_from_setting FROM guard.policies ORDER BY relation::text;
RESET guard.mode;
SELECT relation, mode, mode_from_setting FROM guard.policies ORDER BY relation::text;

-- a renamed table keeps its policy
ALTER TABLE items RENAME TO stock;
SELECT relation, capture FROM guard.policies ORDER BY relation::text;

-- anyone may read the view
CREATE ROLE regress_guard_viewer;
SET ROLE regress_guard_viewer;
SELECT count(*) FROM guard.policies;
RESET ROLE;
DROP ROLE regress_guard_viewer;

DROP TABLE stock;
SELECT guard.unprotect('"Sales"."Orders"');
DROP SCHEMA "Sales" CASCADE;
SELECT count(*) FROM guard.policies;
