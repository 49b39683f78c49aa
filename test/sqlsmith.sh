#!/usr/bin/env bash
# test/sqlsmith.sh: a bounded sqlsmith run against guard (`make sqlsmith`).
#
# sqlsmith (Debian package sqlsmith) generates random queries from what it
# finds in a database: its tables, views, columns, functions and operators.
# Here it runs against a throwaway server that preloads guard, in a
# database with protected tables (plain, partitioned, in warn mode, with
# row and query invariants), unprotected ones, a view, a materialized view,
# a foreign table, a table in guard's trash, recorded changes, a table of
# relations of every kind (fuzz_rels, so that regclass arguments get
# hostile values) and, since sqlsmith never calls a set-returning
# function, a wrapper fz_NAME(...) returning count(*) for each of guard's.
# sqlsmith rolls back every query it sends, so each starts from that state.
#
# Three runs, each bounded by a number of queries and seeded:
#   1. superuser, --exclude-catalog (guard's objects and the test's get a
#      bigger share of the queries);
#   2. the unprivileged role "mallory", --exclude-catalog;
#   3. superuser, with the catalogs.
# The run fails if a backend crashed (the server log's "terminated by
# signal", or PANIC), if a sqlsmith run did not end normally, or if guard
# itself raised an internal error (XX000 with a LOCATION in guard's
# sources; XX000s of PostgreSQL's own, which sqlsmith provokes by design,
# are only counted).
#
# Like test/run-tests.sh: builds and installs guard (test/setup.sh),
# installs sqlsmith if missing, runs everything as the postgres OS user in
# a temp dir with a private copy of PostgreSQL 15 (guard installed into
# it), a private socket directory and no TCP, and stops the server and
# removes the temp dir on exit.  Not part of `make test`.
#
# Knobs (environment): GUARD_SQLSMITH_QUERIES (queries per run, default
# 2000), GUARD_SQLSMITH_SEED (default 16; runs use SEED, SEED+1,
# SEED+2), GUARD_SQLSMITH_TIMEOUT (seconds per run, default 300),
# GUARD_KEEP_TMP=1 (keep the temp dir).
set -euo pipefail

readonly PG_BIN=/usr/lib/postgresql/15/bin
readonly PG_CONFIG="$PG_BIN/pg_config"
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_DIR
readonly QUERIES="${GUARD_SQLSMITH_QUERIES:-2000}"
readonly SEED="${GUARD_SQLSMITH_SEED:-16}"
readonly RUN_TIMEOUT="${GUARD_SQLSMITH_TIMEOUT:-300}"
readonly RUN_USER=postgres
readonly PORT=54329        # Unix socket only, in a private directory

WORK=""            # temp dir: installation, data directory, socket, logs
INST_BIN=""        # bin dir of the private installation
DATA=""            # data directory of the throwaway server
SOCK=""            # its socket directory

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
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		echo "sqlsmith.sh: need root (or sudo) to run: $*" >&2
		return 1
	fi
}

