#!/usr/bin/env bats
# cqrs-read: filters, bad options, the hash chain, copies, --follow, pipes.

# shellcheck disable=SC2154 # bats sets stderr, status, output, lines
bats_require_minimum_version 1.5.0
load test_helper

A=7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f
B=0b9c3c7e-2f57-4d6a-9e3b-5a1d2c3e4f50
P=5a1d2c3e-4f50-4b9c-9c7e-2f574d6a9e3b

# The fixture store: 7 events of orders A and B and product P.
#   seq 1 A OrderCreated c-A 2026-01-16T10:00:00     seq 5 A OrderShipped c-A 2026-01-17T14:00:00.123456
#   seq 2 P StockReplenished 2026-01-16T10:00:01.5   seq 6 P InventoryReserved c-B 2026-01-18T00:00:00
#   seq 3 A PaymentProcessed c-A 2026-01-16T11:00:00 seq 7 B OrderCancelled c-B 2026-01-18T13:30:00
#   seq 4 B OrderCreated c-B 2026-01-17T09:00:00
# The fixture's history, replayed with its sequences and hashes: new
# events would record the OS user in their metadata (and so in the hash).
load_orders() {
	cqrs-append -q "$FIXTURES/orders.envelopes"
}

# The fixture's envelopes with these sequence numbers, in this order.
envelopes() {
	local s
	for s in "$@"; do
		sed -n "${s}p" "$FIXTURES/orders.envelopes"
	done
}

# cqrs-read with these options prints exactly the envelopes of sequences $2.
reads() {
	local opts=$1
	# shellcheck disable=SC2086 # options are split on purpose
	run --separate-stderr cqrs-read $opts
	assert_success
	assert_equal "$stderr" ''
	# shellcheck disable=SC2086 # one sequence number per word
	assert_output "$(envelopes $2)"
}

# cqrs-read with these options is a usage error with this message.
usage_error() {
	local msg=$1
	shift
	run --separate-stderr cqrs-read "$@"
	assert_not_signalled
	assert_failure 64
	assert_output ''
	assert_equal "$stderr" "cqrs-read: $msg"
}

# Waits (bounded) until file $1 has at least $2 lines.
wait_lines() {
	local i
	for ((i = 0; i < 200 * GUARD_SCALE; i++)); do
		[ "$(wc -l <"$1")" -ge "$2" ] && return 0
		sleep 0.05
	done
	fail "$1 has fewer than $2 lines after 10 s"
}

ev() {
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderNoted","data":{}}\n' "$1"
}

# --- filters --------------------------------------------------------------

@test "all events in sequence order" {
	load_orders
	reads '' '1 2 3 4 5 6 7'
}

@test "--aggregate / -a" {
	load_orders
	reads "--aggregate $A" '1 3 5'
	reads "-a $B" '4 7'
	reads "-a ${P^^}" '2 6'
	reads "-a 11111111-1111-4111-8111-111111111111" ''
}

@test "--aggregate-type / -t" {
	load_orders
	reads '--aggregate-type Inventory' '2 6'
	reads '-t Order' '1 3 4 5 7'
	reads '-t Payment' ''
}

@test "--event-type / -e" {
	load_orders
	reads '--event-type OrderCreated' '1 4'
	reads '-e OrderCancelled' '7'
	reads '-e orderCreated' ''
}

@test "a repeated filter matches any of its values" {
	load_orders
	reads '-e OrderCreated -e OrderCancelled' '1 4 7'
	reads '-e OrderCancelled -e OrderCreated -e Nothing' '1 4 7'
	reads '-t Inventory -t Payment' '2 6'
	reads '-c c-A -c c-B' '1 3 4 5 6 7'
	reads "-a $A -a $B" '1 3 4 5 7'
	# different filters still combine with AND
	reads "-e OrderCreated -e StockReplenished -c c-B" '4'
	reads "-e OrderCreated -e OrderShipped -a $A -a $P --reverse" '5 1'
}

