/*-------------------------------------------------------------------------
 *
 * layout.c
 *	  Layouts: a table's columns and key as a change records them.
 *
 * A snapshot is encoded by attnum, so each change record names the layout
 * it was captured under: the table's column names, types and typmods by
 * attnum (dropped columns as NULL) and its key columns.  guard.layout holds
 * one row per distinct layout of a table, shared by every change made under
 * it.  The id of a table's current layout is kept in its relcache.c entry,
 * so it is looked up (or stored) once per relation and invalidation rather
 * than on every statement; relcache.c forgets the ids when a transaction
 * that wrote layout rows aborts.
 *
 * Calls relcache.c and catalog.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "guard.h"

/* the columns of a guard.layout row that describe a layout */
typedef struct LayoutArrays
{
	Datum		attnames;		/* text[] */
	Datum		atttypes;		/* oid[] */
	Datum		atttypmods;		/* int4[] */
	Datum		keyatts;		/* int2[] */
} LayoutArrays;

/*
 * The layout of "rel" as it is now, as the arrays of a guard.layout row.
 */
static void
layout_build(Relation rel, LayoutArrays *arrays)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			natts = desc->natts;
	Datum	   *names = palloc(sizeof(Datum) * Max(natts, 1));
	bool	   *namenulls = palloc(sizeof(bool) * Max(natts, 1));
	Datum	   *types = palloc(sizeof(Datum) * Max(natts, 1));
	Datum	   *typmods = palloc(sizeof(Datum) * Max(natts, 1));
	Datum		keydatums[INDEX_MAX_KEYS];
	GuardKey	buf;
	const GuardKey *key = guard_relation_key(rel, &buf);
	int			dims[1] = {natts};
	int			lbs[1] = {1};

	for (int i = 0; i < natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		namenulls[i] = att->attisdropped;
		names[i] = att->attisdropped ? (Datum) 0 :
			CStringGetTextDatum(NameStr(att->attname));
		types[i] = ObjectIdGetDatum(att->attisdropped ? InvalidOid : att->atttypid);
		typmods[i] = Int32GetDatum(att->atttypmod);
	}
	for (int i = 0; i < key->nkeys; i++)
		keydatums[i] = Int16GetDatum(key->attnums[i]);

	arrays->attnames = PointerGetDatum(construct_md_array(names, namenulls, 1, dims, lbs,
														  TEXTOID, -1, false, TYPALIGN_INT));
	arrays->atttypes = PointerGetDatum(construct_array(types, natts, OIDOID,
													   sizeof(Oid), true, TYPALIGN_INT));
	arrays->atttypmods = PointerGetDatum(construct_array(typmods, natts, INT4OID,
														 sizeof(int32), true, TYPALIGN_INT));
	arrays->keyatts = PointerGetDatum(construct_array(keydatums, key->nkeys, INT2OID,
													  sizeof(int16), true, TYPALIGN_SHORT));
}

/*
 * The id of a layout of table "relid" in guard.layout: an identical row's,
 * or a new one's (*inserted is then true).
 */
