#!/usr/bin/env bats
# The read side of the one order lifecycle (issue 8): the views show every
# effect (payment, shipment, stock per order, InventoryShipped), keep the
# Inventory aggregate's invariants, park what they cannot apply and go on,
# replay it once it applies, and upgrade views of release 0.1 on their own.

bats_require_minimum_version 1.5.0
load saga_helper

teardown() {
	reap_background_jobs
}

eval "common_$(declare -f setup)"
setup() {
	common_setup
	export CQRS_VIEWS="$BATS_TEST_TMPDIR/views.db"
	O1=00000001-0000-4000-8000-000000000001
	O2=00000002-0000-4000-8000-000000000002
	O9=00000009-0000-4000-8000-000000000009
	PAY=90000001-0000-4000-8000-000000000001
	SHIP=a0000001-0000-4000-8000-000000000001
	P2=22222222-2222-4222-8222-222222222222
}

# ev AGGREGATE_TYPE AGGREGATE_ID EVENT_TYPE DATA: one event line.
ev() {
	printf '{"aggregate_id":"%s","aggregate_type":"%s","event_type":"%s","data":%s}\n' \
		"$2" "$1" "$3" "$4"
}

created() { # created ORDER_ID NUMBER [TOTAL] [EVENT_VERSION]
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderCreated","event_version":%s,"data":{"order_number":"%s","customer_id":"cust-1","items":[{"product_id":"%s","sku":"SKU-1","quantity":2,"unit_price":10.00}],"currency":"USD","total":%s,"payment_method":"card"}}\n' \
		"$1" "${4:-1}" "$2" "$P" "${3:-20.00}"
}

stock() { # stock PRODUCT QUANTITY
	ev Inventory "$1" ProductRegistered '{"sku":"SKU-'"${1:0:1}"'","name":"Thing"}'
	ev Inventory "$1" StockReplenished '{"quantity":'"$2"'}'
}

# on_hand|reserved|available|shipped|received of a product
inventory() {
	sqlite3 "$CQRS_VIEWS" "SELECT on_hand, reserved, available, shipped, received
		FROM inventory_views WHERE product_id = '${1:-$P}'"
}

# The line of statement K of the OCC-th handler of EVENT in the shipped
# projections (the lines their errors name): stmt_line EVENT K [OCC]
stmt_line() {
	awk -v h="      $1:" -v k="$2" -v o="${3:-1}" '
		$0 == h { if (++seen == o) { f = 1 }; next }
		f && /^      [A-Za-z"*]/ { exit }
		f && /^        - / { if (++n == k) { print ($0 ~ /- \|$/) ? NR + 1 : NR; exit } }
	' "$CQRS_SHAREDIR/projections/orders.yaml"
}

held() { # what each order holds of product $1, order|quantity lines
	sqlite3 "$CQRS_VIEWS" "SELECT order_id, quantity FROM inventory_reservations
		WHERE product_id = '${1:-$P}' ORDER BY 1"
}

# A user projection that keeps each order's total in minor units, with
# its own CHECK: $1 is the largest total it accepts.
totals_projection() {
	cat >totals.yaml <<-EOF
		projections:
		  - name: order_totals
		    tables:
		      - |
		        CREATE TABLE order_totals (
		          order_id TEXT PRIMARY KEY,
		          total_minor INTEGER NOT NULL CHECK (total_minor <= $1),
		          confirmed INTEGER NOT NULL DEFAULT 0)
		    on:
		      OrderCreated:
		        - |
		          INSERT INTO order_totals (order_id, total_minor)
		          VALUES (:aggregate_id, minor_units(:data.total, :data.currency))
		      OrderConfirmed:
		        - UPDATE order_totals SET confirmed = confirmed + 1 WHERE order_id = :aggregate_id
	EOF
}

# --- the views show every effect ------------------------------------------------

@test "a saga-completed order shows its payment and tracking number in cqrs-query order" {
	saga_setup
	order 1
	cqrs-saga run
	assert_equal "$(saga_row 1)" "COMPLETED|4|0|completed"
	run --separate-stderr cqrs-project
	assert_success
	assert_equal "$stderr" ''
	label=$(cqrs-read --event-type ShippingLabelCreated)
	payment=$(cqrs-read --event-type PaymentAuthorized | jq -r .aggregate_id)
	# the gateway's reference, from the step program's answer to the event
	auth=$(cqrs-read --event-type PaymentAuthorized | jq -r .data.authorization)
	[[ $auth == AUTH-* ]] || fail "PaymentAuthorized has no gateway authorization: $auth"
	run --separate-stderr cqrs-query order "$(order_id 1)"
	assert_success
	run jq -c '[.status, .payment_id, .authorization, .amount_authorized, .amount_captured,
		.amount_refunded, .payment_status, .shipment_id, .tracking_number, .carrier,
		.shipment_status]' <<<"$output"
	assert_output "[\"CONFIRMED\",\"$payment\",\"$auth\",\"59.98\",\"0.00\",\"0.00\",\"AUTHORIZED\",$(jq -c '.aggregate_id, .data.tracking_number, .data.carrier' <<<"$label" | paste -sd,),\"LABEL_CREATED\"]"
	# and the stock it holds
	assert_equal "$(inventory)" '100|2|98|0|100'
	assert_equal "$(held)" "$(order_id 1)|2"
}

