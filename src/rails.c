/*-------------------------------------------------------------------------
 *
 * rails.c
 *	  Guard rails from a table's policy: require_where, max_rows and
 *	  max_fraction.
 *
 * require_where is checked when an UPDATE or DELETE is parsed: one with no
 * WHERE clause, or whose WHERE the planner's constant folding reduces to
 * true (WHERE 1=1, WHERE true), is refused before it runs.  max_rows and
 * max_fraction are checked by the capture trigger on the number of rows the
 * statement wrote, before anything is captured; the ERROR rolls the
 * statement back.  Rails refuse whatever the mode: they are limits the DBA
 * set, not invariants to warn about.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/table.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "guard.h"

static post_parse_analyze_hook_type prev_post_parse_analyze = NULL;

/*
 * Does the relation carry guard's triggers?  (Only then can it have a
 * policy: a cheap test on the relcache before any catalog read.)
 */
static bool
has_guard_triggers(Relation rel)
{
	if (rel->trigdesc == NULL)
		return false;
	for (int i = 0; i < rel->trigdesc->numtriggers; i++)
	{
		if (strncmp(rel->trigdesc->triggers[i].tgname, "guard_", 6) == 0)
			return true;
	}
	return false;
}

/*
 * post_parse_analyze hook: refuse an UPDATE or DELETE without a real WHERE
 * on a table whose policy has require_where.
 */
static void
guard_post_parse_analyze(ParseState *pstate, Query *query, JumbleState *jstate)
{
	if (prev_post_parse_analyze)
		prev_post_parse_analyze(pstate, query, jstate);

	if ((query->commandType == CMD_UPDATE || query->commandType == CMD_DELETE) &&
		query->resultRelation > 0 && guard_enabled)
	{
		RangeTblEntry *rte = rt_fetch(query->resultRelation, query->rtable);
		Relation	rel;
		bool		refuse = false;
		Node	   *quals = query->jointree ? query->jointree->quals : NULL;

		if (rte->rtekind != RTE_RELATION)
			return;
		rel = relation_open(rte->relid, NoLock);
		if (has_guard_triggers(rel))
		{
			const GuardPolicy *policy = guard_policy_lookup(rel);

			if (policy->found && policy->require_where)
			{
				if (quals == NULL)
					refuse = true;
				else
				{
					Node	   *folded = eval_const_expressions(NULL, copyObject(quals));

					refuse = IsA(folded, Const) &&
						!((Const *) folded)->constisnull &&
						DatumGetBool(((Const *) folded)->constvalue);
				}
			}
		}
		if (refuse)
			ereport(ERROR,
					(errcode(ERRCODE_GUARD_RAIL),
					 query->commandType == CMD_UPDATE ?
					 errmsg("UPDATE without a WHERE clause on table \"%s\" is refused by guard",
							RelationGetRelationName(rel)) :
					 errmsg("DELETE without a WHERE clause on table \"%s\" is refused by guard",
							RelationGetRelationName(rel)),
					 errdetail("The policy of table \"%s\" has require_where; a WHERE that is always true counts as none.",
							   RelationGetRelationName(rel)),
					 errhint("Add a WHERE clause naming the rows to change.")));
		relation_close(rel, NoLock);
	}
}

/*
 * Install the post_parse_analyze hook, chained after any installed before.
 */
void
guard_rails_install(void)
{
	prev_post_parse_analyze = post_parse_analyze_hook;
	post_parse_analyze_hook = guard_post_parse_analyze;
}

/*
 * Rows in the table before the statement, for max_fraction: the planner's
 * estimate when the table was analyzed or vacuumed, else a count.
 */
static double
rows_before(Relation rel, int event, int64 nrows)
{
	double		total = 0;
	bool		known = true;
	List	   *rels = list_make1_oid(RelationGetRelid(rel));
	ListCell   *lc;

	if (rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
		rels = find_all_inheritors(RelationGetRelid(rel), NoLock, NULL);
	foreach(lc, rels)
	{
		HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_class form;

		if (!HeapTupleIsValid(tuple))
			continue;
		form = (Form_pg_class) GETSTRUCT(tuple);
		if (form->relkind == RELKIND_RELATION)
		{
			if (form->reltuples < 0)
				known = false;
			else
				total += form->reltuples;
		}
		ReleaseSysCache(tuple);
	}
	if (known && total > 0)
		return total;

	/* never analyzed: count, and undo what the statement did to the count */
	{
		GuardAsRole owner;
		bool		isnull;
		int64		now;

		guard_as_role_begin(&owner, rel->rd_rel->relowner);
		guard_run_sql(psprintf("SELECT pg_catalog.count(*) FROM %s",
							   quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
														  RelationGetRelationName(rel))),
					  0, NULL, NULL, NULL);
		now = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										  1, &isnull));
		guard_as_role_end(&owner);
		if (TRIGGER_FIRED_BY_INSERT(event))
			return (double) (now - nrows);
		if (TRIGGER_FIRED_BY_DELETE(event))
			return (double) (now + nrows);
		return (double) now;
	}
}

/*
 * max_rows and max_fraction: refuse a statement that wrote too many rows.
 */
void
guard_check_row_limits(Relation rel, const GuardPolicy *policy, int event,
					   int64 nrows)
{
	if (policy->max_rows > 0 && nrows > policy->max_rows)
		ereport(ERROR,
				(errcode(ERRCODE_GUARD_RAIL),
				 errmsg("statement changes " INT64_FORMAT " rows of table \"%s\", more than max_rows " INT64_FORMAT,
						nrows, RelationGetRelationName(rel), policy->max_rows),
				 errdetail("The statement is refused and nothing of it is kept."),
				 errhint("Change fewer rows per statement, or raise max_rows with guard.protect().")));

	if (policy->max_fraction > 0)
	{
		double		total = rows_before(rel, event, nrows);

		if (total >= 0 && nrows > policy->max_fraction * Max(total, 1))
			ereport(ERROR,
					(errcode(ERRCODE_GUARD_RAIL),
					 errmsg("statement changes " INT64_FORMAT " of about %.0f rows of table \"%s\", more than max_fraction %g",
							nrows, total, RelationGetRelationName(rel), policy->max_fraction),
					 errdetail("The statement is refused and nothing of it is kept."),
					 errhint("Change fewer rows per statement, or raise max_fraction with guard.protect().")));
	}
}
