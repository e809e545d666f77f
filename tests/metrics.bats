#!/usr/bin/env bats
# Metrics written by the tools themselves (cqrs-metrics(7)): the values of
# known workloads once folded, counts kept when many tools write and fold
# at once, the journal (the fold interval, lines cut short, a folder that
# died), the files' modes and refusals, promtool, node_exporter's textfile
# collector, and the Grafana dashboard's queries.

load saga_helper

setup() {
	LC_ALL=C TZ=UTC
	export LC_ALL TZ HOME="$BATS_TEST_TMPDIR/home"
	mkdir -p "$HOME"
	unset XDG_DATA_HOME CQRS_METRICS_DIR CQRS_METRICS_PERIOD CQRS_METRICS_FOLD
	export CQRS_STORE="$BATS_TEST_TMPDIR/events.db" CQRS_VIEWS="$BATS_TEST_TMPDIR/views.db"
	# the PostgreSQL leg of the matrix: the store in a schema of its own
	on_sqlite || CQRS_STORE=$(pg_store "t$BATS_TEST_NUMBER")
	GUARD_SCALE=1
	[ -z "${CQRS_UNDER_VALGRIND:-}" ] || GUARD_SCALE=20
	export CQRS_BUSY_TIMEOUT=$((10000 * GUARD_SCALE))
	cd "$BATS_TEST_TMPDIR" || return 1
	M="$BATS_TEST_TMPDIR/metrics"
	mkdir -m 755 "$M"
}

teardown() {
	if [ -n "${EXPORTER_PID:-}" ]; then
		kill "$EXPORTER_PID" 2>/dev/null || true
		wait "$EXPORTER_PID" 2>/dev/null || true
	fi
	if [ -n "${FOLLOW_PID:-}" ]; then
		kill "$FOLLOW_PID" 2>/dev/null || true
		wait "$FOLLOW_PID" 2>/dev/null || true
	fi
}

# value FILE SAMPLE: the value of one sample line (name{labels}), or
# "absent"
value() {
	awk -v k="$2" '$1 == k { print $2; found = 1 } END { if (!found) print "absent" }' "$M/$1"
}

# fold: the collector folds every journal into its .prom file; it
# reports on the store too (status 0 to 2 here), and says nothing on
# stderr
fold() {
	run --separate-stderr cqrs-health --textfile "$M" --format ndjson
	[ "$status" -le 2 ] && [ -z "$stderr" ] ||
		fail "cqrs-health --textfile: status $status: $stderr"
	run find "$M" -name '.cqrs_*.journal*'
	assert_output ""
}

# journal_lines TOOL: how many lines the tool's journal holds
journal_lines() {
	if [ -e "$M/.cqrs_$1.journal" ]; then wc -l <"$M/.cqrs_$1.journal"; else echo 0; fi
}

PRODUCT=3c9a7b1e-4d2f-4e8a-b6c5-0f1e2d3c4b5a
UNKNOWN=11111111-2222-4333-8444-555555555555
ADDRESS='Ada,1 Main St,Springfield,12345,US'

create_order() { # create_order PRODUCT [options]: one CreateOrder, result line out
	local p=$1
	shift
	cqrs-command "$@" create-order --customer cust-1 --item "$p:1:9.99" --currency USD \
		--ship-to "$ADDRESS"
}

@test "without metrics asked, no tool writes a metrics file" {
	cqrs-command -q register-product --product "$PRODUCT" --sku S --name W --quantity 5
	run create_order "$PRODUCT"
	assert_success
	cqrs-project
	run find "$BATS_TEST_TMPDIR" -name '*.prom*' -o -name '*.journal*'
	assert_output ""
}

