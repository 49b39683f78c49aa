/*-------------------------------------------------------------------------
 *
 * trash.c
 *	  DROP TABLE of a protected table as a move into schema guard_trash;
 *	  undrop; purge.
 *
 * A dropped protected table is renamed and moved into guard_trash instead
 * of dropped: same OID, same storage, with its indexes, constraints,
 * triggers, rules, policies, grants, comments and partitions, in O(1)
 * whatever its size.  Each relation moved gets the trash name
 * "<oid>_<name>", unique in the trash; the change record's detail says
 * where each came from and what it was called.
 *
 * The table must then be gone for the rest of the database, so before it
 * moves, what ties it to the live tables is saved for the undo and cut:
 * views and materialized views on it and its statistics objects
 * (depend.c), its parents, foreign keys either way and publications
 * (link.c).  The undo moves it back and makes those again.
 *
 * guard.purge() drops the trash for real once it is older than the
 * retention; guard_trash_purge() also serves a DROP of something a
 * trashed table uses (inuse.c).
 *
 * The moves and drops here call PostgreSQL's internal functions, not SQL:
 * a user's DROP TABLE fires no event trigger and no utility hook for
 * guard's own steps, and reports nothing of them.
 *
 * Calls link.c, depend.c, changes.c and spi.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/alter.h"
#include "commands/tablecmds.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
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
 * The schema guard_trash (InvalidOid if it does not exist), created on
 * first use if "create".
 */
Oid
guard_trash_namespace(bool create)
{
	Oid			nsp = get_namespace_oid(GUARD_TRASH_SCHEMA, true);

	if (!OidIsValid(nsp) && create)
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
 * Does the trash hold no relation?  (The quick test before looking for
 * trashed tables that a DROP would reach.)
 */
bool
guard_trash_is_empty(void)
{
	Oid			nsp = guard_trash_namespace(false);
	GuardAsRole owner;
	Oid			types[1] = {OIDOID};
	Datum		values[1];
	bool		empty;

	if (!OidIsValid(nsp))
		return true;
	values[0] = ObjectIdGetDatum(nsp);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = $1 LIMIT 1",
				  1, types, values, NULL);
	empty = SPI_processed == 0;
	guard_as_role_end(&owner);
	return empty;
}

/*
 * The name relation "relid" named "name" gets in the trash: "<oid>_<name>",
 * unique there whatever else was dropped under the same name, cut to fit
 * a name without splitting a character.  The whole name is kept in the
 * change's detail.
 */
static void
trash_name(char *buf, Oid relid, const char *name)
{
	char		full[NAMEDATALEN * 2];
	int			len;

	snprintf(full, sizeof(full), "%u_%s", relid, name);
	len = pg_mbcliplen(full, strlen(full), NAMEDATALEN - 1);
	memcpy(buf, full, len);
	buf[len] = '\0';
}

/*
 * The name a relation had before it went to the trash, from its trash
 * name (the name itself if it has no "<oid>_" prefix): for records that
 * do not hold the name itself.
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
 * Rename relation "relid" (a table, an index or a sequence), as ALTER ...
 * RENAME does, but without a statement.
 */
static void
rename_relation(Oid relid, const char *newname)
{
	char		relkind = get_rel_relkind(relid);

	RenameRelationInternal(relid, newname, true,
						   relkind == RELKIND_INDEX || relkind == RELKIND_PARTITIONED_INDEX);
	CommandCounterIncrement();
}

/*
 * Move table "relid" (with its indexes, constraints, owned sequences and
 * row type) into schema "nsp", as ALTER TABLE ... SET SCHEMA does.
 */
static void
move_relation(Oid relid, Oid nsp)
{
	ObjectAddresses *moved = new_object_addresses();

	AlterObjectNamespace_oid(RelationRelationId, relid, nsp, moved);
	free_object_addresses(moved);
	CommandCounterIncrement();
}

/*
 * The detail of a DROP TABLE change: where the table came from and its
 * trash name; the schema and name of each table of its tree and the name
 * of each of their indexes and owned sequences (by OID); the statements
 * and links that the undo makes again; what a DROP ... CASCADE took with
 * it that the undo does not bring back.
 */
static char *
drop_detail(Oid relid, const char *schema, const char *name, List *tree,
			List *recreate, List *not_kept)
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
		snprintf(field, sizeof(field), "name_%u", lfirst_oid(lc));
		guard_json_field(&detail, field, get_rel_name(lfirst_oid(lc)));
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
	if (not_kept != NIL)
	{
		StringInfoData list;

		initStringInfo(&list);
		foreach(lc, not_kept)
			appendStringInfo(&list, "%s%s", list.len ? "; " : "", (char *) lfirst(lc));
		guard_json_field(&detail, "not_kept", list.data);
	}
	appendStringInfoChar(&detail, '}');
	return detail.data;
}

