#!/usr/bin/env bats
# cqrs-query: every query and output format against the scripted order
# history (tests/fixtures/orders-history.ndjson, described in project.bats),
# the temporal query, read-only enforcement, usage errors.

bats_require_minimum_version 1.5.0
load test_helper

eval "common_$(declare -f setup)"
setup() {
	common_setup
	export CQRS_VIEWS="$BATS_TEST_TMPDIR/views.db"
	cqrs-append -q "$FIXTURES/orders-history.ndjson"
	cqrs-project
}

O1=00000001-0000-4000-8000-000000000001

# cqrs-query with these arguments is a usage error with this message.
usage_error() {
	local msg=$1
	shift
	run --separate-stderr cqrs-query "$@"
	assert_not_signalled
	assert_failure 64
	assert_output ''
	[[ $stderr == "cqrs-query: $msg"* ]] || fail "stderr: $stderr"
}

# --- order ---------------------------------------------------------------------

@test "order: by number or by id in any case, one NDJSON line that jq reads back" {
	run --separate-stderr cqrs-query order ORD-2026-000001
	assert_success
	assert_equal "$stderr" ''
	assert_output '{"order_id":"00000001-0000-4000-8000-000000000001","order_number":"ORD-2026-000001","customer_id":"cust-1","status":"SHIPPED","currency":"USD","total":"69.98","item_count":3,"items":[{"product_id":"11111111-1111-4111-8111-111111111111","sku":"SKU-1","quantity":2,"unit_price":29.99},{"product_id":"22222222-2222-4222-8222-222222222222","sku":"SKU-2","quantity":1,"unit_price":10.00}],"shipping_address":{"name":"Alice","street":"1 Main St","city":"New York","postal_code":"10001","country":"US"},"payment_method":null,"payment_id":"90000001-0000-4000-8000-000000000001","amount_paid":"69.98","authorization":null,"amount_authorized":"69.98","amount_captured":"0.00","amount_refunded":"0.00","payment_status":"AUTHORIZED","shipment_id":null,"tracking_number":"TRK123456","carrier":"FedEx","shipment_status":"SHIPPED","cancel_reason":null,"created_at":"2026-01-15T09:00:00.000000Z","confirmed_at":"2026-01-15T09:00:04.000000Z","paid_at":"2026-01-15T09:05:00.000000Z","shipped_at":"2026-01-15T14:00:00Z","cancelled_at":null,"updated_at":"2026-01-15T14:00:05.000000Z","version":4}'
	by_number=$output
	run --separate-stderr cqrs-query order "${O1^^}"
	assert_success
	assert_output "$by_number"
	# money is exact decimal text; the items are the event's JSON as written
	run jq -r '.total, .amount_paid' <<<"$by_number"
	assert_output $'69.98\n69.98'
	[[ $by_number == *'"quantity":1,"unit_price":10.00}'* ]]
}

@test "order: money in every currency's digits; a JPY total has none" {
	run --separate-stderr cqrs-query order ORD-2026-000004
	assert_success
	run jq -c '[.currency, .total, .status, .item_count]' <<<"$output"
	assert_output '["JPY","3000","CONFIRMED",2]'
}

@test "order: not found exits 1 with a message and no output" {
	run --separate-stderr cqrs-query order ORD-2026-999999
	assert_failure 1
	assert_output ''
	assert_equal "$stderr" "cqrs-query: order 'ORD-2026-999999' not found"
}

@test "order --as-of: the state at a past time or sequence, computed from the events" {
	run --separate-stderr cqrs-query order ORD-2026-000001 --as-of 2026-01-15T09:06:00Z
	assert_success
	run jq -c '[.status, .amount_paid, .tracking_number, .version]' <<<"$output"
	assert_output '["PAID","69.98",null,3]'
	# sequence 8 is the first reservation: the order was just created
	run --separate-stderr cqrs-query order "$O1" --as-of 8
	assert_success
	run jq -c '[.status, .version, .confirmed_at]' <<<"$output"
	assert_output '["PENDING",1,null]'
	# the views need not exist: the number is found in the store
	run --separate-stderr cqrs-query --views none.db order ORD-2026-000002 \
		--as-of 2026-01-15T12:00:00-05:00
	assert_success
	run jq -c '[.status, .cancel_reason]' <<<"$output"
	assert_output '["CANCELLED","customer request"]'
	# now is the same as the views
	assert_equal "$(cqrs-query order "$O1" --as-of 2027-01-01T00:00:00Z)" "$(cqrs-query order "$O1")"
}

