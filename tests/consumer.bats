#!/usr/bin/env bats
# Durable consumers: cqrs-read --checkpoint NAME (positions kept where the
# consumer may write, advanced only over what its reader took) and the
# example consumer share/examples/notify-shipments.

# shellcheck disable=SC2154 # bats sets stderr, status, output, lines
# shellcheck disable=SC2030,SC2031 # each test exports its own NOTIFY_STATE_DIR
bats_require_minimum_version 1.5.0
load test_helper

# The fixture store (tests/read.bats): 7 events, OrderShipped at 5 and
# OrderCancelled at 7.
load_orders() {
	cqrs-append -q "$FIXTURES/orders.envelopes"
}

POS_DIR=
pos_setup() {
	POS_DIR=$HOME/.local/state/cqrs-tools/positions
}

# The sequence a checkpoint is at.
position_of() {
	cqrs-read --checkpoint "$1" --position | jq -r .sequence
}

# n events of type $2 (default X) for fresh aggregates.
more_events() {
	local n=$1 type=${2:-X} i
	for ((i = 1; i <= n; i++)); do
		printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"%s","data":{"pad":"%0100d"}}\n' \
			"$(cat /proc/sys/kernel/random/uuid)" "$type" "$i"
	done | cqrs-append -q -b 1000
}

# The sequences in NDJSON on stdin, space-separated.
seqs() {
	jq -r .sequence | tr '\n' ' ' | sed 's/ $//'
}

# Waits (bounded, scaled by GUARD_SCALE) until checkpoint $1 is at $2.
wait_position() {
	local i limit=$((200 * GUARD_SCALE))
	for ((i = 0; i < limit; i++)); do
		[ "$(position_of "$1")" = "$2" ] && return 0
		sleep 0.05
	done
	fail "checkpoint $1 is at $(position_of "$1"), not $2, after $((limit / 20)) s"
}

@test "a first run reads every event, a second only the new ones; dir 0700, file 0600" {
	load_orders
	pos_setup
	run --separate-stderr cqrs-read --checkpoint mail
	assert_success
	assert_equal "$stderr" ''
	assert_equal "$(seqs <<<"$output")" "1 2 3 4 5 6 7"
	run --separate-stderr cqrs-read --checkpoint mail
	assert_success
	assert_output ''
	event 11111111-2222-4333-8444-555555555555 OrderNoted | cqrs-append -q
	run --separate-stderr cqrs-read --checkpoint mail
	assert_success
	assert_equal "$(seqs <<<"$output")" "8"
	assert_equal "$(stat -c %a "$POS_DIR" "$POS_DIR/mail.pos" "$POS_DIR/mail.lock" | tr '\n' ' ')" "700 600 600 "
	assert_equal "$(stat -c %a "$HOME/.local/state" "$HOME/.local/state/cqrs-tools" | tr '\n' ' ')" "700 700 "
	# the store's own directory got nothing of the consumer's
	assert_equal "$(find "$BATS_TEST_TMPDIR" -maxdepth 1 -name '*.pos' -o -maxdepth 1 -name '*.lock' | wc -l)" 0
}

@test "--position prints the position as one JSON line; a name never run is at 0" {
	load_orders
	run --separate-stderr cqrs-read --checkpoint new --position
	assert_success
	assert_output '{"checkpoint":"new","sequence":0}'
	[ ! -e "$HOME/.local/state" ] || fail "--position created the positions directory"
	cqrs-read --checkpoint c --limit 3 >/dev/null
	run --separate-stderr cqrs-read --checkpoint c --position
	assert_success
	local hash first
	hash=$(cqrs-read --from 3 --limit 1 | jq -r .hash)
	first=$(cqrs-read --limit 1 | jq -r .hash)
	assert_equal "$(jq -c 'del(.updated)' <<<"$output")" \
		"{\"checkpoint\":\"c\",\"sequence\":3,\"hash\":\"$hash\",\"store\":\"$CQRS_STORE\",\"store_id\":\"$first\"}"
	jq -e '.updated | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$")' <<<"$output" >/dev/null
}

