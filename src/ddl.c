/*-------------------------------------------------------------------------
 *
 * ddl.c
 *	  Schema changes on protected tables: recorded as changes, with what
 *	  their undo needs, before the command destroys it.
 *
 * Called from the ProcessUtility hook.  Before the command runs (with the
 * command's own lock taken first, so nothing changes in between):
 *
 *	DROP COLUMN, ALTER COLUMN TYPE	the column's values by key, and its
 *									definition, into a snapshot
 *	TRUNCATE (CASCADE included)		every row of each protected table reached
 *	DROP TABLE						nothing to copy: the table is moved into
 *									schema guard_trash instead of dropped, in
 *									O(1) whatever its size, with its indexes,
 *									constraints, triggers, grants and comments
 *
 * After it ran: ADD COLUMN and RENAME, which destroy nothing, and any other
 * ALTER TABLE, recorded with its statement so that restore can say what it
 * cannot undo.  restore.c undoes each kind.  guard.purge() drops the trash
 * and old snapshots for real.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/heap.h"
#include "catalog/namespace.h"
#include "catalog/pg_attrdef.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "commands/extension.h"
#include "commands/tablecmds.h"
#include "rewrite/rewriteHandler.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_utilcmd.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "catalog/pg_type.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/memutils.h"
#include "utils/ruleutils.h"

#include "guard.h"

#define TRASH_SCHEMA	"guard_trash"

/* a schema change to record once the command has run */
typedef struct DdlAfter
{
	Oid			relid;
	char	   *kind;
	char	   *detail;
} DdlAfter;

/*
 * The policy of a table if guard records its schema changes, else NULL.
 */
static const GuardPolicy *
ddl_policy(Relation rel)
{
	const GuardPolicy *policy;

	if (!guard_enabled || !OidIsValid(get_extension_oid("guard", true)))
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

static void
json_field(StringInfo buf, const char *name, const char *value)
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
 * The definition of column "attnum" of "rel", for re-adding it.
 */
static void
column_definition(StringInfo buf, Relation rel, AttrNumber attnum)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	char	   *defexpr = NULL;

	json_field(buf, "column", NameStr(att->attname));
	json_field(buf, "type", format_type_with_typemod(att->atttypid, att->atttypmod));
	json_field(buf, "not_null", att->attnotnull ? "true" : "false");
	if (OidIsValid(att->attcollation) && att->attcollation != get_typcollation(att->atttypid))
		json_field(buf, "collation", generate_collation_name(att->attcollation));
	if (att->atthasdef && !att->attgenerated)
	{
		Node	   *expr = build_column_default(rel, attnum);

		if (expr)
			defexpr = deparse_expression(expr, NIL, false, false);
	}
	json_field(buf, "default", defexpr);
}

/*
 * Copy rows of "rel" into a snapshot of the current change: every column
 * (as deleted rows) when attnum is 0, else the key and that column.
 */
static void
snapshot_rows(Relation rel, AttrNumber attnum, const char *kind)
{
	TupleDesc	desc = RelationGetDescr(rel);
	GuardAsRole owner;
	Portal		portal;
	ShadowWriter *w;
	TupleTableSlot *slot;
	int		   *map;
	int			n = 0;
	int64		limit = guard_max_snapshot_size < 0 ? -1 :
		(int64) guard_max_snapshot_size * 1024;
	char	   *sql = psprintf("SELECT * FROM %s",
							   quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
														  RelationGetRelationName(rel)));

	/* SELECT * returns the live columns in attnum order */
	map = palloc(sizeof(int) * Max(desc->natts, 1));
	for (int i = 0; i < desc->natts; i++)
		map[i] = TupleDescAttr(desc, i)->attisdropped ? -1 : n++;

	w = shadow_begin(rel, kind, limit, guard_policy_mode(guard_policy_lookup(rel)) == GUARD_MODE_ENFORCE);
	slot = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);

	/* as the extension owner: row level security must not hide rows */
	guard_as_role_begin(&owner, InvalidOid);
	portal = SPI_cursor_open_with_args(NULL, sql, 0, NULL, NULL, NULL, true, 0);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tuple = SPI_tuptable->vals[r];

			ExecClearTuple(slot);
			for (int i = 0; i < desc->natts; i++)
			{
				if (map[i] < 0)
				{
					slot->tts_isnull[i] = true;
					continue;
				}
				slot->tts_values[i] = SPI_getbinval(tuple, SPI_tuptable->tupdesc,
													map[i] + 1, &slot->tts_isnull[i]);
			}
			ExecStoreVirtualTuple(slot);
			if (attnum == 0)
				shadow_add_delete(w, slot);
			else
				shadow_add_column(w, slot, attnum);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	guard_as_role_end(&owner);
	ExecDropSingleTupleTableSlot(slot);
	shadow_end(w);
}

