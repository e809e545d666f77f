#!/usr/bin/env bats
# cqrs-command: every command, every business rule (each with a test that
# tries to break it), the result line, idempotency, metadata, snapshots,
# bad input, usage and the failure paths.

bats_require_minimum_version 1.5.0
load test_helper

P1=11111111-1111-4111-8111-111111111111 # products
P2=12121212-1212-4212-8212-121212121212
O1=22222222-2222-4222-8222-222222222222 # orders
O2=23232323-2323-4323-8323-232323232323
PAY=33333333-3333-4333-8333-333333333333 # payments
PAY2=34343434-3434-4434-8434-343434343434
ADDR='Ann Smith,1 Main St,Springfield,12345,US'
FAULT_LIB="${CQRS_TOP_BUILDDIR:?}/tests/fault/libfault.so"

year() { date -u +%Y; }

# Another store of the test's, named $1: a file beside the test's store,
# or a schema of its own on PostgreSQL (make check-postgres).
store_named() {
	if on_sqlite; then
		echo "$PWD/$1.db"
	else
		pg_store "t${BATS_TEST_NUMBER}_$1"
	fi
}

# named_query NAME SQL: store_query on the store named NAME.
named_query() {
	if on_sqlite; then
		sqlite3 "$PWD/$1.db" "$2"
	else
		pg_sql -c "SET search_path TO t${BATS_TEST_NUMBER}_$1; $2"
	fi
}

# True when the test's store was never created.
store_absent() {
	if on_sqlite; then
		[ ! -e "$CQRS_STORE" ]
	else
		[ "$(pg_sql -c "SELECT count(*) FROM pg_namespace WHERE nspname = 't$BATS_TEST_NUMBER'")" = 0 ]
	fi
}

# A product $1 with sku $2 and $3 units in stock.
product() {
	cqrs-command -q register-product --product "$1" --sku "$2" --name "Widget $2" \
		--quantity "${3:-10}"
}

# Order $1 for 2 x 29.99 of product P1 (total 59.98 USD).
order() {
	cqrs-command -q create-order --order "$1" --customer cust-42 --item "$P1:2:29.99:SKU-1" \
		--currency USD --ship-to "$ADDR"
}

# Order $1, its 2 units of P1 reserved (P1 registered with 10 if it is
# not yet), paid: ready to ship.
paid_order() {
	order "$1"
	cqrs-command show "$P1" >/dev/null 2>&1 || product "$P1" SKU-1 10 >/dev/null
	cqrs-command -q reserve-inventory --product "$P1" --order "$1" --quantity 2
	cqrs-command -q confirm-payment --order "$1" --payment "$PAY" --amount 59.98
}

# The friendly command $2... must be accepted; $output is its result line.
accepts() {
	run --separate-stderr cqrs-command "$@"
	assert_not_signalled
	assert_success
	assert_equal "$stderr" ''
	assert_equal "$(jq -r .status <<<"$output")" accepted
}

# The friendly command $2... must be rejected with reason $1, and append
# nothing.
rejects() {
	local reason=$1 before
	shift
	before=$(events_now)
	run --separate-stderr cqrs-command "$@"
	assert_not_signalled
	assert_failure 4
	assert_equal "$stderr" ''
	assert_equal "$(jq -r .status <<<"$output")" rejected
	assert_equal "$(jq -r .reason <<<"$output")" "$reason"
	assert_equal "$(events_now)" "$before"
}

# The events of the result line $output as stored, one per line:
# ["EventType",<data as stored>] (jq would rewrite 0.10 as 0.1).
event_data() {
	local first last
	first=$(jq '.events[0].sequence' <<<"$output")
	last=$(jq '.events[-1].sequence' <<<"$output")
	store_query "SELECT '[\"' || event_type || '\",' || data || ']' FROM events WHERE sequence BETWEEN $first AND $last ORDER BY sequence" |
		sed -E 's/"(created|processed|cancelled)_at":"[0-9T:.Z-]+"/"\1_at":"T"/g'
}

# The raw text of member $1 (a number) in the result line $output.
raw() {
	grep -o "\"$1\":[-0-9.]*" <<<"$output" | head -1 | cut -d: -f2
}

# Events stored so far (0 before the store exists).
events_now() {
	if ! store_absent; then stored_count; else echo 0; fi
}

# The state of aggregate $1 as cqrs-command show prints it.
state() {
	cqrs-command show "$@" | jq -c .state
}

# One NDJSON command line $1 must be bad input: exit 65, message $2 for
# stdin:1, nothing printed, nothing stored or recorded.
refuses() {
	product "$P1" SKU-1 >/dev/null
	local before
	before=$(stored_count)
	run --separate-stderr cqrs-command <<<"$1"
	assert_not_signalled
	assert_failure 65
	assert_output ''
	assert_equal "$stderr" "cqrs-command: stdin:1: $2"
	assert_equal "$(stored_count)" "$before"
	assert_equal "$(store_query 'SELECT count(*) FROM processed_messages')" 1
}

# --- the result line -----------------------------------------------------------

@test "an accepted command prints one result line with the stored envelopes" {
	run --separate-stderr cqrs-command <<<'{"command_id":"c-1","type":"RegisterProduct","product_id":"'$P1'","sku":"SKU-1","name":"Widget","quantity":10}'
	assert_success
	assert_equal "$stderr" ''
	assert_equal "${#lines[@]}" 1
	run jq -c 'keys_unsorted' <<<"$output"
	assert_output '["command_id","type","status","aggregate_id","events"]'
	run --separate-stderr cqrs-command <<<'{"command_id":"c-1","type":"RegisterProduct","product_id":"'$P1'","sku":"SKU-1","name":"Widget","quantity":10}'
	assert_equal "$(jq -c '[.command_id, .type, .status, .aggregate_id]' <<<"$output")" \
		'["c-1","RegisterProduct","accepted","'$P1'"]'
	# the events are exactly what cqrs-read prints for them
	assert_equal "$(jq -c '.events[]' <<<"$output")" "$(cqrs-read)"
}

@test "a rejected command prints its reason and appends nothing" {
	run --separate-stderr cqrs-command <<<'{"command_id":"c-2","type":"ReplenishStock","product_id":"'$P1'","quantity":5}'
	assert_failure 4
	assert_equal "$stderr" ''
	assert_output '{"command_id":"c-2","type":"ReplenishStock","status":"rejected","aggregate_id":"'$P1'","code":"not_found","reason":"product '$P1' does not exist"}'
	assert_equal "$(stored_count)" 0
}

@test "results come in input order, and the exit status is 4 if any was rejected" {
	product "$P1" SKU-1 5
	order "$O1"
	order "$O2"
	{
		echo '{"command_id":"a","type":"ReserveInventory","product_id":"'$P1'","order_id":"'$O1'","quantity":3}'
		echo '{"command_id":"b","type":"ReserveInventory","product_id":"'$P1'","order_id":"'$O2'","quantity":3}'
		echo '{"command_id":"c","type":"ReplenishStock","product_id":"'$P1'","quantity":1}'
	} >in.ndjson
	run --separate-stderr cqrs-command in.ndjson
	assert_failure 4
	assert_equal "$(jq -r '.command_id + " " + .status' <<<"$output")" "a accepted
b rejected
c accepted"
}