@test "an advance is durable: the file synced, renamed into place, then its directory synced" {
	command -v strace >/dev/null || fail "strace is not installed (tests/debian-packages-check)"
	# (LeakSanitizer cannot run under ptrace: make sanitize leaves leaks to the other tests)
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
	load_orders
	pos_setup
	strace -y -f -e trace=fsync,rename,renameat,renameat2 -o advance.trace \
		cqrs-read --checkpoint mail >/dev/null
	assert_equal "$(position_of mail)" 7
	# the last three, in that order, the last on the positions directory itself
	run sh -c "grep -E '(fsync|rename)' advance.trace | tail -n 3"
	assert_success
	[[ "${lines[0]}" == *"fsync("*"<$POS_DIR/.mail.pos."*".tmp>)"* ]] || fail "not the file's fsync: $output"
	[[ "${lines[1]}" == *rename*"/.mail.pos."*".tmp\", \"$POS_DIR/mail.pos\")"* ]] || fail "not its rename: $output"
	[[ "${lines[2]}" == *"fsync("*"<$POS_DIR>)"* ]] || fail "no fsync of $POS_DIR after the rename: $output"
}

@test "XDG_STATE_HOME, CQRS_CHECKPOINT_DIR and --checkpoint-dir choose the directory, in that order of weight" {
	load_orders
	XDG_STATE_HOME=$PWD/state cqrs-read --checkpoint a --limit 1 >/dev/null
	[ -f state/cqrs-tools/positions/a.pos ]
	XDG_STATE_HOME=$PWD/state CQRS_CHECKPOINT_DIR=$PWD/env cqrs-read --checkpoint a --limit 2 >/dev/null
	[ -f env/a.pos ]
	CQRS_CHECKPOINT_DIR=$PWD/env cqrs-read --checkpoint a --checkpoint-dir "$PWD/opt" --limit 3 >/dev/null
	assert_equal "$(stat -c %a opt)" 700
	assert_equal "$(jq .sequence state/cqrs-tools/positions/a.pos env/a.pos opt/a.pos | tr '\n' ' ')" "1 2 3 "
	run --separate-stderr env -u HOME cqrs-read --checkpoint a
	assert_failure 78
	assert_equal "$stderr" "cqrs-read: no directory for positions: give --checkpoint-dir, or set CQRS_CHECKPOINT_DIR or HOME"
}

@test "filters: the position passes over the events they leave out" {
	load_orders
	run --separate-stderr cqrs-read --checkpoint ship -e OrderShipped -e OrderCancelled
	assert_success
	assert_equal "$(seqs <<<"$output")" "5 7"
	event 11111111-2222-4333-8444-555555555555 OrderNoted | cqrs-append -q
	run --separate-stderr cqrs-read --checkpoint ship -e OrderShipped -e OrderCancelled
	assert_success
	assert_output ''
	assert_equal "$(position_of ship)" 8
	# --limit and --to stop the position where the output stopped
	run --separate-stderr cqrs-read --checkpoint lim -e OrderCreated --limit 1
	assert_equal "$(seqs <<<"$output")" "1"
	assert_equal "$(position_of lim)" 1
	run --separate-stderr cqrs-read --checkpoint to --to 3
	assert_equal "$(seqs <<<"$output")" "1 2 3"
	assert_equal "$(position_of to)" 3
	run --separate-stderr cqrs-read --checkpoint to
	assert_equal "$(seqs <<<"$output")" "4 5 6 7 8"
}

@test "a reader that takes two lines and goes: the position is at the second" {
	load_orders
	# the shell's read takes a pipe one byte at a time: exactly two lines
	cqrs-read --checkpoint two | {
		read -r _
		read -r _
	}
	assert_equal "$(position_of two)" 2
	run --separate-stderr cqrs-read --checkpoint two
	assert_success
	assert_equal "$(seqs <<<"$output")" "3 4 5 6 7"
}

@test "| head -n 2 on a long catch-up: the position is what head read from the pipe, no further" {
	more_events 3000
	run --separate-stderr bash -c 'cqrs-read --checkpoint h | head -n 2 | jq -r .sequence'
	assert_success
	assert_equal "$stderr" ''
	assert_equal "$output" "$(printf '1\n2')"
	local at
	at=$(position_of h)
	# head reads a buffer, not a line: at least the two, far from all
	[ "$at" -ge 2 ] && [ "$at" -lt 1000 ] || fail "head -n 2 left the position at $at"
	run --separate-stderr cqrs-read --checkpoint h
	assert_success
	assert_equal "${#lines[@]}" $((3000 - at))
	assert_equal "$(jq -r .sequence <<<"${lines[0]}")" $((at + 1))
	assert_equal "$(position_of h)" 3000
}

