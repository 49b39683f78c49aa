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
 *	DROP TABLE, and any DROP that	nothing to copy: drop.c has the tables
 *	reaches protected tables		moved into schema guard_trash instead
 *									of dropped
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
 * Layering: ddl.c -> drop.c -> (inuse.c, trash.c, trial.c), and ddl.c ->
 * ddl_alter.c, ddl_index.c, ddl_table.c, ddl_column.c; none of those
 * calls back into this file.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/dependency.h"
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

	w = guard_capture_begin(rel, kind, limit,
							guard_policy_mode(guard_policy_lookup(rel)) == GUARD_MODE_ENFORCE);
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
	guard_capture_end(w);
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
	guard_json_partition_indexes(&detail, rel);
	appendStringInfoChar(&detail, '}');
	guard_change_record(rel, kind, detail.data);
	snapshot_rows(rel, attnum, kind);
}

/*
 * A partition detached from a protected table stays protected: it gets a
 * policy of its own, a copy of the one that governed it ("policy_of"), so
 * that a DROP or TRUNCATE of it is still kept.  A table attached to a
 * protected table loses its own policy ("policy_of" invalid): the
 * parent's governs it, as guard.protect() requires.  (The utility hook
 * then syncs the triggers.)
 */
static void
keep_policy(Oid relid, Oid policy_of)
{
	GuardAsRole owner;
	Oid			types[2] = {OIDOID, OIDOID};
	Datum		values[2];

	values[0] = ObjectIdGetDatum(relid);
	values[1] = ObjectIdGetDatum(policy_of);
	guard_as_role_begin(&owner, InvalidOid);
	if (OidIsValid(policy_of))
		guard_run_sql("INSERT INTO guard.policy (relid, capture, mode, min_rows, max_rows,"
					  "                          max_fraction, require_where, created_at, created_by)"
					  " SELECT $1, capture, mode, min_rows, max_rows, max_fraction, require_where,"
					  "        pg_catalog.now(), created_by"
					  "   FROM guard.policy WHERE relid = $2::pg_catalog.regclass"
					  " ON CONFLICT (relid) DO NOTHING",
					  2, types, values, NULL);
	else
		guard_run_sql("DELETE FROM guard.policy WHERE relid = $1::pg_catalog.regclass",
					  1, types, values, NULL);
	guard_as_role_end(&owner);
}

/* what keep_policy() needs after an ATTACH or DETACH PARTITION */
typedef struct KeepPolicy
{
	Oid			relid;
	Oid			policy_of;
} KeepPolicy;

/*
 * The finish of a record with no kind of its own: the policy of a table
 * attached or detached (see keep_policy()).
 */
static bool
keep_policy_finish(GuardDdlRecord *rec, Relation rel)
{
	KeepPolicy *k = rec->arg;

	keep_policy(k->relid, k->policy_of);
	return false;
}

/*
 * Before ATTACH or DETACH PARTITION of a protected table: a record that,
 * once the command ran, gives the partition's policy to it or takes it.
 */
