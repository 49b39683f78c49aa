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
 * set moved (shifted, swapped, changed twice) back to the key they had.  It reports, per change, how many rows
 * it compared and how many matched.  Nothing it does survives the call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_verify_restore);

/* the result for one change */
typedef struct DrillResult
{
	int64		change_id;
	char	   *relation;
	int64		checked;		/* rows compared */
	int64		matching;		/* ... that are back to their before-image */
} DrillResult;

/* an entry of a hash keyed by text of any length (a key, or a key and a column) */
typedef struct TextEntry
{
	char	   *text;			/* hash key */
	char	   *origtext;		/* moved keys: the key the row had first */
	Datum	   *origvalues;
} TextEntry;

/* the state of one drill */
typedef struct Drill
{
	MemoryContext cxt;			/* the results live here */
	List	   *ids;			/* the change set's changes, newest first */
	List	   *results;		/* DrillResult, oldest change first */
	HTAB	   *seen;			/* keys and key columns already compared */
	HTAB	   *moved;			/* key a row has now -> the one it had first */
	MemoryContext drillcxt;		/* the hashes */
	MemoryContext rowcxt;		/* per row scratch */
} Drill;

/* a key move of one change: applied to d->moved once the change is read */
typedef struct DrillMove
{
	int64		rowno;			/* the row's position in the snapshot */
	char	   *from;			/* the key before the change */
	char	   *to;				/* ... and after it */
	Datum	   *tovalues;
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
 * A hash of TextEntry by text, in the drill's context.
 */
static HTAB *
text_hash(Drill *d, const char *name)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(TextEntry);
	ctl.hash = text_key_hash;
	ctl.match = text_key_match;
	ctl.hcxt = d->drillcxt;
	return hash_create(name, 256, &ctl,
					   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

/*
 * Mark a key (or a column of it) as compared; returns whether it already
 * was, by an older change of the change set.
 */
static bool
drill_seen(Drill *d, const char *seenkey)
{
	bool		found;
	TextEntry  *entry = hash_search(d->seen, &seenkey, HASH_ENTER, &found);

	if (!found)
	{
		memset(entry, 0, sizeof(TextEntry));
		entry->text = MemoryContextStrdup(d->drillcxt, seenkey);
	}
	return found;
}

/*
 * The key a row at key "keytext" had before the change set (an older
 * change of it may have moved the row): its text and values.
 */
static void
drill_original_key(Drill *d, const char *keytext, Datum *values,
				   const char **origtext, Datum **origvalues)
{
	TextEntry  *entry = hash_search(d->moved, &keytext, HASH_FIND, NULL);

	*origtext = entry ? entry->origtext : keytext;
	*origvalues = entry ? entry->origvalues : values;
}

/*
 * Copy key values into the drill's context.
 */
static Datum *
copy_key(const GuardChange *change, Datum *key, MemoryContext cxt)
{
	Datum	   *copy = MemoryContextAlloc(cxt, sizeof(Datum) * Max(change->nkeys, 1));

	for (int k = 0; k < change->nkeys; k++)
	{
		int16		typlen;
		bool		typbyval;
		MemoryContext old;

		get_typlenbyval(change->atttypes[change->keys[k] - 1], &typlen, &typbyval);
		old = MemoryContextSwitchTo(cxt);
		copy[k] = datumCopy(key[k], typbyval, typlen);
		MemoryContextSwitchTo(old);
	}
	return copy;
}

/*
 * Compare an updated or deleted row, found by the key it had before the
 * change set, with its live version after the undo: it must be there, and
 * each captured column equal to its before-value.  Only the oldest change
 * that captured a row, or a column of it, decides about it.  Sets *ok;
 * returns whether anything was compared.
 */
static bool
drill_present(Drill *d, const GuardChange *change, GuardKeyScan *ks,
			  const ShadowRow *row, const char *origtext, Datum *origvalues,
			  bool *ok)
{
	bool		live = guard_keyscan_fetch(ks, origvalues, GetLatestSnapshot());
	bool		compared = false;
	char	   *seenkey;

	*ok = true;
	seenkey = psprintf("%u %s", change->relid, origtext);
	if (!drill_seen(d, seenkey))
	{
		compared = true;
		*ok = live;
	}

	/* values: each column against its oldest before-image */
	for (int i = 0; i < row->natts && *ok && live; i++)
	{
		AttrNumber	attnum;
		Form_pg_attribute att;
		TupleDesc	desc = RelationGetDescr(ks->found);

		if (!row->captured[i] || change->attnames[i] == NULL)
			continue;
		seenkey = psprintf("%u %s %s", change->relid, origtext, change->attnames[i]);
		if (drill_seen(d, seenkey))
			continue;
		compared = true;
		attnum = get_attnum(RelationGetRelid(ks->found), change->attnames[i]);
		if (attnum <= 0)
		{
			*ok = false;
			break;
		}
		att = TupleDescAttr(desc, attnum - 1);
		if (row->nulls[i] || ks->slot->tts_isnull[attnum - 1])
			*ok = row->nulls[i] && ks->slot->tts_isnull[attnum - 1];
		else
			*ok = datum_image_eq(row->values[i], ks->slot->tts_values[attnum - 1],
								 att->attbyval, att->attlen);
	}
	return compared;
}

/*
 * A key that a row took in the change (inserted, or moved into it) and
 * that no older change decided about was free before the change set: it
 * must be free after the undo.  Sets *ok; returns whether it compared.
 */
static bool
drill_absent(Drill *d, const GuardChange *change, GuardKeyScan *ks,
			 const char *keytext, Datum *key, bool *ok)
{
	char	   *seenkey = psprintf("%u %s", change->relid, keytext);

	*ok = true;
	if (drill_seen(d, seenkey))
		return false;
	*ok = !guard_keyscan_fetch(ks, key, GetLatestSnapshot());
	return true;
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

/* per row of a change: 0 not compared, 1 back as before, 2 not */
#define ROW_UNSEEN	0
#define ROW_OK		1
#define ROW_BAD		2

/*
 * The second pass of drill_change(): the keys the change filled (inserted
 * rows, and keys rows moved into) must be free after the undo, unless an
 * older change, or the first pass, decided about them.  Updates state[].
 */
static void
drill_filled(Drill *d, const GuardChange *change, GuardKeyScan *ks,
			 uint8 *state, List *moves)
{
	ShadowReader *reader;
	ShadowRow	row;
	ListCell   *lc;
	MemoryContext old;

	reader = shadow_open(change->change_id, change->natts, change->atttypes,
						 change->keys, change->nkeys, change->inline_chunk);
	for (int64 i = 0; shadow_next(reader, &row); i++)
	{
		bool		ok;

		if (row.op != GUARD_OP_INSERT)
			continue;
		MemoryContextReset(d->rowcxt);
		old = MemoryContextSwitchTo(d->rowcxt);
		if (drill_absent(d, change, ks, guard_key_text(change, row.keyvalues),
						 row.keyvalues, &ok))
			state[i] = ok ? ROW_OK : ROW_BAD;
		MemoryContextSwitchTo(old);
	}
	shadow_close(reader);
	foreach(lc, moves)
	{
		DrillMove  *move = lfirst(lc);
		bool		ok;

		MemoryContextReset(d->rowcxt);
		old = MemoryContextSwitchTo(d->rowcxt);
		if (drill_absent(d, change, ks, move->to, move->tovalues, &ok))
			state[move->rowno] = (ok && state[move->rowno] != ROW_BAD) ? ROW_OK : ROW_BAD;
		MemoryContextSwitchTo(old);
	}
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
		TextEntry  *entry = hash_search(d->moved, &move->to, HASH_ENTER, NULL);

		entry->text = move->to;
		entry->origtext = move->origtext;
		entry->origvalues = move->origvalues;
	}
}

/*
 * Compare the rows one restored change captured, and add its result.  Two
 * passes over its snapshot, as the change's own rows may have traded keys:
 * first the rows that existed before it (updated, deleted), found by the
 * key they had before the change set; then the keys it filled (inserted
 * rows, moved keys), which were free before it unless an older change, or
 * the first pass, decided otherwise.  Then the change's key moves are
 * remembered for the younger changes.
 */
static void
drill_change(Drill *d, int64 change_id)
{
	GuardChange change;
	Relation	rel;
	GuardKeyScan ks;
	ShadowReader *reader;
	ShadowRow	row;
	DrillResult *result;
	int64		checked = 0;
	int64		matching = 0;
	int64		n;
	int64		size = 1024;
	uint8	   *state;
	List	   *moves = NIL;
	MemoryContext old;

	if (!guard_change_read(change_id, &change))
		return;
	rel = table_open(change.relid, AccessShareLock);
	if (!guard_keyscan_begin(&ks, rel, &change))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot verify change " INT64_FORMAT ": table \"%s\" no longer has the key it was captured with",
						change.change_id, guard_undo_relname(&change)),
				 errhint("Restore the later change set that altered the table first.")));
	state = MemoryContextAllocExtended(d->drillcxt, size, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);

	reader = shadow_open(change.change_id, change.natts, change.atttypes,
						 change.keys, change.nkeys, change.inline_chunk);
	for (n = 0; shadow_next(reader, &row); n++)
	{
		Datum	   *key;
		char	   *keytext;
		const char *origtext;
		Datum	   *origvalues;
		bool		ok;

		if (n == size)
		{
			state = repalloc_huge(state, size * 2);
			memset(state + size, 0, size);
			size *= 2;
		}
		guard_progress_tick();
		if (row.op == GUARD_OP_INSERT)
			continue;
		MemoryContextReset(d->rowcxt);
		old = MemoryContextSwitchTo(d->rowcxt);
		key = row.op == GUARD_OP_UPDATE ? before_key(&change, &row) : row.keyvalues;
		keytext = guard_key_text(&change, key);
		drill_original_key(d, keytext, key, &origtext, &origvalues);
		if (drill_present(d, &change, &ks, &row, origtext, origvalues, &ok))
			state[n] = ok ? ROW_OK : ROW_BAD;
		if (row.op == GUARD_OP_UPDATE)
		{
			char	   *to = guard_key_text(&change, row.keyvalues);

			if (strcmp(to, keytext) != 0)
			{
				DrillMove  *move = MemoryContextAlloc(d->drillcxt, sizeof(DrillMove));

				move->rowno = n;
				move->from = MemoryContextStrdup(d->drillcxt, keytext);
				move->to = MemoryContextStrdup(d->drillcxt, to);
				move->tovalues = copy_key(&change, row.keyvalues, d->drillcxt);
				move->origtext = MemoryContextStrdup(d->drillcxt, origtext);
				move->origvalues = copy_key(&change, origvalues, d->drillcxt);
				MemoryContextSwitchTo(d->drillcxt);
				moves = lappend(moves, move);
			}
		}
		MemoryContextSwitchTo(old);
	}
	shadow_close(reader);

	drill_filled(d, &change, &ks, state, moves);
	drill_apply_moves(d, moves);

	for (int64 i = 0; i < n; i++)
	{
		checked += state[i] != ROW_UNSEEN;
		matching += state[i] == ROW_OK;
	}
	guard_keyscan_end(&ks);
	table_close(rel, AccessShareLock);

	old = MemoryContextSwitchTo(d->cxt);
	result = palloc(sizeof(DrillResult));
	result->change_id = change_id;
	result->relation = pstrdup(change.relation);
	result->checked = checked;
	result->matching = matching;
	d->results = lappend(d->results, result);
	MemoryContextSwitchTo(old);
}

/*
 * The inspection the driver runs after the undo, before it rolls back:
 * compare, oldest change first.  A row changed twice in the change set must
 * be back at the first change's before-image, so each key's presence, and
 * each of its columns, is checked against the oldest change that captured
 * it, following the row through the key moves of the older changes.
 */
static void
drill_inspect(List *reports, void *arg)
{
	Drill	   *d = (Drill *) arg;

	/* the hashes and the row scratch go with the call, even on error */
	d->drillcxt = AllocSetContextCreate(CurrentMemoryContext, "guard drill",
										ALLOCSET_DEFAULT_SIZES);
	d->seen = text_hash(d, "guard verified keys");
	d->moved = text_hash(d, "guard moved keys");
	d->rowcxt = AllocSetContextCreate(d->drillcxt, "guard drill row",
									  ALLOCSET_SMALL_SIZES);

	CommandCounterIncrement();

	/* the changes restored earlier one by one too: their before-images hold */
	for (int i = list_length(d->ids) - 1; i >= 0; i--)
		drill_change(d, *(int64 *) list_nth(d->ids, i));

	MemoryContextDelete(d->drillcxt);
	d->drillcxt = NULL;
	d->seen = NULL;
	d->moved = NULL;
	d->rowcxt = NULL;
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
