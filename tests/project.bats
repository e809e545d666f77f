#!/usr/bin/env bats
# cqrs-project: the read models against hand-computed expectations, runs
# from cron, --stdin and --follow, exactly-once under kill -9, two runs at
# once, user projections, bad projection files, rebuild, diff, history, lag.

bats_require_minimum_version 1.5.0
load test_helper

teardown() {
	reap_background_jobs
}

eval "common_$(declare -f setup)"
setup() {
	common_setup
	export CQRS_VIEWS="$BATS_TEST_TMPDIR/views.db"
	HISTORY="$FIXTURES/orders-history.ndjson"
}

# The scripted order history (tests/fixtures/orders-history.ndjson), 37 events:
#   products P1 SKU-1 Widget (10 in stock), P2 SKU-2 Gadget (5, then 5 more),
#   P3 SKU-3 Gizmo (4)
#   O1 cust-1 USD 2 x P1 @29.99 + 1 x P2 @10.00 = 69.98  2026-01-15  confirmed, paid, shipped
#   O2 cust-2 USD 3 x P2 @10.00 = 30.00                 2026-01-15  confirmed, cancelled
#   O3 cust-1 EUR 1 x P1 @25.50 = 25.50                 2026-01-16  paid, then confirmed
#   O4 cust-3 JPY 2 x P3 @1500 = 3000                   2026-01-16  confirmed
#   O5 cust-3 USD 1 x P2 @10.01 = 10.01                 2026-01-16  pending
#   O6 cust-1 USD 1 x P1 @29.99 + 1 x P3 @5.01 = 35.00  2026-01-16T23:59:59.999999Z  pending
#   O7 cust-2 USD 1 x P1 @29.99 = 29.99                 2026-01-17  paid, cancelled
# with the inventory reservations and releases, and Payment events that no
# shipped projection reads.
O1=00000001-0000-4000-8000-000000000001

load_history() {
	cqrs-append -q "$HISTORY"
}

# Rows of a views table, '|'-separated, in the order given.
rows() {
	sqlite3 "${VIEWS:-$CQRS_VIEWS}" "SELECT $2 FROM $1 ORDER BY ${3:-1}"
}

# Everything in a views file but the time of the last update: the content
# of every table, sorted, and the checkpoints.
snapshot() {
	sqlite3 "$1" .dump | grep -v '^INSERT INTO cqrs_checkpoints' | sort
	sqlite3 "$1" 'SELECT projection, sequence, event_hash, event_timestamp, definition
		FROM cqrs_checkpoints ORDER BY projection'
}

# A projection file of the user's own, in $1.
user_projection() {
	cat >"$1" <<-'EOF'
		# every event, counted per type and applied once per sequence
		projections:
		  - name: event_counts
		    tables:
		      - CREATE TABLE event_counts (event_type TEXT PRIMARY KEY, n INTEGER NOT NULL)
		      - CREATE TABLE applied (sequence INTEGER PRIMARY KEY, aggregate_type TEXT)
		    on:
		      "*":
		        - INSERT INTO applied VALUES (:sequence, :aggregate_type)
		        - |
		          INSERT INTO event_counts VALUES (:event_type, 1)
		          ON CONFLICT (event_type) DO UPDATE SET n = n + 1
	EOF
}

# --- the read models after the scripted history -------------------------------

@test "order_views: one row per order with its current state" {
	load_history
	run --separate-stderr cqrs-project
	assert_success
	assert_output ''
	assert_equal "$stderr" ''
	run rows order_views "order_number, customer_id, status, currency, total, total_minor,
		item_count, payment_id, amount_paid, tracking_number, carrier, cancel_reason, version"
	assert_output - <<-'EOF'
		ORD-2026-000001|cust-1|SHIPPED|USD|69.98|6998|3|90000001-0000-4000-8000-000000000001|69.98|TRK123456|FedEx||4
		ORD-2026-000002|cust-2|CANCELLED|USD|30.00|3000|3|||||customer request|3
		ORD-2026-000003|cust-1|PAID|EUR|25.50|2550|1|90000003-0000-4000-8000-000000000003|25.50||||3
		ORD-2026-000004|cust-3|CONFIRMED|JPY|3000|3000|2||||||2
		ORD-2026-000005|cust-3|PENDING|USD|10.01|1001|1||||||1
		ORD-2026-000006|cust-1|PENDING|USD|35.00|3500|2||||||1
		ORD-2026-000007|cust-2|CANCELLED|USD|29.99|2999|1|90000007-0000-4000-8000-000000000007|29.99|||changed mind|3
	EOF
	run rows order_views "order_number, created_at, confirmed_at, paid_at, shipped_at,
		cancelled_at, updated_at"
	assert_output - <<-'EOF'
		ORD-2026-000001|2026-01-15T09:00:00.000000Z|2026-01-15T09:00:04.000000Z|2026-01-15T09:05:00.000000Z|2026-01-15T14:00:00Z||2026-01-15T14:00:05.000000Z
		ORD-2026-000002|2026-01-15T10:30:00.000000Z|2026-01-15T10:30:02.000000Z|||2026-01-15T16:00:00.000000Z|2026-01-15T16:00:00.000000Z
		ORD-2026-000003|2026-01-16T09:00:00.000000Z|2026-01-16T09:20:00.000000Z|2026-01-16T09:10:00.000000Z|||2026-01-16T09:20:00.000000Z
		ORD-2026-000004|2026-01-16T11:00:00.000000Z|2026-01-16T11:05:00.000000Z||||2026-01-16T11:05:00.000000Z
		ORD-2026-000005|2026-01-16T15:00:00.000000Z|||||2026-01-16T15:00:00.000000Z
		ORD-2026-000006|2026-01-16T23:59:59.999999Z|||||2026-01-16T23:59:59.999999Z
		ORD-2026-000007|2026-01-17T10:00:00.000000Z||2026-01-17T10:10:00.000000Z||2026-01-17T12:00:00.000000Z|2026-01-17T12:00:02.000000Z
	EOF
	# items and address are the event's JSON, money as written
	run sqlite3 "$CQRS_VIEWS" "SELECT items, shipping_address FROM order_views
		WHERE order_id = '$O1'"
	assert_output '[{"product_id":"11111111-1111-4111-8111-111111111111","sku":"SKU-1","quantity":2,"unit_price":29.99},{"product_id":"22222222-2222-4222-8222-222222222222","sku":"SKU-2","quantity":1,"unit_price":10.00}]|{"name":"Alice","street":"1 Main St","city":"New York","postal_code":"10001","country":"US"}'
}

@test "customer_order_summary: orders and exact spending per customer and currency" {
	load_history
	cqrs-project
	run rows customer_order_summary '*' '1, 2'
	assert_output - <<-'EOF'
		cust-1|EUR|1|0|25.50|2550|2026-01-16T09:00:00.000000Z|2026-01-16T09:00:00.000000Z
		cust-1|USD|2|0|104.98|10498|2026-01-15T09:00:00.000000Z|2026-01-16T23:59:59.999999Z
		cust-2|USD|2|2|0.00|0|2026-01-15T10:30:00.000000Z|2026-01-17T10:00:00.000000Z
		cust-3|JPY|1|0|3000|3000|2026-01-16T11:00:00.000000Z|2026-01-16T11:00:00.000000Z
		cust-3|USD|1|0|10.01|1001|2026-01-16T15:00:00.000000Z|2026-01-16T15:00:00.000000Z
	EOF
}

