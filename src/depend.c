/*-------------------------------------------------------------------------
 *
 * depend.c
 *	  What depends on a protected table from outside it, and the SQL that
 *	  brings those dependents back when its DROP TABLE is undone.
 *
 * A table moved into the trash (trash.c) takes its own parts with it:
 * indexes, constraints, triggers, rules, policies, owned sequences,
 * partitions, its row type.  Views and materialized views on it (and views
 * on those), and its extended statistics objects (which live in a schema,
 * under a name, of their own) do not: here they are written as the
 * statements that recreate them, with owner, grants and comment, and their
 * addresses are handed back for trash.c to delete.  Foreign keys,
 * inheritance and publications are links, in link.c.
 *
 * This file also tells which relation a catalog object belongs to, for
 * drop.c to sort what a DROP would delete.  It only reads the catalogs.
 *
 * Calls spi.c only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/pg_attrdef.h"
#include "catalog/pg_class.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_index.h"
#include "catalog/pg_policy.h"
#include "catalog/pg_publication_rel.h"
#include "catalog/pg_rewrite.h"
#include "catalog/pg_statistic_ext.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "guard.h"

/*
 * The relations of "tree" as an oid[] Datum, the parameter of the queries
 * below.
 */
static Datum
tree_array(List *tree)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(tree), 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, tree)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	return PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid),
										   true, TYPALIGN_INT));
}

/*
 * One column of a catalog row found by OID: the relation it belongs to.
 */
static Oid
catalog_relation(Oid catalog, Oid index, Oid objid, AttrNumber attnum)
{
	Relation	rel = table_open(catalog, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			result = InvalidOid;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(objid));
	scan = systable_beginscan(rel, index, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, attnum, RelationGetDescr(rel), &isnull);

		if (!isnull)
			result = DatumGetObjectId(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return result;
}

/*
 * The relation a catalog object belongs to: a table itself (or a column of
 * it), the table of an index, of a TOAST table, of an owned sequence, of a
 * constraint, trigger,
 * default, policy, rule, statistics object or publication membership, the
 * table a row type (or its array type) describes.  InvalidOid for an
 * object that belongs to no relation (a function, a type of its own...) or
 * no longer exists.
 */
Oid
guard_object_relation(const ObjectAddress *object)
{
	Oid			objid = object->objectId;

	switch (object->classId)
	{
		case RelationRelationId:
			{
				char		relkind = get_rel_relkind(objid);

				if (relkind == RELKIND_INDEX || relkind == RELKIND_PARTITIONED_INDEX)
				{
					/* the table of an index (of a TOAST table's: its table's) */
					objid = catalog_relation(IndexRelationId, IndexRelidIndexId, objid,
											 Anum_pg_index_indrelid);
					relkind = get_rel_relkind(objid);
				}
				if (relkind == RELKIND_TOASTVALUE)
				{
					Oid			result = InvalidOid;
					GuardAsRole owner;
					Oid			types[1] = {OIDOID};
					Datum		values[1] = {ObjectIdGetDatum(objid)};
					bool		isnull;

					guard_as_role_begin(&owner, InvalidOid);
					guard_run_sql("SELECT oid FROM pg_catalog.pg_class WHERE reltoastrelid = $1",
								  1, types, values, NULL);
					if (SPI_processed > 0)
						result = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
																SPI_tuptable->tupdesc, 1, &isnull));
					guard_as_role_end(&owner);
					return result;
				}
				if (relkind == RELKIND_SEQUENCE)
				{
					Oid			table;
					int32		column;

					/* a serial's or an identity column's sequence */
					if (sequenceIsOwned(objid, DEPENDENCY_AUTO, &table, &column) ||
						sequenceIsOwned(objid, DEPENDENCY_INTERNAL, &table, &column))
						return table;
				}
				return relkind ? objid : InvalidOid;
			}
		case TypeRelationId:
			{
				HeapTuple	tuple = SearchSysCache1(TYPEOID, ObjectIdGetDatum(objid));
				Oid			result = InvalidOid;

				if (HeapTupleIsValid(tuple))
				{
					Form_pg_type typ = (Form_pg_type) GETSTRUCT(tuple);

					result = typ->typrelid;
					if (!OidIsValid(result) && OidIsValid(typ->typelem) &&
						IsTrueArrayType(typ))
						result = get_typ_typrelid(typ->typelem);
					ReleaseSysCache(tuple);
				}
				return result;
			}
		case ConstraintRelationId:
			return catalog_relation(ConstraintRelationId, ConstraintOidIndexId, objid,
									Anum_pg_constraint_conrelid);
		case TriggerRelationId:
			return catalog_relation(TriggerRelationId, TriggerOidIndexId, objid,
									Anum_pg_trigger_tgrelid);
		case AttrDefaultRelationId:
			return catalog_relation(AttrDefaultRelationId, AttrDefaultOidIndexId, objid,
									Anum_pg_attrdef_adrelid);
		case PolicyRelationId:
			return catalog_relation(PolicyRelationId, PolicyOidIndexId, objid,
									Anum_pg_policy_polrelid);
		case RewriteRelationId:
			return catalog_relation(RewriteRelationId, RewriteOidIndexId, objid,
									Anum_pg_rewrite_ev_class);
		case StatisticExtRelationId:
			return catalog_relation(StatisticExtRelationId, StatisticExtOidIndexId, objid,
									Anum_pg_statistic_ext_stxrelid);
		case PublicationRelRelationId:
			return catalog_relation(PublicationRelRelationId, PublicationRelObjectIndexId,
									objid, Anum_pg_publication_rel_prrelid);
		default:
			return InvalidOid;
	}
}