@test "order_views follows the payment: captured, refunded, voided; money stays exact text" {
	{
		created "$O1" ORD-1 59.98
		ev Payment "$PAY" PaymentAuthorized '{"order_id":"'"$O1"'","amount":59.98,"currency":"USD","authorization":"AUTH-7","payment_method":"visa"}'
		ev Payment "$PAY" PaymentCaptured '{"order_id":"'"$O1"'","amount":20.00,"currency":"USD"}'
	} | cqrs-append -q
	cqrs-project
	pay() {
		cqrs-query order ORD-1 | jq -c '[.payment_method, .payment_id, .authorization,
			.amount_authorized, .amount_captured, .amount_refunded, .payment_status]'
	}
	assert_equal "$(pay)" "[\"visa\",\"$PAY\",\"AUTH-7\",\"59.98\",\"20.00\",\"0.00\",\"PARTIALLY_CAPTURED\"]"
	ev Payment "$PAY" PaymentCaptured '{"order_id":"'"$O1"'","amount":39.98,"currency":"USD"}' | cqrs-append -q
	cqrs-project
	assert_equal "$(pay)" "[\"visa\",\"$PAY\",\"AUTH-7\",\"59.98\",\"59.98\",\"0.00\",\"CAPTURED\"]"
	ev Payment "$PAY" PaymentRefunded '{"order_id":"'"$O1"'","amount":9.98,"currency":"USD"}' | cqrs-append -q
	cqrs-project
	assert_equal "$(pay)" "[\"visa\",\"$PAY\",\"AUTH-7\",\"59.98\",\"59.98\",\"9.98\",\"PARTIALLY_REFUNDED\"]"
	ev Payment "$PAY" PaymentRefunded '{"order_id":"'"$O1"'","amount":50.00,"currency":"USD"}' | cqrs-append -q
	cqrs-project
	assert_equal "$(pay)" "[\"visa\",\"$PAY\",\"AUTH-7\",\"59.98\",\"59.98\",\"59.98\",\"REFUNDED\"]"
	# an authorization voided before any capture
	{
		created "$O2" ORD-2
		ev Payment 90000002-0000-4000-8000-000000000002 PaymentAuthorized '{"order_id":"'"$O2"'","amount":20.00,"currency":"USD"}'
		ev Payment 90000002-0000-4000-8000-000000000002 AuthorizationVoided '{"order_id":"'"$O2"'"}'
		ev Shipment "$SHIP" ShippingLabelCreated '{"order_id":"'"$O2"'","tracking_number":"TRK-2","carrier":"UPS"}'
		ev Shipment "$SHIP" ShipmentCancelled '{"order_id":"'"$O2"'","reason":"payment declined"}'
		ev Order "$O2" OrderCancelled '{"reason":"payment declined","cancelled_at":"2026-02-01T10:00:00Z"}'
	} | cqrs-append -q
	cqrs-project
	run cqrs-query order ORD-2
	run jq -c '[.status, .payment_method, .amount_authorized, .payment_status, .tracking_number,
		.shipment_status, .cancelled_at]' <<<"$output"
	assert_output '["CANCELLED","card","20.00","VOIDED","TRK-2","LABEL_CANCELLED","2026-02-01T10:00:00Z"]'
}

