#!/usr/bin/env bats
# The event store's hardening (issue 9): permissions, side files kept by
# readers, --verify on a damaged store, the witness against silent
# rollback, the head's hash before appending, stores planted by another
# user, and the OS user in new events' metadata.

# shellcheck disable=SC2154 # bats sets stderr, status, output, lines
bats_require_minimum_version 1.5.0
load test_helper

A=7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f
P=5a1d2c3e-4f50-4b9c-9c7e-2f574d6a9e3b

ev() {
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"%s","data":{}%s}\n' \
		"${1:-$A}" "${2:-OrderNoted}" "${3:-}"
}

# --- a second user -------------------------------------------------------------
# Root runs the tools as nobody, from copies in a directory under /tmp that
# nobody can reach wherever the checkout is (/root is 0700).

SHARED=
teardown() {
	if [ -n "$SHARED" ]; then
		chmod -R u+rwX "$SHARED" 2>/dev/null || true
		rm -rf "$SHARED"
	fi
}

# Makes $SHARED (0755, root's) with the tools in it, or fails saying why.
second_user() {
	[ "$(id -u)" = 0 ] || fail "these tests run tools as a second user: they need root (setpriv)"
	command -v setpriv >/dev/null || fail "setpriv (util-linux) is not installed"
	id nobody >/dev/null 2>&1 || fail "there is no user nobody"
	SHARED=$(mktemp -d /tmp/cqrs-hardening.XXXXXX)
	chmod 755 "$SHARED"
	local t
	for t in cqrs-append cqrs-read cqrs-command cqrs-saga; do
		cp "$(command -v "$t")" "$SHARED/" || fail "cannot copy $t"
	done
	mkdir -m 755 "$SHARED/s"
}

# Runs tool $1 (a copy in $SHARED) as nobody with the rest as arguments.
as_nobody() {
	local tool=$1
	shift
	(cd "$SHARED" && setpriv --reuid=nobody --regid=nogroup --clear-groups \
		env -i PATH=/usr/bin:/bin HOME=/nonexistent LC_ALL=C TZ=UTC CQRS_BUSY_TIMEOUT=2000 \
		"./$tool" "$@")
}

# --- 1. permissions --------------------------------------------------------------

@test "an unreadable store is 77 with 'permission' from every tool" {
	second_user
	ev | cqrs-append -q -s "$SHARED/s/events.db"
	chmod 600 "$SHARED/s/events.db"*
	run --separate-stderr as_nobody cqrs-read -s s/events.db
	assert_failure 77
	assert_equal "$stderr" 'cqrs-read: s/events.db: permission denied: this user cannot read the store'
	run --separate-stderr as_nobody cqrs-saga status -s s/events.db
	assert_failure 77
	assert_equal "$stderr" 'cqrs-saga: s/events.db: permission denied: this user cannot read the store'
	run --separate-stderr as_nobody cqrs-append -s s/events.db < <(ev)
	assert_failure 77
	assert_equal "$stderr" 'cqrs-append: s/events.db: permission denied: this user cannot read the store'
	run --separate-stderr as_nobody cqrs-command -s s/events.db \
		<<<'{"command_id":"c-1","type":"RegisterProduct","product_id":"'$P'","sku":"SKU-1","name":"Widget","quantity":10}'
	assert_failure 77
	assert_equal "$stderr" 'cqrs-command: s/events.db: permission denied: this user cannot read the store'
	assert_equal "$(sqlite3 "$SHARED/s/events.db" 'SELECT count(*) FROM events')" 1
}

@test "a store that is readable but not writable is 77 for the writing tools" {
	second_user
	ev | cqrs-append -q -s "$SHARED/s/events.db"
	chmod 644 "$SHARED/s/events.db"*
	run --separate-stderr as_nobody cqrs-append -s s/events.db < <(ev)
	assert_failure 77
	assert_equal "$stderr" 'cqrs-append: s/events.db: permission denied: this user cannot write the store'
	run --separate-stderr as_nobody cqrs-read -s s/events.db
	assert_success
	assert_equal "${#lines[@]}" 1
}

@test "a directory that is not writable is named, not 'attempt to write a readonly database'" {
	second_user
	chown nobody "$SHARED/s"
	as_nobody cqrs-append -q -s s/events.db < <(ev)
	rm "$SHARED/s/events.db-wal" "$SHARED/s/events.db-shm" "$SHARED/s/events.db.witness"
	chmod 555 "$SHARED/s"
	msg="permission denied: the store's directory is not writable, and SQLite keeps the store's -wal and -shm files there"
	run --separate-stderr as_nobody cqrs-append -s s/events.db < <(ev)
	assert_failure 77
	assert_equal "$stderr" "cqrs-append: s: $msg"
	run --separate-stderr as_nobody cqrs-read -s s/events.db
	assert_failure 77
	assert_equal "$stderr" "cqrs-read: s: $msg"
}

