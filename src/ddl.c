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
 *	DROP TABLE						nothing to copy: trash.c moves the table
 *									into schema guard_trash instead of
 *									dropping it
 *	DROP SCHEMA CASCADE, DROP OWNED	refused while they would reach a
 *									protected table (refuse.c)
 *
 * After it ran: ADD COLUMN and RENAME, which destroy nothing, and every
 * other subcommand of ALTER TABLE, ALTER TABLE ... SET SCHEMA, COMMENT ON,
 * CREATE and DROP INDEX, each as a change of its own kind whose record
 * ddl_alter.c, ddl_constraint.c, ddl_index.c and ddl_table.c begin before
 * the command (a subcommand guard cannot undo is recorded as ALTER TABLE,
 * naming it).
 * Every record is begun before the command, so that change ids follow the
 * order in which PostgreSQL applies a statement's subcommands.
 * schema_undo.c undoes each kind.
 *
 * Layering: ddl.c -> trash.c -> depend.c, ddl.c -> refuse.c, and ddl.c ->
 * ddl_alter.c, ddl_index.c, ddl_table.c, ddl_column.c; none of those
 * calls back into this file.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/heap.h"
#include "catalog/namespace.h"
#include "catalog/pg_inherits.h"
#include "commands/extension.h"
#include "commands/tablecmds.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "rewrite/rewriteHandler.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/snapmgr.h"

#include "guard.h"

/*
 * The policy of a table if guard records its schema changes, else NULL.
 */
static const GuardPolicy *
ddl_policy(Relation rel)
{
	return guard_ddl_policy(rel);
}

/*
 * The definition of column "attnum" of "rel", for re-adding it; names
 * qualified, so that they mean the same to the undo.
 */
static void
column_definition(StringInfo buf, Relation rel, AttrNumber attnum)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	char	   *defexpr = NULL;
	int			level = guard_pin_search_path();

	guard_json_field(buf, "column", NameStr(att->attname));
	guard_json_field(buf, "type", format_type_with_typemod(att->atttypid, att->atttypmod));
	guard_json_field(buf, "not_null", att->attnotnull ? "true" : "false");
	if (OidIsValid(att->attcollation) && att->attcollation != get_typcollation(att->atttypid))
		guard_json_field(buf, "collation", generate_collation_name(att->attcollation));
	if (att->atthasdef && !att->attgenerated)
	{
		Node	   *expr = build_column_default(rel, attnum);

		if (expr)
			defexpr = deparse_expression(expr, NIL, false, false);
	}
	guard_json_field(buf, "default", defexpr);
	guard_unpin_search_path(level);
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
 * DROP COLUMN saves what goes with the column too, ALTER COLUMN TYPE what
 * its undo needs to convert a key column back (ddl_column.c).
 */
static void
record_column_change(Relation rel, AttrNumber attnum, AlterTableCmd *cmd)
{
	StringInfoData detail;
	const char *kind = cmd->subtype == AT_DropColumn ? "DROP COLUMN" : "ALTER COLUMN TYPE";

	initStringInfo(&detail);
	appendStringInfoChar(&detail, '{');
	column_definition(&detail, rel, attnum);
	if (cmd->subtype == AT_DropColumn)
		guard_column_save(&detail, rel, attnum, true);
	else
		guard_column_type_check(&detail, rel, attnum, cmd);
	appendStringInfoChar(&detail, '}');
	guard_change_record(rel, kind, detail.data);
	snapshot_rows(rel, attnum, kind);
}

/*
 * Before ALTER TABLE: take the command's lock, snapshot what DROP COLUMN
 * and ALTER COLUMN TYPE destroy, and begin the record of every other
 * subcommand (ddl_alter.c), in the order PostgreSQL applies them so that
 * their change ids give the order to undo them in.
 */
