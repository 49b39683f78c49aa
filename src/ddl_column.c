/*-------------------------------------------------------------------------
 *
 * ddl_column.c
 *	  What DROP COLUMN and ALTER COLUMN TYPE lose besides the column's
 *	  values, saved before they run and put back by their undo; and what
 *	  undoing an ADD COLUMN drops.
 *
 * ddl.c records those two kinds (the column's definition, and its values
 * in a snapshot) and schema_undo.c undoes them; this file adds:
 *
 *	DROP COLUMN			the column's statistics target, storage,
 *						compression, comment and generation expression, and
 *						every object that went with it (ddl_objects.c):
 *						indexes, constraints, foreign keys both ways,
 *						views, statistics objects, triggers, policies,
 *						owned sequences
 *	ALTER COLUMN TYPE	the same attributes; and for a column of the key
 *						(primary key or replica identity index), which
 *						cannot be emptied and written back by key as other
 *						columns are, whether the new values convert back to
 *						the old type exactly, checked before the command
 *						runs: the undo then converts them back by a cast
 *	ADD COLUMN (undo)	the names of the objects built on the column since,
 *						which its undo drops with it, for the report
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "parser/parse_coerce.h"
#include "parser/parse_expr.h"
#include "parser/parse_relation.h"
#include "parser/parse_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"

#include "guard.h"

/*
 * The SQL name of a storage mode.
 */
const char *
guard_storage_name(char c)
{
	switch (c)
	{
		case TYPSTORAGE_PLAIN:
			return "PLAIN";
		case TYPSTORAGE_EXTERNAL:
			return "EXTERNAL";
		case TYPSTORAGE_MAIN:
			return "MAIN";
		default:
			return "EXTENDED";
	}
}

/*
 * The SQL name of a compression method ("DEFAULT" for none).
 */
const char *
guard_compression_name(char c)
{
	switch (c)
	{
		case 'p':
			return "pglz";
		case 'l':
			return "lz4";
		default:
			return "DEFAULT";
	}
}

/*
 * Save into a DROP COLUMN's or ALTER COLUMN TYPE's detail the column's
 * attributes that its definition (ddl.c) leaves out, and with
 * "dependents" the objects that go with it.
 */
void
guard_column_save(StringInfo detail, Relation rel, AttrNumber attnum,
				  bool dependents)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	Oid			types[2] = {OIDOID, INT4OID};
	Datum		values[2];
	char	   *s;

	values[0] = ObjectIdGetDatum(RelationGetRelid(rel));
	values[1] = Int32GetDatum(attnum);
	if (att->attstattarget >= 0)
		guard_json_field(detail, "statistics", psprintf("%d", att->attstattarget));
	if (att->attstorage != get_typstorage(att->atttypid))
		guard_json_field(detail, "storage", guard_storage_name(att->attstorage));
	if (att->attcompression != '\0')
		guard_json_field(detail, "compression", guard_compression_name(att->attcompression));
	s = guard_catalog_string("SELECT pg_catalog.col_description($1, $2)", 2, types, values);
	if (s)
		guard_json_field(detail, "comment", s);
	if (att->attgenerated == ATTRIBUTE_GENERATED_STORED)
	{
		s = guard_catalog_string("SELECT pg_catalog.pg_get_expr(adbin, adrelid) FROM pg_catalog.pg_attrdef"
								 " WHERE adrelid = $1 AND adnum = $2", 2, types, values);
		if (s)
			guard_json_field(detail, "generated", s);
	}
	if (dependents)
	{
		List	   *saved = guard_dependents(RelationGetRelid(rel), RelationRelationId,
											 RelationGetRelid(rel), attnum);
		List	   *early = NIL;
		List	   *late = NIL;
		ListCell   *lc;

		foreach(lc, saved)
		{
			GuardSaved *o = lfirst(lc);

			if (o->order == 0)
				early = lappend(early, o);
			else
				late = lappend(late, o);
		}
		if (early)
			guard_json_saved(detail, "sequences", early);
		if (late)
			guard_json_saved(detail, "dependents", late);
	}
}

/*
 * After an undo put a dropped or retyped column back with its values: put
 * back what guard_column_save() saved.  With before_default, only what
 * the column's default needs (its sequences); else the attributes that
 * differ from the column's now, its comment, and the objects that went
 * with it, each listed in the report.
 */
