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
 *	   the row changed since (undo_judge.c).  An UPDATE that moved the key
 *	   goes back as a move (undo_moves.c).
 *	3. Put the rows to write back into a tuplestore and apply them with a
 *	   few set-based statements (undo_sql.c) that read it as an ephemeral
 *	   named relation.  They run as the table's owner (FORCE ROW LEVEL
 *	   SECURITY aside, as for foreign key checks), with the caller's
 *	   search_path for whatever user code runs, and with
 *	   session_replication_role = replica (undo_target.c): the values
 *	   written back are the captured ones, not what ordinary user triggers
 *	   would make of them, and foreign keys are checked once the whole
 *	   restore is done (fkcheck.c), whatever order cascades imposed.  CHECK
 *	   constraints, defaults and ENABLE ALWAYS triggers still apply.  guard's
 *	   capture triggers are ENABLE ALWAYS, so the writes are captured like
 *	   any other: a restore is a change set, and can itself be restored.
 *
 * A dry run that cannot write (on a hot standby, in a read-only
 * transaction) takes an ACCESS SHARE lock in step 1, and in step 3 plays
 * the statements on an overlay of the tables (undo_plan.c), which the
 * lookups by key of step 2 read first.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/queryenvironment.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"
#include "utils/varlena.h"

#include "undo.h"

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

	u->rel = try_table_open(change->relid,
							guard_plan_lockmode(u->plan));
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

	/* a TRUNCATE of a table without key (capture => 'ddl'): rows go back as they are */
	if (change->nkeys > 0 && !guard_keyscan_begin(&u->ks, u->rel, change))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot restore change " INT64_FORMAT ": table \"%s\" no longer has the key it was captured with",
						change->change_id, guard_undo_relname(change)),
				 errhint("Restore the later change set that altered the table first.")));
}

/*
 * Complete the columns that undo_open_table() mapped: which are identity
 * columns GENERATED ALWAYS, which are the key's, the key's equality
 * operators, and the columns the table gained since the change (a row
 * moved back carries their live values).
 */
static void
undo_prepare_columns(RowUndo *u)
{
	TupleDesc	livedesc = RelationGetDescr(u->rel);
	bool	   *mapped = palloc0(sizeof(bool) * Max(livedesc->natts, 1));

	u->cols = repalloc(u->cols, sizeof(RestoreColumn) * Max(livedesc->natts, 1));
	for (int c = 0; c < u->ncols; c++)
		mapped[u->cols[c].live] = true;
	for (int a = 0; a < livedesc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(livedesc, a);
		RestoreColumn *col;

		if (mapped[a] || att->attisdropped)
			continue;
		col = &u->cols[u->ncols++];
		memset(col, 0, sizeof(RestoreColumn));
		col->name = pstrdup(NameStr(att->attname));
		col->recorded = -1;
		col->live = a;
		col->generated = att->attgenerated != '\0';
		col->typlen = att->attlen;
		col->typbyval = att->attbyval;
	}
	for (int c = 0; c < u->ncols; c++)
		u->cols[c].identity_always =
			TupleDescAttr(livedesc, u->cols[c].live)->attidentity == ATTRIBUTE_IDENTITY_ALWAYS;
	for (int k = 0; k < u->change->nkeys; k++)
	{
		u->keycol[k] = u->colindex[u->change->keys[k] - 1];
		u->eqop[k] = u->ks.leaves[0].eqop[k];
	}
	pfree(mapped);
}

/*
 * May the UPDATE that writes rows back in place find them by the tid of
 * the live row each was judged against (undo_sql.c), instead of probing
 * the key index again?  Only where that row is still the one the UPDATE
 * reaches: a plain table (a partition's tid is its own), a restore that
 * writes (a plan's rows have no tid), and no trigger of the user's that
 * fires while restore writes as replica (one could update a row of the
 * table before the UPDATE runs, and move it to another tid).  The table
 * is locked against other writers since the rows were judged; the
 * statements that run before the UPDATE only delete other keys' rows.
 */
static bool
undo_may_use_tids(RowUndo *u)
{
	TriggerDesc *td = u->rel->trigdesc;

	if (u->plan != NULL || u->rel->rd_rel->relkind != RELKIND_RELATION)
		return false;
	for (int i = 0; td != NULL && i < td->numtriggers; i++)
	{
		Trigger    *tg = &td->triggers[i];

		if ((tg->tgenabled == TRIGGER_FIRES_ALWAYS ||
			 tg->tgenabled == TRIGGER_FIRES_ON_REPLICA) &&
			strncmp(tg->tgname, "guard_capture_", 14) != 0)
			return false;
	}
	return true;
}

