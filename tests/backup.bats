#!/usr/bin/env bats
# cqrs-backup: an online backup of a live store, as a SQLite file or NDJSON,
# incremental from a recorded head, and a restore that checks the copy
# before the store is put in place.

# shellcheck disable=SC2154 # bats sets stderr, status, output, lines
bats_require_minimum_version 1.5.0
load saga_helper

HEAD_RE='^[0-9]+:[0-9a-f]{64}$'

# A store with events, snapshots, processed commands, counters and a saga in
# flight: the saga's payment step failed once and waits for its retry.
# (On PostgreSQL, which keeps no saga tables yet, the order without its saga.)
busy_store() {
	saga_setup
	export PAYMENT_GATEWAY_AUTHORIZE_MODE=fail:1
	order 1
	if on_sqlite; then
		cqrs-saga run >/dev/null
		assert_equal "$(saga_row 1)" "RUNNING|1|1|"
	fi
	unset PAYMENT_GATEWAY_AUTHORIZE_MODE
	for i in 1 2 3; do
		printf '{"command_id":"stock-%s","type":"ReplenishStock","product_id":"%s","quantity":1}\n' "$i" "$P"
	done | cqrs-command --snapshot-every 2 -q
}

# The head cqrs-read --verify reports for store $1, as SEQ:HASH.
verified_head() {
	local out
	out=$(cqrs-read --verify -s "$1") || return 1
	[[ $out =~ ^verified\ ([0-9]+)\ events,\ head\ ([0-9a-f]{64})$ ]] || return 1
	echo "${BASH_REMATCH[1]}:${BASH_REMATCH[2]}"
}

# Every table of store $1 but the events, as sqlite3 dumps its rows.
state_of() {
	local t
	for t in $(sqlite3 "$1" "SELECT name FROM sqlite_schema WHERE type = 'table' AND name <> 'events' AND name NOT LIKE 'sqlite_%' ORDER BY name"); do
		echo "== $t"
		sqlite3 "$1" "SELECT * FROM \"$t\" ORDER BY 1, 2"
	done
}

# The store as cqrs-backup's messages name it: a PostgreSQL store by its
# server, database, user and schema (never a password).
store_name() {
	if on_sqlite; then
		echo "$CQRS_STORE"
	else
		echo "postgresql:host=$PGHOST port=5432 dbname=$PGDATABASE user=$PGUSER (schema t$BATS_TEST_NUMBER)"
	fi
}

# The files of the test's directory but the given ones, for "nothing left".
files_here() {
	find . -maxdepth 1 -mindepth 1 ! -name home ! -name pg ! -name sl ! -name 'separate-stderr-*' "$@" -printf '%f\n' | sort
}

@test "a file backup is one SQLite file, 0600, that verifies, prints its head and restores byte for byte" {
	sqlite_only "the SQLite-file form copies the SQLite file: refused with 78 on PostgreSQL (pg.bats)"
	busy_store
	run --separate-stderr cqrs-backup copy.db
	assert_success
	assert_equal "$stderr" ''
	assert_output --regexp "$HEAD_RE"
	assert_equal "$output" "$(verified_head "$CQRS_STORE")"
	head=$output
	assert_equal "$(stat -c %a copy.db)" 600
	# one file: no side files, no temporary file left beside it
	assert_equal "$(files_here | grep -E '^\.?copy')" copy.db
	assert_equal "$(verified_head copy.db)" "$head"
	run --separate-stderr cqrs-backup --restore -s restored.db copy.db
	assert_success
	assert_output "$head"
	assert_equal "$(cqrs-read -s restored.db)" "$(cqrs-read)"
	assert_equal "$(state_of restored.db)" "$(state_of "$CQRS_STORE")"
	assert_equal "$(stat -c %a restored.db)" 600
	# the restore reset the new store's witness to its head
	assert_equal "$(cat restored.db.witness)" "{\"sequence\":${head%%:*},\"hash\":\"${head#*:}\"}"
}