void
guard_column_restore(const GuardChange *change, const GuardSchemaTarget *t,
					 const char *column, bool before_default,
					 GuardRestoreReport *report)
{
	HeapTuple	tuple;
	Form_pg_attribute att;
	const char *qcol = quote_identifier(column);
	char	   *stats = guard_detail_field(change, "statistics");
	char	   *storage = guard_detail_field(change, "storage");
	char	   *compression = guard_detail_field(change, "compression");
	char	   *comment = guard_detail_field(change, "comment");
	StringInfoData sql;

	if (before_default)
	{
		guard_run_saved(t, guard_detail_saved(change, "sequences"), report);
		return;
	}

	tuple = SearchSysCacheAttName(t->relid, column);
	if (!HeapTupleIsValid(tuple))
		guard_undo_blocked_error(change, column);
	att = (Form_pg_attribute) GETSTRUCT(tuple);
	initStringInfo(&sql);
	if (att->attstattarget != (stats ? atoi(stats) : -1))
		appendStringInfo(&sql, ", ALTER COLUMN %s SET STATISTICS %d", qcol,
						 stats ? atoi(stats) : -1);
	if (storage && strcmp(storage, guard_storage_name(att->attstorage)) != 0)
		appendStringInfo(&sql, ", ALTER COLUMN %s SET STORAGE %s", qcol, storage);
	if (compression && strcmp(compression, guard_compression_name(att->attcompression)) != 0)
		appendStringInfo(&sql, ", ALTER COLUMN %s SET COMPRESSION %s", qcol, compression);
	ReleaseSysCache(tuple);
	if (sql.len > 0)
		guard_run_as_owner(t->owner, psprintf("ALTER TABLE %s %s", t->qualname, sql.data + 2));
	if (comment)
		guard_run_as_owner(t->owner, psprintf("COMMENT ON COLUMN %s.%s IS %s", t->qualname,
											  qcol, quote_literal_cstr(comment)));
	guard_run_saved(t, guard_detail_saved(change, "dependents"), report);
}

/*
 * Before an ADD COLUMN is undone: list in the report the objects that the
 * undo's DROP COLUMN ... CASCADE takes with the column.
 */
void
guard_column_report_drops(Oid relid, const char *column,
						  GuardRestoreReport *report)
{
	AttrNumber	attnum = get_attnum(relid, column);
	ListCell   *lc;

	if (attnum <= 0)
		return;
	foreach(lc, guard_dependents(relid, RelationRelationId, relid, attnum))
		guard_report_object(report, "drop", ((GuardSaved *) lfirst(lc))->object);
}

/*
 * Is the column part of the table's primary key or replica identity index:
 * a column that cannot be emptied while its undo writes it back by key?
 */
static bool
column_in_key(Relation rel, AttrNumber attnum)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	bool		found = false;

	foreach(lc, indexes)
	{
		HeapTuple	tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index index;

		if (!HeapTupleIsValid(tuple))
			continue;
		index = (Form_pg_index) GETSTRUCT(tuple);
		if (index->indisprimary || index->indisreplident)
		{
			for (int i = 0; i < index->indnkeyatts; i++)
			{
				if (index->indkey.values[i] == attnum)
					found = true;
			}
		}
		ReleaseSysCache(tuple);
	}
	list_free(indexes);
	return found;
}

/*
 * The expression ALTER COLUMN TYPE will compute the column's new values
 * with (its USING, else the column coerced to the new type), deparsed
 * with names qualified; NULL if it does not parse (the command will fail).
 */
static char *
type_transform(Relation rel, AttrNumber attnum, ColumnDef *def)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	Oid			targettype;
	int32		targettypmod;
	ParseState *pstate = make_parsestate(NULL);
	ParseNamespaceItem *nsitem;
	Node	   *transform;
	char	   *expr;
	int			level;

	typenameTypeIdAndMod(pstate, def->typeName, &targettype, &targettypmod);
	nsitem = addRangeTableEntryForRelation(pstate, rel, AccessShareLock, NULL,
										   false, true);
	addNSItemToQuery(pstate, nsitem, false, true, true);
	if (def->raw_default)
		transform = transformExpr(pstate, copyObject(def->raw_default),
								  EXPR_KIND_ALTER_COL_TRANSFORM);
	else
		transform = (Node *) makeVar(1, attnum, att->atttypid, att->atttypmod,
									 att->attcollation, 0);
	transform = coerce_to_target_type(pstate, transform, exprType(transform),
									  targettype, targettypmod,
									  COERCION_ASSIGNMENT, COERCE_IMPLICIT_CAST,
									  -1);
	if (transform == NULL)
		return NULL;
	level = guard_pin_search_path();
	expr = deparse_expression(transform,
							  deparse_context_for(RelationGetRelationName(rel),
												  RelationGetRelid(rel)),
							  false, true);
	guard_unpin_search_path(level);
	return expr;
}

