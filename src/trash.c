/*-------------------------------------------------------------------------
 *
 * trash.c
 *	  DROP TABLE of a protected table as a move into schema guard_trash;
 *	  undrop; guard.purge().
 *
 * A dropped protected table is renamed and moved into guard_trash instead
 * of dropped: same OID, same storage, with its indexes, constraints,
 * triggers, grants, comments and partitions, in O(1) whatever its size.
 * Each relation moved gets the trash name "<oid>_<name>", unique in the
 * trash; the change record's detail says where each came from.  With
 * CASCADE, the views and other tables' foreign keys that depend on the
 * table are saved as SQL (depend.c) and dropped first, and recreated by
 * the undo.  guard.purge() drops the trash for real once it is older than
 * the retention, and expires old snapshots.
 *
 * guard's own DDL here (the moves, the drops of dependents, purge) runs
 * through guard_run_internal_ddl() (spi.c), marked with guard_internal_ddl so that the
 * utility hook lets it through unrecorded.
 *
 * Layering: ddl.c -> trash.c -> depend.c; this file does not call ddl.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "guard.h"

/*
 * Append "name": value (null if value is NULL) to the JSON object being
 * built in "buf" (opened with '{' by the caller): the detail of a change
 * record.
 */
void
guard_json_field(StringInfo buf, const char *name, const char *value)
{
	appendStringInfo(buf, "%s", buf->len > 1 ? ", " : "");
	escape_json(buf, name);
	appendStringInfoString(buf, ": ");
	if (value)
		escape_json(buf, value);
	else
		appendStringInfoString(buf, "null");
}

/*
 * The schema guard_trash, created on first use.
 */
static Oid
trash_namespace(void)
{
	Oid			nsp = get_namespace_oid(GUARD_TRASH_SCHEMA, true);

	if (!OidIsValid(nsp))
	{
		GuardAsRole owner;

		guard_as_role_path_begin(&owner, InvalidOid, "pg_catalog, pg_temp", false);
		guard_run_sql("CREATE SCHEMA " GUARD_TRASH_SCHEMA, 0, NULL, NULL, NULL);
		guard_run_sql("REVOKE ALL ON SCHEMA " GUARD_TRASH_SCHEMA " FROM PUBLIC", 0, NULL, NULL, NULL);
		guard_as_role_end(&owner);
		CommandCounterIncrement();
		nsp = get_namespace_oid(GUARD_TRASH_SCHEMA, false);
	}
	return nsp;
}

/*
 * The name relation "relid" named "name" gets in the trash: "<oid>_<name>",
 * unique there whatever else was dropped under the same name.
 */
static void
trash_name(char *buf, Oid relid, const char *name)
{
	snprintf(buf, NAMEDATALEN, "%u_%s", relid, name);
}

/*
 * The name a relation had before it went to the trash, from its trash
 * name (the name itself if it has no "<oid>_" prefix).
 */
static char *
name_from_trash(const char *trashname)
{
	const char *sep = strchr(trashname, '_');

	return pstrdup(sep ? sep + 1 : trashname);
}

/*
 * The relations that move with a table into another schema and could
 * collide there by name: its indexes and the sequences it owns.
 */
static List *
table_parts(Oid relid)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	List	   *parts = list_copy(RelationGetIndexList(rel));

	parts = list_concat(parts, getOwnedSequences(relid));
	relation_close(rel, AccessShareLock);
	return parts;
}

/*
 * The statement that renames index or owned sequence "part", which is in
 * schema "schema", to "newname".
 */
static char *
rename_part_sql(Oid part, const char *schema, const char *newname)
{
	return psprintf("ALTER %s %s RENAME TO %s",
					get_rel_relkind(part) == RELKIND_SEQUENCE ? "SEQUENCE" : "INDEX",
					quote_qualified_identifier(schema, get_rel_name(part)),
					quote_identifier(newname));
}

/*
 * Before a protected table goes to the trash: the views and other tables'
 * foreign keys that depend on it.  Without CASCADE, refused as PostgreSQL
 * would; with CASCADE, saved as the statements that recreate them
 * (returned, for the undo) and dropped.  Dependents guard cannot keep
 * (materialized views, functions using its row type) are refused.
 */
