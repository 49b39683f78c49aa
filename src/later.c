/*-------------------------------------------------------------------------
 *
 * later.c
 *	  What the changes recorded after the change being undone wrote, by key,
 *	  found by sorting so that memory stays within work_mem.
 *
 * When an undone row is no longer as the change left it, row undo asks
 * which columns later changes wrote to its key (only those are conflicts)
 * and which change sets wrote them (for the error).  Both sides are sorted
 * by key and merged, as a merge join does:
 *
 *	- the later writes: one tuple per row of the snapshots of the changes
 *	  recorded after the change to the same table (its partitions and
 *	  partition ancestors included), leaving out the change sets being
 *	  restored together.  A tuple holds the row's key as text, how its
 *	  change stands to the one undone (GUARD_LATER_*), its change set, and
 *	  the columns it wrote, as a bitmap over the undone change's columns
 *	  (matched by name).  Sorted by key once, on first need, and read again
 *	  for each batch of questions;
 *	- the questions (a GuardLaterProbe): keys whose rows wait for an answer,
 *	  each with an opaque payload (row undo packs the row in it), sorted by
 *	  key.
 *
 * guard_later_probe_run() walks both in key order and calls back once per
 * question.  Both are tuplesorts (they spill past work_mem), and memory
 * holds the writes of one key at a time.
 *
 * guard.diff() asks about keys one at a time, as it emits rows in snapshot
 * order (only on a table with row-level security): guard_later_each_key()
 * gives it every key written since, for an index of its own.
 *
 * Later changes of the change's own change set (when it is undone alone)
 * are kept apart from the others: they are not conflicts of it; nor are
 * the writes of a restore that undid an older change of the same change
 * set, which already put back the value from before the change set.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/partition.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/tuplesort.h"

#include "guard.h"

/* at most this many change sets are kept per key, for error details */
#define MAX_CHANGESETS_PER_KEY	3

/* later changes are read in batches of this many records */
#define LATER_BATCH		1000

/*
 * Columns of a later write: key, seq, how, changeset, cols.  "how" is the
 * GUARD_LATER_* of its change, with LATER_WROTE_NOTHING added for a row
 * that captured no column.
 */
#define LATER_WROTE_NOTHING	0x100
#define LW_KEY		1
#define LW_SEQ		2
#define LW_HOW		3
#define LW_CHANGESET 4
#define LW_COLS		5
#define LW_NATTS	5

/* columns of a question: key, seq, data */
#define LQ_KEY		1
#define LQ_SEQ		2
#define LQ_DATA		3
#define LQ_NATTS	3

/* what later changes wrote to one key */
struct GuardLaterEntry
{
	int			how;			/* GUARD_LATER_* of the rows that wrote a
								 * column */
	uint8	   *cols[3];		/* per how (OTHER, OWN, SETTLED): the undone
								 * change's columns they wrote */
	int			nchangesets;	/* other change sets that wrote the key */
	int64		changesets[MAX_CHANGESETS_PER_KEY];
};

struct GuardLaterWrites
{
	const GuardChange *change;
	Datum		exclude;		/* int8[]: the change sets restored together */
	Datum		restoring;		/* int8[]: the changes restored together */
	MemoryContext cxt;			/* holds all of it */
	int			nbytes;			/* bytes of a column bitmap */
	TupleDesc	desc;			/* of a later write */
	Tuplesortstate *sort;		/* the later writes by key; NULL until built */
	TupleTableSlot *slot;		/* reads it */
	HTAB	   *names;			/* the undone change's columns by name */
};

struct GuardLaterProbe
{
	GuardLaterWrites *later;
	TupleDesc	desc;			/* of a question */
	Tuplesortstate *sort;		/* the questions by key */
	TupleTableSlot *slot;
	MemoryContext scratch;		/* reset for each question added */
	int64		n;
};

/* an entry of GuardLaterWrites.names */
typedef struct LaterName
{
	char		name[NAMEDATALEN];
	int			attno;			/* recorded attnum - 1 */
} LaterName;

/* one later change, and how it stands to the change being undone */
typedef struct LaterChange
{
	int64		change_id;
	int			how;			/* GUARD_LATER_* */
} LaterChange;

/*
 * The relation and all its partitions and partition ancestors, as an oid[]:
 * a later write to the same rows may have been recorded on any of them.
 */
