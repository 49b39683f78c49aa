/*-------------------------------------------------------------------------
 *
 * depend.c
 *	  What depends on a protected table from outside it, and the SQL that
 *	  saves those dependents so that undoing a DROP TABLE ... CASCADE can
 *	  bring them back.
 *
 * A table moved into the trash (trash.c) takes its own parts with it:
 * indexes, constraints, triggers, rules, owned sequences, partitions, its
 * row type.  Other objects that depend on it would dangle: views (and
 * views on them), foreign keys of other tables, materialized views,
 * functions using its row type.  This file finds them, and writes the
 * views and foreign keys as the statements that recreate them and the
 * statements that drop them; trash.c runs both.  It only reads the
 * catalogs: it runs no DDL itself.
 *
 * Layering: ddl.c -> trash.c -> depend.c; this file calls no file of the
 * three above it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "guard.h"

/*
 * The parameters of the dependency queries: $1 the table, $2 the other
 * tables the same DROP statement drops (their dependents go with them).
 */
static void
dependency_args(Oid relid, List *dropping, Datum *values)
{
	Datum	   *elems = palloc(sizeof(Datum) * (list_length(dropping) + 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, dropping)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	values[0] = ObjectIdGetDatum(relid);
	values[1] = PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid),
												true, TYPALIGN_INT));
}

/*
 * Does an object other than the table's own parts (indexes, constraints,
 * triggers, rules, owned sequences, partitions, row type) depend on it:
 * a view, a foreign key of another table, a function using its row type?
 * Foreign keys of the tables in "dropping", and of tables already in the
 * trash, do not count.
 */
bool
guard_dependents_exist(Oid relid, List *dropping)
{
	GuardAsRole owner;
	Oid			types[2] = {OIDOID, OIDARRAYOID};
	Datum		values[2];
	bool		found;

	dependency_args(relid, dropping, values);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT 1 FROM pg_catalog.pg_depend d"
				  " WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
				  "   AND d.refobjid = $1 AND d.deptype = 'n'"
				  "   AND NOT (d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass"
				  "        AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c"
				  "                     WHERE c.oid = d.objid"
				  "                       AND (c.conrelid = $1 OR c.conrelid = ANY ($2)"
				  "                            OR c.conrelid IN (SELECT oid FROM pg_catalog.pg_class"
				  "                               WHERE relnamespace = pg_catalog.to_regnamespace('" GUARD_TRASH_SCHEMA "')))))"
				  "   AND NOT (d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
				  "        AND EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r"
				  "                     WHERE r.oid = d.objid AND r.ev_class = $1))"
				  "   AND NOT (d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass"
				  "        AND EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef a"
				  "                     WHERE a.oid = d.objid AND a.adrelid = $1))"
				  " LIMIT 1", 2, types, values, NULL);
	found = SPI_processed > 0;
	guard_as_role_end(&owner);
	return found;
}

/*
 * The views that depend on the table, transitively: appends to *recreate
 * the statements that recreate each (shallowest first, with owner, grants
 * and comment) and to *drops the statements that drop it.  Runs with SPI
 * connected; the lists are built in "outer".
 */
