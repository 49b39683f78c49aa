/*-------------------------------------------------------------------------
 *
 * labels.c
 *	  Migration tools' bookkeeping rows, recognised as they are written, name
 *	  the changes of the migration they record.
 *
 * Migration tools record each migration they apply with a row in a table
 * of their own, which guard does not protect and puts no trigger on.  At
 * the end of every INSERT (hooks.c calls guard_labels_after_statement()
 * from ExecutorFinish) the result relation's name is compared with the
 * tables the tools use; only on a match are its columns checked, the rows
 * this very statement inserted found (inserted by the current transaction
 * with the statement's command id), and the label read from them:
 *
 *	Django			django_migrations (app, name): "app.name"
 *	Rails			schema_migrations (version): the version
 *	golang-migrate	schema_migrations (version, dirty): the version
 *	Flyway			flyway_schema_history (script): the script
 *	Liquibase		databasechangelog: "filename::id::author"
 *	node-pg-migrate pgmigrations (name): the name
 *	knex			knex_migrations (name): the name
 *	sqitch			sqitch.changes (change): the change; registry
 *
 * All but golang-migrate and sqitch write the row after the migration, in
 * its transaction (or, when the migration runs outside one, after it): the
 * row names the changes made with no label since the previous bookkeeping
 * row of the session, those of the current transaction and those of the
 * session's earlier committed ones.  So a batch of migrations in one
 * transaction leaves one labelled part per migration.  golang-migrate
 * writes its row with dirty = true in a transaction of its own before the
 * migration and with dirty = false after it: the first puts the version in
 * force for the session (label_state.c), the second ends it.  sqitch
 * writes its registry from another connection than the deploy script's:
 * see bookkeeping.c for the link.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "guard.h"

/* when a tool writes its row, and so what the row names */
typedef enum ToolWhen
{
	TOOL_AFTER,					/* after the migration: names what waited */
	TOOL_BEFORE,				/* before it, in force until cleared */
	TOOL_REGISTRY,				/* from another connection: sqitch */
	TOOL_REGISTRY_EVENT			/* sqitch's log of a revert */
} ToolWhen;

#define TOOL_MAX_COLS	6

/* one migration tool's bookkeeping table */
typedef struct Tool
{
	const char *tool;			/* as label_source names it */
	const char *schema;			/* the table's schema, or NULL: any */
	const char *table;
	const char *columns[TOOL_MAX_COLS];	/* the table has these */
	const char *without;		/* ... and not this one, or NULL */
	const char *label[3];		/* the label: these columns ... */
	const char *sep;			/* ... joined by this */
	const char *key[3];			/* the row's key */
	const char *flag;			/* a column read to tell rows apart */
	const char *action;			/* what a restore does to the row */
	ToolWhen	when;
} Tool;

static const Tool tools[] = {
	{"django", NULL, "django_migrations", {"id", "app", "name", "applied"}, NULL,
	{"app", "name"}, ".", {"id"}, NULL, "delete", TOOL_AFTER},
	{"golang-migrate", NULL, "schema_migrations", {"version", "dirty"}, NULL,
	{"version"}, "", {"version"}, "dirty", "dirty", TOOL_BEFORE},
	{"rails", NULL, "schema_migrations", {"version"}, "dirty",
	{"version"}, "", {"version"}, NULL, "delete", TOOL_AFTER},
	{"flyway", NULL, "flyway_schema_history",
	{"installed_rank", "version", "description", "script", "success"}, NULL,
	{"script"}, "", {"installed_rank"}, NULL, "delete", TOOL_AFTER},
	{"liquibase", NULL, "databasechangelog", {"id", "author", "filename"}, NULL,
	{"filename", "id", "author"}, "::", {"id", "author", "filename"}, NULL,
	"delete", TOOL_AFTER},
	{"node-pg-migrate", NULL, "pgmigrations", {"id", "name", "run_on"}, NULL,
	{"name"}, "", {"id"}, NULL, "delete", TOOL_AFTER},
	{"knex", NULL, "knex_migrations", {"id", "name", "batch"}, NULL,
	{"name"}, "", {"id"}, NULL, "delete", TOOL_AFTER},
	{"sqitch", "sqitch", "changes", {"change_id", "change", "project", "script_hash"},
	NULL, {"change"}, "", {"change_id"}, NULL, "delete", TOOL_REGISTRY},
	{"sqitch", "sqitch", "events", {"event", "change_id", "change", "project"},
	NULL, {"change"}, "", {"change_id"}, "event", NULL, TOOL_REGISTRY_EVENT},
};

