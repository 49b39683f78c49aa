#!/usr/bin/env bash
# bench/run.sh: guard's capture cost against no capture and against what a
# user would otherwise pick (PL/pgSQL row trigger, transition-table trigger,
# table_log).  `make bench` runs it.  Needs root (it installs packages and
# guard, and runs the server as the `postgres` OS user).
#
#   bash bench/run.sh              all workloads (about 30 minutes)
#   bash bench/run.sh W1 W5        a subset
#   bash bench/run.sh R1 R2 I1 D1  restore, invariants, DROP TABLE/undrop only
#   BENCH_QUICK=1 bash bench/run.sh  smoke test: 1 repetition, 10 s pgbench,
#                                  2M rows for W6, 100 MB for D1's big table
#
# Capture cost (variants none / guard / row_trigger / transition / tablelog):
#   W1 UPDATE 1M rows; W2 UPDATE a text column of 200k wide rows; W3 DELETE
#   100k rows; W4 pgbench TPC-B TPS, and W4L the backend's CPU time per TPC-B
#   transaction (a procedure loop); W5 10,000 one-row UPDATEs; W6 UPDATE 5M
#   rows (memory).
# guard's other features:
#   R1 restore of W1's change set (vs the UPDATE; the table's md5 is checked)
#   R2 the same with 10% of the rows updated again since, on_conflict 'skip'
#   I1 W1 with one row-check invariant, deferred and immediate, vs capture alone
#   D1 DROP TABLE and guard.undrop() of a protected ~10 MB and ~1 GB table
#
# Other knobs: BENCH_REPS (default 3), BENCH_W4_REPS (5), BENCH_W4_SECS (20), BENCH_W6_SCALE (50),
# BENCH_D1_BIG_ROWS (7000000: ~1 GB heap; 140 bytes a row), BENCH_D1_SMALL_ROWS (70000),
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
# Output: bench/results/latest.md (also printed), bench/results/raw-latest.tsv,
# bench/results/checks-latest.tsv (correctness checks of R1, R2, D1).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

[[ $(id -u) == 0 ]] || die "run as root (it installs packages and runs the server as postgres)"

QUICK=${BENCH_QUICK:-0}
if [[ $QUICK == 1 ]]; then
	REPS=${BENCH_REPS:-1}
	W4_REPS=${BENCH_W4_REPS:-$REPS}
	W4_SECS=${BENCH_W4_SECS:-10}
	W6_SCALE=${BENCH_W6_SCALE:-20}
	D1_BIG_ROWS=${BENCH_D1_BIG_ROWS:-700000}
else
	REPS=${BENCH_REPS:-3}
	# W4's TPS follows the disk's fsync latency, which on this kind of
	# machine spreads by 10% or more from run to run: more, shorter runs
	# give a steadier median for about the same time
	W4_REPS=${BENCH_W4_REPS:-5}
	W4_SECS=${BENCH_W4_SECS:-20}
	W6_SCALE=${BENCH_W6_SCALE:-50}
	D1_BIG_ROWS=${BENCH_D1_BIG_ROWS:-7000000}
