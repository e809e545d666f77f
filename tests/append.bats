#!/usr/bin/env bats
# cqrs-append: validation, defaults, atomicity, versions, idempotency, flags,
# and the store file it creates.

# shellcheck disable=SC2154 # bats sets stderr, status, output, lines
bats_require_minimum_version 1.5.0
load test_helper

A=7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f
B=0b9c3c7e-2f57-4d6a-9e3b-5a1d2c3e4f50
C=5a1d2c3e-4f50-4b9c-9c7e-2f574d6a9e3b
E1=3f2b6c1e-8c1a-4a8e-9a51-2c9a4c1f7d10

# An event of aggregate $1 with extra members $2 (",\"k\":v..."), data $3.
ev() {
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderNoted","data":%s%s}\n' \
		"$1" "${3:-{\}}" "${2:-}"
}

# Two good events, then the bytes of $1 on line 3: exit 65, the message $2
# for stdin:3, nothing on stdout and nothing stored.
refuses() {
	{
		ev "$A"
		ev "$B"
		printf '%b\n' "$1"
	} >in.ndjson
	run --separate-stderr cqrs-append <in.ndjson
	assert_not_signalled
	assert_failure 65
	assert_output ''
	assert_equal "$stderr" "cqrs-append: stdin:3: $2
cqrs-append: nothing was stored"
	assert_equal "$(stored_count)" 0
}

# A well-formed event line for $A whose data object is $1 (printf %b).
with_data() {
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"X","data":%s}' "$A" "$1"
}

# --- output and defaults ----------------------------------------------------

# The fixture's envelopes as new events get them: metadata.os_user is the
# user running the test, and so the hashes differ from the fixture's.
without_os_user() {
	jq -c 'del(.hash) | .metadata |= del(.os_user)' "$@"
}

@test "prints the complete stored envelopes, keys in the documented order" {
	run --separate-stderr cqrs-append "$FIXTURES/orders.ndjson"
	assert_success
	assert_equal "$stderr" ''
	assert_equal "$(without_os_user <<<"$output")" "$(without_os_user "$FIXTURES/orders.envelopes")"
	assert_equal "$(jq -r .metadata.os_user <<<"$output" | sort -u)" "$(id -un)"
	# replayed as history (sequence and hash given), the fixture is stored as it is
	store_reset
	run --separate-stderr cqrs-append "$FIXTURES/orders.envelopes"
	assert_success
	assert_output "$(cat "$FIXTURES/orders.envelopes")"
	run jq -c 'keys_unsorted' <<<"${lines[0]}"
	assert_output '["sequence","event_id","aggregate_id","aggregate_type","aggregate_version","event_type","event_version","data","metadata","timestamp","hash"]'
}

@test "the store holds what was printed, and cqrs-read prints it back unchanged" {
	cqrs-append "$FIXTURES/orders.ndjson" >printed.ndjson
	run store_query "SELECT sequence, event_id, aggregate_version, data FROM event_log WHERE sequence IN (2, 7)"
	assert_output '2|0190d3a0-0002-7000-8000-000000000002|1|{"quantity":10}
7|0190d3a0-0007-7000-8000-000000000007|2|{"reason":"customer request"}'
	run --separate-stderr cqrs-read
	assert_success
	assert_output "$(cat printed.ndjson)"
}

@test "defaults: a new v7 event_id, the current time, event_version 1, metadata {}" {
	before=$(date -u +%Y-%m-%dT%H:%M:%S)
	run --separate-stderr cqrs-append < <(ev "$A")
	after=$(date -u +%Y-%m-%dT%H:%M:%S)
	assert_success
	assert_regex "$output" '^\{"sequence":1,"event_id":"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}","aggregate_id":"'"$A"'","aggregate_type":"Order","aggregate_version":1,"event_type":"OrderNoted","event_version":1,"data":\{\},"metadata":\{"os_user":"'"$(id -un)"'"\},"timestamp":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z","hash":"[0-9a-f]{64}"\}$'
	ts=$(jq -r .timestamp <<<"$output")
	[[ ! "$ts" < "$before" && ! "${ts:0:19}" > "$after" ]] || fail "timestamp $ts not between $before and $after"
	# two events get two different ids
	run cqrs-append < <(ev "$A")
	refute_output --partial "$(jq -r .event_id <<<"$(cqrs-read --limit 1)")"
}

@test "data and metadata are kept as written, compacted, never through a double" {
	printf '{ "aggregate_id" : "%s" ,\t"aggregate_type":"Order", "event_type":"PaymentNoted",
	"data" : { "amount" : 205.67 , "fee": 1.50, "huge": 1e400, "big": 12345678901234567890123,
	"neg": -0.0, "exp": 1E+2, "s": "caf\\u00e9 \\/ \\"q\\"", "u": "€", "a": [ 1 , { } , [ ] , null , true ] },
	"metadata" : { "correlation_id" : "c-1" , "n" : 0.10 } }\n' "$A" | tr -d '\n' >in.ndjson
	echo >>in.ndjson
	run --separate-stderr cqrs-append in.ndjson
	assert_success
	data='{"amount":205.67,"fee":1.50,"huge":1e400,"big":12345678901234567890123,"neg":-0.0,"exp":1E+2,"s":"caf\u00e9 \/ \"q\"","u":"€","a":[1,{},[],null,true]}'
	me=$(id -un)
	assert_output --partial "\"data\":$data,\"metadata\":{\"correlation_id\":\"c-1\",\"n\":0.10,\"os_user\":\"$me\"},"
	run store_query 'SELECT data, metadata, correlation_id FROM events'
	assert_output "$data|{\"correlation_id\":\"c-1\",\"n\":0.10,\"os_user\":\"$me\"}|c-1"
}

@test "an input timestamp is normalised to UTC with microseconds" {
	run --separate-stderr cqrs-append < <(ev "$A" ',"timestamp":"2026-01-16T15:00:00.5+01:00"')
	assert_success
	assert_output --partial '"timestamp":"2026-01-16T14:00:00.500000Z"'
}

# --- input: operands, stdin, line handling ----------------------------------

