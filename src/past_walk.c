/*-------------------------------------------------------------------------
 *
 * past_walk.c
 *	  The changes of a table recorded after a point in time, newest first:
 *	  what each did to the table's columns, and its rows undone (past.c).
 *
 * Change records are read in batches through guard.change's primary key,
 * with the caller's snapshot, as the extension owner (guard's tables are
 * not readable by others; the callers check the rights on the table).
 * Each record's layout is mapped to the attnums of the table now.  Schema
 * changes move the columns back: ADD COLUMN (the column did not exist
 * before), DROP COLUMN and ALTER COLUMN TYPE (it existed, with the type its
 * captured values have), RENAME of a column (its old name).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "guard.h"
#include "past.h"

/* change records are read in batches of this many */
#define PAST_BATCH	500

/*
 * A field of a schema change's JSON detail, or NULL.
 */
static char *
detail_field(const GuardChange *rec, const char *name)
{
	LOCAL_FCINFO(fcinfo, 2);
	Datum		result;

	if (rec->detail == NULL)
		return NULL;
	InitFunctionCallInfoData(*fcinfo, NULL, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = DirectFunctionCall1(jsonb_in, CStringGetDatum(rec->detail));
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = CStringGetTextDatum(name);
	fcinfo->args[1].isnull = false;
	result = jsonb_object_field_text(fcinfo);
	if (fcinfo->isnull)
		return NULL;
	return TextDatumGetCString(result);
}

/*
 * The index of the live column named "name" in "desc", or -1.
 */
static int
live_column(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return i;
	}
	return -1;
}

/*
 * The name, in "desc" (the relation the record is of, now), of column i
 * of record "rec": its name now if it lives, else that of a column of the
 * same name added after the record (as restore adds a dropped column
 * back), else NULL.
 */
static const char *
name_now(TupleDesc desc, const GuardChange *rec, int i)
{
	int			j;

	if (i < desc->natts && !TupleDescAttr(desc, i)->attisdropped)
		return NameStr(TupleDescAttr(desc, i)->attname);
	j = live_column(desc, rec->attnames[i]);
	if (j >= 0 && (j >= rec->natts || rec->attnames[j] == NULL))
		return rec->attnames[i];
	return NULL;
}

/*
 * Map the columns of record "rec" to the attnums of the table now: by
 * attnum within the table itself (a column keeps it when renamed; one
 * dropped keeps it too), by name for a partition's record.
 */
static int *
record_map(GuardPast *p, const GuardChange *rec)
{
	int		   *map = palloc(sizeof(int) * Max(rec->natts, 1));
	TupleDesc	table = RelationGetDescr(p->rel);
	Relation	own = rec->relid == p->relid ? p->rel :
		try_relation_open(rec->relid, AccessShareLock);

	for (int i = 0; i < rec->natts; i++)
	{
		const char *now;

		map[i] = -1;
		if (rec->attnames[i] == NULL)
			continue;
		now = own ? name_now(RelationGetDescr(own), rec, i) : NULL;
		if (own == p->rel)
			map[i] = now ? live_column(table, now) : (i < p->natts ? i : -1);
		else
			map[i] = live_column(table, now ? now : rec->attnames[i]);
	}
	if (own && own != p->rel)
		relation_close(own, AccessShareLock);
	return map;
}

/*
 * Does an ALTER TABLE's text attach, detach or (un)inherit a table, so
 * that rows came or went without being written?
 */
static bool
moves_rows(const char *statement)
{
	char	   *lower;

	if (statement == NULL)
		return true;			/* unknown: assume the worst */
	lower = asc_tolower(statement, strlen(statement));
	return strstr(lower, "attach") != NULL || strstr(lower, "detach") != NULL ||
		strstr(lower, "inherit") != NULL;
}

/*
 * Refuse, when strict, a change after which the rows as they were cannot
 * be known.
 */
