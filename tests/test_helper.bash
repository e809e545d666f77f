# Shared setup for every bats suite: a private temp dir, a private store,
# shellcheck disable=SC2034,SC2154 # FIXTURES and status are used by the suites
# a pinned locale and time zone, and a HOME that tests cannot escape.
bats_require_minimum_version 1.5.0
bats_load_library bats-support
bats_load_library bats-assert

setup() {
	export LC_ALL=C TZ=UTC
	export HOME="$BATS_TEST_TMPDIR/home"
	mkdir -p "$HOME"
	unset XDG_DATA_HOME CQRS_VIEWS
	export CQRS_STORE="$BATS_TEST_TMPDIR/events.db"
	# Time limits that guard against a hang, not measure speed: under
	# valgrind (make valgrind) every tool runs some 30 times slower.
	GUARD_SCALE=1
	[ -z "${CQRS_UNDER_VALGRIND:-}" ] || GUARD_SCALE=20
	export CQRS_BUSY_TIMEOUT=$((10000 * GUARD_SCALE))
	FIXTURES="${CQRS_TOP_SRCDIR:?}/tests/fixtures"
	cd "$BATS_TEST_TMPDIR" || return 1
	# the PostgreSQL leg of the matrix: a schema of its own per test
	[ "${CQRS_TEST_BACKEND:-sqlite}" = sqlite ] || export CQRS_STORE="postgresql:options='-c cqrs.schema=t$BATS_TEST_NUMBER'"
}

# --- the backend matrix (issue 13) ---------------------------------------------
# CQRS_TEST_BACKEND=postgres (make check-postgres) runs a suite against a
# throwaway PostgreSQL cluster (pg_helper.bash), one per suite file.  A test
# that holds for the SQLite store alone says so first with sqlite_only and
# its reason: `grep -n sqlite_only tests/*.bats` is the list.
case ${CQRS_TEST_BACKEND:-sqlite} in
sqlite) ;;
postgres)
	load pg_helper
	setup_file() { pg_start; }
	teardown_file() { pg_stop; }
	;;
*)
	echo "CQRS_TEST_BACKEND: '$CQRS_TEST_BACKEND' is not sqlite or postgres" >&2
	exit 1
	;;
esac

# sqlite_only REASON: on another backend, the test is skipped with REASON.
sqlite_only() {
	[ "${CQRS_TEST_BACKEND:-sqlite}" = sqlite ] || skip "SQLite only: $1"
}

# store_query SQL: runs SQL on the test's store, printing rows as
# sqlite3 does (columns split by |, NULL as nothing).
store_query() {
	if on_sqlite; then
		sqlite3 "$CQRS_STORE" "$1"
	else
		pg_sql -c "SET search_path TO t$BATS_TEST_NUMBER; $1"
	fi
}

# store_reset: the test's store is gone, as if never created.
store_reset() {
	if on_sqlite; then
		rm -f "$CQRS_STORE"*
	else
		pg_sql -c "DROP SCHEMA IF EXISTS t$BATS_TEST_NUMBER CASCADE"
	fi
}

# store_edit SQL: runs SQL on the test's store with the append-only guards
# lifted, as someone editing the store behind the tools' back would.
store_edit() {
	if on_sqlite; then
		sqlite3 "$CQRS_STORE" "DROP TRIGGER IF EXISTS events_no_update;
			DROP TRIGGER IF EXISTS events_no_delete; $1"
	else
		pg_sql -c "SET search_path TO t$BATS_TEST_NUMBER;
			ALTER TABLE events DISABLE TRIGGER USER; $1"
	fi
}

# true when the suite runs against the SQLite store
on_sqlite() {
	[ "${CQRS_TEST_BACKEND:-sqlite}" = sqlite ]
}

# An event line for aggregate $1 (a UUID) of type Order with event type $2.
# Without $3 the data is the smallest payload the domain could have produced
# for that event type (cqrs-append checks the payloads of known types).
event() {
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"%s","data":%s}\n' \
		"$1" "${2:-OrderCreated}" "${3:-$(default_data "${2:-OrderCreated}")}"
}

