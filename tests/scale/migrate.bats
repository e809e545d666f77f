#!/usr/bin/env bats
# The store as it grows (issue 10): schema 3 keys the correlation ids the
# tools generate (version 7 UUIDs) by time, so that appending stays at the
# end of their index.  Stores of schema 2 (release 0.1) are read as they
# are and migrated once, in place, by the next writer: output, hashes and
# searches unchanged.

# shellcheck disable=SC2154 # bats sets stderr, status, output, lines
bats_require_minimum_version 1.5.0
load ../test_helper

SCALE_FIXTURES="${CQRS_TOP_SRCDIR:?}/tests/scale/fixtures"

version() { sqlite3 "$CQRS_STORE" 'PRAGMA user_version'; }

# Pairs of events whose correlation ids' time prefixes are in one order
# and whose keys are in the other: 0 when the keys follow time.
out_of_order() {
	sqlite3 "$CQRS_STORE" "SELECT count(*) FROM events a, events b
		WHERE substr(a.correlation_id, 1, 13) < substr(b.correlation_id, 1, 13)
		AND a.correlation_key >= b.correlation_key"
}

one_more() {
	printf '{"aggregate_id":"7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f","aggregate_type":"Order","event_type":"OrderNoted","data":{}}\n' |
		cqrs-append -q
}

@test "release 0.1's store: read as it is, migrated by the next writer, its events and hashes unchanged" {
	cp "$FIXTURES/release-0.1/events.db" events.db
	chmod 600 events.db
	assert_equal "$(version)" 2
	cqrs-read >before.ndjson
	[ "$(wc -l <before.ndjson)" -gt 0 ]
	corr=$(sqlite3 "$CQRS_STORE" 'SELECT correlation_id FROM events WHERE correlation_id NOT NULL LIMIT 1')
	cqrs-read --correlation "$corr" >before-corr.ndjson
	[ -s before-corr.ndjson ]
	assert_equal "$(version)" 2 # readers migrate nothing
	one_more
	assert_equal "$(version)" 5
	cqrs-read | head -n "$(wc -l <before.ndjson)" | cmp - before.ndjson
	cqrs-read --correlation "$corr" | cmp - before-corr.ndjson
	run --separate-stderr cqrs-read --verify
	assert_success
}

@test "schema 2 with generated correlation ids: the keys are rewritten once, by time; searches find the same events" {
	cp "$SCALE_FIXTURES/schema2-uuid7.db" events.db
	chmod 600 events.db
	assert_equal "$(version)" 2
	[ "$(out_of_order)" -gt 0 ] # FNV keys: no order
	cqrs-read >before.ndjson
	assert_equal "$(wc -l <before.ndjson)" 40
	local c ids=()
	mapfile -t ids < <(sqlite3 "$CQRS_STORE" 'SELECT DISTINCT correlation_id FROM events ORDER BY 1')
	assert_equal "${#ids[@]}" 8
	for c in "${ids[@]}"; do cqrs-read --correlation "$c"; done >before-corr.ndjson
	assert_equal "$(wc -l <before-corr.ndjson)" 40
	one_more
	assert_equal "$(version)" 5
	assert_equal "$(out_of_order)" 0
	for c in "${ids[@]}"; do cqrs-read --correlation "$c"; done | cmp - before-corr.ndjson
	cqrs-read | head -n 40 | cmp - before.ndjson
	run --separate-stderr cqrs-read --verify
	assert_success
	# the update trigger is back
	run sqlite3 "$CQRS_STORE" 'UPDATE events SET correlation_key = 1 WHERE sequence = 1'
	assert_failure
	assert_output --partial 'events are append-only'
}

@test "a new store: generated correlation ids get time-ordered keys, others their hash" {
	for i in 1 2 3; do
		printf '{"aggregate_id":"7d0c2a9e-5b7f-4e0c-8f7e-00000000000%d","aggregate_type":"Order","event_type":"OrderNoted","data":{},"metadata":{"correlation_id":"019b76da-a80%d-7aee-b564-c6b43ded49ab"}}\n' "$i" "$i"
		printf '{"aggregate_id":"7d0c2a9e-5b7f-4e0c-8f7e-00000000001%d","aggregate_type":"Order","event_type":"OrderNoted","data":{},"metadata":{"correlation_id":"order-%d"}}\n' "$i" "$i"
	done | cqrs-append -q
	assert_equal "$(version)" 5
	# 0x019b76da_a801 milliseconds, shifted by 15 bits
	assert_equal "$(sqlite3 "$CQRS_STORE" 'SELECT correlation_key >> 15 FROM events WHERE sequence = 1')" \
		"$((0x019b76daa801))"
	run cqrs-read --correlation order-2
	assert_success
	assert_equal "${#lines[@]}" 1
	run cqrs-read --correlation 019b76da-a803-7aee-b564-c6b43ded49ab
	assert_equal "${#lines[@]}" 1
	# an upper-case id is not the tools' text: it keys on its hash
	run cqrs-read --correlation 019B76DA-A803-7AEE-B564-C6B43DED49AB
	assert_equal "${#lines[@]}" 0
	run --separate-stderr cqrs-read --verify
	assert_success
}

@test "a --follow --correlation opened on a schema-2 store still finds its events after a writer migrates it" {
	cp "$SCALE_FIXTURES/schema2-uuid7.db" events.db
	chmod 600 events.db
	c=$(sqlite3 "$CQRS_STORE" 'SELECT correlation_id FROM events ORDER BY sequence LIMIT 1')
	n=$(cqrs-read --correlation "$c" | wc -l)
	timeout $((30 * GUARD_SCALE)) cqrs-read --follow --correlation "$c" --limit $((n + 1)) >out 3>&- &
	follower=$!
	for ((i = 0; i < 400 * GUARD_SCALE; i++)); do
		[ "$(wc -l <out)" -ge "$n" ] && break
		sleep 0.025
	done
	assert_equal "$(wc -l <out)" "$n"
	assert_equal "$(version)" 2
	# the next writer migrates the store, then appends one more of the correlation
	printf '{"aggregate_id":"7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f","aggregate_type":"Order","event_type":"OrderNoted","data":{},"metadata":{"correlation_id":"%s"}}\n' "$c" |
		cqrs-append -q
	assert_equal "$(version)" 5
	wait "$follower" || fail "the follower exited $? (124: it never saw the new event)"
	assert_equal "$(wc -l <out)" $((n + 1))
	assert_equal "$(tail -1 out | jq -r .metadata.correlation_id)" "$c"
}
