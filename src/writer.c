/*-------------------------------------------------------------------------
 *
 * writer.c
 *	  The one writer of rows into guard's own tables.
 *
 * guard writes its records (snapshot chunks, change and change set rows)
 * in the writing transaction itself, without SPI and without permission
 * checks: its callers have done theirs.  A GuardWriter opens one of guard's
 * tables once, checks each row against the table's NOT NULL and CHECK
 * constraints (ExecConstraints), buffers the rows and writes them with
 * table_multi_insert through a BulkInsertState, then adds their index
 * entries with ExecInsertIndexTuples, as COPY FROM does: any index access
 * method works, BRIN included, and unique indexes are checked.  Triggers
 * are not fired (guard's tables have none of their own, and guard never
 * captures its own writes).
 *
 * Rows are buffered up to WRITER_MAX_ROWS rows or WRITER_MAX_BYTES bytes,
 * so memory stays bounded however many rows one writer takes.  A writer
 * flushing a single row inserts it with table_tuple_insert and never
 * creates a BulkInsertState (whose buffer ring would only cost there).
 * Everything a writer allocates lives in its own memory context, deleted
 * by guard_writer_end(); an error unwinds with the transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "nodes/makefuncs.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "guard.h"

/* rows and bytes buffered before they are written (as COPY FROM) */
#define WRITER_MAX_ROWS		1000
#define WRITER_MAX_BYTES	65535

struct GuardWriter
{
	Relation	rel;
	EState	   *estate;			/* for constraints and index insertion */
	ResultRelInfo *rri;			/* ... with the table's indexes open */
	BulkInsertState bistate;	/* made at the first flush of several rows */
	TupleTableSlot **slots;		/* buffered rows, [0 .. nused) */
	int			nslots;			/* slots created so far */
	int			nused;
	Size		bytes;			/* data bytes of the buffered rows */
	MemoryContext cxt;			/* where all of the above lives */
};

/*
 * Open guard's table "relname" (with "natts" columns, as guard_open checks)
 * for writing rows.  The writer and everything it allocates live in a new
 * child of the current memory context.
 */
GuardWriter *
guard_writer_begin(const char *relname, int natts)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "guard writer",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	GuardWriter *w = palloc0(sizeof(GuardWriter));

	w->cxt = cxt;
	w->rel = guard_open(relname, RowExclusiveLock, natts);
	w->estate = CreateExecutorState();
	w->rri = makeNode(ResultRelInfo);
	/* no range table entry: constraint errors show no row values */
	InitResultRelInfo(w->rri, w->rel, 0, NULL, 0);
	ExecOpenIndices(w->rri, false);
	MemoryContextSwitchTo(old);
	return w;
}

/*
 * Write the buffered rows, then their index entries.
 */
static void
writer_flush(GuardWriter *w)
{
	EState	   *estate = w->estate;
	CommandId	cid;
	MemoryContext old;

	if (w->nused == 0)
		return;

	/* the current command, as when each row was inserted on its own */
	cid = GetCurrentCommandId(true);

	/* the table AM may leak memory: per-tuple context, as COPY does */
	old = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
	if (w->nused == 1)
		table_tuple_insert(w->rel, w->slots[0], cid, 0, w->bistate);
	else
	{
		if (w->bistate == NULL)
		{
			MemoryContextSwitchTo(w->cxt);
			w->bistate = GetBulkInsertState();
			MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
		}
		table_multi_insert(w->rel, w->slots, w->nused, cid, 0, w->bistate);
	}
	MemoryContextSwitchTo(old);

	for (int i = 0; i < w->nused; i++)
	{
		if (w->rri->ri_NumIndices > 0)
		{
			List	   *recheck;

			recheck = ExecInsertIndexTuples(w->rri, w->slots[i], estate,
											false, false, NULL, NIL);
			/* no deferred unique or exclusion constraints to recheck */
			list_free(recheck);
		}
		ExecClearTuple(w->slots[i]);
	}
	ResetPerTupleExprContext(estate);
	w->nused = 0;
	w->bytes = 0;
}

/*
 * Add one row to the table.  "values" and "nulls" are copied: the caller
 * may reuse them at once.  The row is checked against the table's
 * constraints now, and written at the latest by guard_writer_end().
 */
void
guard_writer_add(GuardWriter *w, Datum *values, bool *nulls)
{
	TupleDesc	desc = RelationGetDescr(w->rel);
	TupleTableSlot *slot;
	MemoryContext old = MemoryContextSwitchTo(w->cxt);

	if (w->slots == NULL)
		w->slots = palloc0(sizeof(TupleTableSlot *) * WRITER_MAX_ROWS);
	if (w->nused == w->nslots)
		w->slots[w->nslots++] = table_slot_create(w->rel, NULL);
	slot = w->slots[w->nused];

	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, sizeof(Datum) * desc->natts);
	memcpy(slot->tts_isnull, nulls, sizeof(bool) * desc->natts);
	ExecStoreVirtualTuple(slot);
	if (desc->constr)
	{
		ExecConstraints(w->rri, slot, w->estate);
		ResetPerTupleExprContext(w->estate);
	}
	/* copy the values into the slot's own memory: it is kept a while */
	ExecMaterializeSlot(slot);
	w->bytes += heap_compute_data_size(desc, values, nulls);
	w->nused++;
	MemoryContextSwitchTo(old);

	if (w->nused >= WRITER_MAX_ROWS || w->bytes >= WRITER_MAX_BYTES)
		writer_flush(w);
}

/*
 * Write what is buffered and close the table; frees the writer.
 */
void
guard_writer_end(GuardWriter *w)
{
	writer_flush(w);
	for (int i = 0; i < w->nslots; i++)
		ExecDropSingleTupleTableSlot(w->slots[i]);
	if (w->bistate)
	{
		FreeBulkInsertState(w->bistate);
		table_finish_bulk_insert(w->rel, 0);
	}
	ExecCloseIndices(w->rri);
	FreeExecutorState(w->estate);
	table_close(w->rel, RowExclusiveLock);
	MemoryContextDelete(w->cxt);
}

/*
 * Insert one row into guard's table "relname": for records written one at
 * a time (a change, a change set).  The same path as a writer of many rows;
 * a single row never makes a BulkInsertState.
 */
void
guard_writer_insert(const char *relname, int natts, Datum *values,
					bool *nulls)
{
	GuardWriter *w = guard_writer_begin(relname, natts);

	guard_writer_add(w, values, nulls);
	guard_writer_end(w);
}
