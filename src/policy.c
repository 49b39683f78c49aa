/*-------------------------------------------------------------------------
 *
 * policy.c
 *	  guard.protect() and guard.unprotect(), and the capture triggers they
 *	  attach.
 *
 * A protected table carries three ordinary statement-level AFTER triggers
 * with transition tables, named guard_capture_ins/upd/del, and a BEFORE
 * TRUNCATE one, guard_capture_trunc; partitions get
 * their own (statement triggers fire only on the table a statement names).
 * Ordinary rather than internal triggers, because pg_dump keeps them and
 * partitions can be given them; hooks.c refuses to let them be disabled.
 * The three row ones are ENABLE ALWAYS: restore writes as replica, and its
 * writes are captured too.
 *
 * The policy that governs a relation (its own, or its nearest protected
 * ancestor's) is read through relcache.c's cache; protect() and
 * unprotect() make every backend forget the table and its partitions.
 * Also here: who may manage a table (its owner, guard_admin) and who may
 * read its changes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_protect);
PG_FUNCTION_INFO_V1(guard_unprotect);
PG_FUNCTION_INFO_V1(guard_may_read);

/*
 * guard_capture_trunc does nothing where guard is preloaded (the utility
 * hook captures TRUNCATE); elsewhere it refuses, since TRUNCATE fires no
 * event trigger that could.
 */
static const char *const capture_triggers[4][2] = {
	{"guard_capture_ins", "AFTER INSERT ON %s REFERENCING NEW TABLE AS guard_new"},
	{"guard_capture_upd", "AFTER UPDATE ON %s REFERENCING OLD TABLE AS guard_old NEW TABLE AS guard_new"},
	{"guard_capture_del", "AFTER DELETE ON %s REFERENCING OLD TABLE AS guard_old"},
	{"guard_capture_trunc", "BEFORE TRUNCATE ON %s"},
};

/*
 * Does protected table "relid" have any invariant?  Read from
 * guard.invariant, not from the cache: asked when guard's triggers are
 * given or taken, right after the invariants may have changed.
 */
static bool
has_invariants(Oid relid)
{
	GuardInvariant *defs;

	return guard_invariants_read(relid, CurrentMemoryContext, &defs) > 0;
}

/*
 * Does a table under this policy need guard's triggers: to capture, to
 * apply row limits, or to check invariants?
 */
bool
guard_policy_wants_triggers(const GuardPolicy *policy)
{
	return policy->found &&
		(policy->capture == GUARD_CAPTURE_DML ||
		 policy->capture == GUARD_CAPTURE_ALL ||
		 policy->max_rows > 0 || policy->max_fraction > 0 ||
		 policy->require_where || has_invariants(policy->relid));
}

/*
 * The mode in force for a policy: its own, or guard.mode.
 */
int
guard_policy_mode(const GuardPolicy *policy)
{
	return policy->mode >= 0 ? policy->mode : guard_mode;
}

/*
 * May the current user manage guard for this table: its owner, or a member
 * of guard_admin?
 */
bool
guard_may_manage(Oid relid)
{
	Oid			admin = get_role_oid("guard_admin", true);

	if (pg_class_ownercheck(relid, GetUserId()))
		return true;
	return OidIsValid(admin) && has_privs_of_role(GetUserId(), admin);
}

/*
 * guard._may_read(relid): may the current user see the records of changes
 * to this relation?  Those who can SELECT it, and guard_admin.
 */
bool
guard_may_read_relation(Oid relid)
{
	Oid			admin = get_role_oid("guard_admin", true);
	bool		missing = false;

	if (OidIsValid(admin) && has_privs_of_role(GetUserId(), admin))
		return true;
	return pg_class_aclcheck_ext(relid, GetUserId(), ACL_SELECT,
								 &missing) == ACLCHECK_OK;
}

/*
 * guard._may_read(relid), for guard's views: guard_may_read_relation().
 */
Datum
guard_may_read(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(guard_may_read_relation(PG_GETARG_OID(0)));
}

/*
 * The tgenabled of relation "relid"'s trigger named "tgname", or '\0' if it
 * has none.
 */
