/*-------------------------------------------------------------------------
 *
 * ddl_objects.c
 *	  A table's parts saved as the SQL that recreates them: an index, a
 *	  constraint, and whatever a DROP of a column, an index or a constraint
 *	  takes with it.
 *
 * Dropping a column drops, without a word, the indexes, constraints,
 * statistics objects and owned sequences built on it; with CASCADE, also
 * the foreign keys of other tables that reference it, the views that read
 * it (and the views on those), its triggers and policies.  Dropping an
 * index or a constraint with CASCADE drops the foreign keys that rely on
 * it.  guard_dependents() finds all of these in pg_depend before the drop
 * and writes each as the statements that recreate it, in an order that
 * works (indexes and keys before the foreign keys that need them, a view
 * before the views on it): what a drop's undo runs, and what an undo that
 * drops lists in its report.
 *
 * Definitions are deparsed with search_path pinned (ddl_util.c), so that
 * the SQL names every object qualified.  This file only reads the
 * catalogs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/ruleutils.h"

#include "guard.h"

/*
 * The statement that recreates an index (with its tablespace), and its
 * comment.
 */
char *
guard_index_sql(Oid indexoid)
{
	int			level = guard_pin_search_path();
	char	   *def = pg_get_indexdef_string(indexoid);
	char	   *comment;
	Oid			types[1] = {OIDOID};
	Datum		values[1];

	guard_unpin_search_path(level);
	values[0] = ObjectIdGetDatum(indexoid);
	comment = guard_catalog_string("SELECT pg_catalog.format('; COMMENT ON INDEX %s IS %L',"
								   "         $1::pg_catalog.regclass, d)"
								   "  FROM pg_catalog.obj_description($1, 'pg_class') d"
								   " WHERE d IS NOT NULL", 1, types, values);
	return comment ? psprintf("%s%s", def, comment) : def;
}

/*
 * The statement that adds a constraint back to its table, as it is now
 * (NOT VALID and DEFERRABLE included), and its comment.
 */
char *
guard_constraint_sql(Oid conoid)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1];

	values[0] = ObjectIdGetDatum(conoid);
	return guard_catalog_string("SELECT pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s',"
								"         c.conrelid::pg_catalog.regclass, c.conname,"
								"         pg_catalog.pg_get_constraintdef(c.oid))"
								"    || CASE WHEN pg_catalog.obj_description(c.oid, 'pg_constraint') IS NOT NULL"
								"       THEN pg_catalog.format('; COMMENT ON CONSTRAINT %I ON %s IS %L',"
								"         c.conname, c.conrelid::pg_catalog.regclass,"
								"         pg_catalog.obj_description(c.oid, 'pg_constraint')) ELSE '' END"
								"    || CASE WHEN c.contype IN ('p', 'u', 'x')"
								"             AND pg_catalog.obj_description(c.conindid, 'pg_class') IS NOT NULL"
								"       THEN pg_catalog.format('; COMMENT ON INDEX %s IS %L', c.conindid::pg_catalog.regclass,"
								"         pg_catalog.obj_description(c.conindid, 'pg_class')) ELSE '' END"
								"  FROM pg_catalog.pg_constraint c WHERE c.oid = $1",
								1, types, values);
}

/*
 * What depends on the object (classid, objid, objsubid) and would go with
 * it: one row per object, with the order to recreate in, its name, the
 * SQL that recreates it (NULL for an index, which the caller deparses; and
 * for what guard cannot recreate), whether it belongs to another table
 * (run as guard), and for an index its OID.
 */
