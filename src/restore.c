/*-------------------------------------------------------------------------
 *
 * restore.c
 *	  Undo recorded changes: guard.restore(), restore_change(), restore_to(),
 *	  and the driver they share with the verify_restore() drill (drill.c).
 *
 * The driver loads and checks the changes to undo, records the restore as
 * a change set of its own, undoes the changes newest first (a schema change
 * by its recipe in schema_undo.c, the rows of a change in undo.c), marks
 * them restored, and returns one report row per change.
 *
 * A dry run does the same inside a subtransaction that it rolls back, so
 * that its report is exactly what the real call would do.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_restore);
PG_FUNCTION_INFO_V1(guard_restore_change);
PG_FUNCTION_INFO_V1(guard_restore_to);

/*
 * The on_conflict argument of the restore functions.
 */
static GuardOnConflict
parse_on_conflict(text *arg)
{
	char	   *s = text_to_cstring(arg);

	if (strcmp(s, "abort") == 0)
		return GUARD_ON_CONFLICT_ABORT;
	if (strcmp(s, "skip") == 0)
		return GUARD_ON_CONFLICT_SKIP;
	if (strcmp(s, "overwrite") == 0)
		return GUARD_ON_CONFLICT_OVERWRITE;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid on_conflict \"%s\"", s),
			 errhint("Valid values are \"abort\", \"skip\" and \"overwrite\".")));
	return GUARD_ON_CONFLICT_ABORT; /* keep compiler quiet */
}

/*
 * Undo one change: a schema change by its own recipe (schema_undo.c), a row
 * change by its rows (undo.c).  Fills *report.
 */
static void
restore_one(const GuardChange *change, GuardOnConflict mode, Datum exclude,
			GuardRestoreReport *report)
{
	if (change->detail == NULL || strcmp(change->kind, "TRUNCATE") == 0)
		guard_undo_rows(change, mode, exclude, false, report);
	else
		guard_undo_schema_change(change, exclude, report);
}

/*
 * Read, check and return (newest first) the changes to undo.
 */
static List *
load_changes(List *ids)
{
	List	   *changes = NIL;
	ListCell   *lc;

	foreach(lc, ids)
	{
		int64		id = *(int64 *) lfirst(lc);
		GuardChange *change = palloc(sizeof(GuardChange));

		if (!guard_change_read(id, change))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("change " INT64_FORMAT " does not exist", id)));
		if (strcmp(change->state, "active") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("change " INT64_FORMAT " of change set " INT64_FORMAT " was already %s",
							id, change->changeset_id, change->state),
					 strcmp(change->state, "expired") == 0 ?
					 errhint("guard.purge() expired it: its snapshot is gone.") :
					 errhint("A restore is a change set of its own: restore it to redo the change.")));
		if (get_rel_name(change->relid) != NULL && !guard_may_manage(change->relid))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to restore table \"%s\"", guard_undo_relname(change)),
					 errdetail("Only the table's owner or a member of guard_admin may restore it.")));
		changes = lappend(changes, change);
	}
	return changes;
}

/*
 * The ids, newest first, that a query of guard's returns.
 */
static List *
select_ids(const char *sql, int nargs, Oid *types, Datum *values)
{
	GuardAsRole owner;
	List	   *ids = NIL;
	MemoryContext outer = CurrentMemoryContext;

	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql(sql, nargs, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i],
									  SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext old = MemoryContextSwitchTo(outer);
		int64	   *id = palloc(sizeof(int64));

		*id = DatumGetInt64(d);
		ids = lappend(ids, id);
		MemoryContextSwitchTo(old);
	}
	guard_as_role_end(&owner);
	return ids;
}

/*
 * The ids of the changes of a change set, newest first (the order to undo
 * them in).
 */
List *
guard_restore_changeset_ids(int64 changeset_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1];

	values[0] = Int64GetDatum(changeset_id);
	return select_ids("SELECT change_id FROM guard.change WHERE changeset_id = $1"
					  " ORDER BY change_id DESC", 1, types, values);
}

/*
 * In a PG_CATCH: roll back the internal subtransaction the work ran in and
 * raise the error again in the outer one.
 */
static void
abort_subxact_rethrow(MemoryContext oldcxt, ResourceOwner oldowner)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(oldcxt);
	edata = CopyErrorData();
	FlushErrorState();
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	ReThrowError(edata);
}

/*
 * The change sets being undone, as an int8[]: their own later writes are
 * expected, not conflicts.
 */
