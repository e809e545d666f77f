# shellcheck shell=bash disable=SC2154,SC2153 # scratch and the helpers: run-bench
# postgres.sh: the PostgreSQL section of `make bench BENCH=postgres`
# (issue 13), sourced by run-bench, which provides the helpers.  It starts
# a throwaway PostgreSQL 15 cluster (tests/pg_helper.bash) with fsync on,
# and measures in one run, on the same server:
#   bulk    cqrs-append -q -b 10000 of BENCH_EVENTS generated events, against
#           COPY of the same rows (taken from the store) into a table of
#           the same columns and indexes: the server's floor, no checks.
#   commits cqrs-append -q -b 1 (one durable commit per event) by 1, 2, 4
#           and 8 concurrent writers, BENCH_PG_COMMITS events in all: the
#           curve of per-event commits against writers, under the append
#           lock.
#   read    cqrs-read > /dev/null of the whole store, against psql's COPY
#           (SELECT every column ORDER BY sequence) TO STDOUT > /dev/null.
#   sqlite  the same bulk append, per-event commits (1 writer) and read on
#           a SQLite store, beside them.
#   message-db  the same events written by a function of message-db's shape
#           (write_message: the category's advisory lock, the stream's
#           version read, one insert into its messages table and indexes;
#           message-db is not packaged, so it is modelled here from its
#           published design, not copied), 10,000 a statement from a JSON
#           array, one transaction each: its batched form.
# Targets (issue 13): read-all at least 0.8x the raw COPY; bulk append at
# least 2x message-db's batched write_message.

# bench_message_db INPUT DIR: sets MD_SECS, the time message-db's shape
# takes to write INPUT's events, 10,000 a statement.
bench_message_db() {
	pg_sql <<'SQL'
CREATE SCHEMA md;
CREATE TABLE md.messages (global_position bigserial PRIMARY KEY, position bigint NOT NULL,
	time timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'), stream_name text NOT NULL,
	type text NOT NULL, data jsonb, metadata jsonb, id uuid NOT NULL);
CREATE UNIQUE INDEX messages_id ON md.messages (id);
CREATE UNIQUE INDEX messages_stream ON md.messages (stream_name, position);
CREATE INDEX messages_category ON md.messages (split_part(stream_name, '-', 1), global_position,
	split_part(metadata->>'correlationStreamName', '-', 1));
CREATE FUNCTION md.write_message(id uuid, stream text, type text, data jsonb, metadata jsonb)
RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE v bigint;
BEGIN
	PERFORM pg_advisory_xact_lock(hashtextextended(split_part(stream, '-', 1), 0));
	SELECT coalesce(max(m.position), -1) + 1 INTO v FROM md.messages m WHERE m.stream_name = stream;
	INSERT INTO md.messages (id, stream_name, position, type, data, metadata)
		VALUES (id, stream, v, type, data, metadata);
	RETURN v;
END $f$;
SQL
	jq -c '{id: .event_id, stream: (.aggregate_type + "-" + .aggregate_id), type: .event_type,
		data, metadata}' "$1" | split -l 10000 - "$2/md-part."
	local part
	for part in "$2"/md-part.*; do
		# shellcheck disable=SC2016 # $md$ is SQL dollar quoting
		printf 'SELECT count(md.write_message(x.id, x.stream, x.type, x.data, x.metadata))
			FROM jsonb_to_recordset($md$[%s]$md$::jsonb)
			AS x(id uuid, stream text, type text, data jsonb, metadata jsonb);\n' \
			"$(paste -sd, "$part")"
	done >"$2/md.sql"
	bench_measure psql -X -q -v ON_ERROR_STOP=1 -f "$2/md.sql" >/dev/null
	MD_SECS=$SECS
	[ "$(pg_sql -c "SELECT count(*) FROM md.messages")" = "$(wc -l <"$1")" ] || {
		echo "run-bench: message-db's shape did not write every event" >&2
		exit 70
	}
}

