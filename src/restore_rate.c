/*-------------------------------------------------------------------------
 *
 * restore_rate.c
 *	  The rates real restores record, and the estimates every restore
 *	  report gives from them.
 *
 * Each report row gives the change's estimated_seconds: its rows times the
 * seconds per row of the last real restores of the same kind of change in
 * this database, which every real restore records (guard.restore_rate);
 * NULL before the first.  Reading the rates writes nothing, so a dry run
 * on a hot standby gives the primary's estimate (from the rates it
 * replicated).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "guard.h"

/*
 * The rows a change's undo dealt with, the measure of the restore rates:
 * each row is restored or skipped (a conflict is one or the other too).
 */
static int64
report_rows(const GuardRestoreReport *report)
{
	return report->restored + report->skipped;
}

/*
 * The expected duration of a change's undo, from the rates of the last
 * real restores of changes of the same kind in this database: their
 * seconds per row times the report's rows (for kinds whose undo touches
 * no rows, their mean duration).  None when there were none.
 */
void
guard_restore_estimate(GuardRestoreReport *report)
{
	GuardAsRole owner;
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(report->kind);
	values[1] = Int64GetDatum(report_rows(report));
	guard_as_role_begin(&owner, InvalidOid);
	guard_run_sql("SELECT CASE WHEN pg_catalog.sum(r.rows) > 0"
				  "  THEN $2 * pg_catalog.sum(r.seconds) / pg_catalog.sum(r.rows)"
				  "  ELSE pg_catalog.avg(r.seconds) END"
				  " FROM (SELECT rows, seconds FROM guard.restore_rate WHERE kind = $1"
				  "  ORDER BY at DESC, change_id DESC LIMIT 20) r",
				  2, types, values, NULL);
	if (SPI_processed > 0)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &report->has_estimate);

		report->has_estimate = !report->has_estimate;
		if (report->has_estimate)
			report->estimate = DatumGetFloat8(d);
	}
	guard_as_role_end(&owner);
}

/*
 * Record the rate of each change a real restore undid, for the estimates
 * of later dry runs: its rows and seconds, the foreign key check shared
 * among the changes by their rows.
 */
void
guard_restore_record_rates(List *reports, double fk_seconds)
{
	int64		rows = 0;
	ListCell   *lc;
	GuardAsRole owner;
	Oid			types[5] = {INT8OID, INT8OID, TEXTOID, INT8OID, FLOAT8OID};
	Datum		values[5];

	foreach(lc, reports)
		rows += report_rows((GuardRestoreReport *) lfirst(lc));
	values[0] = Int64GetDatum(guard_changeset_current(true));
	guard_as_role_begin(&owner, InvalidOid);
	foreach(lc, reports)
	{
		GuardRestoreReport *report = lfirst(lc);
		double		share = rows > 0 ? (double) report_rows(report) / rows :
			1.0 / list_length(reports);

		values[1] = Int64GetDatum(report->change_id);
		values[2] = CStringGetTextDatum(report->kind);
		values[3] = Int64GetDatum(report_rows(report));
		values[4] = Float8GetDatum(report->seconds + fk_seconds * share);
		guard_run_sql("INSERT INTO guard.restore_rate (changeset_id, change_id, kind, rows, seconds)"
					  " VALUES ($1, $2, $3, $4, $5)", 5, types, values, NULL);
	}
	guard_as_role_end(&owner);
}
