/*-------------------------------------------------------------------------
 *
 * undo_plan.c
 *	  A restore that cannot write: a dry run on a hot standby or in a
 *	  read-only transaction plays the writes of row undo on an overlay of
 *	  the tables.
 *
 * Where it can write, a dry run restores for real in a subtransaction that
 * it rolls back (restore.c).  Where it cannot, the driver runs row undo
 * (undo.c) as far as its writes: lock (ACCESS SHARE only), decode the
 * snapshot, judge each row, collect the rows to write back; and this file
 * plays undo_sql.c's statements, in their order and with their semantics,
 * on an overlay of the tables instead of the tables.  The overlay holds,
 * per table (a partitioned table's whole tree as one table), the row the
 * plan left at each key it wrote or deleted (plan_store.c keeps them within
 * work_mem).  A lookup by key (guard_plan_fetch) reads the overlay first,
 * and the table for the keys the plan did not touch.  So the undo of an
 * older change is judged against the planned undo of the newer ones, as a
 * real restore judges it against their writes, and the drill (drill.c)
 * compares the overlay with the before-images as it would compare the
 * restored tables.  Nothing is written, no sequence advances, and no lock
 * stronger than ACCESS SHARE is taken.
 *
 * The overlay matches keys with the key index's equality operator and the
 * hash function of a hash operator family of that operator (one hash for
 * all, if it has none).  Its rows hold the root table's columns, mapped by
 * name to the partition or table asked about.  An overlay row found by key
 * gets a made-up tid (its row number as block, offset 0, which no heap
 * tuple has), so that undo_moves.c tells rows apart as it does with the
 * table's.  What only a write can run is not played: unique indexes other
 * than the key, CHECK constraints, ENABLE ALWAYS triggers, foreign keys,
 * and the expressions of generated columns and defaults (a generated
 * column takes its captured before-value; a column the table gained since
 * a deleted row was captured is null).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/partition.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "undo.h"

/* a relation of an overlay's table (the root, or a partition), as asked about */
typedef struct PlanMap
{
	Oid			relid;
	AttrMap    *to_root;		/* root attnum - 1 -> this one's attnum */
	AttrMap    *from_root;		/* this one's attnum - 1 -> root attnum */
	TupleTableSlot *slot;		/* an overlay row, in this one's columns */
} PlanMap;

struct GuardPlan
{
	MemoryContext cxt;
	MemoryContext fetchcxt;		/* the row of the last fetch */
	List	   *tables;			/* PlanTable */
	PlanStore  *store;
	int64		nputs;			/* rows the overlay took so far */
	bool		lock;			/* lock as a real restore does */
	bool		final;			/* planning the last change; nobody reads
								 * the overlay after it */
};

/* what playing the statements of one change needs */
typedef struct PlanApply
{
	RowUndo    *u;
	PlanTable  *pt;
	PlanMap    *map;			/* u->rel's */
	TupleTableSlot *slot;		/* a row to write back */
	MemoryContext rowcxt;		/* reset per row */
	Datum		key[INDEX_MAX_KEYS];
} PlanApply;

/*
 * Whether a dry run must only plan here: during recovery (a hot standby)
 * or in a read-only transaction, where it could not write even to roll
 * back.
 */
bool
guard_plan_only(void)
{
	return RecoveryInProgress() || XactReadOnly;
}

/*
 * Tell the plan that the change it plans next is the last, and that
 * nothing will look at the overlay afterwards (no drill): the change's
 * writes need not be played when nothing could read them (see
 * guard_undo_plan_apply).
 */
void
guard_plan_set_final(GuardPlan *plan)
{
	plan->final = true;
}

/*
 * The lock row undo takes on a table: a real restore's (SHARE ROW
 * EXCLUSIVE: writers wait, and wait for it), also taken by a plan on a
 * primary ("lock"), so that a dry run there waits where the restore would
 * and sees what it would see; ACCESS SHARE where nothing can be written.
 */
LOCKMODE
guard_plan_lockmode(GuardPlan *plan)
{
	return plan == NULL || plan->lock ? ShareRowExclusiveLock : AccessShareLock;
}

/*
 * A new, empty overlay, in a memory context of its own under the current
 * one; "lock": take the locks a real restore takes (see
 * guard_plan_lockmode).
 */