/*
 * Record a schema change that destroys a column's values: snapshot them
 * first.  The change record must exist before the snapshot's chunks.
 */
static void
record_column_change(Relation rel, AttrNumber attnum, const char *kind)
{
	StringInfoData detail;

	initStringInfo(&detail);
	appendStringInfoChar(&detail, '{');
	column_definition(&detail, rel, attnum);
	appendStringInfoChar(&detail, '}');
	guard_change_record(rel, kind, detail.data);
	snapshot_rows(rel, attnum, kind);
}

/*
 * Before ALTER TABLE: take the command's lock, snapshot what DROP COLUMN
 * and ALTER COLUMN TYPE destroy, and list what to record afterwards.
 */
static List *
before_alter_table(AlterTableStmt *stmt, List *after)
{
	Oid			relid;
	Relation	rel;
	ListCell   *lc;
	LOCKMODE	lockmode;

	if (stmt->objtype != OBJECT_TABLE)
		return after;
	lockmode = AlterTableGetLockLevel(stmt->cmds);
	relid = RangeVarGetRelid(stmt->relation, lockmode, true);
	if (!OidIsValid(relid))
		return after;
	rel = relation_open(relid, NoLock);
	if (ddl_policy(rel) == NULL)
	{
		relation_close(rel, NoLock);
		return after;
	}

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = (AlterTableCmd *) lfirst(lc);
		DdlAfter   *rec = palloc0(sizeof(DdlAfter));
		StringInfoData detail;

		initStringInfo(&detail);
		appendStringInfoChar(&detail, '{');
		rec->relid = relid;
		switch (cmd->subtype)
		{
			case AT_AddColumn:
				rec->kind = "ADD COLUMN";
				json_field(&detail, "column", ((ColumnDef *) cmd->def)->colname);
				break;
			case AT_DropColumn:
			case AT_AlterColumnType:
				{
					AttrNumber	attnum = get_attnum(relid, cmd->name);

					if (attnum > 0)
						record_column_change(rel, attnum,
											 cmd->subtype == AT_DropColumn ?
											 "DROP COLUMN" : "ALTER COLUMN TYPE");
					rec->kind = NULL;	/* recorded already */
					break;
				}
			case AT_EnableTrig:
			case AT_EnableAlwaysTrig:
			case AT_EnableReplicaTrig:
			case AT_DisableTrig:
			case AT_EnableTrigAll:
			case AT_DisableTrigAll:
			case AT_EnableTrigUser:
			case AT_DisableTrigUser:
				/* watched by hooks.c; not a change of the data's shape */
				rec = NULL;
				break;
			default:
				rec->kind = "ALTER TABLE";
				json_field(&detail, "undoable", "false");
				break;
		}
		if (rec)
		{
			appendStringInfoChar(&detail, '}');
			rec->detail = detail.data;
			after = lappend(after, rec);
		}
	}
	relation_close(rel, NoLock);
	return after;
}

/*
 * Before RENAME of a protected table or of one of its columns: note the
 * names, recorded once the rename succeeded.
 */
static List *
before_rename(RenameStmt *stmt, List *after)
{
	Oid			relid;
	Relation	rel;
	DdlAfter   *rec;
	StringInfoData detail;

	if ((stmt->renameType != OBJECT_TABLE && stmt->renameType != OBJECT_COLUMN) ||
		stmt->relation == NULL ||
		(stmt->renameType == OBJECT_COLUMN && stmt->relationType != OBJECT_TABLE))
		return after;
	relid = RangeVarGetRelid(stmt->relation, AccessExclusiveLock, true);
	if (!OidIsValid(relid))
		return after;
	rel = relation_open(relid, NoLock);
	if (ddl_policy(rel) == NULL)
	{
		relation_close(rel, NoLock);
		return after;
	}
	initStringInfo(&detail);
	appendStringInfoChar(&detail, '{');
	json_field(&detail, "what", stmt->renameType == OBJECT_TABLE ? "table" : "column");
	json_field(&detail, "old", stmt->renameType == OBJECT_TABLE ?
			   RelationGetRelationName(rel) : stmt->subname);
	json_field(&detail, "new", stmt->newname);
	appendStringInfoChar(&detail, '}');
	rec = palloc0(sizeof(DdlAfter));
	rec->relid = relid;
	rec->kind = "RENAME";
	rec->detail = detail.data;
	relation_close(rel, NoLock);
	return lappend(after, rec);
}

