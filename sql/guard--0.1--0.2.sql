/*
 * guard--0.1--0.2.sql: from version 0.1 (the first landed version) to 0.2.
 *
 * Version 0.1's script is shipped and never edited; every change to guard's
 * SQL objects since goes here.  CREATE EXTENSION guard installs 0.1 and runs
 * this script after it (there is no guard--0.2.sql), so a new database and an
 * upgraded one get exactly the same objects: test/t/ checks that.
 */

\echo Use "ALTER EXTENSION guard UPDATE TO '0.2'" to load this file. \quit

-- guard.undrop(name) matches the name literally (it used LIKE, where _ and %
-- are wildcards)
-- DROP TABLE undo by name (as given, or schema-qualified, matched
-- literally): the newest drop of a table of that name
CREATE OR REPLACE FUNCTION guard.undrop(name text)
RETURNS TABLE (change_id bigint, changeset_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint)
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
