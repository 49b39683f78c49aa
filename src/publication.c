/*-------------------------------------------------------------------------
 *
 * publication.c
 *	  Logical replication: guard's own tables stay out of publications FOR
 *	  ALL TABLES, and a subscriber keeps its own records.
 *
 * PostgreSQL 15 has no way to leave a table out of a publication FOR ALL
 * TABLES (no EXCEPT clause, no publication hook, and every permanent table
 * of a user's is publishable).  So, in a database where guard is installed,
 * the utility hook turns CREATE PUBLICATION ... FOR ALL TABLES (by a
 * superuser, who alone may run it) into CREATE PUBLICATION ... FOR TABLES
 * IN SCHEMA with every schema but guard's own (guard, guard_trash) and the
 * system ones, and keeps it so: guard.publication names the publications
 * made that way, and a schema created later (by CREATE SCHEMA, or an
 * extension's script) is added to them when its transaction commits.  The
 * tables published are those FOR ALL TABLES would publish, guard's aside;
 * a protected table dropped into guard's trash leaves them until it is
 * brought back.  Adding guard's tables by name stays possible.
 *
 * On a subscriber, a trigger on each of guard's tables (ENABLE REPLICA, so
 * that it fires in logical replication workers only) drops the rows that a
 * subscription applies to them: a publisher that does publish guard's
 * tables (one that made its publication before guard was installed, or
 * added them by name) cannot overwrite the subscriber's own records.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_publication.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "replication/logicalworker.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_keep_local_records);

/* a schema may have been created in this transaction */
static bool schemas_created = false;
static bool callback_registered = false;

/*
 * Whether schema "nspid" (named "name") is one a publication of all tables
 * but guard's covers: not guard's own, not a system one, not a temporary
 * one (those a publication cannot hold).
 */
static bool
schema_publishable(Oid nspid, const char *name)
{
	return !IsCatalogNamespace(nspid) && !IsToastNamespace(nspid) &&
		!isAnyTempNamespace(nspid) &&
		strcmp(name, "guard") != 0 && strcmp(name, GUARD_TRASH_SCHEMA) != 0 &&
		strcmp(name, "information_schema") != 0;
}

/*
 * list_sort() comparator of C strings.
 */
static int
name_cmp(const ListCell *a, const ListCell *b)
{
	return strcmp((const char *) lfirst(a), (const char *) lfirst(b));
}

/*
 * The schemas of the database a publication of all tables but guard's
 * covers, by name (sorted: the statement reads the same every time).  With
 * "created_only", only those created (not altered) by the current
 * transaction, by OID.
 */
static List *
publishable_schemas(bool created_only)
{
	Relation	rel = table_open(NamespaceRelationId, AccessShareLock);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tuple;
	List	   *result = NIL;

	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Form_pg_namespace nsp = (Form_pg_namespace) GETSTRUCT(tuple);

		if (!schema_publishable(nsp->oid, NameStr(nsp->nspname)))
			continue;
		if (!created_only)
			result = lappend(result, pstrdup(NameStr(nsp->nspname)));
		else if (TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(tuple->t_data)) &&
				 !(tuple->t_data->t_infomask & HEAP_UPDATED))
			result = lappend_oid(result, nsp->oid);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!created_only)
		list_sort(result, name_cmp);
	return result;
}

/*
 * Run one statement of guard's own on guard.publication with one text[]
 * argument (and a second, if "arg2" is not NULL).
 */
static void
run_on_publications(const char *sql, List *names, const char *arg2)
{
	GuardAsRole owner;
	Oid			types[2] = {TEXTARRAYOID, TEXTOID};
	Datum		values[2];
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(names), 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, names)
		elems[n++] = CStringGetTextDatum((char *) lfirst(lc));
	values[0] = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false,
												TYPALIGN_INT));
	values[1] = arg2 ? CStringGetTextDatum(arg2) : (Datum) 0;
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql(sql, arg2 ? 2 : 1, types, values, NULL);
	guard_as_role_end(&owner);
}

/*
 * CREATE PUBLICATION ... FOR ALL TABLES: the same publication FOR TABLES
 * IN SCHEMA every publishable schema, remembered in guard.publication.
 */