/* a copy of an OID list, last first */
static List *
list_reverse_oid(List *list)
{
	List	   *out = NIL;
	ListCell   *lc;

	foreach(lc, list)
		out = lcons_oid(lfirst_oid(lc), out);
	return out;
}

/*
 * Before TRUNCATE: snapshot every row of each protected table it reaches,
 * through CASCADE too.
 */
static void
before_truncate(TruncateStmt *stmt)
{
	List	   *relids = NIL;
	ListCell   *lc;

	foreach(lc, stmt->relations)
	{
		RangeVar   *rv = lfirst(lc);
		Oid			relid = RangeVarGetRelid(rv, AccessExclusiveLock, true);

		if (!OidIsValid(relid))
			continue;
		if (rv->inh)
			relids = list_concat_unique_oid(relids,
											find_all_inheritors(relid, AccessExclusiveLock, NULL));
		else
			relids = list_append_unique_oid(relids, relid);
	}
	if (stmt->behavior == DROP_CASCADE)
	{
		/* as ExecuteTruncate does: follow foreign keys until nothing new */
		for (;;)
		{
			List	   *more = heap_truncate_find_FKs(relids);
			int			before = list_length(relids);

			foreach(lc, more)
			{
				LockRelationOid(lfirst_oid(lc), AccessExclusiveLock);
				relids = list_append_unique_oid(relids, lfirst_oid(lc));
			}
			if (list_length(relids) == before)
				break;
		}
	}

	/*
	 * Record the tables reached last (the referencing ones) first: restore
	 * undoes newest first, so the referenced rows come back before the rows
	 * that reference them.
	 */
	relids = list_reverse_oid(relids);
	foreach(lc, relids)
	{
		Relation	rel = relation_open(lfirst_oid(lc), NoLock);
		const GuardPolicy *policy = guard_enabled && OidIsValid(get_extension_oid("guard", true)) &&
			rel->rd_rel->relkind == RELKIND_RELATION ? guard_policy_lookup(rel) : NULL;

		/* TRUNCATE loses rows: captured under any capture but none */
		if (policy && policy->found && policy->capture != GUARD_CAPTURE_NONE &&
			guard_key_attnums(rel, (AttrNumber[INDEX_MAX_KEYS]) {0}) > 0)
		{
			guard_change_record(rel, "TRUNCATE", NULL);
			snapshot_rows(rel, 0, "TRUNCATE");
		}
		relation_close(rel, NoLock);
	}
}

/*
 * The objects other than its own parts (indexes, constraints, triggers,
 * rules, owned sequences, partitions, row type) that depend on a table:
 * views, foreign keys of other tables, functions using its row type...
 */
static bool
has_outside_dependents(Oid relid, List *dropping)
{
	GuardAsRole owner;
	Oid			types[2] = {OIDOID, OIDARRAYOID};
	Datum		values[2];
	Datum	   *elems = palloc(sizeof(Datum) * (list_length(dropping) + 1));
	int			n = 0;
	ListCell   *lc;
	bool		found;

	foreach(lc, dropping)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	values[0] = ObjectIdGetDatum(relid);
	values[1] = PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid),
												true, TYPALIGN_INT));
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT 1 FROM pg_catalog.pg_depend d"
				  " WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
				  "   AND d.refobjid = $1 AND d.deptype = 'n'"
				  "   AND NOT (d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass"
				  "        AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c"
				  "                     WHERE c.oid = d.objid"
				  "                       AND (c.conrelid = $1 OR c.conrelid = ANY ($2)"
				  "                            OR c.conrelid IN (SELECT oid FROM pg_catalog.pg_class"
				  "                               WHERE relnamespace = pg_catalog.to_regnamespace('" TRASH_SCHEMA "')))))"
				  "   AND NOT (d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
				  "        AND EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r"
				  "                     WHERE r.oid = d.objid AND r.ev_class = $1))"
				  "   AND NOT (d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass"
				  "        AND EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef a"
				  "                     WHERE a.oid = d.objid AND a.adrelid = $1))"
				  " LIMIT 1", 2, types, values, NULL);
	found = SPI_processed > 0;
	guard_as_role_end(&owner);
	return found;
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
 * Run "statements" as guard's owner with a pinned search_path, marked as
 * guard's own DDL so that the utility hook lets them through unrecorded.
 */