static List *
drop_dependents(Oid relid, const char *name, DropBehavior behavior,
				List *dropping)
{
	List	   *recreate;
	List	   *drops;

	if (!guard_dependents_exist(relid, dropping))
		return NIL;
	if (behavior != DROP_CASCADE)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop table \"%s\" because other objects depend on it", name),
				 errhint("Use DROP ... CASCADE to drop the dependent objects too.")));
	recreate = guard_dependents_save(relid, dropping, &drops);
	guard_run_internal_ddl(InvalidOid, "pg_catalog, pg_temp", drops);
	if (guard_dependents_exist(relid, dropping))
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop protected table \"%s\" because objects guard cannot keep depend on it",
						name),
				 errdetail("guard keeps a dropped protected table, its views and the foreign keys that reference it to undo the drop; other dependents (materialized views, functions using its row type) it cannot keep."),
				 errhint("Drop those objects first, or stop protecting the table with guard.unprotect().")));
	return recreate;
}

/*
 * The detail of a DROP TABLE change: where the table came from and its
 * trash name; the schema of each table of its tree and the name of each
 * of their indexes and owned sequences (by OID); the statements that
 * recreate its dependents.
 */
static char *
drop_detail(Oid relid, const char *schema, const char *name, List *tree,
			List *recreate)
{
	StringInfoData detail;
	char		trashname[NAMEDATALEN];
	ListCell   *lc;

	initStringInfo(&detail);
	appendStringInfoChar(&detail, '{');
	guard_json_field(&detail, "schema", schema);
	guard_json_field(&detail, "name", name);
	trash_name(trashname, relid, name);
	guard_json_field(&detail, "trash", trashname);
	foreach(lc, tree)
	{
		char		field[64];
		List	   *parts = table_parts(lfirst_oid(lc));
		ListCell   *pc;

		snprintf(field, sizeof(field), "schema_%u", lfirst_oid(lc));
		guard_json_field(&detail, field, get_namespace_name(get_rel_namespace(lfirst_oid(lc))));
		foreach(pc, parts)
		{
			snprintf(field, sizeof(field), "name_%u", lfirst_oid(pc));
			guard_json_field(&detail, field, get_rel_name(lfirst_oid(pc)));
		}
	}
	foreach(lc, recreate)
	{
		char		field[64];

		snprintf(field, sizeof(field), "recreate_%d", foreach_current_index(lc) + 1);
		guard_json_field(&detail, field, (char *) lfirst(lc));
	}
	appendStringInfoChar(&detail, '}');
	return detail.data;
}

/*
 * The statements that move the tables of "tree" into the trash, each
 * under its trash name: first its indexes and owned sequences are renamed
 * to their trash names (they move with it), then it is renamed, then
 * moved.
 */
static List *
move_to_trash_sql(List *tree)
{
	List	   *statements = NIL;
	ListCell   *lc;

	foreach(lc, tree)
	{
		Oid			child = lfirst_oid(lc);
		char	   *schema = get_namespace_name(get_rel_namespace(child));
		char		childtrash[NAMEDATALEN];
		List	   *parts = table_parts(child);
		ListCell   *pc;

		foreach(pc, parts)
		{
			Oid			part = lfirst_oid(pc);
			char		parttrash[NAMEDATALEN];

			trash_name(parttrash, part, get_rel_name(part));
			statements = lappend(statements,
								 rename_part_sql(part, get_namespace_name(get_rel_namespace(part)),
												 parttrash));
		}
		trash_name(childtrash, child, get_rel_name(child));
		statements = lappend(statements,
							 psprintf("ALTER TABLE %s RENAME TO %s",
									  quote_qualified_identifier(schema, get_rel_name(child)),
									  quote_identifier(childtrash)));
		statements = lappend(statements,
							 psprintf("ALTER TABLE %s SET SCHEMA " GUARD_TRASH_SCHEMA,
									  quote_qualified_identifier(schema, childtrash)));
	}
	return statements;
}

/*
 * DROP TABLE of a protected table: move it (and its partitions) into
 * guard_trash under a unique name, same OID, same storage, and record
 * where it came from.  O(1) whatever the size.  "dropping" lists the
 * tables the same statement drops; the caller holds the table's
 * AccessExclusiveLock and checked its ownership.
 */
