/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  Module load: settings, transaction callbacks and hooks.
 *
 * The top of the module: _PG_init calls the init functions of the other
 * files and nothing calls into this one.  guard is meant to be loaded
 * through shared_preload_libraries; loaded any other way it defines the
 * same settings and hooks, warns, and its SQL functions refuse to run
 * (guc.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "guard.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Module load callback: define the settings, register the transaction
 * callbacks, then install the hooks.
 */
void
_PG_init(void)
{
	guard_guc_init();
	guard_progress_init();
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
