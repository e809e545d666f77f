#!/usr/bin/env bats
# cqrs-trace: an order's trace from the causation of its events, as a tree,
# NDJSON and OTLP/JSON checked against the published OTLP definitions; the
# traceparent a command keeps; the saga's step times.

load saga_helper

eval "base_$(declare -f setup)"
setup() {
	base_setup
	saga_setup
}

TP=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
O1=00000000-0000-4000-8000-000000000001

# tests/otlp-validate.py with a python3 that has google.protobuf (Debian's
# python3-protobuf, which a pyenv python3 first on PATH may lack) and protoc
validate() {
	local py
	command -v protoc >/dev/null ||
		{ echo "protoc is missing (Debian: protobuf-compiler, tests/debian-packages-check)"; return 1; }
	for py in python3 /usr/bin/python3; do
		if "$py" -c 'import google.protobuf' 2>/dev/null; then
			"$py" "$CQRS_TOP_SRCDIR/tests/otlp-validate.py" "$@"
			return
		fi
	done
	echo "no python3 with google.protobuf (Debian: python3-protobuf, tests/debian-packages-check)"
	return 1
}

# the fixed history: an order, its saga, a failed payment, a compensation;
# in a store of its own, so that its sequences are its own
fixture() {
	export CQRS_STORE=$BATS_TEST_TMPDIR/fixture.db
	cqrs-append -q "$CQRS_TOP_SRCDIR/tests/fixtures/trace-store.ndjson"
}

@test "the tree of a fixed history: causes, effects, the time between them, step spans and failures" {
	fixture
	run --separate-stderr cqrs-trace "$O1"
	assert_success
	assert_equal "$stderr" ""
	local S=01943b00-0000-7000-8000-0000000000aa I=3c9a7b1e-4d2f-4e8a-b6c5-0f1e2d3c4b5a
	assert_output "trace 4bf92f3577b34da6a3ce929d0e0e4736  correlation order-1
command create-1  2026-03-01T12:00:00.000000Z  +0.000000s  took 0.000000s
  Order OrderNoted #1 $O1  2026-03-01T12:00:00.000000Z  +0.000000s
    saga order  2026-03-01T12:00:00.250000Z  +0.250000s  took 2.250000s  failed: compensated: authorize_payment: card declined
      Saga SagaStarted #2 $S  2026-03-01T12:00:00.250000Z  +0.000000s
      step reserve_inventory  2026-03-01T12:00:00.260000Z  +0.010000s  took 0.050000s
        command saga:$S/reserve_inventory/0/1  2026-03-01T12:00:00.300000Z  +0.040000s  took 0.000000s
          Inventory StockHeld #3 $I  2026-03-01T12:00:00.300000Z  +0.000000s
        Saga SagaStepCompleted #4 $S  2026-03-01T12:00:00.310000Z  +0.050000s
      step authorize_payment  2026-03-01T12:00:00.320000Z  +0.070000s  took 2.000000s  failed: card declined
        Saga SagaStepFailed #5 $S  2026-03-01T12:00:02.320000Z  +2.000000s
      Saga SagaCompensationStarted #6 $S  2026-03-01T12:00:02.330000Z  +2.080000s
      compensate reserve_inventory  2026-03-01T12:00:02.340000Z  +2.090000s  took 0.070000s
        command saga:$S/reserve_inventory/compensate/0/1  2026-03-01T12:00:02.400000Z  +0.060000s  took 0.000000s
          Inventory StockFreed #7 $I  2026-03-01T12:00:02.400000Z  +0.000000s
        Saga SagaStepCompensated #8 $S  2026-03-01T12:00:02.410000Z  +0.070000s
      Saga SagaFailed #9 $S  2026-03-01T12:00:02.500000Z  +2.250000s"
	# the same by correlation id
	run --separate-stderr cqrs-trace --correlation order-1
	assert_success
	assert_equal "${#lines[@]}" 17
}

