/*-------------------------------------------------------------------------
 *
 * plan_store.c
 *	  The rows of a restore that only plans (undo_plan.c), by table and key,
 *	  within work_mem.
 *
 * A dry run on a hot standby or in a read-only transaction plays the writes
 * of row undo on an overlay of the tables: for each key it wrote, the row
 * it left there, or none.  The overlay grows with the rows the restore
 * would write, so it is kept in two byte arrays that live in memory up to
 * half of work_mem each, and past that in a temporary file read and written
 * a block at a time (one block cached), as undo_moves.c keeps its moves:
 *
 *	- the log: every version of every row, appended (a row written again is
 *	  appended again; the old version stays, unread).  A record holds its
 *	  size, the table (the root of a partition tree), the row's number, and
 *	  whether the key holds a row; then the key and the row's values (in
 *	  the root's columns) as datumSerialize() writes them;
 *	- the slots: an open-addressing hash table (linear probing, doubled at
 *	  half full) of (hash, row number, position of the row's last version
 *	  in the log).  A lookup compares the hash, then reads the record and
 *	  compares the table and the key with the key index's equality.
 *
 * So memory holds at most work_mem of both, plus a block of each file and
 * the row at hand, whatever the number of rows; the rest is on disk.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/buffile.h"
#include "utils/datum.h"
#include "utils/memutils.h"

#include "undo.h"

/* a byte array in memory, or past "limit" bytes in a temporary file */
typedef struct PlanBytes
{
	MemoryContext cxt;
	char	   *mem;			/* in memory ... */
	int64		memsize;		/* ... this many bytes (whole blocks) */
	int64		limit;			/* the most bytes kept in memory */
	BufFile    *file;			/* ... or past it, in this file */
	char	   *page;			/* the block of the file at hand */
	long		pageno;
	bool		dirty;
	long		nblocks;		/* blocks written to the file */
} PlanBytes;

/* a slot of the hash table */
typedef struct PlanSlot
{
	uint32		hash;
	uint32		seq;			/* the row's number */
	int64		pos;			/* its last version in the log, + 1; 0: free */
} PlanSlot;

/* the fixed part of a record of the log */
typedef struct PlanRecord
{
	uint32		size;			/* of the whole record */
	Oid			relid;
	uint32		seq;
	bool		present;
} PlanRecord;

struct PlanStore
{
	MemoryContext cxt;
	PlanBytes	log;
	int64		logend;			/* bytes in the log */
	PlanBytes	slots;
	uint64		nslots;			/* a power of 2 */
	uint64		nused;
	uint32		nextseq;
};

/*
 * Begin an empty byte array of "size" bytes (zeros), in memory up to
 * "limit" bytes.
 */
static void
bytes_begin(PlanBytes *b, MemoryContext cxt, int64 size, int64 limit)
{
	memset(b, 0, sizeof(PlanBytes));
	b->cxt = cxt;
	b->limit = limit;
	b->pageno = -1;
	if (size > limit)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		b->file = BufFileCreateTemp(false);
		b->page = palloc(BLCKSZ);
		MemoryContextSwitchTo(old);
	}
	else if (size > 0)
	{
		b->memsize = size;
		b->mem = MemoryContextAllocHuge(cxt, size);
		memset(b->mem, 0, size);
	}
}

/*
 * Free a byte array and its file.
 */
static void
bytes_end(PlanBytes *b)
{
	if (b->file != NULL)
	{
		BufFileClose(b->file);
		pfree(b->page);
	}
	if (b->mem != NULL)
		pfree(b->mem);
	b->file = NULL;
	b->mem = NULL;
}

/*
 * Have block "blk" of the file in b->page: write the one there back if it
 * changed, read (or, past the end, clear) the one asked for.
 */
