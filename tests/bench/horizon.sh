# shellcheck shell=bash disable=SC2154 # scratch, bench_dir and the helpers: run-bench
# horizon.sh: the two designs of global order on PostgreSQL (issue 13), a
# section of `make bench`, sourced by run-bench:
#
#   make bench BENCH=horizon
#
# It starts a throwaway PostgreSQL 15 cluster (tests/pg_helper.bash) with
# fsync on, and drives both designs with pgbench's custom scripts, on the
# same server in the same run, against tables of the store's shape
# (schema_v1 in lib/store/store_pg.c: the same columns, keys, indexes and
# append-only triggers):
#   lock     what store_pg.c does: a transaction of B events takes the
#            append lock (pg_advisory_xact_lock), reads the head (sequence,
#            hash) in a statement of its own, inserts its B events at
#            head + 1, ... with each hash sha256(previous hash || data),
#            computed in SQL, and commits.  Gapless, chained at append,
#            visible in sequence order.
#   horizon  the design of Marten and Emmett: no lock; the sequence comes
#            from a bigserial and each row records its transaction
#            (tx xid8 DEFAULT pg_current_xact_id()).  Numbers commit out of
#            order and rollbacks leave gaps, so a follower reads only below
#            the horizon, tx < pg_snapshot_xmin(pg_current_snapshot()), in
#            (tx, sequence) order: every transaction below it has ended.
#            The chain cannot be made at append (the previous event is not
#            known yet): one sealer, under a lock of its own, hashes the
#            rows below the horizon in that order (in sequence order, an
#            event that commits late would land behind one already
#            sealed) into a side table (sealed: position, sequence, tx,
#            hash), since events stay append-only.  It is measured
#            without the sealer, and with one running beside the writers
#            (the note: how much it had sealed when the writers stopped).
# For B = 1 and B = 100, by 1, 2, 4 and 8 clients (pgbench -c, -T
# BENCH_HORIZON_SECS seconds each, default 3; BENCH_HORIZON_CLIENTS lists
# the client counts): events/s (transactions/s x B) and the mean latency
# of a transaction.  Then the read side: a follower's page of 1,000 events
# at a random place, on 50,000 events written the same way, by each
# design's query; the gaps that 1 rollback in 10 transactions leaves in
# each; and, with two psql sessions, the event that a reader skips when it
# reads past the horizon.  About 2.5 minutes on two cores.
# store_pg.c also notifies followers in the lock's statement (pg_notify);
# either design needs that or polling, so neither model has it.

# The first key of store_pg.c's append lock (LOCK_CLASS, "CQRS").
horizon_lock_class=1129468499

# The columns both designs insert, and an event's data for row i: about the
# size of an order's event.
horizon_columns='event_id, aggregate_id, aggregate_type, aggregate_version, event_type, data, "timestamp"'
horizon_data="format('{\"order_id\": \"ORD-%s\", \"items\": [{\"sku\": \"SKU-%s\", \"quantity\": 2, \"price\": \"19.99\"}], \"customer\": \"alice\"}', i, i)"
horizon_values="gen_random_uuid(), gen_random_uuid(), 'Order', 1, 'OrderPlaced'"