GuardPlan *
guard_plan_create(bool lock)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "guard restore plan",
											  ALLOCSET_DEFAULT_SIZES);
	GuardPlan  *plan = MemoryContextAllocZero(cxt, sizeof(GuardPlan));

	plan->cxt = cxt;
	plan->lock = lock;
	plan->fetchcxt = AllocSetContextCreate(cxt, "guard restore plan fetch",
										   ALLOCSET_SMALL_SIZES);
	plan->store = guard_plan_store_begin(cxt);
	return plan;
}

/*
 * Free the overlay and everything it holds (its temporary files too).
 */
void
guard_plan_free(GuardPlan *plan)
{
	ListCell   *lc;

	foreach(lc, plan->tables)
	{
		PlanTable  *pt = lfirst(lc);
		ListCell   *lm;

		foreach(lm, pt->maps)
			ExecDropSingleTupleTableSlot(((PlanMap *) lfirst(lm))->slot);
	}
	guard_plan_store_end(plan->store);
	MemoryContextDelete(plan->cxt);
}

/*
 * The map between "rel" (the root, or a partition of it) and its table's
 * root, built on first need.
 */
static PlanMap *
plan_map(GuardPlan *plan, PlanTable *pt, Relation rel)
{
	ListCell   *lc;
	PlanMap    *map;
	MemoryContext old;
	TupleDesc	desc;

	foreach(lc, pt->maps)
	{
		map = lfirst(lc);
		if (map->relid == RelationGetRelid(rel))
			return map;
	}
	old = MemoryContextSwitchTo(plan->cxt);
	desc = CreateTupleDescCopy(RelationGetDescr(rel));
	map = palloc0(sizeof(PlanMap));
	map->relid = RelationGetRelid(rel);
#if PG_VERSION_NUM >= 160000
	map->to_root = build_attrmap_by_name(desc, pt->desc, false);
	map->from_root = build_attrmap_by_name(pt->desc, desc, false);
#else
	map->to_root = build_attrmap_by_name(desc, pt->desc);
	map->from_root = build_attrmap_by_name(pt->desc, desc);
#endif
	map->slot = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);
	pt->maps = lappend(pt->maps, map);
	MemoryContextSwitchTo(old);
	return map;
}

/*
 * The overlay's table that "rel" belongs to (the root of its partition
 * tree), created on first need with the key of "ks" and "change".
 */
static PlanTable *
plan_table(GuardPlan *plan, Relation rel, const GuardKeyScan *ks,
		   const GuardChange *change)
{
	Oid			root = RelationGetRelid(rel);
	PlanTable  *pt;
	ListCell   *lc;
	MemoryContext old;
	Relation	rootrel;

	if (rel->rd_rel->relispartition)
		root = llast_oid(get_partition_ancestors(root));
	foreach(lc, plan->tables)
	{
		pt = lfirst(lc);
		if (pt->root == root)
			return pt;
	}

	old = MemoryContextSwitchTo(plan->cxt);
	pt = palloc0(sizeof(PlanTable));
	pt->root = root;
	rootrel = table_open(root, AccessShareLock);
	pt->desc = CreateTupleDescCopy(RelationGetDescr(rootrel));
	table_close(rootrel, NoLock);
	pt->nkeys = change->nkeys;
	pt->hashable = true;
	for (int k = 0; k < change->nkeys; k++)
	{
		Oid			hashproc;

		get_typlenbyval(change->atttypes[change->keys[k] - 1],
						&pt->keylen[k], &pt->keybyval[k]);
		pt->collation[k] = ks->leaves[0].collation[k];
		fmgr_info(ks->leaves[0].eqproc[k], &pt->eq[k]);
		if (get_op_hash_functions(ks->leaves[0].eqop[k], &hashproc, NULL))
			fmgr_info(hashproc, &pt->hash[k]);
		else
			pt->hashable = false;
	}
	plan->tables = lappend(plan->tables, pt);
	MemoryContextSwitchTo(old);
	return pt;
}

/*
 * Put an overlay row into the slot of "map"'s relation, with its made-up
 * tid, as the row the key scan found.
 */
