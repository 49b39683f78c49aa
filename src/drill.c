/*-------------------------------------------------------------------------
 *
 * drill.c
 *	  guard.verify_restore(): the restore drill.
 *
 * The drill restores a change set as a dry run (restore.c's driver, in a
 * subtransaction, conflicts skipped), and before the subtransaction is
 * rolled back checks that every row the change set captured is back to its
 * before-image: present or absent as before it, and each captured column
 * equal to its oldest before-value, following rows whose keys the change
 * set moved (shifted, swapped, changed twice) back to the key they had.
 * It reports, per change, how many rows it compared and how many matched.
 * Nothing it does survives the call.
 *
 * Only the oldest change that captured a key (or a column of it) decides
 * about it.  Rather than remember every key compared, the drill sorts: each
 * captured row becomes a claim on the key it must be found at (or be absent
 * from), ordered by change (oldest first), pass and position; claims on the
 * same key are then judged together, the first one deciding, and the
 * verdicts sorted back by change and row to count them.  Sorts spill past
 * work_mem, so memory does not grow with the rows of the change set; what
 * does is one entry per change, and one per key that a change other than
 * the last moved (to follow the younger changes' rows back to the key they
 * had).
 *
 * Where the dry run cannot write (a hot standby, a read-only transaction),
 * it only plans the restore (undo_plan.c), and the drill compares the
 * planned write-back, read through the plan's overlay of the tables, with
 * the before-images.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplesort.h"
#include "utils/tuplestore.h"

#include "drill.h"

PG_FUNCTION_INFO_V1(guard_verify_restore);

/* an entry of the moved keys: the key a row has now -> the one it had first */
typedef struct MovedKey
{
	char	   *text;			/* hash key */
	char	   *origtext;
	Datum	   *origvalues;
} MovedKey;

/* a key move of one change: applied to d->moved once the change is read */
typedef struct DrillMove
{
	char	   *from;			/* the key before the change */
	char	   *to;				/* ... and after it */
	char	   *origtext;		/* the key the row had before the change set */
	Datum	   *origvalues;
} DrillMove;

/*
 * The hash of a text key, for hashes whose key is a pointer to it.
 */
static uint32
text_key_hash(const void *key, Size keysize)
{
	const char *s = *(char *const *) key;

	return hash_bytes((const unsigned char *) s, strlen(s));
}

/*
 * Compare two text keys (0: equal).
 */
static int
text_key_match(const void *a, const void *b, Size keysize)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * Begin a heap tuplesort on the first "nkeys" columns of "desc", each
 * ordered by its type's "<" (given).
 */
static Tuplesortstate *
drill_sort(TupleDesc desc, int nkeys, Oid *ops)
{
	AttrNumber	attnums[3] = {1, 2, 3};
	Oid			colls[3] = {InvalidOid, InvalidOid, InvalidOid};
	bool		nullsfirst[3] = {false, false, false};

	return tuplesort_begin_heap(desc, nkeys, attnums, ops, colls, nullsfirst,
								work_mem, NULL, TUPLESORT_NONE);
}

/*
 * The key a row at key "keytext" had before the change set (an older
 * change of it may have moved the row): its text and values.
 */
static void
drill_original_key(Drill *d, const char *keytext, Datum *values,
				   const char **origtext, Datum **origvalues)
{
	MovedKey   *entry = hash_search(d->moved, &keytext, HASH_FIND, NULL);

	*origtext = entry ? entry->origtext : keytext;
	*origvalues = entry ? entry->origvalues : values;
}

/*
 * Copy key values into the drill's context.
 */
static Datum *
copy_key(DrillChange *dc, Datum *key, MemoryContext cxt)
{
	const GuardChange *change = &dc->change;
	Datum	   *copy = MemoryContextAlloc(cxt, sizeof(Datum) * Max(change->nkeys, 1));
	MemoryContext old = MemoryContextSwitchTo(cxt);

	for (int k = 0; k < change->nkeys; k++)
	{
		int			i = change->keys[k] - 1;

		copy[k] = datumCopy(key[k], dc->typbyval[i], dc->typlen[i]);
	}
	MemoryContextSwitchTo(old);
	return copy;
}

