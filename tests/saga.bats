#!/usr/bin/env bats
# cqrs-saga: the order saga's paths, compensation, and what users see.

load saga_helper

# test_helper's setup, then a product in stock
eval "base_$(declare -f setup)"
setup() {
	base_setup
	saga_setup
}

HAPPY="SagaStarted InventoryReserved SagaStepCompleted PaymentAuthorized SagaStepCompleted ShippingLabelCreated SagaStepCompleted OrderConfirmed SagaStepCompleted SagaCompleted"

@test "happy path: an OrderCreated starts a saga that runs every step once and completes" {
	order 1
	run --separate-stderr cqrs-saga run
	assert_success
	assert_output ""
	assert_equal "$stderr" ""
	assert_equal "$(story 1)" "OrderCreated $HAPPY"
	assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
	# the whole story carries the order's correlation id, and the commands
	# the saga ran name it as their user
	run cqrs-read --correlation order-1
	assert_equal "${#lines[@]}" 11
	assert_equal "$(cqrs-read --correlation order-1 --event-type PaymentAuthorized | jq -c '[.data.amount, .metadata.user_id]')" '[59.98,"cqrs-saga"]'
	# one call to each service, with the idempotency key saga/step
	saga=$(saga_of 1)
	assert_equal "$(cat "$PAYMENT_GATEWAY_DIR/calls.log")" "authorize $saga/authorize_payment ok"
	assert_equal "$(cat "$SHIPPING_LABEL_DIR/calls.log")" "create $saga/create_shipping_label ok"
	# the label's event is on the Shipment aggregate named for this saga
	run cqrs-read --event-type ShippingLabelCreated
	assert_equal "$(jq -r .aggregate_type <<<"$output")" Shipment
	assert_equal "$(jq -r .data.order_id <<<"$output")" "$(order_id 1)"
	# a second run finds nothing to do
	run cqrs-saga run
	assert_success
	assert_equal "$(stored_count)" "$(($(cqrs-read | wc -l)))"
	assert_equal "$(story 1)" "OrderCreated $HAPPY"
}

@test "a step program gets the saga's JSON on stdin and its idempotency key in the environment" {
	cat >spy <<'EOF'
#!/bin/sh
cat >"$SPY_DIR/input.json"
env | grep '^CQRS_' | sort >"$SPY_DIR/env"
echo '{"tracking_number":"TRK1","carrier":"UPS"}'
EOF
	chmod +x spy
	export SPY_DIR=$BATS_TEST_TMPDIR
	f=$(saga_file 's|run: \[shipping-label, create\]|run: [./spy]|')
	cp spy "$(dirname "$f")/spy" 2>/dev/null || true
	order 1
	run cqrs-saga run -f "$f"
	assert_success
	saga=$(saga_of 1)
	run jq -c . input.json
	assert_output "{\"idempotency_key\":\"$saga/create_shipping_label\",\"saga_id\":\"$saga\",\"saga_type\":\"order\",\"step\":\"create_shipping_label\",\"action\":\"do\",\"attempt\":1,\"correlation_id\":\"order-1\",\"input\":{\"order_id\":\"$(order_id 1)\",\"order_number\":\"ORD-2026-000001\",\"address\":{\"name\":\"Ada\",\"street\":\"1 Main St\",\"city\":\"Springfield\",\"postal_code\":\"12345\",\"country\":\"US\"}}}"
	assert_equal "$(grep -E '^CQRS_(CORRELATION_ID|IDEMPOTENCY_KEY|SAGA_)' env)" "CQRS_CORRELATION_ID=order-1
CQRS_IDEMPOTENCY_KEY=$saga/create_shipping_label
CQRS_SAGA_ACTION=do
CQRS_SAGA_ATTEMPT=1
CQRS_SAGA_ID=$saga
CQRS_SAGA_NOW=$T0
CQRS_SAGA_STEP=create_shipping_label"
	assert_equal "$(cqrs-read --event-type ShippingLabelCreated | jq -c '.data | [.tracking_number, .carrier]')" '["TRK1","UPS"]'
}

