/*-------------------------------------------------------------------------
 *
 * ddl_table.c
 *	  ALTER TABLE ... SET SCHEMA and COMMENT ON, of a protected table or of
 *	  one of its columns, constraints or indexes: recorded with what their
 *	  undo needs, and undone.
 *
 *	SET SCHEMA	the schema the table was in; undone by moving it back, if
 *				it is still in the schema it was moved to
 *	COMMENT		the comment the object had (or none); undone by giving it
 *				back
 *
 * Each undo runs as the table's owner through the utility hook, which
 * records it as a change of the same kind: the undo can be undone.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_constraint.h"
#include "commands/comment.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "guard.h"

/*
 * Before ALTER TABLE ... SET SCHEMA of a protected table: the schema it is
 * in.
 */
List *
guard_alter_before_schema(AlterObjectSchemaStmt *stmt, List *after)
{
	Oid			relid;
	Relation	rel;
	GuardDdlRecord *rec;

	if (stmt->objectType != OBJECT_TABLE || stmt->relation == NULL)
		return after;
	relid = guard_ddl_lookup_owned(stmt->relation, AccessExclusiveLock);
	if (!OidIsValid(relid))
		return after;
	rel = relation_open(relid, NoLock);
	if (guard_ddl_policy(rel) != NULL)
	{
		rec = guard_ddl_record_begin(rel, "SET SCHEMA");
		guard_json_field(&rec->detail, "old", get_namespace_name(RelationGetNamespace(rel)));
		guard_json_field(&rec->detail, "new", stmt->newschema);
		after = lappend(after, rec);
	}
	relation_close(rel, NoLock);
	return after;
}

/*
 * Undo SET SCHEMA: move the table back, if it is still where it went.
 */
static void
undo_set_schema(const GuardChange *change, const GuardSchemaTarget *t,
				GuardRestoreReport *report)
{
	char	   *old = guard_detail_field(change, "old");
	char	   *new = guard_detail_field(change, "new");

	if (strcmp(t->nspname, new) != 0)
		guard_schema_blocked(change, psprintf("the table is no longer in schema \"%s\"", new));
	guard_run_as_owner(t->owner, psprintf("ALTER TABLE %s SET SCHEMA %s", t->qualname,
										  quote_identifier(old)));
}

/*
 * Before COMMENT ON a protected table, one of its columns, constraints or
 * indexes: the comment it has.
 */
List *
guard_alter_before_comment(CommentStmt *stmt, List *after)
{
	Relation	relation = NULL;
	ObjectAddress address;
	Oid			relid;
	Relation	rel;
	const char *what;
	char	   *name = NULL;
	GuardDdlRecord *rec;

	switch (stmt->objtype)
	{
		case OBJECT_TABLE:
			what = "table";
			break;
		case OBJECT_COLUMN:
			what = "column";
			break;
		case OBJECT_TABCONSTRAINT:
			what = "constraint";
			break;
		case OBJECT_INDEX:
			what = "index";
			break;
		default:
			return after;
	}
	address = get_object_address(stmt->objtype, stmt->object, &relation,
								 ShareUpdateExclusiveLock, true);
	if (!OidIsValid(address.objectId) || relation == NULL)
	{
		if (relation)
			relation_close(relation, NoLock);
		return after;
	}
	relid = RelationGetRelid(relation);
	if (stmt->objtype == OBJECT_INDEX)
	{
		relid = IndexGetRelation(address.objectId, true);
		name = get_rel_name(address.objectId);
	}
	else if (stmt->objtype == OBJECT_COLUMN)
		name = get_attname(relid, address.objectSubId, false);
	else if (stmt->objtype == OBJECT_TABCONSTRAINT)
		name = get_constraint_name(address.objectId);
	relation_close(relation, NoLock);
	rel = OidIsValid(relid) ? try_relation_open(relid, NoLock) : NULL;
	if (rel == NULL)
		return after;
	if (guard_ddl_policy(rel) != NULL)
	{
		rec = guard_ddl_record_begin(rel, "COMMENT");
		guard_json_field(&rec->detail, "object", what);
		guard_json_field(&rec->detail, "name", name);
		if (stmt->objtype == OBJECT_INDEX)
			guard_json_field(&rec->detail, "schema",
							 get_namespace_name(get_rel_namespace(address.objectId)));
		guard_json_field(&rec->detail, "comment",
						 GetComment(address.objectId, address.classId, address.objectSubId));
		rec->recheck = false;
		after = lappend(after, rec);
	}
	relation_close(rel, NoLock);
	return after;
}

/*
 * Undo COMMENT: give the object back the comment it had (or none).
 */
static void
undo_comment(const GuardChange *change, const GuardSchemaTarget *t,
			 GuardRestoreReport *report)
{
	char	   *what = guard_detail_field(change, "object");
	char	   *name = guard_detail_field(change, "name");
	char	   *comment = guard_detail_field(change, "comment");
	char	   *target;

	if (strcmp(what, "column") == 0)
	{
		if (get_attnum(t->relid, name) <= 0)
			guard_undo_blocked_error(change, name);
		target = psprintf("COLUMN %s.%s", t->qualname, quote_identifier(name));
	}
	else if (strcmp(what, "constraint") == 0)
	{
		if (!OidIsValid(get_relation_constraint_oid(t->relid, name, true)))
			guard_schema_blocked(change, psprintf("constraint \"%s\" no longer exists", name));
		target = psprintf("CONSTRAINT %s ON %s", quote_identifier(name), t->qualname);
	}
	else if (strcmp(what, "index") == 0)
	{
		char	   *schema = guard_detail_field(change, "schema");
		Oid			nsp = get_namespace_oid(schema, true);

		if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid(name, nsp)))
			guard_schema_blocked(change, psprintf("index \"%s\" no longer exists", name));
		target = psprintf("INDEX %s", quote_qualified_identifier(schema, name));
	}
	else
		target = psprintf("TABLE %s", t->qualname);
	guard_run_as_owner(t->owner, psprintf("COMMENT ON %s IS %s", target,
										  comment ? quote_literal_cstr(comment) : "NULL"));
}

/* the kinds of this file: recorded by the functions above, undone so */
const GuardSchemaKind guard_table_kinds[] = {
	{"SET SCHEMA", NULL, undo_set_schema},
	{"COMMENT", NULL, undo_comment},
	{NULL, NULL, NULL}
};