@test "file operands are read in order, '-' is stdin" {
	ev "$A" ',"event_type":"First"' | sed 's/"event_type":"OrderNoted",//' >one.ndjson
	ev "$A" ',"event_type":"Third"' | sed 's/"event_type":"OrderNoted",//' >three.ndjson
	run --separate-stderr cqrs-append one.ndjson - three.ndjson \
		< <(ev "$A" ',"event_type":"Second"' | sed 's/"event_type":"OrderNoted",//')
	assert_success
	run jq -r '"\(.sequence) \(.aggregate_version) \(.event_type)"' <<<"$output"
	assert_output '1 1 First
2 2 Second
3 3 Third'
}

@test "an error names the file and the line it is on, and nothing is stored" {
	{ ev "$A"; ev "$A"; } >good.ndjson
	{ ev "$B"; echo; echo '{"aggregate_id":"'"$B"'"}'; } >bad.ndjson
	run --separate-stderr cqrs-append good.ndjson bad.ndjson
	assert_failure 65
	assert_output ''
	assert_equal "$stderr" "cqrs-append: bad.ndjson:3: missing field 'aggregate_type'
cqrs-append: nothing was stored"
	assert_equal "$(stored_count)" 0
	# the same bytes on stdin say stdin
	run --separate-stderr cqrs-append good.ndjson - <bad.ndjson
	assert_failure 65
	assert_equal "${stderr%%$'\n'*}" "cqrs-append: stdin:3: missing field 'aggregate_type'"
}

@test "blank lines are ignored but counted" {
	printf '\n  \n\t\n%s\n\n%s\n' "$(ev "$A")" "$(ev "$B")" >in.ndjson
	run --separate-stderr cqrs-append -q in.ndjson
	assert_success
	assert_equal "$(stored_count)" 2
	printf '\n\n%s\n\nnope\n' "$(ev "$A")" >in.ndjson
	run --separate-stderr cqrs-append -q in.ndjson
	assert_failure 65
	assert_equal "${stderr%%$'\n'*}" "cqrs-append: in.ndjson:5: invalid JSON at column 1: unexpected character (NaN, Infinity and bare words are not JSON)"
}

@test "CRLF line endings and a missing final newline are accepted" {
	printf '%s\r\n\r\n%s' "$(ev "$A")" "$(ev "$B")" >in.ndjson
	run --separate-stderr cqrs-append in.ndjson
	assert_success
	assert_equal "${#lines[@]}" 2
	run store_query "SELECT aggregate_id FROM event_log ORDER BY sequence"
	assert_output "$A
$B"
}

@test "empty input: exit 0, no output, nothing stored" {
	run --separate-stderr cqrs-append </dev/null
	assert_success
	assert_output ''
	assert_equal "$stderr" ''
	assert_equal "$(stored_count)" 0
	printf '\n \r\n\t\n' >blank.ndjson
	run --separate-stderr cqrs-append blank.ndjson
	assert_success
	assert_output ''
	assert_equal "$(stored_count)" 0
}

@test "a missing input file is exit 66 and nothing is stored" {
	ev "$A" >good.ndjson
	run --separate-stderr cqrs-append good.ndjson missing.ndjson
	assert_failure 66
	assert_output ''
	assert_equal "$stderr" "cqrs-append: missing.ndjson: No such file or directory
cqrs-append: nothing was stored"
	assert_equal "$(stored_count)" 0
}

@test "an unreadable input file is exit 66" {
	ev "$A" >secret.ndjson
	chmod 000 secret.ndjson
	if [ "$(id -u)" = 0 ]; then
		# root reads anything: run as nobody, in a directory nobody can use
		mkdir -m 1777 shared
		mv secret.ndjson shared/
		run_as_other_user CQRS_STORE="$PWD/shared/events.db" cqrs-append shared/secret.ndjson
	else
		mkdir shared
		mv secret.ndjson shared/
		run --separate-stderr cqrs-append shared/secret.ndjson
	fi
	assert_failure 66
	assert_equal "$stderr" "cqrs-append: shared/secret.ndjson: Permission denied
cqrs-append: nothing was stored"
}

# --- validation: every error is 65, names stdin:3, and stores nothing --------

@test "malformed JSON is refused" {
	# 55 bytes: the key expected at column 56 is missing
	refuses "{\"aggregate_id\":\"$A\"," 'invalid JSON at column 56: expected a string key in object'
	refuses "{\"aggregate_id\" \"$A\"}" 'invalid JSON at column 17: expected '"':'"' after object key'
	refuses "{\"aggregate_id\":\"$A}" 'invalid JSON at column 55: unterminated string'
	refuses "{\"aggregate_id\":01}" 'invalid JSON at column 18: expected '"','"' or '"'}'"' in object'
	refuses "{\"aggregate_id\":[1,]}" 'invalid JSON at column 20: expected a value'
	refuses '{"a":"\\q"}' 'invalid JSON at column 7: invalid escape in string'
	refuses "{\"a\":\"tab\there\"}" 'invalid JSON at column 10: control character in string'
}

@test "trailing bytes after the object are refused" {
	# the event is 116 bytes, then a space
	refuses "$(ev "$A") x" "invalid JSON at column 118: trailing characters after the JSON value"
}

@test "a line that is not an object is refused" {
	refuses '[1,2]' 'an event must be a JSON object'
}

@test "each required field is required" {
	refuses '{"aggregate_type":"Order","event_type":"X","data":{}}' "missing field 'aggregate_id'"
	refuses '{"aggregate_id":"'"$A"'","event_type":"X","data":{}}' "missing field 'aggregate_type'"
	refuses '{"aggregate_id":"'"$A"'","aggregate_type":"Order","data":{}}' "missing field 'event_type'"
	refuses '{"aggregate_id":"'"$A"'","aggregate_type":"Order","event_type":"X"}' "missing field 'data'"
}