# --- 2. readers keep the side files ----------------------------------------------------

@test "cqrs-read leaves events.db-wal and -shm in place, and a read-only user can read after it" {
	second_user
	ev | cqrs-append -q -s "$SHARED/s/events.db"
	chmod 644 "$SHARED/s/events.db"*
	run --separate-stderr cqrs-read -s "$SHARED/s/events.db"
	assert_success
	[ -e "$SHARED/s/events.db-wal" ] || fail "cqrs-read deleted events.db-wal"
	[ -e "$SHARED/s/events.db-shm" ] || fail "cqrs-read deleted events.db-shm"
	run --separate-stderr cqrs-read --verify -s "$SHARED/s/events.db"
	assert_success
	[ -e "$SHARED/s/events.db-wal" ] || fail "cqrs-read --verify deleted events.db-wal"
	run --separate-stderr as_nobody cqrs-read -s s/events.db
	assert_success
	assert_equal "${#lines[@]}" 1
}

# --- 4. --verify on a damaged store ----------------------------------------------------

@test "--verify fails on a main file cut mid-page and names the last event it checked" {
	for i in $(seq 1 3000); do
		printf '{"aggregate_id":"7d0c2a9e-5b7f-4e0c-8f7e-%012d","aggregate_type":"Order","event_type":"X","data":{"pad":"%0200d"}}\n' "$i" "$i"
	done >many.ndjson
	# the last commits stay in the WAL: a tool folds it in on exit only
	# past 256 KiB, as a bulk import leaves it
	head -n 2900 many.ndjson | cqrs-append -q -b 100
	tail -n 100 many.ndjson | cqrs-append -q
	cqrs-read >before.ndjson
	[ -s "$CQRS_STORE-wal" ] || fail "the WAL holds no commits: the damage would not be mid-history"
	size=$(stat -c %s "$CQRS_STORE")
	truncate -s $((size / 2 + 1000)) "$CQRS_STORE"
	run --separate-stderr cqrs-read
	assert_failure 65
	run --separate-stderr cqrs-read --verify
	assert_failure 65
	assert_output ''
	assert_regex "${stderr_lines[0]}" '^cqrs-read: sequence [0-9]+: '
	n=$(sed -n 's/^cqrs-read: verified \([0-9]*\) events up to there, head .*/\1/p' <<<"${stderr_lines[1]}")
	[ -n "$n" ] && [ "$n" -lt 3000 ] || fail "no count of the events checked: ${stderr_lines[1]}"
	assert_equal "${stderr_lines[1]}" "cqrs-read: verified $n events up to there, head $(sed -n "${n}p" before.ndjson | jq -r .hash)"
}

@test "--verify checks the correlation columns against the hashed metadata" {
	ev "$A" OrderNoted ',"metadata":{"correlation_id":"order-1"}' | cqrs-append -q
	ev "$P" OrderNoted ',"metadata":{"correlation_id":"order-2"}' | cqrs-append -q
	key=$(sqlite3 "$CQRS_STORE" 'SELECT correlation_key FROM events WHERE sequence = 1')
	sqlite3 "$CQRS_STORE" "DROP TRIGGER events_no_update; UPDATE events SET correlation_id = 'order-2' WHERE sequence = 1"
	run --separate-stderr cqrs-read --verify
	assert_failure 65
	assert_equal "$stderr" "cqrs-read: sequence 1: column correlation_id ('order-2') does not match the hashed metadata's ('order-1'): the row was edited"
	sqlite3 "$CQRS_STORE" "UPDATE events SET correlation_id = 'order-1', correlation_key = 7 WHERE sequence = 1"
	run --separate-stderr cqrs-read --verify
	assert_failure 65
	assert_equal "$stderr" "cqrs-read: sequence 1: column correlation_key does not match the hashed metadata's correlation_id: the row was edited"
	sqlite3 "$CQRS_STORE" "UPDATE events SET correlation_key = $key WHERE sequence = 1;
		UPDATE events SET correlation_id = NULL, correlation_key = NULL WHERE sequence = 2"
	run --separate-stderr cqrs-read --verify
	assert_failure 65
	assert_equal "$stderr" "cqrs-read: sequence 2: column correlation_id (NULL) does not match the hashed metadata's ('order-2'): the row was edited
cqrs-read: verified 1 events up to there, head $(cqrs-read -n 1 | jq -r .hash)"
	# and --correlation would have missed it: the columns are what it searches
	run --separate-stderr cqrs-read -c order-2
	assert_success
	assert_output ''
}