/*
 * Does "rel" have a column named "name"?
 */
static bool
has_column(Relation rel, const char *name)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return true;
	}
	return false;
}

/*
 * The tool whose bookkeeping table "rel" is, or NULL.  Its name is compared
 * first: any other table costs a few string comparisons.
 */
static const Tool *
tool_of(Relation rel)
{
	const char *name = RelationGetRelationName(rel);

	for (int t = 0; t < lengthof(tools); t++)
	{
		const Tool *tool = &tools[t];
		bool		match = true;

		if (strcmp(name, tool->table) != 0)
			continue;
		if (tool->schema != NULL)
		{
			char	   *nsp = get_namespace_name(RelationGetNamespace(rel));

			if (nsp == NULL || strcmp(nsp, tool->schema) != 0)
				continue;
		}
		for (int c = 0; c < TOOL_MAX_COLS && tool->columns[c]; c++)
			match &= has_column(rel, tool->columns[c]);
		if (tool->without != NULL && has_column(rel, tool->without))
			match = false;
		if (match && rel->rd_rel->relam == HEAP_TABLE_AM_OID)
			return tool;
	}
	return NULL;
}

/*
 * The rows of "rel" that the statement with command id "cid" of the current
 * transaction inserted, as an array of their TIDs (NULL if none).
 */
static ArrayType *
inserted_rows(Relation rel, CommandId cid)
{
	TableScanDesc scan = table_beginscan(rel, SnapshotSelf, 0, NULL);
	HeapTuple	tuple;
	Datum	   *tids = NULL;
	int			n = 0;
	int			size = 0;

	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		HeapTupleHeader t = tuple->t_data;

		if (!TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetRawXmin(t)) ||
			HeapTupleHeaderGetCmin(t) != cid)
			continue;
		if (n == size)
		{
			size = size ? size * 2 : 4;
			tids = tids ? repalloc(tids, sizeof(Datum) * size) :
				palloc(sizeof(Datum) * size);
		}
		tids[n] = PointerGetDatum(palloc(sizeof(ItemPointerData)));
		ItemPointerCopy(&tuple->t_self, (ItemPointer) DatumGetPointer(tids[n]));
		n++;
	}
	table_endscan(scan);
	if (n == 0)
		return NULL;
	return construct_array(tids, n, TIDOID, sizeof(ItemPointerData), false,
						   TYPALIGN_SHORT);
}

/* one bookkeeping row as guard reads it */
typedef struct ToolRow
{
	char	   *label;
	char	   *bookkeeping;	/* JSON: see bookkeeping.c */
	char	   *flag;			/* the tool's flag column, as text */
} ToolRow;

/*
 * Read the bookkeeping rows "tids" of "rel": their labels, the JSON that
 * describes each to a restore (naming "changesets", a JSON array), and the
 * flag column.  Read as the table's owner.
 */
