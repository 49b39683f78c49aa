/*-------------------------------------------------------------------------
 *
 * rows.c
 *	  The key of a protected table, and finding its live row by key.
 *
 * A table's key is its primary key, else its replica identity index: the
 * columns a change records, and restore and the deferred invariant checks
 * find rows by.  guard.diff() looks rows up to show what they hold now,
 * restore to find the row to write back.  A partitioned table is searched
 * leaf by leaf.  Snapshot key values are matched to the table's key index
 * through the index's own equality operators; the columns are mapped by
 * name, since attnums change with DROP COLUMN and differ between
 * partitions.
 *
 * Calls only relcache.c, which caches each table's key.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_inherits.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "guard.h"

/*
 * The columns restore identifies rows by: those of the table's primary
 * key, else of its replica identity index (cached, see relcache.c).  Fills
 * keys[] (INDEX_MAX_KEYS long) and returns their number, 0 when the table
 * has no such index or its key has an expression.
 */
int
guard_key_attnums(Relation rel, AttrNumber *keys)
{
	GuardKey	buf;
	const GuardKey *key = guard_relation_key(rel, &buf);

	memcpy(keys, key->attnums, sizeof(AttrNumber) * key->nkeys);
	return key->nkeys;
}

/*
 * Prepare a lookup in one leaf table.  Returns false when it has no usable
 * key matching the recorded one by column name and type.
 */
static bool
leaf_begin(GuardKeyLeaf *leaf, Relation rel, const GuardChange *change)
{
	TupleDesc	desc = RelationGetDescr(rel);
	GuardKey	buf;
	const GuardKey *key = guard_relation_key(rel, &buf);

	if (key->nkeys == 0 || key->nkeys != change->nkeys)
		return false;
	for (int k = 0; k < key->nkeys; k++)
	{
		AttrNumber	recorded = change->keys[k];
		Form_pg_attribute att = TupleDescAttr(desc, key->attnums[k] - 1);

		if (recorded <= 0 || recorded > change->natts ||
			change->attnames[recorded - 1] == NULL ||
			strcmp(NameStr(att->attname), change->attnames[recorded - 1]) != 0 ||
			att->atttypid != change->atttypes[recorded - 1] ||
			!OidIsValid(key->eqproc[k]))
			return false;
		leaf->eqop[k] = key->eqop[k];
		leaf->eqproc[k] = key->eqproc[k];
		leaf->collation[k] = key->collation[k];
	}
	leaf->rel = rel;
	leaf->index = index_open(key->indexoid, AccessShareLock);
	leaf->slot = table_slot_create(rel, NULL);
	return true;
}

/*
 * Prepare to look up rows of "rel" by the key recorded with "change".  A
 * partitioned table is searched through its leaf partitions (a partitioned
 * index has no storage to scan).  Returns false (nothing prepared) when no
 * table has a usable key.
 */