static void
bytes_page(PlanBytes *b, long blk)
{
	if (blk == b->pageno)
		return;
	if (b->pageno >= 0 && b->dirty)
	{
		/* the blocks before it first, zeros: a file without holes */
		if (b->pageno > b->nblocks)
		{
			char	   *zeros = palloc0(BLCKSZ);

			if (BufFileSeekBlock(b->file, b->nblocks) != 0)
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("could not seek in a temporary file of a dry run")));
			for (; b->nblocks < b->pageno; b->nblocks++)
				BufFileWrite(b->file, zeros, BLCKSZ);
			pfree(zeros);
		}
		if (BufFileSeekBlock(b->file, b->pageno) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not seek in a temporary file of a dry run")));
		BufFileWrite(b->file, b->page, BLCKSZ);
		b->nblocks = Max(b->nblocks, b->pageno + 1);
	}
	b->pageno = blk;
	b->dirty = false;
	if (blk >= b->nblocks)
	{
		memset(b->page, 0, BLCKSZ);
		return;
	}
	if (BufFileSeekBlock(b->file, blk) != 0 ||
		BufFileRead(b->file, b->page, BLCKSZ) != BLCKSZ)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read a temporary file of a dry run")));
}

/*
 * Make room for "end" bytes: in memory (doubling) while within the limit,
 * else move what is in memory to a file.
 */
static void
bytes_reserve(PlanBytes *b, int64 end)
{
	int64		want;
	MemoryContext old;

	if (b->file != NULL || end <= b->memsize)
		return;
	want = Max(b->memsize, BLCKSZ);
	while (want < end)
		want *= 2;
	if (want <= b->limit)
	{
		b->mem = b->mem == NULL ? MemoryContextAllocHuge(b->cxt, want) :
			repalloc_huge(b->mem, want);
		memset(b->mem + b->memsize, 0, want - b->memsize);
		b->memsize = want;
		return;
	}
	old = MemoryContextSwitchTo(b->cxt);
	b->file = BufFileCreateTemp(false);
	b->page = palloc(BLCKSZ);
	MemoryContextSwitchTo(old);
	for (int64 off = 0; off < b->memsize; off += BLCKSZ)
		BufFileWrite(b->file, b->mem + off, BLCKSZ);
	b->nblocks = b->memsize / BLCKSZ;
	if (b->mem != NULL)
		pfree(b->mem);
	b->mem = NULL;
	b->memsize = 0;
}

/*
 * Read (or with "write", write) "len" bytes at "pos".
 */
static void
bytes_access(PlanBytes *b, int64 pos, void *buf, Size len, bool write)
{
	char	   *p = buf;

	if (write)
		bytes_reserve(b, pos + len);
	if (b->file == NULL)
	{
		if (pos + (int64) len > b->memsize)
			elog(ERROR, "guard: read past the end of a dry run's rows");
		if (write)
			memcpy(b->mem + pos, p, len);
		else
			memcpy(p, b->mem + pos, len);
		return;
	}
	while (len > 0)
	{
		long		blk = (long) (pos / BLCKSZ);
		int			off = (int) (pos % BLCKSZ);
		Size		n = Min(len, (Size) (BLCKSZ - off));

		bytes_page(b, blk);
		if (write)
		{
			memcpy(b->page + off, p, n);
			b->dirty = true;
		}
		else
			memcpy(p, b->page + off, n);
		pos += n;
		p += n;
		len -= n;
	}
}

/*
 * A new, empty store, in "cxt".
 */
PlanStore *
guard_plan_store_begin(MemoryContext cxt)
{
	PlanStore  *s = MemoryContextAllocZero(cxt, sizeof(PlanStore));
	int64		half = (int64) work_mem * 1024 / 2;

	s->cxt = cxt;
	s->nslots = 1024;
	bytes_begin(&s->slots, cxt, s->nslots * sizeof(PlanSlot), half);
	bytes_begin(&s->log, cxt, 0, half);
	return s;
}

/*
 * Free the store, and its files.
 */
void
guard_plan_store_end(PlanStore *s)
{
	bytes_end(&s->slots);
	bytes_end(&s->log);
	pfree(s);
}

/*
 * The hash of a key of table "pt", consistent with the key's equality (the
 * same for every key of a table whose key has no hash function: then its
 * keys are compared one by one).
 */
