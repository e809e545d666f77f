#!/usr/bin/env bats
# Upcasting (issue 12, cqrs-upcasters(5)): events stored by an older event
# schema are read at the newest version by every tool that consumes them,
# while the stored bytes, and so the chain, stay as they were.

bats_require_minimum_version 1.5.0
load test_helper

A=44444444-4444-4444-8444-444444444444
B=55555555-5555-4555-8555-555555555555
P1=11111111-1111-4111-8111-111111111111
PAY=33333333-3333-4333-8333-333333333333
ADDR='{"name":"Ann","street":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}'

setup_file() {
	command -v jq >/dev/null || fail "jq not found (Debian package jq)"
	command -v sqlite3 >/dev/null || fail "sqlite3 not found (Debian package sqlite3)"
}

# An envelope: event type $1, data $2, event_version $3 (1), aggregate $4
# ($A) of type $5 (Order).
ev() {
	printf '{"aggregate_id":"%s","aggregate_type":"%s","event_type":"%s","event_version":%s,"data":%s}\n' \
		"${4:-$A}" "${5:-Order}" "$1" "${3:-1}" "$2"
}

# data_of TEXT: the data of each event line of TEXT, one a line
data_of() {
	sed -E 's/.*"data":(.*),"metadata":.*/\1/' <<<"$1"
}

# [event_version, data] of every event in its current form
current() {
	cqrs-read --upcast "$@" | jq -c '[.event_version, .data]'
}

# An order of 2 x 29.99 of P1, reserved and paid, by the commands: ready to ship.
paid_order() {
	cqrs-command show "$P1" >/dev/null 2>&1 ||
		cqrs-command -q register-product --product "$P1" --sku SKU-1 --name Widget --quantity 1000
	cqrs-command -q create-order --order "$1" --customer cust-42 --item "$P1:2:29.99:SKU-1" \
		--currency USD --ship-to 'Ann,1 Main St,Springfield,12345,US'
	cqrs-command -q reserve-inventory --product "$P1" --order "$1" --quantity 2
	cqrs-command -q confirm-payment --order "$1" --payment "${2:-$PAY}" --amount 59.98
}

# OrderShipped as the release before event_version 2 stored it.
shipped_v1() {
	ev OrderShipped '{"tracking_number":"'"$2"'","carrier":"'"$3"'","shipped_at":"2026-01-16T14:00:00Z"}' 1 "$1"
}

@test "cqrs-read gives the stored form; --upcast the newest version; the chain still verifies" {
	shipped_v1 "$A" TRK1 DHL | cqrs-append -q
	assert_equal "$(cqrs-read | jq -c '[.event_version, .data]')" \
		'[1,{"tracking_number":"TRK1","carrier":"DHL","shipped_at":"2026-01-16T14:00:00Z"}]'
	assert_equal "$(current)" \
		'[2,{"shipment":{"tracking_number":"TRK1","carrier":"DHL"},"shipped_at":"2026-01-16T14:00:00Z"}]'
	# the hash printed is the stored event's, as is the row
	assert_equal "$(cqrs-read --upcast | jq -r .hash)" "$(cqrs-read | jq -r .hash)"
	assert_equal "$(sqlite3 "$CQRS_STORE" 'SELECT data FROM events')" \
		'{"tracking_number":"TRK1","carrier":"DHL","shipped_at":"2026-01-16T14:00:00Z"}'
	run --separate-stderr cqrs-read --verify
	assert_success
	# a copy of the stored form keeps every hash
	cqrs-read | CQRS_STORE=copy.db cqrs-append -q
	assert_equal "$(CQRS_STORE=copy.db cqrs-read | jq -r .hash)" "$(cqrs-read | jq -r .hash)"
}