static void
run_internal_ddl(List *statements)
{
	GuardAsRole owner;
	bool		save = guard_internal_ddl;
	ListCell   *lc;

	if (statements == NIL)
		return;
	guard_as_role_path_begin(&owner, InvalidOid, "pg_catalog, pg_temp", false);
	guard_internal_ddl = true;
	PG_TRY();
	{
		foreach(lc, statements)
			guard_run_sql((char *) lfirst(lc), 0, NULL, NULL, NULL);
	}
	PG_FINALLY();
	{
		guard_internal_ddl = save;
	}
	PG_END_TRY();
	guard_as_role_end(&owner);
	CommandCounterIncrement();
}

/*
 * For DROP TABLE ... CASCADE of a protected table: the views that depend on
 * it (transitively) and the foreign keys of other tables that reference it,
 * saved as the statements that recreate them (views first, shallowest
 * first, with owner, grants and comment; then the foreign keys), then
 * dropped.
 */
static List *
save_and_drop_dependents(Oid relid, List *dropping)
{
	GuardAsRole owner;
	Oid			types[2] = {OIDOID, OIDARRAYOID};
	Datum		values[2];
	Datum	   *elems = palloc(sizeof(Datum) * (list_length(dropping) + 1));
	int			n = 0;
	ListCell   *lc;
	List	   *recreate = NIL;
	List	   *drops = NIL;
	MemoryContext outer = CurrentMemoryContext;

	foreach(lc, dropping)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	values[0] = ObjectIdGetDatum(relid);
	values[1] = PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid),
												true, TYPALIGN_INT));
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("WITH RECURSIVE deps(oid, depth) AS ("
				  "  SELECT r.ev_class, 1 FROM pg_catalog.pg_depend d"
				  "    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid"
				  "   WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
				  "     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
				  "     AND d.refobjid = $1 AND r.ev_class <> $1"
				  "  UNION"
				  "  SELECT r.ev_class, deps.depth + 1 FROM deps"
				  "    JOIN pg_catalog.pg_depend d ON d.refobjid = deps.oid"
				  "     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
				  "     AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
				  "    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid"
				  "   WHERE r.ev_class <> deps.oid AND deps.depth < 50)"
				  " SELECT pg_catalog.concat_ws('; ',"
				  "     pg_catalog.format('CREATE VIEW %I.%I AS %s', n.nspname, c.relname,"
				  "                       pg_catalog.rtrim(pg_catalog.pg_get_viewdef(c.oid), ';')),"
				  "     pg_catalog.format('ALTER VIEW %I.%I OWNER TO %I', n.nspname, c.relname,"
				  "                       pg_catalog.pg_get_userbyid(c.relowner)),"
				  "     (SELECT pg_catalog.string_agg(pg_catalog.format('GRANT %s ON %I.%I TO %s',"
				  "              a.privilege_type, n.nspname, c.relname,"
				  "              CASE WHEN a.grantee = 0 THEN 'PUBLIC'"
				  "                   ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END), '; ')"
				  "        FROM pg_catalog.aclexplode(c.relacl) a WHERE a.grantee <> c.relowner),"
				  "     (SELECT pg_catalog.format('COMMENT ON VIEW %I.%I IS %L', n.nspname, c.relname, t)"
				  "        FROM pg_catalog.obj_description(c.oid, 'pg_class') t WHERE t IS NOT NULL)),"
				  "   pg_catalog.format('DROP VIEW IF EXISTS %I.%I CASCADE', n.nspname, c.relname),"
				  "   c.relkind"
				  "  FROM (SELECT oid, pg_catalog.max(depth) AS depth FROM deps GROUP BY oid) v"
				  "  JOIN pg_catalog.pg_class c ON c.oid = v.oid"
				  "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
				  " ORDER BY v.depth, c.oid",
				  1, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *create = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *drop = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		char	   *relkind = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);
		MemoryContext old;

		if (relkind[0] != RELKIND_VIEW)
			continue;			/* a materialized view: refused by the caller */
		old = MemoryContextSwitchTo(outer);
		recreate = lappend(recreate, pstrdup(create));
		drops = lappend(drops, pstrdup(drop));
		MemoryContextSwitchTo(old);
	}
	guard_run_sql("SELECT pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s',"
				  "         c.conrelid::pg_catalog.regclass, c.conname, pg_catalog.pg_get_constraintdef(c.oid)),"
				  "       pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I',"
				  "         c.conrelid::pg_catalog.regclass, c.conname)"
				  "  FROM pg_catalog.pg_constraint c"
				  " WHERE c.contype = 'f' AND c.confrelid = $1 AND c.conrelid <> $1"
				  "   AND c.conrelid <> ALL ($2) ORDER BY c.oid",
				  2, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(outer);

		recreate = lappend(recreate, pstrdup(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1)));
		drops = lappend(drops, pstrdup(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2)));
		MemoryContextSwitchTo(old);
	}
	guard_as_role_end(&owner);

	run_internal_ddl(drops);
	return recreate;
}

