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
 * report are recreated once, with all their new columns and arguments, at
 * the end of the "Restore at scale" block below.
 */

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

/*
 * Labels (issue 13): each change records the label in force when it was
 * made (the transaction's guard.label(), the setting guard.label, or a
 * migration tool's bookkeeping row: Django, Rails, golang-migrate, Flyway,
 * Liquibase, node-pg-migrate, knex, sqitch), where it came from, and the
 * tool's row that named it, so that a batch of migrations in one
 * transaction leaves one labelled part per migration and a restore of a
 * migration can tell the tool.  guard.label_wait links the change sets of
 * a sqitch deploy script to the registry transaction that will name them.
 * guard.restore() takes a label, to undo one part (recreated with it below).  The statement text of
 * a change is shown only to those who may read every table its statement
 * changed, with no row-level security hiding rows from them (or to
 * guard_admin): it may quote their values.
 */
ALTER TABLE guard.change
	ADD COLUMN label text,
	ADD COLUMN label_source text,
	ADD COLUMN bookkeeping jsonb;

CREATE TABLE guard.label_wait (
	registry		text NOT NULL,		-- the registry's virtual transaction id
	changeset_id	bigint NOT NULL,
	PRIMARY KEY (registry, changeset_id)
);
REVOKE ALL ON guard.label_wait FROM PUBLIC;

-- may the current role read statement texts of changes to this table?
CREATE FUNCTION guard._may_read_statement(relid oid)
RETURNS bool
LANGUAGE sql STABLE
AS $$
	SELECT CASE
		WHEN pg_catalog.pg_has_role('guard_admin', 'MEMBER') THEN true
		WHEN NOT guard._may_read(relid) THEN false
		ELSE NOT pg_catalog.row_security_active(relid)
	END
$$;

CREATE OR REPLACE VIEW guard.changes WITH (security_barrier) AS
SELECT c.change_id,
	   c.changeset_id,
	   c.at,
	   c.role,
	   c.application_name,
	   c.relation,
	   c.kind,
	   COALESCE(c.nrows, 0) + COALESCE(s.rows, 0) AS rows,
	   COALESCE(pg_catalog.pg_column_size(c.data), 0)
		 + COALESCE(s.snapshot_bytes, 0) AS snapshot_bytes,
	   -- the same top-level statement (one start time) may have written
	   -- several tables: its text is shown to those who may read them all
	   CASE WHEN pg_catalog.pg_has_role('guard_admin', 'MEMBER') THEN c.statement
			WHEN NOT EXISTS (SELECT FROM guard.change o
							  WHERE o.changeset_id = c.changeset_id
								AND o.at = c.at
								AND NOT guard._may_read_statement(o.relid))
			THEN c.statement END AS statement,
	   c.state,
	   c.restored_by,
	   c.detail,
	   c.label,
	   c.label_source,
	   c.bookkeeping
  FROM guard.change c
  LEFT JOIN LATERAL (SELECT pg_catalog.sum(n.nrows)::bigint AS rows,
							pg_catalog.sum(pg_catalog.pg_column_size(n.data))::bigint AS snapshot_bytes
					   FROM guard.snapshot n
					  WHERE n.change_id = c.change_id) s ON true
 WHERE guard._may_read(c.relid);

-- a change set's label: the one guard.label() gave it, else its parts'
CREATE OR REPLACE VIEW guard.changesets WITH (security_barrier) AS
SELECT cs.changeset_id,
	   cs.xid,
	   cs.at,
	   COALESCE(cs.label, pg_catalog.array_to_string(l.labels, ', ')) AS label,
	   cs.role,
	   cs.application_name,
	   pg_catalog.count(c.change_id) AS changes,
	   COALESCE(pg_catalog.sum(c.rows), 0)::bigint AS rows,
	   COALESCE(pg_catalog.sum(c.snapshot_bytes), 0)::bigint AS snapshot_bytes,
	   pg_catalog.string_agg(DISTINCT c.relation, ', ') AS relations,
	   cs.restore_of,
	   l.labels
  FROM guard.changeset cs
  JOIN guard.changes c ON c.changeset_id = cs.changeset_id
  LEFT JOIN LATERAL (SELECT pg_catalog.array_agg(p.label ORDER BY p.first) AS labels
					   FROM (SELECT x.label, pg_catalog.min(x.change_id) AS first
							   FROM guard.change x
							  WHERE x.changeset_id = cs.changeset_id
								AND x.label IS NOT NULL
								AND guard._may_read(x.relid)
							  GROUP BY x.label) p) l ON true
 GROUP BY cs.changeset_id, l.labels;