void
guard_trash_table(Oid relid, DropBehavior behavior, List *dropping)
{
	Relation	rel = relation_open(relid, NoLock);
	char	   *schema = get_namespace_name(RelationGetNamespace(rel));
	char	   *name = pstrdup(RelationGetRelationName(rel));
	List	   *tree;
	List	   *recreate;

	/* no reference held while dependents are dropped (ALTER TABLE checks) */
	relation_close(rel, NoLock);
	recreate = drop_dependents(relid, name, behavior, dropping);

	/* partitions go with their parent, each under its own trash name */
	tree = find_all_inheritors(relid, AccessExclusiveLock, NULL);
	rel = relation_open(relid, NoLock);
	guard_change_record(rel, "DROP TABLE",
						drop_detail(relid, schema, name, tree, recreate));
	relation_close(rel, NoLock);
	(void) trash_namespace();
	guard_run_internal_ddl(InvalidOid, "pg_catalog, pg_temp", move_to_trash_sql(tree));
}

/*
 * Undo a DROP TABLE, first step: check that the table is in the trash and
 * that every table of its tree can go back under its name, so that all
 * come back or none.  Returns the tree.
 */
static List *
undrop_check(Oid relid, const char *(*detail_schema_of) (Oid relid, void *arg),
			 void *arg)
{
	List	   *tree;
	ListCell   *lc;
	Relation	rel = try_table_open(relid, AccessExclusiveLock);

	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the dropped table with OID %u is no longer in the trash", relid)));
	if (RelationGetNamespace(rel) != get_namespace_oid(GUARD_TRASH_SCHEMA, true))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not in the trash", RelationGetRelationName(rel))));
	table_close(rel, NoLock);

	tree = find_all_inheritors(relid, AccessExclusiveLock, NULL);
	foreach(lc, tree)
	{
		Oid			child = lfirst_oid(lc);
		const char *schema = detail_schema_of(child, arg);
		char	   *name = name_from_trash(get_rel_name(child));
		Oid			nsp;

		if (schema == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_SCHEMA),
					 errmsg("cannot undrop table \"%s\": the schema it was dropped from is not recorded",
							name)));
		nsp = get_namespace_oid(schema, true);
		if (!OidIsValid(nsp))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_SCHEMA),
					 errmsg("cannot undrop table \"%s\": schema \"%s\" does not exist",
							name, schema)));
		if (OidIsValid(get_relname_relid(name, nsp)))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_TABLE),
					 errmsg("cannot undrop table \"%s\": relation \"%s.%s\" exists",
							name, schema, name),
					 errhint("Rename or drop the new table first.")));
	}
	return tree;
}

/*
 * The statements that move the tables of "tree" back from the trash: each
 * into the schema it came from, then renamed to its name, then its
 * indexes and owned sequences (moved with it) renamed to theirs.
 */
static List *
move_from_trash_sql(List *tree,
					const char *(*detail_schema_of) (Oid relid, void *arg),
					const char *(*detail_name_of) (Oid relid, void *arg),
					void *arg)
{
	List	   *statements = NIL;
	ListCell   *lc;

	foreach(lc, tree)
	{
		Oid			child = lfirst_oid(lc);
		const char *schema = detail_schema_of(child, arg);
		char	   *trashname = get_rel_name(child);
		List	   *parts = table_parts(child);
		ListCell   *pc;

		statements = lappend(statements,
							 psprintf("ALTER TABLE " GUARD_TRASH_SCHEMA ".%s SET SCHEMA %s",
									  quote_identifier(trashname), quote_identifier(schema)));
		statements = lappend(statements,
							 psprintf("ALTER TABLE %s RENAME TO %s",
									  quote_qualified_identifier(schema, trashname),
									  quote_identifier(name_from_trash(trashname))));
		foreach(pc, parts)
		{
			Oid			part = lfirst_oid(pc);
			const char *partname = detail_name_of(part, arg);

			if (partname != NULL)
				statements = lappend(statements, rename_part_sql(part, schema, partname));
		}
	}
	return statements;
}

/*
 * Undo a DROP TABLE: move the table and its partitions back from
 * guard_trash under their names.  detail_schema_of and detail_name_of
 * read, from the DROP TABLE change's detail, the schema a table came from
 * and the name an index or owned sequence had.
 */
void
guard_undrop_table(Oid relid, const char *(*detail_schema_of) (Oid relid, void *arg),
				   const char *(*detail_name_of) (Oid relid, void *arg), void *arg)
{
	List	   *tree = undrop_check(relid, detail_schema_of, arg);

	guard_run_internal_ddl(InvalidOid, "pg_catalog, pg_temp",
						   move_from_trash_sql(tree, detail_schema_of,
											   detail_name_of, arg));
}