@test "failure at step 1 (no stock): nothing to undo, the order is cancelled" {
	order 1 cust-42 500
	run --separate-stderr cqrs-saga run
	assert_success
	assert_equal "$(story 1)" "OrderCreated SagaStarted SagaStepFailed SagaCompensationStarted OrderCancelled SagaFailureHandled SagaFailed"
	assert_equal "$(saga_row 1)" "FAILED|0|0|compensated"
	run cqrs-read --correlation order-1 --event-type SagaStepFailed
	assert_equal "$(jq -r .data.reason <<<"$output")" "rejected: cannot reserve 500 of SKU-1: only 100 available"
	assert_equal "$(calls)" 0
	assert_equal "$(cqrs-read --event-type OrderCancelled | jq -r .data.reason)" "reserve_inventory: rejected: cannot reserve 500 of SKU-1: only 100 available"
}

@test "failure at step 2 (payment declined): the reservation is released" {
	export PAYMENT_GATEWAY_DECLINE=cust-broke
	order 1 cust-broke
	run cqrs-saga run
	assert_success
	assert_equal "$(story 1)" "OrderCreated SagaStarted InventoryReserved SagaStepCompleted SagaStepFailed SagaCompensationStarted InventoryReleased SagaStepCompensated OrderCancelled SagaFailureHandled SagaFailed"
	assert_equal "$(saga_row 1)" "FAILED|0|0|compensated"
	assert_equal "$(cqrs-read --correlation order-1 --event-type SagaStepFailed | jq -r .data.reason)" "exit status 1: card declined"
	# a decline is not retried, and the shipping service is never called
	assert_equal "$(grep -c . "$PAYMENT_GATEWAY_DIR/calls.log")" 1
	[ ! -e "$SHIPPING_LABEL_DIR/calls.log" ]
}

@test "failure at step 3 (no carrier): payment voided, then the reservation released" {
	order 1 cust-42 2 XX
	run cqrs-saga run
	assert_success
	assert_equal "$(effects 1)" "OrderCreated InventoryReserved PaymentAuthorized AuthorizationVoided InventoryReleased OrderCancelled"
	assert_equal "$(story 1)" "OrderCreated SagaStarted InventoryReserved SagaStepCompleted PaymentAuthorized SagaStepCompleted SagaStepFailed SagaCompensationStarted AuthorizationVoided SagaStepCompensated InventoryReleased SagaStepCompensated OrderCancelled SagaFailureHandled SagaFailed"
	saga=$(saga_of 1)
	assert_equal "$(cut -d' ' -f1,2 "$PAYMENT_GATEWAY_DIR/calls.log")" "authorize $saga/authorize_payment
void $saga/authorize_payment/compensate"
	assert_equal "$(cqrs-read --correlation order-1 --event-type SagaStepCompensated | jq -r .data.step | tr '\n' ' ')" "authorize_payment reserve_inventory "
}

@test "an order cancelled before its saga ran: nothing is done, the saga ends cancelled" {
	order 1
	cqrs-command -q cancel-order --order "$(order_id 1)" --reason "customer request"
	run --separate-stderr cqrs-saga run
	assert_success
	assert_equal "$stderr" ""
	assert_equal "$(effects 1)" "OrderCreated OrderCancelled"
	assert_equal "$(story 1)" "OrderCreated OrderCancelled SagaStarted SagaCompensationStarted SagaFailed"
	assert_equal "$(saga_row 1)" "FAILED|0|0|cancelled"
	assert_equal "$(cqrs-read --correlation order-1 --event-type SagaFailed | jq -c .data)" '{"saga_type":"order","outcome":"cancelled","reason":"cancelled: customer request"}'
	assert_equal "$(calls)" 0
}

