#!/usr/bin/env bats
# The PostgreSQL backend when the server misbehaves (issue 13): a statement
# timeout, a connection killed in the middle of an append, a server that
# restarts while a cron job starts (CQRS_CONNECT_WAIT).  Each time: the
# documented exit code of cqrs-postgres(7), nothing half-applied, and a
# rerun that stores what was missing once.

# shellcheck disable=SC2154 # bats sets stderr, status, output, lines
bats_require_minimum_version 1.5.0
load test_helper
load pg_helper

teardown() {
	reap_background_jobs
}

eval "helper_$(declare -f setup)"

setup_file() {
	pg_start
}

teardown_file() {
	pg_stop
}

setup() {
	helper_setup
	SCHEMA=t$BATS_TEST_NUMBER
	export CQRS_STORE
	CQRS_STORE=$(pg_store "$SCHEMA")
}

A=7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f
B=0b9c3c7e-2f57-4d6a-9e3b-5a1d2c3e4f50

# An event of aggregate $1 with event id $2 (none when empty).
ev() {
	printf '{%s"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderNoted","data":{"n":%s}}\n' \
		"${2:+\"event_id\":\"$2\",}" "$1" "${3:-0}"
}

eid() {
	printf '00000000-0000-4000-8000-%012d' "$1"
}

# Starts a writer whose transaction stays open while fd 4 does: it holds
# the append lock from its first event on.  $HELD_WRITER is its pid.
hold_append_lock() {
	mkfifo held
	cqrs-append -q <held 2>held.err &
	HELD_WRITER=$!
	exec 4>held
	ev "$B" "$(eid 900)" >&4
	await_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted" 1
}

@test "a statement timeout stops a writer waiting for the append lock: exit 7, nothing stored, the rerun lands" {
	ev "$A" "$(eid 1)" | cqrs-append -q
	hold_append_lock
	CQRS_BUSY_TIMEOUT=60000 run --separate-stderr cqrs-append 4>&- \
		--store "postgresql:options='-c cqrs.schema=$SCHEMA -c statement_timeout=300'" \
		< <(ev "$A" "$(eid 2)" 2)
	assert_failure 7
	assert_output ''
	[[ $stderr == *": canceling statement due to statement timeout (a statement timeout stopped it; nothing was changed)"* ]] ||
		fail "stderr: $stderr"
	exec 4>&-
	wait "$HELD_WRITER"
	assert_equal "$(cqrs-read | jq -c '[.sequence, .data.n]' | tr '\n' ' ')" '[1,0] [2,0] '
	ev "$A" "$(eid 2)" 2 | cqrs-append -q
	assert_equal "$(cqrs-read | jq -c '[.sequence, .data.n]' | tr '\n' ' ')" '[1,0] [2,0] [3,2] '
	assert_equal "$(cqrs-read --verify | cut -d' ' -f1-3)" 'verified 3 events,'
}