/*
 * The key an updated row had before the change.
 */
static Datum *
before_key(const GuardChange *change, const ShadowRow *row)
{
	Datum	   *key = palloc(sizeof(Datum) * Max(change->nkeys, 1));

	for (int k = 0; k < change->nkeys; k++)
	{
		int			i = change->keys[k] - 1;

		key[k] = row->captured[i] ? row->values[i] : row->keyvalues[k];
	}
	return key;
}

/*
 * Sort a claim of the c-th change's row "rowno" on "keytext" (values
 * "key"): for PASS_PRESENT, the row must be found at it with its captured
 * columns (from "row"); for PASS_ABSENT, the key must be free.  Its data:
 * the key values, then for PASS_PRESENT the captured named columns, each
 * an int attno and the value, as datumSerialize() writes them.
 */
static void
drill_claim(Drill *d, int c, int pass, int64 rowno, const char *keytext,
			Datum *key, const ShadowRow *row)
{
	DrillChange *dc = &d->changes[c];
	const GuardChange *change = &dc->change;
	Size		size = sizeof(int);
	bytea	   *data;
	char	   *p;
	int			ncols = 0;
	TupleTableSlot *slot = d->claimslot;

	for (int k = 0; k < change->nkeys; k++)
	{
		int			i = change->keys[k] - 1;

		size += datumEstimateSpace(key[k], false, dc->typbyval[i], dc->typlen[i]);
	}
	for (int i = 0; pass == PASS_PRESENT && i < row->natts; i++)
	{
		if (!row->captured[i] || change->attnames[i] == NULL)
			continue;
		ncols++;
		size += sizeof(int) + datumEstimateSpace(row->values[i], row->nulls[i],
												 dc->typbyval[i], dc->typlen[i]);
	}
	data = palloc(VARHDRSZ + size);
	SET_VARSIZE(data, VARHDRSZ + size);
	p = VARDATA(data);
	for (int k = 0; k < change->nkeys; k++)
	{
		int			i = change->keys[k] - 1;

		datumSerialize(key[k], false, dc->typbyval[i], dc->typlen[i], &p);
	}
	memcpy(p, &ncols, sizeof(int));
	p += sizeof(int);
	for (int i = 0; pass == PASS_PRESENT && i < row->natts; i++)
	{
		if (!row->captured[i] || change->attnames[i] == NULL)
			continue;
		memcpy(p, &i, sizeof(int));
		p += sizeof(int);
		datumSerialize(row->values[i], row->nulls[i], dc->typbyval[i],
					   dc->typlen[i], &p);
	}

	ExecClearTuple(slot);
	slot->tts_values[CL_KEY - 1] = PointerGetDatum(cstring_to_text(psprintf("%u %s", change->relid, keytext)));
	slot->tts_values[CL_STAGE - 1] = Int64GetDatum((int64) c * 2 + pass);
	slot->tts_values[CL_ROWNO - 1] = Int64GetDatum(rowno);
	slot->tts_values[CL_DATA - 1] = PointerGetDatum(data);
	memset(slot->tts_isnull, false, sizeof(bool) * CL_NATTS);
	ExecStoreVirtualTuple(slot);
	tuplesort_puttupleslot(d->claims, slot);
}

/*
 * Remember a change's key moves for the younger changes, all at once: a
 * key vacated and refilled by the same change maps to its new row.
 */
static void
drill_apply_moves(Drill *d, List *moves)
{
	ListCell   *lc;

	foreach(lc, moves)
	{
		DrillMove  *move = lfirst(lc);

		hash_search(d->moved, &move->from, HASH_REMOVE, NULL);
	}
	foreach(lc, moves)
	{
		DrillMove  *move = lfirst(lc);
		MovedKey   *entry = hash_search(d->moved, &move->to, HASH_ENTER, NULL);

		entry->text = move->to;
		entry->origtext = move->origtext;
		entry->origvalues = move->origvalues;
	}
}

/*
 * Read the c-th change (oldest first) and sort its claims: the rows that
 * existed before it (updated, deleted) must be found by the key they had
 * before the change set; the keys it filled (inserted rows, moved keys)
 * must be free.  Then remember its key moves for the younger changes.
 */
