#!/usr/bin/env bats
# cqrs-health: each check made to fail by the fault it is there to see, the
# report's forms, thresholds from options and the environment, a run as a
# monitoring user who may only read (nothing changes), the Prometheus
# gauges (promtool check metrics) and the alert rules (promtool test rules
# on series that cqrs-health itself wrote from a store in the bad state).

load saga_helper
load prom_helper

TOP=${CQRS_TOP_SRCDIR:?}
RULES=$TOP/share/prometheus/cqrs-alerts.yml
MNT=

setup() {
	# test_helper's setup, then the views next to the store
	cd "$BATS_TEST_TMPDIR" || return 1
	export LC_ALL=C TZ=UTC HOME="$BATS_TEST_TMPDIR/home"
	mkdir -p "$HOME"
	unset XDG_DATA_HOME
	local v
	for v in "${!CQRS_HEALTH_@}"; do unset "$v"; done
	export CQRS_STORE="$BATS_TEST_TMPDIR/events.db" CQRS_VIEWS="$BATS_TEST_TMPDIR/views.db"
	# the PostgreSQL leg of the matrix: the store in a schema of its own
	on_sqlite || CQRS_STORE=$(pg_store "t$BATS_TEST_NUMBER")
	export CQRS_BUSY_TIMEOUT=10000
	FIXTURES="$TOP/tests/fixtures"
}

teardown() {
	if [ -n "$MNT" ]; then
		umount "$MNT" || true
	fi
}

# What a healthy store reports that differs by backend (cqrs-health(1),
# cqrs-postgres(7)): the schema, the integrity check, the witness, and the
# sagas (a PostgreSQL store keeps no saga tables yet).
BREAKERS_OK='"figure":0,"unit":"breakers","warning":1,"critical":null,"detail":"0 open"'
if on_sqlite; then
	SCHEMA_NOW=5 INTEGRITY_OK="quick_check: ok" WITNESS_OK="witness matched"
else
	SCHEMA_NOW=2 INTEGRITY_OK="tables, triggers and sequences: ok"
	WITNESS_OK="no witness: the server keeps its history"
fi

# The 11 events of the docs store, projected: a healthy installation.
healthy() {
	cqrs-append -q "$FIXTURES/docs-store.ndjson"
	cqrs-project
}

# The NDJSON line of check $1 in $output.
line_of() {
	jq -c --arg c "$1" 'select(.check == $c)' <<<"$output"
}

# The checks of $output whose status is not ok, as "check:status ...".
not_ok() {
	jq -r 'select(.status != "ok") | "\(.check):\(.status)"' <<<"$output" | tr '\n' ' ' | sed 's/ $//'
}

# The gauges of the store as it is, in a snapshot file $1.
snapshot() {
	mkdir -p -m 700 tf
	cqrs-health --textfile tf >/dev/null || true
	cp tf/cqrs_health.prom "$1"
}

# --- the report ------------------------------------------------------------------

@test "a healthy installation: fourteen checks, each ok, one NDJSON line each, exit 0" {
	healthy
	run --separate-stderr cqrs-health
	assert_success
	assert_equal "$stderr" ""
	assert_equal "${#lines[@]}" 14
	assert_equal "$(jq -r .check <<<"$output" | tr '\n' ' ')" \
		"store integrity chain views lag_events lag_seconds parked sagas_stuck sagas_failed compensation_failed breakers wal disk relay "
	assert_equal "$(not_ok)" ""
	assert_equal "$(line_of store)" '{"check":"store","status":"ok","figure":'$SCHEMA_NOW',"unit":"schema","detail":"schema '$SCHEMA_NOW'"}'
	assert_equal "$(line_of integrity)" '{"check":"integrity","status":"ok","figure":0,"unit":"problems","detail":"'"$INTEGRITY_OK"'"}'
	assert_equal "$(line_of chain)" '{"check":"chain","status":"ok","figure":11,"unit":"events","detail":"verified 11 events; '"$WITNESS_OK"'"}'
	assert_equal "$(line_of views)" '{"check":"views","status":"ok","figure":4,"unit":"projections","detail":"4 projections"}'
	assert_equal "$(line_of lag_events)" '{"check":"lag_events","status":"ok","figure":0,"unit":"events","warning":1000,"critical":100000,"detail":"customer_order_summary 0 events behind"}'
	assert_equal "$(line_of parked)" '{"check":"parked","status":"ok","figure":0,"unit":"events","warning":1,"critical":null,"detail":"0 events parked"}'
	assert_equal "$(line_of breakers)" '{"check":"breakers","status":"ok",'"$BREAKERS_OK"'}'
	# no relay publishes this store (tests/relay-ops.bats: one that does)
	assert_equal "$(line_of relay)" '{"check":"relay","status":"ok","figure":null,"unit":"events","warning":1000,"critical":100000,"detail":"no relay"}'
	# every line round-trips through jq
	assert_equal "$(jq -c . <<<"$output")" "$output"
}

