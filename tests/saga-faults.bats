#!/usr/bin/env bats
# cqrs-saga under trouble: kill -9 anywhere, hanging steps, a dead service
# behind a circuit breaker, deadlines, two runners, bad definitions.

load saga_helper

eval "base_$(declare -f setup)"
setup() {
	base_setup
	saga_setup
}

HAPPY_EFFECTS="OrderCreated InventoryReserved PaymentAuthorized ShippingLabelCreated OrderConfirmed"
FAILED_EFFECTS="OrderCreated InventoryReserved PaymentAuthorized AuthorizationVoided InventoryReleased OrderCancelled"

# Both orders' stories are whole, each effect exactly once, and each step
# program answered once per idempotency key.
assert_two_orders_done() {
	assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
	assert_equal "$(saga_row 2)" "FAILED|0|0|compensated"
	assert_equal "$(effects 1)" "$HAPPY_EFFECTS"
	assert_equal "$(effects 2)" "$FAILED_EFFECTS"
	assert_equal "$(cqrs-read --event-type SagaStarted | wc -l)" 2
	local dup
	dup=$(cat "$PAYMENT_GATEWAY_DIR/calls.log" "$SHIPPING_LABEL_DIR/calls.log" |
		grep ' ok$' | sort | uniq -d)
	assert_equal "$dup" ""
	cqrs-read --verify >/dev/null
}

@test "kill -9 at every transaction boundary, then a run resumes: nothing lost, nothing twice" {
	sqlite_only "a killed runner's instances wait for its lease on PostgreSQL (pg-saga.bats kills runners there)"
	local n=1 crashes=0
	while :; do
		rm -rf "$CQRS_STORE"* "$PAYMENT_GATEWAY_DIR" "$SHIPPING_LABEL_DIR"
		saga_setup
		order 1
		order 2 cust-42 2 XX
		CQRS_SAGA_CRASH_AT=$n run cqrs-saga run
		if [ "$status" -eq 0 ]; then
			break
		fi
		assert_equal "$status" 137
		crashes=$((crashes + 1))
		run --separate-stderr cqrs-saga run
		assert_success
		assert_two_orders_done
		n=$((n + 1))
	done
	# the loop got past every boundary of this work
	[ "$crashes" -ge 20 ]
	assert_two_orders_done
}

@test "kill -9 in the middle of a step program: the step runs again with the same key" {
	sqlite_only "a killed runner's instances wait for its lease on PostgreSQL (pg-saga.bats kills runners there)"
	cat >killer <<'EOF'
#!/bin/sh
# kills the runner while it waits for this step, the first time only
if [ ! -e "$SPY_DIR/killed" ]; then
	touch "$SPY_DIR/killed"
	kill -KILL "$PPID"
	sleep 1
fi
cat >/dev/null
echo "{\"tracking_number\":\"TRK-$CQRS_IDEMPOTENCY_KEY\",\"carrier\":\"UPS\"}"
echo "$CQRS_IDEMPOTENCY_KEY" >>"$SPY_DIR/keys"
EOF
	chmod +x killer
	export SPY_DIR=$BATS_TEST_TMPDIR
	f=$(saga_file 's|run: \[shipping-label, create\]|run: [./killer]|')
	order 1
	run cqrs-saga run -f "$f"
	assert_equal "$status" 137
	assert_equal "$(saga_row 1)" "RUNNING|2|0|"
	run cqrs-saga run -f "$f"
	assert_success
	assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
	assert_equal "$(effects 1)" "$HAPPY_EFFECTS"
	assert_equal "$(cat keys)" "$(saga_of 1)/create_shipping_label"
	assert_equal "$(grep -c authorize "$PAYMENT_GATEWAY_DIR/calls.log")" 1
}

