# Shared setup for the cqrs-saga suites: a product in stock, orders made
# with cqrs-command, the sample step programs with their memory in the
# test's directory, and the runner's clock pinned.
# shellcheck disable=SC2034 # P, ORDERS and friends are used by the suites

load test_helper

P=3c9a7b1e-4d2f-4e8a-b6c5-0f1e2d3c4b5a
T0=2026-03-01T12:00:00Z

saga_setup() {
	export PAYMENT_GATEWAY_DIR="$BATS_TEST_TMPDIR/pg"
	export SHIPPING_LABEL_DIR="$BATS_TEST_TMPDIR/sl"
	export CQRS_SAGA_NOW=$T0
	unset PAYMENT_GATEWAY_MODE PAYMENT_GATEWAY_AUTHORIZE_MODE PAYMENT_GATEWAY_VOID_MODE \
		PAYMENT_GATEWAY_DECLINE SHIPPING_LABEL_MODE SHIPPING_LABEL_CREATE_MODE \
		SHIPPING_LABEL_CANCEL_MODE SHIPPING_LABEL_COUNTRIES CQRS_SAGA_CRASH_AT
	cqrs-command -q register-product --product "$P" --sku SKU-1 --name Widget --quantity "${1:-100}"
}

# order N [customer] [quantity] [country]: creates order number N (its id is
# ORDER_N) with correlation id order-N.
order() {
	local n=$1 id
	id=$(printf '00000000-0000-4000-8000-%012d' "$n")
	printf '{"command_id":"create-%s","type":"CreateOrder","order_id":"%s","correlation_id":"order-%s","customer_id":"%s","items":[{"product_id":"%s","quantity":%s,"unit_price":29.99}],"currency":"USD","shipping_address":{"name":"Ada","street":"1 Main St","city":"Springfield","postal_code":"12345","country":"%s"}}\n' \
		"$n" "$id" "$n" "${2:-cust-42}" "$P" "${3:-2}" "${4:-US}" | cqrs-command -q
}

order_id() {
	printf '00000000-0000-4000-8000-%012d' "$1"
}

# The event types of one order's story, one line, in store order.
story() {
	cqrs-read --correlation "order-$1" | jq -r .event_type | tr '\n' ' ' | sed 's/ $//'
}

# The domain events of one order's story (no Saga ones).
effects() {
	cqrs-read --correlation "order-$1" | jq -r 'select(.aggregate_type != "Saga") | .event_type' |
		tr '\n' ' ' | sed 's/ $//'
}

saga_of() {
	store_query "SELECT saga_id FROM saga_instances WHERE correlation_id = 'order-$1'"
}

# status|current_step|attempts|outcome of one order's saga
saga_row() {
	store_query "SELECT status, current_step, attempts, coalesce(outcome, '') FROM saga_instances WHERE correlation_id = 'order-$1'"
}

# Moves the runner's clock: at +90s, at +2h ...
at() {
	CQRS_SAGA_NOW=$(date -u -d "$T0 $1 seconds" +%Y-%m-%dT%H:%M:%SZ)
	export CQRS_SAGA_NOW
}

# A saga definition in the test's directory, from the shipped one with
# the lines of sed script $1 applied.
saga_file() {
	sed -e "$1" "${CQRS_SHAREDIR:?}/sagas/order.yaml" >"$BATS_TEST_TMPDIR/saga.yaml"
	echo "$BATS_TEST_TMPDIR/saga.yaml"
}

calls() {
	cat "$PAYMENT_GATEWAY_DIR/calls.log" "$SHIPPING_LABEL_DIR/calls.log" 2>/dev/null | wc -l
}
