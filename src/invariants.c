/*-------------------------------------------------------------------------
 *
 * invariants.c
 *	  Invariants: declared facts that every change to a table must keep.
 *
 * A row check is a boolean expression over one row.  It is parsed and
 * checked like a CHECK constraint (no subqueries, aggregates or set-returning
 * functions; here also no volatile functions), planned once per relation and
 * invalidation, and evaluated in C on every row a statement wrote, straight
 * from the statement's transition table.  A query invariant is a SELECT
 * returning one boolean, run through SPI once per check as the role that
 * declared it, with the search_path it was declared under.
 *
 * Immediate invariants are checked at the end of each guarded statement.
 * Deferred ones at COMMIT: rows that fail at the end of a statement are
 * remembered by key (a later statement of the transaction may fix them), and
 * a deferred constraint trigger on guard.pending, armed by one token row per
 * transaction, re-checks those rows and runs the query invariants.  An ERROR
 * there aborts the commit cleanly.
 *
 * enforce: the ERROR names the invariant, the table, the change and up to 5
 * failing keys.  warn: a row in guard.violation, a WARNING, and a NOTIFY on
 * guard.notify_channel, delivered at commit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "parser/parse_collate.h"
#include "parser/parse_expr.h"
#include "parser/parse_relation.h"
#include "parser/parser.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/xid8.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_add_invariant);
PG_FUNCTION_INFO_V1(guard_drop_invariant);
PG_FUNCTION_INFO_V1(guard_check_invariants);
PG_FUNCTION_INFO_V1(guard_check_deferred);

#define MAX_SAMPLES				5
/* failing rows remembered per table before checking the whole table */
#define MAX_FAILING_KEYS		10000

/* one declared invariant */
typedef struct InvariantDef
{
	char	   *name;
	char	   *row_check;		/* NULL for a query invariant */
	char	   *query;
	bool		deferred;
	char	   *owner;			/* the role that declared it */
	char	   *search_path;
} InvariantDef;

/* the invariants of one protected table, cached */
typedef struct InvariantCacheEntry
{
	Oid			relid;
	int			ndefs;
	InvariantDef *defs;
} InvariantCacheEntry;

/* when a violation was found, for its message */
typedef enum CheckedWhen
{
	CHECKED_AT_STATEMENT_END,	/* at the end of a statement */
	CHECKED_AT_COMMIT,			/* by the deferred check at commit */
	CHECKED_AFTER_DDL			/* over the table after a schema change */
} CheckedWhen;

/* a row failing a deferred row check, to re-check at commit */
typedef struct FailingKey
{
	char		key[NAMEDATALEN * 4];
	Datum	   *values;
} FailingKey;

/* a protected table with deferred checks pending in this transaction */
typedef struct PendingRel
{
	Oid			relid;			/* the protected table */
	HTAB	   *failing;		/* key text -> FailingKey */
	bool		overflow;		/* too many: check the whole table */
	int64		change_id;		/* the last change seen, for messages */
} PendingRel;

/* state of one statement's row checks, see guard_invariants_begin() */
struct GuardInvariantSet
{
	Relation	rel;			/* the table the statement wrote */
	Oid			policy_relid;
	int			mode;
	int			ndefs;
	InvariantDef *defs;
	ExprState **states;			/* per row check, NULL for queries */
	EState	   *estate;
	ExprContext *econtext;
	int64	   *failing;		/* rows failing, per immediate row check */
	List	  **samples;		/* sample keys, per immediate row check */
	AttrNumber	keys[INDEX_MAX_KEYS];
	int			nkeys;
	bool		has_deferred;
	PendingRel *pending;
};

static HTAB *invariant_cache = NULL;
static List *pending_rels = NIL;	/* in TopTransactionContext */
static bool token_armed = false;
static SubTransactionId token_subid = InvalidSubTransactionId;

/*
 * Relcache callback: forget the invariants of "relid" (or of all tables);
 * guard.add_invariant() and guard.drop_invariant() send the invalidation.
 */
static void
invariant_cache_invalidate(Datum arg, Oid relid)
{
	if (invariant_cache == NULL)
		return;
	if (!OidIsValid(relid))
	{
		HASH_SEQ_STATUS status;
		InvariantCacheEntry *entry;

		hash_seq_init(&status, invariant_cache);
		while ((entry = hash_seq_search(&status)) != NULL)
			hash_search(invariant_cache, &entry->relid, HASH_REMOVE, NULL);
	}
	else
		hash_search(invariant_cache, &relid, HASH_REMOVE, NULL);
}