Datum
guard_related_relids(Oid relid)
{
	List	   *rels = find_all_inheritors(relid, NoLock, NULL);
	List	   *ancestors = get_partition_ancestors(relid);
	ListCell   *lc;
	Datum	   *elems;
	int			n = 0;

	rels = list_concat(rels, ancestors);
	elems = palloc(sizeof(Datum) * list_length(rels));
	foreach(lc, rels)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	return PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid),
										   true, TYPALIGN_INT));
}

/*
 * A key text as a bytea, in the current memory context.
 */
static bytea *
key_bytea(const char *key)
{
	size_t		len = strlen(key);
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), key, len);
	return b;
}

/*
 * Compare two keys as byteaLT orders them: bytes, then length.
 */
static int
key_cmp(Datum a, Datum b)
{
	bytea	   *x = DatumGetByteaPP(a);
	bytea	   *y = DatumGetByteaPP(b);
	int			xl = VARSIZE_ANY_EXHDR(x);
	int			yl = VARSIZE_ANY_EXHDR(y);
	int			c = memcmp(VARDATA_ANY(x), VARDATA_ANY(y), Min(xl, yl));

	if (c != 0)
		return c;
	return (xl > yl) - (xl < yl);
}

/*
 * Begin a sort by (key bytea, seq int8), the first two columns of "desc".
 */
static Tuplesortstate *
key_sort_begin(TupleDesc desc, int sortopt)
{
	AttrNumber	attnums[2] = {1, 2};
	Oid			ops[2] = {ByteaLessOperator, Int8LessOperator};
	Oid			colls[2] = {InvalidOid, InvalidOid};
	bool		nullsfirst[2] = {false, false};

	return tuplesort_begin_heap(desc, 2, attnums, ops, colls, nullsfirst,
								work_mem, NULL, sortopt);
}

/*
 * Prepare to find what the changes recorded after "change" wrote to the
 * same table (see later_changes() for which ones): nothing is read until a
 * question is asked.  Lives in the current memory context, until
 * guard_later_writes_end().
 */
GuardLaterWrites *
guard_later_writes_begin(const GuardChange *change, Datum exclude,
						 Datum restoring)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "guard later writes",
											  ALLOCSET_DEFAULT_SIZES);
	GuardLaterWrites *later = MemoryContextAllocZero(cxt, sizeof(GuardLaterWrites));

	later->change = change;
	later->exclude = exclude;
	later->restoring = restoring;
	later->cxt = cxt;
	later->nbytes = (change->natts + 7) / 8;
	return later;
}

/*
 * Free the later writes and their sort (and its temporary files).
 */
void
guard_later_writes_end(GuardLaterWrites *later)
{
	if (later == NULL)
		return;
	if (later->sort != NULL)
		tuplesort_end(later->sort);
	MemoryContextDelete(later->cxt);
}

/*
 * The next batch of changes recorded after "change" on the same table,
 * after change "from", oldest first, in the current memory context: those
 * outside the change sets "exclude" being restored together
 * (GUARD_LATER_OTHER, or GUARD_LATER_SETTLED for a restore that undid an
 * older change of the same change set), and the later changes of the
 * change's own change set that are not among the changes "restoring"
 * undone by the same restore (GUARD_LATER_OWN).  Read in batches so that
 * a table written by millions of small changes since costs no memory.
 */
static List *
later_changes(GuardLaterWrites *later, int64 from)
{
	const GuardChange *change = later->change;
	GuardAsRole owner;
	Oid			types[6] = {OIDARRAYOID, INT8OID, INT8ARRAYOID, INT8OID, INT8ARRAYOID, INT8OID};
	Datum		values[6];
	List	   *ids = NIL;
	MemoryContext outer = CurrentMemoryContext;

	values[0] = guard_related_relids(change->relid);
	values[1] = Int64GetDatum(change->change_id);
	values[2] = later->exclude;
	values[3] = Int64GetDatum(change->changeset_id);
	values[4] = later->restoring;
	values[5] = Int64GetDatum(from);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT c.change_id, CASE WHEN c.changeset_id = $4 THEN " CppAsString2(GUARD_LATER_OWN)
				  "  WHEN EXISTS (SELECT FROM guard.change o WHERE o.restored_by = c.changeset_id"
				  "   AND o.changeset_id = $4 AND o.change_id < $2) THEN " CppAsString2(GUARD_LATER_SETTLED)
				  "  ELSE " CppAsString2(GUARD_LATER_OTHER) " END"
				  " FROM guard.change c"
				  " WHERE c.relid = ANY ($1) AND c.change_id > $6"
				  " AND (c.changeset_id <> ALL ($3)"
				  "  OR (c.changeset_id = $4 AND c.change_id <> ALL ($5)))"
				  " ORDER BY c.change_id LIMIT " CppAsString2(LATER_BATCH),
				  6, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		HeapTuple	tuple = SPI_tuptable->vals[i];
		MemoryContext old = MemoryContextSwitchTo(outer);
		LaterChange *lc = palloc(sizeof(LaterChange));

		lc->change_id = DatumGetInt64(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 1, &isnull));
		lc->how = DatumGetInt32(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 2, &isnull));
		ids = lappend(ids, lc);
		MemoryContextSwitchTo(old);
	}
	guard_as_role_end(&owner);
	return ids;
}