@test "--format json: a span per line, in tree order, with parents, times and the event's fields" {
	fixture
	run --separate-stderr cqrs-trace -f json "$O1"
	assert_success
	assert_equal "${#lines[@]}" 16
	assert_equal "$(jq -c '[.depth, .kind, .since_cause_us, .duration_us]' <<<"${lines[8]}")" '[3,"step",70000,2000000]'
	assert_equal "$(jq -c '[.kind, .sequence, .event_type, .aggregate_type, .parent_span_id == null]' <<<"${lines[1]}")" '["event",1,"OrderNoted","Order",false]'
	assert_equal "$(jq -r .error <<<"${lines[8]}")" "card declined"
	# every parent is a span printed before it
	run bash -c "cqrs-trace -f json $O1 | jq -rs '[.[].span_id] as \$ids | [.[] | select(.parent_span_id != null and (.parent_span_id as \$p | \$ids | index(\$p) | not))] | length'"
	assert_output 0
}

@test "--format otlp of a fixed history: one line that parses against the OTLP definitions, the same on every export" {
	fixture
	cqrs-trace -f otlp "$O1" >a.json
	cqrs-trace -f otlp "$O1" >b.json
	cmp a.json b.json
	run validate --external-parent 00f067aa0ba902b7 a.json
	assert_success
	assert_output "ok: 16 spans"
	# the trace id is the traceparent's, the root's parent the caller's span
	assert_equal "$(jq -r '[.resourceSpans[0].scopeSpans[0].spans[] | .traceId] | unique | join(" ")' a.json)" 4bf92f3577b34da6a3ce929d0e0e4736
	assert_equal "$(jq -r '.resourceSpans[0].scopeSpans[0].spans[0] | [.name, .parentSpanId, .kind] | @tsv' a.json)" "command create-1	00f067aa0ba902b7	2"
	assert_equal "$(jq -c '.resourceSpans[0].scopeSpans[0].spans[] | select(.name == "step authorize_payment") | [.startTimeUnixNano, .endTimeUnixNano, .status.code]' a.json)" '["1772366400320000000","1772366402320000000",2]'
	assert_equal "$(jq -c '.resourceSpans[0].scopeSpans[0].spans[] | select(.name == "StockHeld") | .attributes[] | select(.key == "cqrs.sequence") | .value' a.json)" '{"intValue":"3"}'
	# without the caller's span, the root's parent is not in the trace
	run validate a.json
	assert_failure 1
	assert_output --partial "parent 00f067aa0ba902b7 is not in the trace"
}