@test "a release for another order never makes reserved negative in the views" {
	{
		stock "$P" 10
		ev Inventory "$P" InventoryReserved '{"order_id":"'"$O1"'","quantity":3}'
		# O2 holds nothing: release 0.1 accepted this, and it freed O1's units
		ev Inventory "$P" InventoryReleased '{"order_id":"'"$O2"'","quantity":3}'
	} | cqrs-append -q
	run --separate-stderr cqrs-project
	assert_success
	assert_equal "$(inventory)" '10|3|7|0|10'
	assert_equal "$(held)" "$O1|3"
	# a release frees at most what its order holds
	ev Inventory "$P" InventoryReleased '{"order_id":"'"$O1"'","quantity":5}' | cqrs-append -q
	cqrs-project
	assert_equal "$(inventory)" '10|0|10|0|10'
	assert_equal "$(held)" ''
	run --separate-stderr cqrs-project --parked
	assert_output ''
}

@test "InventoryShipped moves the order's units from reserved and on hand to shipped" {
	{
		stock "$P" 10
		ev Inventory "$P" InventoryReserved '{"order_id":"'"$O1"'","quantity":3}'
		ev Inventory "$P" InventoryReserved '{"order_id":"'"$O2"'","quantity":2}'
		ev Order "$O1" OrderShipped '{"tracking_number":"T1","carrier":"DHL"}'
		ev Inventory "$P" InventoryShipped '{"order_id":"'"$O1"'","quantity":3}'
	} | cqrs-append -q
	run --separate-stderr cqrs-project
	assert_success
	assert_equal "$(inventory)" '7|2|5|3|10'
	assert_equal "$(held)" "$O2|2"
	# the other way round (InventoryShipped first), and a reservation
	# larger than the shipment: the rest stays held by its order
	{
		ev Inventory "$P" InventoryReserved '{"order_id":"'"$O2"'","quantity":1}'
		ev Inventory "$P" InventoryShipped '{"order_id":"'"$O2"'","quantity":2}'
		ev Order "$O2" OrderShipped '{"tracking_number":"T2","carrier":"DHL"}'
	} | cqrs-append -q
	cqrs-project
	assert_equal "$(inventory)" '5|1|4|5|10'
	assert_equal "$(held)" "$O2|1"
	# the same with OrderShipped first
	{
		ev Inventory "$P" InventoryReserved '{"order_id":"'"$O9"'","quantity":3}'
		ev Order "$O9" OrderShipped '{"tracking_number":"T9","carrier":"DHL"}'
		ev Inventory "$P" InventoryShipped '{"order_id":"'"$O9"'","quantity":2}'
	} | cqrs-append -q
	cqrs-project
	assert_equal "$(inventory)" '3|2|1|7|10'
	assert_equal "$(held)" "$O2|1
$O9|1"
	# nothing left over in the bookkeeping of either order
	assert_equal "$(sqlite3 "$CQRS_VIEWS" 'SELECT count(*) FROM inventory_shipments')" 0
	assert_equal "$(sqlite3 "$CQRS_VIEWS" 'SELECT count(*) FROM inventory_shipped_orders')" 0
	# all of it as a rebuild makes it
	run --separate-stderr cqrs-project --diff
	assert_success
}

# --- invariants and parking -----------------------------------------------------