@test "a table on a terminal, NDJSON in a pipe, and --format forces either" {
	healthy
	command -v script >/dev/null || fail "script (util-linux) is needed to give cqrs-health a terminal"
	run script -qec "cqrs-health" /dev/null
	assert_success
	assert_line --regexp '^CHECK +STATUS +FIGURE  DETAIL'
	assert_line --regexp "^chain +ok +11  verified 11 events; $WITNESS_OK"
	run --separate-stderr script -qec "cqrs-health --format ndjson" /dev/null
	assert_success
	assert_line --regexp '^\{"check":"store","status":"ok"'
	run --separate-stderr cqrs-health --format table
	assert_success
	assert_equal "${lines[0]}" "CHECK                STATUS           FIGURE  DETAIL"
	assert_equal "${lines[1]}" "store                ok                    $SCHEMA_NOW  schema $SCHEMA_NOW"
	assert_equal "${#lines[@]}" 15
}

# --- each check, made to fail ----------------------------------------------------

@test "lag: events the views have not seen, in events and in time, against the thresholds" {
	healthy
	snapshot healthy.prom
	# three events two hours after the last one the views applied
	for m in 0 1 2; do
		printf '{"aggregate_id":"7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f","aggregate_type":"Order","event_type":"OrderNoted","data":{},"timestamp":"2026-01-16T16:0%d:00Z"}\n' "$m"
	done | cqrs-append -q
	run --separate-stderr cqrs-health
	assert_failure 2
	assert_equal "$(line_of lag_events)" '{"check":"lag_events","status":"ok","figure":3,"unit":"events","warning":1000,"critical":100000,"detail":"customer_order_summary 3 events behind"}'
	assert_equal "$(line_of lag_seconds)" '{"check":"lag_seconds","status":"critical","figure":7320,"unit":"seconds","warning":300,"critical":3600,"detail":"customer_order_summary 7320 seconds behind"}'
	assert_equal "$(not_ok)" "lag_seconds:critical"
	run --separate-stderr cqrs-health --lag-events 2,4 --lag-seconds 2h,0
	assert_failure 1
	assert_equal "$(not_ok)" "lag_events:warning lag_seconds:warning"
	run --separate-stderr cqrs-health --lag-events 2,3 --lag-seconds 0,0
	assert_failure 2
	assert_equal "$(line_of lag_events)" '{"check":"lag_events","status":"critical","figure":3,"unit":"events","warning":2,"critical":3,"detail":"customer_order_summary 3 events behind"}'
	# the alert fires on what the collector wrote, and not on the healthy store
	snapshot lagging.prom
	grep -qx 'cqrs_projection_lag_seconds{projection="order_views"} 7320' lagging.prom
	promtool_alert CqrsProjectionLagHigh "$(
		cat <<-'EOF'
			- exp_labels: {severity: critical, check: lag_seconds, instance: shop}
			  exp_annotations:
			    summary: 'A projection is far behind the store (lag_seconds)'
			    description: 'cqrs-health on shop found lag_seconds past its critical threshold for 10 minutes; cqrs-project --lag shows which projection, cqrs_projection_lag_events and cqrs_projection_lag_seconds how far.'
		EOF
	)" lagging.prom
	promtool_alert CqrsProjectionLagHigh "[]" healthy.prom
	# once projected, the lag is gone
	cqrs-project
	run --separate-stderr cqrs-health
	assert_success
}

@test "parked: events a projection could not apply are a warning" {
	cqrs-append -q "$FIXTURES/docs-store.ndjson"
	cat >strict.yaml <<-'EOF'
		projections:
		  - name: strict
		    tables:
		      - CREATE TABLE strict (id TEXT PRIMARY KEY, total INTEGER NOT NULL)
		    on:
		      OrderCreated: INSERT INTO strict VALUES (:aggregate_id, minor_units(:data.total, 'KWD') / 0 + minor_units('1.2345', 'KWD'))
	EOF
	run cqrs-project --no-default-projections -P strict.yaml
	assert_failure 5
	run --separate-stderr cqrs-health
	assert_failure 1
	assert_equal "$(not_ok)" "parked:warning"
	assert_equal "$(line_of parked)" '{"check":"parked","status":"warning","figure":2,"unit":"events","warning":1,"critical":null,"detail":"2 events parked"}'
	run --separate-stderr cqrs-health --parked 5,10
	assert_success
}

