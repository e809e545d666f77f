#!/usr/bin/env bats
# cqrs-saga and the one order lifecycle (issue 8): the saga treats a goal
# someone else reached as reached, never undoes a person's decision, and
# undoes its own work when a person cancels the order.

load saga_helper

eval "base_$(declare -f setup)"
setup() {
	base_setup
	saga_setup
}

HAPPY="SagaStarted InventoryReserved SagaStepCompleted PaymentAuthorized SagaStepCompleted ShippingLabelCreated SagaStepCompleted OrderConfirmed SagaStepCompleted SagaCompleted"

# on_hand reserved of the product, from the aggregate
stock() {
	cqrs-command show "$P" | jq -r '.state | "\(.on_hand) \(.reserved)"'
}

# the reached steps of an order's saga, from its SagaStepCompleted events
reached() {
	cqrs-read --correlation "order-$1" --event-type SagaStepCompleted |
		jq -r 'select(.data.reached) | "\(.data.step)=\(.data.reached)"' | tr '\n' ' ' | sed 's/ $//'
}

@test "a person confirms before the saga: the saga completes, confirm counts as reached" {
	order 1
	cqrs-command -q confirm-order --order "$(order_id 1)"
	run --separate-stderr cqrs-saga run
	assert_success
	assert_equal "$stderr" ""
	assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
	assert_equal "$(effects 1)" "OrderCreated OrderConfirmed InventoryReserved PaymentAuthorized ShippingLabelCreated"
	assert_equal "$(reached 1)" "confirm_order=unchanged"
	# nothing cancelled, nothing undone
	assert_equal "$(cqrs-read --event-type OrderCancelled | wc -l)" 0
	assert_equal "$(cqrs-read --event-type AuthorizationVoided | wc -l)" 0
}

@test "a person confirms, then a step fails: the saga undoes its own steps and leaves the order to the person" {
	export PAYMENT_GATEWAY_DECLINE=cust-broke
	order 1 cust-broke
	cqrs-command -q confirm-order --order "$(order_id 1)"
	run --separate-stderr cqrs-saga run
	assert_success
	assert_equal "$(saga_row 1)" "FAILED|0|0|left_to_person"
	# its reservation undone, the person's confirmation kept: no cancellation
	assert_equal "$(effects 1)" "OrderCreated OrderConfirmed InventoryReserved InventoryReleased"
	assert_equal "$(cqrs-command show "$(order_id 1)" | jq -r .state.status)" CONFIRMED
	assert_equal "$(stock)" "100 0"
	assert_equal "$(cqrs-read --correlation order-1 --event-type SagaFailed | jq -r .data.outcome)" left_to_person
	# status counts it and lists it as needing a person
	run --separate-stderr cqrs-saga status
	assert_success
	assert_line "  FAILED        1 (compensated 0, compensation failed 0, left to a person 1, cancelled 0)"
	assert_line --partial "$(saga_of 1) order FAILED (left to a person) step 0"
	run --separate-stderr cqrs-saga status --format ndjson
	assert_success
	assert_equal "$(head -n 1 <<<"$output" | jq -c '[.FAILED, .compensated, .left_to_person, .cancelled]')" '[1,0,1,0]'
	assert_equal "$(sed -n 2p <<<"$output" | jq -r '.stuck | "\(.saga_id) \(.why)"')" "$(saga_of 1) left_to_person"
	run --separate-stderr cqrs-saga show "$(saga_of 1)"
	assert_success
	assert_line "status       FAILED (left_to_person)"
	assert_line --regexp "SagaFailureHandled +on_failure: left to a person: their decision stands$"
}