static void
drill_read_change(Drill *d, int c)
{
	DrillChange *dc = &d->changes[c];
	GuardChange *change = &dc->change;
	ShadowReader *reader;
	ShadowRow	row;
	List	   *moves = NIL;
	MemoryContext old;

	reader = shadow_open(change->change_id, change->natts, change->atttypes,
						 change->keys, change->nkeys, change->inline_chunk);
	for (int64 n = 0; shadow_next(reader, &row); n++)
	{
		Datum	   *key;
		char	   *keytext;
		const char *origtext;
		Datum	   *origvalues;

		CHECK_FOR_INTERRUPTS();
		guard_progress_tick();
		MemoryContextReset(d->rowcxt);
		old = MemoryContextSwitchTo(d->rowcxt);
		if (row.op == GUARD_OP_INSERT)
		{
			drill_claim(d, c, PASS_ABSENT, n, guard_key_text(change, row.keyvalues),
						row.keyvalues, &row);
			MemoryContextSwitchTo(old);
			continue;
		}
		key = row.op == GUARD_OP_UPDATE ? before_key(change, &row) : row.keyvalues;
		keytext = guard_key_text(change, key);
		drill_original_key(d, keytext, key, &origtext, &origvalues);
		drill_claim(d, c, PASS_PRESENT, n, origtext, origvalues, &row);
		if (row.op == GUARD_OP_UPDATE)
		{
			char	   *to = guard_key_text(change, row.keyvalues);

			if (strcmp(to, keytext) != 0)
				drill_claim(d, c, PASS_ABSENT, n, to, row.keyvalues, &row);
			/* only younger changes follow the moves: none after the last */
			if (strcmp(to, keytext) != 0 && c < d->nchanges - 1)
			{
				DrillMove  *move = MemoryContextAlloc(d->drillcxt, sizeof(DrillMove));

				move->from = MemoryContextStrdup(d->drillcxt, keytext);
				move->to = MemoryContextStrdup(d->drillcxt, to);
				move->origtext = MemoryContextStrdup(d->drillcxt, origtext);
				move->origvalues = copy_key(dc, origvalues, d->drillcxt);
				MemoryContextSwitchTo(d->drillcxt);
				moves = lappend(moves, move);
			}
		}
		MemoryContextSwitchTo(old);
	}
	shadow_close(reader);
	drill_apply_moves(d, moves);
}

/*
 * Read the change set's changes, oldest first, and open the sorts.
 */
static void
drill_begin(Drill *d)
{
	Oid			claimops[3] = {ByteaLessOperator, Int8LessOperator, Int8LessOperator};
	Oid			verdictops[3] = {Int8LessOperator, Int8LessOperator, Int8LessOperator};
	HASHCTL		ctl;
	int			c = 0;

	d->changes = palloc0(sizeof(DrillChange) * Max(list_length(d->ids), 1));
	for (int i = list_length(d->ids) - 1; i >= 0; i--)
	{
		DrillChange *dc = &d->changes[c];

		if (!guard_change_read(*(int64 *) list_nth(d->ids, i), &dc->change))
			continue;
		dc->typlen = palloc0(sizeof(int16) * Max(dc->change.natts, 1));
		dc->typbyval = palloc0(sizeof(bool) * Max(dc->change.natts, 1));
		for (int a = 0; a < dc->change.natts; a++)
		{
			if (OidIsValid(dc->change.atttypes[a]))
				get_typlenbyval(dc->change.atttypes[a], &dc->typlen[a], &dc->typbyval[a]);
		}
		c++;
	}
	d->nchanges = c;

	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(MovedKey);
	ctl.hash = text_key_hash;
	ctl.match = text_key_match;
	ctl.hcxt = d->drillcxt;
	d->moved = hash_create("guard moved keys", 256, &ctl,
						   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);

	d->claimdesc = CreateTemplateTupleDesc(CL_NATTS);
	TupleDescInitEntry(d->claimdesc, CL_KEY, "key", BYTEAOID, -1, 0);
	TupleDescInitEntry(d->claimdesc, CL_STAGE, "stage", INT8OID, -1, 0);
	TupleDescInitEntry(d->claimdesc, CL_ROWNO, "rowno", INT8OID, -1, 0);
	TupleDescInitEntry(d->claimdesc, CL_DATA, "data", BYTEAOID, -1, 0);
	d->claims = drill_sort(d->claimdesc, 3, claimops);
	d->claimslot = MakeSingleTupleTableSlot(d->claimdesc, &TTSOpsVirtual);

	d->verdictdesc = CreateTemplateTupleDesc(VD_NATTS);
	TupleDescInitEntry(d->verdictdesc, VD_CHANGE, "change", INT8OID, -1, 0);
	TupleDescInitEntry(d->verdictdesc, VD_ROWNO, "rowno", INT8OID, -1, 0);
	TupleDescInitEntry(d->verdictdesc, VD_PASS, "pass", INT8OID, -1, 0);
	TupleDescInitEntry(d->verdictdesc, VD_OK, "ok", BOOLOID, -1, 0);
	d->verdicts = drill_sort(d->verdictdesc, 3, verdictops);
	d->verdictslot = MakeSingleTupleTableSlot(d->verdictdesc, &TTSOpsVirtual);
}

