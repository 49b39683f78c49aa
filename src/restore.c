/*-------------------------------------------------------------------------
 *
 * restore.c
 *	  Undo recorded changes: guard.restore(), restore_change(), and the
 *	  driver they share with restore_to() (restore_to.c) and the
 *	  verify_restore() drill (drill.c).
 *
 * The driver locks, loads and checks the changes to undo (a second restore
 * of the same changes waits for the first, then finds them restored),
 * records the restore as a change set of its own, undoes the changes
 * newest first (a schema change by its recipe in schema_undo.c, the rows of
 * a change in undo.c), checks the foreign keys involving the rows written
 * (fkcheck.c: they are not checked while the restore writes, so the order
 * of the changes does not matter), marks restored those it did restore, and
 * returns one report row per change.  Changes of a change set that were
 * restored one by one (restore_change) are left out of the restore of the
 * rest.
 *
 * A dry run does the same inside a subtransaction that it rolls back, so
 * that its report is exactly what the real call would do; the changes it
 * records there have provisional ids (changes.c), so that it uses up none.
 * Where nothing
 * can be written, not even to roll it back (a hot standby, a read-only
 * transaction), a dry run only plans: it locks nothing above ACCESS SHARE,
 * records nothing, and plays the writes of row undo on an overlay of the
 * tables (undo_plan.c) without the foreign key check; its report, progress
 * and estimate are those of the dry run that writes.  A real restore there
 * is refused.
 *
 * Each report row also gives the change's estimated_seconds (restore_rate.c).  The driver reports its
 * phase and rows to progress.c as it goes, for guard.restore_progress().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_restore);
PG_FUNCTION_INFO_V1(guard_restore_change);

/*
 * The on_conflict argument of the restore functions.
 */
GuardOnConflict
guard_restore_parse_on_conflict(text *arg)
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
 * A real restore where nothing can be written is refused, saying where to
 * run it; a dry run works there (it only plans).
 */
void
guard_restore_check_writable(bool dry_run)
{
	if (dry_run)
		return;
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot restore during recovery"),
				 errdetail("A hot standby cannot be written to."),
				 errhint("Run the restore on the primary; a dry run works here.")));
	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot restore in a read-only transaction"),
				 errhint("Run the restore in a read-write transaction; a dry run works here.")));
}

/*
 * A plan cannot undo a schema change: that needs the table altered.
 */
static void
refuse_plan_of_schema_change(const GuardChange *change)
{
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("cannot dry-run the undo of change " INT64_FORMAT " (%s) without writing",
					change->change_id, change->kind),
			 errdetail("During recovery or in a read-only transaction, a dry run only plans the undo of rows; the undo of a schema change must alter the table."),
			 errhint("Run the dry run on the primary, in a read-write transaction.")));
}

/*
 * Undo one change: a schema change by its own recipe (schema_undo.c), a row
 * change by its rows (undo.c); with a plan, only plan the rows.  Fills
 * *report.
 */
static void
restore_one(const GuardChange *change, GuardOnConflict mode, Datum exclude,
			Datum restoring, GuardPlan *plan, GuardRestoreReport *report)
{
	guard_undo_check_captured(change);
	if (plan != NULL)
	{
		if (change->detail != NULL && strcmp(change->kind, "TRUNCATE") != 0)
			refuse_plan_of_schema_change(change);
		/* a TRUNCATE's sequences are not played: nothing reports them */
		guard_undo_rows_plan(change, mode, exclude, restoring, plan, report);
	}
	else if (change->detail == NULL || strcmp(change->kind, "TRUNCATE") == 0)
	{
		guard_undo_rows(change, mode, exclude, restoring, false, report);
		/* a TRUNCATE ... RESTART IDENTITY recorded its sequences */
		if (change->detail != NULL)
			guard_undo_truncate_sequences(change);
	}
	else
	{
		guard_progress_phase(GUARD_PHASE_SCHEMA, -1);
		guard_undo_schema_change(change, exclude, report);
		guard_fk_schema_changed();
	}
}

/*
 * Lock the records of the changes to undo (in change order, so that
 * restores of overlapping changes cannot deadlock) and return their states
 * as of now, by change id: a second restore of the same changes waits for
 * the first to end, then sees them restored, instead of taking the first
 * one's writes for conflicts.  A restore that only plans (it cannot lock
 * rows: a standby, a read-only transaction) reads the states as they are.
 */
