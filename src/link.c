/*-------------------------------------------------------------------------
 *
 * link.c
 *	  A dropped protected table's links to the live tables: saved, and cut
 *	  at the DROP.
 *
 * A table in the trash must be gone for the rest of the database, as
 * Oracle's recycle bin drops a dropped table's referential constraints.
 * Before a tree of tables (a table with its partitions or inheritance
 * children) moves into the trash, every link that crosses the tree's
 * boundary is saved as a directive (a JSON object) in the DROP TABLE
 * change's detail, and cut:
 *
 *	partition	the tree's root was a partition: DETACH PARTITION, saved
 *				with its bound
 *	inherit		a table of the tree inherited from a table outside it:
 *				NO INHERIT
 *	of			a typed table of the tree (OF type): NOT OF
 *	fk			a foreign key between a table of the tree and one outside
 *				it, either way: dropped, saved with its definition
 *	publication	a publication listed a table of the tree: removed from it,
 *				saved with its column list and row filter
 *	owner		(added later, when DROP OWNED or DROP ROLE takes the owner
 *				away from a trashed table) the owner to give back
 *
 * relink.c makes them again at the undo.  A link to a table that is itself
 * in the trash then is handed over (guard_link_append) to that table's
 * DROP TABLE change, to be made when that one comes back.
 *
 * Calls spi.c only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_publication.h"
#include "catalog/pg_publication_rel.h"
#include "catalog/pg_type.h"
#include "commands/tablecmds.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "guard.h"

/* the search_path guard's own statements run with */
#define LINK_PATH	"pg_catalog, pg_temp"

/*
 * The relations of "tree" as an oid[] Datum.
 */
static Datum
oid_array(List *oids)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(oids), 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, oids)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	return PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid),
										   true, TYPALIGN_INT));
}

/*
 * Append "name": value to a JSON object being built in "buf" (opened with
 * '{'); value NULL gives null.
 */
static void
json_add(StringInfo buf, const char *name, const char *value)
{
	if (buf->len > 1)
		appendStringInfoString(buf, ", ");
	escape_json(buf, name);
	appendStringInfoString(buf, ": ");
	if (value)
		escape_json(buf, value);
	else
		appendStringInfoString(buf, "null");
}

/* the same for an OID */
static void
json_add_oid(StringInfo buf, const char *name, Oid value)
{
	char		num[16];

	snprintf(num, sizeof(num), "%u", value);
	json_add(buf, name, num);
}

/*
 * The parents outside the tree that tables of the tree inherit from
 * (partition or not): one directive each.
 */
static void
save_parents(Datum tree, MemoryContext outer, List **directives)
{
	Oid			types[1] = {OIDARRAYOID};
	Datum		values[1] = {tree};

	guard_run_sql("SELECT i.inhrelid, i.inhparent, c.relispartition,"
				  "       pg_catalog.pg_get_expr(c.relpartbound, c.oid)"
				  "  FROM pg_catalog.pg_inherits i"
				  "  JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
				  " WHERE i.inhrelid = ANY ($1) AND i.inhparent <> ALL ($1)"
				  " ORDER BY i.inhrelid, i.inhseqno",
				  1, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		bool		partition = DatumGetBool(SPI_getbinval(tuple, desc, 3, &isnull));
		MemoryContext old = MemoryContextSwitchTo(outer);
		StringInfoData d;

		initStringInfo(&d);
		appendStringInfoChar(&d, '{');
		json_add(&d, "link", partition ? "partition" : "inherit");
		json_add_oid(&d, "rel", DatumGetObjectId(SPI_getbinval(tuple, desc, 1, &isnull)));
		json_add_oid(&d, "parent", DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull)));
		if (partition)
			json_add(&d, "bound", SPI_getvalue(tuple, desc, 4));
		appendStringInfoChar(&d, '}');
		*directives = lappend(*directives, d.data);
		MemoryContextSwitchTo(old);
	}
}

/*
 * The tables of the tree that are typed tables (CREATE TABLE ... OF type):
 * one directive each.  A DROP TYPE ... CASCADE drops them; cut from their
 * type (NOT OF), they can stay in the trash.
 */
