/*-------------------------------------------------------------------------
 *
 * progress.c
 *	  guard.restore_progress(): what each running restore and dry run is
 *	  doing, kept in shared memory.
 *
 * One slot per backend, as PgBackendStatus feeds pg_stat_progress_*: the
 * backend running a restore is the only writer of its slot, and bumps a
 * change counter around each write (odd while it writes), so that readers
 * copy a consistent slot without a lock and the writer never waits.  A
 * restore reports which change it is undoing, its phase, and the rows done
 * of the phase's total, row by row.  Nothing is written to any table, so
 * the function also works on a hot standby, and a restore waiting on a row
 * lock still shows where it stands.
 *
 * The slots are reserved in shared memory when the library is preloaded
 * (shmem_request_hook, shmem_startup_hook); loaded any other way, guard
 * reports no progress and restore_progress() refuses to run, as all of
 * guard's functions do.  A slot is cleared when its restore ends, fails, or
 * its backend exits.
 *
 * The bottom layer, besides spi.c (for the rows of a change).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/backendid.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_restore_progress);
PG_FUNCTION_INFO_V1(guard_restore_tick);

/* one backend's restore */
typedef struct ProgressSlot
{
	uint32		changecount;	/* odd while the backend writes the slot */
	int			pid;			/* 0: no restore running */
	Oid			databaseid;
	Oid			roleid;			/* the role that called the restore */
	bool		dry_run;
	int64		changeset_id;	/* of the change being undone */
	int64		change_id;
	int			phase;			/* GuardPhase */
	int64		rows_done;
	int64		rows_total;		/* -1: not known */
	TimestampTz started_at;
} ProgressSlot;

static const char *const phase_names[GUARD_NPHASES] = {
	"starting",
	"reading the change",
	"reading later changes",
	"checking later writes",
	"checking moved keys",
	"writing rows",
	"undoing a schema change",
	"checking foreign keys",
	"verifying rows",
	"finishing",
};

static ProgressSlot *slots = NULL;	/* in shared memory, NumProgressSlots */
static ProgressSlot *my_slot = NULL;	/* this backend's, while it restores */
static bool exit_callback = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* a slot per backend id, auxiliary processes included, as pgstat has */
#define NumProgressSlots	(MaxBackends + NUM_AUXPROCTYPES)

/* write a slot: the changecount protocol of PGSTAT_BEGIN_WRITE_ACTIVITY */
#define BEGIN_WRITE(slot) \
	do { \
		START_CRIT_SECTION(); \
		(slot)->changecount++; \
		pg_write_barrier(); \
	} while (0)

#define END_WRITE(slot) \
	do { \
		pg_write_barrier(); \
		(slot)->changecount++; \
		Assert(((slot)->changecount & 1) == 0); \
		END_CRIT_SECTION(); \
	} while (0)

/*
 * shmem_request_hook: reserve the slots.
 */
static void
progress_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(mul_size(NumProgressSlots, sizeof(ProgressSlot)));
}

/*
 * shmem_startup_hook: find (or, first, create and clear) the slots.
 */
static void
progress_shmem_startup(void)
{
	bool		found;
	Size		size = mul_size(NumProgressSlots, sizeof(ProgressSlot));

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	slots = ShmemInitStruct("guard restore progress", size, &found);
	if (!found)
		memset(slots, 0, size);
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Called from _PG_init: when preloaded, ask for the shared memory of the
 * slots.
 */
void
guard_progress_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = progress_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = progress_shmem_startup;
}

/*
 * Clear this backend's slot.
 */
static void
progress_clear(void)
{
	if (my_slot == NULL)
		return;
	BEGIN_WRITE(my_slot);
	my_slot->pid = 0;
	END_WRITE(my_slot);
	my_slot = NULL;
}

/*
 * on_shmem_exit: a backend that exits in the middle of a restore (FATAL)
 * leaves no slot behind.
 */
static void
progress_exit(int code, Datum arg)
{
	progress_clear();
}

/*
 * A restore (or dry run) begins in this backend: take its slot.
 */
void
guard_progress_begin(bool dry_run)
{
	if (slots == NULL || MyBackendId == InvalidBackendId ||
		MyBackendId > NumProgressSlots)
		return;
	if (!exit_callback)
	{
		before_shmem_exit(progress_exit, (Datum) 0);
		exit_callback = true;
	}
	my_slot = &slots[MyBackendId - 1];
	BEGIN_WRITE(my_slot);
	my_slot->pid = MyProcPid;
	my_slot->databaseid = MyDatabaseId;
	my_slot->roleid = GetUserId();
	my_slot->dry_run = dry_run;
	my_slot->changeset_id = 0;
	my_slot->change_id = 0;
	my_slot->phase = GUARD_PHASE_STARTING;
	my_slot->rows_done = 0;
	my_slot->rows_total = -1;
	my_slot->started_at = GetCurrentTimestamp();
	END_WRITE(my_slot);
}

