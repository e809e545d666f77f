#!/usr/bin/env bats
# The one order lifecycle (issue 8) on the command side: stock held per
# order, shipments that consume it, reservations only for open orders,
# goals already reached (if_needed), a person's decisions (automated), the
# design's fields, CancelPayment, zero amounts, --dry-run, and the table
# that cqrs-events(7) is printed from.  Each case failed before.

bats_require_minimum_version 1.5.0
load test_helper

P1=11111111-1111-4111-8111-111111111111 # products
P2=12121212-1212-4212-8212-121212121212
O1=22222222-2222-4222-8222-222222222222 # orders
O2=23232323-2323-4323-8323-232323232323
PAY=33333333-3333-4333-8333-333333333333 # payments
ADDR='Ann Smith,1 Main St,Springfield,12345,US'

year() { date -u +%Y; }

product() {
	cqrs-command -q register-product --product "$1" --sku "$2" --name "Widget $2" \
		--quantity "${3:-10}"
}

# Order $1 for 2 x 29.99 of P1 (59.98 USD); with $2, also 1 x 5.00 of P2.
order() {
	local more=()
	[ -z "${2:-}" ] || more=(--item "$P2:1:5.00:SKU-2")
	cqrs-command -q create-order --order "$1" --customer cust-42 --item "$P1:2:29.99:SKU-1" \
		"${more[@]}" --currency USD --ship-to "$ADDR"
}

reserve() {
	cqrs-command -q reserve-inventory --product "$1" --order "$2" --quantity "$3"
}

pay() {
	cqrs-command -q confirm-payment --order "$1" --payment "$PAY" --amount "${2:-59.98}"
}

# The command must be rejected with code $1 and reason $2 and store nothing.
rejects() {
	local code=$1 reason=$2 before
	shift 2
	before=$(stored_count)
	run --separate-stderr cqrs-command "$@"
	assert_not_signalled
	assert_failure 4
	assert_equal "$stderr" ''
	assert_equal "$(jq -r .status <<<"$output")" rejected
	assert_equal "$(jq -r .code <<<"$output")" "$code"
	assert_equal "$(jq -r .reason <<<"$output")" "$reason"
	assert_equal "$(stored_count)" "$before"
}

# The NDJSON command $1 must be bad input (65) with message $2.
refuses() {
	local before
	before=$(stored_count)
	run --separate-stderr cqrs-command <<<"$1"
	assert_not_signalled
	assert_failure 65
	assert_output ''
	assert_equal "$stderr" "cqrs-command: stdin:1: $2"
	assert_equal "$(stored_count)" "$before"
}

stock() {
	cqrs-command show "$1" | jq -c '.state | [.on_hand, .reserved, .available, .shipped, .received]'
}

# --- stock held per order ----------------------------------------------------------

@test "no oversell: a release for a shipped order is refused, and its units stay shipped" {
	product "$P1" SKU-1 10
	order "$O1"
	reserve "$P1" "$O1" 2
	pay "$O1"
	cqrs-command -q ship-order --order "$O1" --carrier FedEx --tracking T1
	assert_equal "$(stock "$P1")" '[8,0,8,2,10]'
	rejects nothing_held "order ORD-$(year)-000001 holds no SKU-1" \
		release-inventory --product "$P1" --order "$O1" --quantity 2
	order "$O2"
	rejects insufficient_stock "cannot reserve 10 of SKU-1: only 8 available" \
		reserve-inventory --product "$P1" --order "$O2" --quantity 10
	assert_equal "$(stock "$P1")" '[8,0,8,2,10]'
}

@test "a release for an order that reserved nothing frees nobody else's units" {
	product "$P1" SKU-1 10
	order "$O1"
	order "$O2"
	reserve "$P1" "$O1" 3
	rejects nothing_held "order ORD-$(year)-000002 holds no SKU-1" \
		release-inventory --product "$P1" --order "$O2" --quantity 1
	rejects not_enough_held "cannot release 4 of SKU-1: order ORD-$(year)-000001 holds 3" \
		release-inventory --product "$P1" --order "$O1" --quantity 4
	assert_equal "$(cqrs-command show "$P1" | jq -c '.state.holds')" '[{"order_id":"'$O1'","quantity":3}]'
	# without a quantity: all the order holds; then the entry is gone
	run --separate-stderr cqrs-command release-inventory --product "$P1" --order "$O1"
	assert_success
	assert_equal "$(jq -c '.events[0].data' <<<"$output")" '{"order_id":"'$O1'","quantity":3}'
	assert_equal "$(cqrs-command show "$P1" | jq -c '.state | [.reserved, .holds]')" '[0,[]]'
}