@test "cqrs-command: 5 accepted and 2 rejected CreateOrder, by type and result" {
	export CQRS_METRICS_DIR="$M"
	cqrs-command -q register-product --product "$PRODUCT" --sku S --name W --quantity 50
	for _ in 1 2 3 4 5; do create_order "$PRODUCT" -q; done
	for _ in 1 2; do
		run create_order "$UNKNOWN" -q
		assert_failure 4
	done
	fold
	f=cqrs_command.prom
	h=cqrs_command_duration_seconds
	assert_equal "$(value $f "${h}_count{type=\"CreateOrder\",result=\"accepted\"}")" 5
	assert_equal "$(value $f "${h}_count{type=\"CreateOrder\",result=\"rejected\"}")" 2
	assert_equal "$(value $f "${h}_count{type=\"RegisterProduct\",result=\"accepted\"}")" 1
	assert_equal "$(value $f "${h}_bucket{type=\"CreateOrder\",result=\"accepted\",le=\"+Inf\"}")" 5
	assert_equal "$(value $f "${h}_bucket{type=\"CreateOrder\",result=\"accepted\",le=\"60\"}")" 5
	# every event the store holds came from cqrs-command
	assert_equal "$(value $f 'cqrs_events_appended_total{tool="cqrs-command"}')" \
		"$(stored_count)"
	run grep -c '^# TYPE cqrs_command_duration_seconds histogram$' "$M/$f"
	assert_output 1
	# the sum is a duration: positive, below a minute for seven commands
	run awk -v k="${h}_sum{type=\"CreateOrder\",result=\"accepted\"}" \
		'$1 == k { exit !($2 > 0 && $2 < 60) }' "$M/$f"
	assert_success
}

@test "cqrs-command: a batch, a conflict given up on and a bad command are timed by result" {
	export CQRS_METRICS_DIR="$M"
	cqrs-command -q register-product --product "$PRODUCT" --sku S --name W --quantity 50
	{
		for i in 1 2 3; do
			printf '{"command_id":"c%s","type":"ReplenishStock","product_id":"%s","quantity":1}\n' "$i" "$PRODUCT"
		done
		echo '{"type":"ReplenishStock"}'
	} >batch.ndjson
	run cqrs-command -q batch.ndjson
	assert_failure 65
	CQRS_TEST_CONFLICTS=10 run cqrs-command -q replenish-stock --product "$PRODUCT" --quantity 1
	assert_failure 3
	fold
	h=cqrs_command_duration_seconds
	assert_equal "$(value cqrs_command.prom "${h}_count{type=\"ReplenishStock\",result=\"accepted\"}")" 3
	assert_equal "$(value cqrs_command.prom "${h}_count{type=\"ReplenishStock\",result=\"error\"}")" 1
	assert_equal "$(value cqrs_command.prom "${h}_count{type=\"ReplenishStock\",result=\"conflict\"}")" 1
	# a dry run stores nothing and counts nothing
	run cqrs-command -n -q replenish-stock --product "$PRODUCT" --quantity 1
	assert_success
	assert_equal "$(journal_lines command)" 0
	assert_equal "$(value cqrs_command.prom "${h}_count{type=\"ReplenishStock\",result=\"accepted\"}")" 3
}

@test "cqrs-append: events appended and committed, a dry run not" {
	export CQRS_METRICS_DIR="$M"
	for i in 1 2 3 4; do event "$(printf '00000000-0000-4000-8000-%012d' "$i")"; done >four.ndjson
	cqrs-append -q four.ndjson
	cqrs-append -q -n four.ndjson
	event 00000000-0000-4000-8000-000000000005 | CQRS_METRICS_FOLD=3600 cqrs-append -q
	run stat -c %a "$M/cqrs_append.prom" "$M/.cqrs_append.prom.lock" "$M/.cqrs_append.journal"
	assert_output $'644\n600\n600'
	fold
	assert_equal "$(value cqrs_append.prom 'cqrs_events_appended_total{tool="cqrs-append"}')" 5
}