@test "inventory_views: on hand, reserved, available, shipped and received per product" {
	load_history
	cqrs-project
	run rows inventory_views '*'
	assert_output - <<-'EOF'
		11111111-1111-4111-8111-111111111111|SKU-1|Widget|8|2|6|2|10|2026-01-17T12:00:01.000000Z
		22222222-2222-4222-8222-222222222222|SKU-2|Gadget|9|1|8|1|10|2026-01-16T15:00:01.000000Z
		33333333-3333-4333-8333-333333333333|SKU-3|Gizmo|4|3|1|0|4|2026-01-17T00:00:01.000000Z
	EOF
	# what is still held, per order: shipped and released ones are gone
	run rows inventory_reservations '*' '1, 2'
	assert_output - <<-'EOF'
		00000003-0000-4000-8000-000000000003|11111111-1111-4111-8111-111111111111|1
		00000004-0000-4000-8000-000000000004|33333333-3333-4333-8333-333333333333|2
		00000005-0000-4000-8000-000000000005|22222222-2222-4222-8222-222222222222|1
		00000006-0000-4000-8000-000000000006|11111111-1111-4111-8111-111111111111|1
		00000006-0000-4000-8000-000000000006|33333333-3333-4333-8333-333333333333|1
	EOF
}

@test "sales analytics: per day and currency, orders, revenue, average order value" {
	load_history
	cqrs-project
	# 2026-01-16 USD: (10.01 + 35.00) / 2 = 22.505, rounded half away from zero
	run rows sales_daily '*' '1, 2'
	assert_output - <<-'EOF'
		2026-01-15|USD|1|69.98|6998|69.98|1
		2026-01-16|EUR|1|25.50|2550|25.50|0
		2026-01-16|JPY|1|3000|3000|3000|0
		2026-01-16|USD|2|45.01|4501|22.51|0
		2026-01-17|USD|0|0.00|0||1
	EOF
}

@test "sales analytics: products sold per day and currency, cancellations taken back" {
	load_history
	cqrs-project
	run rows sales_products "day, currency, sku, quantity, revenue, revenue_minor" '1, 2, 3'
	assert_output - <<-'EOF'
		2026-01-15|USD|SKU-1|2|59.98|5998
		2026-01-15|USD|SKU-2|1|10.00|1000
		2026-01-16|EUR|SKU-1|1|25.50|2550
		2026-01-16|JPY|SKU-3|2|3000|3000
		2026-01-16|USD|SKU-1|1|29.99|2999
		2026-01-16|USD|SKU-2|1|10.01|1001
		2026-01-16|USD|SKU-3|1|5.01|501
	EOF
}

@test "each projection's checkpoint is the last sequence, with its hash and time" {
	load_history
	cqrs-project
	last_hash=$(cqrs-read -r -n 1 | jq -r .hash)
	run rows cqrs_checkpoints 'projection, sequence, event_hash, event_timestamp'
	assert_output - <<-EOF
		customer_order_summary|37|$last_hash|2026-01-17T12:00:02.000000Z
		inventory_views|37|$last_hash|2026-01-17T12:00:02.000000Z
		order_views|37|$last_hash|2026-01-17T12:00:02.000000Z
		sales_analytics|37|$last_hash|2026-01-17T12:00:02.000000Z
	EOF
}

@test "the views file is its own: mode 0600, its application_id, not the store's" {
	load_history
	cqrs-project
	run stat -c %a "$CQRS_VIEWS"
	assert_output 600
	run sqlite3 "$CQRS_VIEWS" 'PRAGMA application_id; PRAGMA user_version; PRAGMA journal_mode'
	assert_output - <<-'EOF'
		1129402966
		2
		wal
	EOF
	run --separate-stderr cqrs-project --views "$CQRS_STORE"
	assert_failure 65
	assert_equal "$stderr" "cqrs-project: $CQRS_STORE: is an event store, not a views file (--views and --store name different files)"
	echo 'not a database, just text' >other.db
	run --separate-stderr cqrs-project --views other.db
	assert_not_signalled
	assert_failure 65
}

@test "no store: exit 66 and no views file" {
	run --separate-stderr cqrs-project
	assert_failure 66
	if on_sqlite; then
		assert_equal "$stderr" "cqrs-project: $CQRS_STORE: no such store"
	else
		# the server's name for it, without a password
		assert_regex "$stderr" "^cqrs-project: postgresql:.* \(schema t$BATS_TEST_NUMBER\): no store in schema t$BATS_TEST_NUMBER \(or it needs an upgrade\)$"
	fi
}

# --- cron, stdin, follow ---------------------------------------------------------

@test "a second run applies nothing and changes nothing" {
	load_history
	cqrs-project
	before=$(snapshot "$CQRS_VIEWS")
	run --separate-stderr cqrs-project -v
	assert_success
	assert_equal "$stderr" 'cqrs-project: applied 0 events; views at sequence 37'
	assert_equal "$(snapshot "$CQRS_VIEWS")" "$before"
}

@test "incremental runs from cron give the same views as one run" {
	split -l 4 "$HISTORY" part.
	for f in part.*; do
		cqrs-append -q "$f"
		cqrs-project -b 3
	done
	cqrs-project --views once.db
	assert_equal "$(snapshot "$CQRS_VIEWS")" "$(snapshot once.db)"
	run rows cqrs_checkpoints 'DISTINCT sequence'
	assert_output 37
}

@test "--stdin: cqrs-read | cqrs-project - gives the same views as reading the store" {
	load_history
	cqrs-read | cqrs-project -
	cqrs-read | cqrs-project --stdin --views store-read.db
	cqrs-project --views direct.db
	assert_equal "$(snapshot "$CQRS_VIEWS")" "$(snapshot direct.db)"
	assert_equal "$(snapshot store-read.db)" "$(snapshot direct.db)"
}

@test "--stdin: cqrs-append | cqrs-project applies what was just appended" {
	head -n 20 "$HISTORY" | cqrs-append | cqrs-project --stdin
	run rows cqrs_checkpoints 'DISTINCT sequence'
	assert_output 20
	tail -n +21 "$HISTORY" | cqrs-append | cqrs-project --stdin
	cqrs-project --views direct.db
	assert_equal "$(snapshot "$CQRS_VIEWS")" "$(snapshot direct.db)"
}

@test "--stdin: events at or below the checkpoint are skipped, each applied once" {
	load_history
	cqrs-read --to 30 | cqrs-project -
	cqrs-read | cqrs-project -
	cqrs-read --from 10 | cqrs-project -
	cqrs-project --views direct.db
	assert_equal "$(snapshot "$CQRS_VIEWS")" "$(snapshot direct.db)"
}

@test "--stdin: a gap in the input is read from the store, never skipped" {
	load_history
	cqrs-read --to 5 | cqrs-project -
	# sequences 6 to 29 are not in the input
	run --separate-stderr bash -c 'cqrs-read --from 30 | cqrs-project -v -'
	assert_success
	assert_equal "$stderr" 'cqrs-project: applied 32 events; views at sequence 37'
	cqrs-project --views direct.db
	assert_equal "$(snapshot "$CQRS_VIEWS")" "$(snapshot direct.db)"
}

@test "--stdin: a gap that the store cannot fill is an error, nothing applied" {
	load_history
	cqrs-read >all.ndjson
	sed -n '3,$p' all.ndjson >later.ndjson
	run --separate-stderr cqrs-project --store missing.db later.ndjson
	assert_failure 66
	assert_equal "$stderr" "cqrs-project: later.ndjson:1: events 1 to 2 are missing from the input and cannot be read from the store: missing.db: no such store"
	run rows cqrs_checkpoints 'DISTINCT sequence'
	assert_output 0
}

