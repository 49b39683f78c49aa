/*-------------------------------------------------------------------------
 *
 * ddl_alter.c
 *	  The subcommands of ALTER TABLE on a protected table: each kind
 *	  recorded with what its undo needs and undone, side by side; and the
 *	  lookup of every kind's undo (this file's, ddl_constraint.c's,
 *	  ddl_index.c's and ddl_table.c's).
 *
 * One ALTER TABLE statement is one change per subcommand, each of its own
 * kind.  Their change ids are reserved before the command runs, in the
 * order PostgreSQL applies the subcommands (its passes: drops, type
 * changes, added columns, constraints, column attributes, the rest), so
 * that restore, newest first, undoes them in the reverse: a constraint on
 * an added column goes before the column, a default comes back after the
 * column's type.
 *
 * The kinds of this file (ddl_constraint.c, ddl_index.c, ddl_table.c and
 * ddl_column.c hold the others):
 *
 *	SET DEFAULT, DROP DEFAULT		the column's default before
 *	SET NOT NULL, DROP NOT NULL		whether it was NOT NULL
 *	SET STATISTICS, SET STORAGE,	the column's attribute before
 *	SET COMPRESSION
 *	ENABLE TRIGGER, DISABLE TRIGGER	the state of each trigger it reaches
 *									(guard's own aside)
 *	ENABLE, DISABLE, FORCE, NO FORCE ROW LEVEL SECURITY
 *	CLUSTER ON, SET WITHOUT CLUSTER, REPLICA IDENTITY,
 *	SET STORAGE PARAMETERS, RESET STORAGE PARAMETERS
 *
 * Any other subcommand is recorded as kind ALTER TABLE with its name, and
 * restore refuses it naming it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "guard.h"

/*
 * The order in which ALTER TABLE applies a subcommand (tablecmds.c's
 * AT_PASS_*, after parse analysis has sorted constraints by type).
 */
static int
alter_pass(const AlterTableCmd *cmd)
{
	switch (cmd->subtype)
	{
		case AT_DropColumn:
		case AT_DropNotNull:
		case AT_DropConstraint:
		case AT_DropExpression:
		case AT_DropIdentity:
			return 0;
		case AT_ColumnDefault:
			return cmd->def ? 9 : 0;
		case AT_AlterColumnType:
			return 1;
		case AT_AddColumn:
			return 4;
		case AT_SetNotNull:
			return 6;
		case AT_AddConstraint:
			switch (castNode(Constraint, cmd->def)->contype)
			{
				case CONSTR_PRIMARY:
				case CONSTR_UNIQUE:
				case CONSTR_EXCLUSION:
					return 7;
				default:
					return 9;
			}
		case AT_AddIndexConstraint:
			return 7;
		case AT_AddIndex:
			return 8;
		default:
			return 10;
	}
}

/* a subcommand and its place in the statement, for sorting */
typedef struct PassOrder
{
	int			pass;
	int			position;
	AlterTableCmd *cmd;
} PassOrder;

/* qsort comparator: by pass, then by position in the statement */
static int
pass_order_cmp(const void *a, const void *b)
{
	const PassOrder *x = a;
	const PassOrder *y = b;

	if (x->pass != y->pass)
		return x->pass < y->pass ? -1 : 1;
	return x->position < y->position ? -1 : x->position > y->position;
}

/*
 * The subcommands of an ALTER TABLE in the order PostgreSQL applies them.
 */
List *
guard_alter_in_pass_order(List *cmds)
{
	int			n = list_length(cmds);
	PassOrder  *order = palloc(sizeof(PassOrder) * Max(n, 1));
	List	   *sorted = NIL;
	ListCell   *lc;

	foreach(lc, cmds)
	{
		int			i = foreach_current_index(lc);

		order[i].cmd = lfirst_node(AlterTableCmd, lc);
		order[i].pass = alter_pass(order[i].cmd);
		order[i].position = i;
	}
	qsort(order, n, sizeof(PassOrder), pass_order_cmp);
	for (int i = 0; i < n; i++)
		sorted = lappend(sorted, order[i].cmd);
	return sorted;
}

/*
 * The kind a subcommand is recorded as, or NULL when guard cannot undo it.
 */