@test "cqrs-project: K events applied per projection, their lag, and a rebuild of K events" {
	cqrs-command -q register-product --product "$PRODUCT" --sku S --name W --quantity 50
	for _ in 1 2 3; do create_order "$PRODUCT" -q; done
	k=$(stored_count)
	cqrs-project --metrics-dir "$M"
	fold
	f=cqrs_project.prom
	for p in order_views customer_order_summary inventory_views sales_analytics; do
		assert_equal "$(value $f "cqrs_projection_events_total{projection=\"$p\",result=\"applied\"}")" "$k"
		assert_equal "$(value $f "cqrs_projection_event_lag_seconds_count{projection=\"$p\"}")" "$k"
		assert_equal "$(value $f "cqrs_projection_event_lag_seconds_bucket{projection=\"$p\",le=\"+Inf\"}")" "$k"
	done
	# nothing new: nothing counted, the file unchanged
	before=$(cat "$M/$f")
	cqrs-project --metrics-dir "$M"
	assert_equal "$(cat "$M/$f")" "$before"
	cqrs-project --metrics-dir "$M" --rebuild
	cqrs-project --metrics-dir "$M" --rebuild
	fold
	assert_equal "$(value $f 'cqrs_replay_events_total{projection="order_views"}')" $((2 * k))
	assert_equal "$(value $f 'cqrs_projection_events_total{projection="order_views",result="applied"}')" "$k"
	run awk '$1 == "cqrs_replay_events_per_second{projection=\"sales_analytics\"}" { exit !($2 > 0) }
		$1 == "cqrs_replay_duration_seconds_total{projection=\"sales_analytics\"}" { d = $2 }
		END { if (!(d > 0)) exit 1 }' "$M/$f"
	assert_success
}

@test "cqrs-project: a parked event is counted as parked" {
	# two orders of one order number: the second cannot be applied
	for i in 1 2; do event "00000000-0000-4000-8000-00000000000$i"; done | cqrs-append -q
	run cqrs-project --metrics-dir "$M"
	assert_failure 5
	fold
	assert_equal "$(value cqrs_project.prom 'cqrs_projection_events_total{projection="order_views",result="parked"}')" 1
	assert_equal "$(value cqrs_project.prom 'cqrs_projection_events_total{projection="order_views",result="applied"}')" 1
}

# wait_for_applied N: polls (a guard against a hang, not a measure) until
# cqrs_project.prom counts N events applied to order_views
wait_for_applied() {
	local i k='cqrs_projection_events_total{projection="order_views",result="applied"}'
	for ((i = 0; i < 300 * GUARD_SCALE; i++)); do
		[ -f "$M/cqrs_project.prom" ] && [ "$(value cqrs_project.prom "$k")" = "$1" ] && return 0
		sleep 0.1
	done
	fail "cqrs_project.prom does not count $1 events applied: $(cat follow.err "$M/cqrs_project.prom")"
}

@test "cqrs-project --follow merges every CQRS_METRICS_PERIOD seconds, not only at exit" {
	event 00000000-0000-4000-8000-000000000001 UnknownThing '{}' | cqrs-append -q
	CQRS_METRICS_PERIOD=0 cqrs-project --follow --metrics-dir "$M" 2>follow.err &
	FOLLOW_PID=$!
	wait_for_applied 1
	event 00000000-0000-4000-8000-000000000002 UnknownThing '{}' | cqrs-append -q
	wait_for_applied 2
	kill -TERM "$FOLLOW_PID"
	wait "$FOLLOW_PID"
	FOLLOW_PID=
	# each merged once: the exit adds nothing twice
	assert_equal "$(value cqrs_project.prom 'cqrs_projection_events_total{projection="order_views",result="applied"}')" 2
}

@test "cqrs-query: answered queries timed by name, a failed one not" {
	event 00000000-0000-4000-8000-000000000001 | cqrs-append -q
	cqrs-project
	export CQRS_METRICS_DIR="$M"
	cqrs-query orders >/dev/null
	cqrs-query orders >/dev/null
	cqrs-query sql 'SELECT 1' >/dev/null
	run cqrs-query order 00000000-0000-4000-8000-000000000009
	assert_failure 1
	run cqrs-query sql 'DELETE FROM order_views'
	assert_failure 77
	fold
	f=cqrs_query.prom
	assert_equal "$(value $f 'cqrs_query_duration_seconds_count{query="orders"}')" 2
	assert_equal "$(value $f 'cqrs_query_duration_seconds_count{query="sql"}')" 1
	assert_equal "$(value $f 'cqrs_query_duration_seconds_count{query="order"}')" 1
}