static uint32
key_hash(const PlanTable *pt, Datum *key)
{
	uint32		hash = murmurhash32((uint32) pt->root);

	if (!pt->hashable)
		return hash;
	for (int k = 0; k < pt->nkeys; k++)
		hash = hash_combine(hash,
							DatumGetUInt32(FunctionCall1Coll((FmgrInfo *) &pt->hash[k],
															 pt->collation[k], key[k])));
	return hash;
}

/*
 * Read the record at "pos" of the log into *row (allocated in the current
 * memory context), and return its table.
 */
static Oid
read_record(PlanStore *s, const PlanTable *pt, int64 pos, PlanRow *row)
{
	PlanRecord	rec;
	char	   *buf;
	char	   *p;

	bytes_access(&s->log, pos, &rec, sizeof(rec), false);
	buf = palloc(rec.size);
	bytes_access(&s->log, pos, buf, rec.size, false);
	p = buf + sizeof(PlanRecord);
	row->seq = rec.seq;
	row->present = rec.present;
	if (rec.relid != pt->root)
		return rec.relid;
	row->key = palloc(sizeof(Datum) * Max(pt->nkeys, 1));
	for (int k = 0; k < pt->nkeys; k++)
	{
		bool		isnull;

		row->key[k] = datumRestore(&p, &isnull);
	}
	row->values = palloc0(sizeof(Datum) * Max(pt->desc->natts, 1));
	row->nulls = palloc(sizeof(bool) * Max(pt->desc->natts, 1));
	memset(row->nulls, true, sizeof(bool) * Max(pt->desc->natts, 1));
	for (int a = 0; rec.present && a < pt->desc->natts; a++)
		row->values[a] = datumRestore(&p, &row->nulls[a]);
	return rec.relid;
}

/*
 * Whether two keys of table "pt" are equal, by the key index's equality.
 */
static bool
keys_equal(const PlanTable *pt, Datum *a, Datum *b)
{
	for (int k = 0; k < pt->nkeys; k++)
	{
		if (!DatumGetBool(FunctionCall2Coll((FmgrInfo *) &pt->eq[k], pt->collation[k],
											a[k], b[k])))
			return false;
	}
	return true;
}

/*
 * Find the slot of "key" of table "pt": returns its index, and whether it
 * holds the key (else it is the free slot where the key goes).  *row gets
 * the row if found (in the current memory context).
 */
static uint64
find_slot(PlanStore *s, const PlanTable *pt, Datum *key, uint32 hash,
		  bool *found, PlanRow *row)
{
	uint64		i = hash & (s->nslots - 1);

	for (;;)
	{
		PlanSlot	slot;

		CHECK_FOR_INTERRUPTS();
		bytes_access(&s->slots, i * sizeof(PlanSlot), &slot, sizeof(slot), false);
		if (slot.pos == 0)
		{
			*found = false;
			return i;
		}
		if (slot.hash == hash &&
			read_record(s, pt, slot.pos - 1, row) == pt->root &&
			keys_equal(pt, row->key, key))
		{
			*found = true;
			return i;
		}
		i = (i + 1) & (s->nslots - 1);
	}
}

/*
 * Look up "key" of table "pt": false if the store does not hold it; else
 * true, with *row (present or not, values in the root's columns) allocated
 * in the current memory context.
 */
bool
guard_plan_store_get(PlanStore *s, const PlanTable *pt, Datum *key,
					 PlanRow *row)
{
	bool		found;

	(void) find_slot(s, pt, key, key_hash(pt, key), &found, row);
	return found;
}

/*
 * Double the hash table: every slot in use goes to its place in a new one.
 */
