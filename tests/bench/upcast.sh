# shellcheck shell=bash disable=SC2154 # scratch and the helpers: run-bench
# upcast.sh: reading with upcasters (issue 12), a section of `make bench`,
# sourced by run-bench, which provides the helpers (bench_measure, ...).
#
#   make bench BENCH=upcast BENCH_EVENTS=200000
#
# On a store of BENCH_EVENTS generated events (gen-events: version 1 of
# OrderCreated, OrderConfirmed, PaymentProcessed, OrderShipped and
# OrderCancelled), in the same run:
#   plain     cqrs-read, the stored form;
#   upcast    cqrs-read --upcast with an upcaster on every event: the shipped
#             OrderShipped 1 -> 2 (two moves into a new object) and, from the
#             file below, one rename and one add on each other type;
#   jq        the same with a jq step (libjq) in place of the declared ones
#             on every type but OrderShipped, for comparison.
# The ratio is the plain read's time over the row's: 1.00x costs nothing.

bench_upcast() {
	local dir="$scratch/upcast" n=$BENCH_EVENTS db plain t
	if ! command -v cqrs-read >/dev/null || ! command -v cqrs-append >/dev/null; then
		echo "run-bench: cqrs-read or cqrs-append not found" >&2
		exit 69
	fi
	export CQRS_SHAREDIR=${CQRS_SHAREDIR:-$bench_dir/../../share}
	mkdir -p "$dir"
	db="$dir/events.db"
	echo "upcast: appending $n events ..." >&2
	cqrs-append --quiet --no-sync --store "$db" "$(bench_events_file)"
	{
		echo 'upcasters:'
		for t in OrderCreated OrderConfirmed PaymentProcessed OrderCancelled; do
			printf '  - event_type: %s\n    from: 1\n    steps:\n' "$t"
			printf '      - add: {field: source, value: bench}\n'
			printf '      - rename: {from: source, to: origin}\n'
		done
	} >"$dir/steps.yaml"
	{
		echo 'upcasters:'
		for t in OrderCreated OrderConfirmed PaymentProcessed OrderCancelled; do
			printf '  - event_type: %s\n    from: 1\n    steps:\n' "$t"
			printf "      - jq: {program: '.origin = \"bench\"', numbers: reprinted}\n"
		done
	} >"$dir/jq.yaml"

	bench_measure cqrs-read --store "$db" >/dev/null
	plain=$SECS
	bench_row "upcast: cqrs-read, stored form" "$n" "$SECS" "$RSS_MB" - "the baseline"
	bench_measure cqrs-read --store "$db" --upcast --upcasters "$dir/steps.yaml" >/dev/null
	t=$SECS
	bench_row "upcast: --upcast, declared steps" "$n" "$SECS" "$RSS_MB" "$(ratio "$t" "$plain")" \
		"every event upcast"
	bench_measure cqrs-read --store "$db" --upcast --upcasters "$dir/jq.yaml" >/dev/null
	bench_row "upcast: --upcast, jq steps" "$n" "$SECS" "$RSS_MB" "$(ratio "$SECS" "$plain")" \
		"libjq, numbers reprinted"
	bench_target "upcast: declared steps within 2x of the plain read" "$(ratio "$t" "$plain")" \
		"$(cmp "$t" "<=" "$(awk -v p="$plain" 'BEGIN { print 2 * p }')")"
	rm -rf "$dir"
}
