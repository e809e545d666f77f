#!/usr/bin/env bats
# Replays, copies and the edges between cqrs-append and cqrs-read.
load test_helper

a=11111111-1111-4111-8111-111111111111
b=22222222-2222-4222-8222-222222222222

@test "--expected-version disagreeing with the event's own aggregate_version is bad data" {
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderNoted","aggregate_version":5,"data":{}}\n' "$a" >v5.ndjson
	run --separate-stderr cqrs-append -e 0 v5.ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-append: v5.ndjson:1: field 'aggregate_version' (5) disagrees with --expected-version 0
cqrs-append: nothing was stored"
	[ ! -s "$CQRS_STORE" ] || [ "$(stored_count)" -eq 0 ]
}

@test "a dump replayed into an empty store must carry the hashes it came with" {
	{ event "$a" OrderNoted; event "$b" OrderNoted; event "$a" OrderConfirmed; } | cqrs-append --quiet
	cqrs-read >dump.ndjson
	CQRS_STORE=copy.db run cqrs-append --quiet dump.ndjson
	assert_success
	# edit one payload but keep its hash: the replay refuses it, stores nothing
	sed '2s/"data":{}/"data":{"forged":true}/' dump.ndjson >forged.ndjson
	CQRS_STORE=forged.db run --separate-stderr cqrs-append --quiet forged.ndjson
	assert_failure 65
	assert_equal "${stderr_lines[0]}" "cqrs-append: forged.ndjson:2: field 'hash' does not match the event replayed at sequence 2: the input was edited (remove 'hash' to store it as new)"
	[ "$(sqlite3 forged.db 'SELECT count(*) FROM events')" -eq 0 ]
	# without the hashes the edited events are new events, and are stored
	sed 's/,"hash":"[0-9a-f]*"//' forged.ndjson >rehashed.ndjson
	CQRS_STORE=rehashed.db run cqrs-append --quiet rehashed.ndjson
	assert_success
}

@test "a filtered dump appended elsewhere is not held to its old hashes" {
	{ event "$a" OrderNoted; event "$b" OrderNoted; event "$a" OrderConfirmed; } | cqrs-append --quiet
	cqrs-read --aggregate "$b" >only-b.ndjson
	# b's event sat at sequence 2; here it lands at 1, so its chain is new
	CQRS_STORE=b.db run cqrs-append --quiet only-b.ndjson
	assert_success
	CQRS_STORE=b.db run cqrs-read --verify
	assert_success
	assert_output --partial "verified 1 events"
}

@test "--verify takes no filter" {
	event "$a" | cqrs-append --quiet
	run --separate-stderr cqrs-read --verify --limit 1
	assert_failure 64
	assert_equal "$stderr" "cqrs-read: --verify checks the whole store and takes no other option"
}

@test "--follow --to ends at that sequence even when it does not match the filter" {
	{ event "$a"; event "$b"; event "$b"; } | cqrs-append --quiet
	# event 3 is b's: following a's events to sequence 3 must still end
	run --separate-stderr timeout $((10 * GUARD_SCALE)) cqrs-read --follow --aggregate "$a" --to 3
	assert_success
	assert_equal "${#lines[@]}" 1
	assert_output --partial '"sequence":1,'
}

@test "an append over more aggregates than the version cache holds keeps every version right" {
	# 70,000 new aggregates overflow the in-transaction cache (65,536), so
	# the second events of the first ones must find their versions again
	awk 'BEGIN {
		for (i = 0; i < 70000; i++)
			printf "{\"aggregate_id\":\"00000000-0000-4000-8000-%012d\",\"aggregate_type\":\"Order\",\"event_type\":\"OrderNoted\",\"data\":{}}\n", i
		for (i = 0; i < 100; i++)
			printf "{\"aggregate_id\":\"00000000-0000-4000-8000-%012d\",\"aggregate_type\":\"Order\",\"event_type\":\"OrderConfirmed\",\"data\":{}}\n", i
	}' >many.ndjson
	run cqrs-append --quiet many.ndjson
	assert_success
	run sqlite3 "$CQRS_STORE" "SELECT count(*), sum(aggregate_version = 2) FROM events"
	assert_output "70100|100"
	run sqlite3 "$CQRS_STORE" "SELECT count(*) FROM events WHERE event_type = 'OrderConfirmed' AND aggregate_version = 2"
	assert_output "100"
}
