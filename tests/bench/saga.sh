# shellcheck shell=bash disable=SC2154,SC2153 # scratch, SECS and the helpers: run-bench
# saga.sh: the saga section of `make bench` (issue 5), sourced by run-bench.
#
# BENCH_SAGAS orders (default 10000, one or two items each over 100
# products) made with cqrs-command, then one `cqrs-saga run` takes every
# one through the order saga with in-process steps only: reserve each item,
# authorize the payment, a shipping label event, confirm the order (the
# shipped saga's programs are replaced by commands and events, as a service
# behind a program would be measured on its own).  fsync at every commit,
# 256 sagas per transaction (the default).  For reference: the same with
# --no-sync, and a commit per saga (-b 1) on a tenth of the orders.
# Target (issue 5): at least 1,000 sagas/s.
#
# Where the time goes: cqrs-saga run -v shows each step; callgrind as for
# cqrs-append (see store.sh) on a few thousand orders.

saga_bench_def() {
	cat <<'EOF'
saga: order
start:
  event_type: OrderCreated
  aggregate_type: Order
steps:
  - name: reserve_inventory
    for_each: ${event.data.items}
    command:
      type: ReserveInventory
      product_id: ${item.product_id}
      order_id: ${event.aggregate_id}
      quantity: ${item.quantity}
    compensate:
      for_each: ${event.data.items}
      command:
        type: ReleaseInventory
        product_id: ${item.product_id}
        order_id: ${event.aggregate_id}
        quantity: ${item.quantity}
  - name: authorize_payment
    command:
      type: AuthorizePayment
      payment_id: ${uuid:payment}
      order_id: ${event.aggregate_id}
      amount: ${event.data.total}
      currency: ${event.data.currency}
    compensate:
      command:
        type: VoidAuthorization
        payment_id: ${uuid:payment}
  - name: create_shipping_label
    emit:
      aggregate_type: Shipment
      aggregate_id: ${uuid:shipment}
      event_type: ShippingLabelCreated
      data:
        order_id: ${event.aggregate_id}
        tracking_number: TRK-${uuid:shipment}
        carrier: FedEx
  - name: confirm_order
    command:
      type: ConfirmOrder
      order_id: ${event.aggregate_id}
EOF
}

# saga_bench_store DB N: 100 products in stock and N orders.
saga_bench_store() {
	local db=$1 n=$2
	awk -v n="$n" 'BEGIN {
		for (p = 1; p <= 100; p++)
			printf "{\"command_id\":\"p%d\",\"type\":\"RegisterProduct\",\"product_id\":\"00000000-0000-4000-8000-%012d\",\"sku\":\"SKU-%d\",\"name\":\"Product %d\",\"quantity\":1000000}\n", p, p, p, p
		srand(42)
		for (i = 1; i <= n; i++) {
			a = int(rand() * 100) + 1; b = int(rand() * 100) + 1
			items = sprintf("{\"product_id\":\"00000000-0000-4000-8000-%012d\",\"quantity\":%d,\"unit_price\":19.99}", a, int(rand() * 3) + 1)
			if (i % 2 == 0 && b != a)
				items = items sprintf(",{\"product_id\":\"00000000-0000-4000-8000-%012d\",\"quantity\":1,\"unit_price\":5.25}", b)
			printf "{\"command_id\":\"o%d\",\"type\":\"CreateOrder\",\"order_id\":\"10000000-0000-4000-8000-%012d\",\"customer_id\":\"cust-%d\",\"items\":[%s],\"currency\":\"USD\",\"shipping_address\":{\"name\":\"N\",\"street\":\"S\",\"city\":\"C\",\"postal_code\":\"P\",\"country\":\"US\"}}\n", i, i, i % 997, items
		}
	}' | cqrs-command -q -b 1000 -s "$db"
}

saga_bench_check() {
	local db=$1 n=$2 completed
	completed=$(sqlite3 "$db" "SELECT count(*) FROM saga_instances WHERE status = 'COMPLETED'")
	if [ "$completed" != "$n" ]; then
		echo "run-bench: saga: $completed of $n sagas completed" >&2
		exit 70
	fi
}

bench_saga() {
	local n=${BENCH_SAGAS:-10000} def="$scratch/saga.yaml" db secs events
	if ! have cqrs-saga || ! have cqrs-command; then
		echo "run-bench: saga: cqrs-saga or cqrs-command not on PATH" >&2
		exit 69
	fi
	saga_bench_def >"$def"
	echo "saga: making $n orders ..." >&2
	db="$scratch/saga.db"
	saga_bench_store "$db" "$n"
	sqlite3 "$db" ".backup '$scratch/saga-nosync.db'"
	bench_measure cqrs-saga run -s "$db" -f "$def"
	saga_bench_check "$db" "$n"
	secs=$SECS
	events=$(sqlite3 "$db" "SELECT count(*) FROM events WHERE sequence > (SELECT max(start_sequence) FROM saga_instances)")
	bench_row "saga: $n orders, fsync" "$n" "$secs" "$RSS_MB" - "sagas; $events events written"
	bench_target "cqrs-saga: at least 1000 sagas/s (fsync, batch 256)" "$(rate "$n" "$secs") sagas/s" \
		"$(cmp "$(rate "$n" "$secs")" '>=' 1000)"
	rm -f "$db"*

	bench_measure cqrs-saga run --no-sync -s "$scratch/saga-nosync.db" -f "$def"
	saga_bench_check "$scratch/saga-nosync.db" "$n"
	bench_row "saga: $n orders, --no-sync" "$n" "$SECS" "$RSS_MB" "$(ratio "$secs" "$SECS")" "sagas"
	rm -f "$scratch/saga-nosync.db"*

	local m=$((n / 10))
	((m > 0)) || m=1
	db="$scratch/saga-b1.db"
	saga_bench_store "$db" "$m"
	bench_measure cqrs-saga run -b 1 -s "$db" -f "$def"
	saga_bench_check "$db" "$m"
	bench_row "saga: $m orders, -b 1 (commit each)" "$m" "$SECS" "$RSS_MB" - "sagas"
	rm -f "$db"*
}
