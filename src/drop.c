/*-------------------------------------------------------------------------
 *
 * drop.c
 *	  DROP statements that reach protected tables: the tables go to the
 *	  trash, and the statement otherwise behaves as without guard.
 *
 * A DROP TABLE can drop protected tables by naming them, by CASCADE to
 * inheritance children, or as the partitions of a table it names; DROP
 * SCHEMA ... CASCADE, DROP OWNED BY and other drops with CASCADE can drop
 * them without naming them at all.  For each such statement:
 *
 *	1. inuse.c gets the trash out of the way of what the statement drops;
 *	2. the statement runs as a trial (trial.c): its error, if PostgreSQL
 *	   would raise one, is raised as is; otherwise guard learns every
 *	   object it drops, and its "drop cascades to" notice;
 *	3. each protected table it drops, with the partitions and children
 *	   that go with it, is a unit: trash.c saves what ties it to the rest
 *	   of the database, cuts it, records the DROP TABLE and moves the
 *	   tables into the trash;
 *	4. what else the statement drops only because of the units (functions
 *	   taking their row type, other tables' rules and policies...) is
 *	   dropped here as PostgreSQL would, and listed in the record as not
 *	   kept; a unit that uses something else the statement drops cannot
 *	   stay in the trash (inuse.c);
 *	5. the trial's notice is sent, and the statement is handed on with the
 *	   units left out (a DROP TABLE of nothing but protected tables is
 *	   handed on with no table at all, so that every utility hook and
 *	   event trigger still sees it), PostgreSQL's own notice for it held
 *	   back.
 *
 * Calls inuse.c, trash.c, trial.c, depend.c, policy.c and spi.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_class.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/tablecmds.h"
#include "commands/user.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "guard.h"

/*
 * Is "relid" a table whose DROP guard keeps (a protected table, or a
 * partition of one, whose schema changes are recorded)?
 */
static bool
is_kept(Oid relid)
{
	Relation	rel;
	const GuardPolicy *policy;
	bool		kept;

	rel = try_relation_open(relid, NoLock);
	if (rel == NULL)
		return false;
	if ((rel->rd_rel->relkind != RELKIND_RELATION &&
		 rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE) ||
		rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP)
	{
		relation_close(rel, NoLock);
		return false;
	}
	/* a DROP of a table in the trash drops it for good (inuse.c) */
	if (RelationGetNamespace(rel) == guard_trash_namespace(false))
	{
		relation_close(rel, NoLock);
		return false;
	}
	policy = guard_policy_lookup(rel);
	kept = policy->found &&
		(policy->capture == GUARD_CAPTURE_DDL || policy->capture == GUARD_CAPTURE_ALL);
	relation_close(rel, NoLock);
	return kept;
}

/*
 * Does this database protect any table (capture other than none)?
 */
static bool
any_protected(void)
{
	GuardAsRole owner;
	bool		found;

	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT 1 FROM guard.policy WHERE capture IN ('ddl', 'all') LIMIT 1",
				  0, NULL, NULL, NULL);
	found = SPI_processed > 0;
	guard_as_role_end(&owner);
	return found;
}

/*
 * Might this statement drop a protected table?  A DROP TABLE whose tables
 * (with their partitions and children) include one; any other DROP with
 * CASCADE, and DROP OWNED, while some table is protected.
 */
static bool
may_drop_kept(Node *parsetree)
{
	if (IsA(parsetree, DropOwnedStmt))
		return any_protected();
	if (IsA(parsetree, DropStmt))
	{
		DropStmt   *drop = (DropStmt *) parsetree;
		ListCell   *lc;

		if (drop->concurrent)
			return false;
		if (drop->removeType != OBJECT_TABLE)
			return drop->behavior == DROP_CASCADE &&
				drop->removeType != OBJECT_VIEW &&
				drop->removeType != OBJECT_MATVIEW &&
				drop->removeType != OBJECT_INDEX &&
				drop->removeType != OBJECT_FOREIGN_TABLE &&
				any_protected();
		foreach(lc, drop->objects)
		{
			RangeVar   *rv = makeRangeVarFromNameList((List *) lfirst(lc));
			Oid			relid = RangeVarGetRelid(rv, AccessExclusiveLock, true);
			ListCell   *lt;

			if (!OidIsValid(relid))
				continue;
			foreach(lt, find_all_inheritors(relid, AccessExclusiveLock, NULL))
			{
				if (is_kept(lfirst_oid(lt)))
					return true;
			}
		}
	}
	return false;
}