static char
trigger_state(Oid relid, const char *tgname)
{
	Relation	tgrel;
	SysScanDesc scan;
	ScanKeyData keys[2];
	HeapTuple	tuple;
	char		state = '\0';

	tgrel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyInit(&keys[0], Anum_pg_trigger_tgrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	ScanKeyInit(&keys[1], Anum_pg_trigger_tgname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(tgname));
	scan = systable_beginscan(tgrel, TriggerRelidNameIndexId, true,
							  NULL, 2, keys);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		state = ((Form_pg_trigger) GETSTRUCT(tuple))->tgenabled;
	systable_endscan(scan);
	table_close(tgrel, AccessShareLock);
	return state;
}

/*
 * Does relation "relid" have a trigger named "tgname"?
 */
static bool
has_trigger(Oid relid, const char *tgname)
{
	return trigger_state(relid, tgname) != '\0';
}

/*
 * The schema-qualified, quoted name of relation "relid", for SQL.
 */
static char *
qualified_name(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/*
 * Give relation "relid" guard's capture triggers (want) or take them away
 * (!want), as guard's own DDL.
 */
static void
set_capture_triggers(Oid relid, bool want)
{
	char	   *qname = qualified_name(relid);
	List	   *statements = NIL;

	for (int i = 0; i < lengthof(capture_triggers); i++)
	{
		const char *tgname = capture_triggers[i][0];
		bool		has = has_trigger(relid, tgname);
		StringInfoData sql;

		initStringInfo(&sql);
		if (want && !has)
		{
			appendStringInfo(&sql, "CREATE TRIGGER %s ", tgname);
			appendStringInfo(&sql, capture_triggers[i][1], qname);
			appendStringInfoString(&sql,
								   " FOR EACH STATEMENT EXECUTE FUNCTION guard.capture()");
		}
		else if (!want && has)
			appendStringInfo(&sql, "DROP TRIGGER %s ON %s", tgname, qname);
		else
			continue;
		statements = lappend(statements, sql.data);
	}
	guard_run_internal_ddl(InvalidOid, "pg_catalog, pg_temp", statements);
	if (want)
		guard_capture_triggers_always(relid);
	CacheInvalidateRelcacheByRelid(relid);
}

/*
 * Make the row capture triggers of relation "relid" that fire on origin
 * only ENABLE ALWAYS: restore writes as replica, so that user triggers do
 * not rewrite what it writes back, and its writes must still be captured.
 * (Logical replication's workers also write as replica; capture.c leaves
 * their writes alone.)  Disabled triggers are left as they are.
 */
void
guard_capture_triggers_always(Oid relid)
{
	Relation	rel = NULL;

	/* the first three: INSERT, UPDATE, DELETE */
	for (int i = 0; i < 3; i++)
	{
		if (trigger_state(relid, capture_triggers[i][0]) != TRIGGER_FIRES_ON_ORIGIN)
			continue;
		/* not ALTER TABLE, which refuses a table the caller has open */
		if (rel == NULL)
			rel = table_open(relid, ShareRowExclusiveLock);
		EnableDisableTrigger(rel, capture_triggers[i][0], TRIGGER_FIRES_ALWAYS,
							 false, ShareRowExclusiveLock);
	}
	if (rel != NULL)
	{
		table_close(rel, NoLock);
		CommandCounterIncrement();
	}
}

/*
 * Apply set_capture_triggers() to a table and all its partitions.
 */
static void
set_capture_triggers_tree(Oid relid, bool want)
{
	List	   *rels = find_all_inheritors(relid, ShareRowExclusiveLock, NULL);
	ListCell   *lc;

	foreach(lc, rels)
	{
		Oid			child = lfirst_oid(lc);
		char		relkind = get_rel_relkind(child);

		if (relkind == RELKIND_RELATION || relkind == RELKIND_PARTITIONED_TABLE)
			set_capture_triggers(child, want);
	}
}

/*
 * Does a capture setting capture row changes?
 */
static bool
capture_has_dml(const char *capture)
{
	return strcmp(capture, "dml") == 0 || strcmp(capture, "all") == 0;
}

/*
 * Open table "relid" for "action", checking that it is a table guard can
 * protect and that the current user may manage it.  The relation is locked
 * against concurrent DDL.
 */
Relation
guard_open_table_to_manage(Oid relid, GuardManage action)
{
	Relation	rel = try_table_open(relid, ShareRowExclusiveLock);
	const char *cannot;
	const char *denied;
	const char *only;

	switch (action)
	{
		case GUARD_MANAGE_PROTECT:
			cannot = gettext_noop("cannot protect table \"%s\"");
			denied = gettext_noop("permission denied to protect table \"%s\"");
			only = gettext_noop("Only the table's owner or a member of guard_admin may protect it.");
			break;
		case GUARD_MANAGE_UNPROTECT:
			cannot = gettext_noop("cannot unprotect table \"%s\"");
			denied = gettext_noop("permission denied to unprotect table \"%s\"");
			only = gettext_noop("Only the table's owner or a member of guard_admin may unprotect it.");
			break;
		case GUARD_MANAGE_ADD_INVARIANT:
			cannot = gettext_noop("cannot add an invariant to table \"%s\"");
			denied = gettext_noop("permission denied to add an invariant to table \"%s\"");
			only = gettext_noop("Only the table's owner or a member of guard_admin may add an invariant to it.");
			break;
		case GUARD_MANAGE_VALIDATE_INVARIANT:
			cannot = gettext_noop("cannot validate an invariant of table \"%s\"");
			denied = gettext_noop("permission denied to validate an invariant of table \"%s\"");
			only = gettext_noop("Only the table's owner or a member of guard_admin may validate an invariant of it.");
			break;
		case GUARD_MANAGE_DROP_INVARIANT:
		default:
			cannot = gettext_noop("cannot drop an invariant of table \"%s\"");
			denied = gettext_noop("permission denied to drop an invariant of table \"%s\"");
			only = gettext_noop("Only the table's owner or a member of guard_admin may drop an invariant of it.");
			break;
	}

	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", RelationGetRelationName(rel)),
				 errhint("guard protects ordinary and partitioned tables.")));
	if (IsCatalogRelation(rel) ||
		RelationGetNamespace(rel) == get_namespace_oid("guard", true))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg(cannot, RelationGetRelationName(rel)),
				 errdetail("System catalogs and guard's own tables cannot be protected.")));
	if (!guard_may_manage(relid))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg(denied, RelationGetRelationName(rel)),
				 errdetail_internal("%s", _(only))));
	return rel;
}