/*
 * Run the statements that recreate what a DROP TABLE ... CASCADE of a
 * protected table dropped with it (see save_and_drop_dependents).
 */
void
guard_recreate_dependents(List *statements)
{
	run_internal_ddl(statements);
}

/*
 * The schema guard_trash, created on first use.
 */
static Oid
trash_namespace(void)
{
	Oid			nsp = get_namespace_oid(TRASH_SCHEMA, true);

	if (!OidIsValid(nsp))
	{
		GuardAsRole owner;

		guard_as_role_path_begin(&owner, InvalidOid, "pg_catalog, pg_temp", false);
		guard_run_sql("CREATE SCHEMA " TRASH_SCHEMA, 0, NULL, NULL, NULL);
		guard_run_sql("REVOKE ALL ON SCHEMA " TRASH_SCHEMA " FROM PUBLIC", 0, NULL, NULL, NULL);
		guard_as_role_end(&owner);
		CommandCounterIncrement();
		nsp = get_namespace_oid(TRASH_SCHEMA, false);
	}
	return nsp;
}

/*
 * DROP TABLE of a protected table: move it (and its partitions) into
 * guard_trash under a unique name, same OID, same storage, and record
 * where it came from.  O(1) whatever the size.
 */
static void
trash_table(Oid relid, DropBehavior behavior, List *dropping)
{
	Relation	rel = relation_open(relid, NoLock);
	char	   *schema = get_namespace_name(RelationGetNamespace(rel));
	char	   *name = pstrdup(RelationGetRelationName(rel));
	char		trashname[NAMEDATALEN];
	StringInfoData detail;
	List	   *tree;
	ListCell   *lc;
	List	   *recreate = NIL;
	List	   *moves = NIL;

	/* no reference held while dependents are dropped (ALTER TABLE checks) */
	relation_close(rel, NoLock);

	/*
	 * Views and other tables' foreign keys that depend on the table: with
	 * CASCADE, saved as the statements that recreate them, then dropped; the
	 * undo recreates them.  Without, refused as PostgreSQL would.
	 */
	if (has_outside_dependents(relid, dropping))
	{
		if (behavior != DROP_CASCADE)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop table %s because other objects depend on it", name),
					 errhint("Use DROP ... CASCADE to drop the dependent objects too.")));
		recreate = save_and_drop_dependents(relid, dropping);
		if (has_outside_dependents(relid, dropping))
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop protected table \"%s\" because objects guard cannot keep depend on it",
							name),
					 errdetail("guard keeps a dropped protected table, its views and the foreign keys that reference it to undo the drop; other dependents (materialized views, functions using its row type) it cannot keep."),
					 errhint("Drop those objects first, or stop protecting the table with guard.unprotect().")));
	}

	/* partitions go with their parent, each under its own trash name */
	tree = find_all_inheritors(relid, AccessExclusiveLock, NULL);
	rel = relation_open(relid, NoLock);

	initStringInfo(&detail);
	appendStringInfoChar(&detail, '{');
	json_field(&detail, "schema", schema);
	json_field(&detail, "name", name);
	snprintf(trashname, sizeof(trashname), "%u_%s", relid, name);
	json_field(&detail, "trash", trashname);
	foreach(lc, tree)
	{
		char		field[64];
		List	   *parts = table_parts(lfirst_oid(lc));
		ListCell   *pc;

		snprintf(field, sizeof(field), "schema_%u", lfirst_oid(lc));
		json_field(&detail, field, get_namespace_name(get_rel_namespace(lfirst_oid(lc))));
		foreach(pc, parts)
		{
			snprintf(field, sizeof(field), "name_%u", lfirst_oid(pc));
			json_field(&detail, field, get_rel_name(lfirst_oid(pc)));
		}
	}
	foreach(lc, recreate)
	{
		char		field[64];

		snprintf(field, sizeof(field), "recreate_%d", foreach_current_index(lc) + 1);
		json_field(&detail, field, (char *) lfirst(lc));
	}
	appendStringInfoChar(&detail, '}');
	guard_change_record(rel, "DROP TABLE", detail.data);
	relation_close(rel, NoLock);
	(void) trash_namespace();
	foreach(lc, tree)
	{
		Oid			child = lfirst_oid(lc);
		char		childtrash[NAMEDATALEN];
		char	   *qname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(child)),
													   get_rel_name(child));

		List	   *parts = table_parts(child);
		ListCell   *pc;

		/* indexes and owned sequences move too: unique names in the trash */
		foreach(pc, parts)
		{
			Oid			part = lfirst_oid(pc);
			char		parttrash[NAMEDATALEN];

			snprintf(parttrash, sizeof(parttrash), "%u_%s", part, get_rel_name(part));
			moves = lappend(moves,
							psprintf("ALTER %s %s RENAME TO %s",
									 get_rel_relkind(part) == RELKIND_SEQUENCE ? "SEQUENCE" : "INDEX",
									 quote_qualified_identifier(get_namespace_name(get_rel_namespace(part)),
																get_rel_name(part)),
									 quote_identifier(parttrash)));
		}
		snprintf(childtrash, sizeof(childtrash), "%u_%s", child, get_rel_name(child));
		moves = lappend(moves, psprintf("ALTER TABLE %s RENAME TO %s", qname,
										quote_identifier(childtrash)));
		moves = lappend(moves, psprintf("ALTER TABLE %s SET SCHEMA " TRASH_SCHEMA,
										quote_qualified_identifier(get_namespace_name(get_rel_namespace(child)),
																   childtrash)));
	}
	run_internal_ddl(moves);
}

