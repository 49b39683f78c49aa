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
 * After it ran: ADD COLUMN and RENAME, which destroy nothing, and any other
 * ALTER TABLE, recorded with its statement so that restore can say what it
 * cannot undo.  restore.c undoes each kind.
 *
 * Layering: ddl.c -> drop.c -> (inuse.c, trash.c, trial.c); none of those
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

#include "guard.h"

/* a schema change to record once the command has run */
typedef struct DdlAfter
{
	Oid			relid;
	char	   *kind;
	char	   *detail;
	Oid			detached;		/* a partition detached from the table */
	Oid			policy_of;		/* ... which keeps the policy of this one */
	Oid			attached;		/* a table attached as a partition */
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

/*
 * The definition of column "attnum" of "rel", for re-adding it.
 */
static void
column_definition(StringInfo buf, Relation rel, AttrNumber attnum)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	char	   *defexpr = NULL;

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
				guard_json_field(&detail, "column", ((ColumnDef *) cmd->def)->colname);
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
			case AT_DetachPartition:
				rec->kind = "ALTER TABLE";
				guard_json_field(&detail, "undoable", "false");
				rec->detached = RangeVarGetRelid(((PartitionCmd *) cmd->def)->name,
												 NoLock, true);
				rec->policy_of = guard_policy_lookup(rel)->relid;
				if (OidIsValid(rec->detached))
					guard_json_field(&detail, "detached",
									 quote_qualified_identifier(get_namespace_name(get_rel_namespace(rec->detached)),
																get_rel_name(rec->detached)));
				break;
			case AT_AttachPartition:
				rec->kind = "ALTER TABLE";
				guard_json_field(&detail, "undoable", "false");
				rec->attached = RangeVarGetRelid(((PartitionCmd *) cmd->def)->name,
												 NoLock, true);
				break;
			default:
				rec->kind = "ALTER TABLE";
				guard_json_field(&detail, "undoable", "false");
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
	guard_json_field(&detail, "what", stmt->renameType == OBJECT_TABLE ? "table" : "column");
	guard_json_field(&detail, "old", stmt->renameType == OBJECT_TABLE ?
			   RelationGetRelationName(rel) : stmt->subname);
	guard_json_field(&detail, "new", stmt->newname);
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
 * Refuse to link relation "child" to "parent" by inheritance (INHERITS, or
 * ALTER TABLE ... INHERIT) when either is protected: guard supports
 * partitioning, not inheritance (see guard.protect).
 */
static void
refuse_inheritance(Oid child, Oid parent)
{
	Oid			relids[2] = {child, parent};

	if (!guard_enabled || !OidIsValid(get_extension_oid("guard", true)))
		return;
	for (int i = 0; i < 2; i++)
	{
		Relation	rel = OidIsValid(relids[i]) ? try_relation_open(relids[i], NoLock) : NULL;
		bool		found = rel != NULL && guard_policy_lookup(rel)->found;

		if (rel != NULL)
			relation_close(rel, NoLock);
		if (found)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot make protected table \"%s\" part of an inheritance tree",
							get_rel_name(relids[i])),
					 errdetail("guard does not support table inheritance (INHERITS): a write through a parent reaches its children, whose rows restore could not tell apart."),
					 errhint("Use partitioning instead, or unprotect the table first.")));
	}
}

/*
 * Before CREATE TABLE ... INHERITS or ALTER TABLE ... INHERIT: refuse to
 * make a protected table part of an inheritance tree.
 */
static void
before_inherit(Node *parsetree)
{
	ListCell   *lc;

	if (IsA(parsetree, CreateStmt))
	{
		CreateStmt *create = (CreateStmt *) parsetree;

		if (create->partbound != NULL)
			return;
		foreach(lc, create->inhRelations)
			refuse_inheritance(InvalidOid, RangeVarGetRelid((RangeVar *) lfirst(lc),
															NoLock, true));
		return;
	}
	foreach(lc, ((AlterTableStmt *) parsetree)->cmds)
	{
		AlterTableCmd *cmd = (AlterTableCmd *) lfirst(lc);

		if (cmd->subtype == AT_AddInherit)
			refuse_inheritance(RangeVarGetRelid(((AlterTableStmt *) parsetree)->relation,
												NoLock, true),
							   RangeVarGetRelid((RangeVar *) cmd->def, NoLock, true));
	}
}

/*
 * Before a utility command: snapshot what it would destroy, and list what
 * to record after it.  A DROP that reaches protected tables moves them to
 * the trash (drop.c): *replaced is set to the statement to run instead,
 * and *hold_cascade when PostgreSQL's "drop cascades to" notice for it must
 * be held back (guard sent it already).
 */
List *
guard_ddl_before(PlannedStmt *pstmt, Node **replaced, bool *hold_cascade)
{
	Node	   *parsetree = pstmt->utilityStmt;
	List	   *after = NIL;

	*replaced = parsetree;
	*hold_cascade = false;
	if (guard_internal_ddl)
		return NIL;

	switch (nodeTag(parsetree))
	{
		case T_CreateStmt:
			before_inherit(parsetree);
			break;
		case T_AlterTableStmt:
			before_inherit(parsetree);
			after = before_alter_table((AlterTableStmt *) parsetree, after);
			break;
		case T_RenameStmt:
			after = before_rename((RenameStmt *) parsetree, after);
			break;
		case T_TruncateStmt:
			before_truncate((TruncateStmt *) parsetree);
			break;
		case T_DropStmt:
		case T_DropOwnedStmt:
		case T_DropRoleStmt:
		case T_DropTableSpaceStmt:
			*replaced = guard_drop_before(parsetree, hold_cascade);
			break;
		default:
			break;
	}
	return after;
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
		if (OidIsValid(rec->detached))
			keep_policy(rec->detached, rec->policy_of);
		if (OidIsValid(rec->attached))
			keep_policy(rec->attached, InvalidOid);
		guard_invariants_after_ddl(rel);
		relation_close(rel, AccessShareLock);
	}
}