static void
save_types(Datum tree, MemoryContext outer, List **directives)
{
	Oid			types[1] = {OIDARRAYOID};
	Datum		values[1] = {tree};

	guard_run_sql("SELECT oid, reloftype FROM pg_catalog.pg_class"
				  " WHERE oid = ANY ($1) AND reloftype <> 0 ORDER BY oid",
				  1, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(outer);
		StringInfoData d;

		initStringInfo(&d);
		appendStringInfoChar(&d, '{');
		json_add(&d, "link", "of");
		json_add_oid(&d, "rel", DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
															   SPI_tuptable->tupdesc, 1, &isnull)));
		json_add_oid(&d, "type", DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
																SPI_tuptable->tupdesc, 2, &isnull)));
		appendStringInfoChar(&d, '}');
		*directives = lappend(*directives, d.data);
		MemoryContextSwitchTo(old);
	}
}

/* the foreign keys that cross the boundary of the tree ($1), top level */
static const char *const crossing_fks_sql =
"SELECT c.oid, c.conrelid, c.confrelid, c.conname,"
"       pg_catalog.pg_get_constraintdef(c.oid),"
"       c.confrelid::pg_catalog.regclass::pg_catalog.text, c.convalidated"
"  FROM pg_catalog.pg_constraint c"
" WHERE c.contype = 'f' AND c.conparentid = 0"
"   AND (c.conrelid = ANY ($1)) <> (c.confrelid = ANY ($1))"
" ORDER BY c.oid";

/*
 * The foreign keys between the tree and other tables: one directive each,
 * their addresses into "deletions".  The definition is kept in two parts,
 * around the referenced table's name, so that the undo names the table as
 * it is then.
 */
static void
save_foreign_keys(Datum tree, MemoryContext outer, List **directives,
				  ObjectAddresses *deletions)
{
	Oid			types[1] = {OIDARRAYOID};
	Datum		values[1] = {tree};

	guard_run_sql(crossing_fks_sql, 1, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *def = SPI_getvalue(tuple, desc, 5);
		char	   *ref = psprintf(" REFERENCES %s(", SPI_getvalue(tuple, desc, 6));
		char	   *at = strstr(def, ref);
		ObjectAddress addr;
		MemoryContext old = MemoryContextSwitchTo(outer);
		StringInfoData d;

		ObjectAddressSet(addr, ConstraintRelationId,
						 DatumGetObjectId(SPI_getbinval(tuple, desc, 1, &isnull)));
		add_exact_object_address(&addr, deletions);
		if (at == NULL)
		{
			/* cannot happen: pg_get_constraintdef names it so */
			MemoryContextSwitchTo(old);
			continue;
		}
		initStringInfo(&d);
		appendStringInfoChar(&d, '{');
		json_add(&d, "link", "fk");
		json_add_oid(&d, "rel", DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull)));
		json_add_oid(&d, "ref", DatumGetObjectId(SPI_getbinval(tuple, desc, 3, &isnull)));
		json_add(&d, "name", SPI_getvalue(tuple, desc, 4));
		json_add(&d, "head", pnstrdup(def, at - def));
		json_add(&d, "tail", at + strlen(ref) - 1);
		json_add(&d, "validated",
				 DatumGetBool(SPI_getbinval(tuple, desc, 7, &isnull)) ? "true" : "false");
		appendStringInfoChar(&d, '}');
		*directives = lappend(*directives, d.data);
		MemoryContextSwitchTo(old);
	}
}

/*
 * The publications that list tables of the tree: one directive each (with
 * the column list and row filter), their addresses into "deletions".
 */
static void
save_publications(Datum tree, MemoryContext outer, List **directives,
				  ObjectAddresses *deletions)
{
	Oid			types[1] = {OIDARRAYOID};
	Datum		values[1] = {tree};

	guard_run_sql("SELECT pr.oid, pr.prrelid, p.pubname,"
				  "       (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', '"
				  "                                     ORDER BY k.n)"
				  "          FROM pg_catalog.unnest(pr.prattrs::pg_catalog.int2[])"
				  "               WITH ORDINALITY k(attnum, n)"
				  "          JOIN pg_catalog.pg_attribute a"
				  "            ON a.attrelid = pr.prrelid AND a.attnum = k.attnum),"
				  "       pg_catalog.pg_get_expr(pr.prqual, pr.prrelid)"
				  "  FROM pg_catalog.pg_publication_rel pr"
				  "  JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid"
				  " WHERE pr.prrelid = ANY ($1) ORDER BY pr.oid",
				  1, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		ObjectAddress addr;
		MemoryContext old = MemoryContextSwitchTo(outer);
		StringInfoData d;

		ObjectAddressSet(addr, PublicationRelRelationId,
						 DatumGetObjectId(SPI_getbinval(tuple, desc, 1, &isnull)));
		add_exact_object_address(&addr, deletions);
		initStringInfo(&d);
		appendStringInfoChar(&d, '{');
		json_add(&d, "link", "publication");
		json_add_oid(&d, "rel", DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull)));
		json_add(&d, "publication", SPI_getvalue(tuple, desc, 3));
		json_add(&d, "columns", SPI_getvalue(tuple, desc, 4));
		json_add(&d, "where", SPI_getvalue(tuple, desc, 5));
		appendStringInfoChar(&d, '}');
		*directives = lappend(*directives, d.data);
		MemoryContextSwitchTo(old);
	}
}