/*
 * Describe the rows to write back (k_1.., op, m, then v_N per column, and
 * t when by_tid: see undo.h) and open their tuplestore.
 */
static void
undo_begin_rows(RowUndo *u)
{
	const GuardChange *change = u->change;
	TupleDesc	livedesc = RelationGetDescr(u->rel);

	u->by_tid = undo_may_use_tids(u);
	u->enr_natts = change->nkeys + 2 + u->ncols + (u->by_tid ? 1 : 0);
	u->enrdesc = CreateTemplateTupleDesc(u->enr_natts);
	for (int k = 0; k < change->nkeys; k++)
	{
		char		name[NAMEDATALEN];

		snprintf(name, sizeof(name), "k_%d", k + 1);
		TupleDescInitEntry(u->enrdesc, k + 1, name,
						   change->atttypes[change->keys[k] - 1], -1, 0);
	}
	TupleDescInitEntry(u->enrdesc, change->nkeys + 1, "op", CHAROID, -1, 0);
	TupleDescInitEntry(u->enrdesc, change->nkeys + 2, "m", BYTEAOID, -1, 0);
	for (int c = 0; c < u->ncols; c++)
	{
		char		name[NAMEDATALEN];
		Form_pg_attribute att = TupleDescAttr(livedesc, u->cols[c].live);

		snprintf(name, sizeof(name), "v_%d", c);
		TupleDescInitEntry(u->enrdesc, change->nkeys + 3 + c, name,
						   att->atttypid, att->atttypmod, 0);
		TupleDescInitEntryCollation(u->enrdesc, change->nkeys + 3 + c,
									att->attcollation);
	}
	if (u->by_tid)
		TupleDescInitEntry(u->enrdesc, u->enr_natts, "t", TIDOID, -1, 0);
	u->rows = tuplestore_begin_heap(false, false, work_mem);
	u->values = palloc(sizeof(Datum) * u->enr_natts);
	u->nulls = palloc(sizeof(bool) * u->enr_natts);
	u->write = palloc(sizeof(bool) * Max(u->ncols, 1));
}

/*
 * Add a row to write back to the tuplestore: its key, its op, and per
 * column the before-value; an UPDATE the bitmap of the columns it writes
 * back, a DELETE whether it replaces a live row with its key.
 */
static void
undo_put_row(RowUndo *u, const ShadowRow *row, bool replace,
			 ItemPointer tid)
{
	const GuardChange *change = u->change;
	UndoOp		op = row->op == GUARD_OP_UPDATE ? UNDO_UPDATE :
		row->op == GUARD_OP_DELETE ? UNDO_INSERT_DELETED : UNDO_DELETE_INSERTED;
	int			nk = change->nkeys;

	memset(u->nulls, true, sizeof(bool) * u->enr_natts);
	for (int k = 0; k < nk; k++)
	{
		u->values[k] = row->keyvalues[k];
		u->nulls[k] = false;
	}
	u->values[nk] = CharGetDatum(guard_undo_opchar[op]);
	u->nulls[nk] = false;
	if (op == UNDO_UPDATE || replace)
	{
		int			bytes = (u->ncols + 7) / 8;
		bytea	   *mask = MemoryContextAllocZero(u->rowcxt, VARHDRSZ + bytes);

		SET_VARSIZE(mask, VARHDRSZ + (op == UNDO_UPDATE ? bytes : 0));
		for (int c = 0; c < u->ncols && op == UNDO_UPDATE; c++)
		{
			if (u->write[c])
			{
				((uint8 *) VARDATA(mask))[c / 8] |= 1 << (c % 8);
				u->cols[c].used = true;
			}
		}
		u->values[nk + 1] = PointerGetDatum(mask);
		u->nulls[nk + 1] = false;
		u->replaces |= replace;
	}
	for (int c = 0; c < u->ncols && op != UNDO_DELETE_INSERTED; c++)
	{
		int			i = u->cols[c].recorded;

		if (i >= 0 && row->captured[i] && !row->nulls[i] && u->write[c])
		{
			u->values[nk + 2 + c] = row->values[i];
			u->nulls[nk + 2 + c] = false;
		}
	}
	if (op == UNDO_UPDATE && u->by_tid && tid != NULL)
	{
		u->values[u->enr_natts - 1] = PointerGetDatum(tid);
		u->nulls[u->enr_natts - 1] = false;
		u->ntid++;
	}
	tuplestore_putvalues(u->rows, u->enrdesc, u->values, u->nulls);
	u->napply[op]++;
}

