/*-------------------------------------------------------------------------
 *
 * shadow_read.c
 *	  Decoding snapshots: the captured rows of one change, chunk by chunk.
 *
 * A change's first chunk may be inline in its record; the others are read
 * from guard.snapshot in chunk order through its primary key.  Only one
 * chunk is in memory at a time, and one decoded row (in a context reset
 * for each row), however many rows the snapshot holds.  shadow.h gives the
 * encoding.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "guard.h"
#include "shadow.h"

struct ShadowReader
{
	Relation	rel;			/* guard.snapshot */
	SysScanDesc scan;			/* ... the change's chunks, in order */
	int			natts;			/* the layout's attnums */
	int16	   *typlen;			/* [attnum - 1], 0 for a dropped column */
	bool	   *typbyval;
	int			nkeys;
	AttrNumber	keys[INDEX_MAX_KEYS];
	int			setbytes;		/* bytes of one column bitmap */
	uint8	   *set;			/* the set in force, within this chunk */
	bytea	   *chunk;			/* the chunk being read */
	const char *pos;			/* ... the next row in it */
	const char *end;
	MemoryContext rowcxt;		/* the decoded row */
};

/*
 * Open the snapshot of change "change_id" for reading.  "types" gives the
 * type of each attnum as recorded with the change (InvalidOid: dropped).
 */
ShadowReader *
shadow_open(int64 change_id, int natts, const Oid *types,
			const AttrNumber *keys, int nkeys, bytea *inline_chunk)
{
	ShadowReader *r = palloc0(sizeof(ShadowReader));
	ScanKeyData key;
	Snapshot	snapshot;

	r->natts = natts;
	r->typlen = palloc0(sizeof(int16) * natts);
	r->typbyval = palloc0(sizeof(bool) * natts);
	for (int i = 0; i < natts; i++)
	{
		if (OidIsValid(types[i]))
			get_typlenbyval(types[i], &r->typlen[i], &r->typbyval[i]);
	}
	r->nkeys = nkeys;
	memcpy(r->keys, keys, sizeof(AttrNumber) * nkeys);
	r->setbytes = (natts + 7) / 8;
	r->set = palloc0(r->setbytes);
	r->rowcxt = AllocSetContextCreate(CurrentMemoryContext,
									  "guard snapshot row",
									  ALLOCSET_DEFAULT_SIZES);

	snapshot = ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot();
	r->rel = guard_open("snapshot", AccessShareLock, Natts_guard_snapshot);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ,
				Int64GetDatum(change_id));
	r->scan = systable_beginscan(r->rel, guard_relid("snapshot_pkey"), true,
								 snapshot, 1, &key);
	if (inline_chunk)
	{
		/* the first chunk, kept in the change record */
		r->chunk = (bytea *) PG_DETOAST_DATUM_COPY(PointerGetDatum(inline_chunk));
		r->pos = VARDATA(r->chunk);
		r->end = r->pos + VARSIZE(r->chunk) - VARHDRSZ;
	}
	return r;
}

/*
 * Read one value of attribute index i at r->pos, as a Datum in rowcxt.
 */
static Datum
read_value(ShadowReader *r, int i)
{
	int16		len = r->typlen[i];
	Datum		d;

	if (len == 0)
		elog(ERROR, "guard: snapshot names a column of unknown type");
	if (r->typbyval[i])
	{
		AlignedDatum tmp;

		memcpy(tmp.c, r->pos, len);
		d = fetch_att(tmp.c, true, len);
		r->pos += len;
	}
	else if (len > 0)
	{
		char	   *p = palloc(len);

		memcpy(p, r->pos, len);
		d = PointerGetDatum(p);
		r->pos += len;
	}
	else if (len == -2)
	{
		size_t		n = strlen(r->pos) + 1;

		d = PointerGetDatum(pstrdup(r->pos));
		r->pos += n;
	}
	else
	{
		Size		size;
		char	   *p;

		if (VARATT_IS_1B(r->pos))
			size = VARSIZE_1B(r->pos);
		else
		{
			varattrib_4b hdr;

			memcpy(&hdr, r->pos, sizeof(uint32));
			size = VARSIZE_4B(&hdr);
		}
		p = palloc(size);
		memcpy(p, r->pos, size);
		d = PointerGetDatum(p);
		r->pos += size;
	}
	if (r->pos > r->end)
		elog(ERROR, "guard: snapshot chunk is corrupt");
	return d;
}

