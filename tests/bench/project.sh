# shellcheck shell=bash disable=SC2154 # scratch and the helpers: run-bench
# project.sh: the read side's section of `make bench` (issue 4), sourced by
# run-bench, which provides the helpers (bench_measure, bench_row, ...).
#
#   make bench BENCH=project
#
# On a store holding BENCH_EVENTS generated events (gen-events: orders of
# ten events each, so BENCH_AGGREGATES orders, over 50,000 customers):
#   catch-up  cqrs-project from empty views, as the first cron run would:
#             batches of 10,000 events, WAL, a commit per batch.
#   rebuild   cqrs-project --rebuild over those views: every event replayed
#             into scratch files (a thread per group of projections, as
#             many as there are CPUs, fed the events by one reading
#             thread), merged, then swapped into the live file in one
#             transaction.  Also on a tenth of the events, to show that
#             the peak memory does not grow with the store.
#   query     cqrs-query customer, one process each, for the customer with
#             the most orders among BENCH_AGGREGATES orders; mean over
#             BENCH_RUNS processes.
# Targets (issue 4): the rebuild at least 100,000 events/s, its peak RSS
# bounded: by the page caches (64 MB per thread, 32 MB for the live file),
# whatever the number of events, so under 256 MB on a few CPUs; the
# customer history query under 5 ms.
#
# Which statements of a projection cost most: build with the projection
# alone (--no-default-projections -P file) and compare, or run perf(1):
#   perf record -g cqrs-project --output /tmp/x.db && perf report

bench_project() {
	local dir="$scratch/project" n=$BENCH_EVENTS small=$((BENCH_EVENTS / 10))
	local db views customer orders rebuild_secs rebuild_rss small_rss
	if ! command -v cqrs-project >/dev/null || ! command -v cqrs-query >/dev/null; then
		echo "run-bench: cqrs-project or cqrs-query not found" >&2
		exit 69
	fi
	# the shipped projections of the source tree, for uninstalled tools
	export CQRS_SHAREDIR=${CQRS_SHAREDIR:-$bench_dir/../../share}
	mkdir -p "$dir"
	db="$dir/events.db"
	views="$dir/views.db"
	echo "project: appending $n events ..." >&2
	cqrs-append --quiet --no-sync --store "$db" "$(bench_events_file)"

	bench_measure cqrs-project --store "$db" --views "$views"
	bench_row "project: catch-up, empty views" "$n" "$SECS" "$RSS_MB" - \
		"batches of 10000, WAL"

	bench_measure cqrs-project --store "$db" --views "$views" --rebuild
	rebuild_secs=$SECS rebuild_rss=$RSS_MB
	bench_row "project: --rebuild, all views" "$n" "$SECS" "$RSS_MB" - \
		"$(nproc) CPUs, scratch + swap"

	if ((small > 0)); then
		head -n "$small" "$(bench_events_file)" >"$dir/small.ndjson"
		cqrs-append --quiet --no-sync --store "$dir/small.db" "$dir/small.ndjson"
		cqrs-project --store "$dir/small.db" --views "$dir/small-views.db"
		bench_measure cqrs-project --store "$dir/small.db" --views "$dir/small-views.db" \
			--rebuild
		small_rss=$RSS_MB
		bench_row "project: --rebuild, a tenth" "$small" "$SECS" "$RSS_MB" - \
			"memory for comparison"
	else
		small_rss=-
	fi

	orders=$(sqlite3 "$views" 'SELECT count(*) FROM order_views')
	customer=$(sqlite3 "$views" 'SELECT customer_id FROM order_views GROUP BY customer_id
		ORDER BY count(*) DESC, customer_id LIMIT 1')
	bench_latency "$BENCH_RUNS" cqrs-query --views "$views" --format ndjson customer "$customer"
	bench_row "query: customer history, 1 process" "$BENCH_RUNS" "$TOTAL_SECS" - - \
		"mean $MEAN_MS ms (sd $SD_MS), $orders orders"

	bench_target "project --rebuild >= 100000 events/s" \
		"$(rate "$n" "$rebuild_secs") events/s" \
		"$(cmp "$(rate "$n" "$rebuild_secs")" ">=" 100000)"
	bench_target "project --rebuild peak RSS <= 256 MB" \
		"$rebuild_rss MB ($small_rss MB on a tenth)" "$(cmp "$rebuild_rss" "<=" 256)"
	bench_target "cqrs-query customer (one process) < 5 ms" "$MEAN_MS ms over $orders orders" \
		"$(cmp "$MEAN_MS" "<" 5)"
	rm -rf "$dir"
}
