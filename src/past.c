/*-------------------------------------------------------------------------
 *
 * past.c
 *	  A table's rows as they were: the rows now, with the captures recorded
 *	  since undone in memory, newest first, without writing anything.
 *
 * The walk reads the changes of the table (and its partitions) recorded
 * after a point in time, newest first, and each one's captured rows.  It
 * keeps, by key, every row a change touched: its version just after the
 * change being undone (from the table now, or from a newer change's undo)
 * and the version just before it, built from the captured before-values.
 * The rows of one change are all undone against the state after that
 * change, so that a statement that swapped keys undoes right; a version is
 * settled when the next change touches its key.  After the walk the
 * entries hold the rows as they were; every other row of the table now
 * is as it was.
 *
 * Values are kept by attnum of the table now (dropped attnums included),
 * each with the type it had: before an ALTER COLUMN TYPE a column held
 * another type.  A change recorded on a partition is mapped to the
 * table's attnums by column name.  A column dropped and later added again
 * under its name (as restore does) is followed across.  The columns
 * themselves are followed too: which existed, with which type and name,
 * as the walk goes back.
 *
 * Memory: one version per key touched since the point in time, in the
 * walk's memory context.
 *
 * Strict (guard.as_of): any change that leaves the old rows unknowable is
 * an ERROR naming its change set: expired captures, a capture bypass, a
 * partition attached or detached, another key, a row the records do not
 * show.  Otherwise (guard.history) those are walked past.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/tupconvert.h"
#include "catalog/pg_inherits.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/nodeModifyTable.h"
#include "miscadmin.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "guard.h"
#include "past.h"

/* the key of a row, as bytes to hash and compare */
typedef struct PastKey
{
	uint32		len;
	const char *data;			/* the key's values, normalized */
} PastKey;

/* the versions of the row of one key that the walk touched */
typedef struct PastEntry
{
	PastKey		key;
	bool		cur_known;		/* cur is the row after the change undone */
	GuardPastVersion *cur;		/* ... NULL: no such row then */
	int64		next_change;	/* the change whose undo set next, or 0 */
	GuardPastVersion *next;		/* the row before that change, NULL: none */
} PastEntry;

/* a partition's rows, as rows of the table */
typedef struct PastLeaf
{
	Oid			relid;
	TupleConversionMap *map;	/* NULL: same layout */
	TupleTableSlot *slot;		/* of the table */
} PastLeaf;

/*
 * Hash of a PastKey: its bytes.
 */
static uint32
past_key_hash(const void *key, Size keysize)
{
	const PastKey *k = (const PastKey *) key;

	return hash_bytes((const unsigned char *) k->data, k->len);
}

/*
 * Match of two PastKeys: 0 when the same bytes.
 */
static int
past_key_match(const void *key1, const void *key2, Size keysize)
{
	const PastKey *a = (const PastKey *) key1;
	const PastKey *b = (const PastKey *) key2;

	if (a->len != b->len)
		return 1;
	return memcmp(a->data, b->data, a->len);
}

/*
 * Begin reading the past of "rel" (a table, or a partitioned table with its
 * partitions), locked by the caller.  The walk reads with the active
 * snapshot, as the caller's statement does.
 */
GuardPast *
guard_past_begin(Relation rel, bool strict)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "guard past rows",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	GuardPast  *p = palloc0(sizeof(GuardPast));
	TupleDesc	desc = RelationGetDescr(rel);
	HASHCTL		ctl;
	GuardChange layout;

	p->cxt = cxt;
	p->rel = rel;
	p->relid = RelationGetRelid(rel);
	p->strict = strict;
	p->natts = desc->natts;
	p->snapshot = RegisterSnapshot(GetActiveSnapshot());
	p->relname = pstrdup(RelationGetRelationName(rel));
	p->cols = palloc0(sizeof(GuardPastColumn) * Max(p->natts, 1));
	for (int i = 0; i < p->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		p->cols[i].exists = !att->attisdropped;
		p->cols[i].type = att->attisdropped ? InvalidOid : att->atttypid;
		p->cols[i].name = att->attisdropped ? NULL : pstrdup(NameStr(att->attname));
	}
	p->nkeys = guard_key_attnums(rel, p->keys);
	if (p->nkeys == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" has no primary key or replica identity index",
						RelationGetRelationName(rel)),
				 errdetail("guard follows the rows of a table by their key.")));
	guard_change_from_relation(rel, &layout);
	if (!guard_keyscan_begin(&p->ks, rel, &layout))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" has no usable key",
						RelationGetRelationName(rel))));

	ctl.keysize = sizeof(PastKey);
	ctl.entrysize = sizeof(PastEntry);
	ctl.hash = past_key_hash;
	ctl.match = past_key_match;
	ctl.hcxt = cxt;
	p->entries = hash_create("guard past rows", 1024, &ctl,
							 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	p->relids = find_all_inheritors(p->relid, AccessShareLock, NULL);

	if (desc->constr && desc->constr->has_generated_stored)
	{
		p->estate = CreateExecutorState();
		p->rri = makeNode(ResultRelInfo);
		InitResultRelInfo(p->rri, rel, 1, NULL, 0);
		p->genslot = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);
	}
	MemoryContextSwitchTo(old);
	return p;
}