/*
 * Decode the next captured row into "row" (arrays allocated by the reader,
 * valid until the next call).  Returns false at the end.
 */
bool
shadow_next(ShadowReader *r, ShadowRow *row)
{
	uint8		flags;
	uint8	   *nullmap = NULL;
	MemoryContext oldcxt;

	while (r->pos == NULL || r->pos >= r->end)
	{
		HeapTuple	tuple = systable_getnext(r->scan);
		bool		isnull;
		Datum		d;

		if (!HeapTupleIsValid(tuple))
			return false;
		d = heap_getattr(tuple, 4, RelationGetDescr(r->rel), &isnull);
		if (r->chunk)
			pfree(r->chunk);
		r->chunk = (bytea *) detoast_attr((struct varlena *) DatumGetPointer(d));
		if ((Pointer) r->chunk == DatumGetPointer(d))
		{
			/* not toasted: copy, the scan's tuple goes away */
			r->chunk = (bytea *) PG_DETOAST_DATUM_COPY(d);
		}
		r->pos = VARDATA(r->chunk);
		r->end = r->pos + VARSIZE(r->chunk) - VARHDRSZ;
		memset(r->set, 0, r->setbytes);
	}

	MemoryContextReset(r->rowcxt);
	oldcxt = MemoryContextSwitchTo(r->rowcxt);

	row->natts = r->natts;
	row->captured = palloc0(sizeof(bool) * r->natts);
	row->values = palloc0(sizeof(Datum) * r->natts);
	row->nulls = palloc0(sizeof(bool) * r->natts);
	row->keyvalues = palloc0(sizeof(Datum) * Max(r->nkeys, 1));
	row->hash = 0;

	flags = (uint8) *r->pos++;
	row->op = (GuardRowOp) (flags & ROW_OP_MASK);
	if (flags & ROW_NEW_SET)
	{
		memcpy(r->set, r->pos, r->setbytes);
		r->pos += r->setbytes;
	}
	if (flags & ROW_HAS_NULLS)
	{
		nullmap = (uint8 *) r->pos;
		r->pos += r->setbytes;
	}
	if (row->op != GUARD_OP_DELETE)
	{
		for (int k = 0; k < r->nkeys; k++)
			row->keyvalues[k] = read_value(r, r->keys[k] - 1);
	}
	for (int i = 0; i < r->natts; i++)
	{
		if (!bit_is_set(r->set, i))
			continue;
		row->captured[i] = true;
		if (nullmap && bit_is_set(nullmap, i))
			row->nulls[i] = true;
		else
			row->values[i] = read_value(r, i);
	}
	if (row->op == GUARD_OP_DELETE)
	{
		for (int k = 0; k < r->nkeys; k++)
			row->keyvalues[k] = row->values[r->keys[k] - 1];
	}
	else
	{
		memcpy(&row->hash, r->pos, sizeof(uint32));
		r->pos += sizeof(uint32);
	}
	if (r->pos > r->end)
		elog(ERROR, "guard: snapshot chunk is corrupt");
	MemoryContextSwitchTo(oldcxt);
	return true;
}

/*
 * End reading a snapshot: close guard.snapshot, free the decoded row.
 */
void
shadow_close(ShadowReader *r)
{
	systable_endscan(r->scan);
	table_close(r->rel, AccessShareLock);
	MemoryContextDelete(r->rowcxt);
}
