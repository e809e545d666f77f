#!/usr/bin/env bats
# Signed chain heads: cqrs-keygen makes an Ed25519 key pair, cqrs-read
# --verify --signing-key prints the head it verified signed with it, and
# cqrs-read --verify --expect-signed HEAD --public-key KEY.pub checks a
# head against a store (on another host: only the public key).

# shellcheck disable=SC2154 # bats sets stderr, status, output, lines
bats_require_minimum_version 1.5.0
load test_helper

# n events (default 5) of one aggregate, data {"n":i} from $2 (default 1) on.
load_events() {
	local n=${1:-5} from=${2:-1} i
	for ((i = from; i < from + n; i++)); do
		printf '{"aggregate_id":"7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f","aggregate_type":"Thing","event_type":"Made","data":{"n":%d}}\n' "$i"
	done | cqrs-append -q
}

# key id of a public key file: the first 8 bytes of SHA-256 of its 32 bytes
key_id_of() {
	jq -r .public_key "$1" | xxd -r -p | sha256sum | cut -c1-16
}

head_of_store() {
	sqlite3 "$CQRS_STORE" 'SELECT max(sequence) FROM events'
}

# keys k/k.pub and a head of the store in head.json
signed_setup() {
	load_events "${1:-5}"
	cqrs-keygen k >/dev/null
	cqrs-read --verify --signing-key k >head.json
}

check_head() {
	run --separate-stderr cqrs-read --verify --expect-signed "${1:-head.json}" --public-key "${2:-k.pub}"
	assert_not_signalled
}

# --- keys ---------------------------------------------------------------------

@test "cqrs-keygen makes a private key 0600 and a public key 0644, whatever the umask" {
	for mask in 000 022 077; do
		run --separate-stderr sh -c "umask $mask && cqrs-keygen key$mask"
		assert_success
		assert_equal "$stderr" ''
		assert_equal "$(stat -c %a "key$mask") $(stat -c %a "key$mask.pub")" "600 644"
		# stdout is the public key file's line
		assert_equal "$output" "$(cat "key$mask.pub")"
	done
	run jq -c 'keys' key000 key000.pub
	assert_output $'["cqrs_signing_key","key_id","seed"]\n["cqrs_public_key","key_id","public_key"]'
	assert_equal "$(jq -r .key_id key000.pub)" "$(key_id_of key000.pub)"
	assert_equal "$(jq -r .key_id key000)" "$(key_id_of key000.pub)"
	[[ $(jq -r .seed key000) =~ ^[0-9a-f]{64}$ ]]
	# two keys are two keys
	[ "$(jq -r .seed key000)" != "$(jq -r .seed key022)" ]
	# --public gives the public key again from the private one
	run --separate-stderr cqrs-keygen --public key022
	assert_success
	assert_output "$(cat key022.pub)"
}

@test "cqrs-keygen never replaces a key file, nor writes through a link (73)" {
	cqrs-keygen k >/dev/null
	cp k k.before
	run --separate-stderr cqrs-keygen k
	assert_failure 73
	assert_equal "$stderr" "cqrs-keygen: k: already exists: a key file is never replaced (cqrs-keygen(1), Key rotation)"
	cmp k k.before
	# a public key in the way: nothing is created
	echo old >other.pub
	run --separate-stderr cqrs-keygen other
	assert_failure 73
	assert_equal "$stderr" "cqrs-keygen: other.pub: already exists: a key file is never replaced (cqrs-keygen(1), Key rotation)"
	[ ! -e other ]
	assert_equal "$(cat other.pub)" old
	# a dangling link planted where the key goes: not followed
	ln -s planted linked
	run --separate-stderr cqrs-keygen linked
	assert_failure 73
	[ ! -e planted ] && [ ! -e linked.pub ]
}