@test "several types, or one aggregate, stream in order with memory bounded by the batch, not by the matches" {
	# 30,000 events of 1.5 KB: two types in three, of two aggregate types
	awk -v a="$A" -v p="$P" 'BEGIN {
		pad = sprintf("%1500s", ""); gsub(/ /, "x", pad)
		for (i = 1; i <= 30000; i++) {
			if (i % 3 == 1) { id = a; at = "Order"; t = "OrderNoted" }
			else if (i % 3 == 2) { id = p; at = "Inventory"; t = "StockCounted" }
			else { id = a; at = "Order"; t = "OrderIgnored" }
			printf "{\"aggregate_id\":\"%s\",\"aggregate_type\":\"%s\",\"event_type\":\"%s\",\"data\":{\"pad\":\"%s\"}}\n", id, at, t, pad
		}
	}' | cqrs-append -q --no-sync
	# AddressSanitizer's shadow memory and quarantine come on top (make
	# sanitize); the 30 MB of matches would show either way on SQLite.  On
	# PostgreSQL its quarantine keeps every page of rows freed (74 MB),
	# and under valgrind its own memory would be measured: there the order
	# is checked, not the memory.
	limit=20000
	if ldd "$(command -v cqrs-read)" | grep -q libasan; then
		limit=40000
		on_sqlite || limit=
	fi
	[ -z "${CQRS_UNDER_VALGRIND:-}" ] || limit=
	# the sequences each reads: $1 % 3 is 1 for OrderNoted, 2 for
	# StockCounted (aggregate P), 0 for OrderIgnored
	local -A want=(["-e OrderNoted -e StockCounted"]='$1 % 3 != 0'
		["-t Order -t Inventory"]=1 ["-a $A"]='$1 % 3 != 2'
		["-a $A -r"]='$1 % 3 != 2')
	for opts in "${!want[@]}"; do
		# shellcheck disable=SC2086 # options are split on purpose
		/usr/bin/time -o rss -f '%M' cqrs-read $opts | jq -r .sequence >seqs
		rss=$(cat rss)
		if [[ $opts == *-r ]]; then
			seq 30000 | awk "${want[$opts]}" | tac >expected
		else
			seq 30000 | awk "${want[$opts]}" >expected
		fi
		cmp expected seqs || fail "$opts: not every match, in order"
		[ -z "$limit" ] || [ "$rss" -lt "$limit" ] || fail "$opts: max RSS $rss KiB"
	done
}

@test "--correlation / -c" {
	load_orders
	reads '--correlation c-A' '1 3 5'
	reads '-c c-B' '4 6 7'
	reads '-c c' ''
}

@test "--from and --after" {
	load_orders
	reads '--from 3' '3 4 5 6 7'
	reads '--after 3' '4 5 6 7'
	reads '--from 0' '1 2 3 4 5 6 7'
	reads '--from 1' '1 2 3 4 5 6 7'
	reads '--after 0' '1 2 3 4 5 6 7'
	reads '--after 7' ''
	reads '--from 99' ''
}

@test "--to" {
	load_orders
	reads '--to 2' '1 2'
	reads '--from 3 --to 4' '3 4'
	reads '--to 99' '1 2 3 4 5 6 7'
}

@test "--until a time, in any offset" {
	load_orders
	reads '--until 2026-01-17T00:00:00Z' '1 2 3'
	reads '--until 2026-01-16T11:00:00Z' '1 2 3'
	reads '--until 2026-01-16T10:59:59.999999Z' '1 2'
	reads '--until 2026-01-17T15:00:00.123456+01:00' '1 2 3 4 5'
	reads '--until 2026-01-17T15:00:00.123455+01:00' '1 2 3 4'
	reads '--until 2025-12-31T23:59:59Z' ''
}

@test "--limit / -n and --reverse / -r" {
	load_orders
	reads '--limit 2' '1 2'
	reads '-n 1' '1'
	reads '--limit 99' '1 2 3 4 5 6 7'
	reads '--reverse' '7 6 5 4 3 2 1'
	reads '-r -n 2' '7 6'
	reads '-r --to 3' '3 2 1'
}

@test "filters combine" {
	load_orders
	reads "-a $A --from 2 --to 4" '3'
	reads '-t Order -e OrderCreated -c c-B' '4'
	reads '-t Order --after 1 --until 2026-01-17T12:00:00Z --limit 2' '3 4'
	reads '-c c-B --reverse --limit 2' '7 6'
	reads "-a $B -e OrderCreated --after 4" ''
}