@test "--stdin: events of another store are refused (the hash chain differs)" {
	load_history
	cqrs-project
	CQRS_STORE=other.db cqrs-append -q "$HISTORY"
	event 7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f | CQRS_STORE=other.db cqrs-append -q
	run --separate-stderr bash -c 'CQRS_STORE=other.db cqrs-read --from 38 | cqrs-project -'
	assert_failure 65
	assert_equal "$stderr" "cqrs-project: stdin:1: event 38 does not follow event 37 that projection 'order_views' applied last (the hash chain differs): were these views built from another store?  Rebuild them with cqrs-project --rebuild"
}

@test "--stdin: an event without a sequence is refused with its line" {
	event 7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f >raw.ndjson
	run --separate-stderr cqrs-project raw.ndjson
	assert_failure 65
	assert_equal "$stderr" "cqrs-project: raw.ndjson:1: event has no 'sequence': cqrs-project applies stored events (the output of cqrs-read or cqrs-append)"
}

# --- user projections and bad projection files ----------------------------------

@test "a user projection from YAML: every event once, next to the shipped ones" {
	load_history
	user_projection mine.yaml
	run --separate-stderr cqrs-project -P mine.yaml
	assert_success
	run rows event_counts '*'
	assert_output - <<-'EOF'
		InventoryReleased|2
		InventoryReserved|9
		OrderCancelled|2
		OrderConfirmed|4
		OrderCreated|7
		OrderShipped|1
		PaymentAuthorized|1
		PaymentProcessed|3
		PaymentRefunded|1
		ProductRegistered|3
		StockReplenished|4
	EOF
	run rows applied 'count(*), min(sequence), max(sequence)'
	assert_output '37|1|37'
	run rows cqrs_checkpoints 'projection, sequence'
	assert_output - <<-'EOF'
		customer_order_summary|37
		event_counts|37
		inventory_views|37
		order_views|37
		sales_analytics|37
	EOF
}

@test "a projection added later catches up alone, from the first event" {
	load_history
	cqrs-project
	user_projection mine.yaml
	run --separate-stderr cqrs-project -v -P mine.yaml
	assert_success
	assert_equal "$stderr" 'cqrs-project: applied 37 events; views at sequence 37'
	run rows applied 'count(*)'
	assert_output 37
}

@test "--no-default-projections: only the user's projections" {
	load_history
	user_projection mine.yaml
	cqrs-project --no-default-projections -P mine.yaml
	run rows cqrs_checkpoints 'projection, sequence'
	assert_output 'event_counts|37'
	run sqlite3 "$CQRS_VIEWS" "SELECT count(*) FROM sqlite_schema WHERE name = 'order_views'"
	assert_output 0
}

@test "--check lists the projections, their tables and events" {
	user_projection mine.yaml
	run --separate-stderr cqrs-project --check --no-default-projections -P mine.yaml
	assert_success
	assert_output --regexp '^\{"projection":"event_counts","file":"mine.yaml","line":3,"tables":\["event_counts","applied"\],"events":\["\*"\],"definition":"[0-9a-f]{64}"\}$'
	run --separate-stderr cqrs-project --check
	assert_success
	assert_equal "$(jq -r .projection <<<"$output" | tr '\n' ' ')" 'order_views customer_order_summary inventory_views sales_analytics '
}

# Writes projection file bad.yaml from stdin and checks the exact message.
bad_yaml() {
	cat >bad.yaml
	run --separate-stderr cqrs-project --check --no-default-projections -P bad.yaml
	assert_not_signalled
	assert_failure "${2:-78}"
	assert_output ''
	assert_equal "$stderr" "cqrs-project: $1"
}

