#!/usr/bin/env bats
# Read-side hardening (issue 9): the projection sandbox, query limits, exact
# arithmetic at the edges, CSV, --follow at rest, the lock, faults at close,
# rebuilding one read model alone, audits of backdated stores, tampered
# events, permissions.

bats_require_minimum_version 1.5.0
load test_helper

eval "common_$(declare -f setup)"
setup() {
	common_setup
	export CQRS_VIEWS="$BATS_TEST_TMPDIR/views.db"
	HISTORY="$FIXTURES/orders-history.ndjson"
}

load_history() {
	cqrs-append -q "$HISTORY"
}

# A projection file $1 whose 'tables' are the lines of stdin (one statement
# each) after a table of its own.
evil() {
	{
		printf 'projections:\n  - name: evil\n    tables:\n'
		printf '      - CREATE TABLE evil (x)\n'
		while IFS= read -r line; do printf '      - %s\n' "$line"; done
		printf '    on:\n      OrderCreated: INSERT INTO evil VALUES (1)\n'
	} >"$1"
}

# A projection file $1 with one handler statement (stdin) for OrderCreated.
evil_handler() {
	{
		printf 'projections:\n  - name: evil\n    tables: CREATE TABLE evil (x)\n'
		printf '    on:\n      OrderCreated: |\n'
		while IFS= read -r line; do printf '        %s\n' "$line"; done
	} >"$1"
}

# --- 1. the projection sandbox ------------------------------------------------

@test "sandbox: VACUUM INTO in 'tables' writes nothing and exits 78" {
	echo "VACUUM INTO '$BATS_TEST_TMPDIR/stolen.db'" | evil evil.yaml
	run --separate-stderr cqrs-project --check -P evil.yaml
	assert_failure 78
	assert_output ''
	assert_equal "$stderr" "cqrs-project: evil.yaml:5:9: projection 'evil', tables: only CREATE TABLE, INDEX, VIEW and TRIGGER (and INSERT of fixed rows) belong in 'tables'"
	[ ! -e stolen.db ]
	# and not by a real run either
	run --separate-stderr cqrs-project -P evil.yaml
	assert_failure 78
	[ ! -e stolen.db ]
	[ ! -e "$CQRS_VIEWS" ] || [ "$(sqlite3 "$CQRS_VIEWS" "SELECT count(*) FROM sqlite_schema WHERE name = 'evil'")" = 0 ]
}

@test "sandbox: VACUUM in a handler is refused at --check" {
	echo "VACUUM INTO '$BATS_TEST_TMPDIR/stolen.db'" | evil_handler evil.yaml
	run --separate-stderr cqrs-project --check -P evil.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: evil.yaml:6:9: projection 'evil', on OrderCreated: only INSERT, UPDATE, DELETE and SELECT may run on an event"
	[ ! -e stolen.db ]
}

@test "sandbox: 'tables' may not write another projection's table" {
	echo "INSERT INTO order_views (order_id) VALUES ('x')" | evil evil.yaml
	run --separate-stderr cqrs-project --check -P evil.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: evil.yaml:5:9: projection 'evil', tables: writes table 'order_views', which projection 'order_views' owns (a projection writes only the tables it creates)"
}

@test "sandbox: 'tables' may not write the checkpoints" {
	echo "UPDATE cqrs_checkpoints SET sequence = 0" | evil evil.yaml
	run --separate-stderr cqrs-project --check -P evil.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: evil.yaml:5:9: projection 'evil', tables: table 'cqrs_checkpoints' belongs to cqrs-project"
}

@test "sandbox: no trigger on another projection's table" {
	echo "CREATE TRIGGER t AFTER INSERT ON order_views BEGIN DELETE FROM order_views; END" | evil evil.yaml
	run --separate-stderr cqrs-project --check -P evil.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: evil.yaml:5:9: projection 'evil', tables: puts a trigger on table 'order_views', which it does not create (a projection indexes and triggers only its own tables)"
}

@test "sandbox: no trigger on the checkpoints" {
	echo "CREATE TRIGGER t AFTER UPDATE ON cqrs_checkpoints BEGIN SELECT 1; END" | evil evil.yaml
	run --separate-stderr cqrs-project --check -P evil.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: evil.yaml:5:9: projection 'evil', tables: puts a trigger on table 'cqrs_checkpoints', which it does not create (a projection indexes and triggers only its own tables)"
}