@test "a reservation needs an order that exists and is open" {
	product "$P1" SKU-1 10
	rejects not_found "cannot reserve for order $O1: it does not exist" \
		reserve-inventory --product "$P1" --order "$O1" --quantity 1
	order "$O1"
	cqrs-command -q cancel-order --order "$O1" --reason r
	rejects not_allowed "cannot reserve for order ORD-$(year)-000001: it was cancelled" \
		reserve-inventory --product "$P1" --order "$O1" --quantity 1
	order "$O2"
	reserve "$P1" "$O2" 2
	pay "$O2"
	cqrs-command -q ship-order --order "$O2" --carrier F --tracking T
	rejects not_allowed "cannot reserve for order ORD-$(year)-000002: it has been shipped" \
		reserve-inventory --product "$P1" --order "$O2" --quantity 1
	# an id of another aggregate type is no order either
	rejects not_found "cannot reserve for order $P1: it does not exist" \
		reserve-inventory --product "$P1" --order "$P1" --quantity 1
}

@test "no shipping without the stock reserved for the order" {
	product "$P1" SKU-1 10
	product "$P2" SKU-2 10
	order "$O1" with-p2
	pay "$O1" 64.98
	rejects not_enough_held "cannot ship order ORD-$(year)-000001: it holds 0 of product $P1, and needs 2" \
		ship-order --order "$O1" --carrier F --tracking T
	reserve "$P1" "$O1" 2
	rejects not_enough_held "cannot ship order ORD-$(year)-000001: it holds 0 of product $P2, and needs 1" \
		ship-order --order "$O1" --carrier F --tracking T
	# a product the order names but nobody registered holds nothing either
	cqrs-command -q create-order --order "$O2" --customer c --item "$PAY:1:1.00:GHOST" \
		--currency USD --ship-to "$ADDR"
	cqrs-command -q confirm-payment --order "$O2" --payment "$PAY" --amount 1.00
	rejects not_enough_held "cannot ship order ORD-$(year)-000002: it holds 0 of product $PAY, and needs 1" \
		ship-order --order "$O2" --carrier F --tracking T
}

@test "ShipOrder consumes the reservations in one transaction, and gives back any extra" {
	product "$P1" SKU-1 10
	product "$P2" SKU-2 10
	order "$O1" with-p2
	reserve "$P1" "$O1" 3
	reserve "$P2" "$O1" 1
	pay "$O1" 64.98
	run --separate-stderr cqrs-command ship-order --order "$O1" --carrier F --tracking T
	assert_success
	assert_equal "$(jq -c '[.events[] | [.aggregate_type, .event_type, .data.quantity]]' <<<"$output")" \
		'[["Order","OrderShipped",null],["Inventory","InventoryShipped",2],["Inventory","InventoryReleased",1],["Inventory","InventoryShipped",1]]'
	# one transaction: consecutive sequences, one command_id as causation
	assert_equal "$(jq -c '[.events[].sequence] | (.[-1] - .[0])' <<<"$output")" 3
	assert_equal "$(jq -r '[.events[].metadata.causation_id] | unique | length' <<<"$output")" 1
	assert_equal "$(stock "$P1")" '[8,0,8,2,10]'
	assert_equal "$(stock "$P2")" '[9,0,9,1,10]'
	# the shipped order holds nothing: its cancellation is refused as before
	rejects not_allowed "cannot cancel order ORD-$(year)-000001: it has already been shipped" \
		cancel-order --order "$O1" --reason late
}

