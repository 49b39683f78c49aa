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
 * Everything a writer allocates lives in its own memory context (its
 * executor state's), deleted by guard_writer_end(); an error unwinds with
 * the transaction.
 *
 * A change record is written once per statement, a change set record once
 * per transaction (guard_writer_insert).  So that this costs no more than a
 * catalog insert, the tables' CHECK constraints are parsed and planned once
 * and kept in a small cache, invalidated through relcache and syscache
 * callbacks; and the writer of each such table is kept open until the next
 * utility statement or the end of the transaction (a kept writer: see
 * keep_writer), so that the 10,000 one-row UPDATEs of a PL/pgSQL loop, or
 * the statements of a migration, open guard.change and
 * its indexes, and build their executor state, once and not 10,000 times.
 * Each row is still written at once, in the subtransaction and under the
 * command id of the statement that made it: only the open relations are
 * kept, never rows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "utils/resowner.h"
#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

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
	int			maxslots;		/* length of the slots array */
	int			nused;
	Size		bytes;			/* data bytes of the buffered rows */
	MemoryContext cxt;			/* where all of the above lives: the
								 * executor state's */
	bool		trusted;		/* rows composed by guard itself: see
								 * guard_writer_insert */
};

/*
 * The CHECK constraints of one of guard's tables, parsed and planned once
 * per relcache generation instead of by every writer (ExecConstraints
 * would do it per ResultRelInfo, that is per change record).
 */
typedef struct WriterChecks
{
	Oid			relid;			/* InvalidOid: a free slot */
	int			ncheck;
	Expr	  **exprs;			/* planned, in the relation's check order */
	MemoryContext cxt;			/* holds exprs, under CacheMemoryContext */
} WriterChecks;

/* guard has a handful of tables: a small array, searched linearly */
#define WRITER_MAX_CHECKED_RELS 16

static WriterChecks writer_checks[WRITER_MAX_CHECKED_RELS];
static bool writer_callback_registered = false;
static uint64 writer_checks_generation = 0;	/* invalidations so far */

/*
 * Relcache callback: forget the checks of "relid" (of all tables if
 * InvalidOid), freeing their memory.  Writers hold copies, never these.
 */
static void
writer_checks_invalidate(Datum arg, Oid relid)
{
	writer_checks_generation++;
	for (int i = 0; i < WRITER_MAX_CHECKED_RELS; i++)
	{
		WriterChecks *c = &writer_checks[i];

		if (OidIsValid(c->relid) && (!OidIsValid(relid) || c->relid == relid))
		{
			MemoryContextDelete(c->cxt);
			memset(c, 0, sizeof(WriterChecks));
		}
	}
}

/*
 * Syscache callback: a function or type changed, which planning may have
 * folded or inlined into a check (as the plan cache assumes): forget all.
 */
static void
writer_checks_syscache_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	writer_checks_invalidate((Datum) 0, InvalidOid);
}

/*
 * The planned CHECK constraints of "rel" (which has some), from the cache
 * or parsed and planned now.  NULL if they cannot be cached (the cache is
 * full, or was invalidated while they were planned).
 */