/*
 * Before the tables of "tree" move into the trash: their links to tables
 * outside it (parents, foreign keys either way, publications) as
 * directives for the undo (returned).  The foreign keys and publication
 * memberships are added to "deletions" for the caller to delete;
 * guard_links_unlink_parents() cuts the inheritance.
 */
List *
guard_links_save(List *tree, ObjectAddresses *deletions)
{
	GuardAsRole owner;
	List	   *directives = NIL;
	MemoryContext outer = CurrentMemoryContext;
	Datum		treearr = oid_array(tree);

	guard_as_role_begin(&owner, InvalidOid);
	save_parents(treearr, outer, &directives);
	save_types(treearr, outer, &directives);
	save_foreign_keys(treearr, outer, &directives, deletions);
	save_publications(treearr, outer, &directives, deletions);
	guard_as_role_end(&owner);
	return directives;
}

/*
 * Detach partition "child" from "parent", as ALTER TABLE ... DETACH
 * PARTITION does, without the utility hooks and event triggers of a
 * statement.
 */
static void
detach_partition(Oid parent, Oid child)
{
	AlterTableStmt *stmt = makeNode(AlterTableStmt);
	AlterTableCmd *cmd = makeNode(AlterTableCmd);
	PartitionCmd *pc = makeNode(PartitionCmd);
	AlterTableUtilityContext context;
	PlannedStmt *pstmt = makeNode(PlannedStmt);

	pc->name = makeRangeVar(get_namespace_name(get_rel_namespace(child)),
							get_rel_name(child), -1);
	pc->concurrent = false;
	cmd->subtype = AT_DetachPartition;
	cmd->def = (Node *) pc;
	stmt->relation = makeRangeVar(get_namespace_name(get_rel_namespace(parent)),
								  get_rel_name(parent), -1);
	stmt->relation->inh = false;
	stmt->cmds = list_make1(cmd);
	stmt->objtype = OBJECT_TABLE;
	pstmt->commandType = CMD_UTILITY;
	pstmt->utilityStmt = (Node *) stmt;
	pstmt->stmt_location = -1;

	memset(&context, 0, sizeof(context));
	context.pstmt = pstmt;
	context.queryString = "ALTER TABLE ... DETACH PARTITION";
	context.relid = parent;
	LockRelationOid(parent, AccessExclusiveLock);
	AlterTable(stmt, AccessExclusiveLock, &context);
}

/*
 * Cut the tables of "tree" from their parents outside it (DETACH
 * PARTITION or NO INHERIT) and from their type (NOT OF), as the extension
 * owner (the table's owner may not own the parent, which a DROP of a
 * partition does not need).
 */
