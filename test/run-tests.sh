#!/usr/bin/env bash
# test/run-tests.sh: run every test suite of guard (what `make test` runs).
#
#  1. test/setup.sh: install missing packages, build, install the extension.
#  2. Copy the working tree into a temp dir owned by the postgres OS user:
#     CI may clone into a folder that user cannot enter (e.g. under /root),
#     and the server refuses to run as root.
#  3. Make a private copy of PostgreSQL 15's installation in the temp dir and
#     install guard into it (make install DESTDIR=...).  PostgreSQL finds its
#     share and lib directories relative to its binaries, so the suites test
#     the guard just built even if someone runs `make install` from another
#     tree while they run (this happens when several people share a machine).
#  4. As postgres, with the private installation first in PATH, from the
#     copy's top directory:
#     - pg_regress over the Makefile's REGRESS list (sql/, expected/) in a
#       temporary instance, with the Makefile's REGRESS_OPTS (test/guard.conf
#       preloads guard, --load-extension=guard);
#     - pg_isolation_regress over the Makefile's ISOLATION list
#       (test/specs/*.spec, test/expected/*.out), with ISOLATION_OPTS;
#     - prove over test/t/*.pl, one file at a time, with
#       PostgreSQL::Test::Cluster from PGXS.  A TAP test runs with the copy's
#       top directory as its working directory and TESTDIR, so it can read
#       test/guard.conf; its clusters do not preload guard unless the test
#       says so (as with PGXS's `make installcheck`).
#  5. Print the diffs and logs of whatever failed, and end with exactly one
#     line "N passed, M failed".
#
# How the summary counts: one unit per test file.  A pg_regress test
# (sql/NAME.sql), an isolation spec (test/specs/NAME.spec) and a TAP file
# (test/t/NAME.pl) each count once, as passed or failed.  A test that the
# Makefile lists but that did not report "ok" (its suite crashed, timed out,
# or could not start) counts as failed, so a suite that cannot run at all
# fails the run.  A suite that exits non-zero although all its tests said
# "ok" adds one failure.  TAP assertions are not counted one by one: prove
# prints them, and a file passes only if all of its assertions do.
#
# Exit status: 0 if everything passed, 1 if anything failed or nothing ran.
# Everything started here is stopped, and the temp dir removed, on exit.
#
# Knobs (environment): GUARD_SUITE_TIMEOUT (seconds per pg_regress or
# isolation run, default 300), GUARD_TAP_TIMEOUT (seconds per TAP file,
# default 300), GUARD_KEEP_TMP=1 (keep the temp dir for post-mortem).
set -euo pipefail

readonly PG_BIN=/usr/lib/postgresql/15/bin
readonly PG_CONFIG="$PG_BIN/pg_config"
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_DIR
readonly SUITE_TIMEOUT="${GUARD_SUITE_TIMEOUT:-300}"
readonly TAP_TIMEOUT="${GUARD_TAP_TIMEOUT:-300}"
readonly RUN_USER=postgres

WORK=""            # temp dir: copy of the repo, outputs, temp instances
INST_BIN=""        # bin dir of the private installation in $WORK/install
SRC=""             # $WORK/src: the copy the suites run from
PGXS_DIR=""        # .../lib/pgxs, where pg_regress and the perl modules live
SETUP_OK=1
TOTAL_PASSED=0
TOTAL_FAILED=0
SUITE_LINES=()     # one "suite: N passed, M failed" line per suite

# Print a heading that stands out in CI logs.
say()
{
	printf '\n==> %s\n' "$*"
}

# Print a file (or its first lines, if huge) under a heading, if it has any.
show_file()
{
	local title="$1" file="$2" max="${3:-2000}"
	[[ -s "$file" ]] || return 0
	printf '\n----- %s (%s) -----\n' "$title" "$file"
	head -n "$max" "$file"
	if [[ $(wc -l <"$file") -gt $max ]]; then
		printf '[... truncated after %s lines ...]\n' "$max"
	fi
	printf -- '----- end of %s -----\n' "$title"
}

# Print the last $3 lines of a file under a heading, if it has any.
show_tail()
{
	local title="$1" file="$2" lines="$3"
	[[ -s "$file" ]] || return 0
	printf '\n----- %s, last %s lines (%s) -----\n' "$title" "$lines" "$file"
	tail -n "$lines" "$file"
	printf -- '----- end of %s -----\n' "$title"
}

# as_pg, stop_leftover_servers, cleanup, make_private_install
# shellcheck source=test/lib.sh
source "$REPO_DIR/test/lib.sh"

