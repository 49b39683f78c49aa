/*-------------------------------------------------------------------------
 *
 * later.c
 *	  The later-writes index of a restore: which changes recorded after the
 *	  change being undone wrote which key, and which of its columns.
 *
 * When an undone UPDATE finds its row no longer as the change left it, row
 * undo (undo.c) asks this index which columns a later change wrote, so that
 * only those are conflicts, and which change sets wrote them, to name them
 * in the error.  The index is built on first need, from the snapshots of
 * the later changes to the same table (its partitions and partition
 * ancestors included), leaving out the change sets being restored together.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/partition.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "guard.h"

/* at most this many change sets are kept per key, for error details */
#define MAX_CHANGESETS_PER_KEY	3

/* what later changes wrote to one key */
struct GuardLaterEntry
{
	char		key[GUARD_LATER_KEYLEN];	/* hash key: the key as text */
	List	   *columns;		/* column names written */
	List	   *changesets;		/* change set ids (int64 *) that wrote them */
};

struct GuardLaterWrites
{
	HTAB	   *keys;			/* GuardLaterEntry by key text */
};

/*
 * The relation and all its partitions and partition ancestors, as an oid[]:
 * a later write to the same rows may have been recorded on any of them.
 */
Datum
guard_related_relids(Oid relid)
{
	List	   *rels = find_all_inheritors(relid, NoLock, NULL);
	List	   *ancestors = get_partition_ancestors(relid);
	ListCell   *lc;
	Datum	   *elems;
	int			n = 0;

	rels = list_concat(rels, ancestors);
	elems = palloc(sizeof(Datum) * list_length(rels));
	foreach(lc, rels)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	return PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid),
										   true, TYPALIGN_INT));
}

/*
 * The ids of the changes recorded after "change" on the same table, outside
 * the change sets "exclude" (int8[]), oldest first, allocated in the
 * current memory context.
 */
static List *
later_change_ids(const GuardChange *change, Datum exclude)
{
	GuardAsRole owner;
	Oid			types[3] = {OIDARRAYOID, INT8OID, INT8ARRAYOID};
	Datum		values[3];
	List	   *ids = NIL;
	MemoryContext outer = CurrentMemoryContext;

	values[0] = guard_related_relids(change->relid);
	values[1] = Int64GetDatum(change->change_id);
	values[2] = exclude;
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT change_id FROM guard.change"
				  " WHERE relid = ANY ($1) AND change_id > $2"
				  " AND changeset_id <> ALL ($3) ORDER BY change_id",
				  3, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i],
									  SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext old = MemoryContextSwitchTo(outer);

		ids = lappend(ids, palloc(sizeof(int64)));
		*(int64 *) llast(ids) = DatumGetInt64(d);
		MemoryContextSwitchTo(old);
	}
	guard_as_role_end(&owner);
	return ids;
}

/*
 * Add what one decoded row of a later change wrote to its key's entry: the
 * columns it captured (all of them for an INSERT) and, up to a few, its
 * change set.
 */
static void
later_add_row(GuardLaterEntry *entry, const GuardChange *later_change,
			  const ShadowRow *row)
{
	for (int i = 0; i < row->natts; i++)
	{
		if ((row->captured[i] || row->op == GUARD_OP_INSERT) &&
			later_change->attnames[i] != NULL)
			entry->columns = lappend(entry->columns,
									 later_change->attnames[i]);
	}
	if (list_length(entry->changesets) < MAX_CHANGESETS_PER_KEY &&
		!list_member_ptr(entry->changesets, NULL))
	{
		bool		have = false;
		ListCell   *c;

		foreach(c, entry->changesets)
			have |= (*(int64 *) lfirst(c) == later_change->changeset_id);
		if (!have)
		{
			int64	   *id = palloc(sizeof(int64));

			*id = later_change->changeset_id;
			entry->changesets = lappend(entry->changesets, id);
		}
	}
}

/*
 * Read what the changes recorded after "change" (outside the change sets
 * "exclude" being restored) wrote to the same table, by key.  The index and
 * everything it points to live in the current memory context.
 */
GuardLaterWrites *
guard_later_writes_build(const GuardChange *change, Datum exclude)
{
	HASHCTL		ctl;
	GuardLaterWrites *later = palloc(sizeof(GuardLaterWrites));
	List	   *ids;
	ListCell   *lc;
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext rowcxt;

	ctl.keysize = sizeof(((GuardLaterEntry *) NULL)->key);
	ctl.entrysize = sizeof(GuardLaterEntry);
	ctl.hcxt = outer;
	later->keys = hash_create("guard later writes", 256, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	ids = later_change_ids(change, exclude);

	/* each row's key text is only needed until it is copied into the hash */
	rowcxt = AllocSetContextCreate(outer, "guard later writes row",
								   ALLOCSET_SMALL_SIZES);
	foreach(lc, ids)
	{
		GuardChange later_change;
		ShadowReader *reader;
		ShadowRow	row;

		if (!guard_change_read(*(int64 *) lfirst(lc), &later_change))
			continue;
		reader = shadow_open(later_change.change_id, later_change.natts,
							 later_change.atttypes, later_change.keys,
							 later_change.nkeys, later_change.inline_chunk);
		while (shadow_next(reader, &row))
		{
			char	   *key;
			GuardLaterEntry *entry;
			bool		found;
			MemoryContext old;

			MemoryContextReset(rowcxt);
			old = MemoryContextSwitchTo(rowcxt);
			key = guard_key_text(&later_change, row.keyvalues);
			MemoryContextSwitchTo(old);

			/*
			 * A key text longer than the hash key is cut to its length by
			 * dynahash, when hashed, compared and copied alike.
			 */
			entry = hash_search(later->keys, key, HASH_ENTER, &found);
			old = MemoryContextSwitchTo(outer);
			if (!found)
			{
				entry->columns = NIL;
				entry->changesets = NIL;
			}
			later_add_row(entry, &later_change, &row);
			MemoryContextSwitchTo(old);
		}
		shadow_close(reader);
	}
	MemoryContextDelete(rowcxt);
	return later;
}

/*
 * The entry of a key (as guard_key_text() writes it), or NULL if no later
 * change wrote it.  A key longer than GUARD_LATER_KEYLEN - 1 bytes matches
 * on its first GUARD_LATER_KEYLEN - 1 bytes.
 */
const GuardLaterEntry *
guard_later_find(GuardLaterWrites *later, const char *key)
{
	return hash_search(later->keys, key, HASH_FIND, NULL);
}

/*
 * Whether a later change wrote the column of the entry's key (entry may be
 * NULL: nothing wrote the key).
 */
bool
guard_later_wrote(const GuardLaterEntry *entry, const char *column)
{
	ListCell   *lc;

	if (entry == NULL)
		return false;
	foreach(lc, entry->columns)
	{
		if (strcmp((char *) lfirst(lc), column) == 0)
			return true;
	}
	return false;
}

/*
 * The (first few) change sets that wrote the entry's key, as a list of
 * int64 pointers owned by the index.
 */
List *
guard_later_changesets(const GuardLaterEntry *entry)
{
	return entry->changesets;
}
