/*-------------------------------------------------------------------------
 *
 * trial.c
 *	  Run a drop the way PostgreSQL would, in a subtransaction that is then
 *	  rolled back, to learn what it would do.
 *
 * guard turns the drop of a protected table into a move into its trash,
 * yet a statement must behave as it does without guard: fail with the same
 * error, report the same "drop cascades to" notice, and reach the same
 * objects.  Rather than guess, guard lets PostgreSQL itself run the drop
 * (RemoveRelations, RemoveObjects, DropOwnedObjects) in an internal
 * subtransaction, notes every object it deletes (object_access_hook,
 * OAT_DROP) and every message it reports (emit_log_hook), and rolls the
 * subtransaction back.  An error is raised again as it was, after the
 * messages that preceded it; otherwise the caller knows the exact set of
 * objects the statement drops, and re-emits the messages once it has done
 * its own work.
 *
 * While guard then passes the rewritten statement down the utility hook
 * chain, the "drop cascades to" notice that PostgreSQL reports for it is
 * held back: the trial's notice, which covers the whole statement, was
 * already sent.
 *
 * emit_log_hook only sees messages that go to the server log, so the
 * trial and the pass-through lower log_min_messages to NOTICE for their
 * duration and keep the messages it would not have logged out of the log.
 *
 * Calls no other file of guard.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/objectaddress.h"
#include "miscadmin.h"
#include "utils/elog.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "guard.h"

static object_access_hook_type prev_object_access = NULL;
static emit_log_hook_type prev_emit_log = NULL;

/* the trial running now, if any */
static GuardTrial *collecting = NULL;
static MemoryContext collect_cxt = NULL;

/* >0 while a pass-through must hold back PostgreSQL's cascade notice */
static int	hold_cascade_notices = 0;

/* the log_min_messages in force before guard lowered it */
static int	saved_log_min_messages = WARNING;

/*
 * Would a message of level "elevel" go to the server log under
 * log_min_messages "min_level"?  (elog.c's is_log_level_output, for the
 * levels below ERROR that this file deals with.)
 */
static bool
logged_at(int elevel, int min_level)
{
	if (elevel == LOG || elevel == LOG_SERVER_ONLY)
		return min_level == LOG || min_level <= ERROR;
	if (elevel == WARNING_CLIENT_ONLY)
		return false;
	if (min_level == LOG)
		return elevel >= FATAL;
	return elevel >= min_level;
}

/*
 * Is this PostgreSQL's "drop cascades to ..." notice?
 */
static bool
is_cascade_notice(const ErrorData *edata)
{
	return edata->funcname != NULL &&
		strcmp(edata->funcname, "reportDependentObjects") == 0;
}

/*
 * object_access_hook: note each object a trial deletes.
 */
static void
trial_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					int subId, void *arg)
{
	if (collecting != NULL && access == OAT_DROP)
	{
		MemoryContext old = MemoryContextSwitchTo(collect_cxt);
		ObjectAddress *addr = palloc(sizeof(ObjectAddress));

		addr->classId = classId;
		addr->objectId = objectId;
		addr->objectSubId = subId;
		collecting->dropped = lappend(collecting->dropped, addr);
		MemoryContextSwitchTo(old);
	}
	if (prev_object_access)
		prev_object_access(access, classId, objectId, subId, arg);
}

/*
 * emit_log_hook: during a trial, keep the messages below ERROR instead of
 * sending them; during a pass-through, hold back the cascade notice.
 * Either way a message log_min_messages would not have logged stays out of
 * the log.
 */
