#!/usr/bin/env bash
# test/check-postgres.sh: run PostgreSQL 15's own regression suite with and
# without guard, and fail on any difference that is not known cosmetic
# (what `make check-postgres` runs; SPEC.md Guarantee 10).
#
#  1. test/setup.sh: install missing packages, build, install guard.
#  2. Fetch the core regression suite (src/test/regress) from Debian's source
#     package of the installed server with `apt-get source postgresql-15`,
#     adding a deb-src entry to /etc/apt/sources.list.d if apt has none.  If
#     the installed version's source is not available, the newest available
#     15.x is used: the suite is compared with itself, so a minor-version
#     mismatch only shows as failures against the expected files in every
#     mode alike; the suite then runs with psql of its own version.
#  3. Build regress.so and contrib/spi's refint.so and autoinc.so with PGXS.
#  4. Make a private copy of PostgreSQL 15's installation in a temp dir and
#     install guard and test/check-postgres/guard_protect_all into it (as
#     test/run-tests.sh does).
#  5. Run parallel_schedule with pg_regress in a temporary instance, as the
#     postgres OS user, three times:
#       A  without guard;
#       B  shared_preload_libraries = 'guard', CREATE EXTENSION guard in the
#          regression database (--load-extension=guard);
#       C  as B, plus CREATE EXTENSION guard_protect_all: an event trigger
#          that protects every new table that has a primary key.
#  6. Compare each test's output in B and in C with its output in A.  A test
#     whose output differs is listed with its first changed line; it passes
#     only if every changed line matches a pattern of
#     test/check-postgres/cosmetic.txt for that mode and test.  A test with
#     "row:" entries (result rows that list guard's own objects) is compared
#     without those rows: they are taken out, the "(N rows)" footers lowered
#     to match, and column padding normalized in both outputs.
#
# Exit status: 0 if modes B and C differ from A only as cosmetic.txt allows,
# every mode ran to the end and no backend crashed; 1 otherwise.  Everything
# started here is stopped, and the temp dir removed, on exit.
#
# Knobs (environment): GUARD_CHECK_POSTGRES_TIMEOUT (seconds per mode,
# default 1800), GUARD_CHECK_POSTGRES_OUT=DIR (save the diffs, pg_regress
# outputs and summary there), GUARD_KEEP_TMP=1 (keep the temp dir).
set -euo pipefail

readonly PG_BIN=/usr/lib/postgresql/15/bin
readonly PG_CONFIG="$PG_BIN/pg_config"
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_DIR
readonly HELPER_DIR="$REPO_DIR/test/check-postgres"
readonly ALLOW_LIST="$HELPER_DIR/cosmetic.txt"
readonly MODE_TIMEOUT="${GUARD_CHECK_POSTGRES_TIMEOUT:-1800}"
readonly SAVE_DIR="${GUARD_CHECK_POSTGRES_OUT:-}"
readonly RUN_USER=postgres
readonly SRC_PACKAGE=postgresql-15

WORK=""            # temp dir: source, build, private installation, outputs
INST_BIN=""        # bin dir of the private installation in $WORK/install
REGRESS_DIR=""     # $WORK/regress: the suite, owned by the postgres user
SUITE_VERSION=""   # Debian version of the source package used
TESTS=()           # test names of parallel_schedule, in order
FAILED=0           # set to 1 by anything that fails the check
SUMMARY=()         # lines of the final summary

# Print a heading that stands out in CI logs.
say()
{
	printf '\n==> %s\n' "$*"
}

