#!/usr/bin/env bats
# cqrs-command under concurrency: several processes hammering a few hot
# aggregates never both succeed against the same version, lose no update,
# and number orders uniquely.

bats_require_minimum_version 1.5.0
load test_helper

P=(11111111-1111-4111-8111-111111111111 12121212-1212-4212-8212-121212121212
	13131313-1313-4313-8313-131313131313)
O1=22222222-2222-4222-8222-222222222222

# The open order the workers reserve for (a reservation needs one).
open_order() {
	cqrs-command -q create-order --order "$O1" --customer c --item "${P[0]}:1:1.00:SKU-1" \
		--currency USD --ship-to 'A,1 Main St,Springfield,12345,US'
}

# Worker $1's commands: $2 of them, a fixed pseudo-random mix of
# reservations, replenishments and releases over the products in P.
worker_input() {
	local w=$1 n=$2 i r p q
	RANDOM=$((w * 7919))
	for ((i = 1; i <= n; i++)); do
		r=$((RANDOM % 10))
		p=${P[$((RANDOM % 3))]}
		q=$((RANDOM % 5 + 1))
		if ((r < 6)); then
			echo '{"command_id":"w'$w'-'$i'","type":"ReserveInventory","product_id":"'$p'","order_id":"'$O1'","quantity":'$q'}'
		elif ((r < 8)); then
			echo '{"command_id":"w'$w'-'$i'","type":"ReplenishStock","product_id":"'$p'","quantity":'$q'}'
		else
			echo '{"command_id":"w'$w'-'$i'","type":"ReleaseInventory","product_id":"'$p'","order_id":"'$O1'","quantity":'$q'}'
		fi
	done
}

