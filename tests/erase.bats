#!/usr/bin/env bats
# Erasure that keeps the chain: personal fields declared in the store are
# encrypted per data subject by every append; cqrs-erase deletes a
# subject's key.  The chain still verifies, reads show "[erased]", the
# numbers still add up, and neither the plaintext nor the key is left in
# the store's files, the rebuilt views or a new backup.

# shellcheck disable=SC2154 # bats sets stderr, status, output, lines
bats_require_minimum_version 1.5.0
load test_helper

P=11111111-2222-4333-8444-555555555555

uuid() { cat /proc/sys/kernel/random/uuid; }

# created AGG SUBJECT NAME [PRICE]: an OrderCreated of SUBJECT shipped to NAME
created() {
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderCreated","data":{"order_number":"ORD-%s","customer_id":"%s","currency":"USD","items":[{"product_id":"%s","quantity":1,"unit_price":%s}],"total":%s,"shipping_address":{"name":"%s","street":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}}\n' \
		"$1" "${1:0:13}" "$2" "$P" "${4:-1.00}" "${4:-1.00}" "$3"
}

# confirmed AGG NOTE: an OrderConfirmed whose data names no customer
confirmed() {
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderConfirmed","data":{"note":"%s"}}\n' "$1" "$2"
}

# The store's files (and any others given) hold none of these strings.
assert_nowhere() {
	local files=("$CQRS_STORE" "$CQRS_STORE-wal" "$CQRS_STORE-shm") s f
	[ -n "${EXTRA_FILES:-}" ] && read -ra more <<<"$EXTRA_FILES" && files+=("${more[@]}")
	for s in "$@"; do
		for f in "${files[@]}"; do
			[ -e "$f" ] || continue
			if grep -a -q -F -- "$s" "$f"; then
				fail "'$s' is still in $f"
			fi
		done
	done
}

# The hex of every live key; hex_of FILE: the file as one line of hex.
keys_hex() {
	sqlite3 "$CQRS_STORE" "SELECT lower(hex(key)) FROM subject_keys WHERE key IS NOT NULL ORDER BY subject"
}
hex_of() {
	[ ! -e "$1" ] || od -An -tx1 -v "$1" | tr -d ' \n'
}
assert_key_gone() {
	local key=$1 f
	shift
	for f in "$CQRS_STORE" "$CQRS_STORE-wal" "$CQRS_STORE-shm" "$@"; do
		[ -e "$f" ] || continue
		if hex_of "$f" | grep -q "$key"; then
			fail "the erased key is still in $f"
		fi
	done
}

decrypted_names() {
	cqrs-read --decrypt -e OrderCreated | jq -r '[.data.customer_id, (.data.shipping_address | if type == "object" then .name else . end)] | join(" ")'
}

views_setup() {
	export CQRS_VIEWS="$BATS_TEST_TMPDIR/views.db"
}

@test "personal fields are stored encrypted, decrypted for the domain and cqrs-read --decrypt, and the stored form is the default" {
	A=$(uuid)
	{
		created "$A" cust-1 "Ann Smith"
		confirmed "$A" "ring twice, Ann"
	} | cqrs-append -q
	assert_nowhere "Ann Smith" "ring twice"
	run --separate-stderr cqrs-read
	assert_success
	assert_equal "$(jq -c '.data | [(.shipping_address // .note) | keys]' <<<"$output")" '[["cqrs_encrypted","ct","subject"]]
[["cqrs_encrypted","ct","subject"]]'
	assert_equal "$(jq -r '.data | (.shipping_address // .note).subject' <<<"$output")" 'cust-1
cust-1'
	run --separate-stderr cqrs-read --decrypt
	assert_success
	assert_equal "$(jq -c '.data | .shipping_address.name // .note' <<<"$output")" '"Ann Smith"
"ring twice, Ann"'
	# the rest of the data is as written, in its order, numbers as text
	assert_equal "$(head -n1 <<<"$output" | jq -c .data)" "$(created "$A" cust-1 "Ann Smith" | jq -c .data)"
	assert_equal "$(sqlite3 "$CQRS_STORE" "SELECT subject FROM aggregate_subjects")" cust-1
	run cqrs-read --verify
	assert_success
}

