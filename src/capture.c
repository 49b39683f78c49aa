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
 * One UPDATE does not pair by position: a row moved to another partition
 * whose BEFORE INSERT trigger returned NULL (PostgreSQL accepts this: the
 * row is gone).  ExecCrossPartitionUpdate deletes the row first, which puts
 * it in the old transition table; the insert is cancelled, so the new one
 * lacks it, and every row after it is shifted.  Such a statement's rows are
 * paired by key instead (feed_by_key).
 *
 * shadow.c only encodes and writes chunks; this file opens the change they
 * belong to (guard_capture_begin/end, also used by ddl.c for the snapshots
 * of schema changes): when the first chunk is full it asks changes.c for
 * the statement's change, and if the record is new, keeps that chunk to
 * write inline in the record at the end.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "replication/logicalworker.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/sortsupport.h"
#include "utils/tuplesort.h"
#include "utils/tuplestore.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_capture);

/* the change a snapshot belongs to, opened when its first chunk is full */
typedef struct CaptureChange
{
	Relation	rel;			/* the table written to */
	const char *kind;			/* what its trigger saw: INSERT ... */
	int64		change_id;		/* 0 until opened */
	const char *record_kind;	/* the change record is ours to write */
	bytea	   *first;			/* ... with this first chunk inline */
	int32		first_nrows;
	MemoryContext cxt;			/* where the capture began */
} CaptureChange;

/*
 * ShadowOpenChange of a capture: the change of the statement now finishing
 * (one its other triggers began, or a new one) and its chunk counter.  A
 * new change keeps its first chunk, to go inline in its record.
 */
static bool
open_change(void *arg, bytea *first, int32 nrows, int64 *change_id,
			int32 **chunkno)
{
	CaptureChange *c = (CaptureChange *) arg;

	c->change_id = guard_change_for_statement(c->rel, c->kind,
											  &c->record_kind);
	*change_id = c->change_id;
	*chunkno = guard_change_chunk_counter();
	if (c->record_kind == NULL)
		return false;
	/* in the capture's context: the caller may be inside SPI */
	c->first = (bytea *) MemoryContextAlloc(c->cxt, VARSIZE(first));
	memcpy(c->first, first, VARSIZE(first));
	c->first_nrows = nrows;
	return true;
}

/*
 * Start a snapshot of rows of "rel" for the current statement's change of
 * "kind" ("limit" and "enforce" as shadow_writer_begin takes them).  The
 * change is opened when the first chunk is full: a statement whose rows
 * all kept their values records nothing.
 */
ShadowWriter *
guard_capture_begin(Relation rel, const char *kind, int64 limit, bool enforce)
{
	CaptureChange *c = palloc0(sizeof(CaptureChange));

	c->rel = rel;
	c->kind = kind;
	c->cxt = CurrentMemoryContext;
	return shadow_writer_begin(rel, limit, enforce, open_change, c);
}

/*
 * Finish a snapshot begun by guard_capture_begin: write its last chunks,
 * then the change record if the change is new.  Returns the change id (0
 * if no row needed capture).
 */
int64
guard_capture_end(ShadowWriter *w)
{
	CaptureChange *c = (CaptureChange *) shadow_writer_arg(w);
	int64		change_id;

	shadow_writer_end(w);
	change_id = c->change_id;
	if (c->record_kind)
		guard_change_insert(c->rel, c->change_id, c->record_kind, NULL,
							c->first, c->first_nrows);
	if (c->first)
		pfree(c->first);
	pfree(c);
	return change_id;
}

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

/* the rows of one transition table sorted by key, for feed_by_key */
typedef struct KeySort
{
	Tuplesortstate *sort;
	TupleTableSlot *slot;		/* the row at hand */
	bool		have;			/* ... if any is left */
} KeySort;

/*
 * Sort the rows of transition table "ts" on the key of "rel" ("sortops" its
 * ordering), running the row checks over them on the way if "checks".
 */