@test "a person cancels after the saga completed: stock released, payment voided, label cancelled, each once" {
	order 1
	run cqrs-saga run
	assert_success
	assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
	assert_equal "$(stock)" "100 2"
	cqrs-command -q cancel-order --order "$(order_id 1)" --reason "customer changed their mind"
	run --separate-stderr cqrs-saga run
	assert_success
	assert_equal "$stderr" ""
	assert_equal "$(saga_row 1)" "FAILED|0|0|cancelled"
	assert_equal "$(effects 1)" "OrderCreated InventoryReserved PaymentAuthorized ShippingLabelCreated OrderConfirmed OrderCancelled InventoryReleased ShipmentCancelled AuthorizationVoided"
	assert_equal "$(story 1)" "OrderCreated $HAPPY OrderCancelled InventoryReleased SagaCompensationStarted SagaStepCompensated ShipmentCancelled SagaStepCompensated AuthorizationVoided SagaStepCompensated SagaStepCompensated SagaFailed"
	assert_equal "$(stock)" "100 0"
	saga=$(saga_of 1)
	assert_equal "$(cat "$PAYMENT_GATEWAY_DIR/calls.log")" "authorize $saga/authorize_payment ok
void $saga/authorize_payment/compensate ok"
	assert_equal "$(cat "$SHIPPING_LABEL_DIR/calls.log")" "create $saga/create_shipping_label ok
cancel $saga/create_shipping_label/compensate ok"
	assert_equal "$(cqrs-read --event-type ShipmentCancelled | jq -r .data.reason)" "cancelled: customer changed their mind"
	# the status and a second run: nothing more
	run cqrs-saga status --format ndjson
	assert_equal "$(head -n 1 <<<"$output" | jq -c '[.FAILED, .cancelled, .left_to_person]')" '[1,1,0]'
	n=$(cqrs-read | wc -l)
	run cqrs-saga run
	assert_success
	assert_equal "$(cqrs-read | wc -l)" "$n"
}

@test "a person cancels while the saga waits to retry: only what it did is undone" {
	export PAYMENT_GATEWAY_AUTHORIZE_MODE=fail
	order 1
	run cqrs-saga run
	assert_equal "$(saga_row 1)" "RUNNING|1|1|"
	cqrs-command -q cancel-order --order "$(order_id 1)" --reason "too slow"
	run --separate-stderr cqrs-saga run
	assert_success
	assert_equal "$(saga_row 1)" "FAILED|0|0|cancelled"
	assert_equal "$(effects 1)" "OrderCreated InventoryReserved OrderCancelled InventoryReleased"
	assert_equal "$(stock)" "100 0"
	# the gateway was not called again, not even to void
	assert_equal "$(grep -c . "$PAYMENT_GATEWAY_DIR/calls.log")" 1
}

@test "a person reserves, pays and ships by hand: the saga finds every goal reached and undoes nothing" {
	order 1
	cqrs-command -q reserve-inventory --product "$P" --order "$(order_id 1)" --quantity 2
	cqrs-command -q confirm-payment --order "$(order_id 1)" --payment 11111111-2222-4333-8444-555555555555 --amount 59.98
	cqrs-command -q ship-order --order "$(order_id 1)" --carrier UPS --tracking 1Z999
	run --separate-stderr cqrs-saga run
	assert_success
	assert_equal "$stderr" ""
	assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
	assert_equal "$(reached 1)" "reserve_inventory=goal authorize_payment=goal create_shipping_label=goal confirm_order=goal"
	# no call went out, nothing of the saga's own was done or undone
	assert_equal "$(calls)" 0
	for t in InventoryReleased PaymentAuthorized AuthorizationVoided ShippingLabelCreated ShipmentCancelled OrderCancelled OrderConfirmed; do
		assert_equal "$t $(cqrs-read --event-type "$t" | wc -l)" "$t 0"
	done
	assert_equal "$(cqrs-command show "$(order_id 1)" | jq -r .state.status)" SHIPPED
	assert_equal "$(stock)" "98 0"
	# a cancellation after shipment is refused, and the saga stays as it was
	run --separate-stderr cqrs-command cancel-order --order "$(order_id 1)" --reason late
	assert_failure 4
	run cqrs-saga run
	assert_success
	assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
}