@test "a failing compensation is retried with backoff, then the saga is FAILED and reported" {
	export PAYMENT_GATEWAY_VOID_MODE=fail
	order 1 cust-42 2 XX
	run --separate-stderr cqrs-saga run
	assert_success
	assert_equal "$(saga_row 1)" "COMPENSATING|2|1|"
	# the reservation is not released while the payment is not voided
	assert_equal "$(effects 1)" "OrderCreated InventoryReserved PaymentAuthorized"
	next=$(store_query "SELECT next_attempt_at FROM saga_instances")
	[[ $next > 2026-03-01T12:00:01 && $next < 2026-03-01T12:00:02.000001 ]]
	# nothing is due before the backoff is over
	run cqrs-saga run
	assert_equal "$(grep -c void "$PAYMENT_GATEWAY_DIR/calls.log")" 1
	at +10
	run cqrs-saga run
	assert_equal "$(saga_row 1)" "COMPENSATING|2|2|"
	at +100
	run --separate-stderr cqrs-saga run
	assert_success
	assert_equal "$(saga_row 1)" "FAILED|2|3|compensation_failed"
	saga=$(saga_of 1)
	assert_equal "$stderr" "cqrs-saga: saga order $saga: compensation of authorize_payment failed after 3 attempts: exit status 75: payment gateway unavailable; it needs attention (cqrs-saga show $saga)"
	assert_equal "$(grep -c void "$PAYMENT_GATEWAY_DIR/calls.log")" 3
	run cqrs-saga status
	assert_line "  FAILED        1 (compensated 0, compensation failed 1)"
	assert_line "stuck or needing attention:"
	assert_line --partial "  $saga order FAILED step 2, 3 attempts"
	# a later run leaves it alone
	at +100000
	run cqrs-saga run
	assert_equal "$(grep -c void "$PAYMENT_GATEWAY_DIR/calls.log")" 3
	# fixed by hand: retry compensates the rest
	unset PAYMENT_GATEWAY_VOID_MODE
	run cqrs-saga retry "$saga"
	assert_success
	run cqrs-saga run
	assert_success
	assert_equal "$(saga_row 1)" "FAILED|0|0|compensated"
	assert_equal "$(effects 1)" "OrderCreated InventoryReserved PaymentAuthorized AuthorizationVoided InventoryReleased OrderCancelled"
}

@test "a retryable failure is retried with exponential backoff and jitter, then succeeds" {
	export PAYMENT_GATEWAY_AUTHORIZE_MODE=fail:2
	order 1
	run cqrs-saga run
	assert_equal "$(saga_row 1)" "RUNNING|1|1|"
	t1=$(store_query "SELECT next_attempt_at FROM saga_instances")
	at +5
	run cqrs-saga run
	assert_equal "$(saga_row 1)" "RUNNING|1|2|"
	t2=$(store_query "SELECT next_attempt_at FROM saga_instances")
	# 2s backoff, doubled: attempt 1 waits 1-2s, attempt 2 waits 2-4s after +5
	[[ $t1 > 2026-03-01T12:00:01 && $t1 < 2026-03-01T12:00:02.000001 ]]
	[[ $t2 > 2026-03-01T12:00:07 && $t2 < 2026-03-01T12:00:09.000001 ]]
	at +10
	run cqrs-saga run
	assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
	assert_equal "$(grep -c authorize "$PAYMENT_GATEWAY_DIR/calls.log")" 3
	assert_equal "$(cqrs-read --correlation order-1 --event-type PaymentAuthorized | wc -l)" 1
	assert_equal "$(cqrs-read --correlation order-1 --event-type SagaStepFailed | jq -c '[.data.attempt, .data.reason]' | tr '\n' ' ')" '[1,"exit status 75: payment gateway unavailable"] [2,"exit status 75: payment gateway unavailable"] '
}

@test "retries run out: the step fails and the saga compensates" {
	export PAYMENT_GATEWAY_AUTHORIZE_MODE=fail
	order 1
	for t in +0 +10 +100; do
		at "$t"
		cqrs-saga run
	done
	assert_equal "$(saga_row 1)" "FAILED|0|0|compensated"
	assert_equal "$(grep -c authorize "$PAYMENT_GATEWAY_DIR/calls.log")" 3
	assert_equal "$(cqrs-read --correlation order-1 --event-type OrderCancelled | jq -r .data.reason)" "authorize_payment: gave up after 3 attempts: exit status 75: payment gateway unavailable"
	assert_equal "$(effects 1)" "OrderCreated InventoryReserved InventoryReleased OrderCancelled"
}

