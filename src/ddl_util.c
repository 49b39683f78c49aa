/*-------------------------------------------------------------------------
 *
 * ddl_util.c
 *	  What the kinds of schema change share: their records, the JSON detail
 *	  that carries what an undo needs, reading the catalogs as guard, and
 *	  running an undo's statements.
 *
 * A record is begun before its command runs, with its change id reserved
 * then, so that the ids of one statement's changes follow the order in
 * which PostgreSQL applies them (and restore, newest first, undoes them in
 * the reverse); it is written after the command succeeded.
 *
 * An undo runs its statements as the table's owner through the utility
 * hook, not as guard's internal DDL: each is recorded as the change of its
 * own kind, in the restore's change set, so that restoring the restore
 * redoes exactly what the first one undid.
 *
 * Every record of a schema change of a partitioned table also saves the
 * names of its partitions' indexes, which PostgreSQL derives from column
 * names when it makes them: an undo that makes them again gives them
 * their names back (guard_partition_indexes_rename, from schema_undo.c).
 *
 * Catalog definitions are read and deparsed with search_path pinned to
 * pg_catalog, so that every name they hold is qualified and means the same
 * when the undo runs.
 *
 * Calls changes.c, policy/relcache (through guard_policy_lookup), spi.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/relation.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "guard.h"

/*
 * The policy of a table if guard records its schema changes, else NULL.
 */
const GuardPolicy *
guard_ddl_policy(Relation rel)
{
	const GuardPolicy *policy;

	/* an extension's own script (guard's too) is not a migration */
	if (!guard_enabled || creating_extension ||
		!OidIsValid(get_extension_oid("guard", true)))
		return NULL;
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		return NULL;
	policy = guard_policy_lookup(rel);
	if (!policy->found ||
		(policy->capture != GUARD_CAPTURE_DDL && policy->capture != GUARD_CAPTURE_ALL))
		return NULL;
	return policy;
}

/*
 * The table a schema change names, locked as its command will lock it, if
 * the current user owns it; else InvalidOid, without taking a lock: the
 * command then fails with its own error, and guard must not make a user
 * wait for, or keep waiting, a table it may not change.
 */
Oid
guard_ddl_lookup_owned(const RangeVar *rv, LOCKMODE lockmode)
{
	Oid			relid = RangeVarGetRelid(rv, NoLock, true);

	if (!OidIsValid(relid) || !pg_class_ownercheck(relid, GetUserId()))
		return InvalidOid;
	return RangeVarGetRelid(rv, lockmode, true);
}

/*
 * Begin the record of a schema change of "kind" to "rel", reserving its
 * change id now.  Its detail is an open JSON object.
 */
GuardDdlRecord *
guard_ddl_record_begin(Relation rel, const char *kind)
{
	GuardDdlRecord *rec = palloc0(sizeof(GuardDdlRecord));

	rec->relid = RelationGetRelid(rel);
	rec->kind = kind;
	rec->change_id = guard_change_reserve(rel);
	rec->recheck = true;
	initStringInfo(&rec->detail);
	appendStringInfoChar(&rec->detail, '{');
	guard_json_partition_indexes(&rec->detail, rel);
	return rec;
}

/*
 * Write a record begun by guard_ddl_record_begin(), once its command ran.
 */
void
guard_ddl_record_write(GuardDdlRecord *rec, Relation rel)
{
	appendStringInfoChar(&rec->detail, '}');
	if (rec->change_id != 0)
		guard_change_insert(rel, rec->change_id, rec->kind, rec->detail.data,
							NULL, 0);
	else
		guard_change_record(rel, rec->kind, rec->detail.data);
}

/*
 * The detail of a change as a jsonb datum.
 */
static Datum
detail_jsonb(const GuardChange *change)
{
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(change->detail));
}

/*
 * A field of a schema change's detail as text, or NULL.
 */