@test "an empty store prints nothing" {
	cqrs-append </dev/null
	reads '' ''
	run --separate-stderr cqrs-read --verify
	assert_success
	assert_output 'verified 0 events'
}

# --- usage errors ------------------------------------------------------------

@test "--from and --after together are 64" {
	usage_error '--from and --after go alone' --from 1 --after 2
	usage_error '--from and --after go alone' --after 2 --from 1
}

@test "bad option values are 64" {
	usage_error "--from needs a non-negative integer: '-1'" --from -1
	usage_error "--after needs a non-negative integer: 'x'" --after x
	usage_error "--to needs a non-negative integer: '1.5'" --to 1.5
	usage_error '--to needs a sequence of at least 1' --to 0
	usage_error '--limit needs a positive count' --limit 0
	usage_error "--limit needs a non-negative integer: ''" --limit ''
	usage_error "--until: not an RFC 3339 time: 'yesterday'" --until yesterday
	usage_error "--until: not an RFC 3339 time: '2026-02-29T00:00:00Z'" --until 2026-02-29T00:00:00Z
	usage_error "--aggregate: not a UUID: 'nope'" --aggregate nope
	usage_error "--aggregate-type: not a type name: '1x'" --aggregate-type 1x
	usage_error "--event-type: not a type name: 'a b'" --event-type 'a b'
	usage_error '--follow and --reverse go alone' --follow --reverse
	usage_error '--follow and --until go alone' --follow --until 2026-01-01T00:00:00Z
	[ ! -e "$CQRS_STORE" ]
}

@test "a bad option or an operand is 64 with the usage" {
	usage="usage: cqrs-read [-fr] [-a id] [-c correlation-id] [-e event-type] [-n limit]
                 [-s store] [-t aggregate-type] [--from seq | --after seq]
                 [--to seq] [--until time] [--verify [--expect seq:hash]]
                 [--upcast [--upcasters file]] [--decrypt]
       cqrs-read --verify [-s store] [--expect seq:hash] [--signing-key file]
                 [--expect-signed file --public-key file]
       cqrs-read --checkpoint name [--checkpoint-dir dir] [-f] [-a id]
                 [-c correlation-id] [-e event-type] [-n limit] [-s store]
                 [-t aggregate-type] [--to seq]
       cqrs-read --checkpoint name [--checkpoint-dir dir] [-s store]
                 --position | --set-position seq"
	usage_error "unrecognized option '--bogus'
$usage" --bogus
	usage_error "unexpected operand 'extra'
$usage" extra
}

@test "--help is exit 0 on stdout, --version names the package" {
	run --separate-stderr cqrs-read --help
	assert_success
	assert_equal "$stderr" ''
	assert_line --index 0 'usage: cqrs-read [-fr] [-a id] [-c correlation-id] [-e event-type] [-n limit]'
	for opt in --aggregate --aggregate-type --event-type --correlation --from --after --to \
		--until --limit --reverse --follow --verify --store --help --version; do
		assert_output --partial -- "$opt "
	done
	run --separate-stderr cqrs-read -V
	assert_success
	assert_output --regexp '^cqrs-read \(cqrs-tools\) [0-9]+\.[0-9]+'
}

@test "a missing store is 66 and is not created" {
	sqlite_only "the store is a file: its path in the message, no file created (pg.bats: a missing schema is 66)"
	run --separate-stderr cqrs-read
	assert_failure 66
	assert_output ''
	assert_equal "$stderr" "cqrs-read: $CQRS_STORE: no such store"
	[ ! -e "$CQRS_STORE" ]
	run --separate-stderr cqrs-read --store nowhere/events.db --verify
	assert_failure 66
	assert_equal "$stderr" "cqrs-read: nowhere/events.db: no such store"
	[ ! -e nowhere ]
	run --separate-stderr cqrs-read --follow -s missing.db
	assert_failure 66
	[ ! -e missing.db ]
}

@test "an empty file or a directory is not a store" {
	: >empty.db
	run --separate-stderr cqrs-read -s empty.db
	assert_failure 66
	assert_equal "$stderr" 'cqrs-read: empty.db: store is empty or needs an upgrade'
	mkdir dir.db
	run --separate-stderr cqrs-read -s dir.db
	assert_failure 66
	assert_equal "$stderr" 'cqrs-read: dir.db: is a directory, not a store'
}