@test "sagas_stuck: a saga with no change past --stuck-after, and its alert" {
	saga_setup
	order 1
	cqrs-saga run
	cqrs-project
	snapshot healthy.prom
	# the payment gateway is down: the saga retries, and is stuck at +2h
	export PAYMENT_GATEWAY_AUTHORIZE_MODE=fail
	order 2
	cqrs-saga run 2>/dev/null
	cqrs-project
	assert_equal "$(saga_row 2)" "RUNNING|1|1|"
	run --separate-stderr cqrs-health --lag-seconds 0,0
	assert_success
	at +7200
	run --separate-stderr cqrs-health --lag-seconds 0,0
	assert_failure 1
	assert_equal "$(not_ok)" "sagas_stuck:warning"
	assert_equal "$(line_of sagas_stuck)" '{"check":"sagas_stuck","status":"warning","figure":1,"unit":"sagas","warning":1,"critical":null,"detail":"1 sagas with no change for 3600s"}'
	run --separate-stderr cqrs-health --lag-seconds 0,0 --stuck-after 3h
	assert_success
	CQRS_HEALTH_STUCK_AFTER=90m CQRS_HEALTH_STUCK=0,1 run --separate-stderr cqrs-health --lag-seconds 0,0
	assert_failure 2
	assert_equal "$(not_ok)" "sagas_stuck:critical"
	snapshot stuck.prom
	grep -qx 'cqrs_saga_stuck_instances{saga="order"} 1' stuck.prom
	promtool_alert CqrsSagaStuck "$(
		cat <<-'EOF'
			- exp_labels: {severity: warning, saga: order, instance: shop}
			  exp_annotations:
			    summary: 'Sagas of type order are stuck'
			    description: '1 order sagas on shop have not changed for longer than cqrs-health --stuck-after; is cqrs-saga run still running?'
		EOF
	)" stuck.prom
	promtool_alert CqrsSagaStuck "[]" healthy.prom
}

@test "sagas_failed and compensation_failed: a FAILED saga, then one whose compensation failed" {
	saga_setup
	order 1
	cqrs-saga run
	cqrs-project
	snapshot before.prom
	# an address the shipper does not serve: compensated, FAILED
	order 2 cust-42 2 XX
	cqrs-saga run 2>/dev/null
	cqrs-project
	assert_equal "$(saga_row 2)" "FAILED|0|0|compensated"
	run --separate-stderr cqrs-health --lag-seconds 0,0
	assert_success
	assert_equal "$(line_of sagas_failed)" '{"check":"sagas_failed","status":"ok","figure":1,"unit":"sagas","warning":null,"critical":null,"detail":"1 sagas FAILED"}'
	run --separate-stderr cqrs-health --lag-seconds 0,0 --failed 1,0
	assert_failure 1
	assert_equal "$(not_ok)" "sagas_failed:warning"
	snapshot failed.prom
	grep -qx 'cqrs_saga_instances{saga="order",status="FAILED"} 1' failed.prom
	grep -qx 'cqrs_saga_instances{saga="order",status="COMPLETED"} 1' failed.prom
	promtool_alert CqrsSagaFailed "$(
		cat <<-'EOF'
			- exp_labels: {severity: warning, saga: order, status: FAILED, instance: shop}
			  exp_annotations:
			    summary: 'Sagas of type order failed in the last hour'
			    description: '1 more order sagas FAILED on shop; cqrs-saga status shows them.'
		EOF
	)" before.prom failed.prom
	promtool_alert CqrsSagaFailed "[]" before.prom before.prom
	promtool_alert CqrsSagaCompensationFailed "[]" failed.prom
	# the void fails too: after its retries, the compensation has failed
	export PAYMENT_GATEWAY_VOID_MODE=fail
	order 3 cust-42 2 XX
	cqrs-saga run 2>/dev/null
	at +10
	cqrs-saga run 2>/dev/null
	at +100
	cqrs-saga run 2>/dev/null
	cqrs-project
	assert_equal "$(saga_row 3)" "FAILED|2|3|compensation_failed"
	run --separate-stderr cqrs-health --lag-seconds 0,0
	assert_failure 2
	assert_equal "$(not_ok)" "compensation_failed:critical"
	assert_equal "$(line_of compensation_failed)" '{"check":"compensation_failed","status":"critical","figure":1,"unit":"sagas","warning":null,"critical":1,"detail":"1 sagas whose compensation failed (cqrs-saga retry)"}'
	assert_equal "$(line_of sagas_failed)" '{"check":"sagas_failed","status":"ok","figure":2,"unit":"sagas","warning":null,"critical":null,"detail":"2 sagas FAILED"}'
	snapshot compensation.prom
	promtool_alert CqrsSagaCompensationFailed "$(
		cat <<-'EOF'
			- exp_labels: {severity: critical, check: compensation_failed, instance: shop}
			  exp_annotations:
			    summary: 'A saga could not compensate: it needs a person'
			    description: 'On shop a FAILED saga could not undo its steps; cqrs-saga status lists it, cqrs-saga retry runs the compensation again.'
		EOF
	)" compensation.prom
}