/*
 * Keep the rows of the last query, columns "sql" (the statements that
 * recreate an object), "classid" / "objid" (its address) and "needs" (the
 * OIDs of the tables it reads, or NULL): the SQL is appended to *recreate
 * (as a relink.c directive when it needs tables), the address to
 * "deletions".  Runs with SPI connected; the list is built in "outer".
 */
static void
keep_results(MemoryContext outer, List **recreate, ObjectAddresses *deletions)
{
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		ObjectAddress addr;
		MemoryContext old;
		char	   *sql = SPI_getvalue(tuple, desc, 1);

		char	   *needs = SPI_getvalue(tuple, desc, 4);

		addr.classId = DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull));
		addr.objectId = DatumGetObjectId(SPI_getbinval(tuple, desc, 3, &isnull));
		addr.objectSubId = 0;
		old = MemoryContextSwitchTo(outer);
		if (needs != NULL)
		{
			/* a directive: the tables it needs must be back first */
			StringInfoData d;

			initStringInfo(&d);
			appendStringInfoString(&d, "{\"link\": \"sql\", \"needs\": ");
			escape_json(&d, needs);
			appendStringInfoString(&d, ", \"sql\": ");
			escape_json(&d, sql);
			appendStringInfoChar(&d, '}');
			sql = d.data;
		}
		*recreate = lappend(*recreate, pstrdup(sql));
		add_exact_object_address(&addr, deletions);
		MemoryContextSwitchTo(old);
	}
}

/*
 * The views and materialized views that depend on the tables of the tree
 * ($1), transitively: the statements that recreate each (shallowest first,
 * with owner, grants, comment, column defaults, triggers and rules, and a
 * materialized view's indexes and data)
 * and its address.
 */
