/*-------------------------------------------------------------------------
 *
 * undo_moves.c
 *	  Row undo: the rows whose key the change moved.
 *
 * Keys that a change shifted (SET id = id - 1) or swapped between its rows
 * cannot go back one UPDATE at a time: the first row written back would
 * take a key another row still holds (23505).  Such rows are written back
 * as UNDO_MOVE: all of them deleted at the key they have now, then all
 * inserted whole, under their old key, with the values the change captured
 * and the live values of the other columns (undo_sql.c orders the
 * statements).  An UPDATE that wrote an identity column GENERATED ALWAYS
 * (SET id = DEFAULT) goes back the same way: an INSERT can override such a
 * column, an UPDATE cannot.
 *
 * Before that, each move's old key is looked up.  It is free, or held by a
 * row that leaves it in the same undo (another move, or a row the change
 * inserted), or by a row written since: a later change reused the key.
 * That is a conflict, as for a deleted row whose key exists again, unless
 * the later change is of the change's own change set.  A move that does
 * not happen (skip) leaves its row where it is, so the move waiting for
 * that row's key conflicts too, and so on down the chain.
 *
 * The moved rows wait in a tuplestore until the last row is judged, and
 * what is known of each move (where its row is, what holds its old key,
 * the verdict) in an array by move number that moves to a temporary file
 * past work_mem.  Which move's row holds which one's old key, and which
 * inserted row does, is found by sorting both sides by where the rows are
 * and merging them.  All of it spills to disk: memory does not grow with
 * the moves.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/buffile.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/tuplesort.h"

#include "undo.h"

/* where a row is */
typedef struct MoveTid
{
	Oid			relid;			/* InvalidOid: nowhere */
	ItemPointerData tid;
} MoveTid;

/* one move */
typedef struct MoveInfo
{
	MoveTid		own;			/* where the row is now */
	MoveTid		occupant;		/* the live row that holds its old key */
	int64		dependent;		/* the move whose old key this row holds */
	bool		counted;		/* already a conflict on its columns */
	bool		resolved;		/* the occupant leaves in the same undo */
	bool		replace;		/* it replaces the occupant */
	bool		conflict;
	bool		apply;
} MoveInfo;

struct UndoMoves
{
	Tuplestorestate *store;		/* the moves, as rows to write back */
	MoveInfo   *mem;			/* the moves' MoveInfo, in memory ... */
	int64		memsize;		/* ... room for this many */
	BufFile    *file;			/* ... or past work_mem, in this file */
	char	   *page;			/* the block of the file at hand */
	long		pageno;
	bool		dirty;
	long		nblocks;		/* blocks written to the file */
	int64		n;
	TupleDesc	tiddesc;		/* (relid, tid, move number) to sort */
	TupleTableSlot *tidslot;
};

/* MoveInfo records in one block of the file (none straddles two) */
#define MOVES_PER_BLOCK		(BLCKSZ / sizeof(MoveInfo))

/*
 * Order rows by where they are.
 */
static int
tid_cmp(const MoveTid *a, const MoveTid *b)
{
	if (a->relid != b->relid)
		return a->relid < b->relid ? -1 : 1;
	return ItemPointerCompare((ItemPointer) &a->tid, (ItemPointer) &b->tid);
}

/*
 * Have block "blk" of the moves' file in m->page: write the one there back
 * if it changed, read (or, past the end, clear) the one asked for.
 */
