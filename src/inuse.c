/*-------------------------------------------------------------------------
 *
 * inuse.c
 *	  Trashed tables in the way of a DROP of something they use.
 *
 * A table in guard's trash still uses what it used when it was dropped:
 * the types of its columns, the functions of its defaults and triggers,
 * sequences, schemas, a tablespace, its owner and the roles it grants to.
 * Without guard the table would be gone, and dropping those objects would
 * just work; so before such a DROP runs, guard gets the trash out of its
 * way:
 *
 *	- a trashed table owned by a role that DROP OWNED BY or DROP ROLE
 *	  removes is given to the extension's owner (the undo gives it back
 *	  if the role still exists); grants to a dropped role are revoked;
 *	- a trashed table that uses any other object the statement drops
 *	  (directly, or through what a CASCADE reaches) is dropped from the
 *	  trash for real: its DROP TABLE change is marked as no longer
 *	  undoable, and a NOTICE names it;
 *	- before a DROP TABLESPACE, the trashed tables stored in the
 *	  tablespace are dropped from the trash for good, with a NOTICE, in a
 *	  transaction of their own: their files go only at commit, and DROP
 *	  TABLESPACE needs the directory empty before its own;
 *	- a DROP TABLE of a table in the trash (by name, in guard_trash) drops
 *	  it for real, and its DROP TABLE change says it can no longer be
 *	  undone.
 *
 * All of it but the DROP TABLESPACE step happens in the statement's
 * transaction: if the statement then fails, nothing of it remains.
 *
 * Calls trash.c, link.c and spi.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_tablespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/tablecmds.h"
#include "commands/tablespace.h"
#include "common/relpath.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "postmaster/bgwriter.h"
#include "storage/fd.h"
#include "tcop/cmdtag.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "guard.h"

/*
 * The relation a catalog object (classid, objid) belongs to, as SQL over
 * a row "r" with those columns (depend.c's guard_object_relation).
 */
#define OWNER_RELATION_SQL \
"CASE r.classid" \
" WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN" \
"   COALESCE((SELECT i.indrelid FROM pg_catalog.pg_index i WHERE i.indexrelid = r.objid)," \
"                       (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.reltoastrelid = r.objid)," \
"                       (SELECT d.refobjid FROM pg_catalog.pg_depend d" \
"                         WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass" \
"                           AND d.objid = r.objid AND d.objsubid = 0" \
"                           AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass" \
"                           AND d.refobjsubid <> 0 AND d.deptype IN ('a', 'i') LIMIT 1)," \
"                       r.objid)" \
" WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN" \
"   (SELECT COALESCE(NULLIF(t.typrelid, 0)," \
"                               (SELECT e.typrelid FROM pg_catalog.pg_type e WHERE e.oid = t.typelem))" \
"      FROM pg_catalog.pg_type t WHERE t.oid = r.objid)" \
" WHEN 'pg_catalog.pg_constraint'::pg_catalog.regclass THEN" \
"   (SELECT x.conrelid FROM pg_catalog.pg_constraint x WHERE x.oid = r.objid)" \
" WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass THEN" \
"   (SELECT x.tgrelid FROM pg_catalog.pg_trigger x WHERE x.oid = r.objid)" \
" WHEN 'pg_catalog.pg_attrdef'::pg_catalog.regclass THEN" \
"   (SELECT x.adrelid FROM pg_catalog.pg_attrdef x WHERE x.oid = r.objid)" \
" WHEN 'pg_catalog.pg_policy'::pg_catalog.regclass THEN" \
"   (SELECT x.polrelid FROM pg_catalog.pg_policy x WHERE x.oid = r.objid)" \
" WHEN 'pg_catalog.pg_rewrite'::pg_catalog.regclass THEN" \
"   (SELECT x.ev_class FROM pg_catalog.pg_rewrite x WHERE x.oid = r.objid)" \
" WHEN 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass THEN" \
"   (SELECT x.stxrelid FROM pg_catalog.pg_statistic_ext x WHERE x.oid = r.objid)" \
" WHEN 'pg_catalog.pg_publication_rel'::pg_catalog.regclass THEN" \
"   (SELECT x.prrelid FROM pg_catalog.pg_publication_rel x WHERE x.oid = r.objid)" \
" END"

