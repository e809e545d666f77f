# shellcheck shell=bash disable=SC2154 # scratch and the helpers: run-bench
# store.sh: the event store section of `make bench` (issue 2), sourced by
# run-bench, which provides the helpers (bench_measure, bench_row, ...).
#
# On BENCH_EVENTS generated order events (gen-events: client-supplied random
# v4 UUIDs, ~420 bytes a line), in one run:
#   append  baseline-insert (jansson + raw SQLite, TEXT uuid keys, 10000 rows
#           per transaction, WAL, synchronous=FULL, default page cache);
#           the sqlite3 shell's .import plus one INSERT ... SELECT with
#           json_extract into the same naive schema; baseline-insert -c, the
#           physical limit (same parsing, our schema, no checks, one
#           transaction); baseline-insert -c -r, the storage floor (the
#           same without jansson: only SQLite's cost is left);
#           cqrs-append -q, one transaction, fsync at commit;
#           cqrs-append -q -b 10000 for reference.
#   read    raw-dump (every column of every row to /dev/null) against
#           cqrs-read > /dev/null, on the store cqrs-append made.
#   latency one process appending one event to that store: the sqlite3 CLI
#           inserting one row into a scratch table in the same file (the
#           events table's schema, but empty), against cqrs-append
#           with one event (no event_id, so every run appends; stdout
#           discarded).  Mean over BENCH_RUNS processes.
# Targets (issue 2): cqrs-append at least the naive baseline's rate (aim:
# twice), faster than .import; cqrs-read at least 1,000,000 events/s; peak
# RSS under 64 MB for both; one-event append within 1.5x the sqlite3 CLI.
#
# What dominates cqrs-append: run it under callgrind on a small input, e.g.
#   gen-events 20000 2000 > e.ndjson
#   valgrind --tool=callgrind --callgrind-out-file=cg.out cqrs-append -q -s s.db e.ndjson
#   callgrind_annotate --inclusive=yes cg.out | head -40

# The naive schema filled by the sqlite3 shell alone: .import the lines into
# a one-column temp table, then one INSERT ... SELECT; versions by
# row_number() over each aggregate's lines in input order.
store_import_script() {
	cat <<EOF
PRAGMA journal_mode = WAL;
$(baseline-insert -S)
CREATE TEMP TABLE raw (line TEXT);
.mode ascii
.separator "\\037" "\\n"
.import --schema temp "$1" raw
INSERT INTO events (event_id, aggregate_id, aggregate_type, aggregate_version,
                    event_type, event_version, data, metadata, timestamp)
SELECT json_extract(line, '\$.event_id'), json_extract(line, '\$.aggregate_id'),
       json_extract(line, '\$.aggregate_type'),
       row_number() OVER (PARTITION BY json_extract(line, '\$.aggregate_id') ORDER BY rowid),
       json_extract(line, '\$.event_type'), coalesce(json_extract(line, '\$.event_version'), 1),
       json_extract(line, '\$.data'), coalesce(json_extract(line, '\$.metadata'), '{}'),
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
FROM raw ORDER BY rowid;
EOF
}

# A table in the store with the events table's columns, indexes and
# triggers, for the sqlite3 CLI to insert into (events itself needs the hash
# chain); copied from the store's schema, so it follows schema changes.
store_scratch_table() {
	sqlite3 "$1" "SELECT sql || ';' FROM sqlite_schema WHERE tbl_name = 'events' AND sql NOT NULL" |
		sed 's/events/bench_scratch/g' | sqlite3 "$1"
}

# One row like an appended event, random keys; correlation_key when the
# schema has it.
store_scratch_insert() {
	local cols="event_id, aggregate_id, aggregate_type, aggregate_version, event_type, data,\
 metadata, timestamp, hash, correlation_id"
	local vals="randomblob(16), randomblob(16), 'Order', 1, 'OrderConfirmed', '{}',\
 '{\"correlation_id\":\"bench\"}', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), randomblob(32), 'bench'"
	if [ "$(sqlite3 "$1" "SELECT count(*) FROM pragma_table_info('events') WHERE name = 'correlation_key'")" = 1 ]; then
		cols="$cols, correlation_key" vals="$vals, random()"
	fi
	printf 'INSERT INTO bench_scratch (%s) VALUES (%s)' "$cols" "$vals"
}

# store_count DB: rows in its events table, which must be BENCH_EVENTS.
store_check_count() {
	local got
	got=$(sqlite3 "$1" 'SELECT count(*) FROM events')
	[ "$got" = "$BENCH_EVENTS" ] || {
		echo "run-bench: $1 holds $got events, not $BENCH_EVENTS" >&2
		exit 70
	}
}

