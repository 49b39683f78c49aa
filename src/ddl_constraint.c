/*-------------------------------------------------------------------------
 *
 * ddl_constraint.c
 *	  ADD, DROP and VALIDATE CONSTRAINT on a protected table: recorded with
 *	  what their undo needs, and undone.
 *
 *	ADD CONSTRAINT		recorded after the command, under the name the
 *						constraint got (PostgreSQL chooses one when the
 *						command gives none); before it, the definition of
 *						an index that USING INDEX turns into the constraint,
 *						and the columns a PRIMARY KEY makes NOT NULL.  Undone
 *						by dropping the constraint with what was built on it
 *						since (CASCADE, listed in the report), giving the
 *						columns their NULLs back and recreating the index.
 *	DROP CONSTRAINT		its definition (NOT VALID, DEFERRABLE, comment) and
 *						the foreign keys that relied on it, saved before the
 *						command; undone by adding them back.
 *	VALIDATE CONSTRAINT	undone by nothing when the constraint was valid
 *						already, else by putting it back NOT VALID.
 *
 * Every statement an undo runs is recorded by the utility hook as a change
 * of its own kind, so that the undo can itself be undone.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_index.h"
#include "commands/tablecmds.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "guard.h"

/* what an ADD CONSTRAINT record keeps between before and after */
typedef struct AddConstraint
{
	char	   *name;			/* as the command gives it, or NULL */
	char		contype;		/* as pg_constraint.contype */
	List	   *before;			/* OIDs of the table's constraints before */
} AddConstraint;

/*
 * The OIDs of the constraints of table "relid".
 */
