# test/lib.sh: the helpers the test drivers share (run-tests.sh,
# check-postgres.sh): running a command as the postgres OS user, stopping
# the servers a driver started, the exit trap, and the private copy of
# PostgreSQL with guard installed into it.  They use the driver's WORK (its
# temp dir), RUN_USER, PG_BIN, PG_CONFIG, REPO_DIR and INST_BIN.  Sourced, not run.
# shellcheck shell=bash

# Run a command as the postgres OS user (when we are root: the server refuses
# root) in directory $1, with libpq's connection variables cleared so that
# nothing reaches a server we did not start.
as_pg()
{
	local dir="$1"
	shift
	local envargs=(
		-C "$dir"
		-u PGHOST -u PGHOSTADDR -u PGPORT -u PGDATABASE -u PGUSER
		-u PGPASSWORD -u PGSERVICE -u PGSERVICEFILE -u PGOPTIONS
		-u PGDATA -u PGSSLMODE
		HOME="$WORK" TMPDIR="$WORK/tmp" LC_ALL=C.UTF-8
		PATH="${INST_BIN:-$PG_BIN}:$PATH"
	)
	if [[ $EUID -eq 0 ]]; then
		runuser -u "$RUN_USER" -- env "${envargs[@]}" "$@"
	else
		env "${envargs[@]}" "$@"
	fi
}

# Stop every server whose data directory lies under $WORK: temp instances of
# pg_regress and TAP clusters normally stop themselves, but not if their
# driver was killed by a timeout or a signal.  Each is stopped by its own
# postmaster.pid, nothing else is touched.
stop_leftover_servers()
{
	[[ -n "$WORK" && -d "$WORK" ]] || return 0
	local pidfile datadir pid
	while IFS= read -r -d '' pidfile; do
		datadir="$(dirname "$pidfile")"
		pid="$(head -n 1 "$pidfile" 2>/dev/null || true)"
		echo "stopping leftover server in $datadir (pid ${pid:-?})" >&2
		as_pg / "$PG_BIN/pg_ctl" -D "$datadir" -m immediate -w -t 30 stop \
			>/dev/null 2>&1 && continue
		# pg_ctl failed: the postmaster.pid is stale or the server hangs.
		if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done < <(find "$WORK" -name postmaster.pid -print0 2>/dev/null)
}

# Exit trap: stop what we started, remove the temp dir.  Safe to call twice.
cleanup()
{
	stop_leftover_servers
	if [[ -n "$WORK" && -d "$WORK" ]]; then
		if [[ "${GUARD_KEEP_TMP:-0}" == 1 ]]; then
			echo "keeping $WORK (GUARD_KEEP_TMP=1)" >&2
		else
			rm -rf "$WORK"
		fi
	fi
	WORK=""
}

# Copy PostgreSQL 15's installation into $WORK/install, with its directory
# layout, and install guard from the tree just built into it.  The copy is
# root's and read-only to the suites: nothing of it is chowned.
make_private_install()
{
	local inst="$WORK/install"
	local bindir sharedir pkglibdir
	bindir="$("$PG_CONFIG" --bindir)"
	sharedir="$("$PG_CONFIG" --sharedir)"
	pkglibdir="$("$PG_CONFIG" --pkglibdir)"
	# (Called in a condition, where set -e does not apply: hence || return.)
	mkdir -p "$inst$(dirname "$bindir")" "$inst$(dirname "$sharedir")" || return 1
	cp -a "$(dirname "$bindir")/." "$inst$(dirname "$bindir")/" || return 1
	cp -a "$sharedir" "$inst$(dirname "$sharedir")/" || return 1
	# Drop the system's guard files first, so none of them survives if
	# this tree no longer installs it.
	rm -rf "$inst$pkglibdir"/guard.so "$inst$pkglibdir"/bitcode/guard* \
		"$inst$sharedir"/extension/guard[.-]* || return 1
	make -C "$REPO_DIR" -s install PG_CONFIG="$PG_CONFIG" DESTDIR="$inst" || return 1
	INST_BIN="$inst$bindir"
	# The relocated binaries must find the relocated guard.
	if [[ "$("$INST_BIN/pg_config" --pkglibdir)" != "$inst$pkglibdir" ]]; then
		echo "the copy of PostgreSQL in $inst does not relocate" >&2
		return 1
	fi
	echo "guard installed into the private installation under $inst"
}
