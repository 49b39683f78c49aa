/*-------------------------------------------------------------------------
 *
 * hooks.c
 *	  Executor and ProcessUtility hooks.
 *
 * The executor hook tells changes.c which statement is finishing, so that
 * the capture trigger, which fires inside ExecutorFinish, can record the
 * statement's own text and command type.  The utility hook does the same for
 * COPY, keeps guard's triggers from being dropped or disabled by anyone but
 * a superuser (who is logged), hands schema changes of protected tables to
 * ddl.c, and gives guard's triggers to new partitions.  Every statement
 * goes on down the chain, a DROP whose tables guard moved to its trash
 * included (rewritten without them), so that the hooks installed after
 * guard's see it; the event triggers of such a DROP guard fires itself,
 * around it, so that they see every object it drops (drop.c).  trial.c's
 * object-access and log hooks are installed with these.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/namespace.h"
#include "catalog/pg_trigger.h"
#include "commands/extension.h"
#include "commands/event_trigger.h"
#include "nodes/makefuncs.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/scansup.h"
#include "tcop/utility.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "guard.h"

static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

static void guard_ExecutorFinish(QueryDesc *queryDesc);
static void guard_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
								 bool readOnlyTree,
								 ProcessUtilityContext context,
								 ParamListInfo params,
								 QueryEnvironment *queryEnv,
								 DestReceiver *dest, QueryCompletion *qc);

/*
 * Install the hooks, chained after any installed before guard.
 */
void
guard_install_hooks(void)
{
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = guard_ExecutorFinish;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = guard_ProcessUtility;
	guard_trial_install();
}

/*
 * Clip a statement out of a possibly multi-statement source string, as
 * pg_stat_statements does.
 */
static void
set_statement_text(GuardStatement *stmt, const char *source, int location,
				   int len)
{
	if (source == NULL)
	{
		stmt->text = NULL;
		stmt->len = 0;
		return;
	}
	/*
	 * The location and length are the parser's, into this very source text
	 * (as pg_stat_statements trusts them): no strlen of the whole text,
	 * which every statement of a long multi-statement string would pay.
	 */
	if (location < 0)
		location = 0;
	if (len <= 0)
		len = strlen(source + location);
	/* skip leading white space */
	while (len > 0 && scanner_isspace(source[location]))
	{
		location++;
		len--;
	}
	stmt->text = source + location;
	stmt->len = len;
}

/*
 * ExecutorFinish hook: AFTER statement triggers fire in here; let them know
 * which statement they belong to.
 */
static void
guard_ExecutorFinish(QueryDesc *queryDesc)
{
	const GuardStatement *save;
	GuardStatement stmt;

	set_statement_text(&stmt, queryDesc->sourceText,
					   queryDesc->plannedstmt->stmt_location,
					   queryDesc->plannedstmt->stmt_len);
	stmt.cmd = queryDesc->operation;
	stmt.is_copy = false;
	save = guard_set_statement(&stmt);

	PG_TRY();
	{
		if (prev_ExecutorFinish)
			prev_ExecutorFinish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
		guard_labels_after_statement(queryDesc);
	}
	PG_FINALLY();
	{
		(void) guard_set_statement(save);
	}
	PG_END_TRY();
}

/*
 * Does the trigger named "tgname" on relation "relid" belong to guard?
 */
static bool
is_guard_trigger_name(const char *tgname)
{
	return tgname != NULL && strncmp(tgname, "guard_", 6) == 0;
}

/*
 * Does the relation carry any trigger of guard's?
 */
static bool
relation_has_guard_trigger(Oid relid)
{
	Relation	rel;
	bool		found = false;

	rel = try_relation_open(relid, AccessShareLock);
	if (rel == NULL)
		return false;
	if (rel->trigdesc != NULL)
	{
		for (int i = 0; i < rel->trigdesc->numtriggers; i++)
		{
			if (is_guard_trigger_name(rel->trigdesc->triggers[i].tgname))
			{
				found = true;
				break;
			}
		}
	}
	relation_close(rel, AccessShareLock);
	return found;
}

/* what a command would do to guard's triggers */
typedef enum TriggerBypass
{
	BYPASS_DROP,
	BYPASS_RENAME,
	BYPASS_DISABLE
} TriggerBypass;

/*
 * Refuse (or, for a superuser, log and record) a command that would drop,
 * rename or disable one of guard's triggers, which would let writes bypass
 * capture.
 */
