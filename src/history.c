/*-------------------------------------------------------------------------
 *
 * history.c
 *	  guard.history(rel, key, since): every captured version of a table's
 *	  rows (or of one row), oldest first: Oracle's flashback version query.
 *
 * One output row per column a change captured for a row: its change set,
 * change, time, role, label and kind, the row's key (row_key, as JSON, as
 * "key" takes it), the column, its value before the change and after it.  An
 * UPDATE shows the columns it changed; an INSERT every column (before
 * NULL); a DELETE or TRUNCATE every column (after NULL); DROP COLUMN and
 * ALTER COLUMN TYPE the column's value per row.  Schema changes without
 * rows (ADD COLUMN, RENAME, every other schema change kind, DROP TABLE)
 * are one row
 * each, without key, when no key is asked for.  "After" is the value the
 * row had right after the change: past.c walks back from the rows now,
 * newest first, and the output is sorted back to oldest first (spilling
 * to disk past work_mem).
 *
 * "key" (a JSON object with every key column) keeps the rows whose key
 * before or after the change is that one.  "since" keeps the changes
 * recorded from then on; with no "since", history goes back to the oldest
 * captures not expired.
 *
 * What the table would not show, history does not: without SELECT on a
 * column its values are left out, without SELECT on any column (or on a
 * key column) it is an ERROR; row level security is applied to every
 * version, before and after (a change is shown when the caller could see
 * each of its versions).  Members of guard_admin see everything, as with
 * guard.diff().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplesort.h"
#include "utils/tuplestore.h"
#include "utils/typcache.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_history);

#define HISTORY_NATTS	10		/* the function's columns */

/* the state of one guard.history() call */
typedef struct History
{
	Relation	rel;
	GuardPast  *past;
	int			nkeys;
	const AttrNumber *keys;
	Datum	   *want;			/* the key asked for, or NULL */
	bool	   *col_visible;	/* by attnum of the table now */
	bool		all_columns;	/* SELECT on the table, or guard_admin */
	GuardRowFilter *filter;
	Tuplesortstate *sort;		/* rows by change, then order of output */
	TupleTableSlot *slot;		/* a row to put into the sort */
	TupleTableSlot *sorted;		/* a row out of it */
	int64		seq;
} History;

/*
 * May the caller see column "attnum" (0 based; -1: a column the table no
 * longer has, which needs SELECT on the table)?
 */
static bool
column_visible(History *h, int attnum)
{
	if (h->all_columns)
		return true;
	return attnum >= 0 && h->col_visible[attnum];
}

/*
 * Work out what the caller may see of "rel": every column (guard_admin,
 * SELECT on the table) or some, and the row filter.  Refuses a caller who
 * could not read the key of a row.
 */
static void
check_rights(History *h)
{
	TupleDesc	desc = RelationGetDescr(h->rel);
	Oid			relid = RelationGetRelid(h->rel);
	Oid			user = GetUserId();
	bool		any = false;

	h->all_columns = guard_may_read_relation(relid);
	h->col_visible = palloc0(sizeof(bool) * Max(desc->natts, 1));
	for (int i = 0; i < desc->natts; i++)
	{
		if (TupleDescAttr(desc, i)->attisdropped)
			continue;
		h->col_visible[i] = h->all_columns ||
			pg_attribute_aclcheck(relid, i + 1, user, ACL_SELECT) == ACLCHECK_OK;
		any |= h->col_visible[i];
	}
	if (!any)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", RelationGetRelationName(h->rel)),
				 errdetail("The history of a table needs SELECT on it or on some of its columns, or membership in guard_admin.")));
	for (int k = 0; k < h->nkeys; k++)
	{
		if (!h->col_visible[h->keys[k] - 1])
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for column \"%s\" of table %s",
							NameStr(TupleDescAttr(desc, h->keys[k] - 1)->attname),
							RelationGetRelationName(h->rel)),
					 errdetail("The history of a table shows each row's key.")));
	}
	h->filter = guard_rowfilter_begin(h->rel);
}