static PlannedStmt *
rewrite_for_all_tables(PlannedStmt *pstmt, CreatePublicationStmt *stmt)
{
	CreatePublicationStmt *copy = copyObject(stmt);
	PlannedStmt *result = makeNode(PlannedStmt);
	ListCell   *lc;

	copy->for_all_tables = false;
	copy->pubobjects = NIL;
	foreach(lc, publishable_schemas(false))
	{
		PublicationObjSpec *spec = makeNode(PublicationObjSpec);

		spec->pubobjtype = PUBLICATIONOBJ_TABLES_IN_SCHEMA;
		spec->name = (char *) lfirst(lc);
		spec->location = -1;
		copy->pubobjects = lappend(copy->pubobjects, spec);
	}
	run_on_publications("INSERT INTO guard.publication SELECT pg_catalog.unnest($1)"
						" ON CONFLICT DO NOTHING", list_make1(stmt->pubname), NULL);
	memcpy(result, pstmt, sizeof(PlannedStmt));
	result->utilityStmt = (Node *) copy;
	return result;
}

/*
 * Whether guard is installed in this database with its guard.publication
 * (a library newer than the extension's objects leaves publications alone).
 */
static bool
publications_managed(void)
{
	Oid			nsp;

	if (!OidIsValid(get_extension_oid("guard", true)))
		return false;
	nsp = get_namespace_oid("guard", true);
	return OidIsValid(nsp) && OidIsValid(get_relname_relid("publication", nsp));
}

/*
 * At commit (or PREPARE): add the schemas this transaction created to the
 * publications of all tables but guard's.  Forgotten at the end of the
 * transaction.
 */
static void
publication_xact_callback(XactEvent event, void *arg)
{
	List	   *created;
	ListCell   *lc;

	if (event != XACT_EVENT_PRE_COMMIT && event != XACT_EVENT_PRE_PREPARE)
	{
		if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
			event == XACT_EVENT_PREPARE)
			schemas_created = false;
		return;
	}
	if (!schemas_created || !publications_managed())
		return;
	schemas_created = false;
	created = publishable_schemas(true);
	if (created == NIL)
		return;

	{
		GuardAsRole owner;
		List	   *pubids = NIL;

		/* commit runs without a snapshot: SPI needs one */
		PushActiveSnapshot(GetTransactionSnapshot());
		guard_as_role_begin(&owner, InvalidOid);
		guard_run_sql("SELECT p.oid FROM guard.publication g"
					  " JOIN pg_catalog.pg_publication p ON p.pubname = g.pubname"
					  " ORDER BY 1", 0, NULL, NULL, NULL);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;

			pubids = lappend_oid(pubids,
								 DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
																SPI_tuptable->tupdesc,
																1, &isnull)));
		}
		guard_as_role_end(&owner);
		PopActiveSnapshot();
		foreach(lc, pubids)
		{
			ListCell   *ls;

			foreach(ls, created)
				(void) publication_add_schema(lfirst_oid(lc), lfirst_oid(ls), true);
		}
	}
}

/*
 * A schema may be created by the statement about to run: look for it at
 * commit.
 */
static void
note_schema_created(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(publication_xact_callback, NULL);
		callback_registered = true;
	}
	schemas_created = true;
}

/*
 * Whether "pubname" names a publication guard made of one FOR ALL TABLES.
 */
static bool
publication_is_managed(const char *pubname)
{
	GuardAsRole owner;
	Oid			types[1] = {NAMEOID};
	Datum		values[1];
	bool		managed;

	values[0] = CStringGetDatum(pubname);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT FROM guard.publication WHERE pubname = $1", 1, types, values, NULL);
	managed = SPI_processed > 0;
	guard_as_role_end(&owner);
	return managed;
}

/*
 * ALTER PUBLICATION ... ADD/DROP/SET of tables or schemas, on a publication
 * guard made of one FOR ALL TABLES, fails as it would on that one, with
 * PostgreSQL's error; the errors PostgreSQL raises first (no such
 * publication or schema, not its owner, a non-superuser adding schemas)
 * are left to it.
 */