char *
guard_detail_field(const GuardChange *change, const char *name)
{
	LOCAL_FCINFO(fcinfo, 2);
	Datum		result;

	if (change->detail == NULL)
		return NULL;
	InitFunctionCallInfoData(*fcinfo, NULL, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = detail_jsonb(change);
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = CStringGetTextDatum(name);
	fcinfo->args[1].isnull = false;
	result = jsonb_object_field_text(fcinfo);
	if (fcinfo->isnull)
		return NULL;
	return TextDatumGetCString(result);
}

/*
 * Write a list of GuardSaved as the field "name" of a detail: an array of
 * {"object", "sql", "as_guard"}.
 */
void
guard_json_saved(StringInfo buf, const char *name, List *saved)
{
	ListCell   *lc;

	appendStringInfo(buf, "%s", buf->len > 1 ? ", " : "");
	escape_json(buf, name);
	appendStringInfoString(buf, ": [");
	foreach(lc, saved)
	{
		GuardSaved *s = lfirst(lc);

		appendStringInfoString(buf, foreach_current_index(lc) ? ", {" : "{");
		escape_json(buf, "object");
		appendStringInfoString(buf, ": ");
		escape_json(buf, s->object);
		appendStringInfoString(buf, ", ");
		escape_json(buf, "sql");
		appendStringInfoString(buf, ": ");
		if (s->sql)
			escape_json(buf, s->sql);
		else
			appendStringInfoString(buf, "null");
		appendStringInfo(buf, ", \"as_guard\": %s}", s->as_guard ? "true" : "false");
	}
	appendStringInfoChar(buf, ']');
}

/*
 * The list of GuardSaved that guard_json_saved() wrote as field "name" of
 * a change's detail (NIL if none).
 */
List *
guard_detail_saved(const GuardChange *change, const char *name)
{
	GuardAsRole owner;
	Oid			types[2] = {JSONBOID, TEXTOID};
	Datum		values[2];
	List	   *saved = NIL;
	MemoryContext outer = CurrentMemoryContext;

	if (change->detail == NULL)
		return NIL;
	values[0] = detail_jsonb(change);
	values[1] = CStringGetTextDatum(name);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT e ->> 'object', e ->> 'sql', (e ->> 'as_guard')::bool"
				  "  FROM pg_catalog.jsonb_array_elements("
				  "         CASE WHEN pg_catalog.jsonb_typeof($1 -> $2) = 'array'"
				  "              THEN $1 -> $2 ELSE '[]' END) e",
				  2, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(outer);
		GuardSaved *s = palloc0(sizeof(GuardSaved));
		char	   *v;
		bool		isnull;

		v = SPI_getvalue(tuple, desc, 1);
		s->object = v ? pstrdup(v) : pstrdup("?");
		v = SPI_getvalue(tuple, desc, 2);
		s->sql = v ? pstrdup(v) : NULL;
		s->as_guard = DatumGetBool(SPI_getbinval(tuple, desc, 3, &isnull)) && !isnull;
		saved = lappend(saved, s);
		MemoryContextSwitchTo(old);
	}
	guard_as_role_end(&owner);
	return saved;
}

/*
 * The first column of the first row of a catalog query run as the
 * extension owner with search_path pinned, or NULL.
 */
char *
guard_catalog_string(const char *sql, int nargs, Oid *types, Datum *values)
{
	GuardAsRole owner;
	char	   *result = NULL;
	MemoryContext outer = CurrentMemoryContext;

	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql(sql, nargs, types, values, NULL);
	if (SPI_processed > 0)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (v)
			result = MemoryContextStrdup(outer, v);
	}
	guard_as_role_end(&owner);
	return result;
}

/*
 * Pin search_path to pg_catalog while C code deparses catalog definitions,
 * so that every name not in pg_catalog comes out qualified.  Returns the
 * GUC nest level to give guard_unpin_search_path(); an error in between
 * is unwound by the transaction's abort.
 */
int
guard_pin_search_path(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	return level;
}

/*
 * Put back the search_path that guard_pin_search_path() replaced.
 */
void
guard_unpin_search_path(int level)
{
	AtEOXact_GUC(true, level);
}

/*
 * Run one statement of a schema change undo as "owner" (InvalidOid: the
 * extension owner), search_path pinned.  It goes through the utility hook
 * like any user's statement, so that it is recorded as a change of its own
 * kind.  Its effects are visible on return.
 */
void
guard_run_as_owner(Oid owner, const char *sql)
{
	GuardAsRole as;

	guard_as_role_path_begin(&as, owner, "pg_catalog, pg_temp", false);
	guard_run_sql(sql, 0, NULL, NULL, NULL);
	guard_as_role_end(&as);
	CommandCounterIncrement();
}

/*
 * Add "verb object" to the objects a report lists.
 */
void
guard_report_object(GuardRestoreReport *report, const char *verb,
					const char *object)
{
	report->objects = lappend(report->objects, psprintf("%s %s", verb, object));
}

/*
 * Recreate saved objects, in their order: a table's own parts as its
 * owner, another table's (a foreign key referencing it, a view) as guard.
 * Each is listed in the report; one guard could not save is listed as not
 * recreated.
 */
void
guard_run_saved(const GuardSchemaTarget *t, List *saved,
				GuardRestoreReport *report)
{
	ListCell   *lc;

	foreach(lc, saved)
	{
		GuardSaved *s = lfirst(lc);

		if (s->sql == NULL)
		{
			guard_report_object(report, "cannot recreate", s->object);
			continue;
		}
		guard_run_as_owner(s->as_guard ? InvalidOid : t->owner, s->sql);
		guard_report_object(report, "recreate", s->object);
	}
}

