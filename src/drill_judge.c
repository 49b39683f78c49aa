/*-------------------------------------------------------------------------
 *
 * drill_judge.c
 *	  The restore drill: judge the claims, key by key, and count.
 *
 * drill.c sorts a claim per captured row (and one per key a change filled)
 * by the key it is about, oldest change first.  Here the claims on each key
 * are judged in that order, as if every key compared were remembered: the
 * first claim on a key decides whether the row must be there (or the key
 * free), and the first claim on each of its columns decides that column;
 * later claims on what is decided are not compared.  The verdicts are
 * sorted back by change and row, and counted per change: a row is compared
 * if one of its claims decided something, and back as before if all found
 * it so.  Memory holds the claims of one key at a time.  A drill on a
 * restore that only planned reads the plan's overlay in front of the
 * tables (guard_plan_fetch).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "drill.h"

/*
 * The key scan of the c-th change's table, opened on first need.
 */
static GuardKeyScan *
drill_keyscan(Drill *d, int c)
{
	DrillChange *dc = &d->changes[c];

	if (dc->rel == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(d->drillcxt);

		dc->rel = table_open(dc->change.relid, AccessShareLock);
		if (!guard_keyscan_begin(&dc->ks, dc->rel, &dc->change))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot verify change " INT64_FORMAT ": table \"%s\" no longer has the key it was captured with",
							dc->change.change_id, guard_undo_relname(&dc->change)),
					 errhint("Restore the later change set that altered the table first.")));
		MemoryContextSwitchTo(old);
	}
	return &dc->ks;
}

/* what the claims on one key decided so far */
typedef struct KeyState
{
	bool		decided;		/* the key's presence */
	List	   *columns;		/* the names of the columns decided */
} KeyState;

/*
 * Judge one claim of the key whose state is *state: whether it decides about
 * anything (an older claim may have decided all it would), and if so
 * whether the live table agrees.  Returns whether it compared; sets *ok.
 */
static bool
drill_judge(Drill *d, KeyState *state, int c, int pass, const char *data,
			bool *ok)
{
	DrillChange *dc = &d->changes[c];
	const GuardChange *change = &dc->change;
	GuardKeyScan *ks = drill_keyscan(d, c);
	Datum	   *key = palloc(sizeof(Datum) * Max(change->nkeys, 1));
	char	   *p = (char *) data;
	bool		live;
	bool		compared = false;
	int			ncols;
	bool		isnull;

	for (int k = 0; k < change->nkeys; k++)
		key[k] = datumRestore(&p, &isnull);
	if (pass == PASS_ABSENT)
	{
		if (state->decided)
			return false;
		state->decided = true;
		*ok = !guard_plan_fetch(d->plan, ks, dc->rel, change, key,
								GetLatestSnapshot());
		return true;
	}

	live = guard_plan_fetch(d->plan, ks, dc->rel, change, key,
							GetLatestSnapshot());
	*ok = true;
	if (!state->decided)
	{
		state->decided = true;
		compared = true;
		*ok = live;
	}

	/* values: each column against its oldest before-image */
	memcpy(&ncols, p, sizeof(int));
	p += sizeof(int);
	for (int n = 0; n < ncols && *ok && live; n++)
	{
		int			i;
		Datum		value;
		AttrNumber	attnum;
		Form_pg_attribute att;
		ListCell   *lc;
		bool		seen = false;

		memcpy(&i, p, sizeof(int));
		p += sizeof(int);
		value = datumRestore(&p, &isnull);
		foreach(lc, state->columns)
			seen |= strcmp((char *) lfirst(lc), change->attnames[i]) == 0;
		if (seen)
			continue;
		state->columns = lappend(state->columns, change->attnames[i]);
		compared = true;
		attnum = get_attnum(RelationGetRelid(ks->found), change->attnames[i]);
		if (attnum <= 0)
		{
			*ok = false;
			break;
		}
		att = TupleDescAttr(RelationGetDescr(ks->found), attnum - 1);
		if (isnull || ks->slot->tts_isnull[attnum - 1])
			*ok = isnull && ks->slot->tts_isnull[attnum - 1];
		else
			*ok = datum_image_eq(value, ks->slot->tts_values[attnum - 1],
								 att->attbyval, att->attlen);
	}
	return compared;
}

/*
 * Judge the claims, key by key, the oldest first on each key, and sort the
 * verdicts by change and row.
 */