bench_postgres() {
	# shellcheck source=tests/pg_helper.bash
	. "$bench_dir/../pg_helper.bash"
	PG_FSYNC=on pg_start || { echo "run-bench: cannot start PostgreSQL" >&2; exit 69; }
	trap 'pg_stop; rm -rf "$scratch"' EXIT
	local input n dir=$scratch/pg commits=${BENCH_PG_COMMITS:-2000}
	mkdir -p "$dir"
	input=$(bench_events_file)
	n=$(wc -l <"$input")
	local pg_store_name
	pg_store_name=$(pg_store bench)

	# the store's tables made first, as the COPY's and message-db's are:
	# each is timed appending, not creating its schema
	echo | cqrs-append -q -s "$pg_store_name"
	bench_measure cqrs-append -q -b 10000 -s "$pg_store_name" "$input"
	local append_secs=$SECS
	# the same rows, as the store holds them, for COPY
	pg_sql -c "COPY bench.events TO STDOUT" >"$dir/rows.tsv"
	pg_sql -c "CREATE TABLE copy_floor (LIKE bench.events INCLUDING ALL)"
	bench_measure psql -X -q -v ON_ERROR_STOP=1 -c "\\copy copy_floor FROM '$dir/rows.tsv'"
	local copy_secs=$SECS
	bench_row "pg append: COPY, same rows (floor)" "$n" "$copy_secs" "$RSS_MB" 1.00x \
		"server floor: no parsing, no checks"
	bench_row "pg append: cqrs-append -q -b 10000" "$n" "$append_secs" - \
		"$(ratio "$copy_secs" "$append_secs")" "hash chain, versions, ids checked"
	bench_message_db "$input" "$dir"
	bench_row "pg append: message-db write_message, 10000 a statement" "$n" "$MD_SECS" - \
		"$(ratio "$copy_secs" "$MD_SECS")" "its shape: stream lock, version read, insert"
	bench_target "pg bulk append >= 2x message-db's batched write_message" \
		"$(ratio "$MD_SECS" "$append_secs")" \
		"$(cmp "$(awk -v a="$MD_SECS" -v b="$append_secs" 'BEGIN { print a / b }')" '>=' 2)"

	bench_measure psql -X -q -v ON_ERROR_STOP=1 -c "COPY (SELECT sequence, event_id, aggregate_id, aggregate_type,
		aggregate_version, event_type, event_version, data, metadata, \"timestamp\", hash
		FROM bench.events ORDER BY sequence) TO STDOUT" >/dev/null
	local raw_read=$SECS
	bench_row "pg read: COPY TO STDOUT (raw)" "$n" "$raw_read" "$RSS_MB" 1.00x ""
	bench_measure cqrs-read -s "$pg_store_name" >/dev/null
	local read_secs=$SECS
	bench_row "pg read: cqrs-read > /dev/null" "$n" "$read_secs" "$RSS_MB" \
		"$(ratio "$raw_read" "$read_secs")" "keyset pages of 1000"
	bench_target "pg read-all >= 0.8x raw COPY" "$(ratio "$raw_read" "$read_secs")" \
		"$(cmp "$(awk -v a="$raw_read" -v b="$read_secs" 'BEGIN { print a / b }')" '>=' 0.8)"

	local writers w each t0 t1 secs
	head -n "$commits" "$input" >"$dir/commits.ndjson"
	for writers in 1 2 4 8; do
		each=$((commits / writers))
		split -n "l/$writers" -d "$dir/commits.ndjson" "$dir/part$writers."
		pg_sql -c "DROP SCHEMA IF EXISTS w$writers CASCADE"
		echo | cqrs-append -q -s "$(pg_store "w$writers")"
		sync
		t0=$EPOCHREALTIME
		for ((w = 0; w < writers; w++)); do
			cqrs-append -q -b 1 -s "$(pg_store "w$writers")" \
				"$(printf '%s/part%d.%02d' "$dir" "$writers" "$w")" &
		done
		wait
		t1=$EPOCHREALTIME
		secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
		bench_row "pg commits: $writers writer(s), -b 1" "$((each * writers))" "$secs" - - \
			"one durable commit per event"
	done

	bench_measure cqrs-append -q -b 10000 -s "$dir/events.db" "$input"
	bench_row "sqlite append: cqrs-append -q -b 10000" "$n" "$SECS" "$RSS_MB" - ""
	bench_measure cqrs-read -s "$dir/events.db" >/dev/null
	bench_row "sqlite read: cqrs-read > /dev/null" "$n" "$SECS" "$RSS_MB" - ""
	bench_measure cqrs-append -q -b 1 -s "$dir/commits.db" "$dir/commits.ndjson"
	bench_row "sqlite commits: 1 writer, -b 1" "$commits" "$SECS" "$RSS_MB" - \
		"one fsync'd commit per event"
	pg_stop
}