# --- 5. the witness ----------------------------------------------------------------------

# A copy of the store as it is now, WAL included, for a restore later.
snapshot() {
	sqlite3 "$CQRS_STORE" ".backup $1"
}

# The store becomes the copy $1: its WAL, which held the later commits, goes.
restore() {
	cp "$1" "$CQRS_STORE"
	rm -f "$CQRS_STORE-wal" "$CQRS_STORE-shm"
}

@test "every commit moves STORE.witness, owner-only, to the head" {
	ev | cqrs-append -q
	ev | cqrs-append -q
	assert_equal "$(stat -c %a "$CQRS_STORE.witness")" 600
	head=$(cqrs-read -n 1 -r | jq -r .hash)
	assert_equal "$(cat "$CQRS_STORE.witness")" "{\"sequence\":2,\"hash\":\"$head\"}"
	# a --no-sync commit leaves it behind (a power cut may take such commits back)
	ev | cqrs-append -q --no-sync
	assert_equal "$(jq .sequence "$CQRS_STORE.witness")" 2
	ev | cqrs-append -q
	assert_equal "$(jq .sequence "$CQRS_STORE.witness")" 4
}

@test "a store rolled back behind its witness is 6 for the writing tools, and nothing is written" {
	ev | cqrs-append -q
	snapshot old.db
	cqrs-append -q < <(ev; ev)
	cqrs-read --verify >/dev/null
	# the later commits were in the WAL: without it the store is the older one
	restore old.db
	witness=$(cat "$CQRS_STORE.witness")
	hash=$(jq -r .hash <<<"$witness")
	count=$(stored_count)
	run --separate-stderr cqrs-append < <(ev)
	assert_failure 6
	assert_output ''
	assert_equal "$stderr" "cqrs-append: $CQRS_STORE: the store is behind its witness $CQRS_STORE.witness: it ends at sequence $count, before sequence 3 (hash $hash); it was rolled back or damaged; nothing was written (after a deliberate restore: cqrs-append --reset-witness)"
	run --separate-stderr cqrs-command <<<'{"command_id":"c-1","type":"RegisterProduct","product_id":"'$P'","sku":"SKU-1","name":"Widget","quantity":10}'
	assert_failure 6
	run --separate-stderr cqrs-read --verify
	assert_failure 6
	assert_output ''
	assert_equal "$(stored_count)" "$count"
	assert_equal "$(cat "$CQRS_STORE.witness")" "$witness"
	# readers that only read still read
	run --separate-stderr cqrs-read
	assert_success
}

@test "a store rewritten past the witness' event is 6 too" {
	ev | cqrs-append -q
	snapshot old.db
	ev | cqrs-append -q
	cp "$CQRS_STORE.witness" saw
	restore old.db
	cqrs-append --reset-witness >/dev/null
	cqrs-append -q < <(ev "$P"; ev "$P")
	cp saw "$CQRS_STORE.witness"
	run --separate-stderr cqrs-append < <(ev)
	assert_failure 6
	assert_equal "$stderr" "cqrs-append: $CQRS_STORE: the store is behind its witness $CQRS_STORE.witness: event 2 is not the one recorded (hash $(jq -r .hash saw)); it was rolled back and written again, or replaced; nothing was written (after a deliberate restore: cqrs-append --reset-witness)"
}

@test "cqrs-append --reset-witness accepts a deliberate restore" {
	ev | cqrs-append -q
	snapshot old.db
	ev | cqrs-append -q
	restore old.db
	run --separate-stderr cqrs-append --reset-witness
	assert_success
	head=$(cqrs-read -n 1 -r | jq -r .hash)
	assert_output "witness reset to sequence 1, head $head"
	assert_equal "$(cat "$CQRS_STORE.witness")" "{\"sequence\":1,\"hash\":\"$head\"}"
	run --separate-stderr cqrs-append -q < <(ev)
	assert_success
	run --separate-stderr cqrs-append --reset-witness in.ndjson
	assert_failure 64
	assert_equal "$stderr" 'cqrs-append: --reset-witness takes only --store'
}