@test "old snapshots (format 1) are ignored, not misread" {
	cp "$FIXTURES/release-0.1/events.db" "$CQRS_STORE"
	id=3c9a7b1e-4d2f-4e8a-b6c5-0f1e2d3c4b5a
	run --separate-stderr cqrs-command show "$id"
	assert_success
	assert_equal "$(jq -c .snapshot_version <<<"$output")" 0
	with=$(jq -c '.state' <<<"$output")
	assert_equal "$(cqrs-command --ignore-snapshots show "$id" | jq -c .state)" "$with"
	# invariants hold on what the old history folds to
	jq -e '.state | .on_hand >= 0 and .reserved >= 0 and .available >= 0 and .shipped <= .received' <<<"$output"
}

# --- goals already reached, and a person's decisions --------------------------------

@test "if_needed: a goal already reached is unchanged (exit 0, no events), also when replayed" {
	product "$P1" SKU-1 10
	order "$O1"
	cqrs-command -q confirm-order --order "$O1"
	line='{"command_id":"i-1","type":"ConfirmOrder","order_id":"'$O1'","if_needed":true}'
	before=$(stored_count)
	run --separate-stderr cqrs-command <<<"$line"
	assert_success
	assert_output '{"command_id":"i-1","type":"ConfirmOrder","status":"unchanged","aggregate_id":"'$O1'"}'
	run --separate-stderr cqrs-command <<<"$line"
	assert_success
	assert_output '{"command_id":"i-1","type":"ConfirmOrder","status":"unchanged","aggregate_id":"'$O1'"}'
	# release of nothing, reservation already held, cancel of a cancelled order
	run --separate-stderr cqrs-command <<<'{"command_id":"i-2","type":"ReleaseInventory","product_id":"'$P1'","order_id":"'$O1'","if_needed":true}'
	assert_success
	assert_equal "$(jq -r .status <<<"$output")" unchanged
	reserve "$P1" "$O1" 2
	before=$(stored_count)
	run --separate-stderr cqrs-command <<<'{"command_id":"i-3","type":"ReserveInventory","product_id":"'$P1'","order_id":"'$O1'","quantity":2,"if_needed":true}'
	assert_success
	assert_equal "$(jq -r .status <<<"$output")" unchanged
	assert_equal "$(stored_count)" "$before"
	cqrs-command -q cancel-order --order "$O1" --reason r
	run --separate-stderr cqrs-command <<<'{"command_id":"i-4","type":"CancelOrder","order_id":"'$O1'","reason":"again","if_needed":true}'
	assert_success
	assert_equal "$(jq -r .status <<<"$output")" unchanged
	# without if_needed, people get the rejection
	rejects already_done "order ORD-$(year)-000001 is already cancelled" \
		cancel-order --order "$O1" --reason again
	refuses '{"command_id":"i-5","type":"CancelOrder","order_id":"'$O1'","reason":"r","if_needed":"yes"}' \
		"field 'if_needed' must be true or false"
}

@test "automated: the saga's confirmation says so; it may not cancel what a person confirmed" {
	order "$O1"
	cqrs-command -q confirm-order --order "$O1"
	run --separate-stderr cqrs-command <<<'{"command_id":"a-1","type":"CancelOrder","order_id":"'$O1'","reason":"no stock","automated":true,"if_needed":true}'
	assert_failure 4
	assert_equal "$(jq -r .code <<<"$output")" person_decision
	assert_equal "$(jq -r .reason <<<"$output")" \
		"order ORD-$(year)-000001 was confirmed by a person: it is left to a person, not cancelled automatically"
	order "$O2"
	run --separate-stderr cqrs-command <<<'{"command_id":"a-2","type":"ConfirmOrder","order_id":"'$O2'","automated":true}'
	assert_success
	assert_equal "$(jq -c '.events[0].data' <<<"$output")" '{"by":"saga"}'
	run --separate-stderr cqrs-command <<<'{"command_id":"a-3","type":"CancelOrder","order_id":"'$O2'","reason":"no stock","automated":true}'
	assert_success
	assert_equal "$(jq -r '.events[0].data.by' <<<"$output")" saga
	assert_equal "$(cqrs-command show "$O2" | jq -c '.state | [.status, .confirmed_by]')" '["CANCELLED","saga"]'
	refuses '{"command_id":"a-4","type":"ConfirmOrder","order_id":"'$O2'","automated":1}' \
		"field 'automated' must be true or false"
}

# --- payments ------------------------------------------------------------------------