# --- pipes ---------------------------------------------------------------------

@test "cqrs-read | head -1 ends quietly with status 0" {
	for _ in $(seq 5000); do ev "$A"; done | cqrs-append -q
	run bash -c 'set -o pipefail; cqrs-read 2>err | head -1'
	assert_success
	assert_output --partial '{"sequence":1,'
	assert_equal "$(cat err)" ''
	run bash -c 'cqrs-read --reverse 2>err | head -c 10 >/dev/null; echo "${PIPESTATUS[0]}"'
	assert_output 0
	assert_equal "$(cat err)" ''
}

# --- the hash chain --------------------------------------------------------------

@test "--verify passes on a good store" {
	load_orders
	run --separate-stderr cqrs-read --verify
	assert_success
	assert_equal "$stderr" ''
	assert_output 'verified 7 events, head defdd9b2a93b8260ddb5034023326f3b23953f540ef04be33d5232d0b0f7fece'
}

@test "the chain is SHA-256 over the documented text, recomputable with sha256sum" {
	load_orders
	prev=0000000000000000000000000000000000000000000000000000000000000000
	while IFS= read -r line; do
		# data and metadata as stored bytes, not re-serialised
		data=$(sed 's/.*,"data":\(.*\),"metadata":.*/\1/' <<<"$line")
		meta=$(sed 's/.*,"metadata":\(.*\),"timestamp":.*/\1/' <<<"$line")
		want=$(
			{
				echo "$prev"
				jq -r '.event_id, .aggregate_id, .aggregate_type, .aggregate_version,
					.event_type, .event_version, .timestamp' <<<"$line"
				echo "$data"
				echo "$meta"
			} | sha256sum | cut -c1-64
		)
		assert_equal "$(jq -r .hash <<<"$line")" "$want"
		prev=$want
	done < <(cqrs-read)
	assert_equal "$prev" defdd9b2a93b8260ddb5034023326f3b23953f540ef04be33d5232d0b0f7fece
}

@test "--verify finds an edited event" {
	load_orders
	store_edit "UPDATE events SET data = '{\"payment_id\":\"x\",\"amount\":5.98,\"currency\":\"USD\"}' WHERE sequence = 3"
	run --separate-stderr cqrs-read --verify
	assert_failure 65
	assert_output ''
	assert_equal "$stderr" 'cqrs-read: sequence 3: hash chain broken: an event was edited, removed or reordered
cqrs-read: verified 2 events up to there, head ad4da55b8adf7e437fddbf51b5cbcb6c1c847cf3e58783b29dc6e9c08368a03f'
}

@test "--verify finds an edited timestamp, type or version" {
	sqlite_only "restores the store between edits by copying its file"
	load_orders
	sqlite3 "$CQRS_STORE" 'DROP TRIGGER events_no_update'
	cp "$CQRS_STORE" pristine.db
	for change in "timestamp = '2026-01-17T09:00:01.000000Z'" "event_type = 'OrderConfirmed'" \
		"event_version = 2" "metadata = '{}'"; do
		cp pristine.db "$CQRS_STORE"
		rm -f "$CQRS_STORE-wal" "$CQRS_STORE-shm"
		sqlite3 "$CQRS_STORE" "UPDATE events SET $change WHERE sequence = 4"
		run --separate-stderr cqrs-read --verify
		assert_failure 65
		assert_equal "$stderr" 'cqrs-read: sequence 4: hash chain broken: an event was edited, removed or reordered
cqrs-read: verified 3 events up to there, head 253a282c5aa3df0deb4792b3e76a2756a0721e4878b4b09bef898c882f400bfe'
	done
}

@test "--verify finds a deleted event" {
	load_orders
	store_edit 'DELETE FROM events WHERE sequence = 4'
	run --separate-stderr cqrs-read --verify
	assert_failure 65
	assert_equal "$stderr" 'cqrs-read: sequence 5: hash chain broken: an event was edited, removed or reordered
cqrs-read: verified 3 events up to there, head 253a282c5aa3df0deb4792b3e76a2756a0721e4878b4b09bef898c882f400bfe'
	store_edit 'DELETE FROM events WHERE sequence = 1'
	run --separate-stderr cqrs-read --verify
	assert_failure 65
	assert_equal "$stderr" 'cqrs-read: sequence 2: hash chain broken: an event was edited, removed or reordered'
}