/*
 * The trashed tables (roots of their trees) that use the objects of
 * "targets" (ObjectAddress *), or with "recurse" anything that depends on
 * them: the tables a DROP of the targets (with CASCADE) would reach.
 */
static List *
trashed_users(List *targets, bool recurse)
{
	GuardAsRole owner;
	Oid			types[3] = {OIDARRAYOID, OIDARRAYOID, OIDOID};
	Datum		values[3];
	Datum	   *classids;
	Datum	   *objids;
	int			n = 0;
	ListCell   *lc;
	List	   *found = NIL;
	List	   *roots = NIL;
	MemoryContext outer = CurrentMemoryContext;

	if (targets == NIL)
		return NIL;
	classids = palloc(sizeof(Datum) * list_length(targets));
	objids = palloc(sizeof(Datum) * list_length(targets));
	foreach(lc, targets)
	{
		ObjectAddress *addr = lfirst(lc);

		classids[n] = ObjectIdGetDatum(addr->classId);
		objids[n++] = ObjectIdGetDatum(addr->objectId);
	}
	values[0] = PointerGetDatum(construct_array(classids, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(objids, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	values[2] = ObjectIdGetDatum(guard_trash_namespace(false));

	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql(psprintf("WITH RECURSIVE t(classid, objid) AS ("
						   "  SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.oid[]), pg_catalog.unnest($2::pg_catalog.oid[]))),"
						   " reach(classid, objid) AS ("
						   "  SELECT d.classid, d.objid FROM pg_catalog.pg_depend d JOIN t"
						   "    ON d.refclassid = t.classid AND d.refobjid = t.objid"
						   "  UNION"
						   "  SELECT d.classid, d.objid FROM pg_catalog.pg_depend d JOIN reach x"
						   "    ON d.refclassid = x.classid AND d.refobjid = x.objid"
						   "   WHERE %s)"
						   " SELECT DISTINCT c.oid FROM (SELECT " OWNER_RELATION_SQL " AS rel FROM reach r) o"
						   "  JOIN pg_catalog.pg_class c ON c.oid = o.rel"
						   " WHERE c.relnamespace = $3",
						   recurse ? "true" : "false"),
				  3, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 1, &isnull));
		MemoryContext old = MemoryContextSwitchTo(outer);

		found = lappend_oid(found, relid);
		MemoryContextSwitchTo(old);
	}
	guard_as_role_end(&owner);

	foreach(lc, found)
		roots = list_append_unique_oid(roots, guard_trash_root(lfirst_oid(lc)));
	return roots;
}

/*
 * The sentence that says why a trashed table goes: "tag" is the command
 * (DROP TYPE, DROP ROLE, ...).
 */
static char *
why(const char *tag)
{
	return psprintf("It used an object that %s drops.", tag);
}

/*
 * The objects a DROP statement names, as addresses (those that exist).
 */
static List *
named_objects(DropStmt *drop)
{
	List	   *addrs = NIL;
	ListCell   *lc;

	foreach(lc, drop->objects)
	{
		ObjectAddress *addr = palloc(sizeof(ObjectAddress));

		switch (drop->removeType)
		{
			case OBJECT_TABLE:
			case OBJECT_VIEW:
			case OBJECT_MATVIEW:
			case OBJECT_SEQUENCE:
			case OBJECT_FOREIGN_TABLE:
			case OBJECT_INDEX:
				{
					Oid			relid = RangeVarGetRelid(makeRangeVarFromNameList((List *) lfirst(lc)),
														 NoLock, true);

					ObjectAddressSet(*addr, RelationRelationId, relid);
					break;
				}
			default:
				{
					Relation	rel = NULL;

					*addr = get_object_address(drop->removeType, lfirst(lc), &rel,
											   AccessExclusiveLock, true);
					if (rel)
						table_close(rel, NoLock);
					break;
				}
		}
		if (OidIsValid(addr->objectId))
			addrs = lappend(addrs, addr);
	}
	return addrs;
}

/*
 * The objects owned by "roleids" in this database that are not in the
 * trash: what DROP OWNED BY drops.
 */
static List *
owned_objects(List *roleids)
{
	GuardAsRole owner;
	Oid			types[2] = {OIDARRAYOID, OIDOID};
	Datum		values[2];
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(roleids), 1));
	int			n = 0;
	ListCell   *lc;
	List	   *addrs = NIL;
	MemoryContext outer = CurrentMemoryContext;

	foreach(lc, roleids)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	values[0] = PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	values[1] = ObjectIdGetDatum(MyDatabaseId);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT s.classid, s.objid FROM pg_catalog.pg_shdepend s"
				  " WHERE s.dbid = $2 AND s.deptype = 'o'"
				  "   AND s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass"
				  "   AND s.refobjid = ANY ($1)",
				  2, types, values, NULL);
	addrs = guard_spi_addresses(outer);
	guard_as_role_end(&owner);
	return addrs;
}

