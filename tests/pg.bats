#!/usr/bin/env bats
# The PostgreSQL backend (issue 13): the tools on a throwaway PostgreSQL 15
# cluster (tests/pg_helper.bash), each test in a schema of its own; what
# they print, what the server holds, and the promises of cqrs(7): a
# gapless chained order no reader skips, idempotency by event id,
# optimistic concurrency, and the exit codes of cqrs-postgres(7).

# shellcheck disable=SC2154 # bats sets stderr, status, output, lines
bats_require_minimum_version 1.5.0
load test_helper
load pg_helper

teardown() {
	reap_background_jobs
}

# test_helper's setup, then this test's PostgreSQL store as CQRS_STORE
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
	PG=$(pg_store "$SCHEMA")
	export CQRS_STORE=$PG
	SQ=$BATS_TEST_TMPDIR/events.db
}

A=7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f
B=0b9c3c7e-2f57-4d6a-9e3b-5a1d2c3e4f50
E1=3f2b6c1e-8c1a-4a8e-9a51-2c9a4c1f7d10
FIXTURE_HEAD=defdd9b2a93b8260ddb5034023326f3b23953f540ef04be33d5232d0b0f7fece

ev() {
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderNoted","data":%s%s}\n' \
		"$1" "${3:-{\}}" "${2:-}"
}

# $1 events, seeded by $2: aggregates, types and correlation ids from small
# pools, numbers and strings whose text must survive as written, some
# timestamps given with offsets, some event versions 2.
gen_events() {
	awk -v n="$1" -v seed="$2" 'BEGIN {
		srand(seed)
		split("7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f 0b9c3c7e-2f57-4d6a-9e3b-5a1d2c3e4f50 5a1d2c3e-4f50-4b9c-9c7e-2f574d6a9e3b 11111111-2222-4333-8444-555555555555 22222222-3333-4444-8555-666666666666 33333333-4444-4555-8666-777777777777 44444444-5555-4666-8777-888888888888", agg, " ")
		split("Order Invoice Shipment", atype, " ")
		split("Noted Paid Moved Closed", etype, " ")
		split("0.10 1e3 -0 12345678901234567890 3.14159 0 -7.50", num, " ")
		split("corr-1 corr-2 corr-\\u00e9 c\\\"q 01900000-0000-7000-8000-000000000001", corr, " ")
		for (i = 1; i <= n; i++) {
			a = int(rand() * 7) + 1
			line = sprintf("{\"aggregate_id\":\"%s\",\"aggregate_type\":\"%s\",\"event_type\":\"%s\"", agg[a], atype[(a % 3) + 1], etype[int(rand() * 4) + 1])
			if (rand() < 0.2) line = line ",\"event_version\":2"
			line = line sprintf(",\"data\":{\"n\":%s,\"s\":\"é \\u00e9 \\\\ %d\",\"l\":[%s,{}]}", num[int(rand() * 7) + 1], i, num[int(rand() * 7) + 1])
			r = rand()
			if (r < 0.6) line = line sprintf(",\"metadata\":{\"correlation_id\":\"%s\",\"k\":%d}", corr[int(rand() * 5) + 1], i)
			else if (r < 0.7) line = line ",\"metadata\":{}"
			if (rand() < 0.5) line = line sprintf(",\"timestamp\":\"2026-0%d-1%dT0%d:00:00.%06d+02:00\"", int(rand() * 9) + 1, int(rand() * 9), int(rand() * 9), i)
			print line "}"
		}
	}'
}

# --- append and read ----------------------------------------------------------

@test "the fixture's history is stored as it is and read back byte for byte" {
	run --separate-stderr cqrs-append "$FIXTURES/orders.envelopes"
	assert_success
	assert_equal "$stderr" ''
	assert_output "$(cat "$FIXTURES/orders.envelopes")"
	run --separate-stderr cqrs-read
	assert_success
	assert_output "$(cat "$FIXTURES/orders.envelopes")"
	run --separate-stderr cqrs-read --verify
	assert_success
	assert_output "verified 7 events, head $FIXTURE_HEAD"
	# the rows, as psql shows them, in the store's own schema
	run pg_sql -c "SELECT sequence, event_id, aggregate_version, data, correlation_id,
		encode(hash, 'hex') = '$FIXTURE_HEAD' FROM $SCHEMA.events WHERE sequence IN (2, 7)"
	assert_output '2|0190d3a0-0002-7000-8000-000000000002|1|{"quantity":10}||f
7|0190d3a0-0007-7000-8000-000000000007|2|{"reason":"customer request"}|c-B|t'
}

@test "new events get what the SQLite store gives them: sequence, version, id, time, hash, os_user" {
	run --separate-stderr cqrs-append < <(ev "$A" ',"metadata":{"os_user":"mallory","k":1}' '{"amount":0.10}'; ev "$A")
	assert_success
	assert_equal "${#lines[@]}" 2
	assert_regex "${lines[0]}" '^\{"sequence":1,"event_id":"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}","aggregate_id":"'"$A"'","aggregate_type":"Order","aggregate_version":1,"event_type":"OrderNoted","event_version":1,"data":\{"amount":0.10\},"metadata":\{"k":1,"os_user":"'"$(id -un)"'"\},"timestamp":"[0-9-]{10}T[0-9:]{8}\.[0-9]{6}Z","hash":"[0-9a-f]{64}"\}$'
	assert_regex "${lines[1]}" '^\{"sequence":2,.*"aggregate_version":2,'
	assert_equal "$(cqrs-read)" "$output"
	# the same lines through SQLite chain to the same hashes
	run --separate-stderr cqrs-append --store "$SQ" <<<"$output"
	assert_success
	assert_equal "$output" "$(cqrs-read)"
}

@test "copies SQLite -> PostgreSQL -> SQLite keep every hash (600 seeded random events)" {
	gen_events 600 13 >in.ndjson
	cqrs-append -q --store "$SQ" in.ndjson
	cqrs-read --store "$SQ" >sqlite.ndjson
	# shellcheck disable=SC2016 # $1 is the inner shell's
	run --separate-stderr bash -c 'set -o pipefail; cqrs-read --store "$1" | cqrs-append -q' sh "$SQ"
	assert_success
	assert_equal "$stderr" ''
	cqrs-read >pg.ndjson
	run --separate-stderr bash -c 'set -o pipefail; cqrs-read | cqrs-append -q --store back.db'
	assert_success
	cqrs-read --store back.db >back.ndjson
	assert_equal "$(wc -l <pg.ndjson)" 600
	cmp sqlite.ndjson pg.ndjson
	cmp sqlite.ndjson back.ndjson
	assert_equal "$(cqrs-read --verify)" "$(cqrs-read --store "$SQ" --verify)"
	assert_equal "$(cqrs-read --store back.db --verify)" "$(cqrs-read --store "$SQ" --verify)"
	# copying again is a no-op on either side
	cqrs-read --store "$SQ" | cqrs-append -q
	assert_equal "$(pg_sql -c "SELECT count(*) FROM $SCHEMA.events")" 600
}

@test "every filter reads as on SQLite: 40 seeded random filters over 2100 events (3 pages)" {
	gen_events 2100 7 | cqrs-append -q --store "$SQ"
	cqrs-read --store "$SQ" | cqrs-append -q
	aggs=(7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f 0b9c3c7e-2f57-4d6a-9e3b-5a1d2c3e4f50
		11111111-2222-4333-8444-555555555555 99999999-9999-4999-8999-999999999999)
	types=(Order Invoice Shipment Nothing)
	evtypes=(Noted Paid Moved Closed)
	corrs=(corr-1 corr-2 corr-é 'c"q' 01900000-0000-7000-8000-000000000001 none)
	RANDOM=42
	for ((i = 0; i < 40; i++)); do
		args=()
		((RANDOM % 3 == 0)) && args+=(--after $((RANDOM % 2600)))
		((RANDOM % 4 == 0)) && args+=(--to $((RANDOM % 2600 + 1)))
		((RANDOM % 3 == 0)) && args+=(--limit $((RANDOM % 1500 + 1)))
		((RANDOM % 3 == 0)) && args+=(--reverse)
		((RANDOM % 4 == 0)) && args+=(-a "${aggs[RANDOM % 4]}")
		((RANDOM % 6 == 0)) && args+=(-a "${aggs[RANDOM % 4]}" -a "${aggs[RANDOM % 4]}")
		((RANDOM % 4 == 0)) && args+=(-t "${types[RANDOM % 4]}")
		((RANDOM % 6 == 0)) && args+=(-t "${types[RANDOM % 4]}" -t "${types[RANDOM % 4]}")
		((RANDOM % 4 == 0)) && args+=(-e "${evtypes[RANDOM % 4]}")
		((RANDOM % 6 == 0)) && args+=(-e "${evtypes[RANDOM % 4]}" -e "${evtypes[RANDOM % 4]}")
		((RANDOM % 5 == 0)) && args+=(-c "${corrs[RANDOM % 6]}")
		((RANDOM % 6 == 0)) && args+=(-c "${corrs[RANDOM % 6]}" -c "${corrs[RANDOM % 6]}")
		((RANDOM % 5 == 0)) && args+=(--until "2026-0$((RANDOM % 9 + 1))-15T00:00:00Z")
		want=$(cqrs-read --store "$SQ" "${args[@]}" 2>&1; echo "status $?")
		got=$(cqrs-read "${args[@]}" 2>&1; echo "status $?")
		[ "$got" = "$want" ] || fail "cqrs-read ${args[*]}: PostgreSQL gives $(wc -l <<<"$got") lines, SQLite $(wc -l <<<"$want"): $(diff <(echo "$want") <(echo "$got") | head -5)"
	done
}