@test "an NDJSON backup carries the events as cqrs-read prints them and every table, between a header and a trailer" {
	sqlite_only "every table of the SQLite store, the sagas' included (pg.bats: the tables both backends keep, copied both ways)"
	busy_store
	run --separate-stderr cqrs-backup -f ndjson
	assert_success
	assert_equal "$stderr" ''
	printf '%s\n' "$output" >full.ndjson
	head=$(verified_head "$CQRS_STORE")
	n=$(cqrs-read | wc -l)
	assert_equal "$(head -n1 full.ndjson | jq -c '[.cqrs_backup, .schema, .head, has("since")]')" "[1,5,\"$head\",false]"
	assert_equal "$(sed -n "2,$((n + 1))p" full.ndjson)" "$(cqrs-read)"
	assert_equal "$(tail -n1 full.ndjson | jq -c .)" \
		"{\"cqrs_backup_end\":1,\"events\":$n,\"rows\":$(($(wc -l <full.ndjson) - n - 2)),\"head\":\"$head\"}"
	# every line is JSON, and the tables are all there
	jq -c . full.ndjson >/dev/null
	assert_equal "$(jq -r 'select(.table) | .table' full.ndjson | sort -u | tr '\n' ' ')" \
		"aggregate_subjects checkpoints counters personal_fields processed_messages saga_breakers saga_instances snapshots subject_keys "
	run --separate-stderr cqrs-backup --restore -s restored.db full.ndjson
	assert_success
	assert_output "$head"
	assert_equal "$(cqrs-read -s restored.db)" "$(cqrs-read)"
	assert_equal "$(state_of restored.db)" "$(state_of "$CQRS_STORE")"
	assert_equal "$(verified_head restored.db)" "$head"
	# a backup of the restored store is the same backup
	cqrs-backup -f ndjson -s restored.db >again.ndjson
	assert_equal "$(sed 1d again.ndjson)" "$(sed 1d full.ndjson)"
	# and from standard input, to a file
	cqrs-backup --restore -s restored2.db <full.ndjson
	assert_equal "$(cqrs-read -s restored2.db)" "$(cqrs-read)"
	run --separate-stderr cqrs-backup -f ndjson out.ndjson
	assert_success
	assert_output "$head"
	assert_equal "$(stat -c %a out.ndjson)" 600
	assert_equal "$(sed 1d out.ndjson)" "$(sed 1d full.ndjson)"
}

@test "after a restore a retried command_id replays its result, and a saga in flight goes on" {
	sqlite_only "a saga in flight: sagas run on the SQLite store alone today"
	busy_store
	cmd='{"command_id":"stock-2","type":"ReplenishStock","product_id":"'$P'","quantity":1}'
	first=$(cqrs-command <<<"$cmd")
	for format in sqlite ndjson; do
		if [ $format = sqlite ]; then
			cqrs-backup copy.db >/dev/null
			cqrs-backup --restore -s "r-$format.db" copy.db >/dev/null
		else
			cqrs-backup -f ndjson | cqrs-backup --restore -s "r-$format.db" >/dev/null
		fi
		before=$(cqrs-read -s "r-$format.db" | wc -l)
		run --separate-stderr env CQRS_STORE="r-$format.db" cqrs-command <<<"$cmd"
		assert_success
		assert_output "$first"
		assert_equal "$(cqrs-read -s "r-$format.db" | wc -l)" "$before"
		(
			export CQRS_STORE=$BATS_TEST_TMPDIR/r-$format.db
			at +10
			cqrs-saga run >/dev/null
			assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
		)
	done
	# the source's own saga is still where it was
	assert_equal "$(saga_row 1)" "RUNNING|1|1|"
}