/*
 * Before DROP OWNED BY or DROP ROLE of "roleids": the trashed tables a
 * role owns go to the extension's owner (an "owner" link gives them back
 * on undo); its grants on trashed tables are revoked (DROP ROLE; DROP
 * OWNED revokes them itself); a trashed table that depends on the role in
 * any other way (a policy naming it) is dropped from the trash.
 */
void
guard_inuse_roles(List *roleids, bool dropping_owned)
{
	GuardAsRole owner;
	Oid			types[3] = {OIDARRAYOID, OIDOID, OIDOID};
	Datum		values[3];
	Datum	   *elems;
	int			n = 0;
	ListCell   *lc;
	List	   *rels = NIL;
	List	   *roles = NIL;
	List	   *kinds = NIL;
	List	   *purge = NIL;
	ListCell   *lr,
			   *lk;
	Oid			extowner;
	MemoryContext outer = CurrentMemoryContext;

	if (roleids == NIL || guard_trash_is_empty())
		return;
	elems = palloc(sizeof(Datum) * list_length(roleids));
	foreach(lc, roleids)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	values[0] = PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	values[1] = ObjectIdGetDatum(MyDatabaseId);
	values[2] = ObjectIdGetDatum(guard_trash_namespace(false));

	/* as the extension owner, a superuser: it may change any owner */
	guard_as_role_path_begin(&owner, InvalidOid, "pg_catalog, pg_temp", false);
	extowner = GetUserId();
	guard_run_sql("SELECT o.rel, o.refobjid, o.deptype::pg_catalog.text,"
				  "       c.relkind IN ('r', 'p', 'f') AND o.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
				  "  FROM (SELECT " OWNER_RELATION_SQL " AS rel, r.refobjid, r.deptype, r.classid"
				  "          FROM pg_catalog.pg_shdepend r"
				  "         WHERE r.dbid = $2 AND r.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass"
				  "           AND r.refobjid = ANY ($1)) o"
				  "  JOIN pg_catalog.pg_class c ON c.oid = o.rel"
				  " WHERE c.relnamespace = $3"
				  " ORDER BY c.relkind DESC",
				  3, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *deptype = SPI_getvalue(tuple, desc, 3);
		bool		table = DatumGetBool(SPI_getbinval(tuple, desc, 4, &isnull));
		Oid			rel = DatumGetObjectId(SPI_getbinval(tuple, desc, 1, &isnull));
		MemoryContext old = MemoryContextSwitchTo(CurTransactionContext);
		int			kind;

		if (deptype[0] == 'o' && table)
			kind = 'o';
		else if (deptype[0] == 'o' || deptype[0] == 'i')
			kind = 0;			/* follows its table, or extension privileges */
		else if (deptype[0] == 'a')
			kind = dropping_owned ? 0 : 'a';
		else
			kind = dropping_owned ? 0 : 'p';
		if (kind != 0)
		{
			rels = lappend_oid(rels, rel);
			roles = lappend_oid(roles, DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull)));
			kinds = lappend_int(kinds, kind);
		}
		MemoryContextSwitchTo(old);
	}

	forthree(lc, rels, lr, roles, lk, kinds)
	{
		Oid			rel = lfirst_oid(lc);
		Oid			role = lfirst_oid(lr);

		if (lfirst_int(lk) == 'o')
		{
			StringInfoData d;

			initStringInfo(&d);
			appendStringInfo(&d, "{\"link\": \"owner\", \"rel\": \"%u\", \"owner\": ", rel);
			escape_json(&d, GetUserNameFromId(role, false));
			appendStringInfoChar(&d, '}');
			ATExecChangeOwner(rel, extowner, false, AccessExclusiveLock);
			guard_link_append(guard_trash_root(rel), d.data);
		}
		else if (lfirst_int(lk) == 'a')
			RemoveRoleFromObjectACL(role, RelationRelationId, rel);
		else
		{
			Oid			root = guard_trash_root(rel);
			MemoryContext old = MemoryContextSwitchTo(outer);

			purge = list_append_unique_oid(purge, root);
			MemoryContextSwitchTo(old);
		}
		CommandCounterIncrement();
	}
	guard_as_role_end(&owner);
	guard_trash_purge(purge, why(dropping_owned ? "DROP OWNED" : "DROP ROLE"), true);
}

