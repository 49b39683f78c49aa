/*-------------------------------------------------------------------------
 *
 * undo_target.c
 *	  The table a restore writes to: whether it may be written, and the
 *	  context the writes run in.
 *
 * Before a change is undone (rows by undo.c, schema by schema_undo.c), its
 * table must not be in the trash (a later change set dropped it: restore
 * that one first) nor in an inheritance tree (guard does not support
 * inheritance), and guard's row capture triggers on it must fire in replica
 * mode (ENABLE ALWAYS), since restore writes as replica and its writes are
 * a change set of their own.
 *
 * The rows are written as the table's owner, not in a security-restricted
 * operation (the writes may queue deferred triggers, such as guard's
 * commit-time checks, which such an operation forbids), without FORCE ROW
 * LEVEL SECURITY (the owner restores all of the table's rows, as foreign key
 * checks see them), with the caller's search_path for the user code that
 * runs (CHECK functions, defaults, ENABLE ALWAYS triggers: guard's own SQL
 * is qualified), and with session_replication_role = replica, so that
 * ordinary user triggers do not rewrite the values written back and foreign
 * key triggers do not fire (fkcheck.c checks the keys at the end).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/varlena.h"

#include "guard.h"

/*
 * The name of a change's table for messages, in PostgreSQL's form: the
 * recorded name (schema.table, quoted as identifiers where needed) without
 * the identifier quoting, for the caller to put in double quotes.  A name
 * that does not parse is returned as recorded.
 */
const char *
guard_undo_relname(const GuardChange *change)
{
	char	   *raw = pstrdup(change->relation);
	List	   *names;
	ListCell   *lc;
	StringInfoData buf;

	if (!SplitIdentifierString(raw, '.', &names) || names == NIL)
		return change->relation;
	initStringInfo(&buf);
	foreach(lc, names)
		appendStringInfo(&buf, "%s%s", foreach_current_index(lc) > 0 ? "." : "",
						 (char *) lfirst(lc));
	return buf.data;
}

/*
 * Refuse to undo a change of a table that a later change set dropped (it
 * is kept in the trash: writing into it there would be lost on purge, and
 * invisible until then), naming the change set that dropped it, which
 * brings it back when restored.
 */
static void
check_trashed(const GuardChange *change, Relation rel)
{
	GuardAsRole owner;
	Oid			types[1] = {OIDARRAYOID};
	Datum		values[1];
	int64		dropped = 0;

	if (RelationGetNamespace(rel) != get_namespace_oid(GUARD_TRASH_SCHEMA, true))
		return;
	values[0] = guard_related_relids(change->relid);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT changeset_id FROM guard.change"
				  " WHERE relid = ANY ($1) AND kind = 'DROP TABLE' AND state = 'active'"
				  " ORDER BY change_id DESC LIMIT 1",
				  1, types, values, NULL);
	if (SPI_processed > 0)
	{
		bool		isnull;

		dropped = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
	}
	guard_as_role_end(&owner);
	if (dropped != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot restore change " INT64_FORMAT " of table \"%s\": the table was dropped since",
						change->change_id, guard_undo_relname(change)),
				 errdetail("Change set " INT64_FORMAT " dropped it; guard keeps it in the trash.", dropped),
				 errhint("Restore change set " INT64_FORMAT " first: that brings the table back.", dropped)));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot restore change " INT64_FORMAT " of table \"%s\": the table was dropped since",
					change->change_id, guard_undo_relname(change)),
			 errhint("Bring the table back from schema %s first.", GUARD_TRASH_SCHEMA)));
}

/*
 * Refuse a table in an inheritance tree (partitions aside): a write through
 * the parent reaches the children, whose rows restore could not tell
 * apart, so guard does not protect such tables (guard.protect refuses
 * them; this catches trees made while guard was not looking).
 */
static void
check_inheritance(const GuardChange *change, Relation rel)
{
	if (rel->rd_rel->relkind != RELKIND_RELATION)
		return;
	if ((!rel->rd_rel->relispartition && has_superclass(RelationGetRelid(rel))) ||
		find_inheritance_children(RelationGetRelid(rel), NoLock) != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot restore change " INT64_FORMAT " of table \"%s\": the table is part of an inheritance tree",
						change->change_id, guard_undo_relname(change)),
				 errdetail("guard does not support table inheritance (INHERITS); partitioning is supported."),
				 errhint("Remove the inheritance with ALTER TABLE ... NO INHERIT, then restore.")));
}

/*
 * Make sure guard's row capture triggers on the table fire while restore
 * writes as replica (ENABLE ALWAYS), so that the restore is recorded:
 * triggers left firing on origin only (made by an older guard, or set so
 * by hand) are switched back.  Not where nothing can be written (a hot
 * standby, a read-only transaction): a dry run there only plans, and
 * writes nothing.
 */
static void
capture_always(Relation rel)
{
	TriggerDesc *td = rel->trigdesc;

	if (RecoveryInProgress() || XactReadOnly)
		return;

	for (int i = 0; td != NULL && i < td->numtriggers; i++)
	{
		Trigger    *tg = &td->triggers[i];

		if (tg->tgenabled == TRIGGER_FIRES_ON_ORIGIN &&
			strncmp(tg->tgname, "guard_capture_", 14) == 0 &&
			!TRIGGER_FOR_TRUNCATE(tg->tgtype))
		{
			guard_capture_triggers_always(RelationGetRelid(rel));
			return;
		}
	}
}

/*
 * The caller's search_path, with "$user" and the implicit schemas spelled
 * out, for the user code a restore runs as another role: as the caller
 * would resolve names, not as the table's owner.
 */
static char *
caller_search_path(void)
{
	List	   *path = fetch_search_path(true);
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, path)
	{
		Oid			nsp = lfirst_oid(lc);

		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "",
						 isTempNamespace(nsp) ? "pg_temp" :
						 quote_identifier(get_namespace_name(nsp)));
	}
	list_free(path);
	return buf.len ? buf.data : "pg_catalog, pg_temp";
}

/*
 * Refuse to undo "change" into "rel" if the table is in the trash or in an
 * inheritance tree; make guard's capture on it fire as replica.  Called
 * with the table locked, for row and schema changes alike.
 */
void
guard_undo_check_table(const GuardChange *change, Relation rel)
{
	check_trashed(change, rel);
	check_inheritance(change, rel);
	capture_always(rel);
}

/*
 * Begin writing rows of "rel" back (SPI connected), in the context
 * described above; guard_as_role_end() ends it.
 */
void
guard_undo_write_begin(GuardAsRole *as, Relation rel)
{
	char	   *path = caller_search_path();
	Oid			userid;
	int			sec_context;

	guard_as_role_path_begin(as, rel->rd_rel->relowner, path, false);
	GetUserIdAndSecContext(&userid, &sec_context);
	SetUserIdAndSecContext(userid, sec_context | SECURITY_NOFORCE_RLS);
	(void) set_config_option("session_replication_role", "replica",
							 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
}