static List *
read_rows(const Tool *tool, Relation rel, ArrayType *tids,
		  const char *changesets)
{
	StringInfoData sql;
	StringInfoData keys;
	GuardAsRole as;
	Oid			types[3] = {TIDARRAYOID, TEXTOID, TEXTARRAYOID};
	Datum		values[3];
	Datum		keyelems[3];
	int			nkeys = 0;
	char	   *name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												  RelationGetRelationName(rel));
	List	   *rows = NIL;
	MemoryContext outer = CurrentMemoryContext;

	initStringInfo(&keys);
	for (int i = 0; i < 3 && tool->label[i]; i++)
		appendStringInfo(&keys, ", t.%s", quote_identifier(tool->label[i]));
	for (int i = 0; i < 3 && tool->key[i]; i++)
		keyelems[nkeys++] = CStringGetTextDatum(tool->key[i]);

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT l.label, pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
					 "  'tool', %s, 'table', $2, 'label', l.label, 'action', %s,"
					 "  'key', (SELECT pg_catalog.jsonb_object_agg(k, l.r OPERATOR(pg_catalog.->) k)"
					 "          FROM pg_catalog.unnest($3) k),"
					 "  'row', l.r, 'changesets', %s::pg_catalog.jsonb))::text, l.flag"
					 " FROM (SELECT pg_catalog.concat_ws(%s%s)::text AS label,"
					 "        pg_catalog.to_jsonb(t) AS r, %s%s::text AS flag"
					 "       FROM %s t WHERE t.ctid OPERATOR(pg_catalog.=) ANY ($1)"
					 "       ORDER BY t.ctid) l",
					 quote_literal_cstr(tool->tool),
					 tool->action ? quote_literal_cstr(tool->action) : "NULL::text",
					 quote_literal_cstr(changesets),
					 quote_literal_cstr(tool->sep), keys.data,
					 tool->flag ? "t." : "", tool->flag ? quote_identifier(tool->flag) : "NULL",
					 name);
	values[0] = PointerGetDatum(tids);
	values[1] = CStringGetTextDatum(name);
	values[2] = PointerGetDatum(construct_array(keyelems, nkeys, TEXTOID, -1,
												false, TYPALIGN_INT));
	guard_as_role_begin(&as, rel->rd_rel->relowner);
	guard_run_sql(sql.data, 3, types, values, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *label = SPI_getvalue(tuple, desc, 1);
		char	   *bk = SPI_getvalue(tuple, desc, 2);
		char	   *flag = SPI_getvalue(tuple, desc, 3);
		MemoryContext old = MemoryContextSwitchTo(outer);
		ToolRow    *row = palloc0(sizeof(ToolRow));

		row->label = pstrdup(label ? label : "");
		row->bookkeeping = pstrdup(bk);
		row->flag = flag ? pstrdup(flag) : NULL;
		rows = lappend(rows, row);
		MemoryContextSwitchTo(old);
	}
	guard_as_role_end(&as);
	return rows;
}

/*
 * A JSON array of change set ids.
 */
static char *
json_ids(const int64 *ids, int n)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (int i = 0; i < n; i++)
		appendStringInfo(&buf, "%s" INT64_FORMAT, i ? ", " : "", ids[i]);
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

/*
 * The change sets linked to this sqitch registry transaction, now named:
 * their links are removed (with, when the registry holds its deploy lock,
 * those of earlier registry transactions, which no row will name).
 */
static int64 *
registry_changesets(int *n, bool deploy)
{
	char		vxid[64];
	GuardAsRole owner;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	int64	   *ids;
	MemoryContext outer = CurrentMemoryContext;

	*n = 0;
	if (!OidIsValid(get_relname_relid("label_wait", guard_namespace())))
		return NULL;
	guard_registry_vxid(vxid, sizeof(vxid));
	values[0] = CStringGetTextDatum(vxid);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql(deploy ?
				  "WITH d AS (DELETE FROM guard.label_wait RETURNING registry, changeset_id)"
				  " SELECT changeset_id FROM d WHERE registry OPERATOR(pg_catalog.=) $1"
				  " ORDER BY changeset_id" :
				  "DELETE FROM guard.label_wait WHERE registry OPERATOR(pg_catalog.=) $1"
				  " RETURNING changeset_id",
				  1, types, values, NULL);
	ids = MemoryContextAlloc(outer, sizeof(int64) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		ids[(*n)++] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
												  SPI_tuptable->tupdesc, 1, &isnull));
	}
	guard_as_role_end(&owner);
	return ids;
}

