/*-------------------------------------------------------------------------
 *
 * shadow.c
 *	  Shadow storage: before-images encoded into chunks of guard.snapshot.
 *
 * UPDATE keeps only the columns whose value changed (binary comparison);
 * DELETE keeps every column; INSERT keeps only the key.  Dropped and
 * generated columns are never kept (restore recomputes generated ones),
 * except a generated column of the key, which finds the row again.
 * Values are kept as the type stores them: fixed-length types as their
 * bytes, varlena with its header, out-of-line TOAST fetched first (never a
 * raw TOAST pointer), so restore gives back the exact bytes.  Rows are
 * encoded as shadow.h describes and packed into chunks of about
 * CHUNK_TARGET bytes, each decodable alone, written in batches through
 * writer.c: a million captured rows make a few thousand shadow tuples, and
 * memory stays at one chunk and the writer's bounded batch however many
 * rows there are.
 *
 * This file does not decide which change the chunks belong to: its caller
 * (capture.c) is asked when the first chunk is full, and may keep that
 * chunk to write inline in the change record.  shadow_read.c decodes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "guard.h"
#include "shadow.h"

#define CHUNK_TARGET	1900

#define NULL_HASH_SEED	0x9e3779b9

struct ShadowWriter
{
	int64		change_id;		/* 0 until the first chunk is full */
	int32	   *chunkno;		/* the change's chunk counter */
	ShadowOpenChange open_change;	/* asked for both, on the first chunk */
	void	   *arg;			/* ... with this argument */
	int			natts;
	int			nkeys;
	AttrNumber	keys[INDEX_MAX_KEYS];
	bool	   *skip;			/* [i]: dropped or generated, never kept */
	int			setbytes;		/* bytes of one column bitmap */
	uint8	   *set;			/* the current row's set */
	uint8	   *prevset;		/* the previous row's, within this chunk */
	bool		have_prev;
	uint8	   *nullmap;
	StringInfoData buf;			/* the chunk being filled, after VARHDRSZ */
	int32		nrows;			/* rows in the chunk */
	int64		bytes;			/* bytes written for this change */
	int64		limit;			/* guard.max_snapshot_size in bytes, or -1 */
	bool		enforce;
	bool		warned;
	const char *relname;
	GuardWriter *out;			/* guard.snapshot, once a chunk goes there */
	MemoryContext cxt;			/* where the writer lives */
	MemoryContext rowcxt;		/* detoasted values of one row */
};

/*
 * A varlena value as a plain in-memory varlena: TOAST pointers are
 * followed; inline compressed data stays compressed.
 */
static inline struct varlena *
fetch_varlena(Datum value)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(value);

	if (VARATT_IS_EXTERNAL(v))
		v = detoast_external_attr(v);
	return v;
}

/*
 * Fold one value into a running hash.  Varlena values are hashed by their
 * logical contents, so that the same value hashes alike whether it sits in
 * a transition table uncompressed or in the heap compressed or toasted.
 */
uint32
shadow_hash_value(Datum value, bool isnull, int16 typlen, bool typbyval,
				  uint32 hash)
{
	uint32		h;

	if (isnull)
		h = NULL_HASH_SEED;
	else if (typlen == -1)
	{
		struct varlena *raw = (struct varlena *) DatumGetPointer(value);
		struct varlena *v = raw;

		/* out of line (a 1-byte header too) or compressed: the contents */
		if (VARATT_IS_EXTERNAL(v) || VARATT_IS_COMPRESSED(v))
			v = detoast_attr(v);
		h = hash_bytes((const unsigned char *) VARDATA_ANY(v),
					   VARSIZE_ANY_EXHDR(v));
		if (v != raw)
			pfree(v);
	}
	else if (typlen == -2)
		h = hash_bytes((const unsigned char *) DatumGetCString(value),
					   strlen(DatumGetCString(value)));
	else if (typbyval)
	{
		AlignedDatum tmp;

		/* a pass-by-value Datum: hash the bytes the type stores */
		store_att_byval(tmp.c, value, typlen);
		h = hash_bytes((const unsigned char *) tmp.c, typlen);
	}
	else
		h = hash_bytes((const unsigned char *) DatumGetPointer(value), typlen);
	return hash_combine(hash, h);
}

/*
 * Are two values of a column bit-for-bit the same?  Binary, not the type's
 * "=": numeric 1.0 and 1.00 differ, and json has no "=".
 */