@test "a write that fails (/dev/full) is 74 and does not advance the position" {
	load_orders
	run --separate-stderr cqrs-read --checkpoint full
	assert_equal "$(position_of full)" 7
	event 11111111-2222-4333-8444-555555555555 OrderNoted | cqrs-append -q
	run --separate-stderr bash -c 'cqrs-read --checkpoint full >/dev/full'
	assert_not_signalled
	assert_failure 74
	assert_equal "$stderr" "cqrs-read: write error on standard output: No space left on device"
	assert_equal "$(position_of full)" 7
	run --separate-stderr bash -c 'cqrs-read --checkpoint never >/dev/full'
	assert_failure 74
	assert_equal "$(position_of never)" 0
	# EPIPE: a reader gone before reading anything takes nothing
	run --separate-stderr bash -c 'cqrs-read --checkpoint gone | true'
	assert_success
	assert_equal "$(position_of gone)" 0
}

@test "a file as output: the position is saved once the lines are in it" {
	load_orders
	cqrs-read --checkpoint f >>out.ndjson
	cqrs-read --checkpoint f >>out.ndjson
	assert_equal "$(seqs <out.ndjson)" "1 2 3 4 5 6 7"
	assert_equal "$(position_of f)" 7
}

@test "a store the consumer may only read: positions in its own directory" {
	sqlite_only "the store file's modes: on PostgreSQL a reader is a role the server grants (pg.bats)"
	load_orders
	cqrs-read >/dev/null # leaves -wal and -shm, which a reader needs
	chmod 644 "$CQRS_STORE"*
	chmod 755 "$BATS_TEST_TMPDIR"
	mkdir -m 700 pos
	chown nobody pos
	run_as_other_user CQRS_STORE="$CQRS_STORE" CQRS_CHECKPOINT_DIR="$PWD/pos" \
		cqrs-read --checkpoint audit
	assert_success
	assert_equal "$stderr" ''
	assert_equal "$(seqs <<<"$output")" "1 2 3 4 5 6 7"
	assert_equal "$(stat -c '%U %a' pos/audit.pos)" "nobody 600"
	run_as_other_user CQRS_STORE="$CQRS_STORE" CQRS_CHECKPOINT_DIR="$PWD/pos" \
		cqrs-read --checkpoint audit
	assert_success
	assert_output ''
	# and nobody could not have written the store
	run_as_other_user CQRS_STORE="$CQRS_STORE" CQRS_CHECKPOINT_DIR="$PWD/store-side" \
		cqrs-read --checkpoint audit --checkpoint-dir "$BATS_TEST_TMPDIR/x"
	assert_failure 77
	assert_equal "$stderr" "cqrs-read: $BATS_TEST_TMPDIR/x: cannot create the positions directory: Permission denied"
}

@test "a position file or directory another user owns or could change is refused with 77" {
	load_orders
	pos_setup
	cqrs-read --checkpoint p >/dev/null
	chown nobody "$POS_DIR/p.pos"
	run --separate-stderr cqrs-read --checkpoint p
	assert_failure 77
	assert_output ''
	assert_equal "$stderr" "cqrs-read: $POS_DIR/p.pos: file owned by uid $(id -u nobody), not by this user (uid $(id -u)): refused"
	run --separate-stderr cqrs-read --checkpoint p --position
	assert_failure 77
	chown "$(id -u)" "$POS_DIR/p.pos"
	chmod 620 "$POS_DIR/p.pos"
	run --separate-stderr cqrs-read --checkpoint p
	assert_failure 77
	assert_equal "$stderr" "cqrs-read: $POS_DIR/p.pos: file writable by others (mode 0620): refused"
	chmod 600 "$POS_DIR/p.pos"
	ln -s p.pos "$POS_DIR/q.pos"
	run --separate-stderr cqrs-read --checkpoint q
	assert_failure 77
	assert_equal "$stderr" "cqrs-read: $POS_DIR/q.pos: a symbolic link: refused"
	chmod 770 "$POS_DIR"
	run --separate-stderr cqrs-read --checkpoint p
	assert_failure 77
	assert_equal "$stderr" "cqrs-read: $POS_DIR: positions directory writable by others (mode 0770): refused"
	chmod 700 "$POS_DIR"
	chown nobody "$POS_DIR"
	run --separate-stderr cqrs-read --checkpoint p
	assert_failure 77
	chown "$(id -u)" "$POS_DIR"
	chown nobody "$POS_DIR/p.lock"
	run --separate-stderr cqrs-read --checkpoint p
	assert_failure 77
	assert_regex "$stderr" "p.lock: file owned by uid"
	chown "$(id -u)" "$POS_DIR/p.lock"
	run --separate-stderr cqrs-read --checkpoint p
	assert_success
	assert_output ''
}

