/*-------------------------------------------------------------------------
 *
 * restore_to.c
 *	  guard.restore_to(): undo every change recorded after a point in time,
 *	  to one table or to a group of tables.
 *
 * restore_to(rel, at) undoes every change still in effect that was recorded
 * after "at" on the table, its partitions or its partition ancestors;
 * restore_to(at, rels) does the same for a group of tables (every
 * protected table when rels is NULL): the changes of all of them, newest
 * first across the tables, undone by one run of the driver (restore.c), so
 * in one transaction, as one restore change set, with the foreign keys
 * between the tables checked once at the end (fkcheck.c).  A change set
 * that also wrote tables outside the group has only its changes to the
 * group undone, as restore_to(rel, at) undoes only its own table's.
 *
 * Both forms accept two quoted literals, restore_to('t', '...'), which
 * PostgreSQL could not resolve between (regclass, timestamptz) and
 * (timestamptz, regclass[]): a third form, restore_to(text, text), takes
 * them, and reads the second as the group's list when it is an array
 * literal ('{a,b}'; no time begins with '{'), as the time otherwise.
 *
 * Calls restore.c (the driver and its SQL-facing helpers), later.c (a
 * table's partitions and ancestors), policy.c and relcache.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "parser/scansup.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_restore_to);
PG_FUNCTION_INFO_V1(guard_restore_to_group);
PG_FUNCTION_INFO_V1(guard_restore_to_text);

/*
 * Undo every change still in effect recorded after "at" on the relations
 * "relids" (an oid[]), newest first, and emit the report.
 */
static void
restore_to_relids(FunctionCallInfo fcinfo, Datum relids, Datum at,
				  bool dry_run, GuardOnConflict mode)
{
	Oid			types[2] = {OIDARRAYOID, TIMESTAMPTZOID};
	Datum		values[2];
	List	   *ids;
	MemoryContext reportcxt;

	guard_restore_check_writable(dry_run);	/* even with nothing to restore */
	InitMaterializedSRF(fcinfo, 0);
	reportcxt = ((ReturnSetInfo *) fcinfo->resultinfo)->econtext->ecxt_per_query_memory;
	values[0] = relids;
	values[1] = at;

	/*
	 * Every change after "at" still in effect; a restore made after "at" of
	 * changes all made after "at" cancels out with them and is left alone.
	 */
	ids = guard_restore_select_ids("SELECT change_id FROM guard.change c WHERE relid = ANY ($1)"
								   " AND at > $2 AND state = 'active'"
								   " AND changeset_id NOT IN (SELECT restored_by FROM guard.change"
								   "   WHERE restored_by IS NOT NULL GROUP BY restored_by"
								   "   HAVING pg_catalog.min(at) > $2)"
								   " ORDER BY change_id DESC",
								   2, types, values);
	if (ids != NIL)
	{
		guard_restore_put_reports(fcinfo,
								  guard_restore_changes(ids, mode, dry_run, 0,
														reportcxt, NULL, NULL));
		guard_bookkeeping_put_report(fcinfo);
	}
}

/*
 * The error for an OID that names no relation.
 */
static void
no_such_relation(Oid relid)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_TABLE),
			 errmsg("relation with OID %u does not exist", relid)));
}

/*
 * restore_to(rel, at): the table, its partitions and its ancestors.
 */
static void
restore_to_table(FunctionCallInfo fcinfo, Oid relid, Datum at, bool dry_run,
				 GuardOnConflict mode)
{
	if (get_rel_name(relid) == NULL)
		no_such_relation(relid);
	restore_to_relids(fcinfo, guard_related_relids(relid), at, dry_run, mode);
}

/*
 * Is the table protected, by a policy of its own or of a partition
 * ancestor?
 */
static bool
group_table_protected(Oid relid)
{
	GuardPolicy policy;
	ListCell   *lc;

	if (guard_policy_read(relid, &policy))
		return true;
	if (!get_rel_relispartition(relid))
		return false;
	foreach(lc, get_partition_ancestors(relid))
	{
		if (guard_policy_read(lfirst_oid(lc), &policy))
			return true;
	}
	return false;
}

/*
 * The tables of rels, checked: each exists, is protected (a partition of a
 * protected table is) and may be managed by the caller, as restore_to(rel,
 * at) requires of its table; the list neither empty nor holding a NULL.
 */
static List *
group_named(ArrayType *rels)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *tables = NIL;

	deconstruct_array(rels, REGCLASSOID, sizeof(Oid), true, TYPALIGN_INT,
					  &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rels must not be empty"),
				 errhint("Pass NULL to restore every protected table.")));
	for (int i = 0; i < n; i++)
	{
		Oid			relid;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("rels must not contain nulls")));
		relid = DatumGetObjectId(elems[i]);
		if (get_rel_name(relid) == NULL)
			no_such_relation(relid);
		if (!group_table_protected(relid))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table \"%s\" is not protected by guard", get_rel_name(relid)),
					 errhint("guard restores protected tables only: leave it out of rels.")));
		if (!guard_may_manage(relid))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to restore table \"%s\"", get_rel_name(relid)),
					 errdetail("Only the table's owner or a member of guard_admin may restore it.")));
		tables = list_append_unique_oid(tables, relid);
	}
	return tables;
}