@test "--verify --expect SEQ:HASH checks a recorded head" {
	ev | cqrs-append -q
	ev | cqrs-append -q
	h1=$(cqrs-read -n 1 | jq -r .hash)
	h2=$(cqrs-read -n 1 -r | jq -r .hash)
	run --separate-stderr cqrs-read --verify --expect "2:$h2"
	assert_success
	assert_output "verified 2 events, head $h2"
	run --separate-stderr cqrs-read --verify --expect "1:$h1"
	assert_success
	run --separate-stderr cqrs-read --verify --expect "3:$h2"
	assert_failure 6
	assert_equal "$stderr" "cqrs-read: $CQRS_STORE: the store is behind --expect: it ends at sequence 2, before sequence 3 (hash $h2); it was rolled back or damaged"
	run --separate-stderr cqrs-read --verify --expect "1:$h2"
	assert_failure 6
	assert_equal "$stderr" "cqrs-read: $CQRS_STORE: the store is behind --expect: event 1 is not the one recorded (hash $h2); it was rolled back and written again, or replaced"
	run --separate-stderr cqrs-read --verify --expect "2:xyz"
	assert_failure 64
	assert_equal "$stderr" "cqrs-read: --expect needs SEQ:HASH (a sequence and 64 hex digits): '2:xyz'"
	# the empty store's head names no event to expect
	local zero
	zero=0:$(printf '0%.0s' $(seq 64))
	run --separate-stderr cqrs-read --verify --expect "$zero"
	assert_failure 64
	assert_equal "$stderr" "cqrs-read: --expect needs SEQ:HASH (a sequence and 64 hex digits): '$zero'"
	run --separate-stderr cqrs-read --expect "2:$h2"
	assert_failure 64
	assert_equal "$stderr" 'cqrs-read: --expect goes with --verify'
}

@test "a witness that is not one is 65" {
	ev | cqrs-append -q
	echo garbage >"$CQRS_STORE.witness"
	run --separate-stderr cqrs-append < <(ev)
	assert_failure 65
	assert_equal "$stderr" "cqrs-append: $CQRS_STORE.witness: not a witness file (expected {\"sequence\":N,\"hash\":\"...\"})"
}

@test "a witness a power cut left as zero bytes counts as none, and the next commit writes it" {
	ev | cqrs-append -q
	head -c 94 /dev/zero >"$CQRS_STORE.witness"
	run --separate-stderr cqrs-append -q < <(ev)
	assert_success
	head=$(cqrs-read -n 1 -r | jq -r .hash)
	assert_equal "$(cat "$CQRS_STORE.witness")" "{\"sequence\":2,\"hash\":\"$head\"}"
}

@test "the witness is flushed when it is new and on a reset, not at every commit" {
	command -v strace >/dev/null || fail "strace is not installed (tests/debian-packages-check)"
	# (strace -y names each descriptor's file; LeakSanitizer cannot run
	# under ptrace, so make sanitize leaves leaks to the other tests here)
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
	local t=(strace -y -f -e trace=fdatasync,fsync,sync_file_range)
	"${t[@]}" -o first.trace cqrs-append -q < <(ev)
	"${t[@]}" -o next.trace cqrs-append -q < <(ev)
	"${t[@]}" -o reset.trace cqrs-append --reset-witness >/dev/null
	run grep -c 'fdatasync([0-9]*<[^>]*witness>' first.trace
	assert_output 1
	run grep -c 'sync.*witness>' next.trace
	assert_output 1
	run grep -c 'sync_file_range([0-9]*<[^>]*witness>' next.trace
	assert_output 1
	run grep -c 'fdatasync([0-9]*<[^>]*witness>' reset.trace
	assert_output 1
}

# --- 6. the head's hash before appending -------------------------------------------------

@test "cqrs-append does not build on a head event whose bytes were changed" {
	cqrs-append -q < <(ev; ev)
	sqlite3 "$CQRS_STORE" "DROP TRIGGER events_no_update; UPDATE events SET data = '{\"x\":1}' WHERE sequence = 2"
	run --separate-stderr cqrs-append < <(ev)
	assert_failure 65
	assert_equal "$stderr" "cqrs-append: $CQRS_STORE: event 2 does not match its hash: the store was changed outside the tools; nothing was written (see cqrs-read --verify)
cqrs-append: nothing was stored"
	run --separate-stderr cqrs-command <<<'{"command_id":"c-1","type":"RegisterProduct","product_id":"'$P'","sku":"SKU-1","name":"Widget","quantity":10}'
	assert_failure 65
	assert_equal "$(stored_count)" 2
}

# --- 7. a store planted by another user ---------------------------------------------------