static GuardDdlRecord *
partition_policy_record(Relation rel, AlterTableCmd *cmd)
{
	GuardDdlRecord *rec = palloc0(sizeof(GuardDdlRecord));
	KeepPolicy *k = palloc0(sizeof(KeepPolicy));

	k->relid = RangeVarGetRelid(((PartitionCmd *) cmd->def)->name, NoLock, true);
	if (cmd->subtype != AT_AttachPartition)
		k->policy_of = guard_policy_lookup(rel)->relid;
	rec->relid = RelationGetRelid(rel);
	rec->finish = keep_policy_finish;
	rec->arg = k;
	return OidIsValid(k->relid) ? rec : NULL;
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
				/* one without default writes nothing to check */
				rec->recheck = guard_invariants_alter_writes(cmd);
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
			case AT_AttachPartition:
			case AT_DetachPartition:
			case AT_DetachPartitionFinalize:
				{
					GuardDdlRecord *keep = partition_policy_record(rel, cmd);
					KeepPolicy *k = keep ? keep->arg : NULL;

					rec = guard_alter_record(rel, cmd, shared);
					if (rec && rec->kind && k && cmd->subtype != AT_AttachPartition)
						guard_json_field(&rec->detail, "detached",
										 quote_qualified_identifier(get_namespace_name(get_rel_namespace(k->relid)),
																	get_rel_name(k->relid)));
					if (keep)
						after = lappend(after, keep);
					break;
				}
			default:
				rec = guard_alter_record(rel, cmd, shared);
				if (rec)
					rec->recheck &= guard_invariants_alter_writes(cmd);
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
	/* no value changes: only the row checks must still compile */
	rec->recheck = false;
	rec->finish = guard_invariants_after_rename;
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
 * The detail of a TRUNCATE ... RESTART IDENTITY of "rel": where each
 * sequence the table owns stands before it is reset, for restore to set it
 * back.  NULL when the table owns none.
 */
static char *
truncate_sequences_detail(Relation rel)
{
	List	   *seqs = getOwnedSequences(RelationGetRelid(rel));
	StringInfoData detail;
	ListCell   *lc;
	GuardAsRole owner;

	if (seqs == NIL)
		return NULL;
	initStringInfo(&detail);
	appendStringInfoChar(&detail, '{');
	guard_as_role_begin(&owner, InvalidOid);
	foreach(lc, seqs)
	{
		Oid			seqid = lfirst_oid(lc);
		char		field[32];
		int			n = foreach_current_index(lc) + 1;

		guard_run_sql(psprintf("SELECT last_value, is_called FROM %s",
							   quote_qualified_identifier(get_namespace_name(get_rel_namespace(seqid)),
														  get_rel_name(seqid))),
					  0, NULL, NULL, NULL);
		snprintf(field, sizeof(field), "sequence_%d", n);
		guard_json_field(&detail, field, psprintf("%u", seqid));
		snprintf(field, sizeof(field), "last_value_%d", n);
		guard_json_field(&detail, field, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
		snprintf(field, sizeof(field), "is_called_%d", n);
		guard_json_field(&detail, field, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2)[0] == 't' ?
						 "true" : "false");
	}
	guard_as_role_end(&owner);
	appendStringInfoChar(&detail, '}');
	return detail.data;
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

		/*
		 * TRUNCATE loses rows: captured under any capture but none, with or
		 * without a key (capture => 'ddl' allows a table without one)
		 */
		if (policy && policy->found && policy->capture != GUARD_CAPTURE_NONE)
		{
			guard_change_record(rel, "TRUNCATE", stmt->restart_seqs ?
								truncate_sequences_detail(rel) : NULL);
			snapshot_rows(rel, 0, "TRUNCATE");
		}
		relation_close(rel, NoLock);
	}
}

/*
 * Before a utility command: snapshot what it would destroy, and list what
 * to record after it.  A DROP that reaches protected tables moves them to
 * the trash (drop.c): *replaced is set to the statement to run instead,
 * and *hold_cascade when PostgreSQL's "drop cascades to" notice for it must
 * be held back (guard sent it already).  "events": guard fires the DROP's
 * event triggers itself (guard_drop_fires_events()).
 */
List *
guard_ddl_before(PlannedStmt *pstmt, bool events, Node **replaced, bool *hold_cascade)
{
	Node	   *parsetree = pstmt->utilityStmt;
	List	   *after = NIL;

	*replaced = parsetree;
	*hold_cascade = false;
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
		case T_DropStmt:
			if (((DropStmt *) parsetree)->removeType == OBJECT_INDEX)
				after = guard_index_before_drop((DropStmt *) parsetree, after);
			*replaced = guard_drop_before(parsetree, events, hold_cascade);
			break;
		case T_DropOwnedStmt:
		case T_DropRoleStmt:
			*replaced = guard_drop_before(parsetree, events, hold_cascade);
			break;
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
		if (rec->kind == NULL && rec->finish)
			(void) rec->finish(rec, rel);	/* an action, nothing to record */
		else if (rec->kind && (rec->finish == NULL || rec->finish(rec, rel)))
			guard_ddl_record_write(rec, rel);
		if (rec->recheck)
			guard_invariants_after_ddl(rel);
		relation_close(rel, AccessShareLock);
	}
	if (pushed)
		PopActiveSnapshot();
}