# --- the chain ----------------------------------------------------------------

@test "the events table refuses edits; --verify finds an edited row as on SQLite" {
	cqrs-append -q "$FIXTURES/orders.envelopes"
	run pg_sql -c "UPDATE $SCHEMA.events SET data = '{}' WHERE sequence = 3"
	assert_failure
	assert_output --partial 'events are append-only'
	run pg_sql -c "DELETE FROM $SCHEMA.events WHERE sequence = 7"
	assert_output --partial 'events are append-only'
	run pg_sql -c "TRUNCATE $SCHEMA.events"
	assert_output --partial 'events are append-only'
	pg_sql -c "ALTER TABLE $SCHEMA.events DISABLE TRIGGER events_no_change;
		UPDATE $SCHEMA.events SET data = '{\"payment_id\":\"x\",\"amount\":5.98,\"currency\":\"USD\"}' WHERE sequence = 3"
	run --separate-stderr cqrs-read --verify
	assert_failure 65
	assert_output ''
	assert_equal "$stderr" 'cqrs-read: sequence 3: hash chain broken: an event was edited, removed or reordered
cqrs-read: verified 2 events up to there, head ad4da55b8adf7e437fddbf51b5cbcb6c1c847cf3e58783b29dc6e9c08368a03f'
}

@test "--verify finds a correlation column that disagrees with the hashed metadata; an edited head stops appends" {
	ev "$A" ',"metadata":{"correlation_id":"c-1"}' | cqrs-append -q
	ev "$A" | cqrs-append -q
	pg_sql -c "ALTER TABLE $SCHEMA.events DISABLE TRIGGER events_no_change;
		UPDATE $SCHEMA.events SET correlation_id = 'c-2' WHERE sequence = 1"
	run --separate-stderr cqrs-read --verify
	assert_failure 65
	assert_equal "${stderr%%$'\n'*}" "cqrs-read: sequence 1: column correlation_id ('c-2') does not match the hashed metadata's ('c-1'): the row was edited"
	pg_sql -c "UPDATE $SCHEMA.events SET data = '{\"x\":1}' WHERE sequence = 2"
	run --separate-stderr cqrs-append < <(ev "$B")
	assert_failure 65
	assert_equal "$stderr" "cqrs-append: stdin:1: postgresql:host=$PG_DIR port=5432 dbname=postgres user=cqrs_admin (schema $SCHEMA): event 2 does not match its hash: the store was changed outside the tools; nothing was written (see cqrs-read --verify)
cqrs-append: nothing was stored"
	assert_equal "$(pg_sql -c "SELECT count(*) FROM $SCHEMA.events")" 2
}

# --- idempotency and optimistic concurrency -----------------------------------

@test "idempotency by event id: the same event again is a no-op, other content under its id is refused" {
	run --separate-stderr cqrs-append < <(ev "$A" ",\"event_id\":\"$E1\"")
	assert_success
	first=$output
	run --separate-stderr cqrs-append < <(ev "$A" ",\"event_id\":\"$E1\"")
	assert_success
	assert_output "$first"
	run --separate-stderr cqrs-append < <(ev "$A" ",\"event_id\":\"$E1\"" '{"x":1}')
	assert_failure 65
	assert_equal "$stderr" "cqrs-append: stdin:1: event_id $E1 is already stored (sequence 1) with different content
cqrs-append: nothing was stored"
	assert_equal "$(pg_sql -c "SELECT count(*) FROM $SCHEMA.events")" 1
	# the same answers as the SQLite store gives
	cqrs-append -q --store "$SQ" < <(ev "$A" ",\"event_id\":\"$E1\"")
	run --separate-stderr cqrs-append --store "$SQ" < <(ev "$A" ",\"event_id\":\"$E1\"" '{"x":1}')
	assert_failure 65
	assert_equal "$stderr" "cqrs-append: stdin:1: event_id $E1 is already stored (sequence 1) with different content
cqrs-append: nothing was stored"
}

@test "an expected_version conflict exits 3 with SQLite's message; nothing is stored" {
	for store in "$PG" "$SQ"; do
		ev "$A" | cqrs-append -q --store "$store"
		run --separate-stderr cqrs-append --store "$store" -e 0 < <(ev "$A")
		assert_failure 3
		assert_equal "$stderr" "cqrs-append: stdin:1: version conflict on aggregate $A: expected version 0, actual 1
cqrs-append: nothing was stored"
		run --separate-stderr cqrs-append --store "$store" -e 1 < <(ev "$A")
		assert_success
	done
	assert_equal "$(cqrs-read | jq -c '[.sequence, .aggregate_version]')" '[1,1]
[2,2]'
}

@test "4 concurrent writers x 500 one-event commits leave a gapless chained order 1..2000 that verifies" {
	ids=(7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f 0b9c3c7e-2f57-4d6a-9e3b-5a1d2c3e4f50
		5a1d2c3e-4f50-4b9c-9c7e-2f574d6a9e3b 11111111-2222-4333-8444-555555555555)
	ev "${ids[0]}" | cqrs-append -q # the schema exists before the race
	pids=()
	for w in 0 1 2 3; do
		for ((i = 0; i < 500; i++)); do ev "${ids[w]}" ",\"metadata\":{\"w\":$w,\"i\":$i}"; done >"w$w.ndjson"
		cqrs-append -q -b 1 "w$w.ndjson" 2>"w$w.err" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || fail "a writer failed: $(cat w*.err)"; done
	assert_equal "$(pg_sql -c "SELECT count(*), min(sequence), max(sequence), count(DISTINCT sequence) FROM $SCHEMA.events")" '2001|1|2001|2001'
	run --separate-stderr cqrs-read --verify
	assert_success
	assert_regex "$output" '^verified 2001 events, head [0-9a-f]{64}$'
	# each writer's events in its order, its aggregate's versions consecutive
	for w in 0 1 2 3; do
		want=$(seq 0 499)
		assert_equal "$(cqrs-read -a "${ids[w]}" | jq -r 'select(.metadata.w != null) | .metadata.i')" "$want"
		got=$(cqrs-read -a "${ids[w]}" | jq -r .aggregate_version | tr '\n' ' ')
		assert_equal "$got" "$(seq 1 $((w == 0 ? 501 : 500)) | tr '\n' ' ')"
	done
}

@test "writers on one aggregate: each stale expected version gets exit 3, retries land, versions stay consecutive" {
	ev "$A" | cqrs-append -q
	pids=()
	for w in 0 1 2; do
		(
			done_n=0 conflicts=0
			while ((done_n < 6)); do
				v=$(cqrs-read -a "$A" -r -n 1 | jq -r .aggregate_version)
				if ev "$A" ",\"metadata\":{\"w\":$w}" | cqrs-append -q -e "$v" 2>/dev/null; then
					done_n=$((done_n + 1))
				else
					rc=$?
					[ "$rc" = 3 ] || exit "$rc"
					conflicts=$((conflicts + 1))
				fi
			done
			echo "$conflicts" >"conflicts$w"
		) &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || fail "a writer exited other than 0 or 3"; done
	assert_equal "$(cqrs-read -a "$A" | jq -r .aggregate_version | tr '\n' ' ')" "$(seq 1 19 | tr '\n' ' ')"
	assert_equal "$(cqrs-read --verify | cut -d' ' -f1-3)" 'verified 19 events,'
	total=$(awk '{ n += $1 } END { print n }' conflicts*)
	echo "conflicts seen: $total" >&3
}

# --- bulk append: windows of events in one COPY --------------------------------

# Chunks of seeded random input for the window path (cqrs_store_append_many):
# $1 chunks of $2 lines, seeded by $3, in chunk.1 ...  New events on a few
# aggregates, with an id and a time (most) or without; retries of earlier
# lines, a few lines back (in the same window) or further (another window,
# another chunk: stored), some with a stale expected_version (a duplicate,
# not a conflict); and more than half of the chunks stop at a bad line: a version
# conflict, other content under a stored id, or a line that is no JSON.
gen_bulk_chunks() {
	awk -v chunks="$1" -v size="$2" -v seed="$3" 'BEGIN {
		srand(seed)
		split("7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f 0b9c3c7e-2f57-4d6a-9e3b-5a1d2c3e4f50 11111111-2222-4333-8444-555555555555 22222222-3333-4444-8555-666666666666", agg, " ")
		n = 0; ids = 0
		for (c = 1; c <= chunks; c++) {
			f = "chunk." c
			bad = rand() < 0.6 ? int(rand() * size) + 1 : 0
			chunk_first = n + 1
			for (l = 1; l <= size; l++) {
				if (l == bad) {
					k = int(rand() * 3)
					if (k == 0)
						print "{\"aggregate_id\":\"" agg[int(rand() * 4) + 1] "\",\"aggregate_type\":\"Order\",\"event_type\":\"Noted\",\"expected_version\":9999,\"data\":{}}" > f
					else if (k == 1 && ids > 0)
						print "{\"event_id\":\"" sprintf("00000000-0000-4000-8000-%012d", int(rand() * ids) + 1) "\",\"aggregate_id\":\"" agg[1] "\",\"aggregate_type\":\"Order\",\"event_type\":\"Noted\",\"data\":{\"other\":true},\"timestamp\":\"2026-01-01T00:00:00.000000Z\"}" > f
					else
						print "{\"aggregate_id\":\"" agg[1] "\",\"data\":" > f
					continue
				}
				r = rand()
				if (n > 0 && r < 0.3) {
					back = rand() < 0.5 ? int(rand() * 5) + 1 : int(rand() * n) + 1
					if (back > n) back = n
					line = lines[n - back + 1]
					# a stale expectation retried is a duplicate when
					# the line it repeats was stored: one of this chunk
					if (n - back + 1 >= chunk_first && index(line, "event_id") && rand() < 0.3)
						sub(/^\{/, "{\"expected_version\":0,", line)
					print line > f
					continue
				}
				i = ++n
				line = "{"
				if (rand() < 0.8) line = line sprintf("\"event_id\":\"00000000-0000-4000-8000-%012d\",", ++ids)
				line = line "\"aggregate_id\":\"" agg[int(rand() * 4) + 1] "\",\"aggregate_type\":\"Order\",\"event_type\":\"Noted\""
				line = line sprintf(",\"data\":{\"n\":%d,\"s\":\"é \\u00e9 \\\\ \\t \\\" %d\"}", i, i)
				if (rand() < 0.5) line = line sprintf(",\"metadata\":{\"correlation_id\":\"corr-%d\"}", i % 7)
				if (index(line, "event_id")) line = line sprintf(",\"timestamp\":\"2026-01-16T14:%02d:%02d.%06dZ\"", int(i / 60) % 60, i % 60, i)
				lines[n] = line "}"
				print lines[n] > f
			}
			close(f)
		}
	}'
}

