/*-------------------------------------------------------------------------
 *
 * bookkeeping.c
 *	  Migration tools' bookkeeping rows, as guard's labels name them: what
 *	  a restore does to them, and the sqitch registry a change set waits
 *	  for.
 *
 * A change labelled from a tool's bookkeeping row keeps a description of
 * that row in guard.change.bookkeeping (labels.c writes it): the tool, the
 * table, the row's key and whole value, what a restore does to it, and the
 * change sets the migration's changes belong to.  When a restore undoes
 * every change of a migration, the tool is told: its row is deleted (the
 * tool then sees the migration as not applied: its status lists it as
 * pending, its down/rollback no longer tries to undo it, and its deploy
 * applies it again), or for golang-migrate, whose table holds only the
 * current version, the version is marked dirty.  Undoing such a restore
 * puts the row back.  The row is changed with the restoring role's own
 * rights: without them it is kept, and the restore says so.
 *
 * sqitch runs each deploy script through psql, in a session of its own,
 * and writes its registry (sqitch.changes) afterwards from another
 * connection, inside a transaction that holds an EXCLUSIVE lock on
 * sqitch.changes from before the script starts until the row is written.
 * A change set created while another transaction holds that lock is
 * linked to it (guard.label_wait), so that the registry's INSERT, in that
 * very transaction, names exactly the change sets made during its deploy.
 *
 * Calls writer.c, spi.c and catalog.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "nodes/makefuncs.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/tuplestore.h"

#include "guard.h"

/* set while guard writes a tool's table itself: labels.c ignores it */
bool		guard_bookkeeping_busy = false;

/* what the restore under way did to one bookkeeping row, for its report */
typedef struct BookkeepingAction
{
	int64		changeset_id;	/* a change set of the migration */
	char	   *relation;
	char	   *kind;
	int64		changed;
	int64		kept;
} BookkeepingAction;

/* the actions of the restore under way, in TopTransactionContext */
static List *actions = NIL;
static LocalTransactionId actions_lxid = InvalidLocalTransactionId;

/*
 * This backend's virtual transaction id as text, as a sqitch registry
 * transaction is named in guard.label_wait.
 */
void
guard_registry_vxid(char *buf, size_t len)
{
	snprintf(buf, len, "%d/%u", MyBackendId, MyProc->lxid);
}

/*
 * A change set was just created: if another transaction holds sqitch's
 * deploy lock on sqitch.changes, this one is the deploy script's, and
 * waits for that transaction's registry row to name it.
 */
void
guard_registry_link(int64 changeset_id)
{
	Oid			nsp = get_namespace_oid("sqitch", true);
	Oid			relid;
	LOCKTAG		tag;
	VirtualTransactionId *holders;
	int			n;

	if (!OidIsValid(nsp))
		return;
	relid = get_relname_relid("changes", nsp);
	if (!OidIsValid(relid))
		return;
	SET_LOCKTAG_RELATION(tag, MyDatabaseId, relid);
	holders = GetLockConflicts(&tag, RowExclusiveLock, &n);
	for (int i = 0; i < n && VirtualTransactionIdIsValid(holders[i]); i++)
	{
		Datum		values[Natts_guard_label_wait];
		bool		nulls[Natts_guard_label_wait] = {false, false};

		values[0] = CStringGetTextDatum(psprintf("%d/%u", holders[i].backendId,
												 holders[i].localTransactionId));
		values[1] = Int64GetDatum(changeset_id);
		guard_writer_insert("label_wait", Natts_guard_label_wait, values, nulls);
	}
}

/*
 * The value of field "field" of JSON object "json" as text (NULL if
 * absent), read with SQL.
 */
static char *
json_field(const char *json, const char *field)
{
	Datum		j = DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
	Datum		v;
	bool		isnull = false;
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fcinfo, 2);

	fmgr_info(F_JSONB_OBJECT_FIELD_TEXT, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = j;
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = CStringGetTextDatum(field);
	fcinfo->args[1].isnull = false;
	v = FunctionCallInvoke(fcinfo);
	isnull = fcinfo->isnull;
	return isnull ? NULL : TextDatumGetCString(v);
}

/*
 * Remember one action of the restore under way for its report.
 */
static void
note_action(int64 changeset_id, const char *relation, const char *kind,
			int64 changed, int64 kept)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	BookkeepingAction *a = palloc(sizeof(BookkeepingAction));

	if (actions_lxid != MyProc->lxid)
	{
		actions = NIL;
		actions_lxid = MyProc->lxid;
	}
	a->changeset_id = changeset_id;
	a->relation = pstrdup(relation);
	a->kind = pstrdup(kind);
	a->changed = changed;
	a->kept = kept;
	actions = lappend(actions, a);
	MemoryContextSwitchTo(old);
}

/*
 * Run "sql" with the bookkeeping row's key ($1) and whole value ($2) as the
 * current role, guard_bookkeeping_busy set; returns the rows it changed.
 */
