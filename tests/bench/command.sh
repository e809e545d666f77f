# shellcheck shell=bash disable=SC2154 # scratch and the helpers: run-bench
# command.sh: the command side's section of `make bench` (issue 3), sourced
# by run-bench, which provides the helpers (bench_measure, bench_row, ...).
#
#   make bench BENCH=command
#
# On a store holding BENCH_EVENTS generated events (gen-events, appended with
# cqrs-append, then checkpointed once, as cron would after a bulk import):
#   create   one CreateOrder per process (a new order of one item, its sku
#            given), mean over BENCH_RUNS processes; the first one, which
#            seeds the year's order counter from the orders already in the
#            store, is reported apart.
#   stream   BENCH_COMMANDS (default 100000) CreateOrder commands piped
#            through one process (batches of 4096, one fsync each), and as
#            many inventory commands (reserve 60%, replenish 25%, release
#            15%) over 100 hot products; each reservation is for one of the
#            orders just created (a reservation needs an open order), each
#            release gives back a unit of an earlier reservation.
#   load     an inventory aggregate with 10,000 events: cqrs-command show, one
#            process each, from its latest snapshot (--snapshot-every 100)
#            and from all its events (--ignore-snapshots).
# Targets (issue 3): one CreateOrder process under 5 ms; at least 20,000
# commands/s through one process.

# Command lines for the stream runs: $1 commands of kind $2 (create|stock).
command_input() {
	awk -v n="$1" -v kind="$2" -v tag="$3" 'BEGIN {
		held = 0
		srand(42)
		for (i = 1; i <= n; i++) {
			if (kind == "create") {
				printf "{\"command_id\":\"%s-%d\",\"type\":\"CreateOrder\",\"order_id\":\"0194a2b1-0000-7000-8000-%012d\",\"customer_id\":\"cust-%d\",\"items\":[{\"product_id\":\"0194a2b0-0000-7000-8000-%012d\",\"sku\":\"SKU-%d\",\"quantity\":%d,\"unit_price\":%d.%02d}],\"currency\":\"USD\",\"shipping_address\":{\"name\":\"Customer %d\",\"street\":\"%d Cedar Ln\",\"city\":\"Portland\",\"postal_code\":\"97201\",\"country\":\"US\"}}\n", tag, i, i, i % 5000, i % 100, i % 100, i % 5 + 1, i % 300, i % 100, i % 5000, i % 9000
				continue
			}
			p = sprintf("0194a2b0-0000-7000-8000-%012d", int(rand() * 100))
			r = rand()
			if (r < 0.60 || held == 0) {
				printf "{\"command_id\":\"%s-%d\",\"type\":\"ReserveInventory\",\"product_id\":\"%s\",\"order_id\":\"0194a2b1-0000-7000-8000-%012d\",\"quantity\":%d}\n", tag, i, p, i, int(rand() * 5) + 1
				hp[held] = p; ho[held++] = i
			} else if (r < 0.85) {
				printf "{\"command_id\":\"%s-%d\",\"type\":\"ReplenishStock\",\"product_id\":\"%s\",\"quantity\":%d}\n", tag, i, p, int(rand() * 10) + 1
			} else {
				# one unit back from an earlier reservation (an order holds what it reserved)
				k = int(rand() * held)
				printf "{\"command_id\":\"%s-%d\",\"type\":\"ReleaseInventory\",\"product_id\":\"%s\",\"order_id\":\"0194a2b1-0000-7000-8000-%012d\",\"quantity\":1}\n", tag, i, hp[k], ho[k]
			}
		}
	}'
}