@test "breakers: an open circuit breaker is a warning, named, and its alert fires" {
	saga_setup
	f=$(saga_file 's|^    failures: 5$|    failures: 2|')
	order 1
	cqrs-saga run -f "$f"
	cqrs-project
	snapshot healthy.prom
	export PAYMENT_GATEWAY_AUTHORIZE_MODE=fail
	order 2
	order 3
	order 4
	cqrs-saga run -f "$f" 2>/dev/null
	cqrs-project
	assert_equal "$(store_query 'SELECT name, state FROM saga_breakers')" "order.authorize_payment|open"
	run --separate-stderr cqrs-health --lag-seconds 0,0
	assert_failure 1
	assert_equal "$(not_ok)" "breakers:warning"
	assert_equal "$(line_of breakers)" '{"check":"breakers","status":"warning","figure":1,"unit":"breakers","warning":1,"critical":null,"detail":"1 open: order.authorize_payment"}'
	snapshot open.prom
	grep -qx 'cqrs_breaker_open{breaker="order.authorize_payment"} 1' open.prom
	grep -qx 'cqrs_breakers_open 1' open.prom
	promtool_alert CqrsBreakerOpen "$(
		cat <<-'EOF'
			- exp_labels: {severity: warning, breaker: order.authorize_payment, instance: shop}
			  exp_annotations:
			    summary: 'Circuit breaker order.authorize_payment is open'
			    description: 'The saga step behind breaker order.authorize_payment on shop keeps failing; its calls are held back.'
		EOF
	)" open.prom
	promtool_alert CqrsBreakerOpen "[]" healthy.prom
}

@test "integrity: a damaged page of the store is critical, with quick_check's finding" {
	sqlite_only "damages a page of the SQLite file (pg.bats: the tables check finds disabled triggers and missing rows)"
	healthy
	# the events on disk in the main file, then garbage over an index page
	sqlite3 "$CQRS_STORE" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
	page=$(sqlite3 "$CQRS_STORE" "SELECT rootpage FROM sqlite_schema WHERE name = 'events_timestamp'")
	size=$(sqlite3 "$CQRS_STORE" 'PRAGMA page_size')
	[ "$page" -gt 1 ] || fail "no page of events_timestamp to damage"
	head -c "$size" /dev/urandom | dd of="$CQRS_STORE" bs="$size" seek=$((page - 1)) count=1 conv=notrunc 2>/dev/null ||
		fail "cannot write over page $page of the store"
	run --separate-stderr cqrs-health
	assert_failure 2
	assert_equal "$(not_ok)" "integrity:critical"
	assert_equal "$(jq -r 'select(.check == "integrity") | .detail' <<<"$output" | cut -d: -f1)" "quick_check"
	[ "$(jq -r 'select(.check == "integrity") | .figure' <<<"$output")" -ge 1 ]
	snapshot damaged.prom
	# a damaged store may not count its events: that gauge is left out
	grep -qx 'cqrs_health_check_status{check="integrity"} 2' damaged.prom
	promtool_alert CqrsStoreDamaged "$(
		cat <<-'EOF'
			- exp_labels: {severity: critical, check: integrity, instance: shop}
			  exp_annotations:
			    summary: 'The event store file is damaged'
			    description: "SQLite's quick_check found problems in the store on shop; cqrs-health's detail names the first."
		EOF
	)" damaged.prom
}

@test "chain: an edited event is critical, and the chain alert fires" {
	healthy
	snapshot healthy.prom
	store_edit "UPDATE events SET data = '{\"quantity\":1000}' WHERE sequence = 2"
	run --separate-stderr cqrs-health
	assert_failure 2
	# (on PostgreSQL the edit disabled the append-only triggers, which the
	# tables check sees too)
	if on_sqlite; then
		assert_equal "$(not_ok)" "chain:critical"
	else
		assert_equal "$(not_ok)" "integrity:critical chain:critical"
	fi
	assert_equal "$(line_of chain)" '{"check":"chain","status":"critical","figure":1,"unit":"events","detail":"sequence 2: hash chain broken: an event was edited, removed or reordered"}'
	snapshot edited.prom
	grep -qx 'cqrs_store_chain_ok 0' edited.prom
	promtool_alert CqrsChainBroken "$(
		cat <<-'EOF'
			- exp_labels: {severity: critical, instance: shop}
			  exp_annotations:
			    summary: 'The event store fails its hash chain or is behind its witness'
			    description: 'On shop an event was edited, removed or reordered, or the store was rolled back; cqrs-read --verify says where.'
		EOF
	)" edited.prom
	promtool_alert CqrsChainBroken "[]" healthy.prom
}