static WriterChecks *
writer_checks_lookup(Relation rel)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	WriterChecks *free_slot = NULL;
	MemoryContext cxt;
	MemoryContext old;
	Expr	  **exprs;
	uint64		generation;

	for (int i = 0; i < WRITER_MAX_CHECKED_RELS; i++)
	{
		WriterChecks *c = &writer_checks[i];

		if (c->relid == RelationGetRelid(rel) &&
			c->ncheck == rel->rd_rel->relchecks)
			return c;
		if (!OidIsValid(c->relid) && free_slot == NULL)
			free_slot = c;
	}
	if (free_slot == NULL || constr == NULL ||
		constr->num_check != rel->rd_rel->relchecks)
		return NULL;
	if (!writer_callback_registered)
	{
		CacheRegisterRelcacheCallback(writer_checks_invalidate, (Datum) 0);
		CacheRegisterSyscacheCallback(PROCOID, writer_checks_syscache_invalidate,
									  (Datum) 0);
		CacheRegisterSyscacheCallback(TYPEOID, writer_checks_syscache_invalidate,
									  (Datum) 0);
		writer_callback_registered = true;
	}

	/* built under the caller's context, kept only once complete */
	generation = writer_checks_generation;
	cxt = AllocSetContextCreate(CurrentMemoryContext, "guard writer checks",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	exprs = palloc(sizeof(Expr *) * constr->num_check);
	for (int i = 0; i < constr->num_check; i++)
		exprs[i] = expression_planner((Expr *) stringToNode(constr->check[i].ccbin));
	MemoryContextSwitchTo(old);
	if (generation != writer_checks_generation)
	{
		/* planning read catalogs that changed meanwhile: do not keep it */
		MemoryContextDelete(cxt);
		return NULL;
	}
	MemoryContextSetParent(cxt, CacheMemoryContext);

	free_slot->relid = RelationGetRelid(rel);
	free_slot->ncheck = constr->num_check;
	free_slot->exprs = exprs;
	free_slot->cxt = cxt;
	return free_slot;
}

/*
 * Give the writer's ResultRelInfo its CHECK constraints, ready to run, so
 * that ExecConstraints need not parse and plan them again.  Each writer
 * copies them first, then initialises the copies: initialising may read
 * catalogs and so run the callbacks that free the cached ones.
 */
static void
writer_prepare_checks(GuardWriter *w)
{
	WriterChecks *c = writer_checks_lookup(w->rel);
	int			ncheck;
	Expr	  **exprs;
	ExprState **states;

	if (c == NULL)
		return;					/* ExecConstraints builds them itself */
	ncheck = c->ncheck;
	exprs = palloc(sizeof(Expr *) * ncheck);
	for (int i = 0; i < ncheck; i++)
		exprs[i] = copyObject(c->exprs[i]);
	states = palloc(sizeof(ExprState *) * ncheck);
	for (int i = 0; i < ncheck; i++)
		states[i] = ExecInitExpr(exprs[i], NULL);
	w->rri->ri_ConstraintExprs = states;
}

/*
 * Open guard's table "relname" (with "natts" columns, as guard_open checks)
 * for writing rows.  The writer and everything it allocates live in the
 * memory context of its executor state, a new child of the current one.
 */
GuardWriter *
guard_writer_begin(const char *relname, int natts)
{
	EState	   *estate = CreateExecutorState();
	MemoryContext old = MemoryContextSwitchTo(estate->es_query_cxt);
	GuardWriter *w = palloc0(sizeof(GuardWriter));

	w->cxt = estate->es_query_cxt;
	w->estate = estate;
	w->rel = guard_open(relname, RowExclusiveLock, natts);
	w->rri = makeNode(ResultRelInfo);
	/* no range table entry: constraint errors show no row values */
	InitResultRelInfo(w->rri, w->rel, 0, NULL, 0);
	ExecOpenIndices(w->rri, false);
	if (w->rel->rd_rel->relchecks > 0)
		writer_prepare_checks(w);
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

	if (w->nused > 1 && w->bistate == NULL)
	{
		old = MemoryContextSwitchTo(w->cxt);
		w->bistate = GetBulkInsertState();
		MemoryContextSwitchTo(old);
	}

	/* the table and index AMs may leak: per-tuple context, as COPY does */
	old = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
	if (w->nused == 1)
		table_tuple_insert(w->rel, w->slots[0], cid, 0, w->bistate);
	else
		table_multi_insert(w->rel, w->slots, w->nused, cid, 0, w->bistate);

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
	MemoryContextSwitchTo(old);
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

	if (w->nused == w->nslots)
	{
		/* a writer of one row makes one slot, of many up to the maximum */
		if (w->nslots == w->maxslots)
		{
			w->maxslots = Min(Max(w->maxslots * 2, 4), WRITER_MAX_ROWS);
			w->slots = w->slots ?
				repalloc(w->slots, sizeof(TupleTableSlot *) * w->maxslots) :
				palloc(sizeof(TupleTableSlot *) * w->maxslots);
		}
		w->slots[w->nslots++] = table_slot_create(w->rel, NULL);
	}
	slot = w->slots[w->nused];

	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, sizeof(Datum) * desc->natts);
	memcpy(slot->tts_isnull, nulls, sizeof(bool) * desc->natts);
	ExecStoreVirtualTuple(slot);
	if (desc->constr && !w->trusted)
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
	table_close(w->rel, RowExclusiveLock);
	/* last: the writer itself lives in the executor state's context */
	FreeExecutorState(w->estate);
}