@test "a position file that is not one is 65, naming it" {
	load_orders
	pos_setup
	mkdir -p "$POS_DIR"
	chmod 700 "$POS_DIR"
	printf 'garbage\n' >"$POS_DIR/g.pos"
	chmod 600 "$POS_DIR/g.pos"
	run --separate-stderr cqrs-read --checkpoint g
	assert_failure 65
	assert_regex "$stderr" "^cqrs-read: $POS_DIR/g.pos:1: not a position file: "
	printf '{"checkpoint":"other","sequence":1}\n' >"$POS_DIR/g.pos"
	run --separate-stderr cqrs-read --checkpoint g
	assert_failure 65
	assert_equal "$stderr" "cqrs-read: $POS_DIR/g.pos:1: not a position file: its \"checkpoint\" is not this name"
	printf '{"checkpoint":"g","sequence":3}\n' >"$POS_DIR/g.pos"
	run --separate-stderr cqrs-read --checkpoint g
	assert_failure 65
	assert_equal "$stderr" "cqrs-read: $POS_DIR/g.pos:1: not a position file: no \"hash\" for its sequence"
}

@test "bad names and options that do not go with --checkpoint are usage errors (64)" {
	load_orders
	local name
	for name in '' a/b .hidden -dash 'sp ace' "$(printf 'x%.0s' {1..65})"; do
		run --separate-stderr cqrs-read --checkpoint "$name"
		assert_failure 64
		assert_output ''
		assert_regex "$stderr" "^cqrs-read: --checkpoint: a name "
	done
	local opt
	for opt in '--from 2' '--after 2' --reverse '--until 2026-01-17T00:00:00Z' --verify; do
		# shellcheck disable=SC2086 # an option and its value
		run --separate-stderr cqrs-read --checkpoint n $opt
		assert_failure 64
		assert_equal "$stderr" "cqrs-read: --checkpoint reads from where its consumer stopped: not with --from, --after, --reverse, --until or --verify"
	done
	for opt in --position '--set-position 1' '--checkpoint-dir d'; do
		# shellcheck disable=SC2086
		run --separate-stderr cqrs-read $opt
		assert_failure 64
		assert_equal "$stderr" "cqrs-read: --checkpoint-dir, --position and --set-position go with --checkpoint"
	done
	run --separate-stderr cqrs-read --checkpoint n --position --set-position 1
	assert_failure 64
	run --separate-stderr cqrs-read --checkpoint n --position -e OrderShipped
	assert_failure 64
	assert_equal "$stderr" "cqrs-read: --position and --set-position read no events: no filter"
	[ ! -e "$HOME/.local/state" ] || fail "a usage error created the positions directory"
	run --separate-stderr cqrs-read --checkpoint "$(printf 'x%.0s' {1..64})" --limit 1
	assert_success
	assert_equal "$(seqs <<<"$output")" 1
}

@test "two consumers of one name at once: the second is 75, 'in use'" {
	load_orders
	pos_setup
	cqrs-read --checkpoint busy >/dev/null
	run --separate-stderr flock "$POS_DIR/busy.lock" cqrs-read --checkpoint busy
	assert_failure 75
	assert_output ''
	assert_equal "$stderr" "cqrs-read: checkpoint 'busy' is in use by another consumer ($POS_DIR/busy.lock)"
	run --separate-stderr flock "$POS_DIR/busy.lock" cqrs-read --checkpoint busy --set-position 0
	assert_failure 75
	# a real second consumer, while the first follows
	cqrs-read --checkpoint live --follow >live.out &
	local pid=$!
	wait_position live 7
	run --separate-stderr cqrs-read --checkpoint live
	assert_failure 75
	assert_regex "$stderr" "checkpoint 'live' is in use by another consumer"
	# another name is another consumer
	run --separate-stderr cqrs-read --checkpoint other
	assert_success
	kill -TERM "$pid"
	wait "$pid"
}