@test "a store written by the old event schema is read by every tool" {
	paid_order "$A"
	paid_order "$B" 66666666-6666-4666-8666-666666666666
	shipped_v1 "$A" TRK-A DHL | cqrs-append -q
	# command: the aggregate folds the old event (shipped: no cancelling,
	# no shipping twice), and its new events are written at version 2
	run --separate-stderr cqrs-command cancel-order --order "$A" --reason late
	assert_failure 4
	run --separate-stderr cqrs-command ship-order --order "$A" --carrier UPS --tracking X
	assert_failure 4
	assert_equal "$(cqrs-command show "$A" | jq -r .state.status)" SHIPPED
	cqrs-command -q ship-order --order "$B" --carrier UPS --tracking TRK-B \
		--shipped-at 2026-01-17T10:00:00Z
	assert_equal "$(cqrs-read -e OrderShipped | jq -c '[.event_version, .data]')" \
		'[1,{"tracking_number":"TRK-A","carrier":"DHL","shipped_at":"2026-01-16T14:00:00Z"}]
[2,{"shipment":{"tracking_number":"TRK-B","carrier":"UPS"},"shipped_at":"2026-01-17T10:00:00.000000Z"}]'
	# read --upcast: both at version 2
	assert_equal "$(current -e OrderShipped)" \
		'[2,{"shipment":{"tracking_number":"TRK-A","carrier":"DHL"},"shipped_at":"2026-01-16T14:00:00Z"}]
[2,{"shipment":{"tracking_number":"TRK-B","carrier":"UPS"},"shipped_at":"2026-01-17T10:00:00.000000Z"}]'
	# project: the views read the version-2 shape from both
	run --separate-stderr cqrs-project --views views.db
	assert_success
	assert_equal "$(sqlite3 views.db "SELECT status, carrier, tracking_number FROM order_views ORDER BY tracking_number")" \
		'SHIPPED|DHL|TRK-A
SHIPPED|UPS|TRK-B'
	# and from events on stdin, in their stored form (the chain is checked)
	cqrs-read | cqrs-project --views stdin.db --stdin
	assert_equal "$(sqlite3 stdin.db "SELECT carrier FROM order_views ORDER BY carrier")" 'DHL
UPS'
	# query as of the old event's sequence
	seq=$(cqrs-read -e OrderShipped -n 1 | jq .sequence)
	run --separate-stderr cqrs-query --views views.db order "$A" --as-of "$seq"
	assert_success
	assert_equal "$(jq -r '[.status, .carrier, .tracking_number] | join(" ")' <<<"$output")" 'SHIPPED DHL TRK-A'
	# saga: a saga that starts on OrderShipped reads the shipment object
	cat >shipped.yaml <<'EOF'
saga: shipped
start:
  event_type: OrderShipped
  aggregate_type: Order
steps:
  - name: note
    emit:
      aggregate_type: Notice
      aggregate_id: ${uuid:notice}
      event_type: ShipmentNoticed
      data:
        carrier: ${event.data.shipment.carrier}
        tracking: ${event.data.shipment.tracking_number}
EOF
	run --separate-stderr cqrs-saga run -f shipped.yaml
	assert_success
	assert_equal "$(cqrs-read -e ShipmentNoticed | jq -c .data | sort)" '{"carrier":"DHL","tracking":"TRK-A"}
{"carrier":"UPS","tracking":"TRK-B"}'
	run --separate-stderr cqrs-read --verify
	assert_success
}

@test "the domain writes OrderShipped 2; the schema refuses a version-1 shape stored as version 2" {
	ev OrderShipped '{"shipment":{"tracking_number":"T","carrier":"C"}}' 2 | cqrs-append -q
	run --separate-stderr cqrs-append <<<"$(ev OrderShipped '{"tracking_number":"T","carrier":"C"}' 2)"
	assert_failure 65
	assert_equal "${stderr_lines[0]}" "cqrs-append: stdin:1: OrderShipped (event_version 2): data.shipment is missing"
	run --separate-stderr cqrs-append <<<"$(ev OrderShipped '{"shipment":{"carrier":"C"}}' 2)"
	assert_failure 65
	assert_equal "${stderr_lines[0]}" "cqrs-append: stdin:1: OrderShipped (event_version 2): data.shipment.tracking_number is missing"
	run --separate-stderr cqrs-append <<<"$(ev OrderShipped '{"shipment":"T C"}' 2)"
	assert_failure 65
	assert_equal "${stderr_lines[0]}" 'cqrs-append: stdin:1: OrderShipped (event_version 2): data.shipment is not an object: "T C"'
	assert_equal "$(stored_count)" 1
}