@test "incremental backups from a recorded head restore, in order, onto the store they continue" {
	sqlite_only "sagas in the store and its rows as sqlite3 shows them (pg.bats: incremental backups of a PostgreSQL store)"
	busy_store
	cqrs-backup -f ndjson >b0.ndjson
	h0=$(tail -n1 b0.ndjson | jq -r .head)
	order 2
	cqrs-backup -f ndjson --since "$h0" >b1.ndjson
	h1=$(tail -n1 b1.ndjson | jq -r .head)
	assert_equal "$(head -n1 b1.ndjson | jq -r .since)" "$h0"
	# only the events after the head
	assert_equal "$(jq -r 'select(.sequence) | .sequence' b1.ndjson | head -n1)" $((${h0%%:*} + 1))
	order 3
	cqrs-saga run >/dev/null
	cqrs-backup -f ndjson --since "$h1" >b2.ndjson
	cqrs-backup --restore -s r.db b0.ndjson >/dev/null
	# not in order: b2 does not continue b0
	run --separate-stderr cqrs-backup --restore -s r.db b2.ndjson
	assert_failure 6
	assert_equal "$stderr" "cqrs-backup: r.db: the store is behind the incremental backup's since: it ends at sequence ${h0%%:*}, before sequence ${h1%%:*} (hash ${h1#*:}); it was rolled back or damaged"
	run --separate-stderr cqrs-backup --restore -s r.db b1.ndjson
	assert_success
	assert_output "$h1"
	# applied twice: the store went on
	run --separate-stderr cqrs-backup --restore -s r.db b1.ndjson
	assert_failure 3
	assert_equal "$stderr" "cqrs-backup: r.db: the store went on to event ${h1%%:*} after the incremental backup's since (${h0%%:*}); nothing was restored"
	cqrs-backup --restore -s r.db b2.ndjson >/dev/null
	assert_equal "$(cqrs-read -s r.db)" "$(cqrs-read)"
	assert_equal "$(state_of r.db)" "$(state_of "$CQRS_STORE")"
	assert_equal "$(verified_head r.db)" "$(verified_head "$CQRS_STORE")"
	# an incremental backup needs its store
	run --separate-stderr cqrs-backup --restore -s none.db b1.ndjson
	assert_failure 66
	assert_equal "$stderr" "cqrs-backup: none.db: no such store to apply an incremental backup to"
}

@test "--since a head the store does not hold is refused" {
	cqrs-append "$FIXTURES/docs-store.ndjson" >/dev/null
	h3=$(cqrs-read --to 3 | tail -n1 | jq -r '"\(.sequence):\(.hash)"')
	run --separate-stderr cqrs-backup -f ndjson --since "$h3"
	assert_success
	assert_equal "$(jq -r 'select(.sequence) | .sequence' <<<"$output" | head -n1)" 4
	other=3:$(printf '%064d' 7)
	run --separate-stderr cqrs-backup -f ndjson --since "$other"
	assert_failure 6
	assert_output ''
	assert_equal "$stderr" "cqrs-backup: $(store_name): the store is behind --since: event 3 is not the one recorded (hash $(printf '%064d' 7)); it was rolled back and written again, or replaced"
	run --separate-stderr cqrs-backup -f ndjson --since "99:${h3#*:}"
	assert_failure 6
	run --separate-stderr cqrs-backup -f ndjson --since 3:abc
	assert_failure 64
	assert_equal "$stderr" "cqrs-backup: --since needs SEQ:HASH (a sequence and 64 hex digits): '3:abc'"
	run --separate-stderr cqrs-backup --since "$h3" copy.db
	assert_failure 64
	assert_equal "$stderr" "cqrs-backup: --since goes with -f ndjson"
}

