#!/usr/bin/env bats
# Bad events stop at the door (issue 8): every path into the store checks
# the payload of the domain's events against lib/domain/event_schema.c, one
# test per rule; unknown types and versions pass; history that carries its
# sequence and hash is judged by the chain.

bats_require_minimum_version 1.5.0
load test_helper

A=44444444-4444-4444-8444-444444444444
P=11111111-1111-4111-8111-111111111111
ITEM='{"product_id":"'$P'","sku":"S","quantity":2,"unit_price":29.99}'

# An envelope of event type $1 with data $2 (aggregate type $3).
ev() {
	printf '{"aggregate_id":"%s","aggregate_type":"%s","event_type":"%s","data":%s}\n' \
		"$A" "${3:-Order}" "$1" "$2"
}

created() {
	ev OrderCreated '{"order_number":"ORD-2026-000001","customer_id":"c","items":['"${1:-$ITEM}"'],"currency":"'"${3:-USD}"'","total":'"${2:-59.98}"',"shipping_address":{"street":"1 Main St","city":"X","postal_code":"1","country":"US"}}'
}

# The lines on stdin must be refused with 65 and the message $1 (for
# stdin:1), storing nothing.
refused() {
	run --separate-stderr cqrs-append
	assert_not_signalled
	assert_failure 65
	assert_output ''
	assert_equal "${stderr%%$'\n'*}" "cqrs-append: stdin:1: $1"
	if [ -e "$CQRS_STORE" ]; then assert_equal "$(stored_count)" 0; fi
}

stored() {
	run --separate-stderr cqrs-append -q
	assert_success
	assert_equal "$stderr" ''
}

@test "what the domain writes goes in" {
	created | stored
	ev OrderCreated '{"order_number":"N","customer_id":"c","items":['"$ITEM"'],"currency":"USD","total":59.98,"shipping_address":{"name":"A","street":"s","city":"c","state":"OR","postal_code":"1","country":"US"},"payment_method":"card","created_at":"2026-01-16T14:00:00Z"}' | stored
	ev OrderConfirmed '{}' | stored
	ev OrderConfirmed '{"note":"n","by":"saga"}' | stored
	ev PaymentProcessed '{"payment_id":"'$P'","amount":59.98,"currency":"USD","processed_at":"2026-01-16T14:00:00Z"}' | stored
	ev OrderShipped '{"tracking_number":"T","carrier":"C","shipped_at":"2026-01-16T14:00:00+01:00"}' | stored
	ev OrderCancelled '{"reason":"r"}' | stored
	ev InventoryShipped '{"order_id":"'$P'","quantity":1}' Inventory | stored
	ev PaymentAuthorized '{"order_id":"'$P'","amount":1500,"currency":"JPY"}' Payment | stored
	ev AuthorizationVoided '{"order_id":"'$P'"}' Payment | stored
	ev ShippingLabelCreated '{"order_id":"'$P'","tracking_number":"T","carrier":"C"}' Shipment | stored
	ev ShipmentCancelled '{"order_id":"'$P'","reason":"r"}' Shipment | stored
	# members beyond the declared ones pass
	ev StockReplenished '{"quantity":1,"note":"extra"}' Inventory | stored
}

@test "unknown event types and versions pass" {
	ev OrderNoted '{"anything":1e400}' | stored
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderCreated","event_version":2,"data":{"total":1e400}}\n' "$A" | stored
}

@test "rule: money is exact in the order's currency (1e400, decimals, exponents)" {
	created "$ITEM" 1e400 | refused "OrderCreated (event_version 1): data.total is not an exact amount of USD: 1e400"
	created "$ITEM" 59.980 | refused "OrderCreated (event_version 1): data.total is not an exact amount of USD: 59.980"
	created '{"product_id":"'$P'","quantity":1,"unit_price":5.5}' 6 JPY |
		refused "OrderCreated (event_version 1): data.items[].unit_price is not an exact amount of JPY: 5.5"
	ev PaymentCaptured '{"order_id":"'$P'","amount":1.5e1,"currency":"USD"}' Payment |
		refused "PaymentCaptured (event_version 1): data.amount is not an exact amount of USD: 1.5e1"
}