# Run a command as the postgres OS user (the server refuses root), with
# libpq's connection variables cleared so that nothing reaches a server we
# did not start.
as_pg()
{
	local envargs=(
		-C "${WORK:-/}"
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

# Exit trap: stop the server, remove the temp dir.  Safe to call twice.
cleanup()
{
	if [[ -n "$DATA" && -f "$DATA/postmaster.pid" ]]; then
		as_pg "$INST_BIN/pg_ctl" -D "$DATA" -m immediate -w -t 30 stop \
			>/dev/null 2>&1 || true
	fi
	if [[ -n "$WORK" && -d "$WORK" ]]; then
		if [[ "${GUARD_KEEP_TMP:-0}" == 1 ]]; then
			echo "keeping $WORK (GUARD_KEEP_TMP=1)" >&2
		else
			rm -rf "$WORK"
		fi
	fi
	WORK=""
	DATA=""
}

# Install sqlsmith with apt if it is missing.
ensure_sqlsmith()
{
	command -v sqlsmith >/dev/null && return 0
	say "installing sqlsmith"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q sqlsmith
}

# Copy PostgreSQL 15's installation into $WORK/install and install guard
# from this tree into it (as test/run-tests.sh does: another tree's `make
# install` while we run cannot change the guard we test).
make_private_install()
{
	local inst="$WORK/install" bindir sharedir pkglibdir
	bindir="$("$PG_CONFIG" --bindir)"
	sharedir="$("$PG_CONFIG" --sharedir)"
	pkglibdir="$("$PG_CONFIG" --pkglibdir)"
	mkdir -p "$inst$(dirname "$bindir")" "$inst$(dirname "$sharedir")"
	cp -a "$(dirname "$bindir")/." "$inst$(dirname "$bindir")/"
	cp -a "$sharedir" "$inst$(dirname "$sharedir")/"
	rm -rf "$inst$pkglibdir"/guard.so "$inst$pkglibdir"/bitcode/guard* \
		"$inst$sharedir"/extension/guard[.-]*
	make -C "$REPO_DIR" -s install PG_CONFIG="$PG_CONFIG" DESTDIR="$inst"
	INST_BIN="$inst$bindir"
	if [[ "$("$INST_BIN/pg_config" --pkglibdir)" != "$inst$pkglibdir" ]]; then
		echo "the copy of PostgreSQL in $inst does not relocate" >&2
		return 1
	fi
}

# initdb and start the throwaway server: guard preloaded, restart after a
# crash (so that one crash does not end the run), errors logged with their
# SQLSTATE and source location.
start_server()
{
	DATA="$WORK/data"
	SOCK="$WORK/sock"
	as_pg mkdir -p "$SOCK"
	as_pg "$INST_BIN/initdb" -D "$DATA" -A trust --no-locale -E UTF8 >/dev/null
	as_pg tee -a "$DATA/postgresql.conf" >/dev/null <<EOF
shared_preload_libraries = 'guard'
port = $PORT
listen_addresses = ''
unix_socket_directories = '$SOCK'
restart_after_crash = on
max_prepared_transactions = 10
log_error_verbosity = verbose
log_min_error_statement = error
EOF
	as_pg "$INST_BIN/pg_ctl" -D "$DATA" -l "$WORK/out/server.log" -w start >/dev/null
}

# The database sqlsmith works on.
load_fixture()
{
	as_pg "$INST_BIN/createdb" -h "$SOCK" -p "$PORT" fuzz
	as_pg "$INST_BIN/psql" -X -q -h "$SOCK" -p "$PORT" -d fuzz -o /dev/null \
		-v ON_ERROR_STOP=1 -f - <<'EOF'
SET client_min_messages = warning;
CREATE EXTENSION guard;
CREATE EXTENSION file_fdw;
CREATE ROLE mallory LOGIN;
GRANT CREATE ON SCHEMA public TO mallory;

CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric NOT NULL,
					   opened date, tags text[], doc jsonb);
INSERT INTO accounts SELECT g, 'o' || g % 17, g * 10, date '2020-01-01' + g,
						   ARRAY['t' || g % 3], jsonb_build_object('k', g)
  FROM generate_series(1, 500) g;
SELECT guard.protect('accounts', max_rows => 400);
SELECT guard.add_invariant('accounts', 'non_negative', row_check => 'balance >= 0');
SELECT guard.add_invariant('accounts', 'some', query => 'SELECT count(*) > 0 FROM accounts',
						   deferred => false);
GRANT SELECT, INSERT, UPDATE, DELETE ON accounts TO mallory;

CREATE TABLE events (id bigint, at timestamptz, kind text, amount int, PRIMARY KEY (id, at))
	PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO events SELECT g, timestamptz '2024-06-01' + g * interval '1 day', 'k' || g % 5, g
  FROM generate_series(1, 300) g;
SELECT guard.protect('events', mode => 'warn', require_where => true);
SELECT guard.add_invariant('events', 'small', row_check => 'amount < 1000');

CREATE TABLE notes (k text PRIMARY KEY, body text);
INSERT INTO notes SELECT 'n' || g, repeat(md5(g::text), 100) FROM generate_series(1, 50) g;
SELECT guard.protect('notes', capture => 'dml');
ALTER TABLE notes OWNER TO mallory;

CREATE TABLE plain (id int PRIMARY KEY, v text);
INSERT INTO plain SELECT g, 'p' || g FROM generate_series(1, 100) g;
GRANT ALL ON plain TO mallory;
CREATE VIEW accounts_view AS SELECT id, owner, balance FROM accounts;
CREATE MATERIALIZED VIEW owners AS SELECT owner, sum(balance) AS total FROM accounts GROUP BY owner;
CREATE SEQUENCE counter;
CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
CREATE FOREIGN TABLE lines (line text) SERVER files OPTIONS (filename '/dev/null');

-- changes of several kinds, a restore, a table in the trash
UPDATE accounts SET balance = balance + 1 WHERE id <= 100;
DELETE FROM accounts WHERE id > 480;
UPDATE events SET amount = 2000 WHERE id = 1;
ALTER TABLE accounts ADD COLUMN note text;
TRUNCATE notes;
CREATE TABLE doomed (id int PRIMARY KEY);
INSERT INTO doomed SELECT generate_series(1, 10);
SELECT guard.protect('doomed');
DROP TABLE doomed;
SELECT count(*) FROM guard.restore((SELECT min(changeset_id) FROM guard.changesets));

-- relations of every kind, for arguments of type regclass
CREATE TABLE fuzz_rels (rel regclass, relid oid, kind text);
INSERT INTO fuzz_rels SELECT c.oid, c.oid, c.relkind::text FROM pg_class c
 WHERE c.relnamespace IN ('public'::regnamespace, 'guard'::regnamespace,
						  'guard_trash'::regnamespace, 'information_schema'::regnamespace)
	OR c.oid IN ('pg_class'::regclass, 'pg_authid'::regclass,
				 (SELECT reltoastrelid FROM pg_class WHERE oid = 'notes'::regclass));
INSERT INTO fuzz_rels VALUES (0, 0, 'none'), (4294967295, 4294967295, 'none');
GRANT SELECT ON fuzz_rels TO PUBLIC;

-- sqlsmith calls no set-returning function: a wrapper for each of guard's
DO $$
DECLARE
	f record;
BEGIN
	FOR f IN SELECT p.proname, p.pronargs,
					pg_catalog.pg_get_function_identity_arguments(p.oid) AS args
			   FROM pg_catalog.pg_proc p
			  WHERE p.pronamespace = 'guard'::regnamespace AND p.proretset
	LOOP
		EXECUTE format('CREATE FUNCTION public.%I(%s) RETURNS bigint LANGUAGE sql AS %L',
					   'fz_' || f.proname, f.args,
					   format('SELECT count(*) FROM guard.%I(%s)', f.proname,
							  (SELECT coalesce(string_agg('$' || i, ', ' ORDER BY i), '')
								 FROM generate_series(1, f.pronargs) i)));
	END LOOP;
END
$$;
EOF
}

# One sqlsmith run: $1 name, $2 role, $3 seed, $4 queries, then extra
# options.  Its output goes to $WORK/out/$1.log; the last lines are shown.
# A run that did not end normally (it could not start, or timed out) adds
# its name to RUNS_FAILED.
RUNS_FAILED=""
run_sqlsmith()
{
	local name="$1" role="$2" seed="$3" queries="$4" rc=0
	shift 4
	say "sqlsmith run $name: as $role, seed $seed, $queries queries $*"
	as_pg timeout -k 15 "$RUN_TIMEOUT" sqlsmith \
		--target="host=$SOCK port=$PORT dbname=fuzz user=$role" \
		--seed="$seed" --max-queries="$queries" --verbose "$@" \
		>"$WORK/out/$name.log" 2>&1 || rc=$?
	grep -E '^queries:|^AST stats' "$WORK/out/$name.log" || true
	if [[ $rc -ne 0 ]]; then
		echo "sqlsmith exited $rc"
		tail -n 20 "$WORK/out/$name.log"
		RUNS_FAILED+=" $name"
	fi
	# wait for the server to accept connections again, should it have crashed
	as_pg "$INST_BIN/pg_isready" -q -h "$SOCK" -p "$PORT" -t 60 || true
	return 0
}

# guard's own internal errors in the server log: XX000 whose LOCATION is a
# function defined in the guard source file it names.
guard_internal_errors()
{
	local log="$WORK/out/server.log" func file
	grep -A 1 'ERROR:  XX000:' "$log" | grep 'LOCATION:' |
		sed -E 's/.*LOCATION:  ([A-Za-z0-9_]+), ([A-Za-z0-9_]+\.c):[0-9]+.*/\1 \2/' |
		sort -u | while read -r func file; do
			[[ -f "$REPO_DIR/src/$file" ]] || continue
			grep -Eq "^$func\(" "$REPO_DIR/src/$file" && echo "$func ($file)"
		done
	return 0
}

main()
{
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	say "setup"
	bash "$REPO_DIR/test/setup.sh"
	ensure_sqlsmith
	WORK="$(mktemp -d /tmp/guard-sqlsmith.XXXXXX)"
	mkdir -p "$WORK/tmp" "$WORK/out"
	make_private_install
	if [[ $EUID -eq 0 ]]; then
		chown "$RUN_USER:" "$WORK" "$WORK/tmp" "$WORK/out"
	fi

	say "throwaway server and fixture"
	start_server
	load_fixture

	local t0=$SECONDS
	run_sqlsmith su postgres "$SEED" "$QUERIES" --exclude-catalog
	run_sqlsmith mallory mallory "$((SEED + 1))" "$QUERIES" --exclude-catalog
	run_sqlsmith catalogs postgres "$((SEED + 2))" "$QUERIES"
	local elapsed=$((SECONDS - t0))

	say "verdict"
	local log="$WORK/out/server.log" crashes internal core_xx000 failed=0
	crashes="$(grep -E 'terminated by signal|PANIC:' "$log" || true)"
	internal="$(guard_internal_errors)"
	core_xx000="$(grep -c 'ERROR:  XX000:' "$log" || true)"
	echo "sqlsmith ran ${elapsed}s; server log: $(grep -c 'ERROR: ' "$log" || true) errors," \
		"$core_xx000 XX000 in all"
	if [[ -n "$crashes" ]]; then
		failed=1
		echo "backend crashes:"
		echo "$crashes"
		grep -A 1 'terminated by signal' "$log" | grep 'Failed process was running' || true
	fi
	if [[ -n "$RUNS_FAILED" ]]; then
		failed=1
		echo "sqlsmith runs that did not end normally:$RUNS_FAILED"
	fi
	if [[ -n "$internal" ]]; then
		failed=1
		echo "internal errors (XX000) raised by guard, in:"
		echo "$internal"
	fi
	if [[ $failed -ne 0 ]]; then
		echo "sqlsmith: FAILED (server log: $log; GUARD_KEEP_TMP=1 keeps it)"
		return 1
	fi
	echo "sqlsmith: no crash, no internal error of guard's"
}

main "$@"
