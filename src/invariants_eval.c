/*-------------------------------------------------------------------------
 *
 * invariants_eval.c
 *	  Evaluating invariants and reporting their violations: what the
 *	  statement, commit-time and on-demand checks share.
 *
 * A row check is evaluated in C over rows of the table (all of them, or
 * those with given keys), from the expression relcache.c compiled once
 * per relation and invalidation; each check gets its ExprState in the
 * checking statement's own executor state.  A query invariant is a SELECT
 * returning one boolean, run through SPI as the role that declared it,
 * with the search_path it was declared under.
 *
 * enforce: the ERROR names the invariant, the table, the change and up to
 * GUARD_MAX_SAMPLES failing keys.  warn: a row in guard.violation, a WARNING,
 * and a NOTIFY on guard.notify_channel, delivered at commit.
 *
 * Calls relcache.c, rows.c, changes.c and spi.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/tupconvert.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "guard.h"

/*
 * The invariants declared on table "rel", into *list: from the cache
 * when a policy of its own governs "rel" (the usual case), else read from
 * guard.invariant now (a table protected no more keeps its invariants,
 * and a partition has none of its own).
 */
void
guard_invariants_of(Relation rel, GuardInvariantList *list)
{
	GuardRelCache *entry = guard_relcache_lookup(rel);

	memset(list, 0, sizeof(*list));
	list->rel = rel;
	if (entry != NULL && entry->policy.relid == RelationGetRelid(rel))
	{
		list->entry = entry;
		list->n = entry->ninvariants;
		list->defs = entry->invariants;
	}
	else
	{
		list->n = guard_invariants_read(RelationGetRelid(rel),
										CurrentMemoryContext, &list->defs);
		list->checks = palloc0(sizeof(Expr *) * Max(list->n, 1));
	}
}

/*
 * The compiled row check of invariant "i" of a list (NULL for a query
 * invariant): the cache's, or compiled now for a table not cached.
 */
Expr *
guard_invariant_row_check(GuardInvariantList *list, int i)
{
	const GuardInvariant *def = &list->defs[i];

	if (list->entry != NULL)
		return guard_relcache_row_check(list->entry, list->rel, i);
	if (def->row_check != NULL && list->checks[i] == NULL)
		list->checks[i] = guard_compile_row_check(list->rel, def->row_check,
												  def->search_path);
	return list->checks[i];
}

/*
 * The key of a row as text, (a, b)=(1, x); "row N" for a table without key.
 * The slot is deformed whole: a row check reads only the columns it names.
 */
char *
guard_slot_key_text(Relation rel, TupleTableSlot *slot, const AttrNumber *keys,
					int nkeys, int64 rowno)
{
	StringInfoData buf;
	TupleDesc	desc = RelationGetDescr(rel);

	if (nkeys == 0)
		return psprintf("row " INT64_FORMAT, rowno);
	slot_getallattrs(slot);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '(');
	for (int k = 0; k < nkeys; k++)
		appendStringInfo(&buf, "%s%s", k ? ", " : "",
						 quote_identifier(NameStr(TupleDescAttr(desc, keys[k] - 1)->attname)));
	appendStringInfoString(&buf, ")=(");
	for (int k = 0; k < nkeys; k++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, keys[k] - 1);
		Oid			typoutput;
		bool		varlena;

		getTypeOutputInfo(att->atttypid, &typoutput, &varlena);
		appendStringInfo(&buf, "%s%s", k ? ", " : "",
						 slot->tts_isnull[keys[k] - 1] ? "NULL" :
						 OidOutputFunctionCall(typoutput, slot->tts_values[keys[k] - 1]));
	}
	appendStringInfoChar(&buf, ')');
	return buf.data;
}

/*
 * Where and when a violation was found, as the first sentence of its
 * DETAIL, translated.  Only ids that will exist are named: those of warn
 * mode, whose change commits with its violation.  An enforce-mode error
 * rolls the change back and a dry run records nothing for good, so their
 * DETAIL names the statement instead.
 */