@test "a step that hangs past its timeout is killed, with what it started, and retried" {
	# a short timeout for the payment step only: the retry that completes
	# runs the label step with its own 10s, so a loaded machine passes
	f=$(saga_file '/name: authorize_payment/,/timeout:/s|^    timeout: 10s$|    timeout: 1s|')
	grep -c '^    timeout: 1s$' "$f" | grep -qx 1 || fail "the saga file has not one 1s timeout"
	export PAYMENT_GATEWAY_AUTHORIZE_MODE=hang
	order 1
	run --separate-stderr cqrs-saga run -f "$f"
	assert_success
	pid=$(cat "$PAYMENT_GATEWAY_DIR/hang.pid")
	run kill -0 "$pid"
	assert_failure
	# nothing of its process group is left either
	run pgrep -g "$pid"
	assert_failure
	assert_equal "$(saga_row 1)" "RUNNING|1|1|"
	assert_equal "$(cqrs-read --correlation order-1 --event-type SagaStepFailed | jq -r .data.reason)" "timed out after 1s, killed"
	# one that ignores SIGTERM gets SIGKILL
	export PAYMENT_GATEWAY_AUTHORIZE_MODE=hang-hard
	at +10
	run cqrs-saga run -f "$f"
	assert_success
	pid=$(cat "$PAYMENT_GATEWAY_DIR/hang.pid")
	run kill -0 "$pid"
	assert_failure
	assert_equal "$(saga_row 1)" "RUNNING|1|2|"
	# the retry, with the step's own timeout
	unset PAYMENT_GATEWAY_AUTHORIZE_MODE
	at +100
	run cqrs-saga run
	assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
}

@test "the circuit breaker opens after repeated failures, and a dead service is not called" {
	f=$(saga_file 's|^    failures: 5$|    failures: 2|')
	export PAYMENT_GATEWAY_AUTHORIZE_MODE=fail
	order 1
	order 2
	order 3
	run --separate-stderr cqrs-saga run -f "$f"
	assert_success
	assert_equal "$stderr" "cqrs-saga: circuit breaker 'order.authorize_payment' opened after 2 failures"
	assert_equal "$(grep -c authorize "$PAYMENT_GATEWAY_DIR/calls.log")" 2
	assert_equal "$(store_query 'SELECT name, state, failures, opened_at FROM saga_breakers')" \
		"order.authorize_payment|open|2|2026-03-01T12:00:00.000000Z"
	assert_equal "$(cqrs-read --correlation order-3 --event-type SagaStepFailed | jq -r .data.reason)" \
		"circuit breaker 'order.authorize_payment' is open after 2 failures; not called"
	# while it cools down, the retries that fall due fail fast, uncalled
	at +30
	run cqrs-saga run -f "$f"
	assert_equal "$(grep -c authorize "$PAYMENT_GATEWAY_DIR/calls.log")" 2
	assert_equal "$(store_query "SELECT attempts FROM saga_instances ORDER BY rowid" | paste -sd,)" "2,2,1"
	# the state is kept across runs; after the cool-down one probe goes out,
	# it succeeds, the breaker closes and the rest follow
	unset PAYMENT_GATEWAY_AUTHORIZE_MODE
	at +61
	run cqrs-saga run -f "$f"
	assert_success
	assert_equal "$(store_query 'SELECT state, failures FROM saga_breakers')" "closed|0"
	assert_equal "$(cqrs-read --aggregate-type CircuitBreaker | jq -r .event_type | tr '\n' ' ')" \
		"CircuitBreakerOpened CircuitBreakerHalfOpened CircuitBreakerClosed "
	assert_equal "$(store_query "SELECT status FROM saga_instances ORDER BY rowid" | paste -sd,)" "COMPLETED,COMPLETED,COMPLETED"
	assert_equal "$(grep -c 'authorize .* ok$' "$PAYMENT_GATEWAY_DIR/calls.log")" 3
}

