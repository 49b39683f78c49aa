/*-------------------------------------------------------------------------
 *
 * undo_judge.c
 *	  Row undo: judge each captured row against its live version, and keep
 *	  what conflicts for the error.
 *
 * "Wrote since" is read from the hash of the after-values kept at capture
 * (equal: nothing touched the row), and which columns from the later
 * changes that captured the same key (later.c).  Rows that need the later
 * writes wait for them, packed into a sort by key that later.c merges with
 * the later writes (guard_undo_ask()); the verdict on them comes after the
 * other rows' (guard_undo_judge_later()), and the error's samples are the
 * first conflicting rows of the snapshot all the same.  A column that a later
 * change of another change set wrote is a conflict; one that a later
 * change of the change's own change set wrote is not (it is written back),
 * nor is one that a restore of an older change of the same change set
 * wrote (it already holds the value from before the change set, and is
 * left alone).
 *
 * Also the names and errors that say which change cannot be restored,
 * and why: a later schema change, conflicts, rows never captured.
 *
 * The live row may sit in a partition whose columns are in another order
 * than the table's (ATTACH of an existing table, a dropped column): its
 * values are read through a map by column name, built once per partition,
 * as ExecCrossPartitionUpdate does.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/varlena.h"

#include "undo.h"

/*
 * The ERROR for a change that a later change to its table keeps from being
 * undone ("what" says what is in the way): it names the later change set
 * to restore first if guard recorded one, else says "hint".  Row undo and
 * every schema undo recipe (ddl_util.c) end here.
 */
void
guard_undo_blocked(const GuardChange *change, const char *what, const char *hint)
{
	GuardAsRole owner;
	Oid			types[2] = {OIDARRAYOID, INT8OID};
	Datum		values[2];
	int64		later = 0;
	char	   *kind = NULL;

	values[0] = guard_related_relids(change->relid);
	values[1] = Int64GetDatum(change->change_id);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT changeset_id, kind FROM guard.change"
				  " WHERE relid = ANY ($1) AND change_id > $2 AND detail IS NOT NULL"
				  " AND NOT detail ? 'captured'"
				  " AND state = 'active' ORDER BY change_id LIMIT 1",
				  2, types, values, NULL);
	if (SPI_processed > 0)
	{
		bool		isnull;

		later = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		kind = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		kind = kind ? MemoryContextStrdup(TopTransactionContext, kind) : NULL;
	}
	guard_as_role_end(&owner);
	if (later != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot restore change " INT64_FORMAT " of table \"%s\": %s",
						change->change_id, guard_undo_relname(change), what),
				 errdetail("Change set " INT64_FORMAT " (%s) altered the table later.", later, kind),
				 errhint("Restore change set " INT64_FORMAT " first.", later)));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot restore change " INT64_FORMAT " of table \"%s\": %s",
					change->change_id, guard_undo_relname(change), what),
			 errhint("%s", hint)));
}

/*
 * The ERROR for a change whose column a later schema change dropped or
 * converted (see guard_undo_blocked()).
 */
void
guard_undo_blocked_error(const GuardChange *change, const char *column)
{
	guard_undo_blocked(change,
					   psprintf("column \"%s\" was dropped or changed type since", column),
					   "The table was altered in a way guard did not record; put the column back first.");
}

/*
 * A field of a change's detail as text, or NULL.
 */
static char *
detail_text(const GuardChange *change, const char *name)
{
	LOCAL_FCINFO(fcinfo, 2);
	Datum		result;

	if (change->detail == NULL)
		return NULL;
	InitFunctionCallInfoData(*fcinfo, NULL, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = DirectFunctionCall1(jsonb_in, CStringGetDatum(change->detail));
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = CStringGetTextDatum(name);
	fcinfo->args[1].isnull = false;
	result = jsonb_object_field_text(fcinfo);
	return fcinfo->isnull ? NULL : TextDatumGetCString(result);
}

/*
 * Refuse a change whose rows were not captured (capture.c records the
 * statements of a table that had no key then, with the detail
 * {"captured": false}): there is nothing to write back, and restoring the
 * rest of its change set as if it were whole would lose it silently.
 */
void
guard_undo_check_captured(const GuardChange *change)
{
	char	   *captured = detail_text(change, "captured");
	char	   *rows;
	long		nrows;

	if (captured == NULL || strcmp(captured, "false") != 0)
		return;
	rows = detail_text(change, "rows");
	nrows = rows ? strtol(rows, NULL, 10) : 0;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot restore change " INT64_FORMAT " of table \"%s\": it was not captured",
					change->change_id, guard_undo_relname(change)),
			 errdetail_plural("The table had no key (primary key or replica identity index) when the statement ran: the %ld row it wrote was not kept.",
							  "The table had no key (primary key or replica identity index) when the statement ran: the %ld rows it wrote were not kept.",
							  nrows, nrows),
			 errhint("Undo it by hand, then restore the other changes with guard.restore_change().")));
}