# What the two stores must agree on: everything but a hash, and the time
# and id the store made up for an event given none.
same_bulk() {
	jq -c 'del(.hash) | if (.event_id | startswith("00000000-0000-4000-8000-")) then . else del(.event_id, .timestamp) end'
}

# Feeds the chunks to the PostgreSQL store and to a SQLite one with
# cqrs-append $@ (through a pipe when $1 is "|"): each chunk's exit code,
# output and messages, and then the stores, the same.
bulk_against_sqlite() {
	local pipe=false c side store
	[ "$1" = "|" ] && { pipe=true; shift; }
	for c in chunk.*[0-9]; do
		for side in pg sq; do
			store=$PG
			[ "$side" = sq ] && store=$SQ
			if $pipe; then
				# shellcheck disable=SC2016 # $1... are the inner shell's
				run --separate-stderr bash -c 'cat "$1" | cqrs-append --no-sync --store "$2" "${@:3}"' \
					sh "$c" "$store" "$@"
			else
				run --separate-stderr cqrs-append --no-sync --store "$store" "$@" "$c"
			fi
			assert_not_signalled
			printf '%s\n' "$status" "$stderr" >"$c.err.$side"
			printf '%s\n' "$output" | same_bulk >"$c.out.$side"
		done
		diff "$c.err.pg" "$c.err.sq" || fail "$c: the stores' exit codes or messages differ"
		diff "$c.out.pg" "$c.out.sq" || fail "$c: the stores' outputs differ"
	done
	diff <(cqrs-read | same_bulk) <(cqrs-read --store "$SQ" | same_bulk) ||
		fail "the stores hold different events"
	assert_equal "$(cqrs-read --verify | cut -d' ' -f1)" verified
	# the input tried both: chunks that went through, chunks refused
	local codes
	codes=$(head -qn1 chunk.*.err.pg | sort -u | tr '\n' ' ')
	[[ " $codes" == *" 0 "* && " $codes" =~ \ (3|65)\  ]] || fail "exit codes: $codes"
	rm -f chunk.*
}

@test "bulk append (one COPY a window) agrees with SQLite on seeded random input: -b 1 and -b 7" {
	gen_bulk_chunks 6 150 41
	bulk_against_sqlite -b 1
	pg_sql -c "DROP SCHEMA $SCHEMA CASCADE"
	rm -f "$SQ" "$SQ".*
	gen_bulk_chunks 6 300 42
	bulk_against_sqlite -b 7
}

@test "bulk append agrees with SQLite across windows of 1000: -b 1000, one transaction, and through a pipe" {
	gen_bulk_chunks 5 1400 43
	bulk_against_sqlite -b 1000
	pg_sql -c "DROP SCHEMA $SCHEMA CASCADE"
	rm -f "$SQ" "$SQ".*
	gen_bulk_chunks 5 1400 44
	bulk_against_sqlite
	pg_sql -c "DROP SCHEMA $SCHEMA CASCADE"
	rm -f "$SQ" "$SQ".*
	gen_bulk_chunks 4 1200 45
	bulk_against_sqlite "|" -b 500
}

# --- no reader skips ----------------------------------------------------------

@test "a writer's transaction held open makes other writers wait, and a follower skips nothing" {
	ev "$A" | cqrs-append -q
	cqrs-read -f >follow.out 2>follow.err &
	follower=$!
	# writer 1 (the others must not hold its input open: 4>&-): its transaction stays open while its input does
	mkfifo held
	cqrs-append -q <held 2>held.err &
	held_writer=$!
	exec 4>held
	ev "$B" ',"metadata":{"who":"held"}' >&4
	await_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted" 1
	# writers 2 and 3 commit after it, whatever their start
	for w in 2 3; do
		ev "$A" ",\"metadata\":{\"who\":\"w$w\"}" | cqrs-append -q 2>"w$w.err" 4>&- &
		eval "w$w=\$!"
	done
	await_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted" 2
	assert_equal "$(cqrs-read | jq -r .sequence)" 1
	ev "$B" ',"metadata":{"who":"held"}' >&4
	exec 4>&-
	wait "$held_writer"
	wait "$w2"
	wait "$w3"
	for ((i = 0; i < 600; i++)); do
		[ "$(wc -l <follow.out)" -ge 5 ] && break
		sleep 0.05
	done
	kill "$follower"
	wait "$follower" || true
	assert_equal "$(jq -r .sequence follow.out | tr '\n' ' ')" '1 2 3 4 5 '
	assert_equal "$(jq -r '.metadata.who // "first"' follow.out | head -3 | tr '\n' ' ')" 'first held held '
	assert_equal "$(cat follow.err held.err)" ''
	assert_equal "$(cqrs-read --verify | cut -d' ' -f1-3)" 'verified 5 events,'
}

@test "a writer that waits longer than CQRS_BUSY_TIMEOUT for the append lock exits 75; nothing is stored" {
	ev "$A" | cqrs-append -q
	mkfifo held
	cqrs-append -q <held &
	held_writer=$!
	exec 4>held
	ev "$B" >&4
	await_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted" 1
	CQRS_BUSY_TIMEOUT=200 run --separate-stderr cqrs-append 4>&- < <(ev "$A")
	assert_failure 75
	assert_output ''
	assert_equal "$stderr" "cqrs-append: stdin:1: postgresql:host=$PG_DIR port=5432 dbname=postgres user=cqrs_admin (schema $SCHEMA): store is busy (another transaction holds the append lock for longer than CQRS_BUSY_TIMEOUT); try again
cqrs-append: nothing was stored"
	exec 4>&-
	wait "$held_writer"
	assert_equal "$(cqrs-read | jq -c '[.sequence, .aggregate_id == "'"$B"'"]' | tr '\n' ' ')" '[1,false] [2,true] '
}

@test "a transaction left open by psql (BEGIN, nothing locked) stalls no writer and hides nothing" {
	ev "$A" | cqrs-append -q
	mkfifo q
	pg_sql <q >psql.out 2>&1 &
	psql_pid=$!
	exec 5>q
	echo "BEGIN; SELECT count(*) FROM $SCHEMA.events;" >&5
	await_sql "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'" 1
	for ((i = 0; i < 10; i++)); do ev "$A"; done | cqrs-append -q -b 1
	assert_equal "$(cqrs-read | jq -r .sequence | tr '\n' ' ')" '1 2 3 4 5 6 7 8 9 10 11 '
	run --separate-stderr cqrs-read --verify
	assert_success
	echo "COMMIT;" >&5
	exec 5>&-
	wait "$psql_pid"
	assert_equal "$(cat psql.out)" 1
}

@test "--follow on PostgreSQL: each commit shows up, in order (woken by LISTEN/NOTIFY)" {
	ev "$A" | cqrs-append -q
	cqrs-read -f >follow.out &
	follower=$!
	# its first read done: it LISTENs at its first wait, and reads again
	# after, so an append that commits before the LISTEN is not missed
	for ((i = 0; i < 600; i++)); do
		[ -s follow.out ] && break
		sleep 0.05
	done
	worst=0
	for n in 2 3 4 5 6 7 8 9; do
		ev "$A" | cqrs-append -q
		start=$(date +%s%N)
		while [ "$(wc -l <follow.out)" -lt "$n" ]; do
			(($(date +%s%N) - start < 5000000000)) || fail "event $n did not arrive in 5 s"
		done
		ms=$((($(date +%s%N) - start) / 1000000))
		((ms > worst)) && worst=$ms
	done
	kill "$follower"
	wait "$follower" || true
	# how fast is a figure, not a test (no timing assertions): shown, not
	# checked; the 5 s bound above only keeps a lost wake-up from hanging
	echo "# slowest wake-up: $worst ms" >&3
	assert_equal "$(jq -r .sequence follow.out | tr '\n' ' ')" '1 2 3 4 5 6 7 8 9 '
}

# --- errors ---------------------------------------------------------------------

@test "the server stopped or unreachable: exit 75, saying so; nothing half-applied" {
	ev "$A" | cqrs-append -q
	pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null
	run --separate-stderr cqrs-append < <(ev "$A")
	assert_failure 75
	assert_equal "$stderr" "cqrs-append: postgresql:: cannot reach the server: connection to server on socket \"$PG_DIR/.s.PGSQL.5432\" failed: No such file or directory; try again later"
	run --separate-stderr cqrs-read
	assert_failure 75
	pg_start_server
	assert_equal "$(cqrs-read | jq -r .sequence)" 1
	run --separate-stderr cqrs-read --store "postgresql:host=$BATS_TEST_TMPDIR/nowhere"
	assert_failure 75
}