fi
D1_SMALL_ROWS=${BENCH_D1_SMALL_ROWS:-70000}
# W6 measures memory, which does not vary between runs; its timing is only
# informative, and one 5M-row run pair costs ~3 minutes: 1 repetition.
W6_REPS=${BENCH_W6_REPS:-1}
WORKLOADS=("$@")
((${#WORKLOADS[@]})) || WORKLOADS=(W1 W2 W3 W5 W6 W4 R1 R2 I1 D1)
for w in "${WORKLOADS[@]}"; do
	[[ $w =~ ^(W[1-6]|R1|R2|I1|D1)$ ]] || die "unknown workload $w (W1..W6, R1, R2, I1, D1)"
done
selected() { [[ " ${WORKLOADS[*]} " == *" $1 "* ]]; }

SLOW_RATIO=${BENCH_SLOW_RATIO:-4}
read -r -a PEERS <<<"${BENCH_PEERS:-none guard row_trigger transition tablelog}"
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
CHECKS=$RESULTS_DIR/checks-latest.tsv
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
: >"$CHECKS"
chown postgres: "$RAW" "$CHECKS"
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

# check W REP NAME OK DETAIL: a correctness check (OK is t or f), reported
# with the timings; a failed one is logged loudly but does not stop the run.
check() {
	(
		IFS=$'\t'
		echo "$*"
	) >>"$CHECKS"
	if [[ $4 == t ]]; then log "$1 rep $2 check $3: ok ($5)"; else log "$1 rep $2 check $3: **FAILED** ($5)"; fi
}

# time_session STATEMENT EXTRA SAMPLE_MEM: run STATEMENT (complete psql
#   input: ends with ; or a backslash command) in a fresh session, timed with
#   clock_timestamp() (commit included), then EXTRA.  Sets T_MS, T_WAL,
#   T_PEAK and T_BASE (RssAnon kB, sampled every 50 ms when SAMPLE_MEM=1) and
#   T_OUT (the session's output; EXTRA may \echo into it).
time_session() {
	local stmt=$1 extra=$2 mem=$3 pidf=$TMP/backend.pid out=$TMP/timed.out
	rm -f "$pidf" "$out"
	psql_db >"$out" 2>&1 <<-SQL &
	SELECT pg_backend_pid() \g $pidf
	SELECT pg_sleep(0.2);
	SELECT extract(epoch FROM clock_timestamp()) AS t0, pg_current_wal_insert_lsn() AS l0 \gset
	$stmt
	SELECT round((extract(epoch FROM clock_timestamp()) - :t0) * 1000, 3) AS ms,
	       pg_wal_lsn_diff(pg_current_wal_insert_lsn(), :'l0') AS wal \gset
	\echo ms :ms
	\echo wal :wal
	$extra
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
	wait "$job" || { cat "$out" >&2; return 1; }
	T_MS=$(awk '$1=="ms"{print $2}' "$out")
	T_WAL=$(awk '$1=="wal"{print $2}' "$out")
	T_PEAK=$peak T_BASE=$base T_OUT=$out
}

# timed_run W VARIANT REP TABLE TEMPLATE KEYCOL STATEMENT OVERWRITTEN_SQL SAMPLE_MEM
#   Rebuild TABLE from bench.TEMPLATE with VARIANT attached, then time
#   STATEMENT in a fresh session.  OVERWRITTEN_SQL (guard only) computes the
#   bytes of the columns the statement will overwrite, plus keys, before it.
#   SAMPLE_MEM=1 samples the backend's RssAnon every 50 ms.
timed_run() {
	local w=$1 v=$2 rep=$3 tbl=$4 tpl=$5 key=$6 stmt=$7 owsql=$8 mem=$9
	local ow="" extra=""
	psql_db <<-SQL
	CALL bench.reset('$tbl', '$tpl', '$key', '$v');
	VACUUM ANALYZE public.$tbl;
	SQL
	if [[ $v == guard* && -n $owsql ]]; then
		ow=$(psql_db -c "$owsql")
	fi
	psql_db -c CHECKPOINT
	case $v in
	none) extra="SELECT 0 AS storage \\gset" ;;
	guard*) extra="SELECT coalesce(sum(snapshot_bytes), 0) AS snap, coalesce(sum(rows), 0) AS snaprows FROM guard.changes \\gset
\\echo snap :snap :snaprows
SELECT pg_total_relation_size('guard.snapshot') + pg_total_relation_size('guard.change')
       + pg_total_relation_size('guard.changeset') AS storage \\gset" ;;
	*) extra="SELECT pg_total_relation_size('public.${tbl}_log') AS storage \\gset" ;;
	esac
	extra+=$'\n\\echo storage :storage'
	time_session "$stmt;" "$extra" "$mem" || die "$w/$v: timed statement failed"
	local ms=$T_MS wal=$T_WAL peak=$T_PEAK base=$T_BASE snap="" snaprows="" storage
	storage=$(awk '$1=="storage"{print $2}' "$T_OUT")
	if [[ $v == guard* ]]; then
		snap=$(awk '$1=="snap"{print $2}' "$T_OUT")
		snaprows=$(awk '$1=="snap"{print $3}' "$T_OUT")
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
# w4_loop_us: microseconds per transaction of bench.tpcb_loop (W4L).
w4_loop_us() {
	psql_db <<-SQL
	SET synchronous_commit = off;
	CALL bench.tpcb_loop(2000);
	SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
	CALL bench.tpcb_loop(20000);
	SELECT round(((extract(epoch FROM clock_timestamp()) - :t0) * 1e6 / 20000)::numeric, 2);
	SQL
}

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
ACC_MD5="SELECT md5(string_agg(md5(a::text), '' ORDER BY aid)) FROM public.pgbench_accounts a"

# restore_run W REP: one run of R1 or R2 on a fresh guard-protected copy of
#   pgbench_accounts (1,000,000 rows):
#   R1  time UPDATE of every row (change set A), then time guard.restore(A);
#       check that the table's md5 is back to what it was before the UPDATE.
#   R2  time the same UPDATE (A); untimed, UPDATE 10% of the rows again (change
#       set B); time guard.restore(A, on_conflict => 'skip'); check that
#       900,000 rows were restored and 100,000 skipped as conflicts, and that
#       the table holds B's values on those rows and the original elsewhere.
#   Both timed statements run in fresh sessions after a CHECKPOINT; the table
#   is not vacuumed between the UPDATE and the restore (as after a real
#   mistake).  The restore's backend memory is sampled.
restore_run() {
	local w=$1 rep=$2 cs md5_before md5_after rr rs rc ok bad
	psql_db <<-SQL
	CALL bench.reset('pgbench_accounts', 'accounts10', 'aid', 'guard');
	VACUUM ANALYZE public.pgbench_accounts;
	SQL
	[[ $w == R1 ]] && md5_before=$(psql_db -c "$ACC_MD5")
	psql_db -c CHECKPOINT
	time_session "UPDATE pgbench_accounts SET abalance = abalance + 1;" "" 1 || die "$w: UPDATE failed"
	record "$w" update "$rep" "$T_MS" "" "$T_WAL" "" "" "" "" "$T_PEAK" "$T_BASE"
	log "$w rep $rep update: $T_MS ms, WAL $((T_WAL / 1048576)) MB"
	cs=$(psql_db -c "SELECT max(changeset_id) FROM guard.changesets")
	local restore="SELECT sum(rows_restored) AS rr, sum(rows_skipped) AS rs, sum(conflicts) AS rc FROM guard.restore($cs) \\gset"
	if [[ $w == R2 ]]; then
		psql_db -c "UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid % 10 = 0"
		restore="SELECT sum(rows_restored) AS rr, sum(rows_skipped) AS rs, sum(conflicts) AS rc FROM guard.restore($cs, on_conflict => 'skip') \\gset"
	fi
	# the dry run first (it changes nothing), then the restore
	psql_db -c CHECKPOINT
	time_session "${restore/ FROM guard.restore($cs/ FROM guard.restore($cs, dry_run => true}" "" 1 ||
		die "$w: dry run failed"
	record "$w" dry_run "$rep" "$T_MS" "" "$T_WAL" "" "" "" "" "$T_PEAK" "$T_BASE"
	log "$w rep $rep dry run of change set $cs: $T_MS ms, peak RssAnon $((T_PEAK / 1024)) MB"
	psql_db -c CHECKPOINT
	time_session "$restore" "\\echo res :rr :rs :rc" 1 || die "$w: restore failed"
	read -r _ rr rs rc < <(awk '$1=="res"' "$T_OUT")
	record "$w" restore "$rep" "$T_MS" "" "$T_WAL" "" "$rr" "" "" "$T_PEAK" "$T_BASE"
	log "$w rep $rep restore of change set $cs: $T_MS ms, WAL $((T_WAL / 1048576)) MB, peak RssAnon $((T_PEAK / 1024)) MB; restored $rr, skipped $rs, conflicts $rc"
	if [[ $w == R1 ]]; then
		md5_after=$(psql_db -c "$ACC_MD5")
		[[ $md5_after == "$md5_before" ]] && ok=t || ok=f
		check R1 "$rep" "md5 of pgbench_accounts after restore = before UPDATE" $ok "before $md5_before, after $md5_after"
		[[ $rr == 1000000 && $rs == 0 && $rc == 0 ]] && ok=t || ok=f
		check R1 "$rep" "rows restored / skipped / conflicts = 1000000 / 0 / 0" $ok "$rr / $rs / $rc"
	else
		[[ $rr == 900000 && $rs == 100000 && $rc == 100000 ]] && ok=t || ok=f
		check R2 "$rep" "rows restored / skipped / conflicts = 900000 / 100000 / 100000" $ok "$rr / $rs / $rc"
		bad=$(psql_db -c "SELECT count(*) FILTER (WHERE aid % 10 = 0 AND abalance <> 8)
		                       + count(*) FILTER (WHERE aid % 10 <> 0 AND abalance <> 0) FROM public.pgbench_accounts")
		[[ $bad == 0 ]] && ok=t || ok=f
		check R2 "$rep" "later values kept (abalance 8 on aid % 10 = 0), others back to 0" $ok "$bad rows differ"
	fi
}

# run_restore: R1 and/or R2 (those selected), interleaved per repetition.
run_restore() {
	local rep w ws=()
	selected R1 && ws+=(R1)
	selected R2 && ws+=(R2)
	for ((rep = 1; rep <= REPS; rep++)); do
		for w in $(rotate "$rep" "${ws[@]}"); do
			restore_run "$w" "$rep"
		done
	done
}

# run_d1: DROP TABLE and guard.undrop() of a protected table of ~10 MB and
#   of ~1 GB (id int primary key, 100-byte text: ~140 bytes a row), built
#   once.  Each repetition drops and undrops both, in rotated order, each
#   timed in a fresh session after a CHECKPOINT.  The undrop brings the table
#   back (protected), ready for the next repetition.
run_d1() {
	local rep sz tbl rows ok got
	log "D1: building d1_small ($D1_SMALL_ROWS rows) and d1_big ($D1_BIG_ROWS rows)"
	for sz in small big; do
		if [[ $sz == small ]]; then rows=$D1_SMALL_ROWS; else rows=$D1_BIG_ROWS; fi
		psql_db >/dev/null <<-SQL
		SELECT guard.unprotect(relation) FROM guard.policies WHERE relation = to_regclass('public.d1_$sz');
		DROP TABLE IF EXISTS public.d1_$sz;
		CREATE TABLE public.d1_$sz AS SELECT g AS id, repeat('x', 100) AS v FROM generate_series(1, $rows) g;
		ALTER TABLE public.d1_$sz ADD PRIMARY KEY (id);
		VACUUM ANALYZE public.d1_$sz;
		SELECT guard.protect('public.d1_$sz');
		SQL
	done
	log "D1: d1_small $(psql_db -c "SELECT pg_size_pretty(pg_table_size('public.d1_small'))") heap, d1_big $(psql_db -c "SELECT pg_size_pretty(pg_table_size('public.d1_big'))") heap"
	# untimed warm-up: the first drop/undrop of the run
	psql_db -c "DROP TABLE public.d1_small" && psql_db -c "SELECT count(*) FROM guard.undrop('d1_small')" >/dev/null
	for ((rep = 1; rep <= REPS; rep++)); do
		for sz in $(rotate "$rep" small big); do
			tbl=d1_$sz
			local size nrows
			size=$(psql_db -c "SELECT pg_total_relation_size('public.$tbl')")
			if [[ $sz == small ]]; then nrows=$D1_SMALL_ROWS; else nrows=$D1_BIG_ROWS; fi
			psql_db -c CHECKPOINT
			time_session "DROP TABLE public.$tbl;" "" 0 || die "D1: DROP TABLE $tbl failed"
			record D1 "drop_$sz" "$rep" "$T_MS" "" "$T_WAL" "" "$nrows" "" "$size" "" ""
			got=$(psql_db -c "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			                   WHERE n.nspname = 'guard_trash' AND c.relkind = 'r'")
			log "D1 rep $rep DROP TABLE $tbl ($((size / 1048576)) MB): $T_MS ms; tables in guard_trash: $got"
			psql_db -c CHECKPOINT
			time_session "SELECT count(*) FROM guard.undrop('$tbl');" "" 0 || die "D1: undrop $tbl failed"
			record D1 "undrop_$sz" "$rep" "$T_MS" "" "$T_WAL" "" "$nrows" "" "$size" "" ""
			log "D1 rep $rep undrop $tbl: $T_MS ms"
			got=$(psql_db -c "SELECT to_regclass('public.$tbl') IS NOT NULL")
			[[ $got == t ]] || die "D1: $tbl is not back after guard.undrop"
		done
	done
	for sz in small big; do
		if [[ $sz == small ]]; then rows=$D1_SMALL_ROWS; else rows=$D1_BIG_ROWS; fi
		got=$(psql_db -c "SELECT count(*) || ' rows, protected: ' || EXISTS (SELECT FROM guard.policies WHERE relation = 'public.d1_$sz'::regclass)
		                   || ', indexes: ' || (SELECT count(*) FROM pg_index WHERE indrelid = 'public.d1_$sz'::regclass)
		                  FROM public.d1_$sz")
		[[ $got == "$rows rows, protected: true, indexes: 1" ]] && ok=t || ok=f
		check D1 "$REPS" "d1_$sz after $REPS drops and undrops: $rows rows, protected, its index" $ok "$got"
	done
	psql_db >/dev/null <<-SQL
	SELECT guard.unprotect(relation) FROM guard.policies WHERE relation IN (to_regclass('public.d1_small'), to_regclass('public.d1_big'));
	DROP TABLE public.d1_small, public.d1_big;
	SQL
}
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
		psql_db <<-SQL >/dev/null
		SELECT guard.unprotect(relation) FROM guard.policies WHERE relation = to_regclass('public.pgbench_accounts');
		DROP TABLE IF EXISTS public.pgbench_accounts CASCADE;
		DROP TABLE bench.accounts_w6;
		SQL
		;;
	W4)
		# W4L, before each pgbench run: TPC-B's transaction 20,000 times in
		# one procedure (bench.tpcb_loop, synchronous_commit off, after
		# 2,000 to warm up), in microseconds per transaction.  No client
		# round trips and no wait for the WAL flush: what is left is the
		# backend's own work, which capture adds to, and which this
		# machine's disk does not blur as it does the TPS.
		#
		# Variants: guard not in shared_preload_libraries; loaded but
		# nothing protected; pgbench_accounts protected; and, with guard
		# loaded and nothing protected, the peers (row_trigger, transition,
		# tablelog) on pgbench_accounts.  Data is rebuilt with pgbench -i
		# while guard is loaded (its event triggers call its C functions),
		# then the server restarts with the variant's setting.
		w4_variants=(not_loaded loaded_unprotected protected)
		for v in "${PEERS[@]}"; do
			[[ $v == none || $v == guard ]] || w4_variants+=("$v")
		done
		for ((rep = 1; rep <= W4_REPS; rep++)); do
			for v in $(rotate "$rep" "${w4_variants[@]}"); do
				# unprotected first, or pgbench -i's DROP TABLE would put
				# the table into guard_trash
				psql_db -c "SELECT guard.unprotect(relation) FROM guard.policies" >/dev/null
				psql_db -c "TRUNCATE guard.snapshot, guard.change, guard.changeset"
				psql_db >/dev/null <<-SQL
				DROP TABLE IF EXISTS public.pgbench_accounts_log CASCADE;
				DROP SEQUENCE IF EXISTS public.pgbench_accounts_log_seq CASCADE;
				DROP FUNCTION IF EXISTS public.pgbench_accounts_log_fn() CASCADE;
				SQL
				as_pg "$PGBIN/pgbench" -i -s 10 -I dtGvp -q -h "$SOCKDIR" -p "$PORT" "$BENCH_DB" >/dev/null 2>&1
				if [[ $v == not_loaded ]]; then restart_with ''; else restart_with guard; fi
				loaded=$(psql_db -c "SELECT count(*) FROM pg_settings WHERE name = 'guard.enabled'")
				if [[ $v == protected ]]; then
					psql_db -c "SELECT guard.protect('pgbench_accounts')" >/dev/null
				elif [[ $v != not_loaded && $v != loaded_unprotected ]]; then
					psql_db -c "CALL bench.attach('$v', 'pgbench_accounts', 'aid')" >/dev/null
				fi
				psql_db -c CHECKPOINT
				# the backend's own cost of a transaction first, on the
				# table as every variant finds it (see W4L above)
				us=$(w4_loop_us)
				[[ -n $us ]] || die "W4L/$v: the procedure loop gave no time"
				record W4L "$v" "$rep" "$us" "" "" "" "" "" "" "" ""
				log "W4L rep $rep $v: $us µs per transaction (procedure loop)"
				psql_db -c "TRUNCATE guard.snapshot, guard.change, guard.changeset, public.pgbench_history"
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
	I1)
		# capture alone vs capture + one row-check invariant (deferred: checked
		# at commit, the default; immediate: after the statement)
		run_workload I1 pgbench_accounts accounts10 aid \
			"UPDATE pgbench_accounts SET abalance = abalance + 1" \
			"" 0 guard guard_inv_deferred guard_inv_immediate
		;;
	R1 | R2)
		[[ -n ${RESTORE_DONE:-} ]] || run_restore
		RESTORE_DONE=1
		;;
	D1)
		run_d1
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
CREATE TABLE bench.checks (workload text, rep int, name text, ok bool, detail text);
SQL
if [[ -s $CHECKS ]]; then psql_db -c "\copy bench.checks FROM '$CHECKS'"; fi
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
	echo "- workloads: ${WORKLOADS[*]}; $REPS repetition(s) per variant, interleaved; W4 $W4_REPS repetition(s) of $W4_SECS s per variant; W6 $((W6_SCALE * 100000)) rows, $W6_REPS repetition(s); D1 $D1_SMALL_ROWS and $D1_BIG_ROWS rows$([[ $QUICK == 1 ]] && echo '; **BENCH_QUICK smoke run: not for quoting**')"
	echo "- settings: shared_buffers 2GB, max_wal_size 20GB, checkpoint_timeout 1h, synchronous_commit on, autovacuum off, work_mem 4MB (default)"
	echo "- machine load (1/5/15-min loadavg): start $LOAD_START, end $LOAD_END; 1-min load at each measurement: $LOADS; busiest processes at start: $TOP_START"
	echo "- CPU used by processes outside this benchmark while it ran: ${CPU_OTHERS:-n/a}; by the benchmark itself: ${CPU_OURS:-n/a}"
	echo "- duration $(((END_TS - START_TS) / 60)) min $(((END_TS - START_TS) % 60)) s"
	echo "- variants: none = no capture (guard loaded, the table not protected: the loaded-but-unprotected case; only W4 also runs with guard not loaded); guard = guard.protect(t); row_trigger = PL/pgSQL AFTER ROW trigger copying OLD.* to a log table (E-Maj's design); transition = PL/pgSQL AFTER STATEMENT trigger copying the old_rows transition table; tablelog = table_log 0.6.1 (C row trigger, level 4)"
	echo
	psql_db <"$HERE/sql/report.sql"
} >"$TMP/latest.md"
cp "$TMP/latest.md" "$RESULTS_DIR/latest.md"
cat "$RESULTS_DIR/latest.md"
log "wrote $RESULTS_DIR/latest.md"
