-- policy_refuses_temporary: a temporary table cannot be protected (it goes
-- with its session, where guard can neither keep nor record it), so no
-- policy row outlives its table when the session ends or ON COMMIT DROP
-- drops it.
CREATE TEMP TABLE scratch (id int PRIMARY KEY);
SELECT expect_error($$SELECT guard.protect('scratch')$$);
BEGIN;
CREATE TEMP TABLE onecommit (id int PRIMARY KEY) ON COMMIT DROP;
SELECT expect_error($$SELECT guard.protect('onecommit')$$);
COMMIT;
SELECT count(*) AS temporary_policies FROM guard.policy p
  JOIN pg_class c ON c.oid = p.relid WHERE c.relpersistence = 't';
DROP TABLE scratch;
