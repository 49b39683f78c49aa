/*-------------------------------------------------------------------------
 *
 * undo_sql.c
 *	  Row undo: the set-based statements that write the rows back.
 *
 * The rows to write back wait in a tuplestore that the statements read as
 * an ephemeral named relation (undo.h describes its columns).  In order:
 *
 *	1. DELETE the rows the change inserted;
 *	2. DELETE the rows whose key the change moved, at the key they have now;
 *	3. DELETE the live rows that rows to insert replace (overwrite, or a
 *	   later change of the change's own change set put them there);
 *	4. UPDATE the rows undone in place, only the columns some row writes
 *	   back, each row only its own (a bitmap per row);
 *	5. INSERT the moved rows, whole, under their old key;
 *	6. INSERT the rows the change deleted.
 *
 * The statements whose rows count as restored call guard._restore_tick()
 * for each row they reach (in the join's filter, the last qual), so that
 * guard.restore_progress() shows the rows written so far while one
 * set-based statement runs.
 *
 * All the deletes come before the inserts, so that keys come back free,
 * whatever order the change moved them in.  Rows are matched by key with
 * the key index's own equality operator, schema-qualified (citext's, or
 * hstore's, not one that "=" would resolve to by name).  Each statement
 * lists only the columns it writes, and the tuplestore holds one value per
 * column (plus the key, the op and the bitmap): so a table of any width
 * stays within the 1664 entries a target list may have.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_operator.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "undo.h"

const char	guard_undo_opchar[UNDO_NOPS] = {'I', 'U', 'D', 'K'};

/*
 * An operator as OPERATOR(schema.name), to be used whatever the search path.
 */
static char *
qualified_operator(Oid opno)
{
	HeapTuple	tuple = SearchSysCache1(OPEROID, ObjectIdGetDatum(opno));
	Form_pg_operator op;
	char	   *result;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for operator %u", opno);
	op = (Form_pg_operator) GETSTRUCT(tuple);
	result = psprintf("OPERATOR(%s.%s)",
					  quote_identifier(get_namespace_name(op->oprnamespace)),
					  NameStr(op->oprname));
	ReleaseSysCache(tuple);
	return result;
}

/*
 * " AND t.key_1 OPERATOR(...) r.<col>..." for each key column: against the
 * key a row has now (k_N) or, with "old", the key it goes back to (the v_N
 * of the key's columns).
 */
static char *
key_join(RowUndo *u, bool old)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int k = 0; k < u->change->nkeys; k++)
	{
		appendStringInfo(&buf, " AND t.%s %s r.",
						 quote_identifier(u->cols[u->keycol[k]].name),
						 qualified_operator(u->eqop[k]));
		if (old)
			appendStringInfo(&buf, "v_%d", u->keycol[k]);
		else
			appendStringInfo(&buf, "k_%d", k + 1);
	}
	return buf.data;
}

/*
 * INSERT INTO the table the rows of op "op": every column the op writes
 * (all but generated ones; the columns the table gained since the change
 * only for moved rows, which carry their live values).
 */
static char *
insert_sql(RowUndo *u, UndoOp op)
{
	StringInfoData sql;
	StringInfoData sel;
	bool		first = true;

	initStringInfo(&sql);
	initStringInfo(&sel);
	appendStringInfo(&sql, "INSERT INTO %s AS t (", u->qualname);
	for (int c = 0; c < u->ncols; c++)
	{
		if (u->cols[c].generated ||
			(u->cols[c].recorded < 0 && op != UNDO_MOVE))
			continue;
		appendStringInfo(&sql, "%s%s", first ? "" : ", ",
						 quote_identifier(u->cols[c].name));
		appendStringInfo(&sel, "%sr.v_%d", first ? "" : ", ", c);
		first = false;
	}
	appendStringInfo(&sql, ") OVERRIDING SYSTEM VALUE SELECT %s FROM " UNDO_ENR_NAME
					 " r WHERE r.op = '%c'" UNDO_TICK, sel.data, guard_undo_opchar[op]);
	return sql.data;
}