@test "the friendly form builds the same command as NDJSON input" {
	product "$P1" SKU-1
	cqrs-command -q create-order --order "$O1" --customer cust-42 --item "$P1:2:29.99" \
		--item "$P1:1:5.00:OTHER" --currency USD --ship-to "$ADDR" --command-id f-1
	echo '{"command_id":"n-1","type":"CreateOrder","order_id":"'$O2'","customer_id":"cust-42","items":[{"product_id":"'$P1'","quantity":2,"unit_price":29.99},{"product_id":"'$P1'","quantity":1,"unit_price":5.00,"sku":"OTHER"}],"currency":"USD","shipping_address":{"name":"Ann Smith","street":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}' |
		cqrs-command -q
	# as the domain reads them: the address is stored encrypted per event
	run cqrs-read --decrypt -e OrderCreated
	assert_equal "$(jq -c '.data | del(.order_number, .created_at)' <<<"${lines[0]}")" \
		"$(jq -c '.data | del(.order_number, .created_at)' <<<"${lines[1]}")"
}

@test "the friendly form makes a command_id when none is given and prints it" {
	accepts register-product --sku SKU-9 --name Nine
	run jq -r .command_id <<<"$output"
	assert_output --regexp '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'
	id=$output
	run store_query 'SELECT message_id FROM processed_messages'
	assert_output "$id"
}

# --- every command ---------------------------------------------------------------

@test "RegisterProduct: ProductRegistered, and StockReplenished with an initial quantity" {
	accepts register-product --product "$P1" --sku SKU-1 --name 'Blue "Widget"' --quantity 7
	assert_equal "$(event_data)" '["ProductRegistered",{"sku":"SKU-1","name":"Blue \"Widget\""}]
["StockReplenished",{"quantity":7}]'
	assert_equal "$(jq -r '.events[0].aggregate_type' <<<"$output")" Inventory
	accepts register-product --sku SKU-2 --name Plain
	assert_equal "$(event_data)" '["ProductRegistered",{"sku":"SKU-2","name":"Plain"}]'
	rejects "product $P1 already exists" register-product --product "$P1" --sku X --name Y
}

@test "ReplenishStock adds to the available stock" {
	product "$P1" SKU-1 10
	accepts replenish-stock --product "$P1" --quantity 5
	assert_equal "$(event_data)" '["StockReplenished",{"quantity":5}]'
	accepts replenish-stock --product "$P1" --quantity 1
	assert_equal "$(state "$P1" | jq -c '[.available, .reserved]')" '[16,0]'
}

@test "ReserveInventory and ReleaseInventory move stock between available and reserved" {
	product "$P1" SKU-1 10
	order "$O1"
	accepts reserve-inventory --product "$P1" --order "$O1" --quantity 4
	assert_equal "$(event_data)" '["InventoryReserved",{"order_id":"'$O1'","quantity":4}]'
	assert_equal "$(state "$P1" | jq -c '[.available, .reserved]')" '[6,4]'
	accepts release-inventory --product "$P1" --order "$O1" --quantity 3
	assert_equal "$(event_data)" '["InventoryReleased",{"order_id":"'$O1'","quantity":3}]'
	assert_equal "$(state "$P1" | jq -c '[.available, .reserved]')" '[9,1]'
}

@test "CreateOrder: OrderCreated with a numbered order, exact total and the product's sku" {
	product "$P1" SKU-1
	product "$P2" SKU-2
	accepts create-order --order "$O1" --customer cust-42 --item "$P1:2:29.99" \
		--item "$P2:3:0.10" --currency USD --ship-to "$ADDR"
	# the address as the domain reads it (stored encrypted: cqrs-erase(1))
	assert_equal "$(printf '["OrderCreated",%s]' "$(cqrs-read --decrypt -a "$O1" | sed -E 's/.*"data":(\{.*\}),"metadata":.*/\1/; s/"created_at":"[0-9T:.Z-]+"/"created_at":"T"/')")" '["OrderCreated",{"order_number":"ORD-'"$(year)"'-000001","customer_id":"cust-42","items":[{"product_id":"'$P1'","sku":"SKU-1","quantity":2,"unit_price":29.99},{"product_id":"'$P2'","sku":"SKU-2","quantity":3,"unit_price":0.10}],"currency":"USD","total":60.28,"shipping_address":{"name":"Ann Smith","street":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"},"created_at":"T"}]'
	assert_equal "$(jq -r '.events[0].aggregate_type' <<<"$output")" Order
	# without --order the id is new; numbers go on
	accepts create-order --customer c2 --item "$P1:1:1.00" --currency USD --ship-to "$ADDR"
	assert_equal "$(jq -r '.events[0].data.order_number' <<<"$output")" "ORD-$(year)-000002"
	[ "$(jq -r .aggregate_id <<<"$output")" != "$O1" ]
	rejects "order $O1 already exists" create-order --order "$O1" --customer c \
		--item "$P1:1:1.00" --currency USD --ship-to "$ADDR"
}

@test "CreateOrder: an item without sku names a registered product" {
	rejects "item 1: unknown product $P2 (register it first, or give its sku)" \
		create-order --customer c --item "$P2:1:1.00" --currency USD --ship-to "$ADDR"
	accepts create-order --customer c --item "$P2:1:1.00:SKU-X" --currency USD --ship-to "$ADDR"
	assert_equal "$(jq -r '.events[0].data.items[0].sku' <<<"$output")" SKU-X
	# a rejection takes no order number
	assert_equal "$(jq -r '.events[0].data.order_number' <<<"$output")" "ORD-$(year)-000001"
}

@test "ConfirmOrder: OrderConfirmed, with an optional note" {
	order "$O1"
	accepts confirm-order --order "$O1" --note 'call first'
	assert_equal "$(cqrs-read --decrypt -a "$O1" -e OrderConfirmed | jq -c '[.event_type, .data]')" '["OrderConfirmed",{"note":"call first"}]'
	order "$O2"
	accepts confirm-order --order "$O2"
	assert_equal "$(event_data)" '["OrderConfirmed",{}]'
	rejects "order ORD-$(year)-000001 is already confirmed" confirm-order --order "$O1"
}

@test "ConfirmOrder: the note is personal data, stored encrypted" {
	sqlite_only "a PostgreSQL store declares no personal fields: erasure exits 78 there (cqrs-postgres(7))"
	order "$O1"
	accepts confirm-order --order "$O1" --note 'call first'
	assert_equal "$(event_data | jq -c '.[1].note | keys')" '["cqrs_encrypted","ct","subject"]'
}

@test "ConfirmPayment: PaymentProcessed with the exact total" {
	order "$O1"
	accepts confirm-payment --order "$O1" --payment "$PAY" --amount 59.98 --currency USD
	assert_equal "$(event_data)" '["PaymentProcessed",{"payment_id":"'$PAY'","amount":59.98,"currency":"USD","processed_at":"T"}]'
}

@test "ShipOrder: OrderShipped (event_version 2) with carrier, tracking number and time" {
	paid_order "$O1"
	accepts ship-order --order "$O1" --carrier FedEx --tracking TRK123456 \
		--shipped-at 2026-01-16T15:00:00+01:00
	assert_equal "$(cqrs-read -e OrderShipped | jq .event_version)" 2
	assert_equal "$(event_data)" '["OrderShipped",{"shipment":{"tracking_number":"TRK123456","carrier":"FedEx"},"shipped_at":"2026-01-16T14:00:00.000000Z"}]
["InventoryShipped",{"order_id":"'$O1'","quantity":2}]'
	paid_order "$O2"
	accepts ship-order --order "$O2" --carrier UPS --tracking T2
	run jq -r '.events[0].data.shipped_at' <<<"$output"
	assert_output --regexp '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{6}Z$'
}

@test "CancelOrder: OrderCancelled with the reason" {
	order "$O1"
	accepts cancel-order --order "$O1" --reason 'customer request'
	assert_equal "$(event_data)" '["OrderCancelled",{"reason":"customer request","cancelled_at":"T"}]'
	rejects "order ORD-$(year)-000001 is already cancelled" cancel-order --order "$O1" --reason again
}