/*
 * Point the live-value lookups at the table of the row just fetched (a
 * partition of u->rel, or u->rel itself).
 */
void
guard_undo_found(RowUndo *u)
{
	Relation	found = u->ks.found;
	int			l;

	u->livemap = NULL;
	if (found == NULL || RelationGetRelid(found) == RelationGetRelid(u->rel))
		return;
	for (l = 0; l < u->ks.nleaves; l++)
	{
		if (u->ks.leaves[l].rel == found)
			break;
	}
	if (l == u->ks.nleaves)
		elog(ERROR, "guard: fetched row of an unknown partition");
	if (u->leafmaps == NULL)
		u->leafmaps = MemoryContextAllocZero(GetMemoryChunkContext(u->cols),
											 sizeof(AttrMap *) * u->ks.nleaves);
	if (u->leafmaps[l] == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(u->cols));

#if PG_VERSION_NUM >= 160000
		u->leafmaps[l] = build_attrmap_by_name(RelationGetDescr(found),
											   RelationGetDescr(u->rel), false);
#else
		u->leafmaps[l] = build_attrmap_by_name(RelationGetDescr(found),
											   RelationGetDescr(u->rel));
#endif
		MemoryContextSwitchTo(old);
	}
	u->livemap = u->leafmaps[l];
}

/*
 * The live value of column c (an index in u->cols) in the row just fetched.
 */
Datum
guard_undo_live(RowUndo *u, int c, bool *isnull)
{
	int			a = u->cols[c].live;

	if (u->livemap != NULL)
		a = u->livemap->attnums[a] - 1;
	if (a < 0 || a >= u->ks.slot->tts_tupleDescriptor->natts)
		elog(ERROR, "guard: column \"%s\" is missing from a partition",
			 u->cols[c].name);
	*isnull = u->ks.slot->tts_isnull[a];
	return u->ks.slot->tts_values[a];
}

/*
 * The hash of the live row over the recorded columns "which" marks (by
 * recorded attnum - 1), as capture computed it over the after-values.
 */
static uint32
live_hash(RowUndo *u, const bool *which)
{
	uint32		hash = 0;
	MemoryContext old = MemoryContextSwitchTo(u->rowcxt);

	for (int c = 0; c < u->ncols; c++)
	{
		bool		isnull;
		Datum		value;

		if (u->cols[c].recorded < 0 || !which[u->cols[c].recorded])
			continue;
		value = guard_undo_live(u, c, &isnull);
		hash = shadow_hash_value(value, isnull, u->cols[c].typlen,
								 u->cols[c].typbyval, hash);
	}
	MemoryContextSwitchTo(old);
	return hash;
}

/*
 * A row that needs a column the table lost since cannot be undone: an
 * INSERT or DELETE needs every column, an UPDATE the ones it captured.
 */
void
guard_undo_check_gone(RowUndo *u, const ShadowRow *row)
{
	bool		needs = row->op != GUARD_OP_UPDATE;

	for (int i = 0; i < row->natts && !needs; i++)
		needs = row->captured[i] && u->change->attnames[i] != NULL &&
			u->colindex[i] < 0;
	if (needs)
		guard_undo_blocked_error(u->change, u->gone);
}

/*
 * Judge an undone UPDATE as far as its live row tells: it writes back the
 * columns it captured, and conflicts if its row was deleted since; if the
 * row is as the change left it, it goes back whole.  Otherwise the later
 * writes of its key decide (*ask).  Returns whether the row conflicts;
 * sets *apply.
 */
static bool
judge_update(RowUndo *u, const ShadowRow *row, bool live, bool *apply,
			 bool *ask)
{
	for (int c = 0; c < u->ncols; c++)
		u->write[c] = u->cols[c].recorded >= 0 &&
			row->captured[u->cols[c].recorded];
	*apply = false;
	if (!live)
		return true;			/* deleted since: nothing to write into */
	if (u->force || live_hash(u, row->captured) == row->hash)
		*apply = true;
	else
		*ask = true;
	return false;
}