@test "cqrs-keygen refuses a directory others may write (77) and a missing one (73)" {
	mkdir -m 777 open
	chmod 777 open # whatever the umask
	run --separate-stderr cqrs-keygen open/k
	assert_failure 77
	assert_equal "$stderr" "cqrs-keygen: open: a directory others may write (mode 0777, not sticky): refused for a key"
	[ ! -e open/k ]
	# sticky, as /tmp: fine
	chmod 1777 open
	run --separate-stderr cqrs-keygen open/k
	assert_success
	# another user's directory
	mkdir -m 755 theirs
	chown nobody theirs
	run --separate-stderr cqrs-keygen theirs/k
	assert_failure 77
	assert_equal "$stderr" "cqrs-keygen: theirs: a directory owned by nobody: refused for a key"
	run --separate-stderr cqrs-keygen nowhere/k
	assert_failure 73
	assert_equal "$stderr" "cqrs-keygen: nowhere/k: No such file or directory"
}

@test "cqrs-keygen: usage (64), --public of a missing key (66)" {
	run --separate-stderr cqrs-keygen
	assert_failure 64
	run --separate-stderr cqrs-keygen a b
	assert_failure 64
	run --separate-stderr cqrs-keygen --nope k
	assert_failure 64
	run --separate-stderr cqrs-keygen --public missing
	assert_failure 66
	assert_equal "$stderr" "cqrs-keygen: missing: no such signing key"
}

@test "a private key open to group or others is refused with 77, by every tool" {
	load_events 2
	cqrs-keygen k >/dev/null
	for mode in 0640 0604 0620 0602 0610 0601 0644 0666 0660; do
		chmod "$mode" k
		run --separate-stderr cqrs-read --verify --signing-key k
		assert_failure 77
		assert_output ''
		assert_equal "$stderr" "cqrs-read: k: signing key open to group or others (mode $mode): refused; it must be mode 0600 (chmod 600 k), and a key others could read is best replaced (cqrs-keygen(1), Key rotation)"
		run --separate-stderr cqrs-keygen --public k
		assert_failure 77
	done
	# owner bits alone are fine
	chmod 0400 k
	run --separate-stderr cqrs-read --verify --signing-key k
	assert_success
}

@test "a private key another user owns is refused with 77" {
	[ "$(id -u)" = 0 ] || fail "needs root to give the key to nobody (uid $(id -u))"
	load_events 2
	cqrs-keygen k >/dev/null
	chown nobody k
	run --separate-stderr cqrs-read --verify --signing-key k
	assert_failure 77
	assert_equal "$stderr" "cqrs-read: k: signing key owned by nobody, not by root: a private key is its owner's alone, refused"
	# and one that another user could read through a link is not read
	chown root k
	ln -s k link
	run --separate-stderr cqrs-read --verify --signing-key link
	assert_failure 77
	assert_equal "$stderr" "cqrs-read: link: a symbolic link: a signing key is read from its own file only, refused"
}

@test "a file that is not a key, or whose key_id is not its key's, is refused with 65" {
	load_events 2
	cqrs-keygen k >/dev/null
	printf 'hello\n' >bad
	chmod 600 bad
	run --separate-stderr cqrs-read --verify --signing-key bad
	assert_failure 65
	assert_equal "$stderr" 'cqrs-read: bad: not a signing key (expected {"cqrs_signing_key":"ed25519","key_id":"...","seed":"..."})'
	jq -c '.key_id = "0000000000000000"' k >wrong
	chmod 600 wrong
	run --separate-stderr cqrs-read --verify --signing-key wrong
	assert_failure 65
	assert_equal "$stderr" "cqrs-read: wrong: the key_id is not that of the key"
	jq -c '.seed |= ascii_upcase' k >upper
	chmod 600 upper
	run --separate-stderr cqrs-read --verify --signing-key upper
	assert_failure 65
	jq -c '.key_id = "0000000000000000"' k.pub >wrong.pub
	cqrs-read --verify --signing-key k >head.json
	check_head head.json wrong.pub
	assert_failure 65
	assert_equal "$stderr" "cqrs-read: wrong.pub: the key_id is not that of the key"
	check_head head.json k
	assert_failure 65
	assert_equal "$stderr" 'cqrs-read: k: not a public key (expected {"cqrs_public_key":"ed25519","key_id":"...","public_key":"..."})'
}

