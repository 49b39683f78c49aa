/*-------------------------------------------------------------------------
 *
 * relcache.c
 *	  guard's per-relation cache: what guard knows of one relation, read
 *	  from its own tables and the catalogs once per relation and
 *	  invalidation instead of on every statement.
 *
 * An entry holds, for a relation that a policy governs (its own, or that of
 * its nearest protected partition ancestor):
 *	- the policy (guard.policy);
 *	- the key: the columns of its primary key, else of its replica identity
 *	  index, with the equality operators and functions of the index's
 *	  operator families and the index's collations;
 *	- the id of its layout in guard.layout, once layout.c has stored it;
 *	- the invariants declared on the protected table (guard.invariant);
 *	- their row checks, parsed and planned against this relation on first
 *	  use.  A statement only builds ExprStates from them, in its own memory.
 * A relation no policy governs is remembered as such, without an entry.
 *
 * Each entry lives in its own small memory context, a child of the
 * "guard relation cache" context under CacheMemoryContext.  One relcache
 * callback forgets the entry of a relation when PostgreSQL invalidates the
 * relation (its columns, indexes or partitions changed), and guard's own
 * functions that write guard.policy or guard.invariant send such an
 * invalidation for the table and its partitions, to every backend (see
 * guard_relcache_invalidate()).  One syscache callback on pg_proc,
 * pg_operator and pg_namespace forgets the entries holding compiled row
 * checks, since a planned expression may have inlined a function or
 * resolved a name that has changed, as the plan cache does.
 *
 * A statement may still use an entry when it is invalidated (invalidations
 * arrive whenever a lock is taken), so a forgotten entry's context is
 * deleted at once only outside a transaction; otherwise at the end of the
 * top-level transaction.  Pointers into an entry are therefore good until
 * the end of the transaction that obtained them.
 *
 * Sits low: calls only catalog.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/partition.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "parser/parse_collate.h"
#include "parser/parse_expr.h"
#include "parser/parse_relation.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "guard.h"

/* one relation in the hash table: its entry, or NULL when not protected */
typedef struct RelCacheSlot
{
	Oid			relid;			/* hash key */
	GuardRelCache *entry;
} RelCacheSlot;

static HTAB *relcache_hash = NULL;
static MemoryContext relcache_context = NULL;

/* entries forgotten during the current transaction, freed at its end */
static GuardRelCache *retired = NULL;

/* the relation whose entry is being built, and whether it was invalidated */
static Oid	building_relid = InvalidOid;
static bool building_invalidated = false;

/* bumped by the syscache callback: compiled row checks may be stale */
static uint64 checks_generation = 0;

/* a layout row was written by the current transaction */
static bool layout_written = false;

/* what guard_policy_lookup() returns for a relation no policy governs */
static const GuardPolicy not_protected;

/*
 * Set an entry aside: free it now when no transaction can be using it,
 * else at the end of the top-level transaction.
 */
static void
retire_entry(GuardRelCache *entry)
{
	if (!IsTransactionState() && !IsSubTransaction())
		MemoryContextDelete(entry->cxt);
	else
	{
		entry->next_retired = retired;
		retired = entry;
	}
}

/*
 * Forget one slot of the hash table, retiring its entry.
 */
static void
forget_slot(RelCacheSlot *slot)
{
	GuardRelCache *entry = slot->entry;

	(void) hash_search(relcache_hash, &slot->relid, HASH_REMOVE, NULL);
	if (entry != NULL)
		retire_entry(entry);
}

/*
 * Relcache callback: forget the relation "relid" (or every relation, when
 * relid is InvalidOid).
 */
static void
relcache_invalidate_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == building_relid)
		building_invalidated = true;
	if (!OidIsValid(relid))
	{
		HASH_SEQ_STATUS status;
		RelCacheSlot *slot;

		hash_seq_init(&status, relcache_hash);
		while ((slot = hash_seq_search(&status)) != NULL)
			forget_slot(slot);
	}
	else
	{
		RelCacheSlot *slot = hash_search(relcache_hash, &relid, HASH_FIND, NULL);

		if (slot != NULL)
			forget_slot(slot);
	}
}

