/*-------------------------------------------------------------------------
 *
 * ddl_index.c
 *	  CREATE INDEX and DROP INDEX on a protected table: recorded with what
 *	  their undo needs, and undone.
 *
 *	CREATE INDEX	recorded after the command, under the name the index
 *					got; undone by dropping it with what was built on it
 *					since (a foreign key that relies on a unique index),
 *					listed in the report.
 *	DROP INDEX		its definition (tablespace and comment included),
 *					whether the table was clustered on it or used it as
 *					replica identity, and the foreign keys that relied on
 *					it, saved before the command; undone by creating it
 *					again.
 *
 * Every schema change of a partitioned table saves the names of its
 * partitions' indexes, which an undo may make again under other names
 * (ddl_util.c); schema_undo.c gives them back their names after the undo.
 *
 * With CONCURRENTLY the command commits transactions of its own: the
 * change is recorded in the last one, a change set of its own.  The undo
 * runs in the restore's transaction, where CONCURRENTLY is not allowed:
 * it creates or drops the index plainly.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/dependency.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "guard.h"

/*
 * After CREATE INDEX: name the index it made, the one the table did not
 * have before (none after IF NOT EXISTS found one).
 */
static bool
finish_create_index(GuardDdlRecord *rec, Relation rel)
{
	List	   *before = rec->arg;
	List	   *now = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;

	foreach(lc, now)
	{
		if (!list_member_oid(before, lfirst_oid(lc)))
		{
			found = lfirst_oid(lc);
			break;
		}
	}
	list_free(now);
	if (!OidIsValid(found))
		return false;
	guard_json_field(&rec->detail, "index", get_rel_name(found));
	guard_json_field(&rec->detail, "schema", get_namespace_name(get_rel_namespace(found)));
	guard_json_field(&rec->detail, "definition", guard_index_sql(found));
	return true;
}

/*
 * Before CREATE INDEX on a protected table: the indexes it has, to find
 * the new one after.  The table is locked as the command locks it.
 */
List *
guard_index_before_create(IndexStmt *stmt, List *after)
{
	LOCKMODE	lockmode = stmt->concurrent ? ShareUpdateExclusiveLock : ShareLock;
	Oid			relid = guard_ddl_lookup_owned(stmt->relation, lockmode);
	Relation	rel;
	GuardDdlRecord *rec;

	if (!OidIsValid(relid))
		return after;
	rel = relation_open(relid, NoLock);
	if (guard_ddl_policy(rel) == NULL)
	{
		relation_close(rel, NoLock);
		return after;
	}
	rec = guard_ddl_record_begin(rel, "CREATE INDEX");
	guard_json_field(&rec->detail, "concurrently", stmt->concurrent ? "true" : "false");
	rec->arg = RelationGetIndexList(rel);
	rec->finish = finish_create_index;
	rec->recheck = false;
	relation_close(rel, NoLock);
	return lappend(after, rec);
}

/*
 * The index a change names, if it exists on the change's table now.
 */
static Oid
named_index(const GuardChange *change, const GuardSchemaTarget *t)
{
	char	   *name = guard_detail_field(change, "index");
	char	   *schema = guard_detail_field(change, "schema");
	Oid			nsp = schema ? get_namespace_oid(schema, true) : InvalidOid;
	Oid			indexoid;

	if (name == NULL || !OidIsValid(nsp))
		return InvalidOid;
	indexoid = get_relname_relid(name, nsp);
	if (!OidIsValid(indexoid) || IndexGetRelation(indexoid, true) != t->relid)
		return InvalidOid;
	return indexoid;
}

/*
 * Undo CREATE INDEX: drop the index, with what was built on it since.
 */
static void
undo_create_index(const GuardChange *change, const GuardSchemaTarget *t,
				  GuardRestoreReport *report)
{
	Oid			indexoid = named_index(change, t);
	ListCell   *lc;

	if (!OidIsValid(indexoid))
		guard_schema_blocked(change, psprintf("index \"%s\" no longer exists",
											  guard_detail_field(change, "index")));
	foreach(lc, guard_dependents(t->relid, RelationRelationId, indexoid, 0))
		guard_report_object(report, "drop", ((GuardSaved *) lfirst(lc))->object);
	guard_run_as_owner(t->owner, psprintf("DROP INDEX %s CASCADE",
										  quote_qualified_identifier(guard_detail_field(change, "schema"),
																	 guard_detail_field(change, "index"))));
}

/*
 * After DROP INDEX: record it if the index is gone.
 */
static bool
finish_drop_index(GuardDdlRecord *rec, Relation rel)
{
	return get_rel_name(*(Oid *) rec->arg) == NULL;
}