@test "--follow saves the position as each batch is taken" {
	load_orders
	cqrs-read --checkpoint tail --follow -e OrderNoted >tail.out &
	local pid=$!
	wait_position tail 7
	event 11111111-2222-4333-8444-555555555555 OrderNoted | cqrs-append -q
	wait_position tail 8
	more_events 5 Other
	wait_position tail 13
	event 11111111-2222-4333-8444-555555555555 OrderNoted | cqrs-append -q
	wait_position tail 14
	kill -TERM "$pid"
	local rc=0
	wait "$pid" || rc=$?
	assert_equal "$rc" 0
	assert_equal "$(seqs <tail.out)" "8 14"
	# --follow --to ends once the store passes --to, whatever the filters
	run --separate-stderr timeout $((10 * GUARD_SCALE)) cqrs-read --checkpoint upto --follow -e OrderCreated --to 5
	assert_success
	assert_equal "$(seqs <<<"$output")" "1 4"
	assert_equal "$(position_of upto)" 4
	run --separate-stderr cqrs-read --checkpoint tail
	assert_output ''
}

@test "--follow into a pipe: a reader that takes one line and goes leaves the position at it" {
	load_orders
	mkfifo pipe
	cqrs-read --checkpoint one --follow >pipe &
	local pid=$!
	# not fd 3: bats reports there
	exec 5<pipe
	read -r line <&5
	assert_equal "$(jq .sequence <<<"$line")" 1
	exec 5<&-
	local rc=0
	wait "$pid" || rc=$?
	assert_equal "$rc" 0
	assert_equal "$(position_of one)" 1
}

@test "a position from another store is 78; a store rolled back behind it is 6" {
	load_orders
	cqrs-read --checkpoint s >/dev/null
	more_events 3 >/dev/null
	CQRS_STORE=$PWD/other.db more_events 2
	run --separate-stderr cqrs-read --checkpoint s --store other.db
	assert_failure 78
	assert_output ''
	assert_regex "$stderr" "^cqrs-read: other.db: checkpoint 's' \(.*/s.pos\) belongs to another store \($CQRS_STORE\): its first event differs; use another name, or --set-position to start over here$"
	# a copy of the store (replayed: same hashes) is the same store
	cqrs-read --to 7 | cqrs-append -q --store copy.db
	run --separate-stderr cqrs-read --checkpoint s --store copy.db
	assert_success
	assert_output ''
	cqrs-read --checkpoint s --store "$CQRS_STORE" >/dev/null
	assert_equal "$(position_of s)" 10
	run --separate-stderr cqrs-read --checkpoint s --store copy.db
	assert_failure 6
	assert_regex "$stderr" "the store is behind checkpoint 's'"
}

@test "--set-position moves a consumer back or forward; past the end is 64" {
	load_orders
	cqrs-read --checkpoint m >/dev/null
	cqrs-read --checkpoint m --set-position 5
	assert_equal "$(position_of m)" 5
	run --separate-stderr cqrs-read --checkpoint m
	assert_equal "$(seqs <<<"$output")" "6 7"
	cqrs-read --checkpoint m --set-position 0
	run --separate-stderr cqrs-read --checkpoint m
	assert_equal "$(seqs <<<"$output")" "1 2 3 4 5 6 7"
	run --separate-stderr cqrs-read --checkpoint m --set-position 8
	assert_failure 64
	assert_equal "$stderr" "cqrs-read: --set-position: $CQRS_STORE has no event 8: it ends at 7"
	assert_equal "$(position_of m)" 7
	# and starts a position over on another store
	CQRS_STORE=$PWD/other.db more_events 2
	cqrs-read --checkpoint m --store other.db --set-position 1
	run --separate-stderr cqrs-read --checkpoint m --store other.db
	assert_success
	assert_equal "$(seqs <<<"$output")" "2"
}

# --- share/examples/notify-shipments ---------------------------------------

NOTIFY=${CQRS_TOP_SRCDIR:?}/share/examples/notify-shipments