/*
 * The restore moves on to another change.
 */
void
guard_progress_change(int64 changeset_id, int64 change_id)
{
	if (my_slot == NULL)
		return;
	BEGIN_WRITE(my_slot);
	my_slot->changeset_id = changeset_id;
	my_slot->change_id = change_id;
	END_WRITE(my_slot);
}

/*
 * The restore enters a phase of "rows_total" rows (-1: not known), none
 * done yet.
 */
void
guard_progress_phase(GuardPhase phase, int64 rows_total)
{
	if (my_slot == NULL)
		return;
	BEGIN_WRITE(my_slot);
	my_slot->phase = phase;
	my_slot->rows_done = 0;
	my_slot->rows_total = rows_total;
	END_WRITE(my_slot);
}

/*
 * One more row of the phase is done.  Cheap enough to call per row: two
 * increments and two compiler barriers (on x86) besides the store.
 */
void
guard_progress_tick(void)
{
	if (my_slot == NULL)
		return;
	BEGIN_WRITE(my_slot);
	/* a row checked again (EvalPlanQual) does not count twice */
	if (my_slot->rows_total < 0 || my_slot->rows_done < my_slot->rows_total)
		my_slot->rows_done++;
	END_WRITE(my_slot);
}

/*
 * The restore ended (or failed): free the slot.
 */
void
guard_progress_end(void)
{
	progress_clear();
}

/*
 * The rows a change captured (inline in its record, and in its chunks),
 * for the total of the phase that reads them.
 */
int64
guard_change_nrows(int64 change_id)
{
	GuardAsRole owner;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	int64		n = -1;

	values[0] = Int64GetDatum(change_id);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT (coalesce(c.nrows, 0) + coalesce((SELECT pg_catalog.sum(s.nrows)"
				  "  FROM guard.snapshot s WHERE s.change_id = c.change_id), 0))::pg_catalog.int8"
				  " FROM guard.change c WHERE c.change_id = $1",
				  1, types, values, NULL);
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &isnull);

		if (!isnull)
			n = DatumGetInt64(d);
	}
	guard_as_role_end(&owner);
	return n;
}

/*
 * Copy a slot consistently: retry while its backend is writing it.
 */
static void
progress_read(volatile ProgressSlot *slot, ProgressSlot *copy)
{
	for (;;)
	{
		uint32		before = slot->changecount;

		pg_read_barrier();
		memcpy(copy, (const ProgressSlot *) slot, sizeof(ProgressSlot));
		pg_read_barrier();
		if (before == slot->changecount && (before & 1) == 0)
			break;
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * guard.restore_progress(): one row per restore or dry run running in this
 * database that the caller may see: its own role's (or a role it has the
 * privileges of), or all of them for guard_admin.
 */
Datum
guard_restore_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo;
	Oid			admin = get_role_oid("guard_admin", true);
	bool		all;

	guard_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	if (slots == NULL)
		return (Datum) 0;
	all = OidIsValid(admin) && has_privs_of_role(GetUserId(), admin);
	for (int i = 0; i < NumProgressSlots; i++)
	{
		ProgressSlot s;
		Datum		values[8];
		bool		nulls[8] = {false, false, false, false, false, false, false, false};

		if (slots[i].pid == 0)
			continue;
		progress_read(&slots[i], &s);
		if (s.pid == 0 || s.databaseid != MyDatabaseId)
			continue;
		if (!all && !has_privs_of_role(GetUserId(), s.roleid))
			continue;
		values[0] = Int32GetDatum(s.pid);
		values[1] = Int64GetDatum(s.changeset_id);
		nulls[1] = (s.changeset_id == 0);
		values[2] = CStringGetTextDatum(phase_names[s.phase]);
		values[3] = Int64GetDatum(s.rows_done);
		values[4] = Int64GetDatum(s.rows_total);
		nulls[4] = (s.rows_total < 0);
		values[5] = TimestampTzGetDatum(s.started_at);
		values[6] = Int64GetDatum(s.change_id);
		nulls[6] = (s.change_id == 0);
		values[7] = BoolGetDatum(s.dry_run);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * guard._restore_tick(): true, and one more row done.  The statements that
 * write a restore's rows back call it for each row they reach, so that the
 * rows done advance while a single set-based statement runs.
 */
Datum
guard_restore_tick(PG_FUNCTION_ARGS)
{
	guard_progress_tick();
	PG_RETURN_BOOL(true);
}