static HTAB *
lock_changes(List *ids, bool lock)
{
	GuardAsRole owner;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1];
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(ids), 1));
	int			n = 0;
	ListCell   *lc;
	HASHCTL		ctl;
	HTAB	   *states;

	foreach(lc, ids)
		elems[n++] = Int64GetDatum(*(int64 *) lfirst(lc));
	values[0] = PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
											   true, TYPALIGN_DOUBLE));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(int64) + NAMEDATALEN;
	ctl.hcxt = CurrentMemoryContext;
	states = hash_create("guard change states", Max(n, 16), &ctl,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql(!lock ?
				  "SELECT change_id, state FROM guard.change WHERE change_id = ANY ($1)" :
				  "SELECT change_id, state FROM guard.change WHERE change_id = ANY ($1)"
				  " ORDER BY change_id FOR NO KEY UPDATE",
				  1, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													 SPI_tuptable->tupdesc, 1, &isnull));
		char	   *state = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		char	   *entry = hash_search(states, &id, HASH_ENTER, NULL);

		strlcpy(entry + sizeof(int64), state ? state : "", NAMEDATALEN);
	}
	guard_as_role_end(&owner);
	return states;
}

/*
 * The error for a change that is no longer in effect.
 */
static void
not_active_error(const GuardChange *change)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("change " INT64_FORMAT " of change set " INT64_FORMAT " was already %s",
					change->change_id, change->changeset_id, change->state),
			 strcmp(change->state, "expired") == 0 ?
			 errhint("guard.purge() expired it: its snapshot is gone.") :
			 errhint("A restore is a change set of its own: restore it to redo the change.")));
}

/*
 * Read, lock (if "lock"), check and return (newest first) the changes to
 * undo.  Changes restored already (one by one, with restore_change) are
 * left out, unless none is left: the others are restored.
 */
static List *
load_changes(List *ids, bool lock)
{
	List	   *changes = NIL;
	List	   *restored = NIL;
	ListCell   *lc;
	HTAB	   *states = lock_changes(ids, lock);

	foreach(lc, ids)
	{
		int64		id = *(int64 *) lfirst(lc);
		GuardChange *change = palloc(sizeof(GuardChange));
		char	   *state = hash_search(states, &id, HASH_FIND, NULL);

		if (state == NULL || !guard_change_read(id, change))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("change " INT64_FORMAT " does not exist", id)));
		/* as of the lock, not as of the statement's snapshot */
		change->state = pstrdup(state + sizeof(int64));
		if (strcmp(change->state, "restored") == 0)
		{
			restored = lappend(restored, change);
			continue;
		}
		if (strcmp(change->state, "active") != 0)
			not_active_error(change);
		if (get_rel_name(change->relid) != NULL && !guard_may_manage(change->relid))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to restore table \"%s\"", guard_undo_relname(change)),
					 errdetail("Only the table's owner or a member of guard_admin may restore it.")));
		changes = lappend(changes, change);
	}
	if (changes == NIL && restored != NIL)
		not_active_error(linitial(restored));
	hash_destroy(states);
	return changes;
}

/*
 * The ids, newest first, that a query of guard's returns.
 */
List *
guard_restore_select_ids(const char *sql, int nargs, Oid *types, Datum *values)
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
	return guard_restore_select_ids("SELECT change_id FROM guard.change"
									" WHERE changeset_id = $1 ORDER BY change_id DESC",
									1, types, values);
}

/*
 * In a PG_CATCH: roll back the internal subtransaction the work ran in and
 * raise the error again in the outer one.
 */
static void
abort_subxact_rethrow(MemoryContext oldcxt, ResourceOwner oldowner)
{
	ErrorData  *edata;

	edata = guard_subxact_abort(oldcxt, oldowner);
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
 * The ids of the changes being undone, as an int8[].
 */
static Datum
change_ids_of(List *changes)
{
	Datum	   *elems = palloc(sizeof(Datum) * (list_length(changes) + 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, changes)
		elems[n++] = Int64GetDatum(((GuardChange *) lfirst(lc))->change_id);
	return PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
										   true, TYPALIGN_DOUBLE));
}

/*
 * Mark the undone changes as restored by the current change set: those
 * that were, that is all but the ones whose every row was a conflict kept
 * as it is (skip).  Only changes still active: a change is restored by one
 * change set.
 */
static void
mark_restored(List *changes, List *reports)
{
	Datum	   *elems = palloc(sizeof(Datum) * (list_length(changes) + 1));
	int			n = 0;
	ListCell   *lc;
	GuardAsRole owner;
	Oid			types[2] = {INT8ARRAYOID, INT8OID};
	Datum		vals[2];

	foreach(lc, reports)
	{
		GuardRestoreReport *report = lfirst(lc);

		if (report->conflicts == 0 || report->restored > 0)
			elems[n++] = Int64GetDatum(report->change_id);
	}
	vals[0] = PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
											  true, TYPALIGN_DOUBLE));
	vals[1] = Int64GetDatum(guard_changeset_current(true));
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("UPDATE guard.change SET state = 'restored', restored_by = $2"
				  " WHERE change_id = ANY ($1) AND state = 'active'", 2, types, vals, NULL);
	guard_as_role_end(&owner);
}

