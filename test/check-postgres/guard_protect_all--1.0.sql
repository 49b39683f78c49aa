/*
 * guard_protect_all--1.0.sql: test helper for `make check-postgres` (mode C).
 *
 * An event trigger that calls guard.protect() on every ordinary or
 * partitioned table that a CREATE TABLE (or CREATE TABLE AS, SELECT INTO)
 * creates with a primary key, as a user who wants every keyed table
 * protected would do.  PostgreSQL's regression suite then runs with (almost)
 * every table under guard.
 *
 * guard.protect() refuses some tables on purpose: a partition of a table
 * that is already protected (the parent's policy covers it), and kinds of
 * table guard does not protect.  Those refusals (SQLSTATE 55000 and 0A000)
 * are swallowed, so that CREATE TABLE still works as without guard; any
 * other error is raised, and shows up as a difference from mode A.
 *
 * The function runs with the privileges of whoever creates the table (who
 * owns it, and so may protect it), like an ordinary user's trigger.
 */

\echo Use "CREATE EXTENSION guard_protect_all" to load this file. \quit

CREATE FUNCTION @extschema@.protect_new_table()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	rel regclass;
BEGIN
	FOR rel IN
		SELECT DISTINCT c.oid::regclass
		  FROM pg_event_trigger_ddl_commands() d
		  JOIN pg_class c ON c.oid = d.objid
		 WHERE d.classid = 'pg_class'::regclass
		   AND d.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
		   AND c.relkind IN ('r', 'p')
		   AND EXISTS (SELECT 1 FROM pg_constraint k
						WHERE k.conrelid = c.oid AND k.contype = 'p')
	LOOP
		BEGIN
			PERFORM guard.protect(rel);
		EXCEPTION
			WHEN object_not_in_prerequisite_state OR feature_not_supported THEN
				NULL;
		END;
	END LOOP;
END
$$;

CREATE EVENT TRIGGER guard_protect_all ON ddl_command_end
	WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
	EXECUTE FUNCTION @extschema@.protect_new_table();
