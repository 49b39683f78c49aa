/*-------------------------------------------------------------------------
 *
 * locks.c
 *	  The locks this backend holds, as pg_locks shows them: what a
 *	  rehearsed statement took, and the sequences nextval() locked.
 *
 * Each reading of pg_locks runs in a subtransaction rolled back at once,
 * so that the lock the query itself takes on the view goes with it.
 *
 * Calls no other file of guard.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "guard.h"

/*
 * The first column of what "sql" returns, as strings in "cxt", read in a
 * subtransaction rolled back afterwards (an error is raised again after
 * the rollback).
 */
static List *
read_strings(const char *sql, MemoryContext cxt)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	List	   *strings = NIL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute(sql, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read pg_locks");
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			char	   *s = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
			MemoryContext old = MemoryContextSwitchTo(cxt);

			strings = lappend(strings, pstrdup(s));
			MemoryContextSwitchTo(old);
		}
		SPI_finish();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		edata = guard_subxact_abort(oldcxt, oldowner);
		ReThrowError(edata);
	}
	PG_END_TRY();
	guard_subxact_rollback(oldcxt, oldowner);
	return strings;
}

/*
 * The relation locks this backend holds, sorted, each as "OID mode name"
 * in the current memory context (guard_locks_taken() makes them "mode on
 * schema.table").  Indexes, sequences, TOAST tables and the catalogs' and
 * guard's own relations are left out: they follow the tables' locks.  A
 * relation that no longer exists is named "relation OID".
 */
List *
guard_locks_held(void)
{
	return read_strings("SELECT l.relation || ' ' || l.mode || ' '"
						"       || COALESCE(pg_catalog.quote_ident(n.nspname) || '.'"
						"                   || pg_catalog.quote_ident(c.relname), 'relation ' || l.relation)"
						"  FROM pg_catalog.pg_locks l"
						"  LEFT JOIN pg_catalog.pg_class c ON c.oid = l.relation"
						"  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
						" WHERE l.pid = pg_catalog.pg_backend_pid() AND l.granted"
						"   AND l.locktype = 'relation'"
						"   AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d"
						"                      WHERE d.datname = pg_catalog.current_database())"
						"   AND (c.oid IS NULL OR (c.relkind NOT IN ('i', 'I', 'S')"
						"        AND n.nspname NOT IN ('pg_catalog', 'pg_toast', 'information_schema', 'guard')))"
						" ORDER BY 1", CurrentMemoryContext);
}

/*
 * The relations of this database this backend holds a lock on, any mode,
 * as a List of OIDs.
 */
List *
guard_locks_relids(void)
{
	List	   *relids = NIL;
	ListCell   *lc;

	foreach(lc, read_strings("SELECT DISTINCT l.relation FROM pg_catalog.pg_locks l"
							 " WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'relation'"
							 "   AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d"
							 "                      WHERE d.datname = pg_catalog.current_database())",
							 CurrentMemoryContext))
		relids = lappend_oid(relids, atooid(lfirst(lc)));
	return relids;
}

/*
 * The sequences other than guard's on which this backend holds the lock
 * nextval() takes (for the rest of the transaction), by name, in "cxt".
 */
List *
guard_locks_on_sequences(MemoryContext cxt)
{
	return read_strings("SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)"
						"  FROM pg_catalog.pg_locks l"
						"  JOIN pg_catalog.pg_class c ON c.oid = l.relation"
						"  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
						" WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'relation'"
						"   AND l.mode = 'RowExclusiveLock' AND c.relkind = 'S' AND n.nspname <> 'guard'"
						" ORDER BY 1", cxt);
}

/*
 * The part of a lock from guard_locks_held() after its "OID mode " (or
 * after its "OID "), or NULL.
 */
static const char *
lock_part(const char *lock, int skip)
{
	for (int i = 0; i < skip && lock; i++)
	{
		lock = strchr(lock, ' ');
		if (lock)
			lock++;
	}
	return lock;
}

/*
 * The lock of "locks" on the relation of "lock" (its "OID " prefix), in
 * the same mode if "same_mode", or NULL.
 */
static const char *
lock_find(List *locks, const char *lock, bool same_mode)
{
	int			len = (same_mode ? lock_part(lock, 2) : lock_part(lock, 1)) - lock;
	ListCell   *lc;

	foreach(lc, locks)
	{
		if (strncmp(lfirst(lc), lock, len) == 0)
			return lfirst(lc);
	}
	return NULL;
}

/*
 * The locks of "after" (from guard_locks_held()) not in "before": those
 * taken in between, as "mode on schema.table", a relation named as it was
 * before (a table moved into guard's trash keeps its name).  An ACCESS
 * SHARE lock on a relation also held in another mode is left out: every
 * lock that conflicts with it conflicts with the other mode.
 */
List *
guard_locks_taken(List *before, List *after)
{
	List	   *taken = NIL;
	ListCell   *lc;

	foreach(lc, after)
	{
		const char *lock = lfirst(lc);
		const char *then = lock_find(before, lock, false);
		const char *mode = lock_part(lock, 1);
		const char *name = lock_part(then ? then : lock, 2);

		if (lock_find(before, lock, true))
			continue;
		if (strncmp(mode, "AccessShareLock ", 16) == 0)
		{
			ListCell   *lc2;
			bool		stronger = false;

			foreach(lc2, after)
			{
				const char *other = lfirst(lc2);

				if (other != lock && strncmp(other, lock, mode - lock) == 0)
					stronger = true;
			}
			if (stronger)
				continue;
		}
		taken = lappend(taken, psprintf("%.*s on %s",
										(int) (lock_part(lock, 2) - mode - 1), mode, name));
	}
	return taken;
}
