# shellcheck shell=bash disable=SC2154 # scratch and the helpers: run-bench
# relay.sh: events across machines through NATS JetStream (issue 14), a
# section of `make bench`, sourced by run-bench:
#
#   make bench BENCH=relay BENCH_EVENTS=100000
#
# A nats-server with JetStream (file storage) on loopback, in the scratch
# directory.  On BENCH_EVENTS generated events:
#   floor      cqrs-read | cqrs-append into a copy, through a pipe;
#   publish    cqrs-relay publish: the store to the stream;
#   replicate  cqrs-relay replicate: the stream into a replica store;
#   relay      both, one after the other: events/s from the store to a
#              replica (target: at least 0.25x the floor's);
#   latency    one event from its append to the replica's commit, with
#              publish --follow and replicate --follow running (mean of
#              RELAY_LATENCY_RUNS, default 20).

bench_relay() {
	local dir="$scratch/relay" n=$BENCH_EVENTS port src floor pub rep total i head t0 t1 sum=0
	local runs=${RELAY_LATENCY_RUNS:-20}
	command -v nats-server >/dev/null ||
		{ echo "run-bench: nats-server not found (apt-get install -y nats-server)" >&2; exit 69; }
	command -v cqrs-relay >/dev/null || { echo "run-bench: cqrs-relay not found" >&2; exit 69; }
	mkdir -p "$dir/js"
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	nats-server -js -a 127.0.0.1 -p "$port" --store_dir "$dir/js" >"$dir/nats.log" 2>&1 &
	local nats=$!
	export CQRS_NATS_URL=nats://127.0.0.1:$port
	cqrs-relay create-stream --retries 20 --stream BENCH --subject-prefix bench.ev
	src="$dir/events.db"
	echo "relay: appending $n events ..." >&2
	cqrs-append --quiet --no-sync --store "$src" "$(bench_events_file)"

	# shellcheck disable=SC2016 # the inner bash expands them
	bench_measure bash -c 'cqrs-read --store "$1" | cqrs-append --quiet --store "$2"' _ "$src" "$dir/copy.db"
	floor=$SECS
	bench_row "relay: cqrs-read | cqrs-append (floor)" "$n" "$SECS" "$RSS_MB" - "through a pipe"
	bench_measure cqrs-relay publish --store "$src" --stream BENCH --subject-prefix bench.ev >/dev/null
	pub=$SECS
	bench_row "relay: publish (store -> JetStream)" "$n" "$SECS" "$RSS_MB" "$(ratio "$floor" "$pub")" "window 256"
	bench_measure cqrs-relay replicate --store "$dir/replica.db" --stream BENCH --subject-prefix bench.ev >/dev/null
	rep=$SECS
	bench_row "relay: replicate (JetStream -> replica)" "$n" "$SECS" "$RSS_MB" "$(ratio "$floor" "$rep")" "batches of 1024"
	total=$(awk -v a="$pub" -v b="$rep" 'BEGIN { printf "%.3f", a + b }')
	bench_row "relay: store -> JetStream -> replica" "$n" "$total" - "$(ratio "$floor" "$total")" "publish + replicate"
	bench_target "relay: store -> replica >= 0.25x the pipe's events/s" \
		"$(ratio "$floor" "$total") of the floor" "$(cmp "$(awk -v f="$floor" -v t="$total" 'BEGIN { print f / t }')" '>=' 0.25)"
	command cmp -s <(cqrs-read --store "$src") <(cqrs-read --store "$dir/replica.db") ||
		{ echo "run-bench: the replica differs from the store" >&2; exit 70; }

	cqrs-relay publish --follow --store "$src" --stream BENCH --subject-prefix bench.ev >/dev/null &
	local publisher=$!
	cqrs-relay replicate --follow --store "$dir/replica.db" --stream BENCH --subject-prefix bench.ev >/dev/null &
	local replicator=$!
	head=$n
	for ((i = 0; i < runs; i++)); do
		t0=$EPOCHREALTIME
		cqrs-append --quiet --store "$src" <<<'{"aggregate_id":"0b9c3c7e-2f57-4d6a-9e3b-5a1d2c3e4f50","aggregate_type":"Thing","event_type":"Noted","data":{}}'
		head=$((head + 1))
		until [ "$(sqlite3 "$dir/replica.db" 'SELECT max(sequence) FROM events')" = "$head" ]; do :; done
		t1=$EPOCHREALTIME
		sum=$(awk -v s="$sum" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", s + b - a }')
	done
	kill "$publisher" "$replicator"
	wait "$publisher" "$replicator" || true
	bench_row "relay: one event, append to replica" 1 "$(awk -v s="$sum" -v n="$runs" 'BEGIN { printf "%.4f", s / n }')" - - "mean of $runs, both --follow"
	kill "$nats"
	wait "$nats" || true
}