@test "bad YAML: a syntax error names file, line and problem" {
	bad_yaml "bad.yaml:3:14: found character that cannot start any token (while scanning for the next token on line 3)" <<-'EOF'
		projections:
		  - name: x
		    tables: [`CREATE TABLE x (a)`]
	EOF
	bad_yaml "bad.yaml:3:4: did not find expected '-' indicator (while parsing a block collection on line 2)" <<-'EOF'
		projections:
		  - name: x
		   tables: []
	EOF
	bad_yaml "bad.yaml:4:1: found unexpected end of stream (while scanning a quoted scalar on line 3)" <<-'EOF'
		projections:
		  - name: x
		    tables: ["CREATE TABLE x (a)]
	EOF
}

@test "bad YAML: unknown keys, missing fields, wrong kinds" {
	bad_yaml "bad.yaml:3:5: unknown key 'tabels' in a projection (expected name, description, tables, on)" <<-'EOF'
		projections:
		  - name: x
		    tabels: []
	EOF
	bad_yaml "bad.yaml:1:1: unknown key 'projection' (expected 'projections')" <<-'EOF'
		projection: []
	EOF
	bad_yaml "bad.yaml:2:5: projection without a 'name'" <<-'EOF'
		projections:
		  - tables: [CREATE TABLE x (a)]
		    on: {OrderCreated: INSERT INTO x VALUES (1)}
	EOF
	bad_yaml "bad.yaml:2:5: projection 'x' has no 'on' (what to do for each event type)" <<-'EOF'
		projections:
		  - name: x
		    tables: [CREATE TABLE x (a)]
	EOF
	bad_yaml "bad.yaml:2:5: projection 'x' has no 'tables' (the CREATE statements of its read model)" <<-'EOF'
		projections:
		  - name: x
		    on: {OrderCreated: INSERT INTO x VALUES (1)}
	EOF
	bad_yaml "bad.yaml:4:9: 'on' must be a mapping, not a list" <<-'EOF'
		projections:
		  - name: x
		    tables: [CREATE TABLE x (a)]
		    on: [INSERT INTO x VALUES (1)]
	EOF
	bad_yaml "bad.yaml:4:5: duplicate key 'name' (first on line 2)" <<-'EOF'
		projections:
		  - name: x
		    tables: [CREATE TABLE x (a)]
		    name: y
	EOF
	bad_yaml "bad.yaml:1:1: empty file: expected 'projections:'" </dev/null
	bad_yaml "bad.yaml:2:11: not a projection name: 'order-views' (a letter or '_', then letters, digits or '_', at most 64, not starting cqrs_ or sqlite_)" <<-'EOF'
		projections:
		  - name: order-views
	EOF
	bad_yaml "bad.yaml:5:7: not an event type: 'Order Created' (or '*' for every event)" <<-'EOF'
		projections:
		  - name: x
		    tables: [CREATE TABLE x (a)]
		    on:
		      Order Created: INSERT INTO x VALUES (1)
	EOF
}

@test "bad YAML: bad SQL and bad parameters name the statement's line" {
	bad_yaml "bad.yaml:8:34: projection 'x', on OrderCreated: unknown parameter ':data_total' (known: :sequence, :event_id, :aggregate_id, :aggregate_type, :aggregate_version, :event_type, :event_version, :timestamp, :data, :data.FIELD, :metadata, :metadata.FIELD)" <<-'EOF'
		projections:
		  - name: x
		    tables: ["CREATE TABLE x (a, b)"]
		    on:
		      OrderCreated:
		        - |
		          INSERT INTO x
		          VALUES (:aggregate_id, :data_total)
	EOF
	bad_yaml "bad.yaml:7:11: projection 'x', on OrderCreated: table x has no column named c" <<-'EOF'
		projections:
		  - name: x
		    tables:
		      - CREATE TABLE x (a, b)
		    on:
		      OrderCreated:
		        - INSERT INTO x (a, c) VALUES (:aggregate_id, :data.total)
	EOF
	bad_yaml "bad.yaml:3:14: projection 'x', tables: near \"TABEL\": syntax error" <<-'EOF'
		projections:
		  - name: x
		    tables: ["CREATE TABEL x (a, b)"]
		    on: {OrderCreated: "INSERT INTO x VALUES (1, 2)"}
	EOF
	bad_yaml "bad.yaml:5:43: projection 'x', on OrderCreated: use named parameters such as :data.customer_id, not '?'" <<-'EOF'
		projections:
		  - name: x
		    tables: [CREATE TABLE x (a)]
		    on:
		      OrderCreated: INSERT INTO x VALUES (?)
	EOF
	bad_yaml "bad.yaml:6:9: projection 'x', on OrderCreated: one SQL statement per list item (start another item with '- ')" <<-'EOF'
		projections:
		  - name: x
		    tables: [CREATE TABLE x (a)]
		    on:
		      OrderCreated: |
		        INSERT INTO x VALUES (1); DELETE FROM x
	EOF
}

@test "bad YAML: a projection writes only its own tables, never a transaction" {
	bad_yaml "bad.yaml:5:21: projection 'x', on OrderCreated: no such table: order_views" <<-'EOF'
		projections:
		  - name: x
		    tables: [CREATE TABLE x (a)]
		    on:
		      OrderCreated: DELETE FROM order_views
	EOF
	# with the shipped projections loaded, that table exists: not its own
	run --separate-stderr cqrs-project --check -P bad.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: bad.yaml:5:21: projection 'x', on OrderCreated: writes table 'order_views', which projection 'order_views' owns (a projection writes only the tables it creates)"
	bad_yaml "bad.yaml:5:21: projection 'x', on OrderCreated: transactions belong to cqrs-project, which commits each batch with its checkpoint" <<-'EOF'
		projections:
		  - name: x
		    tables: [CREATE TABLE x (a)]
		    on:
		      OrderCreated: COMMIT
	EOF
	bad_yaml "bad.yaml:5:21: projection 'x', on OrderCreated: table 'cqrs_checkpoints' belongs to cqrs-project" <<-'EOF'
		projections:
		  - name: x
		    tables: [CREATE TABLE x (a)]
		    on:
		      OrderCreated: UPDATE cqrs_checkpoints SET sequence = 0
	EOF
	bad_yaml "bad.yaml:5:21: projection 'x', on OrderCreated: CREATE belongs in 'tables', not in 'on'" <<-'EOF'
		projections:
		  - name: x
		    tables: [CREATE TABLE x (a)]
		    on:
		      OrderCreated: CREATE TABLE y (a)
	EOF
}

@test "bad YAML: two projections of one name, a missing file" {
	user_projection mine.yaml
	cp mine.yaml again.yaml
	run --separate-stderr cqrs-project --check -P mine.yaml -P again.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: again.yaml:3:11: projection 'event_counts' is already defined at mine.yaml:3"
	run --separate-stderr cqrs-project --check -P nowhere.yaml
	assert_failure 66
	assert_equal "$stderr" "cqrs-project: nowhere.yaml: cannot read projection file: No such file or directory"
}

@test "an event that a projection cannot apply is parked; the run applies the rest and exits 5" {
	load_history
	cat >strict.yaml <<-'EOF'
		projections:
		  - name: strict
		    tables:
		      - CREATE TABLE strict (id TEXT PRIMARY KEY, total INTEGER NOT NULL)
		    on:
		      OrderCreated: INSERT INTO strict VALUES (:aggregate_id, minor_units(:data.total, 'KWD') / 0 + minor_units('1.2345', 'KWD'))
	EOF
	run --separate-stderr cqrs-project --no-default-projections -P strict.yaml
	assert_failure 5
	assert_equal "$stderr" "cqrs-project: 7 events parked (strict 7 from event 7): cqrs-project --parked lists them"
	run rows cqrs_checkpoints 'projection, sequence'
	assert_output 'strict|37'
	run --separate-stderr cqrs-project --parked
	assert_equal "$(jq -r .error <<<"${lines[0]}")" "strict.yaml:6: projection 'strict', on OrderCreated: amount 1.2345 has more decimals than KWD allows (3)"
	assert_equal "$(rows strict count\(*\))" 0
}

@test "a changed projection is built again from the first event by the next run" {
	load_history
	user_projection mine.yaml
	cqrs-project -P mine.yaml
	sed -i 's/n + 1/n + 2/' mine.yaml
	run --separate-stderr cqrs-project -P mine.yaml
	assert_success
	assert_equal "$stderr" ""
	# two releases: 1, then + 2
	run rows event_counts 'n' 'event_type'
	assert_line --index 0 3
}

# --- usage ---------------------------------------------------------------------

@test "usage errors exit 64" {
	run --separate-stderr cqrs-project --rebuild --diff
	assert_failure 64
	[[ $stderr == "cqrs-project: --diff goes alone: one mode per run"* ]]
	run --separate-stderr cqrs-project --as-of 2026-01-16T00:00:00Z
	assert_failure 64
	assert_equal "$stderr" 'cqrs-project: --as-of and --to go with --output'
	run --separate-stderr cqrs-project --batch 0
	assert_failure 64
	assert_equal "$stderr" "cqrs-project: --batch needs a positive count: '0'"
	run --separate-stderr cqrs-project --force
	assert_failure 64
	assert_equal "$stderr" 'cqrs-project: --force goes with --rebuild'
	run --separate-stderr cqrs-project --no-default-projections
	assert_failure 64
	run --separate-stderr cqrs-project --stdin file
	assert_failure 64
	assert_equal "$stderr" 'cqrs-project: --stdin and file operands go alone'
	run --separate-stderr cqrs-project -o out.db --as-of yesterday
	assert_failure 64
	assert_equal "$stderr" "cqrs-project: --as-of: not an RFC 3339 time: 'yesterday'"
}

# --- long histories: kill -9, two runs at once, follow, rebuild --------------------

# A generated order history of $1 orders on stdout: three products with
# plenty of stock; each order created, reserved, then confirmed, paid and
# shipped, or cancelled and released, over several days and currencies.
gen_history() {
	awk -v n="$1" 'BEGIN {
		p[0] = "11111111-1111-4111-8111-111111111111"; s[0] = "SKU-1"
		p[1] = "22222222-2222-4222-8222-222222222222"; s[1] = "SKU-2"
		p[2] = "33333333-3333-4333-8333-333333333333"; s[2] = "SKU-3"
		split("USD EUR JPY", cur, " ")
		for (k = 0; k < 3; k++) {
			printf "{\"aggregate_id\":\"%s\",\"aggregate_type\":\"Inventory\",\"event_type\":\"ProductRegistered\",\"data\":{\"sku\":\"%s\",\"name\":\"P%d\"}}\n", p[k], s[k], k
			printf "{\"aggregate_id\":\"%s\",\"aggregate_type\":\"Inventory\",\"event_type\":\"StockReplenished\",\"data\":{\"quantity\":1000000}}\n", p[k]
		}
		for (i = 1; i <= n; i++) {
			o = sprintf("%08x-0000-4000-8000-%012x", i, i)
			k = i % 3; c = cur[i % 3 + 1]; q = i % 4 + 1
			price = c == "JPY" ? sprintf("%d", 100 + i % 900) : sprintf("%d.%02d", 1 + i % 90, i % 100)
			total = c == "JPY" ? price * q : sprintf("%.2f", (price * 100 * q + 0.5) / 100)
			day = sprintf("2026-02-%02dT%02d:%02d:00Z", 1 + i % 28, i % 24, i % 60)
			printf "{\"aggregate_id\":\"%s\",\"aggregate_type\":\"Order\",\"event_type\":\"OrderCreated\",\"data\":{\"order_number\":\"ORD-%06d\",\"customer_id\":\"cust-%d\",\"items\":[{\"product_id\":\"%s\",\"sku\":\"%s\",\"quantity\":%d,\"unit_price\":%s}],\"currency\":\"%s\",\"total\":%s,\"shipping_address\":{\"country\":\"US\"}},\"timestamp\":\"%s\"}\n", o, i, i % 50, p[k], s[k], q, price, c, total, day
			printf "{\"aggregate_id\":\"%s\",\"aggregate_type\":\"Inventory\",\"event_type\":\"InventoryReserved\",\"data\":{\"order_id\":\"%s\",\"quantity\":%d}}\n", p[k], o, q
			if (i % 5 == 0) {
				printf "{\"aggregate_id\":\"%s\",\"aggregate_type\":\"Order\",\"event_type\":\"OrderCancelled\",\"data\":{\"reason\":\"r\"}}\n", o
				printf "{\"aggregate_id\":\"%s\",\"aggregate_type\":\"Inventory\",\"event_type\":\"InventoryReleased\",\"data\":{\"order_id\":\"%s\",\"quantity\":%d}}\n", p[k], o, q
			} else {
				printf "{\"aggregate_id\":\"%s\",\"aggregate_type\":\"Order\",\"event_type\":\"OrderConfirmed\",\"data\":{}}\n", o
				printf "{\"aggregate_id\":\"%s\",\"aggregate_type\":\"Order\",\"event_type\":\"PaymentProcessed\",\"data\":{\"payment_id\":\"%s\",\"amount\":%s,\"currency\":\"%s\"}}\n", o, o, total, c
				printf "{\"aggregate_id\":\"%s\",\"aggregate_type\":\"Order\",\"event_type\":\"OrderShipped\",\"data\":{\"tracking_number\":\"T%d\",\"carrier\":\"UPS\"}}\n", o, i
			}
		}
	}'
}

