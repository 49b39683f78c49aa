/*-------------------------------------------------------------------------
 *
 * diff.c
 *	  guard.diff(change_id): what a change captured, row by row.
 *
 * One output row per captured column: the row's key, the column, its value
 * before the change, and its value in the table now (NULL when the row is
 * gone).  Only those who may read the table (or guard_admin) may see it.
 *
 * Row-level security applies as to a SELECT of the table: a role the
 * table's policies filter sees only the rows whose before-image and live
 * version both pass its SELECT policies (an inserted row, only while it
 * lives).  The policies are evaluated on those row values in SQL, as the
 * caller.  An updated row's before-image is its captured columns over its
 * live version, less the columns later changes wrote (later.c), which are
 * unknown.  guard_admin, like the table's owner, sees every row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "rewrite/rowsecurity.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/ruleutils.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "guard.h"

PG_FUNCTION_INFO_V1(guard_diff);

/* the SELECT policies of a table, to apply to row values */
typedef struct RowFilter
{
	Relation	rel;
	SPIPlanPtr	plan;			/* NULL: no policy lets any row through */
	Datum	   *values;			/* one row of rel, being built */
	bool	   *nulls;
	HTAB	   *later;			/* what later changes wrote, by key, on
								 * first need */
	const GuardChange *change;	/* ... to the columns of this change */
	GuardAsRole as;
} RowFilter;

/* what later changes wrote to one key, in RowFilter.later */
typedef struct LaterKey
{
	char	   *key;			/* hash key: the key text */
	bool		any;			/* some later change wrote a column */
	bool	   *wrote;			/* by attnum - 1 of the change's layout */
} LaterKey;

/*
 * The hash of a key text, for the index whose hash key is a pointer to it:
 * keys of any length are told apart.
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
 * guard_later_each_key() callback: index what later changes wrote to a key.
 */
static void
later_key_add(const char *key, const GuardLaterEntry *entry, void *arg)
{
	RowFilter  *f = (RowFilter *) arg;
	MemoryContext cxt = GetMemoryChunkContext(f);
	char	   *copy = MemoryContextStrdup(cxt, key);
	LaterKey   *k = hash_search(f->later, &copy, HASH_ENTER, NULL);

	k->key = copy;
	k->any = guard_later_how(entry) != 0;
	k->wrote = MemoryContextAlloc(cxt, sizeof(bool) * Max(f->change->natts, 1));
	for (int i = 0; i < f->change->natts; i++)
		k->wrote[i] = guard_later_wrote(entry, i) != 0;
}

/*
 * Read what later changes wrote to the change's rows into f->later: one
 * entry per key written since (only on a table with row-level security).
 */