/*
 * guard.protect(rel, capture, mode, min_rows, max_rows, max_fraction,
 *				 require_where): put a table under guard or change its policy.
 */
Datum
guard_protect(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *capture;
	char	   *mode = NULL;
	int64		min_rows;
	Relation	rel;
	GuardAsRole owner;
	Oid			argtypes[7] = {OIDOID, TEXTOID, TEXTOID, INT8OID, INT8OID,
	FLOAT8OID, BOOLOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};

	guard_require_preload();

	for (int i = 0; i < 7; i++)
	{
		/* mode, max_rows and max_fraction may be NULL */
		if (PG_ARGISNULL(i) && i != 2 && i != 4 && i != 5)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument %d of guard.protect must not be null", i + 1)));
	}
	relid = PG_GETARG_OID(0);
	capture = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!PG_ARGISNULL(2))
		mode = text_to_cstring(PG_GETARG_TEXT_PP(2));
	min_rows = PG_GETARG_INT64(3);

	if (strcmp(capture, "dml") != 0 && strcmp(capture, "ddl") != 0 &&
		strcmp(capture, "all") != 0 && strcmp(capture, "none") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid capture \"%s\"", capture),
				 errhint("Valid values are \"dml\", \"ddl\", \"all\" and \"none\".")));
	if (mode != NULL && strcmp(mode, "enforce") != 0 && strcmp(mode, "warn") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid mode \"%s\"", mode),
				 errhint("Valid values are \"enforce\", \"warn\", or NULL to follow guard.mode.")));
	if (min_rows < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("min_rows must not be negative"),
				 errhint("Use 1 (the default) to capture every write.")));
	if (!PG_ARGISNULL(4))
	{
		int64		max_rows = PG_GETARG_INT64(4);

		if (max_rows < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_rows must be at least 1"),
					 errhint("Use NULL for no limit.")));
		if (max_rows < min_rows)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_rows (" INT64_FORMAT ") is less than min_rows (" INT64_FORMAT ")",
							max_rows, min_rows),
					 errhint("max_rows must be at least min_rows.")));
	}
	if (!PG_ARGISNULL(5))
	{
		float8		frac = PG_GETARG_FLOAT8(5);

		if (isnan(frac) || frac <= 0 || frac > 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_fraction must be greater than 0 and at most 1"),
					 errhint("Use NULL for no limit.")));
	}

	rel = guard_open_table_to_manage(relid, GUARD_MANAGE_PROTECT);

	/* inheritance (not partitioning): restore could not tell rows apart */
	if (rel->rd_rel->relkind == RELKIND_RELATION &&
		((!rel->rd_rel->relispartition && has_superclass(relid)) ||
		 find_inheritance_children(relid, NoLock) != NIL))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot protect table \"%s\": it is part of an inheritance tree",
						RelationGetRelationName(rel)),
				 errdetail("guard does not support table inheritance (INHERITS): a write through a parent reaches its children, whose rows restore could not tell apart."),
				 errhint("Use partitioning instead, or remove the inheritance with ALTER TABLE ... NO INHERIT.")));

	/* it goes with its session: no trash could keep it, no undo bring it back */
	if (rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot protect temporary table \"%s\"",
						RelationGetRelationName(rel)),
				 errdetail("A temporary table is dropped at the end of its session, where guard cannot keep it.")));

	if (rel->rd_rel->relispartition)
	{
		List	   *ancestors = get_partition_ancestors(relid);
		ListCell   *lc;
		GuardPolicy dummy;

		foreach(lc, ancestors)
		{
			if (guard_policy_read(lfirst_oid(lc), &dummy))
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("table \"%s\" is a partition of protected table \"%s\"",
								RelationGetRelationName(rel),
								get_rel_name(lfirst_oid(lc))),
						 errhint("Change the policy of the partitioned table instead.")));
		}
	}

	if (capture_has_dml(capture))
	{
		AttrNumber	keys[INDEX_MAX_KEYS];

		if (guard_key_attnums(rel, keys) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table \"%s\" has no primary key or replica identity index",
							RelationGetRelationName(rel)),
					 errdetail("guard finds rows to restore by their key."),
					 errhint("Add a primary key, or set REPLICA IDENTITY USING INDEX, or protect with capture => 'ddl'.")));
	}

	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(capture);
	values[2] = mode ? CStringGetTextDatum(mode) : (Datum) 0;
	nulls[2] = mode ? ' ' : 'n';
	values[3] = Int64GetDatum(min_rows);
	values[4] = PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4);
	nulls[4] = PG_ARGISNULL(4) ? 'n' : ' ';
	values[5] = PG_ARGISNULL(5) ? (Datum) 0 : PG_GETARG_DATUM(5);
	nulls[5] = PG_ARGISNULL(5) ? 'n' : ' ';
	values[6] = PG_GETARG_DATUM(6);

	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("INSERT INTO guard.policy AS p (relid, capture, mode, min_rows, max_rows,"
			" max_fraction, require_where, created_at, created_by)"
			" VALUES ($1::pg_catalog.regclass, $2, $3, $4, $5, $6, $7, pg_catalog.now(), session_user)"
			" ON CONFLICT (relid) DO UPDATE SET capture = excluded.capture,"
			" mode = excluded.mode, min_rows = excluded.min_rows,"
			" max_rows = excluded.max_rows, max_fraction = excluded.max_fraction,"
			" require_where = excluded.require_where",
			7, argtypes, values, nulls);
	guard_as_role_end(&owner);
	guard_relcache_invalidate(relid);
	set_capture_triggers_tree(relid,
							  capture_has_dml(capture) || !PG_ARGISNULL(4) ||
							  !PG_ARGISNULL(5) || PG_GETARG_BOOL(6) ||
							  has_invariants(relid));

	table_close(rel, NoLock);
	PG_RETURN_VOID();
}