void
guard_drill_judge(Drill *d)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(d->claimdesc, &TTSOpsMinimalTuple);
	TupleTableSlot *vslot = d->verdictslot;
	MemoryContext keycxt = AllocSetContextCreate(d->drillcxt, "guard drill key",
												 ALLOCSET_SMALL_SIZES);
	text	   *current = NULL;
	KeyState	state;

	tuplesort_performsort(d->claims);
	while (tuplesort_gettupleslot(d->claims, true, false, slot, NULL))
	{
		bool		isnull;
		text	   *key = DatumGetTextPP(slot_getattr(slot, CL_KEY, &isnull));
		int64		stage = DatumGetInt64(slot_getattr(slot, CL_STAGE, &isnull));
		int64		rowno = DatumGetInt64(slot_getattr(slot, CL_ROWNO, &isnull));
		bytea	   *data = DatumGetByteaPP(slot_getattr(slot, CL_DATA, &isnull));
		char	   *copy;
		bool		ok;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		guard_progress_tick();
		if (current == NULL ||
			VARSIZE_ANY_EXHDR(key) != VARSIZE_ANY_EXHDR(current) ||
			memcmp(VARDATA_ANY(key), VARDATA_ANY(current), VARSIZE_ANY_EXHDR(key)) != 0)
		{
			/* the first claim on a key */
			MemoryContextReset(keycxt);
			current = (text *) MemoryContextAlloc(keycxt, VARSIZE_ANY(key));
			memcpy(current, key, VARSIZE_ANY(key));
			memset(&state, 0, sizeof(state));
		}
		MemoryContextReset(d->rowcxt);
		old = MemoryContextSwitchTo(d->rowcxt);
		/* datumRestore() reads from an aligned copy of our own */
		copy = palloc(VARSIZE_ANY_EXHDR(data));
		memcpy(copy, VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data));
		MemoryContextSwitchTo(keycxt);
		if (drill_judge(d, &state, stage / 2, stage % 2, copy, &ok))
		{
			MemoryContextSwitchTo(d->rowcxt);
			ExecClearTuple(vslot);
			vslot->tts_values[VD_CHANGE - 1] = Int64GetDatum(stage / 2);
			vslot->tts_values[VD_ROWNO - 1] = Int64GetDatum(rowno);
			vslot->tts_values[VD_PASS - 1] = Int64GetDatum(stage % 2);
			vslot->tts_values[VD_OK - 1] = BoolGetDatum(ok);
			memset(vslot->tts_isnull, false, sizeof(bool) * VD_NATTS);
			ExecStoreVirtualTuple(vslot);
			tuplesort_puttupleslot(d->verdicts, vslot);
		}
		MemoryContextSwitchTo(old);
	}
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(keycxt);
	tuplesort_end(d->claims);
	d->claims = NULL;
}

/*
 * Add one change's result.
 */
static void
drill_result(Drill *d, int c, int64 checked, int64 matching)
{
	MemoryContext old = MemoryContextSwitchTo(d->cxt);
	DrillResult *result = palloc(sizeof(DrillResult));

	result->change_id = d->changes[c].change.change_id;
	result->relation = pstrdup(d->changes[c].change.relation);
	result->checked = checked;
	result->matching = matching;
	d->results = lappend(d->results, result);
	MemoryContextSwitchTo(old);
}

/*
 * Count, per change, the rows compared and those back as before: a row is
 * compared if one of its claims decided something, and back as before if
 * all of them found it so (a moved row: found at its old key, and its new
 * key free).
 */
void
guard_drill_count(Drill *d)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(d->verdictdesc, &TTSOpsMinimalTuple);
	int			c = 0;
	int64		rowno = -1;
	bool		rowok = true;
	int64		checked = 0;
	int64		matching = 0;
	bool		more;

	tuplesort_performsort(d->verdicts);
	do
	{
		bool		isnull;
		int			vc = 0;
		int64		vrow = 0;

		more = tuplesort_gettupleslot(d->verdicts, true, false, slot, NULL);
		if (more)
		{
			vc = (int) DatumGetInt64(slot_getattr(slot, VD_CHANGE, &isnull));
			vrow = DatumGetInt64(slot_getattr(slot, VD_ROWNO, &isnull));
		}
		if (rowno >= 0 && (!more || vc != c || vrow != rowno))
		{
			/* the row before is counted */
			checked++;
			matching += rowok;
			rowno = -1;
		}
		while (c < d->nchanges && (!more || vc > c))
		{
			drill_result(d, c++, checked, matching);
			checked = matching = 0;
		}
		if (!more)
			break;
		if (rowno < 0)
		{
			rowno = vrow;
			rowok = true;
		}
		rowok &= DatumGetBool(slot_getattr(slot, VD_OK, &isnull));
	} while (more);
	ExecDropSingleTupleTableSlot(slot);
	tuplesort_end(d->verdicts);
	d->verdicts = NULL;
}

/*
 * Close the tables the judging opened.
 */
void
guard_drill_close(Drill *d)
{
	for (int c = 0; c < d->nchanges; c++)
	{
		if (d->changes[c].rel == NULL)
			continue;
		guard_keyscan_end(&d->changes[c].ks);
		table_close(d->changes[c].rel, AccessShareLock);
	}
}