# horizon_tables SCHEMA DESIGN: the events table of DESIGN (lock or
# horizon) in a new SCHEMA, of schema_v1's shape.
horizon_tables() {
	local sequence hash tx=
	if [ "$2" = lock ]; then
		sequence='sequence bigint PRIMARY KEY CHECK (sequence >= 1)'
		hash='hash bytea NOT NULL,'
	else
		sequence='sequence bigserial PRIMARY KEY'
		hash=
		tx='tx xid8 NOT NULL DEFAULT pg_current_xact_id(),'
	fi
	pg_sql <<SQL
CREATE SCHEMA $1;
SET search_path = $1;
CREATE TABLE events ($sequence,
	event_id uuid NOT NULL UNIQUE, aggregate_id uuid NOT NULL,
	aggregate_type text COLLATE "C" NOT NULL,
	aggregate_version bigint NOT NULL CHECK (aggregate_version >= 1),
	event_type text COLLATE "C" NOT NULL, event_version bigint NOT NULL DEFAULT 1,
	data text NOT NULL, metadata text NOT NULL DEFAULT '{}',
	"timestamp" text COLLATE "C" NOT NULL, $hash $tx correlation_id text COLLATE "C",
	UNIQUE (aggregate_id, aggregate_version));
CREATE INDEX events_aggregate_type ON events(aggregate_type);
CREATE INDEX events_event_type ON events(event_type);
CREATE INDEX events_timestamp ON events("timestamp");
CREATE INDEX events_correlation ON events(correlation_id) WHERE correlation_id IS NOT NULL;
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS
	\$\$BEGIN RAISE EXCEPTION 'events are append-only'; END\$\$;
CREATE TRIGGER events_no_change BEFORE UPDATE OR DELETE ON events
	FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
	FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
SQL
	if [ "$2" = lock ]; then
		# the first event, so that the head is never missing (not counted)
		pg_sql -c "INSERT INTO $1.events (sequence, $horizon_columns, hash)
			SELECT 1, $horizon_values, $horizon_data, clock_timestamp()::text,
				sha256(convert_to($horizon_data, 'UTF8')) FROM (SELECT 0 AS i) z"
		return
	fi
	# the follower's and the sealer's order; the sealer's side table, from
	# a first row at position 0; seal(max) hashes up to max rows below the
	# horizon under the sealer's lock and returns how many
	pg_sql <<SQL
SET search_path = $1;
CREATE INDEX events_tx ON events(tx, sequence);
CREATE TABLE sealed (position bigint PRIMARY KEY, sequence bigint NOT NULL UNIQUE,
	tx xid8 NOT NULL, hash bytea NOT NULL);
INSERT INTO sealed VALUES (0, 0, '0', sha256(''));
CREATE FUNCTION seal(max_rows int) RETURNS int LANGUAGE plpgsql SET search_path FROM CURRENT AS \$f\$
DECLARE
	head record;
	r record;
	pos bigint;
	prev bytea;
	positions bigint[] := '{}';
	sequences bigint[] := '{}';
	txs xid8[] := '{}';
	hashes bytea[] := '{}';
BEGIN
	PERFORM pg_advisory_xact_lock($horizon_lock_class, 2);
	SELECT s.position, s.tx, s.sequence, s.hash INTO head FROM sealed s
		ORDER BY s.position DESC LIMIT 1;
	pos := head.position;
	prev := head.hash;
	FOR r IN SELECT e.sequence, e.tx, e.data FROM events e
		WHERE (e.tx, e.sequence) > (head.tx, head.sequence)
			AND e.tx < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY e.tx, e.sequence LIMIT max_rows
	LOOP
		pos := pos + 1;
		prev := sha256(prev || convert_to(r.data, 'UTF8'));
		positions := positions || pos;
		sequences := sequences || r.sequence;
		txs := txs || r.tx;
		hashes := hashes || prev;
	END LOOP;
	INSERT INTO sealed SELECT * FROM unnest(positions, sequences, txs, hashes);
	RETURN cardinality(positions);
END \$f\$;
SQL
}

