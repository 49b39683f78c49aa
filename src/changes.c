/*-------------------------------------------------------------------------
 *
 * changes.c
 *	  Change sets and change records.
 *
 * All changes of one top-level transaction form one change set; each
 * statement that changed a protected table is one change.  Both records are
 * written with heap_insert in the writing transaction itself, so they
 * commit or roll back with the change.  Which change set and change the
 * current transaction is filling is kept in backend memory, tagged with
 * the subtransaction that created it and forgotten when that aborts.  The
 * statement a change record names is the one hooks.c sets with
 * guard_set_statement() while it finishes; the layout it names is
 * layout.c's.
 *
 * Each change also records the label in force when it was made
 * (label_state.c); guard.label() sets one for the rest of its transaction.
 *
 * A dry run (a restore rolled back, the drill) records its changes like
 * the real call, but under provisional ids that no sequence hands out:
 * nothing it records is kept, so it must not use up the ids of the changes
 * that will be.  Provisional ids are above every id the sequences give,
 * so that they sort as the newest changes as the real ones would, and
 * each backend has its own range of them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "parser/scansup.h"
#include "tcop/tcopprot.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_label);

/* longest statement text kept in a change record */
#define MAX_STATEMENT_LEN	65536

/* longest statement text quoted in a message, in characters */
#define BRIEF_STATEMENT_LEN	120
StaticAssertDecl(BRIEF_STATEMENT_LEN * MAX_MULTIBYTE_CHAR_LEN + 4 <= GUARD_STATEMENT_BRIEF_SIZE,
				 "GUARD_STATEMENT_BRIEF_SIZE holds a brief statement");

/* provisional ids: this and above, by backend, see guard_changes_provisional() */
#define PROVISIONAL_BASE	(INT64CONST(1) << 62)

/* the statement finishing now (set by hooks.c), or NULL when unknown */
static const GuardStatement *current_statement = NULL;

/* the change set of the current transaction, 0 if none yet */
static int64 cur_changeset = 0;
static SubTransactionId cur_changeset_subid = InvalidSubTransactionId;

/* the change most recently begun, reused by the same statement's triggers */
static struct
{
	int64		change_id;
	CommandId	cid;
	Oid			relid;
	SubTransactionId subid;
	int32		next_chunk;
} last_change;

/* the dry run's subtransaction, while its ids are provisional */
static SubTransactionId provisional_subid = InvalidSubTransactionId;
static uint32 provisional_last = 0;

/*
 * Forget everything at the end of the transaction.
 */
static void
changes_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
			cur_changeset = 0;
			cur_changeset_subid = InvalidSubTransactionId;
			memset(&last_change, 0, sizeof(last_change));
			provisional_subid = InvalidSubTransactionId;
			break;
		default:
			break;
	}
}

/*
 * A subtransaction that created the change set or change aborted: its rows
 * are gone, so forget them.  One that committed hands them to its parent.
 */
static void
changes_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		if (cur_changeset_subid == mySubid)
		{
			cur_changeset = 0;
			cur_changeset_subid = InvalidSubTransactionId;
		}
		if (last_change.subid == mySubid)
			memset(&last_change, 0, sizeof(last_change));
		if (provisional_subid == mySubid)
			provisional_subid = InvalidSubTransactionId;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		if (cur_changeset_subid == mySubid)
			cur_changeset_subid = parentSubid;
		if (last_change.subid == mySubid)
			last_change.subid = parentSubid;
		if (provisional_subid == mySubid)
			provisional_subid = parentSubid;
	}
}

/*
 * Called from _PG_init: forget the current change set and change when a
 * transaction or subtransaction ends.
 */
void
guard_changes_init(void)
{
	RegisterXactCallback(changes_xact_callback, NULL);
	RegisterSubXactCallback(changes_subxact_callback, NULL);
	guard_label_state_init();
}

/*
 * The changes and change sets recorded from now until the current
 * subtransaction ends get provisional ids: a dry run calls this in the
 * subtransaction it rolls back.
 */
void
guard_changes_provisional(void)
{
	provisional_subid = GetCurrentSubTransactionId();
}

/*
 * Are the ids handed out now provisional (a dry run)?
 */
bool
guard_changes_are_provisional(void)
{
	return provisional_subid != InvalidSubTransactionId;
}

/*
 * Is "id" a provisional id, one that no kept record will ever have?
 */
bool
guard_change_id_provisional(int64 id)
{
	return id >= PROVISIONAL_BASE;
}

