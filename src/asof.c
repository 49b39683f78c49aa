/*-------------------------------------------------------------------------
 *
 * asof.c
 *	  guard.as_of(NULL::tbl, at): the rows of a table as they were at a
 *	  point in time, from the rows now and the captures since (past.c),
 *	  computed in memory without writing: Oracle's flashback query.
 *
 * The values are the bytes the table held, so the rows are exact for
 * every type.  guard answers only when it knows: the table must have been
 * protected since before "at", with every write captured (capture 'dml' or
 * 'all', min_rows 1); a change since that leaves the old rows unknowable
 * (expired captures, a capture bypass, a partition attached or detached,
 * another key) is refused naming its change set, and so is a column whose
 * type changed since.  A column added since is NULL.  "at" in the future
 * is an error: the rows of then are not known yet.
 *
 * The caller needs SELECT on the table (or guard_admin), and sees only the
 * rows row level security would show them, evaluated on the rows as they
 * were.  A change counts from the time its statement started
 * (guard.changes.at), as for restore_to.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_as_of);

/* the output of one guard.as_of() call */
typedef struct AsOf
{
	ReturnSetInfo *rsinfo;
	Relation	rel;
	const GuardPastColumn *cols;
	GuardRowFilter *filter;
	Datum	   *values;
	bool	   *nulls;
} AsOf;

/*
 * The table a row type belongs to, opened; refuses any other type.
 */
static Relation
open_table_of_type(Oid type)
{
	Oid			relid = OidIsValid(type) ? get_typ_typrelid(type) : InvalidOid;
	char		relkind = OidIsValid(relid) ? get_rel_relkind(relid) : '\0';

	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("guard.as_of() reads a table, not type %s",
						OidIsValid(type) ? format_type_be(type) : "unknown"),
				 errhint("Pass a row of the table: guard.as_of(NULL::tablename, time).")));
	return table_open(relid, AccessShareLock);
}

/*
 * When the table's policy was created, as the extension owner reads it.
 */
static TimestampTz
protected_since(Oid relid)
{
	GuardAsRole owner;
	Oid			types[1] = {OIDOID};
	Datum		values[1];
	TimestampTz since = DT_NOBEGIN;

	values[0] = ObjectIdGetDatum(relid);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT created_at FROM guard.policy WHERE relid = $1::pg_catalog.regclass",
				  1, types, values, NULL);
	if (SPI_processed == 1)
	{
		bool		isnull;

		since = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1, &isnull));
	}
	guard_as_role_end(&owner);
	return since;
}

/*
 * Refuse what guard could not answer exactly: a table it does not capture
 * every write of, or did not protect at "at".
 */
static void
check_captured(Relation rel, TimestampTz at)
{
	const GuardPolicy *policy = guard_policy_lookup(rel);
	const char *name = RelationGetRelationName(rel);

	if (!policy->found)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not protected by guard", name),
				 errhint("guard knows the past rows of protected tables only.")));
	if (policy->relid != RelationGetRelid(rel))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is a partition of protected table \"%s\"",
						name, get_rel_name(policy->relid)),
				 errhint("Read the partitioned table as of that time.")));
	if (policy->capture != GUARD_CAPTURE_DML && policy->capture != GUARD_CAPTURE_ALL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("guard does not capture the rows written to table \"%s\"", name),
				 errdetail("Its policy captures %s.",
						   policy->capture == GUARD_CAPTURE_NONE ? "nothing" : "schema changes only")));
	if (policy->min_rows > 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("guard does not capture every write to table \"%s\"", name),
				 errdetail("Statements touching fewer than " INT64_FORMAT " rows are not captured (min_rows).",
						   policy->min_rows)));
	if (protected_since(RelationGetRelid(rel)) > at)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" was not protected by guard at that time", name),
				 errdetail("guard has no record of the writes made before guard.protect().")));
}

/*
 * Refuse rows whose columns had, at that time, types other than now.
 */
static void
check_columns(Relation rel, const GuardPastColumn *cols)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || !cols[i].exists || cols[i].type == att->atttypid)
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the rows of table \"%s\" at that time do not fit its columns now",
						RelationGetRelationName(rel)),
				 errdetail("Column \"%s\" had type %s until change set " INT64_FORMAT " changed it.",
						   NameStr(att->attname), format_type_be(cols[i].type),
						   cols[i].retyped_by)));
	}
}

/*
 * Emit one row as it was: the columns that did not exist then are NULL,
 * values stored out of line are fetched.
 */
static void
emit_row(void *arg, const GuardPastVersion *v)
{
	AsOf	   *a = (AsOf *) arg;
	TupleDesc	desc = RelationGetDescr(a->rel);

	if (a->filter && !guard_rowfilter_visible(a->filter, v))
		return;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		a->nulls[i] = att->attisdropped || !a->cols[i].exists || v->nulls[i];
		a->values[i] = a->nulls[i] ? (Datum) 0 : v->values[i];
		if (!a->nulls[i] && att->attlen == -1 &&
			VARATT_IS_EXTERNAL(DatumGetPointer(a->values[i])))
			a->values[i] = PointerGetDatum(detoast_external_attr((struct varlena *) DatumGetPointer(a->values[i])));
	}
	tuplestore_putvalues(a->rsinfo->setResult, a->rsinfo->setDesc, a->values, a->nulls);
	for (int i = 0; i < desc->natts; i++)
	{
		if (!a->nulls[i] && a->values[i] != v->values[i])
			pfree(DatumGetPointer(a->values[i]));
	}
}

/*
 * guard.as_of(rel anyelement, at timestamptz) returns setof anyelement
 */
Datum
guard_as_of(PG_FUNCTION_ARGS)
{
	Oid			type = get_fn_expr_argtype(fcinfo->flinfo, 0);
	TimestampTz at;
	Relation	rel;
	GuardPast  *past;
	AsOf		a;

	guard_require_preload();
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the time to read the table at must not be null")));
	at = PG_GETARG_TIMESTAMPTZ(1);
	rel = open_table_of_type(type);
	if (!guard_may_read_relation(RelationGetRelid(rel)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", RelationGetRelationName(rel)),
				 errdetail("Reading a table as it was needs SELECT on it, or membership in guard_admin.")));
	if (at > GetCurrentTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot read table \"%s\" as of a time in the future",
						RelationGetRelationName(rel)),
				 errhint("Read the table itself for its rows now.")));
	check_captured(rel, at);

	InitMaterializedSRF(fcinfo, 0);
	memset(&a, 0, sizeof(a));
	a.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	a.rel = rel;
	a.values = palloc(sizeof(Datum) * Max(RelationGetDescr(rel)->natts, 1));
	a.nulls = palloc(sizeof(bool) * Max(RelationGetDescr(rel)->natts, 1));
	if (a.rsinfo->setDesc->natts != RelationGetDescr(rel)->natts)
		elog(ERROR, "row type of table \"%s\" does not match the table",
			 RelationGetRelationName(rel));

	past = guard_past_begin(rel, true);
	(void) guard_past_walk(past, at, false, NULL, NULL, NULL);
	a.cols = guard_past_columns(past);
	check_columns(rel, a.cols);
	a.filter = guard_rowfilter_begin(rel);
	guard_past_rows(past, emit_row, &a);
	guard_rowfilter_end(a.filter);
	guard_past_end(past);
	table_close(rel, AccessShareLock);
	return (Datum) 0;
}