@test "a chain of three versions: events at 1, 2 and 3 all read at 3" {
	cat >notes.yaml <<'EOF'
upcasters:
  - event_type: NoteTaken
    from: 1
    steps:
      - rename: {from: text, to: body}
      - add: {field: priority, value: 0.10}
  - event_type: NoteTaken
    from: 2
    steps:
      - move: {from: author, to: meta.by}
      - convert: {field: priority, to: string}
EOF
	{
		ev NoteTaken '{"text":"one","author":"ann"}' 1 "$A" Note
		ev NoteTaken '{"body":"two","priority":2.50,"author":"bob"}' 2 "$A" Note
		ev NoteTaken '{"body":"three","priority":"1.0","meta":{"by":"cy"}}' 3 "$A" Note
	} | cqrs-append -q
	run --separate-stderr cqrs-read --upcast --upcasters notes.yaml
	assert_success
	assert_equal "$(jq -c '[.event_version, .data]' <<<"$output")" \
		'[3,{"body":"one","meta":{"by":"ann"},"priority":"0.10"}]
[3,{"body":"two","priority":"2.50","meta":{"by":"bob"}}]
[3,{"body":"three","priority":"1.0","meta":{"by":"cy"}}]'
	# without the file, a type nobody declares is as stored
	assert_equal "$(current | jq -c '.[0]' | tr '\n' ' ')" '1 2 3 '
}