static List *
before_alter_table(AlterTableStmt *stmt, List *after)
{
	Oid			relid;
	Relation	rel;
	ListCell   *lc;
	LOCKMODE	lockmode;
	List	  **shared;

	if (stmt->objtype != OBJECT_TABLE)
		return after;
	lockmode = AlterTableGetLockLevel(stmt->cmds);
	relid = guard_ddl_lookup_owned(stmt->relation, lockmode);
	if (!OidIsValid(relid))
		return after;
	rel = relation_open(relid, NoLock);
	if (ddl_policy(rel) == NULL)
	{
		relation_close(rel, NoLock);
		return after;
	}

	shared = palloc0(sizeof(List *));
	foreach(lc, guard_alter_in_pass_order(stmt->cmds))
	{
		AlterTableCmd *cmd = (AlterTableCmd *) lfirst(lc);
		GuardDdlRecord *rec = NULL;

		switch (cmd->subtype)
		{
			case AT_AddColumn:
				/* IF NOT EXISTS of a column there is adds nothing */
				if (cmd->missing_ok &&
					get_attnum(relid, ((ColumnDef *) cmd->def)->colname) > 0)
					break;
				rec = guard_ddl_record_begin(rel, "ADD COLUMN");
				guard_json_field(&rec->detail, "column", ((ColumnDef *) cmd->def)->colname);
				break;
			case AT_DropColumn:
			case AT_AlterColumnType:
				{
					AttrNumber	attnum = get_attnum(relid, cmd->name);

					/* recorded now, with its snapshot */
					if (attnum > 0)
						record_column_change(rel, attnum, cmd);
					/* nothing to write after: the invariants to check */
					rec = palloc0(sizeof(GuardDdlRecord));
					rec->relid = relid;
					rec->recheck = true;
					break;
				}
			default:
				rec = guard_alter_record(rel, cmd, shared);
				break;
		}
		if (rec)
			after = lappend(after, rec);
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
	GuardDdlRecord *rec;

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
	rec = guard_ddl_record_begin(rel, "RENAME");
	guard_json_field(&rec->detail, "what", stmt->renameType == OBJECT_TABLE ? "table" : "column");
	guard_json_field(&rec->detail, "old", stmt->renameType == OBJECT_TABLE ?
					 RelationGetRelationName(rel) : stmt->subname);
	guard_json_field(&rec->detail, "new", stmt->newname);
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
 * Before DROP TABLE: move each protected table it names into the trash
 * (trash.c) instead of dropping it.  *replaced is set to the statement to
 * run instead: the DROP of the other names, or NULL when none is left.
 */
static void
before_drop_table(DropStmt *drop, Node **replaced)
{
	List	   *keep = NIL;
	List	   *dropping = NIL;
	ListCell   *lc;
	bool		trashed = false;

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
			guard_trash_table(relid, drop->behavior, dropping);
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
}

/*
 * Before a utility command: snapshot what it would destroy, and list what
 * to record after it.  For DROP TABLE of protected tables, *replaced is set
 * to the statement to run instead (the other names of the DROP), or NULL
 * when nothing is left to run.  Commands that would drop protected tables
 * without naming them are refused (refuse.c).
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
		case T_AlterObjectSchemaStmt:
			after = guard_alter_before_schema((AlterObjectSchemaStmt *) parsetree, after);
			break;
		case T_CommentStmt:
			after = guard_alter_before_comment((CommentStmt *) parsetree, after);
			break;
		case T_IndexStmt:
			after = guard_index_before_create((IndexStmt *) parsetree, after);
			break;
		case T_TruncateStmt:
			before_truncate((TruncateStmt *) parsetree);
			break;
		case T_DropOwnedStmt:
			guard_refuse_drop_owned((DropOwnedStmt *) parsetree);
			break;
		case T_DropStmt:
			{
				DropStmt   *drop = (DropStmt *) parsetree;

				if (drop->removeType == OBJECT_SCHEMA)
					guard_refuse_drop_schema(drop);
				else if (drop->removeType == OBJECT_TABLE)
					before_drop_table(drop, replaced);
				else if (drop->removeType == OBJECT_INDEX)
					after = guard_index_before_drop(drop, after);
				break;
			}
		default:
			break;
	}
	return after;
}

/*
 * After the command succeeded: write the records begun before it (those
 * that a subcommand's finish finds nothing to record for aside); a table
 * whose shape changed gets its row invariants checked whole.  CREATE and
 * DROP INDEX CONCURRENTLY return in a transaction of their own, with no
 * snapshot set.
 */
void
guard_ddl_after(List *after)
{
	ListCell   *lc;
	bool		pushed = false;

	if (after != NIL && !ActiveSnapshotSet())
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		pushed = true;
	}
	foreach(lc, after)
	{
		GuardDdlRecord *rec = lfirst(lc);
		Relation	rel = try_relation_open(rec->relid, AccessShareLock);

		if (rel == NULL)
			continue;
		if (rec->kind && (rec->finish == NULL || rec->finish(rec, rel)))
			guard_ddl_record_write(rec, rel);
		if (rec->recheck)
			guard_invariants_after_ddl(rel);
		relation_close(rel, AccessShareLock);
	}
	if (pushed)
		PopActiveSnapshot();
}
