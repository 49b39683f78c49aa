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
#include "catalog/namespace.h"
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