@test "chain: a store behind its witness (a restored copy) is critical" {
	sqlite_only "a PostgreSQL store has no witness file: the server keeps its history"
	healthy
	cqrs-read | CQRS_STORE=$PWD/copy.db cqrs-append -q
	printf '{"aggregate_id":"7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f","aggregate_type":"Order","event_type":"OrderNoted","data":{}}\n' | cqrs-append -q
	# the copy, one event short, put back in the store's place
	rm -f "$CQRS_STORE" "$CQRS_STORE"-wal "$CQRS_STORE"-shm
	for f in copy.db copy.db-wal copy.db-shm; do
		[ ! -e "$f" ] || mv "$f" "${CQRS_STORE}${f#copy.db}"
	done
	run --separate-stderr cqrs-health --lag-events 0,0
	assert_failure 2
	assert_equal "$(not_ok)" "chain:critical"
	assert_equal "$(jq -r 'select(.check == "chain") | .detail' <<<"$output")" \
		"$CQRS_STORE: the store is behind its witness $CQRS_STORE.witness: it ends at sequence 11, before sequence 12 (hash $(jq -r .hash "$CQRS_STORE.witness")); it was rolled back or damaged; nothing was written (after a deliberate restore: cqrs-append --reset-witness)"
	snapshot behind.prom
	grep -qx 'cqrs_store_chain_ok 0' behind.prom
}

@test "disk: a store on a nearly full file system is critical, and the disk alert fires" {
	[ "$(id -u)" = 0 ] || fail "mounting a small tmpfs needs root"
	mkdir -m 755 small
	mount -t tmpfs -o size=4m,mode=0755 tmpfs small || fail "cannot mount a 4 MiB tmpfs on $PWD/small"
	MNT=$PWD/small
	# (a PostgreSQL store: the views' disk alone is checked)
	on_sqlite && export CQRS_STORE=$PWD/small/events.db
	export CQRS_VIEWS=$PWD/small/views.db
	healthy
	dd if=/dev/zero of=small/filler bs=64k count=40 2>/dev/null || fail "cannot fill the tmpfs"
	free=$(($(stat -f -c '%a * %S' small)))
	run --separate-stderr cqrs-health
	assert_failure 2
	assert_equal "$(not_ok)" "disk:critical"
	assert_equal "$(line_of disk)" "{\"check\":\"disk\",\"status\":\"critical\",\"figure\":$free,\"unit\":\"bytes\",\"warning\":1073741824,\"critical\":268435456,\"detail\":\"$free bytes free in $PWD/small\"}"
	run --separate-stderr cqrs-health --disk-free 1K,0
	assert_success
	run --separate-stderr cqrs-health --disk-free 5M,0
	assert_failure 1
	assert_equal "$(not_ok)" "disk:warning"
	snapshot full.prom
	grep -qx "cqrs_disk_free_bytes $free" full.prom
	promtool_alert CqrsDiskLow "$(
		cat <<-'EOF'
			- exp_labels: {severity: critical, check: disk, instance: shop}
			  exp_annotations:
			    summary: 'Little free disk where the store or the views live'
			    description: 'shop is at or below the free-disk threshold of cqrs-health; see cqrs_disk_free_bytes.'
		EOF
	)" full.prom
}

@test "disk: a threshold above the real free space makes it low, and the alert fires on warning" {
	healthy
	snapshot healthy.prom
	# 8000000 TiB: more than any disk here has
	CQRS_HEALTH_DISK_FREE=8000000T,0 run --separate-stderr cqrs-health
	assert_failure 1
	assert_equal "$(not_ok)" "disk:warning"
	CQRS_HEALTH_DISK_FREE=8000000T,0 snapshot low.prom
	promtool_alert CqrsDiskLow "$(
		cat <<-'EOF'
			- exp_labels: {severity: warning, check: disk, instance: shop}
			  exp_annotations:
			    summary: 'Little free disk where the store or the views live'
			    description: 'shop is at or below the free-disk threshold of cqrs-health; see cqrs_disk_free_bytes.'
		EOF
	)" low.prom
	promtool_alert CqrsDiskLow "[]" healthy.prom
}

