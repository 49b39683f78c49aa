/*-------------------------------------------------------------------------
 *
 * dryrun.c
 *	  Which dry runs may plan instead of writing.
 *
 * A dry run that can write restores for real in a subtransaction that it
 * rolls back (restore.c): whatever the real restore would run into (a
 * foreign key, a CHECK constraint, a unique index, a user's trigger, an
 * invariant, a guard rail) it runs into too, so its report is exact.  It
 * also costs as much as the restore.  A dry run that only plans (undo.c,
 * undo_plan.c: the judgement of every row, the writes played on an overlay
 * of the tables) costs a fraction of it, and gives the same report
 * wherever nothing but the key index and the rows' own values decide what
 * the writes do.
 *
 * guard_dry_run_may_plan() says whether that holds for the changes of a
 * dry run, and answers yes only when every table they touch (with its
 * partitions and partition ancestors) has
 *
 *	- no foreign key, to or from it, and no rule;
 *	- no unique or exclusion index but its key's, no CHECK constraint not
 *	  validated, no column of a domain type (a domain's constraints can
 *	  change without the table's), no FORCE ROW LEVEL SECURITY;
 *	- no user trigger that fires while restore writes as replica (ENABLE
 *	  ALWAYS or REPLICA), and guard's capture triggers already ENABLE
 *	  ALWAYS (else restore would switch them: a catalog write);
 *	- no invariant, no row limit (max_rows, max_fraction), and
 *	  guard.max_snapshot_size unset: the restore's own writes are captured
 *	  and checked like any other;
 *	- a policy that captures DDL (capture 'all') and no schema change
 *	  recorded since the oldest change undone: so the table's NOT NULL and
 *	  CHECK constraints are those the before-images met when they were
 *	  captured (a validated CHECK held for every row the table has had);
 *
 * and the changes are all row changes (no schema change, TRUNCATE, or
 * change not captured) of tables that exist, none of a restore's change
 * set.  Otherwise the dry run writes, as before.  Both kinds of dry run
 * give the same report: the regression tests run the dry runs of simple
 * tables through the plan, and restore_read_only compares the two.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"

#include "guard.h"

/* the tables of the changes $1, with their partitions and ancestors */
#define DRYRUN_RELS \
	"WITH ch AS (" \
	"  SELECT c.change_id, c.relid, c.detail, s.restore_of" \
	"    FROM guard.change c JOIN guard.changeset s USING (changeset_id)" \
	"   WHERE c.change_id = ANY ($1))," \
	" rels AS (" \
	"  SELECT DISTINCT r.relid FROM ch, LATERAL (" \
	"    SELECT ch.relid" \
	"    UNION SELECT t.relid FROM pg_catalog.pg_partition_tree(ch.relid) t" \
	"    UNION SELECT a.relid FROM pg_catalog.pg_partition_ancestors(ch.relid) a) r) "

static const char *const dryrun_query =
DRYRUN_RELS
"SELECT"
/* row changes of live tables, none a restore's */
"  NOT EXISTS (SELECT FROM ch WHERE ch.detail IS NOT NULL OR ch.restore_of IS NOT NULL"
"              OR NOT EXISTS (SELECT FROM pg_catalog.pg_class k WHERE k.oid = ch.relid))"
/* no schema change since, and DDL is captured */
"  AND NOT EXISTS (SELECT FROM guard.change l WHERE l.relid IN (SELECT relid FROM rels)"
"                  AND l.change_id > (SELECT pg_catalog.min(change_id) FROM ch)"
"                  AND l.detail IS NOT NULL)"
"  AND NOT EXISTS (SELECT FROM guard.policy p WHERE p.relid::oid IN (SELECT relid FROM rels)"
"                  AND (p.capture <> 'all' OR p.max_rows IS NOT NULL"
"                       OR p.max_fraction IS NOT NULL))"
"  AND NOT EXISTS (SELECT FROM guard.invariant i WHERE i.relid::oid IN (SELECT relid FROM rels))"
/* no trigger of the user's that fires as replica; guard's fire always */
"  AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t"
"                  WHERE t.tgrelid IN (SELECT relid FROM rels) AND NOT t.tgisinternal"
"                  AND CASE WHEN t.tgfoid IN (SELECT f.oid FROM pg_catalog.pg_proc f"
"                                             JOIN pg_catalog.pg_namespace n"
"                                               ON n.oid = f.pronamespace"
"                                            WHERE n.nspname = 'guard')"
"                           THEN t.tgenabled = 'O'"
"                                AND t.tgname IN ('guard_capture_ins', 'guard_capture_upd',"
"                                                 'guard_capture_del')"
"                           ELSE t.tgenabled IN ('A', 'R') END)"
"  AND NOT EXISTS (SELECT FROM pg_catalog.pg_rewrite w"
"                  WHERE w.ev_class IN (SELECT relid FROM rels) AND w.rulename <> '_RETURN')"
/* no foreign key either way, no CHECK constraint not validated */
"  AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k"
"                  WHERE (k.contype = 'f' AND (k.conrelid IN (SELECT relid FROM rels)"
"                                              OR k.confrelid IN (SELECT relid FROM rels)))"
"                     OR (k.contype = 'c' AND NOT k.convalidated"
"                         AND k.conrelid IN (SELECT relid FROM rels)))"
/* one unique index at most (the key's) */
"  AND NOT EXISTS (SELECT FROM pg_catalog.pg_index x"
"                  WHERE x.indrelid IN (SELECT relid FROM rels)"
"                  AND (x.indisunique OR x.indisexclusion)"
"                  GROUP BY x.indrelid HAVING pg_catalog.count(*) > 1)"
/* no domain-typed column, no FORCE ROW LEVEL SECURITY */
"  AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a"
"                  JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid"
"                  WHERE a.attrelid IN (SELECT relid FROM rels) AND a.attnum > 0"
"                  AND NOT a.attisdropped AND ty.typtype = 'd')"
"  AND NOT EXISTS (SELECT FROM pg_catalog.pg_class k"
"                  WHERE k.oid IN (SELECT relid FROM rels) AND k.relforcerowsecurity)";

/*
 * May the dry run of the changes "ids" (int64 *) only plan, and give the
 * report of the dry run that writes?  See the file's header.
 */
bool
guard_dry_run_may_plan(List *ids)
{
	GuardAsRole owner;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1];
	Datum	   *elems;
	int			n = 0;
	ListCell   *lc;
	bool		may = false;

	if (ids == NIL || guard_max_snapshot_size >= 0)
		return false;
	elems = palloc(sizeof(Datum) * list_length(ids));
	foreach(lc, ids)
		elems[n++] = Int64GetDatum(*(int64 *) lfirst(lc));
	values[0] = PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));

	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql(dryrun_query, 1, types, values, NULL);
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &isnull);

		may = !isnull && DatumGetBool(d);
	}
	guard_as_role_end(&owner);
	return may;
}
