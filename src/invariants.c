/*-------------------------------------------------------------------------
 *
 * invariants.c
 *	  Invariants: declared facts that every change to a table must keep.
 *	  guard.add_invariant(), guard.drop_invariant(), guard.check_invariants(),
 *	  and the whole-table check after a schema change.
 *
 * A row check is a boolean expression over one row, parsed and checked like
 * a CHECK constraint (relcache.c compiles it); a query invariant is a
 * SELECT returning one boolean (invariants_eval.c runs it).  Immediate
 * invariants are checked at the end of each guarded statement
 * (invariants_stmt.c), deferred ones at COMMIT (invariants_commit.c).
 * Adding or dropping an invariant makes every backend forget the table's
 * cache entry, and gives or takes guard's triggers.
 *
 * Adding a row check checks the rows already there, as ADD CONSTRAINT
 * does: in enforce mode rows that fail it refuse it, unless accept_existing
 * says to take them as they are (like NOT VALID: not checked, and the
 * invariant is not validated until guard.validate_invariant() finds no row
 * failing it).  What a schema change checks is invariants_ddl.c's.
 *
 * Calls invariants_eval.c, policy.c, relcache.c and spi.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_add_invariant);
PG_FUNCTION_INFO_V1(guard_drop_invariant);
PG_FUNCTION_INFO_V1(guard_validate_invariant);
PG_FUNCTION_INFO_V1(guard_check_invariants);

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
 * The schema-qualified name of "rel", for messages.
 */
static char *
qualified_name(Relation rel)
{
	return quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
									  RelationGetRelationName(rel));
}

/*
 * The rows of "rel" that row check "def" fails now: their number, and up to
 * GUARD_MAX_SAMPLES of their keys into *samples.
 */
static int64
existing_failures(Relation rel, GuardInvariant *def, List **samples)
{
	GuardInvariantList list;
	bool		which = true;
	int64		failing = 0;

	memset(&list, 0, sizeof(list));
	list.rel = rel;
	list.n = 1;
	list.defs = def;
	list.checks = palloc0(sizeof(Expr *));
	*samples = NIL;
	guard_check_rows(&list, &which, NULL, &failing, samples);
	return failing;
}

/*
 * A new invariant against the rows already in "rel", under "mode".  A row
 * check that rows fail: refused in enforce mode, added not validated with a
 * WARNING in warn mode; with accept_existing, added not validated without
 * looking (like NOT VALID).  A query that does not hold: refused in
 * enforce mode, a WARNING in warn mode.  Returns whether it is validated.
 */
static bool
check_existing(Relation rel, GuardInvariant *def, int mode, bool accept_existing)
{
	char	   *relation = qualified_name(rel);
	List	   *samples;
	int64		failing;

	if (def->query)
	{
		if (accept_existing)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("accept_existing applies to row checks only"),
					 errhint("A query invariant is checked after every change to the table, so it must hold when it is added.")));
		if (guard_run_query_invariant(def, relation))
			return true;
		ereport(mode == GUARD_MODE_ENFORCE ? ERROR : WARNING,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("invariant \"%s\" on table %s does not hold", def->name, relation),
				 mode == GUARD_MODE_ENFORCE ?
				 errhint("A query invariant is checked after every change to the table, so it must hold when it is added.") :
				 errhint("guard.mode is warn: the invariant is added, and every change to the table records a violation until it holds.")));
		return true;
	}
	if (accept_existing)
		return false;
	failing = existing_failures(rel, def, &samples);
	if (failing == 0)
		return true;
	ereport(mode == GUARD_MODE_ENFORCE ? ERROR : WARNING,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg_plural("invariant \"%s\" on table %s is violated by " INT64_FORMAT " existing row",
						   "invariant \"%s\" on table %s is violated by " INT64_FORMAT " existing rows",
						   failing, def->name, relation, failing),
			 errdetail("Failing keys: %s.", guard_sample_keys(samples)),
			 mode == GUARD_MODE_ENFORCE ?
			 errhint("Fix those rows first, or add the invariant with accept_existing => true to check only the rows written from now on, as for a NOT VALID constraint.") :
			 errhint("guard.mode is warn: the invariant is added, not validated; it checks the rows written from now on, and guard.validate_invariant() validates it once no row fails it.")));
	return false;
}

/*
 * guard.add_invariant(rel, name, row_check, query, deferred,
 * accept_existing); version 0.1 of the SQL function has no accept_existing.
 */
