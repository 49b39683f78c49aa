/*
 * guard--0.1--0.2.sql: from version 0.1 (the first landed version) to 0.2.
 *
 * Version 0.1's script is shipped and never edited; every change to guard's
 * SQL objects since goes here.  CREATE EXTENSION guard installs 0.1 and runs
 * this script after it (there is no guard--0.2.sql), so a new database and an
 * upgraded one get exactly the same objects: test/t/ checks that.
 */

\echo Use "ALTER EXTENSION guard UPDATE TO '0.2'" to load this file. \quit

/*
 * Schema changes undone by kind (issue 12): a restore's report lists, per
 * change, the other objects its undo dropped or recreated (the index built
 * on a column whose ADD COLUMN is undone, the foreign keys a DROP COLUMN
 * took along), in a new column "objects".  The functions returning the
 * report are recreated with it; guard.undrop returns what restore_change
 * returns.
 */
DROP FUNCTION guard.undrop(text);
DROP FUNCTION guard.restore(bigint, bool, text);
DROP FUNCTION guard.restore_change(bigint, bool, text);
DROP FUNCTION guard.restore_to(pg_catalog.regclass, timestamptz, bool, text);

CREATE FUNCTION guard.restore(changeset_id bigint, dry_run bool DEFAULT false,
							  on_conflict text DEFAULT 'abort')
RETURNS TABLE (change_id bigint, changeset_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint,
			   objects text[])
AS 'MODULE_PATHNAME', 'guard_restore'
LANGUAGE C VOLATILE;

CREATE FUNCTION guard.restore_change(change_id bigint, dry_run bool DEFAULT false,
									 on_conflict text DEFAULT 'abort')
RETURNS TABLE (change_id bigint, changeset_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint,
			   objects text[])
AS 'MODULE_PATHNAME', 'guard_restore_change'
LANGUAGE C VOLATILE;

CREATE FUNCTION guard.restore_to(rel pg_catalog.regclass, at timestamptz,
								 dry_run bool DEFAULT false,
								 on_conflict text DEFAULT 'abort')
RETURNS TABLE (change_id bigint, changeset_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint,
			   objects text[])
AS 'MODULE_PATHNAME', 'guard_restore_to'
LANGUAGE C VOLATILE;

CREATE FUNCTION guard.undrop(name text)
RETURNS TABLE (change_id bigint, changeset_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint,
			   objects text[])
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	dropped bigint;
BEGIN
	SELECT max(c.change_id) INTO dropped
	  FROM guard.changes c
	 WHERE c.kind = 'DROP TABLE' AND c.state = 'active'
	   AND (c.relation = undrop.name OR c.detail ->> 'name' = undrop.name);
	IF dropped IS NULL THEN
		RAISE EXCEPTION USING ERRCODE = 'undefined_table',
			MESSAGE = format('no dropped table named %s to undrop', undrop.name),
			HINT = 'guard.changes lists the drops guard recorded (kind DROP TABLE).';
	END IF;
	RETURN QUERY SELECT * FROM guard.restore_change(dropped);
END
$$;

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