/*
 * Does guard fire the event triggers of this statement itself?  Yes for a
 * DROP (or DROP OWNED) that may drop a protected table, when PostgreSQL
 * would fire them (a complete query, not a subcommand): the caller
 * (hooks.c) opens the statement's event trigger state and fires
 * ddl_command_start, guard_drop_before() runs the trial in that state, so
 * that PostgreSQL records there every object the statement drops, the
 * tables guard moves to its trash included, as it would without guard;
 * the caller then hands the statement on as a subcommand, its own
 * records swallowed, and fires sql_drop and ddl_command_end.  Users'
 * sql_drop event triggers so see, in pg_event_trigger_dropped_objects(),
 * exactly what they would see without guard.
 */
bool
guard_drop_fires_events(Node *parsetree, ProcessUtilityContext context)
{
	if (context == PROCESS_UTILITY_SUBCOMMAND || guard_internal_ddl || !guard_enabled)
		return false;
	if (IsA(parsetree, DropStmt))
	{
		DropStmt   *drop = (DropStmt *) parsetree;

		if (drop->concurrent || !EventTriggerSupportsObjectType(drop->removeType))
			return false;
	}
	else if (!IsA(parsetree, DropOwnedStmt))
		return false;
	if (!OidIsValid(get_extension_oid("guard", true)))
		return false;
	return may_drop_kept(parsetree);
}

/*
 * The trial's body: the statement's own drop function.
 */
static void
run_drop(void *arg)
{
	Node	   *parsetree = copyObject((Node *) arg);

	if (IsA(parsetree, DropOwnedStmt))
	{
		DropOwnedObjects((DropOwnedStmt *) parsetree);
		return;
	}
	/* as utility.c's ExecDropStmt dispatches it */
	switch (((DropStmt *) parsetree)->removeType)
	{
		case OBJECT_TABLE:
		case OBJECT_SEQUENCE:
		case OBJECT_VIEW:
		case OBJECT_MATVIEW:
		case OBJECT_FOREIGN_TABLE:
		case OBJECT_INDEX:
			RemoveRelations((DropStmt *) parsetree);
			break;
		default:
			RemoveObjects((DropStmt *) parsetree);
			break;
	}
}

/*
 * Is "relid" a descendant (partition or inheritance child, at any depth)
 * of one of "roots"?
 */
static bool
descends_from(Oid relid, List *candidates)
{
	GuardAsRole owner;
	Oid			types[2] = {OIDOID, OIDARRAYOID};
	Datum		values[2];
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(candidates), 1));
	int			n = 0;
	ListCell   *lc;
	bool		found;

	foreach(lc, candidates)
	{
		if (lfirst_oid(lc) != relid)
			elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	}
	if (n == 0)
		return false;
	values[0] = ObjectIdGetDatum(relid);
	values[1] = PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("WITH RECURSIVE up(oid) AS ("
				  "  SELECT inhparent FROM pg_catalog.pg_inherits WHERE inhrelid = $1"
				  "  UNION SELECT i.inhparent FROM pg_catalog.pg_inherits i JOIN up ON i.inhrelid = up.oid)"
				  " SELECT 1 FROM up WHERE oid = ANY ($2) LIMIT 1",
				  2, types, values, NULL);
	found = SPI_processed > 0;
	guard_as_role_end(&owner);
	return found;
}

/*
 * The units among the relations a trial dropped: the protected tables
 * none of whose dropped ancestors is protected (the others go with that
 * ancestor).  "first" lists the tables a DROP TABLE names, to keep their
 * order.
 */
static List *
find_units(List *dropped, List *first)
{
	List	   *kept = NIL;
	List	   *ordered = NIL;
	List	   *units = NIL;
	ListCell   *lc;

	foreach(lc, dropped)
	{
		ObjectAddress *addr = lfirst(lc);

		if (addr->classId == RelationRelationId && addr->objectSubId == 0 &&
			is_kept(addr->objectId))
			kept = list_append_unique_oid(kept, addr->objectId);
	}
	foreach(lc, first)
	{
		if (list_member_oid(kept, lfirst_oid(lc)))
			ordered = list_append_unique_oid(ordered, lfirst_oid(lc));
	}
	ordered = list_concat_unique_oid(ordered, kept);
	foreach(lc, ordered)
	{
		if (!descends_from(lfirst_oid(lc), kept))
			units = lappend_oid(units, lfirst_oid(lc));
	}
	return units;
}

/*
 * The tables that move with unit "root": it and its descendants, but for
 * temporary ones (which cannot leave their schema: they are dropped for
 * real, as part of "residual").
 */