static void
later_index(RowFilter *f, const GuardChange *change)
{
	Datum		none = PointerGetDatum(construct_empty_array(INT8OID));
	GuardLaterWrites *later = guard_later_writes_begin(change, none, none);
	HASHCTL		ctl;

	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(LaterKey);
	ctl.hash = later_key_hash;
	ctl.match = later_key_match;
	ctl.hcxt = GetMemoryChunkContext(f);
	f->later = hash_create("guard diff later writes", 256, &ctl,
						   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	f->change = change;
	guard_later_each_key(later, later_key_add, f);
	guard_later_writes_end(later);
}

/*
 * Does policy "p" apply to the current user?
 */
static bool
policy_applies(RowSecurityPolicy *p)
{
	Oid		   *roles = (Oid *) ARR_DATA_PTR(p->roles);
	int			n = ARR_DIMS(p->roles)[0];

	if (p->polcmd != '*' && p->polcmd != ACL_SELECT_CHR)
		return false;
	for (int i = 0; i < n; i++)
	{
		if (roles[i] == ACL_ID_PUBLIC || has_privs_of_role(GetUserId(), roles[i]))
			return true;
	}
	return false;
}

/*
 * Start applying the table's SELECT policies for the current user, or
 * return NULL when row-level security does not apply to it (the owner, a
 * role that bypasses it, guard_admin).  Their USING expressions (those that
 * apply: permissive ones or'ed, restrictive ones and'ed, as the rewriter
 * does) are deparsed and evaluated over a row of the table's type, with
 * search_path pinned for both.
 */
static RowFilter *
row_filter_begin(Relation rel)
{
	Oid			admin = get_role_oid("guard_admin", true);
	RowFilter  *f;
	StringInfoData perm;
	StringInfoData restr;
	List	   *dpcontext;
	ListCell   *lc;
	Oid			reltype = rel->rd_rel->reltype;

	if (check_enable_rls(RelationGetRelid(rel), InvalidOid, true) != RLS_ENABLED ||
		(OidIsValid(admin) && has_privs_of_role(GetUserId(), admin)))
		return NULL;

	f = palloc0(sizeof(RowFilter));
	f->rel = rel;
	f->values = palloc(sizeof(Datum) * RelationGetDescr(rel)->natts);
	f->nulls = palloc(sizeof(bool) * RelationGetDescr(rel)->natts);
	guard_as_role_begin(&f->as, GetUserId());
	dpcontext = deparse_context_for(RelationGetRelationName(rel), RelationGetRelid(rel));
	initStringInfo(&perm);
	initStringInfo(&restr);
	foreach(lc, rel->rd_rsdesc ? rel->rd_rsdesc->policies : NIL)
	{
		RowSecurityPolicy *p = lfirst(lc);

		if (p->qual == NULL || !policy_applies(p))
			continue;
		appendStringInfo(p->permissive ? &perm : &restr, "%s(%s)",
						 (p->permissive ? perm.len : restr.len) ?
						 (p->permissive ? " OR " : " AND ") : "",
						 deparse_expression((Node *) p->qual, dpcontext, false, false));
	}
	if (perm.len > 0)
		f->plan = SPI_prepare(psprintf("SELECT (%s)%s%s FROM (SELECT ($1::%s).*) AS %s",
									   perm.data, restr.len ? " AND " : "", restr.data,
									   format_type_be_qualified(reltype),
									   quote_identifier(RelationGetRelationName(rel))),
							  1, &reltype);
	if (perm.len > 0 && f->plan == NULL)
		elog(ERROR, "guard: could not prepare the row security check: %s",
			 SPI_result_code_string(SPI_result));
	return f;
}

/*
 * Do the table's policies let the row now in f->values through?
 */
static bool
row_filter_passes(RowFilter *f)
{
	TupleDesc	desc = RelationGetDescr(f->rel);
	Datum		row;
	bool		isnull;
	Datum		result;

	if (f->plan == NULL)
		return false;
	row = heap_copy_tuple_as_datum(heap_form_tuple(desc, f->values, f->nulls), desc);
	if (SPI_execute_plan(f->plan, &row, " ", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "guard: row security check failed");
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	SPI_freetuptable(SPI_tuptable);
	return !isnull && DatumGetBool(result);
}

/*
 * Set column "name" of the row being built to a value of type "type", if
 * the table has such a column of that type.
 */
static void
row_filter_set(RowFilter *f, const char *name, Oid type, Datum value, bool isnull)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(f->rel), name);

	if (attnum <= 0 || TupleDescAttr(RelationGetDescr(f->rel), attnum - 1)->atttypid != type)
		return;
	f->values[attnum - 1] = value;
	f->nulls[attnum - 1] = isnull;
}

/*
 * For the before-image of an updated row, built over its live version:
 * forget (make null) the columns the change did not capture that a later
 * change wrote, since the live value is not the one the row had then.  A
 * policy on such a column then hides the row, rather than judge it by a
 * later value.
 */
static void
row_filter_forget_later(RowFilter *f, const GuardChange *change,
						const ShadowRow *row, const char *key)
{
	TupleDesc	desc = RelationGetDescr(f->rel);
	LaterKey   *entry;

	if (f->later == NULL)
		later_index(f, change);
	entry = hash_search(f->later, &key, HASH_FIND, NULL);
	if (entry == NULL)
		return;
	for (int a = 0; a < desc->natts; a++)
	{
		const char *name = NameStr(TupleDescAttr(desc, a)->attname);
		bool		captured = false;
		int			attno = -1;

		for (int i = 0; i < row->natts && !captured; i++)
		{
			if (change->attnames[i] == NULL || strcmp(change->attnames[i], name) != 0)
				continue;
			attno = i;
			captured = row->captured[i];
		}
		/* a column the table gained since: any later write may have set it */
		if (!captured && (attno >= 0 ? entry->wrote[attno] : entry->any))
			f->nulls[a] = true;
	}
}

/*
 * May the caller see this captured row: its before-image (the captured
 * columns over the live row, or over nulls when it is gone) and its live
 * version must both pass the table's SELECT policies.
 */
