#!/usr/bin/env bash
# test/run-demo.sh: replay the users-table outage with guard (what `make demo`
# runs).
#
# Runs test/setup.sh (packages, build, install), then starts a throwaway
# cluster in a temp dir: initdb'd and run as the postgres OS user (the server
# refuses root), guard preloaded, a private socket directory, a port of its
# own and no TCP listener, so it can clash with no other server on the
# machine (Debian's "main" cluster on 5432 is never used).  psql replays
# test/demo.sql against it.  The cluster is stopped and the temp dir removed
# on exit, also when something fails.
#
# Knobs (environment): GUARD_DEMO_PORT (first port to try, default 5544).
set -euo pipefail

readonly PG_BIN=/usr/lib/postgresql/15/bin
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_DIR
readonly RUN_USER=postgres

WORK=""      # temp dir: data directory, socket directory, log, demo.sql
PORT=""
STARTED=0

# Print a progress line that stands out from the demo's own output.
say()
{
	printf '==> %s\n' "$*"
}

# Run a command as the postgres OS user (when we are root), with libpq's
# connection variables cleared so nothing reaches another server.
as_pg()
{
	local envargs=(
		-C "$WORK"
		-u PGHOST -u PGHOSTADDR -u PGPORT -u PGDATABASE -u PGUSER
		-u PGPASSWORD -u PGSERVICE -u PGSERVICEFILE -u PGOPTIONS -u PGDATA
		HOME="$WORK" LC_ALL=C.UTF-8 PATH="$PG_BIN:$PATH"
	)
	if [[ $EUID -eq 0 ]]; then
		runuser -u "$RUN_USER" -- env "${envargs[@]}" "$@"
	else
		env "${envargs[@]}" "$@"
	fi
}

# True if something accepts TCP connections on localhost:$1, or if a socket
# or lock file for that port exists in the usual socket directories.
port_in_use()
{
	local port="$1" dir
	for dir in /var/run/postgresql /tmp; do
		[[ -e "$dir/.s.PGSQL.$port" || -e "$dir/.s.PGSQL.$port.lock" ]] && return 0
	done
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
	return 1
}

# Pick the first free port from GUARD_DEMO_PORT on, skipping the ports that
# this project's dev cluster (5499) and benchmarks (5520-5530) use.
pick_port()
{
	local port="${GUARD_DEMO_PORT:-5544}" last
	last=$((port + 100))
	for (( ; port < last; port++)); do
		((port == 5499 || (port >= 5520 && port <= 5530))) && continue
		if ! port_in_use "$port"; then
			PORT="$port"
			return 0
		fi
	done
	echo "run-demo.sh: no free port in ${GUARD_DEMO_PORT:-5544}..$last" >&2
	return 1
}

# Exit trap: stop the cluster if we started it, remove the temp dir.
cleanup()
{
	local rc=$?
	if [[ $STARTED -eq 1 ]]; then
		say "stopping the demo cluster"
		as_pg pg_ctl -D "$WORK/data" -m fast -w -t 60 stop >/dev/null ||
			as_pg pg_ctl -D "$WORK/data" -m immediate -w stop >/dev/null || true
		STARTED=0
	fi
	if [[ $rc -ne 0 && -s "$WORK/server.log" ]]; then
		echo "--- server log (last 40 lines) ---" >&2
		tail -n 40 "$WORK/server.log" >&2
	fi
	if [[ -n "$WORK" && -d "$WORK" ]]; then
		rm -rf "$WORK"
	fi
	WORK=""
}

# initdb a throwaway cluster that preloads guard, and start it.
start_cluster()
{
	local sockdir="$WORK/socket"
	as_pg mkdir -p "$sockdir"
	say "initdb in $WORK/data"
	# --no-locale and UTF8: the same output on every machine.  No fsync:
	# the cluster lives for a minute.
	as_pg initdb -D "$WORK/data" -U postgres -A trust --no-locale -E UTF8 -N \
		>"$WORK/initdb.log" 2>&1 || {
		cat "$WORK/initdb.log" >&2
		return 1
	}
	cat >>"$WORK/data/postgresql.conf" <<EOF

# run-demo.sh: a private server for the demo
shared_preload_libraries = 'guard'
port = $PORT
listen_addresses = ''
unix_socket_directories = '$sockdir'
fsync = off
EOF
	say "starting PostgreSQL 15 with guard preloaded (port $PORT, socket $sockdir)"
	STARTED=1
	as_pg pg_ctl -D "$WORK/data" -l "$WORK/server.log" -w -t 60 start >/dev/null
}

main()
{
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	say "setup"
	bash "$REPO_DIR/test/setup.sh"

	WORK="$(mktemp -d /tmp/guard-demo.XXXXXX)"
	# demo.sql is copied: the postgres user may not be able to read the repo.
	cp "$REPO_DIR/test/demo.sql" "$WORK/demo.sql"
	if [[ $EUID -eq 0 ]]; then
		chown -R "$RUN_USER:" "$WORK"
	fi
	pick_port
	start_cluster
	as_pg createdb -h "$WORK/socket" -p "$PORT" shop

	say "replaying the outage (test/demo.sql)"
	as_pg psql -X -h "$WORK/socket" -p "$PORT" -d shop -v ON_ERROR_STOP=1 \
		-f "$WORK/demo.sql"
	say "demo finished"
}

main "$@"
