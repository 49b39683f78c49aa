#!/usr/bin/env bash
# test/check-ha.sh: a failover under a real HA manager, pg_auto_failover,
# with guard (what `make check-ha` runs; SPEC.md Guarantee 9, issue 16).
#
#  1. Install Debian's postgresql-15-auto-failover (pg_autoctl) if missing,
#     build guard, and make a private copy of PostgreSQL 15's installation
#     with guard (and pg_auto_failover's extension) in a temp dir, as
#     test/run-tests.sh does.
#  2. As the postgres OS user, in that temp dir: a pg_auto_failover monitor
#     and two data nodes, each run by its own `pg_autoctl run` in the
#     background, on three free ports on 127.0.0.1, with small memory
#     settings (pg_autoctl would size shared_buffers for the whole machine)
#     and guard preloaded on the data nodes.  node1 becomes the primary,
#     node2 (a base backup of node1) its synchronous hot standby.
#  3. On the primary: a protected table and an incident, one change set of
#     updates, deletes, an insert, a toasted value and moved keys.
#  4. On the secondary (a hot standby): the records are the primary's, the
#     dry run and the drill give the primary's answers, a real restore is
#     refused.
#  5. `pg_autoctl perform failover`: node2 becomes the primary, node1 its
#     secondary.
#  6. On the new primary: the records are those of the old one; the restore
#     gives back the table exactly as it was before the incident; the old
#     primary, now the secondary, gets the restored table through
#     replication; a new write is captured under a new id.
#
# Prints one "ok" or "not ok" line per check and ends with "N passed, M
# failed".  Exit status: 0 if every check passed, 1 otherwise.  Everything
# started here is stopped (pg_autoctl stop, then the processes this script
# started, by their ids), and the temp dir removed, on exit.  About a
# minute on a 2-core machine.
#
# Knobs (environment): GUARD_HA_TIMEOUT (seconds to wait for each state,
# default 120), GUARD_KEEP_TMP=1 (keep the temp dir for post-mortem).
set -euo pipefail

readonly PG_BIN=/usr/lib/postgresql/15/bin
readonly PG_CONFIG="$PG_BIN/pg_config"
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_DIR
readonly TIMEOUT="${GUARD_HA_TIMEOUT:-120}"
readonly RUN_USER=postgres
readonly PACKAGE=postgresql-15-auto-failover

WORK=""            # temp dir: installation, data dirs, logs
INST_BIN=""        # bin dir of the private installation
PORTS=()           # monitor, node1, node2
MONITOR_URI=""
RUN_PIDS=()        # the `pg_autoctl run` processes started here
PASSED=0
FAILED=0

# Print a heading that stands out in CI logs.
say()
{
	printf '\n==> %s\n' "$*"
}

# Run a command as root: directly when we are root, else through sudo.
as_root()
{
	if [[ $EUID -eq 0 ]]; then
		"$@"
	else
		sudo "$@"
	fi
}

# Run a command as the postgres OS user (when we are root: the server
# refuses root) in $WORK, with pg_autoctl's configuration and state under
# $WORK and libpq's connection variables cleared.
as_pg()
{
	local envargs=(
		-C "$WORK"
		-u PGHOST -u PGHOSTADDR -u PGPORT -u PGDATABASE -u PGUSER
		-u PGPASSWORD -u PGSERVICE -u PGSERVICEFILE -u PGOPTIONS
		-u PGDATA -u PGSSLMODE
		HOME="$WORK" TMPDIR="$WORK/tmp" LC_ALL=C.UTF-8
		XDG_CONFIG_HOME="$WORK/config" XDG_DATA_HOME="$WORK/data"
		XDG_RUNTIME_DIR="$WORK/run"
		PATH="$INST_BIN:$PATH"
	)
	if [[ $EUID -eq 0 ]]; then
		runuser -u "$RUN_USER" -- env "${envargs[@]}" "$@"
	else
		env "${envargs[@]}" "$@"
	fi
}

# psql on a node ($1: its port), as postgres, stopping at the first error;
# the rest are psql's arguments.
node_psql()
{
	local port="$1"
	shift
	as_pg psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -d postgres "$@"
}

# Record one check: $1 its name, $2 expected, $3 actual.
check()
{
	if [[ "$2" == "$3" ]]; then
		echo "ok - $1"
		PASSED=$((PASSED + 1))
	else
		echo "not ok - $1"
		printf '#   expected: %s\n#        got: %s\n' "$2" "$3"
		FAILED=$((FAILED + 1))
	fi
}

