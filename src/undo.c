/*-------------------------------------------------------------------------
 *
 * undo.c
 *	  Row undo: write back the before-images of the rows of one change.
 *
 * The rows of a change are undone in three steps:
 *
 *	1. Lock the table in SHARE ROW EXCLUSIVE mode: concurrent writers wait
 *	   for the restore to commit (and a second restore of the same table
 *	   waits for the first), so what is checked in step 2 stays true.
 *	2. Decode the snapshot and look at each row's live version: an UPDATE is
 *	   undone column by column, the columns a later transaction wrote are
 *	   conflicts; a DELETE conflicts if its key exists again; an INSERT if
 *	   the row changed since.  "Wrote since" is read from the hash of the
 *	   after-values kept at capture (equal: nothing touched it), and which
 *	   columns from the later changes that captured the same key (later.c).
 *	3. Put the rows to write back into a tuplestore and apply them with at
 *	   most three set-based statements (UPDATE ... FROM, INSERT ... SELECT,
 *	   DELETE ... USING) that read it as an ephemeral named relation.  They
 *	   run as the table's owner (FORCE ROW LEVEL SECURITY aside, as for
 *	   foreign key checks), with the caller's search_path for whatever user
 *	   code runs, and with session_replication_role = replica: the values
 *	   written back are the captured ones, not what ordinary user triggers
 *	   would make of them, and foreign keys are checked once the whole
 *	   restore is done (fkcheck.c), whatever order cascades imposed.  CHECK
 *	   constraints, defaults and ENABLE ALWAYS triggers still apply.  guard's
 *	   capture triggers are ENABLE ALWAYS, so the writes are captured like
 *	   any other: a restore is a change set, and can itself be restored.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/queryenvironment.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "guard.h"

#define MAX_SAMPLES		5
#define ENR_NAME		"guard_restore_rows"

/* one column of the change being undone, mapped to the live table */
typedef struct RestoreColumn
{
	const char *name;
	int			recorded;		/* attnum - 1 in the recorded layout */
	int			live;			/* attnum - 1 in the live table */
	bool		generated;
	bool		used;			/* some row writes it back */
	int16		typlen;
	bool		typbyval;
} RestoreColumn;

/* the undo of the rows of one change, from the table lock to the writes */
typedef struct RowUndo
{
	const GuardChange *change;
	GuardOnConflict mode;
	Datum		exclude;		/* the change sets restored together */
	bool		force;			/* write back without conflict checks */

	/* the table and its columns */
	Relation	rel;			/* locked until the end of the transaction */
	char	   *qualname;
	RestoreColumn *cols;		/* the recorded columns the table still has */
	int			ncols;
	int		   *colindex;		/* recorded attnum - 1 -> index in cols */
	const char *gone;			/* a recorded column the table lost since */
	GuardKeyScan ks;			/* the live rows by key */

	/* the rows to write back: k_1.., op, then v_N, m_N per column */
	TupleDesc	enrdesc;
	int			enr_natts;
	Tuplestorestate *rows;
	Datum	   *values;			/* one row of enrdesc */
	bool	   *nulls;
	int64		napply[3];		/* rows in the tuplestore, by op - 1 */

	/* the row at hand */
	bool	   *write;			/* which columns it writes back */
	MemoryContext rowcxt;		/* scratch, reset for each row */

	/* conflicts */
	GuardLaterWrites *later;	/* built on first need */
	int64		conflicts;
	int64		skipped;
	int			nsamples;
	char	   *samples[MAX_SAMPLES];
	List	   *sample_changesets;
} RowUndo;

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
 * Lock the table and map the recorded columns to its live ones by name; a
 * recorded column the table lost (or that changed type) is remembered in
 * u->gone, an error only if a row needs it.  A table in the trash or in an
 * inheritance tree is refused.
 */