@test "CancelPayment voids what is open and refunds what was captured, once" {
	cqrs-command -q authorize-payment --payment "$PAY" --order "$O1" --amount 10.00 --currency USD \
		--payment-method card
	cqrs-command -q capture-payment --payment "$PAY" --amount 4.00
	run --separate-stderr cqrs-command cancel-payment --payment "$PAY" --reason 'order cancelled'
	assert_success
	assert_equal "$(jq -c '[.events[] | [.event_type, .data.amount]]' <<<"$output")" \
		'[["AuthorizationVoided",null],["PaymentRefunded",4]]'
	assert_equal "$(cqrs-command show "$PAY" | jq -c '.state | [.captured, .refunded, .voided, .payment_method]')" \
		'[4,4,true,"card"]'
	rejects already_done "payment $PAY has nothing left to void or refund" cancel-payment --payment "$PAY"
	run --separate-stderr cqrs-command <<<'{"command_id":"p-1","type":"CancelPayment","payment_id":"'$PAY'","if_needed":true}'
	assert_success
	assert_equal "$(jq -r .status <<<"$output")" unchanged
}

@test "zero and -0 amounts are refused everywhere; a price may be 0, never -0" {
	product "$P1" SKU-1
	rejects invalid "amount must be positive, not 0" \
		authorize-payment --payment "$PAY" --order "$O1" --amount 0 --currency USD
	rejects invalid "amount must not be negative: -0" \
		authorize-payment --payment "$PAY" --order "$O1" --amount -0 --currency USD
	rejects invalid "amount must not be negative: -0.00" \
		authorize-payment --payment "$PAY" --order "$O1" --amount -0.00 --currency USD
	cqrs-command -q authorize-payment --payment "$PAY" --order "$O1" --amount 1 --currency USD
	rejects invalid "amount must not be negative: -0" capture-payment --payment "$PAY" --amount -0
	rejects invalid "amount must be positive, not 0.00" capture-payment --payment "$PAY" --amount 0.00
	rejects invalid "item 1: unit price must not be negative: -0" \
		create-order --customer c --item "$P1:1:-0" --currency USD --ship-to "$ADDR"
	run --separate-stderr cqrs-command create-order --customer c --item "$P1:1:0" --currency USD --ship-to "$ADDR"
	assert_success
}

# --- the design's fields -------------------------------------------------------------

@test "the design's fields: payment_method, the address with state and zip, total_amount, price" {
	product "$P1" SKU-1
	run --separate-stderr cqrs-command <<<'{"command_id":"d-1","type":"CreateOrder","order_id":"'$O1'","customer_id":"c","items":[{"product_id":"'$P1'","quantity":2,"price":29.99}],"currency":"USD","total_amount":59.98,"payment_method":"card","shipping_address":{"street":"1 Main St","city":"Portland","state":"OR","zip":"97201","country":"US"}}'
	assert_success
	# the address as the domain reads it (stored encrypted: cqrs-erase(1))
	assert_equal "$(cqrs-read --decrypt -a "$O1" | jq -c '.data | del(.created_at, .order_number)')" \
		'{"customer_id":"c","items":[{"product_id":"'$P1'","sku":"SKU-1","quantity":2,"unit_price":29.99}],"currency":"USD","total":59.98,"shipping_address":{"street":"1 Main St","city":"Portland","state":"OR","postal_code":"97201","country":"US"},"payment_method":"card"}'
	jq -e '.events[0].data.created_at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T")' <<<"$output"
	run --separate-stderr cqrs-command confirm-payment --order "$O1" --payment "$PAY" --amount 59.98 --payment-method card
	assert_success
	assert_equal "$(jq -r '.events[0].data.payment_method' <<<"$output")" card
	jq -e '.events[0].data.processed_at | length > 0' <<<"$output"
	run --separate-stderr cqrs-command authorize-payment --order "$O1" --amount 59.98 --currency USD --payment-method card
	assert_equal "$(jq -r '.events[0].data.payment_method' <<<"$output")" card
	run --separate-stderr cqrs-command cancel-order --order "$O1" --reason r
	jq -e '.events[0].data.cancelled_at | length > 0' <<<"$output"
	# the address in parts at the prompt
	run --separate-stderr cqrs-command create-order --customer c --item "$P1:1:1.00" --currency USD \
		--recipient Ann --street '1 Main St' --city Portland --state OR --zip 97201 --country US --total 1.00
	assert_success
	agg=$(jq -r .aggregate_id <<<"$output")
	assert_equal "$(cqrs-read --decrypt -a "$agg" | jq -c .data.shipping_address)" \
		'{"name":"Ann","street":"1 Main St","city":"Portland","state":"OR","postal_code":"97201","country":"US"}'
	rejects invalid "total 2.00 is not the sum of the items (1.00)" \
		create-order --customer c --item "$P1:1:1.00" --currency USD --ship-to "$ADDR" --total 2.00
}