/*
 * UPDATE the rows undone in place: each column some row writes back takes
 * the row's value where its bit is set, and keeps its own elsewhere.
 */
static char *
update_sql(RowUndo *u, bool by_tid)
{
	StringInfoData sql;
	bool		first = true;

	initStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE %s AS t SET ", u->qualname);
	for (int c = 0; c < u->ncols; c++)
	{
		const char *col = quote_identifier(u->cols[c].name);

		if (!u->cols[c].used || u->cols[c].generated)
			continue;
		appendStringInfo(&sql, "%s%s = CASE WHEN pg_catalog.get_bit(r.m, %d) = 1 THEN r.v_%d ELSE t.%s END",
						 first ? "" : ", ", col, c, c, col);
		first = false;
	}
	if (by_tid)
		appendStringInfo(&sql, " FROM " UNDO_ENR_NAME " r WHERE r.op = '%c'"
						 " AND r.t IS NOT NULL AND t.ctid OPERATOR(pg_catalog.=) r.t" UNDO_TICK,
						 guard_undo_opchar[UNDO_UPDATE]);
	else
		appendStringInfo(&sql, " FROM " UNDO_ENR_NAME " r WHERE r.op = '%c'%s%s" UNDO_TICK,
						 guard_undo_opchar[UNDO_UPDATE], u->by_tid ? " AND r.t IS NULL" : "",
						 key_join(u, false));
	return sql.data;
}

/*
 * Add one statement to the list.
 */
static List *
add_statement(List *list, char *sql, int64 rows, bool counts)
{
	UndoStatement *st = palloc(sizeof(UndoStatement));

	st->sql = sql;
	st->rows = rows;
	st->counts = counts;
	return lappend(list, st);
}

/*
 * The statements that write the collected rows back, in the order they
 * must run (see the file's header), only those that have rows.
 */
List *
guard_undo_statements(RowUndo *u)
{
	List	   *list = NIL;
	int64	   *n = u->napply;

	if (n[UNDO_DELETE_INSERTED] > 0)
		list = add_statement(list,
							 psprintf("DELETE FROM %s AS t USING " UNDO_ENR_NAME " r WHERE r.op = '%c'%s" UNDO_TICK,
									  u->qualname, guard_undo_opchar[UNDO_DELETE_INSERTED],
									  key_join(u, false)),
							 n[UNDO_DELETE_INSERTED], true);
	if (n[UNDO_MOVE] > 0)
		list = add_statement(list,
							 psprintf("DELETE FROM %s AS t USING " UNDO_ENR_NAME " r WHERE r.op = '%c'%s",
									  u->qualname, guard_undo_opchar[UNDO_MOVE],
									  key_join(u, false)),
							 n[UNDO_MOVE], false);
	if (u->replaces)
		list = add_statement(list,
							 psprintf("DELETE FROM %s AS t USING " UNDO_ENR_NAME " r"
									  " WHERE r.op IN ('%c', '%c') AND r.m IS NOT NULL%s",
									  u->qualname, guard_undo_opchar[UNDO_MOVE],
									  guard_undo_opchar[UNDO_INSERT_DELETED], key_join(u, true)),
							 0, false);
	if (u->ntid > 0)
		list = add_statement(list, update_sql(u, true), u->ntid, true);
	if (n[UNDO_UPDATE] > u->ntid)
		list = add_statement(list, update_sql(u, false), n[UNDO_UPDATE] - u->ntid, true);
	if (n[UNDO_MOVE] > 0)
		list = add_statement(list, insert_sql(u, UNDO_MOVE), n[UNDO_MOVE], true);
	if (n[UNDO_INSERT_DELETED] > 0)
		list = add_statement(list, insert_sql(u, UNDO_INSERT_DELETED),
							 n[UNDO_INSERT_DELETED], true);
	return list;
}