@test "a public key another user owns or others may change is refused with 77" {
	[ "$(id -u)" = 0 ] || fail "needs root to give the key to nobody (uid $(id -u))"
	signed_setup 2
	chown nobody k.pub
	check_head
	assert_failure 77
	assert_equal "$stderr" "cqrs-read: k.pub: public key owned by nobody: refused; a public key is read from a file of this user's or root's (keep a copy of your own)"
	chown root k.pub
	chmod 666 k.pub
	check_head
	assert_failure 77
	assert_equal "$stderr" "cqrs-read: k.pub: public key writable by group or others (mode 0666): refused"
	# a link to the key in use is fine: its target is checked
	chmod 644 k.pub
	ln -s k.pub current.pub
	check_head head.json current.pub
	assert_success
}

# --- signing and checking -----------------------------------------------------------

@test "--verify --signing-key prints the verified head, signed; --expect-signed checks it" {
	load_events 5
	cqrs-keygen k >/dev/null
	verified=$(cqrs-read --verify)
	run --separate-stderr cqrs-read --verify --signing-key k
	assert_success
	assert_equal "$stderr" ''
	assert_equal "${#lines[@]}" 1
	echo "$output" >head.json
	# the one form: these members in this order, compact
	assert_equal "$(jq -c . head.json)" "$output"
	assert_equal "$(jq -c 'keys_unsorted' head.json)" '["signed_head","store_id","sequence","hash","time","key_id","signature"]'
	assert_equal "$(jq -r .signed_head head.json)" 1
	assert_equal "$(jq -r .sequence head.json)" 5
	assert_equal "verified 5 events, head $(jq -r .hash head.json)" "$verified"
	assert_equal "$(jq -r .store_id head.json)" "$(cqrs-read --limit 1 | jq -r .hash)"
	assert_equal "$(jq -r .key_id head.json)" "$(jq -r .key_id k.pub)"
	[[ $(jq -r .time head.json) =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$ ]]
	check_head
	assert_success
	assert_equal "$stderr" ''
	assert_output "$verified"
	# the store went on: the old head still holds
	load_events 3 6
	check_head
	assert_success
	assert_output "verified 8 events, head $(cqrs-read --from 8 | jq -r .hash)"
	# and a plain --expect with it too
	run --separate-stderr cqrs-read --verify --expect-signed head.json --public-key k.pub \
		--expect "5:$(jq -r .hash head.json)"
	assert_success
}

@test "the signature covers the documented text, and OpenSSL agrees" {
	signed_setup 3
	# the signed bytes, as cqrs-keygen(1) says
	jq -j '"cqrs-tools signed head v1\nstore_id \(.store_id)\nsequence \(.sequence)\nhash \(.hash)\ntime \(.time)\nkey_id \(.key_id)\n"' head.json >signed.txt
	jq -r .signature head.json | xxd -r -p >signature.bin
	# an Ed25519 public key in DER: the SubjectPublicKeyInfo prefix, then the key
	{ printf '302a300506032b6570032100' && jq -r .public_key k.pub; } | xxd -r -p >pub.der
	openssl pkey -pubin -inform DER -in pub.der -out pub.pem
	run openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in signed.txt -sigfile signature.bin
	assert_success
	assert_output 'Signature Verified Successfully'
	printf 'x' >>signed.txt
	run openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in signed.txt -sigfile signature.bin
	assert_failure
}