@test "wal: the write-ahead log against its thresholds" {
	sqlite_only "the write-ahead log is the SQLite file's (pg.bats: not applicable on PostgreSQL)"
	healthy
	wal=$(stat -c %s "$CQRS_STORE-wal")
	[ "$wal" -gt 1024 ] || fail "the write-ahead log is only $wal bytes"
	run --separate-stderr cqrs-health --wal 1K,0
	assert_failure 1
	assert_equal "$(not_ok)" "wal:warning"
	assert_equal "$(line_of wal)" "{\"check\":\"wal\",\"status\":\"warning\",\"figure\":$wal,\"unit\":\"bytes\",\"warning\":1024,\"critical\":null,\"detail\":\"write-ahead log $wal bytes\"}"
	CQRS_HEALTH_WAL=0,$wal run --separate-stderr cqrs-health
	assert_failure 2
	assert_equal "$(not_ok)" "wal:critical"
}

@test "store: a missing store is critical, and every check that needs it is unknown" {
	run --separate-stderr cqrs-health -s nowhere.db
	assert_failure 2
	assert_equal "$(line_of store)" '{"check":"store","status":"critical","figure":null,"unit":"schema","detail":"nowhere.db: no such store"}'
	assert_equal "$(line_of chain)" '{"check":"chain","status":"unknown","figure":null,"unit":"events","detail":"the store could not be opened"}'
	assert_equal "$(jq -sc 'group_by(.status) | map({(.[0].status): length}) | add' <<<"$output")" \
		'{"critical":1,"ok":1,"unknown":12}'
}

@test "store: a store of release 0.1 (schema 2) is a warning until the next write migrates it" {
	sqlite_only "a SQLite file of release 0.1"
	cp "$FIXTURES/release-0.1/events.db" .
	chmod 600 events.db
	run --separate-stderr cqrs-health
	assert_equal "$(line_of store)" '{"check":"store","status":"warning","figure":2,"unit":"schema","detail":"schema 2, older than this release'"'"'s 5: the next tool that writes migrates it"}'
	assert_equal "$(line_of chain)" '{"check":"chain","status":"ok","figure":67,"unit":"events","detail":"verified 67 events; witness none"}'
}

# --- a monitoring user -------------------------------------------------------------

# Everything in the shop's directory: name, mode, owner, size and mtime.
listing() {
	find shop -printf '%p %m %u %s %T@\n' | sort
}

@test "as a monitoring user who may only read: all ok, and nothing is created or changed" {
	sqlite_only "the store's files and their modes (pg.bats: cqrs-health as the read-only role)"
	mkdir -m 755 shop
	export CQRS_STORE=$PWD/shop/events.db CQRS_VIEWS=$PWD/shop/views.db
	healthy
	(cd shop && chmod 644 events.db events.db-wal events.db-shm events.db.witness views.db \
		views.db-wal views.db-shm) || fail "the store or the views lack a side file: $(ls shop)"
	mkdir -m 755 tf
	chown nobody tf
	before=$(listing)
	run_as_other_user CQRS_STORE="$CQRS_STORE" CQRS_VIEWS="$CQRS_VIEWS" cqrs-health --textfile tf
	assert_success
	assert_equal "$stderr" ""
	assert_equal "$(not_ok)" ""
	assert_equal "$(line_of chain)" '{"check":"chain","status":"ok","figure":11,"unit":"events","detail":"verified 11 events; witness matched"}'
	assert_equal "$(listing)" "$before"
	# the gauges, for node_exporter's user: 0644, the monitoring user's
	assert_equal "$(stat -c '%a %U' tf/cqrs_health.prom)" "644 nobody"
	assert_equal "$(ls -A tf)" "cqrs_health.prom"
	# a witness it may not read: the chain is verified, and the detail says what is missing
	chmod 600 shop/events.db.witness
	run_as_other_user CQRS_STORE="$CQRS_STORE" CQRS_VIEWS="$CQRS_VIEWS" cqrs-health
	assert_success
	assert_equal "$(line_of chain)" '{"check":"chain","status":"ok","figure":11,"unit":"events","detail":"verified 11 events; witness not readable by this user: rollbacks go unseen"}'
}