/*
 * Restore at scale (issue 18): progress and estimate.
 *
 * guard.restore_progress() shows the restores and dry runs running in the
 * database, from shared memory.  guard._restore_tick() counts the rows the
 * statements that write a restore's rows back reach (they call it).  Every
 * real restore records its rows and duration per change in
 * guard.restore_rate, from which the reports' column estimated_seconds is
 * computed: the restore functions' result gains a column, so they are
 * dropped and created again (with the default EXECUTE for PUBLIC, as in
 * 0.1), and undrop, which returns restore_change's rows, with them.
 * The group restore_to of issue 15 is created with them.
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

DROP FUNCTION guard.undrop(text);
DROP FUNCTION guard.restore(bigint, bool, text);
DROP FUNCTION guard.restore_change(bigint, bool, text);
DROP FUNCTION guard.restore_to(pg_catalog.regclass, timestamptz, bool, text);

CREATE FUNCTION guard.restore(changeset_id bigint, dry_run bool DEFAULT false,
							  on_conflict text DEFAULT 'abort',
							  label text DEFAULT NULL)
RETURNS TABLE (change_id bigint, changeset_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint,
			   objects text[], estimated_seconds float8)
AS 'MODULE_PATHNAME', 'guard_restore'
LANGUAGE C VOLATILE;

CREATE FUNCTION guard.restore_change(change_id bigint, dry_run bool DEFAULT false,
									 on_conflict text DEFAULT 'abort')
RETURNS TABLE (change_id bigint, changeset_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint,
			   objects text[], estimated_seconds float8)
AS 'MODULE_PATHNAME', 'guard_restore_change'
LANGUAGE C VOLATILE;

CREATE FUNCTION guard.restore_to(rel pg_catalog.regclass, at timestamptz,
								 dry_run bool DEFAULT false,
								 on_conflict text DEFAULT 'abort')
RETURNS TABLE (change_id bigint, changeset_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint,
			   objects text[], estimated_seconds float8)
AS 'MODULE_PATHNAME', 'guard_restore_to'
LANGUAGE C VOLATILE;

-- A group of tables to a point in time (issue 15): every protected table
-- when rels is NULL, newest first across them, in one restore change set.
CREATE FUNCTION guard.restore_to(at timestamptz,
								 rels pg_catalog.regclass[] DEFAULT NULL,
								 dry_run bool DEFAULT false,
								 on_conflict text DEFAULT 'abort')
RETURNS TABLE (change_id bigint, changeset_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint,
			   objects text[], estimated_seconds float8)
AS 'MODULE_PATHNAME', 'guard_restore_to_group'
LANGUAGE C VOLATILE;

-- Two quoted literals, restore_to('t', '2024-05-01 10:00'), fit both forms
-- above and would be ambiguous: this form takes them (PostgreSQL prefers a
-- text parameter for an unknown literal) and reads the second as the
-- group's list when it is an array literal, as the time otherwise.
CREATE FUNCTION guard.restore_to(rel text, at text,
								 dry_run bool DEFAULT false,
								 on_conflict text DEFAULT 'abort')
RETURNS TABLE (change_id bigint, changeset_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint,
			   objects text[], estimated_seconds float8)
AS 'MODULE_PATHNAME', 'guard_restore_to_text'
LANGUAGE C VOLATILE;

-- DROP TABLE undo by name (as given, or schema-qualified, matched
-- literally): the newest drop of a table of that name
CREATE FUNCTION guard.undrop(name text)
RETURNS TABLE (change_id bigint, changeset_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint,
			   objects text[], estimated_seconds float8)
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

/*
 * Invariants in real migrations (issue 13): guard.add_invariant() checks the
 * rows already there, and accept_existing => true takes those that fail it
 * as they are, like a NOT VALID constraint: the invariant is then not
 * validated (schema changes do not check it over the whole table) until
 * guard.validate_invariant() finds no row failing it.
 */
ALTER TABLE guard.invariant ADD COLUMN validated bool NOT NULL DEFAULT true;

