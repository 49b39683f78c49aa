# bench/lib.sh: shared helpers for bench/run.sh and bench/profile.sh.
# Sourced, not run.  Everything here runs as root and drives a throwaway
# PostgreSQL 15 cluster owned by the `postgres` OS user (the server refuses
# root), listening only on a private socket directory.

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
BENCH_DB=bench

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Install what is missing (Debian packages), quietly.
ensure_packages() {
	local want=(postgresql-15 postgresql-server-dev-15 postgresql-15-tablelog postgresql-client-15 rsync)
	local missing=()
	for p in "${want[@]}"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	if ((${#missing[@]})); then
		log "installing ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
}

# Build guard from a private copy of the source tree (so a concurrent `make`
# in the work tree does not race with ours) and install it into a private
# copy of PostgreSQL 15's installation under TMP/inst (make install
# DESTDIR=...; PostgreSQL finds its share and lib directories relative to its
# binaries).  Others running `make install` meanwhile then cannot swap the
# library under a running benchmark, and we do not swap theirs.  Sets PGBIN.
#   BENCH_FROM_HEAD=1: build the committed HEAD instead of the work tree.
#   BENCH_NO_BUILD=1: use the system's installed guard as it is.
build_guard() {
	local src=$1 tmp=$2
	local pgc=/usr/lib/postgresql/15/bin/pg_config
	if [[ ${BENCH_NO_BUILD:-0} == 1 ]]; then
		log "BENCH_NO_BUILD=1: using the system's installed guard"
		return
	fi
	mkdir -p "$tmp/build"
	if [[ ${BENCH_FROM_HEAD:-0} == 1 ]]; then
		log "building guard from HEAD ($(git -C "$src" rev-parse --short HEAD))"
		git -C "$src" archive HEAD | tar -x -C "$tmp/build"
	else
		log "building guard from the work tree"
		rsync -a --exclude .git --exclude bench --exclude '*.o' --exclude '*.bc' \
			--exclude '*.so' --exclude results --exclude tmp_check "$src"/ "$tmp/build/"
	fi
	local bindir sharedir inst=$tmp/inst
	bindir=$("$pgc" --bindir)
	sharedir=$("$pgc" --sharedir)
	mkdir -p "$inst$(dirname "$bindir")" "$inst$(dirname "$sharedir")"
	cp -a "$(dirname "$bindir")/." "$inst$(dirname "$bindir")/"
	cp -a "$sharedir" "$inst$(dirname "$sharedir")/"
	make -s -C "$tmp/build" PG_CONFIG="$pgc" >"$tmp/build.log" 2>&1 ||
		{ tail -30 "$tmp/build.log"; die "guard build failed"; }
	make -s -C "$tmp/build" PG_CONFIG="$pgc" DESTDIR="$inst" install >>"$tmp/build.log" 2>&1 ||
		{ tail -30 "$tmp/build.log"; die "guard install failed"; }
	PGBIN=$inst$bindir
	[[ -f $inst$("$pgc" --pkglibdir)/guard.so ]] || die "guard.so not in the private installation"
	log "guard installed into the private installation $inst"
}

# as_pg CMD...: run a command as the postgres OS user.
as_pg() { runuser -u postgres -- "$@"; }

# Pick the first port in 5520..5530 that nothing listens on.
pick_port() {
	local p
	for p in $(seq 5520 5530); do
		if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q . &&
			[[ ! -e /tmp/.s.PGSQL.$p && ! -e /var/run/postgresql/.s.PGSQL.$p ]]; then
			echo "$p"
			return
		fi
	done
	die "no free port in 5520..5530"
}

# init_cluster TMPDIR: initdb + postgresql.conf for a 2-core / 24 GiB box.
init_cluster() {
	local tmp=$1
	PGDATA_DIR=$tmp/data
	SOCKDIR=$tmp/sock
	PORT=$(pick_port)
	mkdir -p "$SOCKDIR"
	chown -R postgres: "$tmp"
	as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$tmp/initdb.log" 2>&1 \
		|| { cat "$tmp/initdb.log"; die "initdb failed"; }
	cat >>"$PGDATA_DIR/postgresql.conf" <<EOF
# --- guard bench ---
listen_addresses = ''
port = $PORT
unix_socket_directories = '$SOCKDIR'
shared_buffers = 2GB
max_wal_size = 20GB
min_wal_size = 1GB
checkpoint_timeout = 1h
maintenance_work_mem = 512MB
effective_cache_size = 16GB
autovacuum = off
synchronous_commit = on
max_connections = 20
logging_collector = off
log_min_messages = warning
include_if_exists = 'preload.conf'
EOF
	set_preload guard
	export PGHOST=$SOCKDIR PGPORT=$PORT PGUSER=postgres
}

# set_preload LIBS: what shared_preload_libraries will be at next start.
set_preload() {
	echo "shared_preload_libraries = '$1'" >"$PGDATA_DIR/preload.conf"
	chown postgres: "$PGDATA_DIR/preload.conf"
}

start_cluster() {
	as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/../server.log" -w -t 120 start >/dev/null \
		|| { tail -30 "$PGDATA_DIR/../server.log"; die "server did not start"; }
}

stop_cluster() {
	[[ -n ${PGDATA_DIR:-} && -f $PGDATA_DIR/postmaster.pid ]] || return 0
	as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 120 stop >/dev/null 2>&1 ||
		as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1 || true
}

# restart_with LIBS: restart the server with shared_preload_libraries = LIBS.
restart_with() {
	set_preload "$1"
	stop_cluster
	start_cluster
}

# psql_db [psql args]: psql as postgres on the bench database; SQL on stdin.
psql_db() {
	runuser -u postgres -- env PGOPTIONS='-c client_min_messages=warning' \
		"$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$SOCKDIR" -p "$PORT" -d "$BENCH_DB" "$@"
}

# cpu_sampler ROOTPID POSTMASTER_PID_FILE OUT: every 5 s, append
# "<others %> <ours %>" to OUT: the share of all CPUs used in the interval by
# processes outside this benchmark vs by it (our process tree: this script and
# its descendants, plus the postmaster and its children; cutime/cstime count
# exited children, so short-lived processes are not lost).  This tells how
# noisy the machine was while we measured.
cpu_sampler() {
	local root=$1 pmfile=$2 out=$3
	set +e +o pipefail # processes vanish while we read /proc: never die of it
	local prev_busy=0 prev_total=0 prev_ours=0 first=1
	while kill -0 "$root" 2>/dev/null; do
		local pm
		pm=$(head -1 "$pmfile" 2>/dev/null || echo 0)
		read -r busy total < <(awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6}' /proc/stat)
		ours=$(cat /proc/[0-9]*/stat 2>/dev/null | awk -v r="$root" -v pm="$pm" -v self="$BASHPID" '
			{ pid = $1; line = $0; sub(/^.*\) /, "", line); split(line, f, " ");
			  ppid[pid] = f[2]; t[pid] = f[12] + f[13] + f[14] + f[15] }
			END {
				for (p in t) {
					q = p; mine = 0
					for (i = 0; i < 64 && q > 1; i++) {
						if (q == self) break
						if (q == r || q == pm) { mine = 1; break }
						q = ppid[q]
					}
					if (mine) s += t[p]
				}
				print s + 0
			}')
		if ((!first && total > prev_total)); then
			awk -v db=$((busy - prev_busy)) -v dt=$((total - prev_total)) -v dours=$((ours - prev_ours)) \
				'BEGIN { if (dours < 0) exit; o = 100 * dours / dt; a = 100 * db / dt - o; if (a < 0) a = 0; printf "%.1f %.1f\n", a, o }' >>"$out"
		fi
		first=0 prev_busy=$busy prev_total=$total prev_ours=$ours
		sleep 5
	done
}