static void
undo_open_table(RowUndo *u)
{
	const GuardChange *change = u->change;
	TupleDesc	livedesc;

	u->rel = try_table_open(change->relid, ShareRowExclusiveLock);
	if (u->rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot restore change " INT64_FORMAT ": table \"%s\" no longer exists",
						change->change_id, guard_undo_relname(change))));
	guard_undo_check_table(change, u->rel);
	livedesc = RelationGetDescr(u->rel);
	u->qualname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(u->rel)),
											 RelationGetRelationName(u->rel));

	u->cols = palloc0(sizeof(RestoreColumn) * Max(change->natts, 1));
	u->colindex = palloc(sizeof(int) * Max(change->natts, 1));
	for (int i = 0; i < change->natts; i++)
	{
		AttrNumber	live;
		Form_pg_attribute att;
		RestoreColumn *col;

		u->colindex[i] = -1;
		if (change->attnames[i] == NULL)
			continue;
		live = get_attnum(RelationGetRelid(u->rel), change->attnames[i]);
		if (live <= 0 ||
			TupleDescAttr(livedesc, live - 1)->atttypid != change->atttypes[i])
		{
			if (u->gone == NULL)
				u->gone = change->attnames[i];
			continue;
		}
		att = TupleDescAttr(livedesc, live - 1);
		col = &u->cols[u->ncols];
		col->name = change->attnames[i];
		col->recorded = i;
		col->live = live - 1;
		col->generated = att->attgenerated != '\0';
		col->typlen = att->attlen;
		col->typbyval = att->attbyval;
		u->colindex[i] = u->ncols++;
	}

	if (!guard_keyscan_begin(&u->ks, u->rel, change))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot restore change " INT64_FORMAT ": table \"%s\" no longer has the key it was captured with",
						change->change_id, guard_undo_relname(change)),
				 errhint("Restore the later change set that altered the table first.")));
}

/*
 * Describe the rows to write back (k_1.., op, then v_N, m_N per column: the
 * value of column N and whether to write it) and open their tuplestore.
 */
static void
undo_begin_rows(RowUndo *u)
{
	const GuardChange *change = u->change;
	TupleDesc	livedesc = RelationGetDescr(u->rel);

	u->enr_natts = change->nkeys + 1 + 2 * u->ncols;
	u->enrdesc = CreateTemplateTupleDesc(u->enr_natts);
	for (int k = 0; k < change->nkeys; k++)
	{
		char		name[NAMEDATALEN];

		snprintf(name, sizeof(name), "k_%d", k + 1);
		TupleDescInitEntry(u->enrdesc, k + 1, name,
						   change->atttypes[change->keys[k] - 1], -1, 0);
	}
	TupleDescInitEntry(u->enrdesc, change->nkeys + 1, "op", CHAROID, -1, 0);
	for (int c = 0; c < u->ncols; c++)
	{
		char		name[NAMEDATALEN];
		Form_pg_attribute att = TupleDescAttr(livedesc, u->cols[c].live);

		snprintf(name, sizeof(name), "v_%d", c);
		TupleDescInitEntry(u->enrdesc, change->nkeys + 2 + 2 * c, name,
						   att->atttypid, att->atttypmod, 0);
		TupleDescInitEntryCollation(u->enrdesc, change->nkeys + 2 + 2 * c,
									att->attcollation);
		snprintf(name, sizeof(name), "m_%d", c);
		TupleDescInitEntry(u->enrdesc, change->nkeys + 3 + 2 * c, name,
						   BOOLOID, -1, 0);
	}
	u->rows = tuplestore_begin_heap(false, false, work_mem);
	u->values = palloc(sizeof(Datum) * u->enr_natts);
	u->nulls = palloc(sizeof(bool) * u->enr_natts);
	u->write = palloc(sizeof(bool) * Max(u->ncols, 1));
}

/*
 * The hash of the live row over the given recorded columns, as capture
 * computed it over the after-values.
 */
static uint32
live_hash(TupleTableSlot *slot, RestoreColumn *cols, int ncols,
		  const bool *which)
{
	uint32		hash = 0;

	for (int c = 0; c < ncols; c++)
	{
		if (!which[cols[c].recorded])
			continue;
		hash = shadow_hash_value(slot->tts_values[cols[c].live],
								 slot->tts_isnull[cols[c].live],
								 cols[c].typlen, cols[c].typbyval, hash);
	}
	return hash;
}

/*
 * A row that needs a column the table lost since cannot be undone: an
 * INSERT or DELETE needs every column, an UPDATE the ones it captured.
 */
static void
undo_check_gone(RowUndo *u, const ShadowRow *row)
{
	bool		needs = row->op != GUARD_OP_UPDATE;

	for (int i = 0; i < row->natts && !needs; i++)
		needs = row->captured[i] && u->change->attnames[i] != NULL &&
			u->colindex[i] < 0;
	if (needs)
		guard_undo_blocked_error(u->change, u->gone);
}

/*
 * Judge an undone UPDATE: it writes back the columns it captured, and
 * conflicts if its row was deleted or written since.  A conflicting row
 * keeps the columns no later change wrote (all of them, in overwrite mode);
 * if none wrote any, it was written outside guard and keeps none.
 * Returns whether the row conflicts; sets *apply.
 */