static char *
checked_sentence(const GuardCheckedAt *at, int mode, int64 changeset_id)
{
	bool		ids = mode != GUARD_MODE_ENFORCE && at->change_id != 0 &&
		!guard_change_id_provisional(at->change_id);
	bool		dry_run = guard_changes_are_provisional();

	switch (at->when)
	{
		case GUARD_CHECKED_AT_STATEMENT_END:
			if (ids)
				return psprintf(_("Checked at the end of change %lld (change set %lld)."),
								(long long) at->change_id, (long long) changeset_id);
			/* the statements of a dry run are guard's own */
			if (dry_run)
				return pstrdup(_("Checked at the end of a statement of the dry run."));
			if (at->statement)
				return psprintf(_("Checked at the end of statement \"%s\"."),
								at->statement);
			return pstrdup(_("Checked at the end of the statement."));
		case GUARD_CHECKED_AT_COMMIT:
			if (ids)
				return psprintf(_("Checked at commit, after change %lld (change set %lld)."),
								(long long) at->change_id, (long long) changeset_id);
			if (at->statement && !dry_run && at->wrote_failing)
				return psprintf(_("Checked at commit; the last statement of the transaction to write rows failing a deferred check was \"%s\"."),
								at->statement);
			if (at->statement && !dry_run)
				return psprintf(_("Checked at commit; the last statement of the transaction to write the table was \"%s\"."),
								at->statement);
			return pstrdup(_("Checked at commit."));
		case GUARD_CHECKED_AFTER_DDL:
			break;
		case GUARD_CHECKED_AT_COMMIT_AFTER_DDL:
			return pstrdup(_("Checked at commit over the whole table, as a schema change in the transaction changed its rows."));
	}
	return pstrdup(_("Checked over the whole table, as a schema change changed its rows."));
}

/*
 * Sample keys as one string for a message: "(id)=(1), (id)=(2)".
 */
char *
guard_sample_keys(List *samples)
{
	StringInfoData keys;
	ListCell   *lc;

	initStringInfo(&keys);
	foreach(lc, samples)
		appendStringInfo(&keys, "%s%s", keys.len ? ", " : "", (char *) lfirst(lc));
	return keys.data;
}

/*
 * Record a warn-mode violation in guard.violation, and send its NOTIFY
 * (delivered at commit).
 */
static void
record_violation(Oid relid, const char *relation, const char *invariant,
				 int64 change_id, int64 changeset_id, int64 rows, List *samples)
{
	GuardAsRole owner;
	Oid			types[7] = {OIDOID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID, TEXTARRAYOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(samples), 1));
	StringInfoData payload;
	ListCell   *lc;

	foreach(lc, samples)
		elems[foreach_current_index(lc)] = CStringGetTextDatum((char *) lfirst(lc));
	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(relation);
	values[2] = CStringGetTextDatum(invariant);
	values[3] = Int64GetDatum(changeset_id);
	nulls[3] = changeset_id ? ' ' : 'n';
	values[4] = Int64GetDatum(change_id);
	nulls[4] = change_id ? ' ' : 'n';
	values[5] = Int64GetDatum(rows);
	values[6] = PointerGetDatum(construct_array(elems, list_length(samples), TEXTOID,
												-1, false, TYPALIGN_INT));
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("INSERT INTO guard.violation (relid, relation, invariant, changeset_id,"
				  " change_id, rows, sample_keys, role)"
				  " VALUES ($1, $2, $3, $4, $5, $6, $7, session_user)",
				  7, types, values, nulls);
	guard_as_role_end(&owner);

	initStringInfo(&payload);
	appendStringInfoString(&payload, "{\"table\": ");
	escape_json(&payload, relation);
	appendStringInfoString(&payload, ", \"invariant\": ");
	escape_json(&payload, invariant);
	appendStringInfo(&payload, ", \"changeset\": " INT64_FORMAT ", \"change\": " INT64_FORMAT
					 ", \"count\": " INT64_FORMAT ", \"sample_keys\": [",
					 changeset_id, change_id, rows);
	foreach(lc, samples)
	{
		if (foreach_current_index(lc) > 0)
			appendStringInfoString(&payload, ", ");
		escape_json(&payload, (char *) lfirst(lc));
	}
	appendStringInfoString(&payload, "]}");
	if (guard_notify_channel && guard_notify_channel[0] && payload.len < 7900)
		Async_Notify(guard_notify_channel, payload.data);
}