@test "node_exporter's directory as the unit sets it up (root's, group of the tools' user, 1775): written" {
	# share/systemd/cqrs-health.service.in: chgrp cqrs, chmod 1775
	mkdir -m 755 shop
	export CQRS_STORE=$PWD/shop/events.db CQRS_VIEWS=$PWD/shop/views.db
	healthy
	chown -R nobody shop
	mkdir tf
	chgrp nogroup tf
	chmod 1775 tf
	echo 'apt_upgrades_pending 0' >tf/apt.prom
	run_as_other_user CQRS_STORE="$CQRS_STORE" CQRS_VIEWS="$CQRS_VIEWS" cqrs-health --textfile tf
	assert_success
	assert_equal "$stderr" ""
	assert_equal "$(stat -c '%a %U' tf/cqrs_health.prom)" "644 nobody"
	assert_equal "$(cat tf/apt.prom)" 'apt_upgrades_pending 0'
	assert_equal "$(ls -A tf | tr '\n' ' ')" "apt.prom cqrs_health.prom "
	# without the sticky bit, a directory its group may write is refused
	chmod 0775 tf
	run_as_other_user CQRS_STORE="$CQRS_STORE" CQRS_VIEWS="$CQRS_VIEWS" cqrs-health --textfile tf
	assert_failure 3
	assert_equal "$stderr" "cqrs-health: tf: writable by others and not sticky: refused"
}

@test "a store the monitoring user may not read is unknown (3), not critical" {
	sqlite_only "the store file's mode: on PostgreSQL the server grants a role its reads (cqrs-postgres(7))"
	healthy
	chmod 600 events.db*
	chmod 755 .
	run_as_other_user CQRS_STORE="$CQRS_STORE" CQRS_VIEWS="$CQRS_VIEWS" cqrs-health
	assert_failure 3
	assert_equal "$(line_of store)" "{\"check\":\"store\",\"status\":\"unknown\",\"figure\":null,\"unit\":\"schema\",\"detail\":\"$CQRS_STORE: permission denied: this user cannot read the store\"}"
	assert_equal "$(not_ok | tr ' ' '\n' | grep -vc ':unknown$')" 0
}

# --- options, the environment, usage ----------------------------------------------

@test "thresholds: options override CQRS_HEALTH_* variables; bad values are usage errors, status 3" {
	healthy
	CQRS_HEALTH_BREAKERS=2,3 CQRS_HEALTH_LAG_EVENTS=10,20 run --separate-stderr cqrs-health --lag-events 5,6
	assert_success
	assert_equal "$(jq -c 'select(.check == "lag_events" or .check == "breakers") | [.warning, .critical]' <<<"$output" | tr '\n' ' ')" \
		"[5,6] [2,3] "
	CQRS_HEALTH_LAG_EVENTS=ten run --separate-stderr cqrs-health
	assert_failure 3
	assert_output ""
	assert_equal "$stderr" "cqrs-health: CQRS_HEALTH_LAG_EVENTS: needs WARNING,CRITICAL, two counts such as 1,10 (0: off): 'ten'"
	run --separate-stderr cqrs-health --wal 64
	assert_failure 3
	assert_equal "$stderr" "cqrs-health: --wal needs WARNING,CRITICAL, two sizes such as 64M,1G (0: off): '64'"
	run --separate-stderr cqrs-health --lag-seconds 5x,1h
	assert_failure 3
	assert_equal "$stderr" "cqrs-health: --lag-seconds needs WARNING,CRITICAL, two durations such as 5m,1h (0: off): '5x,1h'"
	run --separate-stderr cqrs-health --stuck-after soon
	assert_failure 3
	assert_equal "$stderr" "cqrs-health: --stuck-after needs a duration such as 30m or 2h: 'soon'"
	run --separate-stderr cqrs-health --format xml
	assert_failure 3
	assert_equal "$stderr" "cqrs-health: --format needs ndjson or table: 'xml'"
	run --separate-stderr cqrs-health --bogus
	assert_failure 3
	assert_equal "${stderr_lines[0]}" "cqrs-health: unrecognized option '--bogus'"
	run --separate-stderr cqrs-health extra
	assert_failure 3
	assert_equal "${stderr_lines[0]}" "cqrs-health: unexpected operand 'extra'"
}

# --- the collector ---------------------------------------------------------------------

