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
 * Restore at scale: progress and estimate.
 *
 * guard.restore_progress() shows the restores and dry runs running in the
 * database, from shared memory.  guard._restore_tick() counts the rows the
 * statements that write a restore's rows back reach (they call it).  Every
 * real restore records its rows and duration per change in
 * guard.restore_rate, from which the reports' new column estimated_seconds
 * is computed: the restore functions' result gains a column, so they are
 * dropped and created again (with the default EXECUTE for PUBLIC, as in
 * 0.1), and undrop, which returns restore_change's rows, names its columns.
 */
CREATE FUNCTION guard.restore_progress()
RETURNS TABLE (pid int, changeset_id bigint, phase text, rows_done bigint,
			   rows_total bigint, started_at timestamptz, change_id bigint,
			   dry_run bool)
AS 'MODULE_PATHNAME', 'guard_restore_progress'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION guard._restore_tick()
RETURNS bool
AS 'MODULE_PATHNAME', 'guard_restore_tick'
LANGUAGE C VOLATILE;

CREATE TABLE guard.restore_rate (
	changeset_id	bigint NOT NULL,	-- the restore's change set
	change_id		bigint NOT NULL,	-- the change it undid
	kind			text NOT NULL,
	rows			bigint NOT NULL,
	seconds			float8 NOT NULL,
	at				timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX restore_rate_kind_idx ON guard.restore_rate (kind, at);
REVOKE ALL ON guard.restore_rate FROM PUBLIC;

DROP FUNCTION guard.restore(bigint, bool, text);
CREATE FUNCTION guard.restore(changeset_id bigint, dry_run bool DEFAULT false,
							  on_conflict text DEFAULT 'abort')
RETURNS TABLE (change_id bigint, changeset_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint,
			   estimated_seconds float8)
AS 'MODULE_PATHNAME', 'guard_restore'
LANGUAGE C VOLATILE;

DROP FUNCTION guard.restore_change(bigint, bool, text);
CREATE FUNCTION guard.restore_change(change_id bigint, dry_run bool DEFAULT false,
									 on_conflict text DEFAULT 'abort')
RETURNS TABLE (change_id bigint, changeset_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint,
			   estimated_seconds float8)
AS 'MODULE_PATHNAME', 'guard_restore_change'
LANGUAGE C VOLATILE;

DROP FUNCTION guard.restore_to(pg_catalog.regclass, timestamptz, bool, text);
CREATE FUNCTION guard.restore_to(rel pg_catalog.regclass, at timestamptz,
								 dry_run bool DEFAULT false,
								 on_conflict text DEFAULT 'abort')
RETURNS TABLE (change_id bigint, changeset_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint,
			   estimated_seconds float8)
AS 'MODULE_PATHNAME', 'guard_restore_to'
LANGUAGE C VOLATILE;

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
	   AND (c.relation = undrop.name OR c.relation LIKE '%.' || quote_ident(undrop.name)
			OR c.relation = quote_ident(undrop.name));
	IF dropped IS NULL THEN
		RAISE EXCEPTION USING ERRCODE = 'undefined_table',
			MESSAGE = format('no dropped table named %s to undrop', undrop.name),
			HINT = 'guard.changes lists the drops guard recorded (kind DROP TABLE).';
	END IF;
	RETURN QUERY SELECT r.change_id, r.changeset_id, r.relation, r.kind,
						r.rows_restored, r.rows_skipped, r.conflicts
				   FROM guard.restore_change(dropped) r;
END
$$;
-- end of: Restore at scale