/*
 * The undone change's columns by name, for matching the columns of later
 * changes (whose layouts may differ) to them.
 */
static void
later_names(GuardLaterWrites *later)
{
	const GuardChange *change = later->change;
	HASHCTL		ctl;

	ctl.keysize = NAMEDATALEN;
	ctl.entrysize = sizeof(LaterName);
	ctl.hcxt = later->cxt;
	later->names = hash_create("guard later columns", Max(change->natts, 8), &ctl,
							   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	for (int i = 0; i < change->natts; i++)
	{
		LaterName  *entry;
		char		name[NAMEDATALEN];

		if (change->attnames[i] == NULL)
			continue;
		strlcpy(name, change->attnames[i], NAMEDATALEN);
		entry = hash_search(later->names, name, HASH_ENTER, NULL);
		entry->attno = i;
	}
}

/*
 * For a later change: per attnum - 1 of its layout, the undone change's
 * column of the same name (-1: none), and whether it has a name at all
 * (-2: a dropped column).
 */
static int *
later_map(GuardLaterWrites *later, const GuardChange *lchange)
{
	int		   *map = palloc(sizeof(int) * Max(lchange->natts, 1));

	for (int j = 0; j < lchange->natts; j++)
	{
		char		name[NAMEDATALEN];
		LaterName  *entry;

		map[j] = -2;
		if (lchange->attnames[j] == NULL)
			continue;
		strlcpy(name, lchange->attnames[j], NAMEDATALEN);
		entry = hash_search(later->names, name, HASH_FIND, NULL);
		map[j] = entry ? entry->attno : -1;
	}
	return map;
}

/*
 * Sort the rows of one later change into the later writes: per row its
 * key, how the change stands to the one undone ("how", marked when the
 * row captured no column: it names its change set but wrote nothing), the
 * change set, and the undone change's columns it captured (all of them
 * for an INSERT).
 */
static void
later_sort_change(GuardLaterWrites *later, const GuardChange *lchange,
				  int how, int64 *seq, MemoryContext rowcxt)
{
	int		   *map = later_map(later, lchange);
	ShadowReader *reader;
	ShadowRow	row;
	TupleTableSlot *slot = later->slot;

	reader = shadow_open(lchange->change_id, lchange->natts, lchange->atttypes,
						 lchange->keys, lchange->nkeys, lchange->inline_chunk);
	while (shadow_next(reader, &row))
	{
		MemoryContext old;
		bytea	   *cols;
		bool		some = false;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(rowcxt);
		old = MemoryContextSwitchTo(rowcxt);
		cols = palloc0(VARHDRSZ + later->nbytes);
		SET_VARSIZE(cols, VARHDRSZ + later->nbytes);
		for (int j = 0; j < row.natts; j++)
		{
			if ((!row.captured[j] && row.op != GUARD_OP_INSERT) || map[j] == -2)
				continue;
			some = true;
			if (map[j] >= 0)
				((uint8 *) VARDATA(cols))[map[j] / 8] |= 1 << (map[j] % 8);
		}
		ExecClearTuple(slot);
		slot->tts_values[LW_KEY - 1] =
			PointerGetDatum(key_bytea(guard_key_text(lchange, row.keyvalues)));
		slot->tts_values[LW_SEQ - 1] = Int64GetDatum((*seq)++);
		slot->tts_values[LW_HOW - 1] = Int32GetDatum(how | (some ? 0 : LATER_WROTE_NOTHING));
		slot->tts_values[LW_CHANGESET - 1] = Int64GetDatum(lchange->changeset_id);
		slot->tts_values[LW_COLS - 1] = PointerGetDatum(cols);
		memset(slot->tts_isnull, false, sizeof(bool) * LW_NATTS);
		ExecStoreVirtualTuple(slot);
		tuplesort_puttupleslot(later->sort, slot);
		MemoryContextSwitchTo(old);
		guard_progress_tick();
	}
	shadow_close(reader);
}

/*
 * Read and sort the later writes, on first need.  Only the writes of the
 * rows being sorted, one later change record and a batch of change ids are
 * in memory at a time, besides the sort's work_mem.
 */
static void
later_build(GuardLaterWrites *later)
{
	MemoryContext old = MemoryContextSwitchTo(later->cxt);
	MemoryContext batchcxt;
	MemoryContext changecxt;
	MemoryContext rowcxt;
	int64		from = later->change->change_id;
	int64		seq = 0;
	List	   *ids;

	guard_progress_phase(GUARD_PHASE_READING_LATER, -1);
	later->desc = CreateTemplateTupleDesc(LW_NATTS);
	TupleDescInitEntry(later->desc, LW_KEY, "key", BYTEAOID, -1, 0);
	TupleDescInitEntry(later->desc, LW_SEQ, "seq", INT8OID, -1, 0);
	TupleDescInitEntry(later->desc, LW_HOW, "how", INT4OID, -1, 0);
	TupleDescInitEntry(later->desc, LW_CHANGESET, "changeset", INT8OID, -1, 0);
	TupleDescInitEntry(later->desc, LW_COLS, "cols", BYTEAOID, -1, 0);
	later->sort = key_sort_begin(later->desc, TUPLESORT_RANDOMACCESS);
	later->slot = MakeSingleTupleTableSlot(later->desc, &TTSOpsVirtual);
	later_names(later);

	batchcxt = AllocSetContextCreate(later->cxt, "guard later batch",
									 ALLOCSET_DEFAULT_SIZES);
	changecxt = AllocSetContextCreate(later->cxt, "guard later change",
									  ALLOCSET_DEFAULT_SIZES);
	rowcxt = AllocSetContextCreate(later->cxt, "guard later row",
								   ALLOCSET_DEFAULT_SIZES);
	do
	{
		ListCell   *lc;

		MemoryContextReset(batchcxt);
		MemoryContextSwitchTo(batchcxt);
		ids = later_changes(later, from);
		foreach(lc, ids)
		{
			LaterChange *lchange = lfirst(lc);
			GuardChange change;

			from = lchange->change_id;
			MemoryContextReset(changecxt);
			MemoryContextSwitchTo(changecxt);
			if (guard_change_read(lchange->change_id, &change))
				later_sort_change(later, &change, lchange->how, &seq, rowcxt);
		}
	} while (list_length(ids) == LATER_BATCH);

	MemoryContextSwitchTo(later->cxt);
	MemoryContextDelete(batchcxt);
	MemoryContextDelete(changecxt);
	MemoryContextDelete(rowcxt);
	tuplesort_performsort(later->sort);
	/* from now on the slot reads the sorted writes */
	ExecDropSingleTupleTableSlot(later->slot);
	later->slot = MakeSingleTupleTableSlot(later->desc, &TTSOpsMinimalTuple);
	MemoryContextSwitchTo(old);
}

/*
 * Begin a batch of questions about keys.  Lives in the current memory
 * context until guard_later_probe_run().
 */
GuardLaterProbe *
guard_later_probe_begin(GuardLaterWrites *later)
{
	GuardLaterProbe *probe = palloc0(sizeof(GuardLaterProbe));

	probe->later = later;
	probe->desc = CreateTemplateTupleDesc(LQ_NATTS);
	TupleDescInitEntry(probe->desc, LQ_KEY, "key", BYTEAOID, -1, 0);
	TupleDescInitEntry(probe->desc, LQ_SEQ, "seq", INT8OID, -1, 0);
	TupleDescInitEntry(probe->desc, LQ_DATA, "data", BYTEAOID, -1, 0);
	probe->sort = key_sort_begin(probe->desc, TUPLESORT_NONE);
	probe->slot = MakeSingleTupleTableSlot(probe->desc, &TTSOpsVirtual);
	probe->scratch = AllocSetContextCreate(CurrentMemoryContext,
										   "guard later question",
										   ALLOCSET_SMALL_SIZES);
	return probe;
}

/*
 * Ask what later changes wrote to "key" (as guard_key_text() writes it);
 * "data" (len bytes) comes back with the answer.  Questions about the same
 * key are answered in the order they were asked.
 */
void
guard_later_probe_add(GuardLaterProbe *probe, const char *key,
					  const void *data, Size len)
{
	MemoryContext old;
	bytea	   *payload;

	MemoryContextReset(probe->scratch);
	old = MemoryContextSwitchTo(probe->scratch);
	payload = palloc(VARHDRSZ + len);
	SET_VARSIZE(payload, VARHDRSZ + len);
	if (len > 0)
		memcpy(VARDATA(payload), data, len);
	ExecClearTuple(probe->slot);
	probe->slot->tts_values[LQ_KEY - 1] = PointerGetDatum(key_bytea(key));
	probe->slot->tts_values[LQ_SEQ - 1] = Int64GetDatum(probe->n++);
	probe->slot->tts_values[LQ_DATA - 1] = PointerGetDatum(payload);
	memset(probe->slot->tts_isnull, false, sizeof(bool) * LQ_NATTS);
	ExecStoreVirtualTuple(probe->slot);
	tuplesort_puttupleslot(probe->sort, probe->slot);
	MemoryContextSwitchTo(old);
}

/*
 * Add one later write to the entry of its key.
 */
static void
later_add_write(GuardLaterWrites *later, GuardLaterEntry *entry,
				TupleTableSlot *slot)
{
	bool		isnull;
	int			how = DatumGetInt32(slot_getattr(slot, LW_HOW, &isnull));
	int64		changeset = DatumGetInt64(slot_getattr(slot, LW_CHANGESET, &isnull));
	bool		wrote = (how & LATER_WROTE_NOTHING) == 0;
	int			list;

	how &= ~LATER_WROTE_NOTHING;
	list = (how == GUARD_LATER_OTHER) ? 0 : (how == GUARD_LATER_OWN) ? 1 : 2;
	if (wrote)
	{
		bytea	   *cols = DatumGetByteaPP(slot_getattr(slot, LW_COLS, &isnull));
		const uint8 *bits = (const uint8 *) VARDATA_ANY(cols);

		entry->how |= how;
		if (entry->cols[list] == NULL)
			entry->cols[list] = palloc0(Max(later->nbytes, 1));
		for (int b = 0; b < later->nbytes && b < VARSIZE_ANY_EXHDR(cols); b++)
			entry->cols[list][b] |= bits[b];
	}

	/* another change set: name it (the first few), whatever it wrote */
	if (how == GUARD_LATER_OTHER && entry->nchangesets < MAX_CHANGESETS_PER_KEY)
	{
		bool		have = false;

		for (int i = 0; i < entry->nchangesets; i++)
			have |= (entry->changesets[i] == changeset);
		if (!have)
			entry->changesets[entry->nchangesets++] = changeset;
	}
}

/*
 * Answer every question of the batch, in key order: "visit" gets what
 * later changes wrote to the key (NULL: nothing) and the question's data.
 * The later writes are read and sorted on the first batch that has
 * questions.  Ends the batch.
 */
void
guard_later_probe_run(GuardLaterProbe *probe, GuardLaterVisit visit, void *arg)
{
	GuardLaterWrites *later = probe->later;
	MemoryContext entrycxt;
	GuardLaterEntry entry;
	bool		have_entry = false;
	bytea	   *entrykey = NULL;
	bool		more;

	tuplesort_performsort(probe->sort);
	if (probe->n > 0)
	{
		if (later->sort == NULL)
			later_build(later);
		else
			tuplesort_rescan(later->sort);
		guard_progress_phase(GUARD_PHASE_CHECKING_LATER, probe->n);
		ExecDropSingleTupleTableSlot(probe->slot);
		probe->slot = MakeSingleTupleTableSlot(probe->desc, &TTSOpsMinimalTuple);
		more = tuplesort_gettupleslot(later->sort, true, false, later->slot, NULL);
		entrycxt = AllocSetContextCreate(CurrentMemoryContext, "guard later entry",
										 ALLOCSET_SMALL_SIZES);
		while (tuplesort_gettupleslot(probe->sort, true, false, probe->slot, NULL))
		{
			bool		isnull;
			Datum		key = slot_getattr(probe->slot, LQ_KEY, &isnull);
			bytea	   *data = DatumGetByteaPP(slot_getattr(probe->slot, LQ_DATA, &isnull));

			CHECK_FOR_INTERRUPTS();
			if (entrykey == NULL || key_cmp(key, PointerGetDatum(entrykey)) != 0)
			{
				MemoryContext old;

				/* a new key: gather its later writes */
				MemoryContextReset(entrycxt);
				old = MemoryContextSwitchTo(entrycxt);
				entrykey = DatumGetByteaPCopy(key);
				memset(&entry, 0, sizeof(entry));
				have_entry = false;
				while (more && key_cmp(slot_getattr(later->slot, LW_KEY, &isnull), key) < 0)
					more = tuplesort_gettupleslot(later->sort, true, false, later->slot, NULL);
				while (more && key_cmp(slot_getattr(later->slot, LW_KEY, &isnull), key) == 0)
				{
					later_add_write(later, &entry, later->slot);
					have_entry = true;
					more = tuplesort_gettupleslot(later->sort, true, false, later->slot, NULL);
				}
				MemoryContextSwitchTo(old);
			}
			visit(have_entry ? &entry : NULL, VARDATA_ANY(data),
				  VARSIZE_ANY_EXHDR(data), arg);
			guard_progress_tick();
		}
		MemoryContextDelete(entrycxt);
	}
	tuplesort_end(probe->sort);
	ExecDropSingleTupleTableSlot(probe->slot);
	MemoryContextDelete(probe->scratch);
	pfree(probe);
}

/*
 * Visit every key later changes wrote, in key order, with what they wrote
 * to it: for a caller that asks about keys one at a time, in an order of
 * its own (guard.diff()), and keeps what it needs.
 */
void
guard_later_each_key(GuardLaterWrites *later, GuardLaterKeyVisit visit,
					 void *arg)
{
	MemoryContext keycxt = AllocSetContextCreate(CurrentMemoryContext,
												 "guard later key",
												 ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(keycxt);
	GuardLaterEntry entry;
	char	   *key = NULL;
	bool		isnull;

	if (later->sort == NULL)
		later_build(later);
	else
		tuplesort_rescan(later->sort);
	for (;;)
	{
		bool		more = tuplesort_gettupleslot(later->sort, true, false, later->slot, NULL);
		bytea	   *k = more ? DatumGetByteaPP(slot_getattr(later->slot, LW_KEY, &isnull)) : NULL;

		if (key != NULL && (!more || VARSIZE_ANY_EXHDR(k) != strlen(key) ||
							memcmp(VARDATA_ANY(k), key, strlen(key)) != 0))
		{
			visit(key, &entry, arg);
			MemoryContextReset(keycxt);
			key = NULL;
		}
		if (!more)
			break;
		if (key == NULL)
		{
			key = text_to_cstring((text *) k);
			memset(&entry, 0, sizeof(entry));
		}
		later_add_write(later, &entry, later->slot);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(keycxt);
}

/*
 * How later changes wrote column "attno" (attnum - 1 in the undone change's
 * layout) of the entry's key: an OR of GUARD_LATER_* bits, 0 if none did
 * (entry may be NULL: nothing wrote the key).
 */
int
guard_later_wrote(const GuardLaterEntry *entry, int attno)
{
	int			how = 0;

	if (entry == NULL || attno < 0)
		return 0;
	for (int list = 0; list < 3; list++)
	{
		if (entry->cols[list] != NULL &&
			(entry->cols[list][attno / 8] & (1 << (attno % 8))) != 0)
			how |= (list == 0) ? GUARD_LATER_OTHER :
				(list == 1) ? GUARD_LATER_OWN : GUARD_LATER_SETTLED;
	}
	return how;
}

/*
 * How later changes wrote the entry's key, whatever the column: an OR of
 * GUARD_LATER_* bits (0 for a NULL entry).
 */
int
guard_later_how(const GuardLaterEntry *entry)
{
	return entry == NULL ? 0 : entry->how;
}

/*
 * The (first few, at most "max") other change sets that wrote the entry's
 * key, oldest change first, into ids[]; returns how many.
 */
int
guard_later_changesets(const GuardLaterEntry *entry, int64 *ids, int max)
{
	int			n = 0;

	for (int i = 0; entry != NULL && i < entry->nchangesets && n < max; i++)
		ids[n++] = entry->changesets[i];
	return n;
}
