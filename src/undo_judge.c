/*-------------------------------------------------------------------------
 *
 * undo_judge.c
 *	  Row undo: judge each captured row against its live version, and keep
 *	  what conflicts for the error.
 *
 * "Wrote since" is read from the hash of the after-values kept at capture
 * (equal: nothing touched the row), and which columns from the later
 * changes that captured the same key (later.c).  A column that a later
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
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/varlena.h"

#include "undo.h"

/*
 * The ERROR for a change that a later schema change keeps from being
 * undone: it names the later change set to restore first.
 */
void
guard_undo_blocked_error(const GuardChange *change, const char *column)
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
				 errmsg("cannot restore change " INT64_FORMAT " of table \"%s\": column \"%s\" was dropped or changed type since",
						change->change_id, guard_undo_relname(change), column),
				 errdetail("Change set " INT64_FORMAT " (%s) altered the table later.", later, kind),
				 errhint("Restore change set " INT64_FORMAT " first.", later)));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot restore change " INT64_FORMAT " of table \"%s\": column \"%s\" was dropped or changed type since",
					change->change_id, guard_undo_relname(change), column),
			 errhint("The table was altered in a way guard did not record; put the column back first.")));
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
 * The later writes of a key, from the index built on first need.
 */
static const GuardLaterEntry *
later_entry(RowUndo *u, const char *key)
{
	if (u->later == NULL)
		u->later = guard_later_writes_build(u->change, u->exclude, u->restoring);
	return guard_later_find(u->later, key);
}

/*
 * Whether the key was written since by later changes of the change's own
 * change set only (which are not conflicts of it).
 */
bool
guard_undo_later_own(RowUndo *u, const char *key)
{
	return guard_later_how(later_entry(u, key)) == GUARD_LATER_OWN;
}

/*
 * The key of a captured row as text, in the row scratch context.
 */
static char *
row_key_text(RowUndo *u, const ShadowRow *row)
{
	MemoryContext old = MemoryContextSwitchTo(u->rowcxt);
	char	   *key = guard_key_text(u->change, row->keyvalues);

	MemoryContextSwitchTo(old);
	return key;
}

/*
 * Judge an undone UPDATE: it writes back the columns it captured, and
 * conflicts if its row was deleted or written since.  A column a later
 * change of another change set wrote is a conflict, kept (written back in
 * overwrite mode); one that a restore of an older change of the same
 * change set wrote is left alone; if no later change wrote any, the row was
 * written outside guard and keeps every column (but in overwrite mode).
 * Returns whether the row conflicts; sets *apply.
 */
static bool
judge_update(RowUndo *u, const ShadowRow *row, bool live, bool *apply)
{
	const GuardLaterEntry *entry;
	bool		any = false;
	bool		conflict = false;

	for (int c = 0; c < u->ncols; c++)
		u->write[c] = u->cols[c].recorded >= 0 &&
			row->captured[u->cols[c].recorded];
	*apply = false;
	if (!live)
		return true;			/* deleted since: nothing to write into */
	if (u->force || live_hash(u, row->captured) == row->hash)
	{
		*apply = true;
		return false;
	}

	entry = later_entry(u, row_key_text(u, row));
	for (int c = 0; c < u->ncols; c++)
	{
		int			how;

		if (!u->write[c])
			continue;
		how = guard_later_wrote(entry, u->cols[c].name);
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
	for (int c = 0; c < u->ncols; c++)
		*apply |= u->write[c];
	return conflict;
}

/*
 * Judge one row: which columns it writes back (u->write), whether it is
 * written back at all (*apply), whether it replaces a live row that has
 * its key (*replace), and whether it conflicts (the result).  An undone
 * DELETE conflicts if its key exists again (unless a later change of its
 * own change set put it there); an undone INSERT if its row changed since
 * (one deleted since has nothing to undo).
 */
bool
guard_undo_judge(RowUndo *u, const ShadowRow *row, bool live, bool *apply,
				 bool *replace)
{
	const GuardChange *change = u->change;

	*apply = true;
	*replace = false;
	switch (row->op)
	{
		case GUARD_OP_UPDATE:
			return judge_update(u, row, live, apply);
		case GUARD_OP_DELETE:
			for (int c = 0; c < u->ncols; c++)
				u->write[c] = u->cols[c].recorded >= 0;
			if (!live)
				return false;
			*replace = true;
			if (!u->force && u->mode != GUARD_ON_CONFLICT_OVERWRITE &&
				guard_undo_later_own(u, row_key_text(u, row)))
				return false;
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
				if (!u->force && live_hash(u, all) != row->hash &&
					!guard_undo_later_own(u, row_key_text(u, row)))
				{
					*apply = (u->mode == GUARD_ON_CONFLICT_OVERWRITE);
					return true;
				}
			}
			break;
	}
	return false;
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
 * Keep the key of a conflicting row (the first few) and the change sets
 * that wrote "laterkey" (the same key, or the key a moved row would take
 * back) since, for the error.
 */
void
guard_undo_note_conflict(RowUndo *u, const char *key, const char *laterkey)
{
	const GuardLaterEntry *entry;

	if (u->nsamples >= UNDO_MAX_SAMPLES)
		return;
	u->samples[u->nsamples++] = pstrdup(key);
	entry = later_entry(u, laterkey);
	if (entry)
		u->sample_changesets = list_concat(u->sample_changesets,
										   guard_later_changesets(entry));
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
	ListCell   *lc;

	initStringInfo(&keys);
	for (int i = 0; i < u->nsamples; i++)
		appendStringInfo(&keys, "%s%s", i ? ", " : "", u->samples[i]);
	initStringInfo(&sets);
	foreach(lc, u->sample_changesets)
	{
		int64		id = *(int64 *) lfirst(lc);
		bool		seen = false;

		/* each change set once */
		for (int i = 0; i < foreach_current_index(lc) && !seen; i++)
			seen = *(int64 *) list_nth(u->sample_changesets, i) == id;
		if (!seen)
			appendStringInfo(&sets, "%s" INT64_FORMAT, sets.len ? ", " : "", id);
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