/*
 * Judge an undone UPDATE whose row was written since, by what later changes
 * wrote to its key ("entry"): a column a later change of another change set
 * wrote is a conflict, kept (written back in overwrite mode); one that a
 * restore of an older change of the same change set wrote is left alone;
 * if no later change wrote any, the row was written outside guard and
 * keeps every column (but in overwrite mode).  Returns whether the row
 * conflicts; sets *apply.
 */
static bool
judge_update_later(RowUndo *u, const ShadowRow *row,
				   const GuardLaterEntry *entry, bool *apply)
{
	bool		any = false;
	bool		conflict = false;

	for (int c = 0; c < u->ncols; c++)
	{
		int			how;

		u->write[c] = u->cols[c].recorded >= 0 &&
			row->captured[u->cols[c].recorded];
		if (!u->write[c])
			continue;
		how = guard_later_wrote(entry, u->cols[c].recorded);
		any |= (how != 0);
		if (how & GUARD_LATER_OTHER)
		{
			conflict = true;
			if (u->mode != GUARD_ON_CONFLICT_OVERWRITE)
				u->write[c] = false;
		}
		else if (how & GUARD_LATER_SETTLED)
			u->write[c] = false;
	}
	if (!any)
	{
		/* written outside guard: every column is suspect */
		conflict = true;
		if (u->mode != GUARD_ON_CONFLICT_OVERWRITE)
			memset(u->write, 0, sizeof(bool) * u->ncols);
	}
	*apply = false;
	for (int c = 0; c < u->ncols; c++)
		*apply |= u->write[c];
	return conflict;
}

/*
 * Judge one row against its live version: which columns it writes back
 * (u->write), whether it is written back at all (*apply), whether it
 * replaces a live row that has its key (*replace), and whether it conflicts
 * (the result).  An undone DELETE conflicts if its key exists again, an
 * undone INSERT if its row changed since (one deleted since has nothing to
 * undo), unless a later change of its own change set did it: when that is
 * the question (and for an UPDATE whose row was written since), *ask is
 * set and guard_undo_judge_later() gives the verdict once the later writes
 * of the key are known.
 */
bool
guard_undo_judge(RowUndo *u, const ShadowRow *row, bool live, bool *apply,
				 bool *replace, bool *ask)
{
	const GuardChange *change = u->change;

	*apply = true;
	*replace = false;
	*ask = false;
	switch (row->op)
	{
		case GUARD_OP_UPDATE:
			return judge_update(u, row, live, apply, ask);
		case GUARD_OP_DELETE:
			for (int c = 0; c < u->ncols; c++)
				u->write[c] = u->cols[c].recorded >= 0;
			if (!live)
				return false;
			*replace = true;
			if (!u->force && u->mode != GUARD_ON_CONFLICT_OVERWRITE)
			{
				*ask = true;
				return false;
			}
			*apply = (u->mode == GUARD_ON_CONFLICT_OVERWRITE);
			return true;
		case GUARD_OP_INSERT:
			if (!live)
				*apply = false; /* deleted since: nothing to undo */
			else
			{
				bool	   *all = MemoryContextAlloc(u->rowcxt,
													 sizeof(bool) * Max(change->natts, 1));

				for (int i = 0; i < change->natts; i++)
					all[i] = change->attnames[i] != NULL && u->colindex[i] >= 0 &&
						!u->cols[u->colindex[i]].generated;
				if (!u->force && live_hash(u, all) != row->hash)
					*ask = true;
			}
			break;
	}
	return false;
}

/*
 * The verdict on a row that guard_undo_judge() left waiting (*ask), now
 * that "entry" says what later changes wrote to its key: the same outputs
 * as guard_undo_judge().  Needs no live row.
 */
bool
guard_undo_judge_later(RowUndo *u, const ShadowRow *row,
					   const GuardLaterEntry *entry, bool *apply,
					   bool *replace)
{
	bool		own = guard_later_how(entry) == GUARD_LATER_OWN;

	*apply = true;
	*replace = false;
	switch (row->op)
	{
		case GUARD_OP_UPDATE:
			return judge_update_later(u, row, entry, apply);
		case GUARD_OP_DELETE:
			for (int c = 0; c < u->ncols; c++)
				u->write[c] = u->cols[c].recorded >= 0;
			*replace = true;
			break;
		case GUARD_OP_INSERT:
			break;
	}
	if (own)
		return false;
	*apply = (u->mode == GUARD_ON_CONFLICT_OVERWRITE);
	return true;
}