/*
 * Move the tables of "tree" into the trash, each under its trash name:
 * first its indexes and owned sequences are renamed to their trash names
 * (they move with it), then it is renamed, then moved.
 */
static void
move_to_trash(List *tree)
{
	Oid			nsp = guard_trash_namespace(true);
	ListCell   *lc;

	foreach(lc, tree)
	{
		Oid			child = lfirst_oid(lc);
		char		childtrash[NAMEDATALEN];
		List	   *parts = table_parts(child);
		ListCell   *pc;

		foreach(pc, parts)
		{
			char		parttrash[NAMEDATALEN];

			trash_name(parttrash, lfirst_oid(pc), get_rel_name(lfirst_oid(pc)));
			rename_relation(lfirst_oid(pc), parttrash);
		}
		trash_name(childtrash, child, get_rel_name(child));
		rename_relation(child, childtrash);
		move_relation(child, nsp);
	}
}

/*
 * DROP TABLE of a protected table: move "tree" (the table "root" and the
 * partitions and children that go with it) into guard_trash, same OID,
 * same storage, and record where it came from.  First its dependents and
 * links are saved into the record and cut, so that the table is gone for
 * the rest of the database.  "not_kept" describes what else the statement
 * drops because of the table and the undo will not bring back.  The
 * caller holds the tables' AccessExclusiveLock and knows (from a trial)
 * that PostgreSQL would drop them.
 */
void
guard_trash_unit(Oid root, List *tree, List *not_kept)
{
	Relation	rel = relation_open(root, NoLock);
	char	   *schema = get_namespace_name(RelationGetNamespace(rel));
	char	   *name = pstrdup(RelationGetRelationName(rel));
	ObjectAddresses *deletions = new_object_addresses();
	List	   *recreate;

	relation_close(rel, NoLock);
	recreate = guard_dependents_save(tree, deletions);
	recreate = list_concat(recreate, guard_links_save(tree, deletions));

	rel = relation_open(root, NoLock);
	guard_change_record(rel, "DROP TABLE",
						drop_detail(root, schema, name, tree, recreate, not_kept));
	relation_close(rel, NoLock);

	performMultipleDeletions(deletions, DROP_CASCADE,
							 PERFORM_DELETION_INTERNAL | PERFORM_DELETION_QUIETLY);
	free_object_addresses(deletions);
	CommandCounterIncrement();
	guard_links_unlink_parents(tree);
	guard_links_drop_crossing(tree);
	move_to_trash(tree);
}

/*
 * Undo a DROP TABLE, first step: check that the table is in the trash and
 * that every table of its tree can go back under its name, so that all
 * come back or none.  Returns the tree.
 */
static List *
undrop_check(Oid relid, const char *(*detail_schema_of) (Oid relid, void *arg),
			 const char *(*detail_name_of) (Oid relid, void *arg), void *arg)
{
	List	   *tree;
	ListCell   *lc;
	Relation	rel = try_table_open(relid, AccessExclusiveLock);

	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the dropped table with OID %u is no longer in the trash", relid)));
	if (RelationGetNamespace(rel) != guard_trash_namespace(false))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not in the trash", RelationGetRelationName(rel))));
	table_close(rel, NoLock);

	tree = find_all_inheritors(relid, AccessExclusiveLock, NULL);
	foreach(lc, tree)
	{
		Oid			child = lfirst_oid(lc);
		const char *schema = detail_schema_of(child, arg);
		const char *recorded = detail_name_of(child, arg);
		char	   *name = recorded ? pstrdup(recorded) : name_from_trash(get_rel_name(child));
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
							name, schema),
					 errhint("Create the schema again first.")));
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
 * Undo a DROP TABLE: move the table and its partitions back from
 * guard_trash, each into the schema it came from and under its name, then
 * its indexes and owned sequences (moved with it) under theirs.
 * detail_schema_of and detail_name_of read, from the DROP TABLE change's
 * detail, the schema a table came from and the name a table, index or
 * owned sequence had.  The links and dependents come back after, through
 * guard_recreate_dependents().
 */