@test "AuthorizePayment, CapturePayment, RefundPayment, VoidAuthorization" {
	accepts authorize-payment --payment "$PAY" --order "$O1" --amount 59.98 --currency USD
	assert_equal "$(event_data)" '["PaymentAuthorized",{"order_id":"'$O1'","amount":59.98,"currency":"USD"}]'
	assert_equal "$(jq -r '.events[0].aggregate_type' <<<"$output")" Payment
	accepts capture-payment --payment "$PAY" --amount 50.00
	assert_equal "$(event_data)" '["PaymentCaptured",{"order_id":"'$O1'","amount":50.00,"currency":"USD"}]'
	# without an amount: what is left of the authorization
	accepts capture-payment --payment "$PAY"
	assert_equal "$(event_data)" '["PaymentCaptured",{"order_id":"'$O1'","amount":9.98,"currency":"USD"}]'
	accepts refund-payment --payment "$PAY" --amount 10.00
	assert_equal "$(event_data)" '["PaymentRefunded",{"order_id":"'$O1'","amount":10.00,"currency":"USD"}]'
	# the gateway's reference, when the caller has one
	accepts authorize-payment --payment "$PAY2" --order "$O2" --amount 5 --currency EUR \
		--authorization AUTH-42
	assert_equal "$(event_data)" '["PaymentAuthorized",{"order_id":"'$O2'","amount":5.00,"currency":"EUR","authorization":"AUTH-42"}]'
	accepts void-authorization --payment "$PAY2"
	assert_equal "$(event_data)" '["AuthorizationVoided",{"order_id":"'$O2'"}]'
	run cqrs-command show "$PAY"
	assert_output --partial '"authorized":59.98,"captured":59.98,"refunded":10.00,"voided":false}'
	rejects "payment $PAY already exists" authorize-payment --payment "$PAY" --order "$O1" \
		--amount 1 --currency USD
}

# --- the order lifecycle rules ------------------------------------------------------

@test "rule: no shipping before payment" {
	order "$O1"
	cqrs-command -q confirm-order --order "$O1"
	rejects "cannot ship order ORD-$(year)-000001: it has not been paid" \
		ship-order --order "$O1" --carrier FedEx --tracking T1
}

@test "rule: no shipping or confirming a cancelled order" {
	paid_order "$O1"
	cqrs-command -q cancel-order --order "$O1" --reason 'changed my mind'
	rejects "cannot ship order ORD-$(year)-000001: it was cancelled" \
		ship-order --order "$O1" --carrier FedEx --tracking T1
	rejects "cannot confirm order ORD-$(year)-000001: it was cancelled" confirm-order --order "$O1"
	rejects "cannot pay for order ORD-$(year)-000001: it was cancelled" \
		confirm-payment --order "$O1" --payment "$PAY2" --amount 59.98
}

@test "rule: no cancelling a shipped order, no shipping twice" {
	paid_order "$O1"
	cqrs-command -q ship-order --order "$O1" --carrier FedEx --tracking T1
	rejects "cannot cancel order ORD-$(year)-000001: it has already been shipped" \
		cancel-order --order "$O1" --reason late
	rejects "order ORD-$(year)-000001 has already been shipped" \
		ship-order --order "$O1" --carrier FedEx --tracking T2
	rejects "cannot confirm order ORD-$(year)-000001: it has already been shipped" \
		confirm-order --order "$O1"
}

@test "rule: no paying twice" {
	paid_order "$O1"
	rejects "order ORD-$(year)-000001 has already been paid" \
		confirm-payment --order "$O1" --payment "$PAY2" --amount 59.98
}

@test "rule: no paying a different amount or currency than the total" {
	order "$O1"
	rejects "payment of 59.97 USD does not match the total of order ORD-$(year)-000001 (59.98 USD)" \
		confirm-payment --order "$O1" --payment "$PAY" --amount 59.97
	rejects "payment of 59.99 USD does not match the total of order ORD-$(year)-000001 (59.98 USD)" \
		confirm-payment --order "$O1" --payment "$PAY" --amount 59.99
	rejects "payment currency 'EUR' does not match the currency of order ORD-$(year)-000001 (USD)" \
		confirm-payment --order "$O1" --payment "$PAY" --amount 59.98 --currency EUR
	rejects "amount 59.981 has more decimals than USD allows (2)" \
		confirm-payment --order "$O1" --payment "$PAY" --amount 59.981
	rejects "amount 59.980 has more decimals than USD allows (2)" \
		confirm-payment --order "$O1" --payment "$PAY" --amount 59.980
	accepts confirm-payment --order "$O1" --payment "$PAY" --amount 59.98
}

@test "rule: commands on an order that does not exist, or on another aggregate type" {
	rejects "order $O1 does not exist" confirm-order --order "$O1"
	rejects "order $O1 does not exist" ship-order --order "$O1" --carrier F --tracking T
	rejects "order $O1 does not exist" cancel-order --order "$O1" --reason r
	rejects "order $O1 does not exist" confirm-payment --order "$O1" --payment "$PAY" --amount 1
	product "$P1" SKU-1
	rejects "aggregate $P1 is of type Inventory, not Order" confirm-order --order "$P1"
	order "$O1"
	rejects "aggregate $O1 is of type Order, not Inventory" \
		reserve-inventory --product "$O1" --order "$O1" --quantity 1
	rejects "aggregate $O1 is of type Order, not Payment" capture-payment --payment "$O1"
}

# --- totals and amounts ---------------------------------------------------------------

@test "rule: totals are exact sums of quantity x price in minor units" {
	product "$P1" SKU-1
	# 0.10 + 0.20 is 0.30, not 0.30000000000000004
	accepts create-order --customer c --item "$P1:1:0.10" --item "$P1:1:0.20" --currency USD --ship-to "$ADDR"
	assert_equal "$(raw total)" 0.30
	accepts create-order --customer c --item "$P1:1000000:99999.99" --item "$P1:3:205.67" --currency USD --ship-to "$ADDR"
	assert_equal "$(raw total)" 99999990617.01
	accepts create-order --customer c --item "$P1:3:1500" --currency JPY --ship-to "$ADDR"
	assert_equal "$(raw total)" 4500
	accepts create-order --customer c --item "$P1:2:1.250" --currency KWD --ship-to "$ADDR"
	assert_equal "$(raw total)" 2.500
}

@test "rule: amounts print as entered, with the currency's minor-unit digits" {
	product "$P1" SKU-1
	accepts create-order --customer c --item "$P1:1:29.99" --item "$P1:1:205.67" --item "$P1:1:7" --currency USD --ship-to "$ADDR"
	run store_query "SELECT data FROM events WHERE event_type = 'OrderCreated'"
	assert_output --partial '"unit_price":29.99}'
	assert_output --partial '"unit_price":205.67}'
	assert_output --partial '"unit_price":7.00}'
	assert_output --partial '"total":242.66,'
}

@test "rule: quantities are positive whole numbers" {
	product "$P1" SKU-1
	order "$O1"
	for q in 0 -1; do
		rejects "item 1: quantity must be positive, not $q" \
			create-order --customer c --item "$P1:$q:1.00" --currency USD --ship-to "$ADDR"
		rejects "quantity must be positive, not $q" replenish-stock --product "$P1" --quantity "$q"
		rejects "quantity must be positive, not $q" \
			reserve-inventory --product "$P1" --order "$O1" --quantity "$q"
	done
	rejects "item 1: quantity must be a whole number, not 1.5" \
		create-order --customer c --item "$P1:1.5:1.00" --currency USD --ship-to "$ADDR"
	rejects "quantity must be a whole number, not 2e1" replenish-stock --product "$P1" --quantity 2e1
	rejects "quantity 10000000000 is too large (at most 1000000000)" \
		replenish-stock --product "$P1" --quantity 10000000000
	rejects "initial quantity must be positive, not 0" register-product --sku S --name N --quantity 0
}