# Add a line to the final summary (and print it now).
note()
{
	SUMMARY+=("$*")
	printf '%s\n' "$*"
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

# as_pg, stop_leftover_servers, cleanup, make_private_install
# shellcheck source=test/lib.sh
source "$REPO_DIR/test/lib.sh"

# Make sure apt knows source packages: add a deb-src entry for Debian's
# archive and security archive of this release, and update, if it has none.
ensure_deb_src()
{
	if apt-cache showsrc "$SRC_PACKAGE" 2>/dev/null | grep -q '^Version:'; then
		return 0
	fi
	local codename list=/etc/apt/sources.list.d/guard-deb-src.sources
	# shellcheck disable=SC1091 # sourced only to read the codename
	codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
	echo "adding Debian source packages for $codename to apt ($list)"
	as_root tee "$list" >/dev/null <<EOF
# Added by guard's test/check-postgres.sh: Debian source packages, so that
# \`apt-get source $SRC_PACKAGE\` can fetch PostgreSQL's regression suite.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: $codename-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
}

# Fetch and unpack Debian's source package of the installed server into
# $WORK/source: the installed version if apt can get it, else the newest
# version it can.  Sets SUITE_VERSION.
fetch_source()
{
	local installed versions=() v
	installed="$(dpkg-query -W -f='${Version}' "$SRC_PACKAGE")"
	ensure_deb_src
	# The installed version first, then the others, newest first.
	versions+=("$installed")
	while IFS= read -r v; do
		if [[ "$v" != "$installed" ]]; then
			versions+=("$v")
		fi
	done < <(apt-cache showsrc "$SRC_PACKAGE" | awk '/^Version:/ {print $2}' |
		sort -u | sort -r -V)
	mkdir -p "$WORK/source"
	for v in "${versions[@]}"; do
		echo "apt-get source $SRC_PACKAGE=$v"
		rm -rf "${WORK:?}/source"/*
		# The download runs as root in a dir _apt cannot enter: apt warns.
		if (cd "$WORK/source" && apt-get source -q "$SRC_PACKAGE=$v" 2>&1 |
			grep -v 'unsandboxed as root'); then
			:
		fi
		if compgen -G "$WORK/source/*/src/test/regress/parallel_schedule" >/dev/null; then
			SUITE_VERSION="$v"
			break
		fi
		echo "could not fetch the source of $SRC_PACKAGE $v" >&2
	done
	if [[ -z "$SUITE_VERSION" ]]; then
		echo "no source package of $SRC_PACKAGE could be fetched" >&2
		return 1
	fi
	note "server $installed, regression suite from source package $SUITE_VERSION"
	[[ "$SUITE_VERSION" == "$installed" ]] ||
		note "(the installed version's source is not in the archive: some tests may fail against their expected files in every mode)"
}

# Copy src/test/regress into $REGRESS_DIR and build regress.so, refint.so and
# autoinc.so there with PGXS (the suite loads them from --dlpath).
build_suite()
{
	local top build
	top="$(echo "$WORK"/source/*/src/test/regress)"
	top="${top%/src/test/regress}"
	build="$WORK/build"
	mkdir -p "$build"
	cp "$top/src/test/regress/regress.c" "$top/contrib/spi/refint.c" \
		"$top/contrib/spi/autoinc.c" "$build/"
	# shellcheck disable=SC2016 # make syntax
	printf '%s\n' 'MODULES = regress refint autoinc' \
		"PG_CONFIG = $PG_CONFIG" \
		'PGXS := $(shell $(PG_CONFIG) --pgxs)' \
		'include $(PGXS)' >"$build/Makefile"
	make -C "$build" -s -j"$(nproc)" || return 1
	cp -a "$top/src/test/regress" "$REGRESS_DIR"
	cp "$build"/regress.so "$build"/refint.so "$build"/autoinc.so "$REGRESS_DIR/"
	rm -rf "$REGRESS_DIR/results" "$REGRESS_DIR/log"
	mapfile -t TESTS < <(awk '/^test:/ {for (i = 2; i <= NF; i++) print $i}' \
		"$REGRESS_DIR/parallel_schedule")
	echo "${#TESTS[@]} tests in parallel_schedule"
}

# Add guard_protect_all (the suite's helper that protects every table) to
# the private installation make_private_install (test/lib.sh) made.
install_protect_all()
{
	install -m 644 "$HELPER_DIR"/guard_protect_all.control \
		"$HELPER_DIR"/guard_protect_all--*.sql \
		"$("$INST_BIN/pg_config" --sharedir)/extension/" || return 1
	echo "guard_protect_all installed there too"
}

# If the suite comes from another minor version than the server, run it with
# psql of that version (from Debian's client package), put in the private
# installation: psql's handling of scripts changes in minor releases (15.19
# skips the in-line data of a COPY FROM STDIN that fails at startup, which
# older suites do not end with a \.), and the suite expects its own psql.
# The server stays the installed one.
match_psql()
{
	local installed dl="$WORK/psql-deb" deb
	installed="$(dpkg-query -W -f='${Version}' "$SRC_PACKAGE")"
	[[ "$SUITE_VERSION" != "$installed" ]] || return 0
	mkdir -p "$dl"
	if (cd "$dl" && apt-get download -q "postgresql-client-15=$SUITE_VERSION" 2>&1 |
		grep -v 'unsandboxed as root'); then
		:
	fi
	deb="$(echo "$dl"/postgresql-client-15_*.deb)"
	if [[ ! -f "$deb" ]] || ! dpkg-deb -x "$deb" "$dl/x" ||
		[[ ! -x "$dl/x$PG_BIN/psql" ]]; then
		note "(could not fetch psql $SUITE_VERSION: running the suite with psql $installed)"
		return 0
	fi
	install -m 755 "$dl/x$PG_BIN/psql" "$INST_BIN/psql"
	note "the suite runs with its own psql ($("$INST_BIN/psql" --version))"
}

# Run parallel_schedule in a temporary instance for mode $1 (A, B or C);
# outputs go to $WORK/out/$1.  Returns non-zero only if pg_regress did not
# run to the end (timeout, crash of the driver); failures against the
# expected files are normal here and are compared later.
run_mode()
{
	local mode="$1" out="$WORK/out/$1" rc=0 port
	local opts=()
	case "$mode" in
		A) ;;
		B) opts=(--temp-config="$WORK/preload.conf" --load-extension=guard) ;;
		C) opts=(--temp-config="$WORK/preload.conf" --load-extension=guard
				--load-extension=guard_protect_all) ;;
	esac
	# A port of our own: the socket lives in a private dir anyway.
	port=$((20000 + ($$ + RANDOM) % 10000))
	say "mode $mode: pg_regress parallel_schedule ${opts[*]}"
	as_pg "$WORK" mkdir -p "$out"
	local start=$SECONDS
	as_pg "$REGRESS_DIR" timeout -k 15 "$MODE_TIMEOUT" \
		"$PGXS_DIR/src/test/regress/pg_regress" \
		--inputdir="$REGRESS_DIR" --dlpath="$REGRESS_DIR" \
		--schedule="$REGRESS_DIR/parallel_schedule" \
		--max-concurrent-tests=20 \
		--temp-instance="$out/instance" --outputdir="$out" \
		--bindir="$INST_BIN" --port="$port" \
		--no-locale --encoding=UTF8 \
		"${opts[@]}" >"$out/driver.log" 2>&1 || rc=$?
	tail -n 3 "$out/driver.log"
	echo "mode $mode took $((SECONDS - start)) s (pg_regress exit status $rc)"
	if [[ $rc -eq 124 || $rc -eq 137 ]]; then
		note "mode $mode: timed out after ${MODE_TIMEOUT}s"
		return 1
	fi
	if ! grep -Eq '^(=+|#)? *(All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests failed)' \
		"$out/driver.log"; then
		note "mode $mode: pg_regress did not finish (exit status $rc)"
		sed -n '1,40p' "$out/driver.log"
		return 1
	fi
	return 0
}