@test "cqrs-command stores a new order's address encrypted; the retried command is a no-op after the erasure" {
	cqrs-command -q register-product --product "$P" --sku SKU-1 --name Widget --quantity 10
	O=$(uuid)
	cqrs-command -q --command-id c-1 create-order --order "$O" --customer cust-9 \
		--item "$P:2:29.99:SKU-1" --currency USD --ship-to 'Zelda Quux,9 Elm St,Hyrule,99999,US'
	cqrs-command -q confirm-order --order "$O" --note "Zelda's porch"
	assert_nowhere "Zelda"
	run cqrs-erase cust-9
	assert_success
	assert_nowhere "Zelda"
	before=$(stored_count)
	run --separate-stderr cqrs-command --command-id c-1 create-order --order "$O" --customer cust-9 \
		--item "$P:2:29.99:SKU-1" --currency USD --ship-to 'Zelda Quux,9 Elm St,Hyrule,99999,US'
	assert_success
	assert_equal "$(stored_count)" "$before"
	assert_equal "$(jq -r .status <<<"$output")" accepted
	run --separate-stderr cqrs-command show "$O"
	assert_success
	assert_equal "$(jq -c '[.state.status, .state.total, .version]' <<<"$output")" '["CONFIRMED",59.98,2]'
	run cqrs-read --verify
	assert_success
}

@test "erasing: the chain verifies, reads show the marker, other subjects decrypt, and key and plaintext are gone from the files" {
	A=$(uuid) B=$(uuid)
	{
		created "$A" cust-1 "Ann Smith"
		created "$B" cust-2 "Bob Jones"
		confirmed "$A" "Ann's note"
		confirmed "$B" "Bob's note"
	} | cqrs-append -q
	key=$(sqlite3 "$CQRS_STORE" "SELECT lower(hex(key)) FROM subject_keys WHERE subject = 'cust-1'")
	assert_equal "${#key}" 64
	{ hex_of "$CQRS_STORE"; hex_of "$CQRS_STORE-wal"; } | grep -q "$key" ||
		fail "the key is not where the test looks for it"
	head_before=$(cqrs-read --verify)
	stored_before=$(cqrs-read)
	run --separate-stderr cqrs-erase cust-1
	assert_success
	assert_equal "$(jq -c 'del(.erased_at)' <<<"$output")" '{"subject":"cust-1","plaintext_events":0,"plaintext_sequences":[]}'
	assert_regex "$(jq -r .erased_at <<<"$output")" '^20[0-9-]{8}T[0-9:.]{15}Z$'
	assert_equal "$stderr" ""
	# the stored form and its chain are untouched
	assert_equal "$(cqrs-read)" "$stored_before"
	assert_equal "$(cqrs-read --verify)" "$head_before"
	run --separate-stderr cqrs-read --decrypt
	assert_equal "$(jq -c '.data | (.shipping_address | if type == "object" then .name else . end) // .note' <<<"$output")" '"[erased]"
"Bob Jones"
"[erased]"
"Bob'"'"'s note"'
	assert_equal "$(sqlite3 "$CQRS_STORE" "SELECT subject, key IS NULL, erased_at IS NOT NULL FROM subject_keys ORDER BY 1")" 'cust-1|1|1
cust-2|0|0'
	# the WAL, which held older copies of the key's page, is empty or gone
	[ ! -s "$CQRS_STORE-wal" ] || fail "the WAL still holds $(stat -c %s "$CQRS_STORE-wal") bytes"
	assert_key_gone "$key"
	assert_nowhere "Ann Smith" "Ann's note"
}