static const char *
alter_kind_name(const AlterTableCmd *cmd)
{
	switch (cmd->subtype)
	{
		case AT_ColumnDefault:
			return cmd->def ? "SET DEFAULT" : "DROP DEFAULT";
		case AT_SetNotNull:
			return "SET NOT NULL";
		case AT_DropNotNull:
			return "DROP NOT NULL";
		case AT_SetStatistics:
			return cmd->name ? "SET STATISTICS" : NULL;
		case AT_SetStorage:
			return "SET STORAGE";
		case AT_SetCompression:
			return "SET COMPRESSION";
		case AT_AddConstraint:
			return "ADD CONSTRAINT";
		case AT_DropConstraint:
			return "DROP CONSTRAINT";
		case AT_ValidateConstraint:
			return "VALIDATE CONSTRAINT";
		case AT_EnableTrig:
		case AT_EnableAlwaysTrig:
		case AT_EnableReplicaTrig:
		case AT_EnableTrigAll:
		case AT_EnableTrigUser:
			return "ENABLE TRIGGER";
		case AT_DisableTrig:
		case AT_DisableTrigAll:
		case AT_DisableTrigUser:
			return "DISABLE TRIGGER";
		case AT_EnableRowSecurity:
			return "ENABLE ROW LEVEL SECURITY";
		case AT_DisableRowSecurity:
			return "DISABLE ROW LEVEL SECURITY";
		case AT_ForceRowSecurity:
			return "FORCE ROW LEVEL SECURITY";
		case AT_NoForceRowSecurity:
			return "NO FORCE ROW LEVEL SECURITY";
		case AT_ClusterOn:
			return "CLUSTER ON";
		case AT_DropCluster:
			return "SET WITHOUT CLUSTER";
		case AT_ReplicaIdentity:
			return "REPLICA IDENTITY";
		case AT_SetRelOptions:
			return "SET STORAGE PARAMETERS";
		case AT_ResetRelOptions:
			return "RESET STORAGE PARAMETERS";
		default:
			return NULL;
	}
}

/*
 * How a subcommand guard cannot undo is named in the refusal.
 */
static const char *
alter_subcommand_name(const AlterTableCmd *cmd)
{
	switch (cmd->subtype)
	{
		case AT_DropExpression:
			return "ALTER COLUMN ... DROP EXPRESSION";
		case AT_SetOptions:
		case AT_ResetOptions:
			return "ALTER COLUMN ... SET/RESET (attribute options)";
		case AT_SetStatistics:
			return "ALTER COLUMN ... SET STATISTICS by column number";
		case AT_AlterConstraint:
			return "ALTER CONSTRAINT";
		case AT_AlterColumnGenericOptions:
			return "ALTER COLUMN ... OPTIONS";
		case AT_ChangeOwner:
			return "OWNER TO";
		case AT_SetLogged:
			return "SET LOGGED";
		case AT_SetUnLogged:
			return "SET UNLOGGED";
		case AT_DropOids:
			return "SET WITHOUT OIDS";
		case AT_SetAccessMethod:
			return "SET ACCESS METHOD";
		case AT_SetTableSpace:
			return "SET TABLESPACE";
		case AT_EnableRule:
		case AT_EnableAlwaysRule:
		case AT_EnableReplicaRule:
			return "ENABLE RULE";
		case AT_DisableRule:
			return "DISABLE RULE";
		case AT_AddInherit:
			return "INHERIT";
		case AT_DropInherit:
			return "NO INHERIT";
		case AT_AddOf:
			return "OF";
		case AT_DropOf:
			return "NOT OF";
		case AT_GenericOptions:
			return "OPTIONS";
		case AT_AttachPartition:
			return "ATTACH PARTITION";
		case AT_DetachPartition:
		case AT_DetachPartitionFinalize:
			return "DETACH PARTITION";
		case AT_AddIdentity:
			return "ALTER COLUMN ... ADD GENERATED AS IDENTITY";
		case AT_SetIdentity:
			return "ALTER COLUMN ... SET (identity options)";
		case AT_DropIdentity:
			return "ALTER COLUMN ... DROP IDENTITY";
		default:
			return "this subcommand";
	}
}

/*
 * Before a subcommand on one column: the column's attribute it changes,
 * as it is now.
 */