@test "authentication: no password or a wrong one exits 77; PGPASSWORD or .pgpass lets the writer in" {
	pg_sql -c "CREATE ROLE cqrs_pw LOGIN PASSWORD 'sekret'; GRANT CREATE ON DATABASE postgres TO cqrs_pw"
	store="postgresql:user=cqrs_pw options='-c cqrs.schema=$SCHEMA'"
	run --separate-stderr cqrs-append --store "$store" < <(ev "$A")
	assert_failure 77
	assert_equal "$stderr" "cqrs-append: postgresql:user=cqrs_pw: the server refused this user: connection to server on socket \"$PG_DIR/.s.PGSQL.5432\" failed: fe_sendauth: no password supplied (see cqrs-postgres(7) on passwords: .pgpass, PGPASSWORD, a service file)"
	PGPASSWORD=wrong run --separate-stderr cqrs-append --store "$store" < <(ev "$A")
	assert_failure 77
	assert_regex "$stderr" 'password authentication failed for user "cqrs_pw"'
	PGPASSWORD=sekret run --separate-stderr cqrs-append -q --store "$store" < <(ev "$A")
	assert_success
	printf '*:*:*:cqrs_pw:sekret\n' >pgpass
	chmod 600 pgpass
	PGPASSFILE=$PWD/pgpass run --separate-stderr cqrs-read --store "$store"
	assert_success
	assert_equal "${#lines[@]}" 1
}

@test "the role split: a read-only role reads and follows but cannot append (77); a read-only server is refused as a write store" {
	# what cqrs-postgres(7) tells the administrator to run, then the
	# writer's first append creates the tables
	pg_sql -c "CREATE ROLE writer_$SCHEMA LOGIN; CREATE ROLE reader_$SCHEMA LOGIN;
		CREATE SCHEMA $SCHEMA AUTHORIZATION writer_$SCHEMA;
		GRANT USAGE ON SCHEMA $SCHEMA TO reader_$SCHEMA;
		ALTER DEFAULT PRIVILEGES FOR ROLE writer_$SCHEMA IN SCHEMA $SCHEMA
		    GRANT SELECT ON TABLES TO reader_$SCHEMA"
	ev "$A" | cqrs-append -q --store "postgresql:user=writer_$SCHEMA options='-c cqrs.schema=$SCHEMA'"
	reader="postgresql:user=reader_$SCHEMA options='-c cqrs.schema=$SCHEMA'"
	run --separate-stderr cqrs-read --store "$reader" --verify
	assert_success
	assert_regex "$output" '^verified 1 events'
	run --separate-stderr cqrs-append --store "$reader" < <(ev "$A")
	assert_failure 77
	assert_regex "$stderr" 'permission denied for (table|sequence|schema)'
	pg_sql -c "CREATE ROLE ro_$SCHEMA LOGIN SUPERUSER; ALTER ROLE ro_$SCHEMA SET default_transaction_read_only = on"
	run --separate-stderr cqrs-append --store "postgresql:user=ro_$SCHEMA options='-c cqrs.schema=$SCHEMA'" < <(ev "$A")
	assert_failure 77
	assert_equal "${stderr%%$'\n'*}" "cqrs-append: postgresql:host=$PG_DIR port=5432 dbname=postgres user=ro_$SCHEMA (schema $SCHEMA): permission denied: the server is read-only (transaction_read_only); a write store must be the primary"
	assert_equal "$(pg_sql -c "SELECT count(*) FROM $SCHEMA.events")" 1
}

@test "a bad connection string or schema name exits 78; a missing store 66; a newer schema 78" {
	run --separate-stderr cqrs-read --store 'postgresql:nonsense'
	assert_failure 78
	assert_regex "$stderr" '^cqrs-read: postgresql: bad connection string: '
	run --separate-stderr cqrs-read --store "postgresql:options='-c cqrs.schema=Bad-Name'"
	assert_failure 78
	assert_regex "$stderr" "cqrs.schema 'Bad-Name' is not a schema name the tools use"
	run --separate-stderr cqrs-read
	assert_failure 66
	assert_equal "$stderr" "cqrs-read: postgresql:host=$PG_DIR port=5432 dbname=postgres user=cqrs_admin (schema $SCHEMA): no store in schema $SCHEMA (or it needs an upgrade)"
	ev "$A" | cqrs-append -q
	pg_sql -c "UPDATE $SCHEMA.store_info SET schema_version = 99"
	run --separate-stderr cqrs-read
	assert_failure 78
	assert_regex "$stderr" 'store schema version 99 is newer than this tool.s \([0-9]+\); upgrade cqrs-tools$'
}

@test "--reset-witness is refused with 64: a PostgreSQL store has no witness file" {
	ev "$A" | cqrs-append -q
	run --separate-stderr cqrs-append --reset-witness
	assert_failure 64
	assert_equal "$stderr" "cqrs-append: this store has no witness file: its server keeps its history"
}

@test "URIs name stores too; the password never shows in a message" {
	ev "$A" | cqrs-append -q --store "postgresql:///postgres?host=$PG_DIR&options=-c%20cqrs.schema%3D$SCHEMA"
	assert_equal "$(cqrs-read | jq -r .sequence)" 1
	run --separate-stderr cqrs-read --store "postgres://cqrs_admin:hunter2@/nodb?host=$PG_DIR"
	assert_failure 66
	refute_regex "$stderr" hunter2
}

@test "libpq is loaded for a PostgreSQL store only: not linked, not loaded by a SQLite append" {
	ldd "$(command -v cqrs-append)" >ldd.out
	run grep -c libpq ldd.out
	assert_output 0
	ev "$A" | LD_DEBUG=libs cqrs-append -q --store "$SQ" 2>sqlite.debug
	run grep -c 'libpq.so' sqlite.debug
	assert_output 0
	ev "$A" | LD_DEBUG=libs cqrs-append -q 2>pg.debug
	run grep -c 'libpq.so.5' pg.debug
	refute_output 0
}

@test "the store's tables and view are created in its own schema, at the first write" {
	run pg_sql -c "SELECT count(*) FROM information_schema.tables WHERE table_schema = '$SCHEMA'"
	assert_output 0
	ev "$A" | cqrs-append -q
	run pg_sql -c "SELECT string_agg(table_name, ' ' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = '$SCHEMA'"
	assert_output 'checkpoints counters event_log events processed_messages saga_breakers saga_instances snapshots store_info'
}

# --- cqrs-command: optimistic concurrency for real ----------------------------
# A writer loads and decides before it takes the append lock (at its first
# append): another writer may append to the aggregate in between, and then
# the command is loaded and decided again (cqrs-command(1), Concurrency).
# No test switch: the conflicts below are the server's.

P=11111111-1111-4111-8111-111111111111
O1=22222222-2222-4222-8222-222222222222

# cmd LINE: one cqrs-command process, as a shell script would run it, until
# it lands: exit 3 (gave up after conflicts) and 75 (another writer handled
# the same command_id at the same time) mean "run again"; the runs
# are counted in retries.$BASHPID.  Its result line goes to stdout.
cmd() {
	local rc
	while :; do
		CQRS_METRICS_FOLD=0 cqrs-command <<<"$1" && return 0
		rc=$?
		case $rc in
		3 | 75) echo "$rc" >>"retries.$BASHPID" ;;
		*) return "$rc" ;;
		esac
	done
}

# The value of a series in cqrs_command.prom ("absent" when it is not
# there), summed over the command types.
conflicts_counted() {
	awk '$1 ~ /^cqrs_command_conflicts_total\{/ { n += $2; found = 1 } END { print found ? n : "absent" }' \
		"$CQRS_METRICS_DIR/cqrs_command.prom"
}

replenish() { echo '{"command_id":"'$1'","type":"ReplenishStock","product_id":"'$P'","quantity":'$2'}'; }
reserve() { echo '{"command_id":"'$1'","type":"ReserveInventory","product_id":"'$P'","order_id":"'$O1'","quantity":'$2'}'; }

# Product P with 1000 units (no reservation below can be refused, so the
# stock does not depend on the order the writers land in) and order O1.
# Waits (up to 30 s) until the SQL count $1 prints $2 (another writer's
# work committed) or a writer waits for the store's advisory lock: 0, or 1.
committed_or_waiting() {
	local i
	for ((i = 0; i < 600; i++)); do
		[ "$(pg_sql -c "$1")" = "$2" ] && return 0
		[ "$(pg_sql -c "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")" = 1 ] &&
			return 0
		sleep 0.05
	done
	return 1
}

stocked_product() {
	cqrs-command -q register-product --product "$P" --sku SKU-1 --name W --quantity 1000
	cqrs-command -q create-order --order "$O1" --customer c --item "$P:1:1.00:SKU-1" \
		--currency USD --ship-to 'A,1 Main St,Springfield,12345,US'
}