/*
 * "rel", the bookkeeping table of "tool", got rows from the statement with
 * command id "cid": label what they name.
 */
static void
recognise(const Tool *tool, Relation rel, CommandId cid)
{
	int64	   *changesets = NULL;
	int			n = 0;
	ArrayType  *tids;
	List	   *rows;
	ToolRow    *row;

	/* what the row will name, if anything: else nothing to read */
	if (tool->when == TOOL_AFTER)
	{
		changesets = guard_unlabelled_changesets(&n);
		if (n == 0)
			return;
	}
	tids = inserted_rows(rel, cid);
	if (tids == NULL)
		return;
	if (tool->when == TOOL_REGISTRY_EVENT)
	{
		/* only a revert: a deploy is named by its row in sqitch.changes */
		rows = read_rows(tool, rel, tids, "[]");
		if (rows == NIL)
			return;
		row = linitial(rows);
		if (row->flag == NULL || strcmp(row->flag, "revert") != 0)
			return;
	}
	if (tool->when == TOOL_REGISTRY || tool->when == TOOL_REGISTRY_EVENT)
	{
		changesets = registry_changesets(&n, tool->when == TOOL_REGISTRY);
		if (n == 0)
			return;
	}
	/* (none if row-level security hides them from the table's owner) */
	rows = read_rows(tool, rel, tids, json_ids(changesets, n));
	if (rows == NIL)
		return;
	row = linitial(rows);

	switch (tool->when)
	{
		case TOOL_AFTER:
			guard_label_changes(changesets, n, row->label, tool->tool,
								row->bookkeeping);
			guard_unlabelled_forget();
			break;
		case TOOL_BEFORE:
			/* dirty: the migration of this version runs next */
			if (row->flag != NULL && strcmp(row->flag, "true") == 0)
				guard_session_label_set(row->label, tool->tool, row->bookkeeping);
			else
				guard_session_label_set(NULL, NULL, NULL);
			break;
		case TOOL_REGISTRY:
			guard_label_changes(changesets, n, row->label, tool->tool,
								row->bookkeeping);
			break;
		case TOOL_REGISTRY_EVENT:
			guard_label_changes(changesets, n,
								psprintf("%s (revert)", row->label), tool->tool,
								NULL);
			break;
	}
}

/*
 * recognise(), in a subtransaction: a label guard cannot give (a lock
 * timeout, a registry read at REPEATABLE READ) is a WARNING, and the
 * tool's migration goes on.
 */
static void
recognise_safely(const Tool *tool, Relation rel, CommandId cid)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		recognise(tool, rel, cid);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		edata = guard_subxact_abort(oldcxt, oldowner);
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("guard could not label the changes named by the row of %s in table \"%s\": %s",
						tool->tool, RelationGetRelationName(rel), edata->message),
				 errhint("The changes stay unlabelled; guard.label() or the setting guard.label can name them.")));
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/*
 * Called by the ExecutorFinish hook after an INSERT has run, its AFTER
 * triggers included: if it wrote a migration tool's bookkeeping row, label
 * what the row names.  Every other statement costs a test or two.
 */
void
guard_labels_after_statement(QueryDesc *queryDesc)
{
	EState	   *estate = queryDesc->estate;
	ListCell   *lc;

	if (queryDesc->operation != CMD_INSERT || estate == NULL ||
		estate->es_processed == 0 || guard_bookkeeping_busy || !guard_enabled ||
		!guard_preloaded || IsInParallelMode())
		return;
	foreach(lc, estate->es_opened_result_relations)
	{
		Relation	rel = ((ResultRelInfo *) lfirst(lc))->ri_RelationDesc;
		const Tool *tool = tool_of(rel);

		if (tool != NULL && OidIsValid(get_namespace_oid("guard", true)))
			recognise_safely(tool, rel, estate->es_output_cid);
	}
}