@test "rule: prices are non-negative, and a price of zero is allowed" {
	product "$P1" SKU-1
	rejects "item 2: unit price must not be negative: -0.01" \
		create-order --customer c --item "$P1:1:1.00" --item "$P1:1:-0.01" --currency USD --ship-to "$ADDR"
	rejects "item 1: unit price 1.005 has more decimals than USD allows (2)" \
		create-order --customer c --item "$P1:1:1.005" --currency USD --ship-to "$ADDR"
	rejects "item 1: unit price 1e2 is not a plain decimal amount" \
		create-order --customer c --item "$P1:1:1e2" --currency USD --ship-to "$ADDR"
	rejects "item 1: unit price 5.5 has more decimals than JPY allows (0)" \
		create-order --customer c --item "$P1:1:5.5" --currency JPY --ship-to "$ADDR"
	accepts create-order --customer c --item "$P1:2:0" --currency USD --ship-to "$ADDR"
	assert_equal "$(raw total)" 0.00
}

@test "rule: the currency is a three-letter code" {
	product "$P1" SKU-1
	for cur in usd US EURO U1D; do
		rejects "currency '$cur' is not a three-letter code such as USD" \
			create-order --customer c --item "$P1:1:1.00" --currency "$cur" --ship-to "$ADDR"
		rejects "currency '$cur' is not a three-letter code such as USD" \
			authorize-payment --order "$O1" --amount 1.00 --currency "$cur"
	done
}

@test "rule: an order has at least one item, and a total that fits" {
	product "$P1" SKU-1
	run --separate-stderr cqrs-command <<<'{"command_id":"e","type":"CreateOrder","customer_id":"c","items":[],"currency":"USD","shipping_address":{"name":"a","street":"b","city":"c","postal_code":"d","country":"US"}}'
	assert_failure 4
	assert_equal "$(jq -r .reason <<<"$output")" "an order needs at least one item"
	rejects "the order total is too large" create-order --customer c \
		--item "$P1:1000000000:99999999999.99" --currency USD --ship-to "$ADDR"
}

# --- inventory rules -------------------------------------------------------------------

@test "rule: inventory never goes negative: no reservation beyond what is available" {
	product "$P1" SKU-1 5
	order "$O1"
	order "$O2"
	rejects "cannot reserve 6 of SKU-1: only 5 available" \
		reserve-inventory --product "$P1" --order "$O1" --quantity 6
	accepts reserve-inventory --product "$P1" --order "$O1" --quantity 5
	rejects "cannot reserve 1 of SKU-1: only 0 available" \
		reserve-inventory --product "$P1" --order "$O2" --quantity 1
	assert_equal "$(state "$P1" | jq -c '[.available, .reserved]')" '[0,5]'
}

@test "rule: no releasing more than the order holds" {
	product "$P1" SKU-1 5
	order "$O1"
	rejects "order ORD-$(year)-000001 holds no SKU-1" \
		release-inventory --product "$P1" --order "$O1" --quantity 1
	cqrs-command -q reserve-inventory --product "$P1" --order "$O1" --quantity 2
	rejects "cannot release 3 of SKU-1: order ORD-$(year)-000001 holds 2" \
		release-inventory --product "$P1" --order "$O1" --quantity 3
	accepts release-inventory --product "$P1" --order "$O1" --quantity 2
	assert_equal "$(state "$P1" | jq -c '[.available, .reserved]')" '[5,0]'
}

@test "rule: inventory commands on an unknown product are rejected" {
	rejects "product $P1 does not exist" replenish-stock --product "$P1" --quantity 1
	rejects "product $P1 does not exist" reserve-inventory --product "$P1" --order "$O1" --quantity 1
	rejects "product $P1 does not exist" release-inventory --product "$P1" --order "$O1" --quantity 1
}

# --- payment rules ------------------------------------------------------------------------

@test "rule: capture no more than authorized" {
	cqrs-command -q authorize-payment --payment "$PAY" --order "$O1" --amount 59.98 --currency USD
	rejects "cannot capture 60.00 USD from payment $PAY: only 59.98 USD of the authorization is left" \
		capture-payment --payment "$PAY" --amount 60.00
	accepts capture-payment --payment "$PAY" --amount 40.00
	rejects "cannot capture 20.00 USD from payment $PAY: only 19.98 USD of the authorization is left" \
		capture-payment --payment "$PAY" --amount 20.00
	accepts capture-payment --payment "$PAY" --amount 19.98
	rejects "cannot capture payment $PAY: the 59.98 USD authorized have been captured" \
		capture-payment --payment "$PAY"
	rejects "amount must be positive, not 0" refund-payment --payment "$PAY" --amount 0
}

@test "rule: refund no more than captured" {
	cqrs-command -q authorize-payment --payment "$PAY" --order "$O1" --amount 59.98 --currency USD
	rejects "cannot refund 0.01 USD from payment $PAY: only 0.00 USD of what was captured is left to refund" \
		refund-payment --payment "$PAY" --amount 0.01
	cqrs-command -q capture-payment --payment "$PAY" --amount 30.00
	accepts refund-payment --payment "$PAY" --amount 20.00
	rejects "cannot refund 10.01 USD from payment $PAY: only 10.00 USD of what was captured is left to refund" \
		refund-payment --payment "$PAY" --amount 10.01
	accepts refund-payment --payment "$PAY" --amount 10.00
}

@test "rule: no capture after a void; no void twice or after a full capture" {
	cqrs-command -q authorize-payment --payment "$PAY" --order "$O1" --amount 59.98 --currency USD
	accepts void-authorization --payment "$PAY"
	rejects "cannot capture payment $PAY: its authorization was voided" \
		capture-payment --payment "$PAY" --amount 1.00
	rejects "the authorization of payment $PAY was already voided" void-authorization --payment "$PAY"
	cqrs-command -q authorize-payment --payment "$PAY2" --order "$O1" --amount 5.00 --currency USD
	cqrs-command -q capture-payment --payment "$PAY2"
	rejects "cannot void payment $PAY2: it has been captured in full" void-authorization --payment "$PAY2"
	rejects "payment $O2 does not exist" capture-payment --payment "$O2"
}

# --- order numbers ----------------------------------------------------------------------------

@test "order numbers are unique and consecutive within a run and across runs" {
	product "$P1" SKU-1
	for i in $(seq 1 5); do
		echo '{"command_id":"o'$i'","type":"CreateOrder","customer_id":"c","items":[{"product_id":"'$P1'","quantity":1,"unit_price":1}],"currency":"USD","shipping_address":{"name":"a","street":"b","city":"c","postal_code":"d","country":"US"}}'
	done >orders.ndjson
	cqrs-command -q orders.ndjson
	order "$O1"
	output=$(store_query "SELECT data FROM events WHERE event_type = 'OrderCreated' ORDER BY sequence" | jq -r .order_number)
	y=$(year)
	assert_output "ORD-$y-000001
ORD-$y-000002
ORD-$y-000003
ORD-$y-000004
ORD-$y-000005
ORD-$y-000006"
}

@test "order numbers continue after orders that came into the store as events" {
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderCreated","data":{"order_number":"ORD-%s-000041","customer_id":"c","items":[{"product_id":"%s","sku":"S","quantity":1,"unit_price":1.00}],"currency":"USD","total":1.00,"shipping_address":{"street":"s","city":"c","postal_code":"p","country":"US"}}}\n' \
		"$O2" "$(year)" "$P1" | cqrs-append -q
	order "$O1"
	order "$P2"
	assert_equal "$(state "$O1" | jq -r .order_number)" "ORD-$(year)-000042"
	assert_equal "$(state "$P2" | jq -r .order_number)" "ORD-$(year)-000043"
}

