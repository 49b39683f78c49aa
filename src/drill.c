/*-------------------------------------------------------------------------
 *
 * drill.c
 *	  guard.verify_restore(): the restore drill.
 *
 * The drill restores a change set as a dry run (restore.c's driver, in a
 * subtransaction, conflicts skipped), and before the subtransaction is
 * rolled back checks that every row the change set captured is back to its
 * before-image: present or absent as before it, and each captured column
 * equal to its oldest before-value.  It reports, per change, how many rows
 * it compared and how many matched.  Nothing it does survives the call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
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

/* the hash key of a key, or of one column of a key, already compared */
#define SEEN_KEYLEN		(NAMEDATALEN * 8)

/* the result for one change */
typedef struct DrillResult
{
	int64		change_id;
	char	   *relation;
	int64		checked;		/* rows compared */
	int64		matching;		/* ... that are back to their before-image */
} DrillResult;

/* the state of one drill */
typedef struct Drill
{
	MemoryContext cxt;			/* the results live here */
	List	   *results;		/* DrillResult, oldest change first */
	HTAB	   *seen;			/* keys and key columns already compared */
	MemoryContext rowcxt;		/* per row scratch */
} Drill;

/*
 * Mark a key (or a column of it) as compared; returns whether it already
 * was, by an older change of the change set.
 */
static bool
drill_seen(Drill *d, const char *seenkey)
{
	bool		found;

	hash_search(d->seen, seenkey, HASH_ENTER, &found);
	return found;
}

/*
 * Compare one captured row with its live version after the undo.  Sets
 * *ok; returns whether anything was compared (only the oldest change that
 * captured a key, or a column of it, decides about it).
 */
static bool
drill_row(Drill *d, const GuardChange *change, GuardKeyScan *ks,
		  const ShadowRow *row, bool *ok)
{
	Datum	   *key = row->keyvalues;
	bool		live;
	bool		compared = false;
	char	   *keytext;
	char		seenkey[SEEN_KEYLEN];

	*ok = true;

	/* after undo, an UPDATE's row is found by its old key */
	if (row->op == GUARD_OP_UPDATE)
	{
		key = palloc(sizeof(Datum) * change->nkeys);
		for (int k = 0; k < change->nkeys; k++)
		{
			int			i = change->keys[k] - 1;

			key[k] = row->captured[i] ? row->values[i] : row->keyvalues[k];
		}
	}
	keytext = guard_key_text(change, key);
	live = guard_keyscan_fetch(ks, key, GetLatestSnapshot());

	/* presence: the oldest change of a key says if it must exist */
	snprintf(seenkey, sizeof(seenkey), "%u %s", change->relid, keytext);
	if (!drill_seen(d, seenkey))
	{
		compared = true;
		*ok = (row->op == GUARD_OP_INSERT) ? !live : live;
	}

	/* values: each column against its oldest before-image */
	for (int i = 0; i < row->natts && *ok && live; i++)
	{
		AttrNumber	attnum;
		Form_pg_attribute att;
		TupleDesc	desc = RelationGetDescr(ks->found);

		if (!row->captured[i] || change->attnames[i] == NULL)
			continue;
		snprintf(seenkey, sizeof(seenkey), "%u %s %s", change->relid,
				 keytext, change->attnames[i]);
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
 * Compare the rows one restored change captured, and add its result.
 */
static void
drill_change(Drill *d, const GuardRestoreReport *r)
{
	GuardChange change;
	Relation	rel;
	GuardKeyScan ks;
	ShadowReader *reader;
	ShadowRow	row;
	DrillResult *result;
	int64		checked = 0;
	int64		matching = 0;
	MemoryContext old;

	if (!guard_change_read(r->change_id, &change))
		return;
	rel = table_open(change.relid, AccessShareLock);
	if (!guard_keyscan_begin(&ks, rel, &change))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot verify change " INT64_FORMAT ": table \"%s\" no longer has the key it was captured with",
						change.change_id, guard_undo_relname(&change)),
				 errhint("Restore the later change set that altered the table first.")));
	reader = shadow_open(change.change_id, change.natts, change.atttypes,
						 change.keys, change.nkeys, change.inline_chunk);
	while (shadow_next(reader, &row))
	{
		bool		ok;
		bool		compared;

		MemoryContextReset(d->rowcxt);
		old = MemoryContextSwitchTo(d->rowcxt);
		compared = drill_row(d, &change, &ks, &row, &ok);
		MemoryContextSwitchTo(old);
		if (!compared)
			continue;
		checked++;
		if (ok)
			matching++;
	}
	shadow_close(reader);
	guard_keyscan_end(&ks);
	table_close(rel, AccessShareLock);

	old = MemoryContextSwitchTo(d->cxt);
	result = palloc(sizeof(DrillResult));
	result->change_id = r->change_id;
	result->relation = pstrdup(r->relation);
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
 * it.
 */
static void
drill_inspect(List *reports, void *arg)
{
	Drill	   *d = (Drill *) arg;
	HASHCTL		ctl;
	MemoryContext drillcxt;

	/* the hash and the row scratch go with the call, even on error */
	drillcxt = AllocSetContextCreate(CurrentMemoryContext, "guard drill",
									 ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = SEEN_KEYLEN;
	ctl.entrysize = SEEN_KEYLEN;
	ctl.hcxt = drillcxt;
	d->seen = hash_create("guard verified keys", 256, &ctl,
						  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	d->rowcxt = AllocSetContextCreate(drillcxt, "guard drill row",
									  ALLOCSET_SMALL_SIZES);

	CommandCounterIncrement();

	for (int ri = list_length(reports) - 1; ri >= 0; ri--)
		drill_change(d, list_nth(reports, ri));

	MemoryContextDelete(drillcxt);
	d->seen = NULL;
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