@test "sandbox: no unique index on another projection's table" {
	echo "CREATE UNIQUE INDEX u ON inventory_views (name)" | evil evil.yaml
	run --separate-stderr cqrs-project --check -P evil.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: evil.yaml:5:9: projection 'evil', tables: puts an index on table 'inventory_views', which it does not create (a projection indexes and triggers only its own tables)"
}

@test "sandbox: a trigger on its own table may not write another's" {
	echo "CREATE TRIGGER t AFTER INSERT ON evil BEGIN DELETE FROM order_views; END" | evil evil.yaml
	run --separate-stderr cqrs-project --check -P evil.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: evil.yaml:7:21: projection 'evil', on OrderCreated: writes table 'order_views', which projection 'order_views' owns (a projection writes only the tables it creates)"
}

@test "sandbox: no ATTACH, no PRAGMA, no DROP" {
	echo "ATTACH '$BATS_TEST_TMPDIR/x.db' AS x" | evil evil.yaml
	run --separate-stderr cqrs-project --check -P evil.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: evil.yaml:5:9: projection 'evil', tables: ATTACH and DETACH are not allowed"
	[ ! -e x.db ]
	echo "PRAGMA writable_schema = ON" | evil evil.yaml
	run --separate-stderr cqrs-project --check -P evil.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: evil.yaml:5:9: projection 'evil', tables: PRAGMA writable_schema is not allowed"
	echo "DROP TABLE order_views" | evil evil.yaml
	run --separate-stderr cqrs-project --check -P evil.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: evil.yaml:5:9: projection 'evil', tables: only CREATE TABLE, INDEX, VIEW and TRIGGER (and INSERT of fixed rows) belong in 'tables'"
}

@test "sandbox: a table of another projection is not adopted with IF NOT EXISTS" {
	load_history
	cqrs-project
	echo "CREATE TABLE IF NOT EXISTS order_views (order_id TEXT)" | evil evil.yaml
	# alone, the file compiles (nothing else is loaded) ...
	run --separate-stderr cqrs-project --check --no-default-projections -P evil.yaml
	assert_success
	# ... but the views hold order_views: it is not this projection's
	before=$(sqlite3 "$CQRS_VIEWS" 'SELECT count(*) FROM order_views')
	run --separate-stderr cqrs-project --no-default-projections -P evil.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: evil.yaml:5:9: projection 'evil', tables: 'order_views' already exists in the views: a projection creates only tables of its own, under new names"
	assert_equal "$(sqlite3 "$CQRS_VIEWS" 'SELECT count(*) FROM order_views')" "$before"
	assert_equal "$(sqlite3 "$CQRS_VIEWS" "SELECT count(*) FROM cqrs_checkpoints WHERE projection = 'evil'")" 0
}

@test "sandbox: fts3_tokenizer is refused in a handler" {
	echo "INSERT INTO evil SELECT fts3_tokenizer('simple')" | evil_handler evil.yaml
	run --separate-stderr cqrs-project --check -P evil.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: evil.yaml:6:9: projection 'evil', on OrderCreated: the function fts3_tokenizer() is not allowed"
}

@test "sandbox: what a projection may do still works (own indexes, triggers, fixed rows, json_each)" {
	cat >mine.yaml <<-'EOF'
		projections:
		  - name: mine
		    tables:
		      - CREATE TABLE mine (id TEXT PRIMARY KEY, n INTEGER AUTOINCREMENT_NOT_HERE)
		      - CREATE TABLE mine_log (id INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT)
		      - CREATE UNIQUE INDEX mine_n ON mine_log (what)
		      - CREATE TRIGGER mine_t AFTER INSERT ON mine BEGIN INSERT INTO mine_log (what) VALUES (new.id); END
		      - CREATE VIEW mine_v AS SELECT count(*) AS c FROM mine
		      - INSERT INTO mine_log (what) VALUES ('start')
		    on:
		      OrderCreated:
		        - INSERT INTO mine SELECT :aggregate_id, count(*) FROM json_each(:data.items)
	EOF
	sed -i 's/ AUTOINCREMENT_NOT_HERE//' mine.yaml
	load_history
	run --separate-stderr cqrs-project -P mine.yaml
	assert_success
	assert_equal "$(sqlite3 "$CQRS_VIEWS" 'SELECT count(*) FROM mine_log')" 8
}