/*
 * The trashed tables (roots of their trees) that have a relation (the
 * table, an index or its TOAST table) in tablespace "spc".  *held is set
 * if the tablespace holds anything else this database can see (a live
 * relation, a database's default tablespace, another database's
 * partitioned table or index): then DROP TABLESPACE fails anyway.
 */
static List *
trashed_in_tablespace(Oid spc, bool *held)
{
	GuardAsRole owner;
	Oid			types[3] = {OIDOID, OIDOID, OIDOID};
	Datum		values[3];
	List	   *found = NIL;
	List	   *roots = NIL;
	ListCell   *lc;
	MemoryContext outer = CurrentMemoryContext;

	*held = false;
	values[0] = ObjectIdGetDatum(spc);
	values[1] = ObjectIdGetDatum(guard_trash_namespace(false));
	values[2] = ObjectIdGetDatum(MyDatabaseId);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("WITH r AS ("
				  "  SELECT COALESCE(i.indrelid, c.oid) AS tab FROM pg_catalog.pg_class c"
				  "    LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid"
				  "   WHERE c.reltablespace = $1),"
				  " t AS ("
				  "  SELECT COALESCE((SELECT o.oid FROM pg_catalog.pg_class o WHERE o.reltoastrelid = r.tab),"
				  "                  r.tab) AS tab FROM r)"
				  " SELECT DISTINCT t.tab, c.relnamespace = $2 FROM t JOIN pg_catalog.pg_class c ON c.oid = t.tab"
				  " UNION ALL"
				  " SELECT 0, false FROM pg_catalog.pg_database d WHERE d.dattablespace = $1"
				  " UNION ALL"
				  " SELECT 0, false FROM pg_catalog.pg_shdepend s"
				  "  WHERE s.refclassid = 'pg_catalog.pg_tablespace'::pg_catalog.regclass"
				  "    AND s.refobjid = $1 AND s.dbid <> $3"
				  " ORDER BY 1",	/* the NOTICEs in the order the tables were made */
				  3, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 1, &isnull));
		bool		trashed = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 2, &isnull));
		MemoryContext old = MemoryContextSwitchTo(outer);

		if (trashed)
			found = lappend_oid(found, relid);
		else
			*held = true;
		MemoryContextSwitchTo(old);
	}
	guard_as_role_end(&owner);
	foreach(lc, found)
		roots = list_append_unique_oid(roots, guard_trash_root(lfirst_oid(lc)));
	return roots;
}

/*
 * Does a database other than this one have files in tablespace "spc"?
 * (DROP TABLESPACE then fails: guard cannot see what they are.)
 */
static bool
other_databases_in(Oid spc)
{
	char	   *path = psprintf("pg_tblspc/%u/%s", spc, TABLESPACE_VERSION_DIRECTORY);
	DIR		   *dir = AllocateDir(path);
	struct dirent *de;
	bool		found = false;

	if (dir == NULL)
		return false;
	while (!found && (de = ReadDir(dir, path)) != NULL)
	{
		char	   *sub;
		DIR		   *subdir;
		struct dirent *se;

		if (de->d_name[0] == '\0' ||
			strspn(de->d_name, "0123456789") != strlen(de->d_name) ||
			atooid(de->d_name) == MyDatabaseId)
			continue;
		sub = psprintf("%s/%s", path, de->d_name);
		subdir = AllocateDir(sub);
		if (subdir == NULL)
			continue;
		while ((se = ReadDir(subdir, sub)) != NULL)
		{
			if (strcmp(se->d_name, ".") != 0 && strcmp(se->d_name, "..") != 0)
			{
				found = true;
				break;
			}
		}
		FreeDir(subdir);
	}
	FreeDir(dir);
	return found;
}