bench_store() {
	local input n=$BENCH_EVENTS dir="$scratch/store"
	local naive_secs import_secs append_secs append_rss dump_secs read_secs read_rss
	local sqlite_ms append_ms
	input=$(bench_events_file)
	mkdir -p "$dir"

	bench_measure baseline-insert "$dir/naive.db" "$input"
	store_check_count "$dir/naive.db"
	naive_secs=$SECS
	bench_row "append: naive baseline (jansson)" "$n" "$SECS" "$RSS_MB" 1.00x \
		"TEXT uuids, 10000/txn"
	rm -f "$dir"/naive.db*

	store_import_script "$input" >"$dir/import.sql"
	bench_measure sqlite3 "$dir/import.db" <"$dir/import.sql" >/dev/null
	store_check_count "$dir/import.db"
	import_secs=$SECS
	bench_row "append: sqlite3 .import + INSERT" "$n" "$SECS" "$RSS_MB" \
		"$(ratio "$naive_secs" "$SECS")" "json_extract, one statement"
	rm -f "$dir"/import.db*

	cqrs-append -q -s "$dir/limit.db" /dev/null # an empty store, our schema
	bench_measure baseline-insert -c "$dir/limit.db" "$input"
	store_check_count "$dir/limit.db"
	bench_row "append: physical limit (jansson)" "$n" "$SECS" "$RSS_MB" \
		"$(ratio "$naive_secs" "$SECS")" "our schema, no checks, 1 txn"
	rm -f "$dir"/limit.db*

	cqrs-append -q -s "$dir/floor.db" /dev/null
	bench_measure baseline-insert -c -r "$dir/floor.db" "$input"
	store_check_count "$dir/floor.db"
	bench_row "append: storage floor (no parsing)" "$n" "$SECS" "$RSS_MB" \
		"$(ratio "$naive_secs" "$SECS")" "as above, fields cut by position"
	rm -f "$dir"/floor.db*

	bench_measure cqrs-append -q -s "$dir/events.db" "$input"
	store_check_count "$dir/events.db"
	append_secs=$SECS append_rss=$RSS_MB
	bench_row "append: cqrs-append -q" "$n" "$SECS" "$RSS_MB" \
		"$(ratio "$naive_secs" "$SECS")" "1 txn, fsync at commit"

	bench_measure cqrs-append -q -b 10000 -s "$dir/batched.db" "$input"
	store_check_count "$dir/batched.db"
	bench_row "append: cqrs-append -q -b 10000" "$n" "$SECS" "$RSS_MB" \
		"$(ratio "$naive_secs" "$SECS")" "10000/txn like the baseline"
	rm -f "$dir"/batched.db*

	bench_measure raw-dump "$dir/events.db" >/dev/null
	dump_secs=$SECS
	bench_row "read: raw dump (sqlite3 C API)" "$n" "$SECS" "$RSS_MB" 1.00x \
		"all columns > /dev/null"

	bench_measure cqrs-read -s "$dir/events.db" >/dev/null
	read_secs=$SECS read_rss=$RSS_MB
	bench_row "read: cqrs-read" "$n" "$SECS" "$RSS_MB" "$(ratio "$dump_secs" "$SECS")" \
		"NDJSON > /dev/null"

	# One event per process, into the store that holds everything above.
	local agg insert one="$dir/one.ndjson" runs=$BENCH_RUNS
	agg=$(sed -n '1s/.*"aggregate_id":"\([0-9a-f-]*\)".*/\1/p' "$input")
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderConfirmed","data":{},"metadata":{"correlation_id":"bench"}}\n' \
		"$agg" >"$one"
	store_scratch_table "$dir/events.db"
	insert=$(store_scratch_insert "$dir/events.db")

	bench_latency "$runs" sqlite3 "$dir/events.db" "$insert"
	sqlite_ms=$MEAN_MS
	bench_measure sqlite3 "$dir/events.db" "$insert"
	bench_row "one event: sqlite3 CLI INSERT" "$runs" "$TOTAL_SECS" "$RSS_MB" 1.00x \
		"$sqlite_ms ms/process, sd $SD_MS"

	bench_latency "$runs" cqrs-append -s "$dir/events.db" "$one"
	append_ms=$MEAN_MS
	bench_measure cqrs-append -s "$dir/events.db" "$one" >/dev/null
	bench_row "one event: cqrs-append" "$runs" "$TOTAL_SECS" "$RSS_MB" \
		"$(ratio "$append_ms" "$sqlite_ms")" "$append_ms ms/process, sd $SD_MS; ratio of times"
	local added
	added=$(sqlite3 "$dir/events.db" 'SELECT count(*) FROM events')
	[ "$added" -gt "$n" ] || { echo "run-bench: the one-event appends stored nothing" >&2; exit 70; }
	rm -f "$dir"/events.db*

	local append_rate naive_rate import_rate read_rate
	append_rate=$(rate "$n" "$append_secs")
	naive_rate=$(rate "$n" "$naive_secs")
	import_rate=$(rate "$n" "$import_secs")
	read_rate=$(rate "$n" "$read_secs")
	bench_target "cqrs-append >= naive baseline (same run)" \
		"$append_rate vs $naive_rate ev/s" "$(cmp "$append_rate" '>=' "$naive_rate")"
	bench_target "cqrs-append >= 2x naive baseline (aim)" \
		"$(ratio "$append_rate" "$naive_rate")" \
		"$(cmp "$append_rate" '>=' "$((2 * naive_rate))")"
	bench_target "cqrs-append > sqlite3 .import + INSERT" \
		"$append_rate vs $import_rate ev/s" "$(cmp "$append_rate" '>' "$import_rate")"
	bench_target "cqrs-read >= 1000000 events/s to /dev/null" "$read_rate ev/s" \
		"$(cmp "$read_rate" '>=' 1000000)"
	bench_target "cqrs-append peak RSS < 64 MB" "$append_rss MB" \
		"$(cmp "$append_rss" '<' 64)"
	bench_target "cqrs-read peak RSS < 64 MB" "$read_rss MB" "$(cmp "$read_rss" '<' 64)"
	bench_target "one event: cqrs-append <= 1.5x sqlite3 CLI" \
		"$append_ms vs $sqlite_ms ms ($(ratio "$append_ms" "$sqlite_ms"))" \
		"$(cmp "$append_ms" '<=' "$(awk -v s="$sqlite_ms" 'BEGIN { print 1.5 * s }')")"
}