@test "cqrs-saga run: N completed and M compensated, started N + M" {
	sqlite_only "sagas run on the SQLite store alone today (cqrs-postgres(7))"
	saga_setup
	for n in 1 2 3; do order "$n"; done
	for n in 4 5; do order "$n" cust-bad; done
	PAYMENT_GATEWAY_DECLINE=cust-bad run cqrs-saga run --metrics-dir "$M"
	assert_success
	fold
	f=cqrs_saga.prom
	assert_equal "$(value $f 'cqrs_saga_started_total{saga="order"}')" 5
	assert_equal "$(value $f 'cqrs_saga_finished_total{saga="order",outcome="completed"}')" 3
	assert_equal "$(value $f 'cqrs_saga_finished_total{saga="order",outcome="compensated"}')" 2
	assert_equal "$(value $f 'cqrs_saga_finished_total{saga="order",outcome="failed"}')" absent
	# the saga's commands are its own: not in cqrs-command's histogram
	run grep -c cqrs_command_duration_seconds "$M/$f"
	assert_output 0
	run grep -c '^cqrs_events_appended_total{tool="cqrs-saga"} [1-9]' "$M/$f"
	assert_output 1
}

@test "800 runs, 8 at a time, folding as they go: every _count and _total is what ran" {
	cqrs-command -q register-product --product "$PRODUCT" --sku S --name W
	cqrs-project
	export CQRS_METRICS_DIR="$M"
	# cqrs-command folds after every run, while the others append; every
	# tenth round the collector folds among them
	for ((round = 0; round < 100; round++)); do
		for _ in 1 2 3; do
			CQRS_METRICS_FOLD=0 cqrs-command -q confirm-order --order "$UNKNOWN" &
			cqrs-query sql 'SELECT 1' >/dev/null &
		done
		for i in 1 2; do
			event "$(printf '00000000-0000-4000-8000-%06d%06d' "$round" "$i")" | cqrs-append -q &
		done
		if ((round % 10 == 0)); then cqrs-health --textfile "$M" >/dev/null 2>>collector.err & fi
		wait
	done
	unset CQRS_METRICS_DIR
	fold
	run cat collector.err
	assert_output ""
	assert_equal "$(value cqrs_command.prom 'cqrs_command_duration_seconds_count{type="ConfirmOrder",result="rejected"}')" 300
	assert_equal "$(value cqrs_command.prom 'cqrs_command_duration_seconds_bucket{type="ConfirmOrder",result="rejected",le="+Inf"}')" 300
	assert_equal "$(value cqrs_query.prom 'cqrs_query_duration_seconds_count{query="sql"}')" 300
	assert_equal "$(value cqrs_append.prom 'cqrs_events_appended_total{tool="cqrs-append"}')" 200
	assert_equal "$(stored_count)" 201
}

@test "--metrics-dir wins over CQRS_METRICS_DIR; an empty one is a usage error" {
	mkdir -m 755 other
	CQRS_METRICS_DIR="$BATS_TEST_TMPDIR/other" run create_order "$UNKNOWN" --metrics-dir "$M"
	assert_failure 4
	[ -f "$M/cqrs_command.prom" ]
	[ ! -e other/cqrs_command.prom ]
	run --separate-stderr cqrs-command --metrics-dir '' confirm-order --order "$UNKNOWN"
	assert_failure 64
	assert_equal "$stderr" "cqrs-command: --metrics-dir needs a directory"
	# CQRS_METRICS_DIR empty: not asked
	CQRS_METRICS_DIR= run create_order "$UNKNOWN"
	assert_failure 4
}

# What a failing metrics write must not change: the result line and the
# exit status of the same rejected command.
same_run_with_metrics_dir() {
	run --separate-stderr cqrs-command --command-id fixed -q confirm-order --order "$UNKNOWN" \
		--metrics-dir "$1"
	assert_failure 4
	assert_output ""
}

@test "a metrics directory that does not exist: one warning, the command as without" {
	same_run_with_metrics_dir "$BATS_TEST_TMPDIR/missing"
	assert_equal "$stderr" "cqrs-command: metrics: $BATS_TEST_TMPDIR/missing: No such file or directory (the run itself is not affected)"
	assert_equal "$(store_query 'SELECT count(*) FROM processed_messages')" 1
}

@test "a metrics directory others may write is refused" {
	chmod 777 "$M"
	same_run_with_metrics_dir "$M"
	assert_equal "$stderr" "cqrs-command: metrics: $M: writable by others and not sticky: refused (the run itself is not affected)"
	[ ! -e "$M/cqrs_command.prom" ]
}