# horizon_scripts DIR: pgbench's scripts (B is pgbench's -D B=...).
horizon_scripts() {
	# lock: the store's append transaction
	cat >"$1/lock.sql" <<SQL
BEGIN;
SELECT pg_advisory_xact_lock($horizon_lock_class, 1);
SELECT sequence AS head_seq, encode(hash, 'hex') AS head_hash FROM events
	ORDER BY sequence DESC LIMIT 1 \\gset
INSERT INTO events (sequence, $horizon_columns, hash)
WITH RECURSIVE chain (i, data, hash) AS (
	SELECT 1, d.data, sha256(decode(':head_hash', 'hex') || convert_to(d.data, 'UTF8'))
	FROM (SELECT $horizon_data AS data FROM (SELECT 1 AS i) z) d
	UNION ALL
	SELECT c.i + 1, d.data, sha256(c.hash || convert_to(d.data, 'UTF8'))
	FROM chain c CROSS JOIN LATERAL (SELECT $horizon_data AS data FROM (SELECT c.i + 1 AS i) z) d
	WHERE c.i < :B)
SELECT :head_seq + i, $horizon_values, data, clock_timestamp()::text, hash FROM chain;
SQL
	# horizon: the insert alone, numbered by the bigserial
	cat >"$1/horizon.sql" <<SQL
BEGIN;
INSERT INTO events ($horizon_columns)
	SELECT $horizon_values, $horizon_data, clock_timestamp()::text FROM generate_series(1, :B) i;
SQL
	local design
	for design in lock horizon; do
		cp "$1/$design.sql" "$1/$design-rollback.sql"
		echo 'COMMIT;' >>"$1/$design.sql"
		# one transaction in ten rolls back
		printf '%s\n' '\set r random(1, 10)' '\if :r = 1' 'ROLLBACK;' '\else' 'COMMIT;' \
			'\endif' >>"$1/$design-rollback.sql"
	done
	# the sealer: waits a little only when there was nothing to seal
	printf '%s\n' 'SELECT seal(10000) AS sealed \gset' '\if :sealed = 0' '\sleep 5 ms' \
		'\endif' >"$1/seal.sql"
	# a follower's page of 1,000 events at a random place
	cat >"$1/read-lock.sql" <<'SQL'
\set cp random(1, :last)
SELECT sequence, event_id, aggregate_id, aggregate_type, aggregate_version, event_type,
	event_version, data, metadata, "timestamp", hash
	FROM events WHERE sequence > :cp ORDER BY sequence LIMIT 1000;
SQL
	cat >"$1/read-horizon.sql" <<'SQL'
\set cp random(:first, :last)
SELECT sequence, tx, event_id, aggregate_id, aggregate_type, aggregate_version, event_type,
	event_version, data, metadata, "timestamp"
	FROM events WHERE (tx, sequence) > ((:cp)::text::xid8, 0)
		AND tx < pg_snapshot_xmin(pg_current_snapshot())
	ORDER BY tx, sequence LIMIT 1000;
SQL
	cat >"$1/read-sealed.sql" <<'SQL'
\set cp random(0, :last)
SELECT s.position, e.sequence, e.event_id, e.aggregate_id, e.aggregate_type,
	e.aggregate_version, e.event_type, e.event_version, e.data, e.metadata, e."timestamp", s.hash
	FROM sealed s JOIN events e ON e.sequence = s.sequence
	WHERE s.position > :cp ORDER BY s.position LIMIT 1000;
SQL
}

# horizon_pgbench SCHEMA OUT PGBENCH-ARGS...: pgbench on SCHEMA's tables;
# sets HZ_TX (transactions), HZ_TPS and HZ_LAT_MS from its report.
horizon_pgbench() {
	local schema=$1 out=$2
	shift 2
	PGOPTIONS="-c search_path=$schema" "$PG_BIN/pgbench" -n "$@" >"$out" 2>&1 || {
		echo "run-bench: pgbench failed ($*):" >&2
		cat "$out" >&2
		exit 70
	}
	HZ_TX=$(awk '/^number of transactions actually processed:/ { split($6, a, "/"); print a[1] }' "$out")
	HZ_TPS=$(awk '/^tps = / { print $3 }' "$out")
	HZ_LAT_MS=$(awk '/^latency average = / { print $4 }' "$out")
}

# horizon_cell DESIGN B CLIENTS: one cell of the append table.
horizon_cell() {
	local design=$1 b=$2 c=$3 schema table=horizon script=horizon.sql note='' sealer=''
	case $design in
	lock) schema=lock table=lock script=lock.sql ;;
	horizon) schema=horizon ;;
	horizon+sealer) schema=sealer ;;
	esac
	schema=${schema}_b${b}_c$c
	horizon_tables "$schema" "$table"
	sync
	if [ "$design" = horizon+sealer ]; then
		PGOPTIONS="-c search_path=$schema" "$PG_BIN/pgbench" -n -c 1 -T "$horizon_secs" \
			-f "$horizon_dir/seal.sql" >"$horizon_dir/$schema.seal" 2>&1 &
		sealer=$!
	fi
	horizon_pgbench "$schema" "$horizon_dir/$schema.out" -c "$c" -j "$c" -T "$horizon_secs" \
		-D B="$b" -f "$horizon_dir/$script"
	if [ -n "$sealer" ]; then
		wait "$sealer" || { cat "$horizon_dir/$schema.seal" >&2; exit 70; }
		note=$(pg_sql -c "SELECT format('sealer: %s%% sealed, %s left',
				round(100.0 * (SELECT count(*) - 1 FROM $schema.sealed) / greatest(count(*), 1)),
				count(*) - (SELECT count(*) - 1 FROM $schema.sealed))
			FROM $schema.events")
	fi
	local events eps
	events=$((HZ_TX * b))
	eps=$(awk -v t="$HZ_TPS" -v b="$b" 'BEGIN { printf "%.0f", t * b }')
	horizon_table+=("$(printf '%-16s %4s %7s %10s %9s  %s' "$design" "$b" "$c" "$eps" "$HZ_LAT_MS" "$note")")
	printf '%s\n' "${horizon_table[-1]}" >&2
	bench_row "pg $design b=$b: $c client(s)" "$events" \
		"$(awk -v n="$HZ_TX" -v t="$HZ_TPS" 'BEGIN { printf "%.3f", n / t }')" - - \
		"${note:-pgbench, $HZ_LAT_MS ms a transaction}"
}