static Datum
changesets_of(List *changes)
{
	Datum	   *elems = palloc(sizeof(Datum) * (list_length(changes) + 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, changes)
		elems[n++] = Int64GetDatum(((GuardChange *) lfirst(lc))->changeset_id);
	return PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
										   true, TYPALIGN_DOUBLE));
}

/*
 * Mark the undone changes as restored by the current change set.
 */
static void
mark_restored(List *changes)
{
	Datum	   *elems = palloc(sizeof(Datum) * (list_length(changes) + 1));
	int			n = 0;
	ListCell   *lc;
	GuardAsRole owner;
	Oid			types[2] = {INT8ARRAYOID, INT8OID};
	Datum		vals[2];

	foreach(lc, changes)
		elems[n++] = Int64GetDatum(((GuardChange *) lfirst(lc))->change_id);
	vals[0] = PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
											  true, TYPALIGN_DOUBLE));
	vals[1] = Int64GetDatum(guard_changeset_current(true));
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("UPDATE guard.change SET state = 'restored', restored_by = $2"
				  " WHERE change_id = ANY ($1)", 2, types, vals, NULL);
	guard_as_role_end(&owner);
}

/*
 * Undo the changes "ids" (newest first), record the restore (of change set
 * restore_of, or 0), and return the report rows, allocated in reportcxt.
 * With dry_run, all of it happens in a subtransaction that is rolled back;
 * "inspect", if not NULL, is called with the report rows just before that,
 * to look at the restored tables (the drill).
 */
List *
guard_restore_changes(List *ids, GuardOnConflict mode, bool dry_run,
					  int64 restore_of, MemoryContext reportcxt,
					  GuardRestoreInspect inspect, void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	List	   *reports = NIL;

	Assert(dry_run || inspect == NULL);
	if (dry_run)
	{
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(oldcxt);
	}

	PG_TRY();
	{
		List	   *changes = load_changes(ids);
		Datum		exclude = changesets_of(changes);
		ListCell   *lc;

		guard_changeset_begin_restore(restore_of, changes);

		foreach(lc, changes)
		{
			MemoryContext old = MemoryContextSwitchTo(reportcxt);
			GuardRestoreReport *report = palloc0(sizeof(GuardRestoreReport));

			MemoryContextSwitchTo(old);
			restore_one((GuardChange *) lfirst(lc), mode, exclude, report);
			old = MemoryContextSwitchTo(reportcxt);
			report->relation = pstrdup(report->relation);
			report->kind = pstrdup(report->kind);
			reports = lappend(reports, report);
			MemoryContextSwitchTo(old);
		}

		mark_restored(changes);
		if (inspect != NULL)
			inspect(reports, arg);
	}
	PG_CATCH();
	{
		if (dry_run)
			abort_subxact_rethrow(oldcxt, oldowner);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (dry_run)
	{
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	return reports;
}

/*
 * Emit the report rows.
 */
static void
put_reports(FunctionCallInfo fcinfo, List *reports)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ListCell   *lc;

	foreach(lc, reports)
	{
		GuardRestoreReport *r = lfirst(lc);
		Datum		values[7];
		bool		nulls[7] = {false, false, false, false, false, false, false};

		values[0] = Int64GetDatum(r->change_id);
		values[1] = Int64GetDatum(r->changeset_id);
		values[2] = CStringGetTextDatum(r->relation);
		values[3] = CStringGetTextDatum(r->kind);
		values[4] = Int64GetDatum(r->restored);
		values[5] = Int64GetDatum(r->skipped);
		values[6] = Int64GetDatum(r->conflicts);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/*
 * Refuse to run without the preloaded library, and refuse null arguments
 * (the restore functions are not STRICT: a null must not look like "nothing
 * to restore").
 */
static void
check_args(FunctionCallInfo fcinfo)
{
	guard_require_preload();
	for (int i = 0; i < PG_NARGS(); i++)
	{
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument %d must not be null", i + 1)));
	}
}

/*
 * guard.restore(changeset_id, dry_run, on_conflict, label): the whole
 * change set, or only its part made under "label" (NULL: all of it).
 */
Datum
guard_restore(PG_FUNCTION_ARGS)
{
	int64		changeset_id;
	bool		dry_run;
	GuardOnConflict mode;
	List	   *ids;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2];
	MemoryContext reportcxt;
	char	   *label = NULL;
	short		nargs = fcinfo->nargs;

	/* the label alone may be null: check the others */
	if (PG_NARGS() > 3 && !PG_ARGISNULL(3))
		label = text_to_cstring(PG_GETARG_TEXT_PP(3));
	fcinfo->nargs = Min(nargs, 3);
	check_args(fcinfo);
	fcinfo->nargs = nargs;
	changeset_id = PG_GETARG_INT64(0);
	dry_run = PG_GETARG_BOOL(1);
	mode = parse_on_conflict(PG_GETARG_TEXT_PP(2));
	InitMaterializedSRF(fcinfo, 0);
	reportcxt = ((ReturnSetInfo *) fcinfo->resultinfo)->econtext->ecxt_per_query_memory;

	values[0] = Int64GetDatum(changeset_id);
	ids = select_ids("SELECT changeset_id FROM guard.changeset WHERE changeset_id = $1",
					 1, types, values);
	if (ids == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("change set " INT64_FORMAT " does not exist", changeset_id)));
	if (label == NULL)
		ids = guard_restore_changeset_ids(changeset_id);
	else
	{
		values[1] = CStringGetTextDatum(label);
		ids = select_ids("SELECT change_id FROM guard.change WHERE changeset_id = $1"
						 " AND label = $2 ORDER BY change_id DESC", 2, types, values);
		if (ids == NIL)
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("change set " INT64_FORMAT " has no changes labelled \"%s\"",
							changeset_id, label),
					 errhint("guard.changesets lists the labels of its parts.")));
	}
	if (ids == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("change set " INT64_FORMAT " has no changes to restore", changeset_id)));

	put_reports(fcinfo, guard_restore_changes(ids, mode, dry_run, changeset_id,
											  reportcxt, NULL, NULL));
	guard_bookkeeping_put_report(fcinfo);
	return (Datum) 0;
}

