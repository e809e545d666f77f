# A throwaway PostgreSQL 15 cluster for the suites that prove the
# PostgreSQL backend (tests/pg.bats, and any suite run with
# CQRS_TEST_BACKEND=postgres): initdb in a temporary directory, the server
# on a Unix socket in that directory and no TCP port (listen_addresses=''),
# as nobody when the suite runs as root (PostgreSQL refuses to run as
# root).  pg_start in setup_file, pg_stop in teardown_file, which bats runs
# even when tests fail.  A suite that cannot start the server fails with
# the reason; it never skips.
# shellcheck shell=bash

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

# Runs a server program as the cluster's owner.
# From /, which nobody can enter (the test's directory it may not).
pg_as_owner() {
	if [ "$(id -u)" = 0 ]; then
		(cd / && setpriv --reuid=nobody --regid=nogroup --clear-groups "$@")
	else
		"$@"
	fi
}

# Starts the cluster and exports PGHOST, PGUSER and PGDATABASE for psql
# and the tools (libpq reads them); PG_DIR is the cluster's directory.
# Extra server settings: PG_SETTINGS (one -c NAME=VALUE a word).
pg_start() {
	[ -x "$PG_BIN/initdb" ] || {
		echo "pg_start: $PG_BIN/initdb not found (Debian package postgresql-15)" >&2
		return 1
	}
	command -v psql >/dev/null || {
		echo "pg_start: psql not found (Debian package postgresql-client-15)" >&2
		return 1
	}
	PG_DIR=$(mktemp -d /tmp/cqrs-pg.XXXXXX) || return 1
	export PG_DIR
	if [ "$(id -u)" = 0 ]; then
		command -v setpriv >/dev/null || {
			echo "pg_start: setpriv not found (Debian package util-linux): the server must run as nobody, not root" >&2
			return 1
		}
		chown nobody:nogroup "$PG_DIR" || return 1
	fi
	chmod 700 "$PG_DIR"
	# the superuser is cqrs_admin, trusted on the socket; cqrs_pw must
	# give a password (the authentication tests)
	if ! pg_as_owner "$PG_BIN/initdb" -D "$PG_DIR/data" -U cqrs_admin -A trust -E UTF8 \
		--locale=C --no-sync >"$PG_DIR/initdb.log" 2>&1; then
		echo "pg_start: initdb failed:" >&2
		cat "$PG_DIR/initdb.log" >&2
		return 1
	fi
	# the settings go in the cluster's file, so that a test that stops
	# the server starts it again as it was
	# shellcheck disable=SC2016 # $1 is the inner shell's
	pg_as_owner sh -c 'printf "%s\n" "local all cqrs_pw scram-sha-256" "local all all trust" >"$1/data/pg_hba.conf" &&
		printf "%s\n" "listen_addresses = '"''"'" "unix_socket_directories = '"'"'$1'"'"'" \
			"fsync = $2" "max_connections = 60" >>"$1/data/postgresql.conf"' \
		sh "$PG_DIR" "${PG_FSYNC:-off}"
	if ! pg_start_server; then
		echo "pg_start: the server did not start:" >&2
		cat "$PG_DIR/pg_ctl.log" "$PG_DIR/server.log" >&2
		return 1
	fi
	export PGHOST=$PG_DIR PGUSER=cqrs_admin PGDATABASE=postgres
	unset PGPASSWORD PGSERVICE PGSERVICEFILE PGOPTIONS PGPORT PGHOSTADDR
	export PGPASSFILE=$PG_DIR/no-pgpass
}

# Starts the server of the cluster made by pg_start (after a test stopped it).
pg_start_server() {
	pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
		${PG_SETTINGS:+-o "$PG_SETTINGS"} start >"$PG_DIR/pg_ctl.log" 2>&1
}

# Stops the cluster and removes its directory (nothing when none started).
pg_stop() {
	[ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR" ] || return 0
	pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1
	rm -rf "$PG_DIR"
}

# psql, quiet, unaligned, stopping at the first error.
pg_sql() {
	psql -X -q -At -v ON_ERROR_STOP=1 "$@"
}

# Waits (up to 30 s) until the SQL $1 prints $2: a condition, not a time.
await_sql() {
	local i
	for ((i = 0; i < 600; i++)); do
		[ "$(pg_sql -c "$1")" = "$2" ] && return 0
		sleep 0.05
	done
	fail "waited 30 s for '$1' to give '$2'; it gives '$(pg_sql -c "$1")'"
}

# The store in schema $1 of the cluster, as CQRS_STORE names it.
pg_store() {
	printf "postgresql:options='-c cqrs.schema=%s'" "$1"
}