/*
 * Report a violation: an ERROR in enforce mode; else a guard.violation row,
 * a WARNING and a NOTIFY delivered at commit (a dry run, which keeps
 * nothing, only warns).
 */
void
guard_report_violation(int mode, Oid relid, const char *relation,
					   const char *invariant, int64 rows, List *samples,
					   const GuardCheckedAt *at)
{
	char	   *keys = guard_sample_keys(samples);
	int64		changeset_id = guard_changeset_current(false);
	char	   *where = checked_sentence(at, mode, changeset_id);
	bool		dry_run = guard_changes_are_provisional();

	if (mode == GUARD_MODE_ENFORCE)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 rows > 0 ?
				 errmsg_plural("invariant \"%s\" on table %s is violated by " INT64_FORMAT " row",
							   "invariant \"%s\" on table %s is violated by " INT64_FORMAT " rows",
							   rows, invariant, relation, rows) :
				 errmsg("invariant \"%s\" on table %s is violated", invariant, relation),
				 keys[0] ?
				 errdetail("%s Failing keys: %s.", where, keys) :
				 errdetail_internal("%s", where),
				 errhint("The transaction is rolled back; nothing of the change is kept.")));

	if (!dry_run)
		record_violation(relid, relation, invariant, at->change_id,
						 changeset_id, rows, samples);
	ereport(WARNING,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg("invariant \"%s\" on table %s is violated", invariant, relation),
			 keys[0] ?
			 errdetail("%s Failing rows: " INT64_FORMAT "; keys: %s.",
					   where, rows, keys) :
			 errdetail_internal("%s", where),
			 dry_run ?
			 errhint("guard.mode is warn: the real run would commit the change and record the violation in guard.violations.") :
			 errhint("guard.mode is warn: the change commits and the violation is recorded in guard.violations.")));
}

/*
 * Run one query invariant; true when it holds.
 */
bool
guard_run_query_invariant(const GuardInvariant *def, const char *relation)
{
	GuardAsRole as;
	bool		isnull = true;
	bool		result = false;
	uint64		n;
	int			rc;

	guard_as_role_path_begin(&as, get_role_oid(def->owner, false),
							 def->search_path, true);
	rc = SPI_execute(def->query, false, 2);
	if (rc != SPI_OK_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("query of invariant \"%s\" on table %s did not run as a SELECT",
						def->name, relation),
				 errdetail_internal("SPI_execute returned %s.",
									SPI_result_code_string(rc))));
	n = SPI_processed;
	if (n == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &isnull);

		result = !isnull && DatumGetBool(d);
	}
	guard_as_role_end(&as);
	if (n != 1)
		ereport(ERROR,
				(errcode(ERRCODE_CARDINALITY_VIOLATION),
				 errmsg("query of invariant \"%s\" on table %s returned " UINT64_FORMAT " rows",
						def->name, relation, n),
				 errhint("An invariant query must return exactly one row.")));
	return result;
}

/*
 * Evaluate the prepared row checks on one row, counting failures and
 * keeping up to GUARD_MAX_SAMPLES keys ("key", or the row's own) of each.
 */
static void
check_one_row(ExprState **states, int ndefs, ExprContext *econtext,
			  Relation rel, TupleTableSlot *row, const char *key,
			  const AttrNumber *keyatts, int nkeys, int64 rowno,
			  int64 *failing, List **samples)
{
	slot_getallattrs(row);
	econtext->ecxt_scantuple = row;
	for (int i = 0; i < ndefs; i++)
	{
		bool		isnull;
		Datum		d;

		if (states[i] == NULL)
			continue;
		d = ExecEvalExprSwitchContext(states[i], econtext, &isnull);
		if (!isnull && !DatumGetBool(d) && failing[i]++ < GUARD_MAX_SAMPLES)
			samples[i] = lappend(samples[i],
								 key ? pstrdup(key) :
								 guard_slot_key_text(rel, row, keyatts, nkeys, rowno));
	}
	ResetExprContext(econtext);
}