# Record one check that a command's output matches a pattern: $1 its name,
# $2 the extended regular expression, $3 the output.
check_like()
{
	if grep -Eq -- "$2" <<<"$3"; then
		echo "ok - $1"
		PASSED=$((PASSED + 1))
	else
		echo "not ok - $1"
		printf '#   expected to match: %s\n#                 got: %s\n' "$2" "$3"
		FAILED=$((FAILED + 1))
	fi
}

# Stop everything started here: each pg_autoctl service (which stops its
# Postgres), then whatever is left of the processes this script started and
# of the servers in $WORK, then remove $WORK.  Safe to call twice.
cleanup()
{
	local dir pid pidfile i
	[[ -n "$WORK" && -d "$WORK" ]] || return 0
	for dir in node2 node1 monitor; do
		[[ -d "$WORK/$dir" ]] && as_pg pg_autoctl stop --pgdata "$WORK/$dir" >/dev/null 2>&1 || true
	done
	for pid in "${RUN_PIDS[@]}"; do
		for ((i = 0; i < 30; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 1
		done
		kill -TERM "$pid" 2>/dev/null || true
	done
	while IFS= read -r -d '' pidfile; do
		as_pg "$PG_BIN/pg_ctl" -D "$(dirname "$pidfile")" -m immediate -w -t 30 stop \
			>/dev/null 2>&1 || true
	done < <(find "$WORK" -name postmaster.pid -print0 2>/dev/null)
	if [[ "${GUARD_KEEP_TMP:-0}" == 1 ]]; then
		echo "keeping $WORK (GUARD_KEEP_TMP=1)" >&2
	else
		rm -rf "$WORK"
	fi
	WORK=""
}

# Install pg_auto_failover if missing, build guard.
setup()
{
	say "setup"
	if ! dpkg-query -W -f='${Status}' "$PACKAGE" 2>/dev/null | grep -q '^install ok installed$'; then
		echo "installing $PACKAGE"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$PACKAGE"
	fi
	bash "$REPO_DIR/test/setup.sh"
}

# Copy PostgreSQL 15's installation into $WORK/install and install guard
# into it (test/run-tests.sh explains why).
make_private_install()
{
	local inst="$WORK/install" bindir sharedir pkglibdir
	bindir="$("$PG_CONFIG" --bindir)"
	sharedir="$("$PG_CONFIG" --sharedir)"
	pkglibdir="$("$PG_CONFIG" --pkglibdir)"
	mkdir -p "$inst$(dirname "$bindir")" "$inst$(dirname "$sharedir")"
	cp -a "$(dirname "$bindir")/." "$inst$(dirname "$bindir")/"
	cp -a "$sharedir" "$inst$(dirname "$sharedir")/"
	rm -rf "$inst$pkglibdir"/guard.so "$inst$sharedir"/extension/guard[.-]*
	make -C "$REPO_DIR" -s install PG_CONFIG="$PG_CONFIG" DESTDIR="$inst"
	INST_BIN="$inst$bindir"
}

# Three free TCP ports in a row, for the monitor and the two nodes.
pick_ports()
{
	local base p busy
	for _ in $(seq 1 50); do
		base=$((20000 + RANDOM % 20000))
		busy=0
		for p in "$base" $((base + 1)) $((base + 2)); do
			if ss -ltnH "sport = :$p" | grep -q . ||
				[[ -e "/var/run/postgresql/.s.PGSQL.$p" ]]; then
				busy=1
			fi
		done
		if [[ $busy -eq 0 ]]; then
			PORTS=("$base" $((base + 1)) $((base + 2)))
			return 0
		fi
	done
	echo "no free ports found" >&2
	return 1
}

# Settings every server gets, after what pg_autoctl wrote: small memory,
# and for the data nodes guard preloaded (with pg_autoctl's own
# pg_stat_statements).  postgresql.auto.conf is read last; pg_autoctl's
# ALTER SYSTEM keeps what is there, and a base backup copies it.
add_settings()
{
	local pgdata="$1" preload="$2"
	as_pg bash -c "cat >> '$pgdata/postgresql.auto.conf'" <<EOF
shared_buffers = 32MB
work_mem = 4MB
maintenance_work_mem = 64MB
effective_cache_size = 256MB
wal_keep_size = 128MB
${preload:+shared_preload_libraries = '$preload'}
EOF
}

# Start `pg_autoctl run` for a data dir in the background, logging to
# $WORK/NAME.log, and remember its process id.
run_service()
{
	local name="$1"
	as_pg bash -c "exec pg_autoctl run --pgdata '$WORK/$name' >'$WORK/$name.log' 2>&1" &
	RUN_PIDS+=("$!")
}

# The monitor's view of the nodes: "name:reported/assigned ..." by node id.
node_states()
{
	as_pg psql -X -q -A -t -h 127.0.0.1 -p "${PORTS[0]}" -d pg_auto_failover -c \
		"SELECT string_agg(nodename || ':' || reportedstate || '/' || goalstate, ' ' ORDER BY nodeid)
		   FROM pgautofailover.node" 2>/dev/null || true
}

# Wait until the monitor reports exactly the states "$1".
wait_states()
{
	local want="$1" got=""
	for ((i = 0; i < TIMEOUT; i++)); do
		got="$(node_states)"
		[[ "$got" == "$want" ]] && return 0
		sleep 1
	done
	echo "timed out waiting for \"$want\"; the monitor says \"$got\"" >&2
	return 1
}

# Wait until a query on a node (port $1) returns "$3" ($2: the query).
wait_query()
{
	local port="$1" sql="$2" want="$3" got=""
	for ((i = 0; i < TIMEOUT; i++)); do
		got="$(node_psql "$port" -c "$sql" 2>/dev/null || true)"
		[[ "$got" == "$want" ]] && return 0
		sleep 1
	done
	echo "timed out waiting for \"$want\" from: $sql (got \"$got\")" >&2
	return 1
}

# The monitor, then node1 (the primary), then node2 (its secondary).
start_formation()
{
	local node
	say "pg_auto_failover: a monitor and two nodes on ports ${PORTS[*]}"
	as_pg pg_autoctl create monitor --pgdata "$WORK/monitor" --pgport "${PORTS[0]}" \
		--hostname 127.0.0.1 --auth trust --no-ssl --pgctl "$INST_BIN/pg_ctl" \
		>"$WORK/create-monitor.log" 2>&1
	as_pg pg_autoctl config set --pgdata "$WORK/monitor" postgresql.listen_addresses 127.0.0.1 \
		>/dev/null
	add_settings "$WORK/monitor" ""
	run_service monitor
	MONITOR_URI="postgres://autoctl_node@127.0.0.1:${PORTS[0]}/pg_auto_failover?sslmode=disable"
	wait_query "${PORTS[0]}" "SELECT 1" 1

	for node in 1 2; do
		as_pg pg_autoctl create postgres --pgdata "$WORK/node$node" \
			--pgport "${PORTS[$node]}" --hostname 127.0.0.1 --listen 127.0.0.1 \
			--auth trust --no-ssl --monitor "$MONITOR_URI" --pgctl "$INST_BIN/pg_ctl" \
			--name "node$node" >"$WORK/create-node$node.log" 2>&1
		add_settings "$WORK/node$node" "pg_stat_statements,guard"
		run_service "node$node"
		wait_query "${PORTS[$node]}" "SELECT 1" 1
		if [[ $node -eq 1 ]]; then
			wait_states "node1:single/single"
			node_psql "${PORTS[1]}" -c "CREATE EXTENSION guard"
		fi
	done
	wait_states "node1:primary/primary node2:secondary/secondary"
	pg_autoctl_state
}

# What pg_autoctl shows of the formation.
pg_autoctl_state()
{
	as_pg pg_autoctl show state --pgdata "$WORK/monitor" || true
}

readonly TABLE_SQL="SELECT count(*) || ' ' || md5(string_agg(id || ':' || balance || ':' || coalesce(note, '-'), ',' ORDER BY id)) FROM acct"
readonly RECORDS_SQL="SELECT md5(string_agg(concat_ws(' ', change_id, changeset_id, at, relation, kind, rows, snapshot_bytes, state, md5(statement)), ',' ORDER BY change_id)) FROM guard.changes"
readonly DRY_RUN_SQL="SELECT string_agg(concat_ws(' ', change_id, relation, kind, rows_restored, rows_skipped, conflicts), ', ' ORDER BY change_id) FROM guard.restore(:cs, dry_run => true)"
readonly DRILL_SQL="SELECT string_agg(concat_ws(' ', change_id, rows_checked, rows_matching, ok), ', ' ORDER BY change_id) FROM guard.verify_restore(:cs)"

# Run a query with the change set id as :cs.
with_cs()
{
	local port="$1" cs="$2" sql="$3"
	node_psql "$port" -v cs="$cs" <<<"$sql;"
}

main()
{
	local state0 state1 cs records dry drill out last

	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	setup
	WORK="$(mktemp -d /tmp/guard-ha.XXXXXX)"
	mkdir -p "$WORK/tmp" "$WORK/config" "$WORK/data" "$WORK/run"
	make_private_install
	if [[ $EUID -eq 0 ]]; then
		chown "$RUN_USER:" "$WORK" "$WORK/tmp" "$WORK/config" "$WORK/data" "$WORK/run"
	fi
	chmod 700 "$WORK/run"
	pick_ports
	start_formation

	say "the incident, on the primary (node1)"
	node_psql "${PORTS[1]}" >/dev/null <<'EOF'
CREATE TABLE acct (id int PRIMARY KEY, balance int NOT NULL, note text);
INSERT INTO acct SELECT g, g * 10, 'n' || g FROM generate_series(1, 1000) g;
SELECT guard.protect('acct');
EOF
	state0="$(node_psql "${PORTS[1]}" -c "$TABLE_SQL")"
	node_psql "${PORTS[1]}" >/dev/null <<'EOF'
BEGIN;
SELECT guard.label('incident');
UPDATE acct SET balance = 0 WHERE id <= 100;
DELETE FROM acct WHERE id > 950;
UPDATE acct SET note = repeat('x', 10000) WHERE id = 7;
UPDATE acct SET id = id + 10000 WHERE id BETWEEN 200 AND 209;
INSERT INTO acct VALUES (5000, 1, 'new');
COMMIT;
EOF
	state1="$(node_psql "${PORTS[1]}" -c "$TABLE_SQL")"
	cs="$(node_psql "${PORTS[1]}" -c "SELECT changeset_id FROM guard.changesets WHERE label = 'incident'")"
	records="$(node_psql "${PORTS[1]}" -c "$RECORDS_SQL")"
	dry="$(with_cs "${PORTS[1]}" "$cs" "$DRY_RUN_SQL")"
	drill="$(with_cs "${PORTS[1]}" "$cs" "$DRILL_SQL")"
	echo "change set $cs; dry run on the primary: $dry"
	check "the incident changed the table" 1 "$([[ "$state0" != "$state1" ]] && echo 1 || echo 0)"

	say "on the secondary (node2), a hot standby"
	wait_query "${PORTS[2]}" "$TABLE_SQL" "$state1"
	check "node2 is in recovery" t "$(node_psql "${PORTS[2]}" -c "SELECT pg_is_in_recovery()")"
	check "node2 has the primary's records" "$records" "$(node_psql "${PORTS[2]}" -c "$RECORDS_SQL")"
	check "node2's dry run gives the primary's answer" "$dry" "$(with_cs "${PORTS[2]}" "$cs" "$DRY_RUN_SQL")"
	check "node2's drill gives the primary's answer" "$drill" "$(with_cs "${PORTS[2]}" "$cs" "$DRILL_SQL")"
	out="$(node_psql "${PORTS[2]}" -c "SELECT * FROM guard.restore($cs)" 2>&1 || true)"
	check_like "node2 refuses a real restore, pointing to the primary" \
		"cannot restore during recovery" "$out"

	say "failover: pg_autoctl perform failover"
	as_pg pg_autoctl perform failover --pgdata "$WORK/node1" >"$WORK/failover.log" 2>&1 ||
		{ tail -20 "$WORK/failover.log"; false; }
	wait_states "node1:secondary/secondary node2:primary/primary"
	pg_autoctl_state
	check "node2 is the primary" f "$(node_psql "${PORTS[2]}" -c "SELECT pg_is_in_recovery()")"
	check "node1 is its secondary" t "$(node_psql "${PORTS[1]}" -c "SELECT pg_is_in_recovery()")"

	say "restore on the new primary (node2)"
	check "node2 has the old primary's records" "$records" "$(node_psql "${PORTS[2]}" -c "$RECORDS_SQL")"
	node_psql "${PORTS[2]}" -c "SELECT * FROM guard.restore($cs)" >/dev/null
	check "the restore gives the table as it was before the incident, exactly" \
		"$state0" "$(node_psql "${PORTS[2]}" -c "$TABLE_SQL")"
	if wait_query "${PORTS[1]}" "$TABLE_SQL" "$state0"; then
		check "node1 (the old primary) gets the restored table" "$state0" "$state0"
	else
		check "node1 (the old primary) gets the restored table" "$state0" \
			"$(node_psql "${PORTS[1]}" -c "$TABLE_SQL")"
	fi
	last="$(node_psql "${PORTS[2]}" -c "SELECT max(change_id) FROM guard.change")"
	node_psql "${PORTS[2]}" -c "UPDATE acct SET balance = -1 WHERE id = 1"
	check "a new write on node2 is captured under a new id" 1 \
		"$(node_psql "${PORTS[2]}" -c "SELECT count(*) FROM guard.changes WHERE change_id > $last AND kind = 'UPDATE' AND rows = 1")"

	if grep -q "terminated by signal" "$WORK"/node*/log/*.log 2>/dev/null; then
		check "no backend crashed" none "$(grep -h "terminated by signal" "$WORK"/node*/log/*.log | head -1)"
	else
		check "no backend crashed" none none
	fi

	cleanup
	say "summary"
	echo "$PASSED passed, $FAILED failed"
	[[ $FAILED -eq 0 && $PASSED -gt 0 ]]
}

main "$@"
