/*-------------------------------------------------------------------------
 *
 * rows.c
 *	  Finding the live row of a protected table by its key.
 *
 * Used by guard.diff() to show what a row holds now, and by restore to find
 * the row to write back.  Snapshot key values are matched to the table's
 * key index through the index's own equality operators; the columns are
 * mapped by name, since attnums change with DROP COLUMN and differ between
 * partitions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_index.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "guard.h"

/*
 * Prepare to look up rows of "rel" by the key recorded with "change".
 * Returns false (nothing prepared) when the table no longer has a usable
 * key matching the recorded one by column name and type.
 */
bool
guard_keyscan_begin(GuardKeyScan *ks, Relation rel, const GuardChange *change)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			indexoid = RelationGetPrimaryKeyIndex(rel);
	Relation	index;
	bool		ok = true;

	memset(ks, 0, sizeof(*ks));
	if (!OidIsValid(indexoid))
		indexoid = RelationGetReplicaIndex(rel);
	if (!OidIsValid(indexoid))
		return false;

	index = index_open(indexoid, AccessShareLock);
	if (index->rd_index->indnkeyatts != change->nkeys)
		ok = false;
	for (int k = 0; ok && k < change->nkeys; k++)
	{
		AttrNumber	attnum = index->rd_index->indkey.values[k];
		AttrNumber	recorded = change->keys[k];
		Form_pg_attribute att;
		Oid			op;

		if (attnum <= 0 || recorded <= 0 || recorded > change->natts ||
			change->attnames[recorded - 1] == NULL)
		{
			ok = false;
			break;
		}
		att = TupleDescAttr(desc, attnum - 1);
		if (strcmp(NameStr(att->attname), change->attnames[recorded - 1]) != 0 ||
			att->atttypid != change->atttypes[recorded - 1])
		{
			ok = false;
			break;
		}
		op = get_opfamily_member(index->rd_opfamily[k], index->rd_opcintype[k],
								 index->rd_opcintype[k], BTEqualStrategyNumber);
		if (!OidIsValid(op))
		{
			ok = false;
			break;
		}
		ks->eqproc[k] = get_opcode(op);
		ks->collation[k] = index->rd_indcollation[k];
		ks->attnums[k] = attnum;
	}
	if (!ok)
	{
		index_close(index, AccessShareLock);
		return false;
	}

	ks->nkeys = change->nkeys;
	ks->rel = rel;
	ks->index = index;
	ks->slot = table_slot_create(rel, NULL);
	return true;
}

/*
 * Fetch the live row whose key is keyvalues[] into ks->slot, under the
 * active snapshot.  Returns false if there is none.
 */
bool
guard_keyscan_fetch(GuardKeyScan *ks, Datum *keyvalues)
{
	ScanKeyData skeys[INDEX_MAX_KEYS];
	IndexScanDesc scan;
	bool		found;

	for (int k = 0; k < ks->nkeys; k++)
	{
		ScanKeyEntryInitialize(&skeys[k], 0, k + 1, BTEqualStrategyNumber,
							   InvalidOid, ks->collation[k], ks->eqproc[k],
							   keyvalues[k]);
	}
	scan = index_beginscan(ks->rel, ks->index, GetActiveSnapshot(), ks->nkeys, 0);
	index_rescan(scan, skeys, ks->nkeys, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, ks->slot);
	index_endscan(scan);
	if (found)
		slot_getallattrs(ks->slot);
	return found;
}

void
guard_keyscan_end(GuardKeyScan *ks)
{
	if (ks->index)
	{
		ExecDropSingleTupleTableSlot(ks->slot);
		index_close(ks->index, AccessShareLock);
	}
}