@test "what an erased subject gives again is written already erased" {
	A=$(uuid) B=$(uuid)
	created "$A" cust-1 "Ann Smith" | cqrs-append -q
	cqrs-erase cust-1 >/dev/null
	{
		confirmed "$A" "Ann again"
		created "$B" cust-1 "Ann Newaddress"
	} | cqrs-append -q
	assert_equal "$(cqrs-read --decrypt -e OrderCreated -e OrderConfirmed | jq -c '.data | .shipping_address // .note')" '"[erased]"
"[erased]"
"[erased]"'
	assert_nowhere "Ann again" "Ann Newaddress"
	assert_equal "$(sqlite3 "$CQRS_STORE" "SELECT count(*) FROM subject_keys WHERE key IS NOT NULL")" 0
}

@test "projections keep their totals and states; rebuilt views hold no erased plaintext" {
	views_setup
	A=$(uuid) B=$(uuid)
	{
		created "$A" cust-1 "Ann Smith" 10.10
		created "$B" cust-2 "Bob Jones" 0.10
		confirmed "$A" "Ann's note"
	} | cqrs-append -q
	cqrs-project
	q="SELECT order_id, status, total, customer_id FROM order_views ORDER BY order_id"
	before=$(sqlite3 "$CQRS_VIEWS" "$q")
	assert_equal "$(sqlite3 "$CQRS_VIEWS" "SELECT json_extract(shipping_address, '$.name') FROM order_views ORDER BY order_id")" \
		"$(printf '%s\n' "$A Ann Smith" "$B Bob Jones" | sort | cut -d' ' -f2-)"
	cqrs-erase cust-1 >/dev/null
	cqrs-project --rebuild
	assert_equal "$(sqlite3 "$CQRS_VIEWS" "$q")" "$before"
	assert_equal "$(sqlite3 "$CQRS_VIEWS" "SELECT shipping_address FROM order_views WHERE order_id = '$A'")" '[erased]'
	EXTRA_FILES="$CQRS_VIEWS $CQRS_VIEWS-wal" assert_nowhere "Ann Smith" "Ann's note"
	# an as-of query projects the current form too
	run --separate-stderr cqrs-query -f ndjson order "$B" --as-of 3
	assert_success
	assert_equal "$(jq -c '[.total, (.shipping_address | fromjson? // . | .name)]' <<<"$output")" '["0.10","Bob Jones"]'
}

@test "a backup made after the erasure holds neither key nor plaintext; one made before carries the keys" {
	A=$(uuid) B=$(uuid)
	{
		created "$A" cust-1 "Ann Smith"
		created "$B" cust-2 "Bob Jones"
	} | cqrs-append -q
	key=$(sqlite3 "$CQRS_STORE" "SELECT lower(hex(key)) FROM subject_keys WHERE subject = 'cust-1'")
	cqrs-backup -f ndjson >before.ndjson
	grep -q "$key" before.ndjson || fail "the backup made before does not carry the key"
	cqrs-erase cust-1 >/dev/null
	cqrs-backup after.db >/dev/null
	cqrs-backup -f ndjson >after.ndjson
	for f in after.db after.ndjson; do
		grep -a -q -F "Ann Smith" "$f" && fail "plaintext in $f"
		hex_of "$f" | grep -q "$key" && fail "the key in $f (binary)"
		grep -a -q -i "$key" "$f" && fail "the key in $f (hex)"
	done
	# restored, the backup made before still decrypts: the threat model
	cqrs-backup --restore -s old.db before.ndjson >/dev/null
	assert_equal "$(cqrs-read -s old.db --decrypt | jq -r .data.shipping_address.name)" 'Ann Smith
Bob Jones'
	cqrs-backup --restore -s new.db after.ndjson >/dev/null
	assert_equal "$(cqrs-read -s new.db --decrypt | jq -c '.data.shipping_address | .name? // .')" '"[erased]"
"Bob Jones"'
	run cqrs-read -s new.db --verify
	assert_success
}