static List *
unit_tree(Oid root, List **temps)
{
	List	   *tree = NIL;
	ListCell   *lc;

	foreach(lc, find_all_inheritors(root, AccessExclusiveLock, NULL))
	{
		if (get_rel_persistence(lfirst_oid(lc)) == RELPERSISTENCE_TEMP)
			*temps = lappend_oid(*temps, lfirst_oid(lc));
		else
			tree = lappend_oid(tree, lfirst_oid(lc));
	}
	return tree;
}

/*
 * Is "addr" one of the objects guard saves for the undo of a unit (a view
 * or materialized view and its parts, a foreign key and its triggers)?
 */
static bool
saved_for_undo(const ObjectAddress *addr)
{
	Oid			rel = guard_object_relation(addr);
	char		relkind = OidIsValid(rel) ? get_rel_relkind(rel) : '\0';

	if (relkind == RELKIND_VIEW || relkind == RELKIND_MATVIEW)
		return true;
	if (addr->classId == TriggerRelationId)
	{
		Relation	tgrel = table_open(TriggerRelationId, AccessShareLock);
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	tuple;
		bool		internal = false;

		/* a foreign key's own triggers come back with it */
		ScanKeyInit(&key, Anum_pg_trigger_oid, BTEqualStrategyNumber, F_OIDEQ,
					ObjectIdGetDatum(addr->objectId));
		scan = systable_beginscan(tgrel, TriggerOidIndexId, true, NULL, 1, &key);
		tuple = systable_getnext(scan);
		if (HeapTupleIsValid(tuple))
			internal = OidIsValid(((Form_pg_trigger) GETSTRUCT(tuple))->tgconstraint);
		systable_endscan(scan);
		table_close(tgrel, AccessShareLock);
		return internal;
	}
	if (addr->classId == ConstraintRelationId)
	{
		HeapTuple	tuple = SearchSysCache1(CONSTROID, ObjectIdGetDatum(addr->objectId));
		bool		fk = false;

		if (HeapTupleIsValid(tuple))
		{
			fk = ((Form_pg_constraint) GETSTRUCT(tuple))->contype == CONSTRAINT_FOREIGN;
			ReleaseSysCache(tuple);
		}
		return fk;
	}
	return false;
}

/*
 * What the statement drops because of the units, beyond their own parts:
 * the dropped objects that depend, at any depth, on a table of the units
 * ("trees") and belong to none.  Those guard does not save for the undo
 * are described in *not_kept.
 */
static List *
residual(List *dropped, List *trees, List **not_kept)
{
	List	   *result = NIL;
	GuardAsRole owner;
	Oid			types[1] = {OIDARRAYOID};
	Datum		values[1];
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(trees), 1));
	int			n = 0;
	ListCell   *lc;
	List	   *reach = NIL;
	MemoryContext outer = CurrentMemoryContext;

	foreach(lc, trees)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	values[0] = PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("WITH RECURSIVE reach(classid, objid, objsubid) AS ("
				  "  SELECT d.classid, d.objid, d.objsubid FROM pg_catalog.pg_depend d"
				  "   WHERE (d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = ANY ($1))"
				  "      OR (d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass"
				  "          AND d.refobjid IN (SELECT t.oid FROM pg_catalog.pg_type t WHERE t.typrelid = ANY ($1)))"
				  "  UNION"
				  "  SELECT d.classid, d.objid, d.objsubid FROM pg_catalog.pg_depend d JOIN reach r"
				  "    ON d.refclassid = r.classid AND d.refobjid = r.objid)"
				  " SELECT DISTINCT classid, objid, objsubid FROM reach",
				  1, types, values, NULL);
	reach = guard_spi_addresses(outer);
	guard_as_role_end(&owner);

	foreach(lc, dropped)
	{
		ObjectAddress *addr = lfirst(lc);
		ListCell   *lr;
		bool		reached = false;
		Oid			rel;

		foreach(lr, reach)
		{
			ObjectAddress *r = lfirst(lr);

			if (r->classId == addr->classId && r->objectId == addr->objectId &&
				(addr->objectSubId == 0 || r->objectSubId == addr->objectSubId))
			{
				reached = true;
				break;
			}
		}
		if (!reached)
			continue;
		rel = guard_object_relation(addr);
		if (OidIsValid(rel) && list_member_oid(trees, rel))
			continue;
		result = lappend(result, addr);
		if (!saved_for_undo(addr))
		{
			char	   *desc = getObjectDescription(addr, true);

			if (desc)
				*not_kept = lappend(*not_kept, desc);
		}
	}
	return result;
}

/*
 * Delete those of "objects" that still exist (the units' own processing
 * deleted the views and foreign keys among them), as the statement would.
 */