/*
 * The name of one protected table (capture other than none) that "cond"
 * selects, $1 being "arg" of type "argtype"; NULL if there is none.
 */
static char *
first_protected_table(const char *cond, Oid argtype, Datum arg)
{
	GuardAsRole owner;
	Oid			types[1] = {argtype};
	Datum		values[1] = {arg};
	char	   *found = NULL;
	MemoryContext outer = CurrentMemoryContext;

	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql(psprintf("SELECT c.relname FROM guard.policy p"
						   "  JOIN pg_catalog.pg_class c ON c.oid = p.relid"
						   " WHERE %s AND p.capture <> 'none'"
						   " ORDER BY 1 LIMIT 1", cond),
				  1, types, values, NULL);
	if (SPI_processed > 0)
		found = MemoryContextStrdup(outer,
									SPI_getvalue(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1));
	guard_as_role_end(&owner);
	return found;
}

/*
 * DROP SCHEMA ... CASCADE would drop protected tables without guard seeing
 * each one: refuse it while the schema holds any; they can be dropped (and
 * kept for undo) one by one first.
 */
static void
refuse_schema_with_protected_tables(DropStmt *drop)
{
	ListCell   *lc;

	if (drop->behavior != DROP_CASCADE || !OidIsValid(get_extension_oid("guard", true)))
		return;
	foreach(lc, drop->objects)
	{
		Oid			nsp = get_namespace_oid(strVal(lfirst(lc)), true);
		char	   *found;

		if (!OidIsValid(nsp))
			continue;
		found = first_protected_table("c.relnamespace = $1", OIDOID,
									  ObjectIdGetDatum(nsp));
		if (found)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop schema \"%s\" because it holds protected table \"%s\"",
							strVal(lfirst(lc)), found),
					 errdetail("DROP SCHEMA ... CASCADE would drop protected tables for good."),
					 errhint("Drop the protected tables first (guard keeps them to undo the drop), or unprotect them.")));
	}
}

/*
 * DROP OWNED BY drops the role's tables without naming them: refuse it
 * while the role owns a protected table in this database, as for DROP
 * SCHEMA.
 */
static void
refuse_owned_protected_tables(DropOwnedStmt *drop)
{
	ListCell   *lc;

	if (!OidIsValid(get_extension_oid("guard", true)))
		return;
	foreach(lc, drop->roles)
	{
		RoleSpec   *spec = lfirst_node(RoleSpec, lc);
		Oid			roleid = get_rolespec_oid(spec, true);
		char	   *found;

		if (!OidIsValid(roleid))
			continue;			/* DROP OWNED reports it */
		found = first_protected_table("c.relowner = $1", OIDOID,
									  ObjectIdGetDatum(roleid));
		if (found)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop objects owned by role \"%s\" because it owns protected table \"%s\"",
							get_rolespec_name(spec), found),
					 errdetail("DROP OWNED BY would drop protected tables for good."),
					 errhint("Drop the protected tables first (guard keeps them to undo the drop), reassign them with REASSIGN OWNED, or unprotect them.")));
	}
}