static void
key_sort_begin(KeySort *ks, Relation rel, const GuardKey *key, Oid *sortops,
			   Tuplestorestate *ts, GuardInvariantSet *checks)
{
	bool		nullsfirst[INDEX_MAX_KEYS];
	int64		rowno = 0;

	memset(nullsfirst, 0, sizeof(nullsfirst));
	ks->sort = tuplesort_begin_heap(RelationGetDescr(rel), key->nkeys,
									(AttrNumber *) key->attnums, sortops,
									(Oid *) key->collation, nullsfirst,
									work_mem, NULL, TUPLESORT_NONE);
	ks->slot = MakeSingleTupleTableSlot(RelationGetDescr(rel),
										&TTSOpsMinimalTuple);
	rewind_transition(ts);
	while (tuplestore_gettupleslot(ts, true, false, ks->slot))
	{
		CHECK_FOR_INTERRUPTS();
		if (checks)
			guard_invariants_row(checks, ks->slot, ++rowno);
		tuplesort_puttupleslot(ks->sort, ks->slot);
	}
	tuplesort_performsort(ks->sort);
	ks->have = tuplesort_gettupleslot(ks->sort, true, false, ks->slot, NULL);
}

/*
 * Move to the next row of a sort.
 */
static void
key_sort_next(KeySort *ks)
{
	CHECK_FOR_INTERRUPTS();
	ks->have = tuplesort_gettupleslot(ks->sort, true, false, ks->slot, NULL);
}

/*
 * Compare the keys of two rows, in the key index's order.
 */
static int
key_compare(const GuardKey *key, SortSupport ssup, TupleTableSlot *a,
			TupleTableSlot *b)
{
	for (int k = 0; k < key->nkeys; k++)
	{
		bool		anull;
		bool		bnull;
		Datum		av = slot_getattr(a, key->attnums[k], &anull);
		Datum		bv = slot_getattr(b, key->attnums[k], &bnull);
		int			cmp = ApplySortComparator(av, anull, bv, bnull, &ssup[k]);

		if (cmp != 0)
			return cmp;
	}
	return 0;
}

/*
 * Capture an UPDATE whose old and new rows do not pair by position (see
 * the file's header): sort both transition tables on the key, with the
 * key index's own ordering, and merge them.  An old and a new row of the
 * same key are captured as an UPDATE; an old row alone as a DELETE (the
 * row a move took away from its partition, or the one whose move was
 * cancelled); a new row alone as an INSERT (a moved row, under the key it
 * has in its new partition: the partition key is part of every key of a
 * partitioned table).  Restore deletes the inserted rows before it writes
 * the deleted ones back (undo_sql.c), and their keys differ from those of
 * the updated rows: the statement's rows come back exactly.  The new rows
 * go through the row checks, as an UPDATE's do.  The sorts spill to disk
 * past work_mem, so memory stays bounded here too.
 */
static void
feed_by_key(Relation rel, Tuplestorestate *oldtable,
			Tuplestorestate *newtable, ShadowWriter *w,
			GuardInvariantSet *checks)
{
	GuardKey	buf;
	GuardKey	keycopy = *guard_relation_key(rel, &buf);
	const GuardKey *key = &keycopy;
	Oid			sortops[INDEX_MAX_KEYS];
	SortSupportData ssup[INDEX_MAX_KEYS];
	KeySort		old;
	KeySort		new;

	/* capture needs a key (guard_capture() checks): only the checks run */
	if (key->nkeys == 0)
		elog(ERROR, "guard: cannot pair the rows of an UPDATE of table \"%s\" without key",
			 RelationGetRelationName(rel));
	memset(ssup, 0, sizeof(ssup));
	for (int k = 0; k < key->nkeys; k++)
	{
		sortops[k] = get_ordering_op_for_equality_op(key->eqop[k], false);
		if (!OidIsValid(sortops[k]))
			elog(ERROR, "guard: no ordering operator for operator %u", key->eqop[k]);
		ssup[k].ssup_cxt = CurrentMemoryContext;
		ssup[k].ssup_collation = key->collation[k];
		ssup[k].ssup_nulls_first = false;
		ssup[k].ssup_attno = key->attnums[k];
		PrepareSortSupportFromOrderingOp(sortops[k], &ssup[k]);
	}

	key_sort_begin(&old, rel, key, sortops, oldtable, NULL);
	key_sort_begin(&new, rel, key, sortops, newtable, checks);
	while (old.have || new.have)
	{
		int			cmp = !new.have ? -1 : !old.have ? 1 :
			key_compare(key, ssup, old.slot, new.slot);

		if (cmp == 0)
			shadow_add_update(w, old.slot, new.slot);
		else if (cmp < 0)
			shadow_add_delete(w, old.slot);
		else
			shadow_add_insert(w, new.slot);
		if (cmp <= 0)
			key_sort_next(&old);
		if (cmp >= 0)
			key_sort_next(&new);
	}
	tuplesort_end(old.sort);
	tuplesort_end(new.sort);
	ExecDropSingleTupleTableSlot(old.slot);
	ExecDropSingleTupleTableSlot(new.slot);
}