/*
 * Begin the record of a DROP INDEX of "indexoid", an index of the
 * protected table "rel": what recreates it, and what goes with it.
 */
static GuardDdlRecord *
record_drop_index(Relation rel, Oid indexoid, bool concurrent)
{
	GuardDdlRecord *rec = guard_ddl_record_begin(rel, "DROP INDEX");
	HeapTuple	tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	Oid		   *arg = palloc(sizeof(Oid));

	guard_json_field(&rec->detail, "index", get_rel_name(indexoid));
	guard_json_field(&rec->detail, "schema", get_namespace_name(get_rel_namespace(indexoid)));
	guard_json_field(&rec->detail, "definition", guard_index_sql(indexoid));
	guard_json_field(&rec->detail, "concurrently", concurrent ? "true" : "false");
	if (HeapTupleIsValid(tuple))
	{
		Form_pg_index index = (Form_pg_index) GETSTRUCT(tuple);

		if (index->indisclustered)
			guard_json_field(&rec->detail, "clustered", "true");
		if (index->indisreplident)
			guard_json_field(&rec->detail, "replica_identity", "true");
		ReleaseSysCache(tuple);
	}
	guard_json_saved(&rec->detail, "dependents",
					 guard_dependents(RelationGetRelid(rel), RelationRelationId, indexoid, 0));
	*arg = indexoid;
	rec->arg = arg;
	rec->finish = finish_drop_index;
	rec->recheck = false;
	return rec;
}

/*
 * Before DROP INDEX: for each index of a protected table it names, save
 * what recreates it.  The table, then the index, are locked as the
 * command locks them.
 */
List *
guard_index_before_drop(DropStmt *stmt, List *after)
{
	LOCKMODE	lockmode = stmt->concurrent ? ShareUpdateExclusiveLock : AccessExclusiveLock;
	ListCell   *lc;

	foreach(lc, stmt->objects)
	{
		RangeVar   *rv = makeRangeVarFromNameList((List *) lfirst(lc));
		Oid			indexoid = RangeVarGetRelid(rv, NoLock, true);
		Oid			heapoid;
		char		relkind = OidIsValid(indexoid) ? get_rel_relkind(indexoid) : '\0';
		Relation	rel;

		if (relkind != RELKIND_INDEX && relkind != RELKIND_PARTITIONED_INDEX)
			continue;
		heapoid = IndexGetRelation(indexoid, true);
		/* as the command does: no lock before the owner is checked */
		if (!OidIsValid(heapoid) || !pg_class_ownercheck(heapoid, GetUserId()))
			continue;
		LockRelationOid(heapoid, lockmode);
		LockRelationOid(indexoid, lockmode);
		rel = try_relation_open(heapoid, NoLock);
		if (rel == NULL)
			continue;
		/* the index of a constraint cannot be dropped: the command fails */
		if (guard_ddl_policy(rel) != NULL && !OidIsValid(get_index_constraint(indexoid)))
			after = lappend(after, record_drop_index(rel, indexoid, stmt->concurrent));
		relation_close(rel, NoLock);
	}
	return after;
}

/*
 * Undo DROP INDEX: create the index again, as it was, with what went with
 * it.
 */
static void
undo_drop_index(const GuardChange *change, const GuardSchemaTarget *t,
				GuardRestoreReport *report)
{
	char	   *name = guard_detail_field(change, "index");
	char	   *schema = guard_detail_field(change, "schema");
	char	   *qualified = quote_qualified_identifier(schema, name);
	Oid			nsp = get_namespace_oid(schema, true);

	if (OidIsValid(nsp) && OidIsValid(get_relname_relid(name, nsp)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("cannot restore change " INT64_FORMAT ": relation \"%s\" exists again",
						change->change_id, qualified),
				 errhint("Rename or drop the new relation first.")));
	guard_run_as_owner(t->owner, guard_detail_field(change, "definition"));
	if (guard_detail_field(change, "clustered"))
		guard_run_as_owner(t->owner, psprintf("ALTER TABLE %s CLUSTER ON %s", t->qualname,
											  quote_identifier(name)));
	if (guard_detail_field(change, "replica_identity"))
		guard_run_as_owner(t->owner, psprintf("ALTER TABLE %s REPLICA IDENTITY USING INDEX %s",
											  t->qualname, quote_identifier(name)));
	guard_run_saved(t, guard_detail_saved(change, "dependents"), report);
}

/* the index kinds: recorded by the two functions above, undone so */
const GuardSchemaKind guard_index_kinds[] = {
	{"CREATE INDEX", NULL, undo_create_index},
	{"DROP INDEX", NULL, undo_drop_index},
	{NULL, NULL, NULL}
};
