/*-------------------------------------------------------------------------
 *
 * rehearse.c
 *	  guard.rehearse(sql): run a migration script on the real data, report
 *	  what each statement did, and roll everything back.
 *
 * The script is split with the raw parser into the statements a tool would
 * send one by one.  All of them run in one internal subtransaction with
 * guard active (capture, rails, invariants), each in a subtransaction of
 * its own so that an error is caught and reported instead of raised.  For
 * each statement the report gives its command tag, the relation it names,
 * the rows it touched, the locks it took (this backend's pg_locks before
 * and after it), its duration, every invariant of the protected tables it
 * wrote (guard.check_invariants() at the end of the statement) and the
 * snapshot bytes guard recorded for it, which restore would need.  At each
 * COMMIT of the script, and at the end, the would-be commit is run: SET
 * CONSTRAINTS ALL IMMEDIATE fires the deferred triggers (guard's deferred
 * invariant checks, deferred foreign keys) in a subtransaction that is
 * rolled back, and the invariants of every table written are checked.
 *
 * The first error stops the script, as it would abort the transaction
 * (later statements are reported as not run).  Statements that cannot run
 * inside a transaction block (VACUUM, CREATE INDEX CONCURRENTLY, ...) are
 * reported and skipped, not run (script.c splits and classifies).  Then
 * the subtransaction is rolled back: data, catalogs and guard's own
 * records are as before, and nontxn.c puts back what a rollback does not
 * undo (guard's id sequences, pg_class statistics written in place) and
 * names the other sequences the script advanced.
 *
 * Everything runs as the caller: the script needs the rights it needs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "tcop/dest.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_rehearse);

#define REHEARSE_NATTS	11

/* one statement of the script, or its final commit, and its report */
typedef struct Step
{
	GuardScriptStmt *stmt;		/* NULL for the final commit */
	int			number;			/* 1-based; the final commit is n + 1 */
	const char *kind;			/* its command tag */

	/* the report */
	char	   *relation;
	bool		has_rows;
	int64		rows;
	List	   *locks;			/* of char *: "mode on relation" */
	int64		usecs;
	bool		timed;
	List	   *invariants;		/* of char * */
	bool		has_bytes;
	int64		bytes;
	const char *outcome;		/* ok, error, not run */
	char	   *message;
} Step;

/* the state of one rehearsal */
typedef struct Rehearsal
{
	MemoryContext cxt;			/* where reports live: survives rollbacks */
	ResourceOwner owner;		/* the caller's resource owner */
	int64		changeset;		/* the change set the script writes to */
	int64		last_change;	/* the newest change already reported */
	List	   *tables;			/* protected tables written (oids) */
	int64		total_bytes;
	int			failed;			/* the statement that failed, or 0 */
} Rehearsal;

/* work done in a subtransaction that is always rolled back */
typedef void (*SubxactWork) (Rehearsal *r, Step *step, void *arg);

/*
 * Run "work" in a subtransaction and roll it back, whatever it did: its
 * locks are released and its writes undone.  Returns the error it raised,
 * as copied ErrorData in r->cxt, or NULL.
 */
static ErrorData *
in_rolled_back_subxact(Rehearsal *r, SubxactWork work, Step *step, void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		work(r, step, arg);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(r->cxt);
		edata = CopyErrorData();
		FlushErrorState();
	}
	PG_END_TRY();
	guard_subxact_rollback(oldcxt, oldowner);
	if (edata && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
		ReThrowError(edata);	/* a cancel or timeout ends the rehearsal */
	return edata;
}

/*
 * An error as the report shows it: "SQLSTATE: message", and its detail.
 */
static char *
error_text(ErrorData *edata)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s: %s", unpack_sql_state(edata->sqlerrcode),
					 edata->message ? edata->message : "");
	if (edata->detail)
		appendStringInfo(&buf, "\nDETAIL: %s", edata->detail);
	return buf.data;
}