static bool
record_column_attr(GuardDdlRecord *rec, Relation rel, Node *node)
{
	AlterTableCmd *cmd = castNode(AlterTableCmd, node);
	HeapTuple	tuple = SearchSysCacheAttName(RelationGetRelid(rel), cmd->name);
	Form_pg_attribute att;

	if (!HeapTupleIsValid(tuple))
		return false;			/* the command fails */
	att = (Form_pg_attribute) GETSTRUCT(tuple);
	guard_json_field(&rec->detail, "column", cmd->name);
	switch (cmd->subtype)
	{
		case AT_ColumnDefault:
			{
				Oid			types[2] = {OIDOID, INT4OID};
				Datum		values[2];

				values[0] = ObjectIdGetDatum(RelationGetRelid(rel));
				values[1] = Int32GetDatum(att->attnum);
				guard_json_field(&rec->detail, "default",
								 att->attgenerated ? NULL :
								 guard_catalog_string("SELECT pg_catalog.pg_get_expr(adbin, adrelid)"
													  "  FROM pg_catalog.pg_attrdef"
													  " WHERE adrelid = $1 AND adnum = $2",
													  2, types, values));
				break;
			}
		case AT_SetNotNull:
		case AT_DropNotNull:
			guard_json_field(&rec->detail, "not_null", att->attnotnull ? "true" : "false");
			break;
		case AT_SetStatistics:
			guard_json_field(&rec->detail, "statistics", psprintf("%d", att->attstattarget));
			break;
		case AT_SetStorage:
			guard_json_field(&rec->detail, "storage", guard_storage_name(att->attstorage));
			break;
		default:
			guard_json_field(&rec->detail, "compression",
							 guard_compression_name(att->attcompression));
			break;
	}
	ReleaseSysCache(tuple);
	return true;
}

/*
 * Undo a subcommand on one column: give the attribute back its value.
 */
static void
undo_column_attr(const GuardChange *change, const GuardSchemaTarget *t,
				 GuardRestoreReport *report)
{
	char	   *column = guard_detail_field(change, "column");
	const char *qcol = quote_identifier(column);
	const char *kind = change->kind;
	char	   *sub;

	if (get_attnum(t->relid, column) <= 0)
		guard_undo_blocked_error(change, column);
	if (strcmp(kind, "SET DEFAULT") == 0 || strcmp(kind, "DROP DEFAULT") == 0)
	{
		char	   *def = guard_detail_field(change, "default");

		sub = def ? psprintf("SET DEFAULT %s", def) : "DROP DEFAULT";
	}
	else if (strcmp(kind, "SET NOT NULL") == 0 || strcmp(kind, "DROP NOT NULL") == 0)
		sub = strcmp(guard_detail_field(change, "not_null"), "true") == 0 ?
			"SET NOT NULL" : "DROP NOT NULL";
	else if (strcmp(kind, "SET STATISTICS") == 0)
		sub = psprintf("SET STATISTICS %s", guard_detail_field(change, "statistics"));
	else if (strcmp(kind, "SET STORAGE") == 0)
		sub = psprintf("SET STORAGE %s", guard_detail_field(change, "storage"));
	else
		sub = psprintf("SET COMPRESSION %s", guard_detail_field(change, "compression"));
	guard_run_as_owner(t->owner, psprintf("ALTER TABLE %s ALTER COLUMN %s %s",
										  t->qualname, qcol, sub));
}

/*
 * Before ENABLE or DISABLE TRIGGER: the state of each trigger it reaches
 * (but guard's own, whose bypass hooks.c records), as the subcommands
 * that put them back.  Nothing to record when it reaches none.
 */
static bool
record_triggers(GuardDdlRecord *rec, Relation rel, Node *node)
{
	AlterTableCmd *cmd = castNode(AlterTableCmd, node);
	bool		named = cmd->subtype == AT_EnableTrig || cmd->subtype == AT_EnableAlwaysTrig ||
		cmd->subtype == AT_EnableReplicaTrig || cmd->subtype == AT_DisableTrig;
	bool		all = cmd->subtype == AT_EnableTrigAll || cmd->subtype == AT_DisableTrigAll;
	Oid			types[3] = {OIDOID, TEXTOID, BOOLOID};
	Datum		values[3];
	char	   *states;

	values[0] = ObjectIdGetDatum(RelationGetRelid(rel));
	values[1] = CStringGetTextDatum(named ? cmd->name : "");
	values[2] = BoolGetDatum(all);
	states = guard_catalog_string("SELECT pg_catalog.string_agg(pg_catalog.format("
								  "  CASE tgenabled WHEN 'O' THEN 'ENABLE TRIGGER %I'"
								  "    WHEN 'D' THEN 'DISABLE TRIGGER %I'"
								  "    WHEN 'A' THEN 'ENABLE ALWAYS TRIGGER %I'"
								  "    ELSE 'ENABLE REPLICA TRIGGER %I' END, tgname), ', ' ORDER BY tgname)"
								  "  FROM pg_catalog.pg_trigger"
								  " WHERE tgrelid = $1 AND tgname !~ '^guard_'"
								  "   AND ($2 = '' OR tgname = $2) AND ($3 OR NOT tgisinternal)",
								  3, types, values);
	if (states == NULL)
		return false;
	guard_json_field(&rec->detail, "triggers", states);
	rec->recheck = false;
	return true;
}