static void
check_trigger_bypass(TriggerBypass bypass, const char *relname, Oid relid)
{
	const char *what;			/* as the change record names it */
	const char *logged;
	const char *denied;

	switch (bypass)
	{
		case BYPASS_DROP:
			what = "drop";
			logged = gettext_noop("guard: superuser drops guard's capture on table \"%s\"");
			denied = gettext_noop("permission denied to drop guard's capture on table \"%s\"");
			break;
		case BYPASS_RENAME:
			what = "rename";
			logged = gettext_noop("guard: superuser renames guard's capture on table \"%s\"");
			denied = gettext_noop("permission denied to rename guard's capture on table \"%s\"");
			break;
		case BYPASS_DISABLE:
		default:
			what = "disable";
			logged = gettext_noop("guard: superuser disables guard's capture on table \"%s\"");
			denied = gettext_noop("permission denied to disable guard's capture on table \"%s\"");
			break;
	}

	if (superuser())
	{
		ereport(LOG,
				(errcode(ERRCODE_WARNING),
				 errmsg(logged, relname)));
		/* and recorded, in the transaction's change set */
		if (OidIsValid(relid) && OidIsValid(get_extension_oid("guard", true)))
		{
			Relation	rel = relation_open(relid, AccessShareLock);

			guard_change_record(rel, "CAPTURE BYPASS",
								psprintf("{\"what\": \"%s\"}", what));
			relation_close(rel, AccessShareLock);
		}
		return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg(denied, relname),
			 errdetail("Triggers named guard_* keep the before-images of writes to protected tables."),
			 errhint("Use guard.unprotect() to stop protecting the table.")));
}

/*
 * Look for commands that would bypass capture.
 */
static void
check_utility(Node *parsetree)
{
	if (guard_internal_ddl)
		return;

	switch (nodeTag(parsetree))
	{
		case T_DropStmt:
			{
				DropStmt   *drop = (DropStmt *) parsetree;
				ListCell   *lc;

				if (drop->removeType != OBJECT_TRIGGER)
					break;
				foreach(lc, drop->objects)
				{
					List	   *names = (List *) lfirst(lc);
					const char *tgname = strVal(llast(names));

					if (is_guard_trigger_name(tgname))
					{
						List	   *relname = list_truncate(list_copy(names),
															list_length(names) - 1);

						check_trigger_bypass(BYPASS_DROP,
											 NameListToString(relname),
											 RangeVarGetRelid(makeRangeVarFromNameList(relname),
															  NoLock, true));
					}
				}
				break;
			}
		case T_RenameStmt:
			{
				RenameStmt *rename = (RenameStmt *) parsetree;

				if (rename->renameType == OBJECT_TRIGGER &&
					is_guard_trigger_name(rename->subname))
					check_trigger_bypass(BYPASS_RENAME, rename->relation->relname,
										 RangeVarGetRelid(rename->relation, NoLock, true));
				break;
			}
		case T_AlterTableStmt:
			{
				AlterTableStmt *atstmt = (AlterTableStmt *) parsetree;
				ListCell   *lc;
				Oid			relid = InvalidOid;

				foreach(lc, atstmt->cmds)
				{
					AlterTableCmd *cmd = (AlterTableCmd *) lfirst(lc);
					bool		named = false;

					switch (cmd->subtype)
					{
						case AT_DisableTrig:
						case AT_EnableReplicaTrig:
							named = true;
							/* FALLTHROUGH */
						case AT_DisableTrigAll:
						case AT_DisableTrigUser:
							if (named && !is_guard_trigger_name(cmd->name))
								break;
							if (!OidIsValid(relid))
								relid = RangeVarGetRelid(atstmt->relation,
														 NoLock, true);
							if (OidIsValid(relid) &&
								relation_has_guard_trigger(relid))
								check_trigger_bypass(BYPASS_DISABLE,
													 atstmt->relation->relname, relid);
							break;
						default:
							break;
					}
				}
				break;
			}
		default:
			break;
	}
}

/*
 * The ProcessUtility hook's work: watch for capture bypasses; follow COPY
 * so that its capture is recorded with its text; hand schema changes to
 * ddl.c; pass the statement down the chain.  With "events", the caller
 * fires the statement's event triggers: it goes down as a subcommand, and
 * what it drops is recorded in a state of its own, not the statement's.
 */