static bool
values_identical(Datum a, Datum b, Form_pg_attribute att)
{
	if (att->attbyval)
		return a == b;
	if (att->attlen > 0)
		return memcmp(DatumGetPointer(a), DatumGetPointer(b), att->attlen) == 0;
	if (att->attlen == -2)
		return strcmp(DatumGetCString(a), DatumGetCString(b)) == 0;
	else
	{
		struct varlena *va = (struct varlena *) DatumGetPointer(a);
		struct varlena *vb = (struct varlena *) DatumGetPointer(b);

		if (va == vb)
			return true;
		if (VARATT_IS_EXTERNAL_ONDISK(va) && VARATT_IS_EXTERNAL_ONDISK(vb))
		{
			struct varatt_external ea;
			struct varatt_external eb;

			VARATT_EXTERNAL_GET_POINTER(ea, va);
			VARATT_EXTERNAL_GET_POINTER(eb, vb);
			/* the same TOAST value: an UPDATE that kept the column */
			if (ea.va_valueid == eb.va_valueid &&
				ea.va_toastrelid == eb.va_toastrelid)
				return true;
		}
		if (VARATT_IS_EXTERNAL(va) || VARATT_IS_COMPRESSED(va))
			va = detoast_attr(va);
		if (VARATT_IS_EXTERNAL(vb) || VARATT_IS_COMPRESSED(vb))
			vb = detoast_attr(vb);
		return VARSIZE_ANY_EXHDR(va) == VARSIZE_ANY_EXHDR(vb) &&
			memcmp(VARDATA_ANY(va), VARDATA_ANY(vb), VARSIZE_ANY_EXHDR(va)) == 0;
	}
}

/*
 * Append one non-NULL value to the chunk, in the form the type stores it.
 */
static void
append_value(StringInfo buf, Datum value, Form_pg_attribute att)
{
	if (att->attbyval)
	{
		AlignedDatum tmp;

		store_att_byval(tmp.c, value, att->attlen);
		appendBinaryStringInfo(buf, tmp.c, att->attlen);
	}
	else if (att->attlen > 0)
		appendBinaryStringInfo(buf, DatumGetPointer(value), att->attlen);
	else if (att->attlen == -2)
		appendBinaryStringInfo(buf, DatumGetCString(value),
							   strlen(DatumGetCString(value)) + 1);
	else
	{
		struct varlena *v = fetch_varlena(value);

		appendBinaryStringInfo(buf, (char *) v, VARSIZE_ANY(v));
	}
}

/*
 * Start encoding a snapshot of rows of "rel".  No change is known yet:
 * when the first chunk is full, "open_change" is asked (with "arg") for the
 * change it belongs to, so that a statement whose rows all kept their
 * values records nothing.  "limit" is guard.max_snapshot_size in bytes
 * (-1: none); past it the snapshot fails if "enforce", else warns.
 */
ShadowWriter *
shadow_writer_begin(Relation rel, int64 limit, bool enforce,
					ShadowOpenChange open_change, void *arg)
{
	TupleDesc	desc = RelationGetDescr(rel);
	ShadowWriter *w = palloc0(sizeof(ShadowWriter));

	w->open_change = open_change;
	w->arg = arg;
	w->natts = desc->natts;
	w->nkeys = guard_key_attnums(rel, w->keys);
	w->skip = palloc0(sizeof(bool) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		w->skip[i] = att->attisdropped || att->attgenerated != '\0';
	}
	/* a generated key column is kept: a deleted row is found by its key */
	for (int k = 0; k < w->nkeys; k++)
		w->skip[w->keys[k] - 1] = false;
	w->setbytes = (desc->natts + 7) / 8;
	w->set = palloc0(w->setbytes);
	w->prevset = palloc0(w->setbytes);
	w->nullmap = palloc0(w->setbytes);
	initStringInfo(&w->buf);
	appendStringInfoSpaces(&w->buf, VARHDRSZ);
	w->limit = limit;
	w->enforce = enforce;
	w->relname = RelationGetRelationName(rel);
	w->cxt = CurrentMemoryContext;
	/* guard.snapshot is opened when a chunk must go there (not for one) */
	w->rowcxt = AllocSetContextCreate(CurrentMemoryContext,
									  "guard capture row",
									  ALLOCSET_SMALL_SIZES);
	return w;
}

/*
 * Write the chunk being filled, if any.  The first chunk goes to whoever
 * opens the change: it may keep it (inline in the change record, so that
 * a one-row statement costs one row in guard.change and none in
 * guard.snapshot) instead of its going to guard.snapshot.
 */