@test "order --as-of: before the order existed exits 1" {
	run --separate-stderr cqrs-query order ORD-2026-000001 --as-of 2026-01-14T00:00:00Z
	assert_failure 1
	assert_equal "$stderr" "cqrs-query: order 'ORD-2026-000001' did not exist then"
	run --separate-stderr cqrs-query order ORD-2026-999999 --as-of 2027-01-01T00:00:00Z
	assert_failure 1
	assert_equal "$stderr" "cqrs-query: order 'ORD-2026-999999' not found"
}

# --- lists -----------------------------------------------------------------------

@test "orders: oldest first as an aligned table" {
	run --separate-stderr cqrs-query -f table orders
	assert_success
	assert_output - <<-'EOF'
		order_id                              order_number     customer_id  status     currency  total  item_count  created_at                   updated_at
		00000001-0000-4000-8000-000000000001  ORD-2026-000001  cust-1       SHIPPED    USD       69.98           3  2026-01-15T09:00:00.000000Z  2026-01-15T14:00:05.000000Z
		00000002-0000-4000-8000-000000000002  ORD-2026-000002  cust-2       CANCELLED  USD       30.00           3  2026-01-15T10:30:00.000000Z  2026-01-15T16:00:00.000000Z
		00000003-0000-4000-8000-000000000003  ORD-2026-000003  cust-1       PAID       EUR       25.50           1  2026-01-16T09:00:00.000000Z  2026-01-16T09:20:00.000000Z
		00000004-0000-4000-8000-000000000004  ORD-2026-000004  cust-3       CONFIRMED  JPY        3000           2  2026-01-16T11:00:00.000000Z  2026-01-16T11:05:00.000000Z
		00000005-0000-4000-8000-000000000005  ORD-2026-000005  cust-3       PENDING    USD       10.01           1  2026-01-16T15:00:00.000000Z  2026-01-16T15:00:00.000000Z
		00000006-0000-4000-8000-000000000006  ORD-2026-000006  cust-1       PENDING    USD       35.00           2  2026-01-16T23:59:59.999999Z  2026-01-16T23:59:59.999999Z
		00000007-0000-4000-8000-000000000007  ORD-2026-000007  cust-2       CANCELLED  USD       29.99           1  2026-01-17T10:00:00.000000Z  2026-01-17T12:00:02.000000Z
	EOF
}

@test "orders: pages with --limit and --offset, as NDJSON and as CSV" {
	run --separate-stderr cqrs-query orders --limit 2 --offset 2
	assert_success
	assert_output - <<-'EOF'
		{"order_id":"00000003-0000-4000-8000-000000000003","order_number":"ORD-2026-000003","customer_id":"cust-1","status":"PAID","currency":"EUR","total":"25.50","item_count":1,"created_at":"2026-01-16T09:00:00.000000Z","updated_at":"2026-01-16T09:20:00.000000Z"}
		{"order_id":"00000004-0000-4000-8000-000000000004","order_number":"ORD-2026-000004","customer_id":"cust-3","status":"CONFIRMED","currency":"JPY","total":"3000","item_count":2,"created_at":"2026-01-16T11:00:00.000000Z","updated_at":"2026-01-16T11:05:00.000000Z"}
	EOF
	run --separate-stderr cqrs-query -f csv orders -n 2
	assert_success
	assert_output "$(printf '%s\r\n' \
		order_id,order_number,customer_id,status,currency,total,item_count,created_at,updated_at \
		00000001-0000-4000-8000-000000000001,ORD-2026-000001,cust-1,SHIPPED,USD,69.98,3,2026-01-15T09:00:00.000000Z,2026-01-15T14:00:05.000000Z \
		00000002-0000-4000-8000-000000000002,ORD-2026-000002,cust-2,CANCELLED,USD,30.00,3,2026-01-15T10:30:00.000000Z,2026-01-15T16:00:00.000000Z)"
}

