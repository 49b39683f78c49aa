/*-------------------------------------------------------------------------
 *
 * diff.c
 *	  guard.diff(change_id): what a change captured, row by row.
 *
 * One output row per captured column: the row's key, the column, its value
 * before the change, and its value in the table now (NULL when the row is
 * gone).  Only those who may read the table (or guard_admin) may see it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_diff);

/*
 * The live value of column "name" in the fetched row, as text, or NULL.
 */
static text *
live_value(GuardKeyScan *ks, bool live, const char *name)
{
	TupleDesc	desc;
	int			attno;

	if (!live)
		return NULL;
	desc = RelationGetDescr(ks->found);
	for (attno = 0; attno < desc->natts; attno++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, attno);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
		{
			if (ks->slot->tts_isnull[attno])
				return NULL;
			return cstring_to_text(guard_value_text(ks->slot->tts_values[attno],
											  att->atttypid));
		}
	}
	return NULL;
}

/*
 * Emit one output row.
 */
static void
put_row(ReturnSetInfo *rsinfo, const char *key, const char *column,
		const char *before, text *after)
{
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	values[0] = CStringGetTextDatum(key);
	if (column)
		values[1] = CStringGetTextDatum(column);
	else
		nulls[1] = true;
	if (before)
		values[2] = CStringGetTextDatum(before);
	else
		nulls[2] = true;
	if (after)
		values[3] = PointerGetDatum(after);
	else
		nulls[3] = true;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * guard.diff(change_id)
 */
Datum
guard_diff(PG_FUNCTION_ARGS)
{
	int64		change_id = PG_GETARG_INT64(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	GuardChange change;
	Relation	rel;
	GuardKeyScan ks;
	bool		have_keyscan = false;
	ShadowReader *reader;
	ShadowRow	row;

	guard_require_preload();
	InitMaterializedSRF(fcinfo, 0);

	if (!guard_change_read(change_id, &change))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("change " INT64_FORMAT " does not exist", change_id)));

	if (!guard_may_read_relation(change.relid))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for the snapshot of table %s",
						change.relation),
				 errdetail("Reading a snapshot needs SELECT on its table, or membership in guard_admin.")));

	rel = try_table_open(change.relid, AccessShareLock);
	if (rel)
		have_keyscan = guard_keyscan_begin(&ks, rel, &change);

	reader = shadow_open(change_id, change.natts, change.atttypes,
						 change.keys, change.nkeys, change.inline_chunk);
	while (shadow_next(reader, &row))
	{
		char	   *key = guard_key_text(&change, row.keyvalues);
		bool		live = have_keyscan && guard_keyscan_fetch(&ks, row.keyvalues,
																 GetActiveSnapshot());

		if (row.op == GUARD_OP_INSERT)
		{
			TupleDesc	desc;

			if (!live)
			{
				put_row(rsinfo, key, NULL, NULL, NULL);
				continue;
			}
			desc = RelationGetDescr(ks.found);
			for (int i = 0; i < desc->natts; i++)
			{
				Form_pg_attribute att = TupleDescAttr(desc, i);

				if (att->attisdropped)
					continue;
				put_row(rsinfo, key, NameStr(att->attname), NULL,
						live_value(&ks, true, NameStr(att->attname)));
			}
			continue;
		}

		for (int i = 0; i < row.natts; i++)
		{
			const char *name = change.attnames[i];

			if (!row.captured[i] || name == NULL)
				continue;
			put_row(rsinfo, key, name,
					row.nulls[i] ? NULL : guard_value_text(row.values[i], change.atttypes[i]),
					live_value(&ks, live, name));
		}
	}
	shadow_close(reader);

	if (have_keyscan)
		guard_keyscan_end(&ks);
	if (rel)
		table_close(rel, AccessShareLock);
	return (Datum) 0;
}