@test "many orders, some failing: each ends the way its own story says" {
	export PAYMENT_GATEWAY_DECLINE=cust-broke
	for i in 1 2 3 4 5 6; do
		case $i in
		2) order "$i" cust-broke ;;
		4) order "$i" cust-42 2 XX ;;
		6) order "$i" cust-42 1000 ;;
		*) order "$i" ;;
		esac
	done
	run cqrs-saga run -b 2
	assert_success
	run store_query "SELECT correlation_id, status, outcome FROM saga_instances ORDER BY correlation_id"
	assert_output "order-1|COMPLETED|completed
order-2|FAILED|compensated
order-3|COMPLETED|completed
order-4|FAILED|compensated
order-5|COMPLETED|completed
order-6|FAILED|compensated"
	# stock: 3 orders of 2 kept, the rest released
	run cqrs-command show "$P"
	assert_equal "$(jq -c '.state | [.available, .reserved]' <<<"$output")" '[94,6]'
	run cqrs-saga status
	assert_output "saga order: 6 instances
  RUNNING       0
  COMPENSATING  0
  COMPLETED     3
  FAILED        3 (compensated 3, compensation failed 0)
  completion rate 50.0% (3 of 6 finished)"
	run cqrs-saga status --format ndjson
	assert_output '{"saga_type":"order","total":6,"RUNNING":0,"COMPENSATING":0,"COMPLETED":3,"FAILED":3,"compensated":3,"compensation_failed":0,"left_to_person":0,"cancelled":0,"completion_rate":50.0}'
}

@test "an order of several products reserves all or none of them" {
	Q=5a1e9c3b-2f4d-4b6a-9c8e-7d6f5e4d3c2b
	cqrs-command -q register-product --product "$Q" --sku SKU-2 --name Gadget --quantity 1
	printf '{"command_id":"c9","type":"CreateOrder","order_id":"%s","correlation_id":"order-9","customer_id":"c","items":[{"product_id":"%s","quantity":2,"unit_price":1.00},{"product_id":"%s","quantity":5,"unit_price":2.00}],"currency":"USD","shipping_address":{"name":"A","street":"B","city":"C","postal_code":"D","country":"US"}}\n' \
		"$(order_id 9)" "$P" "$Q" | cqrs-command -q
	order 1
	run cqrs-saga run
	assert_success
	# the first item's reservation went with the second's rejection
	assert_equal "$(effects 9)" "OrderCreated OrderCancelled"
	assert_equal "$(cqrs-read --correlation order-9 --event-type SagaStepFailed | jq -r .data.reason)" "rejected: cannot reserve 5 of SKU-2: only 1 available"
	# and the batch it was in still did the other order's work
	assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
	run cqrs-command show "$P"
	assert_equal "$(jq -c '.state | [.available, .reserved]' <<<"$output")" '[98,2]'
}

@test "show: one saga and its history, by id or a unique prefix" {
	order 1 cust-42 2 XX
	cqrs-saga run
	saga=$(saga_of 1)
	run --separate-stderr cqrs-saga show "${saga:0:13}"
	assert_success
	assert_line "saga         $saga"
	assert_line "status       FAILED (compensated)"
	assert_line "correlation  order-1"
	assert_line "last error   create_shipping_label: exit status 1: no carrier delivers to \"XX\""
	assert_line --regexp '^  2026-.* SagaStepCompensated +authorize_payment$'
	run cqrs-saga show --format ndjson "$saga"
	assert_success
	assert_equal "$(jq -c '[.status, .outcome, .current_step, .state.steps.authorize_payment.status]' <<<"$output")" '["FAILED","compensated",0,"authorized"]'
	run --separate-stderr cqrs-saga show 01234567-aaaa
	assert_failure 1
	assert_equal "$stderr" "cqrs-saga: no saga '01234567-aaaa'"
	run --separate-stderr cqrs-saga show
	assert_failure 64
	run --separate-stderr cqrs-saga retry "$saga"
	assert_failure 4
	assert_equal "$stderr" "cqrs-saga: saga $saga is FAILED and compensated: nothing to retry"
}