static uint64
run_on_row(const char *sql, const char *key, const char *row)
{
	GuardAsRole as;
	Oid			types[2] = {JSONBOID, JSONBOID};
	Datum		values[2];
	bool		save = guard_bookkeeping_busy;
	uint64		n = 0;

	values[0] = DirectFunctionCall1(jsonb_in, CStringGetDatum(key));
	values[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(row ? row : "{}"));
	guard_as_role_begin(&as, GetUserId());
	guard_bookkeeping_busy = true;
	PG_TRY();
	{
		guard_run_sql(sql, 2, types, values, NULL);
		n = SPI_processed;
	}
	PG_FINALLY();
	{
		guard_bookkeeping_busy = save;
	}
	PG_END_TRY();
	guard_as_role_end(&as);
	return n;
}

/*
 * Tell the tool that the migration described by "bk" is undone ("undo") or
 * redone (!undo): delete or re-insert its row, or mark its version dirty or
 * clean again.  A restore that only plans ("plan": a dry run on a hot
 * standby or in a read-only transaction) counts the rows it would change
 * instead, and says and reports the same.
 */
static void
act_on_row(const char *bk, int64 changeset_id, bool undo, bool plan)
{
	char	   *action = json_field(bk, "action");
	char	   *table = json_field(bk, "table");
	char	   *tool = json_field(bk, "tool");
	char	   *label = json_field(bk, "label");
	char	   *key = json_field(bk, "key");
	char	   *row = json_field(bk, "row");
	bool		dirty;
	Oid			relid;
	char	   *name;
	const char *kind;
	uint64		n;

	if (action == NULL || table == NULL || key == NULL)
		return;
	dirty = strcmp(action, "dirty") == 0;
	kind = undo ? (dirty ? "BOOKKEEPING DIRTY" : "BOOKKEEPING DELETE") :
		(dirty ? "BOOKKEEPING CLEAN" : "BOOKKEEPING INSERT");
	relid = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(table)),
							 NoLock, true);
	if (!OidIsValid(relid))
	{
		ereport(NOTICE,
				(errmsg("table \"%s\" of %s no longer exists: migration \"%s\" is not %s there",
						table, tool, label, undo ? "unrecorded" : "recorded again")));
		note_action(changeset_id, table, kind, 0, 1);
		return;
	}
	name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
	if (pg_class_aclcheck(relid, GetUserId(),
						  dirty ? ACL_UPDATE : (undo ? ACL_DELETE : ACL_INSERT)) != ACLCHECK_OK)
	{
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s still records migration \"%s\" as %s in table \"%s\"",
						tool, label, undo ? "applied" : "undone", name),
				 errdetail("The restoring role may not change table \"%s\".", name),
				 errhint("Tell %s yourself, or restore as a role that may.", tool)));
		note_action(changeset_id, name, kind, 0, 1);
		return;
	}

	if (plan)
		n = run_on_row(psprintf(dirty || undo ?
								"SELECT FROM %s t"
								" WHERE pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.@>) $1" :
								"SELECT WHERE NOT EXISTS (SELECT FROM %s t"
								"  WHERE pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.@>) $1)",
								name), key, row);
	else if (dirty)
		n = run_on_row(psprintf("UPDATE %s t SET dirty = %s"
								" WHERE pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.@>) $1",
								name, undo ? "true" : "false"), key, row);
	else if (undo)
		n = run_on_row(psprintf("DELETE FROM %s t"
								" WHERE pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.@>) $1",
								name), key, row);
	else
		n = run_on_row(psprintf("INSERT INTO %s SELECT * FROM pg_catalog.jsonb_populate_record(NULL::%s, $2)"
								" WHERE NOT EXISTS (SELECT FROM %s t"
								"  WHERE pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.@>) $1)",
								name, name, name), key, row);

	if (n > 0 && dirty)
		ereport(NOTICE,
				(errmsg("the restore marks %s version %s %s in table \"%s\"",
						tool, label, undo ? "dirty" : "clean again", name),
				 undo ? errhint("golang-migrate runs again once told the version now in effect: migrate force VERSION.") : 0));
	else if (n > 0)
		ereport(NOTICE,
				(errmsg(undo ? "the restore deletes the row of migration \"%s\" from table \"%s\"" :
						"the restore puts the row of migration \"%s\" back into table \"%s\"",
						label, name),
				 errdetail(undo ? "%s then sees the migration as not applied." :
						   "%s then sees the migration as applied again.", tool)));
	note_action(changeset_id, name, kind, (int64) n, 0);
}

/*
 * A restore is about to undo "changes" (GuardChange): for each migration
 * named by a tool's bookkeeping row whose every change still in effect is
 * among them, tell the tool that it is undone (with "plan", only count).
 */
