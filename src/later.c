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
 * Later changes of the change's own change set (when it is undone alone)
 * are kept apart from the others: they are not conflicts of it; nor are
 * the writes of a restore that undid an older change of the same change
 * set, which already put back the value from before the change set.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/partition.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
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
	char	   *key;			/* hash key: the whole key as text */
	List	   *columns[3];		/* column names written, by GUARD_LATER_* bit */
	List	   *changesets;		/* other change sets (int64 *) that wrote them */
};

struct GuardLaterWrites
{
	HTAB	   *keys;			/* GuardLaterEntry by key text */
};

/*
 * The hash of a key text, for the index whose hash key is a pointer to it:
 * keys of any length are told apart (a fixed-size string key would cut
 * long ones, and unrelated keys would share an entry).
 */
static uint32
later_key_hash(const void *key, Size keysize)
{
	const char *s = *(char *const *) key;

	return hash_bytes((const unsigned char *) s, strlen(s));
}

/*
 * Compare two key texts of the index (0: the same key).
 */
static int
later_key_match(const void *a, const void *b, Size keysize)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

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

/* one later change, and how it stands to the change being undone */
typedef struct LaterChange
{
	int64		change_id;
	int			how;			/* GUARD_LATER_* */
} LaterChange;

/*
 * The changes recorded after "change" on the same table, oldest first,
 * allocated in the current memory context: those outside the change sets
 * "exclude" (int8[]) being restored together (GUARD_LATER_OTHER, or
 * GUARD_LATER_SETTLED for a restore that undid an older change of the same
 * change set), and the later changes of the change's own change set that
 * are not among the changes "restoring" (int8[]) undone by the same
 * restore (GUARD_LATER_OWN).
 */
static List *
later_changes(const GuardChange *change, Datum exclude, Datum restoring)
{
	GuardAsRole owner;
	Oid			types[5] = {OIDARRAYOID, INT8OID, INT8ARRAYOID, INT8OID, INT8ARRAYOID};
	Datum		values[5];
	List	   *ids = NIL;
	MemoryContext outer = CurrentMemoryContext;

	values[0] = guard_related_relids(change->relid);
	values[1] = Int64GetDatum(change->change_id);
	values[2] = exclude;
	values[3] = Int64GetDatum(change->changeset_id);
	values[4] = restoring;
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT c.change_id, CASE WHEN c.changeset_id = $4 THEN " CppAsString2(GUARD_LATER_OWN)
				  "  WHEN EXISTS (SELECT FROM guard.change o WHERE o.restored_by = c.changeset_id"
				  "   AND o.changeset_id = $4 AND o.change_id < $2) THEN " CppAsString2(GUARD_LATER_SETTLED)
				  "  ELSE " CppAsString2(GUARD_LATER_OTHER) " END"
				  " FROM guard.change c"
				  " WHERE c.relid = ANY ($1) AND c.change_id > $2"
				  " AND (c.changeset_id <> ALL ($3)"
				  "  OR (c.changeset_id = $4 AND c.change_id <> ALL ($5)))"
				  " ORDER BY c.change_id",
				  5, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		HeapTuple	tuple = SPI_tuptable->vals[i];
		MemoryContext old = MemoryContextSwitchTo(outer);
		LaterChange *later = palloc(sizeof(LaterChange));

		later->change_id = DatumGetInt64(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 1, &isnull));
		later->how = DatumGetInt32(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 2, &isnull));
		ids = lappend(ids, later);
		MemoryContextSwitchTo(old);
	}
	guard_as_role_end(&owner);
	return ids;
}

/*
 * Add what one decoded row of a later change wrote to its key's entry: the
 * columns it captured (all of them for an INSERT), under how the change
 * stands to the one being undone, and, up to a few, its change set if it
 * is another one's.
 */