/*
 * Hand each row of an UPDATE with a cancelled move to the row checks only.
 */
static void
check_new_rows(Tuplestorestate *newtable, Relation rel,
			   GuardInvariantSet *checks)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(rel),
													&TTSOpsMinimalTuple);
	int64		rowno = 0;

	rewind_transition(newtable);
	while (tuplestore_gettupleslot(newtable, true, false, slot))
	{
		CHECK_FOR_INTERRUPTS();
		guard_invariants_row(checks, slot, ++rowno);
	}
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * Read the statement's transition tables once, handing each row to the
 * snapshot ("w", if capturing) and to the row checks ("checks", if any).
 * An UPDATE's old and new rows pair by position, unless a move was
 * cancelled (feed_by_key).
 */
static void
feed_rows(Relation rel, TriggerEvent event, Tuplestorestate *oldtable,
		  Tuplestorestate *newtable, ShadowWriter *w, GuardInvariantSet *checks)
{
	int64		rowno = 0;
	TupleTableSlot *oldslot = NULL;
	TupleTableSlot *newslot = NULL;

	if (TRIGGER_FIRED_BY_UPDATE(event) &&
		tuplestore_tuple_count(oldtable) != tuplestore_tuple_count(newtable))
	{
		if (w)
			feed_by_key(rel, oldtable, newtable, w, checks);
		else if (checks)
			check_new_rows(newtable, rel, checks);
		return;
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

	if (oldslot)
		ExecDropSingleTupleTableSlot(oldslot);
	if (newslot)
		ExecDropSingleTupleTableSlot(newslot);
}

/*
 * Record the change of a statement that DML capture cannot keep, and
 * return its id: the table has no key (primary key or replica identity
 * index) now, which PostgreSQL allows after protect() (ALTER TABLE ... DROP
 * CONSTRAINT, DROP INDEX), and rows without a key could never be found
 * again.  No row is kept; the change's detail says so, with the rows the
 * statement wrote, and restore refuses the change by name
 * (guard_undo_check_captured) rather than failing on its rows, or undoing
 * half of them.  Capture resumes by itself once the table has a key again.
 * The statement's other triggers (MERGE) find the record written.
 */
static int64
record_not_captured(Relation rel, const char *kind, int64 nrows)
{
	const char *record_kind;
	int64		change_id = guard_change_for_statement(rel, kind, &record_kind);

	if (record_kind != NULL)
		guard_change_insert(rel, change_id, record_kind,
							psprintf("{\"captured\": false, \"reason\": \"no key\", \"rows\": " INT64_FORMAT "}",
									 nrows),
							NULL, 0);
	return change_id;
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
	int64		change_id = 0;
	bool		capture;
	GuardInvariantSet *checks;
	int64		limit;
	ShadowWriter *w = NULL;
	GuardKey	keybuf;

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
	if (capture && guard_relation_key(rel, &keybuf)->nkeys == 0)
	{
		change_id = record_not_captured(rel, kind, nrows);
		capture = false;
	}
	checks = guard_invariants_begin(rel, policy);
	if (!capture && checks == NULL)
		return PointerGetDatum(NULL);

	if (capture)
	{
		limit = guard_max_snapshot_size < 0 ? -1 :
			(int64) guard_max_snapshot_size * 1024;
		w = guard_capture_begin(rel, kind, limit,
								guard_policy_mode(policy) == GUARD_MODE_ENFORCE);
	}

	feed_rows(rel, event, oldtable, newtable, w, checks);

	if (w)
		change_id = guard_capture_end(w);
	if (checks)
		guard_invariants_end(checks, change_id);

	return PointerGetDatum(NULL);
}
