#!/usr/bin/env bats
# Upgrading (issue 8): a store and views written by release 0.1
# (tests/fixtures/release-0.1, see make-store.sh there: two products, six
# orders, two completed sagas, two compensated, one RUNNING with the gateway
# failing, a snapshot of the Widget's Inventory at version 12 in the old
# state format, views one order behind) keep working under the lifecycle's
# new rules.

load saga_helper
eval "base_$(declare -f setup)"

W=3c9a7b1e-4d2f-4e8a-b6c5-0f1e2d3c4b5a # Widget: snapshot at version 12
G=5a1e9c3b-2f4d-4b6a-9c8e-7d6f5e4d3c2b # Gadget

setup() {
	base_setup
	cp "$FIXTURES/release-0.1/events.db" "$FIXTURES/release-0.1/views.db" .
	chmod 600 events.db views.db
	export CQRS_VIEWS="$BATS_TEST_TMPDIR/views.db"
	export PAYMENT_GATEWAY_DIR="$BATS_TEST_TMPDIR/pg"
	export SHIPPING_LABEL_DIR="$BATS_TEST_TMPDIR/sl"
	unset PAYMENT_GATEWAY_MODE PAYMENT_GATEWAY_AUTHORIZE_MODE PAYMENT_GATEWAY_VOID_MODE \
		PAYMENT_GATEWAY_DECLINE SHIPPING_LABEL_MODE SHIPPING_LABEL_CREATE_MODE \
		SHIPPING_LABEL_CANCEL_MODE SHIPPING_LABEL_COUNTRIES CQRS_SAGA_CRASH_AT
	# an hour after release 0.1's last run: order 5's retry is due
	export CQRS_SAGA_NOW=2026-11-02T11:00:00Z
}
# The order id of the fixture's order N (ORD-2026-00000N).
fixture_order() {
	cqrs-read --event-type OrderCreated |
		jq -r --arg n "ORD-2026-00000$1" 'select(.data.order_number == $n) | .aggregate_id'
}

# status|outcome of the fixture's order N's saga
saga_of_order() {
	sqlite3 "$CQRS_STORE" "SELECT status || '|' || coalesce(outcome, '') FROM saga_instances WHERE correlation_id = 'order-$1'"
}

# An order's story of domain events (no Saga ones), by correlation id.
domain_story() {
	cqrs-read --correlation "order-$1" |
		jq -r 'select(.aggregate_type != "Saga") | .event_type' | tr '\n' ' ' | sed 's/ $//'
}

# What the orders $@ hold of a product, and how many orders hold some, from
# its state on stdin (holds: [{order_id, quantity}], cqrs-command(1)).
held_by() {
	jq -c --args '(.holds | map({(.order_id): .quantity}) | add // {}) as $h |
		[($ARGS.positional[] | $h[.]), ($h | length)]' "$@"
}

# The queries people run, against the views file $1.
queries() {
	local v=$1 id
	cqrs-query --views "$v" -f ndjson orders -n 1000
	cqrs-query --views "$v" -f ndjson inventory
	for id in $(cqrs-query --views "$v" -f ndjson orders -n 1000 | jq -r .order_id); do
		cqrs-query --views "$v" -f ndjson order "$id"
	done
	cqrs-query --views "$v" -f ndjson summary cust-1
	cqrs-query --views "$v" -f ndjson sales
}

@test "every tool opens a release 0.1 store and views" {
	run --separate-stderr cqrs-read
	assert_success
	assert_equal "${#lines[@]}" 67
	run --separate-stderr cqrs-command show "$W"
	assert_success
	run --separate-stderr cqrs-saga status --format ndjson
	assert_success
	assert_equal "$(head -1 <<<"$output" | jq -c '[.total, .RUNNING, .COMPLETED, .FAILED]')" '[5,1,2,2]'
	# readers of views not yet upgraded say what to do (cqrs-query(1))
	run --separate-stderr cqrs-project --lag
	assert_failure 66
	assert_regex "$stderr" "views of an older release \\(schema version 1\\): run cqrs-project to upgrade them$"
	run --separate-stderr cqrs-query -f ndjson orders
	assert_failure 66
	cqrs-project >/dev/null
	run --separate-stderr cqrs-project --lag
	assert_success
	run --separate-stderr cqrs-query -f ndjson orders
	assert_success
	run --separate-stderr cqrs-saga check
	assert_success
	# and a writer appends to it
	event "$(order_id 99)" SomethingNoted '{"note":"hello"}' >e.ndjson
	run --separate-stderr cqrs-append -q e.ndjson
	assert_success
	assert_equal "$(stored_count)" 68
}

@test "cqrs-read --verify passes on a release 0.1 store" {
	run --separate-stderr cqrs-read --verify
	assert_success
	assert_equal "$stderr" ''
}

@test "the old snapshot of an Inventory gives the state of a full replay, under the new rules" {
	# release 0.1 kept available/reserved only; the per-order holdings and
	# on_hand/shipped/received must come from the events
	full=$(cqrs-command show --ignore-snapshots "$W" | jq -c .state)
	run --separate-stderr cqrs-command show "$W"
	assert_success
	assert_equal "$(jq -c .state <<<"$output")" "$full"
	assert_equal "$(jq -c '[.on_hand, .reserved, .available, .shipped, .received]' <<<"$full")" \
		'[130,5,125,0,130]'
	# the units held, per order: orders 1 and 2 (2 each), order 5 (1)
	o1=$(fixture_order 1) o2=$(fixture_order 2) o5=$(fixture_order 5)
	assert_equal "$(held_by "$o1" "$o2" "$o5" <<<"$full")" '[2,2,1,3]'
	gadget=$(cqrs-command show --ignore-snapshots "$G" | jq -c '.state | [.on_hand, .reserved, .available, .shipped, .received]')
	assert_equal "$gadget" '[5,2,3,0,5]'
	# a command on the snapshotted product decides on the right state
	run --separate-stderr cqrs-command replenish-stock --product "$W" --quantity 1
	assert_success
	assert_equal "$(cqrs-command show "$W" | jq -c '.state | [.on_hand, .reserved, .available, .received]')" \
		'[131,5,126,131]'
}