/*
 * Undo ENABLE or DISABLE TRIGGER: put each trigger back in its state.
 */
static void
undo_triggers(const GuardChange *change, const GuardSchemaTarget *t,
			  GuardRestoreReport *report)
{
	guard_run_as_owner(t->owner, psprintf("ALTER TABLE %s %s", t->qualname,
										  guard_detail_field(change, "triggers")));
}

/*
 * Before a subcommand that changes the table as a whole: the subcommand
 * that puts back what it changes.
 */
static bool
record_table_attr(GuardDdlRecord *rec, Relation rel, Node *node)
{
	AlterTableCmd *cmd = castNode(AlterTableCmd, node);
	Oid			types[1] = {OIDOID};
	Datum		values[1];
	char	   *undo = NULL;

	values[0] = ObjectIdGetDatum(RelationGetRelid(rel));
	switch (cmd->subtype)
	{
		case AT_EnableRowSecurity:
		case AT_DisableRowSecurity:
			undo = rel->rd_rel->relrowsecurity ? "ENABLE ROW LEVEL SECURITY" :
				"DISABLE ROW LEVEL SECURITY";
			break;
		case AT_ForceRowSecurity:
		case AT_NoForceRowSecurity:
			undo = rel->rd_rel->relforcerowsecurity ? "FORCE ROW LEVEL SECURITY" :
				"NO FORCE ROW LEVEL SECURITY";
			break;
		case AT_ClusterOn:
		case AT_DropCluster:
			undo = guard_catalog_string("SELECT COALESCE((SELECT 'CLUSTER ON ' || pg_catalog.quote_ident(c.relname)"
										"  FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
										" WHERE i.indrelid = $1 AND i.indisclustered), 'SET WITHOUT CLUSTER')",
										1, types, values);
			break;
		case AT_ReplicaIdentity:
			undo = guard_catalog_string("SELECT 'REPLICA IDENTITY ' || CASE r.relreplident"
										"  WHEN 'f' THEN 'FULL' WHEN 'n' THEN 'NOTHING'"
										"  WHEN 'i' THEN COALESCE((SELECT 'USING INDEX ' || pg_catalog.quote_ident(c.relname)"
										"     FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
										"    WHERE i.indrelid = $1 AND i.indisreplident), 'NOTHING')"
										"  ELSE 'DEFAULT' END FROM pg_catalog.pg_class r WHERE r.oid = $1",
										1, types, values);
			break;
		default:
			/* SET/RESET (storage parameters): the ones set now */
			guard_json_field(&rec->detail, "options",
							 guard_catalog_string("SELECT pg_catalog.string_agg(pg_catalog.format('%s = %L',"
												  "         o.option_name, o.option_value), ', ')"
												  "  FROM pg_catalog.pg_class c,"
												  "       pg_catalog.pg_options_to_table(c.reloptions) o"
												  " WHERE c.oid = $1", 1, types, values));
			guard_json_field(&rec->detail, "reset", "true");
			break;
	}
	guard_json_field(&rec->detail, "undo", undo);
	rec->recheck = false;
	return true;
}

/*
 * Undo a subcommand on the table as a whole.  Storage parameters: reset
 * every one set now, then set back those set before.
 */
static void
undo_table_attr(const GuardChange *change, const GuardSchemaTarget *t,
				GuardRestoreReport *report)
{
	char	   *undo = guard_detail_field(change, "undo");

	if (guard_detail_field(change, "reset"))
	{
		Oid			types[1] = {OIDOID};
		Datum		values[1];
		char	   *now;
		char	   *before = guard_detail_field(change, "options");

		values[0] = ObjectIdGetDatum(t->relid);
		now = guard_catalog_string("SELECT pg_catalog.string_agg(o.option_name, ', ')"
								   "  FROM pg_catalog.pg_class c,"
								   "       pg_catalog.pg_options_to_table(c.reloptions) o"
								   " WHERE c.oid = $1", 1, types, values);
		if (now == NULL && before == NULL)
			return;
		undo = psprintf("%s%s%s%s%s", now ? "RESET (" : "", now ? now : "",
						now ? ")" : "", now && before ? ", " : "",
						before ? psprintf("SET (%s)", before) : "");
	}
	guard_run_as_owner(t->owner, psprintf("ALTER TABLE %s %s", t->qualname, undo));
}