/*
 * At the end of the transaction, forget its pending deferred checks.
 */
static void
invariants_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			pending_rels = NIL;
			token_armed = false;
			token_subid = InvalidSubTransactionId;
			break;
		default:
			break;
	}
}

/*
 * A subtransaction that wrote the token row of the deferred check aborted
 * (the row is gone) or committed (its parent owns the row now).
 */
static void
invariants_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							SubTransactionId parentSubid, void *arg)
{
	/* the token row went away with the subtransaction that wrote it */
	if (event == SUBXACT_EVENT_ABORT_SUB && token_subid == mySubid)
	{
		token_armed = false;
		token_subid = InvalidSubTransactionId;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB && token_subid == mySubid)
		token_subid = parentSubid;
}

/*
 * Called from _PG_init: register the transaction callbacks.
 */
void
guard_invariants_init(void)
{
	RegisterXactCallback(invariants_xact_callback, NULL);
	RegisterSubXactCallback(invariants_subxact_callback, NULL);
}

/*
 * The invariants declared on protected table "relid" (cached).
 */
static InvariantCacheEntry *
invariants_lookup(Oid relid)
{
	InvariantCacheEntry *entry;
	bool		found;
	Relation	irel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tuple;
	List	   *defs = NIL;
	ListCell   *lc;
	MemoryContext old;

	if (invariant_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(InvariantCacheEntry);
		invariant_cache = hash_create("guard invariant cache", 64, &ctl,
									  HASH_ELEM | HASH_BLOBS);
		CacheRegisterRelcacheCallback(invariant_cache_invalidate, (Datum) 0);
	}
	entry = hash_search(invariant_cache, &relid, HASH_FIND, NULL);
	if (entry)
		return entry;

	irel = guard_open("invariant", AccessShareLock, Natts_guard_invariant);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(irel, guard_relid("invariant_pkey"), true,
							  NULL, 1, &key);
	old = MemoryContextSwitchTo(CacheMemoryContext);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Datum		values[Natts_guard_invariant];
		bool		nulls[Natts_guard_invariant];
		InvariantDef *def = palloc0(sizeof(InvariantDef));

		heap_deform_tuple(tuple, RelationGetDescr(irel), values, nulls);
		def->name = TextDatumGetCString(values[1]);
		def->row_check = nulls[2] ? NULL : TextDatumGetCString(values[2]);
		def->query = nulls[3] ? NULL : TextDatumGetCString(values[3]);
		def->deferred = DatumGetBool(values[4]);
		def->owner = pstrdup(NameStr(*DatumGetName(values[6])));
		def->search_path = TextDatumGetCString(values[7]);
		defs = lappend(defs, def);
	}
	MemoryContextSwitchTo(old);
	systable_endscan(scan);
	table_close(irel, AccessShareLock);

	entry = hash_search(invariant_cache, &relid, HASH_ENTER, &found);
	entry->ndefs = list_length(defs);
	entry->defs = MemoryContextAllocZero(CacheMemoryContext,
										 sizeof(InvariantDef) * Max(entry->ndefs, 1));
	foreach(lc, defs)
		entry->defs[foreach_current_index(lc)] = *(InvariantDef *) lfirst(lc);
	return entry;
}

/*
 * Parse and check a row check against "rel" as a CHECK constraint would be,
 * and more: a single expression, boolean, no volatile function.  Returns the
 * planned expression.  Errors carry the parser's SQLSTATEs.
 */
