/*-------------------------------------------------------------------------
 *
 * invariants_commit.c
 *	  Deferred invariants, checked at COMMIT.
 *
 * Rows that fail a deferred row check at the end of a statement are
 * remembered by key, since a later statement of the transaction may fix
 * them; a row deleted since is forgotten.  Past MAX_FAILING_KEYS rows the
 * whole table is checked instead, and so it is after a schema change that
 * changed its rows, for the invariants that were validated (those added
 * accepting the rows there keep being checked by key).  A deferred
 * constraint trigger on guard.pending, armed by one token row per
 * transaction, re-checks those rows at commit and runs the deferred query
 * invariants of every table written.  An ERROR there aborts the commit
 * cleanly.  What is pending lives in TopTransactionContext and is
 * forgotten when the transaction ends.
 *
 * Calls invariants_eval.c, relcache.c and spi.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_check_deferred);

/* failing rows remembered per table before checking the whole table */
#define MAX_FAILING_KEYS		10000

/* a protected table with deferred checks pending in this transaction */
struct GuardPending
{
	Oid			relid;			/* the protected table */
	HTAB	   *failing;		/* key text -> GuardFailingKey */
	bool		overflow;		/* too many: check the whole table */
	bool		after_ddl;		/* a schema change changed its rows: check
								 * the whole table for validated invariants */
	int64		change_id;		/* the last change seen, for messages */
	/* for messages: the last statement seen, the last that wrote failing rows */
	char		statement[GUARD_STATEMENT_BRIEF_SIZE];
	char		failed[GUARD_STATEMENT_BRIEF_SIZE];
};

static List *pending_rels = NIL;	/* in TopTransactionContext */
static bool token_armed = false;
static SubTransactionId token_subid = InvalidSubTransactionId;

/*
 * At the end of the transaction, forget its pending deferred checks.
 */
static void
invariants_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			pending_rels = NIL;
			token_armed = false;
			token_subid = InvalidSubTransactionId;
			break;
		default:
			break;
	}
}

/*
 * A subtransaction that wrote the token row of the deferred check aborted
 * (the row is gone) or committed (its parent owns the row now).
 */
static void
invariants_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							SubTransactionId parentSubid, void *arg)
{
	/* the token row went away with the subtransaction that wrote it */
	if (event == SUBXACT_EVENT_ABORT_SUB && token_subid == mySubid)
	{
		token_armed = false;
		token_subid = InvalidSubTransactionId;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB && token_subid == mySubid)
		token_subid = parentSubid;
}

/*
 * Called from _PG_init: register the transaction callbacks that forget
 * what is pending.
 */
void
guard_invariants_init(void)
{
	RegisterXactCallback(invariants_xact_callback, NULL);
	RegisterSubXactCallback(invariants_subxact_callback, NULL);
}

/*
 * The pending deferred checks of protected table "relid" in this
 * transaction, created on first use.
 */
GuardPending *
guard_deferred_pending(Oid relid)
{
	ListCell   *lc;
	GuardPending *p;
	MemoryContext old;
	HASHCTL		ctl;

	foreach(lc, pending_rels)
	{
		p = lfirst(lc);
		if (p->relid == relid)
			return p;
	}
	old = MemoryContextSwitchTo(TopTransactionContext);
	p = palloc0(sizeof(GuardPending));
	p->relid = relid;
	ctl.keysize = sizeof(((GuardFailingKey *) NULL)->key);
	ctl.entrysize = sizeof(GuardFailingKey);
	ctl.hcxt = TopTransactionContext;
	p->failing = hash_create("guard failing keys", 64, &ctl,
							 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	pending_rels = lappend(pending_rels, p);
	MemoryContextSwitchTo(old);
	return p;
}

/*
 * Arm the commit-time check: one token row per transaction in guard.pending
 * queues the deferred constraint trigger.  Done at the end of a statement,
 * after its rows were tracked: under SET CONSTRAINTS ALL IMMEDIATE the
 * trigger fires as soon as the token is written.
 */
static void
arm_deferred_check(void)
{
	if (!token_armed)
	{
		GuardAsRole owner;

		/* not restricted: the row queues a deferred trigger */
		guard_as_role_path_begin(&owner, InvalidOid, "pg_catalog, pg_temp", false);
		guard_run_sql("INSERT INTO guard.pending VALUES (pg_catalog.pg_current_xact_id())",
					  0, NULL, NULL, NULL);
		guard_as_role_end(&owner);
		token_armed = true;
		token_subid = GetCurrentSubTransactionId();
	}
}

/*
 * Remember (or forget) a row of "rel", whose key columns are keys[], for
 * the commit-time check of deferred row checks.
 */
void
guard_deferred_track(GuardPending *p, Relation rel, TupleTableSlot *slot,
					 const AttrNumber *keys, int nkeys, bool failing,
					 int64 rowno)
{
	char	   *key;
	GuardFailingKey *fk;
	bool		found;

	if (p->overflow || (!failing && hash_get_num_entries(p->failing) == 0))
		return;
	if (nkeys == 0)
	{
		/* no key to find the row again: check the whole table */
		p->overflow = failing;
		return;
	}
	key = guard_slot_key_text(rel, slot, keys, nkeys, rowno);
	if (strlen(key) >= sizeof(fk->key))
	{
		p->overflow = true;
		return;
	}
	if (!failing)
	{
		hash_search(p->failing, key, HASH_REMOVE, NULL);
		return;
	}
	if (hash_get_num_entries(p->failing) >= MAX_FAILING_KEYS)
	{
		p->overflow = true;
		return;
	}
	fk = hash_search(p->failing, key, HASH_ENTER, &found);
	if (!found)
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
		TupleDesc	desc = RelationGetDescr(rel);

		fk->values = palloc(sizeof(Datum) * nkeys);
		for (int k = 0; k < nkeys; k++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, keys[k] - 1);

			fk->values[k] = datumCopy(slot->tts_values[keys[k] - 1],
									  att->attbyval, att->attlen);
		}
		MemoryContextSwitchTo(old);
	}
}