@test "the design's fields: an alias and its name together are bad input" {
	product "$P1" SKU-1
	refuses '{"command_id":"d-2","type":"CreateOrder","customer_id":"c","items":[{"product_id":"'$P1'","quantity":1,"unit_price":1,"price":1}],"currency":"USD","shipping_address":{"street":"s","city":"c","zip":"1","country":"US"}}' \
		"items[1]: unit_price given twice (price is its alias)"
	refuses '{"command_id":"d-3","type":"CreateOrder","customer_id":"c","items":[{"product_id":"'$P1'","quantity":1,"unit_price":1}],"currency":"USD","shipping_address":{"street":"s","city":"c","zip":"1","postal_code":"1","country":"US"}}' \
		"shipping_address: postal_code given twice (zip is its alias)"
	refuses '{"command_id":"d-4","type":"CreateOrder","customer_id":"c","items":[{"product_id":"'$P1'","quantity":1,"unit_price":1}],"currency":"USD","total":1,"total_amount":1,"shipping_address":{"street":"s","city":"c","zip":"1","country":"US"}}' \
		"field 'total' given twice"
	refuses '{"command_id":"d-5","type":"CreateOrder","customer_id":"c","items":[{"product_id":"'$P1'","quantity":1,"unit_price":1}],"currency":"USD","shipping_address":{"city":"c","zip":"1","country":"US"}}' \
		"shipping_address: missing field 'street'"
}

@test "the address flags: --ship-to or the parts, not both, and the parts needed" {
	run --separate-stderr cqrs-command create-order --customer c --item "$P1:1:1.00" --currency USD \
		--ship-to "$ADDR" --city Portland
	assert_failure 64
	assert_equal "$stderr" "cqrs-command: create-order takes --ship-to or the address in parts, not both"
	run --separate-stderr cqrs-command create-order --customer c --item "$P1:1:1.00" --currency USD \
		--street s --zip 1 --country US
	assert_failure 64
	assert_equal "$stderr" "cqrs-command: create-order needs --ship-to or --city"
	[ ! -e "$CQRS_STORE" ]
}

# --- --dry-run -----------------------------------------------------------------------

@test "--dry-run decides and prints, and stores nothing" {
	product "$P1" SKU-1 5
	order "$O1"
	before=$(sqlite3 "$CQRS_STORE" 'SELECT (SELECT count(*) FROM events) || "/" || (SELECT count(*) FROM processed_messages) || "/" || (SELECT group_concat(value) FROM counters)')
	{
		echo '{"command_id":"n-1","type":"ReserveInventory","product_id":"'$P1'","order_id":"'$O1'","quantity":3}'
		echo '{"command_id":"n-2","type":"ReserveInventory","product_id":"'$P1'","order_id":"'$O1'","quantity":3}'
		echo '{"command_id":"n-3","type":"Nonsense"}'
		echo '{"command_id":"n-4","type":"CreateOrder","customer_id":"c","items":[{"product_id":"'$P1'","quantity":1,"unit_price":1}],"currency":"USD","shipping_address":{"street":"s","city":"c","zip":"1","country":"US"}}'
	} >in.ndjson
	run --separate-stderr cqrs-command --dry-run in.ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-command: in.ndjson:3: unknown command type 'Nonsense'"
	# the second sees the first's effect, as in a real run
	assert_equal "$(jq -r '[.command_id, .status, .stored, .code // ""] | @tsv' <<<"$output")" "n-1	accepted	false	
n-2	rejected	false	insufficient_stock
n-4	accepted	false	"
	assert_equal "$(sqlite3 "$CQRS_STORE" 'SELECT (SELECT count(*) FROM events) || "/" || (SELECT count(*) FROM processed_messages) || "/" || (SELECT group_concat(value) FROM counters)')" "$before"
	# accepted alone: 0; rejected: 4; the same commands then really go in
	run --separate-stderr cqrs-command -n reserve-inventory --product "$P1" --order "$O1" --quantity 1
	assert_success
	assert_equal "$(jq -r .stored <<<"$output")" false
	run --separate-stderr cqrs-command -n reserve-inventory --product "$P1" --order "$O1" --quantity 9
	assert_failure 4
	assert_equal "$(sqlite3 "$CQRS_STORE" 'SELECT (SELECT count(*) FROM events) || "/" || (SELECT count(*) FROM processed_messages) || "/" || (SELECT group_concat(value) FROM counters)')" "$before"
	run --separate-stderr cqrs-command in.ndjson
	assert_failure 65
	assert_equal "$(jq -r '.stored // "stored"' <<<"$output" | sort -u)" stored
	assert_equal "$(jq -r '.events[0].data.order_number // empty' <<<"$output")" "ORD-$(year)-000002"
}