# Report the crashes (backends killed by a signal, PANICs, assertion
# failures) in the server log of mode $1; returns non-zero if there were any.
check_crashes()
{
	local mode="$1" log="$WORK/out/$1/log/postmaster.log" hits
	hits="$(grep -E 'terminated by signal|terminated by exception|PANIC:|TRAP:' \
		"$log" 2>/dev/null || true)"
	if [[ -n "$hits" ]]; then
		note "mode $mode: SERVER CRASH:"
		note "$(head -n 10 <<<"$hits")"
		return 1
	fi
	note "mode $mode: no backend crashed"
	return 0
}

# Print the names of the tests that failed against their expected output in
# mode $1 (for mode A, a property of this server and suite, not of guard).
failed_tests()
{
	local t
	for t in "${TESTS[@]}"; do
		grep -Eq "^(test)? +$t +\.\.\. ok( |$)" "$WORK/out/$1/driver.log" ||
			printf '%s\n' "$t"
	done
}

# Read the allow-list into $WORK/allow/MODE.TEST files of patterns, one per
# line, and $WORK/allow/MODE.TEST.why; fails on an entry without a reason.
load_allow_list()
{
	local line reason="" modes tests pattern kind m t n=0 lineno=0
	mkdir -p "$WORK/allow"
	while IFS= read -r line || [[ -n "$line" ]]; do
		lineno=$((lineno + 1))
		if [[ "$line" =~ ^[[:space:]]*$ ]]; then
			reason=""
			continue
		fi
		if [[ "$line" =~ ^[[:space:]]*#[[:space:]]?(.*)$ ]]; then
			reason+="${reason:+ }${BASH_REMATCH[1]}"
			continue
		fi
		read -r modes tests pattern <<<"$line"
		kind=""
		if [[ "$pattern" == "row: "* ]]; then
			kind=".rows"
			pattern="${pattern#row: }"
		fi
		if [[ -z "$reason" || -z "$pattern" || ! "$modes" =~ ^[BC](,[BC])?$ ]]; then
			echo "$ALLOW_LIST:$lineno: bad entry (MODES TESTS [row: ]PATTERN after a comment saying why): $line" >&2
			return 1
		fi
		for m in ${modes//,/ }; do
			for t in ${tests//,/ }; do
				printf '%s\n' "$pattern" >>"$WORK/allow/$m.$t$kind"
				printf '%s\n' "$reason" >"$WORK/allow/$m.$t.why"
			done
		done
		n=$((n + 1))
	done <"$ALLOW_LIST"
	echo "$n cosmetic entries in ${ALLOW_LIST#"$REPO_DIR"/}"
}

# Print the output file $1 with the result rows of guard's own objects
# taken out: the lines matching a pattern of file $2 (cosmetic.txt's "row:"
# entries), each result's "(N rows)" footer lowered by the rows taken out of
# it.  Column padding, which such rows widen, is normalized in what is left
# (runs of blanks to one in lines with a column separator, separator lines
# to one dash a column), so that the same output with and without guard's
# rows compares equal.
without_guard_rows()
{
	awk -v rows="$2" '
		BEGIN {
			n = 0
			if (rows != "")
				while ((getline p < rows) > 0)
					pats[n++] = p
		}
		{
			line = $0
			for (i = 0; i < n; i++)
				if (line ~ pats[i]) {
					removed++
					next
				}
			if (line ~ /^\([0-9]+ rows?\)$/) {
				k = substr(line, 2) + 0 - removed
				line = "(" k (k == 1 ? " row)" : " rows)")
				removed = 0
			}
			if (line ~ /^-+(\+-+)*$/) {
				gsub(/-+/, "-", line)
				removed = 0
			}
			if (line ~ /\|/) {
				gsub(/ +/, " ", line)
				sub(/ $/, "", line)
			}
			print line
		}' "$1"
}

# The first changed line of diff $1 worth showing as its reason: the first
# added ERROR, WARNING or crash message, else the first changed line that
# no pattern of file $2 (the test's cosmetic entries, if any) allows.
first_change()
{
	local line="" l
	line="$(grep -m 1 -E '^\+(ERROR|WARNING|FATAL|PANIC|server closed)' "$1" || true)"
	if [[ -z "$line" ]]; then
		while IFS= read -r l; do
			if [[ ! -s "${2:-}" ]] || ! printf '%s\n' "${l:1}" | grep -Eq -f "$2"; then
				line="$l"
				break
			fi
		done < <(grep -E '^[-+]' "$1" | grep -Ev '^(\+\+\+|---) ' || true)
	fi
	printf '%s' "${line:0:160}"
}

# Compare each test's output in mode $1 with mode A; write the diffs to
# $WORK/out/$1/vs-A/TEST.diff and $WORK/out/$1/vs-A.diffs; report them.
compare_mode()
{
	local mode="$1" dir="$WORK/out/$1/vs-A" t a x d rowsd changed unlisted=0 total=0
	local allow why differing=()
	mkdir -p "$dir"
	: >"$WORK/out/$mode/vs-A.diffs"
	say "mode $mode compared with mode A"
	for t in "${TESTS[@]}"; do
		a="$WORK/out/A/results/$t.out"
		x="$WORK/out/$mode/results/$t.out"
		[[ -f "$a" ]] || a=/dev/null
		[[ -f "$x" ]] || x=/dev/null
		if cmp -s "$a" "$x"; then
			continue
		fi
		total=$((total + 1))
		differing+=("$t")
		d="$dir/$t.diff"
		diff -U3 --label "A/$t.out" --label "$mode/$t.out" "$a" "$x" >"$d" || true
		cat "$d" >>"$WORK/out/$mode/vs-A.diffs"
		# With rows of guard's objects listed for the test, compare the
		# outputs without them (the raw diff stays in $d).
		rowsd="$d"
		if [[ -f "$WORK/allow/$mode.$t.rows" ]]; then
			rowsd="$dir/$t.rows.diff"
			without_guard_rows "$a" "" >"$dir/$t.A.norm"
			without_guard_rows "$x" "$WORK/allow/$mode.$t.rows" >"$dir/$t.$mode.norm"
			diff -U3 "$dir/$t.A.norm" "$dir/$t.$mode.norm" >"$rowsd" || true
		fi
		# The changed lines, without their sign.
		{ grep -E '^[-+]' "$rowsd" || true; } | { grep -Ev '^(\+\+\+|---) ' || true; } |
			cut -c2- >"$dir/$t.changed"
		changed="$(wc -l <"$dir/$t.changed")"
		allow="$WORK/allow/$mode.$t"
		[[ -f "$allow" ]] || [[ ! -f "$allow.rows" ]] || : >"$allow"
		if [[ -f "$allow" ]] && ! grep -Eq -v -f "$allow" "$dir/$t.changed"; then
			why="$(<"$allow.why")"
			[[ ${#why} -le 110 ]] || why="${why:0:107}..."
			note "  cosmetic  $t: $why"
		else
			unlisted=$((unlisted + 1))
			printf '%s\n' "$t" >>"$WORK/out/$mode/unlisted"
			note "  DIFFERS   $t ($changed lines): $(first_change "$rowsd" "$allow")"
		fi
	done
	for allow in "$WORK/allow/$mode".*; do
		[[ -f "$allow" && "$allow" != *.why ]] || continue
		if [[ "$allow" == *.rows ]]; then
			[[ ! -f "${allow%.rows}" ]] || continue
			allow="${allow%.rows}"
		fi
		t="${allow##*/"$mode".}"
		if [[ " ${differing[*]} " != *" $t "* ]]; then
			note "  (cosmetic.txt entry for mode $mode, $t, matched no difference)"
		fi
	done
	note "mode $mode: $total tests differ from mode A, $unlisted of them not cosmetic"
	[[ $unlisted -eq 0 ]]
}

# Copy what the lead needs to look at into $SAVE_DIR.
save_outputs()
{
	local m
	[[ -n "$SAVE_DIR" ]] || return 0
	mkdir -p "$SAVE_DIR"
	for m in A B C; do
		[[ -d "$WORK/out/$m" ]] || continue
		mkdir -p "$SAVE_DIR/$m"
		cp "$WORK/out/$m/driver.log" "$SAVE_DIR/$m/" 2>/dev/null || true
		cp "$WORK/out/$m/regression.diffs" "$SAVE_DIR/$m/vs-expected.diffs" 2>/dev/null || true
		cp "$WORK/out/$m/log/postmaster.log" "$SAVE_DIR/$m/" 2>/dev/null || true
		if [[ -d "$WORK/out/$m/vs-A" ]]; then
			rm -rf "$SAVE_DIR/$m/vs-A"
			cp -r "$WORK/out/$m/vs-A" "$WORK/out/$m/vs-A.diffs" "$SAVE_DIR/$m/"
		fi
	done
	printf '%s\n' "${SUMMARY[@]}" >"$SAVE_DIR/summary.txt"
	echo "outputs saved in $SAVE_DIR"
}

main()
{
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	local start=$SECONDS m t

	say "setup"
	bash "$REPO_DIR/test/setup.sh"

	WORK="$(mktemp -d /tmp/guard-check-postgres.XXXXXX)"
	REGRESS_DIR="$WORK/regress"
	PGXS_DIR="$(dirname "$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")")"
	mkdir -p "$WORK/tmp" "$WORK/out"
	echo "shared_preload_libraries = 'guard'" >"$WORK/preload.conf"
	load_allow_list

	say "regression suite"
	fetch_source
	build_suite
	say "private installation"
	make_private_install
	install_protect_all
	match_psql
	if [[ $EUID -eq 0 ]]; then
		chown "$RUN_USER:" "$WORK"
		chown -R "$RUN_USER:" "$REGRESS_DIR" "$WORK/tmp" "$WORK/out"
	fi

	for m in A B C; do
		run_mode "$m" || FAILED=1
	done

	say "results"
	local fa
	fa="$(failed_tests A | tr '\n' ' ')"
	note "mode A: $(wc -w <<<"$fa") tests fail against their expected files without guard${fa:+: $fa}"
	for m in A B C; do
		check_crashes "$m" || FAILED=1
	done
	for m in B C; do
		compare_mode "$m" || FAILED=1
	done
	save_outputs
	if [[ $FAILED -ne 0 ]]; then
		say "differences not listed in ${ALLOW_LIST#"$REPO_DIR"/}"
		for m in B C; do
			[[ -f "$WORK/out/$m/unlisted" ]] || continue
			while IFS= read -r t; do
				printf '\n----- mode %s: %s -----\n' "$m" "$t"
				head -n 300 "$WORK/out/$m/vs-A/$t.diff"
			done <"$WORK/out/$m/unlisted"
		done
	fi
	cleanup

	say "summary ($((SECONDS - start)) s)"
	printf '%s\n' "${SUMMARY[@]}"
	if [[ $FAILED -ne 0 ]]; then
		echo "check-postgres: FAILED"
		return 1
	fi
	echo "check-postgres: passed"
}

main "$@"
