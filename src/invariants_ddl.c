/*-------------------------------------------------------------------------
 *
 * invariants_ddl.c
 *	  Invariants and schema changes: what a schema change of a protected
 *	  table checks.
 *
 * A schema change that may change the values of the rows already there
 * (ALTER COLUMN TYPE, ADD COLUMN with a default, ATTACH PARTITION, a
 * subcommand guard does not know) has the validated row checks of the
 * table checked over the whole table, immediate ones at once and deferred
 * ones at commit (invariants_commit.c).  Those added accepting the rows
 * there (accept_existing) are not: PostgreSQL does not validate a NOT VALID
 * constraint on ALTER TABLE either.  A schema change that writes no value
 * (ADD COLUMN without default, RENAME, SET DEFAULT, SET NOT NULL, ...)
 * checks nothing, but a RENAME must leave every row check compiling:
 * guard keeps them as text.  ddl.c asks and calls.
 *
 * Calls invariants_commit.c, invariants_eval.c, policy.c and relcache.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/pg_type.h"
#include "nodes/parsenodes.h"
#include "parser/parse_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "guard.h"

/*
 * The schema-qualified name of "rel", for messages.
 */
static char *
qualified_name(Relation rel)
{
	return quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
									  RelationGetRelationName(rel));
}

/*
 * Does expression "expr" of a column definition give rows a value: not
 * missing, nor a NULL constant (raw, or cooked)?
 */
static bool
gives_value(Node *expr)
{
	if (expr == NULL)
		return false;
	if (IsA(expr, A_Const))
		return !((A_Const *) expr)->isnull;
	if (IsA(expr, Const))
		return !((Const *) expr)->constisnull;
	return true;
}

/*
 * Does ADD COLUMN "def" write a value into the rows already there: a
 * default, an identity or a generated column, or a type (a domain, or one
 * not found, such as serial) that may bring its own default?
 */
static bool
column_writes(ColumnDef *def)
{
	ListCell   *lc;
	Oid			typid;

	if (gives_value(def->raw_default) || gives_value(def->cooked_default) ||
		def->identity || def->generated)
		return true;
	foreach(lc, def->constraints)
	{
		Constraint *c = lfirst(lc);

		if (c->contype == CONSTR_IDENTITY || c->contype == CONSTR_GENERATED ||
			(c->contype == CONSTR_DEFAULT &&
			 (gives_value(c->raw_expr) || c->cooked_expr != NULL)))
			return true;
	}
	typid = def->typeName ? LookupTypeNameOid(NULL, def->typeName, true) : InvalidOid;
	return !OidIsValid(typid) || get_typtype(typid) == TYPTYPE_DOMAIN;
}

/*
 * Could ALTER TABLE subcommand "cmd" change what the rows already in the
 * table hold, so that a row check that held may fail now?  Those that
 * change the catalog only (defaults to come, NOT NULL, constraints,
 * statistics, storage, triggers, identity, ownership, ...) cannot; a
 * subcommand not named here is assumed to.
 */
bool
guard_invariants_alter_writes(AlterTableCmd *cmd)
{
	switch (cmd->subtype)
	{
		case AT_AddColumn:
			return column_writes(castNode(ColumnDef, cmd->def));
		case AT_ColumnDefault:
		case AT_CookedColumnDefault:
		case AT_DropNotNull:
		case AT_SetNotNull:
		case AT_CheckNotNull:
		case AT_SetStatistics:
		case AT_SetOptions:
		case AT_ResetOptions:
		case AT_SetStorage:
		case AT_SetCompression:
		case AT_DropExpression:
		case AT_AddIndex:
		case AT_AddConstraint:
		case AT_AddIndexConstraint:
		case AT_AlterConstraint:
		case AT_ValidateConstraint:
		case AT_DropConstraint:
		case AT_AlterColumnGenericOptions:
		case AT_ChangeOwner:
		case AT_ClusterOn:
		case AT_DropCluster:
		case AT_SetLogged:
		case AT_SetUnLogged:
		case AT_SetAccessMethod:
		case AT_SetTableSpace:
		case AT_SetRelOptions:
		case AT_ResetRelOptions:
		case AT_ReplaceRelOptions:
		case AT_EnableTrig:
		case AT_EnableAlwaysTrig:
		case AT_EnableReplicaTrig:
		case AT_DisableTrig:
		case AT_EnableTrigAll:
		case AT_DisableTrigAll:
		case AT_EnableTrigUser:
		case AT_DisableTrigUser:
		case AT_EnableRule:
		case AT_EnableAlwaysRule:
		case AT_EnableReplicaRule:
		case AT_DisableRule:
		case AT_EnableRowSecurity:
		case AT_DisableRowSecurity:
		case AT_ForceRowSecurity:
		case AT_NoForceRowSecurity:
		case AT_ReplicaIdentity:
		case AT_GenericOptions:
		case AT_DetachPartition:
		case AT_DetachPartitionFinalize:
		case AT_AddIdentity:
		case AT_SetIdentity:
		case AT_DropIdentity:
			return false;
		default:
			return true;
	}
}