@test "a directory opened to others later: its journal is still written, the fold refuses" {
	# the directory is checked when a journal is begun and at every fold;
	# a journal already there is held to the rules itself (tests below)
	export CQRS_METRICS_FOLD=3600
	same_run_with_metrics_dir "$M" # the first journal: folded at once
	same_run_with_metrics_dir "$M" # begins the next
	assert_equal "$stderr" ""
	assert_equal "$(journal_lines command)" 1
	chmod 777 "$M"
	same_run_with_metrics_dir "$M"
	assert_equal "$stderr" ""
	assert_equal "$(journal_lines command)" 2
	CQRS_METRICS_FOLD=0 same_run_with_metrics_dir "$M"
	assert_equal "$stderr" "cqrs-command: metrics: $M: writable by others and not sticky: refused (the run itself is not affected)"
	assert_equal "$(journal_lines command)" 3
	assert_equal "$(value cqrs_command.prom 'cqrs_command_duration_seconds_count{type="ConfirmOrder",result="rejected"}')" 1
}

@test "a lock file planted by another user is refused" {
	[ "$(id -u)" = 0 ] || fail "needs root to give the lock file to nobody (uid $(id -u))"
	touch "$M/.cqrs_command.prom.lock"
	chown nobody "$M/.cqrs_command.prom.lock"
	same_run_with_metrics_dir "$M"
	assert_equal "$stderr" "cqrs-command: metrics: $M/.cqrs_command.prom.lock: file owned by nobody, not by root: a store belongs to the user who writes it (the run itself is not affected)"
	[ ! -e "$M/cqrs_command.prom" ]
}

@test "a lock file others may write, or a link in its place, is refused" {
	install -m 666 /dev/null "$M/.cqrs_command.prom.lock"
	same_run_with_metrics_dir "$M"
	assert_equal "$stderr" "cqrs-command: metrics: $M/.cqrs_command.prom.lock: writable by others (mode 0666): someone else could have changed it (the run itself is not affected)"
	rm "$M/.cqrs_command.prom.lock"
	ln -s "$BATS_TEST_TMPDIR/elsewhere" "$M/.cqrs_command.prom.lock"
	# the journal the refused fold left was begun just now: not due again
	# for CQRS_METRICS_FOLD seconds
	CQRS_METRICS_FOLD=0 same_run_with_metrics_dir "$M"
	assert_equal "$stderr" "cqrs-command: metrics: $M/.cqrs_command.prom.lock: Too many levels of symbolic links (the run itself is not affected)"
	[ ! -e "$BATS_TEST_TMPDIR/elsewhere" ]
	[ ! -e "$M/cqrs_command.prom" ]
}

@test "a line of the file that is not a sample of the tool is dropped with a warning" {
	same_run_with_metrics_dir "$M"
	assert_equal "$stderr" ""
	sed -i '1i garbage{x="1"} 3' "$M/cqrs_command.prom"
	export CQRS_METRICS_FOLD=0 # the run folds, whatever the age of the file
	same_run_with_metrics_dir "$M"
	assert_equal "$stderr" "cqrs-command: metrics: $M/cqrs_command.prom:1: not a sample this tool writes: dropped"
	run grep -c garbage "$M/cqrs_command.prom"
	assert_output 0
	assert_equal "$(value cqrs_command.prom 'cqrs_command_duration_seconds_count{type="ConfirmOrder",result="rejected"}')" 2
}

# --- the journal --------------------------------------------------------------

REJECTED='cqrs_command_duration_seconds_count{type="ConfirmOrder",result="rejected"}'

rejected_run() { # one ConfirmOrder of an unknown order: rejected, counted
	run cqrs-command -q confirm-order --order "$UNKNOWN"
	assert_failure 4
}