@test "a stored-form copy keeps every hash and is not encrypted again; without the keys it reads as erased" {
	A=$(uuid)
	{
		created "$A" cust-1 "Ann Smith"
		confirmed "$A" "Ann's note"
	} | cqrs-append -q
	cqrs-read | cqrs-append -q -s copy.db
	assert_equal "$(cqrs-read -s copy.db)" "$(cqrs-read)"
	assert_equal "$(cqrs-read -s copy.db --verify)" "$(cqrs-read --verify)"
	assert_equal "$(sqlite3 copy.db 'SELECT count(*) FROM subject_keys')" 0
	assert_equal "$(cqrs-read -s copy.db --decrypt | jq -c '.data | .shipping_address // .note')" '"[erased]"
"[erased]"'
	# without its sequence and hash (a relay that re-sequences): kept as is
	cqrs-read | sed -E 's/^\{"sequence":[0-9]+,/{/; s/,"hash":"[0-9a-f]+"\}$/}/' | cqrs-append -q -s relay.db
	assert_equal "$(cqrs-read -s relay.db | jq -c .data)" "$(cqrs-read | jq -c .data)"
	# the same event again (its event_id) is a duplicate, not a conflict
	line=$(created "$(uuid)" cust-3 "Cy Young" | jq -c '.event_id = "01943a10-0000-7000-8000-0000000000aa"')
	cqrs-append -q <<<"$line"
	n=$(stored_count)
	run --separate-stderr cqrs-append <<<"$line"
	assert_success
	assert_equal "$(stored_count)" "$n"
}

# Noted (a type the domain does not check) with a personal field secret
noted() {
	printf '{"aggregate_id":"%s","aggregate_type":"Thing","event_type":"Noted","data":{"owner":"%s","secret":"%s","other":"x"}}\n' "$@"
}

@test "a ciphertext moved to another event or field is refused on append and on read" {
	cqrs-append -q < <(noted "$(uuid)" cust-0 setup)
	cqrs-erase --declare Noted.secret=data.owner
	cqrs-erase --declare Noted.other=data.owner
	A=$(uuid) B=$(uuid)
	noted "$A" cust-1 "Ann's secret" | cqrs-append -q
	env=$(cqrs-read -r -n 1 | jq -c .data.secret)
	before=$(cqrs-read)
	run --separate-stderr cqrs-append < <(noted "$B" cust-1 x | jq -c --argjson e "$env" '.data.secret = $e')
	assert_failure 65
	assert_regex "$stderr" "Noted: field 'secret' holds a ciphertext that does not open with its subject's key: made for another event or field"
	run --separate-stderr cqrs-append < <(noted "$A" cust-1 x | jq -c --argjson e "$env" '.data.other = $e | .event_id = "01943a10-0000-7000-8000-0000000000bb"')
	assert_failure 65
	assert_regex "$stderr" "Noted: field 'other' holds a ciphertext that does not open"
	assert_equal "$(cqrs-read)" "$before"
	assert_equal "$(cqrs-read --decrypt -r -n 1 | jq -r .data.secret)" "Ann's secret"
	# the ciphertext of event 2 under another event_id (the chain breaks
	# too): a read names the event
	sqlite3 "$CQRS_STORE" "DROP TRIGGER events_no_update; UPDATE events SET event_id = randomblob(16) WHERE sequence = 2"
	run --separate-stderr cqrs-read --decrypt
	assert_failure 65
	assert_regex "$stderr" "sequence 2 \\(Noted\\): field 'secret' does not decrypt with its subject's key: the ciphertext was moved or damaged"
}