@test "dot: the definition, and one instance's path through it" {
	run --separate-stderr cqrs-saga dot
	assert_success
	assert_line 'digraph "order" {'
	assert_line '	s1 -> c0 [style=dashed, color=red, label="fails"];'
	assert_line '	c0 -> onfail [style=dashed, color=red];'
	order 1 cust-42 2 XX
	cqrs-saga run
	run cqrs-saga dot "$(saga_of 1)"
	assert_success
	assert_line --regexp '^	s0 .*fillcolor=palegreen'
	assert_line --regexp '^	s2 .*fillcolor=salmon'
	assert_line --regexp '^	c1 .*fillcolor=orange'
	assert_line --regexp '^	failed .*fillcolor=salmon'
	if command -v dot >/dev/null; then
		run cqrs-saga dot -T svg -o saga.svg
		assert_success
		grep -q '<svg' saga.svg
	else
		run --separate-stderr cqrs-saga dot -T svg -o saga.svg
		assert_failure 69
		assert_equal "$stderr" "cqrs-saga: -T svg needs Graphviz's dot, which is not installed (apt-get install graphviz); -T dot writes the DOT text"
	fi
	run --separate-stderr cqrs-saga dot -T svg
	assert_failure 64
	run --separate-stderr cqrs-saga dot -T gif -o x
	assert_failure 64
}

@test "status with no sagas, and on a store that does not exist" {
	run cqrs-saga status
	assert_success
	assert_output "no sagas"
	run --separate-stderr cqrs-saga status -s nowhere.db
	assert_failure 66
	assert_equal "$stderr" "cqrs-saga: nowhere.db: no such store"
}

@test "usage errors exit 64" {
	run --separate-stderr cqrs-saga
	assert_failure 64
	run --separate-stderr cqrs-saga fly
	assert_failure 64
	[[ $stderr == "cqrs-saga: unknown command 'fly'"* ]]
	run --separate-stderr cqrs-saga run extra
	assert_failure 64
	run --separate-stderr cqrs-saga run --batch 0
	assert_failure 64
	run --separate-stderr cqrs-saga status --stuck-after soon
	assert_failure 64
	run --separate-stderr cqrs-saga status --format xml
	assert_failure 64
}