static const char *dependents_query =
"WITH RECURSIVE deps(classid, objid, objsubid, depth) AS ("
"  SELECT d.classid, d.objid, d.objsubid, 1 FROM pg_catalog.pg_depend d"
"   WHERE d.refclassid = $2 AND d.refobjid = $3"
"     AND ($4 = 0 OR d.refobjsubid = $4) AND d.deptype IN ('a', 'n')"
"  UNION"
"  SELECT d.classid, d.objid, d.objsubid, 1 FROM pg_catalog.pg_constraint c"
"    JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
"     AND d.refobjid = c.conindid AND d.deptype = 'n'"
"   WHERE $2 = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND c.oid = $3"
"     AND c.contype IN ('p', 'u', 'x')"
"  UNION"
"  SELECT d.classid, d.objid, d.objsubid, deps.depth + 1 FROM deps"
"    JOIN pg_catalog.pg_rewrite r ON deps.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
"     AND r.oid = deps.objid"
"    JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
"     AND d.refobjid = r.ev_class AND d.deptype = 'n'"
"     AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
"   WHERE deps.depth < 50 AND d.objid <> r.oid"
"), objs AS ("
"  SELECT classid, objid, objsubid, pg_catalog.max(depth) AS depth FROM deps"
"   WHERE NOT (classid = $2 AND objid = $3)"
"   GROUP BY classid, objid, objsubid"
")"
/* indexes: those of a constraint come back with the constraint */
" SELECT 1 AS ord, pg_catalog.pg_describe_object(o.classid, o.objid, 0), NULL::text, false, o.objid"
"   FROM objs o JOIN pg_catalog.pg_class c ON o.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
"    AND c.oid = o.objid AND c.relkind IN ('i', 'I')"
"  WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend x"
"                     WHERE x.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
"                       AND x.objid = c.oid AND x.deptype = 'i'"
"                       AND x.refclassid = 'pg_catalog.pg_constraint'::pg_catalog.regclass)"
/* sequences owned by the column, with their position */
" UNION ALL"
" SELECT 0, pg_catalog.pg_describe_object(o.classid, o.objid, 0),"
"        pg_catalog.format('CREATE SEQUENCE %s AS %s INCREMENT %s MINVALUE %s MAXVALUE %s START %s CACHE %s %s;"
" SELECT pg_catalog.setval(%L, %s, %L)',"
"          o.objid::pg_catalog.regclass, pg_catalog.format_type(s.seqtypid, NULL),"
"          s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcache,"
"          CASE WHEN s.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END,"
"          o.objid::pg_catalog.regclass,"
"          COALESCE(pg_catalog.pg_sequence_last_value(o.objid), s.seqstart),"
"          pg_catalog.pg_sequence_last_value(o.objid) IS NOT NULL)"
"        || COALESCE((SELECT pg_catalog.format('; ALTER SEQUENCE %s OWNED BY %s.%I',"
"              o.objid::pg_catalog.regclass, a.attrelid::pg_catalog.regclass, a.attname)"
"              FROM pg_catalog.pg_depend od JOIN pg_catalog.pg_attribute a"
"                ON a.attrelid = od.refobjid AND a.attnum = od.refobjsubid"
"             WHERE od.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND od.objid = o.objid"
"               AND od.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND od.deptype = 'a'"
"             LIMIT 1), ''),"
"        false, NULL"
"   FROM objs o JOIN pg_catalog.pg_sequence s ON o.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
"    AND s.seqrelid = o.objid"
/* constraints: keys first, the foreign keys of other tables after ours */
" UNION ALL"
" SELECT CASE WHEN c.conrelid <> $1 THEN 5 WHEN c.contype = 'p' THEN 2"
"             WHEN c.contype IN ('u', 'x') THEN 3 ELSE 4 END,"
"        pg_catalog.pg_describe_object(o.classid, o.objid, 0),"
"        pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s',"
"          c.conrelid::pg_catalog.regclass, c.conname, pg_catalog.pg_get_constraintdef(c.oid))"
"        || CASE WHEN pg_catalog.obj_description(c.oid, 'pg_constraint') IS NOT NULL"
"             THEN pg_catalog.format('; COMMENT ON CONSTRAINT %I ON %s IS %L', c.conname,"
"             c.conrelid::pg_catalog.regclass, pg_catalog.obj_description(c.oid, 'pg_constraint'))"
"             ELSE '' END"
"        || CASE WHEN c.contype IN ('p', 'u', 'x')"
"                 AND pg_catalog.obj_description(c.conindid, 'pg_class') IS NOT NULL"
"             THEN pg_catalog.format('; COMMENT ON INDEX %s IS %L', c.conindid::pg_catalog.regclass,"
"               pg_catalog.obj_description(c.conindid, 'pg_class')) ELSE '' END,"
"        c.conrelid <> $1, NULL"
"   FROM objs o JOIN pg_catalog.pg_constraint c"
"     ON o.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND c.oid = o.objid"
"  WHERE c.conparentid = 0"
/* views, shallowest first, with owner, grants and comment */
" UNION ALL"
" SELECT 10 + pg_catalog.max(o.depth), pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, v.oid, 0),"
"        CASE WHEN v.relkind = 'v' THEN pg_catalog.concat_ws('; ',"
"          pg_catalog.format('CREATE VIEW %s AS %s', v.oid::pg_catalog.regclass,"
"                            pg_catalog.rtrim(pg_catalog.pg_get_viewdef(v.oid), ';')),"
"          pg_catalog.format('ALTER VIEW %s OWNER TO %I', v.oid::pg_catalog.regclass,"
"                            pg_catalog.pg_get_userbyid(v.relowner)),"
"          (SELECT pg_catalog.string_agg(pg_catalog.format('GRANT %s ON %s TO %s',"
"                   a.privilege_type, v.oid::pg_catalog.regclass,"
"                   CASE WHEN a.grantee = 0 THEN 'PUBLIC'"
"                        ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END), '; ')"
"             FROM pg_catalog.aclexplode(v.relacl) a WHERE a.grantee <> v.relowner),"
"          (SELECT pg_catalog.format('COMMENT ON VIEW %s IS %L', v.oid::pg_catalog.regclass, t)"
"             FROM pg_catalog.obj_description(v.oid, 'pg_class') t WHERE t IS NOT NULL)) END,"
"        true, NULL"
"   FROM objs o JOIN pg_catalog.pg_rewrite r"
"     ON o.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND r.oid = o.objid"
"   JOIN pg_catalog.pg_class v ON v.oid = r.ev_class"
"  WHERE v.oid <> $1"
"  GROUP BY v.oid, v.relkind, v.relowner, v.relacl"
/* statistics objects, triggers, policies of the table */
" UNION ALL"
" SELECT 8, pg_catalog.pg_describe_object(o.classid, o.objid, 0),"
"        pg_catalog.pg_get_statisticsobjdef(o.objid), false, NULL"
"   FROM objs o WHERE o.classid = 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass"
" UNION ALL"
" SELECT 8, pg_catalog.pg_describe_object(o.classid, o.objid, 0),"
"        pg_catalog.pg_get_triggerdef(t.oid)"
"        || pg_catalog.format(CASE t.tgenabled WHEN 'D' THEN '; ALTER TABLE %s DISABLE TRIGGER %I'"
"             WHEN 'A' THEN '; ALTER TABLE %s ENABLE ALWAYS TRIGGER %I'"
"             WHEN 'R' THEN '; ALTER TABLE %s ENABLE REPLICA TRIGGER %I' ELSE '' END,"
"             t.tgrelid::pg_catalog.regclass, t.tgname),"
"        false, NULL"
"   FROM objs o JOIN pg_catalog.pg_trigger t"
"     ON o.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND t.oid = o.objid"
"  WHERE NOT t.tgisinternal"
" UNION ALL"
" SELECT 8, pg_catalog.pg_describe_object(o.classid, o.objid, 0),"
"        pg_catalog.format('CREATE POLICY %I ON %s AS %s FOR %s TO %s',"
"          p.policyname, pp.polrelid::pg_catalog.regclass, p.permissive, p.cmd,"
"          (SELECT pg_catalog.string_agg(CASE WHEN r = 'public' THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r) END, ', ')"
"             FROM pg_catalog.unnest(p.roles) r))"
"        || COALESCE(' USING (' || p.qual || ')', '')"
"        || COALESCE(' WITH CHECK (' || p.with_check || ')', ''),"
"        false, NULL"
"   FROM objs o JOIN pg_catalog.pg_policy pp"
"     ON o.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND pp.oid = o.objid"
"   JOIN pg_catalog.pg_class pc ON pc.oid = pp.polrelid"
"   JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace"
"   JOIN pg_catalog.pg_policies p ON p.policyname = pp.polname AND p.tablename = pc.relname"
"    AND p.schemaname = pn.nspname"
/* anything else goes, and guard cannot recreate it */
" UNION ALL"
" SELECT 20, pg_catalog.pg_describe_object(o.classid, o.objid, o.objsubid), NULL, false, NULL"
"   FROM objs o"
"  WHERE o.classid NOT IN ('pg_catalog.pg_class'::pg_catalog.regclass,"
"          'pg_catalog.pg_constraint'::pg_catalog.regclass, 'pg_catalog.pg_rewrite'::pg_catalog.regclass,"
"          'pg_catalog.pg_statistic_ext'::pg_catalog.regclass, 'pg_catalog.pg_trigger'::pg_catalog.regclass,"
"          'pg_catalog.pg_policy'::pg_catalog.regclass, 'pg_catalog.pg_attrdef'::pg_catalog.regclass)"
"     OR (o.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
"         AND (o.objsubid <> 0 OR (SELECT relkind FROM pg_catalog.pg_class WHERE oid = o.objid)"
"                                  NOT IN ('i', 'I', 'S')))"
"     OR (o.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass"
"         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef ad WHERE ad.oid = o.objid"
"                           AND ad.adrelid = $1 AND ad.adnum = $4))"
" ORDER BY 1, 2";