/*
 * Subtransaction work: what guard recorded for the step (the changes of
 * the rehearsal's change set newer than the last one reported): snapshot
 * bytes, the tables written (into *(List **) arg), and their names when
 * the statement names no relation.
 */
static void
work_changes(Rehearsal *r, Step *step, void *arg)
{
	GuardAsRole owner;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2];
	StringInfoData names;

	r->changeset = guard_changeset_current(false);
	if (r->changeset == 0)
		return;
	values[0] = Int64GetDatum(r->changeset);
	values[1] = Int64GetDatum(r->last_change);
	initStringInfo(&names);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT c.change_id, c.relid, c.relation,"
				  "       COALESCE(pg_catalog.pg_column_size(c.data), 0)"
				  "       + COALESCE((SELECT pg_catalog.sum(pg_catalog.pg_column_size(s.data))"
				  "                     FROM guard.snapshot s WHERE s.change_id = c.change_id), 0)"
				  "  FROM guard.change c"
				  " WHERE c.changeset_id = $1 AND c.change_id > $2 ORDER BY c.change_id",
				  2, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		Oid			relid = DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull));
		char	   *relation = SPI_getvalue(tuple, desc, 3);
		int64		bytes = DatumGetInt64(SPI_getbinval(tuple, desc, 4, &isnull));
		MemoryContext old = MemoryContextSwitchTo(r->cxt);

		r->last_change = Max(r->last_change, id);
		step->has_bytes = true;
		step->bytes += bytes;
		r->total_bytes += bytes;
		if (!list_member_oid(*(List **) arg, relid))
		{
			*(List **) arg = lappend_oid(*(List **) arg, relid);
			appendStringInfo(&names, "%s%s", names.len ? ", " : "", relation);
		}
		MemoryContextSwitchTo(old);
	}
	guard_as_role_end(&owner);
	if (step->relation == NULL && names.len > 0)
		step->relation = MemoryContextStrdup(r->cxt, names.data);
}

/*
 * Subtransaction work: map the relations in *(List **) arg to the
 * protected tables whose policy covers them, adding those to r->tables
 * and replacing the list with them.
 */