/*
 * DROP TABLESPACE of "spc", which something besides the trash holds, will
 * fail: raise the error PostgreSQL would raise without guard.  Its first
 * check lists what depends on the tablespace in pg_shdepend, where the
 * trashed partitioned tables and indexes stored there would show up too:
 * run that check with theirs taken out, in a subtransaction rolled back,
 * and raise its error, or else the "not empty" error that would follow.
 * Without trashed dependents, return: PostgreSQL's own error is the same.
 */
static void
fail_as_without_guard(const char *spcname, Oid spc)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner_before = CurrentResourceOwner;
	GuardAsRole owner;
	Oid			types[3] = {OIDOID, OIDOID, OIDOID};
	Datum		values[3];
	List	   *trashed = NIL;
	char	   *detail = NULL;
	char	   *detail_log = NULL;
	bool		depends;
	ListCell   *lc;

	values[0] = ObjectIdGetDatum(spc);
	values[1] = ObjectIdGetDatum(guard_trash_namespace(false));
	values[2] = ObjectIdGetDatum(MyDatabaseId);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT s.objid FROM pg_catalog.pg_shdepend s"
				  "  JOIN pg_catalog.pg_class c ON c.oid = s.objid"
				  " WHERE s.dbid = $3 AND s.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
				  "   AND s.refclassid = 'pg_catalog.pg_tablespace'::pg_catalog.regclass"
				  "   AND s.refobjid = $1 AND c.relnamespace = $2",
				  3, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 1, &isnull));
		MemoryContext old = MemoryContextSwitchTo(cxt);

		trashed = lappend_oid(trashed, relid);
		MemoryContextSwitchTo(old);
	}
	guard_as_role_end(&owner);
	if (trashed == NIL)
		return;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	foreach(lc, trashed)
		changeDependencyOnTablespace(RelationRelationId, lfirst_oid(lc), InvalidOid);
	CommandCounterIncrement();
	depends = checkSharedDependencies(TableSpaceRelationId, spc, &detail, &detail_log);
	if (depends)
	{
		detail = MemoryContextStrdup(cxt, detail);
		detail_log = MemoryContextStrdup(cxt, detail_log);
	}
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner_before;

	if (depends)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("tablespace \"%s\" cannot be dropped because some objects depend on it",
						spcname),
				 errdetail_internal("%s", detail),
				 errdetail_log("%s", detail_log)));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("tablespace \"%s\" is not empty", spcname)));
}

/*
 * Before DROP TABLESPACE (at top level: it cannot run in a transaction
 * block): the trashed tables stored in the tablespace are dropped from the
 * trash for good, each named by a NOTICE, and that is committed at once;
 * the DROP TABLESPACE then runs in a transaction of its own.  Their files
 * go only when the transaction that drops them commits, and DROP
 * TABLESPACE needs the directory empty before its own commit.  Only when
 * nothing else holds the tablespace (this database's other relations,
 * another database's files, a database's default): otherwise DROP
 * TABLESPACE fails with the error it would raise without guard, and the
 * trash is left alone.
 */
void
guard_inuse_tablespace(DropTableSpaceStmt *stmt, bool isTopLevel)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			spc;
	List	   *roots;
	bool		held;

	if (!OidIsValid(get_extension_oid("guard", true)) || guard_trash_is_empty())
		return;
	spc = get_tablespace_oid(stmt->tablespacename, true);
	/* DropTableSpace raises the errors, as without guard */
	if (!OidIsValid(spc) || !pg_tablespace_ownercheck(spc, GetUserId()) ||
		IsPinnedObject(TableSpaceRelationId, spc))
		return;
	roots = trashed_in_tablespace(spc, &held);
	if (roots == NIL)
		return;
	if (!held && other_databases_in(spc))
	{
		/* files of relations dropped before go at the next checkpoint */
		RequestCheckpoint(CHECKPOINT_IMMEDIATE | CHECKPOINT_FORCE | CHECKPOINT_WAIT);
		held = other_databases_in(spc);
	}
	if (held)
	{
		PreventInTransactionBlock(isTopLevel, "DROP TABLESPACE");
		fail_as_without_guard(stmt->tablespacename, spc);
		return;
	}

	PreventInTransactionBlock(isTopLevel, "DROP TABLESPACE");
	guard_trash_purge(roots, why("DROP TABLESPACE"), true);
	if (ActiveSnapshotSet())
		PopActiveSnapshot();
	CommitTransactionCommand();
	StartTransactionCommand();
	MemoryContextSwitchTo(cxt);
}

