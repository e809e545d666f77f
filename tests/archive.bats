#!/usr/bin/env bats
# cqrs-archive: old events move into gzip segments; every read crosses
# archive and store as one log (checked against an unarchived copy of the
# same store, for random filters); --verify covers the segments; consumers
# hold the archive back; a kill -9 anywhere loses nothing; commands and
# projections on an archived store do what they do on the whole one.

# shellcheck disable=SC2154 # bats sets stderr, status, output, lines
bats_require_minimum_version 1.5.0
load test_helper

# n events over k aggregates (two aggregate types), seeded: three event
# types, five correlation ids, one timestamp a second, numbers whose text
# jq would change (0.10).
gen_events() {
	awk -v seed="$1" -v n="$2" -v k="$3" 'BEGIN {
		srand(seed)
		split("Noted Tagged Moved", types, " ")
		for (i = 1; i <= n; i++) {
			a = int(rand() * k)
			printf "{\"aggregate_id\":\"%08x-0000-4000-8000-%012x\",\"aggregate_type\":\"%s\",", a, seed, a % 2 ? "Thing" : "Widget"
			printf "\"event_type\":\"%s\",\"data\":{\"n\":%d,\"amount\":0.10},", types[1 + int(rand() * 3)], i
			printf "\"metadata\":{\"correlation_id\":\"c-%d\"},", int(rand() * 5)
			printf "\"timestamp\":\"2026-02-01T%02d:%02d:%02d.000000Z\"}\n", int(i / 3600), int(i / 60) % 60, i % 60
		}
	}'
}

# A store of n events, and full.db: a copy of it that is never archived.
make_stores() {
	gen_events "${1:-1}" "${2:-300}" "${3:-20}" | cqrs-append -q
	cqrs-read | CQRS_STORE=full.db cqrs-append -q
}

segments() {
	find "$CQRS_STORE.archive" -name '*.gz' -printf '%f\n' | sort
}

# cqrs-read with the same arguments on the store and on full.db agree
same_read() {
	local a b
	a=$(cqrs-read "$@" | md5sum) || fail "cqrs-read $* failed"
	b=$(CQRS_STORE=full.db cqrs-read "$@" | md5sum)
	[ "$a" = "$b" ] || fail "cqrs-read $* differs on the archived store"
}

append_one() {
	cqrs-append -q <<<'{"aggregate_id":"0b9c3c7e-2f57-4d6a-9e3b-5a1d2c3e4f50","aggregate_type":"Thing","event_type":"Noted","data":{}}'
}

uuid_of() {
	printf '%08x-0000-4000-8000-%012x' "$1" "$2"
}

# --- archiving ------------------------------------------------------------------