static void
process_utility(PlannedStmt *pstmt, const char *queryString,
				bool readOnlyTree, ProcessUtilityContext context,
				ParamListInfo params, QueryEnvironment *queryEnv,
				DestReceiver *dest, QueryCompletion *qc, bool events)
{
	Node	   *parsetree = pstmt->utilityStmt;
	const GuardStatement *save = NULL;
	bool		is_copy = IsA(parsetree, CopyStmt);
	GuardStatement stmt;
	List	   *partitions = NIL;
	RangeVar   *created = NULL;
	ListCell   *lc;
	List	   *ddl_after;
	Node	   *replaced;
	bool		hold_cascade;
	int			hold_nestlevel = 0;
	int			hold_saved = 0;
	bool		swallow = false;

	check_utility(parsetree);

	/* DDL may alter or drop guard's own tables: none stays open (writer.c) */
	guard_writer_close_kept();

	/* a publication FOR ALL TABLES leaves guard's own tables out */
	pstmt = guard_publication_utility(pstmt);

	/*
	 * A partition created under, attached to or detached from a protected
	 * table gains or loses guard's triggers.  Only these commands: an event
	 * trigger on every ALTER TABLE would also fire during pg_restore's
	 * post-data steps and create the triggers that the dump is about to.
	 */
	if (IsA(parsetree, CreateStmt) && ((CreateStmt *) parsetree)->partbound)
		created = ((CreateStmt *) parsetree)->relation;
	else if (IsA(parsetree, AlterTableStmt) &&
			 ((AlterTableStmt *) parsetree)->objtype == OBJECT_TABLE)
	{
		foreach(lc, ((AlterTableStmt *) parsetree)->cmds)
		{
			AlterTableCmd *cmd = (AlterTableCmd *) lfirst(lc);

			if ((cmd->subtype == AT_AttachPartition ||
				 cmd->subtype == AT_DetachPartition) &&
				!((PartitionCmd *) cmd->def)->concurrent)
			{
				Oid			relid = RangeVarGetRelid(((PartitionCmd *) cmd->def)->name,
													 NoLock, true);

				if (OidIsValid(relid))
					partitions = lappend_oid(partitions, relid);
			}
		}
	}

	/* schema changes of protected tables: snapshot what they destroy */
	ddl_after = guard_ddl_before(pstmt, events, &replaced, &hold_cascade);
	if (replaced != parsetree)
	{
		PlannedStmt *copy = makeNode(PlannedStmt);

		memcpy(copy, pstmt, sizeof(PlannedStmt));
		copy->utilityStmt = replaced;
		pstmt = copy;
	}

	/* COPY: its capture is recorded with its text */
	if (is_copy)
	{
		set_statement_text(&stmt, queryString, pstmt->stmt_location,
						   pstmt->stmt_len);
		stmt.cmd = CMD_INSERT;
		stmt.is_copy = true;
		save = guard_set_statement(&stmt);
	}

	/*
	 * Every statement goes down the chain, a DROP whose tables guard moved
	 * to its trash included (as a DROP of the others, or of none), so that
	 * the hooks after guard see it.
	 */
	if (hold_cascade)
		hold_nestlevel = guard_trial_hold_begin(&hold_saved);
	if (events)
	{
		context = PROCESS_UTILITY_SUBCOMMAND;
		swallow = EventTriggerBeginCompleteQuery();
	}
	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		if (swallow)
			EventTriggerEndCompleteQuery();
		if (is_copy)
			(void) guard_set_statement(save);
		if (hold_cascade)
			guard_trial_hold_end(hold_nestlevel, hold_saved, false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (swallow)
		EventTriggerEndCompleteQuery();
	if (is_copy)
		(void) guard_set_statement(save);
	if (hold_cascade)
		guard_trial_hold_end(hold_nestlevel, hold_saved, true);

	guard_ddl_after(ddl_after);

	if (created)
	{
		Oid			relid = RangeVarGetRelid(created, NoLock, true);

		if (OidIsValid(relid))
			partitions = lappend_oid(partitions, relid);
	}
	foreach(lc, partitions)
		guard_sync_relation(lfirst_oid(lc));
}

/*
 * ProcessUtility hook.  A DROP TABLESPACE first gets guard's trash out of
 * its way (inuse.c).  A DROP that may reach protected tables has its event
 * triggers fired from here, around the statement, in the order
 * ProcessUtilitySlow fires them (drop.c's guard_drop_fires_events() says
 * when and why); then process_utility() does the rest.
 */
static void
guard_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					 bool readOnlyTree, ProcessUtilityContext context,
					 ParamListInfo params, QueryEnvironment *queryEnv,
					 DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	bool		cleanup;

	if (IsA(parsetree, DiscardStmt) &&
		((DiscardStmt *) parsetree)->target == DISCARD_ALL)
	{
		process_utility(pstmt, queryString, readOnlyTree, context, params,
						queryEnv, dest, qc, false);
		/* a pooler's reset between clients: the session's labels end */
		guard_label_state_discard();
		return;
	}
	if (IsA(parsetree, DropTableSpaceStmt) && !guard_internal_ddl)
		guard_inuse_tablespace((DropTableSpaceStmt *) parsetree,
							   context == PROCESS_UTILITY_TOPLEVEL);
	if (!guard_drop_fires_events(parsetree, context))
	{
		process_utility(pstmt, queryString, readOnlyTree, context, params,
						queryEnv, dest, qc, false);
		return;
	}

	/* standard_ProcessUtility's checks come before any event trigger */
	PreventCommandIfReadOnly(CreateCommandName(parsetree));
	PreventCommandIfParallelMode(CreateCommandName(parsetree));
	cleanup = EventTriggerBeginCompleteQuery();
	PG_TRY();
	{
		EventTriggerDDLCommandStart(parsetree);
		process_utility(pstmt, queryString, readOnlyTree, context, params,
						queryEnv, dest, qc, true);
		EventTriggerSQLDrop(parsetree);
		EventTriggerDDLCommandEnd(parsetree);
	}
	PG_FINALLY();
	{
		if (cleanup)
			EventTriggerEndCompleteQuery();
	}
	PG_END_TRY();
}
