/*-------------------------------------------------------------------------
 *
 * label_state.c
 *	  The label in force for a change, and the changes waiting for one.
 *
 * Each change records the label in force when it was made, and where it
 * came from: guard.label() called earlier in the transaction, else the
 * setting guard.label, else the label that a migration tool which writes
 * its bookkeeping row before the migration (golang-migrate) put in force
 * for the session.  Changes made with no label wait for the bookkeeping row
 * that tools write after the migration: labels.c gives them its name.  They
 * may wait across transactions of the session (Django records a migration
 * with deferred SQL after its transaction commits), so the change sets that
 * committed with unlabelled changes are remembered, a bounded number of
 * them, until a bookkeeping row names them.  A restore's own changes wait
 * for nothing: no migration made them.
 *
 * Calls spi.c and catalog.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "guard.h"

/* committed change sets of the session waiting for a bookkeeping row */
#define MAX_WAITING_CHANGESETS	256

/* the label guard.label() put in force in this transaction, or NULL */
static char *xact_label = NULL;	/* in TopTransactionContext */
static SubTransactionId xact_label_subid = InvalidSubTransactionId;

/* the change set of this transaction with unlabelled changes, or 0 */
static int64 xact_unlabelled = 0;

/* the current transaction restores: its changes wait for no label */
static bool xact_restores = false;

/*
 * The session's committed change sets with unlabelled changes, oldest
 * first, since the last bookkeeping row named them (a fixed array: it is
 * filled at COMMIT, where nothing may fail).
 */
static int64 waiting[MAX_WAITING_CHANGESETS];
static int	nwaiting = 0;

/*
 * The label a tool put in force for the session by writing its bookkeeping
 * row before the migration; "next" is the one the current transaction sets
 * (NULL label: cleared), which takes effect at COMMIT.  All in
 * TopMemoryContext.
 */
typedef struct SessionLabel
{
	char	   *label;
	char	   *source;
	char	   *bookkeeping;
} SessionLabel;

static SessionLabel *session_label = NULL;
static SessionLabel *next_session_label = NULL;
static bool next_session_label_set = false;

/*
 * Free a SessionLabel.
 */
static void
session_label_free(SessionLabel *l)
{
	if (l == NULL)
		return;
	if (l->label)
		pfree(l->label);
	if (l->source)
		pfree(l->source);
	if (l->bookkeeping)
		pfree(l->bookkeeping);
	pfree(l);
}

/*
 * At COMMIT: the change set's unlabelled changes wait for a bookkeeping row
 * of a later transaction, and a session label set in the transaction takes
 * effect.  Nothing here allocates or fails.
 */
static void
label_state_at_commit(void)
{
	if (xact_unlabelled != 0 && !xact_restores)
	{
		if (nwaiting == MAX_WAITING_CHANGESETS)
		{
			memmove(waiting, waiting + 1, sizeof(int64) * (nwaiting - 1));
			nwaiting--;
		}
		waiting[nwaiting++] = xact_unlabelled;
	}
	if (next_session_label_set)
	{
		SessionLabel *old = session_label;

		session_label = next_session_label;
		next_session_label = old;	/* freed after, outside the commit */
	}
}

/*
 * At the end of a transaction: what it put in force ends with it.
 */
static void
label_state_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			label_state_at_commit();
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
			xact_label = NULL;
			xact_label_subid = InvalidSubTransactionId;
			xact_unlabelled = 0;
			xact_restores = false;
			if (next_session_label_set)
			{
				/* the one replaced at COMMIT, or the one an abort drops */
				session_label_free(next_session_label);
				next_session_label = NULL;
				next_session_label_set = false;
			}
			break;
		default:
			break;
	}
}

/*
 * A subtransaction that called guard.label() aborted: the call is undone.
 */
static void
label_state_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							 SubTransactionId parentSubid, void *arg)
{
	if (xact_label_subid != mySubid)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		xact_label = NULL;
		xact_label_subid = InvalidSubTransactionId;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		xact_label_subid = parentSubid;
}

/*
 * Called by guard_changes_init(): follow transactions and subtransactions.
 */
void
guard_label_state_init(void)
{
	RegisterXactCallback(label_state_xact_callback, NULL);
	RegisterSubXactCallback(label_state_subxact_callback, NULL);
}

/*
 * Fill the label columns of a change record of change set "changeset_id"
 * with the label in force: the transaction's guard.label(), else the
 * setting guard.label, else a label a migration tool put in force for the
 * session; else none, and the change waits for a bookkeeping row to name
 * it.
 */
