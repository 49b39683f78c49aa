/*
 * guard--0.1--0.2.sql: from version 0.1 (the first landed version) to 0.2.
 *
 * Version 0.1's script is shipped and never edited; every change to guard's
 * SQL objects since goes here.  CREATE EXTENSION guard installs 0.1 and runs
 * this script after it (there is no guard--0.2.sql), so a new database and an
 * upgraded one get exactly the same objects: test/t/ checks that.
 */

\echo Use "ALTER EXTENSION guard UPDATE TO '0.2'" to load this file. \quit

-- Rehearse and history (issue 15): guard.rehearse, guard.as_of, guard.history

-- Run a migration script in a subtransaction with guard active, report per
-- statement, roll everything back.
CREATE FUNCTION guard.rehearse(sql text)
RETURNS TABLE (step int, statement text, kind text, relation text, rows bigint,
			   locks text[], duration interval, invariants text[],
			   snapshot_bytes bigint, outcome text, message text)
AS 'MODULE_PATHNAME', 'guard_rehearse'
LANGUAGE C STRICT VOLATILE;