static Expr *
compile_row_check(Relation rel, const char *text, const char *search_path)
{
	List	   *raw;
	SelectStmt *sel;
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
	Node	   *expr;
	int			save_nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", search_path, PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

	raw = raw_parser(psprintf("SELECT %s", text), RAW_PARSE_DEFAULT);
	sel = (list_length(raw) == 1 &&
		   IsA(((RawStmt *) linitial(raw))->stmt, SelectStmt)) ?
		(SelectStmt *) ((RawStmt *) linitial(raw))->stmt : NULL;
	if (sel == NULL || list_length(sel->targetList) != 1 ||
		sel->fromClause || sel->whereClause || sel->groupClause ||
		sel->havingClause || sel->windowClause || sel->valuesLists ||
		sel->sortClause || sel->limitCount || sel->limitOffset ||
		sel->lockingClause || sel->withClause || sel->distinctClause ||
		sel->intoClause || sel->op != SETOP_NONE ||
		((ResTarget *) linitial(sel->targetList))->name != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("row_check must be a single boolean expression over one row"),
				 errhint("Write a condition such as 'balance >= 0 AND email IS NOT NULL'.")));

	pstate = make_parsestate(NULL);
	pstate->p_sourcetext = text;
	nsitem = addRangeTableEntryForRelation(pstate, rel, AccessShareLock,
										   NULL, false, true);
	addNSItemToQuery(pstate, nsitem, true, true, true);
	expr = transformExpr(pstate, ((ResTarget *) linitial(sel->targetList))->val,
						 EXPR_KIND_CHECK_CONSTRAINT);
	expr = coerce_to_boolean(pstate, expr, "row_check");
	assign_expr_collations(pstate, expr);
	if (contain_volatile_functions(expr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("row_check must not use volatile functions"),
				 errhint("A row check must give the same answer every time it sees the same row.")));
	free_parsestate(pstate);
	AtEOXact_GUC(true, save_nestlevel);
	return expression_planner((Expr *) expr);
}

/*
 * Check a query invariant: one SELECT returning one boolean column, no
 * data-modifying CTE.  Run as the declaring role.
 */
static void
validate_query(const char *query, const char *search_path)
{
	GuardAsRole as;
	SPIPlanPtr	plan;
	List	   *sources;
	CachedPlanSource *src;
	bool		ok;

	guard_as_role_path_begin(&as, GetUserId(), search_path, true);
	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("could not prepare the query of the invariant"),
				 errdetail_internal("SPI_prepare returned %s.",
									SPI_result_code_string(SPI_result))));
	sources = SPI_plan_get_plan_sources(plan);
	src = list_length(sources) == 1 ? linitial(sources) : NULL;
	ok = src != NULL && src->commandTag == CMDTAG_SELECT &&
		src->resultDesc != NULL && src->resultDesc->natts == 1 &&
		TupleDescAttr(src->resultDesc, 0)->atttypid == BOOLOID;
	if (ok)
	{
		ListCell   *lc;

		foreach(lc, src->query_list)
			ok &= !((Query *) lfirst(lc))->hasModifyingCTE;
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("query must be one SELECT returning one boolean column"),
				 errhint("Write a query such as 'SELECT count(*) = count(DISTINCT email) FROM users'.")));
	guard_as_role_end(&as);
}

/*
 * guard.add_invariant(rel, name, row_check, query, deferred)
 */
Datum
guard_add_invariant(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *name;
	char	   *row_check = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *query = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	bool		deferred;
	Relation	rel;
	const char *search_path = GetConfigOption("search_path", false, false);
	GuardAsRole owner;
	Oid			types[7] = {OIDOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID, TEXTOID, TEXTOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};

	guard_require_preload();
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("rel, name and deferred must not be null")));
	relid = PG_GETARG_OID(0);
	name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	deferred = PG_GETARG_BOOL(4);
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invariant name must not be empty")));
	if ((row_check == NULL) == (query == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("exactly one of row_check and query must be given"),
				 errhint("A row check is an expression over one row; a query is a SELECT returning one boolean.")));

	rel = guard_open_table_to_manage(relid, GUARD_MANAGE_ADD_INVARIANT);
	if (!guard_policy_lookup(rel)->found || rel->rd_rel->relispartition)
	{
		GuardPolicy own;

		if (!guard_policy_lookup(rel)->found)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table \"%s\" is not protected by guard",
							RelationGetRelationName(rel)),
					 errhint("Protect it first with guard.protect().")));
		own = *guard_policy_lookup(rel);
		if (own.relid != relid)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table \"%s\" is a partition of protected table \"%s\"",
							RelationGetRelationName(rel), get_rel_name(own.relid)),
					 errhint("Add the invariant to the partitioned table.")));
	}
	if (row_check)
		(void) compile_row_check(rel, row_check, search_path);
	else
		validate_query(query, search_path);

	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(name);
	values[2] = row_check ? CStringGetTextDatum(row_check) : (Datum) 0;
	nulls[2] = row_check ? ' ' : 'n';
	values[3] = query ? CStringGetTextDatum(query) : (Datum) 0;
	nulls[3] = query ? ' ' : 'n';
	values[4] = BoolGetDatum(deferred);
	values[5] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	values[6] = CStringGetTextDatum(search_path);

	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT 1 FROM guard.invariant WHERE relid = $1::pg_catalog.regclass AND name = $2",
				  2, types, values, nulls);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("invariant \"%s\" already exists on table \"%s\"",
						name, RelationGetRelationName(rel)),
				 errhint("Drop it first with guard.drop_invariant().")));
	guard_run_sql("INSERT INTO guard.invariant (relid, name, row_check, query, deferred,"
				  " created_at, created_by, search_path)"
				  " VALUES ($1::pg_catalog.regclass, $2, $3, $4, $5, pg_catalog.now(), $6, $7)",
				  7, types, values, nulls);
	guard_as_role_end(&owner);

	/* the table needs guard's triggers to be checked */
	CacheInvalidateRelcacheByRelid(relid);
	CommandCounterIncrement();
	guard_sync_relation(relid);
	table_close(rel, NoLock);
	PG_RETURN_VOID();
}

