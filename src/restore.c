/*-------------------------------------------------------------------------
 *
 * restore.c
 *	  Undo recorded changes: guard.restore(), restore_change(), restore_to()
 *	  and the verify_restore() drill.
 *
 * Changes are undone newest first, one at a time, each in three steps:
 *
 *	1. Lock the table in SHARE ROW EXCLUSIVE mode: concurrent writers wait
 *	   for the restore to commit (and a second restore of the same table
 *	   waits for the first), so what is checked in step 2 stays true.
 *	2. Decode the snapshot and look at each row's live version: an UPDATE is
 *	   undone column by column, the columns a later transaction wrote are
 *	   conflicts; a DELETE conflicts if its key exists again; an INSERT if
 *	   the row changed since.  "Wrote since" is read from the hash of the
 *	   after-values kept at capture (equal: nothing touched it), and which
 *	   columns from the later changes that captured the same key.
 *	3. Put the rows to write back into a tuplestore and apply them with at
 *	   most three set-based statements (UPDATE ... FROM, INSERT ... SELECT,
 *	   DELETE ... USING) that read it as an ephemeral named relation.  Run as
 *	   the table's owner, they check constraints, fire triggers and are
 *	   captured by guard like any write: a restore is a change set, and can
 *	   itself be restored.
 *
 * A dry run does the same inside a subtransaction that it rolls back, so
 * that its report is exactly what the real call would do.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_inherits.h"
#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/fmgrprotos.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/queryenvironment.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_restore);
PG_FUNCTION_INFO_V1(guard_restore_change);
PG_FUNCTION_INFO_V1(guard_restore_to);
PG_FUNCTION_INFO_V1(guard_verify_restore);

/*
 * The on_conflict argument of the restore functions.
 */
static GuardOnConflict
parse_on_conflict(text *arg)
{
	char	   *s = text_to_cstring(arg);

	if (strcmp(s, "abort") == 0)
		return GUARD_ON_CONFLICT_ABORT;
	if (strcmp(s, "skip") == 0)
		return GUARD_ON_CONFLICT_SKIP;
	if (strcmp(s, "overwrite") == 0)
		return GUARD_ON_CONFLICT_OVERWRITE;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid on_conflict \"%s\"", s),
			 errhint("Valid values are \"abort\", \"skip\" and \"overwrite\".")));
	return GUARD_ON_CONFLICT_ABORT; /* keep compiler quiet */
}

/*
 * Undo one change: a schema change by its own recipe (schema_undo.c), a row
 * change by its rows (undo.c).  Fills *report.
 */
static void
restore_one(const GuardChange *change, GuardOnConflict mode, Datum exclude,
			GuardRestoreReport *report)
{
	if (change->detail == NULL || strcmp(change->kind, "TRUNCATE") == 0)
		guard_undo_rows(change, mode, exclude, false, report);
	else
		guard_undo_schema_change(change, exclude, report);
}

/*
 * Read, check and return (newest first) the changes to undo.
 */
static List *
load_changes(List *ids)
{
	List	   *changes = NIL;
	ListCell   *lc;

	foreach(lc, ids)
	{
		int64		id = *(int64 *) lfirst(lc);
		GuardChange *change = palloc(sizeof(GuardChange));

		if (!guard_change_read(id, change))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("change " INT64_FORMAT " does not exist", id)));
		if (strcmp(change->state, "active") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("change " INT64_FORMAT " of change set " INT64_FORMAT " was already %s",
							id, change->changeset_id, change->state),
					 strcmp(change->state, "expired") == 0 ?
					 errhint("guard.purge() expired it: its snapshot is gone.") :
					 errhint("A restore is a change set of its own: restore it to redo the change.")));
		if (get_rel_name(change->relid) != NULL && !guard_may_manage(change->relid))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to restore table %s", change->relation),
					 errdetail("Only the table's owner or a member of guard_admin may restore it.")));
		changes = lappend(changes, change);
	}
	return changes;
}

/*
 * The ids, newest first, that a query of guard's returns.
 */
static List *
select_ids(const char *sql, int nargs, Oid *types, Datum *values)
{
	GuardAsRole owner;
	List	   *ids = NIL;
	MemoryContext outer = CurrentMemoryContext;

	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql(sql, nargs, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i],
									  SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext old = MemoryContextSwitchTo(outer);
		int64	   *id = palloc(sizeof(int64));

		*id = DatumGetInt64(d);
		ids = lappend(ids, id);
		MemoryContextSwitchTo(old);
	}
	guard_as_role_end(&owner);
	return ids;
}