static bool
undo_judge_update(RowUndo *u, const ShadowRow *row, bool live, bool *apply)
{
	char	   *key;
	const GuardLaterEntry *entry;
	bool		any = false;
	MemoryContext old;

	for (int c = 0; c < u->ncols; c++)
		u->write[c] = row->captured[u->cols[c].recorded];
	if (!live)
	{
		/* deleted since: nothing to write the columns into */
		*apply = false;
		return true;
	}
	if (u->force ||
		live_hash(u->ks.slot, u->cols, u->ncols, row->captured) == row->hash)
		return false;

	old = MemoryContextSwitchTo(u->rowcxt);
	key = guard_key_text(u->change, row->keyvalues);
	MemoryContextSwitchTo(old);
	if (u->later == NULL)
		u->later = guard_later_writes_build(u->change, u->exclude);
	entry = guard_later_find(u->later, key);
	for (int c = 0; c < u->ncols; c++)
	{
		if (u->write[c] && guard_later_wrote(entry, u->cols[c].name))
		{
			any = true;
			if (u->mode != GUARD_ON_CONFLICT_OVERWRITE)
				u->write[c] = false;
		}
	}
	if (!any && u->mode != GUARD_ON_CONFLICT_OVERWRITE)
	{
		/* written outside guard: every column is suspect */
		for (int c = 0; c < u->ncols; c++)
			u->write[c] = false;
	}
	*apply = false;
	for (int c = 0; c < u->ncols; c++)
		*apply |= u->write[c];
	return true;
}

/*
 * Judge one row: which columns it writes back (u->write), whether it is
 * written back at all (*apply), and whether it conflicts (the result).
 * An undone DELETE conflicts if its key exists again; an undone INSERT if
 * its row changed since (one deleted since has nothing to undo).
 */