Datum
guard_add_invariant(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *name;
	char	   *row_check = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *query = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	bool		deferred;
	bool		accept_existing = false;
	Relation	rel;
	const char *search_path = GetConfigOption("search_path", false, false);
	GuardAsRole owner;
	GuardPolicy own;
	GuardInvariant def;
	Oid			types[8] = {OIDOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID, TEXTOID, TEXTOID, BOOLOID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	guard_require_preload();
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(4) ||
		(PG_NARGS() > 5 && PG_ARGISNULL(5)))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("rel, name, deferred and accept_existing must not be null")));
	relid = PG_GETARG_OID(0);
	name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	deferred = PG_GETARG_BOOL(4);
	if (PG_NARGS() > 5)
		accept_existing = PG_GETARG_BOOL(5);
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
	if (row_check)
		(void) guard_compile_row_check(rel, row_check, search_path);
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
	guard_as_role_end(&owner);

	/* the rows there now, read as the caller, as check_invariants() does */
	memset(&def, 0, sizeof(def));
	def.name = name;
	def.row_check = row_check;
	def.query = query;
	def.deferred = deferred;
	def.owner = GetUserNameFromId(GetUserId(), false);
	def.search_path = pstrdup(search_path);
	values[7] = BoolGetDatum(check_existing(rel, &def, guard_policy_mode(&own),
											accept_existing));

	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("INSERT INTO guard.invariant (relid, name, row_check, query, deferred,"
				  " created_at, created_by, search_path, validated)"
				  " VALUES ($1::pg_catalog.regclass, $2, $3, $4, $5, pg_catalog.now(), $6, $7, $8)",
				  8, types, values, nulls);
	guard_as_role_end(&owner);

	/* every backend forgets the table; it needs guard's triggers */
	guard_relcache_invalidate(relid);
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
	guard_relcache_invalidate(relid);
	CommandCounterIncrement();
	guard_sync_relation(relid);
	table_close(rel, NoLock);
	PG_RETURN_VOID();
}

/*
 * guard.validate_invariant(rel, name): check an invariant added with
 * accept_existing (or over failing rows in warn mode) over the whole
 * table, and mark it validated if no row fails it; as ALTER TABLE ...
 * VALIDATE CONSTRAINT, an error names the rows that still do.
 */
Datum
guard_validate_invariant(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Relation	rel;
	GuardInvariant *defs;
	GuardInvariant *def = NULL;
	int			n;
	char	   *relation;
	GuardAsRole owner;
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2];

	guard_require_preload();
	rel = guard_open_table_to_manage(relid, GUARD_MANAGE_VALIDATE_INVARIANT);
	relation = qualified_name(rel);
	n = guard_invariants_read(relid, CurrentMemoryContext, &defs);
	for (int i = 0; i < n; i++)
	{
		if (strcmp(defs[i].name, name) == 0)
			def = &defs[i];
	}
	if (def == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("invariant \"%s\" does not exist on table \"%s\"",
						name, RelationGetRelationName(rel))));
	if (def->validated)
	{
		table_close(rel, NoLock);
		PG_RETURN_VOID();
	}
	if (def->row_check)
	{
		List	   *samples;
		int64		failing = existing_failures(rel, def, &samples);

		if (failing > 0)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg_plural("invariant \"%s\" on table %s is violated by " INT64_FORMAT " row",
								   "invariant \"%s\" on table %s is violated by " INT64_FORMAT " rows",
								   failing, name, relation, failing),
					 errdetail("Failing keys: %s.", guard_sample_keys(samples)),
					 errhint("Fix those rows, then validate the invariant again.")));
	}
	else if (!guard_run_query_invariant(def, relation))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("invariant \"%s\" on table %s does not hold", name, relation)));

	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(name);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("UPDATE guard.invariant SET validated = true"
				  " WHERE relid = $1::pg_catalog.regclass AND name = $2",
				  2, types, values, NULL);
	guard_as_role_end(&owner);
	guard_relcache_invalidate(relid);
	CommandCounterIncrement();
	table_close(rel, NoLock);
	PG_RETURN_VOID();
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
		GuardInvariantList list;
		bool	   *all;
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
		/* every table (NULL): those the caller may read; one named: an error */
		if (PG_ARGISNULL(0) && !guard_may_read_relation(relid))
		{
			table_close(rel, AccessShareLock);
			continue;
		}
		if (!guard_may_read_relation(relid))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to check the invariants of table \"%s\"",
							RelationGetRelationName(rel))));
		guard_invariants_of(rel, &list);
		failing = palloc0(sizeof(int64) * Max(list.n, 1));
		samples = palloc0(sizeof(List *) * Max(list.n, 1));
		all = palloc(sizeof(bool) * Max(list.n, 1));
		memset(all, true, sizeof(bool) * Max(list.n, 1));
		relation = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											  RelationGetRelationName(rel));
		guard_check_rows(&list, all, NULL, failing, samples);
		for (int i = 0; i < list.n; i++)
		{
			GuardInvariant *def = &list.defs[i];
			Datum		values[6];
			bool		nulls[6] = {false, false, false, false, false, false};
			bool		ok;

			if (def->row_check)
				ok = failing[i] == 0;
			else
				ok = guard_run_query_invariant(def, relation);
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
