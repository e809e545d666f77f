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
	export CQRS_BUSY_TIMEOUT=10000
	FIXTURES="${CQRS_TOP_SRCDIR:?}/tests/fixtures"
	cd "$BATS_TEST_TMPDIR" || return 1
}

# An event line for aggregate $1 (a UUID) of type Order with event type $2.
event() {
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"%s","data":%s}\n' \
		"$1" "${2:-OrderCreated}" "${3:-{\}}"
}

# The number of rows in the store's events table.
stored_count() {
	sqlite3 "$CQRS_STORE" 'SELECT count(*) FROM events'
}

# A failure test must see the tool exit, not die by a signal.
assert_not_signalled() {
	[ "$status" -lt 126 ] || fail "killed by a signal (status $status)"
}
