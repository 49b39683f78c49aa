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
 * The moved rows wait in a tuplestore (it spills to disk) until the last
 * row is judged; memory holds a few bytes per move: where the row is, and
 * what holds its old key.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/rel.h"

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
	MoveInfo   *info;
	int64		n;
	int64		size;
};

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

/* qsort_arg comparators over move numbers: by where the row is ... */
static int
cmp_by_own(const void *a, const void *b, void *arg)
{
	MoveInfo   *info = (MoveInfo *) arg;

	return tid_cmp(&info[*(const int64 *) a].own, &info[*(const int64 *) b].own);
}

/* ... and by the row that holds its old key */
static int
cmp_by_occupant(const void *a, const void *b, void *arg)
{
	MoveInfo   *info = (MoveInfo *) arg;

	return tid_cmp(&info[*(const int64 *) a].occupant,
				   &info[*(const int64 *) b].occupant);
}

/*
 * The move (an index into "order", sorted by cmp_by_own or cmp_by_occupant
 * as "by_own" says) whose row is (or whose occupant is) "tid", or -1.
 */
static int64
find_move(MoveInfo *info, int64 *order, int64 n, const MoveTid *tid,
		  bool by_own)
{
	int64		lo = 0;
	int64		hi = n - 1;

	while (lo <= hi)
	{
		int64		mid = lo + (hi - lo) / 2;
		MoveInfo   *mi = &info[order[mid]];
		int			c = tid_cmp(by_own ? &mi->own : &mi->occupant, tid);

		if (c == 0)
			return order[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
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
	MoveInfo   *info;
	MemoryContext old;

	if (m == NULL)
	{
		m = u->moves = palloc0(sizeof(UndoMoves));
		m->store = tuplestore_begin_heap(false, false, work_mem);
	}
	if (m->n == m->size)
	{
		m->size = Max(64, m->size * 2);
		m->info = m->info == NULL ?
			MemoryContextAllocHuge(CurrentMemoryContext, sizeof(MoveInfo) * m->size) :
			repalloc_huge(m->info, sizeof(MoveInfo) * m->size);
	}
	info = &m->info[m->n];
	memset(info, 0, sizeof(MoveInfo));
	info->dependent = -1;
	info->counted = conflict;
	info->own.relid = RelationGetRelid(u->ks.found);
	info->own.tid = u->ks.slot->tts_tid;

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
	if (guard_keyscan_fetch(&u->ks, target, u->snapshot))
	{
		MoveTid		occupant;

		occupant.relid = RelationGetRelid(u->ks.found);
		occupant.tid = u->ks.slot->tts_tid;
		if (tid_cmp(&occupant, &info->own) != 0)
			info->occupant = occupant;
	}
	m->n++;
}

/* what resolve_inserted() asks the later writes about */
typedef struct InsertedAsk
{
	RowUndo    *u;
	int64	   *byoccupant;
	int64		nopen;
} InsertedAsk;

/*
 * A row the change inserted, whose undo deletes it, frees the old key of
 * the move it is the occupant of, if any.
 */
static void
resolve_occupant(RowUndo *u, int64 *byoccupant, int64 nopen,
				 const MoveTid *where)
{
	int64		i = find_move(u->moves->info, byoccupant, nopen, where, false);

	if (i >= 0)
		u->moves->info[i].resolved = true;
}

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
		resolve_occupant(ask->u, ask->byoccupant, ask->nopen, &where);
}

/*
 * Mark the moves whose old key is held by a row the change inserted, which
 * the undo deletes: read the snapshot again for them (only when some old
 * key is held by a row that is not itself moving).  Inserted rows written
 * since wait for the later writes of their keys.
 */
static void
resolve_inserted(RowUndo *u, int64 *byoccupant, int64 nopen)
{
	const GuardChange *change = u->change;
	ShadowReader *reader;
	ShadowRow	row;
	GuardLaterProbe *probe = guard_later_probe_begin(u->later);
	InsertedAsk ask;

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
			!guard_keyscan_fetch(&u->ks, row.keyvalues, u->snapshot))
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
			resolve_occupant(u, byoccupant, nopen, &where);
	}
	shadow_close(reader);
	ask.u = u;
	ask.byoccupant = byoccupant;
	ask.nopen = nopen;
	guard_later_probe_run(probe, resolve_inserted_answer, &ask);
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
	MoveInfo   *mi;
	int64		i;

	memcpy(&i, data, sizeof(int64));
	mi = &u->moves->info[i];
	if (guard_later_how(entry) == GUARD_LATER_OWN)
		return;
	mi->conflict = true;
	mi->apply = (u->mode == GUARD_ON_CONFLICT_OVERWRITE);
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
		MoveInfo   *mi = &m->info[i];
		Datum		target[INDEX_MAX_KEYS];
		MemoryContext old;

		if (!OidIsValid(mi->occupant.relid) || mi->resolved)
			continue;
		slot_getallattrs(slot);
		MemoryContextReset(u->rowcxt);
		for (int k = 0; k < nk; k++)
			target[k] = slot->tts_values[nk + 2 + u->keycol[k]];
		mi->replace = true;
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
		MoveInfo   *mi = &m->info[i];

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
 * After the last row is judged: settle which moves happen (see the file's
 * header), and add them to the rows to write back.  The key scan and the
 * snapshot the rows were judged against are still open.
 */
void
guard_undo_moves_finish(RowUndo *u)
{
	UndoMoves  *m = u->moves;
	int64	   *order;
	int64		nopen = 0;
	TupleTableSlot *slot;

	if (m == NULL)
		return;
	guard_progress_phase(GUARD_PHASE_CHECKING_MOVES, m->n);
	for (int64 i = 0; i < m->n; i++)
		m->info[i].apply = true;

	/* a move whose old key another move's row holds waits for that move */
	order = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int64) * m->n);
	for (int64 i = 0; i < m->n; i++)
		order[i] = i;
	qsort_arg(order, m->n, sizeof(int64), cmp_by_own, m->info);
	for (int64 i = 0; i < m->n; i++)
	{
		MoveInfo   *mi = &m->info[i];
		int64		j;

		if (!OidIsValid(mi->occupant.relid))
			continue;
		j = find_move(m->info, order, m->n, &mi->occupant, true);
		if (j >= 0)
		{
			mi->resolved = true;
			m->info[j].dependent = i;
		}
		else
			order[nopen++] = i; /* reused: the open ones, in front */
	}

	/* ... or for the undo of one of the change's inserts */
	if (nopen > 0 && u->napply[UNDO_DELETE_INSERTED] > 0)
	{
		qsort_arg(order, nopen, sizeof(int64), cmp_by_occupant, m->info);
		resolve_inserted(u, order, nopen);
	}
	pfree(order);

	slot = MakeSingleTupleTableSlot(u->enrdesc, &TTSOpsMinimalTuple);
	judge_occupied(u, slot);

	/* a move that does not happen keeps its row, and its key, in place */
	for (int64 i = 0; i < m->n; i++)
	{
		for (int64 j = i; !m->info[j].apply && m->info[j].dependent >= 0;)
		{
			MoveInfo   *next = &m->info[m->info[j].dependent];

			if (!next->apply)
				break;
			next->conflict = true;
			next->apply = false;
			j = m->info[j].dependent;
		}
	}

	put_moves(u, slot);
	ExecDropSingleTupleTableSlot(slot);
	tuplestore_end(m->store);
	pfree(m->info);
	pfree(m);
	u->moves = NULL;
}