/*
 * Stop an undo that a later change to the table is in the way of ("what"
 * says what is missing): name the later change set to restore first, if
 * guard recorded one.
 */
void
guard_schema_blocked(const GuardChange *change, const char *what)
{
	guard_undo_blocked(change, what,
					   "The table was altered in a way guard did not record; put it back as it was first.");
}

/*
 * The quoted, schema-qualified name of the table of index "indexoid"; NULL
 * if the index or its table is gone.
 */
static char *
index_table_name(Oid indexoid)
{
	Oid			table = IndexGetRelation(indexoid, true);
	char	   *relname = OidIsValid(table) ? get_rel_name(table) : NULL;
	char	   *nspname = relname ? get_namespace_name(get_rel_namespace(table)) : NULL;

	if (nspname == NULL)
		return NULL;
	return quote_qualified_identifier(nspname, relname);
}

/*
 * The key a partition's index is saved under: the name of the table's
 * partitioned index it belongs to, and the partition's name.
 */
static char *
partition_index_key(const char *topname, Oid child)
{
	char	   *table = index_table_name(child);

	if (topname == NULL || table == NULL)
		return NULL;
	return psprintf("%s ON %s", quote_identifier(topname), table);
}

/* one index of a partition, under a partitioned index of the table */
typedef struct PartitionIndex
{
	Oid			index;
	char	   *key;			/* partition_index_key() */
	char	   *name;
} PartitionIndex;

/*
 * The indexes of the partitions of every partitioned index of table
 * "relid", at every level (NIL if it is not partitioned or is gone).
 */
static List *
partition_indexes(Oid relid)
{
	Relation	rel = try_relation_open(relid, NoLock);
	List	   *indexes;
	List	   *result = NIL;
	ListCell   *lc;

	if (rel == NULL)
		return NIL;
	if (rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
	{
		relation_close(rel, NoLock);
		return NIL;
	}
	indexes = RelationGetIndexList(rel);
	relation_close(rel, NoLock);
	foreach(lc, indexes)
	{
		Oid			top = lfirst_oid(lc);
		ListCell   *cc;

		if (get_rel_relkind(top) != RELKIND_PARTITIONED_INDEX)
			continue;
		foreach(cc, find_all_inheritors(top, NoLock, NULL))
		{
			PartitionIndex *p = palloc(sizeof(PartitionIndex));

			p->index = lfirst_oid(cc);
			p->key = partition_index_key(get_rel_name(top), p->index);
			p->name = get_rel_name(p->index);
			if (p->index != top && p->key != NULL && p->name != NULL)
				result = lappend(result, p);
		}
	}
	return result;
}

/*
 * Save into a schema change's detail, as field "partition_indexes", the
 * names of the partitions' indexes of every partitioned index of "rel":
 * PostgreSQL names them after the columns as they are named when it makes
 * them, and an undo that makes them again (DROP INDEX, or ALTER COLUMN
 * TYPE, which rebuilds the indexes on the column) would otherwise leave
 * them other names than they had.  Nothing for a table that is not
 * partitioned.
 */
void
guard_json_partition_indexes(StringInfo detail, Relation rel)
{
	List	   *saved = NIL;
	ListCell   *lc;

	foreach(lc, partition_indexes(RelationGetRelid(rel)))
	{
		PartitionIndex *p = lfirst(lc);
		GuardSaved *s = palloc0(sizeof(GuardSaved));

		s->object = p->key;
		s->sql = p->name;
		saved = lappend(saved, s);
	}
	if (saved != NIL)
		guard_json_saved(detail, "partition_indexes", saved);
}

/*
 * After the undo of "change" on the partitioned table "t": give the
 * partitions' indexes the names guard_json_partition_indexes() saved,
 * where they differ and the name is free in the index's schema.
 */
void
guard_partition_indexes_rename(const GuardSchemaTarget *t, const GuardChange *change)
{
	List	   *saved = guard_detail_saved(change, "partition_indexes");
	ListCell   *lc;

	if (saved == NIL)
		return;
	foreach(lc, partition_indexes(t->relid))
	{
		PartitionIndex *p = lfirst(lc);
		Oid			nsp = get_rel_namespace(p->index);
		ListCell   *sc;

		foreach(sc, saved)
		{
			GuardSaved *s = lfirst(sc);

			if (s->object == NULL || s->sql == NULL || strcmp(s->object, p->key) != 0)
				continue;
			if (strcmp(s->sql, p->name) != 0 && !OidIsValid(get_relname_relid(s->sql, nsp)))
				guard_run_as_owner(t->owner,
								   psprintf("ALTER INDEX %s RENAME TO %s",
											quote_qualified_identifier(get_namespace_name(nsp),
																	   p->name),
											quote_identifier(s->sql)));
			break;
		}
	}
}