@test "an event that would break an invariant is parked with its product's later events; others go on" {
	{
		stock "$P" 2
		stock "$P2" 5
		# more than is available: available would be -1
		ev Inventory "$P" InventoryReserved '{"order_id":"'"$O1"'","quantity":3}'
		ev Inventory "$P2" InventoryReserved '{"order_id":"'"$O1"'","quantity":1}'
		ev Inventory "$P" StockReplenished '{"quantity":4}'
		# shipping what the order does not hold: reserved would be -2
		ev Inventory "$P2" InventoryShipped '{"order_id":"'"$O2"'","quantity":2}'
	} | cqrs-append -q
	run --separate-stderr cqrs-project
	assert_failure 5
	assert_equal "$stderr" 'cqrs-project: 3 events parked (inventory_views 3 from event 5): cqrs-project --parked lists them'
	run --separate-stderr cqrs-project --parked
	assert_success
	run jq -c '[.projection, .sequence, .event_type, .error]' <<<"$output"
	assert_output - <<-EOF
		["inventory_views",5,"InventoryReserved","$CQRS_SHAREDIR/projections/orders.yaml:$(stmt_line InventoryReserved 1): projection 'inventory_views', on InventoryReserved: CHECK constraint failed: available >= 0 AND available = on_hand - reserved"]
		["inventory_views",7,"StockReplenished","behind parked event 5 of the same aggregate"]
		["inventory_views",8,"InventoryShipped","$CQRS_SHAREDIR/projections/orders.yaml:$(stmt_line InventoryShipped 2): projection 'inventory_views', on InventoryShipped: CHECK constraint failed: reserved >= 0"]
	EOF
	# P stands as before its bad event; P2 took its good one, and nothing
	# of the parked shipment (its savepoint undid the statements before)
	assert_equal "$(inventory "$P")" '2|0|2|0|2'
	assert_equal "$(inventory "$P2")" '5|1|4|0|5'
	assert_equal "$(sqlite3 "$CQRS_VIEWS" 'SELECT count(*) FROM inventory_shipped_orders')" 0
	# each run says so again, and applies nothing twice
	run --separate-stderr cqrs-project
	assert_failure 5
	assert_equal "$(inventory "$P2")" '5|1|4|0|5'
}

@test "one bad event (total 1e400) is parked; the other read models and orders go on (exit 5)" {
	{
		created "$O1" ORD-1
		# a version the store's schema does not declare, as copied history
		# may hold: it reaches the store, and the projections
		created "$O9" ORD-9 '"1e400"' 2
		ev Order "$O1" OrderConfirmed '{}'
		ev Order "$O9" OrderConfirmed '{}'
		stock "$P" 5
	} | cqrs-append -q
	run --separate-stderr cqrs-project
	assert_failure 5
	assert_output ''
	assert_equal "$stderr" 'cqrs-project: 4 events parked (customer_order_summary 1 from event 2, order_views 2 from event 2, sales_analytics 1 from event 2): cqrs-project --parked lists them'
	# every checkpoint is at the end; the good order and the stock are there
	run sqlite3 "$CQRS_VIEWS" 'SELECT projection, sequence FROM cqrs_checkpoints ORDER BY 1'
	assert_output - <<-'EOF'
		customer_order_summary|6
		inventory_views|6
		order_views|6
		sales_analytics|6
	EOF
	assert_equal "$(cqrs-query order ORD-1 | jq -r .status)" CONFIRMED
	assert_equal "$(inventory)" '5|0|5|0|5'
	run --separate-stderr cqrs-query order ORD-9
	assert_failure 1
	# --parked lists them, one NDJSON line each, by projection and sequence
	run --separate-stderr cqrs-project --parked
	assert_success
	assert_equal "$stderr" ''
	run jq -c '[.projection, .sequence, .aggregate_id, .event_type, .error]' <<<"$output"
	assert_output - <<-EOF
		["customer_order_summary",2,"$O9","OrderCreated","$CQRS_SHAREDIR/projections/orders.yaml:$(stmt_line OrderCreated 1 2): projection 'customer_order_summary', on OrderCreated: not an amount: 1e400"]
		["order_views",2,"$O9","OrderCreated","$CQRS_SHAREDIR/projections/orders.yaml:$(stmt_line OrderCreated 1 1): projection 'order_views', on OrderCreated: not an amount: 1e400"]
		["order_views",4,"$O9","OrderConfirmed","behind parked event 2 of the same aggregate"]
		["sales_analytics",2,"$O9","OrderCreated","$CQRS_SHAREDIR/projections/orders.yaml:$(stmt_line OrderCreated 1 3): projection 'sales_analytics', on OrderCreated: not an amount: 1e400"]
	EOF
	run cqrs-project --parked
	[[ $(jq -r .parked_at <<<"${lines[0]}") =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T.*Z$ ]]
	# a rebuild parks the same events
	run --separate-stderr cqrs-project --rebuild
	assert_failure 5
	assert_equal "$stderr" 'cqrs-project: 4 events parked (customer_order_summary 1 from event 2, order_views 2 from event 2, sales_analytics 1 from event 2): cqrs-project --parked lists them'
	assert_equal "$(cqrs-project --parked | jq -c '[.projection, .sequence]' | paste -sd' ')" \
		'["customer_order_summary",2] ["order_views",2] ["order_views",4] ["sales_analytics",2]'
	assert_equal "$(cqrs-query order ORD-1 | jq -r .status)" CONFIRMED
	# and so does a history file
	run --separate-stderr cqrs-project -o hist.db --to 4
	assert_failure 5
	assert_equal "$stderr" 'cqrs-project: 4 events parked (customer_order_summary 1 from event 2, order_views 2 from event 2, sales_analytics 1 from event 2): cqrs-project --parked lists them'
	assert_equal "$(cqrs-project --views hist.db --parked | wc -l)" 4
}