static int64
layout_store(Oid relid, const LayoutArrays *arrays, bool *inserted)
{
	Relation	rel = guard_open("layout", RowExclusiveLock, Natts_guard_layout);
	Relation	idx = index_open(guard_relid("layout_relid_idx"), AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	int64		id = 0;

	*inserted = false;

	/*
	 * Newest row first (a btree keeps equal keys in heap order): the
	 * current layout is usually the one stored last, however many older
	 * ones, or duplicates an older library stored (see below), come
	 * before it.
	 */
	ScanKeyInit(&key, Anum_layout_relid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan_ordered(rel, idx, GetLatestSnapshot(), 1, &key);
	while (id == 0 &&
		   HeapTupleIsValid(tuple = systable_getnext_ordered(scan, BackwardScanDirection)))
	{
		Datum		values[Natts_guard_layout];
		bool		nulls[Natts_guard_layout];

		/*
		 * By image, not by bytes: an array the heap stores with a 1-byte
		 * header (under 127 bytes: most tables' names and types) is the
		 * same array as the one just built with a 4-byte header.  Compared
		 * byte for byte, as before, they never matched: every new session
		 * stored the layout again.
		 */
		heap_deform_tuple(tuple, RelationGetDescr(rel), values, nulls);
		if (datum_image_eq(values[2], arrays->attnames, false, -1) &&
			datum_image_eq(values[3], arrays->atttypes, false, -1) &&
			datum_image_eq(values[4], arrays->atttypmods, false, -1) &&
			datum_image_eq(values[5], arrays->keyatts, false, -1))
			id = DatumGetInt64(values[0]);
	}
	systable_endscan_ordered(scan);
	index_close(idx, AccessShareLock);
	if (id == 0)
	{
		Datum		values[Natts_guard_layout];
		bool		nulls[Natts_guard_layout] = {false, false, false, false, false, false};

		id = nextval_internal(guard_relid("layout_id_seq"), false);
		values[0] = Int64GetDatum(id);
		values[1] = ObjectIdGetDatum(relid);
		values[2] = arrays->attnames;
		values[3] = arrays->atttypes;
		values[4] = arrays->atttypmods;
		values[5] = arrays->keyatts;
		guard_writer_insert("layout", Natts_guard_layout, values, nulls);
		*inserted = true;
	}
	table_close(rel, RowExclusiveLock);
	return id;
}

/*
 * The id of the layout of "rel" as it is now: from its cache entry, or
 * found or stored in guard.layout (and then kept in the entry).
 */
int64
guard_layout_id(Relation rel)
{
	GuardRelCache *entry = guard_relcache_lookup(rel);
	LayoutArrays arrays;
	bool		inserted;
	int64		id;

	if (entry != NULL && entry->layout_id != 0)
		return entry->layout_id;
	layout_build(rel, &arrays);
	id = layout_store(RelationGetRelid(rel), &arrays, &inserted);
	if (entry != NULL)
		guard_relcache_set_layout(entry, id, inserted);
	return id;
}

/*
 * Read layout "layout_id" into a change's natts, attnames, atttypes, keys.
 */
void
guard_layout_read(int64 layout_id, GuardChange *change)
{
	Relation	rel = guard_open("layout", AccessShareLock, Natts_guard_layout);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Datum		values[Natts_guard_layout];
	bool		nulls[Natts_guard_layout];
	Datum	   *elems;
	bool	   *elemnulls;
	int			n;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(layout_id));
	scan = systable_beginscan(rel, guard_relid("layout_pkey"), true,
							  GetLatestSnapshot(), 1, &key);
	tuple = systable_getnext(scan);
	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("layout " INT64_FORMAT " of change " INT64_FORMAT " is missing from guard.layout",
						layout_id, change->change_id)));
	heap_deform_tuple(tuple, RelationGetDescr(rel), values, nulls);

	deconstruct_array(DatumGetArrayTypeP(values[2]), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, &elemnulls, &n);
	change->natts = n;
	change->attnames = palloc0(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
		change->attnames[i] = elemnulls[i] ? NULL : TextDatumGetCString(elems[i]);

	deconstruct_array(DatumGetArrayTypeP(values[3]), OIDOID, sizeof(Oid),
					  true, TYPALIGN_INT, &elems, &elemnulls, &n);
	change->atttypes = palloc0(sizeof(Oid) * Max(change->natts, 1));
	for (int i = 0; i < n && i < change->natts; i++)
		change->atttypes[i] = DatumGetObjectId(elems[i]);

	deconstruct_array(DatumGetArrayTypeP(values[5]), INT2OID, sizeof(int16),
					  true, TYPALIGN_SHORT, &elems, &elemnulls, &n);
	change->nkeys = n;
	for (int i = 0; i < n && i < INDEX_MAX_KEYS; i++)
		change->keys[i] = DatumGetInt16(elems[i]);
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}