/*
 * A row of a partitioned table that is not found in it now, or a deleted
 * one to insert again, may belong to a partition detached since: it would
 * be written into another partition (the DEFAULT one), or not at all.
 * Refuse if a later change detached a partition that is not attached
 * again (found by the name its statement gives, in the table's schema if
 * unqualified; one that no longer resolves counts as detached).
 */
static void
undo_check_detached(RowUndo *u)
{
	GuardAsRole owner;
	Oid			types[3] = {OIDARRAYOID, INT8OID, TEXTOID};
	Datum		values[3];
	int64		later = 0;
	char	   *statement = NULL;

	if (u->detached != 0 || u->rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		return;
	values[0] = guard_related_relids(u->change->relid);
	values[1] = Int64GetDatum(u->change->change_id);
	values[2] = CStringGetTextDatum(get_namespace_name(RelationGetNamespace(u->rel)));
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT c.changeset_id, pg_catalog.left(c.statement, 200)"
				  " FROM guard.change c, LATERAL pg_catalog.regexp_matches(c.statement,"
				  "  'detach\\s+partition\\s+(?:(\"(?:[^\"]|\"\")+\"|[[:alpha:]_][[:alnum:]_$]*)\\.)?"
				  "(\"(?:[^\"]|\"\")+\"|[[:alpha:]_][[:alnum:]_$]*)', 'gi') m"
				  " WHERE c.relid = ANY ($1) AND c.change_id > $2 AND c.kind = 'ALTER TABLE'"
				  " AND NOT coalesce(pg_catalog.to_regclass(coalesce(m[1], pg_catalog.quote_ident($3))"
				  "   || '.' || m[2]) = ANY ($1), false)"
				  " ORDER BY c.change_id LIMIT 1",
				  3, types, values, NULL);
	if (SPI_processed > 0)
	{
		bool		isnull;

		later = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		statement = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		statement = MemoryContextStrdup(TopTransactionContext, statement ? statement : "");
	}
	guard_as_role_end(&owner);
	u->detached = later != 0 ? 1 : -1;
	if (later != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot restore change " INT64_FORMAT " of table \"%s\": a partition was detached from it since",
						u->change->change_id, guard_undo_relname(u->change)),
				 errdetail("Change set " INT64_FORMAT " detached it: %s", later, statement),
				 errhint("Attach the partition again, then restore.")));
}

/*
 * Count, sample and collect a judged row: a conflict (kept for the error
 * when aborting), a row skipped, a move, or a row to write back.  A row
 * judged after the others (it waited for the later writes of its key) has
 * no live row at hand ("live_at_hand"): a move fetches it again.
 */
static void
undo_settle_row(RowUndo *u, const ShadowRow *row, int64 rowno, bool conflict,
				bool apply, bool replace, bool live_at_hand)
{
	if (conflict)
	{
		u->conflicts++;
		if (u->mode == GUARD_ON_CONFLICT_ABORT)
		{
			if (guard_undo_sample_wanted(u, rowno))
			{
				MemoryContext old = MemoryContextSwitchTo(u->rowcxt);
				char	   *key = guard_key_text(u->change, row->keyvalues);

				MemoryContextSwitchTo(old);
				guard_undo_note_conflict(u, rowno, key, key);
			}
			return;
		}
	}
	if (!apply)
		u->skipped++;
	else if (row->op == GUARD_OP_UPDATE && guard_undo_moves_key(u))
	{
		if (!live_at_hand)
		{
			if (!guard_plan_fetch(u->plan, &u->ks, u->rel, u->change,
								  row->keyvalues, u->snapshot))
				elog(ERROR, "guard: a row to restore is gone");
			guard_undo_found(u);
		}
		guard_undo_moves_add(u, row, conflict);
	}
	else
		undo_put_row(u, row, replace,
					 live_at_hand && u->ks.found != NULL &&
					 RelationGetRelid(u->ks.found) == RelationGetRelid(u->rel) ?
					 &u->ks.slot->tts_tid : NULL);
}

/*
 * Judge one decoded row (the rowno-th of the snapshot) and collect what to
 * write back, or put it aside until the later writes of its key are known.
 */