@test "archiving moves events into gzip segments that zcat | cqrs-append replays" {
	make_stores 1 300 20
	run --separate-stderr cqrs-archive --upto 250 --segment-events 100
	assert_success
	assert_equal "$stderr" ''
	assert_equal "$(jq -c '[.first_sequence, .last_sequence, .events, .signed_head]' <<<"$output")" \
		'[1,100,100,null]
[101,200,100,null]
[201,250,50,null]'
	assert_equal "$(segments)" 'events-000000000001-000000000100.ndjson.gz
events-000000000101-000000000200.ndjson.gz
events-000000000201-000000000250.ndjson.gz'
	assert_equal "$(stat -c %a "$CQRS_STORE.archive" "$CQRS_STORE.archive"/*.gz | sort -u | tr '\n' ' ')" '600 700 '
	# each segment goes on from the one before
	assert_equal "$(jq -r .prev_hash <<<"${lines[1]}")" "$(jq -r .last_hash <<<"${lines[0]}")"
	assert_equal "$(jq -r .prev_hash <<<"${lines[0]}")" "$(printf '0%.0s' {1..64})"
	# the file's SHA-256, as recorded
	assert_equal "$(jq -r .file_sha256 <<<"${lines[0]}")" "$(sha256sum <"$(jq -r .segment <<<"${lines[0]}")" | cut -c1-64)"
	# the store keeps the rest, the archived ids and versions; list says what it recorded
	assert_equal "$(sqlite3 "$CQRS_STORE" 'SELECT count(*), min(sequence) FROM events;
		SELECT count(*) FROM archived_events; SELECT count(*) FROM archive_segments')" '50|251
250
3'
	assert_equal "$(cqrs-archive list)" "$output"
	# the stored form, byte for byte: a copy replayed from the segments keeps every hash
	zcat "$CQRS_STORE.archive"/*.gz | CQRS_STORE=copy.db cqrs-append -q
	assert_equal "$(CQRS_STORE=copy.db cqrs-read | md5sum)" "$(CQRS_STORE=full.db cqrs-read --to 250 | md5sum)"
	assert_equal "$(zcat "$CQRS_STORE.archive"/*1-000000000100.ndjson.gz | head -n1 | grep -o '"amount":[0-9.]*')" '"amount":0.10'
}

@test "a segment's gzip header names its range and the hash it continues from" {
	make_stores 2 50 5
	cqrs-archive --upto 40 --segment-events 30 >archived
	seg=$(jq -r .segment <<<"$(tail -n1 archived)")
	# FLG bit 4: a comment, after the 10-byte header (no name, no extra field)
	comment=$(python3 -c 'import sys
d = open(sys.argv[1], "rb").read()
assert d[:2] == b"\x1f\x8b" and d[3] == 16, d[:4]
print(d[10:d.index(b"\0", 10)].decode())' "$seg")
	assert_equal "$comment" "{\"cqrs_segment\":1,\"first_sequence\":31,\"last_sequence\":40,\"prev_hash\":\"$(jq -r .last_hash <<<"$(head -n1 archived)")\"}"
	run --separate-stderr cqrs-archive check "$seg"
	assert_success
	assert_equal "$(jq -c '[.first_sequence, .last_sequence, .events, .signed]' <<<"$output")" '[31,40,10,false]'
	assert_equal "$(jq -r .last_hash <<<"$output")" "$(jq -r .last_hash <<<"$(tail -n1 archived)")"
}

@test "reads cross archive and store as one log: random filters agree with an unarchived copy" {
	for seed in 3 4; do
		rm -rf events.db* full.db*
		RANDOM=$seed
		make_stores "$seed" 400 30
		# archived in two runs, of random segment sizes
		first=$((50 + RANDOM % 150)) second=$((first + 1 + RANDOM % 150))
		cqrs-archive --upto "$first" --segment-events $((1 + RANDOM % 100)) >/dev/null
		cqrs-archive --upto "$second" --segment-events $((1 + RANDOM % 100)) >/dev/null
		same_read
		same_read --reverse
		for _ in $(seq 25); do
			args=()
			((RANDOM % 3)) || args+=(--after $((RANDOM % 420)))
			((RANDOM % 3)) || args+=(--to $((RANDOM % 420 + 1)))
			((RANDOM % 3)) || args+=(-n $((RANDOM % 50 + 1)))
			((RANDOM % 2)) || args+=(-r)
			((RANDOM % 4)) || args+=(-a "$(uuid_of $((RANDOM % 30)) "$seed")")
			((RANDOM % 5)) || args+=(-a "$(uuid_of $((RANDOM % 30)) "$seed")" -a "$(uuid_of $((RANDOM % 30)) "$seed")")
			((RANDOM % 4)) || args+=(-t Thing)
			if ((RANDOM % 4 == 0)); then
				args+=(-e Noted -e Moved)
			elif ((RANDOM % 4 == 0)); then
				args+=(-e Tagged)
			fi
			((RANDOM % 4)) || args+=(-c "c-$((RANDOM % 5))")
			((RANDOM % 4)) || args+=(--until "2026-02-01T00:0$((RANDOM % 7)):00Z")
			same_read "${args[@]}"
		done
	done
}

@test "an archived aggregate keeps its version: the next event and expected_version follow it" {
	make_stores 6 200 10
	cqrs-archive --upto 199 >/dev/null
	for a in 0 3 7; do
		id=$(uuid_of "$a" 6)
		v=$(CQRS_STORE=full.db cqrs-read -a "$id" | tail -n1 | jq .aggregate_version)
		line='{"aggregate_id":"'$id'","aggregate_type":"'$( ((a % 2)) && echo Thing || echo Widget)'","event_type":"Noted","data":{},"expected_version":'$v'}'
		run --separate-stderr cqrs-append <<<"$line"
		assert_success
		assert_equal "$(jq .aggregate_version <<<"$output")" $((v + 1))
		# a writer that read an older version loses
		run --separate-stderr cqrs-append <<<"${line/\"expected_version\":$v/\"expected_version\":$((v - 1))}"
		assert_failure 3
		assert_equal "$stderr" "cqrs-append: stdin:1: version conflict on aggregate $id: expected version $((v - 1)), actual $((v + 1))
cqrs-append: nothing was stored"
	done
	run cqrs-read --verify
	assert_success
	assert_output --regexp '^verified 203 events, head [0-9a-f]{64}$'
}

@test "an archived event appended again is not stored twice; other content under its id is refused" {
	make_stores 7 100 10
	cqrs-archive --upto 90 >/dev/null
	line=$(CQRS_STORE=full.db cqrs-read --from 42 -n 1)
	before=$(stored_count)
	# as it was read, and without its sequence and hash (a retry)
	run --separate-stderr cqrs-append <<<"$line"
	assert_success
	assert_output "$line"
	run --separate-stderr cqrs-append <<<"$(sed 's/"sequence":42,//; s/,"hash":"[0-9a-f]*"//' <<<"$line")"
	assert_success
	assert_output "$line"
	run --separate-stderr cqrs-append <<<"$(sed 's/"sequence":42,//; s/,"hash":"[0-9a-f]*"//; s/"n":/"n":1/' <<<"$line")"
	assert_failure 65
	assert_equal "$stderr" "cqrs-append: stdin:1: event_id $(jq -r .event_id <<<"$line") is already stored (sequence 42, archived) with different content
cqrs-append: nothing was stored"
	assert_equal "$(stored_count)" "$before"
	assert_equal "$(cqrs-read | wc -l)" 100
}

@test "the append-only triggers: a delete is refused outside an archive's transaction" {
	make_stores 8 20 3
	cqrs-archive --upto 10 >/dev/null
	run sqlite3 "$CQRS_STORE" 'DELETE FROM events WHERE sequence = 15'
	assert_failure
	assert_output --partial 'events are append-only'
	run sqlite3 "$CQRS_STORE" 'DELETE FROM archive_segments'
	assert_output --partial 'archive segments are append-only'
	run sqlite3 "$CQRS_STORE" 'DELETE FROM archived_events'
	assert_output --partial 'archived event ids are kept'
	# the exception reaches only up to the row's sequence
	run sqlite3 "$CQRS_STORE" 'BEGIN; INSERT INTO archive_in_progress VALUES (12); DELETE FROM events WHERE sequence <= 13; COMMIT'
	assert_output --partial 'events are append-only'
	assert_equal "$(stored_count)" 10
}

@test "--vacuum gives the archived events' space back to the file system" {
	make_stores 15 1500 50
	before=$(stat -c %s "$CQRS_STORE")
	cqrs-archive --upto 1490 >/dev/null
	sqlite3 "$CQRS_STORE" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
	# the freed pages stay in the file, for later appends
	[ "$(stat -c %s "$CQRS_STORE")" -ge "$before" ]
	rm -rf events.db* && cqrs-read -s full.db | cqrs-append -q
	run --separate-stderr cqrs-archive --upto 1490 --vacuum
	assert_success
	sqlite3 "$CQRS_STORE" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
	# what stays: ten events, the archived ids (~28 bytes each), the
	# schema's pages
	[ "$(stat -c %s "$CQRS_STORE")" -lt $((before / 3)) ]
	assert_equal "$(sqlite3 "$CQRS_STORE" 'PRAGMA freelist_count')" 0
	same_read
	run cqrs-read --verify
	assert_success
}

@test "--upto: the last event stays; archived already does nothing; usage errors" {
	make_stores 9 20 3
	run --separate-stderr cqrs-archive --upto 20
	assert_failure 64
	assert_equal "$stderr" "cqrs-archive: --upto 20: the store's last event (sequence 20) stays in the store; archive up to 19 at most"
	[ ! -e "$CQRS_STORE.archive" ]
	cqrs-archive --upto 19 >/dev/null
	run --separate-stderr cqrs-archive --upto 12
	assert_success
	assert_output ''
	assert_equal "$(segments | wc -l)" 1
	run --separate-stderr cqrs-archive
	assert_failure 64
	assert_equal "$stderr" 'cqrs-archive: --upto SEQ says how far to archive'
	run --separate-stderr cqrs-archive --upto 0
	assert_failure 64
	run --separate-stderr cqrs-archive list --upto 3
	assert_failure 64
	run --separate-stderr cqrs-archive check -s x seg
	assert_failure 64
	run --separate-stderr cqrs-archive nonsense
	assert_failure 64
	assert_equal "$stderr" "cqrs-archive: unknown subcommand or operand: 'nonsense'"
	run --separate-stderr cqrs-archive --upto 5 -s nowhere.db
	assert_not_signalled
	[ "$status" -ne 0 ]
}

@test "readers while an archive runs see every event once, in order" {
	make_stores 16 200 10
	want=$(CQRS_STORE=full.db cqrs-read | md5sum)
	want_reverse=$(CQRS_STORE=full.db cqrs-read -r | md5sum)
	one=$(uuid_of 7 16)
	want_one=$(CQRS_STORE=full.db cqrs-read -a "$one" | md5sum)
	cqrs-archive --upto 190 --segment-events 3 >/dev/null &
	archiver=$!
	reads=0
	while kill -0 "$archiver" 2>/dev/null || [ "$reads" -lt 3 ]; do
		assert_equal "$(cqrs-read | md5sum)" "$want"
		assert_equal "$(cqrs-read -r | md5sum)" "$want_reverse"
		assert_equal "$(cqrs-read -a "$one" | md5sum)" "$want_one"
		reads=$((reads + 1))
	done
	wait "$archiver"
	assert_equal "$(sqlite3 "$CQRS_STORE" 'SELECT count(*) FROM archive_segments')" 64
	assert_equal "$(cqrs-read | md5sum)" "$want"
}

# gated_read UPTO ARGS...: cqrs-read ARGS into gated.out, stopped after its
# look at the archive (CQRS_TEST_READ_GATE) while cqrs-archive --upto UPTO
# runs, then let go
gated_read() {
	local upto=$1 reader
	shift
	# a reader stuck at the gate is a failure, never a hung suite
	CQRS_TEST_READ_GATE=gate timeout 60 cqrs-read "$@" >gated.out &
	reader=$!
	timeout 60 bash -c 'read -r _ <gate' || fail "cqrs-read $* did not reach the gate"
	cqrs-archive --upto "$upto" --segment-events 7 >/dev/null
	timeout 60 bash -c ': >gate' || fail "cqrs-read $* did not wait at the gate"
	wait "$reader" || fail "cqrs-read $* failed"
}

@test "a read that an archive overtakes between its look at the archive and its first row gives every event once, in order" {
	make_stores 16 200 10
	mkfifo gate
	one=$(uuid_of 7 16)
	# nothing archived when it looked: one aggregate, then the whole store
	gated_read 40 -a "$one"
	assert_equal "$(md5sum <gated.out)" "$(CQRS_STORE=full.db cqrs-read -a "$one" | md5sum)"
	# after a sequence the archive had not reached when it looked
	gated_read 90 --after 60
	assert_equal "$(md5sum <gated.out)" "$(CQRS_STORE=full.db cqrs-read --after 60 | md5sum)"
	# an aggregate with archived events, whose later ones are archived meanwhile
	gated_read 130 -a "$one"
	assert_equal "$(md5sum <gated.out)" "$(CQRS_STORE=full.db cqrs-read -a "$one" | md5sum)"
	gated_read 150 -r -a "$one"
	assert_equal "$(md5sum <gated.out)" "$(CQRS_STORE=full.db cqrs-read -r -a "$one" | md5sum)"
	gated_read 170 -r
	assert_equal "$(md5sum <gated.out)" "$(CQRS_STORE=full.db cqrs-read -r | md5sum)"
	gated_read 190
	assert_equal "$(md5sum <gated.out)" "$(CQRS_STORE=full.db cqrs-read | md5sum)"
	assert_equal "$(sqlite3 "$CQRS_STORE" 'SELECT max(last_sequence) FROM archive_segments')" 190
}

@test "--verify that an archive overtakes between its look at the store and at the archive verifies the whole chain" {
	make_stores 16 200 10
	mkfifo gate
	want=$(cqrs-read --verify)
	assert_equal "${want%%,*}" "verified 200 events"
	# nothing archived yet, then an archive that goes on from segments
	gated_read 90 --verify
	assert_equal "$(cat gated.out)" "$want"
	gated_read 190 --verify
	assert_equal "$(cat gated.out)" "$want"
	assert_equal "$(sqlite3 "$CQRS_STORE" 'SELECT max(last_sequence) FROM archive_segments')" 190
}

# --- consumers ------------------------------------------------------------------

@test "a projection, a named checkpoint or a saga runner behind --upto holds the archive back (75)" {
	cqrs-append -q "$FIXTURES/orders-history.ndjson"
	export CQRS_VIEWS=$BATS_TEST_TMPDIR/views.db
	cqrs-project
	printf '%s\n' '{"aggregate_id":"0b9c3c7e-2f57-4d6a-9e3b-5a1d2c3e4f50","aggregate_type":"Thing","event_type":"Noted","data":{}}' \
		'{"aggregate_id":"0b9c3c7e-2f57-4d6a-9e3b-5a1d2c3e4f50","aggregate_type":"Thing","event_type":"Noted","data":{}}' |
		cqrs-append -q
	run --separate-stderr cqrs-archive --upto 38
	assert_failure 75
	assert_equal "$stderr" "cqrs-archive: cannot archive up to sequence 38: projection 'customer_order_summary' has taken the events up to 37 only; nothing was archived (let it catch up, or archive up to 37)"
	[ -z "$(find . -name '*.gz')" ]
	assert_equal "$(stored_count)" 39
	cqrs-project
	# a named consumer of this store (and one of another store, which does not count)
	cqrs-read --checkpoint mail -n 30 >/dev/null
	CQRS_STORE=other.db cqrs-append -q "$FIXTURES/orders-history.ndjson"
	CQRS_STORE=other.db cqrs-read --checkpoint elsewhere -n 1 >/dev/null
	run --separate-stderr cqrs-archive --upto 38
	assert_failure 75
	assert_equal "$stderr" "cqrs-archive: cannot archive up to sequence 38: checkpoint 'mail' has taken the events up to 30 only; nothing was archived (let it catch up, or archive up to 30)"
	cqrs-read --checkpoint mail >/dev/null
	# a saga runner's checkpoint in the store
	sqlite3 "$CQRS_STORE" "INSERT INTO checkpoints VALUES ('saga:order', 20, '2026-01-01T00:00:00Z')"
	run --separate-stderr cqrs-archive --upto 38
	assert_failure 75
	assert_equal "$stderr" "cqrs-archive: cannot archive up to sequence 38: saga runner checkpoint 'saga:order' has taken the events up to 20 only; nothing was archived (let it catch up, or archive up to 20)"
	run --separate-stderr cqrs-archive --upto 20
	assert_success
	assert_equal "$(jq -c '[.first_sequence, .last_sequence]' <<<"$output")" '[1,20]'
}

@test "a segment directory others may write is refused (77), nothing archived" {
	make_stores 10 20 3
	mkdir -m 777 open
	chmod 777 open
	run --separate-stderr cqrs-archive --upto 10 --dir open
	assert_failure 77
	assert_output ''
	assert_equal "$(stored_count)" 20
	[ -z "$(ls open)" ]
}

# --- verifying ------------------------------------------------------------------

@test "--verify checks the whole chain: a missing, edited, recompressed or truncated segment names the file and sequence" {
	make_stores 11 60 5
	cqrs-archive --upto 50 --segment-events 20 >/dev/null
	run --separate-stderr cqrs-read --verify
	assert_success
	assert_equal "$output" "$(CQRS_STORE=full.db cqrs-read --verify)"
	dir=$CQRS_STORE.archive
	seg=$dir/events-000000000021-000000000040.ndjson.gz
	cp "$seg" saved.gz
	# missing
	rm "$seg"
	run --separate-stderr cqrs-read --verify
	assert_failure 65
	assert_equal "$stderr" "cqrs-read: sequence 21: $seg: archive segment of sequences 21 to 40: No such file or directory
cqrs-read: verified 20 events up to there, head $(CQRS_STORE=full.db cqrs-read --from 20 -n 1 | jq -r .hash)"
	run --separate-stderr cqrs-read
	assert_failure 66
	# an event edited (the rest of the file as it was)
	zcat saved.gz | sed '7s/"n":/"n":9/' | gzip >"$seg"
	chmod 600 "$seg"
	run --separate-stderr cqrs-read --verify
	assert_failure 65
	assert_equal "$(head -n1 <<<"$stderr")" "cqrs-read: sequence 27: $seg:7: hash chain broken: an archived event was edited, removed or reordered"
	# the same events, compressed again: not the file that was recorded
	zcat saved.gz | gzip -9 >"$seg"
	run --separate-stderr cqrs-read --verify
	assert_failure 65
	assert_equal "$(head -n1 <<<"$stderr")" "cqrs-read: sequence 21: $seg: the file's SHA-256 is not the one recorded when it was archived: the segment was replaced or changed"
	# truncated
	head -c $(($(stat -c %s saved.gz) / 2)) saved.gz >"$seg"
	run --separate-stderr cqrs-read --verify
	assert_failure 65
	assert_regex "$(head -n1 <<<"$stderr")" "^cqrs-read: sequence 2[1-9]: $seg: truncated after line [0-9]+$"
	run --separate-stderr cqrs-archive check "$seg"
	assert_failure 65
	# put back, it verifies
	cp saved.gz "$seg"
	run cqrs-read --verify
	assert_success
}

@test "a segment others could have changed is refused on reading (77)" {
	make_stores 12 30 3
	cqrs-archive --upto 20 >/dev/null
	chmod 666 "$CQRS_STORE.archive"/*.gz
	run --separate-stderr cqrs-read
	assert_failure 77
	assert_output ''
	chmod 600 "$CQRS_STORE.archive"/*.gz
	run --separate-stderr cqrs-archive check nothing.gz
	assert_failure 66
	printf 'not a segment\n' | gzip >plain.gz
	run --separate-stderr cqrs-archive check plain.gz
	assert_failure 65
	assert_equal "$stderr" 'cqrs-archive: plain.gz: not an archive segment (no cqrs_segment header)'
}

# --- signed heads ---------------------------------------------------------------

@test "with a signing key every segment carries a signed head, checked with the public key alone" {
	make_stores 13 50 5
	cqrs-keygen k >/dev/null
	cqrs-keygen other >/dev/null
	run --separate-stderr cqrs-archive --upto 45 --segment-events 20 --signing-key k
	assert_success
	printf '%s\n' "$output" >archived
	for i in 1 2 3; do
		line=$(sed -n "${i}p" archived)
		seg=$(jq -r .segment <<<"$line")
		assert_equal "$(stat -c %a "$seg.head")" 600
		assert_equal "$(jq -c .signed_head <<<"$line")" "$(jq -c . "$seg.head")"
		assert_equal "$(jq -r .sequence "$seg.head") $(jq -r .hash "$seg.head")" \
			"$(jq -r '"\(.last_sequence) \(.last_hash)"' <<<"$line")"
		# on another host: the segment and its head, and the public key
		mkdir -p elsewhere
		cp "$seg" "$seg.head" k.pub elsewhere/
		run --separate-stderr cqrs-archive check --public-key elsewhere/k.pub "elsewhere/$(basename "$seg")"
		assert_success
		assert_equal "$(jq -r .signed <<<"$output")" true
		run --separate-stderr cqrs-archive check --public-key other.pub "$seg"
		assert_failure 65
		# and the store holds each head
		run --separate-stderr cqrs-read --verify --expect-signed "$seg.head" --public-key k.pub
		assert_success
	done
	assert_equal "$(cqrs-archive list)" "$(cat archived)"
	lines=()
	mapfile -t lines <archived
	# the owner's key from the environment, as cqrs-read --verify takes it
	append_one
	CQRS_SIGNING_KEY=k cqrs-archive --upto 50 >archived
	assert_equal "$(jq -r .signed_head.sequence archived)" 50
	# a head whose segment was swapped for another range does not fit
	first=$(jq -r .segment <<<"${lines[0]}") second=$(jq -r .segment <<<"${lines[1]}")
	cp "$first.head" "$second.head"
	run --separate-stderr cqrs-archive check --public-key k.pub "$second"
	assert_failure 65
	assert_equal "$stderr" "cqrs-archive: $second.head: the signed head is not the segment's end (sequence 40)"
}

# --- crash safety ---------------------------------------------------------------

@test "kill -9 at every step leaves each event in the store or a recorded segment, once" {
	make_stores 14 120 10
	sqlite3 events.db '.backup base.db'
	want=$(CQRS_STORE=full.db cqrs-read | md5sum)
	for at in 1 2 3 4 5 6 7 8 9 10 11 12; do
		rm -rf events.db* && cp base.db events.db
		run env CQRS_ARCHIVE_CRASH_AT=$at cqrs-archive --upto 100 --segment-events 40
		[ "$status" -eq 137 ] || [ "$status" -eq 0 ] || fail "step $at: status $status"
		assert_equal "$(cqrs-read | md5sum)" "$want"
		run cqrs-read --verify
		assert_success
		# every event once: in the store or in a recorded segment
		assert_equal "$(($(stored_count) + $(sqlite3 "$CQRS_STORE" 'SELECT count(*) FROM archived_events')))" 120
		# and a run to the end finishes the work
		cqrs-archive --upto 100 --segment-events 40 >/dev/null
		assert_equal "$(cqrs-read | md5sum)" "$want"
		assert_equal "$(stored_count)" 20
		run cqrs-read --verify
		assert_success
	done
}

# --- the command and read sides on an archived store ----------------------------

# The scripted order history (tests/fixtures/orders-history.ndjson, see
# project.bats), then commands on orders and products whose events are
# archived: the archived store and an unarchived copy answer alike.
P1=11111111-1111-4111-8111-111111111111
P2=22222222-2222-4222-8222-222222222222
# order n of the history
o() {
	printf '%08d-0000-4000-8000-%012d' "$1" "$1"
}

# A command's result without what differs from one store to another
# (generated ids, times, hashes, sequences).
result() {
	jq -c '{status, reason, code, events: [(.events // [])[] | {event_type, aggregate_version, data}]}' |
		sed -E 's/"(created|processed|cancelled|shipped)_at":"[^"]*"/"\1_at":"T"/g'
}

@test "cqrs-command, cqrs-project and as-of queries work the same on an archived store" {
	cqrs-append -q "$FIXTURES/orders-history.ndjson"
	# a copy with the store's keys: the addresses are stored encrypted
	# (cqrs-erase(1)), and the views hold them decrypted
	cqrs-backup full.db
	cqrs-archive --upto 35 --segment-events 10 >/dev/null
	assert_equal "$(stored_count)" 2
	for s in "$CQRS_STORE" full.db; do
		export CQRS_VIEWS=$s.views
		CQRS_STORE=$s cqrs-project
	done
	snap() {
		sqlite3 "$1" .dump | grep -v '^INSERT INTO cqrs_checkpoints' | sort
		sqlite3 "$1" 'SELECT projection, sequence, event_hash, event_timestamp FROM cqrs_checkpoints ORDER BY 1'
	}
	assert_equal "$(snap "$CQRS_STORE.views")" "$(snap full.db.views)"
	# a rebuild reads every event again, from the segments first
	CQRS_VIEWS=$CQRS_STORE.views cqrs-project --rebuild >/dev/null 2>&1
	assert_equal "$(snap "$CQRS_STORE.views")" "$(snap full.db.views)"
	for q in "order $(o 1) --as-of 2026-01-15T12:00:00Z" "order $(o 7) --as-of 2026-01-18T00:00:00Z" \
		"order $(o 3) --as-of 20" "orders" "inventory" "sales" "summary cust-1"; do
		# shellcheck disable=SC2086 # the query's words
		a=$(CQRS_VIEWS=$CQRS_STORE.views cqrs-query -f ndjson $q)
		# shellcheck disable=SC2086
		b=$(CQRS_STORE=full.db CQRS_VIEWS=full.db.views cqrs-query -f ndjson $q)
		assert_equal "$a" "$b"
	done
	# commands on aggregates whose events are all archived
	cmds=(
		"ship-order --order $(o 3) --carrier UPS --tracking T3 --shipped-at 2026-02-01T00:00:00Z"
		"cancel-order --order $(o 4) --reason late"
		"cancel-order --order $(o 1) --reason too-late"
		"confirm-order --order $(o 5)"
		"confirm-payment --order $(o 5) --payment 99999999-0000-4000-8000-000000000001 --amount 10.01 --currency USD"
		"replenish-stock --product $P2 --quantity 4"
		"reserve-inventory --product $P1 --order $(o 6) --quantity 1"
	)
	for c in "${cmds[@]}"; do
		# shellcheck disable=SC2086 # the command's words
		a=$(cqrs-command $c | result)
		# shellcheck disable=SC2086
		b=$(CQRS_STORE=full.db cqrs-command $c | result)
		assert_equal "$a" "$b"
	done
	for id in "$(o 1)" "$(o 3)" "$(o 4)" "$(o 5)" "$P1" "$P2"; do
		assert_equal "$(cqrs-command show "$id" | jq -c .state)" "$(CQRS_STORE=full.db cqrs-command show "$id" | jq -c .state)"
	done
	run cqrs-read --verify
	assert_success
}

# --- backups and erasure on an archived store -----------------------------------

@test "an NDJSON backup of an archived store carries every event and restores a whole, unarchived store" {
	make_stores 5 300 20
	cqrs-archive --upto 200 --segment-events 80 >/dev/null
	run --separate-stderr cqrs-backup -f ndjson
	assert_success
	printf '%s\n' "$output" >full.ndjson
	# every event, from the segments first; none of the archive's tables
	assert_equal "$(grep -c '"sequence":' full.ndjson)" 300
	assert_equal "$(grep -c '"table":"archive' full.ndjson)" 0
	run --separate-stderr env CQRS_STORE=restored.db cqrs-backup --restore full.ndjson
	assert_success
	assert_equal "$(CQRS_STORE=restored.db cqrs-read | md5sum)" "$(CQRS_STORE=full.db cqrs-read | md5sum)"
	assert_equal "$(sqlite3 restored.db 'SELECT count(*) FROM events; SELECT count(*) FROM archive_segments')" '300
0'
	run env CQRS_STORE=restored.db cqrs-read --verify
	assert_success
	# the restored store holds no reference to the segments: it reads
	# without them
	mv "$CQRS_STORE.archive" gone
	assert_equal "$(CQRS_STORE=restored.db cqrs-read | wc -l)" 300
	mv gone "$CQRS_STORE.archive"
	# an incremental backup after the archive goes on from the full one
	gen_events 6 10 3 | cqrs-append -q
	cqrs-backup -f ndjson --since "$(head -n1 full.ndjson | jq -r .head)" >since.ndjson
	CQRS_STORE=restored.db cqrs-backup --restore since.ndjson
	assert_equal "$(CQRS_STORE=restored.db cqrs-read | md5sum)" "$(cqrs-read | md5sum)"
	# a backup line for an archive table is refused: 65, nothing restored
	sed 's/"table":"personal_fields"/"table":"archived_events"/' full.ndjson >edited.ndjson
	line=$(grep -n '"table":"archived_events"' edited.ndjson | head -n1 | cut -d: -f1)
	run --separate-stderr env CQRS_STORE=other.db cqrs-backup --restore edited.ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-backup: edited.ndjson:$line: not a table of the store: '\"archived_events\"'"
	[ ! -e other.db ]
}

@test "erasing a subject whose events are archived: the segments keep the ciphertext, reads show the marker, the chain verifies" {
	for i in 1 2 3; do
		printf '{"aggregate_id":"0000000%d-aaaa-4aaa-8aaa-aaaaaaaaaaaa","aggregate_type":"Order","event_type":"OrderCreated","data":{"order_number":"ORD-%d","customer_id":"cust-%d","currency":"USD","items":[{"product_id":"11111111-2222-4333-8444-555555555555","quantity":1,"unit_price":1.00}],"total":1.00,"shipping_address":{"name":"Name Number%d","street":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}}\n' "$i" "$i" "$((i % 2))" "$i"
	done | cqrs-append -q
	gen_events 7 20 4 | cqrs-append -q
	cqrs-archive --upto 10 >/dev/null
	assert_equal "$(stored_count)" 13
	# the segment holds the addresses encrypted, as the store did
	run sh -c "zcat '$CQRS_STORE.archive'/*.gz | grep -c Number"
	assert_output 0
	run --separate-stderr cqrs-erase cust-1
	assert_success
	assert_equal "$(cqrs-read --decrypt -e OrderCreated | jq -r '.data.shipping_address | if type == "object" then .name else . end')" '[erased]
Name Number2
[erased]'
	run cqrs-read --verify
	assert_success
	run cqrs-archive check "$(find "$CQRS_STORE.archive" -name '*.gz')"
	assert_success
}

@test "the default layout, as a shop runs it: commands, the saga, projections, then an archive beside the default store" {
	# no CQRS_STORE, no CQRS_VIEWS: the store and the views in ~/.local/share/cqrs
	unset CQRS_STORE
	local home_store=$HOME/.local/share/cqrs/events.db P=3c9a7b1e-4d2f-4e8a-b6c5-0f1e2d3c4b5a i
	export PAYMENT_GATEWAY_DIR=$BATS_TEST_TMPDIR/pg SHIPPING_LABEL_DIR=$BATS_TEST_TMPDIR/sl
	cqrs-command -q register-product --product "$P" --sku SKU-1 --name Widget --quantity 100
	for i in 1 2 3 4; do
		cqrs-command -q create-order --order "$(printf '00000000-0000-4000-8000-%012d' "$i")" \
			--customer "cust-$i" --item "$P:1:9.99:SKU-1" --currency USD --ship-to "Person $i,1 Main St,X,1,US"
	done
	cqrs-saga run >/dev/null
	cqrs-project
	head=$(sqlite3 "$home_store" 'SELECT max(sequence) FROM events')
	# the runner has looked up to the head, and says so, though its last
	# starting event is earlier: it does not hold the archive back
	assert_equal "$(sqlite3 "$home_store" "SELECT sequence FROM checkpoints WHERE name = 'saga:order'")" "$head"
	run --separate-stderr cqrs-archive --upto $((head - 2))
	assert_success
	# the segments beside the store (not beside the views, whose default
	# path the tool also asks for)
	assert_equal "$(jq -r .segment <<<"$output")" "$home_store.archive/events-000000000001-$(printf '%012d' $((head - 2))).ndjson.gz"
	[ ! -e "$HOME/.local/share/cqrs/views.db.archive" ]
	assert_equal "$(cqrs-read | wc -l)" "$head"
	run cqrs-read --verify
	assert_success
}