# A projection that takes its time over every event (a recursive count),
# so that a run lasts long enough to be interrupted; it records each
# sequence once, so applying one twice fails on the primary key.
slow_projection() {
	cat >"$1" <<-EOF
		projections:
		  - name: slow
		    tables:
		      - CREATE TABLE slow (sequence INTEGER PRIMARY KEY, work INTEGER NOT NULL)
		    on:
		      "*":
		        - |
		          INSERT INTO slow
		          WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${2:-3000})
		          SELECT :sequence, count(*) FROM c
	EOF
}

# Waits (bounded) until another process holds the views lock; looks in
# /proc/locks rather than trying the lock, which would race with the run.
wait_locked() {
	local i ino
	for ((i = 0; i < 400 * GUARD_SCALE; i++)); do
		if [ -e "$CQRS_VIEWS.lock" ]; then
			ino=$(stat -c %i "$CQRS_VIEWS.lock")
			grep -qE "FLOCK +ADVISORY +WRITE +[0-9]+ +[0-9a-f]+:[0-9a-f]+:$ino " /proc/locks &&
				return 0
		fi
		sleep 0.025
	done
	fail "nobody took the lock on $CQRS_VIEWS in 10 s"
}

# The lowest checkpoint in the views, 0 when there are none yet.
checkpoint() {
	sqlite3 "$CQRS_VIEWS" 'SELECT coalesce(min(sequence), 0) FROM cqrs_checkpoints' 2>/dev/null || echo 0
}

@test "kill -9 at random moments of a long run: the result equals a clean rebuild" {
	gen_history 1500 | cqrs-append -q -b 10000 --no-sync
	total=$(stored_count)
	slow_projection slow.yaml 2000
	partial=0
	for ((i = 0; i < 60; i++)); do
		prev=$(checkpoint)
		cqrs-project -P slow.yaml -b 7 &
		pid=$!
		# wait (bounded) until this run has committed something, so that a
		# slow machine still kills runs in the middle, then at a random moment
		for ((j = 0; j < 400 * GUARD_SCALE; j++)); do
			[ "$(checkpoint)" -gt "$prev" ] && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.025
		done
		sleep "0.0$((RANDOM % 10))"
		kill -9 "$pid" 2>/dev/null || true
		wait "$pid" || true
		c=$(checkpoint)
		[ "$c" -gt 0 ] && [ "$c" -lt "$total" ] && partial=$((partial + 1))
		[ "$c" -eq "$total" ] && break
	done
	# the kills landed in the middle of runs, several times
	[ "$partial" -ge 3 ] || fail "only $partial kills interrupted a run"
	run --separate-stderr cqrs-project -P slow.yaml
	assert_success
	run rows slow 'count(*), min(sequence), max(sequence)'
	assert_output "$total|1|$total"
	cqrs-project -P slow.yaml --views clean.db
	assert_equal "$(snapshot "$CQRS_VIEWS")" "$(snapshot clean.db)"
}

@test "a second run while one is at work exits 75; with --wait it waits its turn" {
	gen_history 300 | cqrs-append -q --no-sync
	slow_projection slow.yaml
	cqrs-project -P slow.yaml -b 10 &
	first=$!
	wait_locked
	run --separate-stderr cqrs-project -P slow.yaml
	assert_failure 75
	assert_equal "$stderr" '' # silent for cron
	run --separate-stderr cqrs-project -v -P slow.yaml
	assert_failure 75
	assert_equal "$stderr" "cqrs-project: another cqrs-project is running on $CQRS_VIEWS (--wait waits for it)"
	run --separate-stderr cqrs-project -P slow.yaml --wait -v
	assert_success
	assert_equal "$stderr" "cqrs-project: applied 0 events; views at sequence $(stored_count)"
	wait "$first"
	cqrs-project -P slow.yaml --views clean.db
	assert_equal "$(snapshot "$CQRS_VIEWS")" "$(snapshot clean.db)"
}

@test "overlapping runs while events are appended never corrupt the views" {
	gen_history 600 >all.ndjson
	split -l 200 all.ndjson part.
	pids=()
	for f in part.*; do
		cqrs-append -q --no-sync "$f"
		cqrs-project --wait -b 50 &
		pids+=($!)
		cqrs-project -b 50 &
		pids+=($!)
	done
	for p in "${pids[@]}"; do
		wait "$p" || [ $? -eq 75 ] || fail "a run failed"
	done
	cqrs-project
	cqrs-project --views clean.db
	assert_equal "$(snapshot "$CQRS_VIEWS")" "$(snapshot clean.db)"
}

@test "a run killed with -9 leaves no lock behind" {
	gen_history 300 | cqrs-append -q --no-sync
	slow_projection slow.yaml
	cqrs-project -P slow.yaml -b 10 &
	pid=$!
	wait_locked
	kill -9 "$pid"
	wait "$pid" || true
	run --separate-stderr cqrs-project -P slow.yaml
	assert_success
}