static void
work_protected(Rehearsal *r, Step *step, void *arg)
{
	List	  **relids = (List **) arg;
	List	   *tables = NIL;
	ListCell   *lc;

	foreach(lc, *relids)
	{
		Relation	rel = try_relation_open(lfirst_oid(lc), AccessShareLock);
		const GuardPolicy *policy;

		if (rel == NULL)
			continue;
		if (rel->rd_rel->relkind == RELKIND_RELATION ||
			rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
		{
			policy = guard_policy_lookup(rel);
			if (policy->found)
			{
				MemoryContext old = MemoryContextSwitchTo(r->cxt);

				tables = list_append_unique_oid(tables, policy->relid);
				r->tables = list_append_unique_oid(r->tables, policy->relid);
				MemoryContextSwitchTo(old);
			}
		}
		relation_close(rel, AccessShareLock);
	}
	*relids = tables;
}

/*
 * Subtransaction work: the invariants of protected table *(Oid *) arg,
 * checked now over the whole table, appended to step->invariants.
 */
static void
work_invariants(Rehearsal *r, Step *step, void *arg)
{
	Oid			relid = *(Oid *) arg;
	Oid			types[1] = {OIDOID};
	Datum		values[1];
	char	   *relname = get_rel_name(relid);

	if (relname == NULL ||
		get_rel_namespace(relid) == get_namespace_oid(GUARD_TRASH_SCHEMA, true))
		return;					/* dropped since */
	values[0] = ObjectIdGetDatum(relid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT invariant, ok, failing_rows"
							  "  FROM guard.check_invariants($1) ORDER BY invariant",
							  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not check invariants");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *name = SPI_getvalue(tuple, desc, 1);
		char	   *ok = SPI_getvalue(tuple, desc, 2);
		char	   *failing = SPI_getvalue(tuple, desc, 3);
		char	   *result;
		MemoryContext old = MemoryContextSwitchTo(r->cxt);

		if (ok && strcmp(ok, "t") == 0)
			result = psprintf("%s.%s: ok", quote_identifier(relname), name);
		else if (failing)
			result = psprintf("%s.%s: violated by %s %s", quote_identifier(relname),
							  name, failing, strcmp(failing, "1") == 0 ? "row" : "rows");
		else
			result = psprintf("%s.%s: violated", quote_identifier(relname), name);
		step->invariants = lappend(step->invariants, result);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
}

/*
 * Check the invariants of the protected tables in "tables" into
 * step->invariants, each table in a subtransaction of its own: a check
 * that fails to run is reported as such.
 */
static void
check_tables(Rehearsal *r, Step *step, List *tables)
{
	ListCell   *lc;

	foreach(lc, tables)
	{
		Oid			relid = lfirst_oid(lc);
		ErrorData  *edata = in_rolled_back_subxact(r, work_invariants, step, &relid);

		if (edata)
		{
			MemoryContext old = MemoryContextSwitchTo(r->cxt);
			char	   *relname = get_rel_name(relid);

			step->invariants = lappend(step->invariants,
									   psprintf("%s: check failed: %s",
												relname ? quote_identifier(relname) : "?",
												edata->message));
			MemoryContextSwitchTo(old);
		}
	}
}

/*
 * Run one statement of the script in a subtransaction of its own, kept if
 * it succeeds.  Fills the report's rows and duration; returns the error,
 * or NULL.
 */
static ErrorData *
run_statement(Rehearsal *r, Step *step)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *edata = NULL;
	TimestampTz start = GetCurrentTimestamp();

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		SPIExecuteOptions options;
		int			rc;

		memset(&options, 0, sizeof(options));
		options.dest = None_Receiver;	/* rows a SELECT returns are counted */
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		rc = SPI_execute_extended(step->stmt->text, &options);
		if (rc < 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("statement cannot be rehearsed: %s", SPI_result_code_string(rc))));
		step->rows = SPI_processed;
		step->has_rows = rc != SPI_OK_UTILITY || SPI_processed > 0 ||
			strcmp(step->kind, "SELECT") == 0;
		SPI_finish();
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(r->cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	if (edata && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
		ReThrowError(edata);	/* a cancel or timeout ends the rehearsal */
	step->usecs = GetCurrentTimestamp() - start;
	step->timed = true;
	return edata;
}

/*
 * Is a statement of this kind (command tag) a write of rows?
 */
static bool
is_write(const char *kind)
{
	return strcmp(kind, "INSERT") == 0 || strcmp(kind, "UPDATE") == 0 ||
		strcmp(kind, "DELETE") == 0 || strcmp(kind, "MERGE") == 0 ||
		strcmp(kind, "COPY") == 0;
}

/*
 * Rehearse one statement to run: locks before and after, the statement,
 * what guard recorded, the invariants of the tables it wrote.  Returns
 * false if it failed (the script stops there).
 */
static bool
rehearse_statement(Rehearsal *r, Step *step)
{
	List	   *before = guard_locks_held();
	List	   *relids = NIL;
	ErrorData  *edata;
	ErrorData  *bookkeeping;
	char	   *relation = guard_script_relation(step->stmt->rv);
	Oid			named;

	edata = run_statement(r, step);
	if (edata && edata->sqlerrcode == ERRCODE_ACTIVE_SQL_TRANSACTION)
	{
		/* refused before doing anything: like the statements classify() knows */
		step->outcome = "not run";
		step->message = edata->message;
		step->has_rows = false;
		return true;
	}
	step->locks = guard_locks_taken(before, guard_locks_held());
	step->relation = relation ? relation : guard_script_relation(step->stmt->rv);
	if (edata)
	{
		step->outcome = "error";
		step->message = error_text(edata);
		return false;
	}
	step->outcome = "ok";

	bookkeeping = in_rolled_back_subxact(r, work_changes, step, &relids);
	if (bookkeeping)
		ReThrowError(bookkeeping);
	/* a write guard did not record (capture 'none') is checked too */
	named = step->stmt->rv ? RangeVarGetRelid(step->stmt->rv, NoLock, true) : InvalidOid;
	if (OidIsValid(named) && step->rows > 0 && is_write(step->kind))
		relids = list_append_unique_oid(relids, named);
	bookkeeping = in_rolled_back_subxact(r, work_protected, step, &relids);
	if (bookkeeping)
		ReThrowError(bookkeeping);
	check_tables(r, step, relids);
	return true;
}

/*
 * Subtransaction work: fire the deferred triggers as COMMIT would, and
 * note the locks they took.
 */
static void
work_commit(Rehearsal *r, Step *step, void *arg)
{
	List	   *before = (List *) arg;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SET CONSTRAINTS ALL IMMEDIATE", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not run the deferred checks");
	SPI_finish();
	step->locks = guard_locks_taken(before, guard_locks_held());
}

/*
 * The would-be commit: guard's deferred invariant checks and the other
 * deferred triggers, in a subtransaction rolled back afterwards (a later
 * part of the script still runs with the constraint modes of a new
 * transaction), then every invariant of the tables written so far.
 * Returns false if the commit would fail.
 */
static bool
rehearse_commit(Rehearsal *r, Step *step)
{
	TimestampTz start = GetCurrentTimestamp();
	ErrorData  *edata = in_rolled_back_subxact(r, work_commit, step, guard_locks_held());

	step->usecs = GetCurrentTimestamp() - start;
	step->timed = true;
	step->has_bytes = true;
	step->bytes = r->total_bytes;
	check_tables(r, step, r->tables);
	if (edata)
	{
		step->outcome = "error";
		step->message = error_text(edata);
		return false;
	}
	step->outcome = "ok";
	return true;
}

/*
 * Run the steps in order, the first failure stopping the script.
 */
static void
rehearse_steps(Rehearsal *r, List *steps)
{
	ListCell   *lc;

	foreach(lc, steps)
	{
		Step	   *step = lfirst(lc);

		if (r->failed)
		{
			step->outcome = "not run";
			step->message = psprintf("statement %d failed: the transaction would roll back",
									 r->failed);
			continue;
		}
		switch (step->stmt->action)
		{
			case GUARD_STMT_SKIP:
				step->outcome = "not run";
				step->message = pstrdup(step->stmt->why);
				break;
			case GUARD_STMT_COMMIT:
				if (!rehearse_commit(r, step))
					r->failed = step->number;
				break;
			case GUARD_STMT_RUN:
				if (!rehearse_statement(r, step))
					r->failed = step->number;
				break;
		}
	}
}

/*
 * The final row: the would-be commit at the end of the script, unless the
 * script ended with its own COMMIT.  NULL when none is needed.
 */
static Step *
rehearse_final_commit(Rehearsal *r, List *steps)
{
	Step	   *final;

	if (((Step *) llast(steps))->stmt->action == GUARD_STMT_COMMIT)
		return NULL;
	final = palloc0(sizeof(Step));
	final->number = list_length(steps) + 1;
	final->kind = "COMMIT";
	if (r->failed)
	{
		final->outcome = "not run";
		final->message = psprintf("statement %d failed: the transaction would roll back",
								  r->failed);
	}
	else
		rehearse_commit(r, final);
	return final;
}

/*
 * The steps of a script: one per statement.
 */
static List *
script_steps(const char *sql)
{
	List	   *steps = NIL;
	ListCell   *lc;

	foreach(lc, guard_script_split(sql))
	{
		Step	   *step = palloc0(sizeof(Step));

		step->stmt = lfirst(lc);
		step->number = step->stmt->number;
		step->kind = step->stmt->kind;
		steps = lappend(steps, step);
	}
	return steps;
}

/*
 * Emit the report rows.
 */
static void
put_steps(ReturnSetInfo *rsinfo, List *steps)
{
	ListCell   *lc;

	foreach(lc, steps)
	{
		Step	   *s = lfirst(lc);
		Datum		values[REHEARSE_NATTS];
		bool		nulls[REHEARSE_NATTS];
		Interval   *duration = palloc0(sizeof(Interval));

		memset(nulls, 0, sizeof(nulls));
		duration->time = s->usecs;
		values[0] = Int32GetDatum(s->number);
		values[1] = s->stmt ? CStringGetTextDatum(s->stmt->shown) : (Datum) 0;
		nulls[1] = s->stmt == NULL;
		values[2] = CStringGetTextDatum(s->kind);
		values[3] = s->relation ? CStringGetTextDatum(s->relation) : (Datum) 0;
		nulls[3] = s->relation == NULL;
		values[4] = Int64GetDatum(s->rows);
		nulls[4] = !s->has_rows;
		values[5] = s->locks ? PointerGetDatum(strlist_to_textarray(s->locks)) : (Datum) 0;
		nulls[5] = s->locks == NIL;
		values[6] = IntervalPGetDatum(duration);
		nulls[6] = !s->timed;
		values[7] = s->invariants ? PointerGetDatum(strlist_to_textarray(s->invariants)) : (Datum) 0;
		nulls[7] = s->invariants == NIL;
		values[8] = Int64GetDatum(s->bytes);
		nulls[8] = !s->has_bytes;
		values[9] = CStringGetTextDatum(s->outcome ? s->outcome : "not run");
		values[10] = s->message ? CStringGetTextDatum(s->message) : (Datum) 0;
		nulls[10] = s->message == NULL;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/*
 * guard.rehearse(sql text)
 */
Datum
guard_rehearse(PG_FUNCTION_ARGS)
{
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext oldcxt;
	Rehearsal	r;
	List	   *steps;
	GuardNonTxn *saved;
	Step	   *last;
	char	   *left;
	List	   *touched = NIL;

	guard_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	memset(&r, 0, sizeof(r));
	r.cxt = CurrentMemoryContext;
	r.owner = CurrentResourceOwner;
	steps = script_steps(sql);
	if (steps == NIL)
		return (Datum) 0;
	saved = guard_nontxn_save();
	r.changeset = guard_changeset_current(false);
	if (r.changeset != 0)
	{
		Step		earlier;
		List	   *relids = NIL;
		ErrorData  *edata;

		/* the caller's transaction wrote before: start after its changes */
		memset(&earlier, 0, sizeof(earlier));
		edata = in_rolled_back_subxact(&r, work_changes, &earlier, &relids);
		if (edata)
			ReThrowError(edata);
		r.total_bytes = 0;
	}

	/* the rehearsal: one subtransaction, always rolled back */
	oldcxt = CurrentMemoryContext;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		Step	   *final;

		rehearse_steps(&r, steps);
		final = rehearse_final_commit(&r, steps);
		if (final)
			steps = lappend(steps, final);
		touched = guard_locks_relids();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		edata = guard_subxact_abort(oldcxt, r.owner);
		/* guard's sequences still go back */
		(void) guard_nontxn_restore(saved, NIL);
		ReThrowError(edata);
	}
	PG_END_TRY();
	guard_subxact_rollback(oldcxt, r.owner);

	/* what the rollback left: said in the last row */
	left = guard_nontxn_restore(saved, touched);
	last = llast(steps);
	last->message = psprintf("%s%sRolled back: nothing of the script is kept.%s%s",
							 last->message ? last->message : "",
							 last->message ? "\n" : "",
							 left ? " " : "", left ? left : "");
	put_steps(rsinfo, steps);
	return (Datum) 0;
}