/*
 * After a RENAME of protected table "rel" or of one of its columns, which
 * writes nothing: its row checks, kept as text, must still compile, or
 * every later write to the table would fail on them.  Refuses the rename
 * otherwise.  A GuardDdlFinish of ddl.c's RENAME record: true, record it.
 */
bool
guard_invariants_after_rename(GuardDdlRecord *rec, Relation rel)
{
	GuardInvariant *defs;
	int			n;
	MemoryContext cxt = CurrentMemoryContext;

	/* a partition has no invariants of its own */
	if (!guard_policy_lookup(rel)->found ||
		guard_policy_lookup(rel)->relid != RelationGetRelid(rel))
		return true;
	n = guard_invariants_read(RelationGetRelid(rel), cxt, &defs);
	for (int i = 0; i < n; i++)
	{
		if (defs[i].row_check == NULL)
			continue;
		PG_TRY();
		{
			(void) guard_compile_row_check(rel, defs[i].row_check,
										   defs[i].search_path);
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("invariant \"%s\" on table %s no longer compiles after the rename",
							defs[i].name, qualified_name(rel)),
					 errdetail_internal("%s", edata->message),
					 errhint("Drop the invariant before the rename and add it again after it, with the new name.")));
		}
		PG_END_TRY();
	}
	return true;
}

/*
 * After a schema change that may have changed the rows of a protected
 * table: its validated row checks hold for the whole table, checked at
 * commit (deferred) or now.  Those added accepting the rows there are
 * not, as ALTER TABLE does not validate a NOT VALID constraint.
 */
void
guard_invariants_after_ddl(Relation rel)
{
	GuardRelCache *entry = guard_relcache_lookup(rel);
	GuardPolicy policy;
	bool		any_row = false;
	bool		any_immediate = false;

	if (entry == NULL)
		return;
	policy = entry->policy;
	for (int i = 0; i < entry->ninvariants; i++)
	{
		if (entry->invariants[i].row_check && entry->invariants[i].validated)
		{
			any_row = true;
			any_immediate |= !entry->invariants[i].deferred;
		}
	}
	if (!any_row)
		return;
	if (any_immediate)
	{
		Relation	prel = table_open(policy.relid, AccessShareLock);
		char	   *relation = qualified_name(prel);
		GuardInvariantList list;
		bool	   *immediate;
		int64	   *failing;
		List	  **samples;
		GuardCheckedAt at = {GUARD_CHECKED_AFTER_DDL, 0, NULL};

		/* only the immediate ones now; deferred ones at commit */
		guard_invariants_of(prel, &list);
		immediate = palloc0(sizeof(bool) * Max(list.n, 1));
		failing = palloc0(sizeof(int64) * Max(list.n, 1));
		samples = palloc0(sizeof(List *) * Max(list.n, 1));
		for (int i = 0; i < list.n; i++)
			immediate[i] = !list.defs[i].deferred && list.defs[i].validated;
		guard_check_rows(&list, immediate, NULL, failing, samples);
		for (int i = 0; i < list.n; i++)
		{
			if (immediate[i] && list.defs[i].row_check && failing[i] > 0)
				guard_report_violation(guard_policy_mode(&policy), policy.relid,
									   relation, list.defs[i].name,
									   failing[i], samples[i], &at);
		}
		table_close(prel, AccessShareLock);
	}
	guard_deferred_whole_table(policy.relid);
}