@test "--follow applies new events as they come, yields the lock between rounds, ends on SIGTERM" {
	head -n 10 "$HISTORY" | cqrs-append -q
	cqrs-project --follow &
	follower=$!
	for ((i = 0; i < 400 * GUARD_SCALE; i++)); do
		[ "$(checkpoint)" -eq 10 ] && break
		sleep 0.025
	done
	assert_equal "$(checkpoint)" 10
	tail -n +11 "$HISTORY" | cqrs-append -q
	for ((i = 0; i < 400 * GUARD_SCALE; i++)); do
		[ "$(checkpoint)" -eq 37 ] && break
		sleep 0.025
	done
	assert_equal "$(checkpoint)" 37
	# idle, it does not hold the lock: a cron run gets its turn
	run --separate-stderr cqrs-project --wait -v
	assert_success
	assert_equal "$stderr" 'cqrs-project: applied 0 events; views at sequence 37'
	kill -TERM "$follower"
	wait "$follower"
	cqrs-project --views clean.db
	assert_equal "$(snapshot "$CQRS_VIEWS")" "$(snapshot clean.db)"
}

@test "--rebuild gives the same views as the runs that built them, progress only on a terminal" {
	split -l 9 "$HISTORY" part.
	for f in part.*; do
		cqrs-append -q "$f"
		cqrs-project
	done
	before=$(snapshot "$CQRS_VIEWS")
	run --separate-stderr cqrs-project --rebuild
	assert_success
	assert_output ''
	assert_equal "$stderr" ''
	assert_equal "$(snapshot "$CQRS_VIEWS")" "$before"
	run ls
	refute_output --partial rebuild-
}

@test "--rebuild replaces damaged views and keeps the file a reader has open" {
	load_history
	cqrs-project
	sqlite3 "$CQRS_VIEWS" "DELETE FROM order_views; UPDATE sales_daily SET orders = 99"
	# a reader in the middle of a read transaction keeps its snapshot
	mkfifo cmds
	sqlite3 "$CQRS_VIEWS" <cmds >reader.out &
	reader=$!
	exec {out}>cmds
	printf '%s\n' 'BEGIN;' 'SELECT count(*) FROM order_views;' '.system touch started' >&"$out"
	for ((i = 0; i < 400 * GUARD_SCALE; i++)); do
		[ -e started ] && break
		sleep 0.025
	done
	[ -e started ] || fail "the reader did not start"
	ino=$(stat -c %i "$CQRS_VIEWS")
	cqrs-project --rebuild
	printf '%s\n' 'SELECT count(*) FROM order_views;' 'COMMIT;' \
		'SELECT count(*) FROM order_views;' >&"$out"
	exec {out}>&-
	wait "$reader"
	run cat reader.out
	assert_output - <<-'EOF'
		0
		0
		7
	EOF
	assert_equal "$(stat -c %i "$CQRS_VIEWS")" "$ino"
	cqrs-project --views clean.db
	assert_equal "$(snapshot "$CQRS_VIEWS")" "$(snapshot clean.db)"
}

@test "--rebuild killed with -9 leaves the views as they were; the next one cleans up" {
	gen_history 200 | cqrs-append -q --no-sync
	slow_projection slow.yaml
	cqrs-project -P slow.yaml
	before=$(snapshot "$CQRS_VIEWS")
	cqrs-project -P slow.yaml --rebuild &
	pid=$!
	for ((i = 0; i < 400 * GUARD_SCALE; i++)); do
		compgen -G "views.db.rebuild-$pid*" >/dev/null && break
		sleep 0.025
	done
	sleep 0.1
	kill -9 "$pid"
	wait "$pid" || true
	# (a parallel build has a file per task: views.db.rebuild-PID-N)
	compgen -G "views.db.rebuild-$pid*" >/dev/null ||
		fail "the rebuild ended before it was killed"
	assert_equal "$(snapshot "$CQRS_VIEWS")" "$before"
	run --separate-stderr cqrs-project -P slow.yaml --rebuild
	assert_success
	run compgen -G "views.db.rebuild-*"
	assert_failure
	assert_output ''
	assert_equal "$(snapshot "$CQRS_VIEWS")" "$before"
}

@test "--rebuild keeps a projection it does not load, --force drops it" {
	load_history
	user_projection mine.yaml
	cqrs-project -P mine.yaml
	run --separate-stderr cqrs-project --rebuild
	assert_success
	assert_equal "$stderr" ''
	run sqlite3 "$CQRS_VIEWS" "SELECT count(*) FROM sqlite_schema WHERE name = 'event_counts'"
	assert_output 1
	run --separate-stderr cqrs-project --rebuild --force
	assert_success
	assert_equal "$stderr" "cqrs-project: dropping projection 'event_counts' (from mine.yaml:3): it is not loaded"
	run sqlite3 "$CQRS_VIEWS" "SELECT count(*) FROM sqlite_schema WHERE name = 'event_counts'"
	assert_output 0
}

@test "--diff: 0 when the views are what the events make, 1 with the tables that differ" {
	load_history
	cqrs-project
	run --separate-stderr cqrs-project --diff
	assert_success
	assert_equal "$(jq -c '[.table, .same]' <<<"$output" | tr '\n' ' ')" '["order_views",true] ["customer_order_summary",true] ["customer_summary_orders",true] ["inventory_views",true] ["inventory_reservations",true] ["inventory_shipments",true] ["inventory_shipped_orders",true] ["sales_daily",true] ["sales_products",true] ["sales_orders",true] '
	sqlite3 "$CQRS_VIEWS" "UPDATE sales_daily SET orders = 5 WHERE day = '2026-01-15';
		DELETE FROM inventory_views WHERE sku = 'SKU-3';
		INSERT INTO order_views (order_id, order_number, customer_id, status, currency,
		  total, total_minor, item_count, items, created_at, updated_at, version)
		SELECT 'x', 'y', customer_id, status, currency, total, total_minor, item_count,
		  items, created_at, updated_at, version FROM order_views LIMIT 1"
	run --separate-stderr cqrs-project --diff
	assert_failure 1
	run jq -c 'select(.same | not)' <<<"$output"
	assert_output - <<-'EOF'
		{"projection":"order_views","table":"order_views","live_rows":8,"rebuilt_rows":7,"added":0,"removed":1,"changed":0,"same":false}
		{"projection":"inventory_views","table":"inventory_views","live_rows":2,"rebuilt_rows":3,"added":1,"removed":0,"changed":0,"same":false}
		{"projection":"sales_analytics","table":"sales_daily","live_rows":5,"rebuilt_rows":5,"added":0,"removed":0,"changed":1,"same":false}
	EOF
}

@test "--diff after a projection change compares with the same events, changes nothing" {
	load_history
	user_projection mine.yaml
	cqrs-project -P mine.yaml
	head -n 3 "$HISTORY" | sed 's/"ProductRegistered"/"ProductRenamed"/' | cqrs-append -q
	before=$(snapshot "$CQRS_VIEWS")
	sed -i 's/n + 1/n + 2/' mine.yaml
	run --separate-stderr cqrs-project --no-default-projections -P mine.yaml --diff
	assert_failure 1
	# the views stand at 37: the 3 events after it are not in the comparison
	assert_output '{"projection":"event_counts","table":"event_counts","live_rows":11,"rebuilt_rows":11,"added":0,"removed":0,"changed":8,"same":false}
{"projection":"event_counts","table":"applied","live_rows":37,"rebuilt_rows":37,"added":0,"removed":0,"changed":0,"same":true}'
	assert_equal "$(snapshot "$CQRS_VIEWS")" "$before"
}

