/*-------------------------------------------------------------------------
 *
 * fail_closed.c
 *	  Where guard is not loaded, refuse the schema changes it would record.
 *
 * Event triggers fire in every backend, preloaded or not.  In a backend
 * where guard is not in shared_preload_libraries (a server that lost the
 * setting, a standby promoted with another configuration), guard's
 * ProcessUtility hook is not installed: nothing would move a dropped table
 * to the trash or record a schema change to undo it.  Rather than let such
 * a change through unrecorded, guard fails closed:
 *
 *	- guard._refuse_unguarded_ddl(), a ddl_command_start event trigger,
 *	  refuses DROP TABLE and ALTER TABLE of a protected table, and the
 *	  commands guard records on a table whose policy captures DDL: ALTER
 *	  TABLE ... RENAME (the table or a column) and SET SCHEMA, CREATE INDEX,
 *	  DROP INDEX and COMMENT ON the table, a column, a constraint or an
 *	  index;
 *	- guard._on_sql_drop() refuses, once PostgreSQL knows what a DROP
 *	  reached (DROP SCHEMA ... CASCADE, DROP OWNED, DROP TYPE ... CASCADE),
 *	  a drop that took a protected table with it (guard._preloaded() tells
 *	  it where it runs).
 *
 * TRUNCATE fires no event trigger: guard's BEFORE TRUNCATE trigger refuses
 * it there (capture.c).  Row writes need nothing: the capture triggers load
 * the library.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/objectaddress.h"
#include "commands/event_trigger.h"
#include "nodes/parsenodes.h"
#include "storage/lockdefs.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_refuse_unguarded_ddl);
PG_FUNCTION_INFO_V1(guard_preloaded_sql);

/*
 * The table a COMMENT ON is about (InvalidOid if none, or not a table's
 * object guard records the comment of: see guard_alter_before_comment).
 */
static Oid
comment_target(CommentStmt *stmt)
{
	Relation	relation = NULL;
	ObjectAddress address;
	Oid			relid;

	if (stmt->objtype != OBJECT_TABLE && stmt->objtype != OBJECT_COLUMN &&
		stmt->objtype != OBJECT_TABCONSTRAINT && stmt->objtype != OBJECT_INDEX)
		return InvalidOid;
	address = get_object_address(stmt->objtype, stmt->object, &relation,
								 AccessShareLock, true);
	if (!OidIsValid(address.objectId) || relation == NULL)
	{
		if (relation)
			relation_close(relation, NoLock);
		return InvalidOid;
	}
	relid = RelationGetRelid(relation);
	relation_close(relation, NoLock);
	if (stmt->objtype == OBJECT_INDEX)
		relid = IndexGetRelation(address.objectId, true);
	return relid;
}

/*
 * The tables of the indexes a DROP INDEX names.
 */
static List *
drop_index_targets(DropStmt *stmt)
{
	List	   *relids = NIL;
	ListCell   *lc;

	foreach(lc, guard_drop_named_relations(stmt))
	{
		Oid			indexoid = lfirst_oid(lc);
		char		relkind = OidIsValid(indexoid) ? get_rel_relkind(indexoid) : '\0';

		if (relkind == RELKIND_INDEX || relkind == RELKIND_PARTITIONED_INDEX)
			relids = lappend_oid(relids, IndexGetRelation(indexoid, true));
	}
	return relids;
}

/*
 * Refuse the command if "relid" is a protected table (any policy that
 * captures something when "ddl_only" is false; one that captures DDL when
 * it is true).
 */
static void
refuse_if_protected(Oid relid, bool ddl_only)
{
	char		relkind = OidIsValid(relid) ? get_rel_relkind(relid) : '\0';
	Relation	rel;
	bool		refuse;

	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		return;
	rel = relation_open(relid, AccessShareLock);
	if (ddl_only)
		refuse = guard_ddl_policy(rel) != NULL;
	else
	{
		const GuardPolicy *policy = guard_policy_lookup(rel);

		refuse = policy->found && policy->capture != GUARD_CAPTURE_NONE;
	}
	if (refuse)
		ereport(ERROR,
				(errcode(ERRCODE_GUARD_NOT_PRELOADED),
				 errmsg("cannot change protected table \"%s\": guard is not loaded in this server",
						RelationGetRelationName(rel)),
				 errdetail("Without shared_preload_libraries = 'guard', guard could not record the change to undo it."),
				 errhint("Add 'guard' to shared_preload_libraries in postgresql.conf and restart the server.")));
	relation_close(rel, AccessShareLock);
}

/*
 * guard._refuse_unguarded_ddl(): the ddl_command_start event trigger (see
 * the file's header).  Does nothing where guard is preloaded.
 */
Datum
guard_refuse_unguarded_ddl(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	Node	   *parsetree;
	List	   *any = NIL;		/* tables with any policy */
	List	   *ddl = NIL;		/* tables whose policy captures DDL */
	ListCell   *lc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("guard._refuse_unguarded_ddl() was not called by the event trigger manager")));
	if (guard_preloaded)
		PG_RETURN_VOID();

	trigdata = (EventTriggerData *) fcinfo->context;
	parsetree = trigdata->parsetree;
	switch (nodeTag(parsetree))
	{
		case T_DropStmt:
			{
				DropStmt   *stmt = (DropStmt *) parsetree;

				if (stmt->removeType == OBJECT_TABLE)
					any = guard_drop_named_relations(stmt);
				else if (stmt->removeType == OBJECT_INDEX)
					ddl = drop_index_targets(stmt);
				break;
			}
		case T_AlterTableStmt:
			any = lappend_oid(any, RangeVarGetRelid(((AlterTableStmt *) parsetree)->relation,
													NoLock, true));
			break;
		case T_RenameStmt:
			{
				RenameStmt *stmt = (RenameStmt *) parsetree;

				/* as before_rename() records */
				if (stmt->relation != NULL &&
					(stmt->renameType == OBJECT_TABLE ||
					 (stmt->renameType == OBJECT_COLUMN && stmt->relationType == OBJECT_TABLE)))
					ddl = lappend_oid(ddl, RangeVarGetRelid(stmt->relation, NoLock, true));
				break;
			}
		case T_AlterObjectSchemaStmt:
			{
				AlterObjectSchemaStmt *stmt = (AlterObjectSchemaStmt *) parsetree;

				if (stmt->objectType == OBJECT_TABLE && stmt->relation != NULL)
					ddl = lappend_oid(ddl, RangeVarGetRelid(stmt->relation, NoLock, true));
				break;
			}
		case T_IndexStmt:
			ddl = lappend_oid(ddl, RangeVarGetRelid(((IndexStmt *) parsetree)->relation,
													NoLock, true));
			break;
		case T_CommentStmt:
			ddl = lappend_oid(ddl, comment_target((CommentStmt *) parsetree));
			break;
		default:
			break;
	}

	foreach(lc, any)
		refuse_if_protected(lfirst_oid(lc), false);
	foreach(lc, ddl)
		refuse_if_protected(lfirst_oid(lc), true);
	PG_RETURN_VOID();
}

/*
 * guard._preloaded(): whether guard was loaded at server start in this
 * backend (its hooks are installed), for guard._on_sql_drop().
 */
Datum
guard_preloaded_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(guard_preloaded);
}