@test "--dry-run on a store that does not exist decides against an empty one and creates nothing" {
	mkdir tmp
	run --separate-stderr env TMPDIR="$PWD/tmp" cqrs-command -n -s new/events.db register-product --sku S --name N
	assert_success
	assert_equal "$(jq -r '[.status, .stored, .events[0].sequence] | @tsv' <<<"$output")" "accepted	false	1"
	[ ! -e new ] || fail "the dry run made new/: $(ls -la new)"
	assert_equal "$(ls -A tmp)" ''
	# and the default store, on a fresh account, is not made either
	run --separate-stderr env -u CQRS_STORE HOME="$PWD/fresh-home" XDG_DATA_HOME= TMPDIR="$PWD/tmp" \
		cqrs-command -n register-product --sku S --name N
	assert_success
	[ ! -e fresh-home ] || fail "the dry run made $(find fresh-home)"
	run --separate-stderr cqrs-command -n -s new/events.db confirm-order --order "$O1"
	assert_failure 4
	assert_equal "$(jq -r .code <<<"$output")" not_found
}

# --- the table -----------------------------------------------------------------------

@test "cqrs-events(7)'s LIFECYCLE and man/lifecycle.dot are what the table prints" {
	page="$CQRS_TOP_SRCDIR/man/cqrs-events.7"
	sed -n '/^\.\\" BEGIN LIFECYCLE$/,/^\.\\" END LIFECYCLE$/p' "$page" | sed '1d;$d' >checked-in.man
	cqrs-command lifecycle --format man >table.man
	diff -u checked-in.man table.man || fail "cqrs-events(7) differs from the table: run make lifecycle"
	cqrs-command lifecycle --format dot >table.dot
	diff -u "$CQRS_TOP_SRCDIR/man/lifecycle.dot" table.dot || fail "lifecycle.dot differs: run make lifecycle"
	# the NDJSON form: one object a line, every command and code listed
	run --separate-stderr cqrs-command lifecycle
	assert_success
	jq -e . <<<"$output" >/dev/null
	assert_equal "$(jq -r 'select(.kind == "command") | .type' <<<"$output" | wc -l)" 14
	assert_equal "$(jq -c 'select(.type == "ShipOrder") | .allowed' <<<"$output")" '["PAID"]'
	jq -e 'select(.kind == "code" and .code == "person_decision")' <<<"$output" >/dev/null
}

@test "lifecycle: usage errors" {
	run --separate-stderr cqrs-command lifecycle --format xml
	assert_failure 64
	assert_equal "$stderr" "cqrs-command: --format needs man, dot or ndjson: 'xml'"
	run --separate-stderr cqrs-command lifecycle extra
	assert_failure 64
	assert_equal "${stderr%%$'\n'*}" "cqrs-command: unexpected operand 'extra'"
	run --separate-stderr cqrs-command --format dot show "$O1"
	assert_failure 64
	assert_equal "$stderr" "cqrs-command: --format belongs to lifecycle"
}