static void
plan_found(GuardKeyScan *ks, Relation rel, PlanMap *map, const PlanRow *row)
{
	TupleTableSlot *slot = map->slot;

	ExecClearTuple(slot);
	for (int a = 0; a < slot->tts_tupleDescriptor->natts; a++)
	{
		AttrNumber	r = map->from_root->attnums[a];

		slot->tts_isnull[a] = r <= 0 || row->nulls[r - 1];
		slot->tts_values[a] = slot->tts_isnull[a] ? (Datum) 0 : row->values[r - 1];
	}
	ExecStoreVirtualTuple(slot);
	ItemPointerSet(&slot->tts_tid, row->seq, InvalidOffsetNumber);
	ks->found = rel;
	ks->slot = slot;
}

/*
 * Look up the live row whose key is keyvalues[] as a restore that only
 * plans sees it: the overlay's row if the plan wrote or deleted the key,
 * else the table's (guard_keyscan_fetch).  An overlay row is put in a slot
 * of "rel" (the relation ks was begun on), which becomes ks->found; it
 * stays valid until the next fetch.  Without a plan, this is
 * guard_keyscan_fetch.
 */
bool
guard_plan_fetch(GuardPlan *plan, GuardKeyScan *ks, Relation rel,
				 const GuardChange *change, Datum *keyvalues, Snapshot snapshot)
{
	PlanTable  *pt;
	PlanRow		row;
	MemoryContext old;
	bool		found;

	if (plan == NULL)
		return guard_keyscan_fetch(ks, keyvalues, snapshot);
	pt = plan_table(plan, rel, ks, change);
	MemoryContextReset(plan->fetchcxt);
	old = MemoryContextSwitchTo(plan->fetchcxt);
	found = guard_plan_store_get(plan->store, pt, keyvalues, &row);
	MemoryContextSwitchTo(old);
	if (!found)
		return guard_keyscan_fetch(ks, keyvalues, snapshot);
	ks->found = NULL;
	ks->slot = NULL;
	if (!row.present)
		return false;
	plan_found(ks, rel, plan_map(plan, pt, rel), &row);
	return true;
}

/*
 * The live row at "key" as the plan has it, in *row (in the row context):
 * the overlay's, else the table's, read through the key scan; *known says
 * whether the overlay holds the key.  Returns whether there is a row.
 */
static bool
plan_lookup(PlanApply *p, Datum *key, PlanRow *row, bool *known)
{
	RowUndo    *u = p->u;
	MemoryContext old = MemoryContextSwitchTo(p->rowcxt);
	PlanMap    *found;
	int			natts = p->pt->desc->natts;

	*known = guard_plan_store_get(u->plan->store, p->pt, key, row);
	MemoryContextSwitchTo(old);
	if (*known)
		return row->present;
	row->present = false;
	row->values = MemoryContextAllocZero(p->rowcxt, sizeof(Datum) * Max(natts, 1));
	row->nulls = MemoryContextAlloc(p->rowcxt, sizeof(bool) * Max(natts, 1));
	memset(row->nulls, true, sizeof(bool) * Max(natts, 1));
	if (!guard_keyscan_fetch(&u->ks, key, u->snapshot))
		return false;

	/* a table row: the overlay takes all its values when written */
	found = plan_map(u->plan, p->pt, u->ks.found);
	slot_getallattrs(u->ks.slot);
	for (int a = 0; a < natts; a++)
	{
		AttrNumber	f = found->to_root->attnums[a];

		if (f <= 0)
			continue;
		row->values[a] = u->ks.slot->tts_values[f - 1];
		row->nulls[a] = u->ks.slot->tts_isnull[f - 1];
	}
	row->present = true;
	return true;
}

/*
 * Play "DELETE ... WHERE key = key": returns whether a row was there.
 */
static bool
plan_delete(PlanApply *p, Datum *key)
{
	PlanRow		row;
	bool		known;

	if (!plan_lookup(p, key, &row, &known))
		return false;
	row.present = false;
	(void) guard_plan_store_put(p->u->plan->store, p->pt, key, &row);
	p->u->plan->nputs++;
	return true;
}

/*
 * Whether bit c of the bitmap "m" (bytea) is set, as get_bit() reads it.
 */