static void
later_add_row(GuardLaterEntry *entry, const GuardChange *later_change,
			  const ShadowRow *row, int how)
{
	int			list = (how == GUARD_LATER_OTHER) ? 0 : (how == GUARD_LATER_OWN) ? 1 : 2;

	for (int i = 0; i < row->natts; i++)
	{
		if ((row->captured[i] || row->op == GUARD_OP_INSERT) &&
			later_change->attnames[i] != NULL)
			entry->columns[list] = lappend(entry->columns[list],
										   later_change->attnames[i]);
	}
	if (how == GUARD_LATER_OTHER &&
		list_length(entry->changesets) < MAX_CHANGESETS_PER_KEY)
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
 * Read what the changes recorded after "change" wrote to the same table, by
 * key (see later_changes() for which ones).  The index and everything it
 * points to live in the current memory context.
 */
GuardLaterWrites *
guard_later_writes_build(const GuardChange *change, Datum exclude,
						 Datum restoring)
{
	HASHCTL		ctl;
	GuardLaterWrites *later = palloc(sizeof(GuardLaterWrites));
	List	   *ids;
	ListCell   *lc;
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext rowcxt;

	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(GuardLaterEntry);
	ctl.hash = later_key_hash;
	ctl.match = later_key_match;
	ctl.hcxt = outer;
	later->keys = hash_create("guard later writes", 256, &ctl,
							  HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);

	ids = later_changes(change, exclude, restoring);

	/* each row's key text is only needed until it is copied into the hash */
	rowcxt = AllocSetContextCreate(outer, "guard later writes row",
								   ALLOCSET_SMALL_SIZES);
	foreach(lc, ids)
	{
		LaterChange *lchange = lfirst(lc);
		GuardChange later_change;
		ShadowReader *reader;
		ShadowRow	row;

		if (!guard_change_read(lchange->change_id, &later_change))
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

			entry = hash_search(later->keys, &key, HASH_ENTER, &found);
			old = MemoryContextSwitchTo(outer);
			if (!found)
			{
				/* the hash copied the pointer: keep a copy of the text */
				memset(entry, 0, sizeof(GuardLaterEntry));
				entry->key = pstrdup(key);
			}
			later_add_row(entry, &later_change, &row, lchange->how);
			MemoryContextSwitchTo(old);
		}
		shadow_close(reader);
	}
	MemoryContextDelete(rowcxt);
	return later;
}

/*
 * The entry of a key (as guard_key_text() writes it), or NULL if no later
 * change wrote it.
 */
const GuardLaterEntry *
guard_later_find(GuardLaterWrites *later, const char *key)
{
	return hash_search(later->keys, &key, HASH_FIND, NULL);
}

/*
 * How later changes wrote the column of the entry's key: an OR of
 * GUARD_LATER_* bits, 0 if none did (entry may be NULL: nothing wrote the
 * key).
 */
int
guard_later_wrote(const GuardLaterEntry *entry, const char *column)
{
	int			how = 0;

	if (entry == NULL)
		return 0;
	for (int list = 0; list < 3; list++)
	{
		ListCell   *lc;

		foreach(lc, entry->columns[list])
		{
			if (strcmp((char *) lfirst(lc), column) == 0)
			{
				how |= (list == 0) ? GUARD_LATER_OTHER :
					(list == 1) ? GUARD_LATER_OWN : GUARD_LATER_SETTLED;
				break;
			}
		}
	}
	return how;
}

/*
 * How later changes wrote the entry's key, whatever the column: an OR of
 * GUARD_LATER_* bits (0 for a NULL entry).
 */
int
guard_later_how(const GuardLaterEntry *entry)
{
	int			how = 0;

	if (entry == NULL)
		return 0;
	if (entry->columns[0] != NIL)
		how |= GUARD_LATER_OTHER;
	if (entry->columns[1] != NIL)
		how |= GUARD_LATER_OWN;
	if (entry->columns[2] != NIL)
		how |= GUARD_LATER_SETTLED;
	return how;
}

/*
 * The (first few) other change sets that wrote the entry's key, as a list
 * of int64 pointers owned by the index.
 */
List *
guard_later_changesets(const GuardLaterEntry *entry)
{
	return entry->changesets;
}