/*
 * A value in JSON: numbers and booleans as themselves, anything else as
 * a string of its text.
 */
static void
json_value(StringInfo buf, Datum value, Oid type)
{
	char	   *text = guard_value_text(value, type);

	switch (type)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
			appendStringInfoString(buf, text);
			return;
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			if (strspn(text, "-+0123456789.eE") == strlen(text))
			{
				appendStringInfoString(buf, text);
				return;
			}
			break;
		case BOOLOID:
			appendStringInfoString(buf, DatumGetBool(value) ? "true" : "false");
			return;
		default:
			break;
	}
	escape_json(buf, text);
}

/*
 * The key as JSON, {"id": 3}, as the "key" argument takes it.
 */
static Datum
key_json(History *h, const Datum *keyvalues)
{
	TupleDesc	desc = RelationGetDescr(h->rel);
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int k = 0; k < h->nkeys; k++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, h->keys[k] - 1);

		if (k > 0)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, NameStr(att->attname));
		appendStringInfoString(&buf, ": ");
		json_value(&buf, keyvalues[k], att->atttypid);
	}
	appendStringInfoChar(&buf, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/*
 * Field "name" of a JSON object, as text, or NULL when it is missing or
 * JSON null.
 */
static char *
json_field(Datum object, const char *name)
{
	LOCAL_FCINFO(fcinfo, 2);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = object;
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = CStringGetTextDatum(name);
	fcinfo->args[1].isnull = false;
	result = jsonb_object_field_text(fcinfo);
	if (fcinfo->isnull)
		return NULL;
	return TextDatumGetCString(result);
}

/*
 * The key asked for, from its JSON object, as values of the key columns.
 */
static Datum *
wanted_key(History *h, Jsonb *key)
{
	TupleDesc	desc = RelationGetDescr(h->rel);
	Datum	   *want = palloc(sizeof(Datum) * h->nkeys);
	StringInfoData names;

	initStringInfo(&names);
	for (int k = 0; k < h->nkeys; k++)
		appendStringInfo(&names, "%s%s", k ? ", " : "",
						 quote_identifier(NameStr(TupleDescAttr(desc, h->keys[k] - 1)->attname)));
	if (!JB_ROOT_IS_OBJECT(key) || JB_ROOT_COUNT(key) != h->nkeys)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key must be a JSON object with the key columns of table \"%s\"",
						RelationGetRelationName(h->rel)),
				 errhint("The key of the table is (%s), e.g. '{\"%s\": ...}'.", names.data,
						 NameStr(TupleDescAttr(desc, h->keys[0] - 1)->attname))));
	for (int k = 0; k < h->nkeys; k++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, h->keys[k] - 1);
		char	   *field = json_field(JsonbPGetDatum(key), NameStr(att->attname));
		Oid			input;
		Oid			ioparam;

		if (field == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("key has no value for column \"%s\" of table \"%s\"",
							NameStr(att->attname), RelationGetRelationName(h->rel)),
					 errhint("The key of the table is (%s).", names.data)));
		getTypeInputInfo(att->atttypid, &input, &ioparam);
		want[k] = OidInputFunctionCall(input, field, ioparam, att->atttypmod);
	}
	return want;
}

/*
 * Is "keyvalues" the key asked for (by the key types' equality)?
 */
static bool
is_wanted(History *h, const Datum *keyvalues)
{
	TupleDesc	desc = RelationGetDescr(h->rel);

	if (keyvalues == NULL)
		return false;
	for (int k = 0; k < h->nkeys; k++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, h->keys[k] - 1);
		TypeCacheEntry *tc = lookup_type_cache(att->atttypid, TYPECACHE_EQ_OPR_FINFO);
		bool		equal;

		if (OidIsValid(tc->eq_opr_finfo.fn_oid))
			equal = DatumGetBool(FunctionCall2Coll(&tc->eq_opr_finfo, att->attcollation,
												   keyvalues[k], h->want[k]));
		else
			equal = datum_image_eq(keyvalues[k], h->want[k], att->attbyval, att->attlen);
		if (!equal)
			return false;
	}
	return true;
}