/*
 * A new id from guard's sequence "seq", or a provisional one in a dry run:
 * this backend's range, above every id the sequences give.
 */
static int64
next_id(const char *seq)
{
	if (provisional_subid == InvalidSubTransactionId)
		return nextval_internal(guard_relid(seq), false);
	provisional_last++;
	return PROVISIONAL_BASE + ((int64) MyBackendId << 32) + provisional_last;
}

/*
 * Names a change record repeats on every statement, cached so that a
 * one-row statement does no syscache lookup and no keyword scan of
 * quote_identifier() for them: the current role's name, and the quoted
 * qualified names of the last few relations written to.  A relation's
 * entry is checked against its relcache entry (relid, schema oid and name:
 * RENAME and SET SCHEMA change them); a schema or role rename, which sends
 * no relcache invalidation, empties both caches through syscache callbacks.
 */
#define QUALNAME_CACHE_SIZE 8

typedef struct QualNameEntry
{
	Oid			relid;			/* InvalidOid: free */
	Oid			nspid;
	NameData	relname;
	char	   *qualname;		/* in CacheMemoryContext */
} QualNameEntry;

static QualNameEntry qualname_cache[QUALNAME_CACHE_SIZE];
static int	qualname_next = 0;	/* the entry to replace next */
static Oid	role_cached = InvalidOid;
static NameData role_cached_name;
static bool name_callbacks_registered = false;

/*
 * Syscache callback (pg_namespace, pg_authid): a schema or role changed,
 * or the caches were reset.  Forget the role's name on either, and the
 * relations' qualified names on a schema's change.
 */
static void
names_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	role_cached = InvalidOid;
	if (cacheid != NAMESPACEOID)
		return;
	for (int i = 0; i < QUALNAME_CACHE_SIZE; i++)
	{
		if (qualname_cache[i].qualname)
			pfree(qualname_cache[i].qualname);
		qualname_cache[i].qualname = NULL;
		qualname_cache[i].relid = InvalidOid;
	}
}

/* register names_invalidate() once per backend, at the first use */
static void
names_register_callbacks(void)
{
	if (name_callbacks_registered)
		return;
	CacheRegisterSyscacheCallback(NAMESPACEOID, names_invalidate, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, names_invalidate, (Datum) 0);
	name_callbacks_registered = true;
}

/* the current user's name, as GetUserNameFromId(GetUserId()) */
static Datum
current_role_datum(void)
{
	Oid			role = GetUserId();

	names_register_callbacks();
	if (role != role_cached)
	{
		namestrcpy(&role_cached_name, GetUserNameFromId(role, false));
		role_cached = role;
	}
	return CStringGetTextDatum(NameStr(role_cached_name));
}

/* "rel"'s schema-qualified name, quoted, as a text Datum */
static Datum
qualified_name_datum(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	Oid			nspid = RelationGetNamespace(rel);
	QualNameEntry *e;
	char	   *nspname;

	names_register_callbacks();
	for (int i = 0; i < QUALNAME_CACHE_SIZE; i++)
	{
		e = &qualname_cache[i];
		if (e->relid == relid && e->nspid == nspid && e->qualname &&
			strcmp(NameStr(e->relname), RelationGetRelationName(rel)) == 0)
			return CStringGetTextDatum(e->qualname);
	}
	nspname = get_namespace_name(nspid);
	if (nspname == NULL)
		elog(ERROR, "cache lookup failed for namespace %u", nspid);
	e = &qualname_cache[qualname_next];
	qualname_next = (qualname_next + 1) % QUALNAME_CACHE_SIZE;
	if (e->qualname)
		pfree(e->qualname);
	e->relid = InvalidOid;		/* until it is whole */
	e->qualname = MemoryContextStrdup(CacheMemoryContext,
									  quote_qualified_identifier(nspname, RelationGetRelationName(rel)));
	e->nspid = nspid;
	namestrcpy(&e->relname, RelationGetRelationName(rel));
	e->relid = relid;
	return CStringGetTextDatum(e->qualname);
}

/*
 * When a change is made, as restore_to() and as_of() compare it: when its
 * statement began, or when its transaction did if that is later.  A
 * procedure or DO block that commits as it goes runs each transaction
 * under the statement time of its CALL, which would date every change of
 * an hour-long batch job to the job's first second; its transactions' own
 * start times advance.
 */