static void
shadow_flush(ShadowWriter *w)
{
	Datum		values[Natts_guard_snapshot];
	bool		nulls[Natts_guard_snapshot] = {false, false, false, false};
	bool		keep_inline = false;

	if (w->nrows == 0)
		return;

	SET_VARSIZE(w->buf.data, w->buf.len);
	if (w->change_id == 0)
		keep_inline = w->open_change(w->arg, (bytea *) w->buf.data, w->nrows,
									 &w->change_id, &w->chunkno);
	if (!keep_inline)
	{
		if (w->out == NULL)
		{
			/* in the writer's context: the caller may be inside SPI */
			MemoryContext old = MemoryContextSwitchTo(w->cxt);

			w->out = guard_writer_begin("snapshot", Natts_guard_snapshot);
			MemoryContextSwitchTo(old);
		}
		values[0] = Int64GetDatum(w->change_id);
		values[1] = Int32GetDatum((*w->chunkno)++);
		values[2] = Int32GetDatum(w->nrows);
		values[3] = PointerGetDatum(w->buf.data);
		guard_writer_add(w->out, values, nulls);
	}

	w->bytes += w->buf.len;
	if (w->limit >= 0 && w->bytes > w->limit)
	{
		if (w->enforce)
			ereport(ERROR,
					(errcode(ERRCODE_GUARD_SNAPSHOT_TOO_LARGE),
					 errmsg("snapshot of the change to table \"%s\" exceeds guard.max_snapshot_size",
							w->relname),
					 errdetail("The snapshot needs more than %d kB.",
							   guard_max_snapshot_size),
					 errhint("Raise guard.max_snapshot_size, or change fewer rows per statement.")));
		w->warned = true;
	}

	resetStringInfo(&w->buf);
	appendStringInfoSpaces(&w->buf, VARHDRSZ);
	w->nrows = 0;
	w->have_prev = false;
}

/*
 * Append the row header and the set and null bitmaps for the current row.
 */
static void
append_header(ShadowWriter *w, GuardRowOp op, bool has_nulls)
{
	uint8		flags = (uint8) op;
	bool		new_set = !w->have_prev ||
		memcmp(w->set, w->prevset, w->setbytes) != 0;

	if (has_nulls)
		flags |= ROW_HAS_NULLS;
	if (new_set)
		flags |= ROW_NEW_SET;
	appendStringInfoChar(&w->buf, (char) flags);
	if (new_set)
	{
		appendBinaryStringInfo(&w->buf, (char *) w->set, w->setbytes);
		memcpy(w->prevset, w->set, w->setbytes);
		w->have_prev = true;
	}
	if (has_nulls)
		appendBinaryStringInfo(&w->buf, (char *) w->nullmap, w->setbytes);
}

/*
 * Append the row's key values, taken from "slot" (the row after the change).
 */
static void
append_key(ShadowWriter *w, TupleTableSlot *slot)
{
	TupleDesc	desc = slot->tts_tupleDescriptor;

	for (int k = 0; k < w->nkeys; k++)
	{
		int			i = w->keys[k] - 1;

		/* key columns are NOT NULL (primary key or replica identity) */
		append_value(&w->buf, slot->tts_values[i], TupleDescAttr(desc, i));
	}
}

/*
 * Append the row's 4-byte hash, in native byte order as the reader takes it.
 */
static void
append_hash(ShadowWriter *w, uint32 hash)
{
	appendBinaryStringInfo(&w->buf, (char *) &hash, sizeof(hash));
}

/*
 * End one row: count it and start a new chunk when this one is full.
 */
static void
row_done(ShadowWriter *w)
{
	w->nrows++;
	MemoryContextReset(w->rowcxt);
	if (w->buf.len >= CHUNK_TARGET)
		shadow_flush(w);
}

/*
 * Capture one updated row: key after, before-values of changed columns,
 * hash of their after-values.
 */
void
shadow_add_update(ShadowWriter *w, TupleTableSlot *oldslot,
				  TupleTableSlot *newslot)
{
	TupleDesc	desc = oldslot->tts_tupleDescriptor;
	MemoryContext oldcxt;
	bool		any = false;
	bool		has_nulls = false;
	uint32		hash = 0;

	slot_getallattrs(oldslot);
	slot_getallattrs(newslot);
	oldcxt = MemoryContextSwitchTo(w->rowcxt);

	memset(w->set, 0, w->setbytes);
	memset(w->nullmap, 0, w->setbytes);
	for (int i = 0; i < w->natts; i++)
	{
		bool		onull = oldslot->tts_isnull[i];
		bool		nnull = newslot->tts_isnull[i];

		if (w->skip[i])
			continue;
		if (onull && nnull)
			continue;
		if (!onull && !nnull &&
			values_identical(oldslot->tts_values[i], newslot->tts_values[i],
							 TupleDescAttr(desc, i)))
			continue;
		bit_set(w->set, i);
		if (onull)
		{
			bit_set(w->nullmap, i);
			has_nulls = true;
		}
		hash = shadow_hash_value(newslot->tts_values[i], nnull,
								 TupleDescAttr(desc, i)->attlen,
								 TupleDescAttr(desc, i)->attbyval, hash);
		any = true;
	}

	if (any)
	{
		append_header(w, GUARD_OP_UPDATE, has_nulls);
		append_key(w, newslot);
		for (int i = 0; i < w->natts; i++)
		{
			if (bit_is_set(w->set, i) && !oldslot->tts_isnull[i])
				append_value(&w->buf, oldslot->tts_values[i],
							 TupleDescAttr(desc, i));
		}
		append_hash(w, hash);
	}
	MemoryContextSwitchTo(oldcxt);
	if (any)
		row_done(w);
	else
		MemoryContextReset(w->rowcxt);
}

