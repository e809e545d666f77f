#!/usr/bin/env bats
# Several processes writing one store at once: no duplicate versions, no
# gaps, no lost events, and exactly one winner of an optimistic race.

# shellcheck disable=SC2154 # bats sets stderr, status, output, lines
bats_require_minimum_version 1.5.0
load test_helper

AGGS=(7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f 0b9c3c7e-2f57-4d6a-9e3b-5a1d2c3e4f50
	5a1d2c3e-4f50-4b9c-9c7e-2f574d6a9e3b)

# Every aggregate's versions are exactly 1..n, the sequences exactly 1..N.
assert_dense() {
	run sqlite3 "$CQRS_STORE" "SELECT aggregate_id, count(*), count(DISTINCT aggregate_version),
		min(aggregate_version), max(aggregate_version) FROM event_log GROUP BY aggregate_id
		HAVING count(*) != max(aggregate_version) OR count(DISTINCT aggregate_version) != count(*)
		OR min(aggregate_version) != 1"
	assert_output ''
	run sqlite3 "$CQRS_STORE" 'SELECT count(*), count(DISTINCT sequence), min(sequence), max(sequence) FROM events'
	assert_output "$1|$1|1|$1"
	run --separate-stderr cqrs-read --verify
	assert_success
	assert_output --regexp "^verified $1 events, head [0-9a-f]{64}\$"
}

# Writer $1 appends 50 events, round robin over the three aggregates, one
# invocation per event; $2 ... are extra cqrs-append options.
writer() {
	local w=$1 i
	shift
	for ((i = 1; i <= 50; i++)); do
		printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"Tick","data":{"writer":%d,"i":%d}}\n' \
			"${AGGS[i % 3]}" "$w" "$i" | cqrs-append -q "$@" || return 1
	done
}

@test "6 writers, 50 events each, to the same 3 aggregates at once" {
	# the store is created by whichever writer comes first
	pids=()
	for w in 1 2 3 4 5 6; do
		writer "$w" --no-sync 2>"err.$w" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do
		wait "$p" || fail "a writer failed: $(cat err.*)"
	done
	assert_equal "$(cat err.*)" ''
	assert_dense 300
	# no lost event: every (writer, i) pair is there once
	run sqlite3 "$CQRS_STORE" "SELECT count(DISTINCT data) FROM events"
	assert_output 300
	run sqlite3 "$CQRS_STORE" "SELECT count(*) FROM events GROUP BY aggregate_id ORDER BY 1"
	assert_output '96
102
102'
	# each writer's own events keep its order within an aggregate
	run sqlite3 "$CQRS_STORE" "SELECT count(*) FROM events a JOIN events b
		ON a.aggregate_id = b.aggregate_id AND json_extract(a.data, '$.writer') = json_extract(b.data, '$.writer')
		AND json_extract(a.data, '$.i') < json_extract(b.data, '$.i') AND a.aggregate_version > b.aggregate_version"
	assert_output 0
}

@test "4 writers of 50-event batches and a chunked import at once" {
	bulk() {
		local w=$1 i
		for ((i = 1; i <= 50; i++)); do
			printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"Tick","data":{"writer":%d,"i":%d}}\n' \
				"${AGGS[i % 3]}" "$w" "$i"
		done >"in.$w"
	}
	for w in 1 2 3 4 5; do bulk "$w"; done
	pids=()
	for w in 1 2 3 4; do
		# each writer sends its 50 events in 5 invocations of 10
		(split -l 10 "in.$w" "part.$w." && for f in "part.$w."*; do cqrs-append -q "$f" || exit 1; done) 2>"err.$w" &
		pids+=($!)
	done
	cqrs-append -q --batch 7 in.5 2>err.5 &
	pids+=($!)
	for p in "${pids[@]}"; do
		wait "$p" || fail "a writer failed: $(cat err.*)"
	done
	assert_equal "$(cat err.*)" ''
	assert_dense 250
}

@test "racing with expected_version 0 on a new aggregate: exactly one wins" {
	cqrs-append </dev/null # the store exists; the race is for the aggregate
	n=8
	for ((w = 1; w <= n; w++)); do mkfifo "gate.$w"; done
	pids=()
	for ((w = 1; w <= n; w++)); do
		(
			rc=0
			cqrs-append -q <"gate.$w" 2>"err.$w" || rc=$?
			echo "$rc" >"status.$w"
		) &
		pids+=($!)
	done
	# open every gate first, then let all of them go at once
	for ((w = 1; w <= n; w++)); do exec {fd}>"gate.$w"; fds+=("$fd"); done
	for ((w = 1; w <= n; w++)); do
		printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderNoted","data":{"w":%d},"expected_version":0}\n' \
			"${AGGS[0]}" "$w" >&"${fds[w - 1]}"
	done
	for fd in "${fds[@]}"; do exec {fd}>&-; done
	for p in "${pids[@]}"; do wait "$p"; done
	run sort status.*
	assert_output "$(echo 0; for ((w = 2; w <= n; w++)); do echo 3; done)"
	for ((w = 1; w <= n; w++)); do
		if [ "$(cat "status.$w")" = 3 ]; then
			assert_equal "$(cat "err.$w")" "cqrs-append: stdin:1: version conflict on aggregate ${AGGS[0]}: expected version 0, actual 1
cqrs-append: nothing was stored"
		else
			winner=$w
		fi
	done
	run sqlite3 "$CQRS_STORE" 'SELECT aggregate_version, data FROM events'
	assert_output "1|{\"w\":$winner}"
}

@test "racing writers that each expect the version they read: no lost update" {
	# each writer reads the version, then appends expecting it, retrying on
	# a conflict: the classic optimistic loop
	cqrs-append -q < <(printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderNoted","data":{}}\n' "${AGGS[1]}")
	opt_writer() {
		local w=$1 i v status
		for ((i = 1; i <= 10; i++)); do
			while :; do
				v=$(cqrs-read --aggregate "${AGGS[1]}" --reverse --limit 1 | jq -r .aggregate_version)
				status=0
				printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"Tick","data":{"w":%d,"i":%d}}\n' \
					"${AGGS[1]}" "$w" "$i" | cqrs-append -q -e "$v" 2>/dev/null || status=$?
				[ "$status" = 0 ] && break
				[ "$status" = 3 ] || return 1
			done
		done
	}
	pids=()
	for w in 1 2 3 4; do
		opt_writer "$w" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do
		wait "$p" || fail "a writer failed with something other than a conflict"
	done
	assert_dense 41
}