/*
 * Do the values of the key column "attnum", as ALTER COLUMN TYPE will
 * compute them, all cast back to the column's type as they are?  Run as
 * the user making the change, in a subtransaction: an error (a cast that
 * fails, a USING that does not parse, which the command will report in its
 * own words) means no.
 */
static bool
key_converts_back(Relation rel, AttrNumber attnum, AlterTableCmd *cmd)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	bool		ok = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		GuardAsRole as;
		bool		isnull;
		char	   *expr = type_transform(rel, attnum, castNode(ColumnDef, cmd->def));
		int			level = guard_pin_search_path();
		char	   *sql;

		sql = psprintf("SELECT NOT EXISTS (SELECT FROM %s WHERE ((%s)::%s) IS DISTINCT FROM %s)",
					   quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												  RelationGetRelationName(rel)),
					   expr ? expr : "NULL",
					   format_type_with_typemod(att->atttypid, att->atttypmod),
					   quote_identifier(NameStr(att->attname)));
		guard_unpin_search_path(level);
		if (expr)
		{
			guard_as_role_path_begin(&as, GetUserId(), "pg_catalog, pg_temp", true);
			guard_run_sql(sql, 0, NULL, NULL, NULL);
			ok = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			guard_as_role_end(&as);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		FlushErrorState();
		guard_subxact_rollback(oldcxt, oldowner);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * Before ALTER COLUMN TYPE: save the column's attributes and, for a column
 * of the key, whether its undo can cast the new values back exactly.
 */
void
guard_column_type_check(StringInfo detail, Relation rel, AttrNumber attnum,
						AlterTableCmd *cmd)
{
	guard_column_save(detail, rel, attnum, false);
	if (!column_in_key(rel, attnum))
		return;
	guard_json_field(detail, "key", "true");
	guard_json_field(detail, "converts_back",
					 key_converts_back(rel, attnum, cmd) ? "true" : "false");
}

/*
 * Undo an ALTER COLUMN TYPE of a key column by casting its values back, if
 * guard_column_type_check() found they convert back exactly.  Returns
 * false for a column outside the key, which schema_undo.c empties and
 * writes back by key instead.
 */
bool
guard_column_type_undo_key(const GuardChange *change,
						   const GuardSchemaTarget *t, const char *column)
{
	char	   *key = guard_detail_field(change, "key");
	char	   *type = guard_detail_field(change, "type");
	char	   *collation = guard_detail_field(change, "collation");
	char	   *def = guard_detail_field(change, "default");
	const char *qcol = quote_identifier(column);
	AttrNumber	attnum;
	bool		hasdef;

	if (key == NULL || strcmp(key, "true") != 0)
		return false;
	if (strcmp(guard_detail_field(change, "converts_back"), "true") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot restore change " INT64_FORMAT " of table \"%s\": the new values of key column \"%s\" do not convert back to type %s",
						change->change_id, guard_undo_relname(change), column, type),
				 errdetail("The change was: %s", guard_change_statement(change->change_id)),
				 errhint("Convert the column back by hand, then restore the other changes with guard.restore_change().")));
	attnum = get_attnum(t->relid, column);
	if (attnum <= 0)
		guard_undo_blocked_error(change, column);
	hasdef = guard_catalog_string(psprintf("SELECT 1 FROM pg_catalog.pg_attrdef"
										   " WHERE adrelid = %u AND adnum = %d",
										   t->relid, attnum),
								  0, NULL, NULL) != NULL;
	guard_run_as_owner(t->owner, psprintf("ALTER TABLE %s %s%s%s ALTER COLUMN %s TYPE %s%s%s USING %s::%s",
										  t->qualname,
										  hasdef ? "ALTER COLUMN " : "",
										  hasdef ? qcol : "",
										  hasdef ? " DROP DEFAULT," : "",
										  qcol, type,
										  collation ? " COLLATE " : "",
										  collation ? collation : "",
										  qcol, type));
	if (def)
		guard_run_as_owner(t->owner, psprintf("ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s",
											  t->qualname, qcol, def));
	return true;
}