# --- 3. mean_minor at the edge --------------------------------------------------

@test "mean_minor(INT64_MIN, -1) is an SQL error, not an overflow" {
	load_history
	cqrs-project
	run --separate-stderr cqrs-query sql 'SELECT mean_minor(-9223372036854775808, -1)'
	assert_failure 65
	assert_not_signalled
	assert_equal "$stderr" "cqrs-query: sql: mean_minor: integer overflow"
	run --separate-stderr cqrs-query sql 'SELECT mean_minor(-9223372036854775808, 1) AS m'
	assert_success
	assert_output '{"m":-9223372036854775808}'
}

# --- 4. CSV and control characters ---------------------------------------------

@test "CSV: control characters are quoted and escaped, never passed raw" {
	load_history
	cqrs-project
	run --separate-stderr cqrs-query -f csv sql "SELECT 'a' || char(27) || '[31mred' AS t, 'x' || char(0x7f) AS d, 'plain' AS p, 'two' || char(10) || 'lines' AS l"
	assert_success
	printf -v want 't,d,p,l\r\n"a\\x1b[31mred","x\\x7f",plain,"two\nlines"\r'
	assert_equal "$output" "$want"
	[[ "$output" != *$'\e'* ]]
}

# --- 2. limits on queries and handlers, what only reads is allowed ------------

@test "cqrs-query sql: a recursive CTE stops at the time limit with exit 7" {
	load_history
	cqrs-project
	run --separate-stderr cqrs-query --timeout 1 sql 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c'
	assert_failure 7
	assert_output ''
	assert_equal "$stderr" "cqrs-query: sql: stopped: the time limit was reached (--timeout)"
}

@test "cqrs-query sql: randomblob(1e9) stops at the memory limit with exit 7" {
	load_history
	cqrs-project
	run --separate-stderr cqrs-query sql 'SELECT length(randomblob(1e9))'
	assert_failure 7
	assert_equal "$stderr" "cqrs-query: sql: stopped: the memory limit was reached (string or blob too big)"
}

@test "cqrs-query --timeout needs a count of seconds" {
	run --separate-stderr cqrs-query --timeout soon sql 'SELECT 1'
	assert_failure 64
	assert_equal "$stderr" "cqrs-query: --timeout needs a non-negative count: 'soon'"
}

@test "cqrs-query sql: json_each and pragma_table_info only read: allowed" {
	load_history
	cqrs-project
	run --separate-stderr cqrs-query sql "SELECT value FROM json_each('[1,2]')"
	assert_success
	assert_output $'{"value":1}\n{"value":2}'
	run --separate-stderr cqrs-query sql "SELECT name FROM pragma_table_info('inventory_views') WHERE pk"
	assert_success
	assert_output '{"name":"product_id"}'
}

@test "cqrs-query sql: fts3_tokenizer (a heap pointer) is refused with 77" {
	load_history
	cqrs-project
	run --separate-stderr cqrs-query sql "SELECT fts3_tokenizer('simple')"
	assert_failure 77
	assert_output ''
	assert_equal "$stderr" "cqrs-query: sql: the function fts3_tokenizer() is not allowed"
}

@test "cqrs-query sql: setting a pragma is still refused" {
	load_history
	cqrs-project
	run --separate-stderr cqrs-query sql "PRAGMA query_only = 0"
	assert_failure 77
	assert_equal "$stderr" "cqrs-query: sql: only reading is allowed: cqrs-query never changes the views"
}

@test "cqrs-project: a handler that loops stops at the time limit with exit 7, nothing applied" {
	cat >loop.yaml <<-'EOF'
		projections:
		  - name: loop
		    tables: CREATE TABLE loop (n INTEGER)
		    on:
		      OrderCreated:
		        - INSERT INTO loop WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c
	EOF
	load_history
	run --separate-stderr cqrs-project --no-default-projections -P loop.yaml --timeout 1
	assert_failure 7
	assert_equal "$stderr" "cqrs-project: event 7 (OrderCreated): loop.yaml:6: projection 'loop', on OrderCreated: stopped after 1000 ms, the time limit of one event (--timeout)"
	assert_equal "$(sqlite3 "$CQRS_VIEWS" "SELECT sequence FROM cqrs_checkpoints WHERE projection = 'loop'")" 0
	# a rebuild keeps the limit too
	run --separate-stderr cqrs-project --no-default-projections -P loop.yaml --timeout 1 --rebuild
	assert_failure 7
}