@test "CQRS_SIGNING_KEY signs like --signing-key, which wins over it" {
	load_events 2
	cqrs-keygen a >/dev/null
	cqrs-keygen b >/dev/null
	run --separate-stderr env CQRS_SIGNING_KEY=a cqrs-read --verify
	assert_success
	assert_equal "$(jq -r .key_id <<<"$output")" "$(jq -r .key_id a.pub)"
	run --separate-stderr env CQRS_SIGNING_KEY=a cqrs-read --verify --signing-key b
	assert_success
	assert_equal "$(jq -r .key_id <<<"$output")" "$(jq -r .key_id b.pub)"
	# empty: not set
	run --separate-stderr env CQRS_SIGNING_KEY= cqrs-read --verify
	assert_success
	assert_output "verified 2 events, head $(cqrs-read --from 2 | jq -r .hash)"
	# only --verify signs: a plain read is not changed by it
	run --separate-stderr env CQRS_SIGNING_KEY=a cqrs-read
	assert_success
	assert_equal "${#lines[@]}" 2
}

@test "a head with its sequence, hash, time, key id or signature changed is refused with 65" {
	signed_setup 5
	other_hash=$(cqrs-read --from 4 --limit 1 | jq -r .hash)
	sig=$(jq -r .signature head.json)
	flipped_sig=$(printf '%s' "$sig" | sed 's/^\(.\{10\}\)./\1f/')
	[ "$flipped_sig" != "$sig" ] || flipped_sig=$(printf '%s' "$sig" | sed 's/^\(.\{10\}\)./\1e/')
	for change in '.sequence = 4' ".hash = \"$other_hash\"" '.time = "2020-01-01T00:00:00.000000Z"' \
		".signature = \"$flipped_sig\"" '.store_id = "'"$other_hash"'"'; do
		jq -c "$change" head.json >changed.json
		check_head changed.json
		assert_failure 65
		assert_output ''
		assert_equal "$stderr" "cqrs-read: changed.json: the signature does not verify: the head was changed or not signed by this key"
	done
	jq -c '.key_id = "0123456789abcdef"' head.json >changed.json
	check_head changed.json
	assert_failure 65
	assert_equal "$stderr" "cqrs-read: changed.json: signed with key 0123456789abcdef, and the public key given is key $(jq -r .key_id k.pub)"
}