/*
 * Capture one column of a row, with the row's key: what DROP COLUMN and
 * ALTER COLUMN TYPE destroy.  Encoded as an UPDATE of that column.
 */
void
shadow_add_column(ShadowWriter *w, TupleTableSlot *slot, AttrNumber attnum)
{
	TupleDesc	desc = slot->tts_tupleDescriptor;
	MemoryContext oldcxt;
	int			i = attnum - 1;
	bool		isnull;

	slot_getallattrs(slot);
	isnull = slot->tts_isnull[i];
	oldcxt = MemoryContextSwitchTo(w->rowcxt);
	memset(w->set, 0, w->setbytes);
	memset(w->nullmap, 0, w->setbytes);
	bit_set(w->set, i);
	if (isnull)
		bit_set(w->nullmap, i);
	append_header(w, GUARD_OP_UPDATE, isnull);
	append_key(w, slot);
	if (!isnull)
		append_value(&w->buf, slot->tts_values[i], TupleDescAttr(desc, i));
	append_hash(w, 0);
	MemoryContextSwitchTo(oldcxt);
	row_done(w);
}

/*
 * Capture one deleted row: every stored column.
 */
void
shadow_add_delete(ShadowWriter *w, TupleTableSlot *oldslot)
{
	TupleDesc	desc = oldslot->tts_tupleDescriptor;
	MemoryContext oldcxt;
	bool		has_nulls = false;

	slot_getallattrs(oldslot);
	oldcxt = MemoryContextSwitchTo(w->rowcxt);
	memset(w->set, 0, w->setbytes);
	memset(w->nullmap, 0, w->setbytes);
	for (int i = 0; i < w->natts; i++)
	{
		if (w->skip[i])
			continue;
		bit_set(w->set, i);
		if (oldslot->tts_isnull[i])
		{
			bit_set(w->nullmap, i);
			has_nulls = true;
		}
	}
	append_header(w, GUARD_OP_DELETE, has_nulls);
	for (int i = 0; i < w->natts; i++)
	{
		if (!w->skip[i] && !oldslot->tts_isnull[i])
			append_value(&w->buf, oldslot->tts_values[i], TupleDescAttr(desc, i));
	}
	MemoryContextSwitchTo(oldcxt);
	row_done(w);
}

/*
 * Capture one inserted row: its key, and a hash of the whole row so that
 * restore can tell whether it changed since.
 */
void
shadow_add_insert(ShadowWriter *w, TupleTableSlot *newslot)
{
	TupleDesc	desc = newslot->tts_tupleDescriptor;
	MemoryContext oldcxt;
	uint32		hash = 0;

	slot_getallattrs(newslot);
	oldcxt = MemoryContextSwitchTo(w->rowcxt);
	memset(w->set, 0, w->setbytes);
	for (int i = 0; i < w->natts; i++)
	{
		/* generated columns are left out, kept generated keys too */
		if (w->skip[i] || TupleDescAttr(desc, i)->attgenerated != '\0')
			continue;
		hash = shadow_hash_value(newslot->tts_values[i], newslot->tts_isnull[i],
								 TupleDescAttr(desc, i)->attlen,
								 TupleDescAttr(desc, i)->attbyval, hash);
	}
	append_header(w, GUARD_OP_INSERT, false);
	append_key(w, newslot);
	append_hash(w, hash);
	MemoryContextSwitchTo(oldcxt);
	row_done(w);
}

/*
 * Finish the snapshot: write the last chunk, release everything.  Returns
 * the change id (0 if no row needed capture).
 */
int64
shadow_writer_end(ShadowWriter *w)
{
	int64		change_id;

	shadow_flush(w);
	change_id = w->change_id;
	if (w->out)
		guard_writer_end(w->out);
	if (w->warned)
		ereport(WARNING,
				(errcode(ERRCODE_GUARD_SNAPSHOT_TOO_LARGE),
				 errmsg("snapshot of the change to table \"%s\" exceeds guard.max_snapshot_size",
						w->relname),
				 errdetail("The snapshot takes " INT64_FORMAT " bytes; the limit is %d kB.",
						   w->bytes, guard_max_snapshot_size)));
	MemoryContextDelete(w->rowcxt);
	pfree(w->buf.data);
	pfree(w);
	return change_id;
}

/*
 * The "arg" the writer was begun with, for its caller's end.
 */
void *
shadow_writer_arg(ShadowWriter *w)
{
	return w->arg;
}