@test "a truncated NDJSON backup is refused at every cut, and leaves no store behind" {
	cqrs-append "$FIXTURES/docs-store.ndjson" >/dev/null
	printf '{"command_id":"c-1","type":"ReplenishStock","product_id":"3c9a7b1e-4d2f-4e8a-b6c5-0f1e2d3c4b5a","quantity":1}\n' |
		cqrs-command -q
	cqrs-backup -f ndjson >full.ndjson
	size=$(stat -c %s full.ndjson)
	[ "$size" -gt 4000 ] || fail "a small backup of $size bytes"
	before=$(files_here)
	cuts=0
	for ((cut = 0; cut < size - 1; cut += 7)); do
		head -c "$cut" full.ndjson >cut.ndjson
		run --separate-stderr cqrs-backup --restore -s r.db cut.ndjson
		[ "$status" -eq 65 ] || fail "cut at byte $cut: exit $status: $stderr"
		[ ! -e r.db ] || fail "cut at byte $cut: a store was left behind"
		cuts=$((cuts + 1))
	done
	[ "$cuts" -gt 500 ]
	rm cut.ndjson
	assert_equal "$(files_here)" "$before"
	# the messages say where
	: >empty.ndjson
	run --separate-stderr cqrs-backup --restore -s r.db <empty.ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-backup: stdin: empty: not a cqrs backup"
	head -n 5 full.ndjson >cut.ndjson
	run --separate-stderr cqrs-backup --restore -s r.db <cut.ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-backup: stdin: ends before its trailer: the backup is truncated"
	sed 3d full.ndjson >cut.ndjson
	run --separate-stderr cqrs-backup --restore -s r.db <cut.ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-backup: stdin:3: event 3 where event 2 belongs: events are missing or out of order"
	# the whole backup still restores
	cqrs-backup --restore -s r.db full.ndjson >/dev/null
	assert_equal "$(cqrs-read -s r.db)" "$(cqrs-read)"
}

@test "an edited backup is refused: an event, a table that names events the backup lacks, a tampered file" {
	sqlite_only "edits a SQLite-file backup with sqlite3, and the line numbers of the SQLite store's tables"
	cqrs-append "$FIXTURES/docs-store.ndjson" >/dev/null
	printf '{"command_id":"c-1","type":"ReplenishStock","product_id":"3c9a7b1e-4d2f-4e8a-b6c5-0f1e2d3c4b5a","quantity":1}\n' |
		cqrs-command -q
	cqrs-backup -f ndjson >full.ndjson
	sed '3s/"quantity":10/"quantity":1000/' full.ndjson >edited.ndjson
	run cmp -s full.ndjson edited.ndjson
	assert_failure 1
	run --separate-stderr cqrs-backup --restore -s r.db edited.ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-backup: edited.ndjson:3: field 'hash' does not match the event replayed at sequence 2: the input was edited (remove 'hash' to store it as new)"
	# a processed command that names an event after the backup's head
	sed 's/\\"last\\":12/\\"last\\":13/' full.ndjson >edited.ndjson
	run cmp -s full.ndjson edited.ndjson
	assert_failure 1
	run --separate-stderr cqrs-backup --restore -s r.db edited.ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-backup: edited.ndjson: processed command 'c-1' names event 13, after its last event (head 12)"
	# a row of a table the store does not have
	sed '$i {"table":"planted","row":{"x":1}}' full.ndjson >edited.ndjson
	run --separate-stderr cqrs-backup --restore -s r.db edited.ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-backup: edited.ndjson:21: not a table of the store: '\"planted\"'"
	[ ! -e r.db ]
	# a SQLite backup edited behind the triggers' back
	cqrs-backup copy.db >/dev/null
	sqlite3 copy.db "DROP TRIGGER events_no_update; UPDATE events SET data = '{\"quantity\":1000}' WHERE sequence = 2"
	run --separate-stderr cqrs-backup --restore -s r.db copy.db
	assert_failure 65
	assert_equal "$stderr" "cqrs-backup: copy.db: sequence 2: hash chain broken: an event was edited, removed or reordered"
	assert_equal "$(files_here | grep -E '^\.?r\.db')" ''
	# not a backup at all
	echo '{"hello":1}' >not.ndjson
	run --separate-stderr cqrs-backup --restore -s r.db not.ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-backup: not.ndjson:1: not a cqrs backup (it starts with a cqrs_backup header)"
	run --separate-stderr cqrs-backup --restore -s r.db missing.ndjson
	assert_failure 66
	assert_equal "$stderr" "cqrs-backup: missing.ndjson: No such file or directory"
}

