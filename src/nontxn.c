/*-------------------------------------------------------------------------
 *
 * nontxn.c
 *	  What PostgreSQL keeps of a rolled-back transaction, saved before a
 *	  rehearsal and put back after it.
 *
 * Rolling back the rehearsal's subtransaction undoes its rows and catalog
 * rows, but not:
 *
 *	sequences		nextval() is not transactional.  guard's own id
 *					sequences are set back to their state before, each one
 *					only when no other session took a value from it since:
 *					it is locked against nextval() for a moment, and none of
 *					the ids handed out since is in a committed row of the
 *					table they go to.  The sequences of the database are
 *					not set back (a value another session took and will use
 *					would be handed out again); those the script advanced
 *					are named.
 *	pg_class		CREATE INDEX and ANALYZE write a table's statistics
 *	statistics		(relpages, reltuples, relallvisible, relhasindex) in
 *					place, outside the transaction; they would describe rows
 *					that were rolled back.  Those that changed are written
 *					back in place, as PostgreSQL wrote them.
 *
 * Calls catalog.c, spi.c and locks.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "guard.h"

/* guard's id sequences, with the table and index their values end up in */
typedef struct GuardSeq
{
	const char *seq;
	const char *table;
	const char *index;
} GuardSeq;

static const GuardSeq guard_seqs[] = {
	{"changeset_id_seq", "changeset", "changeset_pkey"},
	{"change_id_seq", "change", "change_pkey"},
	{"layout_id_seq", "layout", "layout_pkey"},
	{"violation_id_seq", "violation", "violation_pkey"},
};

#define N_GUARD_SEQS	lengthof(guard_seqs)

/* the statistics of one relation that PostgreSQL writes in place */
typedef struct RelStats
{
	Oid			relid;
	int32		relpages;
	float4		reltuples;
	int32		relallvisible;
	bool		relhasindex;
} RelStats;

struct GuardNonTxn
{
	MemoryContext cxt;
	int64		seq_last[N_GUARD_SEQS];
	bool		seq_called[N_GUARD_SEQS];
	List	   *seqs_locked;	/* names of the sequences nextval() locked */
	List	   *touched;		/* relations the rehearsal locked (oids) */
	HTAB	   *stats;			/* RelStats by relid */
	StringInfoData notes;		/* what could not be put back */
};

/* work done in a subtransaction that is always rolled back */
typedef void (*NonTxnWork) (GuardNonTxn *s);

/*
 * Run "work" in a subtransaction and roll it back: its locks go with it.
 * An error is raised again after the rollback.
 */
static void
in_rolled_back_subxact(GuardNonTxn *s, NonTxnWork work)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		work(s);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		edata = guard_subxact_abort(oldcxt, oldowner);
		ReThrowError(edata);
	}
	PG_END_TRY();
	guard_subxact_rollback(oldcxt, oldowner);
}

/*
 * The state of guard's id sequences, read as the extension owner.
 */
static void
guard_seqs_read(int64 *last, bool *called)
{
	GuardAsRole owner;

	guard_as_role_begin(&owner, InvalidOid);
	for (int i = 0; i < N_GUARD_SEQS; i++)
	{
		bool		isnull;

		guard_run_sql(psprintf("SELECT last_value, is_called FROM guard.%s", guard_seqs[i].seq),
					  0, NULL, NULL, NULL);
		last[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
		called[i] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 2, &isnull));
	}
	guard_as_role_end(&owner);
}

/*
 * The in-place statistics of every relation with storage or partitions,
 * into "into".
 */
static void
stats_read(HTAB *into)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT oid, relpages, reltuples, relallvisible, relhasindex"
					"  FROM pg_catalog.pg_class"
					" WHERE relkind IN ('r', 'i', 'm', 't', 'p', 'I')", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_class");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(tuple, desc, 1, &isnull));
		RelStats   *st = hash_search(into, &relid, HASH_ENTER, NULL);

		st->relpages = DatumGetInt32(SPI_getbinval(tuple, desc, 2, &isnull));
		st->reltuples = DatumGetFloat4(SPI_getbinval(tuple, desc, 3, &isnull));
		st->relallvisible = DatumGetInt32(SPI_getbinval(tuple, desc, 4, &isnull));
		st->relhasindex = DatumGetBool(SPI_getbinval(tuple, desc, 5, &isnull));
	}
	SPI_finish();
}

