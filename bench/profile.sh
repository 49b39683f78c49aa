#!/usr/bin/env bash
# bench/profile.sh: perf profile of one workload's timed statement in the
# backend that runs it, for a given variant (default guard).
#
#   bash bench/profile.sh W1            guard's backend on W1
#   bash bench/profile.sh W5 none       the baseline, to compare
#
# Workloads: W1 W2 W3 W5 (as in run.sh); R1: the restore of W1's UPDATE,
# right after it (the UPDATE itself runs before perf attaches); and W4:
# TPC-B's five statements and a COMMIT, 20,000 times, in one procedure (no
# client round trips, synchronous_commit off: what is left is the backend's
# own work per transaction, which capture adds to).  Uses the software cpu-clock event
# when hardware counters are not available (VMs), call graphs with -g.
# Prints the top symbols (self time) and a caller view of guard's own
# functions; the perf data stays in bench/results/perf-<W>-<variant>.data.
# Not a benchmark: perf itself slows the backend down.  Do not run it while
# run.sh runs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

[[ $(id -u) == 0 ]] || die "run as root"
W=${1:-W1}
V=${2:-guard}
command -v perf >/dev/null || {
	apt-get install -y -qq linux-perf >/dev/null 2>&1 || true
}
command -v perf >/dev/null || die "perf is not installed (apt-get install linux-perf)"
EVENT=cpu-clock
perf stat -e instructions true 2>&1 | grep -q 'not supported' || EVENT=cycles

case $W in
W1) TBL=pgbench_accounts TPL=accounts10 KEY=aid STMT="UPDATE pgbench_accounts SET abalance = abalance + 1" ;;
W2) TBL=w2 TPL=w2tpl KEY=id STMT="UPDATE w2 SET name = name || ' (renamed)'" ;;
W3) TBL=pgbench_accounts TPL=accounts10 KEY=aid STMT="DELETE FROM pgbench_accounts WHERE aid % 10 = 0" ;;
W5) TBL=pgbench_accounts TPL=accounts10 KEY=aid
	STMT="DO \$\$ BEGIN FOR i IN 1..10000 LOOP UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = (i * 97) % 1000000 + 1; END LOOP; END \$\$" ;;
W4) TBL=pgbench_accounts TPL=accounts10 KEY=aid STMT="SET synchronous_commit = off; CALL bench.tpcb_loop(20000)" ;;
R1) TBL=pgbench_accounts TPL=accounts10 KEY=aid
	[[ $V == guard ]] || die "R1 restores a change guard captured: variant guard only"
	PRE="UPDATE pgbench_accounts SET abalance = abalance + 1;"
	STMT="SELECT rows_restored FROM guard.restore((SELECT max(changeset_id) FROM guard.changeset))" ;;
*) die "profile.sh supports W1 W2 W3 W4 W5 R1" ;;
esac

RESULTS_DIR=$HERE/results
mkdir -p "$RESULTS_DIR"
TMP=$(mktemp -d /tmp/guard-profile.XXXXXX)
chmod 755 "$TMP"
cleanup() {
	local rc=$?
	set +e
	stop_cluster
	rm -rf "$TMP"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_packages
build_guard "$ROOT" "$TMP"
init_cluster "$TMP"
start_cluster
as_pg "$PGBIN/createdb" -h "$SOCKDIR" -p "$PORT" "$BENCH_DB"
as_pg "$PGBIN/pgbench" -i -s 10 -I dtGvp -q -h "$SOCKDIR" -p "$PORT" "$BENCH_DB" >/dev/null 2>&1
psql_db <"$HERE/sql/setup.sql"
psql_db <<-SQL
CALL bench.reset('$TBL', '$TPL', '$KEY', '$V');
VACUUM ANALYZE public.$TBL;
CHECKPOINT;
SQL

PIDF=$TMP/backend.pid
DATA=$RESULTS_DIR/perf-$W-$V.data
psql_db >"$TMP/out" 2>&1 <<-SQL &
${PRE:-}
SELECT pg_backend_pid() \g $PIDF
SELECT pg_sleep(1);
\timing on
$STMT;
SQL
JOB=$!
for _ in $(seq 200); do [[ -s $PIDF ]] && break; sleep 0.05; done
BPID=$(cat "$PIDF")
log "recording $EVENT on backend $BPID ($W, $V)"
perf record -q -e "$EVENT" -g -p "$BPID" -o "$DATA" 2>/dev/null &
PERF=$!
wait "$JOB"
kill -INT "$PERF" 2>/dev/null || true
wait "$PERF" || true
grep -h '^Time' "$TMP/out" || true

# head closes the pipe early: perf report's SIGPIPE is not a failure
echo "== top symbols, self time ($W, $V) =="
{ perf report -i "$DATA" --no-children --sort symbol,dso --stdio 2>/dev/null |
	grep -v '^#' | grep -E '^ +[0-9.]+%' | head -40; } || true
echo
echo "== inclusive time (children), top 40 =="
{ perf report -i "$DATA" --children --sort symbol --stdio -g none 2>/dev/null |
	grep -v '^#' | grep -E '^ +[0-9.]+%' | head -40; } || true
echo
echo "== guard's own functions, inclusive time =="
{ perf report -i "$DATA" --children --sort symbol --stdio -g none 2>/dev/null |
	grep -E '^ +[0-9.]+%' | grep -E 'guard_|writer_|shadow_|changeset_' | head -30; } || true