# --- 5. --follow at rest --------------------------------------------------------

# CPU ticks (user + system) that process $1 has used.
cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# Waits (at most 20 s) until every checkpoint of the views is at sequence $1.
wait_for_checkpoints() {
	for _ in $(seq 1 $((200 * GUARD_SCALE))); do
		[ "$(sqlite3 "$CQRS_VIEWS" "SELECT count(*) FROM cqrs_checkpoints WHERE sequence < $1" 2>/dev/null)" = 0 ] &&
			[ "$(sqlite3 "$CQRS_VIEWS" 'SELECT count(*) FROM cqrs_checkpoints' 2>/dev/null)" -gt 0 ] && return 0
		sleep 0.1
	done
	return 1
}

@test "--follow sleeps when idle and leaves the lock free: a cron run gets in" {
	load_history
	last=$(sqlite3 "$CQRS_STORE" 'SELECT max(sequence) FROM events')
	cqrs-project --follow 3>&- &
	pid=$!
	wait_for_checkpoints "$last" || { kill "$pid"; fail "the follower did not catch up"; }
	before=$(cpu_ticks "$pid")
	sleep 2 # the idle period measured, not a timing assertion
	after=$(cpu_ticks "$pid")
	# the views sit next to the store (the default layout)
	[ "$((after - before))" -le 5 ] || { kill "$pid"; fail "an idle follower used $((after - before)) ticks in 2 s"; }
	[ ! -e "$CQRS_VIEWS.lock" ] || flock -n "$CQRS_VIEWS.lock" true || { kill "$pid"; fail "an idle follower holds the lock"; }
	# cron runs, --diff and --rebuild get in while it idles
	for _ in 1 2 3; do
		run --separate-stderr cqrs-project
		assert_success
	done
	run --separate-stderr cqrs-project --diff
	assert_success
	run --separate-stderr cqrs-project --rebuild
	assert_success
	# and it still follows
	event 11111111-1111-4111-8111-111111111111 OrderNoted | cqrs-append -q
	wait_for_checkpoints "$((last + 1))" || { kill "$pid"; fail "the follower stopped following"; }
	kill -TERM "$pid"
	wait "$pid"
}

# --- 6. the lock file and busy runs ------------------------------------------------

@test "a busy run exits 75 and says nothing (cron silence), unless -v" {
	load_history
	cqrs-project
	run --separate-stderr flock -n "$CQRS_VIEWS.lock" cqrs-project
	assert_failure 75
	assert_output ''
	assert_equal "$stderr" ''
	run --separate-stderr flock -n "$CQRS_VIEWS.lock" cqrs-project -v
	assert_failure 75
	assert_equal "$stderr" "cqrs-project: another cqrs-project is running on $CQRS_VIEWS (--wait waits for it)"
	run --separate-stderr flock -n "$CQRS_VIEWS.lock" cqrs-project --rebuild
	assert_failure 75
	assert_equal "$stderr" ''
}

@test "a failed run leaves no VIEWS.lock behind, and a left one does not matter" {
	load_history
	cqrs-project
	[ ! -e "$CQRS_VIEWS.lock" ]
	# fails under the lock: the store is gone
	mv "$CQRS_STORE" elsewhere.db
	run --separate-stderr cqrs-project
	assert_failure 66
	[ ! -e "$CQRS_VIEWS.lock" ]
	# fails while applying (the event is parked: 5)
	mv elsewhere.db "$CQRS_STORE"
	cat >bad.yaml <<-'EOF'
		projections:
		  - name: bad
		    tables: CREATE TABLE bad (n INTEGER NOT NULL)
		    on:
		      OrderCreated: INSERT INTO bad VALUES (NULL)
	EOF
	run --separate-stderr cqrs-project -P bad.yaml
	assert_failure 5
	[ ! -e "$CQRS_VIEWS.lock" ]
	# one left by a run killed with SIGKILL is taken as usual
	touch "$CQRS_VIEWS.lock"
	run --separate-stderr cqrs-project
	assert_success
	[ ! -e "$CQRS_VIEWS.lock" ]
}