static TimestampTz
change_timestamp(void)
{
	TimestampTz stmt = GetCurrentStatementStartTimestamp();
	TimestampTz xact = GetCurrentTransactionStartTimestamp();

	return Max(stmt, xact);
}

/*
 * Create the current transaction's change set.
 */
static int64
changeset_create(const char *label)
{
	Datum		values[Natts_guard_changeset];
	bool		nulls[Natts_guard_changeset] = {false, false, false, false, false, false, true};
	int64		id;

	id = next_id("changeset_id_seq");
	values[0] = Int64GetDatum(id);
	values[1] = FullTransactionIdGetDatum(GetTopFullTransactionId());
	values[2] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	if (label)
		values[3] = CStringGetTextDatum(label);
	else
		nulls[3] = true;
	values[4] = current_role_datum();
	if (application_name && application_name[0])
		values[5] = CStringGetTextDatum(application_name);
	else
		nulls[5] = true;
	guard_writer_insert("changeset", Natts_guard_changeset, values, nulls);

	cur_changeset = id;
	cur_changeset_subid = GetCurrentSubTransactionId();

	/* made while sqitch deploys a change: its registry will name it */
	guard_registry_link(id);
	return id;
}

/*
 * The current transaction's change set id; created on first use when
 * "create", else 0 if there is none.
 */
int64
guard_changeset_current(bool create)
{
	if (cur_changeset != 0 || !create)
		return cur_changeset;
	return changeset_create(NULL);
}

/*
 * Make "stmt" the statement whose AFTER triggers fire now, so that the
 * changes they record carry its text and command type; NULL when unknown.
 * Returns the one it replaces, for the caller to put back when the
 * statement ends (statements nest: a trigger's own statements finish
 * inside the outer one).  The executor and utility hooks call this.
 */
const GuardStatement *
guard_set_statement(const GuardStatement *stmt)
{
	const GuardStatement *prev = current_statement;

	current_statement = stmt;
	return prev;
}

/*
 * The statement text to record: the statement finishing now, or the whole
 * query string if guard does not know it.
 */
static Datum
statement_datum(bool *isnull)
{
	const GuardStatement *stmt = current_statement;
	const char *text = NULL;
	int			len = 0;

	if (stmt && stmt->text)
	{
		text = stmt->text;
		len = stmt->len;
	}
	else if (debug_query_string)
	{
		text = debug_query_string;
		len = strlen(text);
	}
	if (text == NULL)
	{
		*isnull = true;
		return (Datum) 0;
	}
	*isnull = false;
	if (len > MAX_STATEMENT_LEN)
		len = pg_mbcliplen(text, len, MAX_STATEMENT_LEN);
	return PointerGetDatum(cstring_to_text_with_len(text, len));
}

/*
 * The statement finishing now, for messages: its text on one line, cut
 * short past BRIEF_STATEMENT_LEN characters (less than
 * GUARD_STATEMENT_BRIEF_SIZE bytes); NULL when unknown.  Only the
 * statement hooks.c set: the whole query string may hold many.
 */
char *
guard_statement_brief(void)
{
	const GuardStatement *stmt = current_statement;
	StringInfoData buf;
	int			len;
	const char *p;
	const char *end;
	bool		space = false;

	if (stmt == NULL || stmt->text == NULL)
		return NULL;
	p = stmt->text;
	end = stmt->text + stmt->len;
	/* the comments before it, as a migration script has them, are not it */
	for (;;)
	{
		while (p < end && scanner_isspace(*p))
			p++;
		if (end - p >= 2 && p[0] == '-' && p[1] == '-')
		{
			while (p < end && *p != '\n')
				p++;
		}
		else if (end - p >= 2 && p[0] == '/' && p[1] == '*')
		{
			for (p += 2; p < end && !(end - p >= 2 && p[0] == '*' && p[1] == '/'); p++)
				;
			p = Min(p + 2, end);
		}
		else
			break;
	}
	initStringInfo(&buf);
	/* enough characters to cut at BRIEF_STATEMENT_LEN, whatever their width */
	for (; p < end && buf.len <= BRIEF_STATEMENT_LEN * MAX_MULTIBYTE_CHAR_LEN; p++)
	{
		if (scanner_isspace(*p))
			space = buf.len > 0;
		else
		{
			if (space)
				appendStringInfoChar(&buf, ' ');
			appendStringInfoChar(&buf, *p);
			space = false;
		}
	}
	/* a statement of a multi-statement string may end with its semicolon */
	while (buf.len > 0 && buf.data[buf.len - 1] == ';')
		buf.data[--buf.len] = '\0';
	if (buf.len == 0)
		return NULL;
	len = pg_mbcliplen(buf.data, buf.len, BRIEF_STATEMENT_LEN);
	if (len < buf.len)
	{
		buf.data[len] = '\0';
		buf.len = len;
		appendStringInfoString(&buf, "...");
	}
	return buf.data;
}