/*
 * In a PG_CATCH: roll back the internal subtransaction the work ran in and
 * raise the error again in the outer one.
 */
static void
abort_subxact_rethrow(MemoryContext oldcxt, ResourceOwner oldowner)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(oldcxt);
	edata = CopyErrorData();
	FlushErrorState();
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	ReThrowError(edata);
}

/*
 * Undo the changes (newest first), record the restore, and return the
 * report rows.  With dry_run, all of it happens in a subtransaction that is
 * rolled back.
 */
static List *
restore_changes(List *ids, GuardOnConflict mode, bool dry_run, int64 restore_of,
				MemoryContext reportcxt)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	List	   *reports = NIL;

	if (dry_run)
	{
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(oldcxt);
	}

	PG_TRY();
	{
		List	   *changes = load_changes(ids);
		List	   *changesets = NIL;
		Datum	   *elems;
		int			n = 0;
		Datum		exclude;
		ListCell   *lc;
		Datum		args[1];

		/* the change sets being undone: their own later writes are expected */
		foreach(lc, changes)
			changesets = lappend(changesets, &((GuardChange *) lfirst(lc))->changeset_id);
		elems = palloc(sizeof(Datum) * (list_length(changesets) + 1));
		foreach(lc, changesets)
			elems[n++] = Int64GetDatum(*(int64 *) lfirst(lc));
		exclude = PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
												  true, TYPALIGN_DOUBLE));

		guard_changeset_begin_restore(restore_of, changes);

		foreach(lc, changes)
		{
			MemoryContext old = MemoryContextSwitchTo(reportcxt);
			GuardRestoreReport *report = palloc0(sizeof(GuardRestoreReport));

			MemoryContextSwitchTo(old);
			restore_one((GuardChange *) lfirst(lc), mode, exclude, report);
			old = MemoryContextSwitchTo(reportcxt);
			report->relation = pstrdup(report->relation);
			report->kind = pstrdup(report->kind);
			reports = lappend(reports, report);
			MemoryContextSwitchTo(old);
		}

		/* mark the undone changes */
		n = 0;
		foreach(lc, changes)
			elems[n++] = Int64GetDatum(((GuardChange *) lfirst(lc))->change_id);
		args[0] = PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
												  true, TYPALIGN_DOUBLE));
		{
			GuardAsRole owner;
			Oid			types[2] = {INT8ARRAYOID, INT8OID};
			Datum		vals[2];

			vals[0] = args[0];
			vals[1] = Int64GetDatum(guard_changeset_current(true));
			guard_as_role_begin(&owner, InvalidOid);
			guard_run_sql("UPDATE guard.change SET state = 'restored', restored_by = $2"
						  " WHERE change_id = ANY ($1)", 2, types, vals, NULL);
			guard_as_role_end(&owner);
		}
	}
	PG_CATCH();
	{
		if (dry_run)
			abort_subxact_rethrow(oldcxt, oldowner);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (dry_run)
	{
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	return reports;
}

/*
 * Emit the report rows.
 */
static void
put_reports(FunctionCallInfo fcinfo, List *reports)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ListCell   *lc;

	foreach(lc, reports)
	{
		GuardRestoreReport *r = lfirst(lc);
		Datum		values[7];
		bool		nulls[7] = {false, false, false, false, false, false, false};

		values[0] = Int64GetDatum(r->change_id);
		values[1] = Int64GetDatum(r->changeset_id);
		values[2] = CStringGetTextDatum(r->relation);
		values[3] = CStringGetTextDatum(r->kind);
		values[4] = Int64GetDatum(r->restored);
		values[5] = Int64GetDatum(r->skipped);
		values[6] = Int64GetDatum(r->conflicts);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

static void
check_args(FunctionCallInfo fcinfo)
{
	guard_require_preload();
	for (int i = 0; i < PG_NARGS(); i++)
	{
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument %d must not be null", i + 1)));
	}
}

/*
 * guard.restore(changeset_id, dry_run, on_conflict)
 */
Datum
guard_restore(PG_FUNCTION_ARGS)
{
	int64		changeset_id;
	bool		dry_run;
	GuardOnConflict mode;
	List	   *ids;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	MemoryContext reportcxt;

	check_args(fcinfo);
	changeset_id = PG_GETARG_INT64(0);
	dry_run = PG_GETARG_BOOL(1);
	mode = parse_on_conflict(PG_GETARG_TEXT_PP(2));
	InitMaterializedSRF(fcinfo, 0);
	reportcxt = ((ReturnSetInfo *) fcinfo->resultinfo)->econtext->ecxt_per_query_memory;

	values[0] = Int64GetDatum(changeset_id);
	ids = select_ids("SELECT changeset_id FROM guard.changeset WHERE changeset_id = $1",
					 1, types, values);
	if (ids == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("change set " INT64_FORMAT " does not exist", changeset_id)));
	ids = select_ids("SELECT change_id FROM guard.change WHERE changeset_id = $1"
					 " ORDER BY change_id DESC", 1, types, values);
	if (ids == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("change set " INT64_FORMAT " has no changes to restore", changeset_id)));

	put_reports(fcinfo, restore_changes(ids, mode, dry_run, changeset_id, reportcxt));
	return (Datum) 0;
}