# --- 8. rebuilding one read model alone ---------------------------------------------

# The tables and checkpoints of every projection but $2, of views file $1.
others() {
	sqlite3 "$1" .dump | grep -v -e event_counts -e '^INSERT INTO cqrs_checkpoints' | sort
	sqlite3 "$1" "SELECT * FROM cqrs_checkpoints WHERE projection != '$2' ORDER BY projection"
}

@test "--rebuild of one projection file leaves the others byte for byte" {
	load_history
	cat >counts.yaml <<-'EOF'
		projections:
		  - name: event_counts
		    tables:
		      - CREATE TABLE event_counts (event_type TEXT PRIMARY KEY, n INTEGER NOT NULL)
		      - CREATE VIEW event_counts_total AS SELECT sum(n) AS n FROM event_counts
		    on:
		      "*":
		        - INSERT INTO event_counts VALUES (:event_type, 1)
		          ON CONFLICT (event_type) DO UPDATE SET n = n + 1
	EOF
	cqrs-project -P counts.yaml
	before=$(others "$CQRS_VIEWS" event_counts)
	order_ckpt=$(sqlite3 "$CQRS_VIEWS" "SELECT * FROM cqrs_checkpoints WHERE projection = 'order_views'")
	# change the projection: it needs a rebuild, of itself alone
	sed -i 's/n = n + 1/n = n + 10/' counts.yaml
	run --separate-stderr cqrs-project -P counts.yaml --no-default-projections
	assert_failure 78
	run --separate-stderr cqrs-project -P counts.yaml --no-default-projections --rebuild
	assert_success
	assert_equal "$stderr" ''
	assert_equal "$(others "$CQRS_VIEWS" event_counts)" "$before"
	assert_equal "$(sqlite3 "$CQRS_VIEWS" "SELECT * FROM cqrs_checkpoints WHERE projection = 'order_views'")" "$order_ckpt"
	assert_equal "$(sqlite3 "$CQRS_VIEWS" "SELECT n FROM event_counts WHERE event_type = 'OrderCreated'")" 61
	assert_equal "$(sqlite3 "$CQRS_VIEWS" 'SELECT n FROM event_counts_total')" "$(( $(sqlite3 "$CQRS_STORE" 'SELECT count(*) FROM events') * 10 - 9 * $(sqlite3 "$CQRS_VIEWS" 'SELECT count(*) FROM event_counts') ))"
	# and both go on from there
	run --separate-stderr cqrs-project -P counts.yaml
	assert_success
	run --separate-stderr cqrs-project -P counts.yaml --diff
	assert_success
}

# --- 10. events changed in the store ---------------------------------------------

@test "an event whose bytes were changed in the store stops cqrs-project with 65, nothing applied" {
	load_history
	seq=$(sqlite3 "$CQRS_STORE" "SELECT min(sequence) FROM events WHERE event_type = 'OrderCreated'")
	sqlite3 "$CQRS_STORE" "DROP TRIGGER IF EXISTS events_no_update; UPDATE events SET data = replace(data, '29.99', '0.01') WHERE sequence = $seq"
	run --separate-stderr cqrs-project
	assert_failure 65
	assert_equal "$stderr" "cqrs-project: event $seq (OrderCreated): its bytes do not match its hash: it was changed after it was appended (cqrs-read --verify checks the store); nothing of this batch was applied"
	assert_equal "$(sqlite3 "$CQRS_VIEWS" 'SELECT count(*) FROM order_views')" 0
	assert_equal "$(sqlite3 "$CQRS_VIEWS" 'SELECT max(sequence) FROM cqrs_checkpoints')" 0
	# a rebuild and a history file refuse it too
	run --separate-stderr cqrs-project --rebuild
	assert_failure 65
	run --separate-stderr cqrs-project -o history.db
	assert_failure 65
	[ ! -e history.db ]
}