@test "rule: amounts are never negative or -0, and more than zero where the domain says" {
	ev PaymentRefunded '{"order_id":"'$P'","amount":-1.00,"currency":"USD"}' Payment |
		refused "PaymentRefunded (event_version 1): data.amount is not an exact amount of USD: -1.00"
	ev PaymentAuthorized '{"order_id":"'$P'","amount":-0,"currency":"USD"}' Payment |
		refused "PaymentAuthorized (event_version 1): data.amount is not an exact amount of USD: -0"
	ev PaymentAuthorized '{"order_id":"'$P'","amount":0.00,"currency":"USD"}' Payment |
		refused "PaymentAuthorized (event_version 1): data.amount must be more than zero: 0.00"
	# a free item is fine
	created '{"product_id":"'$P'","quantity":1,"unit_price":0.00}' 0.00 | stored
}

@test "rule: the items add up without overflow" {
	big='{"product_id":"'$P'","quantity":1000000000,"unit_price":99999999999.99}'
	# the message quotes the first 64 bytes of a value
	all="[$big,$big]"
	created "$big,$big" 1.00 | refused "OrderCreated (event_version 1): data.items add up to more than an order may total: ${all:0:64}"
	ev OrderCreated '{"order_number":"N","customer_id":"c","items":[],"currency":"USD","total":0.00}' |
		refused "OrderCreated (event_version 1): data.items is empty: []"
	ev OrderCreated '{"order_number":"N","customer_id":"c","items":{},"currency":"USD","total":0.00}' |
		refused "OrderCreated (event_version 1): data.items is not an array: {}"
}

@test "rule: quantities are whole numbers from 1 to 1000000000" {
	for q in 0 -1 1.5 1e3 10000000000 '"2"'; do
		ev InventoryReserved '{"order_id":"'$P'","quantity":'"$q"'}' Inventory |
			refused "InventoryReserved (event_version 1): data.quantity is not a whole number from 1 to 1000000000: $q"
	done
	item='{"product_id":"'$P'","quantity":0,"unit_price":1.00}'
	created "$item" 0.00 |
		refused "OrderCreated (event_version 1): data.items[1] has no quantity from 1 to 1000000000: ${item:0:64}"
}

@test "rule: required members are there" {
	ev OrderCreated '{"order_number":"N","customer_id":"c","currency":"USD","total":1.00}' |
		refused "OrderCreated (event_version 1): data.items is missing"
	ev PaymentProcessed '{"amount":1.00,"currency":"USD"}' |
		refused "PaymentProcessed (event_version 1): data.payment_id is missing"
	ev OrderShipped '{"carrier":"C","shipped_at":"2026-01-16T14:00:00Z"}' |
		refused "OrderShipped (event_version 1): data.tracking_number is missing"
	ev ShipmentCancelled '{"order_id":"'$P'"}' Shipment |
		refused "ShipmentCancelled (event_version 1): data.reason is missing"
}

@test "rule: ids are UUIDs" {
	ev InventoryReleased '{"order_id":"order-1","quantity":1}' Inventory |
		refused "InventoryReleased (event_version 1): data.order_id is not a UUID: \"order-1\""
	created '{"product_id":42,"quantity":1,"unit_price":1.00}' 1.00 |
		refused "OrderCreated (event_version 1): data.items[].product_id is not a UUID: 42"
}

@test "rule: texts are non-empty strings without control characters" {
	ev ProductRegistered '{"sku":"","name":"N"}' Inventory |
		refused "ProductRegistered (event_version 1): data.sku is not a string of 1 to 256 bytes: \"\""
	ev ProductRegistered '{"sku":7,"name":"N"}' Inventory |
		refused "ProductRegistered (event_version 1): data.sku is not a string of 1 to 256 bytes: 7"
	ev OrderCancelled '{"reason":"a\u0007b"}' |
		refused "OrderCancelled (event_version 1): data.reason contains a control character: \"a\\u0007b\""
	ev PaymentAuthorized '{"order_id":"'"$P"'","amount":1.00,"currency":"USD","authorization":12}' Payment |
		refused "PaymentAuthorized (event_version 1): data.authorization is not a string of 1 to 256 bytes: 12"
}