/*
 * Syscache callback on pg_proc, pg_operator and pg_namespace: forget the
 * entries whose row checks are compiled, since a function they call (or
 * inlined) or a name they resolved may have changed.
 */
static void
relcache_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS status;
	RelCacheSlot *slot;

	checks_generation++;
	hash_seq_init(&status, relcache_hash);
	while ((slot = hash_seq_search(&status)) != NULL)
	{
		if (slot->entry != NULL && slot->entry->checks_compiled)
			forget_slot(slot);
	}
}

/*
 * A transaction or subtransaction that wrote layout rows aborted: forget
 * every layout id, to be looked up (or stored) again.  The rest of each
 * entry stays good.
 */
static void
forget_layouts(void)
{
	HASH_SEQ_STATUS status;
	RelCacheSlot *slot;

	if (!layout_written)
		return;
	hash_seq_init(&status, relcache_hash);
	while ((slot = hash_seq_search(&status)) != NULL)
	{
		if (slot->entry != NULL)
			slot->entry->layout_id = 0;
	}
}

/*
 * At the end of the top-level transaction, free the entries it forgot;
 * on abort or PREPARE, forget the layout ids too: ROLLBACK PREPARED may
 * remove the layout rows after this backend has moved on.
 */
static void
relcache_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction may yet roll its layout rows back */
			forget_layouts();
			/* FALLTHROUGH */
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			layout_written = false;
			while (retired != NULL)
			{
				GuardRelCache *entry = retired;

				retired = entry->next_retired;
				MemoryContextDelete(entry->cxt);
			}
			break;
		default:
			break;
	}
}

/*
 * A subtransaction aborted: layout rows it wrote are gone.
 */
static void
relcache_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		forget_layouts();
}

/*
 * Create the hash table and register the callbacks, on first use.
 */