static void
refuse_alter_for_all_tables(AlterPublicationStmt *stmt)
{
	Oid			pubid = get_publication_oid(stmt->pubname, true);
	bool		schemas = false;
	bool		tables = false;
	ListCell   *lc;

	if (stmt->pubobjects == NIL || !OidIsValid(pubid) ||
		!pg_publication_ownercheck(pubid, GetUserId()) ||
		!publication_is_managed(stmt->pubname))
		return;
	foreach(lc, stmt->pubobjects)
	{
		PublicationObjSpec *obj = lfirst(lc);

		if (obj->pubobjtype == PUBLICATIONOBJ_TABLE)
			tables = true;
		else if (obj->pubobjtype == PUBLICATIONOBJ_TABLES_IN_CUR_SCHEMA)
			schemas = true;
		else if (obj->pubobjtype == PUBLICATIONOBJ_TABLES_IN_SCHEMA)
		{
			if (!OidIsValid(get_namespace_oid(obj->name, true)))
				return;
			schemas = true;
		}
	}
	if (schemas && stmt->action != AP_DropObjects && !superuser())
		return;
	if (schemas)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("publication \"%s\" is defined as FOR ALL TABLES",
						stmt->pubname),
				 errdetail("Schemas cannot be added to or dropped from FOR ALL TABLES publications.")));
	if (tables)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("publication \"%s\" is defined as FOR ALL TABLES",
						stmt->pubname),
				 errdetail("Tables cannot be added to or dropped from FOR ALL TABLES publications.")));
}

/*
 * Called from the utility hook with each statement, before it runs: returns
 * the statement to run instead (see the file's header), or the same one.
 * Keeps guard.publication in step with renames and drops of publications,
 * and notes that a schema may be created (an extension's script may create
 * one too; its publications are left as they are).
 */
PlannedStmt *
guard_publication_utility(PlannedStmt *pstmt)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (guard_internal_ddl)
		return pstmt;
	switch (nodeTag(parsetree))
	{
		case T_CreatePublicationStmt:
			{
				CreatePublicationStmt *stmt = (CreatePublicationStmt *) parsetree;

				if (creating_extension || !publications_managed())
					break;
				/* a non-superuser gets PostgreSQL's own error */
				if (stmt->for_all_tables && superuser())
					return rewrite_for_all_tables(pstmt, stmt);
				/* a publication of that name made another way */
				run_on_publications("DELETE FROM guard.publication WHERE pubname = ANY ($1)",
									list_make1(stmt->pubname), NULL);
				break;
			}
		case T_AlterPublicationStmt:
			if (!creating_extension && publications_managed())
				refuse_alter_for_all_tables((AlterPublicationStmt *) parsetree);
			break;
		case T_RenameStmt:
			{
				RenameStmt *stmt = (RenameStmt *) parsetree;

				if (stmt->renameType != OBJECT_PUBLICATION || !publications_managed())
					break;
				/* a row left by a publication dropped otherwise (DROP OWNED) */
				run_on_publications("DELETE FROM guard.publication WHERE pubname = ANY ($1)",
									list_make1(stmt->newname), NULL);
				run_on_publications("UPDATE guard.publication SET pubname = $2"
									" WHERE pubname = ANY ($1)",
									list_make1(strVal(stmt->object)), stmt->newname);
				break;
			}
		case T_DropStmt:
			{
				DropStmt   *stmt = (DropStmt *) parsetree;
				List	   *names = NIL;
				ListCell   *lc;

				if (stmt->removeType != OBJECT_PUBLICATION || !publications_managed())
					break;
				foreach(lc, stmt->objects)
					names = lappend(names, strVal(lfirst(lc)));
				run_on_publications("DELETE FROM guard.publication WHERE pubname = ANY ($1)",
									names, NULL);
				break;
			}
		case T_CreateSchemaStmt:
		case T_CreateExtensionStmt:
			note_schema_created();
			break;
		default:
			break;
	}
	return pstmt;
}

/*
 * Trigger function (BEFORE INSERT OR UPDATE OR DELETE, FOR EACH ROW,
 * ENABLE REPLICA) on each of guard's tables: in a logical replication
 * worker, skip the row (its records are another server's); anywhere else,
 * let it through.
 */
Datum
guard_keep_local_records(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("guard.keep_local_records() must be called as a BEFORE ROW trigger")));
	if (IsLogicalWorker())
		return PointerGetDatum(NULL);
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		return PointerGetDatum(trigdata->tg_newtuple);
	return PointerGetDatum(trigdata->tg_trigtuple);
}