/*
 * Before a utility command: snapshot what it would destroy, and list what
 * to record after it.  For DROP TABLE of protected tables, *replaced is set
 * to the statement to run instead (the other names of the DROP), or NULL
 * when nothing is left to run.
 */
List *
guard_ddl_before(PlannedStmt *pstmt, Node **replaced)
{
	Node	   *parsetree = pstmt->utilityStmt;
	List	   *after = NIL;

	*replaced = parsetree;
	if (guard_internal_ddl)
		return NIL;

	switch (nodeTag(parsetree))
	{
		case T_AlterTableStmt:
			after = before_alter_table((AlterTableStmt *) parsetree, after);
			break;
		case T_RenameStmt:
			after = before_rename((RenameStmt *) parsetree, after);
			break;
		case T_TruncateStmt:
			before_truncate((TruncateStmt *) parsetree);
			break;
		case T_DropOwnedStmt:
			refuse_owned_protected_tables((DropOwnedStmt *) parsetree);
			break;
		case T_DropStmt:
			{
				DropStmt   *drop = (DropStmt *) parsetree;
				List	   *keep = NIL;
				List	   *dropping = NIL;
				ListCell   *lc;
				bool		trashed = false;

				if (drop->removeType == OBJECT_SCHEMA)
				{
					refuse_schema_with_protected_tables(drop);
					break;
				}
				if (drop->removeType != OBJECT_TABLE)
					break;
				/* the tables this statement drops, for dependency checks */
				foreach(lc, drop->objects)
				{
					Oid			relid = RangeVarGetRelid(makeRangeVarFromNameList((List *) lfirst(lc)),
														 NoLock, true);

					if (OidIsValid(relid))
						dropping = lappend_oid(dropping, relid);
				}
				foreach(lc, drop->objects)
				{
					RangeVar   *rv = makeRangeVarFromNameList((List *) lfirst(lc));
					Oid			relid = RangeVarGetRelid(rv, AccessExclusiveLock, true);
					Relation	rel;
					bool		protect_it = false;

					if (OidIsValid(relid))
					{
						rel = relation_open(relid, NoLock);
						protect_it = ddl_policy(rel) != NULL && !rel->rd_rel->relispartition;
						relation_close(rel, NoLock);
					}
					if (protect_it)
					{
						if (!pg_class_ownercheck(relid, GetUserId()))
							aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, rv->relname);
						trash_table(relid, drop->behavior, dropping);
						trashed = true;
					}
					else
						keep = lappend(keep, lfirst(lc));
				}
				if (trashed)
				{
					if (keep == NIL)
						*replaced = NULL;
					else
					{
						DropStmt   *rest = copyObject(drop);

						rest->objects = keep;
						*replaced = (Node *) rest;
					}
				}
				break;
			}
		default:
			break;
	}
	return after;
}

/*
 * After the command succeeded: record the changes that destroyed nothing;
 * a table whose shape changed gets its row invariants checked whole.
 */
void
guard_ddl_after(List *after)
{
	ListCell   *lc;

	foreach(lc, after)
	{
		DdlAfter   *rec = lfirst(lc);
		Relation	rel = try_relation_open(rec->relid, AccessShareLock);

		if (rel == NULL)
			continue;
		if (rec->kind)
			guard_change_record(rel, rec->kind, rec->detail);
		guard_invariants_after_ddl(rel);
		relation_close(rel, AccessShareLock);
	}
}

/*
 * Undo a DROP TABLE: move the table and its partitions back from
 * guard_trash under their names.
 */