/*
 * Run the statements that recreate what a DROP TABLE ... CASCADE of a
 * protected table dropped with it (saved by guard_dependents_save, kept
 * in the change's detail).
 */
void
guard_recreate_dependents(List *statements)
{
	guard_run_internal_ddl(InvalidOid, "pg_catalog, pg_temp", statements);
}

/*
 * guard.purge()'s bookkeeping, as the extension owner: returns the trashed
 * tables to drop for real (those dropped before "older_than" ago, and
 * those no change can bring back any more); expires the changes older
 * than that (*expired) and deletes their snapshots (*deleted).
 */
static List *
purge_expire(Interval *older_than, int64 *expired, int64 *deleted)
{
	GuardAsRole owner;
	Oid			types[1] = {INTERVALOID};
	Datum		values[1];
	List	   *tables = NIL;
	MemoryContext outer = CurrentMemoryContext;

	values[0] = IntervalPGetDatum(older_than);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT relid FROM guard.change"
				  " WHERE kind = 'DROP TABLE' AND state = 'active'"
				  "   AND at < pg_catalog.now() - $1"
				  " UNION "
				  "SELECT c.oid FROM pg_catalog.pg_class c"
				  " WHERE c.relnamespace = pg_catalog.to_regnamespace('" GUARD_TRASH_SCHEMA "')"
				  "   AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
				  "   AND NOT EXISTS (SELECT 1 FROM guard.change g"
				  "                    WHERE g.relid = c.oid AND g.kind = 'DROP TABLE'"
				  "                      AND g.state = 'active')",
				  1, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 1, &isnull));
		MemoryContext old = MemoryContextSwitchTo(outer);

		tables = lappend_oid(tables, relid);
		MemoryContextSwitchTo(old);
	}
	guard_run_sql("UPDATE guard.change SET state = 'expired', data = NULL, nrows = NULL"
				  " WHERE state <> 'expired' AND at < pg_catalog.now() - $1",
				  1, types, values, NULL);
	*expired = SPI_processed;
	guard_run_sql("DELETE FROM guard.snapshot s USING guard.change c"
				  " WHERE s.change_id = c.change_id AND c.state = 'expired'",
				  0, NULL, NULL, NULL);
	*deleted = SPI_processed;
	guard_as_role_end(&owner);
	return tables;
}

/*
 * Drop for real those of "tables" still in the trash, in one DROP so that
 * foreign keys between trashed tables go with their tables whatever the
 * order.
 */
static void
purge_tables(List *tables)
{
	StringInfoData drop;
	ListCell   *lc;

	initStringInfo(&drop);
	foreach(lc, tables)
	{
		Oid			relid = lfirst_oid(lc);
		char	   *name = get_rel_name(relid);

		if (name == NULL || get_rel_namespace(relid) != get_namespace_oid(GUARD_TRASH_SCHEMA, true))
			continue;
		appendStringInfo(&drop, "%s" GUARD_TRASH_SCHEMA ".%s",
						 drop.len ? ", " : "DROP TABLE ", quote_identifier(name));
	}
	if (drop.len > 0)
	{
		appendStringInfoString(&drop, " CASCADE");
		guard_run_internal_ddl(InvalidOid, "pg_catalog, pg_temp", list_make1(drop.data));
	}
}

/*
 * guard.purge(older_than): expire what is older than "older_than" (default
 * guard.retention): drop for real the tables in the trash, delete the
 * snapshots of the other changes.  Each step is an index lookup by change:
 * no table scan, no lock beyond the rows and tables it removes.
 */
PG_FUNCTION_INFO_V1(guard_purge);

Datum
guard_purge(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Interval   *older_than = PG_ARGISNULL(0) ? NULL : PG_GETARG_INTERVAL_P(0);
	Datum		out[3];
	bool		nulls[3] = {false, false, false};
	List	   *tables;
	int64		expired = 0;
	int64		deleted = 0;

	guard_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	if (older_than == NULL)
	{
		older_than = palloc0(sizeof(Interval));
		older_than->time = (int64) guard_retention * USECS_PER_MINUTE;
	}
	tables = purge_expire(older_than, &expired, &deleted);
	purge_tables(tables);

	out[0] = Int64GetDatum(expired);
	out[1] = Int64GetDatum(list_length(tables));
	out[2] = Int64GetDatum(deleted);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, nulls);
	return (Datum) 0;
}
