/*-------------------------------------------------------------------------
 *
 * spi.c
 *	  Running guard's own SQL through SPI as another role, with a pinned
 *	  search_path, and guard's own DDL marked as such.
 *
 * guard runs its SQL as the extension owner (or as a table's owner, or as
 * the role that declared an invariant), with search_path pinned so that no
 * object of the caller's can capture a name, and usually in a
 * security-restricted operation.  guard_internal_ddl is set while guard
 * runs DDL of its own (its triggers, the trash), so that the utility hook
 * lets it through without refusing or recording it.
 *
 * Calls only catalog.c, for the "not installed" error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/rel.h"

#include "guard.h"

/* set while guard runs DDL of its own: the utility hook lets it through */
bool		guard_internal_ddl = false;

/*
 * The role that owns the extension: guard's own SQL runs as it.
 */
static Oid
extension_owner(void)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tuple;
	Oid			owner = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("guard"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		owner = ((Form_pg_extension) GETSTRUCT(tuple))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(owner))
		guard_namespace();		/* raises the "not installed" error */
	return owner;
}

/*
 * Begin running SQL as "role" (InvalidOid: the extension owner) with
 * search_path "pg_catalog, pg_temp", in a security-restricted operation.
 */
void
guard_as_role_begin(GuardAsRole *s, Oid role)
{
	guard_as_role_path_begin(s, role, "pg_catalog, pg_temp", true);
}

/*
 * Begin running SQL as "role" (InvalidOid: the extension owner) with the
 * given search_path and session_replication_role origin, with SPI
 * connected; in a security-restricted operation unless the SQL must queue a
 * deferred trigger (which such an operation forbids).  guard_as_role_end()
 * undoes it all; an ERROR in between is unwound by transaction abort.
 */
void
guard_as_role_path_begin(GuardAsRole *s, Oid role, const char *search_path,
						 bool restricted)
{
	int			rc;

	GetUserIdAndSecContext(&s->save_userid, &s->save_sec_context);
	SetUserIdAndSecContext(OidIsValid(role) ? role : extension_owner(),
						   s->save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   (restricted ? SECURITY_RESTRICTED_OPERATION : 0));
	s->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", search_path,
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	/* guard's own tables' triggers fire even while a restore writes */
	if (SessionReplicationRole != SESSION_REPLICATION_ROLE_ORIGIN)
		(void) set_config_option("session_replication_role", "origin",
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
	rc = SPI_connect();
	if (rc != SPI_OK_CONNECT)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("SPI_connect failed: %s",
								 SPI_result_code_string(rc))));
}

/*
 * End what guard_as_role_begin() or guard_as_role_path_begin() began:
 * disconnect SPI, restore search_path and the user.
 */
void
guard_as_role_end(GuardAsRole *s)
{
	SPI_finish();
	AtEOXact_GUC(true, s->save_nestlevel);
	SetUserIdAndSecContext(s->save_userid, s->save_sec_context);
}

/*
 * Run one statement of guard's own, between guard_as_role_begin() and
 * guard_as_role_end(); the result is in SPI_tuptable and SPI_processed.
 * Errors in the statement are raised by SPI itself; a failure code can only
 * mean a statement SPI cannot run, a bug of guard's.
 */
void
guard_run_sql(const char *sql, int nargs, Oid *types, Datum *values,
			  const char *nulls)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls,
										   false, 0);

	if (rc < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("SPI_execute_with_args failed: %s",
								 SPI_result_code_string(rc)),
				 errdetail_internal("Statement: %s", sql)));
}

/*
 * Run "statements" (a List of C strings), DDL of guard's own, as "role"
 * (InvalidOid: the extension owner) with the given search_path, with
 * guard_internal_ddl set so that the utility hook lets them through
 * unrefused and unrecorded.  The flag is restored to the value it had, even
 * on error, so that nested calls do not clear an outer caller's.  Not a
 * security-restricted operation, so that the DDL may do what such an
 * operation forbids (such as queue a deferred trigger); the statements are
 * guard's own, built with quoted names.  Their effects are visible on
 * return.
 */
void
guard_run_internal_ddl(Oid role, const char *search_path, List *statements)
{
	GuardAsRole as;
	bool		save = guard_internal_ddl;
	ListCell   *lc;

	if (statements == NIL)
		return;
	guard_as_role_path_begin(&as, role, search_path, false);
	/* their notices are guard's business, not the user's */
	(void) set_config_option("client_min_messages", "warning",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	guard_internal_ddl = true;
	PG_TRY();
	{
		foreach(lc, statements)
			guard_run_sql((const char *) lfirst(lc), 0, NULL, NULL, NULL);
	}
	PG_FINALLY();
	{
		guard_internal_ddl = save;
	}
	PG_END_TRY();
	guard_as_role_end(&as);
	CommandCounterIncrement();
}

/*
 * In a PG_CATCH of work run in an internal subtransaction: take the error,
 * roll the subtransaction back, and go back to the caller's memory context
 * and resource owner.  Returns the error for the caller to raise again
 * (ReThrowError) once it has put its own state back.
 */
ErrorData *
guard_subxact_abort(MemoryContext oldcxt, ResourceOwner oldowner)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(oldcxt);
	edata = CopyErrorData();
	FlushErrorState();
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return edata;
}

/*
 * Roll back an internal subtransaction whose work succeeded (a trial, a dry
 * run) and go back to the caller's memory context and resource owner.
 */
void
guard_subxact_rollback(MemoryContext oldcxt, ResourceOwner oldowner)
{
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
}

/*
 * The result of the last SPI query, whose first columns are classid, objid
 * and (if it has a third) objsubid, as a List of ObjectAddress allocated in
 * "cxt".
 */
List *
guard_spi_addresses(MemoryContext cxt)
{
	List	   *addrs = NIL;

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(cxt);
		ObjectAddress *addr = palloc(sizeof(ObjectAddress));

		addr->classId = DatumGetObjectId(SPI_getbinval(tuple, desc, 1, &isnull));
		addr->objectId = DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull));
		addr->objectSubId = desc->natts >= 3 ?
			DatumGetInt32(SPI_getbinval(tuple, desc, 3, &isnull)) : 0;
		addrs = lappend(addrs, addr);
		MemoryContextSwitchTo(old);
	}
	return addrs;
}