@test "wrong types are refused" {
	refuses "$(ev "$A" '' '[]')" "field 'data' must be an object"
	refuses "$(ev "$A" '' '"x"')" "field 'data' must be an object"
	refuses "$(ev "$A" '' 'null')" "field 'data' must be an object"
	refuses "$(ev "$A" ',"metadata":[]')" "field 'metadata' must be an object"
	refuses "$(ev "$A" ',"aggregate_version":"1"')" "field 'aggregate_version' must be a non-negative integer"
	refuses "$(ev "$A" ',"aggregate_version":0')" "field 'aggregate_version' must be at least 1"
	refuses "$(ev "$A" ',"expected_version":-1')" "field 'expected_version' must be a non-negative integer"
	refuses "$(ev "$A" ',"expected_version":1.0')" "field 'expected_version' must be a non-negative integer"
	refuses "$(ev "$A" ',"event_version":0')" "field 'event_version' must be at least 1"
	refuses "$(ev "$A" ',"event_version":true')" "field 'event_version' must be a non-negative integer"
	refuses '{"aggregate_id":1,"aggregate_type":"Order","event_type":"X","data":{}}' "field 'aggregate_id' must be a string"
	refuses '{"aggregate_id":"'"$A"'","aggregate_type":{},"event_type":"X","data":{}}' "field 'aggregate_type' must be a string"
	refuses '{"aggregate_id":"'"$A"'","aggregate_type":"Order","event_type":"9Lives","data":{}}' \
		"field 'event_type' is not a type name (a letter or '_', then up to 127 letters, digits, '_', '.', ':' or '-'): \"9Lives\""
	refuses "$(ev "$A" ',"hash":"00"')" "field 'hash' must be 64 lowercase hex digits"
}

@test "bad UUIDs are refused" {
	refuses "$(ev 7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6)" "field 'aggregate_id' is not a UUID: \"7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6\""
	refuses "$(ev 7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6g)" "field 'aggregate_id' is not a UUID: \"7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6g\""
	refuses "$(ev 7d0c2a9e05b7f-4e0c-8f7e-1b2a3c4d5e6f)" "field 'aggregate_id' is not a UUID: \"7d0c2a9e05b7f-4e0c-8f7e-1b2a3c4d5e6f\""
	refuses "$(ev "$A" ',"event_id":"not-a-uuid"')" "field 'event_id' is not a UUID: \"not-a-uuid\""
}

@test "an unknown field is refused" {
	refuses "$(ev "$A" ',"agregate_version":1')" "unknown field 'agregate_version'"
}

@test "duplicate keys are refused, at the top and nested" {
	# reported where the object closes: the event is 142 bytes before it
	refuses "$(ev "$A" ',"aggregate_type":"Order"')" 'invalid JSON at column 141: duplicate key in object'
	# data starts at column 114
	refuses "$(ev "$A" '' '{"a":1,"b":{"c":1,"c":2}}')" 'invalid JSON at column 137: duplicate key in object'
	# the same key written with an escape is the same key
	refuses "$(ev "$A" '' '{"a":1,"\\u0061":2}')" 'invalid JSON at column 131: duplicate key in object'
}

@test "invalid UTF-8 is refused: overlong, surrogates, truncated, stray bytes" {
	# with_data's data starts at column 105, the string's bytes at 111
	local msg='invalid JSON at column 111: invalid UTF-8'
	refuses "$(with_data '{"s":"\xc0\xaf"}')" "$msg"
	refuses "$(with_data '{"s":"\xe0\x80\xaf"}')" "$msg"
	refuses "$(with_data '{"s":"\xf0\x80\x80\xaf"}')" "$msg"
	refuses "$(with_data '{"s":"\xed\xa0\x80"}')" "$msg"
	refuses "$(with_data '{"s":"\xe2\x82"}')" "$msg"
	refuses "$(with_data '{"s":"\xf4\x90\x80\x80"}')" "$msg"
	refuses "$(with_data '{"s":"\x80"}')" "$msg"
	refuses "$(with_data '{"s":"\xff"}')" "$msg"
	refuses "$(with_data '{"s":"\\ud800"}')" 'invalid JSON at column 111: lone UTF-16 surrogate in \u escape'
	refuses "$(with_data '{"s":"\\udc00\\ud800"}')" 'invalid JSON at column 111: lone UTF-16 surrogate in \u escape'
}

@test "valid UTF-8 and escaped surrogate pairs are accepted as written" {
	printf '%b\n' "$(with_data '{"s":"\xe2\x82\xac \xf0\x9f\x98\x80 \\ud83d\\ude00 \xc3\xa9"}')" >in.ndjson
	run --separate-stderr cqrs-append in.ndjson
	assert_success
	assert_output --partial '"data":{"s":"€ 😀 \ud83d\ude00 é"}'
}

@test "NaN, Infinity and other bare words are refused" {
	local msg='unexpected character (NaN, Infinity and bare words are not JSON)'
	# the value starts at column 110
	refuses "$(with_data '{"x":NaN}')" "invalid JSON at column 110: $msg"
	refuses "$(with_data '{"x":Infinity}')" "invalid JSON at column 110: $msg"
	refuses "$(with_data '{"x":-Infinity}')" 'invalid JSON at column 111: invalid number'
	refuses "$(with_data '{"x":True}')" "invalid JSON at column 110: $msg"
}

@test "\\u0000 is refused" {
	refuses "$(with_data '{"x":"a\\u0000b"}')" 'invalid JSON at column 112: \u0000 is not allowed in strings'
}

@test "nesting deeper than 64 is refused, 64 is accepted" {
	# the event is level 1, data level 2: 62 more arrays make 64
	deep() { printf '{"a":%s%s}' "$(printf '[%.0s' $(seq "$1"))" "$(printf ']%.0s' $(seq "$1"))"; }
	run --separate-stderr cqrs-append -q < <(with_data "$(deep 62)"; echo)
	assert_success
	assert_equal "$(stored_count)" 1
	store_reset
	refuses "$(with_data "$(deep 63)")" 'invalid JSON at column 172: nesting deeper than the limit of 64'
}