/*
 * guard.restore_change(change_id, dry_run, on_conflict)
 */
Datum
guard_restore_change(PG_FUNCTION_ARGS)
{
	int64	   *id = palloc(sizeof(int64));
	bool		dry_run;
	GuardOnConflict mode;
	MemoryContext reportcxt;

	check_args(fcinfo);
	*id = PG_GETARG_INT64(0);
	dry_run = PG_GETARG_BOOL(1);
	mode = parse_on_conflict(PG_GETARG_TEXT_PP(2));
	InitMaterializedSRF(fcinfo, 0);
	reportcxt = ((ReturnSetInfo *) fcinfo->resultinfo)->econtext->ecxt_per_query_memory;

	put_reports(fcinfo, restore_changes(list_make1(id), mode, dry_run, 0, reportcxt));
	return (Datum) 0;
}

/*
 * guard.restore_to(rel, at, dry_run, on_conflict): undo every change to the
 * table recorded after "at".
 */
Datum
guard_restore_to(PG_FUNCTION_ARGS)
{
	Oid			relid;
	bool		dry_run;
	GuardOnConflict mode;
	List	   *ids;
	Oid			types[2] = {OIDARRAYOID, TIMESTAMPTZOID};
	Datum		values[2];
	MemoryContext reportcxt;

	check_args(fcinfo);
	relid = PG_GETARG_OID(0);
	dry_run = PG_GETARG_BOOL(2);
	mode = parse_on_conflict(PG_GETARG_TEXT_PP(3));
	InitMaterializedSRF(fcinfo, 0);
	reportcxt = ((ReturnSetInfo *) fcinfo->resultinfo)->econtext->ecxt_per_query_memory;

	if (get_rel_name(relid) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	values[0] = guard_related_relids(relid);
	values[1] = PG_GETARG_DATUM(1);
	/*
	 * Every change after "at" still in effect; a restore made after "at" of
	 * changes all made after "at" cancels out with them and is left alone.
	 */
	ids = select_ids("SELECT change_id FROM guard.change c WHERE relid = ANY ($1)"
					 " AND at > $2 AND state = 'active'"
					 " AND changeset_id NOT IN (SELECT restored_by FROM guard.change"
					 "   WHERE restored_by IS NOT NULL GROUP BY restored_by"
					 "   HAVING pg_catalog.min(at) > $2)"
					 " ORDER BY change_id DESC",
					 2, types, values);
	if (ids != NIL)
		put_reports(fcinfo, restore_changes(ids, mode, dry_run, 0, reportcxt));
	return (Datum) 0;
}

/*
 * guard.verify_restore(changeset_id): the drill.  Restores the change set in
 * a subtransaction, checks that every captured row is back to its
 * before-image, rolls back, and reports per change.
 */
Datum
guard_verify_restore(PG_FUNCTION_ARGS)
{
	int64		changeset_id;
	List	   *ids;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	ReturnSetInfo *rsinfo;
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	List	   *results = NIL;
	ListCell   *lc;

	check_args(fcinfo);
	changeset_id = PG_GETARG_INT64(0);
	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	values[0] = Int64GetDatum(changeset_id);
	ids = select_ids("SELECT change_id FROM guard.change WHERE changeset_id = $1"
					 " ORDER BY change_id DESC", 1, types, values);
	if (ids == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("change set " INT64_FORMAT " does not exist or has no changes",
						changeset_id)));

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		List	   *reports = restore_changes(ids, GUARD_ON_CONFLICT_SKIP, false,
											  changeset_id, oldcxt);
		HTAB	   *seen;
		HASHCTL		ctl;

		ctl.keysize = NAMEDATALEN * 8;
		ctl.entrysize = NAMEDATALEN * 8;
		seen = hash_create("guard verified keys", 256, &ctl,
						   HASH_ELEM | HASH_STRINGS);

		CommandCounterIncrement();

		/*
		 * Compare, oldest change first: a row changed twice in the change set
		 * must be back at the first change's before-image, so each key's
		 * presence, and each of its columns, is checked against the oldest
		 * change that captured it.
		 */
		for (int ri = list_length(reports) - 1; ri >= 0; ri--)
		{
			GuardRestoreReport *r = list_nth(reports, ri);
			GuardChange change;
			Relation	rel;
			GuardKeyScan ks;
			ShadowReader *reader;
			ShadowRow	row;
			int64		checked = 0;
			int64		matching = 0;
			Datum	   *res = MemoryContextAlloc(oldcxt, sizeof(Datum) * 5);

			if (!guard_change_read(r->change_id, &change))
				continue;
			rel = table_open(change.relid, AccessShareLock);
			if (!guard_keyscan_begin(&ks, rel, &change))
				elog(ERROR, "guard: table %s has no usable key", change.relation);
			reader = shadow_open(change.change_id, change.natts, change.atttypes,
								 change.keys, change.nkeys, change.inline_chunk);
			while (shadow_next(reader, &row))
			{
				Datum	   *key = row.keyvalues;
				bool		live;
				bool		ok = true;
				bool		found;
				bool		compared = false;
				char	   *keytext;
				char		seenkey[NAMEDATALEN * 8];

				/* after undo, an UPDATE's row is found by its old key */
				if (row.op == GUARD_OP_UPDATE)
				{
					key = palloc(sizeof(Datum) * change.nkeys);
					for (int k = 0; k < change.nkeys; k++)
					{
						int			i = change.keys[k] - 1;

						key[k] = row.captured[i] ? row.values[i] : row.keyvalues[k];
					}
				}
				keytext = guard_key_text(&change, key);
				live = guard_keyscan_fetch(&ks, key, GetLatestSnapshot());

				/* presence: the oldest change of a key says if it must exist */
				snprintf(seenkey, sizeof(seenkey), "%u %s", change.relid, keytext);
				hash_search(seen, seenkey, HASH_ENTER, &found);
				if (!found)
				{
					compared = true;
					ok = (row.op == GUARD_OP_INSERT) ? !live : live;
				}

				/* values: each column against its oldest before-image */
				for (int i = 0; i < row.natts && ok && live; i++)
				{
					AttrNumber	attnum;
					Form_pg_attribute att;
					TupleDesc	desc = RelationGetDescr(ks.found);

					if (!row.captured[i] || change.attnames[i] == NULL)
						continue;
					snprintf(seenkey, sizeof(seenkey), "%u %s %s", change.relid,
							 keytext, change.attnames[i]);
					hash_search(seen, seenkey, HASH_ENTER, &found);
					if (found)
						continue;
					compared = true;
					attnum = get_attnum(RelationGetRelid(ks.found), change.attnames[i]);
					if (attnum <= 0)
					{
						ok = false;
						break;
					}
					att = TupleDescAttr(desc, attnum - 1);
					if (row.nulls[i] || ks.slot->tts_isnull[attnum - 1])
						ok = row.nulls[i] && ks.slot->tts_isnull[attnum - 1];
					else
						ok = datum_image_eq(row.values[i], ks.slot->tts_values[attnum - 1],
											att->attbyval, att->attlen);
				}
				if (!compared)
					continue;
				checked++;
				if (ok)
					matching++;
			}
			shadow_close(reader);
			guard_keyscan_end(&ks);
			table_close(rel, AccessShareLock);

			res[0] = Int64GetDatum(r->change_id);
			res[1] = PointerGetDatum(MemoryContextStrdup(oldcxt, r->relation));
			res[2] = Int64GetDatum(checked);
			res[3] = Int64GetDatum(matching);
			res[4] = BoolGetDatum(checked == matching);
			{
				MemoryContext old = MemoryContextSwitchTo(oldcxt);

				results = lappend(results, res);
				MemoryContextSwitchTo(old);
			}
		}
	}
	PG_CATCH();
	{
		abort_subxact_rethrow(oldcxt, oldowner);
	}
	PG_END_TRY();
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;

	foreach(lc, results)
	{
		Datum	   *res = lfirst(lc);
		Datum		out[5];
		bool		nulls[5] = {false, false, false, false, false};

		out[0] = res[0];
		out[1] = CStringGetTextDatum(DatumGetCString(res[1]));
		out[2] = res[2];
		out[3] = res[3];
		out[4] = res[4];
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, nulls);
	}
	return (Datum) 0;
}