/*
 * Before a DROP of any kind (not one of guard's own): get the trash out
 * of its way, as the file header says.  Does nothing while the trash is
 * empty.
 */
void
guard_inuse_before_drop(Node *parsetree)
{
	if (!OidIsValid(get_extension_oid("guard", true)) || guard_trash_is_empty())
		return;

	switch (nodeTag(parsetree))
	{
		case T_DropStmt:
			{
				DropStmt   *drop = (DropStmt *) parsetree;

				List	   *named;
				List	   *others = NIL;
				List	   *direct = NIL;
				ListCell   *lc;
				Oid			nsp = guard_trash_namespace(false);

				if (drop->concurrent)
					return;
				named = named_objects(drop);
				foreach(lc, named)
				{
					ObjectAddress *addr = lfirst(lc);

					if (addr->classId == RelationRelationId &&
						get_rel_namespace(addr->objectId) == nsp)
						direct = list_append_unique_oid(direct, guard_trash_root(addr->objectId));
					else
						others = lappend(others, addr);
				}
				guard_trash_purge(direct, "DROP TABLE dropped it from the trash.", false);
				guard_trash_purge(list_difference_oid(trashed_users(others, true), direct),
								  why(GetCommandTagName(CreateCommandTag(parsetree))), true);
				break;
			}
		case T_DropOwnedStmt:
			{
				DropOwnedStmt *drop = (DropOwnedStmt *) parsetree;
				List	   *roleids = NIL;
				ListCell   *lc;

				foreach(lc, drop->roles)
				{
					Oid			roleid = get_rolespec_oid(lfirst(lc), true);

					if (OidIsValid(roleid))
						roleids = lappend_oid(roleids, roleid);
				}
				guard_inuse_roles(roleids, true);
				guard_trash_purge(trashed_users(owned_objects(roleids), true),
								  why("DROP OWNED"), true);
				break;
			}
		case T_DropRoleStmt:
			{
				List	   *roleids = NIL;
				ListCell   *lc;

				foreach(lc, ((DropRoleStmt *) parsetree)->roles)
				{
					Oid			roleid = get_rolespec_oid(lfirst(lc), true);

					if (OidIsValid(roleid))
						roleids = lappend_oid(roleids, roleid);
				}
				guard_inuse_roles(roleids, false);
				break;
			}
		default:
			break;
	}
}

/*
 * After guard moved the protected tables a DROP reaches into its trash:
 * those that use any other object the statement drops ("dropped", the
 * trial's list) cannot stay; drop them from the trash.
 */
void
guard_inuse_dropped(List *dropped, List *units)
{
	List	   *targets = NIL;
	List	   *roots;
	List	   *purge = NIL;
	Oid			nsp = guard_trash_namespace(false);
	ListCell   *lc;

	if (units == NIL || !OidIsValid(nsp))
		return;
	foreach(lc, dropped)
	{
		ObjectAddress *addr = lfirst(lc);
		Oid			rel = guard_object_relation(addr);

		/* what moved into the trash is not dropped any more */
		if (OidIsValid(rel) && get_rel_namespace(rel) == nsp)
			continue;
		if (addr->objectSubId != 0)
			continue;
		targets = lappend(targets, addr);
	}
	roots = trashed_users(targets, false);
	foreach(lc, roots)
	{
		if (list_member_oid(units, lfirst_oid(lc)))
			purge = lappend_oid(purge, lfirst_oid(lc));
	}
	guard_trash_purge(purge, "It used an object that the same statement drops.", true);
}