static void
check_knowable(GuardPast *p, const GuardPastChange *c)
{
	if (!p->strict)
		return;
	if (strcmp(c->kind, "CAPTURE BYPASS") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("rows of table \"%s\" may have been written without capture in change set " INT64_FORMAT,
						p->relname, c->changeset_id),
				 errdetail("A superuser bypassed guard's capture (change " INT64_FORMAT ").",
						   c->change_id)));
	if (strcmp(c->kind, "ALTER TABLE") == 0 && moves_rows(c->statement))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("rows of table \"%s\" came or went without capture in change set " INT64_FORMAT,
						p->relname, c->changeset_id),
				 errdetail("Change " INT64_FORMAT " attached, detached or inherited a table.",
						   c->change_id)));
}

/*
 * The column a schema change is about, as the table's attnum index (-1
 * when the table has no slot for it).  "rec" is the layout the change
 * recorded.
 */
static int
change_column(const GuardPastChange *c, const char *name)
{
	const GuardChange *rec = c->record;

	if (name == NULL)
		return -1;
	for (int i = 0; i < rec->natts; i++)
	{
		if (rec->attnames[i] && strcmp(rec->attnames[i], name) == 0)
			return c->map[i];
	}
	return -1;
}

/*
 * Move the columns back across a schema change: what they were before it.
 */
static void
undo_columns(GuardPast *p, const GuardPastChange *c)
{
	const GuardChange *rec = c->record;
	TupleDesc	desc = RelationGetDescr(p->rel);
	char	   *column = detail_field(rec, "column");
	int			t;

	if (strcmp(c->kind, "ADD COLUMN") == 0)
	{
		if ((t = change_column(c, column)) >= 0)
			p->cols[t].exists = false;
	}
	else if (strcmp(c->kind, "DROP COLUMN") == 0 ||
			 strcmp(c->kind, "ALTER COLUMN TYPE") == 0)
	{
		for (int i = 0; i < rec->natts; i++)
		{
			if (rec->attnames[i] == NULL || strcmp(rec->attnames[i], column) != 0 ||
				(t = c->map[i]) < 0)
				continue;
			p->cols[t].exists = true;
			p->cols[t].type = rec->atttypes[i];
			p->cols[t].name = MemoryContextStrdup(p->cxt, column);
			p->cols[t].retyped_by =
				(TupleDescAttr(desc, t)->attisdropped ||
				 TupleDescAttr(desc, t)->atttypid != rec->atttypes[i]) ? c->changeset_id : 0;
		}
	}
	else if (strcmp(c->kind, "RENAME") == 0)
	{
		char	   *what = detail_field(rec, "what");

		if (what && strcmp(what, "column") == 0 &&
			(t = change_column(c, detail_field(rec, "new"))) >= 0)
			p->cols[t].name = MemoryContextStrdup(p->cxt, detail_field(rec, "old"));
	}
}

/*
 * Does a change of this kind capture rows?  The others (ADD COLUMN,
 * RENAME, DROP TABLE, ...) lose nothing when they expire: their detail is
 * kept.
 */
static bool
has_rows(const char *kind)
{
	return strcmp(kind, "ADD COLUMN") != 0 && strcmp(kind, "RENAME") != 0 &&
		strcmp(kind, "ALTER TABLE") != 0 && strcmp(kind, "DROP TABLE") != 0 &&
		strcmp(kind, "CAPTURE BYPASS") != 0;
}

/*
 * A text column of an SPI row, or NULL.
 */
static char *
spi_text(HeapTuple tuple, TupleDesc desc, int col)
{
	return SPI_getvalue(tuple, desc, col);
}

/*
 * The next batch of changes to walk (newest first), recorded after "since"
 * and older than change "before_id", allocated in the current context.
 */