@test "a label someone made for the order counts as the label step's goal" {
	order 1
	printf '{"aggregate_type":"Shipment","aggregate_id":"22222222-3333-4444-8555-666666666666","event_type":"ShippingLabelCreated","data":{"order_id":"%s","tracking_number":"HAND-1","carrier":"DHL"},"metadata":{"correlation_id":"order-1"}}\n' "$(order_id 1)" | cqrs-append
	run --separate-stderr cqrs-saga run
	assert_success
	assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
	assert_equal "$(reached 1)" "create_shipping_label=goal"
	[ ! -e "$SHIPPING_LABEL_DIR/calls.log" ]
	# its output is the event that showed it
	assert_equal "$(cqrs-saga show --format ndjson "$(saga_of 1)" | jq -r .state.steps.create_shipping_label.data.tracking_number)" HAND-1
	# a cancellation undoes what the saga did, not the person's label
	cqrs-command -q cancel-order --order "$(order_id 1)" --reason "no longer needed"
	run cqrs-saga run
	assert_equal "$(saga_row 1)" "FAILED|0|0|cancelled"
	assert_equal "$(cqrs-read --event-type ShipmentCancelled | wc -l)" 0
	assert_equal "$(cqrs-read --event-type AuthorizationVoided | wc -l)" 1
}