@test "a half-open breaker whose probe fails opens again, and lets no other call through" {
	f=$(saga_file 's|^    failures: 5$|    failures: 1|')
	export PAYMENT_GATEWAY_AUTHORIZE_MODE=fail
	order 1
	order 2
	cqrs-saga run -f "$f" 2>/dev/null
	assert_equal "$(grep -c authorize "$PAYMENT_GATEWAY_DIR/calls.log")" 1
	at +61
	run --separate-stderr cqrs-saga run -f "$f"
	assert_success
	# the probe, and only the probe
	assert_equal "$(grep -c authorize "$PAYMENT_GATEWAY_DIR/calls.log")" 2
	assert_equal "$(store_query 'SELECT state, opened_at FROM saga_breakers')" \
		"open|2026-03-01T12:01:01.000000Z"
	assert_equal "$(cqrs-read --aggregate-type CircuitBreaker | jq -r .event_type | tr '\n' ' ')" \
		"CircuitBreakerOpened CircuitBreakerHalfOpened CircuitBreakerOpened "
}

@test "a compensation behind an open breaker waits for it, and spends no attempt" {
	f=$(saga_file 's|^    failures: 5$|    failures: 1|')
	export PAYMENT_GATEWAY_VOID_MODE=fail
	order 1 cust-42 2 XX
	cqrs-saga run -f "$f" 2>/dev/null
	assert_equal "$(saga_row 1)" "COMPENSATING|2|1|"
	at +10
	cqrs-saga run -f "$f"
	assert_equal "$(saga_row 1)" "COMPENSATING|2|1|"
	assert_equal "$(grep -c void "$PAYMENT_GATEWAY_DIR/calls.log")" 1
	assert_equal "$(cqrs-read --event-type SagaCompensationDeferred | jq -r .data.retry_at)" "2026-03-01T12:01:00.000000Z"
	unset PAYMENT_GATEWAY_VOID_MODE
	at +61
	cqrs-saga run -f "$f"
	assert_equal "$(saga_row 1)" "FAILED|0|0|compensated"
}

@test "waiting for an outside event: it arrives, or the deadline passes and the saga compensates" {
	f=$(saga_file '/^  - name: create_shipping_label$/i\
  - name: await_payment\
    wait:\
      event_type: PaymentProcessed\
      match:\
        aggregate_id: ${event.aggregate_id}\
      deadline: 15m\
')
	order 1
	order 2
	run cqrs-saga run -f "$f"
	assert_success
	assert_equal "$(saga_row 1)" "RUNNING|2|0|"
	assert_equal "$(saga_row 2)" "RUNNING|2|0|"
	assert_equal "$(cqrs-read --correlation order-2 --event-type SagaStepWaiting | jq -r .data.deadline)" "2026-03-01T12:15:00.000000Z"
	# the webhook's event for order 1
	cqrs-command -q confirm-payment --order "$(order_id 1)" --payment 9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b --amount 59.98
	at +60
	run cqrs-saga run -f "$f"
	assert_equal "$(saga_row 1)" "COMPLETED|5|0|completed"
	assert_equal "$(saga_row 2)" "RUNNING|2|0|"
	assert_equal "$(cqrs-saga show --format ndjson "$(saga_of 1)" | jq -r .state.steps.await_payment.data.amount)" 59.98
	at +901
	run cqrs-saga run -f "$f"
	assert_equal "$(saga_row 2)" "FAILED|0|0|compensated"
	assert_equal "$(cqrs-read --correlation order-2 --event-type SagaStepFailed | jq -r .data.reason)" \
		"deadline 2026-03-01T12:15:00.000000Z passed with no PaymentProcessed"
	assert_equal "$(effects 2)" "OrderCreated InventoryReserved PaymentAuthorized AuthorizationVoided InventoryReleased OrderCancelled"
}

@test "a second runner finds the lock taken and exits 75, or waits for it" {
	sqlite_only "STORE.saga.lock is SQLite's; runners share a PostgreSQL store (pg-saga.bats)"
	order 1
	exec 9>"$CQRS_STORE.saga.lock"
	flock 9
	run --separate-stderr cqrs-saga run -v
	assert_failure 75
	assert_equal "$stderr" "cqrs-saga: $CQRS_STORE.saga.lock: another cqrs-saga run holds the lock; try again later (or use --wait)"
	assert_equal "$(store_query 'SELECT count(*) FROM saga_instances')" 0
	cqrs-saga run --wait &
	waiter=$!
	flock -u 9
	exec 9>&-
	wait "$waiter"
	assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
}