default_data() {
	case $1 in
	OrderCreated)
		printf '%s' '{"order_number":"ORD-2026-000001","customer_id":"cust-1","currency":"USD",' \
			'"items":[{"product_id":"11111111-2222-4333-8444-555555555555","quantity":1,' \
			'"unit_price":1.00}],"total":1.00}'
		;;
	OrderShipped) printf '%s' '{"tracking_number":"TRK-1","carrier":"FedEx"}' ;;
	OrderCancelled) printf '%s' '{"reason":"test"}' ;;
	*) printf '{}' ;;
	esac
}

# The number of rows in the store's events table.
stored_count() {
	if on_sqlite; then
		sqlite3 "$CQRS_STORE" 'SELECT count(*) FROM events'
	else
		pg_sql -c "SELECT count(*) FROM t$BATS_TEST_NUMBER.events" 2>/dev/null || echo 0
	fi
}

# A failure test must see the tool exit, not die by a signal.
assert_not_signalled() {
	[ "$status" -lt 126 ] || fail "killed by a signal (status $status)"
}

# run_as_other_user [VAR=VALUE...] TOOL [ARG...]: `run --separate-stderr`
# TOOL as nobody, for the tests of what another user may do.  The checkout
# may sit where nobody cannot reach (a clone in /root, mode 0700), so the
# built tools are copied into a 0755 directory of this test's temp dir and
# run from there, with PATH naming only it and the system directories.
# The directories above the temp dir (bats' own, 0700) get o+x so that
# nobody can pass through them; the test's own files keep their modes.
# Needs root and setpriv (util-linux); fails the test with the reason when
# it cannot switch, never skips.
run_as_other_user() {
	[ "$(id -u)" = 0 ] || fail "run_as_other_user: needs root to switch to nobody (uid $(id -u))"
	command -v setpriv >/dev/null || fail "run_as_other_user: setpriv not found (Debian package util-linux)"
	local bin="$BATS_TEST_TMPDIR/other-user-bin" d t
	if [ ! -d "$bin" ]; then
		mkdir -m 755 "$bin" || fail "run_as_other_user: cannot create $bin"
		for t in "${CQRS_TOP_BUILDDIR:?}"/cqrs-* "${CQRS_TOP_SRCDIR:?}"/bin/*; do
			[ -f "$t" ] && [ -x "$t" ] && cp "$t" "$bin/"
		done
		chmod 755 "$bin"/* || fail "run_as_other_user: no built tools in $CQRS_TOP_BUILDDIR"
		d=$BATS_TEST_TMPDIR
		while [ "$d" != / ] && [ "$d" != "$(dirname "$BATS_RUN_TMPDIR")" ]; do
			chmod o+x "$d" || fail "run_as_other_user: cannot open $d to others"
			d=$(dirname "$d")
		done
	fi
	for t in "$@"; do
		[[ $t == *=* ]] || break
	done
	[ -x "$bin/$t" ] || fail "run_as_other_user: $t is not a built tool"
	# shellcheck disable=SC2016 # $1 and $2 are the inner shell's
	setpriv --reuid=nobody --regid=nogroup --clear-groups \
		/bin/sh -c 'cd "$1" && test -x "$2"' sh "$PWD" "$bin/$t" ||
		fail "run_as_other_user: nobody cannot reach $PWD or $bin (a directory above is not searchable by others: put TMPDIR where others can pass, e.g. /tmp)"
	run --separate-stderr setpriv --reuid=nobody --regid=nogroup --clear-groups \
		env PATH="$bin:/usr/bin:/bin" "$@"
}

# For a suite's teardown: the processes a test left running in the
# background (a --follow whose test failed before it killed it), which
# would otherwise keep bats waiting on their output for ever.
reap_background_jobs() {
	local pids
	pids=$(jobs -p)
	[ -z "$pids" ] && return 0
	# shellcheck disable=SC2086 # one pid a word
	kill $pids 2>/dev/null
	# shellcheck disable=SC2086
	wait $pids 2>/dev/null
	return 0
}