static void
save_views(Datum *values, MemoryContext outer, List **recreate, List **drops)
{
	Oid			types[1] = {OIDOID};

	guard_run_sql("WITH RECURSIVE deps(oid, depth) AS ("
				  "  SELECT r.ev_class, 1 FROM pg_catalog.pg_depend d"
				  "    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid"
				  "   WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
				  "     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
				  "     AND d.refobjid = $1 AND r.ev_class <> $1"
				  "  UNION"
				  "  SELECT r.ev_class, deps.depth + 1 FROM deps"
				  "    JOIN pg_catalog.pg_depend d ON d.refobjid = deps.oid"
				  "     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
				  "     AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
				  "    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid"
				  "   WHERE r.ev_class <> deps.oid AND deps.depth < 50)"
				  " SELECT pg_catalog.concat_ws('; ',"
				  "     pg_catalog.format('CREATE VIEW %I.%I AS %s', n.nspname, c.relname,"
				  "                       pg_catalog.rtrim(pg_catalog.pg_get_viewdef(c.oid), ';')),"
				  "     pg_catalog.format('ALTER VIEW %I.%I OWNER TO %I', n.nspname, c.relname,"
				  "                       pg_catalog.pg_get_userbyid(c.relowner)),"
				  "     (SELECT pg_catalog.string_agg(pg_catalog.format('GRANT %s ON %I.%I TO %s',"
				  "              a.privilege_type, n.nspname, c.relname,"
				  "              CASE WHEN a.grantee = 0 THEN 'PUBLIC'"
				  "                   ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END), '; ')"
				  "        FROM pg_catalog.aclexplode(c.relacl) a WHERE a.grantee <> c.relowner),"
				  "     (SELECT pg_catalog.format('COMMENT ON VIEW %I.%I IS %L', n.nspname, c.relname, t)"
				  "        FROM pg_catalog.obj_description(c.oid, 'pg_class') t WHERE t IS NOT NULL)),"
				  "   pg_catalog.format('DROP VIEW IF EXISTS %I.%I CASCADE', n.nspname, c.relname),"
				  "   c.relkind"
				  "  FROM (SELECT oid, pg_catalog.max(depth) AS depth FROM deps GROUP BY oid) v"
				  "  JOIN pg_catalog.pg_class c ON c.oid = v.oid"
				  "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
				  " ORDER BY v.depth, c.oid",
				  1, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *create = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *drop = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		char	   *relkind = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);
		MemoryContext old;

		if (relkind[0] != RELKIND_VIEW)
			continue;			/* a materialized view: refused by the caller */
		old = MemoryContextSwitchTo(outer);
		*recreate = lappend(*recreate, pstrdup(create));
		*drops = lappend(*drops, pstrdup(drop));
		MemoryContextSwitchTo(old);
	}
}

/*
 * The foreign keys of other tables (not in the same DROP) that reference
 * the table: appends to *recreate the statements that add each back and to
 * *drops the statements that drop it.  Runs with SPI connected; the lists
 * are built in "outer".
 */
static void
save_foreign_keys(Datum *values, MemoryContext outer, List **recreate,
				  List **drops)
{
	Oid			types[2] = {OIDOID, OIDARRAYOID};

	guard_run_sql("SELECT pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s',"
				  "         c.conrelid::pg_catalog.regclass, c.conname, pg_catalog.pg_get_constraintdef(c.oid)),"
				  "       pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I',"
				  "         c.conrelid::pg_catalog.regclass, c.conname)"
				  "  FROM pg_catalog.pg_constraint c"
				  " WHERE c.contype = 'f' AND c.confrelid = $1 AND c.conrelid <> $1"
				  "   AND c.conrelid <> ALL ($2) ORDER BY c.oid",
				  2, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(outer);

		*recreate = lappend(*recreate, pstrdup(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1)));
		*drops = lappend(*drops, pstrdup(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2)));
		MemoryContextSwitchTo(old);
	}
}

/*
 * For DROP TABLE ... CASCADE of a protected table: the views that depend
 * on it and the foreign keys of other tables that reference it, as the
 * statements that recreate them (returned: views first, shallowest first;
 * then the foreign keys) and the statements that drop them (*drops, for
 * the caller to run before moving the table).  "dropping" lists the tables
 * the same statement drops, whose foreign keys go with them.
 */
List *
guard_dependents_save(Oid relid, List *dropping, List **drops)
{
	GuardAsRole owner;
	Datum		values[2];
	List	   *recreate = NIL;
	MemoryContext outer = CurrentMemoryContext;

	*drops = NIL;
	dependency_args(relid, dropping, values);
	guard_as_role_begin(&owner, InvalidOid);
	save_views(values, outer, &recreate, drops);
	save_foreign_keys(values, outer, &recreate, drops);
	guard_as_role_end(&owner);
	return recreate;
}