@test "a whole order with a traceparent: the saga passes it on, every event is a span, OTLP/JSON parses" {
	order_line() {
		printf '{"command_id":"create-1","type":"CreateOrder","order_id":"%s","correlation_id":"order-1","customer_id":"cust-42","items":[{"product_id":"%s","quantity":2,"unit_price":29.99}],"currency":"USD","shipping_address":{"name":"Ada","street":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}\n' "$O1" "$P"
	}
	order_line | cqrs-command -q --traceparent "$TP"
	run --separate-stderr cqrs-saga run
	assert_success
	# every event of the order carries the trace; the person's command the
	# caller's span as parent; what each step did (its commands'
	# events, saga:SAGA/STEP/ITEM/ATTEMPT, and what it emitted, SAGA/STEP)
	# its step's span, as cqrs-trace names it: the first 8 bytes of
	# SHA-256 of "step:SAGA/STEP"; the saga's own events the caller's
	cqrs-read --correlation order-1 >all.ndjson
	assert_equal "$(jq -r '.metadata.traceparent | split("-")[1]' all.ndjson | sort -u)" 4bf92f3577b34da6a3ce929d0e0e4736
	assert_equal "$(jq -r 'select(.aggregate_type == "Saga" or .metadata.causation_id == "create-1") | .metadata.traceparent' all.ndjson | sort -u)" "$TP"
	local cause parent key n=0
	while IFS=$'\t' read -r cause parent; do
		key=${cause#saga:}
		[ "$key" = "$cause" ] || key=${key%/*/*}
		assert_equal "$parent" "$(printf 'step:%s' "$key" | sha256sum | cut -c1-16)"
		n=$((n + 1))
	done < <(jq -r 'select(.metadata.causation_id | test("/")) | [.metadata.causation_id, (.metadata.traceparent | split("-")[2])] | @tsv' all.ndjson)
	assert_equal "$n" 4
	# and those are the spans of the four steps in the export
	assert_equal "$(jq -r 'select(.metadata.causation_id | test("/")) | .metadata.traceparent | split("-")[2]' all.ndjson | sort -u)" \
		"$(cqrs-trace -f json "$O1" | jq -r 'select(.kind == "step") | .span_id' | sort -u)"
	# the step programs were given the trace, their step's span as parent
	# (the example gateway logs TRACEPARENT)
	run cat "$PAYMENT_GATEWAY_DIR/traceparents.log"
	assert_output "00-4bf92f3577b34da6a3ce929d0e0e4736-$(printf 'step:%s' "$(jq -r 'select(.event_type == "PaymentAuthorized") | .metadata.causation_id' all.ndjson | sed 's|^saga:||; s|/[^/]*/[^/]*$||')" | sha256sum | cut -c1-16)-01"
	cqrs-trace -f otlp "$O1" >t.json
	run validate --external-parent 00f067aa0ba902b7 t.json
	assert_success
	assert_output "ok: 20 spans"
	assert_equal "$(jq -r '.resourceSpans[0].scopeSpans[0].spans[] | select(.kind == 4) | .name' t.json | sort | tr '\n' ' ')" \
		"InventoryReserved OrderConfirmed OrderCreated PaymentAuthorized SagaCompleted SagaStarted SagaStepCompleted SagaStepCompleted SagaStepCompleted SagaStepCompleted ShippingLabelCreated "
	assert_equal "$(jq -r '.resourceSpans[0].scopeSpans[0].spans[] | select(.kind == 1) | .name' t.json | tr '\n' ' ')" \
		"saga order step reserve_inventory step authorize_payment step create_shipping_label step confirm_order "
	# each step recorded when it ran, and its span holds its events
	run bash -c "cqrs-trace -f json $O1 | jq -c 'select(.kind == \"step\") | .duration_us >= 0 and .start != .end'"
	assert_output "true
true
true
true"
}

@test "a compensated order without a traceparent: a trace id from the correlation, failed spans marked" {
	export PAYMENT_GATEWAY_DECLINE=cust-broke
	order 2 cust-broke
	run --separate-stderr cqrs-saga run
	assert_success
	assert_equal "$(saga_row 2)" "FAILED|0|0|compensated"
	cqrs-trace -f otlp "$(order_id 2)" >c.json
	run validate c.json
	assert_success
	local tid
	tid=$(jq -r '.resourceSpans[0].scopeSpans[0].spans[0].traceId' c.json)
	[[ $tid =~ ^[0-9a-f]{32}$ ]]
	# the same correlation gives the same trace id
	assert_equal "$(cqrs-trace --correlation order-2 | head -1)" "trace $tid  correlation order-2"
	assert_equal "$(jq -r '.resourceSpans[0].scopeSpans[0].spans[] | select(.status.code == 2) | .name' c.json | tr '\n' ' ')" \
		"saga order step authorize_payment "
	run bash -c "cqrs-trace $(order_id 2) | grep -c '^      compensate reserve_inventory '"
	assert_output 1
	# the declined call was given that trace, and the span of its step
	# as it is in the export
	local step_span
	step_span=$(jq -r '.resourceSpans[0].scopeSpans[0].spans[] | select(.name == "step authorize_payment") | .spanId' c.json)
	run cat "$PAYMENT_GATEWAY_DIR/traceparents.log"
	assert_output "00-$tid-$step_span-01"
	# and the saga's events keep no traceparent of their own: none was given
	assert_equal "$(cqrs-read --correlation order-2 | jq -r 'select(.metadata.traceparent != null)' | wc -l)" 0
}

@test "a slow step program shows as a span of at least its run time" {
	cat >slow-gateway <<-'SH'
	#!/bin/sh
	sleep 0.3
	exec "$CQRS_SHAREDIR/steps/payment-gateway" "$@"
	SH
	chmod +x slow-gateway
	f=$(saga_file "s|run: \[payment-gateway, authorize\]|run: [$PWD/slow-gateway, authorize]|")
	order 3
	run --separate-stderr cqrs-saga run -f "$f"
	assert_success
	assert_equal "$(saga_row 3)" "COMPLETED|4|0|completed"
	run bash -c "cqrs-trace -f json $(order_id 3) | jq -r 'select(.kind == \"step\" and .step == \"authorize_payment\") | .duration_us >= 300000'"
	assert_output true
	# the step's times are in the metadata of the saga's own event
	run bash -c "cqrs-read --correlation order-3 --event-type SagaStepCompleted | jq -r 'select(.data.step == \"authorize_payment\") | .metadata | has(\"step_started_at\") and has(\"step_ended_at\")'"
	assert_output true
}

@test "errors: a bad order id, an unknown order or correlation, bad options, no store" {
	fixture
	run --separate-stderr cqrs-trace not-a-uuid
	assert_failure 64
	assert_equal "$stderr" "cqrs-trace: an order id is a UUID: 'not-a-uuid'"
	run --separate-stderr cqrs-trace 00000000-0000-4000-8000-000000000999
	assert_failure 1
	assert_output ""
	assert_equal "$stderr" "cqrs-trace: order 00000000-0000-4000-8000-000000000999: no such order in the store"
	run --separate-stderr cqrs-trace --correlation nobody
	assert_failure 1
	assert_equal "$stderr" "cqrs-trace: correlation 'nobody': no events"
	run --separate-stderr cqrs-trace -f yaml "$O1"
	assert_failure 64
	assert_equal "$stderr" "cqrs-trace: --format must be text, json or otlp: 'yaml'"
	run --separate-stderr cqrs-trace --correlation order-1 "$O1"
	assert_failure 64
	[[ $stderr == "cqrs-trace: give an order id or --correlation, not both"$'\n'"usage: cqrs-trace "* ]]
	run --separate-stderr cqrs-trace
	assert_failure 64
	run --separate-stderr cqrs-trace --correlation ''
	assert_failure 64
	run --separate-stderr cqrs-trace -s missing.db "$O1"
	assert_failure 66
}

@test "traceparent: kept in the metadata; malformed or all-zero ones are refused before anything is stored" {
	run --separate-stderr cqrs-command --traceparent "$TP" register-product --sku T-1 --name T
	assert_success
	assert_equal "$(jq -r '.events[0].metadata.traceparent' <<<"$output")" "$TP"
	run --separate-stderr env TRACEPARENT="$TP" cqrs-command register-product --sku T-2 --name T
	assert_success
	assert_equal "$(jq -r '.events[0].metadata.traceparent' <<<"$output")" "$TP"
	local before
	before=$(cqrs-read | wc -l)
	run --separate-stderr cqrs-command --traceparent 00-4bf92f35-00f067aa0ba902b7-01 register-product --sku T-3 --name T
	assert_failure 64
	assert_equal "$stderr" "cqrs-command: --traceparent must be 00-<32 hex digits>-<16 hex digits>-<2 hex digits>, in lowercase: '00-4bf92f35-00f067aa0ba902b7-01'"
	run --separate-stderr cqrs-command --traceparent 00-00000000000000000000000000000000-00f067aa0ba902b7-01 register-product --sku T-3 --name T
	assert_failure 64
	assert_equal "$stderr" "cqrs-command: --traceparent: the trace id is all zeros"
	run --separate-stderr cqrs-command --traceparent 00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01 register-product --sku T-3 --name T
	assert_failure 64
	assert_equal "$stderr" "cqrs-command: --traceparent: the parent id is all zeros"
	run --separate-stderr cqrs-command --traceparent ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 register-product --sku T-3 --name T
	assert_failure 64
	run --separate-stderr cqrs-command --traceparent 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01 register-product --sku T-3 --name T
	assert_failure 64
	run --separate-stderr env TRACEPARENT=garbage cqrs-command register-product --sku T-3 --name T
	assert_failure 64
	assert_equal "$stderr" "cqrs-command: \$TRACEPARENT: traceparent must be 00-<32 hex digits>-<16 hex digits>-<2 hex digits>, in lowercase: 'garbage'"
	# a command's own traceparent field is data: a bad one is 65
	run --separate-stderr cqrs-command <<<'{"command_id":"c-9","type":"RegisterProduct","sku":"T-9","name":"T","traceparent":"00-zz"}'
	assert_failure 65
	assert_equal "$(cqrs-read | wc -l)" "$before"
}