@test "an event changed after the views applied it is found by the next rebuild" {
	load_history
	cqrs-project
	last=$(sqlite3 "$CQRS_STORE" 'SELECT max(sequence) FROM events')
	sqlite3 "$CQRS_STORE" "DROP TRIGGER IF EXISTS events_no_update; UPDATE events SET metadata = '{\"user_id\":\"mallory\"}' WHERE sequence = $last"
	run --separate-stderr cqrs-project --rebuild
	assert_failure 65
	assert_equal "$stderr" "cqrs-project: event $last ($(sqlite3 "$CQRS_STORE" "SELECT event_type FROM events WHERE sequence = $last")): its bytes do not match its hash: it was changed after it was appended (cqrs-read --verify checks the store); nothing of this batch was applied"
}

# --- 9. history as of a time, when times do not grow with the sequence -----------

@test "-o --as-of selects by timestamp: a backdated event is in, later ones are out" {
	load_history
	# imported late, dated early (cqrs(7) allows it)
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderNoted","data":{},"timestamp":"2026-01-15T00:00:01Z"}\n' \
		11111111-1111-4111-8111-111111111111 | cqrs-append -q
	cat >seen.yaml <<-'EOF'
		projections:
		  - name: seen
		    tables: CREATE TABLE seen (sequence INTEGER PRIMARY KEY)
		    on:
		      "*": INSERT INTO seen VALUES (:sequence)
	EOF
	asof=2026-01-16T00:00:00Z
	run --separate-stderr cqrs-project -P seen.yaml -o noon.db --as-of "$asof"
	assert_success
	assert_equal "$stderr" ''
	want=$(sqlite3 "$CQRS_STORE" "SELECT group_concat(sequence) FROM (SELECT sequence FROM events WHERE timestamp <= '2026-01-16T00:00:00.000000Z' ORDER BY sequence)")
	assert_equal "$(sqlite3 noon.db 'SELECT group_concat(sequence) FROM (SELECT sequence FROM seen ORDER BY sequence)')" "$want"
	# the backdated event is in, and events after the time are not
	last=$(sqlite3 "$CQRS_STORE" 'SELECT max(sequence) FROM events')
	assert_equal "$(sqlite3 noon.db "SELECT count(*) FROM seen WHERE sequence = $last")" 1
	[ "$(sqlite3 noon.db 'SELECT count(*) FROM seen')" -lt "$last" ]
	# a time before every event: empty views, still exit 0
	run --separate-stderr cqrs-project -o empty.db --as-of 2000-01-01T00:00:00Z
	assert_success
	assert_equal "$(sqlite3 empty.db 'SELECT count(*) FROM order_views')" 0
}

# --- 11. permissions ------------------------------------------------------------------

# Runs a tool as a user who is not root (root reads and writes anything):
# as nobody when the tests run as root, in a directory nobody may use.
as_user() {
	if [ "$(id -u)" = 0 ]; then
		setpriv --reuid=nobody --regid=nogroup --clear-groups \
			env PATH="$PATH" CQRS_STORE="$CQRS_STORE" CQRS_VIEWS="$CQRS_VIEWS" \
			CQRS_SHAREDIR="$CQRS_SHAREDIR" HOME="$HOME" "$@"
	else
		"$@"
	fi
}

# A directory the user of as_user owns, with a store and views built there.
user_dir() {
	if [ "$(id -u)" = 0 ]; then
		d=$BATS_TEST_TMPDIR
		while [ "$d" != / ] && [ "$d" != "$(dirname "$BATS_RUN_TMPDIR")" ]; do
			chmod o+x "$d"
			d=$(dirname "$d")
		done
		mkdir shop
		chown nobody:nogroup shop
	else
		mkdir shop
	fi
	export CQRS_STORE=$PWD/shop/events.db CQRS_VIEWS=$PWD/shop/views.db
	as_user cqrs-append -q "$HISTORY"
	as_user cqrs-project
}

@test "an unreadable views file: cqrs-query exits 77 and says permission" {
	user_dir
	as_user chmod 000 "$CQRS_VIEWS"
	run --separate-stderr as_user cqrs-query orders
	assert_failure 77
	assert_output ''
	assert_equal "$stderr" "cqrs-query: $CQRS_VIEWS: cannot read the views: permission denied"
}