/*
 * guard.drop_invariant(rel, name)
 */
Datum
guard_drop_invariant(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Relation	rel;
	GuardAsRole owner;
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2];
	uint64		n;

	guard_require_preload();
	rel = guard_open_table_to_manage(relid, GUARD_MANAGE_DROP_INVARIANT);
	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(name);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("DELETE FROM guard.invariant WHERE relid = $1::pg_catalog.regclass AND name = $2",
				  2, types, values, NULL);
	n = SPI_processed;
	guard_as_role_end(&owner);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("invariant \"%s\" does not exist on table \"%s\"",
						name, RelationGetRelationName(rel))));
	CacheInvalidateRelcacheByRelid(relid);
	CommandCounterIncrement();
	guard_sync_relation(relid);
	table_close(rel, NoLock);
	PG_RETURN_VOID();
}

/*
 * The key of a row as text, (a, b)=(1, x); "row N" for a table without key.
 */
static char *
slot_key_text(Relation rel, TupleTableSlot *slot, AttrNumber *keys, int nkeys,
			  int64 rowno)
{
	StringInfoData buf;
	TupleDesc	desc = RelationGetDescr(rel);

	if (nkeys == 0)
		return psprintf("row " INT64_FORMAT, rowno);
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
 * DETAIL, translated: "Checked at the end of change 5 (change set 3)."
 */
static char *
checked_sentence(CheckedWhen when, int64 change_id, int64 changeset_id)
{
	switch (when)
	{
		case CHECKED_AT_STATEMENT_END:
			if (change_id != 0)
				return psprintf(_("Checked at the end of change %lld (change set %lld)."),
								(long long) change_id, (long long) changeset_id);
			return pstrdup(_("Checked at the end of a statement guard did not capture."));
		case CHECKED_AT_COMMIT:
			if (change_id != 0)
				return psprintf(_("Checked at commit, after change %lld (change set %lld)."),
								(long long) change_id, (long long) changeset_id);
			return pstrdup(_("Checked at commit, after a statement guard did not capture."));
		case CHECKED_AFTER_DDL:
			break;
	}
	return pstrdup(_("Checked over the whole table after a schema change."));
}

/*
 * Report a violation: an ERROR in enforce mode; else a guard.violation row,
 * a WARNING and a NOTIFY delivered at commit.
 */
static void
report_violation(int mode, Oid relid, const char *relation, const char *invariant,
				 int64 change_id, int64 rows, List *samples, CheckedWhen when)
{
	StringInfoData keys;
	char	   *where;
	ListCell   *lc;
	int64		changeset_id = guard_changeset_current(false);

	initStringInfo(&keys);
	foreach(lc, samples)
		appendStringInfo(&keys, "%s%s", keys.len ? ", " : "", (char *) lfirst(lc));
	where = checked_sentence(when, change_id, changeset_id);

	if (mode == GUARD_MODE_ENFORCE)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 rows > 0 ?
				 errmsg_plural("invariant \"%s\" on table %s is violated by " INT64_FORMAT " row",
							   "invariant \"%s\" on table %s is violated by " INT64_FORMAT " rows",
							   rows, invariant, relation, rows) :
				 errmsg("invariant \"%s\" on table %s is violated", invariant, relation),
				 keys.len ?
				 errdetail("%s Failing keys: %s.", where, keys.data) :
				 errdetail_internal("%s", where),
				 errhint("The transaction is rolled back; nothing of the change is kept.")));

	{
		GuardAsRole owner;
		Oid			types[7] = {OIDOID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID, TEXTARRAYOID};
		Datum		values[7];
		char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
		Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(samples), 1));
		StringInfoData payload;

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

		ereport(WARNING,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("invariant \"%s\" on table %s is violated", invariant, relation),
				 keys.len ?
				 errdetail("%s Failing rows: " INT64_FORMAT "; keys: %s.",
						   where, rows, keys.data) :
				 errdetail_internal("%s", where),
				 errhint("guard.mode is warn: the change commits and the violation is recorded in guard.violations.")));

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
}

