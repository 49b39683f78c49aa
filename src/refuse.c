/*-------------------------------------------------------------------------
 *
 * refuse.c
 *	  The commands guard refuses because they would drop protected tables
 *	  for good, without naming them: DROP SCHEMA ... CASCADE and DROP
 *	  OWNED BY.
 *
 * A DROP TABLE of a protected table goes to the trash (trash.c), but these
 * commands drop tables through dependencies, where the utility hook never
 * sees each table.  They are refused while they would reach a protected
 * table (capture other than none); the tables can be dropped one by one
 * first, and kept for undo.
 *
 * Layering: called by ddl.c; calls no file of ddl.c, trash.c, depend.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "utils/acl.h"
#include "utils/memutils.h"

#include "guard.h"

/*
 * The name of one protected table (capture other than none) that "cond"
 * selects, $1 being "arg" of type "argtype"; NULL if there is none.
 */
static char *
first_protected_table(const char *cond, Oid argtype, Datum arg)
{
	GuardAsRole owner;
	Oid			types[1] = {argtype};
	Datum		values[1] = {arg};
	char	   *found = NULL;
	MemoryContext outer = CurrentMemoryContext;

	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql(psprintf("SELECT c.relname FROM guard.policy p"
						   "  JOIN pg_catalog.pg_class c ON c.oid = p.relid"
						   " WHERE %s AND p.capture <> 'none'"
						   " ORDER BY 1 LIMIT 1", cond),
				  1, types, values, NULL);
	if (SPI_processed > 0)
		found = MemoryContextStrdup(outer,
									SPI_getvalue(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1));
	guard_as_role_end(&owner);
	return found;
}

/*
 * DROP SCHEMA ... CASCADE would drop protected tables without guard seeing
 * each one: refuse it while the schema holds any; they can be dropped (and
 * kept for undo) one by one first.
 */
void
guard_refuse_drop_schema(DropStmt *drop)
{
	ListCell   *lc;

	if (drop->behavior != DROP_CASCADE || !OidIsValid(get_extension_oid("guard", true)))
		return;
	foreach(lc, drop->objects)
	{
		Oid			nsp = get_namespace_oid(strVal(lfirst(lc)), true);
		char	   *found;

		if (!OidIsValid(nsp))
			continue;
		found = first_protected_table("c.relnamespace = $1", OIDOID,
									  ObjectIdGetDatum(nsp));
		if (found)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop schema \"%s\" because it holds protected table \"%s\"",
							strVal(lfirst(lc)), found),
					 errdetail("DROP SCHEMA ... CASCADE would drop protected tables for good."),
					 errhint("Drop the protected tables first (guard keeps them to undo the drop), or unprotect them.")));
	}
}

/*
 * DROP OWNED BY drops the role's tables without naming them: refuse it
 * while the role owns a protected table in this database, as for DROP
 * SCHEMA.
 */
void
guard_refuse_drop_owned(DropOwnedStmt *drop)
{
	ListCell   *lc;

	if (!OidIsValid(get_extension_oid("guard", true)))
		return;
	foreach(lc, drop->roles)
	{
		RoleSpec   *spec = lfirst_node(RoleSpec, lc);
		Oid			roleid = get_rolespec_oid(spec, true);
		char	   *found;

		if (!OidIsValid(roleid))
			continue;			/* DROP OWNED reports it */
		found = first_protected_table("c.relowner = $1", OIDOID,
									  ObjectIdGetDatum(roleid));
		if (found)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop objects owned by role \"%s\" because it owns protected table \"%s\"",
							get_rolespec_name(spec), found),
					 errdetail("DROP OWNED BY would drop protected tables for good."),
					 errhint("Drop the protected tables first (guard keeps them to undo the drop), reassign them with REASSIGN OWNED, or unprotect them.")));
	}
}