@test "--output builds the views as of a time or a sequence into a new file" {
	load_history
	run --separate-stderr cqrs-project --output noon.db --as-of 2026-01-15T12:00:00Z
	assert_success
	VIEWS=noon.db run rows order_views 'order_number, status, total'
	assert_output - <<-'EOF'
		ORD-2026-000001|PAID|69.98
		ORD-2026-000002|CONFIRMED|30.00
	EOF
	VIEWS=noon.db run rows cqrs_checkpoints 'DISTINCT sequence'
	assert_output 15
	run --separate-stderr cqrs-project -o seq.db --to 7
	assert_success
	VIEWS=seq.db run rows order_views 'order_number, status'
	assert_output 'ORD-2026-000001|PENDING'
	run sqlite3 seq.db 'PRAGMA journal_mode'
	assert_output delete
	run --separate-stderr cqrs-project -o seq.db --to 9
	assert_failure 73
	assert_equal "$stderr" 'cqrs-project: seq.db: already exists (a history file is never overwritten)'
	[ ! -e "$CQRS_VIEWS" ]
}

@test "--lag: events and seconds behind the store, per projection" {
	head -n 20 "$HISTORY" | cqrs-append -q
	cqrs-project
	tail -n +21 "$HISTORY" | cqrs-append -q
	user_projection mine.yaml
	cqrs-project -P mine.yaml --no-default-projections --output /dev/null 2>/dev/null || true
	run --separate-stderr cqrs-project --lag
	assert_success
	# sequence 20 is 2026-01-16T09:00:00, the newest event 2026-01-17T12:00:02
	assert_output - <<-'EOF'
		{"projection":"customer_order_summary","checkpoint":20,"store_sequence":37,"events_behind":17,"seconds_behind":97202,"parked":0}
		{"projection":"inventory_views","checkpoint":20,"store_sequence":37,"events_behind":17,"seconds_behind":97202,"parked":0}
		{"projection":"order_views","checkpoint":20,"store_sequence":37,"events_behind":17,"seconds_behind":97202,"parked":0}
		{"projection":"sales_analytics","checkpoint":20,"store_sequence":37,"events_behind":17,"seconds_behind":97202,"parked":0}
	EOF
	cqrs-project
	run --separate-stderr cqrs-project --lag
	assert_output --partial '"events_behind":0,"seconds_behind":0,"parked":0}'
	run --separate-stderr cqrs-project --lag --views none.db
	assert_failure 66
	assert_equal "$stderr" 'cqrs-project: none.db: no such views file (cqrs-project builds it)'
}

@test "--lag: the seconds behind are those of the store's head as it was read, not of an event appended meanwhile" {
	head -n 20 "$HISTORY" | cqrs-append -q
	cqrs-project
	sed -n 21,36p "$HISTORY" | cqrs-append -q
	# --lag stops once it has read the store's head (event 36); an event
	# a month later is appended meanwhile
	mkfifo loaded go
	CQRS_TEST_PAUSE_AFTER_HEAD=$PWD cqrs-project --lag >lag.out 2>lag.err &
	local lag=$!
	read -r _ <loaded
	sed -n 37p "$HISTORY" | jq -c '.timestamp = "2026-02-17T12:00:02Z"' | cqrs-append -q
	echo >go
	wait "$lag" || fail "cqrs-project --lag failed: $(cat lag.err)"
	# 2026-01-16T09:00:00 (event 20) to 2026-01-17T12:00:01 (event 36)
	run jq -c '[.projection, .store_sequence, .events_behind, .seconds_behind]' lag.out
	assert_output - <<-'EOF'
		["customer_order_summary",36,16,97201]
		["inventory_views",36,16,97201]
		["order_views",36,16,97201]
		["sales_analytics",36,16,97201]
	EOF
}

@test "a build in one thread or several gives the same views, whatever a projection holds" {
	load_history
	cat >tricky.yaml <<-'EOF'
		projections:
		  - name: tricky
		    tables:
		      - CREATE TABLE kinds (kind TEXT PRIMARY KEY, label TEXT)
		      - INSERT INTO kinds VALUES ('Order', 'an order'), ('Inventory', 'stock')
		      - |
		        CREATE TABLE log (id INTEGER PRIMARY KEY AUTOINCREMENT, sequence INTEGER,
		          kind TEXT, doubled INTEGER GENERATED ALWAYS AS (sequence * 2) VIRTUAL)
		      - CREATE TABLE log_count (n INTEGER)
		      - INSERT INTO log_count VALUES (0)
		      - |
		        CREATE TRIGGER log_counted AFTER INSERT ON log
		        BEGIN UPDATE log_count SET n = n + 1; END
		      - CREATE INDEX log_kind ON log (kind)
		      - CREATE TABLE pairs (a TEXT, b INTEGER, PRIMARY KEY (a, b)) WITHOUT ROWID
		    on:
		      "*":
		        - INSERT INTO log (sequence, kind) VALUES (:sequence, :aggregate_type)
		        - INSERT OR IGNORE INTO pairs VALUES (:event_type, :aggregate_version)
	EOF
	CQRS_BUILD_THREADS=1 cqrs-project -P tricky.yaml -o one.db
	CQRS_BUILD_THREADS=3 cqrs-project -P tricky.yaml -o three.db
	cqrs-project -P tricky.yaml
	assert_equal "$(snapshot one.db)" "$(snapshot "$CQRS_VIEWS")"
	assert_equal "$(snapshot three.db)" "$(snapshot "$CQRS_VIEWS")"
	# five projections in two groups, and in five (at most one a thread)
	for t in 2 8; do
		CQRS_BUILD_THREADS=$t cqrs-project -P tricky.yaml -o "t$t.db"
		assert_equal "$(snapshot "t$t.db")" "$(snapshot "$CQRS_VIEWS")"
		CQRS_BUILD_THREADS=$t cqrs-project -P tricky.yaml --rebuild
		assert_equal "$(snapshot "$CQRS_VIEWS")" "$(snapshot one.db)"
	done
	# the seeds once, the trigger once per row, the counter of the rowids kept
	run sqlite3 three.db "SELECT count(*) FROM kinds; SELECT n FROM log_count;
		SELECT seq FROM sqlite_sequence WHERE name = 'log';
		SELECT count(*) FROM sqlite_schema WHERE name IN ('log_kind', 'log_counted')"
	assert_output $'2\n37\n37\n2'
	run ls
	refute_output --partial tmp-
}