/*
 * A hash table of RelStats, in s->cxt.
 */
static HTAB *
stats_table(GuardNonTxn *s, const char *name)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(RelStats);
	ctl.hcxt = s->cxt;
	return hash_create(name, 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * Subtransaction work: what is saved before the rehearsal.
 */
static void
work_save(GuardNonTxn *s)
{
	guard_seqs_read(s->seq_last, s->seq_called);
	s->seqs_locked = guard_locks_on_sequences(s->cxt);
	stats_read(s->stats);
}

/*
 * Save what a rollback would not undo: call before the rehearsal.
 */
GuardNonTxn *
guard_nontxn_save(void)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "guard rehearsal saved state",
											  ALLOCSET_DEFAULT_SIZES);
	GuardNonTxn *s = MemoryContextAllocZero(cxt, sizeof(GuardNonTxn));

	s->cxt = cxt;
	s->stats = stats_table(s, "guard saved statistics");
	in_rolled_back_subxact(s, work_save);
	return s;
}

/*
 * Does guard's table "table" hold a committed row whose id (first column,
 * indexed by "index") is in (low, high]?  Read with a fresh snapshot, so
 * that sessions that took ids meanwhile and committed are seen whatever
 * the caller's isolation level.
 */
static bool
ids_used(const char *table, const char *index, int64 low, int64 high)
{
	Relation	rel = table_open(guard_relid(table), AccessShareLock);
	ScanKeyData keys[2];
	SysScanDesc scan;
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	bool		used;

	ScanKeyInit(&keys[0], 1, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(low));
	ScanKeyInit(&keys[1], 1, BTLessEqualStrategyNumber, F_INT8LE, Int64GetDatum(high));
	scan = systable_beginscan(rel, guard_relid(index), true, snapshot, 2, keys);
	used = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
	return used;
}

/*
 * Subtransaction work: set guard's id sequences back, each one only if no
 * other session took a value from it since.  Our lock against nextval()
 * (EXCLUSIVE, which nextval()'s ROW EXCLUSIVE waits for) is only tried:
 * if another transaction holds the sequence's lock, it took a value and
 * may still commit it.  A transaction that took one and ended committed
 * it (it is in guard's table) or gave it up for good.  The lock goes with
 * the subtransaction; setval() stays, as it is not transactional.
 */
static void
work_rewind(GuardNonTxn *s)
{
	int64		last[N_GUARD_SEQS];
	bool		called[N_GUARD_SEQS];

	guard_seqs_read(last, called);
	for (int i = 0; i < N_GUARD_SEQS; i++)
	{
		const GuardSeq *g = &guard_seqs[i];
		int64		low = s->seq_called[i] ? s->seq_last[i] : s->seq_last[i] - 1;
		GuardAsRole owner;
		Oid			types[3] = {REGCLASSOID, INT8OID, BOOLOID};
		Datum		values[3];

		if (last[i] == s->seq_last[i] && called[i] == s->seq_called[i])
			continue;
		if (!ConditionalLockRelationOid(guard_relid(g->seq), ExclusiveLock) ||
			ids_used(g->table, g->index, low, last[i]))
		{
			appendStringInfo(&s->notes, "%sguard.%s", s->notes.len ? ", " : "", g->seq);
			continue;
		}
		values[0] = ObjectIdGetDatum(guard_relid(g->seq));
		values[1] = Int64GetDatum(s->seq_last[i]);
		values[2] = BoolGetDatum(s->seq_called[i]);
		guard_as_role_begin(&owner, InvalidOid);
		guard_run_sql("SELECT pg_catalog.setval($1, $2, $3)", 3, types, values, NULL);
		guard_as_role_end(&owner);
	}
}