@test "a store planted by nobody in a world-writable directory is refused, and its trigger never runs" {
	second_user
	chown nobody "$SHARED/s"
	as_nobody cqrs-append -q -s s/events.db < <(ev)
	chown root "$SHARED/s"
	chmod 777 "$SHARED/s"
	chmod 666 "$SHARED/s/events.db"*
	run --separate-stderr cqrs-append -s "$SHARED/s/events.db" < <(ev)
	assert_failure 77
	assert_equal "$stderr" "cqrs-append: $SHARED/s: directory writable by others without the sticky bit (mode 0777): someone else could replace the store"
	run --separate-stderr cqrs-command -s "$SHARED/s/events.db" <<<'{"command_id":"c-1","type":"RegisterProduct","product_id":"'$P'","sku":"SKU-1","name":"Widget","quantity":10}'
	assert_failure 77
	# in a sticky directory, a store of nobody's (with a trigger of nobody's) is still not root's
	chmod 1777 "$SHARED/s"
	chmod 600 "$SHARED/s/events.db"*
	sqlite3 "$SHARED/s/events.db" "CREATE TABLE planted (n INTEGER);
		CREATE TRIGGER planted AFTER INSERT ON events BEGIN INSERT INTO planted VALUES (1); END"
	chown nobody "$SHARED/s/events.db"*
	run --separate-stderr cqrs-append -s "$SHARED/s/events.db" < <(ev)
	assert_failure 77
	assert_equal "$stderr" "cqrs-append: $SHARED/s/events.db: file owned by nobody, not by root: a store belongs to the user who writes it"
	run --separate-stderr cqrs-command -s "$SHARED/s/events.db" <<<'{"command_id":"c-1","type":"RegisterProduct","product_id":"'$P'","sku":"SKU-1","name":"Widget","quantity":10}'
	assert_failure 77
	assert_equal "$(sqlite3 "$SHARED/s/events.db" 'SELECT count(*) FROM planted')" 0
	assert_equal "$(sqlite3 "$SHARED/s/events.db" 'SELECT count(*) FROM events')" 1
	# a reader may read another user's store where it is granted
	chmod 644 "$SHARED/s/events.db"*
	run --separate-stderr cqrs-read -s "$SHARED/s/events.db"
	assert_success
}

@test "a -wal, -shm or witness file someone else owns or could change is refused" {
	ev | cqrs-append -q
	chown nobody "$CQRS_STORE-wal"
	run --separate-stderr cqrs-append < <(ev)
	assert_failure 77
	assert_regex "$stderr" "^cqrs-append: $CQRS_STORE-wal: file owned by nobody, not by $(id -un): a store belongs to the user who writes it"
	chown "$(id -u)" "$CQRS_STORE-wal"
	chmod 662 "$CQRS_STORE-shm"
	run --separate-stderr cqrs-append < <(ev)
	assert_failure 77
	assert_regex "$stderr" "^cqrs-append: $CQRS_STORE-shm: writable by others \(mode 0662\): someone else could have changed it"
	run --separate-stderr cqrs-read
	assert_failure 77
	chmod 600 "$CQRS_STORE-shm"
	chmod 606 "$CQRS_STORE.witness"
	run --separate-stderr cqrs-append < <(ev)
	assert_failure 77
	assert_equal "$stderr" "cqrs-append: $CQRS_STORE.witness: writable by others (mode 0606): someone else could have changed it"
	chmod 600 "$CQRS_STORE.witness"
	run --separate-stderr cqrs-append -q < <(ev)
	assert_success
	assert_equal "$(stored_count)" 2
}

# --- 8. the OS user in the metadata ----------------------------------------------------------

@test "new events record the OS user apart from the user_id they claim" {
	second_user
	chown nobody "$SHARED/s"
	run --separate-stderr as_nobody cqrs-append -s s/events.db \
		< <(ev "$A" OrderNoted ',"metadata":{"user_id":"alice","os_user":"alice"}')
	assert_success
	assert_equal "$(jq -c .metadata <<<"$output")" '{"user_id":"alice","os_user":"nobody"}'
	run --separate-stderr as_nobody cqrs-command -s s/events.db \
		<<<'{"command_id":"c-1","type":"RegisterProduct","product_id":"'$P'","sku":"SKU-1","name":"Widget","quantity":10}'
	assert_success
	run --separate-stderr cqrs-read -s "$SHARED/s/events.db" -t Inventory
	assert_success
	assert_equal "$(jq -r .metadata.os_user <<<"$output" | sort -u)" nobody
	# history copied with its sequences and hashes keeps its metadata
	cqrs-read -s "$SHARED/s/events.db" >history.ndjson
	run --separate-stderr cqrs-append -s copy.db history.ndjson
	assert_success
	assert_output "$(cat history.ndjson)"
}