# A notification service that remembers keys: sent.log gets each key once
# however often it is called (calls.log), as a real one must.  FAIL_AT=N:
# the Nth call fails before sending; CRASH_AT=N: the Nth call sends, then
# kills the consumer (its parent) before it records the key.
fake_service() {
	cat >notify <<'EOF'
#!/bin/sh
key=$1 type=$2 order=$3
event=$(cat)
[ "$(printf '%s' "$event" | jq -r .event_id)" = "$key" ] || exit 9
echo "$key" >>calls.log
n=$(wc -l <calls.log)
[ "$n" = "${FAIL_AT:-0}" ] && exit 1
grep -q "^$key " sent.log 2>/dev/null || echo "$key $type $order" >>sent.log
[ "$n" = "${CRASH_AT:-0}" ] && kill -9 "$PPID"
exit 0
EOF
	chmod +x notify
}

# The keys of the store's shipments and cancellations, in order.
expected_sent() {
	cqrs-read -e OrderShipped -e OrderCancelled | jq -r '[.event_id, .event_type, .aggregate_id] | join(" ")'
}

@test "notify-shipments: every shipment and cancellation once, across a failure and a kill -9" {
	load_orders
	for i in 1 2 3; do
		event "$(cat /proc/sys/kernel/random/uuid)" OrderShipped
		event "$(cat /proc/sys/kernel/random/uuid)" OrderNoted
		event "$(cat /proc/sys/kernel/random/uuid)" OrderCancelled
	done | cqrs-append -q
	fake_service
	export NOTIFY_STATE_DIR=$PWD/notify-state
	# the 3rd call sends and then the consumer dies before recording it
	CRASH_AT=3 run --separate-stderr "$NOTIFY" ./notify
	assert_failure 137
	# the 5th call fails: the run stops, to be tried again
	FAIL_AT=5 run --separate-stderr "$NOTIFY" ./notify
	assert_failure 75
	assert_regex "$stderr" "^notify-shipments: ./notify failed \(status 1\) for Order(Shipped|Cancelled) "
	run --separate-stderr "$NOTIFY" ./notify
	assert_success
	assert_equal "$stderr" ''
	assert_equal "$(cat sent.log)" "$(expected_sent)"
	# the killed call came again with its key, and sent nothing twice
	assert_equal "$(sort calls.log | uniq -d | wc -l)" 2
	# new events later: only they go out
	event "$(cat /proc/sys/kernel/random/uuid)" OrderShipped | cqrs-append -q
	run --separate-stderr "$NOTIFY" ./notify
	assert_success
	assert_equal "$(cat sent.log)" "$(expected_sent)"
	assert_equal "$(wc -l <sent.log)" 9
	assert_equal "$(stat -c %a "$NOTIFY_STATE_DIR" "$NOTIFY_STATE_DIR/notify-shipments.pos" | tr '\n' ' ')" "700 600 "
	assert_equal "$(wc -c <"$NOTIFY_STATE_DIR/spool.ndjson")" 0
}

@test "notify-shipments: a spool line cut short by a crash is dropped and read again" {
	load_orders
	fake_service
	export NOTIFY_STATE_DIR=$PWD/notify-state
	mkdir -m 700 "$NOTIFY_STATE_DIR"
	# cqrs-read died writing event 5: the position is before it
	cqrs-read --checkpoint notify-shipments --checkpoint-dir "$NOTIFY_STATE_DIR" --to 4 >/dev/null
	cqrs-read --from 5 --limit 1 | head -c 100 >"$NOTIFY_STATE_DIR/spool.ndjson"
	run --separate-stderr "$NOTIFY" ./notify
	assert_success
	assert_equal "$(cat sent.log)" "$(expected_sent)"
	assert_equal "$(wc -l <calls.log)" 2
}

@test "notify-shipments: one run at a time (75), and a usage" {
	load_orders
	fake_service
	export NOTIFY_STATE_DIR=$PWD/notify-state
	mkdir -m 700 "$NOTIFY_STATE_DIR"
	run --separate-stderr flock "$NOTIFY_STATE_DIR/lock" "$NOTIFY" ./notify
	assert_failure 75
	assert_equal "$stderr" "notify-shipments: another run holds $NOTIFY_STATE_DIR/lock"
	[ ! -e sent.log ]
	run --separate-stderr "$NOTIFY"
	assert_failure 64
	assert_equal "$stderr" "usage: notify-shipments PROGRAM [ARG...]"
}