# horizon_read WHAT SCRIPT SCHEMA FIRST LAST ROW: a follower's pages (ROW:
# the summary's name).
horizon_read() {
	horizon_pgbench "$3" "$horizon_dir/read-$1.out" -c 1 -T "$horizon_secs" \
		-D first="$4" -D last="$5" -f "$horizon_dir/$2"
	local eps
	eps=$(awk -v t="$HZ_TPS" 'BEGIN { printf "%.0f", t * 1000 }')
	horizon_reads+=("$(printf '%-44s %10s %9s' "$1" "$eps" "$HZ_LAT_MS")")
	bench_row "pg read: $6" "$((HZ_TX * 1000))" \
		"$(awk -v n="$HZ_TX" -v t="$HZ_TPS" 'BEGIN { printf "%.3f", n / t }')" - - \
		"pages of 1000, $HZ_LAT_MS ms a page"
}

# horizon_gaps DESIGN: 1 transaction in 10 rolls back; prints what stays.
horizon_gaps() {
	local schema=gaps_$1
	horizon_tables "$schema" "$1"
	horizon_pgbench "$schema" "$horizon_dir/$schema.out" -c 4 -j 4 -t 250 -D B=1 \
		-f "$horizon_dir/$1-rollback.sql"
	local first=1
	[ "$1" = lock ] && first=2
	pg_sql -c "SELECT format('%-8s %s events committed of 1000 transactions, sequences %s..%s: %s numbers missing',
		'$1', count(*), min(sequence), max(sequence), max(sequence) - $first + 1 - count(*))
		FROM $schema.events WHERE sequence >= $first"
}

# horizon_demo: two sessions, one event each; A takes the lower number and
# commits after B.  A reader that reads by sequence alone skips A's event.
horizon_demo() {
	horizon_tables demo horizon
	local insert="INSERT INTO events ($horizon_columns) SELECT $horizon_values, $horizon_data,
		clock_timestamp()::text FROM (SELECT 1 AS i) z RETURNING sequence;"
	local by_sequence="SELECT coalesce(string_agg(sequence::text, ' ' ORDER BY sequence), 'nothing')
		FROM events WHERE sequence > "
	local below_horizon="SELECT coalesce(string_agg(sequence::text, ' ' ORDER BY tx, sequence), 'nothing')
		FROM events WHERE tx < pg_snapshot_xmin(pg_current_snapshot())"
	local a b seen
	coproc horizon_session_a { PGOPTIONS='-c search_path=demo' psql -X -q -At -v ON_ERROR_STOP=1; }
	echo "BEGIN; $insert" >&"${horizon_session_a[1]}"
	read -r -t 60 a <&"${horizon_session_a[0]}"
	echo "  session A: BEGIN; INSERT: takes sequence $a, does not commit yet"
	b=$(PGOPTIONS='-c search_path=demo' pg_sql -c "$insert")
	echo "  session B: INSERT: takes sequence $b, commits"
	seen=$(PGOPTIONS='-c search_path=demo' pg_sql -c "$by_sequence 0")
	echo "  reader by sequence (sequence > 0): reads $seen; its checkpoint is now $seen"
	echo "  reader below the horizon: reads $(PGOPTIONS='-c search_path=demo' pg_sql -c "$below_horizon")"
	echo "COMMIT; SELECT 'committed';" >&"${horizon_session_a[1]}"
	read -r -t 60 _ <&"${horizon_session_a[0]}"
	echo "  session A: COMMIT"
	echo "  reader by sequence (sequence > $seen): reads" \
		"$(PGOPTIONS='-c search_path=demo' pg_sql -c "$by_sequence $seen"): event $a is skipped for good"
	echo "  reader below the horizon, (tx, sequence) order: reads" \
		"$(PGOPTIONS='-c search_path=demo' pg_sql -c "$below_horizon")"
	echo "  the store holds: $(PGOPTIONS='-c search_path=demo' pg_sql -c "$by_sequence 0")"
	# the lock design: B cannot take a number while A holds the lock
	echo "BEGIN; SELECT pg_advisory_xact_lock($horizon_lock_class, 1) IS NULL;" \
		>&"${horizon_session_a[1]}"
	read -r -t 60 _ <&"${horizon_session_a[0]}"
	echo "  the lock design: session A holds the append lock; session B's pg_advisory_xact_lock" \
		"waits for it: $(PGOPTIONS='-c lock_timeout=200' pg_sql \
			-c "SELECT pg_advisory_xact_lock($horizon_lock_class, 1)" 2>&1 | sed 's/^.*ERROR: *//' |
			head -n 1) after 200 ms"
	printf '%s\n' 'ROLLBACK;' '\q' >&"${horizon_session_a[1]}"
	wait "$horizon_session_a_PID" 2>/dev/null || true
}

