/* guard--0.1.sql: objects of the guard extension, version 0.1 */

\echo Use "CREATE EXTENSION guard" to load this file. \quit

/*
 * guard does its capture from the C library loaded at server start; refuse
 * to install into a server that did not preload it, rather than half work.
 */
CREATE FUNCTION guard._assert_preloaded()
RETURNS void
AS 'MODULE_PATHNAME', 'guard_assert_preloaded'
LANGUAGE C STRICT;

SELECT guard._assert_preloaded();

DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'guard_admin') THEN
		CREATE ROLE guard_admin NOLOGIN;
	END IF;
END
$$;

REVOKE ALL ON SCHEMA guard FROM PUBLIC;
GRANT USAGE ON SCHEMA guard TO PUBLIC;

-- guard writes its tables with heap_insert (no SPI, no triggers): they have
-- no partial or expression index, which that path would not maintain.

-- Policies: one row per protected table.  Dumped by pg_dump.
CREATE TABLE guard.policy (
	relid			pg_catalog.regclass PRIMARY KEY,
	capture			text NOT NULL CHECK (capture IN ('dml', 'ddl', 'all', 'none')),
	mode			text CHECK (mode IN ('enforce', 'warn')),
	min_rows		bigint NOT NULL CHECK (min_rows >= 0),
	max_rows		bigint CHECK (max_rows >= 1),
	max_fraction	float8 CHECK (max_fraction > 0 AND max_fraction <= 1),
	require_where	bool NOT NULL,
	created_at		timestamptz NOT NULL,
	created_by		name NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('guard.policy', '');

-- Invariants: facts about a table that every change must keep.  Dumped.
CREATE TABLE guard.invariant (
	relid			pg_catalog.regclass NOT NULL,
	name			text NOT NULL CHECK (name <> ''),
	row_check		text,
	query			text,
	deferred		bool NOT NULL,
	created_at		timestamptz NOT NULL,
	created_by		name NOT NULL,
	search_path		text NOT NULL,
	PRIMARY KEY (relid, name),
	CHECK ((row_check IS NULL) <> (query IS NULL))
);
SELECT pg_catalog.pg_extension_config_dump('guard.invariant', '');

-- Violations recorded in warn mode.
CREATE SEQUENCE guard.violation_id_seq;
CREATE TABLE guard.violation (
	violation_id	bigint PRIMARY KEY DEFAULT pg_catalog.nextval('guard.violation_id_seq'),
	at				timestamptz NOT NULL DEFAULT pg_catalog.now(),
	relid			oid NOT NULL,
	relation		text NOT NULL,
	invariant		text NOT NULL,
	changeset_id	bigint,
	change_id		bigint,
	rows			bigint,
	sample_keys		text[],
	role			name NOT NULL DEFAULT current_user
);

-- One row per transaction with deferred checks: its constraint trigger runs
-- them at COMMIT (or PREPARE TRANSACTION).
CREATE TABLE guard.pending (
	xid				xid8 NOT NULL
);

-- Change sets: one per top-level transaction that changed a protected table.
CREATE SEQUENCE guard.changeset_id_seq;
CREATE TABLE guard.changeset (
	changeset_id	bigint PRIMARY KEY,
	xid				xid8 NOT NULL,
	at				timestamptz NOT NULL,
	label			text,
	role			text NOT NULL,
	application_name text,
	restore_of		bigint
);

-- Layouts: a table's columns (names, types, typmods by attnum) and key as a
-- change recorded them; shared by all the changes made under the same one.
CREATE SEQUENCE guard.layout_id_seq;
CREATE TABLE guard.layout (
	layout_id		bigint PRIMARY KEY,
	relid			oid NOT NULL,
	attnames		text[] NOT NULL,
	atttypes		oid[] NOT NULL,
	atttypmods		int4[] NOT NULL,
	keyatts			int2[] NOT NULL
);
CREATE INDEX layout_relid_idx ON guard.layout (relid);

-- Changes: one per statement and table.
CREATE SEQUENCE guard.change_id_seq;
CREATE TABLE guard.change (
	change_id		bigint PRIMARY KEY,
	changeset_id	bigint NOT NULL,
	at				timestamptz NOT NULL,
	role			text NOT NULL,
	application_name text,
	relid			oid NOT NULL,
	relation		text NOT NULL,
	kind			text NOT NULL,
	statement		text,
	state			text NOT NULL DEFAULT 'active'
					CHECK (state IN ('active', 'restored', 'expired')),
	layout_id		bigint NOT NULL,
	restored_by		bigint,
	detail			jsonb,
	nrows			int4,			-- rows in the inline first chunk
	data			bytea			-- the snapshot's first chunk
);
-- Change ids grow with time, and so do change set ids: a BRIN index finds a
-- change set's changes at a fraction of a btree's cost on every write.
-- Lookups by table go through the primary key (change_id > ...) instead.
CREATE INDEX change_changeset_idx ON guard.change USING brin (changeset_id)
	WITH (pages_per_range = 8);

-- Snapshots: the captured rows of each change, packed into chunks.
CREATE TABLE guard.snapshot (
	change_id		bigint NOT NULL,
	chunk			int4 NOT NULL,
	nrows			int4 NOT NULL,
	data			bytea NOT NULL,
	PRIMARY KEY (change_id, chunk)
);

/* Nobody reads guard's records directly; views and functions check rights. */
REVOKE ALL ON guard.policy, guard.changeset, guard.change, guard.snapshot,
	guard.changeset_id_seq, guard.change_id_seq, guard.invariant,
	guard.layout, guard.layout_id_seq,
	guard.violation, guard.violation_id_seq, guard.pending FROM PUBLIC;
ALTER TABLE guard.violation ENABLE ROW LEVEL SECURITY;
ALTER TABLE guard.violation FORCE ROW LEVEL SECURITY;
ALTER TABLE guard.changeset ENABLE ROW LEVEL SECURITY;
ALTER TABLE guard.changeset FORCE ROW LEVEL SECURITY;
ALTER TABLE guard.change ENABLE ROW LEVEL SECURITY;
ALTER TABLE guard.change FORCE ROW LEVEL SECURITY;
ALTER TABLE guard.snapshot ENABLE ROW LEVEL SECURITY;
ALTER TABLE guard.snapshot FORCE ROW LEVEL SECURITY;

-- Policy API
CREATE FUNCTION guard.protect(rel pg_catalog.regclass,
							  capture text DEFAULT 'all',
							  mode text DEFAULT NULL,
							  min_rows bigint DEFAULT 1,
							  max_rows bigint DEFAULT NULL,
							  max_fraction float8 DEFAULT NULL,
							  require_where bool DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'guard_protect'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE FUNCTION guard.unprotect(rel pg_catalog.regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'guard_unprotect'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW guard.policies WITH (security_barrier) AS
SELECT p.relid AS relation,
	   p.capture,
	   COALESCE(p.mode, pg_catalog.current_setting('guard.mode')) AS mode,
	   p.mode IS NULL AS mode_from_setting,
	   p.min_rows,
	   p.max_rows,
	   p.max_fraction,
	   p.require_where,
	   p.created_at,
	   p.created_by
  FROM guard.policy p
  JOIN pg_catalog.pg_class c ON c.oid = p.relid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname <> 'guard_trash';
GRANT SELECT ON guard.policies TO PUBLIC;

-- Invariants
CREATE FUNCTION guard.add_invariant(rel pg_catalog.regclass, name text,
									row_check text DEFAULT NULL,
									query text DEFAULT NULL,
									deferred bool DEFAULT true)
RETURNS void
AS 'MODULE_PATHNAME', 'guard_add_invariant'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE FUNCTION guard.drop_invariant(rel pg_catalog.regclass, name text)
RETURNS void
AS 'MODULE_PATHNAME', 'guard_drop_invariant'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION guard.check_invariants(rel pg_catalog.regclass DEFAULT NULL)
RETURNS TABLE (relation pg_catalog.regclass, invariant text, kind text,
			   ok bool, failing_rows bigint, sample_keys text[])
AS 'MODULE_PATHNAME', 'guard_check_invariants'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE VIEW guard.invariants WITH (security_barrier) AS
SELECT i.relid AS relation, i.name,
	   CASE WHEN i.row_check IS NOT NULL THEN 'row' ELSE 'query' END AS kind,
	   i.row_check, i.query, i.deferred, i.created_at, i.created_by
  FROM guard.invariant i
  JOIN pg_catalog.pg_class c ON c.oid = i.relid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname <> 'guard_trash';
GRANT SELECT ON guard.invariants TO PUBLIC;

CREATE FUNCTION guard._check_deferred()
RETURNS trigger
AS 'MODULE_PATHNAME', 'guard_check_deferred'
LANGUAGE C;

CREATE CONSTRAINT TRIGGER guard_check_at_commit AFTER INSERT ON guard.pending
	DEFERRABLE INITIALLY DEFERRED
	FOR EACH ROW EXECUTE FUNCTION guard._check_deferred();

-- Capture
CREATE FUNCTION guard.capture()
RETURNS trigger
AS 'MODULE_PATHNAME', 'guard_capture'
LANGUAGE C;

CREATE FUNCTION guard.label(label text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'guard_label'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION guard.diff(change_id bigint)
RETURNS TABLE (key text, "column" text, before text, after text)
AS 'MODULE_PATHNAME', 'guard_diff'
LANGUAGE C STRICT VOLATILE;

/*
 * The record views show a change only to those who may read the table it
 * came from (or members of guard_admin); a dropped table's changes only to
 * guard_admin.
 */
CREATE FUNCTION guard._may_read(relid oid)
RETURNS bool
AS 'MODULE_PATHNAME', 'guard_may_read'
LANGUAGE C STRICT STABLE;

CREATE VIEW guard.changes WITH (security_barrier) AS
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
	   c.statement,
	   c.state,
	   c.restored_by,
	   c.detail
  FROM guard.change c
  LEFT JOIN LATERAL (SELECT pg_catalog.sum(n.nrows)::bigint AS rows,
							pg_catalog.sum(pg_catalog.pg_column_size(n.data))::bigint AS snapshot_bytes
					   FROM guard.snapshot n
					  WHERE n.change_id = c.change_id) s ON true
 WHERE guard._may_read(c.relid);
GRANT SELECT ON guard.changes TO PUBLIC;

CREATE VIEW guard.changesets WITH (security_barrier) AS
SELECT cs.changeset_id,
	   cs.xid,
	   cs.at,
	   cs.label,
	   cs.role,
	   cs.application_name,
	   pg_catalog.count(c.change_id) AS changes,
	   COALESCE(pg_catalog.sum(c.rows), 0)::bigint AS rows,
	   COALESCE(pg_catalog.sum(c.snapshot_bytes), 0)::bigint AS snapshot_bytes,
	   pg_catalog.string_agg(DISTINCT c.relation, ', ') AS relations,
	   cs.restore_of
  FROM guard.changeset cs
  JOIN guard.changes c ON c.changeset_id = cs.changeset_id
 GROUP BY cs.changeset_id;
GRANT SELECT ON guard.changesets TO PUBLIC;

-- Restore
CREATE FUNCTION guard.restore(changeset_id bigint, dry_run bool DEFAULT false,
							  on_conflict text DEFAULT 'abort')
RETURNS TABLE (change_id bigint, changeset_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint)
AS 'MODULE_PATHNAME', 'guard_restore'
LANGUAGE C VOLATILE;

CREATE FUNCTION guard.restore_change(change_id bigint, dry_run bool DEFAULT false,
									 on_conflict text DEFAULT 'abort')
RETURNS TABLE (change_id bigint, changeset_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint)
AS 'MODULE_PATHNAME', 'guard_restore_change'
LANGUAGE C VOLATILE;

CREATE FUNCTION guard.restore_to(rel pg_catalog.regclass, at timestamptz,
								 dry_run bool DEFAULT false,
								 on_conflict text DEFAULT 'abort')
RETURNS TABLE (change_id bigint, changeset_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint)
AS 'MODULE_PATHNAME', 'guard_restore_to'
LANGUAGE C VOLATILE;

-- DROP TABLE undo by name (as given, or schema-qualified, matched
-- literally): the newest drop of a table of that name
CREATE FUNCTION guard.undrop(name text)
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

CREATE FUNCTION guard.verify_restore(changeset_id bigint)
RETURNS TABLE (change_id bigint, relation text, rows_checked bigint,
			   rows_matching bigint, ok bool)
AS 'MODULE_PATHNAME', 'guard_verify_restore'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW guard.violations WITH (security_barrier) AS
SELECT v.violation_id, v.at, v.relation, v.invariant, v.changeset_id,
	   v.change_id, v.rows, v.sample_keys, v.role
  FROM guard.violation v
 WHERE guard._may_read(v.relid);
GRANT SELECT ON guard.violations TO PUBLIC;

-- Operations
CREATE VIEW guard.status AS
SELECT (SELECT pg_catalog.count(*) FROM guard.policy) AS protected_tables,
	   (SELECT pg_catalog.count(*) FROM guard.invariant) AS invariants,
	   (SELECT pg_catalog.count(*) FROM guard.changeset) AS changesets,
	   (SELECT pg_catalog.count(*) FROM guard.change WHERE state = 'active') AS active_changes,
	   pg_catalog.pg_total_relation_size('guard.change')
		 + pg_catalog.pg_total_relation_size('guard.snapshot') AS bytes_held,
	   (SELECT pg_catalog.min(at) FROM guard.change WHERE state <> 'expired') AS oldest_snapshot,
	   (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c
		 WHERE c.relnamespace = pg_catalog.to_regnamespace('guard_trash')
		   AND c.relkind IN ('r', 'p')) AS tables_in_trash,
	   (SELECT pg_catalog.max(at) FROM guard.violation) AS last_violation;
GRANT SELECT ON guard.status TO PUBLIC;

CREATE FUNCTION guard.purge(older_than interval DEFAULT NULL)
RETURNS TABLE (expired_changes bigint, dropped_tables bigint, snapshot_rows_deleted bigint)
AS 'MODULE_PATHNAME', 'guard_purge'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
REVOKE ALL ON FUNCTION guard.purge(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION guard.purge(interval) TO guard_admin;

-- A dropped table takes its policy with it.
CREATE FUNCTION guard._on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM guard.policy p
	 USING pg_catalog.pg_event_trigger_dropped_objects() d
	 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
	   AND d.objsubid = 0
	   AND p.relid::oid = d.objid;
	DELETE FROM guard.invariant i
	 USING pg_catalog.pg_event_trigger_dropped_objects() d
	 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
	   AND d.objsubid = 0
	   AND i.relid::oid = d.objid;
END
$$;

CREATE EVENT TRIGGER guard_sql_drop ON sql_drop
	EXECUTE FUNCTION guard._on_sql_drop();

-- In a backend where guard is not loaded, refuse schema changes guard
-- could not record (fail closed).
CREATE FUNCTION guard._refuse_unguarded_ddl()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'guard_refuse_unguarded_ddl'
LANGUAGE C;

CREATE EVENT TRIGGER guard_fail_closed ON ddl_command_start
	WHEN TAG IN ('DROP TABLE', 'ALTER TABLE')
	EXECUTE FUNCTION guard._refuse_unguarded_ddl();

REVOKE ALL ON FUNCTION guard._on_sql_drop() FROM PUBLIC;