static void
undo_read_row(RowUndo *u, const ShadowRow *row, int64 rowno)
{
	bool		live = u->change->nkeys > 0 &&
		guard_plan_fetch(u->plan, &u->ks, u->rel, u->change, row->keyvalues,
						 u->snapshot);
	bool		apply;
	bool		replace;
	bool		ask;
	bool		conflict;
	int64		updates = u->napply[UNDO_UPDATE];

	memset(u->write, 0, sizeof(bool) * Max(u->ncols, 1));
	MemoryContextReset(u->rowcxt);
	if (live)
		guard_undo_found(u);
	if (!live || row->op == GUARD_OP_DELETE)
		undo_check_detached(u);

	if (u->gone != NULL)
		guard_undo_check_gone(u, row);
	conflict = guard_undo_judge(u, row, live, &apply, &replace, &ask);
	if (ask)
		guard_undo_ask(u, row, rowno);
	else
		undo_settle_row(u, row, rowno, conflict, apply, replace, true);
	if (live && u->napply[UNDO_UPDATE] > updates)
		u->nupdate_live++;
}

/*
 * guard_later_probe_run() callback: the verdict on a row put aside, now
 * that the later writes of its key are known.
 */
static void
undo_answer_row(const GuardLaterEntry *entry, const char *data, Size len,
				void *arg)
{
	RowUndo    *u = (RowUndo *) arg;
	ShadowRow	row;
	int64		rowno;
	bool		apply;
	bool		replace;
	bool		conflict;
	int64		updates;

	MemoryContextReset(u->rowcxt);
	memset(u->write, 0, sizeof(bool) * Max(u->ncols, 1));
	guard_undo_unpack_row(u, data, len, &row, &rowno);
	updates = u->napply[UNDO_UPDATE];
	conflict = guard_undo_judge_later(u, &row, entry, &apply, &replace);
	undo_settle_row(u, &row, rowno, conflict, apply, replace, false);
	/* a plan counts the UPDATEs of keys live now (guard_undo_plan_apply) */
	if (u->plan != NULL && u->napply[UNDO_UPDATE] > updates &&
		guard_plan_fetch(u->plan, &u->ks, u->rel, u->change, row.keyvalues,
						 u->snapshot))
		u->nupdate_live++;
}

/*
 * Decode the snapshot and judge every row against its live version as of
 * now (every commit made before the lock was granted), collecting the rows
 * to write back; then the rows that were written since, by what later
 * changes wrote to their keys (sorted and merged by later.c, so that
 * memory does not grow with them); then the moves.  The key scan and the
 * snapshot stay open for a plan to play the writes (undo_rows() ends
 * them).
 */