/*
 * guard.restore_change(change_id, dry_run, on_conflict)
 */
Datum
guard_restore_change(PG_FUNCTION_ARGS)
{
	int64	   *id = palloc(sizeof(int64));
	bool		dry_run;
	GuardOnConflict mode;
	MemoryContext reportcxt;

	check_args(fcinfo);
	*id = PG_GETARG_INT64(0);
	dry_run = PG_GETARG_BOOL(1);
	mode = parse_on_conflict(PG_GETARG_TEXT_PP(2));
	InitMaterializedSRF(fcinfo, 0);
	reportcxt = ((ReturnSetInfo *) fcinfo->resultinfo)->econtext->ecxt_per_query_memory;

	put_reports(fcinfo, guard_restore_changes(list_make1(id), mode, dry_run, 0,
											  reportcxt, NULL, NULL));
	guard_bookkeeping_put_report(fcinfo);
	return (Datum) 0;
}

/*
 * guard.restore_to(rel, at, dry_run, on_conflict): undo every change to the
 * table recorded after "at".
 */
Datum
guard_restore_to(PG_FUNCTION_ARGS)
{
	Oid			relid;
	bool		dry_run;
	GuardOnConflict mode;
	List	   *ids;
	Oid			types[2] = {OIDARRAYOID, TIMESTAMPTZOID};
	Datum		values[2];
	MemoryContext reportcxt;

	check_args(fcinfo);
	relid = PG_GETARG_OID(0);
	dry_run = PG_GETARG_BOOL(2);
	mode = parse_on_conflict(PG_GETARG_TEXT_PP(3));
	InitMaterializedSRF(fcinfo, 0);
	reportcxt = ((ReturnSetInfo *) fcinfo->resultinfo)->econtext->ecxt_per_query_memory;

	if (get_rel_name(relid) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	values[0] = guard_related_relids(relid);
	values[1] = PG_GETARG_DATUM(1);
	/*
	 * Every change after "at" still in effect; a restore made after "at" of
	 * changes all made after "at" cancels out with them and is left alone.
	 */
	ids = select_ids("SELECT change_id FROM guard.change c WHERE relid = ANY ($1)"
					 " AND at > $2 AND state = 'active'"
					 " AND changeset_id NOT IN (SELECT restored_by FROM guard.change"
					 "   WHERE restored_by IS NOT NULL GROUP BY restored_by"
					 "   HAVING pg_catalog.min(at) > $2)"
					 " ORDER BY change_id DESC",
					 2, types, values);
	if (ids != NIL)
	{
		put_reports(fcinfo, guard_restore_changes(ids, mode, dry_run, 0,
												  reportcxt, NULL, NULL));
		guard_bookkeeping_put_report(fcinfo);
	}
	return (Datum) 0;
}