void
guard_undrop_table(Oid relid, const char *(*detail_schema_of) (Oid relid, void *arg),
				   const char *(*detail_name_of) (Oid relid, void *arg), void *arg)
{
	List	   *tree = undrop_check(relid, detail_schema_of, detail_name_of, arg);
	ListCell   *lc;

	foreach(lc, tree)
	{
		Oid			child = lfirst_oid(lc);
		Oid			nsp = get_namespace_oid(detail_schema_of(child, arg), false);
		const char *recorded = detail_name_of(child, arg);
		char	   *name = recorded ? pstrdup(recorded) : name_from_trash(get_rel_name(child));
		List	   *parts = table_parts(child);
		ListCell   *pc;

		move_relation(child, nsp);
		rename_relation(child, name);
		foreach(pc, parts)
		{
			const char *partname = detail_name_of(lfirst_oid(pc), arg);

			if (partname != NULL)
				rename_relation(lfirst_oid(pc), partname);
		}
	}
}

/*
 * Make again what a DROP TABLE of a protected table saved: the statements
 * that recreate its views, materialized views and statistics objects, and
 * its links (JSON directives, link.c).  Kept in the change's detail.
 */
void
guard_recreate_dependents(List *statements)
{
	ListCell   *lc;

	foreach(lc, statements)
	{
		const char *statement = lfirst(lc);

		if (statement[0] == '{')
			guard_link_restore(statement);
		else
			guard_run_internal_ddl(InvalidOid, "pg_catalog, pg_temp",
								   list_make1((char *) statement));
	}
}

/*
 * The tables of the trashed trees of "roots" (those still in the trash).
 */
static List *
trash_trees(List *roots)
{
	Oid			nsp = guard_trash_namespace(false);
	List	   *all = NIL;
	ListCell   *lc;

	foreach(lc, roots)
	{
		Oid			root = lfirst_oid(lc);

		if (!OidIsValid(nsp) || get_rel_namespace(root) != nsp)
			continue;
		all = list_concat_unique_oid(all, find_all_inheritors(root, AccessExclusiveLock, NULL));
	}
	return all;
}

/*
 * Drop for real the trashed trees of "roots" (those still in the trash),
 * all at once, with their policies and invariants.  With "why" (a DROP of
 * something they use, inuse.c), each one's DROP TABLE change is marked as
 * no longer undoable and a NOTICE names it.  Without "drop", only that:
 * the caller's statement drops them.
 */
void
guard_trash_purge(List *roots, const char *why, bool drop)
{
	List	   *tables = trash_trees(roots);
	ObjectAddresses *deletions = new_object_addresses();
	GuardAsRole owner;
	Oid			types[2] = {OIDARRAYOID, TEXTOID};
	Datum		values[2];
	Datum	   *elems;
	int			n = 0;
	ListCell   *lc;

	if (tables == NIL)
		return;
	elems = palloc(sizeof(Datum) * list_length(tables));
	foreach(lc, tables)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	values[0] = PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid),
												true, TYPALIGN_INT));
	values[1] = CStringGetTextDatum(why ? why : "");

	guard_as_role_begin(&owner, InvalidOid);
	if (why != NULL)
	{
		guard_run_sql("UPDATE guard.change"
					  "   SET state = 'expired',"
					  "       detail = detail || pg_catalog.jsonb_build_object('purged', $2)"
					  " WHERE relid = ANY ($1) AND kind = 'DROP TABLE' AND state = 'active'"
					  " RETURNING relation",
					  2, types, values, NULL);
		for (uint64 i = 0; drop && i < SPI_processed; i++)
			ereport(NOTICE,
					(errmsg("dropped table \"%s\" can no longer be restored",
							SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1)),
					 errdetail("%s guard dropped it from its trash for good.", why)));
	}
	if (drop)
	{
		guard_run_sql("DELETE FROM guard.policy WHERE relid::pg_catalog.oid = ANY ($1)",
					  1, types, values, NULL);
		guard_run_sql("DELETE FROM guard.invariant WHERE relid::pg_catalog.oid = ANY ($1)",
					  1, types, values, NULL);
	}
	guard_as_role_end(&owner);
	if (!drop)
		return;

	foreach(lc, roots)
	{
		ObjectAddress addr;

		if (!list_member_oid(tables, lfirst_oid(lc)))
			continue;
		ObjectAddressSet(addr, RelationRelationId, lfirst_oid(lc));
		add_exact_object_address(&addr, deletions);
	}
	performMultipleDeletions(deletions, DROP_CASCADE,
							 PERFORM_DELETION_INTERNAL | PERFORM_DELETION_QUIETLY);
	CommandCounterIncrement();
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
				  "   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid)"
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
	guard_trash_purge(tables, NULL, true);

	out[0] = Int64GetDatum(expired);
	out[1] = Int64GetDatum(list_length(tables));
	out[2] = Int64GetDatum(deleted);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, nulls);
	return (Datum) 0;
}