static bool
mask_bit(Datum m, int c)
{
	bytea	   *mask = DatumGetByteaPP(m);

	if (c / 8 >= VARSIZE_ANY_EXHDR(mask))
		return false;
	return (((uint8 *) VARDATA_ANY(mask))[c / 8] >> (c % 8)) & 1;
}

/*
 * Set root column "attnum" (1-based; 0: the root has no such column) of a
 * row.
 */
static void
row_set(PlanRow *row, AttrNumber attnum, Datum value, bool isnull)
{
	if (attnum <= 0)
		return;
	row->values[attnum - 1] = isnull ? (Datum) 0 : value;
	row->nulls[attnum - 1] = isnull;
}

/*
 * Play the UPDATE of one row undone in place: at its key, the columns its
 * bitmap marks take its values.  Returns whether a row was there.
 */
static bool
plan_update(PlanApply *p, Datum *key, TupleTableSlot *slot)
{
	RowUndo    *u = p->u;
	int			nk = u->change->nkeys;
	PlanRow		row;
	bool		known;

	if (!plan_lookup(p, key, &row, &known))
		return false;
	for (int c = 0; c < u->ncols; c++)
	{
		if (!u->cols[c].used || !mask_bit(slot->tts_values[nk + 1], c))
			continue;
		row_set(&row, p->map->from_root->attnums[u->cols[c].live],
				slot->tts_values[nk + 2 + c], slot->tts_isnull[nk + 2 + c]);
	}
	(void) guard_plan_store_put(u->plan->store, p->pt, key, &row);
	u->plan->nputs++;
	return true;
}

/*
 * The key a row to write back takes: the values of its key columns.
 */
static Datum *
old_key(PlanApply *p, TupleTableSlot *slot)
{
	RowUndo    *u = p->u;
	int			nk = u->change->nkeys;

	for (int k = 0; k < nk; k++)
		p->key[k] = slot->tts_values[nk + 2 + u->keycol[k]];
	return p->key;
}

/*
 * Play the INSERT of a row (a deleted one, or a moved one under its old
 * key): the key must be free, as the key index would have it.
 */
static void
plan_insert(PlanApply *p, TupleTableSlot *slot, UndoOp op)
{
	RowUndo    *u = p->u;
	int			nk = u->change->nkeys;
	Datum	   *key = old_key(p, slot);
	PlanRow		row;
	bool		known;

	if (plan_lookup(p, key, &row, &known))
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("duplicate key value violates unique constraint \"%s\"",
						RelationGetRelationName(u->ks.leaves[0].index)),
				 errdetail("Key %s already exists.", guard_key_text(u->change, key))));
	row.present = true;
	memset(row.nulls, true, sizeof(bool) * p->pt->desc->natts);
	for (int c = 0; c < u->ncols; c++)
	{
		/* columns gained since: a moved row carries them, a deleted one not */
		if (u->cols[c].recorded < 0 && op != UNDO_MOVE)
			continue;
		row_set(&row, p->map->from_root->attnums[u->cols[c].live],
				slot->tts_values[nk + 2 + c], slot->tts_isnull[nk + 2 + c]);
	}
	(void) guard_plan_store_put(u->plan->store, p->pt, key, &row);
	u->plan->nputs++;
}

/*
 * Play one of undo_sql.c's statements over the rows of op "op" (and, for
 * the deletes of the rows that rows to insert replace, of op "op2"), and
 * return the rows it reached.  The statements that count their rows tick
 * the progress as guard._restore_tick() does for the real ones.
 */
static int64
plan_statement(PlanApply *p, int step, UndoOp op, UndoOp op2)
{
	RowUndo    *u = p->u;
	int			nk = u->change->nkeys;
	int64		reached = 0;
	bool		ticks = step != 2 && !(step == 1 && op == UNDO_MOVE);

	tuplestore_rescan(u->rows);
	while (tuplestore_gettupleslot(u->rows, true, false, p->slot))
	{
		char		opchar;
		bool		done = false;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(p->rowcxt);
		slot_getallattrs(p->slot);
		opchar = DatumGetChar(p->slot->tts_values[nk]);
		if (opchar != guard_undo_opchar[op] && opchar != guard_undo_opchar[op2])
			continue;
		switch (step)
		{
			case 1:				/* DELETE at the key it has now */
				done = plan_delete(p, p->slot->tts_values);
				break;
			case 2:				/* DELETE what has the key it takes */
				if (!p->slot->tts_isnull[nk + 1])
					done = plan_delete(p, old_key(p, p->slot));
				break;
			case 3:				/* UPDATE in place */
				done = plan_update(p, p->slot->tts_values, p->slot);
				break;
			case 4:				/* INSERT under the key it takes */
				/* rows without key (a TRUNCATE): nothing to look them up by */
				if (nk > 0)
					plan_insert(p, p->slot, op);
				done = true;
				break;
		}
		reached += done;
		if (done && ticks)
			guard_progress_tick();
	}
	return reached;
}

