/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  guard's settings and the preload check.
 *
 * guard is meant to be loaded through shared_preload_libraries.  Loaded any
 * other way (LOAD, or on demand by its trigger function) it defines the same
 * settings, and its SQL functions refuse to run through
 * guard_require_preload(), so that a misconfigured server fails with a
 * clear message instead of half working.
 *
 * The bottom layer: calls no other file of guard.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "guard.h"

bool		guard_enabled = true;
int			guard_mode = GUARD_MODE_ENFORCE;
int			guard_retention = 7 * 24 * 60;	/* minutes */
int			guard_max_snapshot_size = -1;	/* kB; -1: no limit */
char	   *guard_notify_channel = NULL;
char	   *guard_label_setting = NULL;
bool		guard_preloaded = false;

static const struct config_enum_entry guard_mode_options[] = {
	{"enforce", GUARD_MODE_ENFORCE, false},
	{"warn", GUARD_MODE_WARN, false},
	{NULL, 0, false}
};

PG_FUNCTION_INFO_V1(guard_assert_preloaded);

/*
 * Called from _PG_init: note whether the library is being preloaded, and
 * define the settings under the reserved prefix "guard".
 */
void
guard_guc_init(void)
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

	DefineCustomStringVariable("guard.label",
							   "Label of the changes made while it is set.",
							   "Any role may set it, or pass it with PGOPTIONS, to name what a migration writes.",
							   &guard_label_setting,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("guard");
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