static void
delete_residual(List *objects, List *temps)
{
	ObjectAddresses *left = new_object_addresses();
	int			n = 0;
	ListCell   *lc;

	foreach(lc, objects)
	{
		if (getObjectDescription(lfirst(lc), true) != NULL)
		{
			add_exact_object_address(lfirst(lc), left);
			n++;
		}
	}
	foreach(lc, temps)
	{
		ObjectAddress addr;

		ObjectAddressSet(addr, RelationRelationId, lfirst_oid(lc));
		if (get_rel_name(lfirst_oid(lc)) != NULL)
		{
			add_exact_object_address(&addr, left);
			n++;
		}
	}
	if (n > 0)
	{
		performMultipleDeletions(left, DROP_CASCADE,
								 PERFORM_DELETION_INTERNAL | PERFORM_DELETION_QUIETLY);
		CommandCounterIncrement();
	}
}

/*
 * The relations a DROP TABLE (or DROP INDEX) names, in order; InvalidOid
 * for a name that does not exist.
 */
List *
guard_drop_named_relations(DropStmt *drop)
{
	List	   *relids = NIL;
	ListCell   *lc;

	foreach(lc, drop->objects)
	{
		Oid			relid = RangeVarGetRelid(makeRangeVarFromNameList((List *) lfirst(lc)),
											 NoLock, true);

		relids = lappend_oid(relids, relid);
	}
	return relids;
}

/*
 * The roles a DROP OWNED names (those that exist).
 */
static List *
owned_roles(DropOwnedStmt *drop)
{
	List	   *roleids = NIL;
	ListCell   *lc;

	foreach(lc, drop->roles)
	{
		Oid			roleid = get_rolespec_oid(lfirst(lc), true);

		if (OidIsValid(roleid))
			roleids = lappend_oid(roleids, roleid);
	}
	return roleids;
}

/*
 * Before a DROP statement (not one of guard's own): do what the file
 * header says.  Returns the statement to hand on (the same one, or a DROP
 * TABLE without the units); *hold_cascade is set when the trial's
 * cascade notice was sent and PostgreSQL's own must be held back.  With
 * "events" (guard_drop_fires_events() said so), the trial always runs:
 * what it drops is the statement's record for its sql_drop event.
 */
Node *
guard_drop_before(Node *parsetree, bool events, bool *hold_cascade)
{
	GuardTrial trial;
	List	   *named = NIL;
	List	   *units;
	List	   *trees = NIL;
	List	   *temps = NIL;
	List	   *not_kept = NIL;
	List	   *rest;
	ListCell   *lc;

	*hold_cascade = false;
	if (!OidIsValid(get_extension_oid("guard", true)))
		return parsetree;
	guard_inuse_before_drop(parsetree);
	if (!events && (!guard_enabled || !may_drop_kept(parsetree)))
		return parsetree;

	if (IsA(parsetree, DropStmt) && ((DropStmt *) parsetree)->removeType == OBJECT_TABLE)
		named = guard_drop_named_relations((DropStmt *) parsetree);
	guard_trial(run_drop, parsetree, &trial);
	units = find_units(trial.dropped, named);
	if (units == NIL)
		return parsetree;

	foreach(lc, units)
		trees = list_concat(trees, unit_tree(lfirst_oid(lc), &temps));
	rest = residual(trial.dropped, trees, &not_kept);
	foreach(lc, units)
	{
		List	   *dummy = NIL;

		guard_trash_unit(lfirst_oid(lc), unit_tree(lfirst_oid(lc), &dummy),
						 foreach_current_index(lc) == 0 ? not_kept : NIL);
	}
	delete_residual(rest, temps);
	guard_inuse_dropped(trial.dropped, units);
	if (IsA(parsetree, DropOwnedStmt))
		guard_inuse_roles(owned_roles((DropOwnedStmt *) parsetree), true);

	guard_trial_emit(&trial, true);
	*hold_cascade = true;

	if (IsA(parsetree, DropStmt) && ((DropStmt *) parsetree)->removeType == OBJECT_TABLE)
	{
		DropStmt   *drop = (DropStmt *) parsetree;
		DropStmt   *rest_stmt = copyObject(drop);
		ListCell   *ln;

		rest_stmt->objects = NIL;
		forboth(lc, drop->objects, ln, named)
		{
			if (!list_member_oid(trees, lfirst_oid(ln)) &&
				!list_member_oid(temps, lfirst_oid(ln)))
				rest_stmt->objects = lappend(rest_stmt->objects, lfirst(lc));
		}
		return (Node *) rest_stmt;
	}
	return parsetree;
}