/*
 * Check the row checks of "list" that "which" selects over every row of its
 * table (or, when keys is not NULL, over the rows with those keys, a hash
 * table of GuardFailingKey), filling counts and samples per invariant.
 */
void
guard_check_rows(GuardInvariantList *list, const bool *which,
				 HTAB *keys, int64 *failing, List **samples)
{
	Relation	rel = list->rel;
	int			ndefs = list->n;
	EState	   *estate = CreateExecutorState();
	ExprContext *econtext = GetPerTupleExprContext(estate);
	ExprState **states = palloc0(sizeof(ExprState *) * Max(ndefs, 1));
	AttrNumber	keyatts[INDEX_MAX_KEYS];
	int			nkeys = guard_key_attnums(rel, keyatts);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	int64		rowno = 0;

	for (int i = 0; i < ndefs; i++)
	{
		if (which[i] && list->defs[i].row_check)
		{
			Expr	   *check = guard_invariant_row_check(list, i);
			MemoryContext old = MemoryContextSwitchTo(estate->es_query_cxt);

			states[i] = ExecInitExpr(check, NULL);
			MemoryContextSwitchTo(old);
		}
	}

	if (keys == NULL)
	{
		/* the whole table (a partitioned table scans its partitions) */
		List	   *leaves = list_make1_oid(RelationGetRelid(rel));
		ListCell   *lc;

		if (rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
		{
			List	   *all = find_all_inheritors(RelationGetRelid(rel), AccessShareLock, NULL);

			leaves = NIL;
			foreach(lc, all)
				if (get_rel_relkind(lfirst_oid(lc)) == RELKIND_RELATION)
					leaves = lappend_oid(leaves, lfirst_oid(lc));
		}
		foreach(lc, leaves)
		{
			Relation	leaf = lfirst_oid(lc) == RelationGetRelid(rel) ? rel :
				table_open(lfirst_oid(lc), AccessShareLock);
			TupleTableSlot *leafslot = table_slot_create(leaf, NULL);
			TupleConversionMap *map = convert_tuples_by_name(RelationGetDescr(leaf),
															 RelationGetDescr(rel));
			TableScanDesc scan = table_beginscan(leaf, snapshot, 0, NULL);

			while (table_scan_getnextslot(scan, ForwardScanDirection, leafslot))
			{
				TupleTableSlot *row = leafslot;

				CHECK_FOR_INTERRUPTS();
				rowno++;
				if (map)
					row = execute_attr_map_slot(map->attrMap, leafslot, slot);
				check_one_row(states, ndefs, econtext, rel, row, NULL, keyatts,
							  nkeys, rowno, failing, samples);
			}
			table_endscan(scan);
			ExecDropSingleTupleTableSlot(leafslot);
			if (leaf != rel)
				table_close(leaf, AccessShareLock);
		}
	}
	else
	{
		GuardChange layout;
		GuardKeyScan ks;
		HASH_SEQ_STATUS status;
		GuardFailingKey *fk;

		guard_change_from_relation(rel, &layout);
		if (!guard_keyscan_begin(&ks, rel, &layout))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table \"%s\" has no primary key or replica identity index",
							RelationGetRelationName(rel)),
					 errdetail("guard finds the rows that failed a deferred row check by their key.")));
		hash_seq_init(&status, keys);
		while ((fk = hash_seq_search(&status)) != NULL)
		{
			TupleTableSlot *row;
			TupleConversionMap *map;

			if (!guard_keyscan_fetch(&ks, fk->values, snapshot))
				continue;		/* deleted since */
			row = ks.slot;
			map = convert_tuples_by_name(RelationGetDescr(ks.found), RelationGetDescr(rel));
			if (map)
				row = execute_attr_map_slot(map->attrMap, ks.slot, slot);
			check_one_row(states, ndefs, econtext, rel, row, fk->key, keyatts,
						  nkeys, 0, failing, samples);
		}
		guard_keyscan_end(&ks);
	}
	UnregisterSnapshot(snapshot);
	ExecDropSingleTupleTableSlot(slot);
	FreeExecutorState(estate);
}