@test "a restore never replaces a store, nor adopts a stale write-ahead log" {
	sqlite_only "the store's file and its -wal (pg.bats: a restore into a PostgreSQL store with events is 73)"
	cqrs-append "$FIXTURES/docs-store.ndjson" >/dev/null
	cqrs-backup copy.db >/dev/null
	cqrs-backup -f ndjson >full.ndjson
	before=$(sha256sum "$CQRS_STORE")
	for b in copy.db full.ndjson; do
		run --separate-stderr cqrs-backup --restore -s "$CQRS_STORE" "$b"
		assert_failure 73
		assert_equal "$stderr" "cqrs-backup: $CQRS_STORE: a store exists there; a restore never replaces one"
	done
	assert_equal "$(sha256sum "$CQRS_STORE")" "$before"
	touch lost.db-wal
	run --separate-stderr cqrs-backup --restore -s lost.db copy.db
	assert_failure 73
	assert_equal "$stderr" "cqrs-backup: lost.db-wal: left from an earlier store; SQLite would apply it to the restored one: move it away first"
	[ ! -e lost.db ]
}

@test "a restore over a lost store's place resets the witness it left, so the tools write again" {
	sqlite_only "a PostgreSQL store has no witness file"
	cqrs-append "$FIXTURES/docs-store.ndjson" >/dev/null
	head -n 8 "$FIXTURES/docs-store.ndjson" >early.ndjson
	cqrs-append -s early.db early.ndjson >/dev/null
	cqrs-backup -s early.db early-copy.db >/dev/null
	# the store is lost; its witness, at event 11, stays
	rm "$CQRS_STORE" "$CQRS_STORE"-wal "$CQRS_STORE"-shm
	run --separate-stderr cqrs-backup --restore early-copy.db
	assert_success
	h8=$output
	assert_equal "${h8%%:*}" 8
	assert_equal "$(cat "$CQRS_STORE.witness")" "{\"sequence\":8,\"hash\":\"${h8#*:}\"}"
	run --separate-stderr cqrs-append <<<"$(event 0b9c3c7e-2f57-4d6a-9e3b-5a1d2c3e4f50)"
	assert_success
}

@test "a backup file is never replaced unless asked, and never made where others may write" {
	sqlite_only "the SQLite-file form (refused with 78 on PostgreSQL, pg.bats)"
	cqrs-append "$FIXTURES/docs-store.ndjson" >/dev/null
	echo old >copy.db
	run --separate-stderr cqrs-backup copy.db
	assert_failure 73
	assert_equal "$stderr" "cqrs-backup: copy.db: exists; not replaced (--force replaces it)"
	assert_equal "$(cat copy.db)" old
	run --separate-stderr cqrs-backup --force copy.db
	assert_success
	assert_equal "$(verified_head copy.db)" "$output"
	mkdir -m 777 shared
	run --separate-stderr cqrs-backup shared/copy.db
	assert_failure 77
	assert_equal "$stderr" "cqrs-backup: shared: writable by others and not sticky: refused"
	run --separate-stderr cqrs-backup --restore -s shared/r.db copy.db
	assert_failure 77
	assert_equal "$(ls -A shared)" ''
	run --separate-stderr cqrs-backup nodir/copy.db
	assert_failure 73
	assert_equal "$stderr" "cqrs-backup: nodir: No such file or directory"
	# a backup someone else could have changed is not adopted as a store
	cp copy.db planted.db
	chmod 666 planted.db
	run --separate-stderr cqrs-backup --restore -s r.db planted.db
	assert_failure 77
	[ ! -e r.db ]
}