@test "a user projection fixed after parking applies what it parked, and goes on" {
	{
		created "$O1" ORD-1 20.00
		created "$O9" ORD-9 2000.00
		ev Order "$O9" OrderConfirmed '{}'
		ev Order "$O1" OrderConfirmed '{}'
	} | cqrs-append -q
	# orders up to 100.00 only: ORD-9 and its confirmation are parked
	totals_projection 10000
	run --separate-stderr cqrs-project --no-default-projections -P totals.yaml
	assert_failure 5
	assert_equal "$stderr" 'cqrs-project: 2 events parked (order_totals 2 from event 2): cqrs-project --parked lists them'
	assert_equal "$(sqlite3 "$CQRS_VIEWS" 'SELECT * FROM order_totals')" "$O1|2000|1"
	# the limit corrected: the next run applies ORD-9 and its
	# confirmation, in order, and nothing is parked any more
	totals_projection 1000000
	run --separate-stderr cqrs-project --no-default-projections -P totals.yaml
	assert_success
	assert_equal "$stderr" ''
	run sqlite3 "$CQRS_VIEWS" 'SELECT * FROM order_totals ORDER BY 1'
	assert_output - <<-EOF
		$O1|2000|1
		$O9|200000|1
	EOF
	run --separate-stderr cqrs-project --parked
	assert_output ''
}

@test "events behind a parked one of the same aggregate wait, and replay in order once it applies" {
	# a projection that needs the customer to be known (another
	# aggregate's event) before the customer's orders
	cat >customers.yaml <<-'EOF'
		projections:
		  - name: customer_orders
		    tables:
		      - CREATE TABLE customers (customer_id TEXT PRIMARY KEY, name TEXT NOT NULL)
		      - |
		        CREATE TABLE customer_orders (
		          order_id TEXT PRIMARY KEY,
		          name TEXT NOT NULL,
		          steps TEXT NOT NULL)
		    on:
		      CustomerRegistered:
		        - INSERT INTO customers VALUES (:aggregate_id, :data.name)
		      OrderOpened:
		        - |
		          INSERT INTO customer_orders
		          VALUES (:aggregate_id, (SELECT name FROM customers
		                                  WHERE customer_id = :data.customer_id), 'created')
		      OrderConfirmed:
		        - |
		          UPDATE customer_orders SET steps = steps || ',confirmed'
		           WHERE order_id = :aggregate_id
		        - |
		          INSERT INTO customer_orders SELECT :aggregate_id, 'x', 'x'
		           WHERE NOT EXISTS (SELECT 1 FROM customer_orders WHERE order_id = :aggregate_id)
		      OrderCancelled:
		        - UPDATE customer_orders SET steps = steps || ',cancelled' WHERE order_id = :aggregate_id
	EOF
	C=c0000001-0000-4000-8000-000000000001
	{
		printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderOpened","data":{"customer_id":"%s"}}\n' "$O1" "$C"
		ev Order "$O1" OrderConfirmed '{}'
		ev Order "$O1" OrderCancelled '{"reason":"r"}'
		printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderOpened","data":{"customer_id":"nobody"}}\n' "$O2"
	} | cqrs-append -q
	run --separate-stderr cqrs-project --no-default-projections -P customers.yaml
	assert_failure 5
	run jq -c '[.sequence, .error]' < <(cqrs-project --parked)
	assert_output - <<-EOF
		[1,"customers.yaml:15: projection 'customer_orders', on OrderOpened: NOT NULL constraint failed: customer_orders.name"]
		[2,"behind parked event 1 of the same aggregate"]
		[3,"behind parked event 1 of the same aggregate"]
		[4,"customers.yaml:15: projection 'customer_orders', on OrderOpened: NOT NULL constraint failed: customer_orders.name"]
	EOF
	# OrderConfirmed alone would have applied (its second statement makes
	# a row): it waited, and nothing of it is in the views
	assert_equal "$(sqlite3 "$CQRS_VIEWS" 'SELECT count(*) FROM customer_orders')" 0
	# the customer arrives: the next run replays O1's events in order
	ev Customer "$C" CustomerRegistered '{"name":"Ada"}' | cqrs-append -q
	run --separate-stderr cqrs-project --no-default-projections -P customers.yaml
	assert_failure 5
	assert_equal "$stderr" 'cqrs-project: 1 event parked (customer_orders 1 from event 4): cqrs-project --parked lists them'
	assert_equal "$(sqlite3 "$CQRS_VIEWS" 'SELECT * FROM customer_orders')" "$O1|Ada|created,confirmed,cancelled"
	run jq -c '[.sequence, .aggregate_id]' < <(cqrs-project --parked)
	assert_output "[4,\"$O2\"]"
}