/*
 * guard.unprotect(rel): stop protecting a table.  Its recorded changes stay.
 */
Datum
guard_unprotect(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Relation	rel;
	GuardAsRole owner;
	GuardPolicy dummy;
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1];

	guard_require_preload();
	rel = guard_open_table_to_manage(relid, GUARD_MANAGE_UNPROTECT);
	if (!guard_policy_read(relid, &dummy))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table \"%s\" is not protected by guard",
						RelationGetRelationName(rel))));

	values[0] = ObjectIdGetDatum(relid);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("DELETE FROM guard.policy WHERE relid = $1::pg_catalog.regclass",
			1, argtypes, values, NULL);
	guard_as_role_end(&owner);
	guard_relcache_invalidate(relid);
	set_capture_triggers_tree(relid, false);

	table_close(rel, NoLock);
	PG_RETURN_VOID();
}

/*
 * Bring the capture triggers of a table (and its partitions) in line with
 * the policy governing it: a new or attached partition of a protected table
 * gets them, a detached one loses them.
 */
void
guard_sync_relation(Oid relid)
{
	Relation	rel;
	const GuardPolicy *policy;
	bool		want;
	bool		has;
	bool		partitioned;
	char		relkind = get_rel_relkind(relid);

	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		return;
	/* a database without the extension has nothing to sync */
	if (!OidIsValid(get_extension_oid("guard", true)))
		return;
	rel = try_table_open(relid, AccessShareLock);
	if (rel == NULL)
		return;
	has = has_trigger(relid, capture_triggers[0][0]);
	partitioned = rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE;

	guard_relcache_forget(relid);
	policy = guard_policy_lookup(rel);
	want = guard_policy_wants_triggers(policy);
	/* a partitioned table may have gained a partition without triggers */
	if (want != has || (want && partitioned))
		set_capture_triggers_tree(relid, want);
	table_close(rel, NoLock);
}