bench_command() {
	local dir="$scratch/command" input n=$BENCH_EVENTS db
	local commands=${BENCH_COMMANDS:-100000} runs=$BENCH_RUNS
	local create_ms stream_rate stock_rate snap_ms full_ms
	command -v cqrs-command >/dev/null || { echo "run-bench: cqrs-command not found" >&2; exit 69; }
	mkdir -p "$dir"
	db="$dir/events.db"
	input=$(bench_events_file)
	echo "command: appending $n events ..." >&2
	cqrs-append -q -s "$db" "$input"
	sqlite3 "$db" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
	# 100 products with plenty of stock, for the items and the stream
	local i
	for ((i = 0; i < 100; i++)); do
		printf '{"command_id":"setup-%d","type":"RegisterProduct","product_id":"0194a2b0-0000-7000-8000-%012d","sku":"SKU-%d","name":"Product %d","quantity":1000000}\n' \
			"$i" "$i" "$i" "$i"
	done | cqrs-command -q -s "$db"

	# --- one CreateOrder per process ------------------------------------
	local create=(cqrs-command -q -s "$db" create-order --customer cust-1
		--item 0194a2b0-0000-7000-8000-000000000001:2:29.99:SKU-1 --currency USD
		--ship-to 'Ada Lovelace,12 St James Sq,London,SW1Y 4JH,GB')
	bench_measure "${create[@]}"
	bench_row "command: first CreateOrder process" 1 "$SECS" "$RSS_MB" - \
		"seeds the order counter from the store"
	bench_latency "$runs" "${create[@]}"
	create_ms=$MEAN_MS
	bench_measure "${create[@]}"
	bench_row "command: CreateOrder, one per process" "$runs" "$TOTAL_SECS" "$RSS_MB" - \
		"$create_ms ms/process, sd $SD_MS, $n-event store"

	# --- one process, a stream of commands ------------------------------
	command_input "$commands" create bench-c >"$dir/create.ndjson"
	# shellcheck disable=SC2016 # the arguments of sh -c
	bench_measure sh -c 'cat "$1" | cqrs-command -q -s "$2"' sh "$dir/create.ndjson" "$db"
	stream_rate=$(rate "$commands" "$SECS")
	bench_row "command: CreateOrder stream" "$commands" "$SECS" "$RSS_MB" - \
		"one process, piped, batches of 4096"
	command_input "$commands" stock bench-s >"$dir/stock.ndjson"
	# rejections (not enough stock) are part of the mix: exit 4 is fine
	# shellcheck disable=SC2016
	bench_measure sh -c 'cat "$1" | cqrs-command -q -s "$2"; [ $? -le 4 ]' sh \
		"$dir/stock.ndjson" "$db"
	stock_rate=$(rate "$commands" "$SECS")
	bench_row "command: inventory stream, 100 hot" "$commands" "$SECS" "$RSS_MB" - \
		"reserve/replenish/release"
	local orders
	orders=$(sqlite3 "$db" "SELECT count(*) FROM processed_messages WHERE message_id LIKE 'bench-c-%'")
	[ "$orders" = "$commands" ] || { echo "run-bench: $orders of $commands orders handled" >&2; exit 70; }
	rm -f "$db"*

	# --- loading one aggregate of 10,000 events --------------------------
	db="$dir/long.db"
	local agg=0194a2b2-0000-7000-8000-000000000001
	{
		printf '{"command_id":"long-0","type":"RegisterProduct","product_id":"%s","sku":"LONG","name":"Long"}\n' "$agg"
		for ((i = 1; i < 10000; i++)); do
			printf '{"command_id":"long-%d","type":"ReplenishStock","product_id":"%s","quantity":1}\n' "$i" "$agg"
		done
	} | cqrs-command -q --snapshot-every 100 -s "$db"
	sqlite3 "$db" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
	bench_latency "$runs" cqrs-command -s "$db" show "$agg"
	snap_ms=$MEAN_MS
	bench_measure cqrs-command -s "$db" show "$agg" >/dev/null
	bench_row "command: load 10k events, snapshot" "$runs" "$TOTAL_SECS" "$RSS_MB" 1.00x \
		"$snap_ms ms/process (show), sd $SD_MS"
	bench_latency "$runs" cqrs-command -s "$db" --ignore-snapshots show "$agg"
	full_ms=$MEAN_MS
	bench_measure cqrs-command -s "$db" --ignore-snapshots show "$agg" >/dev/null
	bench_row "command: load 10k events, replay" "$runs" "$TOTAL_SECS" "$RSS_MB" \
		"$(ratio "$full_ms" "$snap_ms")" "$full_ms ms/process (show), sd $SD_MS"
	rm -f "$db"*

	bench_target "one CreateOrder process on a $n-event store < 5 ms" "$create_ms ms" \
		"$(cmp "$create_ms" '<' 5)"
	bench_target "CreateOrder stream >= 20000 commands/s" "$stream_rate cmd/s" \
		"$(cmp "$stream_rate" '>=' 20000)"
	bench_target "inventory stream >= 20000 commands/s" "$stock_rate cmd/s" \
		"$(cmp "$stock_rate" '>=' 20000)"
	bench_target "load 10000 events: snapshot faster than replay" "$snap_ms vs $full_ms ms" \
		"$(cmp "$snap_ms" '<' "$full_ms")"
}