static void
grow_slots(PlanStore *s)
{
	PlanBytes	old = s->slots;
	uint64		oldn = s->nslots;

	s->nslots = oldn * 2;
	bytes_begin(&s->slots, s->cxt, s->nslots * sizeof(PlanSlot), old.limit);
	for (uint64 j = 0; j < oldn; j++)
	{
		PlanSlot	slot;
		PlanSlot	other;
		uint64		i;

		CHECK_FOR_INTERRUPTS();
		bytes_access(&old, j * sizeof(PlanSlot), &slot, sizeof(slot), false);
		if (slot.pos == 0)
			continue;
		for (i = slot.hash & (s->nslots - 1);; i = (i + 1) & (s->nslots - 1))
		{
			bytes_access(&s->slots, i * sizeof(PlanSlot), &other, sizeof(other), false);
			if (other.pos == 0)
				break;
		}
		bytes_access(&s->slots, i * sizeof(PlanSlot), &slot, sizeof(slot), true);
	}
	bytes_end(&old);
}

/*
 * Append a version of a row to the log: returns where it starts.
 */
static int64
append_record(PlanStore *s, const PlanTable *pt, uint32 seq, Datum *key,
			  const PlanRow *row)
{
	MemoryContext scratch = AllocSetContextCreate(CurrentMemoryContext,
												  "guard dry run row",
												  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(scratch);
	int			natts = pt->desc->natts;
	Datum	   *values = palloc(sizeof(Datum) * Max(natts, 1));
	PlanRecord	rec;
	Size		size = sizeof(PlanRecord);
	char	   *buf;
	char	   *p;
	int64		pos = s->logend;

	for (int k = 0; k < pt->nkeys; k++)
		size += datumEstimateSpace(key[k], false, pt->keybyval[k], pt->keylen[k]);
	for (int a = 0; row->present && a < natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(pt->desc, a);

		values[a] = row->values[a];
		/* a value kept out of line is read now: the store holds it whole */
		if (!row->nulls[a] && att->attlen == -1 &&
			VARATT_IS_EXTERNAL(DatumGetPointer(values[a])))
			values[a] = PointerGetDatum(detoast_external_attr((struct varlena *) DatumGetPointer(values[a])));
		size += datumEstimateSpace(values[a], row->nulls[a], att->attbyval, att->attlen);
	}
	if (size > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a row of the dry run is too large")));
	buf = palloc(size);
	rec.size = (uint32) size;
	rec.relid = pt->root;
	rec.seq = seq;
	rec.present = row->present;
	memcpy(buf, &rec, sizeof(rec));
	p = buf + sizeof(rec);
	for (int k = 0; k < pt->nkeys; k++)
		datumSerialize(key[k], false, pt->keybyval[k], pt->keylen[k], &p);
	for (int a = 0; row->present && a < natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(pt->desc, a);

		datumSerialize(values[a], row->nulls[a], att->attbyval, att->attlen, &p);
	}
	Assert(p == buf + size);
	bytes_access(&s->log, pos, buf, size, true);
	s->logend += size;
	MemoryContextSwitchTo(old);
	MemoryContextDelete(scratch);
	return pos;
}

/*
 * Write the row at "key" of table "pt": *row (present or not; values in
 * the root's columns).  A key the store holds keeps its row number; a new
 * one gets the next.  Returns the row number.
 */
uint32
guard_plan_store_put(PlanStore *s, const PlanTable *pt, Datum *key,
					 const PlanRow *row)
{
	uint32		hash = key_hash(pt, key);
	MemoryContext scratch = AllocSetContextCreate(CurrentMemoryContext,
												  "guard dry run lookup",
												  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(scratch);
	PlanRow		have;
	PlanSlot	slot;
	bool		found;
	uint64		i;

	if (s->nused + 1 > s->nslots / 2)
		grow_slots(s);
	i = find_slot(s, pt, key, hash, &found, &have);
	MemoryContextSwitchTo(old);
	slot.hash = hash;
	slot.seq = found ? have.seq : ++s->nextseq;
	slot.pos = append_record(s, pt, slot.seq, key, row) + 1;
	bytes_access(&s->slots, i * sizeof(PlanSlot), &slot, sizeof(slot), true);
	if (!found)
		s->nused++;
	MemoryContextDelete(scratch);
	return slot.seq;
}