# Print the value of a variable of the Makefile (after PGXS has added its
# own options), so that listing a test in the Makefile is all it takes.
makefile_var()
{
	local helper="$WORK/print-var.mk"
	# shellcheck disable=SC2016 # $($*) is make syntax, not shell
	[[ -f "$helper" ]] || printf 'print-var-%%:\n\t@echo $($*)\n' >"$helper"
	make -s --no-print-directory -C "$SRC" -f Makefile -f "$helper" \
		PG_CONFIG="$PG_CONFIG" "print-var-$1"
}

# Add a suite's counts to the totals and remember its summary line.
record()
{
	local suite="$1" passed="$2" failed="$3" note="${4:-}"
	TOTAL_PASSED=$((TOTAL_PASSED + passed))
	TOTAL_FAILED=$((TOTAL_FAILED + failed))
	SUITE_LINES+=("$(printf '%-11s %3d passed, %3d failed%s' "$suite:" \
		"$passed" "$failed" "${note:+  ($note)}")")
}

# Copy the working tree (uncommitted edits included, build products and
# earlier test outputs left out) into $SRC, owned by the postgres user.
copy_tree()
{
	mkdir -p "$SRC" "$WORK/tmp" "$WORK/out"
	tar -C "$REPO_DIR" -cf - \
		--exclude=./.git --exclude=./tmp_check --exclude=./results \
		--exclude=./output_iso --exclude=./log --exclude='*.o' \
		--exclude='*.bc' --exclude='*.so' \
		--exclude=./regression.diffs --exclude=./regression.out . |
		tar -C "$SRC" -xf -
	if [[ $EUID -eq 0 ]]; then
		# Not $WORK/install: it holds root's copy of PostgreSQL.
		chown "$RUN_USER:" "$WORK"
		chown -R "$RUN_USER:" "$SRC" "$WORK/tmp" "$WORK/out"
	fi
}