/*
 * What a drop of the object (classid, objid, objsubid: a column of table
 * "relid", an index or a constraint) takes with it, as a list of
 * GuardSaved in the order to recreate them.
 */
List *
guard_dependents(Oid relid, Oid classid, Oid objid, int32 objsubid)
{
	GuardAsRole owner;
	Oid			types[4] = {OIDOID, OIDOID, OIDOID, INT4OID};
	Datum		values[4];
	List	   *saved = NIL;
	List	   *indexes = NIL;
	MemoryContext outer = CurrentMemoryContext;
	ListCell   *lc;
	ListCell   *lc2;

	values[0] = ObjectIdGetDatum(relid);
	values[1] = ObjectIdGetDatum(classid);
	values[2] = ObjectIdGetDatum(objid);
	values[3] = Int32GetDatum(objsubid);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql(dependents_query, 4, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(outer);
		GuardSaved *s = palloc0(sizeof(GuardSaved));
		char	   *v;
		bool		isnull;
		Datum		index;

		v = SPI_getvalue(tuple, desc, 2);
		s->object = pstrdup(v ? v : "?");
		v = SPI_getvalue(tuple, desc, 3);
		s->sql = v ? pstrdup(v) : NULL;
		s->order = DatumGetInt32(SPI_getbinval(tuple, desc, 1, &isnull));
		s->as_guard = DatumGetBool(SPI_getbinval(tuple, desc, 4, &isnull));
		index = SPI_getbinval(tuple, desc, 5, &isnull);
		saved = lappend(saved, s);
		indexes = lappend_oid(indexes, isnull ? InvalidOid : DatumGetObjectId(index));
		MemoryContextSwitchTo(old);
	}
	guard_as_role_end(&owner);

	/* indexes are deparsed here, with their tablespace */
	forboth(lc, saved, lc2, indexes)
	{
		if (OidIsValid(lfirst_oid(lc2)))
			((GuardSaved *) lfirst(lc))->sql = guard_index_sql(lfirst_oid(lc2));
	}
	return saved;
}