void
guard_bookkeeping_forget(List *changes, bool plan)
{
	List	   *seen = NIL;
	ListCell   *lc;
	Datum	   *ids = palloc(sizeof(Datum) * Max(list_length(changes), 1));
	int			n = 0;

	foreach(lc, changes)
		ids[n++] = Int64GetDatum(((GuardChange *) lfirst(lc))->change_id);

	foreach(lc, changes)
	{
		GuardChange *change = lfirst(lc);
		GuardAsRole owner;
		Oid			types[2] = {TEXTOID, INT8ARRAYOID};
		Datum		values[2];
		bool		isnull;
		int64		others;
		ListCell   *s;
		bool		done = false;
		char	   *listed;

		if (change->bookkeeping == NULL)
			continue;
		foreach(s, seen)
			done |= strcmp((char *) lfirst(s), change->bookkeeping) == 0;
		if (done)
			continue;
		seen = lappend(seen, change->bookkeeping);

		/* its changes not being undone now, still in effect */
		values[0] = CStringGetTextDatum(change->bookkeeping);
		values[1] = PointerGetDatum(construct_array(ids, n, INT8OID, sizeof(int64),
													true, TYPALIGN_DOUBLE));
		listed = json_field(change->bookkeeping, "changesets");
		guard_as_role_begin(&owner, InvalidOid);

		/*
		 * Its change sets are listed, unless the label was in force before
		 * they existed (golang-migrate): then every change is looked at.
		 */
		guard_run_sql(listed != NULL && strcmp(listed, "[]") != 0 ?
					  "SELECT pg_catalog.count(*) FROM guard.change"
					  " WHERE changeset_id OPERATOR(pg_catalog.=) ANY (ARRAY("
					  "   SELECT pg_catalog.jsonb_array_elements_text($1::pg_catalog.jsonb -> 'changesets')::bigint))"
					  " AND bookkeeping OPERATOR(pg_catalog.=) $1::pg_catalog.jsonb"
					  " AND state = 'active'"
					  " AND change_id OPERATOR(pg_catalog.<>) ALL ($2)" :
					  "SELECT pg_catalog.count(*) FROM guard.change"
					  " WHERE bookkeeping OPERATOR(pg_catalog.=) $1::pg_catalog.jsonb"
					  " AND state = 'active'"
					  " AND change_id OPERATOR(pg_catalog.<>) ALL ($2)",
					  2, types, values, NULL);
		others = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
		guard_as_role_end(&owner);
		if (others == 0)
			act_on_row(change->bookkeeping, change->changeset_id, true, plan);
	}
}

/*
 * Restores "restores" (an int8[] of change set ids) are being undone: the
 * migrations they had undone are in effect again, so tell their tools
 * (with "plan", only count).  Every restore calls this first: the report of a previous one is
 * forgotten.
 */
void
guard_bookkeeping_recall(Datum restores, bool plan)
{
	GuardAsRole owner;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1];
	List	   *rows = NIL;
	List	   *changesets = NIL;
	ListCell   *lc;
	ListCell   *cc;
	MemoryContext outer = CurrentMemoryContext;

	actions = NIL;
	actions_lxid = MyProc->lxid;
	values[0] = restores;
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT bookkeeping::text, pg_catalog.min(changeset_id)::text FROM guard.change"
				  " WHERE state = 'restored' AND restored_by OPERATOR(pg_catalog.=) ANY ($1)"
				  " AND bookkeeping OPERATOR(pg_catalog.?) 'action'"
				  " GROUP BY bookkeeping::text",
				  1, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *row = SPI_getvalue(SPI_tuptable->vals[i],
									   SPI_tuptable->tupdesc, 1);
		char	   *cs = SPI_getvalue(SPI_tuptable->vals[i],
									  SPI_tuptable->tupdesc, 2);
		MemoryContext old = MemoryContextSwitchTo(outer);

		rows = lappend(rows, pstrdup(row));
		changesets = lappend(changesets, pstrdup(cs));
		MemoryContextSwitchTo(old);
	}
	guard_as_role_end(&owner);
	forboth(lc, rows, cc, changesets)
		act_on_row((char *) lfirst(lc),
				   DatumGetInt64(DirectFunctionCall1(int8in,
													 CStringGetDatum((char *) lfirst(cc)))),
				   false, plan);
}

/*
 * Add to a restore's report one row per bookkeeping row it changed or
 * kept: change_id NULL, a change set of the migration, the tool's table,
 * kind BOOKKEEPING DELETE (or DIRTY, INSERT, CLEAN), rows_restored the
 * rows changed, rows_skipped 1 when it was kept.
 */
void
guard_bookkeeping_put_report(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ListCell   *lc;

	if (actions_lxid != MyProc->lxid)
		return;
	foreach(lc, actions)
	{
		BookkeepingAction *a = lfirst(lc);
		int			natts = rsinfo->setDesc->natts;
		Datum	   *values = palloc0(sizeof(Datum) * natts);
		bool	   *nulls = palloc(sizeof(bool) * natts);

		/* the report's first seven columns; later ones (objects, ...) null */
		Assert(natts >= 7);
		memset(nulls, true, sizeof(bool) * natts);
		for (int i = 1; i < 7; i++)
			nulls[i] = false;
		values[1] = Int64GetDatum(a->changeset_id);
		values[2] = CStringGetTextDatum(a->relation);
		values[3] = CStringGetTextDatum(a->kind);
		values[4] = Int64GetDatum(a->changed);
		values[5] = Int64GetDatum(a->kept);
		values[6] = Int64GetDatum(0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	actions = NIL;
}