# --- idempotency ------------------------------------------------------------------------------

@test "a command_id handled before returns the original result and appends nothing" {
	product "$P1" SKU-1 10
	order "$O1"
	line='{"command_id":"r-1","type":"ReserveInventory","product_id":"'$P1'","order_id":"'$O1'","quantity":4}'
	run --separate-stderr cqrs-command <<<"$line"
	assert_success
	first=$output
	before=$(stored_count)
	run --separate-stderr cqrs-command <<<"$line"
	assert_success
	assert_equal "$stderr" ''
	assert_output "$first"
	assert_equal "$(stored_count)" "$before"
	assert_equal "$(state "$P1" | jq -c '[.available, .reserved]')" '[6,4]'
	# also twice in one batch
	line2='{"command_id":"r-2","type":"ReserveInventory","product_id":"'$P1'","order_id":"'$O1'","quantity":1}'
	run --separate-stderr cqrs-command <<<"$line2
$line2"
	assert_success
	assert_equal "${lines[0]}" "${lines[1]}"
	assert_equal "$(stored_count)" $((before + 1))
}

@test "a rejected command_id keeps its rejection even when the state changed since" {
	order "$O1"
	ship='{"command_id":"s-1","type":"ShipOrder","order_id":"'$O1'","carrier":"FedEx","tracking_number":"T1"}'
	run --separate-stderr cqrs-command <<<"$ship"
	assert_failure 4
	first=$output
	product "$P1" SKU-1 10 >/dev/null
	cqrs-command -q reserve-inventory --product "$P1" --order "$O1" --quantity 2
	cqrs-command -q confirm-payment --order "$O1" --payment "$PAY" --amount 59.98
	before=$(stored_count)
	run --separate-stderr cqrs-command <<<"$ship"
	assert_failure 4
	assert_output "$first"
	assert_equal "$(stored_count)" "$before"
	# a new command_id is decided afresh
	accepts ship-order --order "$O1" --carrier FedEx --tracking T1
}

@test "a command_id used for another command type is bad input" {
	product "$P1" SKU-1
	echo '{"command_id":"x-1","type":"ReplenishStock","product_id":"'$P1'","quantity":1}' | cqrs-command -q
	before=$(stored_count)
	run --separate-stderr cqrs-command <<<'{"command_id":"x-1","type":"ReserveInventory","product_id":"'$P1'","order_id":"'$O1'","quantity":1}'
	assert_failure 65
	assert_output ''
	assert_equal "$stderr" "cqrs-command: stdin:1: command_id 'x-1' was already used by a ReplenishStock command"
	assert_equal "$(stored_count)" "$before"
}

@test "each result is recorded in processed_messages with the command's events" {
	product "$P1" SKU-1
	assert_equal "$(store_query 'SELECT handler FROM processed_messages')" cqrs-command
	assert_equal "$(store_query 'SELECT result FROM processed_messages' | jq -r '[.status, .first, .last] | join("|")')" 'accepted|1|2'
}

# --- metadata --------------------------------------------------------------------------------

@test "metadata: causation_id is the command_id; user_id from --user or the command" {
	run --separate-stderr cqrs-command --user alice <<<'{"command_id":"m-1","type":"RegisterProduct","product_id":"'$P1'","sku":"S","name":"N"}'
	assert_success
	assert_equal "$(jq -c '.events[0].metadata | [.causation_id, .user_id]' <<<"$output")" '["m-1","alice"]'
	run --separate-stderr cqrs-command --user alice <<<'{"command_id":"m-2","type":"ReplenishStock","product_id":"'$P1'","quantity":1,"user_id":"bob"}'
	assert_equal "$(jq -c '.events[0].metadata | [.causation_id, .user_id]' <<<"$output")" '["m-2","bob"]'
	run --separate-stderr cqrs-command <<<'{"command_id":"m-3","type":"ReplenishStock","product_id":"'$P1'","quantity":1}'
	assert_equal "$(jq -c '.events[0].metadata | keys_unsorted' <<<"$output")" '["correlation_id","causation_id","os_user"]'
}

@test "metadata: the correlation id is the command's, --correlation-id's, or the order's" {
	product "$P1" SKU-1
	run --separate-stderr cqrs-command <<<'{"command_id":"k-1","type":"CreateOrder","order_id":"'$O1'","correlation_id":"corr-77","customer_id":"c","items":[{"product_id":"'$P1'","quantity":1,"unit_price":59.98}],"currency":"USD","shipping_address":{"name":"a","street":"b","city":"c","postal_code":"d","country":"US"}}'
	assert_success
	# later commands on the order, its inventory and its payment share it
	cqrs-command -q reserve-inventory --product "$P1" --order "$O1" --quantity 1
	cqrs-command -q authorize-payment --payment "$PAY" --order "$O1" --amount 59.98 --currency USD
	cqrs-command -q capture-payment --payment "$PAY"
	cqrs-command -q confirm-payment --order "$O1" --payment "$PAY" --amount 59.98
	cqrs-command -q ship-order --order "$O1" --carrier FedEx --tracking T
	run cqrs-read --correlation corr-77
	assert_equal "$(jq -r .event_type <<<"$output" | tr '\n' ' ')" \
		"OrderCreated InventoryReserved PaymentAuthorized PaymentCaptured PaymentProcessed OrderShipped InventoryShipped "
	# --correlation-id wins over the order's; the command's over both
	run --separate-stderr cqrs-command --correlation-id flag-1 cancel-order --order "$O1" --reason r
	assert_equal "$(jq -r .code <<<"$output")" not_allowed
	run --separate-stderr cqrs-command --correlation-id flag-1 replenish-stock --product "$P1" --quantity 1
	assert_equal "$(jq -r '.events[0].metadata.correlation_id' <<<"$output")" flag-1
	run --separate-stderr cqrs-command --correlation-id flag-1 <<<'{"command_id":"k-2","type":"ReplenishStock","product_id":"'$P1'","quantity":1,"correlation_id":"own"}'
	assert_equal "$(jq -r '.events[0].metadata.correlation_id' <<<"$output")" own
	# with none anywhere, a new one per command
	run --separate-stderr cqrs-command replenish-stock --product "$P1" --quantity 1
	run jq -r '.events[0].metadata.correlation_id' <<<"$output"
	assert_output --regexp '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-'
	# or the id of the aggregate the command creates: an order's story
	# is then found by its id
	accepts create-order --order "$O2" --customer c --item "$P1:1:1.00" --currency USD --ship-to "$ADDR"
	cqrs-command -q reserve-inventory --product "$P1" --order "$O2" --quantity 1
	cqrs-command -q authorize-payment --order "$O2" --amount 1.00 --currency USD
	run cqrs-read --correlation "$O2"
	assert_equal "$(jq -r .event_type <<<"$output" | tr '\n' ' ')" \
		"OrderCreated InventoryReserved PaymentAuthorized "
	accepts register-product --product "$P2" --sku S2 --name N2
	assert_equal "$(jq -r '.events[0].metadata.correlation_id' <<<"$output")" "$P2"
}

# --- snapshots --------------------------------------------------------------------------------

# 300 replenishments of P1 (1 .. 300) in one run, with --snapshot-every $1.
long_stream() {
	cqrs-command -q --snapshot-every "$1" register-product --product "$P1" --sku SKU-1 --name W
	for i in $(seq 1 299); do
		echo '{"command_id":"rep-'$i'","type":"ReplenishStock","product_id":"'$P1'","quantity":'$i'}'
	done | cqrs-command -q --snapshot-every "$1"
}