static List *
constraints_of(Oid relid)
{
	Relation	rel = table_open(ConstraintRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	List	   *oids = NIL;

	ScanKeyInit(&key, Anum_pg_constraint_conrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, ConstraintRelidTypidNameIndexId, true,
							  NULL, 1, &key);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
		oids = lappend_oid(oids, ((Form_pg_constraint) GETSTRUCT(tuple))->oid);
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return oids;
}

/*
 * pg_constraint.contype of a parsed constraint.
 */
static char
parsed_contype(ConstrType type)
{
	switch (type)
	{
		case CONSTR_PRIMARY:
			return CONSTRAINT_PRIMARY;
		case CONSTR_UNIQUE:
			return CONSTRAINT_UNIQUE;
		case CONSTR_EXCLUSION:
			return CONSTRAINT_EXCLUSION;
		case CONSTR_FOREIGN:
			return CONSTRAINT_FOREIGN;
		case CONSTR_CHECK:
			return CONSTRAINT_CHECK;
		default:
			return '\0';
	}
}

/*
 * For ADD PRIMARY KEY: the ALTER TABLE subcommands that give back their
 * NULLs to the key's columns that are nullable now (the key makes them NOT
 * NULL, and dropping it does not undo that), or NULL.
 */
static char *
primary_key_not_nulls(Relation rel, Constraint *con)
{
	StringInfoData buf;
	List	   *names = NIL;
	ListCell   *lc;

	if (con->indexname)
	{
		Oid			indexoid = get_relname_relid(con->indexname, RelationGetNamespace(rel));
		HeapTuple	tuple;

		if (!OidIsValid(indexoid))
			return NULL;
		tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
		if (!HeapTupleIsValid(tuple))
			return NULL;
		for (int i = 0; i < ((Form_pg_index) GETSTRUCT(tuple))->indnkeyatts; i++)
		{
			AttrNumber	attnum = ((Form_pg_index) GETSTRUCT(tuple))->indkey.values[i];

			if (attnum > 0)
				names = lappend(names, get_attname(RelationGetRelid(rel), attnum, false));
		}
		ReleaseSysCache(tuple);
	}
	else
	{
		foreach(lc, con->keys)
			names = lappend(names, strVal(lfirst(lc)));
	}

	initStringInfo(&buf);
	foreach(lc, names)
	{
		AttrNumber	attnum = get_attnum(RelationGetRelid(rel), lfirst(lc));

		if (attnum > 0 && !TupleDescAttr(RelationGetDescr(rel), attnum - 1)->attnotnull)
			appendStringInfo(&buf, "%sALTER COLUMN %s DROP NOT NULL",
							 buf.len ? ", " : "", quote_identifier(lfirst(lc)));
	}
	return buf.len ? buf.data : NULL;
}

/*
 * Is "name" in a list of names?
 */
static bool
name_in_list(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
	{
		if (strcmp(lfirst(lc), name) == 0)
			return true;
	}
	return false;
}

/*
 * After ADD CONSTRAINT: name the constraint it made, the one of that name,
 * else the first new one of its type that no other subcommand of the same
 * statement names or claimed (*rec->shared lists those names).
 */
static bool
finish_add_constraint(GuardDdlRecord *rec, Relation rel)
{
	AddConstraint *add = rec->arg;
	List	   *now = constraints_of(rec->relid);
	ListCell   *lc;
	Oid			found = InvalidOid;

	foreach(lc, now)
	{
		Oid			conoid = lfirst_oid(lc);
		HeapTuple	tuple;
		Form_pg_constraint con;
		bool		match;

		if (list_member_oid(add->before, conoid))
			continue;
		tuple = SearchSysCache1(CONSTROID, ObjectIdGetDatum(conoid));
		if (!HeapTupleIsValid(tuple))
			continue;
		con = (Form_pg_constraint) GETSTRUCT(tuple);
		if (add->name)
			match = strcmp(NameStr(con->conname), add->name) == 0;
		else
			match = con->contype == add->contype &&
				!name_in_list(*rec->shared, NameStr(con->conname));
		ReleaseSysCache(tuple);
		if (match)
		{
			found = conoid;
			break;
		}
	}
	if (!OidIsValid(found))
		return false;			/* IF NOT EXISTS, or made by another subcommand */
	if (add->name == NULL)
		*rec->shared = lappend(*rec->shared, get_constraint_name(found));
	guard_json_field(&rec->detail, "constraint", get_constraint_name(found));
	return true;
}

/*
 * Before ADD CONSTRAINT: what the constraint takes over or changes besides
 * itself, and the constraints there are, to find the new one after.
 */
static bool
record_add_constraint(GuardDdlRecord *rec, Relation rel, Node *node)
{
	AlterTableCmd *cmd = castNode(AlterTableCmd, node);
	Constraint *con = castNode(Constraint, cmd->def);
	AddConstraint *add = palloc0(sizeof(AddConstraint));

	add->name = con->conname;
	add->contype = parsed_contype(con->contype);
	add->before = constraints_of(RelationGetRelid(rel));
	if (con->conname)
		*rec->shared = lappend(*rec->shared, con->conname);
	if (con->indexname)
	{
		Oid			indexoid = get_relname_relid(con->indexname, RelationGetNamespace(rel));

		if (OidIsValid(indexoid))
		{
			guard_json_field(&rec->detail, "index", con->indexname);
			guard_json_field(&rec->detail, "index_definition", guard_index_sql(indexoid));
		}
	}
	if (con->contype == CONSTR_PRIMARY)
		guard_json_field(&rec->detail, "drop_not_null", primary_key_not_nulls(rel, con));
	rec->arg = add;
	rec->finish = finish_add_constraint;
	return true;
}

/*
 * The OID of the constraint a change names, if the table has it now.
 */
static Oid
named_constraint(const GuardChange *change, const GuardSchemaTarget *t,
				 char **name)
{
	*name = guard_detail_field(change, "constraint");
	if (*name == NULL)
		return InvalidOid;
	return get_relation_constraint_oid(t->relid, *name, true);
}

/*
 * Undo ADD CONSTRAINT: drop it, with whatever was built on it since; give
 * the key's columns their NULLs back; recreate the index it took over.
 */
static void
undo_add_constraint(const GuardChange *change, const GuardSchemaTarget *t,
					GuardRestoreReport *report)
{
	char	   *name;
	Oid			conoid = named_constraint(change, t, &name);
	char	   *not_nulls = guard_detail_field(change, "drop_not_null");
	char	   *index = guard_detail_field(change, "index_definition");
	ListCell   *lc;

	if (!OidIsValid(conoid))
		guard_schema_blocked(change, name ?
							 psprintf("constraint \"%s\" no longer exists", name) :
							 "guard did not find the constraint the change added");
	foreach(lc, guard_dependents(t->relid, ConstraintRelationId, conoid, 0))
		guard_report_object(report, "drop", ((GuardSaved *) lfirst(lc))->object);
	guard_run_as_owner(t->owner, psprintf("ALTER TABLE %s DROP CONSTRAINT %s CASCADE%s%s",
										  t->qualname, quote_identifier(name),
										  not_nulls ? ", " : "", not_nulls ? not_nulls : ""));
	if (index)
	{
		guard_run_as_owner(t->owner, index);
		guard_report_object(report, "recreate index",
							quote_qualified_identifier(t->nspname,
													   guard_detail_field(change, "index")));
	}
}

/*
 * Before DROP CONSTRAINT: its definition, and the foreign keys that rely
 * on it (CASCADE drops them).
 */
static bool
record_drop_constraint(GuardDdlRecord *rec, Relation rel, Node *node)
{
	AlterTableCmd *cmd = castNode(AlterTableCmd, node);
	Oid			conoid = get_relation_constraint_oid(RelationGetRelid(rel), cmd->name, true);

	if (!OidIsValid(conoid))
		return false;			/* IF EXISTS, or the command fails */
	guard_json_field(&rec->detail, "constraint", cmd->name);
	guard_json_field(&rec->detail, "definition", guard_constraint_sql(conoid));
	guard_json_saved(&rec->detail, "dependents",
					 guard_dependents(RelationGetRelid(rel), ConstraintRelationId, conoid, 0));
	return true;
}

/*
 * Undo DROP CONSTRAINT: add it back, then the foreign keys it took along.
 */
static void
undo_drop_constraint(const GuardChange *change, const GuardSchemaTarget *t,
					 GuardRestoreReport *report)
{
	char	   *name;

	if (OidIsValid(named_constraint(change, t, &name)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("cannot restore change " INT64_FORMAT ": constraint \"%s\" of table \"%s\" exists again",
						change->change_id, name, guard_undo_relname(change)),
				 errhint("Rename or drop the new constraint first.")));
	guard_run_as_owner(t->owner, guard_detail_field(change, "definition"));
	guard_run_saved(t, guard_detail_saved(change, "dependents"), report);
}

/*
 * Before VALIDATE CONSTRAINT: its definition while it is not valid yet.
 */
static bool
record_validate_constraint(GuardDdlRecord *rec, Relation rel, Node *node)
{
	AlterTableCmd *cmd = castNode(AlterTableCmd, node);
	Oid			conoid = get_relation_constraint_oid(RelationGetRelid(rel), cmd->name, true);
	HeapTuple	tuple;
	bool		valid;

	if (!OidIsValid(conoid))
		return false;
	tuple = SearchSysCache1(CONSTROID, ObjectIdGetDatum(conoid));
	if (!HeapTupleIsValid(tuple))
		return false;
	valid = ((Form_pg_constraint) GETSTRUCT(tuple))->convalidated;
	ReleaseSysCache(tuple);
	guard_json_field(&rec->detail, "constraint", cmd->name);
	guard_json_field(&rec->detail, "was_valid", valid ? "true" : "false");
	if (!valid)
		guard_json_field(&rec->detail, "definition", guard_constraint_sql(conoid));
	rec->recheck = false;
	return true;
}

/*
 * Undo VALIDATE CONSTRAINT: nothing if it was valid already, else drop the
 * constraint and add it back NOT VALID, as it was.
 */
static void
undo_validate_constraint(const GuardChange *change, const GuardSchemaTarget *t,
						 GuardRestoreReport *report)
{
	char	   *name;
	char	   *was_valid = guard_detail_field(change, "was_valid");

	if (was_valid == NULL || strcmp(was_valid, "true") == 0)
		return;
	if (!OidIsValid(named_constraint(change, t, &name)))
		guard_schema_blocked(change, psprintf("constraint \"%s\" no longer exists", name));
	guard_run_as_owner(t->owner, psprintf("ALTER TABLE %s DROP CONSTRAINT %s",
										  t->qualname, quote_identifier(name)));
	guard_run_as_owner(t->owner, guard_detail_field(change, "definition"));
}

/* the constraint kinds: what to save before the command, how to undo it */
const GuardSchemaKind guard_constraint_kinds[] = {
	{"ADD CONSTRAINT", record_add_constraint, undo_add_constraint},
	{"DROP CONSTRAINT", record_drop_constraint, undo_drop_constraint},
	{"VALIDATE CONSTRAINT", record_validate_constraint, undo_validate_constraint},
	{NULL, NULL, NULL}
};