/*
 * Close the tables the drill opened.
 */
static void
drill_end(Drill *d)
{
	guard_drill_close(d);
	ExecDropSingleTupleTableSlot(d->claimslot);
	ExecDropSingleTupleTableSlot(d->verdictslot);
}

/*
 * The inspection the driver runs after the undo, before it rolls back (or
 * after it planned the undo: then the overlay "plan" is read in front of
 * the tables): compare, oldest change first.  A row changed twice in the change set must
 * be back at the first change's before-image, so each key's presence, and
 * each of its columns, is checked against the oldest change that captured
 * it, following the row through the key moves of the older changes.
 */
static void
drill_inspect(List *reports, GuardPlan *plan, void *arg)
{
	Drill	   *d = (Drill *) arg;
	MemoryContext old;

	d->plan = plan;
	/* everything but the results goes with the call, even on error */
	d->drillcxt = AllocSetContextCreate(CurrentMemoryContext, "guard drill",
										ALLOCSET_DEFAULT_SIZES);
	d->rowcxt = AllocSetContextCreate(d->drillcxt, "guard drill row",
									  ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(d->drillcxt);
	CommandCounterIncrement();
	drill_begin(d);
	for (int c = 0; c < d->nchanges; c++)
		drill_read_change(d, c);
	guard_drill_judge(d);
	guard_drill_count(d);
	drill_end(d);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(d->drillcxt);
	d->drillcxt = NULL;
	d->rowcxt = NULL;
	d->plan = NULL;
}

/*
 * guard.verify_restore(changeset_id): the drill.  Restores the change set in
 * a subtransaction, checks that every captured row is back to its
 * before-image, rolls back, and reports per change.
 */
Datum
guard_verify_restore(PG_FUNCTION_ARGS)
{
	int64		changeset_id = PG_GETARG_INT64(0);	/* STRICT: not null */
	List	   *ids;
	ReturnSetInfo *rsinfo;
	Drill		d;
	ListCell   *lc;

	guard_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	ids = guard_restore_changeset_ids(changeset_id);
	if (ids == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("change set " INT64_FORMAT " does not exist or has no changes",
						changeset_id)));

	memset(&d, 0, sizeof(d));
	d.cxt = CurrentMemoryContext;
	d.ids = ids;
	(void) guard_restore_changes(ids, GUARD_ON_CONFLICT_SKIP, true, changeset_id,
								 CurrentMemoryContext, drill_inspect, &d);

	foreach(lc, d.results)
	{
		DrillResult *r = lfirst(lc);
		Datum		out[5];
		bool		nulls[5] = {false, false, false, false, false};

		out[0] = Int64GetDatum(r->change_id);
		out[1] = CStringGetTextDatum(r->relation);
		out[2] = Int64GetDatum(r->checked);
		out[3] = Int64GetDatum(r->matching);
		out[4] = BoolGetDatum(r->checked == r->matching);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, nulls);
	}
	return (Datum) 0;
}