/*
 * Kept writers.  A writer of guard.change (or of another of guard's tables
 * that guard_writer_insert writes one row at a time) is opened once and
 * kept until one of these closes it:
 *
 *	- a utility statement starts (hooks.c calls guard_writer_close_kept):
 *	  ALTER, DROP or TRUNCATE of guard's own tables (ALTER EXTENSION
 *	  UPDATE, DROP EXTENSION, purge) refuse a table this session holds open
 *	  (CheckTableNotInUse), and DDL may change its indexes;
 *	- the table's relcache entry is invalidated (its index list may have
 *	  changed): the writer is marked stale, and closed at its next use;
 *	- the transaction commits or prepares (closed at PRE_COMMIT /
 *	  PRE_PREPARE; rows written after that use a writer of their own), or
 *	  aborts (forgotten: the resource owner releases what it held).
 *
 * A kept writer lives in TopTransactionContext and holds its relations and
 * locks under TopTransactionResourceOwner, so that a subtransaction that
 * opened it can end without taking them along; the rows it writes are
 * written at once, as any other, in the current subtransaction.  A
 * subtransaction that aborts while a row was being written leaves no row
 * buffered: the writer's buffer is emptied then.
 */
#define KEPT_WRITERS	4

typedef struct KeptWriter
{
	const char *relname;		/* NULL: a free slot */
	Oid			relid;
	GuardWriter *w;
	bool		stale;			/* the relcache entry was invalidated */
} KeptWriter;

static KeptWriter kept[KEPT_WRITERS];
static int	nkept = 0;
static bool kept_allowed = true;	/* false from PRE_COMMIT on */
static bool kept_callbacks_registered = false;

/*
 * Close the kept writer in slot "i", under the resource owner that opened it.
 */
static void
close_kept(int i)
{
	ResourceOwner save = CurrentResourceOwner;
	GuardWriter *w = kept[i].w;

	memset(&kept[i], 0, sizeof(KeptWriter));
	CurrentResourceOwner = TopTransactionResourceOwner;
	PG_TRY();
	{
		guard_writer_end(w);
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = save;
	}
	PG_END_TRY();
}

/*
 * Close every kept writer: a utility statement is about to run, or the
 * transaction is about to commit.
 */
void
guard_writer_close_kept(void)
{
	for (int i = 0; i < nkept; i++)
	{
		if (kept[i].w != NULL)
			close_kept(i);
	}
	nkept = 0;
}

/*
 * Transaction callback: close the kept writers before commit, forget them
 * at abort (the transaction's memory and resource owner go with them).
 */
static void
kept_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			guard_writer_close_kept();
			kept_allowed = false;
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			memset(kept, 0, sizeof(kept));
			nkept = 0;
			kept_allowed = true;
			break;
		default:
			break;
	}
}

/*
 * Subtransaction callback: a row whose writing an error interrupted is not
 * written; drop it from the buffer (the rest of the writer stays usable:
 * its relations are the transaction's).
 */
static void
kept_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	for (int i = 0; i < nkept; i++)
	{
		GuardWriter *w = kept[i].w;

		if (w == NULL)
			continue;
		for (int j = 0; j < w->nused; j++)
			ExecClearTuple(w->slots[j]);
		w->nused = 0;
		w->bytes = 0;
		ResetPerTupleExprContext(w->estate);
	}
}