bench_horizon() {
	# shellcheck source=tests/pg_helper.bash
	. "$bench_dir/../pg_helper.bash"
	[ -x "$PG_BIN/pgbench" ] ||
		{ echo "run-bench: $PG_BIN/pgbench not found (Debian package postgresql-15)" >&2; exit 69; }
	PG_FSYNC=on pg_start || { echo "run-bench: cannot start PostgreSQL" >&2; exit 69; }
	trap 'pg_stop; rm -rf "$scratch"' EXIT
	horizon_dir=$scratch/horizon
	horizon_secs=${BENCH_HORIZON_SECS:-3}
	horizon_table=()
	horizon_reads=()
	mkdir -p "$horizon_dir"
	horizon_scripts "$horizon_dir"
	echo "horizon: appends, $horizon_secs s a cell, fsync on, $(nproc) cores," \
		"load average $(cut -d' ' -f1-3 /proc/loadavg) ..." >&2

	local design b c sealed
	for design in lock horizon horizon+sealer; do
		for b in 1 100; do
			for c in ${BENCH_HORIZON_CLIENTS:-1 2 4 8}; do
				horizon_cell "$design" "$b" "$c"
			done
		done
	done

	# the read side: 50,000 events by each design, 2 clients of B = 100
	horizon_tables read_lock lock
	horizon_pgbench read_lock "$horizon_dir/fill-lock.out" -c 2 -j 2 -t 250 -D B=100 \
		-f "$horizon_dir/lock.sql"
	horizon_tables read_horizon horizon
	horizon_pgbench read_horizon "$horizon_dir/fill-horizon.out" -c 2 -j 2 -t 250 -D B=100 \
		-f "$horizon_dir/horizon.sql"
	while :; do
		sealed=$(pg_sql -c "SELECT read_horizon.seal(100000)") || exit 70
		[ "$sealed" != 0 ] || break
	done
	pg_sql -c "VACUUM ANALYZE read_lock.events" -c "VACUUM ANALYZE read_horizon.events" \
		-c "VACUUM ANALYZE read_horizon.sealed"
	horizon_read "lock: sequence > n" read-lock.sql read_lock 1 \
		"$(pg_sql -c "SELECT max(sequence) - 1000 FROM read_lock.events")" "lock"
	horizon_read "horizon: (tx, sequence) > t, tx < xmin" read-horizon.sql read_horizon \
		"$(pg_sql -c "SELECT min(tx) FROM read_horizon.events")" \
		"$(pg_sql -c "SELECT tx FROM read_horizon.events ORDER BY tx, sequence
			OFFSET (SELECT count(*) - 1000 FROM read_horizon.events) LIMIT 1")" "horizon, tx < xmin"
	horizon_read "horizon sealed: position > n, join sealed" read-sealed.sql read_horizon 0 \
		"$(pg_sql -c "SELECT max(position) - 1000 FROM read_horizon.sealed")" "horizon, sealed chain"

	echo
	echo "horizon: global order on PostgreSQL 15, fsync on, $(nproc) cores shared," \
		"$horizon_secs s a cell, load average now $(cut -d' ' -f1-3 /proc/loadavg)"
	printf '%-16s %4s %7s %10s %9s  %s\n' design B clients events/s 'ms/tx' note
	printf '%s\n' "${horizon_table[@]}"
	echo
	printf '%-44s %10s %9s\n' 'follower, pages of 1000 events, 1 client' events/s 'ms/page'
	printf '%s\n' "${horizon_reads[@]}"
	echo
	echo "rollbacks: 1 transaction in 10 rolls back, 4 clients, 1000 transactions of 1 event:"
	horizon_gaps lock
	horizon_gaps horizon
	echo
	echo "a reader that reads past the horizon (sequence order, no xmin rule):"
	horizon_demo
	echo
	pg_stop
}