@test "within the fold interval a run only appends to the journal; when due it folds" {
	export CQRS_METRICS_DIR="$M"
	rejected_run # no .prom file yet: folded at once
	assert_equal "$(value cqrs_command.prom "$REJECTED")" 1
	assert_equal "$(journal_lines command)" 0
	cp -p "$M/cqrs_command.prom" before.prom
	export CQRS_METRICS_FOLD=3600
	rejected_run
	rejected_run
	assert_equal "$(journal_lines command)" 2
	cmp "$M/cqrs_command.prom" before.prom
	run stat -c '%a %Y' "$M/cqrs_command.prom"
	assert_output "$(stat -c '%a %Y' before.prom)"
	export CQRS_METRICS_FOLD=0
	rejected_run
	assert_equal "$(journal_lines command)" 0
	assert_equal "$(value cqrs_command.prom "$REJECTED")" 4
}

@test "a journal older than the fold interval is folded by the next run, however new the .prom file" {
	export CQRS_METRICS_DIR="$M"
	rejected_run # no .prom file yet: folded at once
	CQRS_METRICS_FOLD=3600 rejected_run
	assert_equal "$(journal_lines command)" 1
	# the journal's birth time, not its writes, nor the .prom file's age
	sleep 2
	touch "$M/cqrs_command.prom"
	CQRS_METRICS_FOLD=1 rejected_run
	assert_equal "$(journal_lines command)" 0
	assert_equal "$(value cqrs_command.prom "$REJECTED")" 3
}

@test "a journal over 256 KiB is folded whatever the interval" {
	export CQRS_METRICS_DIR="$M"
	rejected_run
	line=$(printf 'cqrs1 1 1.000000001\tcqrs_command_duration_seconds ConfirmOrder rejected 1 0.001 3:1\t.')
	for ((i = 0; i < 4000; i++)); do echo "$line"; done >"$M/.cqrs_command.journal"
	chmod 600 "$M/.cqrs_command.journal"
	CQRS_METRICS_FOLD=3600 rejected_run
	assert_equal "$(journal_lines command)" 0
	assert_equal "$(value cqrs_command.prom "$REJECTED")" 4002
	# those lines' bucket, and perhaps the two runs'
	b=$(value cqrs_command.prom 'cqrs_command_duration_seconds_bucket{type="ConfirmOrder",result="rejected",le="0.001"}')
	((b >= 4000 && b <= 4002)) || fail "le=0.001: $b"
}

@test "a journal line cut short by a writer that died is dropped with a warning, not miscounted" {
	export CQRS_METRICS_DIR="$M" CQRS_METRICS_FOLD=3600
	rejected_run
	j="$M/.cqrs_command.journal"
	# cut short, then a whole line from the next writer right after it
	printf 'cqrs1 7 1.5\tcqrs_command_duration_seconds ConfirmOrder rejected 1 0.25 ' >>"$j"
	rejected_run
	# damaged in the middle, and cut short at the end
	printf 'cqrs1 8 1.5\tcqrs_command_duration_seconds ConfirmOrder rejected x 0.25 9:1\t.\n' >>"$j"
	printf 'cqrs1 9 1.5\tcqrs_command_duration_seconds ConfirmOrder rejected 1 0.25 9:1' >>"$j"
	run --separate-stderr cqrs-health --textfile "$M" --format ndjson
	assert_equal "$stderr" "cqrs-health: metrics: $M/.cqrs_command.journal.folding:1: not a whole line of counts (a writer cut short?): dropped, and 2 more"
	assert_equal "$(value cqrs_command.prom "$REJECTED")" 2
	assert_equal "$(value cqrs_command.prom 'cqrs_command_duration_seconds_bucket{type="ConfirmOrder",result="rejected",le="+Inf"}')" 2
	run find "$M" -name '.cqrs_*.journal*'
	assert_output ""
}

@test "a folder that died after its rename loses nothing; after its replace counts nothing twice" {
	export CQRS_METRICS_DIR="$M" CQRS_METRICS_FOLD=3600
	rejected_run
	j="$M/.cqrs_command.journal"
	# died after taking the journal, before the .prom file: the taken
	# journal is folded first, then the one written since
	rejected_run
	rejected_run
	mv "$j" "$j.folding"
	rejected_run
	fold
	assert_equal "$(value cqrs_command.prom "$REJECTED")" 4
	# died after replacing the .prom file, before the unlink; a writer
	# that had it open appended one more line since
	rejected_run
	rejected_run
	cp -p "$j" taken
	fold
	assert_equal "$(value cqrs_command.prom "$REJECTED")" 6
	rejected_run
	cat "$j" >>taken
	rm "$j"
	mv taken "$j.folding"
	fold
	assert_equal "$(value cqrs_command.prom "$REJECTED")" 7
	assert_equal "$(value cqrs_command.prom 'cqrs_command_duration_seconds_bucket{type="ConfirmOrder",result="rejected",le="+Inf"}')" 7
}

