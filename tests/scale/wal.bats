#!/usr/bin/env bats
# The store as it grows (issue 10): the WAL left between processes stays
# small, so that a new process does not read it all again (see
# WAL_KEEP_BYTES in lib/store/store_sqlite.c and FILES in cqrs(7)).
# Asserted by the size of the -wal file, never by timing.

# shellcheck disable=SC2154 # bats sets stderr, status, output, lines
bats_require_minimum_version 1.5.0
load ../test_helper

KEEP=$((256 * 1024))

# $1 events over $2 aggregates, one line each, no ids: the store makes them.
events() {
	awk -v n="$1" -v a="$2" 'BEGIN { for (i = 0; i < n; i++)
		printf "{\"aggregate_id\":\"7d0c2a9e-5b7f-4e0c-8f7e-%012d\",\"aggregate_type\":\"Order\",\"event_type\":\"OrderNoted\",\"data\":{\"pad\":\"%0100d\"},\"metadata\":{\"correlation_id\":\"c-%d\"}}\n", i % a, i, i }'
}

# (none: SQLite has not made one yet)
wal_size() { stat -c %s "$CQRS_STORE-wal" 2>/dev/null || echo 0; }

@test "one event per process: the WAL left between processes stays under 256 KiB, and is folded in" {
	events 3000 300 | cqrs-append -q
	assert_equal "$(stored_count)" 3000
	# a bulk import leaves no more than that either
	(($(wal_size) <= KEEP)) || fail "WAL of $(wal_size) bytes after the import"
	local max=0 truncated=0 size prev=0 i
	for i in $(seq 1 80); do
		printf '{"aggregate_id":"7d0c2a9e-5b7f-4e0c-8f7e-%012d","aggregate_type":"Order","event_type":"OrderNoted","data":{},"metadata":{"correlation_id":"one-%d"}}\n' \
			"$((i * 7 % 300))" "$i" | cqrs-append -q
		size=$(wal_size)
		((size > max)) && max=$size
		((size < prev)) && truncated=$((truncated + 1))
		prev=$size
	done
	assert_equal "$(stored_count)" 3080
	# 80 commits of several pages each would be more than a MiB of WAL
	((max <= KEEP + 64 * 1024)) || fail "the WAL reached $max bytes"
	((truncated >= 2)) || fail "the WAL was folded in $truncated times in 80 processes"
	run --separate-stderr cqrs-read --verify
	assert_success
}

@test "CQRS_CACHE_SIZE: a writer's cache in MiB; an invalid value is the default" {
	for v in 1 256 0 -5 junk ''; do
		events 50 5 | sed "s/\"c-/\"$v-c-/" | CQRS_CACHE_SIZE=$v cqrs-append -q
	done
	assert_equal "$(stored_count)" 300
	run --separate-stderr cqrs-read --verify
	assert_success
}