@test "with the owner's key a backup carries its head signed; a restore with --public-key checks it, on another host too" {
	sqlite_only "sagas in the store and the SQLite-file form (pg.bats: signed backups of a PostgreSQL store)"
	busy_store
	cqrs-keygen owner.key >/dev/null
	cqrs-keygen other.key >/dev/null
	head=$(verified_head "$CQRS_STORE")
	# NDJSON: the signed head in the trailer, at the backup's end
	cqrs-backup -f ndjson --signing-key owner.key >signed.ndjson
	assert_equal "$(tail -n1 signed.ndjson | jq -r '"\(.signed_head.sequence):\(.signed_head.hash)"')" "$head"
	assert_equal "$(tail -n1 signed.ndjson | jq -r .signed_head.key_id)" "$(jq -r .key_id owner.key.pub)"
	run --separate-stderr cqrs-backup --restore --public-key owner.key.pub -s r1.db signed.ndjson
	assert_success
	assert_output "$head"
	# a file: FILE.head beside it, owner-only, which cqrs-read checks with
	# the public key alone; CQRS_SIGNING_KEY is the default key
	CQRS_SIGNING_KEY=owner.key cqrs-backup copy.db >/dev/null
	assert_equal "$(stat -c %a copy.db.head)" 600
	run --separate-stderr cqrs-read -s copy.db --verify --expect-signed copy.db.head --public-key owner.key.pub
	assert_success
	run --separate-stderr cqrs-backup --restore --public-key owner.key.pub -s r2.db copy.db
	assert_success
	assert_equal "$(cqrs-read -s r2.db)" "$(cqrs-read)"
	# another key, an edited head, no signed head: 65, 65, 66; nothing restored
	run --separate-stderr cqrs-backup --restore --public-key other.key.pub -s r3.db copy.db
	assert_failure 65
	assert_equal "$stderr" "cqrs-backup: signed with key $(jq -r .key_id owner.key.pub), and the public key given is key $(jq -r .key_id other.key.pub)"
	sed -E '$s/("signed_head":\{.*"sequence":)[0-9]+/\1'"$((${head%%:*} - 1))"'/' signed.ndjson >edited.ndjson
	run --separate-stderr cqrs-backup --restore --public-key owner.key.pub -s r3.db edited.ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-backup: the signature does not verify: the head was changed or not signed by this key"
	cqrs-backup -f ndjson >unsigned.ndjson
	run --separate-stderr cqrs-backup --restore --public-key owner.key.pub -s r3.db unsigned.ndjson
	assert_failure 66
	assert_equal "$stderr" "cqrs-backup: unsigned.ndjson: the backup carries no signed head (made without --signing-key); nothing was restored"
	rm copy.db.head
	run --separate-stderr cqrs-backup --restore --public-key owner.key.pub -s r3.db copy.db
	assert_failure 66
	[ ! -e r3.db ]
	# a head signed for another store does not vouch for this one
	printf '{"aggregate_type":"T","aggregate_id":"%s","event_type":"Noted","data":{}}\n' "$(cat /proc/sys/kernel/random/uuid)" | cqrs-append -q -s elsewhere.db
	cqrs-backup -s elsewhere.db --signing-key owner.key elsewhere-copy.db >/dev/null
	cp elsewhere-copy.db.head copy.db.head
	run --separate-stderr cqrs-backup --restore --public-key owner.key.pub -s r3.db copy.db
	assert_failure 65
	[ ! -e r3.db ]
	# an incremental backup is signed at its own end
	order 2
	cqrs-backup -f ndjson --signing-key owner.key --since "$head" >inc.ndjson
	run --separate-stderr cqrs-backup --restore --public-key owner.key.pub -s r1.db inc.ndjson
	assert_success
	assert_equal "$output" "$(verified_head "$CQRS_STORE")"
}

@test "a store whose chain is broken is not backed up (65), in either form" {
	busy_store
	store_edit "UPDATE events SET metadata = '{}' WHERE sequence = 2"
	run --separate-stderr cqrs-backup -f ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-backup: sequence 2: hash chain broken: the store is damaged (cqrs-read --verify); no backup was made"
	run --separate-stderr cqrs-backup -f ndjson out.ndjson
	assert_failure 65
	[ ! -e out.ndjson ]
	# (the SQLite-file form is SQLite's own: 78 on PostgreSQL)
	run --separate-stderr cqrs-backup out.db
	if on_sqlite; then assert_failure 65; else assert_failure 78; fi
	[ ! -e out.db ]
}

@test "usage errors" {
	run --separate-stderr cqrs-backup
	assert_failure 64
	assert_equal "${stderr%%$'\n'*}" "cqrs-backup: a SQLite backup needs a file (-f ndjson writes to standard output)"
	run --separate-stderr cqrs-backup -f xml
	assert_failure 64
	assert_equal "$stderr" "cqrs-backup: --format must be sqlite or ndjson: 'xml'"
	run --separate-stderr cqrs-backup --restore --force b.db
	assert_failure 64
	run --separate-stderr cqrs-backup --public-key k.pub b.db
	assert_failure 64
	assert_equal "${stderr%%$'\n'*}" "cqrs-backup: --public-key goes with --restore"
	run --separate-stderr cqrs-backup --restore --signing-key k b.db
	assert_failure 64
	run --separate-stderr cqrs-backup a.db b.db
	assert_failure 64
	assert_equal "$stderr" "cqrs-backup: one file at most: 'b.db'"
	run --separate-stderr cqrs-backup -s missing.db copy.db
	assert_failure 66
	assert_equal "$stderr" "cqrs-backup: missing.db: no such store"
	[ ! -e copy.db ]
}