static void
trial_emit_log(ErrorData *edata)
{
	if (edata->elevel < ERROR && (collecting != NULL || hold_cascade_notices > 0))
	{
		if (collecting != NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(collect_cxt);
			GuardTrialMessage *m = palloc0(sizeof(GuardTrialMessage));

			m->elevel = edata->elevel;
			m->sqlerrcode = edata->sqlerrcode;
			m->message = edata->message ? pstrdup(edata->message) : NULL;
			m->detail = edata->detail ? pstrdup(edata->detail) : NULL;
			m->detail_log = edata->detail_log ? pstrdup(edata->detail_log) : NULL;
			m->hint = edata->hint ? pstrdup(edata->hint) : NULL;
			m->cascade = is_cascade_notice(edata);
			collecting->messages = lappend(collecting->messages, m);
			MemoryContextSwitchTo(old);
			edata->output_to_client = false;
			edata->output_to_server = false;
		}
		else if (is_cascade_notice(edata))
		{
			edata->output_to_client = false;
			edata->output_to_server = false;
		}
		else if (!logged_at(edata->elevel, saved_log_min_messages))
			edata->output_to_server = false;
	}
	if (prev_emit_log)
		prev_emit_log(edata);
}

/*
 * Install the hooks, chained after any installed before guard.  They do
 * nothing outside a trial or a pass-through.
 */
void
guard_trial_install(void)
{
	prev_object_access = object_access_hook;
	object_access_hook = trial_object_access;
	prev_emit_log = emit_log_hook;
	emit_log_hook = trial_emit_log;
}

/*
 * Lower log_min_messages to NOTICE in a new GUC nest level, so that
 * emit_log_hook sees notices; returns the nest level to pop, and the
 * level in force before in *saved.
 */
static int
lower_log_min_messages(int *saved)
{
	int			nestlevel = NewGUCNestLevel();

	*saved = saved_log_min_messages;
	saved_log_min_messages = log_min_messages;
	if (!logged_at(NOTICE, log_min_messages))
		(void) set_config_option("log_min_messages", "notice",
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
	return nestlevel;
}

/*
 * Run fn(arg) as a trial: in a subtransaction that is rolled back, with
 * the objects it deletes and the messages it reports kept in *trial (in
 * the caller's memory context).  If fn fails, the messages it reported are
 * sent and its error raised again.
 */
void
guard_trial(void (*fn) (void *arg), void *arg, GuardTrial *trial)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	int			nestlevel;
	int			saved;

	Assert(collecting == NULL);
	memset(trial, 0, sizeof(*trial));
	nestlevel = lower_log_min_messages(&saved);
	collect_cxt = oldcxt;
	collecting = trial;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		fn(arg);
		collecting = NULL;
		guard_subxact_rollback(oldcxt, oldowner);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		collecting = NULL;
		edata = guard_subxact_abort(oldcxt, oldowner);
		AtEOXact_GUC(true, nestlevel);
		saved_log_min_messages = saved;
		guard_trial_emit(trial, false);
		ReThrowError(edata);
	}
	PG_END_TRY();
	AtEOXact_GUC(true, nestlevel);
	saved_log_min_messages = saved;
}

/*
 * Send the messages a trial kept, as PostgreSQL would have: all of them,
 * or only its "drop cascades to" notice (cascade_only).
 */
void
guard_trial_emit(const GuardTrial *trial, bool cascade_only)
{
	ListCell   *lc;

	foreach(lc, trial->messages)
	{
		GuardTrialMessage *m = lfirst(lc);

		if (cascade_only && !m->cascade)
			continue;
		ereport(m->elevel,
				(errcode(m->sqlerrcode),
				 errmsg_internal("%s", m->message ? m->message : ""),
				 m->detail ? errdetail_internal("%s", m->detail) : 0,
				 m->detail_log ? errdetail_log("%s", m->detail_log) : 0,
				 m->hint ? errhint("%s", m->hint) : 0));
	}
}

/*
 * Begin passing a statement whose cascade notice a trial already sent:
 * PostgreSQL's own notice for it is held back.  Returns the GUC nest level
 * and fills *saved, to give back to guard_trial_hold_end().
 */
int
guard_trial_hold_begin(int *saved)
{
	int			nestlevel = lower_log_min_messages(saved);

	hold_cascade_notices++;
	return nestlevel;
}

/*
 * End what guard_trial_hold_begin() began; from a PG_FINALLY too ("ok"
 * false: an error is on its way, and its abort pops the GUC level).
 */
void
guard_trial_hold_end(int nestlevel, int saved, bool ok)
{
	hold_cascade_notices--;
	saved_log_min_messages = saved;
	if (ok)
		AtEOXact_GUC(true, nestlevel);
}