@test "a journal others may write, another user's, or a link in its place is refused" {
	install -m 666 /dev/null "$M/.cqrs_command.journal"
	same_run_with_metrics_dir "$M"
	assert_equal "$stderr" "cqrs-command: metrics: $M/.cqrs_command.journal: writable by others (mode 0666): someone else could have changed it (the run itself is not affected)"
	[ ! -s "$M/.cqrs_command.journal" ]
	rm "$M/.cqrs_command.journal"
	ln -s "$BATS_TEST_TMPDIR/elsewhere" "$M/.cqrs_command.journal"
	same_run_with_metrics_dir "$M"
	assert_equal "$stderr" "cqrs-command: metrics: $M/.cqrs_command.journal: Too many levels of symbolic links (the run itself is not affected)"
	[ ! -e "$BATS_TEST_TMPDIR/elsewhere" ]
	[ ! -e "$M/cqrs_command.prom" ]
	rm "$M/.cqrs_command.journal"
	[ "$(id -u)" = 0 ] || fail "needs root to give the journal to nobody (uid $(id -u))"
	install -m 600 -o nobody /dev/null "$M/.cqrs_command.journal"
	same_run_with_metrics_dir "$M"
	assert_equal "$stderr" "cqrs-command: metrics: $M/.cqrs_command.journal: file owned by nobody, not by root: a store belongs to the user who writes it (the run itself is not affected)"
	[ ! -e "$M/cqrs_command.prom" ]
	# planted and held locked: refused, not waited on (the run would hang)
	local held
	exec {held}<"$M/.cqrs_command.journal"
	flock -x "$held"
	run --separate-stderr timeout 30 cqrs-command --command-id fixed -q confirm-order \
		--order "$UNKNOWN" --metrics-dir "$M"
	exec {held}<&-
	assert_failure 4
	assert_equal "$stderr" "cqrs-command: metrics: $M/.cqrs_command.journal: file owned by nobody, not by root: a store belongs to the user who writes it (the run itself is not affected)"
	[ ! -s "$M/.cqrs_command.journal" ]
}

@test "the collector refuses a planted journal: a warning and status unknown (3), the others folded" {
	export CQRS_METRICS_DIR="$M" CQRS_METRICS_FOLD=3600
	rejected_run
	rejected_run
	event 00000000-0000-4000-8000-000000000001 | cqrs-append -q
	install -m 666 /dev/null "$M/.cqrs_saga.journal.folding"
	run --separate-stderr cqrs-health --textfile "$M" --format ndjson
	assert_failure 3
	assert_equal "$stderr" "cqrs-health: metrics: $M/.cqrs_saga.journal.folding: writable by others (mode 0666): someone else could have changed it"
	assert_equal "$(value cqrs_command.prom "$REJECTED")" 2
	assert_equal "$(value cqrs_append.prom 'cqrs_events_appended_total{tool="cqrs-append"}')" 1
	[ -f "$M/cqrs_health.prom" ]
	[ ! -e "$M/cqrs_saga.prom" ]
}

# Every tool's file after a workload of each.
workload() {
	export CQRS_METRICS_DIR="$M"
	saga_setup
	for n in 1 2; do order "$n"; done
	order 3 cust-bad
	PAYMENT_GATEWAY_DECLINE=cust-bad cqrs-saga run
	run create_order "$UNKNOWN" -q
	event 00000000-0000-4000-8000-000000000099 UnknownThing '{}' | cqrs-append -q
	cqrs-project
	cqrs-project --rebuild
	cqrs-query orders >/dev/null
	unset CQRS_METRICS_DIR
	fold
}