/*
 * A restore of changes that all belong to one change set records which one
 * (restore_change too), unless the driver was told already.
 */
static void
note_restore_of(List *changes)
{
	int64		restore_of = ((GuardChange *) linitial(changes))->changeset_id;
	ListCell   *lc;
	GuardAsRole owner;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		vals[2];

	foreach(lc, changes)
	{
		if (((GuardChange *) lfirst(lc))->changeset_id != restore_of)
			return;
	}
	vals[0] = Int64GetDatum(guard_changeset_current(true));
	vals[1] = Int64GetDatum(restore_of);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("UPDATE guard.changeset SET restore_of = $2"
				  " WHERE changeset_id = $1 AND restore_of IS NULL", 2, types, vals, NULL);
	guard_as_role_end(&owner);
}

/*
 * A copy of a list of strings, in the current memory context.
 */
static List *
copy_strings(List *strings)
{
	List	   *copy = NIL;
	ListCell   *lc;

	foreach(lc, strings)
		copy = lappend(copy, pstrdup(lfirst(lc)));
	return copy;
}

/*
 * Seconds since "start".
 */
static double
seconds_since(TimestampTz start)
{
	return (double) (GetCurrentTimestamp() - start) / USECS_PER_SEC;
}

/*
 * Undo the changes "ids" (newest first), record the restore (of change set
 * restore_of, or 0), and return the report rows, allocated in reportcxt.
 * With dry_run, all of it happens in a subtransaction that is rolled back;
 * "inspect", if not NULL, is called with the report rows just before that,
 * to look at the restored tables (the drill).  A dry run that cannot write
 * (guard_plan_only) only plans: nothing is recorded, and "inspect" gets
 * the plan to look at.
 */
List *
guard_restore_changes(List *ids, GuardOnConflict mode, bool dry_run,
					  int64 restore_of, MemoryContext reportcxt,
					  GuardRestoreInspect inspect, void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	List	   *reports = NIL;
	GuardPlan  *plan = NULL;
	bool		subxact = false;
	bool		plan_only = dry_run && guard_plan_only();

	Assert(dry_run || inspect == NULL);
	guard_restore_check_writable(dry_run);
	guard_progress_begin(dry_run);
	if (plan_only)
		plan = guard_plan_create(false);
	else if (dry_run)
	{
		/*
		 * Where the plan gives the same report (dryrun.c), plan; with the
		 * locks a restore takes, in the subtransaction, so that the dry
		 * run waits where the restore would wait, and sees what it would.
		 */
		if (inspect == NULL && guard_dry_run_may_plan(ids))
			plan = guard_plan_create(true);
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(oldcxt);
		subxact = true;
		/* what it records is rolled back: it takes no ids from the real ones */
		guard_changes_provisional();
	}

	PG_TRY();
	{
		List	   *changes = load_changes(ids, !plan_only);
		Datum		exclude = changesets_of(changes);
		Datum		restoring = change_ids_of(changes);
		ListCell   *lc;
		TimestampTz start;

		if (plan == NULL)
		{
			guard_changeset_begin_restore(restore_of, changes);
			guard_fk_begin();
			if (restore_of == 0)
				note_restore_of(changes);
		}
		else
			guard_changeset_plan_restore(changes);

		foreach(lc, changes)
		{
			GuardChange *change = (GuardChange *) lfirst(lc);
			MemoryContext old = MemoryContextSwitchTo(reportcxt);
			GuardRestoreReport *report = palloc0(sizeof(GuardRestoreReport));

			MemoryContextSwitchTo(old);
			guard_progress_change(change->changeset_id, change->change_id);
			if (plan != NULL && inspect == NULL && lnext(changes, lc) == NULL)
				guard_plan_set_final(plan);
			start = GetCurrentTimestamp();
			restore_one(change, mode, exclude, restoring, plan, report);
			report->seconds = seconds_since(start);
			guard_restore_estimate(report);
			old = MemoryContextSwitchTo(reportcxt);
			report->relation = pstrdup(report->relation);
			report->kind = pstrdup(report->kind);
			report->objects = copy_strings(report->objects);
			reports = lappend(reports, report);
			MemoryContextSwitchTo(old);
		}

		/* the foreign keys hold once every change is undone */
		guard_progress_phase(GUARD_PHASE_CHECKING_FKS, -1);
		start = GetCurrentTimestamp();
		if (plan == NULL)
			guard_fk_check();
		guard_progress_phase(GUARD_PHASE_FINISHING, -1);
		if (plan == NULL)
			mark_restored(changes, reports);
		if (!dry_run)
			guard_restore_record_rates(reports, seconds_since(start));
		if (inspect != NULL)
		{
			guard_progress_phase(GUARD_PHASE_VERIFYING, -1);
			inspect(reports, plan, arg);
		}
	}
	PG_CATCH();
	{
		guard_progress_end();
		guard_fk_forget();
		if (subxact)
			abort_subxact_rethrow(oldcxt, oldowner);
		PG_RE_THROW();
	}
	PG_END_TRY();
	guard_progress_end();

	/* before the subtransaction goes: its resource owner has the temp files */
	if (plan != NULL)
		guard_plan_free(plan);
	if (subxact)
	{
		guard_subxact_rollback(oldcxt, oldowner);
	}
	return reports;
}