@test "50 random single-byte changes of a head line are all refused with 65" {
	signed_setup 5
	line=$(cat head.json)
	len=${#line}
	RANDOM=12 # the same cases every run
	# bats' run uses a global i: the loop counts in n
	for ((n = 0; n < 50; n++)); do
		pos=$((RANDOM % (len + 1))) # the newline too
		old=$(printf '%s\n' "$line" | cut -b $((pos + 1)) | head -c 1)
		[ $pos -lt "$len" ] || old=$'\n'
		while :; do
			# RANDOM read here: a command substitution would not advance it
			code=$((32 + RANDOM % 95))
			new=$(printf '%b' "\\0$(printf '%03o' "$code")")
			[ "$new" != "$old" ] && break
		done
		printf '%s%s%s\n' "${line:0:pos}" "$new" "${line:pos+1}" >flipped.json
		[ $pos -lt "$len" ] || printf '%s%s' "$line" "$new" >flipped.json
		cmp -s flipped.json head.json && fail "case $n: no change at $pos"
		check_head flipped.json
		[ "$status" -eq 65 ] || fail "case $n: byte $pos '$old' -> '$new' gave $status: $stderr"
		assert_output ''
	done
	# the head itself still holds
	check_head
	assert_success
}

@test "a head that is not in its one form is refused with 65" {
	signed_setup 2
	jq . head.json >pretty.json
	check_head pretty.json
	assert_failure 65
	assert_equal "$stderr" "cqrs-read: pretty.json: not a signed head: not in its one form (as cqrs-read --verify writes it)"
	jq -c '. + {"note":"x"}' head.json >extra.json
	check_head extra.json
	assert_failure 65
	jq -c 'del(.time)' head.json >short.json
	check_head short.json
	assert_failure 65
	assert_equal "$stderr" "cqrs-read: short.json: not a signed head: time must be UTC with microseconds (2026-01-16T14:00:00.123456Z)"
	{ cat head.json head.json; } >two.json
	check_head two.json
	assert_failure 65
	printf 'not json\n' >junk.json
	check_head junk.json
	assert_failure 65
	assert_equal "$stderr" "cqrs-read: junk.json: not a signed head: not a JSON object"
	# a missing final newline and CRLF are fine, as in NDJSON
	printf '%s' "$(cat head.json)" >bare.json
	check_head bare.json
	assert_success
	printf '%s\r\n' "$(cat head.json)" >crlf.json
	check_head crlf.json
	assert_success
}

@test "the wrong public key is refused with 65" {
	signed_setup 3
	cqrs-keygen other >/dev/null
	check_head head.json other.pub
	assert_failure 65
	assert_equal "$stderr" "cqrs-read: head.json: signed with key $(jq -r .key_id k.pub), and the public key given is key $(jq -r .key_id other.pub)"
	# another key of the same id is not to be had; a forged pair that claims
	# k's id is caught by the signature: the id in a .pub is checked against
	# its key, so the only way is the head's key_id, changed
	jq -c ".key_id = \"$(jq -r .key_id other.pub)\"" head.json >claims-other.json
	check_head claims-other.json other.pub
	assert_failure 65
	assert_equal "$stderr" "cqrs-read: claims-other.json: the signature does not verify: the head was changed or not signed by this key"
}

@test "a store whose event at the head was edited fails the chain (65)" {
	signed_setup 5
	sqlite3 "$CQRS_STORE" "DROP TRIGGER IF EXISTS events_no_update; UPDATE events SET data = '{\"n\":99}' WHERE sequence = 5"
	check_head
	assert_failure 65
	assert_output ''
	assert_equal "$stderr" "cqrs-read: sequence 5: hash chain broken: an event was edited, removed or reordered
cqrs-read: verified 4 events up to there, head $(cqrs-read --from 4 --limit 1 | jq -r .hash)"
}

@test "a store written again from an edited history, with a chain of its own, is refused" {
	signed_setup 5
	# event 3 changed, every hash after it computed afresh: a chain that
	# verifies, but not the one that was signed
	cqrs-read | jq -c 'del(.hash, .sequence) | if .data.n == 3 then .data.n = 33 else . end' >edited.ndjson
	CQRS_STORE=$PWD/rewritten.db cqrs-append -q edited.ndjson
	CQRS_STORE=$PWD/rewritten.db run --separate-stderr cqrs-read --verify
	assert_success
	CQRS_STORE=$PWD/rewritten.db check_head
	assert_failure 6
	assert_equal "$stderr" "cqrs-read: $PWD/rewritten.db: the store is behind signed head head.json: event 5 is not the one recorded (hash $(jq -r .hash head.json)); it was rolled back and written again, or replaced"
	# the first event changed: the head is of another store
	cqrs-read | jq -c 'del(.hash, .sequence) | if .data.n == 1 then .data.n = 11 else . end' >edited1.ndjson
	CQRS_STORE=$PWD/other.db cqrs-append -q edited1.ndjson
	CQRS_STORE=$PWD/other.db check_head
	assert_failure 65
	assert_equal "$stderr" "cqrs-read: $PWD/other.db: signed head head.json is of another store: the store's first event differs"
}

@test "a store rolled back behind a signed head is refused with 6" {
	load_events 3
	cp "$CQRS_STORE" old.db
	sqlite3 old.db 'PRAGMA wal_checkpoint' >/dev/null
	cqrs-read | CQRS_STORE=$PWD/old.db cqrs-append -q # a copy at 3
	load_events 2 4
	cqrs-keygen k >/dev/null
	cqrs-read --verify --signing-key k >head.json
	CQRS_STORE=$PWD/old.db check_head
	assert_failure 6
	assert_equal "$stderr" "cqrs-read: $PWD/old.db: the store is behind signed head head.json: it ends at sequence 3, before sequence 5 (hash $(jq -r .hash head.json)); it was rolled back or damaged"
}

@test "a head checks on a copy of the store with the public key only, as another user" {
	signed_setup 4
	# another host: a copy by replay (the same hashes), the head and the
	# public key; no private key, and a user who could not read it anyway
	mkdir -m 755 host2
	cp head.json k.pub host2/
	cqrs-read | CQRS_STORE=$PWD/host2/events.db cqrs-append -q
	rm "$PWD"/host2/events.db.witness
	chown -R nobody host2
	chmod 755 "$BATS_TEST_TMPDIR"
	run_as_other_user CQRS_STORE="$PWD/host2/events.db" cqrs-read --verify \
		--expect-signed "$PWD/host2/head.json" --public-key "$PWD/host2/k.pub"
	assert_success
	assert_equal "$stderr" ''
	assert_output "verified 4 events, head $(jq -r .hash head.json)"
	[ ! -e host2/k ]
	# nobody cannot sign with the owner's key
	run_as_other_user CQRS_STORE="$PWD/host2/events.db" cqrs-read --verify --signing-key "$PWD/k"
	assert_failure 77
	assert_equal "$stderr" "cqrs-read: $PWD/k: Permission denied"
}

@test "key rotation: old heads check with the old public key, new heads with the new" {
	load_events 2
	cqrs-keygen key-2026 >/dev/null
	cqrs-read --verify --signing-key key-2026 >head-old.json
	load_events 2 3
	cqrs-keygen key-2027 >/dev/null
	cqrs-read --verify --signing-key key-2027 >head-new.json
	check_head head-old.json key-2026.pub
	assert_success
	check_head head-new.json key-2027.pub
	assert_success
	check_head head-old.json key-2027.pub
	assert_failure 65
	# the key id in a head finds its public key among the old ones
	id=$(jq -r .key_id head-old.json)
	assert_equal "$(grep -l "\"key_id\":\"$id\"" ./*.pub)" ./key-2026.pub
}

@test "an empty store's head: sequence 0, zeros, and every store holds it" {
	sqlite3 "$CQRS_STORE" 'SELECT 1' >/dev/null
	load_events 0
	cqrs-keygen k >/dev/null
	run --separate-stderr cqrs-read --verify --signing-key k
	assert_success
	echo "$output" >empty.json
	zeros=$(printf '%064d' 0)
	assert_equal "$(jq -r '[.sequence, .store_id, .hash] | join(" ")' empty.json)" "0 $zeros $zeros"
	load_events 2
	check_head empty.json
	assert_success
}

@test "--signing-key, --expect-signed and --public-key: usage and missing files" {
	signed_setup 2
	run --separate-stderr cqrs-read --signing-key k
	assert_failure 64
	assert_equal "$stderr" "cqrs-read: --signing-key, --expect-signed and --public-key go with --verify"
	run --separate-stderr cqrs-read --verify --expect-signed head.json
	assert_failure 64
	assert_equal "$stderr" "cqrs-read: --expect-signed and --public-key go together"
	run --separate-stderr cqrs-read --verify --public-key k.pub
	assert_failure 64
	run --separate-stderr cqrs-read --verify --signing-key missing
	assert_failure 66
	assert_equal "$stderr" "cqrs-read: missing: no such signing key"
	check_head missing.json
	assert_failure 66
	assert_equal "$stderr" "cqrs-read: missing.json: No such file or directory"
	check_head head.json missing.pub
	assert_failure 66
	assert_equal "$stderr" "cqrs-read: missing.pub: no such public key"
	# the keys are read before the store: a missing store comes after
	CQRS_STORE=$PWD/none.db run --separate-stderr cqrs-read --verify --signing-key k
	assert_failure 66
}
