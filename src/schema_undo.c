/*-------------------------------------------------------------------------
 *
 * schema_undo.c
 *	  Undo recorded schema changes: the recipe of each kind, read from the
 *	  JSON detail that recording left in guard.change.
 *
 *	  ADD COLUMN          drop the column (its values written since go too,
 *	                      and what was built on it, listed in the report)
 *	  DROP COLUMN         add it back, then write back its values
 *	  ALTER COLUMN TYPE   turn it back to the old type, then its values (a
 *	                      key column: cast back)
 *	  RENAME              rename the column or table back
 *	  DROP TABLE          move the table back out of the trash, and recreate
 *	                      the views and foreign keys the drop took along
 *	  TRUNCATE            (its rows are undone by undo.c) with RESTART
 *	                      IDENTITY, set the owned sequences back
 *
 * The other kinds (column attributes, constraints, indexes, triggers, row
 * level security, SET SCHEMA, COMMENT, ...) have their recipe beside their
 * recording, in the ddl_* files (guard_schema_kind_undo()); ddl_column.c
 * adds to DROP COLUMN and ALTER COLUMN TYPE what goes with the column.
 *
 * Every statement runs as the table's owner with search_path pinned,
 * through the utility hook, which records it as a change of its own kind
 * (so that the undo can itself be undone); a later schema change in the way
 * stops the undo with an error naming it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "guard.h"

/* the live table of a schema change undo, locked */
typedef GuardSchemaTarget SchemaTarget;

/*
 * A field of a schema change's detail, or NULL.
 */
static char *
detail_field(const GuardChange *change, const char *name)
{
	return guard_detail_field(change, name);
}

/*
 * Run one statement of a schema change undo, as the table's owner.
 */
static void
run_as_owner(Oid owner, const char *sql)
{
	guard_run_as_owner(owner, sql);
}

/*
 * How many non-null values a column holds: what dropping it again loses.
 */
static int64
count_values(const char *qualname, const char *column)
{
	GuardAsRole as;
	bool		isnull;
	int64		n;

	guard_as_role_begin(&as, InvalidOid);
	guard_run_sql(psprintf("SELECT pg_catalog.count(%s) FROM %s",
						   quote_identifier(column), qualname), 0, NULL, NULL, NULL);
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	guard_as_role_end(&as);
	return n;
}

/* where a trashed table (or partition) came from, read from the detail */
static const char *
drop_schema_of(Oid relid, void *arg)
{
	char		field[64];

	snprintf(field, sizeof(field), "schema_%u", relid);
	return detail_field((const GuardChange *) arg, field);
}

/* the name an index or owned sequence had before it went to the trash */
static const char *
drop_name_of(Oid relid, void *arg)
{
	char		field[64];

	snprintf(field, sizeof(field), "name_%u", relid);
	return detail_field((const GuardChange *) arg, field);
}

/*
 * Undo a DROP TABLE: the table comes back from the trash under its old
 * schema and names, then the dependents the drop took with it.
 */
static void
undo_drop_table(const GuardChange *change, GuardRestoreReport *report)
{
	List	   *recreate = NIL;

	guard_undrop_table(change->relid, drop_schema_of, drop_name_of, (void *) change);
	/* the views and foreign keys a DROP ... CASCADE took with it */
	for (int i = 1;; i++)
	{
		char		field[32];
		char	   *sql;

		snprintf(field, sizeof(field), "recreate_%d", i);
		sql = detail_field(change, field);
		if (sql == NULL)
			break;
		recreate = lappend(recreate, sql);
	}
	guard_recreate_dependents(recreate);
	report->restored = 0;
}

/*
 * Undo an ADD COLUMN: drop the column, counting the values it holds, with
 * whatever was built on it since (listed in the report).
 */
static void
undo_add_column(const GuardChange *change, const SchemaTarget *t,
				const char *column, GuardRestoreReport *report)
{
	if (get_attnum(change->relid, column) <= 0)
		guard_undo_blocked_error(change, column);
	/* the values written since go with the column: count them */
	report->restored = count_values(t->qualname, column);
	guard_column_report_drops(t->relid, column, report);
	run_as_owner(t->owner, psprintf("ALTER TABLE %s DROP COLUMN %s CASCADE", t->qualname,
									quote_identifier(column)));
}