/*
 * Add one output row to the sort.
 */
static void
put_row(History *h, const GuardPastChange *c, Datum key, bool has_key,
		const char *column, char *before, char *after)
{
	TupleTableSlot *slot = h->slot;
	Datum	   *v = slot->tts_values;
	bool	   *n = slot->tts_isnull;

	ExecClearTuple(slot);
	memset(n, 0, sizeof(bool) * (HISTORY_NATTS + 1));
	v[0] = Int64GetDatum(c->changeset_id);
	v[1] = Int64GetDatum(c->change_id);
	v[2] = TimestampTzGetDatum(c->at);
	v[3] = c->role ? CStringGetTextDatum(c->role) : (Datum) 0;
	n[3] = c->role == NULL;
	v[4] = c->label ? CStringGetTextDatum(c->label) : (Datum) 0;
	n[4] = c->label == NULL;
	v[5] = CStringGetTextDatum(c->kind);
	v[6] = key;
	n[6] = !has_key;
	v[7] = column ? CStringGetTextDatum(column) : (Datum) 0;
	n[7] = column == NULL;
	v[8] = before ? CStringGetTextDatum(before) : (Datum) 0;
	n[8] = before == NULL;
	v[9] = after ? CStringGetTextDatum(after) : (Datum) 0;
	n[9] = after == NULL;
	v[10] = Int64GetDatum(h->seq++);
	ExecStoreVirtualTuple(slot);
	tuplesort_puttupleslot(h->sort, slot);
}

/*
 * Value i of a version as text, or NULL.
 */
static char *
version_text(const GuardPastVersion *v, int i)
{
	if (v == NULL || i < 0 || v->nulls[i] || !OidIsValid(v->types[i]))
		return NULL;
	return guard_value_text(v->values[i], v->types[i]);
}

/*
 * A schema change without rows: one row, when no key is asked for.
 */
static void
on_change(void *arg, const GuardPastChange *c)
{
	History    *h = (History *) arg;
	const char *kind = c->kind;
	char	   *column = NULL;
	char	   *before = NULL;
	char	   *after = NULL;

	if (h->want)
		return;
	/* the kinds whose rows on_row() shows; every other kind is one row */
	if (strcmp(kind, "UPDATE") == 0 || strcmp(kind, "DELETE") == 0 ||
		strcmp(kind, "INSERT") == 0 || strcmp(kind, "MERGE") == 0 ||
		strcmp(kind, "COPY") == 0 || strcmp(kind, "TRUNCATE") == 0 ||
		strcmp(kind, "DROP COLUMN") == 0 || strcmp(kind, "ALTER COLUMN TYPE") == 0)
		return;
	if (c->record->detail)
	{
		Datum		detail = DirectFunctionCall1(jsonb_in, CStringGetDatum(c->record->detail));
		char	   *what = json_field(detail, "what");

		column = json_field(detail, "column");
		if (strcmp(kind, "RENAME") == 0)
		{
			before = json_field(detail, "old");
			after = json_field(detail, "new");
			if (what && strcmp(what, "column") == 0)
				column = before;
		}
	}
	put_row(h, c, (Datum) 0, false, column, before, after);
}

/*
 * One captured row, undone: one output row per column it shows.
 */