static const char *const views_sql =
"WITH RECURSIVE deps(oid, depth) AS ("
"  SELECT r.ev_class, 1 FROM pg_catalog.pg_depend d"
"    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid"
"   WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
"     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
"     AND d.refobjid = ANY ($1) AND r.ev_class <> ALL ($1)"
"  UNION"
"  SELECT r.ev_class, deps.depth + 1 FROM deps"
"    JOIN pg_catalog.pg_depend d ON d.refobjid = deps.oid"
"     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
"     AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
"    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid"
"   WHERE r.ev_class <> deps.oid AND deps.depth < 50)"
" SELECT pg_catalog.concat_ws('; ',"
"     CASE c.relkind WHEN 'm' THEN"
"       pg_catalog.format('CREATE MATERIALIZED VIEW %I.%I AS %s WITH %s', n.nspname, c.relname,"
"                         pg_catalog.rtrim(pg_catalog.pg_get_viewdef(c.oid), ';'),"
"                         CASE WHEN c.relispopulated THEN 'DATA' ELSE 'NO DATA' END)"
"     ELSE pg_catalog.format('CREATE VIEW %I.%I%s AS %s', n.nspname, c.relname,"
"                         CASE WHEN c.reloptions IS NOT NULL THEN ' WITH ('"
"                              || pg_catalog.array_to_string(c.reloptions, ', ') || ')' ELSE '' END,"
"                         pg_catalog.rtrim(pg_catalog.pg_get_viewdef(c.oid), ';')) END,"
"     (SELECT pg_catalog.string_agg(pg_catalog.pg_get_indexdef(i.indexrelid), '; ')"
"        FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid),"
"     (SELECT pg_catalog.string_agg(pg_catalog.format('ALTER VIEW %I.%I ALTER COLUMN %I SET DEFAULT %s',"
"              n.nspname, c.relname, a.attname, pg_catalog.pg_get_expr(d.adbin, d.adrelid)), '; ')"
"        FROM pg_catalog.pg_attrdef d JOIN pg_catalog.pg_attribute a"
"          ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE d.adrelid = c.oid),"
"     (SELECT pg_catalog.string_agg(pg_catalog.pg_get_triggerdef(t.oid), '; ')"
"        FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal),"
"     (SELECT pg_catalog.string_agg(pg_catalog.rtrim(pg_catalog.pg_get_ruledef(r.oid), ';'), '; ')"
"        FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN'),"
"     pg_catalog.format('ALTER %s %I.%I OWNER TO %I',"
"                       CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END,"
"                       n.nspname, c.relname, pg_catalog.pg_get_userbyid(c.relowner)),"
"     (SELECT pg_catalog.string_agg(pg_catalog.format('GRANT %s ON %I.%I TO %s',"
"              a.privilege_type, n.nspname, c.relname,"
"              CASE WHEN a.grantee = 0 THEN 'PUBLIC'"
"                   ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END), '; ')"
"        FROM pg_catalog.aclexplode(c.relacl) a WHERE a.grantee <> c.relowner),"
"     (SELECT pg_catalog.format('COMMENT ON %s %I.%I IS %L',"
"                       CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END,"
"                       n.nspname, c.relname, t)"
"        FROM pg_catalog.obj_description(c.oid, 'pg_class') t WHERE t IS NOT NULL)),"
"   'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid, c.oid,"
"   (SELECT pg_catalog.string_agg(DISTINCT d.refobjid::pg_catalog.text, ' ')"
"      FROM pg_catalog.pg_rewrite r"
"      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
"       AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
"      JOIN pg_catalog.pg_class t ON t.oid = d.refobjid AND t.relkind IN ('r', 'p', 'f')"
"     WHERE r.ev_class = c.oid)"
"  FROM (SELECT oid, pg_catalog.max(depth) AS depth FROM deps GROUP BY oid) v"
"  JOIN pg_catalog.pg_class c ON c.oid = v.oid"
"  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
" WHERE c.relkind IN ('v', 'm')"
" ORDER BY v.depth, c.oid";

/*
 * The extended statistics objects on the tables of the tree ($1): the
 * statements that recreate each (with its target, owner and comment) and
 * its address.  The table is named as it is now, which is the name it
 * comes back under.
 */
static const char *const statistics_sql =
"SELECT pg_catalog.concat_ws('; ', pg_catalog.pg_get_statisticsobjdef(s.oid),"
"     CASE WHEN s.stxstattarget >= 0 THEN pg_catalog.format('ALTER STATISTICS %I.%I SET STATISTICS %s',"
"          n.nspname, s.stxname, s.stxstattarget) END,"
"     pg_catalog.format('ALTER STATISTICS %I.%I OWNER TO %I', n.nspname, s.stxname,"
"                       pg_catalog.pg_get_userbyid(s.stxowner)),"
"     (SELECT pg_catalog.format('COMMENT ON STATISTICS %I.%I IS %L', n.nspname, s.stxname, t)"
"        FROM pg_catalog.obj_description(s.oid, 'pg_statistic_ext') t WHERE t IS NOT NULL)),"
"   'pg_catalog.pg_statistic_ext'::pg_catalog.regclass::pg_catalog.oid, s.oid, NULL"
"  FROM pg_catalog.pg_statistic_ext s"
"  JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace"
" WHERE s.stxrelid = ANY ($1)"
" ORDER BY s.oid";

/*
 * For a DROP TABLE of protected tables: the views and materialized views
 * that depend on the tables of "tree" and their extended statistics
 * objects, as the statements that recreate them (returned: views
 * shallowest first, then statistics); their addresses are added to
 * "deletions", for the caller to delete before it moves the tree.
 */
List *
guard_dependents_save(List *tree, ObjectAddresses *deletions)
{
	GuardAsRole owner;
	Oid			types[1] = {OIDARRAYOID};
	Datum		values[1];
	List	   *recreate = NIL;
	MemoryContext outer = CurrentMemoryContext;

	values[0] = tree_array(tree);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql(views_sql, 1, types, values, NULL);
	keep_results(outer, &recreate, deletions);
	guard_run_sql(statistics_sql, 1, types, values, NULL);
	keep_results(outer, &recreate, deletions);
	guard_as_role_end(&owner);
	return recreate;
}