# Run pg_regress or pg_isolation_regress over a list of tests in a temporary
# instance, and count each listed test that reported "ok" as passed.
#   $1 suite name, $2 driver binary, $3 Makefile list variable,
#   $4 Makefile options variable
run_regress_suite()
{
	local suite="$1" driver="$2" listvar="$3" optsvar="$4"
	local tests opts out rc=0 passed=0 failed=0 t log words

	say "$suite (Makefile $listvar)"
	if ! words="$(makefile_var "$listvar")"; then
		record "$suite" 0 1 "not run: cannot read $listvar from the Makefile"
		return 0
	fi
	read -r -a tests <<<"$words"
	if ! words="$(makefile_var "$optsvar")"; then
		record "$suite" 0 "${#tests[@]}" "not run: cannot read $optsvar"
		return 0
	fi
	read -r -a opts <<<"$words"
	echo "${#tests[@]} tests: ${tests[*]}"
	if [[ ${#tests[@]} -eq 0 ]]; then
		record "$suite" 0 0 "none listed"
		return 0
	fi
	if [[ $SETUP_OK -ne 1 ]]; then
		record "$suite" 0 "${#tests[@]}" "not run: setup failed"
		return 0
	fi
	if [[ ! -x "$driver" ]]; then
		echo "$suite: $driver not found" >&2
		record "$suite" 0 "${#tests[@]}" "not run: no $(basename "$driver")"
		return 0
	fi

	out="$WORK/out/$suite"
	log="$out/driver.log"
	as_pg "$WORK" mkdir -p "$out"
	# Our options come after the Makefile's, so --outputdir wins over its
	# output_iso.  --no-locale and UTF8 make sort orders and messages the
	# same on every machine, whatever its LANG.
	as_pg "$SRC" timeout -k 15 "$SUITE_TIMEOUT" "$driver" \
		"${opts[@]}" \
		--temp-instance="$out/instance" \
		--outputdir="$out" \
		--bindir="$INST_BIN" \
		--no-locale --encoding=UTF8 \
		"${tests[@]}" 2>&1 | tee "$log" || rc=$?	# pipefail: the driver's status

	local silent=0
	for t in "${tests[@]}"; do
		if grep -Eq "^(test)? +$t +\.\.\. ok( |$)" "$log"; then
			passed=$((passed + 1))
		else
			failed=$((failed + 1))
			# No "ok", "FAILED" or "failed (ignored)" at all: never ran.
			grep -Eq "^(test)? +$t +\.\.\. (FAILED|failed)" "$log" ||
				silent=$((silent + 1))
		fi
	done

	local note=""
	if [[ $rc -eq 124 || $rc -eq 137 ]]; then
		note="timed out after ${SUITE_TIMEOUT}s"
	elif [[ $silent -ne 0 ]]; then
		note="$silent did not run: driver exited $rc"
	elif [[ $rc -ne 0 && $failed -eq 0 ]]; then
		note="driver exited $rc"
		failed=1
	fi
	if [[ $failed -ne 0 || $rc -ne 0 ]]; then
		show_file "$suite diffs" "$out/regression.diffs"
		show_tail "$suite server log" "$out/log/postmaster.log" 80
	fi
	record "$suite" "$passed" "$failed" "$note"
}

# Run each TAP file in test/t with prove, as PGXS's prove_installcheck does.
run_tap_suite()
{
	local files=() f name rc passed=0 failed=0 required
	local perl_lib="$PGXS_DIR/src/test/perl"

	shopt -s nullglob
	files=("$SRC"/test/t/*.pl)
	shopt -u nullglob
	# If the Makefile asks for TAP tests, finding none means the suite could
	# not run; otherwise an empty test/t is simply no TAP tests yet.
	required="$(makefile_var TAP_TESTS || echo unknown)"
	say "tap: ${#files[@]} files (test/t/*.pl)"
	if [[ ${#files[@]} -eq 0 ]]; then
		if [[ -n "$required" ]]; then
			record tap 0 1 "Makefile sets TAP_TESTS but test/t has no .pl"
		else
			record tap 0 0 "no test/t/*.pl"
		fi
		return 0
	fi
	if [[ $SETUP_OK -ne 1 ]]; then
		record tap 0 "${#files[@]}" "not run: setup failed"
		return 0
	fi
	if ! command -v prove >/dev/null || [[ ! -d "$perl_lib" ]]; then
		echo "tap: prove or $perl_lib missing" >&2
		record tap 0 "${#files[@]}" "not run: no prove or PostgreSQL::Test"
		return 0
	fi

	as_pg "$SRC" mkdir -p "$SRC/tmp_check/log"
	for f in "${files[@]}"; do
		name="$(basename "$f" .pl)"
		rc=0
		# PG_REGRESS: Cluster->init runs it with --config-auth.
		as_pg "$SRC" timeout -k 15 "$TAP_TIMEOUT" \
			env TESTDIR="$SRC" PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress" \
			prove -I "$perl_lib" -I "$SRC/test" "test/t/$name.pl" 2>&1 || rc=$?
		if [[ $rc -eq 0 ]]; then
			passed=$((passed + 1))
		else
			failed=$((failed + 1))
			[[ $rc -eq 124 || $rc -eq 137 ]] &&
				echo "tap: $name timed out after ${TAP_TIMEOUT}s"
			show_tail "tap $name log" "$SRC/tmp_check/log/regress_log_$name" 150
			local slog
			for slog in "$SRC/tmp_check/log/${name}"_*.log; do
				show_tail "tap $name server log" "$slog" 40
			done
		fi
	done
	record tap "$passed" "$failed"
}

main()
{
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	say "setup"
	bash "$REPO_DIR/test/setup.sh" || SETUP_OK=0
	if [[ $SETUP_OK -ne 1 ]]; then
		echo "setup failed: the suites will not run" >&2
	fi

	WORK="$(mktemp -d /tmp/guard-test.XXXXXX)"
	SRC="$WORK/src"
	copy_tree
	say "private installation"
	if [[ $SETUP_OK -eq 1 ]] && ! make_private_install; then
		echo "could not make the private installation: the suites will not run" >&2
		SETUP_OK=0
	fi
	PGXS_DIR="$(dirname "$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")")"

	run_regress_suite regress \
		"$PGXS_DIR/src/test/regress/pg_regress" REGRESS REGRESS_OPTS
	run_regress_suite isolation \
		"$PGXS_DIR/src/test/isolation/pg_isolation_regress" ISOLATION ISOLATION_OPTS
	run_tap_suite

	# Clean up before the summary, so the summary is the last line printed.
	cleanup
	if [[ $SETUP_OK -ne 1 && $TOTAL_FAILED -eq 0 ]]; then
		TOTAL_FAILED=1
	fi
	if [[ $((TOTAL_PASSED + TOTAL_FAILED)) -eq 0 ]]; then
		SUITE_LINES+=("no test found at all: counted as one failure")
		TOTAL_FAILED=1
	fi

	say "summary"
	printf '%s\n' "${SUITE_LINES[@]}"
	echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
	[[ $TOTAL_FAILED -eq 0 ]]
}

main "$@"
