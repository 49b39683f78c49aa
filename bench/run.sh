#!/usr/bin/env bash
# bench/run.sh: guard's capture cost against no capture and against what a
# user would otherwise pick (PL/pgSQL row trigger, transition-table trigger,
# table_log).  `make bench` runs it.  Needs root (it installs packages and
# guard, and runs the server as the `postgres` OS user).
#
#   bash bench/run.sh              all workloads (about 25 minutes)
#   bash bench/run.sh W1 W5        a subset
#   BENCH_QUICK=1 bash bench/run.sh  smoke test: 1 repetition, 10 s pgbench,
#                                  2M rows for W6
#
# Other knobs: BENCH_REPS (default 3), BENCH_W4_SECS (30), BENCH_W6_SCALE (50),
# BENCH_SLOW_RATIO (4: a peer slower than that in rep 1 is not repeated),
# BENCH_FROM_HEAD=1 (build committed HEAD, not the work tree),
# BENCH_NO_BUILD=1 (use the system's installed guard), BENCH_REPORT_ONLY=1
# (only rebuild latest.md from bench/results/raw-latest.tsv of an earlier run), BENCH_KEEP=1 (keep the temp dir).
#
# Method: one throwaway cluster; for each workload, every repetition runs every
# variant once, in an order rotated per repetition (interleaved, so drifting
# machine load hits all variants alike).  Before each timed statement the table
# is rebuilt from a pristine template, the variant attached, VACUUM ANALYZE
# and CHECKPOINT run; the statement is then timed inside a fresh session with
# clock_timestamp() (commit included, setup excluded).  Medians are reported.
# Benchmarks never assert on time: this script fails only if something breaks.
#
# Output: bench/results/latest.md (also printed), bench/results/raw-latest.tsv.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

[[ $(id -u) == 0 ]] || die "run as root (it installs packages and runs the server as postgres)"

QUICK=${BENCH_QUICK:-0}
if [[ $QUICK == 1 ]]; then
	REPS=${BENCH_REPS:-1}
	W4_SECS=${BENCH_W4_SECS:-10}
	W6_SCALE=${BENCH_W6_SCALE:-20}
else
	REPS=${BENCH_REPS:-3}
	W4_SECS=${BENCH_W4_SECS:-30}
	W6_SCALE=${BENCH_W6_SCALE:-50}