@test "errors: unknown subject 1, already erased 65, bad declarations 64 and 65, a bad declaration in the store 78: nothing changes" {
	A=$(uuid)
	created "$A" cust-1 "Ann Smith" | cqrs-append -q
	state() { sqlite3 "$CQRS_STORE" "SELECT * FROM subject_keys; SELECT * FROM personal_fields; SELECT count(*) FROM events"; }
	s0=$(state)
	run --separate-stderr cqrs-erase nobody
	assert_failure 1
	assert_equal "$stderr" "cqrs-erase: no such data subject: 'nobody' (no key, and no event names it)"
	assert_equal "$(state)" "$s0"
	cqrs-erase cust-1 >/dev/null
	s1=$(state)
	run --separate-stderr cqrs-erase cust-1
	assert_failure 65
	assert_regex "$stderr" "^cqrs-erase: subject 'cust-1' was already erased at 20"
	assert_equal "$output" ""
	assert_equal "$(state)" "$s1"
	run --separate-stderr cqrs-erase --declare OrderCreated.note
	assert_failure 64
	assert_equal "$stderr" "cqrs-erase: --declare needs TYPE.FIELD=SUBJECT (SUBJECT: data.MEMBER or aggregate): 'OrderCreated.note'"
	run --separate-stderr cqrs-erase --declare OrderCreated.note=customer_id
	assert_failure 64
	assert_equal "$stderr" "cqrs-erase: the subject is 'aggregate' or 'data.MEMBER': 'customer_id'"
	run --separate-stderr cqrs-erase --declare 'Order Created.x=aggregate'
	assert_failure 64
	run --separate-stderr cqrs-erase --declare 'OrderCreated.a-b=aggregate'
	assert_failure 64
	run --separate-stderr cqrs-erase --declare OrderCreated.customer_id=aggregate
	assert_failure 65
	assert_equal "$stderr" "cqrs-erase: OrderCreated.customer_id: a member that names a data subject cannot be personal, nor a personal field a subject"
	run --separate-stderr cqrs-erase --declare OrderCreated.x=data.x
	assert_failure 65
	run --separate-stderr cqrs-erase --declare OrderCreated.shipping_address=data.shipping_address
	assert_failure 65
	run --separate-stderr cqrs-erase cust-1 cust-2
	assert_failure 64
	assert_equal "$(state)" "$s1"
	# a declaration edited into nonsense: no writer applies it, none appends
	sqlite3 "$CQRS_STORE" "INSERT INTO personal_fields VALUES ('OrderCreated', 'bad field', NULL)"
	n=$(stored_count)
	run --separate-stderr cqrs-append < <(created "$(uuid)" cust-2 "Bob Jones")
	assert_failure 78
	assert_equal "$stderr" "cqrs-append: stdin:1: bad declaration of a personal field in the store: 'OrderCreated.bad field' with subject 'aggregate' (see cqrs-erase(1))
cqrs-append: nothing was stored"
	assert_equal "$(stored_count)" "$n"
	run --separate-stderr cqrs-erase --fields
	assert_failure 78
}

@test "a declaration applies to the events appended after it, by every writer" {
	A=$(uuid)
	created "$A" cust-1 "Ann Smith" | cqrs-append -q
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderCancelled","data":{"reason":"moving to Paris"}}\n' "$A" | cqrs-append -q
	run cqrs-erase --declare OrderCancelled.reason=aggregate
	assert_success
	assert_equal "$(cqrs-erase --fields | jq -r 'select(.event_type == "OrderCancelled") | .subject')" aggregate
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderCancelled","data":{"reason":"moving to Rome"}}\n' "$A" | cqrs-append -q
	assert_nowhere "moving to Rome"
	run --separate-stderr cqrs-erase cust-1
	assert_success
	# the reason stored before the declaration stays, and is reported
	assert_equal "$(jq -c '[.plaintext_events, .plaintext_sequences]' <<<"$output")" '[1,[2]]'
	assert_regex "$stderr" "^cqrs-erase: warning: subject 'cust-1': 1 events hold its personal fields in plaintext"
	assert_equal "$(cqrs-read --decrypt -e OrderCancelled | jq -c .data.reason)" '"moving to Paris"
"[erased]"'
}