/*
 * Subtransaction work: read the statistics as they are now into a new
 * table, s->stats replaced by the relations whose statistics differ.
 */
static void
work_stats_changed(GuardNonTxn *s)
{
	HTAB	   *now = stats_table(s, "guard statistics now");
	HASH_SEQ_STATUS status;
	RelStats   *st;

	stats_read(now);
	hash_seq_init(&status, now);
	while ((st = hash_seq_search(&status)) != NULL)
	{
		RelStats   *before = hash_search(s->stats, &st->relid, HASH_FIND, NULL);

		/* only the rehearsal's: another session may have analyzed the rest */
		if (before == NULL || !list_member_oid(s->touched, st->relid) ||
			(before->relpages == st->relpages && before->reltuples == st->reltuples &&
			 before->relallvisible == st->relallvisible &&
			 before->relhasindex == st->relhasindex))
			hash_search(now, &st->relid, HASH_REMOVE, NULL);
		else
			*st = *before;
	}
	hash_destroy(s->stats);
	s->stats = now;
}

/*
 * Write the saved statistics back into pg_class in place, as CREATE INDEX
 * and ANALYZE wrote them (heap_inplace_update, with its invalidation, sent
 * when the caller's transaction commits).
 */
static void
stats_put_back(GuardNonTxn *s)
{
	HASH_SEQ_STATUS status;
	RelStats   *st;
	Relation	pg_class = NULL;

	hash_seq_init(&status, s->stats);
	while ((st = hash_seq_search(&status)) != NULL)
	{
		HeapTuple	tuple = SearchSysCacheCopy1(RELOID, ObjectIdGetDatum(st->relid));
		Form_pg_class form;

		if (!HeapTupleIsValid(tuple))
			continue;
		if (pg_class == NULL)
			pg_class = table_open(RelationRelationId, RowExclusiveLock);
		form = (Form_pg_class) GETSTRUCT(tuple);
		form->relpages = st->relpages;
		form->reltuples = st->reltuples;
		form->relallvisible = st->relallvisible;
		form->relhasindex = st->relhasindex;
		heap_inplace_update(pg_class, tuple);
		heap_freetuple(tuple);
	}
	if (pg_class)
		table_close(pg_class, RowExclusiveLock);
}

/*
 * Subtransaction work: the sequences the script advanced, into the notes.
 */
static void
work_seqs_advanced(GuardNonTxn *s)
{
	List	   *now = guard_locks_on_sequences(CurrentMemoryContext);
	ListCell   *lc;

	foreach(lc, now)
	{
		ListCell   *lc2;
		bool		before = false;

		foreach(lc2, s->seqs_locked)
			before |= strcmp(lfirst(lc), lfirst(lc2)) == 0;
		if (!before)
			appendStringInfo(&s->notes, "%s%s", s->notes.len ? ", " : "", (char *) lfirst(lc));
	}
}

/*
 * After the rehearsal was rolled back: put back what was saved, the
 * statistics of the relations in "touched" (those the rehearsal locked).
 * Returns what was left as it is, as sentences for the report, or NULL.
 */
char *
guard_nontxn_restore(GuardNonTxn *s, List *touched)
{
	StringInfoData msg;

	s->touched = touched;

	in_rolled_back_subxact(s, work_stats_changed);
	stats_put_back(s);

	initStringInfo(&msg);
	initStringInfo(&s->notes);
	in_rolled_back_subxact(s, work_rewind);
	if (s->notes.len)
		appendStringInfo(&msg, "guard's sequences used by another session meanwhile stay advanced: %s.",
						 s->notes.data);
	resetStringInfo(&s->notes);
	in_rolled_back_subxact(s, work_seqs_advanced);
	if (s->notes.len)
		appendStringInfo(&msg, "%sSequences advanced, as after any rollback: %s.",
						 msg.len ? " " : "", s->notes.data);
	MemoryContextDelete(s->cxt);
	return msg.len ? msg.data : NULL;
}