bool
guard_keyscan_begin(GuardKeyScan *ks, Relation rel, const GuardChange *change)
{
	List	   *leaves = NIL;
	ListCell   *lc;

	memset(ks, 0, sizeof(*ks));
	ks->nkeys = change->nkeys;
	if (rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
	{
		foreach(lc, find_all_inheritors(RelationGetRelid(rel), AccessShareLock, NULL))
		{
			if (get_rel_relkind(lfirst_oid(lc)) == RELKIND_RELATION)
				leaves = lappend_oid(leaves, lfirst_oid(lc));
		}
	}
	ks->leaves = palloc0(sizeof(GuardKeyLeaf) * Max(list_length(leaves), 1));
	if (leaves == NIL)
	{
		if (leaf_begin(&ks->leaves[0], rel, change))
			ks->nleaves = 1;
	}
	else
	{
		foreach(lc, leaves)
		{
			Relation	leafrel = table_open(lfirst_oid(lc), AccessShareLock);

			if (leaf_begin(&ks->leaves[ks->nleaves], leafrel, change))
				ks->nleaves++;
			else
				table_close(leafrel, AccessShareLock);
		}
		ks->owns_leaves = true;
	}
	return ks->nleaves > 0;
}

/*
 * Fetch the live row whose key is keyvalues[], under "snapshot",
 * into ks->slot (of table ks->found).  Returns false if there is none.
 */
bool
guard_keyscan_fetch(GuardKeyScan *ks, Datum *keyvalues, Snapshot snapshot)
{
	ks->found = NULL;
	ks->slot = NULL;
	for (int l = 0; l < ks->nleaves; l++)
	{
		GuardKeyLeaf *leaf = &ks->leaves[l];
		ScanKeyData skeys[INDEX_MAX_KEYS];
		IndexScanDesc scan;
		bool		found;

		for (int k = 0; k < ks->nkeys; k++)
			ScanKeyEntryInitialize(&skeys[k], 0, k + 1, BTEqualStrategyNumber,
								   InvalidOid, leaf->collation[k],
								   leaf->eqproc[k], keyvalues[k]);
		scan = index_beginscan(leaf->rel, leaf->index, snapshot,
							   ks->nkeys, 0);
		index_rescan(scan, skeys, ks->nkeys, NULL, 0);
		found = index_getnext_slot(scan, ForwardScanDirection, leaf->slot);
		index_endscan(scan);
		if (found)
		{
			slot_getallattrs(leaf->slot);
			ks->found = leaf->rel;
			ks->slot = leaf->slot;
			return true;
		}
	}
	return false;
}

/*
 * Release what guard_keyscan_begin() prepared.
 */
void
guard_keyscan_end(GuardKeyScan *ks)
{
	for (int l = 0; l < ks->nleaves; l++)
	{
		ExecDropSingleTupleTableSlot(ks->leaves[l].slot);
		index_close(ks->leaves[l].index, AccessShareLock);
		if (ks->owns_leaves)
			table_close(ks->leaves[l].rel, AccessShareLock);
	}
}

/*
 * The layout of "rel" as it is now, in the form a change records it: to
 * look up live rows by key without a change (invariant checks).
 */
void
guard_change_from_relation(Relation rel, GuardChange *layout)
{
	TupleDesc	desc = RelationGetDescr(rel);

	memset(layout, 0, sizeof(*layout));
	layout->relid = RelationGetRelid(rel);
	layout->relation = RelationGetRelationName(rel);
	layout->natts = desc->natts;
	layout->attnames = palloc0(sizeof(char *) * Max(desc->natts, 1));
	layout->atttypes = palloc0(sizeof(Oid) * Max(desc->natts, 1));
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		layout->attnames[i] = pstrdup(NameStr(att->attname));
		layout->atttypes[i] = att->atttypid;
	}
	layout->nkeys = guard_key_attnums(rel, layout->keys);
}

/*
 * A value as its type's output function prints it.
 */
char *
guard_value_text(Datum value, Oid type)
{
	Oid			typoutput;
	bool		varlena;

	getTypeOutputInfo(type, &typoutput, &varlena);
	return OidOutputFunctionCall(typoutput, value);
}

/*
 * The key as PostgreSQL prints it in errors: (a, b)=(1, x).
 */
char *
guard_key_text(const GuardChange *change, Datum *keyvalues)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '(');
	for (int k = 0; k < change->nkeys; k++)
		appendStringInfo(&buf, "%s%s", k ? ", " : "",
						 quote_identifier(change->attnames[change->keys[k] - 1]));
	appendStringInfoString(&buf, ")=(");
	for (int k = 0; k < change->nkeys; k++)
		appendStringInfo(&buf, "%s%s", k ? ", " : "",
						 guard_value_text(keyvalues[k], change->atttypes[change->keys[k] - 1]));
	appendStringInfoChar(&buf, ')');
	return buf.data;
}