static bool
undo_judge_row(RowUndo *u, const ShadowRow *row, bool live, bool *apply)
{
	const GuardChange *change = u->change;

	*apply = true;
	switch (row->op)
	{
		case GUARD_OP_UPDATE:
			return undo_judge_update(u, row, live, apply);
		case GUARD_OP_DELETE:
			for (int c = 0; c < u->ncols; c++)
				u->write[c] = true;
			if (live)
			{
				*apply = (u->mode == GUARD_ON_CONFLICT_OVERWRITE);
				return true;
			}
			break;
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
				if (live_hash(u->ks.slot, u->cols, u->ncols, all) != row->hash)
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
 * Keep the key of a conflicting row (the first few) and the change sets
 * that wrote it since, for the error.
 */
static void
undo_note_conflict(RowUndo *u, const ShadowRow *row)
{
	const GuardLaterEntry *entry = NULL;
	char	   *key;

	if (u->nsamples >= MAX_SAMPLES)
		return;
	key = guard_key_text(u->change, row->keyvalues);
	u->samples[u->nsamples++] = key;
	if (u->later == NULL)
		u->later = guard_later_writes_build(u->change, u->exclude);
	if (strlen(key) < GUARD_LATER_KEYLEN)
		entry = guard_later_find(u->later, key);
	if (entry)
		u->sample_changesets = list_concat(u->sample_changesets,
										   guard_later_changesets(entry));
}

/*
 * Add a row to write back to the tuplestore: its key, its op, and per
 * column the before-value and whether to write it.
 */
static void
undo_put_row(RowUndo *u, const ShadowRow *row)
{
	const GuardChange *change = u->change;

	memset(u->nulls, true, sizeof(bool) * u->enr_natts);
	for (int k = 0; k < change->nkeys; k++)
	{
		u->values[k] = row->keyvalues[k];
		u->nulls[k] = false;
	}
	u->values[change->nkeys] = CharGetDatum(row->op == GUARD_OP_UPDATE ? 'U' :
											row->op == GUARD_OP_DELETE ? 'D' : 'I');
	u->nulls[change->nkeys] = false;
	for (int c = 0; c < u->ncols && row->op != GUARD_OP_INSERT; c++)
	{
		int			i = u->cols[c].recorded;
		int			v = change->nkeys + 1 + 2 * c;

		if (row->captured[i] && !row->nulls[i])
		{
			u->values[v] = row->values[i];
			u->nulls[v] = false;
		}
		u->values[v + 1] = BoolGetDatum(u->write[c]);
		u->nulls[v + 1] = false;
		if (u->write[c])
			u->cols[c].used = true;
	}
	tuplestore_putvalues(u->rows, u->enrdesc, u->values, u->nulls);
	u->napply[row->op - 1]++;
}

/*
 * Decode the snapshot and judge every row against its live version as of
 * now (every commit made before the lock was granted), collecting the rows
 * to write back.
 */
static void
undo_read_rows(RowUndo *u)
{
	const GuardChange *change = u->change;
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	ShadowReader *reader;
	ShadowRow	row;

	u->rowcxt = AllocSetContextCreate(CurrentMemoryContext, "guard restore row",
									  ALLOCSET_SMALL_SIZES);
	reader = shadow_open(change->change_id, change->natts, change->atttypes,
						 change->keys, change->nkeys, change->inline_chunk);
	while (shadow_next(reader, &row))
	{
		bool		live = guard_keyscan_fetch(&u->ks, row.keyvalues, snapshot);
		bool		apply;

		CHECK_FOR_INTERRUPTS();
		memset(u->write, 0, sizeof(bool) * Max(u->ncols, 1));
		MemoryContextReset(u->rowcxt);

		if (u->gone != NULL)
			undo_check_gone(u, &row);
		if (undo_judge_row(u, &row, live, &apply))
		{
			u->conflicts++;
			if (u->mode == GUARD_ON_CONFLICT_ABORT)
			{
				undo_note_conflict(u, &row);
				continue;
			}
		}
		if (!apply)
		{
			u->skipped++;
			continue;
		}
		undo_put_row(u, &row);
	}
	shadow_close(reader);
	MemoryContextDelete(u->rowcxt);
	guard_keyscan_end(&u->ks);
	UnregisterSnapshot(snapshot);
}

/*
 * The ZG002 error of a restore that aborts on conflicts: how many rows,
 * some of their keys, and the change sets that wrote them since.
 */
static void
undo_conflict_error(RowUndo *u)
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
		char		buf[32];

		snprintf(buf, sizeof(buf), INT64_FORMAT, *(int64 *) lfirst(lc));
		if (strstr(sets.data, buf) == NULL)
			appendStringInfo(&sets, "%s%s", sets.len ? ", " : "", buf);
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

/*
 * Build the statements that apply the rows, reading them from the
 * ephemeral relation: k_N are the key columns, v_N / m_N the value and
 * "write it back" flag of column N, op the row's operation.
 */
static char *
build_sql(char op, const char *qualname, const GuardChange *change,
		  RestoreColumn *cols, int ncols, GuardOnConflict mode)
{
	StringInfoData sql;
	StringInfoData keyjoin;
	bool		first = true;

	initStringInfo(&keyjoin);
	for (int k = 0; k < change->nkeys; k++)
		appendStringInfo(&keyjoin, " AND t.%s = r.k_%d",
						 quote_identifier(change->attnames[change->keys[k] - 1]), k + 1);

	initStringInfo(&sql);
	switch (op)
	{
		case 'U':
			appendStringInfo(&sql, "UPDATE %s AS t SET ", qualname);
			for (int c = 0; c < ncols; c++)
			{
				const char *col = quote_identifier(cols[c].name);

				if (!cols[c].used || cols[c].generated)
					continue;
				appendStringInfo(&sql, "%s%s = CASE WHEN r.m_%d THEN r.v_%d ELSE t.%s END",
								 first ? "" : ", ", col, c, c, col);
				first = false;
			}
			appendStringInfo(&sql, " FROM " ENR_NAME " r WHERE r.op = 'U'%s",
							 keyjoin.data);
			break;
		case 'D':
			appendStringInfo(&sql, "INSERT INTO %s AS t (", qualname);
			for (int c = 0; c < ncols; c++)
			{
				if (cols[c].generated)
					continue;
				appendStringInfo(&sql, "%s%s", first ? "" : ", ",
								 quote_identifier(cols[c].name));
				first = false;
			}
			appendStringInfoString(&sql, ") OVERRIDING SYSTEM VALUE SELECT ");
			first = true;
			for (int c = 0; c < ncols; c++)
			{
				if (cols[c].generated)
					continue;
				appendStringInfo(&sql, "%sr.v_%d", first ? "" : ", ", c);
				first = false;
			}
			appendStringInfoString(&sql, " FROM " ENR_NAME " r WHERE r.op = 'D'");
			if (mode == GUARD_ON_CONFLICT_OVERWRITE)
			{
				appendStringInfoString(&sql, " ON CONFLICT (");
				for (int k = 0; k < change->nkeys; k++)
					appendStringInfo(&sql, "%s%s", k ? ", " : "",
									 quote_identifier(change->attnames[change->keys[k] - 1]));
				appendStringInfoString(&sql, ") DO UPDATE SET ");
				first = true;
				for (int c = 0; c < ncols; c++)
				{
					if (cols[c].generated)
						continue;
					appendStringInfo(&sql, "%s%s = excluded.%s", first ? "" : ", ",
									 quote_identifier(cols[c].name),
									 quote_identifier(cols[c].name));
					first = false;
				}
			}
			break;
		case 'I':
			appendStringInfo(&sql, "DELETE FROM %s AS t USING " ENR_NAME " r WHERE r.op = 'I'%s",
							 qualname, keyjoin.data);
			break;
	}
	return sql.data;
}

/*
 * The restore's rows, for fkcheck.c: where they are, their key and their
 * columns.
 */
static void
undo_fk_write(RowUndo *u, GuardFkWrite *w)
{
	const GuardChange *change = u->change;

	w->rel = u->rel;
	w->enrname = ENR_NAME;
	w->nkeys = change->nkeys;
	for (int k = 0; k < change->nkeys; k++)
	{
		w->keynames[k] = change->attnames[change->keys[k] - 1];
		w->keytypes[k] = change->atttypes[change->keys[k] - 1];
	}
	w->ncols = u->ncols;
	w->colnames = palloc(sizeof(char *) * Max(u->ncols, 1));
	for (int c = 0; c < u->ncols; c++)
		w->colnames[c] = u->cols[c].name;
}

/*
 * Write the collected rows back with one statement per operation that has
 * rows; rows a statement did not reach count as skipped.  They run in the
 * context undo_target.c sets up: as the table's owner, as replica (user and
 * foreign key triggers do not fire, guard's capture does), with the
 * caller's search_path.  The foreign keys involving the rows are collected
 * before and after, for fkcheck.c to check at the end of the restore.
 */
static void
undo_apply_rows(RowUndo *u, GuardRestoreReport *report)
{
	GuardAsRole as;
	EphemeralNamedRelation enr = palloc0(sizeof(EphemeralNamedRelationData));
	const char ops[3] = {'I', 'U', 'D'};	/* by GuardRowOp - 1 */
	GuardFkWrite fkw;

	StaticAssertStmt(GUARD_OP_INSERT == 1 && GUARD_OP_UPDATE == 2 &&
					 GUARD_OP_DELETE == 3, "ops[] follows GuardRowOp");
	enr->md.name = ENR_NAME;
	enr->md.reliddesc = InvalidOid;
	enr->md.tupdesc = u->enrdesc;
	enr->md.enrtype = ENR_NAMED_TUPLESTORE;
	enr->md.enrtuples = u->napply[0] + u->napply[1] + u->napply[2];
	enr->reldata = u->rows;
	undo_fk_write(u, &fkw);

	guard_undo_write_begin(&as, u->rel);
	if (SPI_register_relation(enr) != SPI_OK_REL_REGISTER)
		elog(ERROR, "guard: could not register the rows to restore");
	guard_fk_note_write(&fkw, false);
	tuplestore_rescan(u->rows);
	for (int o = 0; o < 3; o++)
	{
		int64		n = u->napply[o];
		int			rc;

		if (n == 0)
			continue;
		rc = SPI_execute(build_sql(ops[o], u->qualname, u->change, u->cols,
								   u->ncols, u->mode),
						 false, 0);
		if (rc < 0)
			elog(ERROR, "guard: restore statement failed (%d)", rc);
		report->restored += SPI_processed;
		/* rows the statement did not reach were skipped */
		if ((int64) SPI_processed < n)
			u->skipped += n - SPI_processed;
		tuplestore_rescan(u->rows);
	}
	guard_fk_note_write(&fkw, true);
	tuplestore_rescan(u->rows);
	guard_as_role_end(&as);
}

/*
 * Undo the rows of one change.  Fills *report.  With "force", rows are
 * written back without conflict checks (the values of a column that a
 * schema change undo has just re-created).  "exclude" (int8[]) holds the
 * change sets restored together, whose later writes are expected.
 */
void
guard_undo_rows(const GuardChange *change, GuardOnConflict mode, Datum exclude,
				bool force, GuardRestoreReport *report)
{
	RowUndo		u;

	memset(&u, 0, sizeof(u));
	u.change = change;
	u.mode = mode;
	u.exclude = exclude;
	u.force = force;

	report->change_id = change->change_id;
	report->changeset_id = change->changeset_id;
	report->relation = pstrdup(change->relation);
	report->kind = pstrdup(change->kind);

	undo_open_table(&u);
	undo_begin_rows(&u);
	undo_read_rows(&u);

	if (mode == GUARD_ON_CONFLICT_ABORT && u.conflicts > 0)
		undo_conflict_error(&u);
	if (u.napply[0] + u.napply[1] + u.napply[2] > 0)
		undo_apply_rows(&u, report);
	tuplestore_end(u.rows);

	report->skipped = u.skipped;
	report->conflicts = u.conflicts;
	table_close(u.rel, NoLock);
}