static void
relcache_init(void)
{
	HASHCTL		ctl;

	if (CacheMemoryContext == NULL)
		CreateCacheMemoryContext();
	relcache_context = AllocSetContextCreate(CacheMemoryContext,
											 "guard relation cache",
											 ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(RelCacheSlot);
	ctl.hcxt = relcache_context;
	relcache_hash = hash_create("guard relation cache", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(relcache_invalidate_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, relcache_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(OPEROID, relcache_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, relcache_syscache_callback, (Datum) 0);
	RegisterXactCallback(relcache_xact_callback, NULL);
	RegisterSubXactCallback(relcache_subxact_callback, NULL);
}

/*
 * Read the policy row of one relation straight from guard.policy, without
 * SPI.  Returns false when it has none.
 */
bool
guard_policy_read(Oid relid, GuardPolicy *policy)
{
	Relation	prel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tuple;
	bool		found = false;

	prel = guard_open("policy", AccessShareLock, Natts_guard_policy);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(prel, guard_relid("policy_pkey"), true,
							  NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		TupleDesc	desc = RelationGetDescr(prel);
		Datum		values[Natts_guard_policy];
		bool		nulls[Natts_guard_policy];
		char	   *capture;

		heap_deform_tuple(tuple, desc, values, nulls);
		found = true;
		policy->relid = relid;
		policy->found = true;
		capture = TextDatumGetCString(values[1]);
		if (strcmp(capture, "dml") == 0)
			policy->capture = GUARD_CAPTURE_DML;
		else if (strcmp(capture, "ddl") == 0)
			policy->capture = GUARD_CAPTURE_DDL;
		else if (strcmp(capture, "all") == 0)
			policy->capture = GUARD_CAPTURE_ALL;
		else
			policy->capture = GUARD_CAPTURE_NONE;
		if (nulls[2])
			policy->mode = -1;
		else
			policy->mode = strcmp(TextDatumGetCString(values[2]), "warn") == 0 ?
				GUARD_MODE_WARN : GUARD_MODE_ENFORCE;
		policy->min_rows = DatumGetInt64(values[3]);
		policy->max_rows = nulls[4] ? 0 : DatumGetInt64(values[4]);
		policy->max_fraction = nulls[5] ? 0 : DatumGetFloat8(values[5]);
		policy->require_where = DatumGetBool(values[6]);
	}
	systable_endscan(scan);
	table_close(prel, AccessShareLock);
	return found;
}

/*
 * Read the invariants declared on table "relid" from guard.invariant, in
 * name order, into an array allocated in "cxt".  Returns their number.
 */
int
guard_invariants_read(Oid relid, MemoryContext cxt, GuardInvariant **defs)
{
	Relation	irel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tuple;
	int			n = 0;
	int			size = 4;
	MemoryContext old = MemoryContextSwitchTo(cxt);

	*defs = palloc0(sizeof(GuardInvariant) * size);
	irel = guard_open("invariant", AccessShareLock, Natts_guard_invariant);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(irel, guard_relid("invariant_pkey"), true,
							  NULL, 1, &key);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Datum		values[Natts_guard_invariant];
		bool		nulls[Natts_guard_invariant];
		GuardInvariant *def;

		if (n == size)
		{
			size *= 2;
			*defs = repalloc(*defs, sizeof(GuardInvariant) * size);
		}
		def = &(*defs)[n++];
		heap_deform_tuple(tuple, RelationGetDescr(irel), values, nulls);
		def->name = TextDatumGetCString(values[1]);
		def->row_check = nulls[2] ? NULL : TextDatumGetCString(values[2]);
		def->query = nulls[3] ? NULL : TextDatumGetCString(values[3]);
		def->deferred = DatumGetBool(values[4]);
		def->owner = pstrdup(NameStr(*DatumGetName(values[6])));
		def->search_path = TextDatumGetCString(values[7]);
		def->validated = DatumGetBool(values[8]);
	}
	systable_endscan(scan);
	table_close(irel, AccessShareLock);
	MemoryContextSwitchTo(old);
	return n;
}

/*
 * The DEFERRABLE primary key of "rel", or InvalidOid: the relcache only
 * remembers an immediate one (it serves logical replication, which cannot
 * use a deferrable key), but it identifies rows as well.
 */
static Oid
deferrable_primary_key(Relation rel)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;

	foreach(lc, indexes)
	{
		HeapTuple	tuple = SearchSysCache1(INDEXRELID,
											ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index index;

		if (!HeapTupleIsValid(tuple))
			elog(ERROR, "cache lookup failed for index %u", lfirst_oid(lc));
		index = (Form_pg_index) GETSTRUCT(tuple);
		if (index->indisprimary && index->indisvalid && !index->indimmediate)
			found = index->indexrelid;
		ReleaseSysCache(tuple);
		if (OidIsValid(found))
			break;
	}
	list_free(indexes);
	return found;
}

/*
 * The key of "rel" (its primary key, else its replica identity index) into
 * *key: its columns, and for each the equality operator and function of
 * the index's operator family and the index's collation.  key->nkeys is 0
 * when the table has no such index or its key has an expression.
 */
void
guard_key_read(Relation rel, GuardKey *key)
{
	Oid			indexoid = RelationGetPrimaryKeyIndex(rel);
	HeapTuple	tuple;
	Form_pg_index index;
	Datum		datum;
	oidvector  *indclass;
	oidvector  *indcollation;
	bool		isnull;

	memset(key, 0, sizeof(*key));
	if (!OidIsValid(indexoid))
		indexoid = deferrable_primary_key(rel);
	if (!OidIsValid(indexoid))
		indexoid = RelationGetReplicaIndex(rel);
	if (!OidIsValid(indexoid))
		return;

	tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for index %u", indexoid);
	index = (Form_pg_index) GETSTRUCT(tuple);
	datum = SysCacheGetAttr(INDEXRELID, tuple, Anum_pg_index_indclass, &isnull);
	Assert(!isnull);
	indclass = (oidvector *) DatumGetPointer(datum);
	datum = SysCacheGetAttr(INDEXRELID, tuple, Anum_pg_index_indcollation, &isnull);
	Assert(!isnull);
	indcollation = (oidvector *) DatumGetPointer(datum);

	key->indexoid = indexoid;
	key->nkeys = index->indnkeyatts;
	for (int k = 0; k < key->nkeys; k++)
	{
		Oid			opfamily = get_opclass_family(indclass->values[k]);
		Oid			opcintype = get_opclass_input_type(indclass->values[k]);

		key->attnums[k] = index->indkey.values[k];
		if (key->attnums[k] == 0)
		{
			/* an expression: rows could not be found by it */
			memset(key, 0, sizeof(*key));
			break;
		}
		key->eqop[k] = get_opfamily_member(opfamily, opcintype, opcintype,
										   BTEqualStrategyNumber);
		key->eqproc[k] = OidIsValid(key->eqop[k]) ? get_opcode(key->eqop[k]) : InvalidOid;
		key->collation[k] = indcollation->values[k];
	}
	ReleaseSysCache(tuple);
}

/*
 * Build the entry of "rel" in a new context under the current one (so that
 * an error frees it), or return NULL when no policy governs "rel".
 */
static GuardRelCache *
relcache_build(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	GuardPolicy policy;
	MemoryContext cxt;
	GuardRelCache *entry;

	memset(&policy, 0, sizeof(policy));
	if (!guard_policy_read(relid, &policy) && rel->rd_rel->relispartition)
	{
		List	   *ancestors = get_partition_ancestors(relid);
		ListCell   *lc;

		foreach(lc, ancestors)
		{
			if (guard_policy_read(lfirst_oid(lc), &policy))
				break;
		}
		list_free(ancestors);
	}
	if (!policy.found)
		return NULL;

	cxt = AllocSetContextCreate(CurrentMemoryContext,
								"guard relation cache entry",
								ALLOCSET_SMALL_SIZES);
	entry = MemoryContextAllocZero(cxt, sizeof(GuardRelCache));
	entry->cxt = cxt;
	entry->relid = relid;
	entry->policy = policy;
	MemoryContextSetIdentifier(cxt, MemoryContextStrdup(cxt, RelationGetRelationName(rel)));
	guard_key_read(rel, &entry->key);
	entry->ninvariants = guard_invariants_read(policy.relid, cxt,
											   &entry->invariants);
	entry->row_checks = MemoryContextAllocZero(cxt, sizeof(Expr *) *
											   Max(entry->ninvariants, 1));
	for (int i = 0; i < entry->ninvariants; i++)
		entry->has_deferred |= entry->invariants[i].deferred;
	return entry;
}

/*
 * The cache entry of "rel", or NULL when no policy governs it.  Built on
 * first use after an invalidation.  The entry is good until the end of the
 * current transaction, even if it is invalidated meanwhile.
 */
GuardRelCache *
guard_relcache_lookup(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	RelCacheSlot *slot;
	GuardRelCache *entry;
	bool		found;

	if (relcache_hash == NULL)
		relcache_init();
	slot = hash_search(relcache_hash, &relid, HASH_FIND, NULL);
	if (slot != NULL)
		return slot->entry;

	/* build again if the relation was invalidated while we read */
	do
	{
		building_relid = relid;
		building_invalidated = false;
		entry = relcache_build(rel);
		if (building_invalidated && entry != NULL)
			MemoryContextDelete(entry->cxt);
	} while (building_invalidated);
	building_relid = InvalidOid;

	if (entry != NULL)
		MemoryContextSetParent(entry->cxt, relcache_context);
	slot = hash_search(relcache_hash, &relid, HASH_ENTER, &found);
	Assert(!found);
	slot->entry = entry;
	return entry;
}

/*
 * The policy governing "rel": its own, or that of its nearest protected
 * partition ancestor.  policy->found is false when there is none.  Good
 * until the end of the current transaction.
 */
const GuardPolicy *
guard_policy_lookup(Relation rel)
{
	GuardRelCache *entry = guard_relcache_lookup(rel);

	return entry ? &entry->policy : &not_protected;
}

/*
 * The key of "rel": the cached one when a policy governs it, else read
 * now into *buf.
 */
const GuardKey *
guard_relation_key(Relation rel, GuardKey *buf)
{
	GuardRelCache *entry = guard_relcache_lookup(rel);

	if (entry != NULL)
		return &entry->key;
	guard_key_read(rel, buf);
	return buf;
}

/*
 * Parse and check a row check against "rel" as a CHECK constraint would be,
 * and more: a single expression, boolean, no volatile function.  Parsed and
 * planned under the search_path it was declared with.  Returns the planned
 * expression, in the current memory context.  Errors carry the parser's
 * SQLSTATEs.
 */
Expr *
guard_compile_row_check(Relation rel, const char *text, const char *search_path)
{
	List	   *raw;
	SelectStmt *sel;
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
	Node	   *expr;
	Expr	   *planned;
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
	/* inlined SQL functions resolve names under the same search_path */
	planned = expression_planner((Expr *) expr);
	AtEOXact_GUC(true, save_nestlevel);
	return planned;
}

/*
 * The row check of invariant "i" of an entry (NULL for a query invariant),
 * compiled against "rel", the entry's relation, on first use and kept in
 * the entry.  A statement builds its ExprState from it with ExecInitExpr.
 * Compiled one by one, so that a check that no longer compiles fails only
 * where it is used, as before caching.
 */
Expr *
guard_relcache_row_check(GuardRelCache *entry, Relation rel, int i)
{
	const GuardInvariant *def = &entry->invariants[i];
	Expr	   *check;
	uint64		generation;
	MemoryContext old;

	Assert(RelationGetRelid(rel) == entry->relid && i < entry->ninvariants);
	if (def->row_check == NULL || entry->row_checks[i] != NULL)
		return entry->row_checks[i];

	/* compile in the caller's memory; keep a copy once no change raced */
	do
	{
		generation = checks_generation;
		check = guard_compile_row_check(rel, def->row_check, def->search_path);
	} while (generation != checks_generation);

	old = MemoryContextSwitchTo(entry->cxt);
	entry->row_checks[i] = copyObject(check);
	MemoryContextSwitchTo(old);
	entry->checks_compiled = true;
	return entry->row_checks[i];
}

/*
 * Record the layout id of an entry's relation; "inserted" when this
 * transaction wrote the layout row (forgotten again if it aborts).
 */
void
guard_relcache_set_layout(GuardRelCache *entry, int64 layout_id, bool inserted)
{
	entry->layout_id = layout_id;
	if (inserted)
		layout_written = true;
}

/*
 * Forget what this backend knows of "relid" now, so that the next lookup
 * reads it again.
 */
void
guard_relcache_forget(Oid relid)
{
	if (relcache_hash != NULL)
		relcache_invalidate_callback((Datum) 0, relid);
}

/*
 * guard.policy or guard.invariant of table "relid" changed: make every
 * backend forget the table and its partitions (their policy and
 * invariants are the table's), when the writing transaction commits, and
 * this backend at its next command.  Locks the partitions as
 * guard_open_table_to_manage() locks the table.
 */
void
guard_relcache_invalidate(Oid relid)
{
	List	   *rels = find_all_inheritors(relid, ShareRowExclusiveLock, NULL);
	ListCell   *lc;

	foreach(lc, rels)
		CacheInvalidateRelcacheByRelid(lfirst_oid(lc));
	list_free(rels);
}
