/*-------------------------------------------------------------------------
 *
 * changeset_restore.c
 *	  The change set of a restore: its label, what it undoes, and what
 *	  undoing it gives back.
 *
 * A restore is a change set like any other (changes.c makes it); this file
 * names it after what it undoes, records which change set that is,
 * reactivates the changes whose undo it undoes, and tells the migration
 * tools' bookkeeping (bookkeeping.c) which migrations are applied again
 * and which are not any more.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "guard.h"

/*
 * The change sets of "changes" (GuardChange), as an int8[] datum.
 */
static Datum
changeset_ids(List *changes)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(changes), 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, changes)
		elems[n++] = Int64GetDatum(((GuardChange *) lfirst(lc))->changeset_id);
	return PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * The number of changes change set "id" holds.
 */
static int64
changeset_size(int64 id)
{
	GuardAsRole owner;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	bool		isnull;
	int64		n;

	values[0] = Int64GetDatum(id);
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT pg_catalog.count(*) FROM guard.change WHERE changeset_id = $1",
				  1, types, values, NULL);
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									1, &isnull));
	guard_as_role_end(&owner);
	return n;
}

/*
 * The label of a restore's change set: what it undoes, and which part when
 * it undoes one labelled part of a change set.
 */
static char *
restore_label(int64 restore_of, List *changes)
{
	StringInfoData label;
	ListCell   *lc;
	const char *part = NULL;

	initStringInfo(&label);
	if (restore_of != 0)
	{
		/* all of one labelled part (or of a change set of one label) */
		foreach(lc, changes)
		{
			GuardChange *change = lfirst(lc);

			if (change->label == NULL ||
				(part != NULL && strcmp(part, change->label) != 0))
			{
				part = NULL;
				break;
			}
			part = change->label;
		}
		appendStringInfo(&label, "restore of change set " INT64_FORMAT, restore_of);
		if (part != NULL && changeset_size(restore_of) > list_length(changes))
			appendStringInfo(&label, ", part \"%s\"", part);
		return label.data;
	}
	appendStringInfoString(&label, list_length(changes) > 1 ?
						   "restore of changes " : "restore of change ");
	foreach(lc, changes)
		appendStringInfo(&label, "%s" INT64_FORMAT,
						 foreach_current_index(lc) ? ", " : "",
						 ((GuardChange *) lfirst(lc))->change_id);
	return label.data;
}

/*
 * Undoing changes of restores redoes changes those restores had undone:
 * make them active (in effect, and restorable) again, but only those whose
 * undo is undone now.  A restore undone in part (restore_change of one of
 * its changes, restore_to of some of its tables) still undoes the rest.
 *
 * Which change of a restore undid which change is not recorded: a change
 * records the change set that restored it (restored_by), and the restore's
 * own writes are recorded by table, as any other.  A restore writes each
 * change back through the very table it was recorded on (a partitioned
 * table's parent or one partition, as the change's statement named it),
 * so its writes are recorded on that table, and the most exact rule the
 * records allow is: a change restored by restore R is active again when
 * this restore undoes a change of R to the same table.  Not to one of its
 * partitions or ancestors: those are the undo of the changes recorded on
 * them.  Nor when R is undone whole: R recorded nothing for what it did
 * not write as a change (a DROP TABLE is undone from the trash; a change
 * whose rows are gone since has nothing to undo), and undoing R does not
 * undo that.
 *
 * Within one table the parts of R are not told apart: undoing one of R's
 * changes to a table (R may record several, one per statement it runs)
 * makes every change R restored on it active.  Erring that way, a change
 * whose undo is still in effect shows as a conflict when its change set
 * is restored again (on_conflict settles it); erring the other way, a
 * change whose undo was undone would be left out of that restore
 * silently.
 */
static void
reactivate_undone(List *changes)
{
	int			n = list_length(changes);
	Datum	   *sets = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *rels = palloc(sizeof(Datum) * Max(n, 1));
	ListCell   *lc;
	GuardAsRole owner;
	Oid			types[2] = {INT8ARRAYOID, OIDARRAYOID};
	Datum		values[2];

	foreach(lc, changes)
	{
		GuardChange *change = lfirst(lc);

		sets[foreach_current_index(lc)] = Int64GetDatum(change->changeset_id);
		rels[foreach_current_index(lc)] = ObjectIdGetDatum(change->relid);
	}
	values[0] = PointerGetDatum(construct_array(sets, n, INT8OID, sizeof(int64),
												true, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(rels, n, OIDOID, sizeof(Oid),
												true, TYPALIGN_INT));
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("UPDATE guard.change SET state = 'active', restored_by = NULL"
				  " WHERE state = 'restored' AND (restored_by, relid) IN"
				  "  (SELECT cs, relid FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),"
				  "   pg_catalog.unnest($2::pg_catalog.oid[])) AS undone (cs, relid))",
				  2, types, values, NULL);
	guard_as_role_end(&owner);
}

/*
 * Make the current transaction's change set the record of a restore: label
 * it (unless labelled already) and note which change set it undoes.  The
 * migration tools' bookkeeping follows: a migration undone whole is no
 * longer recorded as applied, and one that an undone restore had undone is
 * recorded again.
 */
void
guard_changeset_begin_restore(int64 restore_of, List *changes)
{
	int64		id = guard_changeset_current(true);
	GuardAsRole owner;
	Oid			types[3] = {INT8OID, INT8OID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	/* a restore is no part of a migration: no bookkeeping row names it */
	guard_label_restoring();

	values[0] = Int64GetDatum(id);
	values[1] = Int64GetDatum(restore_of);
	nulls[1] = restore_of != 0 ? ' ' : 'n';
	values[2] = CStringGetTextDatum(restore_label(restore_of, changes));
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("UPDATE guard.changeset SET label = coalesce(label, $3),"
				  " restore_of = coalesce($2, restore_of) WHERE changeset_id = $1",
				  3, types, values, nulls);
	guard_as_role_end(&owner);

	/*
	 * Undoing a restore redoes the changes it undid (those of the part
	 * undone): they are in effect, and restorable, again.
	 */
	guard_bookkeeping_recall(changeset_ids(changes), false);
	reactivate_undone(changes);
	guard_bookkeeping_forget(changes, false);
}

/*
 * What guard_changeset_begin_restore() would tell the migration tools, for
 * a restore that only plans (a dry run on a hot standby or in a read-only
 * transaction): counted and reported, nothing written.
 */
void
guard_changeset_plan_restore(List *changes)
{
	guard_bookkeeping_recall(changeset_ids(changes), true);
	guard_bookkeeping_forget(changes, true);
}