@test "snapshots: taken every N events; loading with or without them gives the same state" {
	with_db=$(store_named with)
	without_db=$(store_named without)
	CQRS_STORE=$with_db long_stream 50
	CQRS_STORE=$without_db long_stream 0
	assert_equal "$(named_query with 'SELECT aggregate_version FROM snapshots ORDER BY 1' | paste -sd,)" \
		'50,100,150,200,250,300'
	assert_equal "$(named_query without 'SELECT count(*) FROM snapshots')" 0
	run cqrs-command --store "$with_db" show "$P1"
	assert_success
	assert_equal "$(jq -c '[.version, .snapshot_version]' <<<"$output")" '[300,300]'
	with=$(jq -c 'del(.snapshot_version) | .state |= del(.correlation_id)' <<<"$output")
	run cqrs-command --store "$with_db" --ignore-snapshots show "$P1"
	assert_equal "$(jq -c '.snapshot_version' <<<"$output")" 0
	assert_equal "$(jq -c 'del(.snapshot_version) | .state |= del(.correlation_id)' <<<"$output")" "$with"
	run cqrs-command --store "$without_db" show "$P1"
	assert_equal "$(jq -c 'del(.snapshot_version) | .state |= del(.correlation_id)' <<<"$output")" "$with"
	assert_equal "$(jq -c .state.available <<<"$output")" 44850
	# a snapshot plus the events after it
	echo '{"command_id":"rep-x","type":"ReplenishStock","product_id":"'$P1'","quantity":7}' |
		cqrs-command -q --store "$with_db"
	run cqrs-command --store "$with_db" show "$P1"
	assert_equal "$(jq -c '[.version, .snapshot_version, .state.available]' <<<"$output")" '[301,300,44857]'
}

@test "snapshots: decisions on a long stream are the same with and without them" {
	CQRS_STORE=$(store_named with) long_stream 7
	CQRS_STORE=$(store_named without) long_stream 0
	for db in "$(store_named with)" "$(store_named without)"; do
		CQRS_STORE=$db order "$O1"
		run --separate-stderr cqrs-command --store "$db" reserve-inventory --product "$P1" --order "$O1" --quantity 44851
		assert_failure 4
		assert_equal "$(jq -r .reason <<<"$output")" "cannot reserve 44851 of SKU-1: only 44850 available"
		run --separate-stderr cqrs-command --store "$db" reserve-inventory --product "$P1" --order "$O1" --quantity 44850
		assert_success
	done
}

@test "snapshots: a corrupt snapshot is ignored, never trusted" {
	long_stream 50
	# an edit that keeps the JSON valid: more stock than there is
	store_edit "UPDATE snapshots SET state = replace(state, '\"available\":44850', '\"available\":99999') WHERE aggregate_version = 300"
	[ "$(store_query "SELECT count(*) FROM snapshots WHERE state LIKE '%99999%'")" -eq 1 ]
	order "$O1"
	run cqrs-command show "$P1"
	assert_equal "$(jq -c '[.snapshot_version, .state.available]' <<<"$output")" '[0,44850]'
	rejects "cannot reserve 50000 of SKU-1: only 44850 available" \
		reserve-inventory --product "$P1" --order "$O1" --quantity 50000
	# garbage that is not JSON at all
	store_edit "UPDATE snapshots SET state = 'not json {' WHERE aggregate_version = 300"
	run cqrs-command show "$P1"
	assert_equal "$(jq -c '[.snapshot_version, .state.available]' <<<"$output")" '[0,44850]'
}

@test "snapshots: a stale snapshot (version ahead of the stream, or of another stream) is ignored" {
	long_stream 50
	# a snapshot claiming version 1000 of a stream that has 300 events
	store_edit "INSERT INTO snapshots SELECT aggregate_id, aggregate_type, 1000, state, created_at FROM snapshots WHERE aggregate_version = 300"
	run cqrs-command show "$P1"
	assert_equal "$(jq -c '[.version, .snapshot_version, .state.available]' <<<"$output")" '[300,0,44850]'
	store_edit "DELETE FROM snapshots WHERE aggregate_version = 1000"
	run cqrs-command show "$P1"
	assert_equal "$(jq -c '[.version, .snapshot_version]' <<<"$output")" '[300,300]'
	# a snapshot taken from another store's stream at the same version:
	# same digest rules, but the event at its version is not the same
	CQRS_STORE=$(store_named other) long_stream 50
	store_edit "DELETE FROM snapshots"
	if on_sqlite; then
		store_edit "ATTACH 'other.db' AS o; INSERT INTO snapshots SELECT * FROM o.snapshots"
	else
		store_edit "INSERT INTO snapshots SELECT * FROM t${BATS_TEST_NUMBER}_other.snapshots"
	fi
	run cqrs-command show "$P1"
	assert_equal "$(jq -c '[.version, .snapshot_version, .state.available]' <<<"$output")" '[300,0,44850]'
}

@test "snapshots: --snapshot-every 0 takes none" {
	long_stream 0
	assert_equal "$(store_query 'SELECT count(*) FROM snapshots')" 0
}

# --- version conflicts --------------------------------------------------------------------------

@test "a version conflict is retried: load, decide and append again" {
	product "$P1" SKU-1 10
	order "$O1"
	CQRS_TEST_CONFLICTS=4 run --separate-stderr cqrs-command reserve-inventory --product "$P1" --order "$O1" --quantity 3
	assert_success
	assert_equal "$stderr" ''
	assert_equal "$(stored_count)" 4
	assert_equal "$(state "$P1" | jq -c '[.available, .reserved]')" '[7,3]'
}

