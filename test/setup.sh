#!/usr/bin/env bash
# test/setup.sh: make a Debian 12 machine ready to build, demo and test guard.
#
# Installs (only) what is missing with apt, then builds and installs the
# extension into Debian's PostgreSQL 15 with PGXS.  Idempotent: a second run
# finds every package already installed, skips apt entirely, and make only
# rebuilds what changed.  Runs as root; a non-root user needs sudo.
#
# Debian's postgresql-15 package may create and start a "main" cluster on
# port 5432.  That is harmless and nothing here or in the other test scripts
# uses it: they all start their own servers.
set -euo pipefail

readonly PG_BIN=/usr/lib/postgresql/15/bin
readonly PG_CONFIG="$PG_BIN/pg_config"
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_DIR

# postgresql-client-15 (pulled in by the server-dev package anyway) ships
# pg_isolation_regress, isolationtester and PostgreSQL::Test::Cluster;
# libipc-run-perl is needed by the TAP tests and nothing pulls it in.
# sqitch (with DBD::Pg), Django and psycopg2 are the migration tools that
# test/t/013_sqitch.pl and 014_django.pl run; the npm ones are installed by
# install_node_tools below.
readonly PACKAGES=(
	postgresql-15
	postgresql-server-dev-15
	postgresql-client-15
	libipc-run-perl
	build-essential
	sqitch
	libdbd-pg-perl
	python3-django
	python3-psycopg2
)

# node-pg-migrate and knex, for test/t/015_node_pg_migrate.pl and
# 016_knex.pl, at the versions test/tools/package-lock.json pins.
readonly NODE_TOOLS_DIR="$REPO_DIR/test/tools"

# Print a progress line that stands out in CI logs.
say()
{
	printf '==> %s\n' "$*"
}

# Run a command as root: directly when we are root, else through sudo.
as_root()
{
	if [[ $EUID -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		echo "setup.sh: need root (or sudo) to run: $*" >&2
		return 1
	fi
}

# True if the Debian package named $1 is fully installed.  dpkg-query is
# much faster than asking apt, and keeps a second run quick.
is_installed()
{
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

# Install whichever of PACKAGES are missing; touch apt only if something is.
install_packages()
{
	local missing=() pkg
	for pkg in "${PACKAGES[@]}"; do
		is_installed "$pkg" || missing+=("$pkg")
	done
	if [[ ${#missing[@]} -eq 0 ]]; then
		say "packages already installed"
		return 0
	fi
	say "installing: ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

# Install the npm migration tools into test/tools/node_modules with npm ci
# (exactly the locked versions), unless they are there already from the
# same lock file.  Node.js and npm come with the machine; if missing, from
# Debian.
install_node_tools()
{
	local stamp="$NODE_TOOLS_DIR/node_modules/.package-lock.json"
	if ! command -v npm >/dev/null 2>&1; then
		say "installing: nodejs npm"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
	fi
	if [[ -f "$stamp" && ! "$NODE_TOOLS_DIR/package-lock.json" -nt "$stamp" ]]; then
		say "migration tools from npm already installed"
		return 0
	fi
	say "installing the migration tools from npm into $NODE_TOOLS_DIR"
	npm ci --prefix "$NODE_TOOLS_DIR" --no-audit --no-fund --loglevel=error
}

# Build guard and install it into PostgreSQL 15's directories.
build_and_install()
{
	say "building guard"
	make -C "$REPO_DIR" -s -j"$(nproc)" PG_CONFIG="$PG_CONFIG"
	say "installing guard into $("$PG_CONFIG" --pkglibdir)"
	as_root make -C "$REPO_DIR" -s install PG_CONFIG="$PG_CONFIG"
}

main()
{
	install_packages
	install_node_tools
	build_and_install
}

main "$@"