static void
undo_read_rows(RowUndo *u)
{
	const GuardChange *change = u->change;
	ShadowReader *reader;
	ShadowRow	row;
	int64		rowno = 0;

	guard_progress_phase(GUARD_PHASE_READING, guard_change_nrows(change->change_id));
	u->snapshot = RegisterSnapshot(GetLatestSnapshot());
	u->rowcxt = AllocSetContextCreate(CurrentMemoryContext, "guard restore row",
									  ALLOCSET_SMALL_SIZES);
	reader = shadow_open(change->change_id, change->natts, change->atttypes,
						 change->keys, change->nkeys, change->inline_chunk);
	/* snapshot rows come in key order as often as not (see rows.c) */
	u->ks.ordered = true;
	while (shadow_next(reader, &row))
	{
		CHECK_FOR_INTERRUPTS();
		undo_read_row(u, &row, rowno++);
		guard_progress_tick();
	}
	u->ks.ordered = false;
	shadow_close(reader);
	if (u->asks != NULL)
	{
		guard_later_probe_run(u->asks, undo_answer_row, u);
		u->asks = NULL;
	}
	guard_undo_moves_finish(u);
	MemoryContextDelete(u->rowcxt);
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
	w->enrname = UNDO_ENR_NAME;
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
 * Write the collected rows back with the statements undo_sql.c makes; rows
 * a statement did not reach count as skipped.  They run in the context
 * undo_target.c sets up: as the table's owner, as replica (user and foreign
 * key triggers do not fire, guard's capture does), with the caller's
 * search_path.  The foreign keys involving the rows are collected before
 * and after, for fkcheck.c to check at the end of the restore.
 */
static void
undo_apply_rows(RowUndo *u, GuardRestoreReport *report)
{
	GuardAsRole as;
	EphemeralNamedRelation enr = palloc0(sizeof(EphemeralNamedRelationData));
	GuardFkWrite fkw;
	List	   *statements;
	ListCell   *lc;

	enr->md.name = UNDO_ENR_NAME;
	enr->md.reliddesc = InvalidOid;
	enr->md.tupdesc = u->enrdesc;
	enr->md.enrtype = ENR_NAMED_TUPLESTORE;
	enr->md.enrtuples = tuplestore_tuple_count(u->rows);
	enr->reldata = u->rows;
	undo_fk_write(u, &fkw);
	statements = guard_undo_statements(u);

	guard_progress_phase(GUARD_PHASE_WRITING, tuplestore_tuple_count(u->rows));
	guard_undo_write_begin(&as, u->rel);
	if (SPI_register_relation(enr) != SPI_OK_REL_REGISTER)
		elog(ERROR, "guard: could not register the rows to restore");
	guard_fk_note_write(&fkw, false);
	tuplestore_rescan(u->rows);
	foreach(lc, statements)
	{
		UndoStatement *st = lfirst(lc);
		int			rc;

		rc = SPI_execute(st->sql, false, 0);
		if (rc < 0)
			elog(ERROR, "guard: restore statement failed (%d)", rc);
		/* rows the statement did not reach were skipped */
		if (st->counts)
		{
			report->restored += SPI_processed;
			if ((int64) SPI_processed < st->rows)
				u->skipped += st->rows - SPI_processed;
		}
		tuplestore_rescan(u->rows);
	}
	guard_fk_note_write(&fkw, true);
	tuplestore_rescan(u->rows);
	guard_as_role_end(&as);
}

/*
 * Undo the rows of one change, or with a plan only plan it: lock, decode,
 * judge, collect the rows to write back and count; then write them, or
 * play the writes on the plan's overlay.  Fills *report.
 */
static void
undo_rows(RowUndo *u, GuardRestoreReport *report)
{
	const GuardChange *change = u->change;

	report->change_id = change->change_id;
	report->changeset_id = change->changeset_id;
	report->relation = pstrdup(change->relation);
	report->kind = pstrdup(change->kind);

	undo_open_table(u);
	undo_prepare_columns(u);
	undo_begin_rows(u);
	u->later = guard_later_writes_begin(change, u->exclude, u->restoring);
	undo_read_rows(u);

	if (u->mode == GUARD_ON_CONFLICT_ABORT && u->conflicts > 0)
		guard_undo_conflict_error(u);
	guard_later_writes_end(u->later);
	if (u->plan != NULL && tuplestore_tuple_count(u->rows) > 0)
		guard_undo_plan_apply(u, report);
	guard_keyscan_end(&u->ks);
	UnregisterSnapshot(u->snapshot);
	if (u->plan == NULL && tuplestore_tuple_count(u->rows) > 0)
		undo_apply_rows(u, report);
	tuplestore_end(u->rows);

	report->skipped = u->skipped;
	report->conflicts = u->conflicts;
	table_close(u->rel, NoLock);
}

/*
 * Undo the rows of one change.  Fills *report.  With "force", rows are
 * written back without conflict checks (the values of a column that a
 * schema change undo has just re-created).  "exclude" (int8[]) holds the
 * change sets restored together, whose later writes are expected, and
 * "restoring" (int8[]) the changes restored together.
 */
void
guard_undo_rows(const GuardChange *change, GuardOnConflict mode, Datum exclude,
				Datum restoring, bool force, GuardRestoreReport *report)
{
	RowUndo		u;

	memset(&u, 0, sizeof(u));
	u.change = change;
	u.mode = mode;
	u.exclude = exclude;
	u.restoring = restoring;
	u.force = force;
	undo_rows(&u, report);
}

/*
 * Plan the undo of the rows of one change without writing: as
 * guard_undo_rows, but the rows are judged against the overlay "plan" and
 * their writes are played on it (undo_plan.c).
 */
void
guard_undo_rows_plan(const GuardChange *change, GuardOnConflict mode,
					 Datum exclude, Datum restoring, GuardPlan *plan,
					 GuardRestoreReport *report)
{
	RowUndo		u;

	memset(&u, 0, sizeof(u));
	u.change = change;
	u.mode = mode;
	u.exclude = exclude;
	u.restoring = restoring;
	u.plan = plan;
	undo_rows(&u, report);
}