# --- the demanded one: a backup while 4 writers write --------------------------

@test "backups during 4 concurrent writers: every copy verifies and equals a prefix of the source" {
	saga_setup
	# (the sqlite3 shell waits out a writer's lock, as the tools do, rather
	# than answering "database is locked")
	wrote() {
		if on_sqlite; then
			sqlite3 -cmd '.timeout 10000' "$CQRS_STORE" 'SELECT count(*) FROM events'
		else
			stored_count
		fi
	}
	appender() {
		local w=$1 i
		for ((i = 1; i <= 60; i++)); do
			printf '{"aggregate_id":"00000000-0000-4000-8000-00000000000%d","aggregate_type":"Order","event_type":"Tick","data":{"writer":%d,"i":%d}}\n' \
				"$w" "$w" "$i" | cqrs-append -q || return 1
		done
	}
	commander() {
		local i
		for ((i = 1; i <= 60; i++)); do
			printf '{"command_id":"stock-%d","type":"ReplenishStock","product_id":"%s","quantity":1}\n' "$i" "$P" |
				cqrs-command -q || return 1
		done
	}
	start=$(wrote)
	pids=()
	for w in 1 2 3; do
		appender "$w" 2>"err.$w" &
		pids+=($!)
	done
	commander 2>err.4 &
	pids+=($!)
	# bounded poll: the writers are under way before the first backup
	for ((i = 0; i < 500 && $(wrote) < start + 8; i++)); do sleep 0.01; done
	[ "$(wrote)" -ge $((start + 8)) ] || fail "the writers did not start: $(cat err.*)"
	# (a PostgreSQL store: NDJSON backups alone, each read in one
	# REPEATABLE READ transaction)
	for k in 1 2 3 4 5 6; do
		if ((k % 2)) && on_sqlite; then
			cqrs-backup "copy.$k.db" >"head.$k" || fail "backup $k failed"
		else
			cqrs-backup -f ndjson >"copy.$k.ndjson" || fail "backup $k failed"
		fi
	done
	for p in "${pids[@]}"; do
		wait "$p" || fail "a writer failed: $(cat err.*)"
	done
	assert_equal "$(cat err.*)" ''
	total=$(wrote)
	assert_equal "$total" $((start + 240))
	cqrs-read >source.ndjson
	for k in 1 2 3 4 5 6; do
		if ((k % 2)) && on_sqlite; then
			copy=copy.$k.db
			assert_equal "$(verified_head "$copy")" "$(cat "head.$k")"
		else
			copy=restored.$k.db
			cqrs-backup --restore -s "$copy" "copy.$k.ndjson" >/dev/null ||
				fail "copy $k does not restore"
			verified_head "$copy" >/dev/null || fail "copy $k does not verify"
		fi
		n=$(cqrs-read -s "$copy" | wc -l)
		[ "$n" -ge $((start + 8)) ] && [ "$n" -le "$total" ]
		cmp <(cqrs-read -s "$copy") <(head -n "$n" source.ndjson) ||
			fail "copy $k is not the first $n events of the source"
		# its processed commands are exactly those whose events it holds
		if on_sqlite; then
			want=$(sqlite3 "$CQRS_STORE" "SELECT count(*) FROM processed_messages WHERE json_extract(result, '$.last') <= $n")
		else
			want=$(store_query "SELECT count(*) FROM processed_messages WHERE (result::json->>'last')::bigint <= $n")
		fi
		assert_equal "$(sqlite3 "$copy" "SELECT count(*) FROM processed_messages")" "$want"
	done
}