@test "an unwritable views file: cqrs-project exits 77 and says permission" {
	user_dir
	event 11111111-1111-4111-8111-111111111111 OrderNoted | as_user cqrs-append -q
	as_user chmod 444 "$CQRS_VIEWS"
	run --separate-stderr as_user cqrs-project
	assert_failure 77
	assert_equal "$stderr" "cqrs-project: $CQRS_VIEWS: cannot write the views: permission denied"
	# readers still read
	run --separate-stderr as_user cqrs-query orders -n 1
	assert_success
}

@test "a views directory that is not writable: cqrs-project exits 77 with the reason" {
	user_dir
	# the views in a directory of their own, apart from the store
	as_user mkdir shop/v
	as_user mv "$CQRS_VIEWS" shop/v/
	export CQRS_VIEWS=$PWD/shop/v/views.db
	as_user chmod 555 shop/v
	run --separate-stderr as_user cqrs-project
	assert_failure 77
	assert_equal "$stderr" "cqrs-project: $CQRS_VIEWS.lock: cannot create the lock file: permission denied (the directory of the views is not writable)"
	# with the lock file there, the views' own check says it
	as_user chmod 755 shop/v
	as_user touch "$CQRS_VIEWS.lock"
	as_user chmod 555 shop/v
	run --separate-stderr as_user cqrs-project
	assert_failure 77
	assert_equal "$stderr" "cqrs-project: $CQRS_VIEWS: cannot write in $PWD/shop/v, the directory of the views (their -wal and -shm files go next to them): permission denied"
	as_user chmod 755 shop/v
}

# --- 7. write and sync failures at close -------------------------------------------

FAULT_LIB="${CQRS_TOP_BUILDDIR:?}/tests/fault/libfault.so"

faulty() {
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
		LD_PRELOAD="$FAULT_LIB" "$@"
}

# How many fsync and fdatasync calls "$@" makes: a preloaded counter,
# built here (the fault injector does not count).
count_syncs() {
	if [ ! -e synccount.so ]; then
		cat >synccount.c <<-'EOF'
			#define _GNU_SOURCE
			#include <dlfcn.h>
			#include <stdio.h>
			#include <stdlib.h>
			static long n;
			int fsync(int fd)
			{
				int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
				n++;
				return real(fd);
			}
			int fdatasync(int fd)
			{
				int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
				n++;
				return real(fd);
			}
			__attribute__((destructor)) static void report(void)
			{
				FILE *f = fopen(getenv("SYNC_COUNT_FILE"), "w");
				if (f != NULL) {
					fprintf(f, "%ld\n", n);
					fclose(f);
				}
			}
		EOF
		cc -shared -fPIC -o synccount.so synccount.c -ldl || fail "cannot build the sync counter (cc is needed)"
	fi
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
		SYNC_COUNT_FILE="$PWD/syncs" LD_PRELOAD="$PWD/synccount.so" "$@" >/dev/null 2>&1 ||
		fail "the counted run failed"
	cat syncs
}

@test "every injected sync failure of a run, to its last at close, exits 74" {
	load_history
	cqrs-read >/dev/null # the store's WAL is folded in: runs below do the same syncs
	n=$(count_syncs cqrs-project)
	[ "$n" -ge 3 ] || fail "only $n syncs counted"
	for i in $(seq 1 "$n"); do
		rm -f "$CQRS_VIEWS" "$CQRS_VIEWS-wal" "$CQRS_VIEWS-shm"
		CQRS_FAULT_FSYNC=$i run --separate-stderr faulty cqrs-project
		[ "$status" -eq 74 ] || fail "sync $i of $n failed and cqrs-project exited $status: $stderr"
		# and the views are sound: the next run finishes the work
		run --separate-stderr cqrs-project
		assert_success
		run --separate-stderr cqrs-project --diff
		assert_success
	done
}

@test "every injected sync failure of --rebuild exits 74, and the views stay whole" {
	load_history
	cqrs-project
	cp "$CQRS_VIEWS" views.keep
	n=$(count_syncs cqrs-project --rebuild)
	[ "$n" -ge 2 ] || fail "only $n syncs counted"
	for i in $(seq 1 "$n"); do
		# each from the same start, so that it makes the same syncs
		rm -f "$CQRS_VIEWS-wal" "$CQRS_VIEWS-shm"
		cp views.keep "$CQRS_VIEWS"
		CQRS_FAULT_FSYNC=$i run --separate-stderr faulty cqrs-project --rebuild
		[ "$status" -eq 74 ] || fail "sync $i of $n failed and --rebuild exited $status: $stderr"
		run --separate-stderr cqrs-project --diff
		assert_success
	done
}