/*
 * Run one query invariant; true when it holds.
 */
static bool
run_query(const InvariantDef *def, const char *relation)
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
 * The pending deferred checks of protected table "relid" in this
 * transaction.
 */
static PendingRel *
pending_for(Oid relid)
{
	ListCell   *lc;
	PendingRel *p;
	MemoryContext old;
	HASHCTL		ctl;

	foreach(lc, pending_rels)
	{
		p = lfirst(lc);
		if (p->relid == relid)
			return p;
	}
	old = MemoryContextSwitchTo(TopTransactionContext);
	p = palloc0(sizeof(PendingRel));
	p->relid = relid;
	ctl.keysize = sizeof(((FailingKey *) NULL)->key);
	ctl.entrysize = sizeof(FailingKey);
	ctl.hcxt = TopTransactionContext;
	p->failing = hash_create("guard failing keys", 64, &ctl,
							 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	pending_rels = lappend(pending_rels, p);
	MemoryContextSwitchTo(old);
	return p;
}

/*
 * Arm the commit-time check: one token row per transaction in guard.pending
 * queues the deferred constraint trigger.  Done at the end of a statement,
 * after its rows were tracked: under SET CONSTRAINTS ALL IMMEDIATE the
 * trigger fires as soon as the token is written.
 */
static void
arm_deferred_check(void)
{
	if (!token_armed)
	{
		GuardAsRole owner;

		/* not restricted: the row queues a deferred trigger */
		guard_as_role_path_begin(&owner, InvalidOid, "pg_catalog, pg_temp", false);
		guard_run_sql("INSERT INTO guard.pending VALUES (pg_catalog.pg_current_xact_id())",
					  0, NULL, NULL, NULL);
		guard_as_role_end(&owner);
		token_armed = true;
		token_subid = GetCurrentSubTransactionId();
	}
}

/*
 * Prepare the row checks of the protected table for a statement that wrote
 * "rel" (the table or one of its partitions).  NULL when there are none.
 */
GuardInvariantSet *
guard_invariants_begin(Relation rel, const GuardPolicy *policy)
{
	InvariantCacheEntry *entry = invariants_lookup(policy->relid);
	GuardInvariantSet *set;

	if (entry->ndefs == 0)
		return NULL;
	set = palloc0(sizeof(GuardInvariantSet));
	set->rel = rel;
	set->policy_relid = policy->relid;
	set->mode = guard_policy_mode(policy);
	set->ndefs = entry->ndefs;
	set->defs = entry->defs;
	set->states = palloc0(sizeof(ExprState *) * entry->ndefs);
	set->failing = palloc0(sizeof(int64) * entry->ndefs);
	set->samples = palloc0(sizeof(List *) * entry->ndefs);
	set->estate = CreateExecutorState();
	set->econtext = GetPerTupleExprContext(set->estate);
	set->nkeys = guard_key_attnums(rel, set->keys);
	for (int i = 0; i < entry->ndefs; i++)
	{
		InvariantDef *def = &entry->defs[i];

		if (def->row_check)
		{
			MemoryContext old = MemoryContextSwitchTo(set->estate->es_query_cxt);

			set->states[i] = ExecPrepareExpr(compile_row_check(rel, def->row_check,
															   def->search_path),
											 set->estate);
			MemoryContextSwitchTo(old);
		}
		if (def->deferred)
			set->has_deferred = true;
	}
	if (set->has_deferred)
		set->pending = pending_for(policy->relid);
	return set;
}

/*
 * Remember (or forget) a row for the commit-time check of deferred row
 * checks.
 */
static void
track_failing(GuardInvariantSet *set, TupleTableSlot *slot, bool failing,
			  int64 rowno)
{
	PendingRel *p = set->pending;
	char	   *key;
	FailingKey *fk;
	bool		found;

	if (p->overflow || (!failing && hash_get_num_entries(p->failing) == 0))
		return;
	if (set->nkeys == 0)
	{
		/* no key to find the row again: check the whole table */
		p->overflow = failing;
		return;
	}
	key = slot_key_text(set->rel, slot, set->keys, set->nkeys, rowno);
	if (strlen(key) >= sizeof(fk->key))
	{
		p->overflow = true;
		return;
	}
	if (!failing)
	{
		hash_search(p->failing, key, HASH_REMOVE, NULL);
		return;
	}
	if (hash_get_num_entries(p->failing) >= MAX_FAILING_KEYS)
	{
		p->overflow = true;
		return;
	}
	fk = hash_search(p->failing, key, HASH_ENTER, &found);
	if (!found)
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
		TupleDesc	desc = RelationGetDescr(set->rel);

		fk->values = palloc(sizeof(Datum) * set->nkeys);
		for (int k = 0; k < set->nkeys; k++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, set->keys[k] - 1);

			fk->values[k] = datumCopy(slot->tts_values[set->keys[k] - 1],
									  att->attbyval, att->attlen);
		}
		MemoryContextSwitchTo(old);
	}
}