@test "a statement timeout stops the COPY of a window of 2500 events: exit 7, nothing stored, the rerun lands once" {
	ev "$A" "$(eid 1)" | cqrs-append -q
	for ((i = 2; i <= 2501; i++)); do
		ev "$((i % 2)):$A" "$(eid "$i")" "$i"
	done | sed "s/\"0:$A\"/\"$A\"/; s/\"1:$A\"/\"$B\"/" >big.ndjson
	# a session whose open transaction inserted sequence 2: the window's
	# look-ups do not see it, its COPY waits for it at the first row
	mkfifo locker
	pg_sql <locker >/dev/null &
	exec 5>locker
	echo "BEGIN; INSERT INTO $SCHEMA.events (sequence, event_id, aggregate_id, aggregate_type,
		aggregate_version, event_type, data, \"timestamp\", hash) VALUES (2, gen_random_uuid(),
		gen_random_uuid(), 'X', 1, 'X', '{}', 'x', '\\x00');" >&5
	await_sql "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'" 1
	CQRS_BUSY_TIMEOUT=60000 run --separate-stderr cqrs-append 5>&- \
		--store "postgresql:options='-c cqrs.schema=$SCHEMA -c statement_timeout=300'" big.ndjson
	assert_failure 7
	assert_output ''
	# the server refused rows that were checked and sent: no one line is
	# to blame, as for a failed commit
	[[ $stderr == "cqrs-append: postgresql:"*": cannot append: canceling statement due to statement timeout (a statement timeout stopped it; nothing was changed)
cqrs-append: nothing was stored" ]] || fail "stderr: $stderr"
	# a dry run whose one window's COPY is refused fails as the real run
	# does, -q or not (its rollback would otherwise drop the refusal)
	head -n 700 big.ndjson >small.ndjson
	for q in -q ""; do
		CQRS_BUSY_TIMEOUT=60000 run --separate-stderr cqrs-append -n $q 5>&- \
			--store "postgresql:options='-c cqrs.schema=$SCHEMA -c statement_timeout=300'" small.ndjson
		assert_failure 7
		assert_output ''
		[[ $stderr == *": cannot append: canceling statement due to statement timeout"* ]] || fail "-n $q: stderr: $stderr"
	done
	echo "ROLLBACK;" >&5
	exec 5>&-
	wait
	assert_equal "$(cqrs-read | wc -l)" 1
	cqrs-append -q big.ndjson
	cqrs-append -q big.ndjson
	assert_equal "$(cqrs-read | jq -r .event_id | sort -u | wc -l)" 2501
	assert_equal "$(cqrs-read --verify | cut -d' ' -f1-3)" 'verified 2501 events,'
}

@test "the connection of a writer in the middle of its batch is killed: exit 75, none of its batch stored, the order stays gapless, the rerun lands once" {
	ev "$A" "$(eid 1)" | cqrs-append -q
	hold_append_lock
	ev "$B" "$(eid 901)" 1 >&4
	# its first event is inserted in the open transaction: the server ends it there
	await_sql "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'" 1
	pg_sql -c "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted" >/dev/null
	ev "$B" "$(eid 902)" 2 >&4
	exec 4>&-
	st=0
	wait "$HELD_WRITER" || st=$?
	assert_equal "$st" 75
	grep -q "the connection to the server was lost" held.err || fail "held.err: $(cat held.err)"
	assert_equal "$(cqrs-read | jq -c '[.sequence, .event_id]' | tr '\n' ' ')" "[1,\"$(eid 1)\"] "
	# the next writer takes the next sequence: nothing was left half-stored
	ev "$A" "$(eid 2)" | cqrs-append -q
	{ ev "$B" "$(eid 900)"; ev "$B" "$(eid 901)" 1; ev "$B" "$(eid 902)" 2; } >batch.ndjson
	cqrs-append -q batch.ndjson
	cqrs-append -q batch.ndjson
	assert_equal "$(cqrs-read | jq -r '"\(.sequence) \(.event_id[-3:])"' | tr '\n' ' ')" '1 001 2 002 3 900 4 901 5 902 '
	assert_equal "$(cqrs-read --verify | cut -d' ' -f1-3)" 'verified 5 events,'
}

@test "a writer waiting for the append lock whose connection is killed exits 75 saying so; the holder's events land" {
	ev "$A" "$(eid 1)" | cqrs-append -q
	hold_append_lock
	ev "$A" "$(eid 2)" >one
	cqrs-append -q one 2>waiter.err 4>&- &
	waiter=$!
	await_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted" 1
	pg_sql -c "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted" >/dev/null
	st=0
	wait "$waiter" || st=$?
	assert_equal "$st" 75
	grep -q "the connection to the server was lost (.*); nothing of the open transaction was stored: try again" waiter.err ||
		fail "waiter.err: $(cat waiter.err)"
	exec 4>&-
	wait "$HELD_WRITER"
	assert_equal "$(cqrs-read | jq -r '.event_id[-3:]' | tr '\n' ' ')" '001 900 '
}

@test "CQRS_CONNECT_WAIT: a writer started while the server is down waits, and stores its event when the server is back" {
	ev "$A" "$(eid 1)" | cqrs-append -q
	pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null
	CQRS_CONNECT_WAIT=120 cqrs-append -q < <(ev "$A" "$(eid 2)") 2>waiting.err &
	waiting=$!
	# still trying: without the wait it would have exited 75 already
	run --separate-stderr cqrs-append -q < <(ev "$A" "$(eid 3)")
	assert_failure 75
	kill -0 "$waiting" || fail "the waiting writer gave up: $(cat waiting.err)"
	pg_start_server
	wait "$waiting"
	assert_equal "$(cat waiting.err)" ''
	assert_equal "$(cqrs-read | jq -r '.event_id[-3:]' | tr '\n' ' ')" '001 002 '
}

@test "CQRS_CONNECT_WAIT runs out: exit 75 with the reason; a refused password or a bad connection string is not waited for" {
	run --separate-stderr env CQRS_CONNECT_WAIT=1 cqrs-read --store "postgresql:host=$BATS_TEST_TMPDIR/nowhere"
	assert_failure 75
	[[ $stderr == *"cannot reach the server: "*"; try again later" ]] || fail "stderr: $stderr"
	pg_sql -c "CREATE ROLE cqrs_pw LOGIN PASSWORD 'secret'"
	# no password and none to wait for: 77 at once (a wait of 10 minutes would hang the test)
	run --separate-stderr env CQRS_CONNECT_WAIT=600 cqrs-read --store "postgresql:user=cqrs_pw"
	assert_failure 77
	run --separate-stderr env CQRS_CONNECT_WAIT=600 cqrs-read --store "postgresql:host=db port"
	assert_failure 78
	run --separate-stderr env CQRS_CONNECT_WAIT=not-a-number cqrs-read --store "postgresql:host=$BATS_TEST_TMPDIR/nowhere"
	assert_failure 75
}
