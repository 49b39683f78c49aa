/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  Module load: GUCs, hook installation and the preload check.
 *
 * guard is meant to be loaded through shared_preload_libraries.  Loaded any
 * other way (LOAD, or on demand by its trigger function) it defines the same
 * settings and hooks, warns, and its SQL functions refuse to run, so that a
 * misconfigured server fails with a clear message instead of half working.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/syscache.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "guard.h"

PG_MODULE_MAGIC;

bool		guard_enabled = true;
int			guard_mode = GUARD_MODE_ENFORCE;
int			guard_retention = 7 * 24 * 60;	/* minutes */
int			guard_max_snapshot_size = -1;	/* kB; -1: no limit */
char	   *guard_notify_channel = NULL;
bool		guard_preloaded = false;

static const struct config_enum_entry guard_mode_options[] = {
	{"enforce", GUARD_MODE_ENFORCE, false},
	{"warn", GUARD_MODE_WARN, false},
	{NULL, 0, false}
};

void		_PG_init(void);

PG_FUNCTION_INFO_V1(guard_assert_preloaded);

/*
 * Module load callback: define the settings, then install the hooks.
 */
void
_PG_init(void)
{
	guard_preloaded = process_shared_preload_libraries_in_progress;

	DefineCustomBoolVariable("guard.enabled",
							 "Captures and checks writes to protected tables.",
							 "Only superusers can turn it off; doing so is logged.",
							 &guard_enabled,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomEnumVariable("guard.mode",
							 "What a violation does on tables whose policy names no mode.",
							 "enforce aborts the transaction; warn records, logs and notifies.",
							 &guard_mode,
							 GUARD_MODE_ENFORCE,
							 guard_mode_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("guard.retention",
							"How long snapshots are kept before guard.purge() may drop them.",
							NULL,
							&guard_retention,
							7 * 24 * 60,
							1,
							INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("guard.max_snapshot_size",
							"Largest snapshot one statement may need; -1 means no limit.",
							"A larger one is refused in enforce mode and warned about in warn mode.",
							&guard_max_snapshot_size,
							-1,
							-1,
							INT_MAX,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomStringVariable("guard.notify_channel",
							   "Channel on which warn-mode violations are notified.",
							   NULL,
							   &guard_notify_channel,
							   "guard",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("guard");

	guard_changes_init();
	guard_invariants_init();
	guard_install_hooks();
	guard_rails_install();

	if (!guard_preloaded)
		ereport(WARNING,
				(errcode(ERRCODE_GUARD_NOT_PRELOADED),
				 errmsg("guard was loaded without shared_preload_libraries"),
				 errdetail("Its functions refuse to run until the server preloads it."),
				 errhint("Add 'guard' to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * Raise the error that every guard entry point gives when the library was
 * not preloaded.
 */
void
guard_require_preload(void)
{
	if (!guard_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_GUARD_NOT_PRELOADED),
				 errmsg("guard must be loaded via shared_preload_libraries"),
				 errhint("Add 'guard' to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * guard._assert_preloaded(): called by the extension script, so that
 * CREATE EXTENSION fails cleanly on a server without the preload.
 */
Datum
guard_assert_preloaded(PG_FUNCTION_ARGS)
{
	guard_require_preload();
	PG_RETURN_VOID();
}

/*
 * The OID of schema "guard"; an ERROR if the extension is not installed.
 */
Oid
guard_namespace(void)
{
	Oid			nsp = get_namespace_oid("guard", true);

	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"guard\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION guard.")));
	return nsp;
}

/*
 * OIDs of guard's own relations, looked up once: the capture path asks for
 * them on every statement.  Any change to pg_class or pg_namespace (such as
 * DROP EXTENSION) forgets them.
 */
#define RELID_CACHE_SIZE	16

static struct
{
	const char *name;			/* a string constant of the caller's */
	Oid			relid;
}			relid_cache[RELID_CACHE_SIZE];
static int	relid_cache_used = 0;
static bool relid_cache_registered = false;

static void
relid_cache_reset(Datum arg, int cacheid, uint32 hashvalue)
{
	relid_cache_used = 0;
}

/*
 * The OID of one of guard's own tables or sequences.
 */
Oid
guard_relid(const char *relname)
{
	Oid			relid;

	for (int i = 0; i < relid_cache_used; i++)
	{
		if (strcmp(relid_cache[i].name, relname) == 0)
			return relid_cache[i].relid;
	}
	relid = get_relname_relid(relname, guard_namespace());
	if (!OidIsValid(relid))
		elog(ERROR, "guard relation \"%s\" is missing", relname);
	if (!relid_cache_registered)
	{
		CacheRegisterSyscacheCallback(RELNAMENSP, relid_cache_reset, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACENAME, relid_cache_reset, (Datum) 0);
		relid_cache_registered = true;
	}
	if (relid_cache_used < RELID_CACHE_SIZE)
	{
		relid_cache[relid_cache_used].name = relname;
		relid_cache[relid_cache_used].relid = relid;
		relid_cache_used++;
	}
	return relid;
}

/*
 * Open one of guard's own tables, checking that it has the layout this
 * library was built for.
 */
Relation
guard_open(const char *relname, LOCKMODE lockmode, int natts)
{
	Relation	rel = table_open(guard_relid(relname), lockmode);

	if (RelationGetDescr(rel)->natts != natts)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table guard.%s does not have the layout this guard library expects",
						relname),
				 errhint("Run ALTER EXTENSION guard UPDATE, or install the library matching the extension.")));
	return rel;
}