/*
 * A value to keep: a copy in the walk's memory, TOAST pointers followed.
 */
static Datum
keep_value(Datum value, Oid type)
{
	int16		typlen;
	bool		typbyval;

	get_typlenbyval(type, &typlen, &typbyval);
	if (typlen == -1 && VARATT_IS_EXTERNAL(DatumGetPointer(value)))
		return PointerGetDatum(detoast_external_attr((struct varlena *) DatumGetPointer(value)));
	return datumCopy(value, typbyval, typlen);
}

/*
 * A new version with every column NULL, of the types the columns have at
 * this point of the walk.
 */
static GuardPastVersion *
version_new(GuardPast *p)
{
	GuardPastVersion *v = MemoryContextAlloc(p->cxt, sizeof(GuardPastVersion));

	v->values = MemoryContextAllocZero(p->cxt, sizeof(Datum) * Max(p->natts, 1));
	v->nulls = MemoryContextAlloc(p->cxt, sizeof(bool) * Max(p->natts, 1));
	v->types = MemoryContextAlloc(p->cxt, sizeof(Oid) * Max(p->natts, 1));
	for (int i = 0; i < p->natts; i++)
	{
		v->nulls[i] = true;
		v->types[i] = p->cols[i].type;
	}
	return v;
}

/*
 * Set column i of a version (a copy of "value" is kept).
 */
static void
version_set(GuardPast *p, GuardPastVersion *v, int i, Datum value, bool isnull, Oid type)
{
	MemoryContext old = MemoryContextSwitchTo(p->cxt);

	if (!v->nulls[i] && OidIsValid(v->types[i]) && !get_typbyval(v->types[i]))
		pfree(DatumGetPointer(v->values[i]));
	v->nulls[i] = isnull || !OidIsValid(type);
	v->values[i] = v->nulls[i] ? (Datum) 0 : keep_value(value, type);
	v->types[i] = type;
	MemoryContextSwitchTo(old);
}

/*
 * A deep copy of a version.
 */
static GuardPastVersion *
version_copy(GuardPast *p, const GuardPastVersion *from)
{
	GuardPastVersion *v = version_new(p);

	for (int i = 0; i < p->natts; i++)
		version_set(p, v, i, from->values[i], from->nulls[i], from->types[i]);
	return v;
}

/*
 * Free a version and its values.
 */
static void
version_free(GuardPastVersion *v, int natts)
{
	if (v == NULL)
		return;
	for (int i = 0; i < natts; i++)
	{
		if (!v->nulls[i] && OidIsValid(v->types[i]) && !get_typbyval(v->types[i]))
			pfree(DatumGetPointer(v->values[i]));
	}
	pfree(v->values);
	pfree(v->nulls);
	pfree(v->types);
	pfree(v);
}

/*
 * Recompute the stored generated columns of a version built from captures
 * (capture keeps none), when its columns have the types of the table now.
 */
static void
version_generate(GuardPast *p, GuardPastVersion *v)
{
	TupleDesc	desc = RelationGetDescr(p->rel);
	TupleTableSlot *slot = p->genslot;

	if (p->rri == NULL)
		return;
	for (int i = 0; i < p->natts; i++)
	{
		if (!TupleDescAttr(desc, i)->attisdropped && !v->nulls[i] &&
			v->types[i] != TupleDescAttr(desc, i)->atttypid)
			return;
	}
	ExecClearTuple(slot);
	for (int i = 0; i < p->natts; i++)
	{
		bool		dropped = TupleDescAttr(desc, i)->attisdropped;

		slot->tts_values[i] = v->values[i];
		slot->tts_isnull[i] = dropped || v->nulls[i];
	}
	ExecStoreVirtualTuple(slot);
	ExecComputeStoredGenerated(p->rri, p->estate, slot, CMD_INSERT);
	slot_getallattrs(slot);
	for (int i = 0; i < p->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attgenerated == ATTRIBUTE_GENERATED_STORED)
			version_set(p, v, i, slot->tts_values[i], slot->tts_isnull[i], att->atttypid);
	}
	ResetPerTupleExprContext(p->estate);
}

