/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  guard's own relations: its schema, the OIDs of its tables, indexes
 *	  and sequences, and opening its tables with a layout check.
 *
 * The capture path asks for these on every statement, so the OIDs are
 * looked up once and forgotten by a syscache callback when pg_class or
 * pg_namespace changes (such as on DROP EXTENSION).  The column numbers of
 * guard's tables (Natts_*, Anum_*) are in guard.h.
 *
 * The bottom layer: calls no other file of guard.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "guard.h"

/*
 * OIDs of guard's own relations, looked up once.
 */
#define RELID_CACHE_SIZE	16

static struct
{
	const char *name;			/* a string constant of the caller's */
	Oid			relid;
}			relid_cache[RELID_CACHE_SIZE];
static int	relid_cache_used = 0;
static bool relid_cache_registered = false;

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
 * Syscache callback on pg_class and pg_namespace: forget every OID, since a
 * relation of guard's may have been dropped or renamed.
 */
static void
relid_cache_reset(Datum arg, int cacheid, uint32 hashvalue)
{
	relid_cache_used = 0;
}

/*
 * The OID of one of guard's own tables, indexes or sequences.  An ERROR if
 * it is missing, which happens when the library is newer than the
 * extension's SQL objects.
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
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"guard.%s\" does not exist", relname),
				 errhint("Run ALTER EXTENSION guard UPDATE, or install the library matching the extension.")));
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
 * library was built for ("natts" columns), so that a library and a script
 * of different versions fail cleanly instead of misreading rows.
 */
Relation
guard_open(const char *relname, LOCKMODE lockmode, int natts)
{
	Relation	rel = table_open(guard_relid(relname), lockmode);

	if (RelationGetDescr(rel)->natts != natts)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"guard.%s\" does not have the layout this guard library expects",
						relname),
				 errhint("Run ALTER EXTENSION guard UPDATE, or install the library matching the extension.")));
	return rel;
}