# A random string in REPLY, 1 to 12 characters from a pool with JSON's
# awkward ones (quotes, backslashes, braces, UTF-8), from the seeded RANDOM;
# JSON in REPLY_JSON (no fork: the property tests make hundreds).
random_text() {
	local pool=('a' 'B' 'z' '7' ' ' '"' '\' '{' '}' '/' '-' 'é' '€' '.') s='x' i n=$((RANDOM % 12 + 1))
	for ((i = 0; i < n; i++)); do s+=${pool[RANDOM % ${#pool[@]}]}; done
	REPLY=${s}x
	s=${REPLY//\\/\\\\}
	REPLY_JSON="\"${s//\"/\\\"}\""
}

@test "property: upcast(what the old release stored) is what cqrs-command stores now, views included" {
	RANDOM=${UPCAST_SEED:-20261206}
	local n=40 i id carrier
	cqrs-command -q register-product --product "$P1" --sku SKU-1 --name Widget --quantity 1000
	# the commands in one batch: one process, one commit
	for ((i = 1; i <= n; i++)); do
		id=$(printf '%08d-0000-4000-8000-%012d' "$i" "$i")
		printf '{"command_id":"c%d","type":"CreateOrder","order_id":"%s","customer_id":"c","items":[{"product_id":"%s","quantity":2,"unit_price":29.99}],"currency":"USD","shipping_address":%s}\n' "$i" "$id" "$P1" "$ADDR"
		printf '{"command_id":"r%d","type":"ReserveInventory","order_id":"%s","product_id":"%s","quantity":2}\n' "$i" "$id" "$P1"
		printf '{"command_id":"p%d","type":"ConfirmPayment","order_id":"%s","payment_id":"%08d-1111-4111-8111-%012d","amount":59.98}\n' "$i" "$id" "$i" "$i"
		random_text
		carrier=$REPLY_JSON
		random_text
		printf '{"command_id":"s%d","type":"ShipOrder","order_id":"%s","carrier":%s,"tracking_number":%s,"shipped_at":"2026-0%d-1%dT10:00:00Z"}\n' \
			"$i" "$id" "$carrier" "$REPLY_JSON" $((RANDOM % 9 + 1)) $((i % 10))
	done >commands.ndjson
	run --separate-stderr cqrs-command -q commands.ndjson
	assert_success
	# the old release's store: the same history, OrderShipped at version 1
	# (the model of the old writer is the jq program); every other event
	# keeps its bytes (jq handles them as text); personal fields go over
	# decrypted, for old.db's appends encrypt them with its own keys
	# (cqrs-erase(1))
	cqrs-read --decrypt | jq -Rr 'if test("\"event_type\":\"OrderShipped\"") then
			fromjson | {event_id, aggregate_id, aggregate_type, event_type, event_version: 1,
				data: {tracking_number: .data.shipment.tracking_number,
				       carrier: .data.shipment.carrier, shipped_at: .data.shipped_at},
				metadata, timestamp} | tojson
		else sub("^\\{\"sequence\":[0-9]+,"; "{") | sub(",\"hash\":\"[0-9a-f]+\"\\}$"; "}") end' |
		CQRS_STORE=old.db cqrs-append -q
	assert_equal "$(CQRS_STORE=old.db cqrs-read -e OrderShipped | jq -s 'map(.event_version) | unique')" '[
  1
]'
	unhashed() { sed -E 's/,"hash":"[0-9a-f]+"\}$/}/'; }
	assert_equal "$(CQRS_STORE=old.db cqrs-read --upcast --decrypt | unhashed)" \
		"$(cqrs-read --decrypt | unhashed)"
	assert_equal "$(CQRS_STORE=old.db cqrs-read --upcast -e OrderShipped | wc -l)" "$n"
	# the views of both stores are the same
	cqrs-project --views new.db
	CQRS_STORE=old.db cqrs-project --views old-views.db
	q='SELECT * FROM order_views ORDER BY order_id'
	assert_equal "$(sqlite3 old-views.db "$q")" "$(sqlite3 new.db "$q")"
	assert_equal "$(sqlite3 new.db "SELECT count(*) FROM order_views WHERE status = 'SHIPPED' AND carrier LIKE 'x%x'")" "$n"
	CQRS_STORE=old.db cqrs-read --verify >/dev/null
}

# A random JSON number as text in REPLY: signs, exponents, zeros that
# doubles lose, more digits than a double holds.
random_number() {
	local forms=('0.10' '-0.0' '1e400' '1E+2' '-2.50e-3' '100000000000000000001' '0.1000000000000000055511151231257827')
	if ((RANDOM % 2)); then
		REPLY=${forms[RANDOM % ${#forms[@]}]}
	else
		local sign=''
		((RANDOM % 3)) || sign=-
		printf -v REPLY '%s%d.%0*d' "$sign" $((RANDOM * RANDOM)) $((RANDOM % 6 + 1)) $((RANDOM % 1000))
	fi
}

@test "property: declared steps keep every number's text (rename, move, add, convert)" {
	RANDOM=${UPCAST_SEED:-20261206}
	cat >nums.yaml <<'EOF'
upcasters:
  - event_type: Measured
    from: 1
    steps:
      - rename: {from: n, to: m}
      - move: {from: m, to: x.y}
      - move: {from: keep, to: x.keep}
      - add: {field: unit, value: 0.10}
      - convert: {field: s, to: number}
      - convert: {field: t, to: string}
EOF
	local i expected=()
	for ((i = 0; i < 60; i++)); do
		random_number && a=$REPLY
		random_number && b=$REPLY
		random_number && c=$REPLY
		ev Measured '{"n":'"$a"',"keep":['"$b"',{"k":'"$b"'}],"s":"'"$c"'","t":'"$a"'}' 1 "$A" Probe
		expected+=('{"x":{"y":'"$a"',"keep":['"$b"',{"k":'"$b"'}]},"s":'"$c"',"t":"'"$a"'","unit":0.10}')
	done >in.ndjson
	cqrs-append -q in.ndjson
	run --separate-stderr cqrs-read --upcast --upcasters nums.yaml
	assert_success
	# the data's bytes, cut from the line (jq would print the numbers again)
	assert_equal "$(data_of "$output")" "$(printf '%s\n' "${expected[@]}")"
}

# An exact decimal (at most 4 decimals) in 1/10000, in bash's integers, in REPLY
to_minor4() {
	local s=$1 neg='' int frac
	[[ $s == -* ]] && neg=- s=${s#-}
	int=${s%%.*} frac=
	[[ $s == *.* ]] && frac=${s#*.}
	frac=${frac}0000
	REPLY=$neg$((10#$int * 10000 + 10#${frac:0:4}))
}

@test "property: compute sum is exact, with the decimals of its most precise addend" {
	RANDOM=${UPCAST_SEED:-20261206}
	cat >sum.yaml <<'EOF'
upcasters:
  - event_type: Priced
    from: 1
    steps:
      - compute: {field: total, sum: [net, tax, fee.amount]}
EOF
	local i k s scale neg abs frac want=()
	for ((i = 0; i < 60; i++)); do
		local v=() d=()
		for k in 0 1 2; do
			d[k]=$((RANDOM % 5))
			v[k]=''
			((RANDOM % 4)) || v[k]=-
			v[k]+=$((RANDOM % 100000))
			printf -v frac '%0*d' "${d[k]}" $((RANDOM % (10 ** d[k])))
			((d[k] == 0)) || v[k]+=.$frac
		done
		ev Priced '{"net":'"${v[0]}"',"tax":'"${v[1]}"',"fee":{"amount":'"${v[2]}"'}}' 1 "$A" Bill
		# the model: the sum in 1/10000, printed with the most decimals given
		s=0
		for k in 0 1 2; do
			to_minor4 "${v[k]}"
			s=$((s + REPLY))
		done
		scale=${d[0]} neg=''
		((d[1] > scale)) && scale=${d[1]}
		((d[2] > scale)) && scale=${d[2]}
		((s < 0)) && neg=- && s=$((-s))
		printf -v abs '%d.%04d' $((s / 10000)) $((s % 10000))
		abs=${abs:0:$((${#abs} - 4 + scale))}
		abs=${abs%.}
		want+=("$neg$abs")
	done >in.ndjson
	cqrs-append -q in.ndjson
	run --separate-stderr cqrs-read --upcast --upcasters sum.yaml
	assert_success
	assert_equal "$(sed -E 's/.*,"total":([^,}]*)\},"metadata".*/\1/' <<<"$output")" "$(printf '%s\n' "${want[@]}")"
}

@test "split, compute with a template, remove, convert, optional" {
	cat >steps.yaml <<'EOF'
upcasters:
  - event_type: Registered
    from: 1
    steps:
      - split: {field: name, separator: " ", into: [first, last]}
      - compute: {field: label, template: "{last}, {first} ({id})"}
      - remove: {field: legacy}
      - convert: {field: vip, to: boolean}
      - convert: {field: age, to: number, optional: true}
      - move: {from: nick, to: profile.nick, optional: true}
EOF
	{
		ev Registered '{"id":7,"name":"Ann Lee Smith","legacy":{"a":1},"vip":"true","age":"0.50"}' 1 "$A" Person
		ev Registered '{"id":8.0,"name":"Bo Li","vip":false,"nick":"b\"o"}' 1 "$A" Person
	} | cqrs-append -q
	run --separate-stderr cqrs-read --upcast --upcasters steps.yaml
	assert_success
	assert_equal "$(data_of "$output")" \
		'{"id":7,"vip":true,"age":0.50,"first":"Ann","last":"Lee Smith","label":"Lee Smith, Ann (7)"}
{"id":8.0,"vip":false,"profile":{"nick":"b\"o"},"first":"Bo","last":"Li","label":"Li, Bo (8.0)"}'
}

@test "a key written with escapes is that key to every step (tests/fuzz/crashes/upcast/escaped-key-added-twice)" {
	cat >keys.yaml <<'EOF'
upcasters:
  - event_type: Keyed
    from: 1
    steps:
      - add: {field: key, value: 2}
      - rename: {from: name, to: nom}
      - move: {from: a.b, to: c}
EOF
	# the store keeps each key as written
	ev Keyed '{"k\u0065y":1,"n\u0061me":"x","\u0061":{"\u0062":true}}' 1 "$A" X | cqrs-append -q
	run --separate-stderr cqrs-read --upcast --upcasters keys.yaml
	assert_success
	data=$(data_of "$output")
	assert_equal "$data" '{"k\u0065y":1,"nom":"x","a":{},"c":true}'
	# data cqrs-append takes (strict JSON: no key twice)
	ev Keyed "$data" 2 "$A" X | CQRS_STORE=copy.db cqrs-append -q
}

@test "an event at a version no upcaster reaches: 78 naming it; command and project change nothing" {
	paid_order "$A"
	cqrs-project --views views.db
	before=$(sqlite3 views.db .dump)
	ev OrderShipped '{"shipment":{"tracking_number":"T","carrier":"C"},"by":"drone"}' 3 | cqrs-append -q
	seq=$(cqrs-read -n 1 -r | jq .sequence)
	msg="event $seq (OrderShipped, event_version 3): newer than the newest version the upcasters know (2): this release cannot read it"
	run --separate-stderr cqrs-read --upcast
	assert_failure 78
	assert_equal "$stderr" "cqrs-read: $msg"
	n=$(stored_count)
	run --separate-stderr cqrs-command cancel-order --order "$A" --reason late
	assert_failure 78
	assert_equal "$stderr" "cqrs-command: cancel-order: $msg"
	assert_equal "$(stored_count)" "$n"
	run --separate-stderr cqrs-project --views views.db
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: $msg"
	assert_equal "$(sqlite3 views.db .dump)" "$before"
	# the stored form is still read, and verifies
	run --separate-stderr cqrs-read
	assert_success
	run --separate-stderr cqrs-read --verify
	assert_success
	# a chain that starts above 1 does not reach 1 either
	cat >late.yaml <<'EOF'
upcasters:
  - event_type: Late
    from: 2
    steps:
      - add: {field: x, value: 1}
EOF
	ev Late '{}' 1 "$B" Thing | cqrs-append -q
	run --separate-stderr cqrs-read --upcast --upcasters late.yaml -e Late
	assert_failure 78
	assert_equal "$stderr" "cqrs-read: event $((seq + 1)) (Late, event_version 1): no upcaster reads event_version 1 (the oldest reads 2)"
}

@test "an upcaster that fails on an event: 65 naming it; nothing of the batch is applied" {
	cat >strict.yaml <<'EOF'
upcasters:
  - event_type: OrderShipped
    from: 2
    steps:
      - move: {from: shipped_at, to: shipment.at}
EOF
	paid_order "$A"
	cqrs-project --views views.db --upcasters strict.yaml
	before=$(sqlite3 views.db .dump)
	ev OrderShipped '{"shipment":{"tracking_number":"T","carrier":"C"}}' 2 | cqrs-append -q
	ev OrderConfirmed '{}' | cqrs-append -q
	seq=$(cqrs-read -e OrderShipped | jq .sequence)
	msg="event $seq (OrderShipped, event_version 2): the upcaster from event_version 2 ($PWD/strict.yaml:5:9) fails: data.shipped_at is missing"
	msg=${msg//$PWD\//}
	run --separate-stderr cqrs-read --upcast --upcasters strict.yaml
	assert_failure 65
	assert_equal "$stderr" "cqrs-read: $msg"
	run --separate-stderr cqrs-project --views views.db --upcasters strict.yaml
	assert_failure 65
	assert_equal "$stderr" "cqrs-project: $msg"
	assert_equal "$(sqlite3 views.db .dump)" "$before"
	n=$(stored_count)
	run --separate-stderr cqrs-command --upcasters strict.yaml cancel-order --order "$A" --reason late
	assert_failure 65
	assert_equal "$stderr" "cqrs-command: cancel-order: $msg"
	assert_equal "$(stored_count)" "$n"
	# without the file the shipped declarations read it
	run --separate-stderr cqrs-project --views views.db
	assert_success
	assert_equal "$(sqlite3 views.db "SELECT status, tracking_number FROM order_views")" 'SHIPPED|T'
}

@test "split, compute and convert say what they cannot do" {
	cat >bad.yaml <<'EOF'
upcasters:
  - event_type: E
    from: 1
    steps:
      - convert: {field: n, to: number}
EOF
	for data in '{"n":"ten"}' '{"n":true}' '{}'; do
		ev E "$data" 1 "$A" X
	done | cqrs-append -q
	run --separate-stderr cqrs-read --upcast --upcasters bad.yaml -n 1
	assert_failure 65
	assert_equal "$stderr" 'cqrs-read: event 1 (E, event_version 1): the upcaster from event_version 1 (bad.yaml:5:9) fails: data.n is not a number, or a string holding one: "ten"'
	run --separate-stderr cqrs-read --upcast --upcasters bad.yaml --from 3
	assert_failure 65
	assert_equal "$stderr" 'cqrs-read: event 3 (E, event_version 1): the upcaster from event_version 1 (bad.yaml:5:9) fails: data.n is missing'
	cat >sum.yaml <<'EOF'
upcasters:
  - event_type: F
    from: 1
    steps:
      - compute: {field: t, sum: [a, b]}
EOF
	ev F '{"a":1e2,"b":1}' 1 "$A" X | cqrs-append -q
	run --separate-stderr cqrs-read --upcast --upcasters sum.yaml -e F
	assert_failure 65
	assert_equal "$stderr" 'cqrs-read: event 4 (F, event_version 1): the upcaster from event_version 1 (sum.yaml:5:9) fails: data.a is not a number of at most 36 digits without an exponent: 1e2'
	# 36 whole digits and 6 decimals: 42 digits, past what the sum holds
	# (its 128 bits wrapped to -762432799085686020031503475623.562495 once;
	# tests/fuzz/crashes/upcast/sum-scale-overflow)
	ev F '{"a":456317891608179393818365317062525548,"b":0.000001}' 1 "$A" X | cqrs-append -q
	run --separate-stderr cqrs-read --upcast --upcasters sum.yaml -e F --from 5
	assert_failure 65
	assert_equal "$stderr" 'cqrs-read: event 5 (F, event_version 1): the upcaster from event_version 1 (sum.yaml:5:9) fails: the sum of t is out of range'
}

@test "a bad upcasters file: FILE:LINE:COL and 78, before anything is read" {
	shipped_v1 "$A" T C | cqrs-append -q
	check() { # $1: the file's text, $2: the message after "bad.yaml:"
		printf '%s\n' "$1" >bad.yaml
		run --separate-stderr cqrs-read --upcast --upcasters bad.yaml
		assert_failure 78
		assert_output ''
		assert_equal "$stderr" "cqrs-read: bad.yaml:$2"
	}
	head='upcasters:
  - event_type: E
    from: 1
    steps:'
	check "$head
      - frobnicate: {field: a}" "5:9: unknown operation 'frobnicate' (rename, move, add, remove, split, compute, convert or jq)"
	check "$head
      - move: {from: a}" "5:15: move needs 'to'"
	check "$head
      - move: {from: a, to: b, too: c}" "5:32: move has no 'too'"
	check "$head
      - rename: {from: a.b, to: c.d}" "5:33: to is a name in the same object, not a path"
	check "$head
      - remove: {field: a..b}" "5:25: field must be a field name, or names joined by '.' (letters, digits, '_', '-'), not 'a..b'"
	check "$head
      - add: {field: a, value_json: '{x'}" "5:37: value_json is not JSON: invalid JSON at column 2: expected a string key in object"
	check "$head
      - convert: {field: a, to: date}" "5:33: to must be string, number or boolean, not 'date'"
	check "$head
      - add: {field: a, value: 1}
  - event_type: E
    from: 1
    steps:
      - remove: {field: a}" "7:11: E from event_version 1 is declared already at bad.yaml:2"
	check "$head
      - remove: {field: a}
  - event_type: E
    from: 3
    steps:
      - remove: {field: a}" "6: E from event_version 3: no upcaster brings event_version 2 to it"
	check 'upcasters:
  - event_type: E
    from: 0
    steps: []' "3:11: from must be the event_version it reads (1, 2, ...), not '0'"
	check 'upcasters: [' "2:1: did not find expected node content (while parsing a flow node on line 2)"
	check 'upcaster: []' "1:1: an upcasters file has no 'upcaster'"
	check "$head
      - jq: {program: '.a |'}" "5:23: jq: syntax error, unexpected \$end (Unix shell quoting issues?) at <top-level>, line 1:"
	# a file that is not there: 66
	run --separate-stderr cqrs-read --upcast --upcasters nowhere.yaml
	assert_failure 66
	# usage: --upcasters goes with --upcast, and with --as-of
	run --separate-stderr cqrs-read --upcasters bad.yaml
	assert_failure 64
	assert_equal "${stderr_lines[0]}" "cqrs-read: --upcasters goes with --upcast"
	run --separate-stderr cqrs-query --upcasters bad.yaml order "$A"
	assert_failure 64
	assert_equal "${stderr_lines[0]}" "cqrs-query: --upcasters goes with --as-of"
	run --separate-stderr cqrs-read --verify --upcast
	assert_failure 64
}

@test "jq: a program for what the steps cannot say; numbers jq would print again are refused unless declared" {
	cat >jq.yaml <<'EOF'
upcasters:
  - event_type: Counted
    from: 1
    steps:
      - jq: {program: '.items |= map({sku: .}) | .count = (.items | length)'}
      - rename: {from: count, to: n}
  - event_type: Priced
    from: 1
    steps:
      - jq: {program: '.price_cents = (.price * 100 | floor)', numbers: reprinted}
EOF
	{
		ev Counted '{"items":["a","b"],"note":"x\u00e9"}' 1 "$A" X
		ev Counted '{"items":["c"],"weight":0.10}' 1 "$A" X
		ev Priced '{"price":0.10}' 1 "$A" X
	} | cqrs-append -q
	run --separate-stderr cqrs-read --upcast --upcasters jq.yaml -n 1
	assert_success
	assert_equal "$(data_of "$output")" '{"items":[{"sku":"a"},{"sku":"b"}],"note":"xé","n":2}'
	# 0.10 would come out as 0.1: refused, naming the number
	run --separate-stderr cqrs-read --upcast --upcasters jq.yaml --from 2 -n 1
	assert_failure 65
	assert_equal "$stderr" "cqrs-read: event 2 (Counted, event_version 1): the upcaster from event_version 1 (jq.yaml:5:9) fails: the number 0.10 would not keep its text through jq (it holds numbers as doubles): the step does not declare 'numbers: reprinted'"
	# declared: jq's text
	run --separate-stderr cqrs-read --upcast --upcasters jq.yaml --from 3
	assert_success
	assert_equal "$(data_of "$output")" '{"price":0.1,"price_cents":10}'
	# an error, or something other than one object, is 65
	for p in 'error("no way")' '.[]' '[.]' 'empty'; do
		printf 'upcasters:\n  - event_type: Counted\n    from: 1\n    steps:\n      - jq: {program: %s}\n' "'$p'" >j2.yaml
		run --separate-stderr cqrs-read --upcast --upcasters j2.yaml -n 1
		assert_failure 65
	done
	assert_equal "$stderr" "cqrs-read: event 1 (Counted, event_version 1): the upcaster from event_version 1 (j2.yaml:5:9) fails: jq: the program gave no output"
}

@test "libjq is loaded only when a file declares a jq step" {
	shipped_v1 "$A" T C | cqrs-append -q
	printf 'upcasters:\n  - event_type: X\n    from: 1\n    steps:\n      - jq: {program: .}\n' >j.yaml
	run env LD_DEBUG=libs cqrs-read --upcast
	assert_success
	refute_output --partial libjq
	run env LD_DEBUG=libs cqrs-read --upcast --upcasters j.yaml
	assert_success
	assert_output --partial libjq.so.1
}

@test "without the shipped upcasters file (not installed): tools run until an old event needs it, then 78 naming it" {
	paid_order "$A"
	mkdir empty-share
	export CQRS_SHAREDIR=$PWD/empty-share
	# the command side meets no old event: it works, and writes version 2
	run --separate-stderr cqrs-command -q ship-order --order "$A" --carrier UPS --tracking TRK-A
	assert_success
	assert_equal "$(cqrs-read -e OrderShipped | jq -c .event_version)" 2
	assert_equal "$(cqrs-read --upcast -e OrderShipped | jq -c .event_version)" 2
	# a version-1 event is not passed on as if it were current
	shipped_v1 "$B" TRK-B DHL | cqrs-append -q
	seq=$(cqrs-read -e OrderShipped | jq 'select(.event_version == 1) | .sequence')
	want="event $seq (OrderShipped, event_version 1): no upcaster reads event_version 1: the shipped upcasters, $PWD/empty-share/upcasters/orders.yaml, are missing (install cqrs-tools, or set CQRS_SHAREDIR)"
	run --separate-stderr cqrs-read --upcast -e OrderShipped
	assert_failure 78
	assert_equal "$stderr" "cqrs-read: $want"
	run --separate-stderr cqrs-command show "$B"
	assert_failure 78
	assert_equal "$stderr" "cqrs-command: $want"
}