/* the kinds of ALTER TABLE subcommands this file records and undoes */
static const GuardSchemaKind alter_kinds[] = {
	{"SET DEFAULT", record_column_attr, undo_column_attr},
	{"DROP DEFAULT", record_column_attr, undo_column_attr},
	{"SET NOT NULL", record_column_attr, undo_column_attr},
	{"DROP NOT NULL", record_column_attr, undo_column_attr},
	{"SET STATISTICS", record_column_attr, undo_column_attr},
	{"SET STORAGE", record_column_attr, undo_column_attr},
	{"SET COMPRESSION", record_column_attr, undo_column_attr},
	{"ENABLE TRIGGER", record_triggers, undo_triggers},
	{"DISABLE TRIGGER", record_triggers, undo_triggers},
	{"ENABLE ROW LEVEL SECURITY", record_table_attr, undo_table_attr},
	{"DISABLE ROW LEVEL SECURITY", record_table_attr, undo_table_attr},
	{"FORCE ROW LEVEL SECURITY", record_table_attr, undo_table_attr},
	{"NO FORCE ROW LEVEL SECURITY", record_table_attr, undo_table_attr},
	{"CLUSTER ON", record_table_attr, undo_table_attr},
	{"SET WITHOUT CLUSTER", record_table_attr, undo_table_attr},
	{"REPLICA IDENTITY", record_table_attr, undo_table_attr},
	{"SET STORAGE PARAMETERS", record_table_attr, undo_table_attr},
	{"RESET STORAGE PARAMETERS", record_table_attr, undo_table_attr},
	{NULL, NULL, NULL}
};

/*
 * The kind of that name, from any file's table, or NULL.
 */
static const GuardSchemaKind *
find_kind(const char *kind)
{
	const GuardSchemaKind *tables[] = {alter_kinds, guard_constraint_kinds,
	guard_index_kinds, guard_table_kinds};

	for (int i = 0; i < lengthof(tables); i++)
	{
		for (const GuardSchemaKind *k = tables[i]; k->kind; k++)
		{
			if (strcmp(k->kind, kind) == 0)
				return k;
		}
	}
	return NULL;
}

/*
 * Begin the record of one subcommand of an ALTER TABLE of "rel" (but ADD
 * COLUMN, DROP COLUMN and ALTER COLUMN TYPE, which ddl.c records): what
 * its undo needs, saved now.  NULL when there is nothing to record.  One
 * guard cannot undo is recorded as kind ALTER TABLE, with its name.
 */
GuardDdlRecord *
guard_alter_record(Relation rel, AlterTableCmd *cmd, List **shared)
{
	const char *name = alter_kind_name(cmd);
	const GuardSchemaKind *kind = name ? find_kind(name) : NULL;
	GuardDdlRecord *rec;

	if (kind == NULL)
	{
		rec = guard_ddl_record_begin(rel, "ALTER TABLE");
		guard_json_field(&rec->detail, "undoable", "false");
		guard_json_field(&rec->detail, "subcommand", alter_subcommand_name(cmd));
		return rec;
	}
	rec = guard_ddl_record_begin(rel, kind->kind);
	rec->shared = shared;
	if (!kind->record(rec, rel, (Node *) cmd))
		return NULL;
	return rec;
}

/*
 * Undo a change of any kind this file or ddl_constraint.c, ddl_index.c
 * record, by its recipe; refuse one recorded as ALTER TABLE, naming the
 * subcommand.  Returns false for a kind none of them knows.
 */
bool
guard_schema_kind_undo(const GuardChange *change, const GuardSchemaTarget *t,
					   GuardRestoreReport *report)
{
	const GuardSchemaKind *kind;

	if (strcmp(change->kind, "ALTER TABLE") == 0)
	{
		char	   *sub = guard_detail_field(change, "subcommand");

		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot restore change " INT64_FORMAT " of table \"%s\": guard cannot undo ALTER TABLE %s",
						change->change_id, guard_undo_relname(change),
						sub ? sub : "subcommands other than those README.md lists"),
				 errdetail("The change was: %s", guard_change_statement(change->change_id)),
				 errhint("Undo it by hand, then restore the other changes with guard.restore_change().")));
	}
	kind = find_kind(change->kind);
	if (kind == NULL)
		return false;
	kind->undo(change, t, report);
	return true;
}