static bool
row_visible(RowFilter *f, const GuardChange *change, const ShadowRow *row,
			GuardKeyScan *ks, bool live, const char *key)
{
	TupleDesc	desc;

	if (f == NULL)
		return true;
	if (!live && row->op == GUARD_OP_INSERT)
		return false;			/* only its key is known */
	memset(f->nulls, true, sizeof(bool) * RelationGetDescr(f->rel)->natts);
	if (live)
	{
		desc = RelationGetDescr(ks->found);
		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped)
				row_filter_set(f, NameStr(att->attname), att->atttypid,
							   ks->slot->tts_values[i], ks->slot->tts_isnull[i]);
		}
		if (!row_filter_passes(f))
			return false;
	}
	if (row->op == GUARD_OP_INSERT)
		return true;
	if (live && row->op == GUARD_OP_UPDATE)
		row_filter_forget_later(f, change, row, key);
	for (int i = 0; i < row->natts; i++)
	{
		if (row->captured[i] && change->attnames[i] != NULL)
			row_filter_set(f, change->attnames[i], change->atttypes[i],
						   row->values[i], row->nulls[i]);
	}
	return row_filter_passes(f);
}

/*
 * The live value of column "name" in the fetched row, as text, or NULL.
 */
static text *
live_value(GuardKeyScan *ks, bool live, const char *name)
{
	TupleDesc	desc;
	int			attno;

	if (!live)
		return NULL;
	desc = RelationGetDescr(ks->found);
	for (attno = 0; attno < desc->natts; attno++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, attno);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
		{
			if (ks->slot->tts_isnull[attno])
				return NULL;
			return cstring_to_text(guard_value_text(ks->slot->tts_values[attno],
											  att->atttypid));
		}
	}
	return NULL;
}

/*
 * Emit one output row.
 */
static void
put_row(ReturnSetInfo *rsinfo, const char *key, const char *column,
		const char *before, text *after)
{
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	values[0] = CStringGetTextDatum(key);
	if (column)
		values[1] = CStringGetTextDatum(column);
	else
		nulls[1] = true;
	if (before)
		values[2] = CStringGetTextDatum(before);
	else
		nulls[2] = true;
	if (after)
		values[3] = PointerGetDatum(after);
	else
		nulls[3] = true;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * guard.diff(change_id)
 */
Datum
guard_diff(PG_FUNCTION_ARGS)
{
	int64		change_id = PG_GETARG_INT64(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	GuardChange change;
	Relation	rel;
	GuardKeyScan ks;
	bool		have_keyscan = false;
	RowFilter  *filter = NULL;
	ShadowReader *reader;
	ShadowRow	row;

	guard_require_preload();
	InitMaterializedSRF(fcinfo, 0);

	if (!guard_change_read(change_id, &change))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("change " INT64_FORMAT " does not exist", change_id)));

	if (!guard_may_read_relation(change.relid))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for the snapshot of table %s",
						change.relation),
				 errdetail("Reading a snapshot needs SELECT on its table, or membership in guard_admin.")));

	rel = try_table_open(change.relid, AccessShareLock);
	if (rel)
	{
		have_keyscan = guard_keyscan_begin(&ks, rel, &change);
		filter = row_filter_begin(rel);
	}

	reader = shadow_open(change_id, change.natts, change.atttypes,
						 change.keys, change.nkeys, change.inline_chunk);
	while (shadow_next(reader, &row))
	{
		char	   *key = guard_key_text(&change, row.keyvalues);
		bool		live = have_keyscan && guard_keyscan_fetch(&ks, row.keyvalues,
																 GetActiveSnapshot());

		if (!row_visible(filter, &change, &row, &ks, live, key))
			continue;
		if (row.op == GUARD_OP_INSERT)
		{
			TupleDesc	desc;

			if (!live)
			{
				put_row(rsinfo, key, NULL, NULL, NULL);
				continue;
			}
			desc = RelationGetDescr(ks.found);
			for (int i = 0; i < desc->natts; i++)
			{
				Form_pg_attribute att = TupleDescAttr(desc, i);

				if (att->attisdropped)
					continue;
				put_row(rsinfo, key, NameStr(att->attname), NULL,
						live_value(&ks, true, NameStr(att->attname)));
			}
			continue;
		}

		for (int i = 0; i < row.natts; i++)
		{
			const char *name = change.attnames[i];

			if (!row.captured[i] || name == NULL)
				continue;
			put_row(rsinfo, key, name,
					row.nulls[i] ? NULL : guard_value_text(row.values[i], change.atttypes[i]),
					live_value(&ks, live, name));
		}
	}
	shadow_close(reader);

	if (filter)
		guard_as_role_end(&filter->as);
	if (have_keyscan)
		guard_keyscan_end(&ks);
	if (rel)
		table_close(rel, AccessShareLock);
	return (Datum) 0;
}