static List *
changes_batch(GuardPast *p, TimestampTz since, int64 before_id)
{
	GuardAsRole owner;
	Oid			types[3] = {OIDARRAYOID, TIMESTAMPTZOID, INT8OID};
	Datum		values[3];
	Datum	   *elems = palloc(sizeof(Datum) * list_length(p->relids));
	ListCell   *lc;
	List	   *batch = NIL;
	MemoryContext outer = CurrentMemoryContext;

	foreach(lc, p->relids)
		elems[foreach_current_index(lc)] = ObjectIdGetDatum(lfirst_oid(lc));
	values[0] = PointerGetDatum(construct_array(elems, list_length(p->relids), OIDOID,
												sizeof(Oid), true, TYPALIGN_INT));
	values[1] = TimestampTzGetDatum(since);
	values[2] = Int64GetDatum(before_id);
	guard_as_role_begin(&owner, InvalidOid);
	/* read-only: the caller's snapshot, the one the table is read with */
	if (SPI_execute_with_args("SELECT c.change_id, c.changeset_id, c.at, c.role, cs.label, c.kind,"
							  "       c.state, CASE WHEN c.kind = 'ALTER TABLE' THEN c.statement END"
							  "  FROM guard.change c"
							  "  LEFT JOIN guard.changeset cs ON cs.changeset_id = c.changeset_id"
							  " WHERE c.relid = ANY ($1) AND c.at > $2 AND c.change_id < $3"
							  " ORDER BY c.change_id DESC LIMIT " CppAsString2(PAST_BATCH),
							  3, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read guard.change");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(outer);
		GuardPastChange *c = palloc0(sizeof(GuardPastChange));

		c->change_id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		c->changeset_id = DatumGetInt64(SPI_getbinval(tuple, desc, 2, &isnull));
		c->at = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 3, &isnull));
		c->role = spi_text(tuple, desc, 4);
		c->label = spi_text(tuple, desc, 5);
		c->kind = spi_text(tuple, desc, 6);
		/* the state, until the record is read */
		c->statement = spi_text(tuple, desc, 8);
		c->record = palloc0(sizeof(GuardChange));
		c->record->state = spi_text(tuple, desc, 7);
		batch = lappend(batch, c);
		MemoryContextSwitchTo(old);
	}
	guard_as_role_end(&owner);
	return batch;
}

/*
 * Walk back over the changes of the table recorded after "since", newest
 * first: for each, "on_change" (may be NULL), then each of its captured
 * rows undone, handed to "on_row" (may be NULL).  A change whose captures
 * expired ends the walk: returns false when "stop_at_expired", else
 * raises an ERROR.  Returns true when every change since was walked.
 */
bool
guard_past_walk(GuardPast *p, TimestampTz since, bool stop_at_expired,
				GuardPastOnChange on_change, GuardPastOnRow on_row, void *arg)
{
	MemoryContext batchcxt = AllocSetContextCreate(CurrentMemoryContext,
												   "guard past changes",
												   ALLOCSET_DEFAULT_SIZES);
	int64		before_id = PG_INT64_MAX;

	for (;;)
	{
		MemoryContext old = MemoryContextSwitchTo(batchcxt);
		List	   *batch = changes_batch(p, since, before_id);
		ListCell   *lc;

		if (batch == NIL)
		{
			MemoryContextSwitchTo(old);
			break;
		}
		foreach(lc, batch)
		{
			GuardPastChange *c = lfirst(lc);

			CHECK_FOR_INTERRUPTS();
			before_id = c->change_id;
			if (strcmp(c->record->state, "expired") == 0 && has_rows(c->kind))
			{
				if (stop_at_expired)
				{
					MemoryContextSwitchTo(old);
					MemoryContextDelete(batchcxt);
					return false;
				}
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("the captures of table \"%s\" that far back were purged",
								p->relname),
						 errdetail("Change " INT64_FORMAT " of change set " INT64_FORMAT " has expired: guard.purge() deleted its snapshot.",
								   c->change_id, c->changeset_id)));
			}
			if (!guard_change_read(c->change_id, c->record))
				continue;		/* gone since the batch was read */
			c->map = record_map(p, c->record);
			check_knowable(p, c);
			if (on_change)
				on_change(arg, c);
			guard_past_undo_rows(p, c, on_row, arg);
			undo_columns(p, c);
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(batchcxt);
	}
	MemoryContextDelete(batchcxt);
	return true;
}

/*
 * The table's key: its number of columns, and their attnums in *keys.
 */
int
guard_past_key(GuardPast *p, const AttrNumber **keys)
{
	*keys = p->keys;
	return p->nkeys;
}