/*
 * Every protected table (a table in the trash too: its DROP may be undone).
 * The caller need not manage them all: the driver refuses a change to a
 * table the caller may not manage, so only those with changes to undo must
 * be the caller's.
 */
static List *
group_protected(void)
{
	List	   *tables = NIL;
	ListCell   *lc;

	foreach(lc, guard_restore_select_ids("SELECT relid::oid::int8 FROM guard.policy",
										 0, NULL, NULL))
	{
		Oid			relid = (Oid) *(int64 *) lfirst(lc);

		if (get_rel_name(relid) != NULL)
			tables = lappend_oid(tables, relid);
	}
	return tables;
}

/*
 * restore_to(at, rels): the changes to every table of the group, their
 * partitions and ancestors.
 */
static void
restore_to_group(FunctionCallInfo fcinfo, Datum at, ArrayType *rels,
				 bool dry_run, GuardOnConflict mode)
{
	List	   *tables = rels != NULL ? group_named(rels) : group_protected();
	List	   *relids = NIL;
	ListCell   *lc;
	Datum	   *elems;
	int			n = 0;

	foreach(lc, tables)
	{
		ArrayType  *related = DatumGetArrayTypeP(guard_related_relids(lfirst_oid(lc)));
		Datum	   *ds;
		int			nd;

		deconstruct_array(related, OIDOID, sizeof(Oid), true, TYPALIGN_INT,
						  &ds, NULL, &nd);
		for (int i = 0; i < nd; i++)
			relids = list_append_unique_oid(relids, DatumGetObjectId(ds[i]));
	}
	elems = palloc(sizeof(Datum) * Max(list_length(relids), 1));
	foreach(lc, relids)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	restore_to_relids(fcinfo,
					  PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid),
													  true, TYPALIGN_INT)),
					  at, dry_run, mode);
}

/*
 * guard.restore_to(rel, at, dry_run, on_conflict): undo every change to the
 * table recorded after "at".
 */
Datum
guard_restore_to(PG_FUNCTION_ARGS)
{
	guard_restore_check_args(fcinfo, 0);
	restore_to_table(fcinfo, PG_GETARG_OID(0), PG_GETARG_DATUM(1),
					 PG_GETARG_BOOL(2),
					 guard_restore_parse_on_conflict(PG_GETARG_TEXT_PP(3)));
	return (Datum) 0;
}

/*
 * guard.restore_to(at, rels, dry_run, on_conflict): undo every change to
 * the tables of rels (NULL: every protected table) recorded after "at".
 */
Datum
guard_restore_to_group(PG_FUNCTION_ARGS)
{
	/* rels alone may be null */
	guard_restore_check_args(fcinfo, 1U << 1);
	restore_to_group(fcinfo, PG_GETARG_DATUM(0),
					 PG_ARGISNULL(1) ? NULL : PG_GETARG_ARRAYTYPE_P(1),
					 PG_GETARG_BOOL(2),
					 guard_restore_parse_on_conflict(PG_GETARG_TEXT_PP(3)));
	return (Datum) 0;
}

/*
 * guard.restore_to(text, text, dry_run, on_conflict): two quoted literals,
 * restore_to('t', '2024-05-01 10:00') or restore_to('2024-05-01 10:00',
 * '{a,b}'), converted as the parser would have converted them for the
 * form they are meant for; the second argument tells which: an array
 * literal is a group's.  A NULL, which could be either a missing time or
 * every protected table, is refused with a hint.
 */
Datum
guard_restore_to_text(PG_FUNCTION_ARGS)
{
	char	   *first;
	char	   *second;
	const char *p;
	bool		dry_run;
	GuardOnConflict mode;

	if (PG_NARGS() > 1 && PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument 2 must not be null"),
				 errhint("To restore every protected table, give the time alone, or name the argument: rels => NULL.")));
	guard_restore_check_args(fcinfo, 0);
	first = text_to_cstring(PG_GETARG_TEXT_PP(0));
	second = text_to_cstring(PG_GETARG_TEXT_PP(1));
	dry_run = PG_GETARG_BOOL(2);
	mode = guard_restore_parse_on_conflict(PG_GETARG_TEXT_PP(3));

	for (p = second; scanner_isspace(*p); p++)
		;
	if (*p == '{')
	{
		Datum		at = DirectFunctionCall3(timestamptz_in, CStringGetDatum(first),
											 ObjectIdGetDatum(InvalidOid),
											 Int32GetDatum(-1));
		Datum		rels = OidFunctionCall3(F_ARRAY_IN, CStringGetDatum(second),
											ObjectIdGetDatum(REGCLASSOID),
											Int32GetDatum(-1));

		restore_to_group(fcinfo, at, DatumGetArrayTypeP(rels), dry_run, mode);
	}
	else
	{
		Datum		relid = DirectFunctionCall1(regclassin, CStringGetDatum(first));
		Datum		at = DirectFunctionCall3(timestamptz_in, CStringGetDatum(second),
											 ObjectIdGetDatum(InvalidOid),
											 Int32GetDatum(-1));

		restore_to_table(fcinfo, DatumGetObjectId(relid), at, dry_run, mode);
	}
	return (Datum) 0;
}