/*
 * Count a statement that reached "reached" of its "rows" rows, as undo.c
 * counts a real one: rows restored, and rows it did not reach skipped.
 */
static void
plan_count(RowUndo *u, GuardRestoreReport *report, int64 rows, int64 reached)
{
	report->restored += reached;
	if (reached < rows)
		u->skipped += rows - reached;
}

/*
 * Play the statements that would write the collected rows back (in
 * undo_sql.c's order) on the overlay, counting as undo.c counts.  The key
 * scan and the snapshot the rows were judged against are still open.
 */
void
guard_undo_plan_apply(RowUndo *u, GuardRestoreReport *report)
{
	PlanApply	p;
	int64	   *n = u->napply;

	guard_progress_phase(GUARD_PHASE_WRITING, tuplestore_tuple_count(u->rows));

	/*
	 * The common case of a large dry run, without the overlay: the last
	 * change planned (nobody reads the overlay after it), nothing planned
	 * before it (the overlay is empty: the table is as the judgement saw
	 * it), and only UPDATEs undone in place, each of a key found live when
	 * judged.  The UPDATE would reach every one of them, and nothing else
	 * runs: count them, as the statement would.
	 */
	if (u->plan->final && u->plan->nputs == 0 && n[UNDO_DELETE_INSERTED] == 0 &&
		n[UNDO_MOVE] == 0 && !u->replaces && n[UNDO_INSERT_DELETED] == 0 &&
		u->nupdate_live == n[UNDO_UPDATE])
	{
		for (int64 i = 0; i < n[UNDO_UPDATE]; i++)
			guard_progress_tick();
		plan_count(u, report, n[UNDO_UPDATE], n[UNDO_UPDATE]);
		return;
	}
	memset(&p, 0, sizeof(p));
	p.u = u;
	if (u->change->nkeys > 0)
	{
		p.pt = plan_table(u->plan, u->rel, &u->ks, u->change);
		p.map = plan_map(u->plan, p.pt, u->rel);
	}
	p.slot = MakeSingleTupleTableSlot(u->enrdesc, &TTSOpsMinimalTuple);
	p.rowcxt = AllocSetContextCreate(CurrentMemoryContext, "guard restore plan row",
									 ALLOCSET_DEFAULT_SIZES);

	if (n[UNDO_DELETE_INSERTED] > 0)
		plan_count(u, report, n[UNDO_DELETE_INSERTED],
				   plan_statement(&p, 1, UNDO_DELETE_INSERTED, UNDO_DELETE_INSERTED));
	if (n[UNDO_MOVE] > 0)
		(void) plan_statement(&p, 1, UNDO_MOVE, UNDO_MOVE);
	if (u->replaces)
		(void) plan_statement(&p, 2, UNDO_MOVE, UNDO_INSERT_DELETED);
	if (n[UNDO_UPDATE] > 0)
		plan_count(u, report, n[UNDO_UPDATE],
				   plan_statement(&p, 3, UNDO_UPDATE, UNDO_UPDATE));
	if (n[UNDO_MOVE] > 0)
		plan_count(u, report, n[UNDO_MOVE], plan_statement(&p, 4, UNDO_MOVE, UNDO_MOVE));
	if (n[UNDO_INSERT_DELETED] > 0)
		plan_count(u, report, n[UNDO_INSERT_DELETED],
				   plan_statement(&p, 4, UNDO_INSERT_DELETED, UNDO_INSERT_DELETED));
	MemoryContextDelete(p.rowcxt);
	ExecDropSingleTupleTableSlot(p.slot);
}