static void
move_page(UndoMoves *m, long blk)
{
	if (blk == m->pageno)
		return;
	if (m->pageno >= 0 && m->dirty)
	{
		if (BufFileSeekBlock(m->file, m->pageno) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not seek in a temporary file of a restore")));
		BufFileWrite(m->file, m->page, BLCKSZ);
		m->nblocks = Max(m->nblocks, m->pageno + 1);
	}
	m->pageno = blk;
	m->dirty = false;
	if (blk >= m->nblocks)
	{
		memset(m->page, 0, BLCKSZ);
		return;
	}
	if (BufFileSeekBlock(m->file, blk) != 0 ||
		BufFileRead(m->file, m->page, BLCKSZ) != BLCKSZ)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read a temporary file of a restore")));
}

/*
 * Read what is known of move i.
 */
static void
move_get(UndoMoves *m, int64 i, MoveInfo *info)
{
	if (m->file == NULL)
	{
		*info = m->mem[i];
		return;
	}
	move_page(m, i / MOVES_PER_BLOCK);
	memcpy(info, m->page + (i % MOVES_PER_BLOCK) * sizeof(MoveInfo), sizeof(MoveInfo));
}

/*
 * Write what is known of move i (i == m->n: a new move).  Past work_mem,
 * the moves go to a temporary file, read and written a block at a time.
 */
static void
move_put(UndoMoves *m, int64 i, const MoveInfo *info)
{
	if (m->file == NULL && i == m->memsize)
	{
		int64		want = Max(64, m->memsize * 2);

		if (want * sizeof(MoveInfo) <= (Size) work_mem * 1024)
		{
			m->mem = m->mem == NULL ? palloc(sizeof(MoveInfo) * want) :
				repalloc(m->mem, sizeof(MoveInfo) * want);
			m->memsize = want;
		}
		else
		{
			m->file = BufFileCreateTemp(false);
			m->page = palloc(BLCKSZ);
			m->pageno = -1;
			for (int64 j = 0; j < i; j++)
			{
				move_page(m, j / MOVES_PER_BLOCK);
				memcpy(m->page + (j % MOVES_PER_BLOCK) * sizeof(MoveInfo),
					   &m->mem[j], sizeof(MoveInfo));
				m->dirty = true;
			}
			if (m->mem != NULL)
				pfree(m->mem);
			m->mem = NULL;
		}
	}
	if (m->file == NULL)
	{
		m->mem[i] = *info;
		return;
	}
	move_page(m, i / MOVES_PER_BLOCK);
	memcpy(m->page + (i % MOVES_PER_BLOCK) * sizeof(MoveInfo), info, sizeof(MoveInfo));
	m->dirty = true;
}

/*
 * Begin a sort of (where a row is, move number) by where the row is.
 */
static Tuplesortstate *
tid_sort_begin(UndoMoves *m)
{
	AttrNumber	attnums[2] = {1, 2};
	Oid			ops[2] = {Int8LessOperator, TIDLessOperator};
	Oid			colls[2] = {InvalidOid, InvalidOid};
	bool		nullsfirst[2] = {false, false};

	return tuplesort_begin_heap(m->tiddesc, 2, attnums, ops, colls, nullsfirst,
								work_mem, NULL, TUPLESORT_NONE);
}

/*
 * Add (where, move number i) to a sort or a tuplestore of them.
 */
static void
tid_put(UndoMoves *m, Tuplesortstate *sort, Tuplestorestate *store,
		const MoveTid *where, int64 i)
{
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	values[0] = Int64GetDatum((int64) where->relid);
	values[1] = PointerGetDatum(&where->tid);
	values[2] = Int64GetDatum(i);
	if (store != NULL)
	{
		tuplestore_putvalues(store, m->tiddesc, values, nulls);
		return;
	}
	ExecClearTuple(m->tidslot);
	memcpy(m->tidslot->tts_values, values, sizeof(values));
	memcpy(m->tidslot->tts_isnull, nulls, sizeof(nulls));
	ExecStoreVirtualTuple(m->tidslot);
	tuplesort_puttupleslot(sort, m->tidslot);
}

/*
 * The next (where, move number) of a sort or a tuplestore; false at the
 * end.
 */
static bool
tid_get(UndoMoves *m, Tuplesortstate *sort, Tuplestorestate *store,
		MoveTid *where, int64 *i)
{
	bool		isnull;

	if (!(store != NULL ?
		  tuplestore_gettupleslot(store, true, false, m->tidslot) :
		  tuplesort_gettupleslot(sort, true, false, m->tidslot, NULL)))
		return false;
	where->relid = (Oid) DatumGetInt64(slot_getattr(m->tidslot, 1, &isnull));
	where->tid = *(ItemPointer) DatumGetPointer(slot_getattr(m->tidslot, 2, &isnull));
	*i = DatumGetInt64(slot_getattr(m->tidslot, 3, &isnull));
	return true;
}

/*
 * Keep the row at hand (an undone UPDATE, judged: u->write says which
 * columns go back; the live row is the one just fetched) as a move, and
 * find what holds its old key now.  "conflict": the judge counted the row
 * as a conflict already.
 */
void
guard_undo_moves_add(RowUndo *u, const ShadowRow *row, bool conflict)
{
	UndoMoves  *m = u->moves;
	const GuardChange *change = u->change;
	int			nk = change->nkeys;
	Datum		target[INDEX_MAX_KEYS];
	MoveInfo	info;
	MemoryContext old;

	if (m == NULL)
	{
		m = u->moves = palloc0(sizeof(UndoMoves));
		m->store = tuplestore_begin_heap(false, false, work_mem);
	}
	memset(&info, 0, sizeof(MoveInfo));
	info.dependent = -1;
	info.counted = conflict;
	info.apply = true;
	info.own.relid = RelationGetRelid(u->ks.found);
	info.own.tid = u->ks.slot->tts_tid;

	/* the whole row: captured before-values, the live values of the rest */
	old = MemoryContextSwitchTo(u->rowcxt);
	memset(u->nulls, true, sizeof(bool) * u->enr_natts);
	for (int k = 0; k < nk; k++)
	{
		u->values[k] = row->keyvalues[k];
		u->nulls[k] = false;
	}
	u->values[nk] = CharGetDatum(guard_undo_opchar[UNDO_MOVE]);
	u->nulls[nk] = false;
	for (int c = 0; c < u->ncols; c++)
	{
		RestoreColumn *col = &u->cols[c];
		int			v = nk + 2 + c;

		/* generated columns too: not inserted, but a key finds the row */
		if (u->write[c])
		{
			if (!row->nulls[col->recorded])
			{
				u->values[v] = row->values[col->recorded];
				u->nulls[v] = false;
			}
		}
		else
		{
			u->values[v] = guard_undo_live(u, c, &u->nulls[v]);
			/* the row is deleted before it is inserted again: no pointers */
			if (!u->nulls[v] && col->typlen == -1 &&
				VARATT_IS_EXTERNAL(DatumGetPointer(u->values[v])))
				u->values[v] = PointerGetDatum(detoast_external_attr((struct varlena *) DatumGetPointer(u->values[v])));
		}
	}
	for (int k = 0; k < nk; k++)
	{
		RestoreColumn *col = &u->cols[u->keycol[k]];

		/* key columns are NOT NULL */
		if (u->nulls[nk + 2 + u->keycol[k]])
			elog(ERROR, "guard: key column \"%s\" of a moved row is null", col->name);
		target[k] = datumCopy(u->values[nk + 2 + u->keycol[k]], col->typbyval,
							  col->typlen);
	}
	tuplestore_putvalues(m->store, u->enrdesc, u->values, u->nulls);
	MemoryContextSwitchTo(old);

	/* what holds its old key now (other than the row itself) */
	if (guard_plan_fetch(u->plan, &u->ks, u->rel, change, target, u->snapshot))
	{
		MoveTid		occupant;

		occupant.relid = RelationGetRelid(u->ks.found);
		occupant.tid = u->ks.slot->tts_tid;
		if (tid_cmp(&occupant, &info.own) != 0)
			info.occupant = occupant;
	}
	move_put(m, m->n, &info);
	m->n++;
}

/* what resolve_inserted() asks the later writes about */
typedef struct InsertedAsk
{
	RowUndo    *u;
	Tuplesortstate *freed;		/* the inserted rows the undo deletes */
} InsertedAsk;

/*
 * guard_later_probe_run() callback of resolve_inserted(): the verdict on an
 * inserted row that was written since.
 */
static void
resolve_inserted_answer(const GuardLaterEntry *entry, const char *data,
						Size len, void *arg)
{
	InsertedAsk *ask = (InsertedAsk *) arg;
	ShadowRow	row;
	MoveTid		where;
	bool		apply;
	bool		replace;

	memset(&row, 0, sizeof(row));
	row.op = GUARD_OP_INSERT;
	memcpy(&where, data, sizeof(MoveTid));
	(void) guard_undo_judge_later(ask->u, &row, entry, &apply, &replace);
	if (apply)
		tid_put(ask->u->moves, ask->freed, NULL, &where, -1);
}

/*
 * Mark the moves whose old key is held by a row the change inserted, which
 * the undo deletes: read the snapshot again for the rows it deletes (only
 * when some old key is held by a row that is not itself moving), sort them
 * by where they are and merge them with "open", the moves whose old key is
 * held by a row that stays, by where that row is.  Inserted rows written
 * since wait for the later writes of their keys.
 */
static void
resolve_inserted(RowUndo *u, Tuplestorestate *open)
{
	UndoMoves  *m = u->moves;
	const GuardChange *change = u->change;
	ShadowReader *reader;
	ShadowRow	row;
	GuardLaterProbe *probe = guard_later_probe_begin(u->later);
	InsertedAsk ask;
	MoveTid		freed;
	MoveTid		occupant;
	int64		i;
	int64		none;
	bool		more;

	ask.u = u;
	ask.freed = tid_sort_begin(m);
	reader = shadow_open(change->change_id, change->natts, change->atttypes,
						 change->keys, change->nkeys, change->inline_chunk);
	while (shadow_next(reader, &row))
	{
		bool		apply;
		bool		replace;
		bool		later;
		MoveTid		where;

		CHECK_FOR_INTERRUPTS();
		if (row.op != GUARD_OP_INSERT ||
			!guard_plan_fetch(u->plan, &u->ks, u->rel, change, row.keyvalues,
							  u->snapshot))
			continue;
		MemoryContextReset(u->rowcxt);
		guard_undo_found(u);
		(void) guard_undo_judge(u, &row, true, &apply, &replace, &later);
		where.relid = RelationGetRelid(u->ks.found);
		where.tid = u->ks.slot->tts_tid;
		if (later)
		{
			MemoryContext old = MemoryContextSwitchTo(u->rowcxt);

			guard_later_probe_add(probe, guard_key_text(change, row.keyvalues),
								  &where, sizeof(MoveTid));
			MemoryContextSwitchTo(old);
		}
		else if (apply)
			tid_put(m, ask.freed, NULL, &where, -1);
	}
	shadow_close(reader);
	guard_later_probe_run(probe, resolve_inserted_answer, &ask);

	tuplesort_performsort(ask.freed);
	tuplestore_rescan(open);
	more = tid_get(m, ask.freed, NULL, &freed, &none);
	while (tid_get(m, NULL, open, &occupant, &i))
	{
		while (more && tid_cmp(&freed, &occupant) < 0)
			more = tid_get(m, ask.freed, NULL, &freed, &none);
		if (more && tid_cmp(&freed, &occupant) == 0)
		{
			MoveInfo	mi;

			move_get(m, i, &mi);
			mi.resolved = true;
			move_put(m, i, &mi);
		}
	}
	tuplesort_end(ask.freed);
}

/*
 * guard_later_probe_run() callback of judge_occupied(): a move whose old
 * key a row that stays holds replaces it if a later change of its own
 * change set put it there, else conflicts.
 */
static void
judge_occupied_answer(const GuardLaterEntry *entry, const char *data,
					  Size len, void *arg)
{
	RowUndo    *u = (RowUndo *) arg;
	MoveInfo	mi;
	int64		i;

	memcpy(&i, data, sizeof(int64));
	move_get(u->moves, i, &mi);
	mi.replace = true;
	if (guard_later_how(entry) != GUARD_LATER_OWN)
	{
		mi.conflict = true;
		mi.apply = (u->mode == GUARD_ON_CONFLICT_OVERWRITE);
	}
	move_put(u->moves, i, &mi);
}

/*
 * Decide, for each move whose old key is held by a row that stays, whether
 * it replaces that row (a later change of its own change set put it there,
 * or overwrite) or conflicts: by the later writes of the key.
 */
static void
judge_occupied(RowUndo *u, TupleTableSlot *slot)
{
	UndoMoves  *m = u->moves;
	int			nk = u->change->nkeys;
	GuardLaterProbe *probe = guard_later_probe_begin(u->later);

	tuplestore_rescan(m->store);
	for (int64 i = 0; tuplestore_gettupleslot(m->store, true, false, slot); i++)
	{
		MoveInfo	mi;
		Datum		target[INDEX_MAX_KEYS];
		MemoryContext old;

		move_get(m, i, &mi);
		if (!OidIsValid(mi.occupant.relid) || mi.resolved)
			continue;
		slot_getallattrs(slot);
		MemoryContextReset(u->rowcxt);
		for (int k = 0; k < nk; k++)
			target[k] = slot->tts_values[nk + 2 + u->keycol[k]];
		old = MemoryContextSwitchTo(u->rowcxt);
		guard_later_probe_add(probe, guard_key_text(u->change, target),
							  &i, sizeof(int64));
		MemoryContextSwitchTo(old);
	}
	guard_later_probe_run(probe, judge_occupied_answer, u);
}

/*
 * Put the moves that happen into the rows to write back, and count the
 * ones that do not.
 */
static void
put_moves(RowUndo *u, TupleTableSlot *slot)
{
	UndoMoves  *m = u->moves;
	int			nk = u->change->nkeys;
	bytea	   *replace_flag = palloc(VARHDRSZ);

	/* an empty bytea: the "m" of a row that replaces the row with its key */
	SET_VARSIZE(replace_flag, VARHDRSZ);
	tuplestore_rescan(m->store);
	for (int64 i = 0; tuplestore_gettupleslot(m->store, true, false, slot); i++)
	{
		MoveInfo	info;
		MoveInfo   *mi = &info;

		move_get(m, i, &info);
		guard_progress_tick();
		slot_getallattrs(slot);
		if (mi->conflict)
		{
			if (!mi->counted)
				u->conflicts++;
			if (u->mode == GUARD_ON_CONFLICT_ABORT &&
				guard_undo_sample_wanted(u, UNDO_MOVE_ORDER + i))
			{
				Datum		target[INDEX_MAX_KEYS];

				for (int k = 0; k < nk; k++)
					target[k] = slot->tts_values[nk + 2 + u->keycol[k]];
				guard_undo_note_conflict(u, UNDO_MOVE_ORDER + i,
										 guard_key_text(u->change, slot->tts_values),
										 guard_key_text(u->change, target));
			}
		}
		if (!mi->apply)
		{
			u->skipped++;
			continue;
		}
		if (mi->replace)
		{
			slot->tts_values[nk + 1] = PointerGetDatum(replace_flag);
			slot->tts_isnull[nk + 1] = false;
			u->replaces = true;
		}
		tuplestore_putvalues(u->rows, u->enrdesc, slot->tts_values, slot->tts_isnull);
		u->napply[UNDO_MOVE]++;
	}
}

/*
 * Find which move's row holds which one's old key: sort the moves by where
 * their rows are and by where the rows holding their old keys are, and
 * merge.  A move whose old key another move's row holds is resolved, and
 * waits for that move (its "dependent"); the others go into "open", by
 * where the row holding their old key is.  Returns how many are open.
 */
static int64
resolve_moves(RowUndo *u, Tuplestorestate *open)
{
	UndoMoves  *m = u->moves;
	Tuplesortstate *byown = tid_sort_begin(m);
	Tuplesortstate *byoccupant = tid_sort_begin(m);
	MoveTid		own;
	MoveTid		occupant;
	int64		i;
	int64		j;
	int64		nopen = 0;
	bool		more;

	for (i = 0; i < m->n; i++)
	{
		MoveInfo	mi;

		move_get(m, i, &mi);
		tid_put(m, byown, NULL, &mi.own, i);
		if (OidIsValid(mi.occupant.relid))
			tid_put(m, byoccupant, NULL, &mi.occupant, i);
	}
	tuplesort_performsort(byown);
	tuplesort_performsort(byoccupant);
	more = tid_get(m, byown, NULL, &own, &j);
	while (tid_get(m, byoccupant, NULL, &occupant, &i))
	{
		MoveInfo	mi;

		CHECK_FOR_INTERRUPTS();
		while (more && tid_cmp(&own, &occupant) < 0)
			more = tid_get(m, byown, NULL, &own, &j);
		if (more && tid_cmp(&own, &occupant) == 0)
		{
			move_get(m, i, &mi);
			mi.resolved = true;
			move_put(m, i, &mi);
			move_get(m, j, &mi);
			mi.dependent = i;
			move_put(m, j, &mi);
		}
		else
		{
			tid_put(m, NULL, open, &occupant, i);
			nopen++;
		}
	}
	tuplesort_end(byown);
	tuplesort_end(byoccupant);
	return nopen;
}

/*
 * After the last row is judged: settle which moves happen (see the file's
 * header), and add them to the rows to write back.  The key scan and the
 * snapshot the rows were judged against are still open.
 */
void
guard_undo_moves_finish(RowUndo *u)
{
	UndoMoves  *m = u->moves;
	Tuplestorestate *open;
	int64		nopen;
	TupleTableSlot *slot;

	if (m == NULL)
		return;
	guard_progress_phase(GUARD_PHASE_CHECKING_MOVES, m->n);

	/* a move whose old key another move's row holds waits for that move */
	m->tiddesc = CreateTemplateTupleDesc(3);
	TupleDescInitEntry(m->tiddesc, 1, "relid", INT8OID, -1, 0);
	TupleDescInitEntry(m->tiddesc, 2, "tid", TIDOID, -1, 0);
	TupleDescInitEntry(m->tiddesc, 3, "move", INT8OID, -1, 0);
	m->tidslot = MakeSingleTupleTableSlot(m->tiddesc, &TTSOpsMinimalTuple);
	open = tuplestore_begin_heap(false, false, work_mem);
	nopen = resolve_moves(u, open);

	/* ... or for the undo of one of the change's inserts */
	if (nopen > 0 && u->napply[UNDO_DELETE_INSERTED] > 0)
		resolve_inserted(u, open);
	tuplestore_end(open);

	slot = MakeSingleTupleTableSlot(u->enrdesc, &TTSOpsMinimalTuple);
	judge_occupied(u, slot);

	/* a move that does not happen keeps its row, and its key, in place */
	for (int64 i = 0; i < m->n; i++)
	{
		MoveInfo	mi;

		move_get(m, i, &mi);
		while (!mi.apply && mi.dependent >= 0)
		{
			MoveInfo	next;
			int64		j = mi.dependent;

			move_get(m, j, &next);
			if (!next.apply)
				break;
			next.conflict = true;
			next.apply = false;
			move_put(m, j, &next);
			mi = next;
		}
	}

	put_moves(u, slot);
	ExecDropSingleTupleTableSlot(slot);
	ExecDropSingleTupleTableSlot(m->tidslot);
	tuplestore_end(m->store);
	if (m->file != NULL)
	{
		BufFileClose(m->file);
		pfree(m->page);
	}
	if (m->mem != NULL)
		pfree(m->mem);
	pfree(m);
	u->moves = NULL;
}