@test "two runners at once never run a step twice" {
	for i in $(seq 1 12); do order "$i"; done
	cqrs-saga run --wait -b 3 &
	a=$!
	cqrs-saga run --wait -b 3 &
	b=$!
	wait "$a"
	wait "$b"
	assert_equal "$(store_query "SELECT status, count(*) FROM saga_instances GROUP BY status")" "COMPLETED|12"
	for t in SagaStarted InventoryReserved PaymentAuthorized ShippingLabelCreated OrderConfirmed SagaCompleted; do
		assert_equal "$t $(cqrs-read --event-type "$t" | wc -l)" "$t 12"
	done
	assert_equal "$(grep -c ' ok$' "$PAYMENT_GATEWAY_DIR/calls.log")" 12
	assert_equal "$(grep -c replay "$PAYMENT_GATEWAY_DIR/calls.log")" 0
}

@test "a step program that is missing, or prints no JSON, fails the step for good" {
	f=$(saga_file 's|run: \[shipping-label, create\]|run: [no-such-program]|')
	order 1
	run cqrs-saga run -f "$f"
	assert_success
	assert_equal "$(cqrs-read --correlation order-1 --event-type SagaStepFailed | jq -r .data.reason)" "no-such-program: program not found"
	printf '#!/bin/sh\necho not json\n' >bad
	chmod +x bad
	f=$(saga_file 's|run: \[shipping-label, create\]|run: [./bad]|')
	order 2
	run cqrs-saga run -f "$f"
	assert_equal "$(cqrs-read --correlation order-2 --event-type SagaStepFailed | jq -r .data.reason)" \
		"exit status 0 but the output is not one JSON object: invalid JSON at column 1: unexpected character (NaN, Infinity and bare words are not JSON)"
	assert_equal "$(saga_row 2)" "FAILED|0|0|compensated"
}

@test "bad saga definitions are refused with the file, line and column, exit 78" {
	printf 'saga: x\nstart:\n  event_type: OrderCreated\nsteps:\n  - name: a\n    comand: {type: X}\n' >bad1.yaml
	run --separate-stderr cqrs-saga check -f bad1.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-saga: bad1.yaml:6:5: step: unknown key 'comand'"
	printf 'saga: x\nstart:\n  event_type: OrderCreated\n' >bad2.yaml
	run --separate-stderr cqrs-saga check -f bad2.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-saga: bad2.yaml:1:1: missing key 'steps'"
	printf 'saga: x\nstart:\n  event_type: OrderCreated\nsteps:\n  - name: a\n    timeout: soon\n    emit: {aggregate_type: A, aggregate_id: "${uuid:a}", event_type: E}\n' >bad3.yaml
	run --separate-stderr cqrs-saga check -f bad3.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-saga: bad3.yaml:6:14: 'timeout' must be a duration such as 500ms, 30s, 5m, 2h or 1d"
	printf 'saga: x\nsteps: [\n' >bad4.yaml
	run --separate-stderr cqrs-saga check -f bad4.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-saga: bad4.yaml:3:1: did not find expected node content (while parsing a flow node on line 3)"
	run --separate-stderr cqrs-saga run -f missing.yaml
	assert_failure 66
	assert_equal "$stderr" "cqrs-saga: missing.yaml: cannot read saga definition: No such file or directory"
	run cqrs-saga check
	assert_success
	assert_output "order.yaml: saga 'order' is valid"
}

@test "a saga definition with a key given twice is refused, not read as the last one" {
	printf 'saga: x\nstart:\n  event_type: OrderCreated\nsteps:\n  - name: a\n    timeout: 5s\n    emit: {aggregate_type: A, aggregate_id: "${uuid:a}", event_type: E}\n    timeout: 1s\n' >dup.yaml
	run --separate-stderr cqrs-saga check -f dup.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-saga: dup.yaml:8:5: duplicate key 'timeout' (first on line 6)"
}