/*
 * The key values as bytes to hash and compare: each value as its type
 * stores it, uncompressed, after its length.
 */
static PastKey
key_of(GuardPast *p, const Datum *keyvalues, StringInfo buf)
{
	PastKey		k;

	resetStringInfo(buf);
	for (int i = 0; i < p->nkeys; i++)
	{
		Oid			type = TupleDescAttr(RelationGetDescr(p->rel), p->keys[i] - 1)->atttypid;
		int16		typlen;
		bool		typbyval;
		const char *bytes;
		uint32		len;
		union
		{
			Datum		d;
			char		c[sizeof(Datum)];
		}			tmp;

		get_typlenbyval(type, &typlen, &typbyval);
		if (typbyval)
		{
			store_att_byval(tmp.c, keyvalues[i], typlen);
			bytes = tmp.c;
			len = typlen;
		}
		else if (typlen > 0)
		{
			bytes = DatumGetPointer(keyvalues[i]);
			len = typlen;
		}
		else if (typlen == -2)
		{
			bytes = DatumGetCString(keyvalues[i]);
			len = strlen(bytes);
		}
		else
		{
			struct varlena *v = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(keyvalues[i]));

			bytes = VARDATA_ANY(v);
			len = VARSIZE_ANY_EXHDR(v);
		}
		appendBinaryStringInfo(buf, (const char *) &len, sizeof(len));
		appendBinaryStringInfo(buf, bytes, len);
	}
	k.len = buf->len;
	k.data = buf->data;
	return k;
}

/*
 * The entry of a key, created if "create" (else NULL when there is none).
 */
static PastEntry *
entry_of(GuardPast *p, const Datum *keyvalues, bool create)
{
	StringInfoData buf;
	PastKey		k;
	PastEntry  *e;
	bool		found;

	initStringInfo(&buf);
	k = key_of(p, keyvalues, &buf);
	e = hash_search(p->entries, &k, HASH_FIND, NULL);
	if (e == NULL && create)
	{
		k.data = MemoryContextAlloc(p->cxt, k.len);
		memcpy((char *) k.data, buf.data, k.len);
		e = hash_search(p->entries, &k, HASH_ENTER, &found);
		e->cur_known = false;
		e->cur = NULL;
		e->next_change = 0;
		e->next = NULL;
	}
	pfree(buf.data);
	return e;
}

/*
 * Settle an entry: a version set by the undo of a change other than the
 * one being undone now becomes its row after the change being undone.
 */
static void
entry_settle(GuardPast *p, PastEntry *e)
{
	if (e->next_change == 0 || e->next_change == p->undoing)
		return;
	version_free(e->cur, p->natts);
	e->cur = e->next;
	e->cur_known = true;
	e->next = NULL;
	e->next_change = 0;
}

/*
 * The live row of "keyvalues" in the table now, as a version, or NULL.
 */
static GuardPastVersion *
live_version(GuardPast *p, const Datum *keyvalues)
{
	TupleTableSlot *slot;
	GuardPastVersion *v;

	if (!guard_keyscan_fetch(&p->ks, (Datum *) keyvalues, p->snapshot))
		return NULL;
	slot = guard_past_leaf_slot(p, p->ks.found, p->ks.slot);
	v = version_new(p);
	for (int i = 0; i < p->natts; i++)
	{
		if (TupleDescAttr(RelationGetDescr(p->rel), i)->attisdropped)
			continue;
		version_set(p, v, i, slot->tts_values[i], slot->tts_isnull[i],
					TupleDescAttr(RelationGetDescr(p->rel), i)->atttypid);
	}
	return v;
}

/*
 * The row of a key just after the change being undone.
 */
static GuardPastVersion *
entry_cur(GuardPast *p, PastEntry *e, const Datum *keyvalues)
{
	entry_settle(p, e);
	if (!e->cur_known)
	{
		e->cur = live_version(p, keyvalues);
		e->cur_known = true;
	}
	return e->cur;
}

