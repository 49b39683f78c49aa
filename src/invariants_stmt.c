/*-------------------------------------------------------------------------
 *
 * invariants_stmt.c
 *	  The invariants of a protected table, checked at the end of each
 *	  statement that wrote it.
 *
 * The capture trigger (capture.c) hands every row a statement wrote,
 * straight from its transition tables, to guard_invariants_row(), in the
 * same pass as the capture.  Each row check is evaluated in C on the NEW
 * rows: from the expression relcache.c compiled once per relation and
 * invalidation, with an ExprState built here per statement.  Immediate
 * checks count failures and keep sample keys; at the end of the statement
 * they are reported and the immediate query invariants run.  Deferred
 * checks leave their failing rows to invariants_commit.c.
 *
 * Calls invariants_commit.c, invariants_eval.c and relcache.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/executor.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "guard.h"

/* state of one statement's row checks, see guard_invariants_begin() */
struct GuardInvariantSet
{
	Relation	rel;			/* the table the statement wrote */
	Oid			policy_relid;
	int			mode;
	int			ndefs;
	const GuardInvariant *defs; /* the cache entry's, kept to the xact end */
	ExprState **states;			/* per row check, NULL for queries */
	EState	   *estate;
	ExprContext *econtext;
	int64	   *failing;		/* rows failing, per immediate row check */
	List	  **samples;		/* sample keys, per immediate row check */
	const AttrNumber *keys;		/* the key columns of "rel" */
	int			nkeys;
	GuardPending *pending;		/* NULL without deferred invariants */
	bool		deferred_failed;	/* some row failed a deferred check */
};

/*
 * Prepare the row checks of the protected table for a statement that wrote
 * "rel" (the table or one of its partitions), under "policy".  NULL when
 * there are none.  Only the ExprStates are built here, in the statement's
 * own executor state; the checks were compiled once, for the cache.
 */
GuardInvariantSet *
guard_invariants_begin(Relation rel, const GuardPolicy *policy)
{
	GuardRelCache *entry = guard_relcache_lookup(rel);
	GuardInvariantSet *set;

	if (entry == NULL || entry->ninvariants == 0)
		return NULL;
	set = palloc0(sizeof(GuardInvariantSet));
	set->rel = rel;
	set->policy_relid = policy->relid;
	set->mode = guard_policy_mode(policy);
	set->ndefs = entry->ninvariants;
	set->defs = entry->invariants;
	set->states = palloc0(sizeof(ExprState *) * set->ndefs);
	set->failing = palloc0(sizeof(int64) * set->ndefs);
	set->samples = palloc0(sizeof(List *) * set->ndefs);
	set->estate = CreateExecutorState();
	set->econtext = GetPerTupleExprContext(set->estate);
	set->keys = entry->key.attnums;
	set->nkeys = entry->key.nkeys;
	for (int i = 0; i < set->ndefs; i++)
	{
		if (set->defs[i].row_check)
		{
			Expr	   *check = guard_relcache_row_check(entry, rel, i);
			MemoryContext old = MemoryContextSwitchTo(set->estate->es_query_cxt);

			set->states[i] = ExecInitExpr(check, NULL);
			MemoryContextSwitchTo(old);
		}
	}
	if (entry->has_deferred)
		set->pending = guard_deferred_pending(policy->relid);
	return set;
}

/*
 * Check the row checks against one row the statement wrote (a NEW row).
 */
void
guard_invariants_row(GuardInvariantSet *set, TupleTableSlot *slot, int64 rowno)
{
	bool		deferred_fails = false;
	bool		any_deferred_check = false;

	set->econtext->ecxt_scantuple = slot;
	for (int i = 0; i < set->ndefs; i++)
	{
		bool		isnull;
		Datum		d;
		bool		fails;

		if (set->states[i] == NULL)
			continue;
		d = ExecEvalExprSwitchContext(set->states[i], set->econtext, &isnull);
		/* as for CHECK constraints, NULL is not a violation */
		fails = !isnull && !DatumGetBool(d);
		if (set->defs[i].deferred)
		{
			any_deferred_check = true;
			deferred_fails |= fails;
		}
		else if (fails)
		{
			if (set->failing[i]++ < GUARD_MAX_SAMPLES)
				set->samples[i] = lappend(set->samples[i],
										  guard_slot_key_text(set->rel, slot, set->keys,
															  set->nkeys, rowno));
		}
	}
	set->deferred_failed |= deferred_fails;
	if (any_deferred_check)
		guard_deferred_track(set->pending, set->rel, slot, set->keys,
							 set->nkeys, deferred_fails, rowno);
	ResetExprContext(set->econtext);
}

/*
 * A row the statement deleted: it no longer needs checking at commit.
 */
void
guard_invariants_deleted(GuardInvariantSet *set, TupleTableSlot *slot, int64 rowno)
{
	if (set->pending)
		guard_deferred_track(set->pending, set->rel, slot, set->keys,
							 set->nkeys, false, rowno);
}

/*
 * End of the statement: report immediate row checks and run immediate
 * query invariants; arm the commit-time check of deferred ones.
 */
void
guard_invariants_end(GuardInvariantSet *set, int64 change_id)
{
	char	   *relation = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(set->rel)),
													  RelationGetRelationName(set->rel));
	GuardCheckedAt at = {GUARD_CHECKED_AT_STATEMENT_END, change_id, NULL};

	for (int i = 0; i < set->ndefs; i++)
	{
		const GuardInvariant *def = &set->defs[i];
		bool		violated;

		if (def->deferred)
			continue;
		violated = def->row_check ? set->failing[i] > 0 :
			!guard_run_query_invariant(def, relation);
		if (!violated)
			continue;
		if (at.statement == NULL)
			at.statement = guard_statement_brief();
		guard_report_violation(set->mode, set->policy_relid, relation,
							   def->name, set->failing[i], set->samples[i], &at);
	}
	FreeExecutorState(set->estate);
	if (set->pending)
		guard_deferred_arm(set->policy_relid, change_id, set->deferred_failed);
}