@test "a store from before encryption (release 0.1): migrated, plaintext events reported, new data encrypted" {
	cp "$FIXTURES/release-0.1/events.db" "$CQRS_STORE"
	head0=$(cqrs-read --verify)
	expected=$(sqlite3 "$CQRS_STORE" "SELECT group_concat(sequence) FROM (SELECT sequence FROM events WHERE event_type = 'OrderCreated' AND json_extract(data, '$.customer_id') = 'cust-1' AND json_extract(data, '$.shipping_address') IS NOT NULL ORDER BY sequence)")
	[ -n "$expected" ]
	run --separate-stderr cqrs-erase cust-1
	assert_success
	assert_equal "$(jq -c '[.plaintext_events, .plaintext_sequences]' <<<"$output")" "[$(tr -cd , <<<"$expected" | wc -c | xargs expr 1 +),[$expected]]"
	assert_regex "$stderr" "cqrs-erase: warning: subject 'cust-1': [0-9]+ events hold its personal fields in plaintext \\(stored before they were encrypted, first sequence ${expected%%,*}\\): the chain covers them, so they stay"
	assert_equal "$(sqlite3 "$CQRS_STORE" 'PRAGMA user_version')" 5
	assert_equal "$(cqrs-read --verify)" "$head0"
	# an old order of another customer: its subject is found and recorded,
	# and a note added now is encrypted with that customer's key
	read -r agg cust < <(sqlite3 -separator ' ' "$CQRS_STORE" "SELECT lower(hex(aggregate_id)), json_extract(data, '$.customer_id') FROM events WHERE event_type = 'OrderCreated' AND json_extract(data, '$.customer_id') = 'cust-2' LIMIT 1")
	uuid=$(sed -E 's/(.{8})(.{4})(.{4})(.{4})(.{12})/\1-\2-\3-\4-\5/' <<<"$agg")
	confirmed "$uuid" "for cust-2" | jq -c '.aggregate_type = "Order"' | cqrs-append -q
	assert_equal "$(cqrs-read -n 1 -r | jq -r .data.note.subject)" "$cust"
	assert_equal "$(cqrs-read -n 1 -r --decrypt | jq -r .data.note)" "for cust-2"
	# an old order of the erased customer: what is added now is erased
	agg1=$(sqlite3 "$CQRS_STORE" "SELECT lower(hex(aggregate_id)) FROM events WHERE event_type = 'OrderCreated' AND json_extract(data, '$.customer_id') = 'cust-1' LIMIT 1")
	confirmed "$(sed -E 's/(.{8})(.{4})(.{4})(.{4})(.{12})/\1-\2-\3-\4-\5/' <<<"$agg1")" "for cust-1" | cqrs-append -q
	assert_equal "$(cqrs-read -n 1 -r --decrypt | jq -r .data.note)" "[erased]"
	assert_nowhere "for cust-1"
	run cqrs-read --verify
	assert_success
}

@test "a store others cannot write: 77, nothing changed" {
	created "$(uuid)" cust-1 "Ann Smith" | cqrs-append -q
	chmod 644 "$CQRS_STORE" "$CQRS_STORE-wal" "$CQRS_STORE-shm"
	s0=$(sqlite3 "$CQRS_STORE" "SELECT subject, key IS NULL FROM subject_keys")
	run_as_other_user CQRS_STORE="$CQRS_STORE" cqrs-erase cust-1
	assert_failure 77
	assert_regex "$stderr" "^cqrs-erase: .*permission denied"
	assert_equal "$(sqlite3 "$CQRS_STORE" "SELECT subject, key IS NULL FROM subject_keys")" "$s0"
}