/*
 * Put the row at hand aside until the later writes of its key are known
 * (guard_undo_judge() set *ask): packed with its position in the snapshot,
 * as a question of u->asks.  The packing keeps every captured value as
 * datumSerialize() writes it, so guard_undo_unpack_row() gives the row back
 * as decoded.
 */
void
guard_undo_ask(RowUndo *u, const ShadowRow *row, int64 rowno)
{
	const GuardChange *change = u->change;
	MemoryContext old = MemoryContextSwitchTo(u->rowcxt);
	Size		size = sizeof(int64) + 1 + change->natts;
	char	   *buf;
	char	   *p;

	if (u->typlen == NULL)
	{
		MemoryContext cxt = GetMemoryChunkContext(u->cols);

		u->typlen = MemoryContextAllocZero(cxt, sizeof(int16) * Max(change->natts, 1));
		u->typbyval = MemoryContextAllocZero(cxt, sizeof(bool) * Max(change->natts, 1));
		for (int i = 0; i < change->natts; i++)
		{
			if (OidIsValid(change->atttypes[i]))
				get_typlenbyval(change->atttypes[i], &u->typlen[i], &u->typbyval[i]);
		}
	}
	if (u->asks == NULL)
	{
		MemoryContextSwitchTo(GetMemoryChunkContext(u->cols));
		u->asks = guard_later_probe_begin(u->later);
		MemoryContextSwitchTo(u->rowcxt);
	}
	for (int i = 0; i < change->natts; i++)
	{
		if (row->captured[i])
			size += datumEstimateSpace(row->values[i], row->nulls[i],
									   u->typbyval[i], u->typlen[i]);
	}
	for (int k = 0; k < change->nkeys; k++)
	{
		int			i = change->keys[k] - 1;

		size += datumEstimateSpace(row->keyvalues[k], false, u->typbyval[i],
								   u->typlen[i]);
	}
	buf = p = palloc(size);
	memcpy(p, &rowno, sizeof(int64));
	p += sizeof(int64);
	*p++ = (char) row->op;
	for (int i = 0; i < change->natts; i++)
		*p++ = row->captured[i] ? 1 : 0;
	for (int i = 0; i < change->natts; i++)
	{
		if (row->captured[i])
			datumSerialize(row->values[i], row->nulls[i], u->typbyval[i],
						   u->typlen[i], &p);
	}
	for (int k = 0; k < change->nkeys; k++)
	{
		int			i = change->keys[k] - 1;

		datumSerialize(row->keyvalues[k], false, u->typbyval[i], u->typlen[i], &p);
	}
	Assert(p == buf + size);
	guard_later_probe_add(u->asks, guard_key_text(change, row->keyvalues),
						  buf, size);
	MemoryContextSwitchTo(old);
}

/*
 * A row that guard_undo_ask() packed, decoded again into *row (in the row
 * scratch context), and its position in the snapshot.
 */
void
guard_undo_unpack_row(RowUndo *u, const char *data, Size len, ShadowRow *row,
					  int64 *rowno)
{
	const GuardChange *change = u->change;
	MemoryContext old = MemoryContextSwitchTo(u->rowcxt);
	char	   *p = palloc(len);

	/* datumRestore() reads from a char *: a copy of our own */
	memcpy(p, data, len);
	memcpy(rowno, p, sizeof(int64));
	p += sizeof(int64);
	row->op = (GuardRowOp) *p++;
	row->natts = change->natts;
	row->captured = palloc0(sizeof(bool) * Max(change->natts, 1));
	row->values = palloc0(sizeof(Datum) * Max(change->natts, 1));
	row->nulls = palloc0(sizeof(bool) * Max(change->natts, 1));
	row->keyvalues = palloc0(sizeof(Datum) * Max(change->nkeys, 1));
	row->hash = 0;
	for (int i = 0; i < change->natts; i++)
		row->captured[i] = *p++ != 0;
	for (int i = 0; i < change->natts; i++)
	{
		if (row->captured[i])
			row->values[i] = datumRestore(&p, &row->nulls[i]);
	}
	for (int k = 0; k < change->nkeys; k++)
	{
		bool		isnull;

		row->keyvalues[k] = datumRestore(&p, &isnull);
	}
	MemoryContextSwitchTo(old);
}

/*
 * Whether the row at hand, as judged, moves its key back (or writes an
 * identity column GENERATED ALWAYS): an UNDO_MOVE rather than an UPDATE.
 */