@test "--textfile: the gauges of the contract, valid for promtool, replaced atomically, mode 0644" {
	healthy
	mkdir -m 700 tf
	umask 077
	run --separate-stderr cqrs-health --textfile tf
	assert_success
	assert_equal "$(stat -c %a tf/cqrs_health.prom)" 644
	assert_equal "$(ls -A tf)" "cqrs_health.prom"
	run promtool check metrics <tf/cqrs_health.prom
	assert_success
	assert_output ""
	# exactly the names of the contract, each a gauge
	# (PostgreSQL: the database's size in place of the write-ahead log's)
	if on_sqlite; then
		gauges="cqrs_store_size_bytes cqrs_store_wal_size_bytes cqrs_store_events cqrs_store_head_sequence cqrs_store_chain_ok cqrs_projection_lag_events cqrs_projection_lag_seconds cqrs_projection_parked_events cqrs_saga_instances cqrs_saga_stuck_instances cqrs_breakers_open cqrs_breaker_open cqrs_relay_position_sequence cqrs_relay_pending_events cqrs_disk_free_bytes cqrs_health_check_status cqrs_health_last_run_timestamp_seconds "
	else
		gauges="cqrs_store_size_bytes cqrs_store_database_size_bytes cqrs_store_events cqrs_store_head_sequence cqrs_store_chain_ok cqrs_projection_lag_events cqrs_projection_lag_seconds cqrs_projection_parked_events cqrs_saga_instances cqrs_saga_stuck_instances cqrs_breakers_open cqrs_breaker_open cqrs_relay_position_sequence cqrs_relay_pending_events cqrs_disk_free_bytes cqrs_health_check_status cqrs_health_last_run_timestamp_seconds "
	fi
	assert_equal "$(sed -n 's/^# TYPE \([a-z_]*\) gauge$/\1/p' tf/cqrs_health.prom | tr '\n' ' ')" "$gauges"
	assert_equal "$(grep -c '^# TYPE' tf/cqrs_health.prom)" "$(wc -w <<<"$gauges")"
	grep -qx 'cqrs_store_events 11' tf/cqrs_health.prom
	grep -qx 'cqrs_store_head_sequence 11' tf/cqrs_health.prom
	grep -qx 'cqrs_store_chain_ok 1' tf/cqrs_health.prom
	grep -qx 'cqrs_projection_lag_events{projection="order_views"} 0' tf/cqrs_health.prom
	grep -qx 'cqrs_health_check_status{check="chain"} 0' tf/cqrs_health.prom
	assert_equal "$(grep -c '^cqrs_health_check_status{' tf/cqrs_health.prom)" 14
	now=$(date +%s)
	last=$(sed -n 's/^cqrs_health_last_run_timestamp_seconds //p' tf/cqrs_health.prom)
	[ "$last" -le "$now" ] && [ "$last" -gt $((now - 600)) ]
}

@test "--textfile into a directory others may write is refused: the report is printed, status 3" {
	healthy
	mkdir -m 777 open
	run --separate-stderr cqrs-health --textfile open
	assert_failure 3
	assert_equal "${#lines[@]}" 14
	assert_equal "$stderr" "cqrs-health: open: writable by others and not sticky: refused"
	assert_equal "$(ls -A open)" ""
	run --separate-stderr cqrs-health --textfile missing
	assert_failure 3
	assert_equal "$stderr" "cqrs-health: missing: No such file or directory"
}

# --- the alert rules ------------------------------------------------------------------

@test "a collector that stopped: its alert fires 15 minutes after its last run, not before" {
	healthy
	snapshot now.prom
	# promtool's clock starts at 0: the last run at 0 s is 58 minutes old at
	# the evaluation, one at 3000 s is 8 minutes old
	sed 's/^cqrs_health_last_run_timestamp_seconds .*/cqrs_health_last_run_timestamp_seconds 0/' now.prom >old.prom
	sed 's/^cqrs_health_last_run_timestamp_seconds .*/cqrs_health_last_run_timestamp_seconds 3000/' now.prom >recent.prom
	assert_equal "$(grep -c '^cqrs_health_last_run_timestamp_seconds 0$' old.prom)" 1
	promtool_alert CqrsHealthCollectorStale "- exp_labels: { severity: warning, instance: shop }
  exp_annotations:
    summary: 'cqrs-health has not written its gauges for 58m 0s'
    description: 'The textfile collector on shop (cqrs-health --textfile, from cron or cqrs-health.timer) stopped: every other cqrs alert reads its last figures, which are old. node_exporter keeps serving the file it left.'" old.prom old.prom
	promtool_alert CqrsHealthCollectorStale "[]" recent.prom recent.prom
}

@test "the alert rules pass promtool check rules, and none fires on a healthy store with sagas" {
	run promtool check rules "$RULES"
	assert_success
	assert_line "  SUCCESS: 10 rules found"
	saga_setup
	order 1
	cqrs-saga run
	cqrs-project
	run --separate-stderr cqrs-health --lag-seconds 0,0
	assert_success
	CQRS_HEALTH_LAG_SECONDS=0,0 snapshot healthy.prom
	local alert
	for alert in $(sed -n 's/^ *- alert: //p' "$RULES"); do
		promtool_alert "$alert" "[]" healthy.prom healthy.prom
	done
}