DROP FUNCTION guard.add_invariant(pg_catalog.regclass, text, text, text, bool);
CREATE FUNCTION guard.add_invariant(rel pg_catalog.regclass, name text,
									row_check text DEFAULT NULL,
									query text DEFAULT NULL,
									deferred bool DEFAULT true,
									accept_existing bool DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'guard_add_invariant'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE FUNCTION guard.validate_invariant(rel pg_catalog.regclass, name text)
RETURNS void
AS 'MODULE_PATHNAME', 'guard_validate_invariant'
LANGUAGE C STRICT VOLATILE;

CREATE OR REPLACE VIEW guard.invariants WITH (security_barrier) AS
SELECT i.relid AS relation, i.name,
	   CASE WHEN i.row_check IS NOT NULL THEN 'row' ELSE 'query' END AS kind,
	   i.row_check, i.query, i.deferred, i.created_at, i.created_by,
	   i.validated
  FROM guard.invariant i
  JOIN pg_catalog.pg_class c ON c.oid = i.relid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname <> 'guard_trash';

-- Transparency (issue 10, src/drop.c): a DROP that moves protected tables
-- into guard_trash reports them to sql_drop event triggers as dropped, as
-- PostgreSQL would; they still exist, in the trash, and keep their policy
-- and invariants for the undo.  A dropped table takes its policy with it.
-- Fail closed (src/fail_closed.c): where guard is not loaded at server
-- start, nothing records a schema change.  guard._refuse_unguarded_ddl()
-- refuses, besides DROP TABLE and ALTER TABLE of a protected table, the
-- other commands guard records on a table that captures DDL; and
-- guard._on_sql_drop() refuses a DROP that reached a protected table by
-- cascade (DROP SCHEMA ... CASCADE, DROP OWNED, DROP TYPE ... CASCADE).
CREATE FUNCTION guard._preloaded()
RETURNS bool
AS 'MODULE_PATHNAME', 'guard_preloaded_sql'
LANGUAGE C STRICT;
REVOKE ALL ON FUNCTION guard._preloaded() FROM PUBLIC;

DROP EVENT TRIGGER guard_fail_closed;
CREATE EVENT TRIGGER guard_fail_closed ON ddl_command_start
	WHEN TAG IN ('DROP TABLE', 'ALTER TABLE', 'CREATE INDEX', 'DROP INDEX', 'COMMENT')
	EXECUTE FUNCTION guard._refuse_unguarded_ddl();

CREATE OR REPLACE FUNCTION guard._on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	dropped record;
BEGIN
	-- a protected table dropped where guard could not move it to the trash
	-- (guard's own purge of the trash aside)
	IF NOT guard._preloaded() THEN
		SELECT d.schema_name, d.object_name INTO dropped
		  FROM pg_catalog.pg_event_trigger_dropped_objects() d
		  JOIN guard.policy p ON p.relid::oid = d.objid
		 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
		   AND d.objsubid = 0
		   AND d.schema_name IS DISTINCT FROM 'guard_trash'
		   AND p.capture <> 'none'
		 LIMIT 1;
		IF FOUND THEN
			RAISE EXCEPTION 'cannot drop protected table "%": guard is not loaded in this server',
				dropped.object_name
				USING ERRCODE = '55000',
					  DETAIL = 'Without shared_preload_libraries = ''guard'', guard could not keep the table to undo the drop.',
					  HINT = 'Add ''guard'' to shared_preload_libraries in postgresql.conf and restart the server.';
		END IF;
	END IF;
	DELETE FROM guard.policy p
	 USING pg_catalog.pg_event_trigger_dropped_objects() d
	 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
	   AND d.objsubid = 0
	   AND p.relid::oid = d.objid
	   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = d.objid);
	DELETE FROM guard.invariant i
	 USING pg_catalog.pg_event_trigger_dropped_objects() d
	 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
	   AND d.objsubid = 0
	   AND i.relid::oid = d.objid
	   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = d.objid);
END
$$;

-- Logical replication (issue 16, SPEC Guarantee 9; src/publication.c):
-- guard's own tables are not published by a publication FOR ALL TABLES, and
-- a subscriber keeps its own records.
--
-- guard.publication names the publications that CREATE PUBLICATION ... FOR
-- ALL TABLES made, in a database with guard, as FOR TABLES IN SCHEMA every
-- schema but guard's: the schemas created later are added to them, and
-- their tables and schemas cannot be changed, as for FOR ALL TABLES.  Not
-- dumped: pg_dump makes them plain FOR TABLES IN SCHEMA publications.
CREATE TABLE guard.publication (
	pubname name PRIMARY KEY
);

-- In a logical replication worker, a row applied to one of guard's tables is
-- another server's record: keep_local_records (ENABLE REPLICA: it fires only
-- where session_replication_role is replica, as in those workers) skips it.
CREATE FUNCTION guard.keep_local_records() RETURNS trigger
LANGUAGE C AS 'MODULE_PATHNAME', 'guard_keep_local_records';
REVOKE ALL ON FUNCTION guard.keep_local_records() FROM PUBLIC;
DO $$
DECLARE
	t regclass;
BEGIN
	FOR t IN SELECT c.oid FROM pg_catalog.pg_class c
			  WHERE c.relnamespace = 'guard'::regnamespace AND c.relkind = 'r'
			  ORDER BY c.relname
	LOOP
		EXECUTE format('CREATE TRIGGER keep_local_records BEFORE INSERT OR UPDATE OR DELETE'
					   ' ON %s FOR EACH ROW EXECUTE FUNCTION guard.keep_local_records()', t);
		EXECUTE format('ALTER TABLE %s ENABLE REPLICA TRIGGER keep_local_records', t);
	END LOOP;
END
$$;

-- A publication FOR ALL TABLES made before guard was installed publishes
-- guard's tables: say so.
DO $$
DECLARE
	p name;
BEGIN
	FOR p IN SELECT pubname FROM pg_catalog.pg_publication WHERE puballtables ORDER BY 1
	LOOP
		RAISE WARNING 'publication "%" publishes guard''s own tables', p
			USING DETAIL = 'It was made FOR ALL TABLES before guard was installed.',
				  HINT = 'Drop it and create it again: guard then leaves its tables out. A subscriber without guard cannot subscribe to it.';
	END LOOP;
END
$$;