@test "the saga in flight from release 0.1 finishes, and order 6 gets its saga" {
	assert_equal "$(saga_of_order 5)" 'RUNNING|'
	before=$(cqrs-read --correlation order-1 | wc -l)
	run --separate-stderr cqrs-saga run
	assert_success
	assert_equal "$(saga_of_order 5)" 'COMPLETED|completed'
	assert_equal "$(domain_story 5)" \
		'OrderCreated InventoryReserved PaymentAuthorized ShippingLabelCreated OrderConfirmed'
	assert_equal "$(saga_of_order 6)" 'COMPLETED|completed'
	# the finished ones are left as they were
	assert_equal "$(saga_of_order 1)" 'COMPLETED|completed'
	assert_equal "$(saga_of_order 3)" 'FAILED|compensated'
	assert_equal "$(saga_of_order 4)" 'FAILED|compensated'
	assert_equal "$(cqrs-read --correlation order-1 | wc -l)" "$before"
	run --separate-stderr cqrs-read --verify
	assert_success
}

@test "cancelling an order whose saga completed under release 0.1 undoes what it holds" {
	o1=$(fixture_order 1)
	run --separate-stderr cqrs-command cancel-order --order "$o1" --reason 'changed my mind'
	assert_success
	run --separate-stderr cqrs-saga run
	assert_success
	assert_equal "$(cut -d'|' -f2 <<<"$(saga_of_order 1)")" cancelled
	# no stock held by the cancelled order, its authorization voided, its label cancelled
	for p in "$W" "$G"; do
		assert_equal "$(cqrs-command show "$p" | jq -c .state | held_by "$o1" | jq '.[0]')" null
	done
	pay=$(cqrs-read --correlation order-1 --event-type PaymentAuthorized | jq -r .aggregate_id)
	assert_equal "$(cqrs-command show "$pay" | jq -c '.state | [.authorized, .captured, .voided]')" '[64.98,0,true]'
	assert_equal "$(cqrs-read --correlation order-1 --event-type ShipmentCancelled | wc -l)" 1
	assert_equal "$(cqrs-command show "$W" | jq -c '.state | [.reserved, .available]')" '[3,127]'
}

@test "cqrs-project brings the old views up to date on its own, equal to a fresh rebuild" {
	run --separate-stderr cqrs-project
	assert_success
	assert_equal "$stderr" ''
	run --separate-stderr cqrs-project --diff
	assert_success
	run --separate-stderr cqrs-project -o fresh.db
	assert_success
	assert_equal "$(queries views.db)" "$(queries fresh.db)"
	# the views know what release 0.1's events did: order 6, the payment
	# and label of order 1, the stock received
	o1=$(fixture_order 1)
	assert_equal "$(cqrs-query -f ndjson orders -n 1000 | wc -l)" 6
	run --separate-stderr cqrs-query -f ndjson order "$o1"
	assert_success
	assert_equal "$(jq -c '[.status, (.amount_authorized | tostring), .payment_status != null, .tracking_number != null]' <<<"$output")" \
		'["CONFIRMED","64.98",true,true]'
	assert_equal "$(cqrs-query -f ndjson inventory "$W" | jq -c '[.on_hand, .reserved, .available, .shipped, .received]')" \
		'[130,5,125,0,130]'
}

@test "a new order on the old store goes through the saga and ships under the new rules" {
	run --separate-stderr cqrs-command -c order-7 create-order --order "$(order_id 7)" \
		--customer cust-7 --item "$W:3:29.99" --currency USD \
		--ship-to 'Customer 7,7 Main St,Springfield,12345,US'
	assert_success
	run --separate-stderr cqrs-saga run
	assert_success
	assert_equal "$(saga_of_order 7)" 'COMPLETED|completed'
	assert_equal "$(domain_story 7)" \
		'OrderCreated InventoryReserved PaymentAuthorized ShippingLabelCreated OrderConfirmed'
	run --separate-stderr cqrs-command confirm-payment --order "$(order_id 7)" \
		--payment "$(order_id 70)" --amount 89.97
	assert_success
	run --separate-stderr cqrs-command ship-order --order "$(order_id 7)" --carrier FedEx --tracking T7
	assert_success
	assert_equal "$(jq -r '[.events[].event_type] | join(" ")' <<<"$output")" 'OrderShipped InventoryShipped'
	# the shipment took order 7's 3 units; orders 1, 2 and 5 still hold theirs
	assert_equal "$(cqrs-command show "$W" | jq -c '.state | [.on_hand, .reserved, .available, .shipped, .received]')" \
		'[127,5,122,3,130]'
	run --separate-stderr cqrs-project
	assert_success
	assert_equal "$(cqrs-query -f ndjson inventory "$W" | jq -c '[.on_hand, .reserved, .available, .shipped, .received]')" \
		'[127,5,122,3,130]'
}