@test "a bad timestamp is refused" {
	local msg="field 'timestamp' must be an RFC 3339 time such as \"2026-01-16T14:00:00.123456Z\""
	refuses "$(ev "$A" ',"timestamp":"2026-02-30T00:00:00Z"')" "$msg"
	refuses "$(ev "$A" ',"timestamp":"2026-01-16 14:00:00Z"')" "$msg"
	refuses "$(ev "$A" ',"timestamp":"2026-01-16T14:00:00"')" "$msg"
	refuses "$(ev "$A" ',"timestamp":"2026-01-16T14:00:00.1234567Z"')" "$msg"
	refuses "$(ev "$A" ',"timestamp":1768572000')" "$msg"
}

@test "a line of exactly 1048576 bytes is accepted, one byte more is refused" {
	# pad data so that the whole line is $1 bytes long
	line_of() {
		local head tail pad
		head=$(printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"X","data":{"s":"' "$A")
		tail='"}}'
		pad=$(($1 - ${#head} - ${#tail}))
		printf '%s' "$head"
		head -c "$pad" /dev/zero | tr '\0' a
		printf '%s' "$tail"
	}
	line_of 1048576 >exact.ndjson
	echo >>exact.ndjson
	[ "$(head -1 exact.ndjson | tr -d '\n' | wc -c)" -eq 1048576 ]
	run --separate-stderr cqrs-append -q exact.ndjson
	assert_success
	assert_equal "$(stored_count)" 1
	# the same line with CRLF, its "\n" arriving in a later read
	run --separate-stderr cqrs-append -q < <(line_of 1048576; printf '\r'; sleep 0.2; printf '\n')
	assert_success
	assert_equal "$(stored_count)" 2
	{ ev "$A"; ev "$A"; line_of 1048577; echo; } >over.ndjson
	run --separate-stderr cqrs-append -q over.ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-append: over.ndjson:3: line longer than 1048576 bytes
cqrs-append: nothing was stored"
	assert_equal "$(stored_count)" 2
}

@test "a 50 MB line is refused with bounded memory" {
	gen() {
		ev "$A"
		printf '{"data":{"s":"'
		head -c 50000000 /dev/zero | tr '\0' a
		printf '"}}\n'
		ev "$A"
	}
	[ -z "${CQRS_UNDER_VALGRIND:-}" ] || skip "valgrind's own memory would be measured"
	run --separate-stderr /usr/bin/time -f 'maxrss %M' cqrs-append -q < <(gen)
	assert_failure 65
	assert_equal "${stderr%%$'\n'*}" "cqrs-append: stdin:2: line longer than 1048576 bytes"
	rss=$(sed -n 's/^maxrss //p' <<<"$stderr")
	# AddressSanitizer's shadow memory and quarantine come on top (make
	# sanitize); the 50 MB would show either way
	limit=20000
	! ldd "$(command -v cqrs-append)" | grep -q libasan || limit=40000
	[ "$rss" -lt "$limit" ] || fail "max RSS $rss KiB for a 50 MB line"
	assert_equal "$(stored_count)" 0
}

@test "a bad line 3 after two good lines stores none of them" {
	refuses '{"aggregate_id":"'"$A"'","aggregate_type":"Order","event_type":"X","data":{}' \
		'invalid JSON at column 107: unexpected end of input'
	# and the store is usable afterwards
	run --separate-stderr cqrs-append -q < <(ev "$A")
	assert_success
	run store_query 'SELECT sequence, aggregate_version FROM events'
	assert_output '1|1'
}

# --- expected versions ---------------------------------------------------------

@test "expected_version in an event: 0 means the stream must not exist" {
	run --separate-stderr cqrs-append -q < <(ev "$A" ',"expected_version":0')
	assert_success
	run --separate-stderr cqrs-append < <(ev "$A" ',"expected_version":0')
	assert_failure 3
	assert_output ''
	assert_equal "$stderr" "cqrs-append: stdin:1: version conflict on aggregate $A: expected version 0, actual 1
cqrs-append: nothing was stored"
	run --separate-stderr cqrs-append -q < <(ev "$A" ',"expected_version":1')
	assert_success
	run store_query 'SELECT sequence, aggregate_version FROM events'
	assert_output '1|1
2|2'
}

@test "expected_version within one input counts the events before it" {
	{ ev "$A" ',"expected_version":0'; ev "$A" ',"expected_version":1'; ev "$A" ',"expected_version":2'; } >in.ndjson
	run --separate-stderr cqrs-append in.ndjson
	assert_success
	assert_equal "$(jq -r .aggregate_version <<<"$output" | tr '\n' ' ')" '1 2 3 '
	{ ev "$A" ',"expected_version":3'; ev "$A" ',"expected_version":3'; } >in.ndjson
	run --separate-stderr cqrs-append in.ndjson
	assert_failure 3
	assert_equal "${stderr%%$'\n'*}" "cqrs-append: in.ndjson:2: version conflict on aggregate $A: expected version 3, actual 4"
	assert_equal "$(stored_count)" 3
}

@test "aggregate_version in an event is checked like expected_version" {
	run --separate-stderr cqrs-append < <(ev "$A" ',"aggregate_version":2')
	assert_failure 3
	assert_equal "${stderr%%$'\n'*}" "cqrs-append: stdin:1: version conflict on aggregate $A: expected version 1, actual 0"
	run --separate-stderr cqrs-append < <(ev "$A" ',"aggregate_version":2,"expected_version":0')
	assert_failure 65
	assert_equal "${stderr%%$'\n'*}" "cqrs-append: stdin:1: fields 'expected_version' (0) and 'aggregate_version' (2) disagree"
	assert_equal "$(stored_count)" 0
}

@test "-e / --expected-version applies to every event of one aggregate" {
	run --separate-stderr cqrs-append -q -e 0 < <(ev "$A"; ev "$A")
	assert_success
	run --separate-stderr cqrs-append --expected-version 0 < <(ev "$A")
	assert_failure 3
	assert_equal "$stderr" "cqrs-append: stdin:1: version conflict on aggregate $A: expected version 0, actual 2
cqrs-append: nothing was stored"
	run --separate-stderr cqrs-append -q --expected-version=2 < <(ev "$A")
	assert_success
	assert_equal "$(stored_count)" 3
}

@test "-e with events of two aggregates is 65" {
	run --separate-stderr cqrs-append -e 0 < <(ev "$A"; ev "$B")
	assert_failure 65
	assert_output ''
	assert_equal "$stderr" "cqrs-append: stdin:2: --expected-version needs the events of one aggregate
cqrs-append: nothing was stored"
	assert_equal "$(stored_count)" 0
}

@test "-e that disagrees with the event's expected_version is 65" {
	run --separate-stderr cqrs-append -e 0 < <(ev "$A" ',"expected_version":1')
	assert_failure 65
	assert_equal "${stderr%%$'\n'*}" "cqrs-append: stdin:1: field 'expected_version' (1) disagrees with --expected-version 0"
}

@test "bad -e values are 64" {
	for v in -1 x 1x ''; do
		run --separate-stderr cqrs-append -e "$v" </dev/null
		assert_failure 64
		assert_equal "$stderr" "cqrs-append: --expected-version needs a non-negative integer: '$v'"
	done
}

@test "atomic across aggregates, each with its own expected version" {
	cqrs-append -q < <(ev "$A"; ev "$B")
	{
		ev "$A" ',"expected_version":1'
		ev "$B" ',"expected_version":1'
		ev "$C" ',"expected_version":0'
		ev "$B" ',"expected_version":7'
	} >in.ndjson
	run --separate-stderr cqrs-append in.ndjson
	assert_failure 3
	assert_equal "$stderr" "cqrs-append: in.ndjson:4: version conflict on aggregate $B: expected version 7, actual 2
cqrs-append: nothing was stored"
	assert_equal "$(stored_count)" 2
	sed -i '4s/"expected_version":7/"expected_version":2/' in.ndjson
	run --separate-stderr cqrs-append in.ndjson
	assert_success
	run store_query 'SELECT sequence, aggregate_id, aggregate_version FROM event_log ORDER BY sequence'
	assert_output "1|$A|1
2|$B|1
3|$A|2
4|$B|2
5|$C|1
6|$B|3"
}

# --- idempotency ---------------------------------------------------------------

@test "the same event_id with the same content is a quiet no-op printing the original" {
	ev "$A" ",\"event_id\":\"$E1\"" >one.ndjson
	first=$(cqrs-append one.ndjson)
	cqrs-append -q < <(ev "$B")
	run --separate-stderr cqrs-append one.ndjson
	assert_success
	assert_equal "$stderr" ''
	assert_output "$first"
	assert_output --partial '{"sequence":1,'
	assert_equal "$(stored_count)" 2
}

@test "a retry carrying a now stale expected_version is still a no-op" {
	ev "$A" ",\"event_id\":\"$E1\",\"expected_version\":0" >one.ndjson
	first=$(cqrs-append one.ndjson)
	cqrs-append -q < <(ev "$A")
	run --separate-stderr cqrs-append one.ndjson
	assert_success
	assert_equal "$stderr" ''
	assert_output "$first"
	assert_equal "$(stored_count)" 2
	# with the timestamp and version it was stored with, too
	ts=$(jq -r .timestamp <<<"$first")
	run --separate-stderr cqrs-append < <(ev "$A" ",\"event_id\":\"$E1\",\"aggregate_version\":1,\"timestamp\":\"$ts\"")
	assert_success
	assert_output "$first"
	assert_equal "$(stored_count)" 2
}

@test "different content under a stored event_id is 65 naming the sequence" {
	cqrs-append -q < <(ev "$B")
	cqrs-append -q < <(ev "$A" ",\"event_id\":\"$E1\"")
	for changed in ",\"event_id\":\"$E1\",\"event_version\":2" \
		",\"event_id\":\"$E1\",\"metadata\":{\"x\":1}" \
		",\"event_id\":\"$E1\",\"timestamp\":\"2020-01-01T00:00:00Z\"" \
		",\"event_id\":\"$E1\",\"aggregate_version\":2"; do
		run --separate-stderr cqrs-append < <(ev "$A" "$changed")
		assert_failure 65
		assert_equal "$stderr" "cqrs-append: stdin:1: event_id $E1 is already stored (sequence 2) with different content
cqrs-append: nothing was stored"
	done
	run --separate-stderr cqrs-append < <(ev "$A" ",\"event_id\":\"$E1\"" '{"x":1}')
	assert_failure 65
	run --separate-stderr cqrs-append < <(ev "$B" ",\"event_id\":\"$E1\"")
	assert_failure 65
	assert_equal "$(stored_count)" 2
}

@test "the same event_id twice in one input is stored once" {
	run --separate-stderr cqrs-append < <(ev "$A" ",\"event_id\":\"$E1\""; ev "$B"; ev "$A" ",\"event_id\":\"$E1\"")
	assert_success
	assert_equal "${#lines[@]}" 3
	assert_equal "${lines[2]}" "${lines[0]}"
	assert_equal "$(stored_count)" 2
	run --separate-stderr cqrs-append < <(ev "$C" ",\"event_id\":\"$E1\""; ev "$C")
	assert_failure 65
	assert_equal "${stderr%%$'\n'*}" "cqrs-append: stdin:1: event_id $E1 is already stored (sequence 1) with different content"
	E2=11111111-2222-4333-8444-555555555555
	run --separate-stderr cqrs-append < <(ev "$C" ",\"event_id\":\"$E2\""; ev "$C" ",\"event_id\":\"$E2\",\"event_type\":\"Other\"" | sed 's/"event_type":"OrderNoted",//')
	assert_failure 65
	assert_equal "${stderr%%$'\n'*}" "cqrs-append: stdin:2: event_id $E2 is already stored (sequence 3) with different content"
	assert_equal "$(stored_count)" 2
}

# --- flags ----------------------------------------------------------------------

@test "--dry-run validates, checks versions, prints what would be stored, stores nothing" {
	cqrs-append -q < <(ev "$A")
	run --separate-stderr cqrs-append --dry-run < <(ev "$A" ',"expected_version":1'; ev "$B")
	assert_success
	assert_equal "$(jq -r '"\(.sequence) \(.aggregate_version)"' <<<"$output" | tr '\n' ' ')" '2 2 3 1 '
	assert_equal "$(stored_count)" 1
	run --separate-stderr cqrs-append -n < <(ev "$A" ',"expected_version":0')
	assert_failure 3
	assert_equal "$stderr" "cqrs-append: stdin:1: version conflict on aggregate $A: expected version 0, actual 1"
	run --separate-stderr cqrs-append -n < <(ev "$A"; echo '{}')
	assert_failure 65
	assert_output ''
	assert_equal "$stderr" "cqrs-append: stdin:2: missing field 'aggregate_id'"
	assert_equal "$(stored_count)" 1
}

@test "--dry-run with --batch sees the earlier chunks" {
	run --separate-stderr cqrs-append -n -b 2 < <(for _ in 1 2 3 4 5; do ev "$A"; done)
	assert_success
	assert_equal "$(jq -r .sequence <<<"$output" | tr '\n' ' ')" '1 2 3 4 5 '
	assert_equal "$(jq -r .aggregate_version <<<"$output" | tr '\n' ' ')" '1 2 3 4 5 '
	assert_equal "$(stored_count)" 0
}

@test "--quiet prints nothing and stores everything" {
	run --separate-stderr cqrs-append --quiet "$FIXTURES/orders.ndjson"
	assert_success
	assert_output ''
	assert_equal "$stderr" ''
	assert_equal "$(stored_count)" 7
	run --separate-stderr cqrs-append -q < <(echo nope)
	assert_failure 65
	assert_output ''
}

@test "--batch commits every N events" {
	run --separate-stderr cqrs-append --batch 3 < <(for _ in 1 2 3 4 5 6 7; do ev "$A"; done)
	assert_success
	assert_equal "${#lines[@]}" 7
	assert_equal "$(jq -r .sequence <<<"$output" | tr '\n' ' ')" '1 2 3 4 5 6 7 '
	assert_equal "$(stored_count)" 7
	run cqrs-read --verify
	assert_output --regexp '^verified 7 events, head [0-9a-f]{64}$'
}

@test "--batch: an error in chunk 3 leaves chunks 1 and 2 and says how far" {
	{ for _ in 1 2 3 4 5; do ev "$A"; done; echo '{"bad"'; ev "$A"; } >in.ndjson
	run --separate-stderr cqrs-append -b 2 in.ndjson
	assert_failure 65
	assert_equal "${#lines[@]}" 4
	assert_equal "$stderr" "cqrs-append: in.ndjson:6: invalid JSON at column 7: expected ':' after object key
cqrs-append: 4 events were committed before the error, through in.ndjson:4 (sequence 4); the rest of the input was not stored"
	assert_equal "$(stored_count)" 4
	# a conflict in a later chunk too
	run --separate-stderr cqrs-append -b 1 < <(ev "$B"; ev "$B" ',"expected_version":0')
	assert_failure 3
	assert_equal "$stderr" "cqrs-append: stdin:2: version conflict on aggregate $B: expected version 0, actual 1
cqrs-append: 1 events were committed before the error, through stdin:1 (sequence 5); the rest of the input was not stored"
	assert_equal "$(stored_count)" 5
}

# --- inputs of many windows, against a model ---------------------------------

# One random input of one to three files, up to ~4,200 lines (cqrs-append
# takes them in windows of 1,000, read and parsed by a thread of their own
# while the writer appends the one before), with retries of earlier events,
# maybe a --batch, and maybe one thing that stops it: a bad line, a version
# conflict, or a file operand that does not exist.  The model (awk, as the
# lines are written) walks them in order and says what must happen: the
# arguments, the exit code, stderr exactly, and the events the store holds
# after it (their ids, in order), in case.plan and case.ids.
append_model='
function uuid(k) { return sprintf("%08x-0000-4000-8000-%012x", seed, k) }
BEGIN {
	srand(seed)
	nfiles = int(rand() * 3) + 1; total = int(rand() * 4200) + 1
	batch = rand() < 0.33 ? 0 : int(rand() * 1500) + 1
	with_ids = rand() < 0.75
	# 0 none, 1 a bad line, 2 a conflict, 3 a missing file, 4 data its schema refuses
	stop = int(rand() * 5)
	if (nfiles == 1 && stop == 3) stop = 0
	stop_at = int(rand() * total) + 1
	missing = stop == 3 ? int(rand() * (nfiles - 1)) + 1 : -1
	aggs[0] = "7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f"; aggs[1] = "0b9c3c7e-2f57-4d6a-9e3b-5a1d2c3e4f50"
	aggs[2] = "5a1d2c3e-4f50-4b9c-9c7e-2f574d6a9e3b"; aggs[3] = "3f2b6c1e-8c1a-4a8e-9a51-2c9a4c1f7d10"
	left = total; code = 0; operands = ""
	for (f = 0; f < nfiles; f++) {
		n = f == nfiles - 1 ? left : int(rand() * (left + 1)); left -= n
		file = "in" f ".ndjson"; printf "" > file
		if (f == missing) {
			operands = operands " missing.ndjson"
			if (!code) { err = "cqrs-append: missing.ndjson: No such file or directory"; code = 66 }
		}
		operands = operands " " file
		for (i = 1; i <= n; i++) {
			k++; agg = aggs[int(rand() * 4)]
			line = "{\"aggregate_id\":\"" agg "\",\"aggregate_type\":\"Order\",\"event_type\":\"OrderNoted\",\"data\":{}"
			if (with_ids && nids > 0 && rand() < 0.02) { # a retry: an earlier event again
				print retry[int(rand() * nids)] > file; continue
			}
			if (with_ids) line = line ",\"event_id\":\"" uuid(k) "\""
			if (k == stop_at && stop == 1 && !code) {
				print "{\"bad\"" > file
				err = "cqrs-append: " file ":" i ": invalid JSON at column 7: expected '"'"':'"'"' after object key"
				code = 65; continue
			}
			if (k == stop_at && stop == 4 && !code) {
				print "{\"aggregate_id\":\"" agg "\",\"aggregate_type\":\"Order\",\"event_type\":\"OrderCancelled\",\"data\":{}}" > file
				err = "cqrs-append: " file ":" i ": OrderCancelled (event_version 1): data.reason is missing"
				code = 65; continue
			}
			if (k == stop_at && stop == 2 && !code) {
				v = version[agg] + 0
				print line ",\"expected_version\":" v + 3 "}" > file
				err = "cqrs-append: " file ":" i ": version conflict on aggregate " agg ": expected version " v + 3 ", actual " v
				code = 3; continue
			}
			print line "}" > file
			if (code) continue
			if (with_ids) retry[nids++] = line "}"
			appended++; version[agg]++; ids[appended] = uuid(k)
			if (batch > 0 && appended % batch == 0) { committed = appended; through = file ":" i }
		}
		close(file)
	}
	if (!code) committed = appended
	else if (batch > 0 && committed > 0)
		err = err "\ncqrs-append: " committed " events were committed before the error, through " through " (sequence " committed "); the rest of the input was not stored"
	else
		err = err "\ncqrs-append: nothing was stored"
	printf "" > "case.ids"
	if (with_ids) for (j = 1; j <= committed; j++) print ids[j] > "case.ids"
	printf "seed %d: %d files, %d lines, -b %d, ids %d, stop %d at %d\n", seed, nfiles, total, batch, with_ids, stop, stop_at
	print (batch ? "-q -b " batch : "-q") operands
	print code; print committed + 0; print with_ids + 0
	if (code) print err
}'

append_case() {
	awk -v seed="$1" "$append_model" >case.plan
	local what args code committed with_ids err
	{ read -r what; read -r args; read -r code; read -r committed; read -r with_ids; } <case.plan
	err=$(tail -n +6 case.plan)
	# shellcheck disable=SC2086 # the options and operands, a word each
	# a hang is a failure too (timeout: 124)
	run --separate-stderr timeout 300 cqrs-append $args
	assert_not_signalled
	[ "$status" -eq "$code" ] || fail "$what: exit $status, expected $code; stderr: $stderr"
	assert_equal "$stderr" "$err"
	assert_equal "$(stored_count)" "$committed"
	if [ "$with_ids" = 1 ]; then
		assert_equal "$(cqrs-read | jq -r .event_id)" "$(cat case.ids)"
	fi
	if [ "$committed" -gt 0 ]; then
		run cqrs-read --verify
		assert_output --regexp "^verified $committed events, head [0-9a-f]{64}\$"
		# every event, whichever thread prepared it, records who ran the tool
		assert_equal "$(cqrs-read | jq -r .metadata.os_user | sort -u)" "$(id -un)"
	fi
	store_reset
	rm -f in*.ndjson case.*
}

@test "random inputs of many windows, retries, batches and one stop: exit, stderr and store as the model says" {
	# stops: a bad line, a conflict, a missing operand, data its schema refuses
	local cases=${CQRS_APPEND_CASES:-12} seed
	for ((seed = 1; seed <= cases; seed++)); do
		append_case "$seed"
	done
}

@test "a writer that fails while its input stays open ends at once: the thread reading ahead is stopped" {
	mkfifo in.fifo
	{
		for _ in $(seq 1499); do ev "$A"; done
		ev "$A" ',"expected_version":0'
		exec sleep 600
	} >in.fifo &
	local writer=$!
	# a writer still blocked, were the reader not stopped: timeout says 124
	run --separate-stderr timeout 60 cqrs-append -q -b 1000 in.fifo
	kill "$writer" # still there: the input was open all along
	assert_failure 3
	assert_equal "$stderr" "cqrs-append: in.fifo:1500: version conflict on aggregate $A: expected version 0, actual 1499
cqrs-append: 1000 events were committed before the error, through in.fifo:1000 (sequence 1000); the rest of the input was not stored"
	assert_equal "$(stored_count)" 1000
}

@test "bad --batch values are 64" {
	for v in 0 -1 x; do
		run --separate-stderr cqrs-append -b "$v" </dev/null
		assert_failure 64
		assert_equal "$stderr" "cqrs-append: --batch needs a positive count: '$v'"
	done
}

@test "--no-sync appends durably enough to read back" {
	run --separate-stderr cqrs-append --no-sync -q "$FIXTURES/orders.envelopes"
	assert_success
	run cqrs-read
	assert_output "$(cat "$FIXTURES/orders.envelopes")"
}

@test "--store and CQRS_STORE name the store, --store wins" {
	run --separate-stderr cqrs-append -q --store other.db < <(ev "$A")
	assert_success
	[ -f other.db ]
	[ ! -e "$CQRS_STORE" ]
	run --separate-stderr cqrs-append -q -s other.db < <(ev "$A")
	assert_equal "$(sqlite3 other.db 'SELECT count(*) FROM events')" 2
}

@test "--help is exit 0 on stdout, --version names the package" {
	run --separate-stderr cqrs-append --help
	assert_success
	assert_equal "$stderr" ''
	assert_line --index 0 'usage: cqrs-append [-nq] [-b count] [-e version] [-s store] [--no-sync]'
	assert_line --index 1 '                   [--metrics-dir dir] [file ...]'
	for opt in --batch --expected-version --dry-run --quiet --store --no-sync --metrics-dir \
		--log-format --help --version; do
		assert_output --partial -- "$opt"
	done
	run --separate-stderr cqrs-append -h
	assert_success
	run --separate-stderr cqrs-append --version
	assert_success
	assert_output --regexp '^cqrs-append \(cqrs-tools\) [0-9]+\.[0-9]+'
}

@test "a bad option is 64 with the usage on stderr" {
	run --separate-stderr cqrs-append --bogus
	assert_failure 64
	assert_output ''
	assert_equal "$stderr" "cqrs-append: unrecognized option '--bogus'
usage: cqrs-append [-nq] [-b count] [-e version] [-s store] [--no-sync]
                   [--metrics-dir dir] [file ...]
       cqrs-append --reset-witness [-s store]"
	run --separate-stderr cqrs-append -b
	assert_failure 64
	[ ! -e "$CQRS_STORE" ]
}

@test "on a terminal a progress line counts the events and ends with their total" {
	for _ in $(seq 2500); do ev "$A"; done >many.ndjson
	run script -qec "cqrs-append -q many.ndjson" /dev/null
	assert_success
	# redrawn in place (\r); the terminal ends the last one with \r\n
	local shown
	shown=$(tr '\r' '\n' <<<"$output" | sed '/^$/d')
	assert_equal "$(grep -cvE '^cqrs-append: [0-9]+ events$' <<<"$shown")" 0
	assert_equal "$(tail -n 1 <<<"$shown")" "cqrs-append: 2500 events"
	assert_equal "$(stored_count)" 2500
}

@test "a reader that goes away does not undo or break the append" {
	for _ in $(seq 3000); do ev "$A"; done >many.ndjson
	run bash -c 'set -o pipefail; cqrs-append many.ndjson | head -1 >/dev/null'
	assert_success
	assert_equal "$(stored_count)" 3000
}

# --- the store file -------------------------------------------------------------

@test "the store is created on first use, owner-only, and identifies itself" {
	sqlite_only "the SQLite file's mode, pragmas and side files"
	umask 022
	cqrs-append -q < <(ev "$A")
	assert_equal "$(stat -c %a "$CQRS_STORE")" 600
	run sqlite3 "$CQRS_STORE" 'PRAGMA application_id; PRAGMA user_version; PRAGMA journal_mode'
	# application_id is "CQRS" in ASCII: 0x43515253
	assert_output '1129402963
5
wal'
	# the -wal and -shm files, seen while another connection holds them
	coproc HOLD { sqlite3 "$CQRS_STORE"; }
	holder=$HOLD_PID
	echo "BEGIN; SELECT count(*) FROM events;" >&"${HOLD[1]}"
	read -r -t 10 n <&"${HOLD[0]}"
	assert_equal "$n" 1
	assert_equal "$(stat -c %a "$CQRS_STORE-wal" "$CQRS_STORE-shm" | tr '\n' ' ')" '600 600 '
	fd=${HOLD[1]}
	exec {fd}>&-
	wait "$holder"
}

@test "the event_log view shows text UUIDs" {
	cqrs-append -q "$FIXTURES/orders.envelopes"
	run store_query "SELECT event_id, aggregate_id, aggregate_type, event_type, hash FROM event_log WHERE sequence = 1"
	assert_output "0190d3a0-0001-7000-8000-000000000001|$A|Order|OrderCreated|da76587c8712bd5cdef8dd52b23278680e4a0c5ac3ad7a5847cb1c93f9297bd3"
	run store_query "SELECT count(*) FROM event_log WHERE correlation_id = 'c-A'"
	assert_output 3
}

@test "UPDATE and DELETE on events are refused by the store" {
	cqrs-append -q < <(ev "$A")
	run store_query "UPDATE events SET data = '{\"x\":1}'"
	assert_failure
	assert_output --partial 'events are append-only'
	run store_query 'DELETE FROM events'
	assert_failure
	assert_output --partial 'events are append-only'
	run store_query 'SELECT data FROM events'
	assert_output '{}'
}

@test "a SQLite file that is not a cqrs store is refused with 65" {
	sqlite3 other.db 'CREATE TABLE t (x); INSERT INTO t VALUES (1)'
	run --separate-stderr cqrs-append -s other.db < <(ev "$A")
	assert_failure 65
	assert_equal "$stderr" 'cqrs-append: other.db: not a cqrs event store'
	sqlite3 app.db 'PRAGMA application_id = 42'
	run --separate-stderr cqrs-append -s app.db < <(ev "$A")
	assert_failure 65
	assert_equal "$stderr" 'cqrs-append: app.db: not a cqrs event store'
	run --separate-stderr cqrs-read -s other.db
	assert_failure 65
	assert_equal "$stderr" 'cqrs-read: other.db: not a cqrs event store'
	assert_equal "$(sqlite3 other.db 'SELECT group_concat(name) FROM sqlite_schema')" t
}

@test "a file that is not SQLite at all is refused with 65" {
	echo 'just text' >text.db
	run --separate-stderr cqrs-append -s text.db < <(ev "$A")
	assert_failure 65
	assert_regex "$stderr" '^cqrs-append: text.db: .*file is not a database$'
	assert_equal "$(cat text.db)" 'just text'
}

@test "a store with a newer schema is refused with 78" {
	sqlite_only "sets the file's user_version (pg.bats: a newer schema is 78)"
	cqrs-append -q < <(ev "$A")
	sqlite3 "$CQRS_STORE" 'PRAGMA user_version = 6'
	run --separate-stderr cqrs-append < <(ev "$A")
	assert_failure 78
	assert_equal "$stderr" "cqrs-append: $CQRS_STORE: store schema version 6 is newer than this tool's (5); upgrade cqrs-tools"
	run --separate-stderr cqrs-read
	assert_failure 78
	assert_equal "$(stored_count)" 1
}

@test "a busy store is exit 75 and nothing is stored" {
	sqlite_only "holds SQLite's file lock (pg.bats: a held append lock is 75)"
	cqrs-append -q < <(ev "$A")
	coproc LOCK { sqlite3 "$CQRS_STORE"; }
	holder=$LOCK_PID
	echo "BEGIN IMMEDIATE; SELECT 'locked';" >&"${LOCK[1]}"
	read -r -t 10 got <&"${LOCK[0]}"
	assert_equal "$got" locked
	CQRS_BUSY_TIMEOUT=100 run --separate-stderr cqrs-append < <(ev "$A")
	assert_failure 75
	assert_output ''
	assert_equal "$stderr" "cqrs-append: $CQRS_STORE: store is busy (another process holds the lock); try again
cqrs-append: nothing was stored"
	# a reader is not blocked by a writer
	CQRS_BUSY_TIMEOUT=100 run --separate-stderr cqrs-read
	assert_success
	assert_equal "${#lines[@]}" 1
	fd=${LOCK[1]}
	exec {fd}>&-
	wait "$holder"
	assert_equal "$(stored_count)" 1
	run --separate-stderr cqrs-append -q < <(ev "$A")
	assert_success
}
