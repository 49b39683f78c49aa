/*-------------------------------------------------------------------------
 *
 * script.c
 *	  A migration script split into the statements a tool would send, each
 *	  with its command tag, the relation it names, and whether it can run
 *	  inside a transaction block: what guard.rehearse() runs.
 *
 * Calls no other file of guard.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/defrem.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "parser/scansup.h"
#include "tcop/cmdtag.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "guard.h"

/*
 * The statement text without the white space and comments that lead it.
 */
static char *
shown_text(const char *text)
{
	const char *p = text;
	int			len;

	for (;;)
	{
		while (*p && scanner_isspace(*p))
			p++;
		if (p[0] == '-' && p[1] == '-')
		{
			while (*p && *p != '\n')
				p++;
		}
		else if (p[0] == '/' && p[1] == '*')
		{
			const char *end = strstr(p + 2, "*/");

			if (end == NULL)
				break;
			p = end + 2;
		}
		else
			break;
	}
	len = strlen(p);
	while (len > 0 && scanner_isspace(p[len - 1]))
		len--;
	return pnstrdup(p, len);
}

/*
 * The relation a statement names (its first, for those naming several),
 * or NULL.
 */
static RangeVar *
stmt_relation(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_InsertStmt:
			return ((InsertStmt *) stmt)->relation;
		case T_UpdateStmt:
			return ((UpdateStmt *) stmt)->relation;
		case T_DeleteStmt:
			return ((DeleteStmt *) stmt)->relation;
		case T_MergeStmt:
			return ((MergeStmt *) stmt)->relation;
		case T_AlterTableStmt:
			return ((AlterTableStmt *) stmt)->relation;
		case T_CreateStmt:
			return ((CreateStmt *) stmt)->relation;
		case T_IndexStmt:
			return ((IndexStmt *) stmt)->relation;
		case T_RenameStmt:
			return ((RenameStmt *) stmt)->relation;
		case T_CopyStmt:
			return ((CopyStmt *) stmt)->relation;
		case T_CreateTrigStmt:
			return ((CreateTrigStmt *) stmt)->relation;
		case T_ClusterStmt:
			return ((ClusterStmt *) stmt)->relation;
		case T_RefreshMatViewStmt:
			return ((RefreshMatViewStmt *) stmt)->relation;
		case T_CreateTableAsStmt:
			return ((CreateTableAsStmt *) stmt)->into->rel;
		case T_TruncateStmt:
			return linitial_node(RangeVar, ((TruncateStmt *) stmt)->relations);
		case T_LockStmt:
			return linitial_node(RangeVar, ((LockStmt *) stmt)->relations);
		case T_VacuumStmt:
			{
				List	   *rels = ((VacuumStmt *) stmt)->rels;

				return rels ? linitial_node(VacuumRelation, rels)->relation : NULL;
			}
		case T_DropStmt:
			{
				DropStmt   *drop = (DropStmt *) stmt;

				switch (drop->removeType)
				{
					case OBJECT_TABLE:
					case OBJECT_INDEX:
					case OBJECT_VIEW:
					case OBJECT_MATVIEW:
					case OBJECT_SEQUENCE:
					case OBJECT_FOREIGN_TABLE:
						return makeRangeVarFromNameList((List *) linitial(drop->objects));
					default:
						return NULL;
				}
			}
		default:
			return NULL;
	}
}

/*
 * Why a statement cannot run inside a transaction block (it would fail
 * there before doing anything), or NULL.  Errors with SQLSTATE 25001 are
 * treated alike for the statements not listed here.
 */