@test "a copy made by cqrs-read | cqrs-append is identical" {
	load_orders
	# and a few events with generated ids and timestamps
	for _ in 1 2 3; do ev "$B"; done | cqrs-append -q
	cqrs-read >original.ndjson
	run --separate-stderr bash -c 'set -o pipefail; cqrs-read | cqrs-append --store copy.db'
	assert_success
	assert_output "$(cat original.ndjson)"
	run --separate-stderr cqrs-read --store copy.db
	assert_output "$(cat original.ndjson)"
	assert_equal "$(cqrs-read --store copy.db --verify)" "$(cqrs-read --verify)"
	# copying again is a no-op: every event is already there
	run --separate-stderr cqrs-append --store copy.db original.ndjson
	assert_success
	assert_output "$(cat original.ndjson)"
	assert_equal "$(sqlite3 copy.db 'SELECT count(*) FROM events')" 10
}

# --- --follow ----------------------------------------------------------------

@test "--follow sees events another process appends" {
	cqrs-append -q < <(ev "$A")
	timeout $((10 * GUARD_SCALE)) cqrs-read --follow --limit 3 >out 2>err 3>&- &
	pid=$!
	wait_lines out 1
	cqrs-append -q < <(ev "$B")
	cqrs-append -q < <(ev "$P")
	status=0
	wait "$pid" || status=$?
	assert_equal "$status" 0
	assert_equal "$(cat err)" ''
	assert_equal "$(cat out)" "$(cqrs-read)"
	assert_equal "$(jq -r .aggregate_id out | tr '\n' ' ')" "$A $B $P "
}

@test "--follow with filters and --after prints only what matches" {
	load_orders
	timeout $((10 * GUARD_SCALE)) cqrs-read --follow --aggregate "$B" --after 4 --limit 2 >out 2>err 3>&- &
	pid=$!
	wait_lines out 1
	cqrs-append -q < <(ev "$A"; ev "$B")
	status=0
	wait "$pid" || status=$?
	assert_equal "$status" 0
	assert_equal "$(jq -r '"\(.sequence) \(.aggregate_version)"' out | tr '\n' ' ')" '7 2 9 3 '
}

@test "--follow stops at --to" {
	cqrs-append -q < <(ev "$A")
	timeout $((10 * GUARD_SCALE)) cqrs-read --follow --to 2 >out 2>err 3>&- &
	pid=$!
	wait_lines out 1
	cqrs-append -q < <(ev "$A"; ev "$A")
	status=0
	wait "$pid" || status=$?
	assert_equal "$status" 0
	assert_equal "$(jq -r .sequence out | tr '\n' ' ')" '1 2 '
}

@test "--follow ends cleanly on SIGTERM" {
	cqrs-append -q < <(ev "$A")
	# timeout passes the TERM on, and returns the follower's status
	timeout $((10 * GUARD_SCALE)) cqrs-read --follow >out 2>err 3>&- &
	pid=$!
	wait_lines out 1
	kill -TERM "$pid"
	status=0
	wait "$pid" || status=$?
	assert_equal "$status" 0
	assert_equal "$(cat err)" ''
	assert_equal "$(wc -l <out)" 1
}

@test "--follow ends when its reader goes away" {
	cqrs-append -q < <(ev "$A")
	run --separate-stderr timeout $((10 * GUARD_SCALE)) bash -c 'set -o pipefail; cqrs-read --follow | head -1'
	assert_success
	assert_equal "$stderr" ''
	assert_output --partial '{"sequence":1,'
	# and when it goes away while the follower waits for new events
	run --separate-stderr timeout $((10 * GUARD_SCALE)) bash -c '
		set -o pipefail
		cqrs-read --follow | { read -r first; cqrs-append -q <<<"$1"; read -r second; echo "$second"; }' \
		_ "$(ev "$B")"
	assert_success
	assert_output --partial "{\"sequence\":2,"
	assert_equal "$stderr" ''
}