@test "--lag shows the parked events per projection" {
	{
		created "$O1" ORD-1
		created "$O9" ORD-9 '"1e400"' 2
	} | cqrs-append -q
	run cqrs-project
	assert_failure 5
	run --separate-stderr cqrs-project --lag
	assert_success
	assert_output - <<-'EOF'
		{"projection":"customer_order_summary","checkpoint":2,"store_sequence":2,"events_behind":0,"seconds_behind":0,"parked":1}
		{"projection":"inventory_views","checkpoint":2,"store_sequence":2,"events_behind":0,"seconds_behind":0,"parked":0}
		{"projection":"order_views","checkpoint":2,"store_sequence":2,"events_behind":0,"seconds_behind":0,"parked":1}
		{"projection":"sales_analytics","checkpoint":2,"store_sequence":2,"events_behind":0,"seconds_behind":0,"parked":1}
	EOF
}

@test "--parked: nothing parked is no output; no views file exits 66; it goes alone" {
	created "$O1" ORD-1 | cqrs-append -q
	cqrs-project
	run --separate-stderr cqrs-project --parked
	assert_success
	assert_output ''
	assert_equal "$stderr" ''
	run --separate-stderr cqrs-project --parked --views none.db
	assert_failure 66
	assert_equal "$stderr" 'cqrs-project: none.db: no such views file (cqrs-project builds it)'
	run --separate-stderr cqrs-project --parked --lag
	assert_failure 64
	[[ $stderr == "cqrs-project: --lag goes alone: one mode per run"* ]]
}

@test "--stdin parks and replays as a run from the store does" {
	{
		created "$O1" ORD-1
		created "$O9" ORD-9 '"1e400"' 2
	} | cqrs-append -q
	run --separate-stderr cqrs-project --stdin < <(cqrs-read)
	assert_failure 5
	assert_equal "$stderr" 'cqrs-project: 3 events parked (customer_order_summary 1 from event 2, order_views 1 from event 2, sales_analytics 1 from event 2): cqrs-project --parked lists them'
	ev Order "$O9" OrderConfirmed '{}' | cqrs-append | cqrs-project --stdin 2>/dev/null || true
	run jq -c '[.projection, .sequence]' < <(cqrs-project --parked)
	assert_line '["order_views",3]'
}

# --- upgrading ------------------------------------------------------------------