void
guard_undrop_table(Oid relid, const char *(*detail_schema_of) (Oid relid, void *arg),
				   const char *(*detail_name_of) (Oid relid, void *arg), void *arg)
{
	List	   *tree;
	ListCell   *lc;
	List	   *moves = NIL;
	Relation	rel = try_table_open(relid, AccessExclusiveLock);

	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the dropped table with OID %u is no longer in the trash", relid)));
	if (RelationGetNamespace(rel) != get_namespace_oid(TRASH_SCHEMA, true))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not in the trash", RelationGetRelationName(rel))));
	table_close(rel, NoLock);

	tree = find_all_inheritors(relid, AccessExclusiveLock, NULL);
	/* check every name first: all come back, or none */
	foreach(lc, tree)
	{
		Oid			child = lfirst_oid(lc);
		const char *schema = detail_schema_of(child, arg);
		char	   *trashname = get_rel_name(child);
		char	   *name = strchr(trashname, '_') ? strchr(trashname, '_') + 1 : trashname;
		Oid			nsp = schema ? get_namespace_oid(schema, true) : InvalidOid;

		if (!OidIsValid(nsp))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_SCHEMA),
					 errmsg("cannot undrop table \"%s\": schema \"%s\" does not exist",
							name, schema ? schema : "?")));
		if (OidIsValid(get_relname_relid(name, nsp)))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_TABLE),
					 errmsg("cannot undrop table \"%s\": relation \"%s.%s\" exists",
							name, schema, name),
					 errhint("Rename or drop the new table first.")));
	}

	/*
	 * Each table goes back into its schema, under its name; its indexes and
	 * owned sequences, moved with it, get their names back.
	 */
	foreach(lc, tree)
	{
		Oid			child = lfirst_oid(lc);
		const char *schema = detail_schema_of(child, arg);
		char	   *trashname = get_rel_name(child);
		char	   *name = strchr(trashname, '_') + 1;
		List	   *parts = table_parts(child);
		ListCell   *pc;

		moves = lappend(moves, psprintf("ALTER TABLE " TRASH_SCHEMA ".%s SET SCHEMA %s",
										quote_identifier(trashname), quote_identifier(schema)));
		moves = lappend(moves, psprintf("ALTER TABLE %s RENAME TO %s",
										quote_qualified_identifier(schema, trashname),
										quote_identifier(name)));
		foreach(pc, parts)
		{
			Oid			part = lfirst_oid(pc);
			const char *partname = detail_name_of(part, arg);

			if (partname == NULL)
				continue;
			moves = lappend(moves, psprintf("ALTER %s %s RENAME TO %s",
											get_rel_relkind(part) == RELKIND_SEQUENCE ? "SEQUENCE" : "INDEX",
											quote_qualified_identifier(schema, get_rel_name(part)),
											quote_identifier(partname)));
		}
	}
	run_internal_ddl(moves);
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
	GuardAsRole owner;
	Oid			types[1] = {INTERVALOID};
	Datum		values[1];
	Datum		out[3];
	bool		nulls[3] = {false, false, false};
	List	   *tables = NIL;
	int64		expired = 0;
	int64		deleted = 0;
	ListCell   *lc;
	StringInfoData drop;
	MemoryContext outer = CurrentMemoryContext;

	guard_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	if (older_than == NULL)
	{
		older_than = palloc0(sizeof(Interval));
		older_than->time = (int64) guard_retention * USECS_PER_MINUTE;
	}
	values[0] = IntervalPGetDatum(older_than);

	guard_as_role_begin(&owner, InvalidOid);
	/*
	 * The trashed tables to drop for real: those dropped before the
	 * retention, and those no change can bring back any more.
	 */
	guard_run_sql("SELECT relid FROM guard.change"
				  " WHERE kind = 'DROP TABLE' AND state = 'active'"
				  "   AND at < pg_catalog.now() - $1"
				  " UNION "
				  "SELECT c.oid FROM pg_catalog.pg_class c"
				  " WHERE c.relnamespace = pg_catalog.to_regnamespace('" TRASH_SCHEMA "')"
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
	expired = SPI_processed;
	guard_run_sql("DELETE FROM guard.snapshot s USING guard.change c"
				  " WHERE s.change_id = c.change_id AND c.state = 'expired'",
				  0, NULL, NULL, NULL);
	deleted = SPI_processed;
	guard_as_role_end(&owner);

	/*
	 * One DROP for all of them, so that foreign keys between trashed tables
	 * go with their tables whatever the order.
	 */
	initStringInfo(&drop);
	foreach(lc, tables)
	{
		Oid			relid = lfirst_oid(lc);
		char	   *name = get_rel_name(relid);

		if (name == NULL || get_rel_namespace(relid) != get_namespace_oid(TRASH_SCHEMA, true))
			continue;
		appendStringInfo(&drop, "%s" TRASH_SCHEMA ".%s",
						 drop.len ? ", " : "DROP TABLE ", quote_identifier(name));
	}
	if (drop.len > 0)
	{
		appendStringInfoString(&drop, " CASCADE");
		run_internal_ddl(list_make1(drop.data));
	}

	out[0] = Int64GetDatum(expired);
	out[1] = Int64GetDatum(list_length(tables));
	out[2] = Int64GetDatum(deleted);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, nulls);
	return (Datum) 0;
}