/*
 * Check the row checks against one row the statement wrote (a NEW row).
 */
void
guard_invariants_row(GuardInvariantSet *set, TupleTableSlot *slot, int64 rowno)
{
	bool		deferred_fails = false;
	bool		any_deferred_check = false;

	set->econtext->ecxt_scantuple = slot;
	for (int i = 0; i < set->ndefs; i++)
	{
		bool		isnull;
		Datum		d;
		bool		fails;

		if (set->states[i] == NULL)
			continue;
		d = ExecEvalExprSwitchContext(set->states[i], set->econtext, &isnull);
		/* as for CHECK constraints, NULL is not a violation */
		fails = !isnull && !DatumGetBool(d);
		if (set->defs[i].deferred)
		{
			any_deferred_check = true;
			deferred_fails |= fails;
		}
		else if (fails)
		{
			if (set->failing[i]++ < MAX_SAMPLES)
				set->samples[i] = lappend(set->samples[i],
										  slot_key_text(set->rel, slot, set->keys,
														set->nkeys, rowno));
		}
	}
	if (any_deferred_check)
		track_failing(set, slot, deferred_fails, rowno);
	ResetExprContext(set->econtext);
}

/*
 * A row the statement deleted: it no longer needs checking at commit.
 */
void
guard_invariants_deleted(GuardInvariantSet *set, TupleTableSlot *slot, int64 rowno)
{
	if (set->pending)
		track_failing(set, slot, false, rowno);
}

/*
 * End of the statement: report immediate row checks and run immediate
 * query invariants.
 */
void
guard_invariants_end(GuardInvariantSet *set, int64 change_id)
{
	char	   *relation = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(set->rel)),
													  RelationGetRelationName(set->rel));

	for (int i = 0; i < set->ndefs; i++)
	{
		InvariantDef *def = &set->defs[i];

		if (def->deferred)
			continue;
		if (def->row_check && set->failing[i] > 0)
			report_violation(set->mode, set->policy_relid, relation, def->name,
							 change_id, set->failing[i], set->samples[i], CHECKED_AT_STATEMENT_END);
		else if (def->query && !run_query(def, relation))
			report_violation(set->mode, set->policy_relid, relation, def->name,
							 change_id, 0, NIL, CHECKED_AT_STATEMENT_END);
	}
	FreeExecutorState(set->estate);
	if (set->pending)
	{
		/* the set may have been checked and reset by SET CONSTRAINTS */
		set->pending = pending_for(set->policy_relid);
		set->pending->change_id = change_id;
		arm_deferred_check();
	}
}

/*
 * Evaluate the prepared row checks on one row, counting failures and
 * keeping up to MAX_SAMPLES keys ("key", or the row's own) of each.
 */
static void
check_one_row(ExprState **states, int ndefs, ExprContext *econtext,
			  Relation rel, TupleTableSlot *row, const char *key,
			  AttrNumber *keyatts, int nkeys, int64 rowno,
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
		if (!isnull && !DatumGetBool(d) && failing[i]++ < MAX_SAMPLES)
			samples[i] = lappend(samples[i],
								 key ? pstrdup(key) :
								 slot_key_text(rel, row, keyatts, nkeys, rowno));
	}
	ResetExprContext(econtext);
}