@test "a version conflict after the last retry exits 3 and changes nothing" {
	product "$P1" SKU-1 10
	order "$O1"
	line='{"command_id":"v-1","type":"ReserveInventory","product_id":"'$P1'","order_id":"'$O1'","quantity":3}'
	CQRS_TEST_CONFLICTS=5 run --separate-stderr cqrs-command <<<"$line
{\"command_id\":\"v-2\",\"type\":\"ReplenishStock\",\"product_id\":\"$P1\",\"quantity\":1}"
	assert_failure 3
	assert_equal "$stderr" "cqrs-command: stdin:1: version conflict on product $P1: gave up after 5 attempts"
	# the next command went on
	assert_equal "$(jq -r .command_id <<<"$output")" v-2
	assert_equal "$(stored_count)" 4
	# not recorded: the same command goes through later
	run --separate-stderr cqrs-command <<<"$line"
	assert_success
	assert_equal "$(state "$P1" | jq -c '[.available, .reserved]')" '[8,3]'
}

# --- batches and durability -----------------------------------------------------------------------

@test "a result line appears once its events are committed, without waiting for more input" {
	mkfifo cmds
	cqrs-command <cmds >out 2>err &
	pid=$!
	exec {w}>cmds
	echo '{"command_id":"w-1","type":"RegisterProduct","product_id":"'$P1'","sku":"S","name":"N"}' >&"$w"
	for _ in $(seq 1 $((1000 * GUARD_SCALE))); do
		[ -s out ] && break
		sleep 0.01
	done
	# the writer is still there, and another connection sees the event
	kill -0 "$pid"
	assert_equal "$(jq -r .command_id out)" w-1
	assert_equal "$(stored_count)" 1
	exec {w}>&-
	wait "$pid"
	assert_equal "$(cat err)" ''
}

@test "--batch 1 and large batches give the same results" {
	product "$P1" SKU-1 100
	for i in $(seq 1 30); do
		echo '{"command_id":"b-'$i'","type":"ReserveInventory","product_id":"'$P1'","order_id":"'$O1'","quantity":'$((i % 7))'}'
	done >in.ndjson
	copy=$(store_named copy)
	cqrs-read | cqrs-append -q --store "$copy"
	run --separate-stderr cqrs-command --batch 1 in.ndjson
	one=$(jq -c '[.command_id, .status, .reason, (.events // [] | map(.aggregate_version))]' <<<"$output")
	run --separate-stderr cqrs-command --store "$copy" --batch 256 in.ndjson
	assert_failure 4
	assert_equal "$(jq -c '[.command_id, .status, .reason, (.events // [] | map(.aggregate_version))]' <<<"$output")" "$one"
	assert_equal "$(state "$P1")" "$(cqrs-command --store "$copy" show "$P1" | jq -c .state)"
}

@test "a failed commit prints none of the batch's results and stores none of it" {
	sqlite_only "the fault library fails the tool's own fsync of the SQLite file; a PostgreSQL server syncs on its side (pg.bats: the server stopped mid-run)"
	product "$P1" SKU-1 10
	for i in 1 2 3; do
		echo '{"command_id":"f-'$i'","type":"ReplenishStock","product_id":"'$P1'","quantity":1}'
	done >in.ndjson
	CQRS_FAULT_FSYNC=1 run --separate-stderr env LD_PRELOAD="$FAULT_LIB" \
		ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" cqrs-command in.ndjson
	assert_failure 74
	assert_output ''
	assert_equal "${stderr_lines[0]}" "cqrs-command: $CQRS_STORE: commit failed: disk I/O error"
	assert_equal "$(stored_count)" 2
	assert_equal "$(store_query 'SELECT count(*) FROM processed_messages')" 1
	# and the same input goes through afterwards
	run --separate-stderr cqrs-command -q in.ndjson
	assert_success
	assert_equal "$(stored_count)" 5
}

@test "a failed commit takes no order numbers" {
	sqlite_only "the fault library fails the tool's own fsync of the SQLite file; a PostgreSQL server syncs on its side"
	product "$P1" SKU-1 10
	order "$O1"
	for i in 1 2 3; do
		echo '{"command_id":"n-'$i'","type":"CreateOrder","customer_id":"c","items":[{"product_id":"'$P1'","quantity":1,"unit_price":1}],"currency":"USD","shipping_address":{"name":"a","street":"b","city":"c","postal_code":"d","country":"US"}}'
	done >in.ndjson
	CQRS_FAULT_FSYNC=1 run --separate-stderr env LD_PRELOAD="$FAULT_LIB" \
		ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" cqrs-command in.ndjson
	assert_failure 74
	run --separate-stderr cqrs-command in.ndjson
	assert_success
	assert_equal "$(jq -r '.events[0].data.order_number' <<<"$output" | tr '\n' ' ')" \
		"ORD-$(year)-000002 ORD-$(year)-000003 ORD-$(year)-000004 "
}

@test "a busy store exits 75 after the busy timeout and changes nothing" {
	sqlite_only "holds SQLite's write lock with sqlite3 (pg.bats: a writer that waits longer than CQRS_BUSY_TIMEOUT for the append lock exits 75)"
	product "$P1" SKU-1 10
	coproc LOCK { sqlite3 "$CQRS_STORE"; }
	echo "BEGIN IMMEDIATE; SELECT 'locked';" >&"${LOCK[1]}"
	read -r locked <&"${LOCK[0]}"
	assert_equal "$locked" locked
	CQRS_BUSY_TIMEOUT=50 run --separate-stderr cqrs-command replenish-stock --product "$P1" --quantity 1
	echo "ROLLBACK;" >&"${LOCK[1]}"
	exec {LOCK[1]}>&-
	wait "$LOCK_PID" || true
	assert_failure 75
	assert_output ''
	assert_equal "$stderr" "cqrs-command: replenish-stock: $CQRS_STORE: store is busy (another process holds the lock); try again"
	assert_equal "$(stored_count)" 2
}

@test "a closed stdout ends the run quietly after the batch it was in" {
	product "$P1" SKU-1 10
	for i in $(seq 1 2000); do
		echo '{"command_id":"p-'$i'","type":"ReplenishStock","product_id":"'$P1'","quantity":1}'
	done >in.ndjson
	run bash -c 'set -o pipefail; cqrs-command --batch 10 in.ndjson | head -1 >/dev/null; echo "${PIPESTATUS[0]}"'
	assert_output 0
	[ "$(stored_count)" -lt 2002 ]
}

# --- bad input --------------------------------------------------------------------------------------

@test "bad input: not JSON, not an object, no command_id, no type, unknown type" {
	refuses '{"command_id":"a","type":' "invalid JSON at column 26: unexpected end of input"
}

@test "bad input: not an object" {
	refuses '["CreateOrder"]' "a command must be a JSON object"
}

@test "bad input: missing command_id" {
	refuses '{"type":"ReplenishStock","product_id":"'$P1'","quantity":1}' "missing field 'command_id'"
}

@test "bad input: missing or unknown type" {
	refuses '{"command_id":"a","product_id":"'$P1'","quantity":1}' "missing field 'type'"
}

@test "bad input: unknown command type" {
	refuses '{"command_id":"a","type":"ShipIt"}' "unknown command type 'ShipIt'"
}

@test "bad input: a field of another command, an unknown field" {
	refuses '{"command_id":"a","type":"ReplenishStock","product_id":"'$P1'","quantity":1,"carrier":"x"}' \
		"field 'carrier' does not belong in a ReplenishStock command"
}

@test "bad input: an unknown field" {
	refuses '{"command_id":"a","type":"ReplenishStock","product_id":"'$P1'","qty":1}' "unknown field 'qty'"
}

@test "bad input: a missing required field" {
	refuses '{"command_id":"a","type":"ReplenishStock","product_id":"'$P1'"}' "missing field 'quantity'"
}

@test "bad input: an id that is not a UUID" {
	refuses '{"command_id":"a","type":"ReplenishStock","product_id":"p-1","quantity":1}' \
		"field 'product_id' is not a UUID: \"p-1\""
}

@test "bad input: a number given as a string" {
	refuses '{"command_id":"a","type":"ReplenishStock","product_id":"'$P1'","quantity":"1"}' \
		"field 'quantity' must be a number"
}

@test "bad input: an empty string, a control character, a command_id too long" {
	refuses '{"command_id":"","type":"ReplenishStock","product_id":"'$P1'","quantity":1}' \
		"field 'command_id' must not be empty"
}

@test "bad input: a control character in a string" {
	refuses '{"command_id":"a\u0001b","type":"ReplenishStock","product_id":"'$P1'","quantity":1}' \
		"field 'command_id' contains a control character"
}

@test "bad input: a command_id longer than 128 bytes" {
	long=$(printf 'x%.0s' $(seq 1 129))
	refuses '{"command_id":"'$long'","type":"ReplenishStock","product_id":"'$P1'","quantity":1}' \
		"field 'command_id' is longer than 128 bytes"
}

@test "bad input: an item without quantity, an address without country" {
	refuses '{"command_id":"a","type":"CreateOrder","customer_id":"c","items":[{"product_id":"'$P1'","unit_price":1}],"currency":"USD","shipping_address":{"name":"a","street":"b","city":"c","postal_code":"d","country":"US"}}' \
		"items[1]: missing field 'quantity'"
}

@test "bad input: an address without country" {
	refuses '{"command_id":"a","type":"CreateOrder","customer_id":"c","items":[{"product_id":"'$P1'","quantity":1,"unit_price":1}],"currency":"USD","shipping_address":{"name":"a","street":"b","city":"c","postal_code":"d"}}' \
		"shipping_address: missing field 'country'"
}

@test "bad input: a shipped_at that is not a time" {
	refuses '{"command_id":"a","type":"ShipOrder","order_id":"'$O1'","carrier":"c","tracking_number":"t","shipped_at":"yesterday"}' \
		"field 'shipped_at' must be an RFC 3339 time such as \"2026-01-16T14:00:00Z\""
}

@test "a bad line changes nothing; the lines around it are handled; exit 65" {
	product "$P1" SKU-1 10
	{
		echo '{"command_id":"g-1","type":"ReplenishStock","product_id":"'$P1'","quantity":1}'
		echo '{"command_id":"g-2","type":"ReplenishStock","product_id":"'$P1'"}'
		echo '{"command_id":"g-3","type":"ReserveInventory","product_id":"'$P1'","order_id":"'$O1'","quantity":100}'
		echo '{"command_id":"g-4","type":"ReplenishStock","product_id":"'$P1'","quantity":2}'
	} >in.ndjson
	run --separate-stderr cqrs-command in.ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-command: in.ndjson:2: missing field 'quantity'"
	assert_equal "$(jq -r '.command_id + " " + .status' <<<"$output")" "g-1 accepted
g-3 rejected
g-4 accepted"
	assert_equal "$(state "$P1" | jq -c .available)" 13
	run store_query "SELECT message_id FROM processed_messages ORDER BY message_id"
	assert_equal "$(echo "$output" | grep -c g-2)" 0
}

@test "a line longer than the limit is bad input, and the rest goes on" {
	product "$P1" SKU-1 10
	{
		printf '{"command_id":"%s"}\n' "$(head -c 1100000 /dev/zero | tr '\0' x)"
		echo '{"command_id":"h-1","type":"ReplenishStock","product_id":"'$P1'","quantity":1}'
	} >in.ndjson
	run --separate-stderr cqrs-command in.ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-command: in.ndjson:1: line longer than 1048576 bytes"
	assert_equal "$(jq -r .command_id <<<"$output")" h-1
}

# --- usage -------------------------------------------------------------------------------------------

@test "usage: --help mirrors the synopsis; --version" {
	run --separate-stderr cqrs-command --help
	assert_success
	assert_line --index 0 --partial 'usage: cqrs-command [-nq] [-b count]'
	run --separate-stderr cqrs-command --version
	assert_success
	assert_output --regexp '^cqrs-command \(cqrs-tools\) '
}

@test "usage errors exit 64 and touch no store" {
	for args in "--bogus" "--batch 0" "--snapshot-every x" "create-order --customer c" \
		"--carrier x" "ship-order --order $O1 --carrier F --tracking T --sku S" \
		"create-order --customer c --item bad --currency USD --ship-to a,b,c,d,e" \
		"create-order --customer c --item $P1:1:1 --currency USD --ship-to a,b,c" \
		"confirm-payment --order $O1 --payment $PAY --amount ten" \
		"show" "show not-a-uuid" "confirm-order --order $O1 extra" \
		"replenish-stock --product $P1 --quantity 1 --quantity 2"; do
		# shellcheck disable=SC2086
		run --separate-stderr cqrs-command $args
		assert_not_signalled
		assert_failure 64
		assert_output ''
		[ -n "$stderr" ]
	done
	store_absent
}

@test "usage: the messages say what is wrong" {
	run --separate-stderr cqrs-command create-order --customer c
	assert_failure 64
	assert_equal "$stderr" "cqrs-command: create-order needs --item"
	run --separate-stderr cqrs-command ship-order --order "$O1" --carrier F --tracking T --sku S
	assert_equal "$stderr" "cqrs-command: ship-order takes no --sku"
	run --separate-stderr cqrs-command --carrier x
	assert_equal "$stderr" "cqrs-command: --carrier needs a verb such as create-order"
	run --separate-stderr cqrs-command confirm-payment --order "$O1" --payment "$PAY" --amount ten
	assert_equal "$stderr" "cqrs-command: --amount needs a number: 'ten'"
}

@test "a friendly command with a bad value is bad input (65)" {
	run --separate-stderr cqrs-command confirm-order --order not-a-uuid
	assert_failure 65
	assert_output ''
	assert_equal "$stderr" "cqrs-command: confirm-order: field 'order_id' is not a UUID: \"not-a-uuid\""
	# bytes that are not UTF-8 are named by their flag, and touch no store
	export CQRS_STORE=$BATS_TEST_TMPDIR/utf8/events.db
	run --separate-stderr cqrs-command register-product --sku $'W-\xff1' --name W
	assert_failure 65
	assert_equal "$stderr" "cqrs-command: register-product: --sku: not valid UTF-8 (byte 3)"
	run --separate-stderr cqrs-command create-order --customer c-1 --currency USD --ship-to A,B,C,D,US \
		--item "11111111-2222-4333-8444-555555555555:1:1.00:S-1" --item $'11111111-2222-4333-8444-555555555555:1:1.00:S\xc3'
	assert_failure 65
	assert_equal "$stderr" "cqrs-command: create-order: --item: not valid UTF-8 (byte 46)"
	# an address given as JSON is refused, not cut at its five commas
	run --separate-stderr cqrs-command create-order --customer c-1 --currency USD \
		--ship-to ' {"name":"A","street":"B","city":"C","postal_code":"D","country":"US"}' \
		--item "11111111-2222-4333-8444-555555555555:1:1.00:S-1"
	assert_failure 64
	assert_equal "$stderr" "cqrs-command: --ship-to takes NAME,STREET,CITY,POSTAL-CODE,COUNTRY, not JSON (an address object goes in the command's NDJSON form): ' {\"name\":\"A\",\"street\":\"B\",\"city\":\"C\",\"postal_code\":\"D\",\"country\":\"US\"}'"
	[ ! -e "$BATS_TEST_TMPDIR/utf8" ] || fail "a store was made: $(ls "$BATS_TEST_TMPDIR/utf8")"
}

# --- show ------------------------------------------------------------------------------------------------

@test "show: the state an aggregate's commands are decided against" {
	paid_order "$O1"
	run --separate-stderr cqrs-command show "$O1"
	assert_success
	assert_equal "$(jq -c 'del(.state.correlation_id)' <<<"$output")" \
		'{"aggregate_id":"'$O1'","aggregate_type":"Order","version":2,"snapshot_version":0,"state":{"exists":true,"status":"PAID","confirmed":false,"confirmed_by":"","order_number":"ORD-'"$(year)"'-000001","currency":"USD","total":59.98,"lines":[{"product_id":"'$P1'","quantity":2}]}}'
	run --separate-stderr cqrs-command show "$O2"
	assert_failure 1
	assert_equal "$stderr" "cqrs-command: aggregate $O2 has no events"
	printf '{"aggregate_id":"%s","aggregate_type":"Shipment","event_type":"ShippingLabelCreated","data":{"order_id":"%s","tracking_number":"T","carrier":"C"}}\n' "$O2" "$O1" | cqrs-append -q
	run --separate-stderr cqrs-command show "$O2"
	assert_failure 65
	assert_equal "$stderr" "cqrs-command: aggregate $O2 is of type Shipment, which no command handles"
}

@test "events appended around the rules that make no sense stop commands on that aggregate" {
	product "$P1" SKU-1 1
	printf '{"aggregate_id":"%s","aggregate_type":"Inventory","event_type":"InventoryReserved","data":{"order_id":"%s","quantity":5}}\n' "$P1" "$O1" | cqrs-append -q
	run --separate-stderr cqrs-command replenish-stock --product "$P1" --quantity 1
	assert_failure 65
	assert_equal "$stderr" "cqrs-command: replenish-stock: product $P1: event InventoryReserved at version 3 has unreadable data: the stock it leaves is out of range"
}
