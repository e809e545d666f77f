#!/usr/bin/env bats
# Failure paths that only an injected fault reaches: a failed fsync or a
# full disk must end the invocation with exit 74 and leave nothing of the
# batch behind, and the store must stay usable.
load test_helper

FAULT_LIB="${CQRS_TOP_BUILDDIR:?}/tests/fault/libfault.so"

# Runs a tool with the fault injector preloaded (ASan insists on coming
# first in the link order; the injector does not interfere with it).
faulty() {
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
		LD_PRELOAD="$FAULT_LIB" "$@"
}

id1=11111111-1111-4111-8111-111111111111
id2=22222222-2222-4222-8222-222222222222

@test "a failed fsync at commit exits 74 and stores nothing of the batch" {
	event "$id1" | cqrs-append --quiet
	[ "$(stored_count)" -eq 1 ]
	{ event "$id1" OrderConfirmed; event "$id2"; } >batch.ndjson
	CQRS_FAULT_FSYNC=1 run --separate-stderr faulty cqrs-append batch.ndjson
	assert_failure 74
	assert_output ""
	assert_equal "${stderr_lines[0]}" "cqrs-append: $CQRS_STORE: commit failed: disk I/O error"
	assert_equal "${stderr_lines[1]}" "cqrs-append: nothing was stored"
	[ "$(stored_count)" -eq 1 ]
	run cqrs-read --verify
	assert_success
	assert_output --partial "verified 1 events"
	# the store takes the same batch afterwards
	run cqrs-append --quiet batch.ndjson
	assert_success
	[ "$(stored_count)" -eq 3 ]
}

@test "a full disk while writing exits 74 and stores nothing" {
	event "$id1" | cqrs-append --quiet
	for i in $(seq 1 2000); do event "$id2" OrderNoted '{"n":'"$i"',"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'; done >big.ndjson
	CQRS_FAULT_WRITE=20 run --separate-stderr faulty cqrs-append --quiet big.ndjson
	assert_failure 74
	assert_not_signalled
	[[ "$stderr" == *"disk is full"* || "$stderr" == *"I/O error"* ]]
	[ "$(stored_count)" -eq 1 ]
	run cqrs-read --verify
	assert_success
}

@test "in batch mode a failed fsync keeps the earlier chunks and says how far it got" {
	event "$id2" | cqrs-append --quiet
	for i in 1 2 3 4; do event "$id1" OrderNoted '{"n":'"$i"'}'; done >four.ndjson
	# the first sync of the WAL is the first chunk's commit, the second
	# the second chunk's
	CQRS_FAULT_WAL_FSYNC=2 run --separate-stderr faulty cqrs-append --quiet --batch 2 four.ndjson
	assert_failure 74
	assert_equal "${stderr_lines[0]}" "cqrs-append: $CQRS_STORE: commit failed: disk I/O error"
	assert_equal "${stderr_lines[1]}" "cqrs-append: 2 events were committed before the error, through four.ndjson:2 (sequence 3); the rest of the input was not stored"
	# a new process recovers the WAL: the failed chunk's frames must not
	# come back although they were written before the failed fsync
	[ "$(stored_count)" -eq 3 ]
	run cqrs-read --verify
	assert_success
	assert_output --partial "verified 3 events"
}

@test "kill -9 in the middle of a large append leaves the batch whole or absent" {
	event "$id1" | cqrs-append --quiet
	for i in $(seq 1 20000); do
		printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderNoted","data":{"n":%d,"pad":"%s"}}\n' \
			"$id2" "$i" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	done >big.ndjson
	killed=0
	for round in 1 2 3; do
		cqrs-append --quiet big.ndjson &
		pid=$!
		# wait (bounded) until the writer has put pages into the WAL, then kill it
		for _ in $(seq 1 $((2000 * GUARD_SCALE))); do
			size=$(stat -c %s "$CQRS_STORE-wal" 2>/dev/null || echo 0)
			[ "$size" -gt 4000000 ] && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.005
		done
		kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
		wait "$pid" || true
		count=$(stored_count)
		[ $(((count - 1) % 20000)) -eq 0 ] ||
			fail "round $round: $count events: neither whole nor absent"
		run cqrs-read --verify
		assert_success
	done
	# a run that never killed a writer in the middle proved nothing
	[ "$killed" -gt 0 ] || fail "the writer always finished before the kill: the fault was never set up"
}