@test "orders: by status within a time range, dates or times" {
	run --separate-stderr cqrs-query orders --status cancelled --from 2026-01-15 --to 2026-01-16
	assert_success
	run jq -r .order_number <<<"$output"
	assert_output ORD-2026-000002
	# a date as --to is the whole day, to the microsecond
	run --separate-stderr cqrs-query orders --status PENDING --to 2026-01-16
	run jq -r .order_number <<<"$output"
	assert_output $'ORD-2026-000005\nORD-2026-000006'
	run --separate-stderr cqrs-query orders --from 2026-01-16T10:00:00+01:00 \
		--to 2026-01-16T15:00:00Z
	run jq -r .order_number <<<"$output"
	assert_output $'ORD-2026-000003\nORD-2026-000004\nORD-2026-000005'
}

@test "an empty list is not an error: nothing in NDJSON, the header in a table or CSV" {
	run --separate-stderr cqrs-query orders --status SHIPPED --from 2026-01-16
	assert_success
	assert_output ''
	run --separate-stderr cqrs-query -f table customer nobody
	assert_success
	assert_output 'order_id  order_number  status  currency  total  item_count  created_at  updated_at  cursor'
	run --separate-stderr cqrs-query -f csv sales --from 2025-01-01 --to 2025-12-31
	assert_success
	assert_output $'day,currency,orders,revenue,average_order_value,cancelled\r'
}

@test "customer: the history newest first, with a cursor for each row" {
	run --separate-stderr cqrs-query customer cust-1
	assert_success
	run jq -r '[.order_number, .status, .total, (.cursor | length > 20)] | @tsv' <<<"$output"
	assert_output - <<-'EOF'
		ORD-2026-000006	PENDING	35.00	true
		ORD-2026-000003	PAID	25.50	true
		ORD-2026-000001	SHIPPED	69.98	true
	EOF
	run --separate-stderr cqrs-query customer cust-1 --limit 1 --offset 1
	run jq -r .order_number <<<"$output"
	assert_output ORD-2026-000003
}

@test "customer --after: deep pages stay stable when new orders arrive" {
	page=$(cqrs-query customer cust-1 -n 1)
	assert_equal "$(jq -r .order_number <<<"$page")" ORD-2026-000006
	cursor=$(jq -r .cursor <<<"$page")
	# a new order of the same customer lands on the first page, not here
	printf '%s\n' '{"aggregate_id":"00000008-0000-4000-8000-000000000008","aggregate_type":"Order","event_type":"OrderCreated","data":{"order_number":"ORD-2026-000008","customer_id":"cust-1","items":[{"product_id":"11111111-2222-4333-8444-555555555555","quantity":1,"unit_price":1.00}],"currency":"USD","total":1.00},"timestamp":"2026-01-18T08:00:00Z"}' |
		cqrs-append -q
	cqrs-project
	run --separate-stderr cqrs-query customer cust-1 -n 1 --after "$cursor"
	assert_success
	assert_equal "$(jq -r .order_number <<<"$output")" ORD-2026-000003
	cursor=$(jq -r .cursor <<<"$output")
	run --separate-stderr cqrs-query customer cust-1 -n 5 --after "$cursor"
	assert_equal "$(jq -r .order_number <<<"$output")" ORD-2026-000001
	cursor=$(jq -r .cursor <<<"$output")
	run --separate-stderr cqrs-query customer cust-1 --after "$cursor"
	assert_success
	assert_output ''
	# while the first page now starts with the new order
	assert_equal "$(cqrs-query customer cust-1 -n 1 | jq -r .order_number)" ORD-2026-000008
}

@test "summary: a customer's orders and spending per currency; unknown exits 1" {
	run --separate-stderr cqrs-query -f table summary cust-1
	assert_success
	assert_output - <<-'EOF'
		customer_id  currency  orders  cancelled  total_spent  first_order_at               last_order_at
		cust-1       EUR            1          0        25.50  2026-01-16T09:00:00.000000Z  2026-01-16T09:00:00.000000Z
		cust-1       USD            2          0       104.98  2026-01-15T09:00:00.000000Z  2026-01-16T23:59:59.999999Z
	EOF
	run --separate-stderr cqrs-query summary cust-2
	assert_output '{"customer_id":"cust-2","currency":"USD","orders":2,"cancelled":2,"total_spent":"0.00","first_order_at":"2026-01-15T10:30:00.000000Z","last_order_at":"2026-01-17T10:00:00.000000Z"}'
	run --separate-stderr cqrs-query summary cust-9
	assert_failure 1
	assert_equal "$stderr" "cqrs-query: customer 'cust-9' not found"
}