/*
 * Undo a DROP COLUMN or ALTER COLUMN TYPE: put the column back as it was
 * (type and collation; no default or NOT NULL yet), write its recorded
 * values back over whatever it holds, then restore its default and NOT
 * NULL, and (ddl_column.c) its other attributes and what went with it.  A
 * generated column computes its values itself; a key column's new type is
 * cast back (ddl_column.c).
 */
static void
undo_column_values(const GuardChange *change, const SchemaTarget *t,
				   const char *column, Datum exclude,
				   GuardRestoreReport *report)
{
	char	   *type = detail_field(change, "type");
	char	   *collation = detail_field(change, "collation");
	char	   *def = detail_field(change, "default");
	char	   *generated = detail_field(change, "generated");
	bool		not_null = strcmp(detail_field(change, "not_null"), "true") == 0;
	const char *qcol = quote_identifier(column);
	GuardRestoreReport values;

	if (strcmp(change->kind, "DROP COLUMN") == 0)
	{
		if (get_attnum(change->relid, column) > 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_COLUMN),
					 errmsg("cannot restore change " INT64_FORMAT ": column \"%s\" of table \"%s\" exists again",
							change->change_id, column, guard_undo_relname(change)),
					 errhint("Rename or drop the new column first.")));
		run_as_owner(t->owner, psprintf("ALTER TABLE %s ADD COLUMN %s %s%s%s%s%s%s", t->qualname, qcol,
										type, collation ? " COLLATE " : "",
										collation ? collation : "",
										generated ? " GENERATED ALWAYS AS (" : "",
										generated ? generated : "",
										generated ? ") STORED" : ""));
	}
	else if (guard_column_type_undo_key(change, t, column))
	{
		guard_column_restore(change, t, column, false, report);
		return;
	}
	else
	{
		HeapTuple	tuple = SearchSysCacheAttName(t->relid, column);
		bool		has_not_null;
		bool		has_default;

		if (!HeapTupleIsValid(tuple))
			guard_undo_blocked_error(change, column);
		has_not_null = ((Form_pg_attribute) GETSTRUCT(tuple))->attnotnull;
		has_default = ((Form_pg_attribute) GETSTRUCT(tuple))->atthasdef;
		ReleaseSysCache(tuple);
		/* only what the column has: each subcommand is a recorded change */
		run_as_owner(t->owner, psprintf("ALTER TABLE %s %s%s%s%s%s%s ALTER COLUMN %s TYPE %s%s%s USING NULL",
										t->qualname,
										has_not_null ? "ALTER COLUMN " : "",
										has_not_null ? qcol : "",
										has_not_null ? " DROP NOT NULL," : "",
										has_default ? "ALTER COLUMN " : "",
										has_default ? qcol : "",
										has_default ? " DROP DEFAULT," : "",
										qcol, type,
										collation ? " COLLATE " : "",
										collation ? collation : ""));
	}
	if (generated == NULL)
	{
		memset(&values, 0, sizeof(values));
		guard_undo_rows(change, GUARD_ON_CONFLICT_OVERWRITE, exclude,
						PointerGetDatum(construct_empty_array(INT8OID)), true, &values);
		report->restored = values.restored;
		report->skipped = values.skipped;
	}
	guard_column_restore(change, t, column, true, report);
	if (def)
		run_as_owner(t->owner, psprintf("ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s",
										t->qualname, qcol, def));
	if (not_null)
		run_as_owner(t->owner, psprintf("ALTER TABLE %s ALTER COLUMN %s SET NOT NULL",
										t->qualname, qcol));
	guard_column_restore(change, t, column, false, report);
}

/*
 * Undo a RENAME of a column or of the table: rename it back, if it still
 * has the name it was given.
 */
static void
undo_rename(const GuardChange *change, const SchemaTarget *t)
{
	char	   *what = detail_field(change, "what");
	char	   *oldname = detail_field(change, "old");
	char	   *newname = detail_field(change, "new");

	if (strcmp(what, "column") == 0)
	{
		if (get_attnum(change->relid, newname) <= 0)
			guard_undo_blocked_error(change, newname);
		run_as_owner(t->owner, psprintf("ALTER TABLE %s RENAME COLUMN %s TO %s", t->qualname,
										quote_identifier(newname), quote_identifier(oldname)));
	}
	else
	{
		if (strcmp(t->relname, newname) != 0)
			guard_undo_blocked_error(change, newname);
		run_as_owner(t->owner, psprintf("ALTER TABLE %s RENAME TO %s", t->qualname,
										quote_identifier(oldname)));
	}
}

/*
 * The owner of relation "relid".
 */