void
guard_links_unlink_parents(List *tree)
{
	GuardAsRole owner;
	List	   *children = NIL;
	List	   *parents = NIL;
	List	   *partition = NIL;
	List	   *typed = NIL;
	ListCell   *lc,
			   *lp,
			   *lk;
	Oid			types[1] = {OIDARRAYOID};
	Datum		values[1];

	values[0] = oid_array(tree);
	guard_as_role_path_begin(&owner, InvalidOid, LINK_PATH, false);
	guard_run_sql("SELECT i.inhrelid, i.inhparent, c.relispartition"
				  "  FROM pg_catalog.pg_inherits i"
				  "  JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
				  " WHERE i.inhrelid = ANY ($1) AND i.inhparent <> ALL ($1)",
				  1, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(CurTransactionContext);

		children = lappend_oid(children, DatumGetObjectId(SPI_getbinval(tuple, desc, 1, &isnull)));
		parents = lappend_oid(parents, DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull)));
		partition = lappend_int(partition, DatumGetBool(SPI_getbinval(tuple, desc, 3, &isnull)));
		MemoryContextSwitchTo(old);
	}
	guard_run_sql("SELECT oid FROM pg_catalog.pg_class WHERE oid = ANY ($1) AND reloftype <> 0",
				  1, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(CurTransactionContext);

		typed = lappend_oid(typed, DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
																  SPI_tuptable->tupdesc, 1, &isnull)));
		MemoryContextSwitchTo(old);
	}
	foreach(lc, typed)
	{
		AlterTableCmd *cmd = makeNode(AlterTableCmd);

		cmd->subtype = AT_DropOf;
		AlterTableInternal(lfirst_oid(lc), list_make1(cmd), false);
		CommandCounterIncrement();
	}
	forthree(lc, children, lp, parents, lk, partition)
	{
		if (lfirst_int(lk))
			detach_partition(lfirst_oid(lp), lfirst_oid(lc));
		else
		{
			AlterTableCmd *cmd = makeNode(AlterTableCmd);

			cmd->subtype = AT_DropInherit;
			cmd->def = (Node *) makeRangeVar(get_namespace_name(get_rel_namespace(lfirst_oid(lp))),
											 get_rel_name(lfirst_oid(lp)), -1);
			AlterTableInternal(lfirst_oid(lc), list_make1(cmd), false);
		}
		CommandCounterIncrement();
	}
	guard_as_role_end(&owner);
}

/*
 * Drop the foreign keys that still cross the boundary of the tree once it
 * is cut from its parents: those a partition had from its parent, which
 * the undo's ATTACH PARTITION gives back.
 */
void
guard_links_drop_crossing(List *tree)
{
	GuardAsRole owner;
	ObjectAddresses *deletions = new_object_addresses();
	Oid			types[1] = {OIDARRAYOID};
	Datum		values[1];

	values[0] = oid_array(tree);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql(crossing_fks_sql, 1, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		ObjectAddress addr;

		ObjectAddressSet(addr, ConstraintRelationId,
						 DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														SPI_tuptable->tupdesc, 1, &isnull)));
		add_exact_object_address(&addr, deletions);
	}
	guard_as_role_end(&owner);
	performMultipleDeletions(deletions, DROP_CASCADE,
							 PERFORM_DELETION_INTERNAL | PERFORM_DELETION_QUIETLY);
	CommandCounterIncrement();
}

/*
 * Is relation "relid" in the trash?
 */
bool
guard_in_trash(Oid relid)
{
	Oid			nsp = get_namespace_oid(GUARD_TRASH_SCHEMA, true);

	return OidIsValid(nsp) && get_rel_namespace(relid) == nsp;
}

/*
 * The root of the trashed tree that relation "relid" (in the trash)
 * belongs to: the table whose DROP TABLE moved it there.  A trashed tree
 * has no parent outside the trash (guard_links_unlink_parents), so this
 * is its topmost ancestor.
 */
Oid
guard_trash_root(Oid relid)
{
	GuardAsRole owner;
	Oid			types[1] = {OIDOID};
	Datum		values[1];

	guard_as_role_begin(&owner, InvalidOid);
	for (;;)
	{
		bool		isnull;

		values[0] = ObjectIdGetDatum(relid);
		guard_run_sql("SELECT inhparent FROM pg_catalog.pg_inherits"
					  " WHERE inhrelid = $1 ORDER BY inhseqno LIMIT 1",
					  1, types, values, NULL);
		if (SPI_processed == 0)
			break;
		relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
	}
	guard_as_role_end(&owner);
	return relid;
}

/*
 * Add "directive" to the active DROP TABLE change of trashed table "root",
 * so that its undo makes the link.
 */
void
guard_link_append(Oid root, const char *directive)
{
	GuardAsRole owner;
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2];

	values[0] = ObjectIdGetDatum(root);
	values[1] = CStringGetTextDatum(directive);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("UPDATE guard.change c"
				  "   SET detail = c.detail || pg_catalog.jsonb_build_object("
				  "         'recreate_' || (1 + (SELECT pg_catalog.count(*)"
				  "                                FROM pg_catalog.jsonb_object_keys(c.detail) k"
				  "                               WHERE k LIKE 'recreate\\_%')),"
				  "         $2::pg_catalog.jsonb)"
				  " WHERE c.change_id = (SELECT pg_catalog.max(g.change_id) FROM guard.change g"
				  "                       WHERE g.relid = $1 AND g.kind = 'DROP TABLE'"
				  "                         AND g.state = 'active')",
				  2, types, values, NULL);
	guard_as_role_end(&owner);
}