@test "inventory: every product, or one by SKU or id; unknown exits 1" {
	run --separate-stderr cqrs-query -f table inventory
	assert_success
	assert_output - <<-'EOF'
		product_id                            sku    name    on_hand  reserved  available  shipped  received  updated_at
		11111111-1111-4111-8111-111111111111  SKU-1  Widget        8         2          6        2        10  2026-01-17T12:00:01.000000Z
		22222222-2222-4222-8222-222222222222  SKU-2  Gadget        9         1          8        1        10  2026-01-16T15:00:01.000000Z
		33333333-3333-4333-8333-333333333333  SKU-3  Gizmo         4         3          1        0         4  2026-01-17T00:00:01.000000Z
	EOF
	run --separate-stderr cqrs-query inventory SKU-3
	assert_output '{"product_id":"33333333-3333-4333-8333-333333333333","sku":"SKU-3","name":"Gizmo","on_hand":4,"reserved":3,"available":1,"shipped":0,"received":4,"updated_at":"2026-01-17T00:00:01.000000Z"}'
	run --separate-stderr cqrs-query inventory 22222222-2222-4222-8222-222222222222
	assert_equal "$(jq -r .sku <<<"$output")" SKU-2
	run --separate-stderr cqrs-query inventory SKU-404
	assert_failure 1
	assert_equal "$stderr" "cqrs-query: product 'SKU-404' not found"
}

# --- sales analytics ---------------------------------------------------------------

@test "sales: orders, revenue and average order value per day and currency" {
	run --separate-stderr cqrs-query -f table sales
	assert_success
	assert_output - <<-'EOF'
		day         currency  orders  revenue  average_order_value  cancelled
		2026-01-15  USD            1    69.98                69.98          1
		2026-01-16  EUR            1    25.50                25.50          0
		2026-01-16  JPY            1     3000                 3000          0
		2026-01-16  USD            2    45.01                22.51          0
		2026-01-17  USD            0     0.00                               1
	EOF
	run --separate-stderr cqrs-query sales --from 2026-01-16 --to 2026-01-16 --currency usd
	assert_output '{"day":"2026-01-16","currency":"USD","orders":2,"revenue":"45.01","average_order_value":"22.51","cancelled":0}'
	run --separate-stderr cqrs-query sales --from 2026-01-17
	assert_output '{"day":"2026-01-17","currency":"USD","orders":0,"revenue":"0.00","average_order_value":null,"cancelled":1}'
}

@test "sales --total: one row per currency over the period, the average exact" {
	run --separate-stderr cqrs-query -f table sales --total --from 2026-01-15 --to 2026-01-31
	assert_success
	# USD: (69.98 + 45.01) / 3 orders = 38.33
	assert_output - <<-'EOF'
		from        to          currency  orders  revenue  average_order_value  cancelled
		2026-01-15  2026-01-31  EUR            1    25.50                25.50          0
		2026-01-15  2026-01-31  JPY            1     3000                 3000          0
		2026-01-15  2026-01-31  USD            3   114.99                38.33          2
	EOF
}

@test "products: the top products by revenue per currency over a period" {
	run --separate-stderr cqrs-query -f table products
	assert_success
	assert_output - <<-'EOF'
		currency  rank  product_id                            sku    quantity  revenue
		EUR          1  11111111-1111-4111-8111-111111111111  SKU-1         1    25.50
		JPY          1  33333333-3333-4333-8333-333333333333  SKU-3         2     3000
		USD          1  11111111-1111-4111-8111-111111111111  SKU-1         3    89.97
		USD          2  22222222-2222-4222-8222-222222222222  SKU-2         2    20.01
		USD          3  33333333-3333-4333-8333-333333333333  SKU-3         1     5.01
	EOF
	run --separate-stderr cqrs-query products --currency USD --limit 1 --from 2026-01-16
	assert_output '{"currency":"USD","rank":1,"product_id":"11111111-1111-4111-8111-111111111111","sku":"SKU-1","quantity":1,"revenue":"29.99"}'
}