bool
guard_undo_moves_key(RowUndo *u)
{
	for (int k = 0; k < u->change->nkeys; k++)
	{
		if (u->write[u->keycol[k]])
			return true;
	}
	for (int c = 0; c < u->ncols; c++)
	{
		if (u->write[c] && u->cols[c].identity_always)
			return true;
	}
	return false;
}

/*
 * Whether a conflicting row at "order" (its position: see
 * guard_undo_note_conflict()) would be among the samples of the error, so
 * that keys are printed only for those.
 */
bool
guard_undo_sample_wanted(RowUndo *u, int64 order)
{
	return u->nsamples < UNDO_MAX_SAMPLES ||
		order < u->samples[u->nsamples - 1].order;
}

/*
 * Keep the key of a conflicting row, and the key whose later writes name
 * the change sets that made it conflict ("laterkey": the same key, or the
 * key a moved row would take back), if it is among the first few by
 * "order": the row's position in the snapshot, or after them for the
 * moves.  Rows are judged out of order (some wait for the later writes of
 * their key), so the samples are the first rows that conflict, whatever
 * order they were found in.
 */
void
guard_undo_note_conflict(RowUndo *u, int64 order, const char *key,
						 const char *laterkey)
{
	MemoryContext cxt = GetMemoryChunkContext(u->cols);
	int			at = u->nsamples;

	if (!guard_undo_sample_wanted(u, order))
		return;
	while (at > 0 && u->samples[at - 1].order > order)
		at--;
	if (u->nsamples == UNDO_MAX_SAMPLES)
		u->nsamples--;			/* the last one goes */
	memmove(&u->samples[at + 1], &u->samples[at],
			sizeof(UndoSample) * (u->nsamples - at));
	u->samples[at].order = order;
	u->samples[at].key = MemoryContextStrdup(cxt, key);
	u->samples[at].laterkey = MemoryContextStrdup(cxt, laterkey);
	u->samples[at].nchangesets = 0;
	u->nsamples++;
}

/*
 * guard_later_probe_run() callback of the samples: the change sets that
 * wrote the sample's key since.
 */
static void
sample_changesets(const GuardLaterEntry *entry, const char *data, Size len,
				  void *arg)
{
	RowUndo    *u = (RowUndo *) arg;
	int			i;

	memcpy(&i, data, sizeof(int));
	u->samples[i].nchangesets =
		guard_later_changesets(entry, u->samples[i].changesets,
							   lengthof(u->samples[i].changesets));
}

/*
 * The ZG002 error of a restore that aborts on conflicts: how many rows,
 * some of their keys, and the change sets that wrote them since.
 */
void
guard_undo_conflict_error(RowUndo *u)
{
	StringInfoData keys;
	StringInfoData sets;
	GuardLaterProbe *probe = guard_later_probe_begin(u->later);
	List	   *seen = NIL;

	/* the change sets that wrote the samples' keys since */
	for (int i = 0; i < u->nsamples; i++)
		guard_later_probe_add(probe, u->samples[i].laterkey, &i, sizeof(int));
	guard_later_probe_run(probe, sample_changesets, u);

	initStringInfo(&keys);
	initStringInfo(&sets);
	for (int i = 0; i < u->nsamples; i++)
	{
		appendStringInfo(&keys, "%s%s", i ? ", " : "", u->samples[i].key);
		for (int j = 0; j < u->samples[i].nchangesets; j++)
		{
			int64		id = u->samples[i].changesets[j];
			ListCell   *lc;
			bool		dup = false;

			/* each change set once */
			foreach(lc, seen)
				dup |= *(int64 *) lfirst(lc) == id;
			if (dup)
				continue;
			seen = lappend(seen, &u->samples[i].changesets[j]);
			appendStringInfo(&sets, "%s" INT64_FORMAT, sets.len ? ", " : "", id);
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_GUARD_RESTORE_CONFLICT),
			 errmsg_plural("cannot restore change " INT64_FORMAT " of table \"%s\": " INT64_FORMAT " row was changed since",
						   "cannot restore change " INT64_FORMAT " of table \"%s\": " INT64_FORMAT " rows were changed since",
						   u->conflicts,
						   u->change->change_id, guard_undo_relname(u->change), u->conflicts),
			 sets.len ?
			 errdetail("Sample keys: %s. Written since by change sets %s.",
					   keys.data, sets.data) :
			 errdetail("Sample keys: %s.", keys.data),
			 errhint("Run a dry run, then restore with on_conflict => 'skip' to keep the later values, or 'overwrite' to replace them.")));
}