@test "cqrs-command: writers that decided against the same version while the append lock was held conflict, decide again and all land; a command_id sent twice at once has one effect" {
	export CQRS_METRICS_DIR=$BATS_TEST_TMPDIR/metrics
	mkdir -m 700 "$CQRS_METRICS_DIR"
	stocked_product
	# the append lock held by a writer whose input stays open
	mkfifo held
	cqrs-append -q <held 2>held.err &
	held_writer=$!
	exec 4>held
	ev "$A" >&4
	await_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted" 1
	# 4 reservations and one replenishment sent by two writers: the
	# reservations wait for the lock before they load (they decide from
	# the order too); the replenishments load version 2 of P, decide, and
	# wait for the lock at their append
	pids=()
	for i in 1 2 3 4; do
		cmd "$(reserve "r-$i" "$i")" >"out.r$i" 2>"err.r$i" 4>&- &
		pids+=($!)
	done
	for i in 1 2; do
		cmd "$(replenish twice 7)" >"out.twice$i" 2>"err.twice$i" 4>&- &
		pids+=($!)
	done
	await_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted" 6
	exec 4>&-
	wait "$held_writer"
	for p in "${pids[@]}"; do wait "$p" || fail "a writer failed: $(cat err.*)"; done
	assert_equal "$(cat held.err err.*)" ''
	# every command landed once; the one sent twice has one event, and
	# both of its writers print its result
	assert_equal "$(cqrs-read -a "$P" | jq -r '.metadata.causation_id | select(test("^(r-|twice)"))' | sort | tr '\n' ' ')" \
		'r-1 r-2 r-3 r-4 twice '
	assert_equal "$(cat out.twice1)" "$(cat out.twice2)"
	assert_equal "$(cqrs-command show "$P" | jq -c '[.version, .state.available, .state.reserved]')" \
		"[7,$((1000 + 7 - 10)),10]"
	assert_equal "$(cqrs-read -a "$P" | jq -r .aggregate_version | tr '\n' ' ')" '1 2 3 4 5 6 7 '
	# a replenishment that got the lock after another writer of P found a
	# later version, and decided again (none had to give up)
	CQRS_METRICS_FOLD=0 cqrs-command -q replenish-stock --product "$P" --quantity 1
	[ "$(conflicts_counted)" -ge 1 ] || fail "conflicts counted: $(conflicts_counted)"
	assert_equal "$(cqrs-read --verify | cut -d' ' -f1-3)" 'verified 10 events,'
}

@test "cqrs-command: a reservation takes the lock before it reads the order: a cancellation committed meanwhile cannot leave stock held for a cancelled order" {
	stocked_product
	# the reservation stops once it has read the order (open) and the stock
	mkfifo loaded go
	CQRS_TEST_PAUSE_AFTER_LOAD=$PWD cqrs-command -q reserve-inventory --product "$P" --order "$O1" \
		--quantity 2 2>reserve.err &
	local reserver=$! canceller
	read -r _ <loaded
	cqrs-command -q cancel-order --order "$O1" --reason gone 2>cancel.err &
	canceller=$!
	# the cancellation either committed (the lock was free: the old
	# decision outside the lock) or waits for the reservation's lock
	committed_or_waiting "SELECT count(*) FROM $SCHEMA.events WHERE event_type = 'OrderCancelled'" 1 ||
		fail "the cancellation neither committed nor waited for the lock"
	echo >go
	wait "$reserver" || fail "the reservation failed: $(cat reserve.err)"
	wait "$canceller" || fail "the cancellation failed: $(cat cancel.err)"
	assert_equal "$(cat reserve.err cancel.err)" ""
	# the reservation came first, and the cancellation released it
	assert_equal "$(cqrs-read -a "$P" | jq -r .event_type | tr '\n' ' ')" \
		'ProductRegistered StockReplenished InventoryReserved InventoryReleased '
	assert_equal "$(cqrs-command show "$P" | jq -c '[.state.available, .state.reserved]')" '[1000,0]'
	assert_equal "$(cqrs-command show "$O1" | jq -r .state.status)" CANCELLED
}

@test "cqrs-command: a new order takes the append lock before the order-number counter: two writers' batches, no deadlock" {
	stocked_product
	# a batch that holds the append lock (its reservation takes it before
	# it reads, and stops once it has read), then wants the counter
	{
		printf '{"command_id":"r-1","type":"ReserveInventory","product_id":"%s","order_id":"%s","quantity":1}\n' "$P" "$O1"
		printf '{"command_id":"c-1","type":"CreateOrder","customer_id":"c","items":[{"product_id":"%s","sku":"SKU-1","quantity":1,"unit_price":1.00}],"currency":"USD","shipping_address":{"name":"A","street":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}\n' "$P"
	} >batch.ndjson
	mkfifo loaded go
	CQRS_TEST_PAUSE_AFTER_LOAD=$PWD cqrs-command -q batch.ndjson 2>batch.err &
	local batch=$! creator
	read -r _ <loaded
	# another writer's new order: before, it took the counter's row and
	# then waited for the lock, while the batch held the lock and came
	# to want the row (PostgreSQL broke the cycle after a second)
	cqrs-command -q create-order --customer d --item "$P:1:1.00:SKU-1" --currency USD \
		--ship-to 'A,1 Main St,Springfield,12345,US' 2>create.err &
	creator=$!
	await_sql "SELECT count(*) FROM pg_locks WHERE NOT granted" 1
	echo >go
	wait "$batch" || fail "the batch ended $?: $(cat batch.err)"
	wait "$creator" || fail "the new order ended $?: $(cat create.err)"
	assert_equal "$(cat batch.err create.err)" ""
	# three orders, numbered 1 to 3
	assert_equal "$(cqrs-read -e OrderCreated | jq -r .data.order_number | cut -d- -f3 | sort | tr '\n' ' ')" \
		'000001 000002 000003 '
}

@test "cqrs-backup: an incremental restore takes the lock before it checks the head: an append meanwhile waits and lands after the restored events" {
	local h0 h1 restorer appender
	gen_events 5 41 | cqrs-append -q --store src.db
	cqrs-backup -f ndjson --store src.db >b0.ndjson
	h0=$(tail -n1 b0.ndjson | jq -r .head)
	gen_events 3 42 | cqrs-append -q --store src.db
	cqrs-backup -f ndjson --since "$h0" --store src.db >b1.ndjson
	h1=$(tail -n1 b1.ndjson | jq -r .head)
	run --separate-stderr cqrs-backup --restore b0.ndjson
	assert_success
	# the restore stops once it has checked that the store is at the
	# backup's since; another writer appends meanwhile
	mkfifo loaded go
	CQRS_TEST_PAUSE_AFTER_CHECK=$PWD cqrs-backup --restore b1.ndjson >restore.out 2>restore.err &
	restorer=$!
	read -r _ <loaded
	gen_events 1 43 | cqrs-append -q 2>append.err &
	appender=$!
	# the append either committed (the check was made without the lock)
	# or waits for the restore's lock
	committed_or_waiting "SELECT count(*) FROM $SCHEMA.events" 6 ||
		fail "the append neither committed nor waited for the lock"
	echo >go
	wait "$restorer" || fail "the restore failed: $(cat restore.err)"
	wait "$appender" || fail "the append failed: $(cat append.err)"
	assert_equal "$(cat restore.out)" "$h1"
	assert_equal "$(cat restore.err append.err)" ""
	# the backup's events as they were, then the append's
	assert_equal "$(cqrs-read -n 8)" "$(cqrs-read --store src.db)"
	assert_equal "$(cqrs-read --from 9 | jq -r .sequence)" 9
	assert_equal "$(cqrs-read --verify | cut -d' ' -f1-3)" 'verified 9 events,'
}