@test "rule: currencies are three capital letters, times are RFC 3339" {
	created "$ITEM" 59.98 usd | refused "OrderCreated (event_version 1): data.currency is not a three-letter currency code: \"usd\""
	ev OrderShipped '{"tracking_number":"T","carrier":"C","shipped_at":"yesterday"}' |
		refused "OrderShipped (event_version 1): data.shipped_at is not an RFC 3339 time: \"yesterday\""
}

@test "rule: the shipping address is an object whose parts are texts" {
	ev OrderCreated '{"order_number":"N","customer_id":"c","items":['"$ITEM"'],"currency":"USD","total":59.98,"shipping_address":{"city":"X","postal_code":1,"country":"US"}}' |
		refused "OrderCreated (event_version 1): data.shipping_address.postal_code is not a string of 1 to 256 bytes: 1"
	ev OrderCreated '{"order_number":"N","customer_id":"c","items":['"$ITEM"'],"currency":"USD","total":59.98,"shipping_address":"here"}' |
		refused "OrderCreated (event_version 1): data.shipping_address is not an object: \"here\""
	# the parts a command needs are the command's rule, not the payload's
	ev OrderCreated '{"order_number":"N","customer_id":"c","items":['"$ITEM"'],"currency":"USD","total":59.98,"shipping_address":{"country":"US"}}' | stored
}

@test "every path: cqrs-append --dry-run refuses too" {
	run --separate-stderr cqrs-append --dry-run < <(created "$ITEM" 1e400)
	assert_failure 65
	assert_equal "${stderr%%$'\n'*}" "cqrs-append: stdin:1: OrderCreated (event_version 1): data.total is not an exact amount of USD: 1e400"
}

@test "history with its sequence and hash is judged by the chain, not the schema" {
	line='{"sequence":1,"hash":"'$(printf '0%.0s' {1..64})'","aggregate_id":"'$A'","aggregate_type":"Order","event_type":"OrderCreated","data":{"total":1e400}}'
	run --separate-stderr cqrs-append <<<"$line"
	assert_failure 65
	assert_equal "${stderr%%$'\n'*}" "cqrs-append: stdin:1: field 'hash' does not match the event replayed at sequence 1: the input was edited (remove 'hash' to store it as new)"
	# a sequence alone is no history: checked
	run --separate-stderr cqrs-append <<<'{"sequence":1,"aggregate_id":"'$A'","aggregate_type":"Order","event_type":"OrderCreated","data":{"total":1e400}}'
	assert_failure 65
	assert_equal "${stderr%%$'\n'*}" "cqrs-append: stdin:1: OrderCreated (event_version 1): data.order_number is missing"
}

@test "cqrs-read | cqrs-append copies a store byte for byte" {
	cqrs-append -q "$FIXTURES/docs-store.ndjson"
	P1=11111111-1111-4111-8111-111111111111
	O1=22222222-2222-4222-8222-222222222222
	cqrs-command -q register-product --product "$P1" --sku S1 --name W --quantity 5
	cqrs-command -q create-order --order "$O1" --customer c --item "$P1:2:1.00" --currency USD \
		--street s --city c --state OR --zip 1 --country US --payment-method card
	cqrs-command -q reserve-inventory --product "$P1" --order "$O1" --quantity 2
	cqrs-command -q confirm-payment --order "$O1" --payment "$A" --amount 2.00
	cqrs-command -q ship-order --order "$O1" --carrier C --tracking T
	cqrs-read >orig.ndjson
	cqrs-read | cqrs-append -q -s copy.db
	cqrs-read -s copy.db >copy.ndjson
	cmp orig.ndjson copy.ndjson
	run cqrs-read -s copy.db --verify
	assert_success
	# the fixture of release 0.1 as well (a copy: readers leave -wal/-shm)
	cp "$FIXTURES/release-0.1/events.db" old.db
	cqrs-read -s old.db >old.ndjson
	cqrs-append -q -s old-copy.db old.ndjson
	cqrs-read -s old-copy.db | cmp - old.ndjson
}
