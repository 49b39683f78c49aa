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
#include "access/nbtree.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_am.h"
#include "catalog/pg_inherits.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
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

	/*
	 * Ordered fetches step a btree scan forward, which holds no buffer pin
	 * between calls only on a WAL-logged index under an MVCC snapshot (see
	 * _bt_drop_lock_and_maybe_pin); one key column keeps the comparison
	 * that of the index.
	 */
	if (key->nkeys == 1 && leaf->index->rd_rel->relam == BTREE_AM_OID &&
		RelationNeedsWAL(leaf->index))
	{
		Oid			opcintype = leaf->index->rd_opcintype[0];
		Oid			geop = get_opfamily_member(leaf->index->rd_opfamily[0],
											   opcintype, opcintype,
											   BTGreaterEqualStrategyNumber);
		Form_pg_attribute att = TupleDescAttr(desc, key->attnums[0] - 1);

		if (OidIsValid(geop))
		{
			leaf->keyattno = key->attnums[0];
			leaf->geproc = get_opcode(geop);
			leaf->cmpproc = index_getprocinfo(leaf->index, 1, BTORDER_PROC);
			leaf->typbyval = att->attbyval;
			leaf->typlen = att->attlen;
		}
	}
	return true;
}

/* two key values compared in the order of the leaf's key index */
static int
key_cmp(GuardKeyLeaf *leaf, Datum a, Datum b)
{
	return DatumGetInt32(FunctionCall2Coll(leaf->cmpproc, leaf->collation[0],
										   a, b));
}

/* the key of the row an ordered scan stands at, compared with "key" */
static int
ordered_compare(GuardKeyLeaf *leaf, Datum key)
{
	bool		isnull;
	Datum		at = slot_getattr(leaf->slot, leaf->keyattno, &isnull);

	Assert(!isnull);			/* a key column is NOT NULL */
	return key_cmp(leaf, key, at);
}

/*
 * Remember "key" as the last asked for (in the key scan's context, which
 * the caller has switched to), and drop the heap page the scan read last
 * (the slot holds its own pin): between fetches an ordered scan holds
 * memory only, so that any resource owner may come and go.
 */
static void
ordered_settle(GuardKeyLeaf *leaf, Datum key)
{
	if (leaf->prev_valid && !leaf->typbyval)
		pfree(DatumGetPointer(leaf->prev));
	leaf->prev = datumCopy(key, leaf->typbyval, leaf->typlen);
	leaf->prev_valid = true;
	table_index_fetch_reset(leaf->scan->xs_heapfetch);
}

/* visible rows an ordered fetch steps over before it descends instead */
#define ORDERED_MAX_STEPS	4

/*
 * Fetch the live row of "key" from a leaf with one key column, when keys
 * come mostly in ascending order (a snapshot of rows in key order): from
 * where the previous fetch left the scan, step forward along the index
 * instead of descending from its root again, as a merge join does.  A key
 * at or below the previous one, or one more than a few rows ahead, falls
 * back to a descent (>= key).  The scan has seen every live row between
 * the key asked for last and the row it stands at, so a key in between
 * has none.  Returns whether the row was found; it is in leaf->slot.
 */
static bool
leaf_fetch_ordered(GuardKeyLeaf *leaf, Datum key)
{
	ScanKeyData skey;
	int			c;
	bool		found;

	if (leaf->pos_valid && leaf->prev_valid && key_cmp(leaf, key, leaf->prev) > 0)
	{
		c = leaf->pos_end ? -1 : ordered_compare(leaf, key);
		for (int steps = 0; c > 0 && steps < ORDERED_MAX_STEPS; steps++)
		{
			if (!index_getnext_slot(leaf->scan, ForwardScanDirection, leaf->slot))
			{
				leaf->pos_end = true;
				c = -1;
				break;
			}
			c = ordered_compare(leaf, key);
		}
		if (c <= 0)
		{
			ordered_settle(leaf, key);
			return c == 0;
		}
	}

	/* descend to the first row at or above "key" */
	ScanKeyEntryInitialize(&skey, 0, 1, BTGreaterEqualStrategyNumber,
						   InvalidOid, leaf->collation[0], leaf->geproc, key);
	index_rescan(leaf->scan, &skey, 1, NULL, 0);
	leaf->pos_valid = true;
	leaf->pos_end = !index_getnext_slot(leaf->scan, ForwardScanDirection,
										leaf->slot);
	found = !leaf->pos_end && ordered_compare(leaf, key) == 0;
	ordered_settle(leaf, key);
	return found;
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
	/* the scans outlive the caller's context in some callers (the drill) */
	ks->cxt = AllocSetContextCreate(TopTransactionContext, "guard key scan",
									ALLOCSET_SMALL_SIZES);
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
		MemoryContext old;
		bool		found;

		for (int k = 0; k < ks->nkeys; k++)
			ScanKeyEntryInitialize(&skeys[k], 0, k + 1, BTEqualStrategyNumber,
								   InvalidOid, leaf->collation[k],
								   leaf->eqproc[k], keyvalues[k]);

		/*
		 * One index scan per leaf, rescanned for each key as an index scan
		 * node does on the inner side of a nested loop: beginning one per
		 * key cost a restore a fifth of its judging time (btree's scan
		 * state alone is two 13 kB arrays).  A fetch under another
		 * snapshot begins a new one.  Between fetches the scan holds no
		 * buffer pin, only memory: a subtransaction may come and go.
		 */
		if (leaf->scan != NULL && leaf->scan->xs_snapshot != snapshot)
		{
			index_endscan(leaf->scan);
			leaf->scan = NULL;
		}
		if (leaf->scan == NULL)
		{
			old = MemoryContextSwitchTo(ks->cxt);
			leaf->scan = index_beginscan(leaf->rel, leaf->index, snapshot,
										 ks->nkeys, 0);
			MemoryContextSwitchTo(old);
			leaf->pos_valid = false;
		}
		/* btree allocates some of its scan state lazily (killed items) */
		old = MemoryContextSwitchTo(ks->cxt);
		if (ks->ordered && ks->nleaves == 1 && leaf->keyattno != 0 &&
			IsMVCCSnapshot(snapshot))
			found = leaf_fetch_ordered(leaf, keyvalues[0]);
		else
		{
			index_rescan(leaf->scan, skeys, ks->nkeys, NULL, 0);
			found = index_getnext_slot(leaf->scan, ForwardScanDirection, leaf->slot);
			/* park it: no buffer pin outlives the fetch (the slot has its own) */
			index_rescan(leaf->scan, NULL, ks->nkeys, NULL, 0);
			leaf->pos_valid = false;
		}
		MemoryContextSwitchTo(old);
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
		if (ks->leaves[l].scan != NULL)
			index_endscan(ks->leaves[l].scan);
		ExecDropSingleTupleTableSlot(ks->leaves[l].slot);
		index_close(ks->leaves[l].index, AccessShareLock);
		if (ks->owns_leaves)
			table_close(ks->leaves[l].rel, AccessShareLock);
	}
	if (ks->cxt != NULL)
		MemoryContextDelete(ks->cxt);
	ks->cxt = NULL;
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