/*
 * Check the row checks of "defs" over every row of "rel" (or, when keys is
 * not NULL, over the rows with those keys), filling counts and samples.
 */
static void
check_rows(Relation rel, InvariantDef *defs, int ndefs, bool deferred_only,
		   HTAB *keys, int64 *failing, List **samples)
{
	EState	   *estate = CreateExecutorState();
	ExprContext *econtext = GetPerTupleExprContext(estate);
	ExprState **states = palloc0(sizeof(ExprState *) * ndefs);
	AttrNumber	keyatts[INDEX_MAX_KEYS];
	int			nkeys = guard_key_attnums(rel, keyatts);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	int64		rowno = 0;

	for (int i = 0; i < ndefs; i++)
	{
		if (defs[i].row_check && (!deferred_only || defs[i].deferred))
		{
			MemoryContext old = MemoryContextSwitchTo(estate->es_query_cxt);

			states[i] = ExecPrepareExpr(compile_row_check(rel, defs[i].row_check,
														  defs[i].search_path),
										estate);
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
		FailingKey *fk;

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

/*
 * guard._check_deferred(): the deferred constraint trigger on guard.pending,
 * fired at COMMIT: re-check the rows remembered as failing (or whole tables),
 * and run the deferred query invariants of every table written.
 */
Datum
guard_check_deferred(PG_FUNCTION_ARGS)
{
	List	   *rels = pending_rels;
	ListCell   *lc;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("guard._check_deferred() was not called by trigger manager")));

	/* later statements arm a new check */
	pending_rels = NIL;
	token_armed = false;
	token_subid = InvalidSubTransactionId;

	foreach(lc, rels)
	{
		PendingRel *p = lfirst(lc);
		InvariantCacheEntry *entry;
		Relation	rel = try_table_open(p->relid, AccessShareLock);
		char	   *relation;
		GuardPolicy policy;
		int64	   *failing;
		List	  **samples;

		if (rel == NULL)
			continue;
		entry = invariants_lookup(p->relid);
		relation = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											  RelationGetRelationName(rel));
		policy = *guard_policy_lookup(rel);
		failing = palloc0(sizeof(int64) * Max(entry->ndefs, 1));
		samples = palloc0(sizeof(List *) * Max(entry->ndefs, 1));

		if (p->overflow || hash_get_num_entries(p->failing) > 0)
			check_rows(rel, entry->defs, entry->ndefs, true,
					   p->overflow ? NULL : p->failing, failing, samples);
		for (int i = 0; i < entry->ndefs; i++)
		{
			InvariantDef *def = &entry->defs[i];

			if (!def->deferred)
				continue;
			if (def->row_check && failing[i] > 0)
				report_violation(guard_policy_mode(&policy), p->relid, relation,
								 def->name, p->change_id, failing[i], samples[i],
								 CHECKED_AT_COMMIT);
			else if (def->query && !run_query(def, relation))
				report_violation(guard_policy_mode(&policy), p->relid, relation,
								 def->name, p->change_id, 0, NIL, CHECKED_AT_COMMIT);
		}
		table_close(rel, AccessShareLock);
	}

	{
		GuardAsRole owner;

		guard_as_role_begin(&owner, InvalidOid);
		guard_run_sql("DELETE FROM guard.pending WHERE xid = pg_catalog.pg_current_xact_id()",
					  0, NULL, NULL, NULL);
		guard_as_role_end(&owner);
	}
	return PointerGetDatum(NULL);
}

/*
 * guard.check_invariants(rel): every invariant of the table (or of every
 * protected table), checked now over the whole table.
 */