fi
# W6 measures memory, which does not vary between runs; its timing is only
# informative, and one 5M-row run pair costs ~3 minutes: 1 repetition.
W6_REPS=${BENCH_W6_REPS:-1}
WORKLOADS=("$@")
((${#WORKLOADS[@]})) || WORKLOADS=(W1 W2 W3 W5 W6 W4)
for w in "${WORKLOADS[@]}"; do
	[[ $w =~ ^W[1-6]$ ]] || die "unknown workload $w (W1..W6)"
done
selected() { [[ " ${WORKLOADS[*]} " == *" $1 "* ]]; }

SLOW_RATIO=${BENCH_SLOW_RATIO:-4}
PEERS=(none guard row_trigger transition tablelog)
RESULTS_DIR=$HERE/results
mkdir -p "$RESULTS_DIR"

TMP=$(mktemp -d /tmp/guard-bench.XXXXXX)
chmod 755 "$TMP"
SAMPLER=""
cleanup() {
	local rc=$?
	set +e
	[[ -n $SAMPLER ]] && kill "$SAMPLER" 2>/dev/null
	stop_cluster
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

START_TS=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
TOP_START=$(ps -eo pcpu,comm --sort=-pcpu --no-headers | head -5 | awk '{printf "%s %s%%; ", $2, $1}')

REPORT_ONLY=${BENCH_REPORT_ONLY:-0}
ensure_packages
if [[ $REPORT_ONLY == 1 ]]; then BENCH_NO_BUILD=1; fi
build_guard "$ROOT" "$TMP"
init_cluster "$TMP"
start_cluster
cpu_sampler $$ "$PGDATA_DIR/postmaster.pid" "$TMP/cpu.txt" &
SAMPLER=$!
log "cluster on $SOCKDIR port $PORT; workloads ${WORKLOADS[*]}; $REPS repetition(s)"

as_pg "$PGBIN/createdb" -h "$SOCKDIR" -p "$PORT" "$BENCH_DB"
RAW=$RESULTS_DIR/raw-latest.tsv   # written as we go: kept even if the run fails
if [[ $REPORT_ONLY == 1 ]]; then
	[[ -s $RAW ]] || die "BENCH_REPORT_ONLY=1: no $RAW"
	WORKLOADS=()
	log "BENCH_REPORT_ONLY=1: report from $RAW"
else
log "pgbench -i -s 10"
as_pg "$PGBIN/pgbench" -i -s 10 -I dtGvp -q -h "$SOCKDIR" -p "$PORT" "$BENCH_DB" >/dev/null 2>&1
psql_db <"$HERE/sql/setup.sql"
if selected W6; then
	log "W6 template: $((W6_SCALE * 100000)) rows (the rows of pgbench -i -s $W6_SCALE)"
	psql_db <<-SQL
	CREATE TABLE bench.accounts_w6 AS
	SELECT g AS aid, (g - 1) / 100000 + 1 AS bid, 0 AS abalance, ''::char(84) AS filler
	  FROM generate_series(1, $W6_SCALE * 100000) g;
	SQL
fi

: >"$RAW"
chown postgres: "$RAW"
fi

# record W VARIANT REP MS TPS WAL SNAP SNAPROWS OVERWRITTEN STORAGE PEAK BASE
record() {
	local out=() f null='\N'
	for f in "$@" "$(cut -d' ' -f1 /proc/loadavg)"; do out+=("${f:-$null}"); done
	(
		IFS=$'\t'
		echo "${out[*]}"
	) >>"$RAW"
}

# timed_run W VARIANT REP TABLE TEMPLATE KEYCOL STATEMENT OVERWRITTEN_SQL SAMPLE_MEM
#   Rebuild TABLE from bench.TEMPLATE with VARIANT attached, then time
#   STATEMENT in a fresh session.  OVERWRITTEN_SQL (guard only) computes the
#   bytes of the columns the statement will overwrite, plus keys, before it.
#   SAMPLE_MEM=1 samples the backend's RssAnon every 50 ms.
timed_run() {
	local w=$1 v=$2 rep=$3 tbl=$4 tpl=$5 key=$6 stmt=$7 owsql=$8 mem=$9
	local ow="" extra="" pidf=$TMP/backend.pid out=$TMP/timed.out
	psql_db <<-SQL
	CALL bench.reset('$tbl', '$tpl', '$key', '$v');
	VACUUM ANALYZE public.$tbl;
	SQL
	if [[ $v == guard && -n $owsql ]]; then
		ow=$(psql_db -c "$owsql")
	fi
	psql_db -c CHECKPOINT
	case $v in
	none) extra="SELECT 0 AS storage \\gset" ;;
	guard) extra="SELECT coalesce(sum(snapshot_bytes), 0) AS snap, coalesce(sum(rows), 0) AS snaprows FROM guard.changes \\gset
\\echo snap :snap :snaprows
SELECT pg_total_relation_size('guard.snapshot') + pg_total_relation_size('guard.change')
       + pg_total_relation_size('guard.changeset') AS storage \\gset" ;;
	*) extra="SELECT pg_total_relation_size('public.${tbl}_log') AS storage \\gset" ;;
	esac
	rm -f "$pidf" "$out"
	psql_db >"$out" 2>&1 <<-SQL &
	SELECT pg_backend_pid() \g $pidf
	SELECT pg_sleep(0.2);
	SELECT extract(epoch FROM clock_timestamp()) AS t0, pg_current_wal_insert_lsn() AS l0 \gset
	$stmt;
	SELECT round((extract(epoch FROM clock_timestamp()) - :t0) * 1000, 3) AS ms,
	       pg_wal_lsn_diff(pg_current_wal_insert_lsn(), :'l0') AS wal \gset
	\echo ms :ms
	\echo wal :wal
	$extra
	\echo storage :storage
	SQL
	local job=$! peak="" base="" bpid="" k val rest
	if [[ $mem == 1 ]]; then
		for _ in $(seq 300); do [[ -s $pidf ]] && break; sleep 0.05; done
		bpid=$(cat "$pidf" 2>/dev/null || true)
		peak=0
		while [[ -n $bpid ]] && kill -0 "$job" 2>/dev/null; do
			while read -r k val rest; do
				if [[ $k == RssAnon: ]]; then
					[[ -z $base ]] && base=$val
					((val > peak)) && peak=$val
				fi
			done <"/proc/$bpid/status" 2>/dev/null || true
			sleep 0.05
		done
	fi
	wait "$job" || { cat "$out" >&2; die "$w/$v: timed statement failed"; }
	local ms wal snap="" snaprows="" storage
	ms=$(awk '$1=="ms"{print $2}' "$out")
	wal=$(awk '$1=="wal"{print $2}' "$out")
	storage=$(awk '$1=="storage"{print $2}' "$out")
	if [[ $v == guard ]]; then
		snap=$(awk '$1=="snap"{print $2}' "$out")
		snaprows=$(awk '$1=="snap"{print $3}' "$out")
	fi
	record "$w" "$v" "$rep" "$ms" "" "$wal" "$snap" "$snaprows" "$ow" "$storage" "$peak" "$base"
	log "$w rep $rep $v: ${ms} ms, WAL $((wal / 1048576)) MB${peak:+, peak RssAnon $((peak / 1024)) MB}${snap:+, snapshot $snap B for $snaprows rows (overwritten+keys $ow B)}"
}

# rotate REP VARIANTS...: the variants, starting at a different one per rep.
rotate() {
	local rep=$1
	shift
	local a=("$@") n=$#
	local i
	for ((i = 0; i < n; i++)); do echo "${a[$(((i + rep - 1) % n))]}"; done
}

# slow_peers W: peers that took more than SLOW_RATIO x the baseline in rep 1.
slow_peers() {
	awk -F'\t' -v w="$1" -v r="$SLOW_RATIO" '
		$1 == w && $3 == 1 { ms[$2] = $4 }
		END { for (v in ms) if (v != "none" && v != "guard" && ms["none"] > 0 && ms[v] > r * ms["none"]) print v }' "$RAW"
}

# run_workload W TABLE TEMPLATE KEYCOL STATEMENT OVERWRITTEN_SQL SAMPLE_MEM VARIANTS...
#   A peer more than SLOW_RATIO (4) times slower than the baseline in rep 1
#   is not repeated (reported with n=1): its place in the ranking is not in
#   doubt, and repeating it would blow the time budget (table_log on W1 takes
#   over a minute per run).
run_workload() {
	local w=$1 tbl=$2 tpl=$3 key=$4 stmt=$5 owsql=$6 mem=$7
	shift 7
	local rep v skip=""
	# rep 0: an untimed warm-up of the baseline before the first workload only
	# (first statements after the cluster starts run slower)
	if [[ -z ${WARMED:-} ]]; then
		timed_run "$w" "$1" 0 "$tbl" "$tpl" "$key" "$stmt" "" "$mem"
		WARMED=1
	fi
	for ((rep = 1; rep <= REPS; rep++)); do
		for v in $(rotate "$rep" "$@"); do
			if [[ " $skip " == *" $v "* ]]; then
				log "$w rep $rep $v: skipped (more than ${SLOW_RATIO}x the baseline in rep 1)"
				continue
			fi
			timed_run "$w" "$v" "$rep" "$tbl" "$tpl" "$key" "$stmt" "$owsql" "$mem"
		done
		if ((rep == 1)); then skip=$(slow_peers "$w" | tr '\n' ' '); fi
	done
}

ACC_OW="SELECT sum(pg_column_size(aid) + pg_column_size(abalance)) FROM public.pgbench_accounts"
W5_KEYS="SELECT (i * 97) % 1000000 + 1 FROM generate_series(1, 10000) i"

for w in "${WORKLOADS[@]+"${WORKLOADS[@]}"}"; do
	case $w in
	W1)
		run_workload W1 pgbench_accounts accounts10 aid \
			"UPDATE pgbench_accounts SET abalance = abalance + 1" \
			"$ACC_OW" 1 "${PEERS[@]}"
		;;
	W2)
		run_workload W2 w2 w2tpl id \
			"UPDATE w2 SET name = name || ' (renamed)'" \
			"SELECT sum(pg_column_size(id) + pg_column_size(name)) FROM public.w2" 0 "${PEERS[@]}"
		;;
	W3)
		run_workload W3 pgbench_accounts accounts10 aid \
			"DELETE FROM pgbench_accounts WHERE aid % 10 = 0" \
			"SELECT sum(pg_column_size(aid) + pg_column_size(bid) + pg_column_size(abalance) + pg_column_size(filler)) FROM public.pgbench_accounts WHERE aid % 10 = 0" \
			0 "${PEERS[@]}"
		;;
	W5)
		# 10,000 distinct keys (97 is coprime with 1,000,000), one transaction,
		# each UPDATE a separate statement from PL/pgSQL.
		run_workload W5 pgbench_accounts accounts10 aid \
			"DO \$\$ BEGIN FOR i IN 1..10000 LOOP UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = (i * 97) % 1000000 + 1; END LOOP; END \$\$" \
			"SELECT sum(pg_column_size(aid) + pg_column_size(abalance)) FROM public.pgbench_accounts WHERE aid IN ($W5_KEYS)" \
			0 "${PEERS[@]}"
		;;
	W6)
		REPS_SAVE=$REPS REPS=$W6_REPS
		run_workload W6 pgbench_accounts accounts_w6 aid \
			"UPDATE pgbench_accounts SET abalance = abalance + 1" \
			"$ACC_OW" 1 none guard
		REPS=$REPS_SAVE
		psql_db -c "DROP TABLE IF EXISTS public.pgbench_accounts CASCADE; DROP TABLE bench.accounts_w6"
		;;
	W4)
		# Three variants: guard not in shared_preload_libraries; loaded but
		# nothing protected; pgbench_accounts protected.  Data is rebuilt
		# with pgbench -i while guard is loaded (its event triggers call its
		# C functions), then the server restarts with the variant's setting.
		for ((rep = 1; rep <= REPS; rep++)); do
			for v in $(rotate "$rep" not_loaded loaded_unprotected protected); do
				psql_db -c "TRUNCATE guard.snapshot, guard.change, guard.changeset"
				as_pg "$PGBIN/pgbench" -i -s 10 -I dtGvp -q -h "$SOCKDIR" -p "$PORT" "$BENCH_DB" >/dev/null 2>&1
				if [[ $v == not_loaded ]]; then restart_with ''; else restart_with guard; fi
				loaded=$(psql_db -c "SELECT count(*) FROM pg_settings WHERE name = 'guard.enabled'")
				if [[ $v == protected ]]; then
					psql_db -c "SELECT guard.protect('pgbench_accounts')" >/dev/null
				fi
				psql_db -c CHECKPOINT
				tps=$(as_pg "$PGBIN/pgbench" -n -M prepared -c 2 -j 2 -T "$W4_SECS" \
					-h "$SOCKDIR" -p "$PORT" "$BENCH_DB" 2>&1 |
					awk '/^tps = .*without initial/{print $3}')
				[[ -n $tps ]] || die "W4/$v: pgbench gave no TPS"
				snap=""
				if [[ $v == protected ]]; then
					snap=$(psql_db -c "SELECT count(*) FROM guard.changes")
				fi
				record W4 "$v" "$rep" "" "$tps" "" "" "$snap" "" "" "" ""
				log "W4 rep $rep $v: $tps TPS (guard loaded: $loaded${snap:+, $snap changes recorded})"
				if [[ $v == not_loaded ]]; then restart_with guard; fi
			done
		done
		;;
	esac