/*
 * Set the row of a key just before the change being undone ("v" NULL: no
 * row).  Within one change a row wins over no row: a statement that moved
 * one row off a key and another onto it left both.
 */
static void
entry_set_before(GuardPast *p, PastEntry *e, GuardPastVersion *v)
{
	entry_settle(p, e);
	if (e->next_change == p->undoing)
	{
		if (v == NULL)
			return;
		version_free(e->next, p->natts);
	}
	e->next = v;
	e->next_change = p->undoing;
}

/*
 * A partition's row in "slot" (of relation "leaf") as a row of the table,
 * in a slot of the table's layout.
 */
TupleTableSlot *
guard_past_leaf_slot(GuardPast *p, Relation leaf, TupleTableSlot *slot)
{
	ListCell   *lc;
	PastLeaf   *pl = NULL;

	slot_getallattrs(slot);
	if (leaf == p->rel)
		return slot;
	foreach(lc, p->leaves)
	{
		if (((PastLeaf *) lfirst(lc))->relid == RelationGetRelid(leaf))
			pl = lfirst(lc);
	}
	if (pl == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(p->cxt);

		pl = palloc0(sizeof(PastLeaf));
		pl->relid = RelationGetRelid(leaf);
		pl->map = convert_tuples_by_name(RelationGetDescr(leaf), RelationGetDescr(p->rel));
		pl->slot = MakeSingleTupleTableSlot(RelationGetDescr(p->rel), &TTSOpsVirtual);
		p->leaves = lappend(p->leaves, pl);
		MemoryContextSwitchTo(old);
	}
	if (pl->map == NULL)
	{
		ExecClearTuple(pl->slot);
		memcpy(pl->slot->tts_values, slot->tts_values, sizeof(Datum) * p->natts);
		memcpy(pl->slot->tts_isnull, slot->tts_isnull, sizeof(bool) * p->natts);
		return ExecStoreVirtualTuple(pl->slot);
	}
	return execute_attr_map_slot(pl->map->attrMap, slot, pl->slot);
}

/*
 * Undo one captured row of change "c" in memory, and hand it to "on_row".
 */
static void
undo_row(GuardPast *p, const GuardPastChange *c, const ShadowRow *row,
		 GuardPastOnRow on_row, void *arg)
{
	const GuardChange *rec = c->record;
	GuardPastRow pr;
	GuardPastVersion *after = NULL;
	GuardPastVersion *before = NULL;
	Datum	   *key_before = palloc(sizeof(Datum) * p->nkeys);
	PastEntry  *e;

	memset(&pr, 0, sizeof(pr));
	pr.op = row->op;
	pr.row = row;
	if (row->op != GUARD_OP_DELETE)
	{
		e = entry_of(p, row->keyvalues, true);
		after = entry_cur(p, e, row->keyvalues);
		if (after == NULL && p->strict)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the captures of table \"%s\" are incomplete", p->relname),
					 errdetail("Change " INT64_FORMAT " of change set " INT64_FORMAT " wrote a row that guard's later records do not show.",
							   c->change_id, c->changeset_id),
					 errhint("Writes made while guard.enabled was off are not captured.")));
		entry_set_before(p, e, NULL);
		pr.key_after = row->keyvalues;
	}
	if (row->op != GUARD_OP_INSERT)
	{
		before = (row->op == GUARD_OP_UPDATE && after) ? version_copy(p, after) : version_new(p);
		for (int i = 0; i < row->natts; i++)
		{
			if (row->captured[i] && c->map[i] >= 0)
				version_set(p, before, c->map[i], row->values[i], row->nulls[i],
							rec->atttypes[i]);
		}
		version_generate(p, before);
		for (int k = 0; k < p->nkeys; k++)
		{
			int			t = p->keys[k] - 1;

			key_before[k] = before->nulls[t] ? row->keyvalues[k] : before->values[t];
		}
		e = entry_of(p, key_before, true);
		entry_set_before(p, e, before);
		pr.key_before = key_before;
	}
	pr.before = before;
	pr.after = after;
	if (on_row)
		on_row(arg, c, &pr);
	pfree(key_before);
}

/*
 * Every row of the table as it was where the walk stopped, handed to
 * "emit" one by one: the rows the walk touched from its entries, every
 * other row from the table now.
 */