/*
 * Relcache callback: a kept writer's table changed (or all did); close its
 * writer at its next use.
 */
static void
kept_relcache_callback(Datum arg, Oid relid)
{
	for (int i = 0; i < nkept; i++)
	{
		if (kept[i].w != NULL && (!OidIsValid(relid) || kept[i].relid == relid))
			kept[i].stale = true;
	}
}

/*
 * Rows that guard_writer_insert writes are composed field by field by
 * guard's own code (a change, a change set, a layout), never from a
 * caller's values: their NOT NULL and CHECK constraints hold by
 * construction, and checking them cost one statement in a hundred of a
 * loop of one-row UPDATEs.  Builds with assertions check them all the
 * same.
 */
#ifdef USE_ASSERT_CHECKING
static const bool writer_trusts_records = false;
#else
static const bool writer_trusts_records = true;
#endif

/*
 * The kept writer of guard's table "relname", opened now if there is none
 * (or only a stale one).  NULL if none may be kept now.
 */
static GuardWriter *
keep_writer(const char *relname, int natts)
{
	int			free_slot = -1;
	MemoryContext old;
	ResourceOwner save;
	GuardWriter *w;

	if (!kept_allowed || !IsTransactionState() || IsInParallelMode())
		return NULL;
	for (int i = 0; i < nkept; i++)
	{
		if (kept[i].w == NULL)
		{
			if (free_slot < 0)
				free_slot = i;
			continue;
		}
		if (strcmp(kept[i].relname, relname) != 0)
			continue;
		if (!kept[i].stale)
			return kept[i].w;
		close_kept(i);
		free_slot = i;
		break;
	}
	if (free_slot < 0)
	{
		if (nkept == KEPT_WRITERS)
			return NULL;
		free_slot = nkept++;
	}
	if (!kept_callbacks_registered)
	{
		RegisterXactCallback(kept_xact_callback, NULL);
		RegisterSubXactCallback(kept_subxact_callback, NULL);
		CacheRegisterRelcacheCallback(kept_relcache_callback, (Datum) 0);
		kept_callbacks_registered = true;
	}

	old = MemoryContextSwitchTo(TopTransactionContext);
	save = CurrentResourceOwner;
	CurrentResourceOwner = TopTransactionResourceOwner;
	PG_TRY();
	{
		w = guard_writer_begin(relname, natts);
		/* its one slot, too: a slot pins the descriptor in the owner */
		MemoryContextSwitchTo(w->cxt);
		w->maxslots = 1;
		w->slots = palloc(sizeof(TupleTableSlot *));
		w->slots[w->nslots++] = table_slot_create(w->rel, NULL);
		w->trusted = writer_trusts_records;
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = save;
		MemoryContextSwitchTo(old);
	}
	PG_END_TRY();
	kept[free_slot].relname = relname;
	kept[free_slot].relid = RelationGetRelid(w->rel);
	kept[free_slot].w = w;
	kept[free_slot].stale = false;
	return w;
}

/*
 * Insert one row into guard's table "relname" now: for records written one
 * at a time (a change, a change set).  The same path as a writer of many
 * rows, through a kept writer when one may be kept; a single row never
 * makes a BulkInsertState.  "relname" must be a string constant.
 */
void
guard_writer_insert(const char *relname, int natts, Datum *values,
					bool *nulls)
{
	GuardWriter *w = keep_writer(relname, natts);

	if (w == NULL)
	{
		w = guard_writer_begin(relname, natts);
		w->trusted = writer_trusts_records;
		guard_writer_add(w, values, nulls);
		guard_writer_end(w);
		return;
	}
	/* one row at a time: the slot made with the writer is the only one */
	Assert(w->nused == 0 && w->nslots == 1);
	guard_writer_add(w, values, nulls);
	writer_flush(w);
}
