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

-- The rows of a table as they were at a time: SELECT * FROM
-- guard.as_of(NULL::tbl, now() - interval '1 hour').
CREATE FUNCTION guard.as_of(rel anyelement, at timestamptz)
RETURNS SETOF anyelement
AS 'MODULE_PATHNAME', 'guard_as_of'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

-- Every captured version of a table's rows, or of one row, oldest first.
CREATE FUNCTION guard.history(rel pg_catalog.regclass, key jsonb DEFAULT NULL,
							  since timestamptz DEFAULT NULL)
RETURNS TABLE (changeset_id bigint, change_id bigint, at timestamptz, role text,
			   label text, kind text, row_key jsonb, "column" text, before text,
			   after text)
AS 'MODULE_PATHNAME', 'guard_history'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