# A build in several threads reads, checks and upcasts the events once, in
# one thread, for all its groups (rebuild.c): wherever it stops, it stops
# as a build in one thread does.
@test "a build in several threads stops as one in one thread does: an event half applied, an event changed, one no upcaster reads" {
	load_history
	# half applied: the second statement fails for one event of the
	# group, which is parked; the group applies its events again one by
	# one, from the store, its hashes checked by itself
	half=$(store_query "SELECT min(sequence) FROM events WHERE event_type = 'OrderConfirmed'")
	cat >halfway.yaml <<-EOF
		projections:
		  - name: halfway
		    tables:
		      - CREATE TABLE seen (sequence INTEGER PRIMARY KEY)
		      - CREATE TABLE strict (sequence INTEGER CHECK (sequence <> $half))
		    on:
		      OrderConfirmed:
		        - INSERT INTO seen VALUES (:sequence)
		        - INSERT INTO strict VALUES (:sequence)
	EOF
	# the same views, and the same event parked (at another time)
	views() {
		snapshot "$1" | grep -v '^INSERT INTO parked_events'
		sqlite3 "$1" 'SELECT projection, sequence, aggregate_id, event_type, error FROM parked_events'
	}
	run cqrs-project -P halfway.yaml
	assert_failure 5 # events parked
	for t in 1 2 3; do
		CQRS_BUILD_THREADS=$t run cqrs-project -P halfway.yaml -o "half$t.db"
		assert_failure 5
		assert_equal "$(views "half$t.db")" "$(views "$CQRS_VIEWS")"
		CQRS_BUILD_THREADS=$t run cqrs-project -P halfway.yaml --rebuild
		assert_failure 5
		assert_equal "$(views "$CQRS_VIEWS")" "$(views half1.db)"
	done
	run sqlite3 half2.db "SELECT projection, sequence FROM parked_events"
	assert_output "halfway|$half"
	# nothing of the parked event is left: neither of its statements
	others=$(store_query "SELECT sequence FROM events WHERE event_type = 'OrderConfirmed'
		AND sequence <> $half ORDER BY sequence" | paste -sd,)
	run sqlite3 half2.db "SELECT count(*) FROM seen WHERE sequence = $half;
		SELECT group_concat(sequence) FROM seen; SELECT group_concat(sequence) FROM strict"
	assert_output "0"$'\n'"$others"$'\n'"$others"
	# an event changed in the middle of the store: each build stops there
	# (the shipped projections: none of their groups reads the store
	# itself)
	export CQRS_VIEWS=$PWD/shipped.db
	cqrs-project
	before=$(snapshot "$CQRS_VIEWS")
	seq=$(store_query "SELECT max(sequence) FROM events WHERE event_type = 'OrderCreated'")
	meta=$(store_query "SELECT metadata FROM events WHERE sequence = $seq")
	store_edit "UPDATE events SET metadata = '{\"user_id\":\"mallory\"}' WHERE sequence = $seq"
	for t in 1 2 3; do
		CQRS_BUILD_THREADS=$t run --separate-stderr cqrs-project --rebuild
		assert_failure 65
		assert_equal "$stderr" "cqrs-project: event $seq (OrderCreated): its bytes do not match its hash: it was changed after it was appended (cqrs-read --verify checks the store); nothing of this batch was applied"
		assert_equal "$(snapshot "$CQRS_VIEWS")" "$before"
	done
	# an event the upcasters of this run cannot read
	store_edit "UPDATE events SET metadata = '${meta//\'/\'\'}' WHERE sequence = $seq"
	printf '{"aggregate_id":"7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f","aggregate_type":"Thing","event_type":"Late","data":{}}\n' |
		cqrs-append -q
	printf 'upcasters:\n  - event_type: Late\n    from: 2\n    steps:\n      - add: {field: x, value: 1}\n' >late.yaml
	late=$(store_query 'SELECT max(sequence) FROM events')
	for t in 1 2 3; do
		CQRS_BUILD_THREADS=$t run --separate-stderr cqrs-project --upcasters late.yaml --rebuild
		assert_failure 78
		assert_equal "$stderr" "cqrs-project: event $late (Late, event_version 1): no upcaster reads event_version 1 (the oldest reads 2)"
		assert_equal "$(snapshot "$CQRS_VIEWS")" "$before"
	done
	run ls
	refute_output --partial rebuild-
}

@test "--diff of views whose projections applied nothing yet: empty, in one thread or several" {
	cqrs-append -q /dev/null
	cqrs-project
	load_history
	for t in 1 2; do
		# each projection stops at its checkpoint (0): the groups apply
		# nothing, and the events are not checked from the wrong place
		CQRS_BUILD_THREADS=$t run --separate-stderr cqrs-project --diff
		assert_success
		assert_equal "$stderr" ''
		run jq -s -c 'map(.same) | unique' <<<"$output"
		assert_output '[true]'
	done
}

@test "--rebuild shows its progress on a terminal" {
	load_history
	cqrs-project
	for t in 1 2; do
		CQRS_BUILD_THREADS=$t run script -qec "cqrs-project --rebuild" /dev/null
		assert_success
		assert_output --partial 'cqrs-project: rebuild: '
		assert_output --partial '/37 events ('
	done
}

@test "parameters bind as documented: text, integers, exact decimals, JSON, paths, NULL" {
	printf '%s\n' '{"event_id":"01943a10-0000-7000-8000-0000000000aa","aggregate_id":"7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f","aggregate_type":"Thing","event_type":"Odd","event_version":2,"data":{"s":"a\"b\u00e9","t":true,"f":false,"n":null,"i":42,"neg":-7,"big":12345678901234567890,"dec":59.90,"exp":1e3,"obj":{"k":[1,2]},"arr":[{"x":"y"}]},"metadata":{"correlation_id":"c-1"},"timestamp":"2026-01-16T14:00:00Z"}' |
		cqrs-append -q
	cat >odd.yaml <<-'EOF'
		projections:
		  - name: odd
		    tables:
		      - CREATE TABLE odd (name TEXT, value, type TEXT)
		    on:
		      Odd:
		        - |
		          INSERT INTO odd VALUES
		            ('s', :data.s, typeof(:data.s)), ('t', :data.t, typeof(:data.t)),
		            ('f', :data.f, typeof(:data.f)), ('n', :data.n, typeof(:data.n)),
		            ('i', :data.i, typeof(:data.i)), ('neg', :data.neg, typeof(:data.neg)),
		            ('big', :data.big, typeof(:data.big)), ('dec', :data.dec, typeof(:data.dec)),
		            ('exp', :data.exp, typeof(:data.exp)), ('obj', :data.obj, typeof(:data.obj)),
		            ('obj.k.1', :data.obj.k.1, typeof(:data.obj.k.1)),
		            ('arr.0.x', :data.arr.0.x, typeof(:data.arr.0.x)),
		            ('missing', :data.missing, typeof(:data.missing)),
		            ('arr.5', :data.arr.5, typeof(:data.arr.5)),
		            ('correlation', :metadata.correlation_id, typeof(:metadata.correlation_id)),
		            ('event_id', :event_id, typeof(:event_id)),
		            ('aggregate_id', :aggregate_id, typeof(:aggregate_id)),
		            ('types', :aggregate_type || '/' || :event_type, 'text'),
		            ('versions', :aggregate_version || '/' || :event_version, 'text'),
		            ('sequence', :sequence, typeof(:sequence)),
		            ('timestamp', :timestamp, typeof(:timestamp))
	EOF
	cqrs-project --no-default-projections -P odd.yaml
	run sqlite3 "$CQRS_VIEWS" 'SELECT name, value, type FROM odd ORDER BY rowid'
	assert_output - <<-'EOF'
		s|a"bé|text
		t|1|integer
		f|0|integer
		n||null
		i|42|integer
		neg|-7|integer
		big|12345678901234567890|text
		dec|59.90|text
		exp|1e3|text
		obj|{"k":[1,2]}|text
		obj.k.1|2|integer
		arr.0.x|y|text
		missing||null
		arr.5||null
		correlation|c-1|text
		event_id|01943a10-0000-7000-8000-0000000000aa|text
		aggregate_id|7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f|text
		types|Thing/Odd|text
		versions|1/2|text
		sequence|1|integer
		timestamp|2026-01-16T14:00:00.000000Z|text
	EOF
}

@test "--rebuild keeps the page size of the live views" {
	load_history
	sqlite3 "$CQRS_VIEWS" 'PRAGMA page_size = 16384; VACUUM'
	cqrs-project
	run --separate-stderr cqrs-project --rebuild
	assert_success
	run sqlite3 "$CQRS_VIEWS" 'PRAGMA page_size'
	assert_output 16384
	cqrs-project --views clean.db
	assert_equal "$(snapshot "$CQRS_VIEWS")" "$(snapshot clean.db)"
}