@test "promtool check metrics: every file passes, without a complaint" {
	sqlite_only "its workload runs cqrs-saga, which needs the SQLite store today (cqrs-postgres(7))"
	command -v promtool >/dev/null || fail "promtool not found (Debian package prometheus)"
	workload
	for f in cqrs_command cqrs_append cqrs_saga cqrs_query cqrs_project; do
		run promtool check metrics <"$M/$f.prom"
		assert_success
		assert_output ""
	done
	grep -q '^cqrs_replay_duration_seconds_total{projection="order_views"} ' "$M/cqrs_project.prom"
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

@test "node_exporter's textfile collector serves the files, with no scrape error" {
	sqlite_only "its workload runs cqrs-saga, which needs the SQLite store today (cqrs-postgres(7))"
	command -v prometheus-node-exporter >/dev/null ||
		fail "prometheus-node-exporter not found (Debian package prometheus-node-exporter)"
	workload
	port=$(free_port)
	prometheus-node-exporter --collector.disable-defaults --collector.textfile \
		--collector.textfile.directory="$M" --web.listen-address="127.0.0.1:$port" \
		2>exporter.log &
	EXPORTER_PID=$!
	for ((i = 0; i < 100 * GUARD_SCALE; i++)); do
		curl -sf "http://127.0.0.1:$port/metrics" >scrape.txt && break
		kill -0 "$EXPORTER_PID" || fail "node_exporter ended: $(cat exporter.log)"
		sleep 0.1
	done
	[ -s scrape.txt ] || fail "node_exporter did not answer on port $port: $(cat exporter.log)"
	run grep -E '^node_textfile_scrape_error ' scrape.txt
	assert_output "node_textfile_scrape_error 0"
	run grep -c '^node_textfile_mtime_seconds{file=".*cqrs_[a-z]*\.prom"}' scrape.txt
	assert_output 6 # and the collector's cqrs_health.prom
	scraped() {
		awk -v k="$1" '$1 == k { print $2 }' scrape.txt
	}
	assert_equal "$(scraped 'cqrs_saga_started_total{saga="order"}')" 3
	assert_equal "$(scraped 'cqrs_saga_finished_total{outcome="completed",saga="order"}')" 2
	assert_equal "$(scraped 'cqrs_saga_finished_total{outcome="compensated",saga="order"}')" 1
	assert_equal "$(scraped 'cqrs_command_duration_seconds_count{result="rejected",type="CreateOrder"}')" 1
	assert_equal "$(scraped 'cqrs_events_appended_total{tool="cqrs-append"}')" 1
	assert_equal "$(scraped 'cqrs_query_duration_seconds_count{query="orders"}')" 1
	k=$(stored_count)
	assert_equal "$(scraped 'cqrs_replay_events_total{projection="order_views"}')" "$k"
	assert_equal "$(scraped 'cqrs_projection_event_lag_seconds_count{projection="order_views"}')" "$k"
}

@test "the Grafana dashboard is JSON, and every metric it queries is one the tools or the collector write" {
	d="${CQRS_SHAREDIR:?}/grafana/cqrs-dashboard.json"
	run jq -e '.panels | length > 0' "$d"
	assert_success
	run jq -r '.templating.list[] | select(.type == "datasource") | .query' "$d"
	assert_output prometheus
	# the names of the contract (tools and collector)
	known=$(sed -n 's/^\.It Va \(cqrs_[a-z_]*\).*/\1/p' "${CQRS_TOP_SRCDIR:?}/man/cqrs-metrics.7" | sort -u)
	[ "$(echo "$known" | wc -l)" -ge 25 ] || fail "cqrs-metrics(7) lists too few names: $known"
	used=$(jq -r '.panels[] | .targets[]?.expr' "$d" | grep -oE 'cqrs_[a-z_]+' |
		sed -E 's/_(bucket|sum|count)$//' | sort -u)
	[ -n "$used" ] || fail "no queries"
	run comm -23 <(echo "$used") <(echo "$known")
	assert_output ""
	# the five key metrics each have a panel
	for m in cqrs_command_duration_seconds cqrs_projection_event_lag_seconds \
		cqrs_projection_lag_events cqrs_query_duration_seconds cqrs_saga_finished_total \
		cqrs_saga_instances cqrs_replay_events_total cqrs_relay_lag_events \
		cqrs_relay_events_total; do
		echo "$used" | grep -qx "$m" || fail "no panel queries $m"
	done
}