@test "several processes on a few hot inventory aggregates: no lost update" {
	for p in "${P[@]}"; do
		cqrs-command -q register-product --product "$p" --sku "SKU-${p:0:2}" --name W --quantity 20
	done
	open_order
	workers=6
	for w in $(seq 1 $workers); do
		worker_input "$w" $((w <= 3 ? 250 : 80)) >"in.$w"
	done
	pids=()
	for w in $(seq 1 $workers); do
		if ((w <= 3)); then
			# streams, in batches of different sizes
			cqrs-command --batch $((w == 1 ? 1 : w * 16)) --snapshot-every 25 "in.$w" \
				>"out.$w" 2>"err.$w" &
		else
			# a process per command, as a shell script would
			while IFS= read -r line; do
				cqrs-command --snapshot-every 25 <<<"$line" || [ $? -eq 4 ] || echo "exit $?"
			done <"in.$w" >"out.$w" 2>"err.$w" &
		fi
		pids+=($!)
	done
	for w in $(seq 1 $workers); do
		status=0
		wait "${pids[$((w - 1))]}" || status=$?
		# accepted, or some rejected: never a conflict, never busy
		[ "$status" -eq 0 ] || [ "$status" -eq 4 ] || fail "worker $w exited $status: $(cat "err.$w")"
		assert_equal "$(cat "err.$w")" ''
		# one result per command, in order
		assert_equal "$(jq -r .command_id "out.$w" | tr '\n' ' ')" \
			"$(jq -r .command_id "in.$w" | tr '\n' ' ')"
	done
	# the workers' commits interleaved (else this test proves nothing)
	runs=$(cqrs-read | jq -r .metadata.causation_id | cut -d- -f1 | uniq | wc -l)
	[ "$runs" -ge 20 ] || fail "the workers hardly interleaved ($runs runs)"
	cat out.* >all.ndjson
	# both outcomes happened: the rules were exercised under contention
	[ "$(jq -s 'map(select(.status == "rejected")) | length' all.ndjson)" -gt 0 ]
	[ "$(jq -s 'map(select(.status == "accepted")) | length' all.ndjson)" -gt 0 ]
	# every accepted event is stored, and nothing else was
	assert_equal "$(jq -r '.events[]?.event_id' all.ndjson | sort)" \
		"$(cqrs-read | jq -r 'select(.event_type != "ProductRegistered" and .aggregate_version > 2) | .event_id' | sort)"
	for p in "${P[@]}"; do
		# the final state is the initial stock plus the effects of the
		# accepted commands, however they interleaved
		want=$(jq -s --arg p "$p" '
			[.[] | select(.status == "accepted") | .events[] | select(.aggregate_id == $p)]
			| {available: (20 + (map(if .event_type == "InventoryReserved" then -.data.quantity
				else .data.quantity end) | add // 0)),
			   reserved: (map(if .event_type == "InventoryReserved" then .data.quantity
				elif .event_type == "InventoryReleased" then -.data.quantity
				else 0 end) | add // 0)}' all.ndjson | jq -c .)
		got=$(cqrs-command show "$p" | jq -c '.state | {available, reserved}')
		assert_equal "$got" "$want"
		# and loading it from its events alone agrees
		assert_equal "$(cqrs-command --ignore-snapshots show "$p" | jq -c '.state | {available, reserved}')" "$want"
		# every rejected reservation was refused for want of stock
		run jq -r --arg p "$p" 'select(.status == "rejected" and .aggregate_id == $p) | .reason' all.ndjson
		for reason in "${lines[@]}"; do
			[[ "$reason" =~ ^cannot\ reserve\ [0-9]+\ of\ SKU-..:\ only\ [0-9]+\ available$ ||
				"$reason" =~ ^cannot\ release\ [0-9]+\ of\ SKU-..:\ order\ ORD-[0-9-]+\ holds\ [0-9]+$ ||
				"$reason" =~ ^order\ ORD-[0-9-]+\ holds\ no\ SKU-..$ ]] ||
				fail "unexpected reason: $reason"
		done
	done
	# versions are dense per aggregate: no two commits took the same one
	assert_equal "$(store_query 'SELECT count(*) FROM (SELECT aggregate_id FROM events GROUP BY aggregate_id HAVING max(aggregate_version) <> count(*)) AS sparse')" 0
	run cqrs-read --verify
	assert_success
}

@test "racing for the last units: exactly as many reservations as there is stock succeed" {
	cqrs-command -q register-product --product "${P[0]}" --sku SKU-1 --name W --quantity 10
	open_order
	pids=()
	for i in $(seq 1 24); do
		cqrs-command reserve-inventory --product "${P[0]}" --order "$O1" --quantity 1 \
			>"out.$i" 2>"err.$i" &
		pids+=($!)
	done
	for i in $(seq 1 24); do
		status=0
		wait "${pids[$((i - 1))]}" || status=$?
		[ "$status" -eq 0 ] || [ "$status" -eq 4 ] || fail "process $i exited $status: $(cat "err.$i")"
	done
	cat out.* >all.ndjson
	assert_equal "$(jq -s 'map(select(.status == "accepted")) | length' all.ndjson)" 10
	assert_equal "$(jq -s 'map(select(.status == "rejected")) | length' all.ndjson)" 14
	assert_equal "$(jq -r 'select(.status == "rejected") | .reason' all.ndjson | sort -u)" \
		"cannot reserve 1 of SKU-1: only 0 available"
	assert_equal "$(cqrs-command show "${P[0]}" | jq -c '.state | [.available, .reserved]')" '[0,10]'
	# the ten reservations took versions 3 to 12, one each
	assert_equal "$(jq -r '.events[]?.aggregate_version' all.ndjson | sort -n | tr '\n' ' ')" \
		"3 4 5 6 7 8 9 10 11 12 "
}

@test "order numbers are unique across concurrent CreateOrders" {
	workers=5
	for w in $(seq 1 $workers); do
		for i in $(seq 1 40); do
			echo '{"command_id":"c'$w'-'$i'","type":"CreateOrder","customer_id":"cust-'$w'","items":[{"product_id":"'${P[0]}'","sku":"SKU-1","quantity":1,"unit_price":9.99}],"currency":"USD","shipping_address":{"name":"a","street":"b","city":"c","postal_code":"d","country":"US"}}'
		done >"in.$w"
	done
	pids=()
	for w in $(seq 1 $workers); do
		cqrs-command --batch $((w * 3)) "in.$w" >"out.$w" &
		pids+=($!)
	done
	for pid in "${pids[@]}"; do
		wait "$pid"
	done
	year=$(date -u +%Y)
	assert_equal "$(cat out.* | jq -r '.events[0].data.order_number' | sort | uniq | wc -l)" 200
	assert_equal "$(cat out.* | jq -r '.events[0].data.order_number' | sort | head -1)" "ORD-$year-000001"
	assert_equal "$(cat out.* | jq -r '.events[0].data.order_number' | sort | tail -1)" "ORD-$year-000200"
	assert_equal "$(cqrs-read -e OrderCreated | jq -r .data.order_number | sort -u | wc -l)" 200
}