static void
on_row(void *arg, const GuardPastChange *c, const GuardPastRow *r)
{
	History    *h = (History *) arg;
	const GuardChange *rec = c->record;
	const ShadowRow *row = r->row;
	const Datum *key = r->op == GUARD_OP_INSERT ? r->key_after : r->key_before;
	Datum		keyjson;

	if (h->want && !is_wanted(h, r->key_before) && !is_wanted(h, r->key_after))
		return;
	if (h->filter &&
		((r->before && !guard_rowfilter_visible(h->filter, r->before)) ||
		 (r->after && !guard_rowfilter_visible(h->filter, r->after))))
		return;
	keyjson = key_json(h, key);
	for (int i = 0; i < rec->natts; i++)
	{
		int			t = c->map[i];
		char	   *before = NULL;
		char	   *after = NULL;

		if (rec->attnames[i] == NULL || !column_visible(h, t))
			continue;
		if (r->op == GUARD_OP_INSERT)
		{
			if (t < 0)
				continue;
			after = version_text(r->after, t);
		}
		else
		{
			if (!row->captured[i])
				continue;
			before = row->nulls[i] ? NULL : guard_value_text(row->values[i], rec->atttypes[i]);
			after = version_text(r->after, t);
		}
		put_row(h, c, keyjson, true, rec->attnames[i], before, after);
	}
}

/*
 * The sort the output goes through: the function's columns and a
 * sequence number, by change id then sequence.
 */
static void
begin_sort(History *h, TupleDesc out)
{
	TupleDesc	desc = CreateTemplateTupleDesc(HISTORY_NATTS + 1);
	AttrNumber	attnums[2] = {2, HISTORY_NATTS + 1};
	Oid			ops[2] = {Int8LessOperator, Int8LessOperator};
	Oid			colls[2] = {InvalidOid, InvalidOid};
	bool		nullsfirst[2] = {false, false};

	for (int i = 0; i < HISTORY_NATTS; i++)
		TupleDescCopyEntry(desc, i + 1, out, i + 1);
	TupleDescInitEntry(desc, HISTORY_NATTS + 1, "seq", INT8OID, -1, 0);
	h->sort = tuplesort_begin_heap(desc, 2, attnums, ops, colls, nullsfirst,
								   work_mem, NULL, TUPLESORT_NONE);
	h->slot = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);
	h->sorted = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
}

/*
 * guard.history(rel regclass, key jsonb, since timestamptz)
 */
Datum
guard_history(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	History		h;
	TimestampTz since = PG_ARGISNULL(2) ? DT_NOBEGIN : PG_GETARG_TIMESTAMPTZ(2);

	guard_require_preload();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("rel must not be null")));
	InitMaterializedSRF(fcinfo, 0);
	memset(&h, 0, sizeof(h));
	h.rel = try_relation_open(PG_GETARG_OID(0), AccessShareLock);
	if (h.rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", PG_GETARG_OID(0))));
	if (h.rel->rd_rel->relkind != RELKIND_RELATION &&
		h.rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", RelationGetRelationName(h.rel))));
	{
		const GuardPolicy *policy = guard_policy_lookup(h.rel);

		/* a partition's rows may have changed through its parent too */
		if (policy->found && policy->relid != RelationGetRelid(h.rel))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table \"%s\" is a partition of protected table \"%s\"",
							RelationGetRelationName(h.rel), get_rel_name(policy->relid)),
					 errhint("Read the history of the partitioned table.")));
	}
	h.past = guard_past_begin(h.rel, false);
	h.nkeys = guard_past_key(h.past, &h.keys);
	check_rights(&h);
	if (!PG_ARGISNULL(1))
		h.want = wanted_key(&h, PG_GETARG_JSONB_P(1));

	/* changes at "since" are in: walk back to just before it */
	begin_sort(&h, rsinfo->setDesc);
	(void) guard_past_walk(h.past, since == DT_NOBEGIN ? since : since - 1,
						   PG_ARGISNULL(2), on_change, on_row, &h);

	tuplesort_performsort(h.sort);
	while (tuplesort_gettupleslot(h.sort, true, false, h.sorted, NULL))
	{
		slot_getallattrs(h.sorted);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
							 h.sorted->tts_values, h.sorted->tts_isnull);
	}
	tuplesort_end(h.sort);
	ExecDropSingleTupleTableSlot(h.slot);
	ExecDropSingleTupleTableSlot(h.sorted);
	guard_rowfilter_end(h.filter);
	guard_past_end(h.past);
	relation_close(h.rel, AccessShareLock);
	return (Datum) 0;
}
