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