static Oid
relation_owner(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * After the rows of a TRUNCATE ... RESTART IDENTITY are back: set each
 * sequence the table owned back to where it was before the TRUNCATE, as its
 * owner, unless it has gone further since (rows inserted after the
 * TRUNCATE would collide with the next values otherwise).  A sequence
 * dropped since is left alone.
 */
void
guard_undo_truncate_sequences(const GuardChange *change)
{
	for (int i = 1;; i++)
	{
		char		field[32];
		char	   *seq;
		Oid			seqid;
		GuardAsRole as;
		Oid			types[3] = {OIDOID, INT8OID, BOOLOID};
		Datum		values[3];

		snprintf(field, sizeof(field), "sequence_%d", i);
		if ((seq = detail_field(change, field)) == NULL)
			break;
		seqid = atooid(seq);
		if (get_rel_relkind(seqid) != RELKIND_SEQUENCE)
			continue;
		values[0] = ObjectIdGetDatum(seqid);
		snprintf(field, sizeof(field), "last_value_%d", i);
		values[1] = DirectFunctionCall1(int8in, CStringGetDatum(detail_field(change, field)));
		snprintf(field, sizeof(field), "is_called_%d", i);
		values[2] = BoolGetDatum(strcmp(detail_field(change, field), "true") == 0);

		/* compared by the value the next nextval() returns */
		guard_as_role_begin(&as, relation_owner(seqid));
		guard_run_sql(psprintf("SELECT pg_catalog.setval($1, $2, $3)"
							   " FROM %s c, pg_catalog.pg_sequence s"
							   " WHERE s.seqrelid = $1"
							   " AND pg_catalog.sign(s.seqincrement) *"
							   "  ((c.last_value::pg_catalog.numeric + CASE WHEN c.is_called THEN s.seqincrement ELSE 0 END)"
							   "   - ($2::pg_catalog.numeric + CASE WHEN $3 THEN s.seqincrement ELSE 0 END)) < 0",
							   quote_qualified_identifier(get_namespace_name(get_rel_namespace(seqid)),
														  get_rel_name(seqid))),
					  3, types, values, NULL);
		guard_as_role_end(&as);
	}
}

/*
 * Undo one schema change (a change with a detail, TRUNCATE aside) by the
 * recipe of its kind, then, for those that destroyed values, its rows.
 * "exclude" (int8[]) holds the change sets restored together.  Fills
 * *report.
 */
void
guard_undo_schema_change(const GuardChange *change, Datum exclude,
						 GuardRestoreReport *report)
{
	Relation	rel;
	SchemaTarget t;
	char	   *column = detail_field(change, "column");

	report->change_id = change->change_id;
	report->changeset_id = change->changeset_id;
	report->relation = pstrdup(change->relation);
	report->kind = pstrdup(change->kind);

	if (strcmp(change->kind, "DROP TABLE") == 0)
	{
		undo_drop_table(change, report);
		return;
	}

	rel = try_table_open(change->relid, AccessExclusiveLock);
	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot restore change " INT64_FORMAT ": table \"%s\" no longer exists",
						change->change_id, guard_undo_relname(change))));
	guard_undo_check_table(change, rel);
	t.relid = RelationGetRelid(rel);
	t.owner = rel->rd_rel->relowner;
	t.nspname = get_namespace_name(RelationGetNamespace(rel));
	t.qualname = quote_qualified_identifier(t.nspname, RelationGetRelationName(rel));
	t.relname = pstrdup(RelationGetRelationName(rel));
	/* keep the lock, drop the reference: ALTER TABLE refuses a table in use */
	table_close(rel, NoLock);

	if (strcmp(change->kind, "ADD COLUMN") == 0)
		undo_add_column(change, &t, column, report);
	else if (strcmp(change->kind, "DROP COLUMN") == 0 ||
			 strcmp(change->kind, "ALTER COLUMN TYPE") == 0)
		undo_column_values(change, &t, column, exclude, report);
	else if (strcmp(change->kind, "RENAME") == 0)
		undo_rename(change, &t);
	else if (!guard_schema_kind_undo(change, &t, report))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot restore change " INT64_FORMAT " of table \"%s\": guard cannot undo %s",
						change->change_id, guard_undo_relname(change), change->kind),
				 errdetail("The change was: %s", guard_change_statement(change->change_id)),
				 errhint("Undo it by hand, then restore the other changes with guard.restore_change().")));
	guard_partition_indexes_rename(&t, change);
}
