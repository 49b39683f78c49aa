/*-------------------------------------------------------------------------
 *
 * capture.c
 *	  The capture trigger: before-images of a statement's writes.
 *
 * guard.capture() is a statement-level AFTER trigger with transition
 * tables, attached by protect() as guard_capture_ins/upd/del (and, BEFORE
 * TRUNCATE, as guard_capture_trunc: see below).  Besides the
 * capture it applies the table's row limits (rails.c) and row checks
 * (invariants.c) to the rows the statement wrote, in the same pass.  It reads the
 * transition tuplestores directly (no SPI), pairs old and new rows of an
 * UPDATE by position (an UPDATE may change the key), and hands each row to
 * shadow.c.  The tuplestores spill to disk past work_mem, and the shadow
 * writer holds one chunk, so memory does not grow with the rows touched.
 * The transition tables hold the very row versions the statement replaced,
 * READ COMMITTED re-checks included.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "replication/logicalworker.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_capture);

/*
 * Position a fresh read pointer at the start of a transition table, so
 * that other triggers reading the same tuplestore are not disturbed.
 */
static void
rewind_transition(Tuplestorestate *ts)
{
	int			ptr = tuplestore_alloc_read_pointer(ts, EXEC_FLAG_REWIND);

	tuplestore_select_read_pointer(ts, ptr);
	tuplestore_rescan(ts);
}

/*
 * guard.capture(): keep the before-images of the rows the statement wrote.
 */
Datum
guard_capture(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TriggerEvent event;
	Relation	rel;
	const GuardPolicy *policy;
	Tuplestorestate *oldtable;
	Tuplestorestate *newtable;
	Tuplestorestate *counted;
	const char *kind;
	int64		nrows;
	int64		rowno = 0;
	int64		change_id = 0;
	bool		capture;
	GuardInvariantSet *checks;
	int64		limit;
	ShadowWriter *w = NULL;
	TupleTableSlot *oldslot = NULL;
	TupleTableSlot *newslot = NULL;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("guard.capture() was not called by trigger manager")));
	event = trigdata->tg_event;
	if (TRIGGER_FIRED_BY_TRUNCATE(event))
	{
		/* preloaded, the utility hook has captured the TRUNCATE already */
		if (!guard_preloaded)
			ereport(ERROR,
					(errcode(ERRCODE_GUARD_NOT_PRELOADED),
					 errmsg("cannot truncate protected table \"%s\": guard is not loaded in this server",
							RelationGetRelationName(trigdata->tg_relation)),
					 errhint("Add 'guard' to shared_preload_libraries in postgresql.conf and restart the server.")));
		return PointerGetDatum(NULL);
	}
	/*
	 * The triggers are ENABLE ALWAYS (for restore): logical replication's
	 * workers, which write as replica too, are left alone as before.
	 */
	if (IsLogicalWorker())
		return PointerGetDatum(NULL);
	if (!TRIGGER_FIRED_AFTER(event) || !TRIGGER_FIRED_FOR_STATEMENT(event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("guard.capture() must be fired AFTER ... FOR EACH STATEMENT")));

	rel = trigdata->tg_relation;
	oldtable = trigdata->tg_oldtable;
	newtable = trigdata->tg_newtable;

	if (TRIGGER_FIRED_BY_INSERT(event))
	{
		kind = "INSERT";
		counted = newtable;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(event))
	{
		kind = "UPDATE";
		counted = oldtable;
		if (newtable == NULL)
			counted = NULL;
	}
	else if (TRIGGER_FIRED_BY_DELETE(event))
	{
		kind = "DELETE";
		counted = oldtable;
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("guard.capture() fired for an unsupported event")));
	if (counted == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on table \"%s\" has no transition tables",
						trigdata->tg_trigger->tgname, RelationGetRelationName(rel)),
				 errhint("Run guard.protect() again to recreate guard's triggers.")));

	nrows = tuplestore_tuple_count(counted);
	if (nrows == 0)
		return PointerGetDatum(NULL);

	if (!guard_enabled)
	{
		ereport(LOG,
				(errmsg("guard: capture of " INT64_FORMAT " rows of table \"%s\" skipped: guard.enabled is off",
						nrows, RelationGetRelationName(rel))));
		return PointerGetDatum(NULL);
	}

	policy = guard_policy_lookup(rel);
	if (!policy->found)
		return PointerGetDatum(NULL);

	/* guard rails: refuse before anything is captured */
	guard_check_row_limits(rel, policy, event, nrows);

	capture = (policy->capture == GUARD_CAPTURE_DML ||
			   policy->capture == GUARD_CAPTURE_ALL) &&
		nrows >= policy->min_rows;
	checks = guard_invariants_begin(rel, policy);
	if (!capture && checks == NULL)
		return PointerGetDatum(NULL);

	if (capture)
	{
		limit = guard_max_snapshot_size < 0 ? -1 :
			(int64) guard_max_snapshot_size * 1024;
		w = shadow_begin(rel, kind, limit,
						 guard_policy_mode(policy) == GUARD_MODE_ENFORCE);
	}

	if (oldtable)
	{
		rewind_transition(oldtable);
		oldslot = MakeSingleTupleTableSlot(RelationGetDescr(rel),
										   &TTSOpsMinimalTuple);
	}
	if (newtable)
	{
		rewind_transition(newtable);
		newslot = MakeSingleTupleTableSlot(RelationGetDescr(rel),
										   &TTSOpsMinimalTuple);
	}

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();

		if (TRIGGER_FIRED_BY_UPDATE(event))
		{
			bool		have_old = tuplestore_gettupleslot(oldtable, true, false, oldslot);
			bool		have_new = tuplestore_gettupleslot(newtable, true, false, newslot);

			if (!have_old || !have_new)
			{
				if (have_old != have_new)
					elog(ERROR, "guard: transition tables of table \"%s\" differ in length",
						 RelationGetRelationName(rel));
				break;
			}
			if (w)
				shadow_add_update(w, oldslot, newslot);
			if (checks)
				guard_invariants_row(checks, newslot, ++rowno);
		}
		else if (TRIGGER_FIRED_BY_DELETE(event))
		{
			if (!tuplestore_gettupleslot(oldtable, true, false, oldslot))
				break;
			if (w)
				shadow_add_delete(w, oldslot);
			if (checks)
				guard_invariants_deleted(checks, oldslot, ++rowno);
		}
		else
		{
			if (!tuplestore_gettupleslot(newtable, true, false, newslot))
				break;
			if (w)
				shadow_add_insert(w, newslot);
			if (checks)
				guard_invariants_row(checks, newslot, ++rowno);
		}
	}

	if (w)
		change_id = shadow_end(w);
	if (checks)
		guard_invariants_end(checks, change_id);
	if (oldslot)
		ExecDropSingleTupleTableSlot(oldslot);
	if (newslot)
		ExecDropSingleTupleTableSlot(newslot);

	return PointerGetDatum(NULL);
}