done

# Report: load the raw rows into the cluster and let SQL do medians and ratios.
psql_db <<-SQL
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE bench.results (
	workload text, variant text, rep int, ms float8, tps float8,
	wal_bytes bigint, snap_bytes bigint, snap_rows bigint, overwritten_bytes bigint,
	storage_bytes bigint, peak_anon_kb bigint, base_anon_kb bigint, load1 float8);
\copy bench.results FROM '$RAW'
SQL
if [[ $REPORT_ONLY == 1 ]]; then mapfile -t WORKLOADS < <(cut -f1 "$RAW" | sort -u); fi
END_TS=$(date +%s)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
touch "$TMP/cpu.txt"
CPU_OTHERS=$(awk '{print $1}' "$TMP/cpu.txt" | sort -n | awk '{a[NR]=$1} END {k = int(NR * 0.9); if (k < 1) k = 1; if (NR) printf "median %s%%, 90th percentile %s%%, max %s%% (of both cores, %d samples of 5 s)", a[int((NR+1)/2)], a[k], a[NR], NR}')
CPU_OURS=$(awk '{print $2}' "$TMP/cpu.txt" | sort -n | awk '{a[NR]=$1} END {if (NR) printf "median %s%%", a[int((NR+1)/2)]}')
LOADS=$(awk '$3 > 0 {print $NF}' "$RAW" | sort -n | awk '{a[NR]=$1} END {if (NR) printf "min %s, median %s, max %s", a[1], a[int((NR+1)/2)], a[NR]}')
{
	echo "## guard benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
	echo
	echo "- guard built from $(if [[ ${BENCH_FROM_HEAD:-0} == 1 ]]; then echo "commit $(git -C "$ROOT" rev-parse --short HEAD)"; else echo "the work tree at $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src sql 2>/dev/null || echo ' + uncommitted changes in src/ or sql/')"; fi); PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'); $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
	echo "- workloads: ${WORKLOADS[*]}; $REPS repetition(s) per variant, interleaved; W4 $W4_SECS s per run; W6 $((W6_SCALE * 100000)) rows, $W6_REPS repetition(s)$([[ $QUICK == 1 ]] && echo '; **BENCH_QUICK smoke run: not for quoting**')"
	echo "- settings: shared_buffers 2GB, max_wal_size 20GB, checkpoint_timeout 1h, synchronous_commit on, autovacuum off, work_mem 4MB (default)"
	echo "- machine load (1/5/15-min loadavg): start $LOAD_START, end $LOAD_END; 1-min load at each measurement: $LOADS; busiest processes at start: $TOP_START"
	echo "- CPU used by processes outside this benchmark while it ran: ${CPU_OTHERS:-n/a}; by the benchmark itself: ${CPU_OURS:-n/a}"
	echo "- duration $(((END_TS - START_TS) / 60)) min $(((END_TS - START_TS) % 60)) s"
	echo "- variants: none = no capture; guard = guard.protect(t); row_trigger = PL/pgSQL AFTER ROW trigger copying OLD.* to a log table (E-Maj's design); transition = PL/pgSQL AFTER STATEMENT trigger copying the old_rows transition table; tablelog = table_log 0.6.1 (C row trigger, level 4)"
	echo
	psql_db <"$HERE/sql/report.sql"
} >"$TMP/latest.md"
cp "$TMP/latest.md" "$RESULTS_DIR/latest.md"
cat "$RESULTS_DIR/latest.md"
log "wrote $RESULTS_DIR/latest.md"