void
guard_past_rows(GuardPast *p, GuardPastOnVersion emit, void *arg)
{
	List	   *leaves = NIL;
	ListCell   *lc;
	HASH_SEQ_STATUS status;
	PastEntry  *e;
	Datum	   *keyvalues = palloc(sizeof(Datum) * p->nkeys);
	GuardPastVersion live;

	p->undoing = 0;
	if (p->rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
	{
		foreach(lc, p->relids)
		{
			if (get_rel_relkind(lfirst_oid(lc)) == RELKIND_RELATION)
				leaves = lappend_oid(leaves, lfirst_oid(lc));
		}
	}
	else
		leaves = list_make1_oid(p->relid);

	live.types = palloc(sizeof(Oid) * Max(p->natts, 1));
	for (int i = 0; i < p->natts; i++)
		live.types[i] = TupleDescAttr(RelationGetDescr(p->rel), i)->attisdropped ?
			InvalidOid : TupleDescAttr(RelationGetDescr(p->rel), i)->atttypid;
	foreach(lc, leaves)
	{
		Relation	leaf = lfirst_oid(lc) == p->relid ? p->rel :
			table_open(lfirst_oid(lc), AccessShareLock);
		TupleTableSlot *slot = table_slot_create(leaf, NULL);
		TableScanDesc scan = table_beginscan(leaf, p->snapshot, 0, NULL);

		while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
		{
			TupleTableSlot *row = guard_past_leaf_slot(p, leaf, slot);

			CHECK_FOR_INTERRUPTS();
			for (int k = 0; k < p->nkeys; k++)
				keyvalues[k] = row->tts_values[p->keys[k] - 1];
			if (entry_of(p, keyvalues, false) != NULL)
				continue;		/* touched since: from its entry */
			live.values = row->tts_values;
			live.nulls = row->tts_isnull;
			emit(arg, &live);
		}
		table_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
		if (leaf != p->rel)
			table_close(leaf, AccessShareLock);
	}

	hash_seq_init(&status, p->entries);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		entry_settle(p, e);
		if (e->cur_known && e->cur)
			emit(arg, e->cur);
	}
}

/*
 * The columns of the table as they were where the walk stopped, by attnum
 * of the table now.
 */
const GuardPastColumn *
guard_past_columns(GuardPast *p)
{
	return p->cols;
}

/*
 * End reading the past: release what guard_past_begin() took.
 */
void
guard_past_end(GuardPast *p)
{
	ListCell   *lc;

	foreach(lc, p->leaves)
		ExecDropSingleTupleTableSlot(((PastLeaf *) lfirst(lc))->slot);
	guard_keyscan_end(&p->ks);
	if (p->estate)
	{
		ExecDropSingleTupleTableSlot(p->genslot);
		FreeExecutorState(p->estate);
	}
	UnregisterSnapshot(p->snapshot);
	MemoryContextDelete(p->cxt);
}

/*
 * Refuse to follow rows captured under another key than the table's now
 * (called on a change's first row).
 */
static void
check_key(GuardPast *p, const GuardPastChange *c)
{
	const GuardChange *rec = c->record;
	bool		same = rec->nkeys == p->nkeys;

	for (int k = 0; same && k < p->nkeys; k++)
	{
		int			i = rec->keys[k] - 1;

		same = i >= 0 && i < rec->natts && c->map[i] == p->keys[k] - 1 &&
			rec->atttypes[i] == TupleDescAttr(RelationGetDescr(p->rel), p->keys[k] - 1)->atttypid;
	}
	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the key of table \"%s\" changed after change set " INT64_FORMAT,
						p->relname, c->changeset_id),
				 errdetail("Change " INT64_FORMAT " was captured under another key: guard follows rows by their key.",
						   c->change_id)));
}

/*
 * Undo the rows of change "c" in memory, handing each to "on_row".
 */
void
guard_past_undo_rows(GuardPast *p, GuardPastChange *c, GuardPastOnRow on_row, void *arg)
{
	const GuardChange *rec = c->record;
	ShadowReader *reader;
	ShadowRow	row;
	MemoryContext rowcxt = AllocSetContextCreate(CurrentMemoryContext,
												 "guard past row",
												 ALLOCSET_DEFAULT_SIZES);

	p->undoing = c->change_id;
	reader = shadow_open(c->change_id, rec->natts, rec->atttypes, rec->keys,
						 rec->nkeys, rec->inline_chunk);
	while (shadow_next(reader, &row))
	{
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (c->nrows++ == 0)
			check_key(p, c);
		old = MemoryContextSwitchTo(rowcxt);
		undo_row(p, c, &row, on_row, arg);
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
	}
	shadow_close(reader);
	MemoryContextDelete(rowcxt);
}
