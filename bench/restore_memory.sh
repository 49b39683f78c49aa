#!/usr/bin/env bash
# bench/restore_memory.sh: the backend memory of a restore and of its dry
# run, as the rows written since the change grow (SPEC.md, Guarantee 8).
# Needs root (it builds guard into a private installation and runs the
# server as the `postgres` OS user), like bench/run.sh.
#
#   bash bench/restore_memory.sh                5,000,000 rows; 0, 10, 20% rewritten
#   BENCH_ROWS=1000000 bash bench/restore_memory.sh
#   BENCH_PCTS="0 20" bash bench/restore_memory.sh
#   BENCH_VACUUM=0 ...                          no VACUUM before the restore
#
# For each share of rows rewritten since: a table (id int PRIMARY KEY, v int,
# pad text) of BENCH_ROWS rows, protected; one change set UPDATE t SET v =
# v + 1 (timed); then the share of its rows updated again by later change
# sets (100,000 rows each, so that they are later change sets, not one);
# then, each in a fresh session whose RssAnon (/proc/<pid>/status) is
# sampled every 50 ms: the dry run of the restore of the first change set
# (on_conflict => 'skip': the rewritten rows are conflicts), and the
# restore itself.  Reported: time, and peak RssAnon minus the session's
# RssAnon before the call, at work_mem = 4MB (BENCH_WORK_MEM), and the dry
# run's estimated_seconds (from the restores of the shares before it: NULL
# for the first).
#
# Output: a table on stdout, and bench/results/restore-memory-latest.md.
# Timings are informative only (the machine may be shared); memory does not
# depend on load.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

[[ $(id -u) == 0 ]] || die "run as root (it runs the server as postgres)"
ROWS=${BENCH_ROWS:-5000000}
PCTS=${BENCH_PCTS:-"0 10 20"}
WORK_MEM=${BENCH_WORK_MEM:-4MB}
# VACUUM the table between the change and the restore (as autovacuum would,
# a minute after an UPDATE of every row): the restore's writes then find the
# space of the versions the UPDATE left.  BENCH_VACUUM=0: restore right after.
VACUUM=${BENCH_VACUUM:-1}
RESULTS_DIR=$HERE/results
mkdir -p "$RESULTS_DIR"

TMP=$(mktemp -d /tmp/guard-bench-mem.XXXXXX)
chmod 755 "$TMP"
cleanup() {
	local rc=$?
	set +e
	stop_cluster
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_packages
build_guard "$ROOT" "$TMP"
init_cluster "$TMP"
echo "work_mem = '$WORK_MEM'" >>"$PGDATA_DIR/postgresql.conf"
start_cluster
as_pg "$PGBIN/createdb" -h "$SOCKDIR" -p "$PORT" "$BENCH_DB"
psql_db -c "CREATE EXTENSION guard"

# measure STATEMENT: run it in a fresh session, sampling the backend's
# RssAnon.  Sets M_MS (duration), M_GROWTH_KB (peak minus before), M_OUT.
measure() {
	local stmt=$1 pidf=$TMP/backend.pid out=$TMP/measured.out
	rm -f "$pidf" "$out"
	psql_db >"$out" 2>&1 <<-SQL &
	SELECT pg_backend_pid() \g $pidf
	SELECT pg_sleep(0.3);
	SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
	$stmt
	SELECT round((extract(epoch FROM clock_timestamp()) - :t0) * 1000) AS ms \gset
	\echo ms :ms
	SQL
	local job=$! bpid="" base="" peak=0 k val rest
	for _ in $(seq 300); do [[ -s $pidf ]] && break; sleep 0.05; done
	bpid=$(cat "$pidf" 2>/dev/null || true)
	while [[ -n $bpid ]] && kill -0 "$job" 2>/dev/null; do
		while read -r k val rest; do
			if [[ $k == RssAnon: ]]; then
				[[ -z $base ]] && base=$val
				((val > peak)) && peak=$val
			fi
		done <"/proc/$bpid/status" 2>/dev/null || true
		sleep 0.05
	done
	wait "$job" || { cat "$out" >&2; die "statement failed: $stmt"; }
	M_MS=$(awk '$1=="ms"{print $2}' "$out")
	M_GROWTH_KB=$((peak - ${base:-0}))
	M_OUT=$out
}

REPORT=$RESULTS_DIR/restore-memory-latest.md
{
	echo "# restore memory: $ROWS rows, work_mem = $WORK_MEM, VACUUM before the restore: $([[ $VACUUM == 1 ]] && echo yes || echo no) ($(date -u +%F))"
	echo
	echo "| rewritten since | UPDATE | dry run | dry run: RssAnon growth | restore | restore: RssAnon growth | estimated_seconds |"
	echo "|---:|---:|---:|---:|---:|---:|---:|"
} >"$REPORT"

for pct in $PCTS; do
	rewrite=$((ROWS * pct / 100))
	log "$pct% ($rewrite rows) rewritten since: building the table"
	psql_db >/dev/null <<-SQL
	DROP TABLE IF EXISTS t;
	DELETE FROM guard.snapshot; DELETE FROM guard.change; DELETE FROM guard.changeset;
	CREATE TABLE t (id int PRIMARY KEY, v int, pad text);
	INSERT INTO t SELECT g, g, repeat('x', 40) FROM generate_series(1, $ROWS) g;
	VACUUM ANALYZE t;
	SELECT guard.protect('t');
	SQL
	measure "UPDATE t SET v = v + 1;"
	update_ms=$M_MS
	cs=$(psql_db -c "SELECT max(changeset_id) FROM guard.changeset")
	for ((from = 1; from <= rewrite; from += 100000)); do
		to=$((from + 99999 < rewrite ? from + 99999 : rewrite))
		psql_db -c "UPDATE t SET v = v + 1 WHERE id BETWEEN $from AND $to"
	done
	if [[ $VACUUM == 1 ]]; then
		psql_db -c "VACUUM ANALYZE t" -c CHECKPOINT
	else
		psql_db -c CHECKPOINT
	fi
	measure "SELECT rows_restored, rows_skipped, conflicts, round(estimated_seconds::numeric, 1) FROM guard.restore($cs, dry_run => true, on_conflict => 'skip');"
	dry_ms=$M_MS dry_kb=$M_GROWTH_KB
	estimate=$(grep '|' "$M_OUT" | head -1 | cut -d'|' -f4)
	log "$pct%: dry run $dry_ms ms, +$((dry_kb / 1024)) MB: $(grep '|' "$M_OUT" | head -1)"
	measure "SELECT rows_restored, rows_skipped, conflicts FROM guard.restore($cs, on_conflict => 'skip');"
	restore_ms=$M_MS restore_kb=$M_GROWTH_KB
	log "$pct%: restore $restore_ms ms, +$((restore_kb / 1024)) MB: $(grep '|' "$M_OUT" | head -1)"
	printf '| %d%% (%d rows) | %.1f s | %.1f s | +%.1f MB | %.1f s | +%.1f MB | %s |\n' \
		"$pct" "$rewrite" "$(echo "$update_ms / 1000" | bc -l)" "$(echo "$dry_ms / 1000" | bc -l)" \
		"$(echo "$dry_kb / 1024" | bc -l)" "$(echo "$restore_ms / 1000" | bc -l)" \
		"$(echo "$restore_kb / 1024" | bc -l)" "${estimate:-NULL}" >>"$REPORT"
done
cat "$REPORT"