@test "kill -9 anywhere in a cancellation's compensation, then a resume: each effect exactly once" {
	sqlite_only "each crash starts from a copy of the store file"
	order 1
	run cqrs-saga run
	assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
	cqrs-command -q cancel-order --order "$(order_id 1)" --reason "customer request"
	mkdir template
	cp -a "$CQRS_STORE" "$PAYMENT_GATEWAY_DIR" "$SHIPPING_LABEL_DIR" template/
	for f in "$CQRS_STORE"-*; do [ -e "$f" ] && cp -a "$f" template/; done
	saga=$(saga_of 1)
	want="OrderCreated InventoryReserved PaymentAuthorized ShippingLabelCreated OrderConfirmed OrderCancelled InventoryReleased ShipmentCancelled AuthorizationVoided"
	n=1 crashes=0
	while :; do
		rm -rf "$CQRS_STORE"* "$PAYMENT_GATEWAY_DIR" "$SHIPPING_LABEL_DIR"
		cp -a template/* "$BATS_TEST_TMPDIR/"
		CQRS_SAGA_CRASH_AT=$n run cqrs-saga run
		if [ "$status" -eq 0 ]; then
			break
		fi
		assert_equal "$status" 137
		crashes=$((crashes + 1))
		run --separate-stderr cqrs-saga run
		assert_success
		assert_equal "crash at $n: $(saga_row 1)" "crash at $n: FAILED|0|0|cancelled"
		assert_equal "crash at $n: $(effects 1)" "crash at $n: $want"
		assert_equal "crash at $n: $(grep -c "^void $saga/authorize_payment/compensate ok$" "$PAYMENT_GATEWAY_DIR/calls.log")" "crash at $n: 1"
		assert_equal "crash at $n: $(grep -c "^cancel $saga/create_shipping_label/compensate ok$" "$SHIPPING_LABEL_DIR/calls.log")" "crash at $n: 1"
		assert_equal "crash at $n: $(stock)" "crash at $n: 100 0"
		n=$((n + 1))
	done
	# the loop got past every transaction boundary of the cancellation
	[ "$crashes" -ge 8 ]
	assert_equal "$(saga_row 1)" "FAILED|0|0|cancelled"
	assert_equal "$(effects 1)" "$want"
}

@test "a store of release 0.1: its saga in flight finishes, its finished sagas stay as they were" {
	sqlite_only "release 0.1 stored events in a SQLite file (the fixture)"
	fixture=${CQRS_TOP_SRCDIR:?}/tests/fixtures/release-0.1/events.db
	[ -f "$fixture" ] || fail "no fixture at $fixture"
	rm -f "$CQRS_STORE"*
	cp "$fixture" "$CQRS_STORE"
	chmod 600 "$CQRS_STORE"
	rm -rf "$PAYMENT_GATEWAY_DIR" "$SHIPPING_LABEL_DIR"
	q="SELECT correlation_id, status, current_step, coalesce(outcome, ''), revision, updated_at FROM saga_instances"
	before=$(sqlite3 "$CQRS_STORE" "$q WHERE status != 'RUNNING' ORDER BY correlation_id")
	assert_equal "$(saga_row 5)" "RUNNING|1|1|"
	n=$(cqrs-read | wc -l)
	# after order 5's retry is due, with the gateway up again
	export CQRS_SAGA_NOW=2026-11-02T11:00:00Z
	run --separate-stderr cqrs-saga run
	assert_success
	assert_equal "$stderr" ""
	assert_equal "$(saga_row 5)" "COMPLETED|4|0|completed"
	assert_equal "$(cqrs-read --correlation order-5 | jq -r 'select(.aggregate_type != "Saga") | .event_type' | tr '\n' ' ')" "OrderCreated InventoryReserved PaymentAuthorized ShippingLabelCreated OrderConfirmed "
	# order 6, created after the last run of 0.1, gets its saga
	assert_equal "$(saga_row 6)" "COMPLETED|4|0|completed"
	# the finished ones: untouched, and none of the old cancellations acted on
	assert_equal "$(sqlite3 "$CQRS_STORE" "$q WHERE correlation_id IN ('order-1', 'order-2', 'order-3', 'order-4') ORDER BY correlation_id")" "$before"
	assert_equal "$(cqrs-read --after "$n" | jq -r .event_type | grep -c -E '^(InventoryReleased|AuthorizationVoided|ShipmentCancelled|OrderCancelled)$')" 0
	# the saga's calls: order 5's and 6's only
	assert_equal "$(cut -d' ' -f1,3 "$PAYMENT_GATEWAY_DIR/calls.log" | tr '\n' ' ')" "authorize ok authorize ok "
}

# Found by the soak (tests/soak): an order that names a product on two
# lines got only the first line's reservation from the saga (the second
# line's goal, "holds at least its quantity", already held), so it could
# never ship.
@test "an order naming a product on two lines: the saga reserves both, and the order ships" {
	printf '{"command_id":"create-1","type":"CreateOrder","order_id":"%s","correlation_id":"order-1","customer_id":"cust-42","items":[{"product_id":"%s","quantity":4,"unit_price":29.99},{"product_id":"%s","quantity":1,"unit_price":0.00}],"currency":"USD","shipping_address":{"name":"Ada","street":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}\n' \
		"$(order_id 1)" "$P" "$P" | cqrs-command -q
	run --separate-stderr cqrs-saga run
	assert_success
	assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
	assert_equal "$(stock)" "100 5"
	assert_equal "$(cqrs-read --event-type InventoryReserved | jq -r .data.quantity | tr '\n' ' ')" "4 1 "
	cqrs-command -q confirm-payment --order "$(order_id 1)" --payment 11111111-2222-4333-8444-555555555555 --amount 119.96
	run cqrs-command ship-order --order "$(order_id 1)" --carrier UPS --tracking 1Z999
	assert_success
	assert_equal "$(stock)" "95 0"
	# run again: every goal holds, nothing more is reserved
	run cqrs-saga run
	assert_success
	assert_equal "$(cqrs-read --event-type InventoryReserved | wc -l)" 2
}

@test "reserve-inventory with if_needed: the goal is the quantity, and what the order needs of the product in all" {
	order 1 cust-42 3
	printf '{"command_id":"r-%s","type":"ReserveInventory","product_id":"%s","order_id":"%s","quantity":2,"if_needed":true}\n' \
		1 "$P" "$(order_id 1)" 2 "$P" "$(order_id 1)" 3 "$P" "$(order_id 1)" >r.ndjson
	run cqrs-command r.ndjson
	assert_success
	# 2 (held 0), 2 more (held 2 < the 3 the order needs), then unchanged (held 4)
	assert_equal "$(echo "$output" | jq -r .status | tr '\n' ' ')" "accepted accepted unchanged "
	assert_equal "$(stock)" "100 4"
}