/*
 * The change record for the statement now finishing on "rel": the one its
 * other triggers began (MERGE and INSERT ... ON CONFLICT fire several), or
 * a new one of the given kind.
 */
int64
guard_change_for_statement(Relation rel, const char *kind, const char **final_kind)
{
	CommandId	cid = GetCurrentCommandId(false);
	const GuardStatement *stmt = current_statement;

	if (last_change.change_id != 0 && last_change.cid == cid &&
		last_change.relid == RelationGetRelid(rel) &&
		last_change.subid == GetCurrentSubTransactionId())
	{
		*final_kind = NULL;		/* its record exists */
		return last_change.change_id;
	}

	/*
	 * The trigger's event names the row operation.  MERGE, INSERT (whose ON
	 * CONFLICT DO UPDATE fires UPDATE events) and COPY are better named by
	 * the statement; an UPDATE or DELETE is not: a foreign key's ON DELETE
	 * SET NULL, run inside the user's DELETE, is an UPDATE of the child.
	 */
	if (stmt && stmt->cmd == CMD_MERGE)
		kind = "MERGE";
	else if (stmt && stmt->cmd == CMD_INSERT)
		kind = stmt->is_copy ? "COPY" : "INSERT";
	*final_kind = kind;
	return guard_change_reserve(rel);
}

/*
 * A new change id for "rel", made the current statement's change; its
 * record is written by guard_change_insert() (the capture trigger writes
 * it last, with the first chunk of the snapshot inline).  Its further
 * chunks are numbered from 1.
 */
int64
guard_change_reserve(Relation rel)
{
	int64		id = next_id("change_id_seq");

	last_change.change_id = id;
	last_change.cid = GetCurrentCommandId(false);
	last_change.relid = RelationGetRelid(rel);
	last_change.subid = GetCurrentSubTransactionId();
	last_change.next_chunk = 1;
	return id;
}

/*
 * Record a new change of "kind" to "rel" now (schema changes): its
 * snapshot, if any, follows in chunks numbered from 0.
 */
int64
guard_change_record(Relation rel, const char *kind, const char *detail)
{
	int64		id = guard_change_reserve(rel);

	guard_change_insert(rel, id, kind, detail, NULL, 0);
	last_change.next_chunk = 0;
	return id;
}

/*
 * Write the record of change "id" of "kind" to "rel", with its layout, for
 * schema changes what their undo needs ("detail", a JSON object, or NULL),
 * and the first chunk of its snapshot ("first", NULL if none).
 */
void
guard_change_insert(Relation rel, int64 id, const char *kind, const char *detail,
					bytea *first, int32 nrows)
{
	Datum		values[Natts_guard_change];
	bool		nulls[Natts_guard_change];

	memset(nulls, 0, sizeof(nulls));
	values[0] = Int64GetDatum(id);
	values[1] = Int64GetDatum(guard_changeset_current(true));
	values[2] = TimestampTzGetDatum(change_timestamp());
	values[3] = current_role_datum();
	if (application_name && application_name[0])
		values[4] = CStringGetTextDatum(application_name);
	else
		nulls[4] = true;
	values[5] = ObjectIdGetDatum(RelationGetRelid(rel));
	values[6] = qualified_name_datum(rel);
	values[7] = CStringGetTextDatum(kind);
	values[8] = statement_datum(&nulls[8]);
	values[9] = CStringGetTextDatum("active");

	/* the layout the snapshot is encoded in: names and types by attnum */
	values[Anum_change_layout - 1] = Int64GetDatum(guard_layout_id(rel));
	nulls[Anum_change_restored_by - 1] = true;
	if (detail)
		values[Anum_change_detail - 1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(detail));
	else
		nulls[Anum_change_detail - 1] = true;
	values[Anum_change_nrows - 1] = Int32GetDatum(nrows);
	nulls[Anum_change_nrows - 1] = (first == NULL);
	values[Anum_change_data - 1] = PointerGetDatum(first);
	nulls[Anum_change_data - 1] = (first == NULL);
	guard_label_in_force(DatumGetInt64(values[1]), values, nulls);
	guard_writer_insert("change", Natts_guard_change, values, nulls);
}