void
guard_label_in_force(int64 changeset_id, Datum *values, bool *nulls)
{
	const char *label = NULL;
	const char *source = NULL;
	const char *bookkeeping = NULL;

	if (xact_label != NULL)
	{
		label = xact_label;
		source = "guard.label()";
	}
	else if (guard_label_setting != NULL && guard_label_setting[0] != '\0')
	{
		label = guard_label_setting;
		source = "setting";
	}
	else if (session_label != NULL && session_label->label != NULL)
	{
		label = session_label->label;
		source = session_label->source;
		bookkeeping = session_label->bookkeeping;
	}

	nulls[Anum_change_label - 1] = (label == NULL);
	nulls[Anum_change_label_source - 1] = (label == NULL);
	nulls[Anum_change_bookkeeping - 1] = (bookkeeping == NULL);
	if (label != NULL)
	{
		values[Anum_change_label - 1] = CStringGetTextDatum(label);
		values[Anum_change_label_source - 1] = CStringGetTextDatum(source);
	}
	else if (!xact_restores)
		xact_unlabelled = changeset_id;
	if (bookkeeping != NULL)
		values[Anum_change_bookkeeping - 1] =
			DirectFunctionCall1(jsonb_in, CStringGetDatum(bookkeeping));
}

/*
 * guard.label(): "label" is in force for the rest of the transaction, and
 * names the transaction's changes made so far with none.
 */
void
guard_label_set_xact(const char *label)
{
	if (xact_unlabelled != 0)
	{
		guard_label_changes(&xact_unlabelled, 1, label, "guard.label()", NULL);
		xact_unlabelled = 0;
	}
	xact_label = MemoryContextStrdup(TopTransactionContext, label);
	xact_label_subid = GetCurrentSubTransactionId();
}

/*
 * The current transaction is a restore: its changes are no migration's.
 */
void
guard_label_restoring(void)
{
	xact_restores = true;
	xact_unlabelled = 0;
}

/*
 * Give label "label" from "source" (and "bookkeeping", the JSON of the
 * tool's row, or NULL) to the changes of change sets "changesets" that
 * have none yet.
 */
void
guard_label_changes(const int64 *changesets, int n, const char *label,
					const char *source, const char *bookkeeping)
{
	GuardAsRole owner;
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, INT8ARRAYOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	if (n == 0)
		return;
	for (int i = 0; i < n; i++)
		elems[i] = Int64GetDatum(changesets[i]);
	values[0] = CStringGetTextDatum(label);
	values[1] = CStringGetTextDatum(source);
	if (bookkeeping)
		values[2] = CStringGetTextDatum(bookkeeping);
	else
		nulls[2] = 'n';
	values[3] = PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
												true, TYPALIGN_DOUBLE));
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("UPDATE guard.change SET label = $1, label_source = $2,"
				  " bookkeeping = $3::pg_catalog.jsonb"
				  " WHERE changeset_id OPERATOR(pg_catalog.=) ANY ($4) AND label IS NULL",
				  4, types, values, nulls);
	guard_as_role_end(&owner);
}

/*
 * The change sets whose changes wait for a label: the session's committed
 * ones since the last bookkeeping row, and the current one if it has
 * unlabelled changes.  Returns a palloc'd array of *n ids.
 */
int64 *
guard_unlabelled_changesets(int *n)
{
	int64	   *ids = palloc(sizeof(int64) * (nwaiting + 1));

	memcpy(ids, waiting, sizeof(int64) * nwaiting);
	*n = nwaiting;
	if (xact_unlabelled != 0)
		ids[(*n)++] = xact_unlabelled;
	return ids;
}

/*
 * A bookkeeping row named the changes that waited: none waits any more.
 */
void
guard_unlabelled_forget(void)
{
	nwaiting = 0;
	xact_unlabelled = 0;
}

/*
 * DISCARD ALL (a connection pooler's reset between clients): the session's
 * label and its change sets waiting for a bookkeeping row belong to the
 * client that made them, not to the next one.  DISCARD ALL cannot run in a
 * transaction block, so nothing of the current transaction is pending.
 */
void
guard_label_state_discard(void)
{
	session_label_free(session_label);
	session_label = NULL;
	nwaiting = 0;
}

/*
 * From the next COMMIT on, "label" from "source" is in force for the
 * session's changes (a tool that writes its bookkeeping row before the
 * migration); NULL clears it.
 */
void
guard_session_label_set(const char *label, const char *source,
						const char *bookkeeping)
{
	SessionLabel *l = NULL;

	if (label != NULL)
	{
		l = MemoryContextAllocZero(TopMemoryContext, sizeof(SessionLabel));
		l->label = MemoryContextStrdup(TopMemoryContext, label);
		l->source = MemoryContextStrdup(TopMemoryContext, source);
		if (bookkeeping)
			l->bookkeeping = MemoryContextStrdup(TopMemoryContext, bookkeeping);
	}
	if (next_session_label_set)
		session_label_free(next_session_label);
	next_session_label = l;
	next_session_label_set = true;
}