# Waits up to 20 s for a condition (a command that succeeds).
eventually() {
	local i
	for ((i = 0; i < 200 * GUARD_SCALE; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

completed() {
	[ "$(store_query "SELECT count(*) FROM saga_instances WHERE status = 'COMPLETED'")" = "$1" ]
}

@test "--follow starts sagas as orders arrive, and ends cleanly on SIGTERM" {
	order 1
	timeout $((30 * GUARD_SCALE)) cqrs-saga run --follow -v >out 2>err 3>&- &
	pid=$!
	eventually completed 1
	order 2
	eventually completed 2
	# a second runner meanwhile is turned away on SQLite (one runner
	# holds STORE.saga.lock); on PostgreSQL runners share the instances
	run --separate-stderr cqrs-saga run
	if on_sqlite; then
		assert_failure 75
	else
		assert_success
		completed 2
	fi
	kill -TERM "$pid"
	wait "$pid"
	assert_equal "$(cat out)" ""
	# a follower's lines begin with their time (cqrs(7), Logs)
	assert_regex "$(tail -1 err)" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z '
	assert_equal "$(tail -1 err | cut -d' ' -f2-)" "cqrs-saga: started 2, completed 2, compensated 0, failed 0, 8 steps, 0 retries scheduled"
}

@test "--follow: a retry that fell due while the run ended is run at once, not after the follower's next wake-up" {
	# the real clock: a follower cannot be moved in time
	unset CQRS_SAGA_NOW
	export PAYMENT_GATEWAY_AUTHORIZE_MODE=fail:1
	order 1
	cqrs-saga run
	# the follower's first run finds nothing due (the retry of
	# authorize_payment is 1-2 s away) and stops after its last look,
	# until that retry is due.  The FIFOs and the output are kept out of
	# the store's directory, and the store is not opened until the end:
	# any file closed there after a write wakes a follower on SQLite,
	# which would hide what is tested here.
	mkdir -p "$BATS_TEST_TMPDIR/pause"
	cd "$BATS_TEST_TMPDIR/pause"
	mkfifo loaded go
	CQRS_TEST_PAUSE_AFTER_PASS=$PWD timeout $((60 * GUARD_SCALE)) cqrs-saga run --follow >out 2>err 3>&- &
	pid=$!
	read -r _ <loaded
	assert_equal "$(saga_row 1)" "RUNNING|1|1|"
	local due
	due=$(store_query "SELECT next_attempt_at FROM saga_instances")
	while [[ $(date -u +%Y-%m-%dT%H:%M:%S.%6NZ) < $due ]]; do sleep 0.1; done
	echo >go
	# due before the follower asked what is due next: it runs at once
	# (it asked for what falls due after the time it asked at, and slept
	# through this one until its 60 s wake-up)
	authorized_twice() { [ "$(grep -c authorize "$PAYMENT_GATEWAY_DIR/calls.log")" = 2 ]; }
	eventually authorized_twice || fail "the retry due at $due did not run"
	kill -TERM "$pid"
	wait "$pid"
	assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
}

@test "--follow rides out a store busy past CQRS_BUSY_TIMEOUT (75): it says so, tries again, and goes on" {
	sqlite_only "sqlite3's own transaction holds the store's write lock"
	order 1
	# another process holds the write lock until its stdin closes
	mkfifo hold
	python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
c.execute("ROLLBACK")' "$CQRS_STORE" <hold >held &
	holder=$!
	exec 4>hold
	eventually grep -qx locked held
	CQRS_BUSY_TIMEOUT=100 timeout $((30 * GUARD_SCALE)) cqrs-saga run --follow >out 2>err 3>&- 4>&- &
	pid=$!
	eventually grep -q 'trying again in 200 ms$' err
	exec 4>&-
	wait "$holder"
	eventually completed 1
	kill -TERM "$pid"
	wait "$pid"
	assert_equal "$(cat out)" ""
	assert_regex "$(head -1 err)" '^[0-9T:.Z-]+ cqrs-saga: .*busy.*; trying again in 100 ms$'
	assert_equal "$(effects 1)" "OrderCreated InventoryReserved PaymentAuthorized ShippingLabelCreated OrderConfirmed"
}

@test "status lists a saga that made no progress for --stuck-after as stuck" {
	export PAYMENT_GATEWAY_AUTHORIZE_MODE=fail
	order 1
	cqrs-saga run
	saga=$(saga_of 1)
	run cqrs-saga status
	refute_line "stuck or needing attention:"
	at +7200
	run cqrs-saga status
	assert_line "stuck or needing attention:"
	assert_line "  $saga order RUNNING step 1, 1 attempts, last change 2026-03-01T12:00:00.000000Z: authorize_payment: exit status 75: payment gateway unavailable"
	run cqrs-saga status --stuck-after 3h
	refute_line "stuck or needing attention:"
	run cqrs-saga status --format ndjson
	assert_equal "$(sed -n 2p <<<"$output" | jq -c '.stuck | del(.next_attempt_at)')" \
		"{\"saga_id\":\"$saga\",\"saga_type\":\"order\",\"status\":\"RUNNING\",\"current_step\":1,\"attempts\":1,\"updated_at\":\"2026-03-01T12:00:00.000000Z\",\"last_error\":\"authorize_payment: exit status 75: payment gateway unavailable\",\"why\":\"no_progress\"}"
}

@test "a store of schema version 1 is upgraded by the first run (to the current 5)" {
	sqlite_only "it makes a version 1 store by editing the SQLite file with sqlite3"
	sqlite3 "$CQRS_STORE" "DROP INDEX saga_instances_start; DROP INDEX saga_instances_due; DROP TABLE saga_breakers;
		ALTER TABLE saga_instances DROP COLUMN revision; ALTER TABLE saga_instances DROP COLUMN attempts;
		ALTER TABLE saga_instances DROP COLUMN next_attempt_at; ALTER TABLE saga_instances DROP COLUMN deadline_at;
		ALTER TABLE saga_instances DROP COLUMN start_sequence; ALTER TABLE saga_instances DROP COLUMN outcome;
		ALTER TABLE saga_instances DROP COLUMN last_error;
		DROP TABLE personal_fields; DROP TABLE subject_keys; DROP TABLE aggregate_subjects; PRAGMA user_version = 1"
	order 1
	run cqrs-saga run
	assert_success
	assert_equal "$(sqlite3 "$CQRS_STORE" 'PRAGMA user_version')" 5
	assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
}