/*
 * The chunk counter of the change guard_change_for_statement() returned
 * last: the snapshots of one change number their chunks in sequence.
 */
int32 *
guard_change_chunk_counter(void)
{
	return &last_change.next_chunk;
}

/*
 * guard.label(text): name the current transaction's change set, creating
 * it if nothing was captured yet, and put the label in force for the rest
 * of the transaction; changes it made so far with no label take it too.
 * Returns the change set's id.
 */
Datum
guard_label(PG_FUNCTION_ARGS)
{
	char	   *label = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		id;

	guard_require_preload();
	if (IsInParallelMode())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("cannot label a change set during a parallel operation")));

	id = guard_changeset_current(false);
	if (id == 0)
		id = changeset_create(label);
	else
	{
		Relation	rel = guard_open("changeset", RowExclusiveLock, Natts_guard_changeset);
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	tuple;

		/* the row was written by this transaction: update it in place */
		CommandCounterIncrement();
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ,
					Int64GetDatum(id));
		scan = systable_beginscan(rel, guard_relid("changeset_pkey"), true,
								  GetLatestSnapshot(), 1, &key);
		tuple = systable_getnext(scan);
		if (HeapTupleIsValid(tuple))
		{
			Datum		values[Natts_guard_changeset];
			bool		nulls[Natts_guard_changeset] = {false};
			bool		replace[Natts_guard_changeset] = {false};
			HeapTuple	newtuple;

			values[Anum_changeset_label - 1] = CStringGetTextDatum(label);
			replace[Anum_changeset_label - 1] = true;
			newtuple = heap_modify_tuple(tuple, RelationGetDescr(rel),
										 values, nulls, replace);
			CatalogTupleUpdate(rel, &newtuple->t_self, newtuple);
		}
		systable_endscan(scan);
		table_close(rel, RowExclusiveLock);

	}
	guard_label_set_xact(label);
	CommandCounterIncrement();
	PG_RETURN_INT64(id);
}

/*
 * Read change record "change_id" into *change.  Returns false if there is
 * no such change.
 */
bool
guard_change_read(int64 change_id, GuardChange *change)
{
	Relation	rel = guard_open("change", AccessShareLock, Natts_guard_change);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ,
				Int64GetDatum(change_id));
	scan = systable_beginscan(rel, guard_relid("change_pkey"), true,
							  GetActiveSnapshot(), 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		Datum		values[Natts_guard_change];
		bool		nulls[Natts_guard_change];

		heap_deform_tuple(tuple, RelationGetDescr(rel), values, nulls);
		found = true;
		change->change_id = change_id;
		change->changeset_id = DatumGetInt64(values[1]);
		change->relid = DatumGetObjectId(values[Anum_change_relid - 1]);
		change->relation = TextDatumGetCString(values[Anum_change_relation - 1]);
		change->kind = TextDatumGetCString(values[Anum_change_kind - 1]);
		change->state = TextDatumGetCString(values[Anum_change_state - 1]);
		change->inline_chunk = nulls[Anum_change_data - 1] ? NULL :
			DatumGetByteaPCopy(values[Anum_change_data - 1]);
		change->detail = nulls[Anum_change_detail - 1] ? NULL :
			DatumGetCString(DirectFunctionCall1(jsonb_out, values[Anum_change_detail - 1]));
		change->label = nulls[Anum_change_label - 1] ? NULL :
			TextDatumGetCString(values[Anum_change_label - 1]);
		change->bookkeeping = nulls[Anum_change_bookkeeping - 1] ? NULL :
			DatumGetCString(DirectFunctionCall1(jsonb_out, values[Anum_change_bookkeeping - 1]));

		guard_layout_read(DatumGetInt64(values[Anum_change_layout - 1]), change);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * The statement text of a change, for messages ("" if unknown).
 */
char *
guard_change_statement(int64 change_id)
{
	GuardAsRole owner;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	char	   *text = NULL;

	values[0] = Int64GetDatum(change_id);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT statement FROM guard.change WHERE change_id = $1",
				  1, types, values, NULL);
	if (SPI_processed > 0)
		text = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	text = text ? MemoryContextStrdup(TopTransactionContext, text) : "";
	guard_as_role_end(&owner);
	return text;
}