static const char *
not_in_transaction(Node *stmt)
{
	ListCell   *lc;

	switch (nodeTag(stmt))
	{
		case T_VacuumStmt:
			return ((VacuumStmt *) stmt)->is_vacuumcmd ? "VACUUM" : NULL;
		case T_IndexStmt:
			return ((IndexStmt *) stmt)->concurrent ? "CREATE INDEX CONCURRENTLY" : NULL;
		case T_DropStmt:
			return ((DropStmt *) stmt)->concurrent ? "DROP INDEX CONCURRENTLY" : NULL;
		case T_ReindexStmt:
			{
				ReindexStmt *reindex = (ReindexStmt *) stmt;

				foreach(lc, reindex->params)
				{
					DefElem    *opt = lfirst_node(DefElem, lc);

					if (strcmp(opt->defname, "concurrently") == 0 && defGetBoolean(opt))
						return "REINDEX CONCURRENTLY";
				}
				return reindex->kind == REINDEX_OBJECT_SCHEMA ||
					reindex->kind == REINDEX_OBJECT_SYSTEM ||
					reindex->kind == REINDEX_OBJECT_DATABASE ? "REINDEX" : NULL;
			}
		case T_ClusterStmt:
			return ((ClusterStmt *) stmt)->relation == NULL ? "CLUSTER" : NULL;
		case T_AlterTableStmt:
			foreach(lc, ((AlterTableStmt *) stmt)->cmds)
			{
				AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

				if (cmd->subtype == AT_DetachPartition &&
					((PartitionCmd *) cmd->def)->concurrent)
					return "DETACH PARTITION CONCURRENTLY";
			}
			return NULL;
		case T_CreatedbStmt:
			return "CREATE DATABASE";
		case T_DropdbStmt:
			return "DROP DATABASE";
		case T_CreateTableSpaceStmt:
			return "CREATE TABLESPACE";
		case T_DropTableSpaceStmt:
			return "DROP TABLESPACE";
		case T_AlterSystemStmt:
			return "ALTER SYSTEM";
		default:
			return NULL;
	}
}

/*
 * Decide what to do with one statement; fills stmt->action and, for one
 * not run, stmt->why.
 */
static void
classify(GuardScriptStmt *stmt, Node *parsetree)
{
	const char *what;

	stmt->action = GUARD_STMT_RUN;
	if (IsA(parsetree, TransactionStmt))
	{
		TransactionStmt *ts = (TransactionStmt *) parsetree;

		if (ts->kind == TRANS_STMT_COMMIT)
			stmt->action = GUARD_STMT_COMMIT;
		else
		{
			stmt->action = GUARD_STMT_SKIP;
			stmt->why = ts->kind == TRANS_STMT_BEGIN || ts->kind == TRANS_STMT_START ?
				"rehearse runs the whole script in one transaction" :
				"rehearse does not follow transaction control other than BEGIN and COMMIT";
		}
	}
	else if ((what = not_in_transaction(parsetree)) != NULL)
	{
		stmt->action = GUARD_STMT_SKIP;
		stmt->why = psprintf("%s cannot run inside a transaction block", what);
	}
	else if (IsA(parsetree, CopyStmt) && ((CopyStmt *) parsetree)->filename == NULL &&
			 !((CopyStmt *) parsetree)->is_program)
	{
		stmt->action = GUARD_STMT_SKIP;
		stmt->why = "COPY from or to the client cannot be rehearsed";
	}
}

/*
 * Error context while parsing a script: a syntax error points into the
 * script, not into the query that passed it.
 */
static void
script_parse_error_callback(void *arg)
{
	int			pos = geterrposition();

	if (pos > 0)
	{
		errposition(0);
		internalerrposition(pos);
		internalerrquery((const char *) arg);
	}
	errcontext("script given to guard.rehearse()");
}

/*
 * Split script "sql" into its statements (a List of GuardScriptStmt), as
 * the raw parser sees them: the statements a tool would send one by one.
 * A script that does not parse raises the parser's error.
 */
List *
guard_script_split(const char *sql)
{
	List	   *raws;
	List	   *stmts = NIL;
	ListCell   *lc;
	ErrorContextCallback errcallback;

	errcallback.callback = script_parse_error_callback;
	errcallback.arg = (void *) sql;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	raws = pg_parse_query(sql);
	error_context_stack = errcallback.previous;

	foreach(lc, raws)
	{
		RawStmt    *raw = lfirst_node(RawStmt, lc);
		GuardScriptStmt *stmt = palloc0(sizeof(GuardScriptStmt));
		int			len = raw->stmt_len > 0 ? raw->stmt_len :
			(int) strlen(sql + raw->stmt_location);

		stmt->number = foreach_current_index(lc) + 1;
		stmt->text = pnstrdup(sql + raw->stmt_location, len);
		stmt->shown = shown_text(stmt->text);
		stmt->kind = GetCommandTagName(CreateCommandTag(raw->stmt));
		stmt->rv = stmt_relation(raw->stmt);
		classify(stmt, raw->stmt);
		stmts = lappend(stmts, stmt);
	}
	return stmts;
}

/*
 * The qualified name of the relation "rv" names, if it exists now, else
 * NULL.
 */
char *
guard_script_relation(RangeVar *rv)
{
	Oid			relid;

	if (rv == NULL)
		return NULL;
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (!OidIsValid(relid))
		return NULL;
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}