@test "views written by release 0.1 are upgraded by cqrs-project alone, as a rebuild makes them" {
	cp "$FIXTURES/release-0.1/events.db" "$FIXTURES/release-0.1/views.db" .
	chmod 600 events.db views.db
	export CQRS_STORE=$PWD/events.db
	assert_equal "$(sqlite3 views.db 'PRAGMA user_version')" 1
	# readers are told what to do, and change nothing
	run --separate-stderr cqrs-query orders
	assert_failure 66
	assert_equal "$stderr" "cqrs-query: $CQRS_VIEWS: views of an older release (schema version 1): run cqrs-project to upgrade them"
	run --separate-stderr cqrs-project --lag
	assert_failure 66
	assert_equal "$(sqlite3 views.db 'PRAGMA user_version')" 1
	run --separate-stderr cqrs-project
	assert_success
	assert_equal "$stderr" ''
	assert_equal "$(sqlite3 views.db 'PRAGMA user_version')" 2
	# the changed projections were built again; all are at the head
	last=$(sqlite3 events.db 'SELECT max(sequence) FROM events')
	run sqlite3 views.db 'SELECT DISTINCT sequence FROM cqrs_checkpoints'
	assert_output "$last"
	run --separate-stderr cqrs-project --diff
	assert_success
	# cqrs-query shows the new columns
	id=$(sqlite3 views.db 'SELECT order_id FROM order_views ORDER BY created_at LIMIT 1')
	run --separate-stderr cqrs-query order "$id"
	assert_success
	run jq -c 'has("payment_status") and has("shipment_status")' <<<"$output"
	assert_output true
	run sqlite3 views.db 'SELECT count(*) FROM inventory_views WHERE received >= shipped'
	assert_output 2
	# a second run has nothing to do
	run --separate-stderr cqrs-project
	assert_success
	assert_equal "$stderr" ''
}

@test "a changed projection is built again from the first event by the next run" {
	created "$O1" ORD-1 | cqrs-append -q
	totals_projection 100000
	cqrs-project -P totals.yaml
	sed -i 's/confirmed + 1/confirmed + 2/' totals.yaml
	ev Order "$O1" OrderConfirmed '{}' | cqrs-append -q
	run --separate-stderr cqrs-project -P totals.yaml
	assert_success
	assert_equal "$stderr" ''
	assert_equal "$(sqlite3 "$CQRS_VIEWS" 'SELECT * FROM order_totals')" "$O1|2000|2"
	# the others were left as they were (their checkpoints did not move back)
	run sqlite3 "$CQRS_VIEWS" "SELECT count(*) FROM order_views"
	assert_output 1
	run --separate-stderr cqrs-project -P totals.yaml --diff
	assert_success
}

@test "--follow parks and goes on, says so once per new parked events, and replays" {
	created "$O1" ORD-1 | cqrs-append -q
	totals_projection 10000
	cqrs-project --no-default-projections -P totals.yaml --follow 2>follow.err &
	follower=$!
	parked() { sqlite3 "$CQRS_VIEWS" 'SELECT count(*) FROM parked_events' 2>/dev/null || echo 0; }
	created "$O9" ORD-9 2000.00 | cqrs-append -q
	for ((i = 0; i < 400 * GUARD_SCALE; i++)); do
		[ "$(parked)" -eq 1 ] && break
		sleep 0.025
	done
	assert_equal "$(parked)" 1
	ev Order "$O1" OrderConfirmed '{}' | cqrs-append -q
	for ((i = 0; i < 400 * GUARD_SCALE; i++)); do
		[ "$(sqlite3 "$CQRS_VIEWS" 'SELECT confirmed FROM order_totals')" = 1 ] && break
		sleep 0.025
	done
	kill -TERM "$follower"
	wait "$follower" || fail "--follow exited $?"
	# a follower's lines begin with their time (cqrs(7), Logs)
	assert_regex "$(cat follow.err)" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z '
	assert_equal "$(cut -d' ' -f2- follow.err)" 'cqrs-project: 1 event parked so far: cqrs-project --parked lists them'
	assert_equal "$(sqlite3 "$CQRS_VIEWS" 'SELECT * FROM order_totals')" "$O1|2000|1"
}

@test "a run says and exits 5 for the parked events of its own projections, not another job's" {
	{
		created "$O1" ORD-1
		created "$O9" ORD-9 2000.00
	} | cqrs-append -q
	totals_projection 10000
	run --separate-stderr cqrs-project --no-default-projections -P totals.yaml
	assert_failure 5
	# the shipped projections, from another cron job: nothing of theirs parked
	run --separate-stderr cqrs-project
	assert_success
	assert_equal "$stderr" ''
	# the listing is of the whole views file
	run jq -r .projection < <(cqrs-project --parked)
	assert_output order_totals
}
