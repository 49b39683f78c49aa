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
readonly PACKAGES=(
	postgresql-15
	postgresql-server-dev-15
	postgresql-client-15
	libipc-run-perl
	build-essential
)

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
	build_and_install
}

main "$@"