# --- 12. one YAML loader: FILE:LINE:COLUMN ------------------------------------------

@test "projection files: every problem is reported as file:line:column" {
	printf 'projections:\n  - name: x\n    tables: |\n      CREATE TABLE x (a)\n    on:\n      OrderCreated: |\n        INSERT INTO x\n          VALUES (:bad)\n' >b.yaml
	run --separate-stderr cqrs-project --check -P b.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: b.yaml:8:19: projection 'x', on OrderCreated: unknown parameter ':bad' (known: :sequence, :event_id, :aggregate_id, :aggregate_type, :aggregate_version, :event_type, :event_version, :timestamp, :data, :data.FIELD, :metadata, :metadata.FIELD)"
	printf 'projections: *x\n' >b.yaml
	run --separate-stderr cqrs-project --check -P b.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: b.yaml:1:14: aliases (*name) are not supported"
	printf -- '---\nprojections: []\n---\nb: 2\n' >b.yaml
	run --separate-stderr cqrs-project --check -P b.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: b.yaml:3:1: one YAML document per file"
	printf 'projections:\n  - name: x\n    name: y\n' >b.yaml
	run --separate-stderr cqrs-project --check -P b.yaml
	assert_failure 78
	assert_equal "$stderr" "cqrs-project: b.yaml:3:5: duplicate key 'name' (first on line 2)"
}

# --- the views as witnesses, and files someone else could have planted ------

@test "a store behind the views' checkpoints is exit 6, and nothing is applied" {
	load_history
	cqrs-project
	n=$(cqrs-read | wc -l)
	# the same history, cut short: a store rolled back under the views
	cqrs-read --to $((n - 2)) | CQRS_STORE="$BATS_TEST_TMPDIR/short.db" cqrs-append -q
	cp views.db before.db
	run --separate-stderr cqrs-project -s short.db
	assert_failure 6
	assert_regex "$stderr" "^cqrs-project: $CQRS_VIEWS: the store is behind the checkpoint of projection 'order_views': it ends at sequence $((n - 2)), before sequence $n \\(hash [0-9a-f]{64}\\); it was rolled back or damaged$"
	cmp views.db before.db
}

@test "a store of the same length but another history is exit 6 too" {
	load_history
	cqrs-project
	n=$(cqrs-read | wc -l)
	cqrs-read --to $((n - 1)) | CQRS_STORE="$BATS_TEST_TMPDIR/other.db" cqrs-append -q
	cqrs-read --from "$n" | jq -c 'del(.sequence, .hash, .timestamp, .event_id)' |
		CQRS_STORE="$BATS_TEST_TMPDIR/other.db" cqrs-append -q
	run --separate-stderr cqrs-project -s other.db
	assert_failure 6
	assert_regex "$stderr" "is not the one recorded \\(hash [0-9a-f]{64}\\); it was rolled back and written again, or replaced$"
}

@test "views, their -wal or their lock that others could change are refused with 77" {
	load_history
	cqrs-project
	chmod 666 views.db
	run --separate-stderr cqrs-project
	assert_failure 77
	assert_regex "$stderr" "views.db: writable by others \\(mode 0666\\): someone else could have changed it$"
	run --separate-stderr cqrs-query orders
	assert_failure 77
	chmod 600 views.db
	ln -s /etc/passwd views.db.lock
	run --separate-stderr cqrs-project
	assert_failure 77
	assert_regex "$stderr" "views.db.lock"
	rm views.db.lock
	run cqrs-project
	assert_success
}

@test "views or a saga lock planted by another user are refused with 77" {
	[ "$(id -u)" = 0 ] || fail "needs root to plant files as another user"
	load_history
	cqrs-project
	chown nobody views.db
	run --separate-stderr cqrs-project
	assert_failure 77
	assert_regex "$stderr" "views.db: file owned by nobody, not by root: a store belongs to the user who writes it$"
	chown root views.db
	touch events.db.saga.lock
	chown nobody events.db.saga.lock
	run --separate-stderr cqrs-saga run
	assert_failure 77
	assert_regex "$stderr" "events.db.saga.lock: file owned by nobody"
}