@test "random: many subjects, a random subset erased, the readable names match a model" {
	local seed=${ERASE_SEED:-$((RANDOM))} i s
	RANDOM=$seed
	echo "# seed $seed" >&3
	views_setup
	local n=40 lines=() subj=() erased=()
	for ((i = 0; i < 3 * n; i++)); do
		s=$((RANDOM % n))
		agg=$(uuid)
		lines+=("$(created "$agg" "cust-$s" "Name-$s-$i" "$((RANDOM % 100)).$((RANDOM % 90 + 10))")")
		((RANDOM % 2)) && lines+=("$(confirmed "$agg" "Note-$s-$i")")
		subj[s]=1
	done
	printf '%s\n' "${lines[@]}" | cqrs-append -q
	cqrs-project
	totals() { sqlite3 "$CQRS_VIEWS" "SELECT count(*), sum(total_minor) FROM order_views"; }
	t0=$(totals)
	for s in "${!subj[@]}"; do
		if ((RANDOM % 3 == 0)); then
			cqrs-erase "cust-$s" >/dev/null
			erased[s]=1
		fi
	done
	# the model: a name is readable unless its subject was erased
	expected=$(printf '%s\n' "${lines[@]}" | jq -r 'select(.event_type == "OrderCreated") | .data | [.customer_id, .shipping_address.name] | join(" ")' |
		while read -r c name; do
			if [ -n "${erased[${c#cust-}]:-}" ]; then echo "$c [erased]"; else echo "$c $name"; fi
		done)
	assert_equal "$(decrypted_names)" "$expected"
	# notes: readable exactly for the subjects not erased
	got_notes=$(cqrs-read --decrypt -e OrderConfirmed | jq -r .data.note | grep -v '^\[erased\]$' | sort)
	want_notes=$(printf '%s\n' "${lines[@]}" | jq -r 'select(.event_type == "OrderConfirmed") | .data.note' |
		while read -r note; do
			s=${note#Note-}
			s=${s%%-*}
			[ -n "${erased[s]:-}" ] || echo "$note"
		done | sort)
	assert_equal "$got_notes" "$want_notes"
	run cqrs-read --verify
	assert_success
	cqrs-project --rebuild
	assert_equal "$(totals)" "$t0"
	for s in "${!erased[@]}"; do
		EXTRA_FILES="$CQRS_VIEWS" assert_nowhere "Name-$s-" "Note-$s-"
	done
}

@test "cqrs-read | cqrs-project - decrypts what it is fed with the store's keys, as a read of the store does" {
	views_setup
	A=$(uuid) B=$(uuid)
	{
		created "$A" cust-1 "Ann Smith"
		created "$B" cust-2 "Bob Jones"
	} | cqrs-append -q
	cqrs-erase cust-1 >/dev/null
	cqrs-read | cqrs-project -
	cqrs-project --views direct.db
	q="SELECT order_id, shipping_address FROM order_views ORDER BY order_id"
	assert_equal "$(sqlite3 "$CQRS_VIEWS" "$q")" "$(sqlite3 direct.db "$q")"
	assert_equal "$(sqlite3 "$CQRS_VIEWS" "SELECT json_extract(shipping_address, '$.name') FROM order_views WHERE order_id = '$B'")" "Bob Jones"
	assert_equal "$(sqlite3 "$CQRS_VIEWS" "SELECT shipping_address FROM order_views WHERE order_id = '$A'")" "[erased]"
}

@test "a reader that keeps the WAL: the key is erased, exit 75, and --purge truncates the WAL once it is gone" {
	created "$(uuid)" cust-1 "Ann Smith" | cqrs-append -q
	key=$(sqlite3 "$CQRS_STORE" "SELECT lower(hex(key)) FROM subject_keys")
	coproc HOLD { sqlite3 "$CQRS_STORE"; }
	holder=$HOLD_PID
	echo "BEGIN; SELECT count(*) FROM events;" >&"${HOLD[1]}"
	read -r -t 10 n <&"${HOLD[0]}"
	assert_equal "$n" 1
	CQRS_BUSY_TIMEOUT=100 run --separate-stderr cqrs-erase cust-1
	assert_failure 75
	assert_equal "$stderr" "cqrs-erase: subject 'cust-1' is erased, but readers kept the write-ahead log, which may hold the key's old page, from being truncated: run cqrs-erase --purge when they are done"
	assert_equal "$(sqlite3 "$CQRS_STORE" "SELECT key IS NULL FROM subject_keys")" 1
	CQRS_BUSY_TIMEOUT=100 run --separate-stderr cqrs-erase --purge
	assert_failure 75
	fd=${HOLD[1]}
	exec {fd}>&-
	wait "$holder"
	run --separate-stderr cqrs-erase --purge
	assert_success
	[ ! -s "$CQRS_STORE-wal" ] || fail "the WAL still holds $(stat -c %s "$CQRS_STORE-wal") bytes"
	assert_key_gone "$key"
	assert_equal "$(cqrs-read --decrypt | jq -c .data.shipping_address)" '"[erased]"'
}