/*
 * Emit the report rows.
 */
void
guard_restore_put_reports(FunctionCallInfo fcinfo, List *reports)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ListCell   *lc;

	foreach(lc, reports)
	{
		GuardRestoreReport *r = lfirst(lc);
		Datum		values[9];
		bool		nulls[9] = {false, false, false, false, false, false, false, false, false};

		values[0] = Int64GetDatum(r->change_id);
		values[1] = Int64GetDatum(r->changeset_id);
		values[2] = CStringGetTextDatum(r->relation);
		values[3] = CStringGetTextDatum(r->kind);
		values[4] = Int64GetDatum(r->restored);
		values[5] = Int64GetDatum(r->skipped);
		values[6] = Int64GetDatum(r->conflicts);
		/*
		 * The other objects the undo dropped or recreated, NULL if none (a
		 * database whose extension is still at 0.1 has no such column).
		 */
		if (r->objects == NIL || rsinfo->setDesc->natts < 8)
			nulls[7] = true;
		else
		{
			Datum	   *elems = palloc(sizeof(Datum) * list_length(r->objects));
			ListCell   *oc;

			foreach(oc, r->objects)
				elems[foreach_current_index(oc)] = CStringGetTextDatum(lfirst(oc));
			values[7] = PointerGetDatum(construct_array(elems, list_length(r->objects),
														TEXTOID, -1, false, TYPALIGN_INT));
		}
		values[8] = Float8GetDatum(r->estimate);
		nulls[8] = !r->has_estimate || rsinfo->setDesc->natts < 9;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/*
 * Refuse to run without the preloaded library, and refuse null arguments
 * (the restore functions are not STRICT: a null must not look like "nothing
 * to restore") but those whose bit is set in "nullable".
 */
void
guard_restore_check_args(FunctionCallInfo fcinfo, uint32 nullable)
{
	guard_require_preload();
	for (int i = 0; i < PG_NARGS(); i++)
	{
		if (PG_ARGISNULL(i) && (nullable & (1U << i)) == 0)
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

	/* the label alone may be null */
	guard_restore_check_args(fcinfo, 1U << 3);
	if (PG_NARGS() > 3 && !PG_ARGISNULL(3))
		label = text_to_cstring(PG_GETARG_TEXT_PP(3));
	changeset_id = PG_GETARG_INT64(0);
	dry_run = PG_GETARG_BOOL(1);
	mode = guard_restore_parse_on_conflict(PG_GETARG_TEXT_PP(2));
	InitMaterializedSRF(fcinfo, 0);
	reportcxt = ((ReturnSetInfo *) fcinfo->resultinfo)->econtext->ecxt_per_query_memory;

	values[0] = Int64GetDatum(changeset_id);
	ids = guard_restore_select_ids("SELECT changeset_id FROM guard.changeset"
								   " WHERE changeset_id = $1", 1, types, values);
	if (ids == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("change set " INT64_FORMAT " does not exist", changeset_id)));
	if (label == NULL)
		ids = guard_restore_changeset_ids(changeset_id);
	else
	{
		values[1] = CStringGetTextDatum(label);
		ids = guard_restore_select_ids("SELECT change_id FROM guard.change WHERE changeset_id = $1"
									   " AND label = $2 ORDER BY change_id DESC",
									   2, types, values);
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

	guard_restore_put_reports(fcinfo,
							  guard_restore_changes(ids, mode, dry_run, changeset_id,
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

	guard_restore_check_args(fcinfo, 0);
	*id = PG_GETARG_INT64(0);
	dry_run = PG_GETARG_BOOL(1);
	mode = guard_restore_parse_on_conflict(PG_GETARG_TEXT_PP(2));
	InitMaterializedSRF(fcinfo, 0);
	reportcxt = ((ReturnSetInfo *) fcinfo->resultinfo)->econtext->ecxt_per_query_memory;

	guard_restore_put_reports(fcinfo,
							  guard_restore_changes(list_make1(id), mode, dry_run, 0,
													reportcxt, NULL, NULL));
	guard_bookkeeping_put_report(fcinfo);
	return (Datum) 0;
}