/*
 * The end of a statement that wrote protected table "relid", which has
 * deferred invariants ("failed": some rows it wrote failed a deferred row
 * check): note its change and statement and arm the commit-time check.
 */
void
guard_deferred_arm(Oid relid, int64 change_id, bool failed)
{
	/* what was pending may have been checked and reset by SET CONSTRAINTS */
	GuardPending *p = guard_deferred_pending(relid);
	char	   *statement = guard_statement_brief();

	/* kept in place: a transaction may run millions of statements */
	p->change_id = change_id;
	strlcpy(p->statement, statement ? statement : "", sizeof(p->statement));
	if (failed)
		strlcpy(p->failed, p->statement, sizeof(p->failed));
	if (statement)
		pfree(statement);
	arm_deferred_check();
}

/*
 * After a schema change that changed the rows of protected table "relid":
 * check its validated invariants over the whole table at commit.
 */
void
guard_deferred_whole_table(Oid relid)
{
	guard_deferred_pending(relid)->after_ddl = true;
	arm_deferred_check();
}

/*
 * Check the deferred invariants of one table at commit, reporting what
 * fails.
 */
static void
check_pending(GuardPending *p, Relation rel)
{
	GuardInvariantList list;
	char	   *relation;
	GuardPolicy policy;
	int64	   *failing;
	List	  **samples;
	bool	   *whole;
	bool	   *keyed;
	bool		any_whole = false;
	bool		any_keyed = false;

	guard_invariants_of(rel, &list);
	relation = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
										  RelationGetRelationName(rel));
	policy = *guard_policy_lookup(rel);
	failing = palloc0(sizeof(int64) * Max(list.n, 1));
	samples = palloc0(sizeof(List *) * Max(list.n, 1));
	whole = palloc0(sizeof(bool) * Max(list.n, 1));
	keyed = palloc0(sizeof(bool) * Max(list.n, 1));

	/* each row check by key or over the whole table, never both */
	for (int i = 0; i < list.n; i++)
	{
		if (!list.defs[i].deferred || !list.defs[i].row_check)
			continue;
		whole[i] = p->overflow || (p->after_ddl && list.defs[i].validated);
		keyed[i] = !whole[i];
		any_whole |= whole[i];
		any_keyed |= keyed[i];
	}
	if (any_whole)
		guard_check_rows(&list, whole, NULL, failing, samples);
	if (any_keyed && hash_get_num_entries(p->failing) > 0)
		guard_check_rows(&list, keyed, p->failing, failing, samples);

	for (int i = 0; i < list.n; i++)
	{
		GuardInvariant *def = &list.defs[i];
		GuardCheckedAt at = {GUARD_CHECKED_AT_COMMIT, p->change_id,
		p->statement[0] ? p->statement : NULL, false};

		if (!def->deferred)
			continue;
		if (whole[i] && p->after_ddl)
			at.when = GUARD_CHECKED_AT_COMMIT_AFTER_DDL;
		else if (def->row_check && p->failed[0])
		{
			at.statement = p->failed;
			at.wrote_failing = true;
		}
		if (def->row_check && failing[i] > 0)
			guard_report_violation(guard_policy_mode(&policy), p->relid,
								   relation, def->name, failing[i],
								   samples[i], &at);
		else if (def->query && !guard_run_query_invariant(def, relation))
			guard_report_violation(guard_policy_mode(&policy), p->relid,
								   relation, def->name, 0, NIL, &at);
	}
}

/*
 * guard._check_deferred(): the deferred constraint trigger on guard.pending,
 * fired at COMMIT: re-check the rows remembered as failing (or whole tables),
 * and run the deferred query invariants of every table written.
 */
Datum
guard_check_deferred(PG_FUNCTION_ARGS)
{
	List	   *rels = pending_rels;
	ListCell   *lc;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("guard._check_deferred() was not called by trigger manager")));

	/* later statements arm a new check */
	pending_rels = NIL;
	token_armed = false;
	token_subid = InvalidSubTransactionId;

	foreach(lc, rels)
	{
		GuardPending *p = lfirst(lc);
		Relation	rel = try_table_open(p->relid, AccessShareLock);

		if (rel == NULL)
			continue;
		check_pending(p, rel);
		table_close(rel, AccessShareLock);
	}

	{
		GuardAsRole owner;

		guard_as_role_begin(&owner, InvalidOid);
		guard_run_sql("DELETE FROM guard.pending WHERE xid = pg_catalog.pg_current_xact_id()",
					  0, NULL, NULL, NULL);
		guard_as_role_end(&owner);
	}
	return PointerGetDatum(NULL);
}