@test "cqrs-command: 4 writers x 25 seeded commands on one product, and 4 x 5 CreateOrders at once: the model's stock, each command once, consecutive order numbers" {
	export CQRS_METRICS_DIR=$BATS_TEST_TMPDIR/metrics
	mkdir -m 700 "$CQRS_METRICS_DIR"
	stocked_product
	# the inputs: seeded mixes, each writer's with the shared command_ids
	# dup-1 .. dup-5 at its own places, and one shared CreateOrder without
	# an order_id (a new order per writer that decides it)
	for w in 1 2 3 4; do
		RANDOM=$((w * 104729))
		for ((i = 1; i <= 25; i++)); do
			q=$((RANDOM % 5 + 1))
			if ((RANDOM % 2)); then replenish "w$w-$i" "$q"; else reserve "w$w-$i" $((q % 3 + 1)); fi
			if ((i % 5 == w % 5)); then replenish "dup-$((i / 5 + 1))" $((i / 5 + 1)); fi
		done >"in.$w"
		for ((i = 1; i <= 5; i++)); do
			echo '{"command_id":"co-'$w-$i'","type":"CreateOrder","customer_id":"c'$w'","items":[{"product_id":"'$P'","quantity":1,"unit_price":1}],"currency":"USD","shipping_address":{"name":"a","street":"b","city":"c","postal_code":"d","country":"US"}}'
			if ((i == w)); then echo '{"command_id":"co-shared","type":"CreateOrder","customer_id":"cs","items":[{"product_id":"'$P'","quantity":1,"unit_price":1}],"currency":"USD","shipping_address":{"name":"a","street":"b","city":"c","postal_code":"d","country":"US"}}'; fi
		done >>"in.$w"
	done
	# the model: every distinct command_id once
	cat in.* | jq -s -r 'unique_by(.command_id) | map(select(.product_id != null and .type != "CreateOrder"))
		| [ (map(select(.type == "ReplenishStock") | .quantity) | add),
		    (map(select(.type == "ReserveInventory") | .quantity) | add) ] | @tsv' >model
	read -r added reserved <model
	pids=()
	for w in 1 2 3 4; do
		(
			while IFS= read -r line; do
				cmd "$line" || exit
			done <"in.$w" >"out.$w" 2>"err.$w"
		) &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || fail "a writer failed: $(cat err.*)"; done
	# nothing said but the one message of a command_id decided by two
	# writers at once (exit 75, run again by cmd)
	assert_equal "$(grep -hv "^cqrs-command: stdin:1: .*: message '[a-z0-9-]*' was handled by another writer at the same time; nothing of this transaction was stored: run again (it then gives the other's result)\$" err.*)" ''
	assert_equal "$(cqrs-command show "$P" | jq -c '[.state.available, .state.reserved]')" \
		"[$((1000 + added - reserved)),$reserved]"
	# each command's effect once: one event per distinct command_id
	assert_equal "$(cqrs-read | jq -r 'select(.metadata.causation_id | test("^(w|dup-|co-)")) | .metadata.causation_id' | sort | uniq -d)" ''
	assert_equal "$(cqrs-read -e StockReplenished -e InventoryReserved -e OrderCreated | jq -r '.metadata.causation_id | select(test("^(w|dup-|co-)"))' | sort | tr '\n' ' ')" \
		"$(jq -r .command_id in.* | sort -u | tr '\n' ' ')"
	# the shared command_id printed the same result to all four writers
	assert_equal "$(grep -h '"co-shared"' out.* | sort -u | wc -l)" 1
	# order numbers: O1's, then 21 more, unique and consecutive
	y=$(date -u +%Y)
	assert_equal "$(cqrs-read -e OrderCreated | jq -r .data.order_number | sort | tr '\n' ' ')" \
		"$(for n in $(seq 1 22); do printf 'ORD-%s-%06d ' "$y" "$n"; done)"
	# how often the conflict path was taken here depends on the race
	# (the test above takes it for certain): shown, not asserted
	CQRS_METRICS_FOLD=0 cqrs-command -q replenish-stock --product "$P" --quantity 1
	echo "# conflicts decided again: $(conflicts_counted); runs again after exit 3 or 75: $(cat retries.* 2>/dev/null | wc -l)" >&3
	assert_equal "$(cqrs-read --verify | cut -d' ' -f1-2)" "verified $(cqrs-read | wc -l)"
}

@test "cqrs-command: two writers create the same order at once; the loser's order number goes back, the next order takes it" {
	stocked_product
	O2=5e0b2c1d-3f4a-4b5c-8d6e-7f8091a2b3c4
	order() { echo '{"command_id":"'$1'","type":"CreateOrder","order_id":"'$O2'","customer_id":"'$1'","items":[{"product_id":"'$P'","quantity":1,"unit_price":1}],"currency":"USD","shipping_address":{"name":"a","street":"b","city":"c","postal_code":"d","country":"US"}}'; }
	mkfifo held
	cqrs-append -q <held 2>held.err &
	held_writer=$!
	exec 4>held
	ev "$A" >&4
	await_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted" 1
	# the first has read the missing order and waits for the append lock,
	# which a new order takes before its number
	order first | cqrs-command >out.first 2>err.first 4>&- &
	first=$!
	await_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted" 1
	# the second reads the same missing order and waits behind it
	order second | cqrs-command >out.second 2>err.second 4>&- &
	second=$!
	await_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted" 2
	exec 4>&-
	wait "$held_writer"
	wait "$first"
	st=0
	wait "$second" || st=$?
	# it took number 3, lost the version race, decided again: the order exists
	assert_equal "$(jq -r .status out.second)" rejected
	assert_equal "$st" 4
	cqrs-command -q create-order --customer third --item "$P:1:1.00" --currency USD --ship-to 'A,B,C,D,US'
	assert_equal "$(cqrs-read -e OrderCreated | jq -r '"\(.data.customer_id) \(.data.order_number[-1:])"' | tr '\n' ' ')" \
		'c 1 first 2 third 3 '
	assert_equal "$(pg_sql -c "SELECT value FROM $SCHEMA.counters")" 3
}

@test "cqrs-command: a command_id that two writers decide at once on different aggregates: the second exits 75 with nothing stored, and run again prints the first's result" {
	stocked_product
	order='{"command_id":"same","type":"CreateOrder","customer_id":"c","items":[{"product_id":"'$P'","quantity":1,"unit_price":1}],"currency":"USD","shipping_address":{"name":"a","street":"b","city":"c","postal_code":"d","country":"US"}}'
	mkfifo held
	cqrs-append -q <held 2>held.err &
	held_writer=$!
	exec 4>held
	ev "$A" >&4
	await_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted" 1
	# each decides a new order of its own: the first waits for the append
	# lock, the second for the first's order number
	cmd "$order" >out.1 2>err.1 4>&- &
	first=$!
	await_sql "SELECT count(*) FROM pg_locks WHERE NOT granted" 1
	cmd "$order" >out.2 2>err.2 4>&- &
	second=$!
	await_sql "SELECT count(*) FROM pg_locks WHERE NOT granted" 2
	exec 4>&-
	wait "$held_writer"
	wait "$first"
	wait "$second"
	assert_equal "$(cat retries.*)" 75
	assert_equal "$(cat err.1)" ''
	assert_regex "$(cat err.2)" "^cqrs-command: stdin:1: postgresql:.*: message 'same' was handled by another writer at the same time; nothing of this transaction was stored: run again \\(it then gives the other's result\\)\$"
	assert_equal "$(cat out.2)" "$(cat out.1)"
	assert_equal "$(cqrs-read -e OrderCreated | jq -r '[.metadata.causation_id, .data.order_number] | join(" ")' | tail -n 1)" "same ORD-$(date -u +%Y)-000002"
	assert_equal "$(cqrs-read -e OrderCreated | wc -l)" 2
	# the second's order number was not spent: the next is 3
	run cqrs-command create-order --customer c --item "$P:1:1.00" --currency USD --ship-to 'A,B,C,D,US'
	assert_equal "$(jq -r '.events[0].data.order_number' <<<"$output")" "ORD-$(date -u +%Y)-000003"
}

# --- operations (issue 13): cqrs-backup and cqrs-health on PostgreSQL ----------

# The head cqrs-read --verify reports for store $1, as SEQ:HASH.
verified_head() {
	local out
	out=$(cqrs-read --verify -s "$1") || return 1
	[[ $out =~ ^verified\ ([0-9]+)\ events,\ head\ ([0-9a-f]{64})$ ]] || return 1
	echo "${BASH_REMATCH[1]}:${BASH_REMATCH[2]}"
}

# The rows of the tables both backends keep, in store $1, as sqlite3 prints them.
portable_rows() {
	local t q
	for t in checkpoints counters processed_messages; do
		q="SELECT * FROM $t ORDER BY 1"
		echo "== $t"
		if [[ $1 == postgresql:* ]]; then
			pg_sql -c "SET search_path TO $(sed -E "s/.*cqrs.schema=([a-z0-9_]+).*/\1/" <<<"$1"); $q"
		else
			sqlite3 "$1" "$q"
		fi
	done
}

@test "cqrs-command --dry-run on a schema that does not exist decides against an empty store and creates nothing; on one that exists, against it" {
	mkdir tmp
	run --separate-stderr env TMPDIR="$PWD/tmp" cqrs-command -n --store "$(pg_store "${SCHEMA}_dry")" register-product --sku S --name N
	assert_success
	assert_equal "$(jq -r '[.status, .stored, .events[0].sequence] | @tsv' <<<"$output")" "accepted	false	1"
	assert_equal "$(pg_sql -c "SELECT count(*) FROM pg_namespace WHERE nspname = '${SCHEMA}_dry'")" 0
	assert_equal "$(ls -A tmp)" ''
	# a store that exists: decided against it, nothing stored
	cqrs-command -q --store "$(pg_store "$SCHEMA")" register-product --product "$P" --sku S --name N
	run --separate-stderr cqrs-command -n --store "$(pg_store "$SCHEMA")" register-product --product "$P" --sku S --name N
	assert_failure 4
	assert_equal "$(jq -r .code <<<"$output")" already_exists
	assert_equal "$(cqrs-read --store "$(pg_store "$SCHEMA")" | wc -l)" 1
}

@test "copies SQLite -> PostgreSQL -> SQLite with cqrs-backup and with cqrs-read | cqrs-append keep every hash; --verify agrees both ways" {
	gen_events 300 29 >in.ndjson
	cqrs-append -q --store "$SQ" in.ndjson
	sqlite3 "$SQ" "INSERT INTO counters VALUES ('order', 41);
		INSERT INTO processed_messages VALUES ('cmd-1', 'cqrs-command', '{\"last\":3}', '2026-01-01T00:00:00.000000Z'),
			('cmd-é', 'cqrs-command', NULL, '2026-01-02T00:00:00.000000Z');
		INSERT INTO checkpoints VALUES ('saga:order', 290, '2026-01-03T00:00:00.000000Z')"
	want=$(verified_head "$SQ")
	cqrs-read --store "$SQ" >sqlite.ndjson
	# NDJSON backups: SQLite -> PostgreSQL -> SQLite, each restore printing the head
	cqrs-backup -f ndjson --store "$SQ" >sq.bak
	run --separate-stderr cqrs-backup --restore sq.bak
	assert_success
	assert_output "$want"
	assert_equal "$stderr" ""
	cqrs-backup -f ndjson >pg.bak
	assert_equal "$(head -n1 pg.bak | jq -c '[.cqrs_backup, .schema, .head]')" "[1,2,\"$want\"]"
	assert_equal "$(tail -n1 pg.bak | jq -c '[.events, .rows]')" "[300,4]"
	run --separate-stderr cqrs-backup --restore --store back.db pg.bak
	assert_success
	assert_output "$want"
	# a SQLite file backup restored straight into PostgreSQL
	cqrs-backup --store "$SQ" sq.db >/dev/null
	run --separate-stderr cqrs-backup --restore --store "$(pg_store "${SCHEMA}_file")" sq.db
	assert_success
	assert_output "$want"
	# and the copy by pipe, both ways
	cqrs-read --store "$SQ" | cqrs-append -q --store "$(pg_store "${SCHEMA}_pipe")"
	cqrs-read --store "$(pg_store "${SCHEMA}_pipe")" | cqrs-append -q --store piped.db
	for s in "$PG" back.db "$(pg_store "${SCHEMA}_file")" "$(pg_store "${SCHEMA}_pipe")" piped.db; do
		cqrs-read --store "$s" >copy.ndjson
		cmp sqlite.ndjson copy.ndjson || fail "$s: not the same events"
		assert_equal "$(verified_head "$s")" "$want"
	done
	for s in "$PG" back.db "$(pg_store "${SCHEMA}_file")"; do
		assert_equal "$(portable_rows "$s")" "$(portable_rows "$SQ")"
	done
	assert_equal "$(portable_rows back.db | grep -c '^cmd-é|cqrs-command||')" 1
}

@test "cqrs-backup on PostgreSQL: signed, incremental --since, by the read-only role; the file copy 78, a store with events 73, a table it does not keep 78" {
	pg_sql -c "CREATE ROLE writer_$SCHEMA LOGIN; CREATE ROLE reader_$SCHEMA LOGIN;
		CREATE SCHEMA $SCHEMA AUTHORIZATION writer_$SCHEMA;
		GRANT USAGE ON SCHEMA $SCHEMA TO reader_$SCHEMA;
		ALTER DEFAULT PRIVILEGES FOR ROLE writer_$SCHEMA IN SCHEMA $SCHEMA
		    GRANT SELECT ON TABLES TO reader_$SCHEMA"
	writer="postgresql:user=writer_$SCHEMA options='-c cqrs.schema=$SCHEMA'"
	reader="postgresql:user=reader_$SCHEMA options='-c cqrs.schema=$SCHEMA'"
	gen_events 50 31 | cqrs-append -q --store "$writer"
	cqrs-keygen owner.key >/dev/null
	run --separate-stderr cqrs-backup -f ndjson --signing-key owner.key --store "$reader"
	assert_success
	echo "$output" >b0.ndjson
	h0=$(tail -n1 b0.ndjson | jq -r .head)
	assert_equal "$h0" "$(verified_head "$reader")"
	assert_equal "$(tail -n1 b0.ndjson | jq -r '"\(.signed_head.sequence):\(.signed_head.hash)"')" "$h0"
	gen_events 20 32 | cqrs-append -q --store "$writer"
	run --separate-stderr cqrs-backup -f ndjson --signing-key owner.key --since "$h0" --store "$reader" b1.ndjson
	assert_success
	h1=$output
	assert_equal "$h1" "$(verified_head "$reader")"
	assert_equal "$(jq -r 'select(.sequence) | .sequence' b1.ndjson | head -n1)" 51
	# full, then incremental, checked against the owner's key, into either backend
	for target in "$(pg_store "${SCHEMA}_r")" r.db; do
		run --separate-stderr cqrs-backup --restore --public-key owner.key.pub --store "$target" b0.ndjson
		assert_success
		assert_output "$h0"
		run --separate-stderr cqrs-backup --restore --public-key owner.key.pub --store "$target" b1.ndjson
		assert_success
		assert_output "$h1"
		assert_equal "$(cqrs-read --store "$target")" "$(cqrs-read --store "$reader")"
	done
	# an incremental backup needs its store: 66, and none is created
	run --separate-stderr cqrs-backup --restore --store "$(pg_store "${SCHEMA}_none")" b1.ndjson
	assert_failure 66
	assert_regex "$stderr" "^cqrs-backup: postgresql:host=.* \(schema ${SCHEMA}_none\): no store in schema ${SCHEMA}_none"
	assert_equal "$(pg_sql -c "SELECT count(*) FROM pg_namespace WHERE nspname = '${SCHEMA}_none'")" 0
	# applied twice: the store went on (3), nothing restored
	run --separate-stderr cqrs-backup --restore --store "$(pg_store "${SCHEMA}_r")" b1.ndjson
	assert_failure 3
	assert_regex "$stderr" "^cqrs-backup: postgresql:host=.* \(schema ${SCHEMA}_r\): the store went on to event 70 after the incremental backup's since \(50\); nothing was restored$"
	# the SQLite file copy is SQLite's own: 78, before any connection
	run --separate-stderr cqrs-backup --store "$reader" copy.db
	assert_failure 78
	assert_equal "$stderr" "cqrs-backup: a SQLite-file backup copies a SQLite store's file; back up a PostgreSQL store with -f ndjson (or pg_dump: cqrs-postgres(7))"
	[ ! -e copy.db ]
	# a restore never replaces a store with events: 73, nothing changed
	run --separate-stderr cqrs-backup --restore --store "$writer" b0.ndjson
	assert_failure 73
	assert_regex "$stderr" "^cqrs-backup: postgresql:host=.* user=writer_$SCHEMA \(schema $SCHEMA\): a store with events is there; a restore never replaces one$"
	assert_equal "$(verified_head "$reader")" "$h1"
	# the read-only role may not restore: 77
	run --separate-stderr cqrs-backup --restore --store "$(pg_store "${SCHEMA}_ro" | sed 's/^postgresql:/postgresql:user=reader_'"$SCHEMA"' /')" b0.ndjson
	assert_failure 77
	# erasure's tables stay behind (as in a copy by pipe), its keys said on stderr
	cqrs-append -q --store "$SQ" "$FIXTURES/docs-store.ndjson"
	cqrs-backup -f ndjson --store "$SQ" >docs.ndjson
	run --separate-stderr cqrs-backup --restore --store "$(pg_store "${SCHEMA}_docs")" docs.ndjson
	assert_success
	assert_equal "$stderr" "cqrs-backup: docs.ndjson: $(grep -c '"table":"subject_keys"' docs.ndjson) erasure keys left out: the fields they encrypted stay encrypted in a PostgreSQL store (cqrs-postgres(7))"
	assert_equal "$(cqrs-read --store "$(pg_store "${SCHEMA}_docs")")" "$(cqrs-read --store "$SQ")"
	# rows of any other table it does not keep (a later release's): 78, nothing restored
	sed '0,/"table":"personal_fields"/s//"table":"planted"/' docs.ndjson >other.ndjson
	run --separate-stderr cqrs-backup --restore --store "$(pg_store "${SCHEMA}_other")" other.ndjson
	assert_failure 78
	assert_equal "$stderr" "cqrs-backup: other.ndjson:$(grep -n '"table":"planted"' other.ndjson | cut -d: -f1): table planted: a PostgreSQL store keeps no such table; nothing was restored (cqrs-read | cqrs-append copies the events alone)"
	assert_equal "$(pg_sql -c "SELECT count(*) FROM ${SCHEMA}_other.events")" 0
	# a processed command or a checkpoint that names an event after the
	# backup's last (a backup stitched together, or edited): 65, nothing
	cqrs-append -q --store sq2.db "$FIXTURES/docs-store.ndjson"
	printf '{"command_id":"c-1","type":"ReplenishStock","product_id":"3c9a7b1e-4d2f-4e8a-b6c5-0f1e2d3c4b5a","quantity":1}\n' |
		cqrs-command -q --store sq2.db
	cqrs-backup -f ndjson --store sq2.db >pc.ndjson
	line=$(grep -n '"table":"processed_messages"' pc.ndjson | cut -d: -f1)
	sed 's/\\"last\\":12/\\"last\\":13/' pc.ndjson >edited.ndjson
	run --separate-stderr cqrs-backup --restore --store "$(pg_store "${SCHEMA}_pc")" edited.ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-backup: edited.ndjson:$line: processed command 'c-1' names event 13, after the backup's last event (head 12); nothing was restored"
	sed "${line}s/.*/{\"table\":\"checkpoints\",\"row\":{\"name\":\"orders\",\"sequence\":13,\"updated_at\":\"2026-12-06T00:00:00Z\"}}/" pc.ndjson >edited.ndjson
	run --separate-stderr cqrs-backup --restore --store "$(pg_store "${SCHEMA}_pc")" edited.ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-backup: edited.ndjson:$line: checkpoint 'orders' is at event 13, after the backup's last event (head 12); nothing was restored"
	assert_equal "$(pg_sql -c "SELECT count(*) FROM ${SCHEMA}_pc.events")" 0
	# unedited, it restores
	run --separate-stderr cqrs-backup --restore --store "$(pg_store "${SCHEMA}_pc")" pc.ndjson
	assert_success
	assert_equal "$(cqrs-read --store "$(pg_store "${SCHEMA}_pc")")" "$(cqrs-read --store sq2.db)"
}

@test "sagas in flight move between the backends with cqrs-backup, and go on where they were" {
	# three orders on SQLite, their sagas at different steps: one completed,
	# one waiting to retry its payment, one its shipping label.  (A saga
	# not yet started would start on PostgreSQL from an event whose
	# personal fields SQLite encrypted: cqrs-backup(1) says to run the
	# sagas before a move.)
	export PAYMENT_GATEWAY_DIR="$BATS_TEST_TMPDIR/pgw" SHIPPING_LABEL_DIR="$BATS_TEST_TMPDIR/sl"
	export CQRS_SAGA_NOW=2026-03-01T12:00:00Z
	p=3c9a7b1e-4d2f-4e8a-b6c5-0f1e2d3c4b5a
	order() {
		cqrs-command -q --store "$1" -c "order-$2" create-order --order "$(printf '00000000-0000-4000-8000-%012d' "$2")" \
			--customer c --item "$p:1:9.99" --currency USD --ship-to 'Ada,1 Main St,Springfield,12345,US'
	}
	cqrs-command -q --store sq3.db register-product --product "$p" --sku S --name W --quantity 10
	order sq3.db 1
	cqrs-saga run --store sq3.db
	order sq3.db 2
	PAYMENT_GATEWAY_AUTHORIZE_MODE=fail cqrs-saga run --store sq3.db 2>/dev/null
	order sq3.db 3
	SHIPPING_LABEL_CREATE_MODE=fail cqrs-saga run --store sq3.db 2>/dev/null
	# rows STORE: each saga's correlation, status, step, attempts and
	# state, in the runner's order (a SQLite file, or a schema here)
	rows() {
		local q="SELECT correlation_id, status, current_step, attempts, next_attempt_at, state FROM saga_instances ORDER BY rowid"
		if [ -f "$1" ]; then sqlite3 "$1" "$q"; else pg_sql -c "SET search_path TO $1; $q"; fi
	}
	before=$(rows sq3.db)
	[ "$(grep -c RUNNING <<<"$before")" = 2 ] || fail "two sagas waiting expected on SQLite: $before"
	# SQLite -> PostgreSQL: the same instances, breakers and state
	cqrs-backup -f ndjson --store sq3.db >sagas.ndjson
	grep -q '"table":"saga_instances"' sagas.ndjson || fail "no saga rows in the backup"
	pgs=$(pg_store "${SCHEMA}_sagas")
	run --separate-stderr cqrs-backup --restore --store "$pgs" sagas.ndjson
	assert_success
	assert_equal "$(rows "${SCHEMA}_sagas")" "$before"
	assert_equal "$(pg_sql -c "SELECT count(*) FROM ${SCHEMA}_sagas.saga_instances WHERE lease_owner IS NOT NULL")" 0
	# PostgreSQL -> NDJSON -> SQLite: the same rows again, in the same order
	cqrs-backup -f ndjson --store "$pgs" >back.ndjson
	assert_equal "$(grep '"table":"saga_' back.ndjson)" "$(grep '"table":"saga_' sagas.ndjson)"
	cqrs-backup --restore --store sq4.db back.ndjson >/dev/null
	assert_equal "$(rows sq4.db)" "$before"
	# and the sagas go on on PostgreSQL: the retry, the new order's
	CQRS_SAGA_NOW=2026-03-01T13:00:00Z run --separate-stderr cqrs-saga run --store "$pgs"
	assert_success
	assert_equal "$(cqrs-saga status --store "$pgs" --format ndjson | jq -c '[.total, .COMPLETED]')" "[3,3]"
	# a saga started after the backup's last event: 65, nothing restored
	sed -E '/"table":"saga_instances"/s/"start_sequence":[0-9]+/"start_sequence":999/' sagas.ndjson >late.ndjson
	run --separate-stderr cqrs-backup --restore --store "$(pg_store "${SCHEMA}_late")" late.ndjson
	assert_failure 65
	assert_regex "$stderr" "^cqrs-backup: late.ndjson:[0-9]+: saga [0-9a-f-]+ started at event 999, after the backup's last event \(head [0-9]+\); nothing was restored$"
}

@test "cqrs-health on PostgreSQL as the read-only role: what it checks there, each failure it sees, nothing changed" {
	pg_sql -c "CREATE ROLE writer_$SCHEMA LOGIN; CREATE ROLE reader_$SCHEMA LOGIN;
		CREATE SCHEMA $SCHEMA AUTHORIZATION writer_$SCHEMA;
		GRANT USAGE ON SCHEMA $SCHEMA TO reader_$SCHEMA;
		ALTER DEFAULT PRIVILEGES FOR ROLE writer_$SCHEMA IN SCHEMA $SCHEMA
		    GRANT SELECT ON TABLES TO reader_$SCHEMA"
	writer="postgresql:user=writer_$SCHEMA options='-c cqrs.schema=$SCHEMA'"
	reader="postgresql:user=reader_$SCHEMA options='-c cqrs.schema=$SCHEMA'"
	cqrs-append -q --store "$writer" "$FIXTURES/orders.envelopes"
	cqrs-project --store "$reader" --views views.db
	before=$(pg_sql -c "SELECT count(*), max(sequence) FROM $SCHEMA.events")
	run --separate-stderr cqrs-health --store "$reader" --views views.db
	assert_success
	assert_equal "$stderr" ""
	line() { jq -c --arg c "$1" 'select(.check == $c)' <<<"$output"; }
	assert_equal "$(jq -r 'select(.status != "ok") | .check' <<<"$output")" ""
	assert_equal "$(line store)" '{"check":"store","status":"ok","figure":2,"unit":"schema","detail":"schema 2"}'
	assert_equal "$(line integrity)" '{"check":"integrity","status":"ok","figure":0,"unit":"problems","detail":"tables, triggers and sequences: ok"}'
	assert_equal "$(line chain)" '{"check":"chain","status":"ok","figure":7,"unit":"events","detail":"verified 7 events; no witness: the server keeps its history"}'
	assert_equal "$(line views)" '{"check":"views","status":"ok","figure":4,"unit":"projections","detail":"4 projections"}'
	assert_equal "$(line sagas_stuck)" '{"check":"sagas_stuck","status":"ok","figure":0,"unit":"sagas","warning":1,"critical":null,"detail":"0 sagas with no change for 3600s"}'
	assert_equal "$(line wal)" '{"check":"wal","status":"ok","figure":null,"unit":"bytes","warning":67108864,"critical":536870912,"detail":"not applicable: the PostgreSQL server keeps its write-ahead log"}'
	# the free disk is the views' alone
	assert_regex "$(line disk | jq -r .detail)" "^[0-9]+ bytes free in \.$"
	# the gauges: the schema's and the database's sizes, no write-ahead log
	mkdir -m 700 tf
	cqrs-health --store "$reader" --views views.db --textfile tf >/dev/null
	promtool check metrics <tf/cqrs_health.prom
	assert_equal "$(grep -c '^cqrs_store_wal_size_bytes' tf/cqrs_health.prom)" 0
	size=$(pg_sql -c "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '$SCHEMA' AND c.relkind IN ('r', 'm')")
	assert_equal "$(grep '^cqrs_store_size_bytes ' tf/cqrs_health.prom)" "cqrs_store_size_bytes $size"
	assert_regex "$(grep '^cqrs_store_database_size_bytes ' tf/cqrs_health.prom)" '^cqrs_store_database_size_bytes [1-9][0-9]+$'
	assert_equal "$(grep '^cqrs_store_events ' tf/cqrs_health.prom)" "cqrs_store_events 7"
	assert_equal "$(pg_sql -c "SELECT count(*), max(sequence) FROM $SCHEMA.events")" "$before"
	# the append-only triggers disabled: critical (2)
	pg_sql -c "ALTER TABLE $SCHEMA.events DISABLE TRIGGER events_no_truncate"
	run --separate-stderr cqrs-health --store "$reader" --views views.db
	assert_failure 2
	assert_equal "$(line integrity)" '{"check":"integrity","status":"critical","figure":1,"unit":"problems","detail":"tables, triggers and sequences: the triggers that keep events append-only are missing or disabled"}'
	# a row deleted behind the tools' back: the sequences and the chain see it
	pg_sql -c "SET search_path TO $SCHEMA; ALTER TABLE events DISABLE TRIGGER USER; DELETE FROM events WHERE sequence = 3; ALTER TABLE events ENABLE TRIGGER USER"
	run --separate-stderr cqrs-health --store "$reader" --views views.db
	assert_failure 2
	assert_equal "$(line integrity | jq -r .detail)" "tables, triggers and sequences: 6 events, but their sequences run from 1 to 7: rows are missing"
	assert_equal "$(line chain | jq -r .status)" critical
	# the saga tables are the store's: the read-only role reads them
	assert_equal "$(line sagas_stuck | jq -c '[.status, .figure]')" '["ok",0]'
	# the server unreachable: the store is critical (2), every check that needs it unknown
	run --separate-stderr cqrs-health --store "postgresql:host=$BATS_TEST_TMPDIR/nowhere" --views views.db
	assert_failure 2
	assert_regex "$(line store)" '^\{"check":"store","status":"critical","figure":null,"unit":"schema","detail":"postgresql:host=.*/nowhere: cannot reach the server: .*\}$'
	assert_equal "$(jq -r 'select(.status == "unknown") | .check' <<<"$output" | wc -l)" 12
}

@test "pg_dump of the store's schema, restored elsewhere, verifies as the store did: the chain lives in the rows" {
	gen_events 120 37 | cqrs-append -q
	want=$(cqrs-read --verify)
	pg_sql -c "CREATE DATABASE dump_$SCHEMA"
	pg_dump -n "$SCHEMA" -f dump.sql postgres
	pg_sql -d "dump_$SCHEMA" -f dump.sql >/dev/null
	copy="postgresql:dbname=dump_$SCHEMA options='-c cqrs.schema=$SCHEMA'"
	assert_equal "$(cqrs-read --store "$copy" --verify)" "$want"
	assert_equal "$(cqrs-read --store "$copy")" "$(cqrs-read)"
	# and the copy takes appends where the store left off, chained
	ev "$A" | cqrs-append -q --store "$copy"
	assert_regex "$(cqrs-read --store "$copy" --verify)" '^verified 121 events, head [0-9a-f]{64}$'
}