Datum
guard_check_invariants(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *relids = NIL;
	ListCell   *lc;

	guard_require_preload();
	InitMaterializedSRF(fcinfo, 0);

	if (!PG_ARGISNULL(0))
		relids = list_make1_oid(PG_GETARG_OID(0));
	else
	{
		GuardAsRole owner;

		guard_as_role_begin(&owner, InvalidOid);
		/* not the tables waiting in the trash */
		guard_run_sql("SELECT DISTINCT i.relid::oid FROM guard.invariant i"
					  " JOIN pg_catalog.pg_class c ON c.oid = i.relid"
					  " WHERE c.relnamespace IS DISTINCT FROM pg_catalog.to_regnamespace('guard_trash')"
					  " ORDER BY 1", 0, NULL, NULL, NULL);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			Oid			relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
															   SPI_tuptable->tupdesc, 1, &isnull));
			MemoryContext old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);

			relids = lappend_oid(relids, relid);
			MemoryContextSwitchTo(old);
		}
		guard_as_role_end(&owner);
	}

	foreach(lc, relids)
	{
		Oid			relid = lfirst_oid(lc);
		Relation	rel = try_table_open(relid, AccessShareLock);
		InvariantCacheEntry *entry;
		int64	   *failing;
		List	  **samples;
		char	   *relation;

		if (rel == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation with OID %u does not exist", relid)));
		/* a view or a foreign table has no rows of its own to scan */
		if (rel->rd_rel->relkind != RELKIND_RELATION &&
			rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("\"%s\" is not a table", RelationGetRelationName(rel)),
					 errdetail_relkind_not_supported(rel->rd_rel->relkind)));
		if (!guard_may_read_relation(relid))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to check the invariants of table \"%s\"",
							RelationGetRelationName(rel))));
		entry = invariants_lookup(relid);
		failing = palloc0(sizeof(int64) * Max(entry->ndefs, 1));
		samples = palloc0(sizeof(List *) * Max(entry->ndefs, 1));
		relation = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											  RelationGetRelationName(rel));
		check_rows(rel, entry->defs, entry->ndefs, false, NULL, failing, samples);
		for (int i = 0; i < entry->ndefs; i++)
		{
			InvariantDef *def = &entry->defs[i];
			Datum		values[6];
			bool		nulls[6] = {false, false, false, false, false, false};
			bool		ok;

			if (def->row_check)
				ok = failing[i] == 0;
			else
				ok = run_query(def, relation);
			values[0] = ObjectIdGetDatum(relid);
			values[1] = CStringGetTextDatum(def->name);
			values[2] = CStringGetTextDatum(def->row_check ? "row" : "query");
			values[3] = BoolGetDatum(ok);
			if (def->row_check)
			{
				Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(samples[i]), 1));
				ListCell   *sc;

				foreach(sc, samples[i])
					elems[foreach_current_index(sc)] = CStringGetTextDatum((char *) lfirst(sc));
				values[4] = Int64GetDatum(failing[i]);
				values[5] = PointerGetDatum(construct_array(elems, list_length(samples[i]),
															TEXTOID, -1, false, TYPALIGN_INT));
			}
			else
				nulls[4] = nulls[5] = true;
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		table_close(rel, AccessShareLock);
	}
	return (Datum) 0;
}

/*
 * After a schema change of a protected table: its row checks hold for the
 * whole table, checked at commit (deferred) or now.
 */
void
guard_invariants_after_ddl(Relation rel)
{
	const GuardPolicy *policy = guard_policy_lookup(rel);
	InvariantCacheEntry *entry;
	bool		any_row = false;
	bool		any_immediate = false;

	if (!policy->found)
		return;
	entry = invariants_lookup(policy->relid);
	for (int i = 0; i < entry->ndefs; i++)
	{
		if (entry->defs[i].row_check)
		{
			any_row = true;
			any_immediate |= !entry->defs[i].deferred;
		}
	}
	if (!any_row)
		return;
	if (any_immediate)
	{
		int64	   *failing = palloc0(sizeof(int64) * entry->ndefs);
		List	  **samples = palloc0(sizeof(List *) * entry->ndefs);
		InvariantDef *immediate = palloc0(sizeof(InvariantDef) * entry->ndefs);
		Relation	prel = table_open(policy->relid, AccessShareLock);
		char	   *relation = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(prel)),
														  RelationGetRelationName(prel));

		/* only the immediate ones now; deferred ones at commit */
		for (int i = 0; i < entry->ndefs; i++)
		{
			immediate[i] = entry->defs[i];
			if (immediate[i].deferred)
				immediate[i].row_check = NULL;
		}
		check_rows(prel, immediate, entry->ndefs, false, NULL, failing, samples);
		for (int i = 0; i < entry->ndefs; i++)
		{
			if (immediate[i].row_check && failing[i] > 0)
				report_violation(guard_policy_mode(policy), policy->relid, relation,
								 immediate[i].name, 0, failing[i], samples[i],
								 CHECKED_AFTER_DDL);
		}
		table_close(prel, AccessShareLock);
	}
	pending_for(policy->relid)->overflow = true;
	arm_deferred_check();
}
