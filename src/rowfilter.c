/*-------------------------------------------------------------------------
 *
 * rowfilter.c
 *	  Would row level security show this row of a table to the caller?
 *	  For rows that are not in the table any more: versions rebuilt from
 *	  the captures, which guard.as_of() and guard.history() show only to
 *	  those who could have seen them through the table.
 *
 * The table's SELECT policies that apply to the caller are combined as
 * PostgreSQL combines them (permissive ones OR-ed, restrictive ones AND-ed,
 * none permissive: no row) and deparsed into one query over a row of the
 * table's type, prepared once and run as the caller for each row, so that
 * policies with subqueries behave as they do on the table.  Members of
 * guard_admin, who may read every snapshot, and callers row level security
 * does not apply to (the owner, BYPASSRLS) get no filter.
 *
 * Calls spi.c only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"

#include "guard.h"

struct GuardRowFilter
{
	Relation	rel;
	Oid			userid;			/* the caller */
	bool		deny_all;		/* no permissive policy applies */
	SPIPlanPtr	plan;			/* SELECT (policies) over $1, a row */
};

/*
 * The row filter of "rel" for the caller, or NULL when the caller sees
 * every row (guard_admin; row level security not enabled for them).  With
 * row_security off and a policy that applies, raises PostgreSQL's error.
 */
GuardRowFilter *
guard_rowfilter_begin(Relation rel)
{
	Oid			admin = get_role_oid("guard_admin", true);
	GuardRowFilter *f;
	GuardAsRole as;
	Oid			types[1] = {OIDOID};
	Datum		values[1];
	StringInfoData permissive;
	StringInfoData restrictive;
	Oid			rowtype = rel->rd_rel->reltype;

	if (OidIsValid(admin) && has_privs_of_role(GetUserId(), admin))
		return NULL;
	if (check_enable_rls(RelationGetRelid(rel), InvalidOid, false) != RLS_ENABLED)
		return NULL;

	f = palloc0(sizeof(GuardRowFilter));
	f->rel = rel;
	f->userid = GetUserId();
	initStringInfo(&permissive);
	initStringInfo(&restrictive);
	values[0] = ObjectIdGetDatum(RelationGetRelid(rel));

	/* deparsed with only pg_catalog in the path: every other name qualified */
	guard_as_role_path_begin(&as, f->userid, "pg_catalog, pg_temp", true);
	if (SPI_execute_with_args("SELECT pg_catalog.pg_get_expr(p.polqual, p.polrelid), p.polpermissive"
							  "  FROM pg_catalog.pg_policy p"
							  " WHERE p.polrelid = $1 AND p.polcmd IN ('r', '*')"
							  "   AND p.polqual IS NOT NULL"
							  "   AND (p.polroles @> '{0}'::pg_catalog.oid[]"
							  "        OR EXISTS (SELECT FROM pg_catalog.unnest(p.polroles) r"
							  "                    WHERE pg_catalog.pg_has_role(r, 'USAGE')))"
							  " ORDER BY p.polname",
							  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_policy");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		bool		isnull;
		char	   *qual = SPI_getvalue(tuple, SPI_tuptable->tupdesc, 1);

		if (DatumGetBool(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 2, &isnull)))
			appendStringInfo(&permissive, "%s(%s)", permissive.len ? " OR " : "", qual);
		else
			appendStringInfo(&restrictive, " AND (%s)", qual);
	}
	f->deny_all = permissive.len == 0;
	if (!f->deny_all)
	{
		char	   *sql = psprintf("SELECT ((%s)%s) IS TRUE FROM (SELECT ($1).*) AS %s",
								   permissive.data, restrictive.data,
								   quote_identifier(RelationGetRelationName(rel)));

		f->plan = SPI_prepare(sql, 1, &rowtype);
		if (f->plan == NULL)
			elog(ERROR, "could not prepare the row level security policies of table \"%s\": %s",
				 RelationGetRelationName(rel), SPI_result_code_string(SPI_result));
		SPI_keepplan(f->plan);
	}
	guard_as_role_end(&as);
	return f;
}

/*
 * Would the table's policies show the caller this version of a row?  A
 * version whose columns do not all have the types of the table now is not
 * shown: the policies could not be evaluated on it.
 */
bool
guard_rowfilter_visible(GuardRowFilter *f, const GuardPastVersion *v)
{
	TupleDesc	desc = RelationGetDescr(f->rel);
	Datum	   *values = palloc(sizeof(Datum) * Max(desc->natts, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(desc->natts, 1));
	HeapTuple	tuple;
	Datum		row;
	GuardAsRole as;
	bool		visible = false;

	if (f->deny_all)
		return false;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		nulls[i] = att->attisdropped || v->nulls[i];
		values[i] = nulls[i] ? (Datum) 0 : v->values[i];
		if (!nulls[i] && v->types[i] != att->atttypid)
		{
			pfree(values);
			pfree(nulls);
			return false;
		}
	}
	tuple = heap_form_tuple(desc, values, nulls);
	row = heap_copy_tuple_as_datum(tuple, desc);

	guard_as_role_path_begin(&as, f->userid, "pg_catalog, pg_temp", true);
	if (SPI_execute_plan(f->plan, &row, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		bool		isnull;

		visible = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	}
	guard_as_role_end(&as);
	heap_freetuple(tuple);
	pfree(DatumGetPointer(row));
	pfree(values);
	pfree(nulls);
	return visible;
}

/*
 * Release the filter's prepared query.
 */
void
guard_rowfilter_end(GuardRowFilter *f)
{
	if (f && f->plan)
		SPI_freeplan(f->plan);
}