# --- formats -------------------------------------------------------------------------

@test "the format is a table on a terminal and NDJSON otherwise" {
	run --separate-stderr cqrs-query summary cust-3
	assert_line --index 0 --partial '{"customer_id":"cust-3","currency":"JPY"'
	run script -qec "cqrs-query summary cust-3" /dev/null
	assert_success
	assert_line --index 0 --partial 'customer_id  currency  orders'
}

@test "CSV quotes what needs quoting (RFC 4180); the table shows control characters" {
	run --separate-stderr cqrs-query -f csv sql "SELECT 'a,b' AS x, 'say \"hi\"' AS y,
		'two' || char(10) || 'lines' AS z, NULL AS n, 1.5 AS r"
	assert_success
	assert_output "$(printf 'x,y,z,n,r\r\n"a,b","say ""hi""","two\nlines",,1.5\r')"
	run --separate-stderr cqrs-query -f table sql "SELECT 'two' || char(10) || 'lines' AS z, 7 AS n"
	assert_output - <<-'EOF'
		z           n
		two\nlines  7
	EOF
	run --separate-stderr cqrs-query sql "SELECT 'two' || char(10) || 'lines' AS z, x'00ff' AS b, 0.1 AS r"
	assert_output '{"z":"two\nlines","b":"00ff","r":0.1}'
}

@test "every NDJSON line round-trips through jq" {
	# (but an order's items: they are the event's JSON, as written)
	for q in "orders" "customer cust-1" "summary cust-1" "inventory" "sales" "products" \
		"sales --total"; do
		# shellcheck disable=SC2086 # the query's words
		out=$(cqrs-query $q)
		assert_equal "$(jq -c . <<<"$out")" "$out"
	done
}

@test "a closed pipe ends the output quietly" {
	run bash -c 'cqrs-query sql "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000) SELECT x FROM c" | head -n 1'
	assert_success
	assert_output '{"x":1}'
}

# --- ad-hoc SQL, read-only by construction -------------------------------------------------

@test "sql: a SELECT of one's own, with parameters and the money functions" {
	run --separate-stderr cqrs-query sql 'SELECT order_number, money(total_minor * 2, currency) AS twice
		FROM order_views WHERE customer_id = ?1 AND currency = ?2 ORDER BY 1' cust-1 USD
	assert_success
	assert_output - <<-'EOF'
		{"order_number":"ORD-2026-000001","twice":"139.96"}
		{"order_number":"ORD-2026-000006","twice":"70.00"}
	EOF
	run --separate-stderr cqrs-query sql 'SELECT ?1 AS a' -- -x
	assert_output '{"a":"-x"}'
}

@test "sql: nothing that writes runs, and the views are unchanged" {
	before=$(sqlite3 "$CQRS_VIEWS" .dump)
	for stmt in 'DELETE FROM order_views' \
		"UPDATE order_views SET status = 'X'" \
		'INSERT INTO order_views (order_id) VALUES (1)' \
		'DROP TABLE order_views' \
		'CREATE TABLE t (a)' \
		'WITH x AS (SELECT 1) DELETE FROM order_views' \
		"ATTACH 'other.db' AS o" \
		'PRAGMA query_only = OFF' \
		"VACUUM INTO 'copy.db'" \
		'BEGIN IMMEDIATE'; do
		run --separate-stderr cqrs-query sql "$stmt"
		assert_failure 77
		assert_equal "$stderr" 'cqrs-query: sql: only reading is allowed: cqrs-query never changes the views'
	done
	run --separate-stderr cqrs-query sql 'SELECT 1; DELETE FROM order_views'
	assert_failure 65
	assert_equal "$stderr" 'cqrs-query: sql: one statement at a time'
	assert_equal "$(sqlite3 "$CQRS_VIEWS" .dump)" "$before"
	[ ! -e other.db ]
	[ ! -e copy.db ]
}

@test "sql: a bad statement exits 65 with SQLite's message" {
	run --separate-stderr cqrs-query sql 'SELEC 1'
	assert_failure 65
	assert_equal "$stderr" 'cqrs-query: sql: near "SELEC": syntax error'
	run --separate-stderr cqrs-query sql 'SELECT nope FROM order_views'
	assert_failure 65
	assert_equal "$stderr" 'cqrs-query: sql: no such column: nope'
	run --separate-stderr cqrs-query sql "SELECT minor_units('1.234', 'USD')"
	assert_failure 65
	assert_equal "$stderr" 'cqrs-query: sql: amount 1.234 has more decimals than USD allows (2)'
}

# --- errors -----------------------------------------------------------------------------

@test "no views file exits 66; views without the order tables say which table" {
	run --separate-stderr cqrs-query --views none.db orders
	assert_failure 66
	assert_equal "$stderr" 'cqrs-query: none.db: no such views file (cqrs-project builds it)'
	[ ! -e none.db ]
	cat >mine.yaml <<-'EOF'
		projections:
		  - name: mine
		    tables: [CREATE TABLE mine (a)]
		    on: {OrderCreated: "INSERT INTO mine VALUES (:sequence)"}
	EOF
	cqrs-project --views mine.db --no-default-projections -P mine.yaml
	run --separate-stderr cqrs-query --views mine.db orders
	assert_failure 66
	assert_equal "$stderr" "cqrs-query: mine.db: the views have no table 'order_views' (is its projection loaded by cqrs-project?)"
}

@test "usage errors exit 64" {
	usage_error 'what to query is missing'
	usage_error "unknown query 'order-list' (order, orders, customer, summary, inventory, sales, products or sql)" order-list
	usage_error 'order: the order id or number is missing' order
	usage_error "order: unexpected operand 'b'" order a b
	usage_error '--status does not go with customer' customer c --status PAID
	usage_error '--total does not go with orders' orders --total
	usage_error "--status: not a status: 'LOST' (PENDING, CONFIRMED, PAID, SHIPPED or CANCELLED)" orders --status LOST
	usage_error "--currency: not a currency code: 'US' (three letters)" sales --currency US
	usage_error "--from: not a date (YYYY-MM-DD): '2026-01-16T00:00:00Z'" sales --from 2026-01-16T00:00:00Z
	usage_error "--to: not a date or an RFC 3339 time: 'tomorrow'" orders --to tomorrow
	usage_error "--limit needs a positive count: '0'" orders -n 0
	usage_error '--after and --offset go alone' customer c --after x --offset 1
	usage_error "--after: not a cursor of cqrs-query customer: 'x'" customer c --after x
	usage_error "--format: not a format: 'json' (ndjson, table or csv)" -f json orders
	usage_error "--as-of: not an RFC 3339 time or a sequence: 'noon'" order a --as-of noon
	usage_error 'sql: 2 parameters given, the statement has 1' sql 'SELECT ?1' a b
}

@test "sql: the money functions, exact both ways, rounding half away from zero" {
	run --separate-stderr cqrs-query -f csv sql "SELECT money(-5, 'USD') a, money(-12345, 'KWD') b,
		money(1500, 'JPY') c, money(0, 'EUR') d, mean_minor(5, 2) e, mean_minor(-5, 2) f,
		mean_minor(7, 3) g, mean_minor(1, 0) h, minor_units('1.5', 'USD') i,
		minor_units(29.99, 'USD') j, minor_units(3, 'KWD') k, minor_units(NULL, 'USD') l"
	assert_success
	assert_output "$(printf '%s\r\n' a,b,c,d,e,f,g,h,i,j,k,l -0.05,-12.345,1500,0.00,3,-3,2,,150,2999,3000,)"
	run --separate-stderr cqrs-query sql "SELECT minor_units(29.999, 'USD')"
	assert_failure 65
	assert_equal "$stderr" 'cqrs-query: sql: amount 29.999 has more decimals than USD allows (2)'
	run --separate-stderr cqrs-query sql "SELECT minor_units('1.5', 'JPY')"
	assert_failure 65
	assert_equal "$stderr" 'cqrs-query: sql: amount 1.5 has more decimals than JPY allows (0)'
	run --separate-stderr cqrs-query sql "SELECT money(1, 'usd')"
	assert_failure 65
	assert_equal "$stderr" "cqrs-query: sql: not a currency code: 'usd'"
}
