#!/usr/bin/env bats
# The relay's operations (issue 14): its metrics (cqrs-metrics(7)) counted
# against known workloads, cqrs-health's relay check (the lag in events of
# each relay's position against the thresholds) and its gauges, and the
# nkey login, against a real nats-server with JetStream (relay_helper).

# shellcheck disable=SC2154 # bats sets stderr, status, output, lines
bats_require_minimum_version 1.5.0
load test_helper
load relay_helper
load prom_helper

setup_file() {
	nats_start
}

teardown_file() {
	nats_stop
}

setup() {
	export LC_ALL=C TZ=UTC
	export HOME="$BATS_TEST_TMPDIR/home"
	mkdir -p "$HOME"
	unset XDG_DATA_HOME CQRS_METRICS_DIR CQRS_METRICS_PERIOD CQRS_METRICS_FOLD
	local v
	for v in "${!CQRS_HEALTH_@}"; do unset "$v"; done
	export CQRS_STORE="$BATS_TEST_TMPDIR/events.db" CQRS_VIEWS="$BATS_TEST_TMPDIR/views.db"
	cd "$BATS_TEST_TMPDIR" || return 1
	relay_env
	STREAM="O$BATS_TEST_NUMBER"
	PREFIX="ops$BATS_TEST_NUMBER.events"
	M="$BATS_TEST_TMPDIR/metrics"
	mkdir -m 755 "$M"
	SEED="$BATS_TEST_TMPDIR/relay.nk"
	install -m 600 "$CQRS_TOP_SRCDIR/tests/fixtures/relay-nkey-TEST-ONLY.seed" "$SEED"
}

teardown() {
	relay_test_teardown
}

relay() {
	cqrs-relay "$@" --stream "$STREAM" --subject-prefix "$PREFIX"
}

# events N [SEED]: N events of a few aggregates (random, seeded)
events() {
	awk -v n="$1" -v seed="${2:-1}" 'BEGIN {
		srand(seed)
		for (a = 0; a < 5; a++)
			agg[a] = sprintf("%08x-0000-4000-8000-%012d", seed, a)
		for (i = 1; i <= n; i++)
			printf "{\"aggregate_id\":\"%s\",\"aggregate_type\":\"Widget\",\"event_type\":\"Noted\",\"data\":{\"n\":%d,\"price\":0.10}}\n",
				agg[int(rand() * 5)], i
	}'
}

# value FILE SAMPLE: one sample's value in $M/FILE, or "absent"
value() {
	awk -v k="$2" '$1 == k { print $2; found = 1 } END { if (!found) print "absent" }' "$M/$1"
}

# fold: the collector folds every journal into its .prom file
fold() {
	run --separate-stderr cqrs-health --textfile "$M" --format ndjson
	[ "$status" -le 2 ] && [ -z "$stderr" ] ||
		fail "cqrs-health --textfile: status $status: $stderr"
	run find "$M" -name '.cqrs_*.journal*'
	assert_output ""
}

# A healthy installation (health.bats): the docs store's 11 events, projected.
# The fixture's events are dated long ago and the events appended here
# are not projected: the views' lag in seconds is not what is tested.
healthy() {
	cqrs-append -q "$CQRS_TOP_SRCDIR/tests/fixtures/docs-store.ndjson"
	cqrs-project
	export CQRS_HEALTH_LAG_SECONDS=0,0
}

# relay_line STREAM: cqrs-health's NDJSON line of that relay in $output
relay_line() {
	jq -c --arg s "$1" 'select(.check == "relay" and .stream == $s)' <<<"$output"
}

# --- metrics ------------------------------------------------------------------------

@test "metrics: events published, replicated and consumed counted by stream; lags 0 when caught up; promtool passes" {
	events 37 | cqrs-append -q
	relay create-stream >/dev/null
	run --separate-stderr relay publish --window 10 --metrics-dir "$M"
	assert_success
	# a second run with nothing new publishes nothing and counts nothing
	CQRS_METRICS_DIR="$M" relay publish >/dev/null
	relay replicate -s replica.db --metrics-dir "$M" >/dev/null
	relay consume --durable ndjson --metrics-dir "$M" >consumed.ndjson
	assert_equal "$(wc -l <consumed.ndjson)" 37
	fold
	f=cqrs_relay.prom
	assert_equal "$(value $f "cqrs_relay_events_total{stream=\"$STREAM\",direction=\"published\"}")" 37
	assert_equal "$(value $f "cqrs_relay_events_total{stream=\"$STREAM\",direction=\"replicated\"}")" 37
	assert_equal "$(value $f "cqrs_relay_events_total{stream=\"$STREAM\",direction=\"consumed\"}")" 37
	assert_equal "$(value $f "cqrs_relay_lag_events{stream=\"$STREAM\"}")" 0
	assert_equal "$(value $f "cqrs_relay_lag_seconds{stream=\"$STREAM\"}")" 0
	# four windows of at most 10, each timed from sent to its PubAcks
	assert_equal "$(value $f "cqrs_relay_ack_latency_seconds_count{stream=\"$STREAM\"}")" 4
	run promtool check metrics <"$M/$f"
	assert_success
	assert_output ""
}

@test "metrics: random workloads (seeded) count what the stream took; a relay that cannot reach the server leaves the lag" {
	relay create-stream >/dev/null
	RANDOM=14
	total=0 windows=0
	for round in 1 2 3 4 5; do
		n=$((RANDOM % 40 + 1)) w=$((RANDOM % 9 + 1))
		events "$n" "$round" | cqrs-append -q
		relay publish --window "$w" --metrics-dir "$M" >/dev/null
		total=$((total + n)) windows=$((windows + (n + w - 1) / w))
	done
	fold
	f=cqrs_relay.prom
	assert_equal "$(value $f "cqrs_relay_events_total{stream=\"$STREAM\",direction=\"published\"}")" "$total"
	assert_equal "$(value $f "cqrs_relay_ack_latency_seconds_count{stream=\"$STREAM\"}")" "$windows"
	assert_equal "$(value $f "cqrs_relay_lag_events{stream=\"$STREAM\"}")" 0
	# 6 more events and no server: exit 69, the gauges say what waits
	events 6 9 | cqrs-append -q
	run --separate-stderr relay publish --server nats://127.0.0.1:1 --retries 0 --metrics-dir "$M"
	assert_failure 69
	fold
	assert_equal "$(value $f "cqrs_relay_lag_events{stream=\"$STREAM\"}")" 6
	lag=$(value $f "cqrs_relay_lag_seconds{stream=\"$STREAM\"}")
	# the oldest of the 6 was appended moments ago
	awk -v l="$lag" 'BEGIN { exit !(l > 0 && l < 60) }' || fail "lag_seconds $lag"
	assert_equal "$(value $f "cqrs_relay_events_total{stream=\"$STREAM\",direction=\"published\"}")" "$total"
	run promtool check metrics <"$M/$f"
	assert_success
}

@test "metrics: publish --follow flushes every CQRS_METRICS_PERIOD, not only at exit" {
	relay create-stream >/dev/null
	events 5 | cqrs-append -q
	CQRS_METRICS_PERIOD=0 CQRS_METRICS_FOLD=0 cqrs-relay publish --follow --metrics-dir "$M" \
		--stream "$STREAM" --subject-prefix "$PREFIX" >follow.out 2>follow.err &
	pid=$!
	k="cqrs_relay_events_total{stream=\"$STREAM\",direction=\"published\"}"
	wait_for() {
		local i
		for ((i = 0; i < 300; i++)); do
			[ -f "$M/cqrs_relay.prom" ] && [ "$(value cqrs_relay.prom "$k")" = "$1" ] && return 0
			sleep 0.1
		done
		fail "cqrs_relay.prom does not count $1 published: $(cat follow.err "$M/cqrs_relay.prom" 2>&1)"
	}
	wait_for 5
	events 3 2 | cqrs-append -q
	wait_for 8
	kill -TERM "$pid"
	wait "$pid"
	fold
	# each counted once: the exit adds nothing twice
	assert_equal "$(value cqrs_relay.prom "$k")" 8
}

@test "without --metrics-dir or CQRS_METRICS_DIR the relay writes no metrics file" {
	relay create-stream >/dev/null
	events 3 | cqrs-append -q
	relay publish >/dev/null
	assert_equal "$(ls -A "$M")" ""
	run --separate-stderr relay publish --metrics-dir ''
	assert_failure 64
	assert_equal "$stderr" "cqrs-relay: --metrics-dir needs a directory"
}

# --- health -------------------------------------------------------------------------

@test "health: lag 0 after a publish, N after N appends, one line per stream; gauges in --textfile" {
	healthy
	relay create-stream >/dev/null
	relay publish >/dev/null
	run --separate-stderr cqrs-health
	assert_success
	assert_equal "$(relay_line "$STREAM")" '{"check":"relay","stream":"'"$STREAM"'","status":"ok","figure":0,"unit":"events","warning":1000,"critical":100000,"detail":"position 11, 0 events behind"}'
	assert_equal "$(jq -r .check <<<"$output" | grep -c '^relay$')" 1
	# a second stream, further behind, and N more events
	cqrs-relay create-stream --stream "B$STREAM" --subject-prefix "b$PREFIX" >/dev/null
	cqrs-relay publish --stream "B$STREAM" --subject-prefix "b$PREFIX" >/dev/null
	events 23 | cqrs-append -q
	relay publish >/dev/null
	events 4 2 | cqrs-append -q
	mkdir -m 700 tf
	run --separate-stderr cqrs-health --textfile tf
	assert_success
	assert_equal "$(jq -c 'select(.check == "relay") | [.stream, .figure, .status]' <<<"$output" | tr '\n' ' ')" \
		"[\"B$STREAM\",27,\"ok\"] [\"$STREAM\",4,\"ok\"] "
	grep -qx "cqrs_relay_pending_events{stream=\"$STREAM\"} 4" tf/cqrs_health.prom
	grep -qx "cqrs_relay_pending_events{stream=\"B$STREAM\"} 27" tf/cqrs_health.prom
	grep -qx "cqrs_relay_position_sequence{stream=\"$STREAM\"} 34" tf/cqrs_health.prom
	grep -qx "cqrs_relay_position_sequence{stream=\"B$STREAM\"} 11" tf/cqrs_health.prom
	grep -qx 'cqrs_health_check_status{check="relay"} 0' tf/cqrs_health.prom
	run promtool check metrics <tf/cqrs_health.prom
	assert_success
	assert_output ""
	# the table: one row per stream
	run --separate-stderr cqrs-health --format table
	assert_line "relay                ok                   27  B$STREAM: position 11"
	assert_line "relay                ok                    4  $STREAM: position 34"
}

@test "health: the relay lag against --relay-lag and CQRS_HEALTH_RELAY_LAG: warning 1, critical 2, the worst stream" {
	healthy
	relay create-stream >/dev/null
	relay publish >/dev/null
	events 10 | cqrs-append -q
	run --separate-stderr cqrs-health --relay-lag 10,20
	assert_failure 1
	assert_equal "$(relay_line "$STREAM")" '{"check":"relay","stream":"'"$STREAM"'","status":"warning","figure":10,"unit":"events","warning":10,"critical":20,"detail":"position 11, 10 events behind"}'
	assert_equal "$(jq -r 'select(.status != "ok") | .check' <<<"$output")" "relay"
	CQRS_HEALTH_RELAY_LAG=5,10 run --separate-stderr cqrs-health
	assert_failure 2
	assert_equal "$(relay_line "$STREAM" | jq -r .status)" critical
	# critical for 10 minutes fires CqrsRelayLagHigh (cqrs-alerts.yml)
	mkdir -m 700 crit
	CQRS_HEALTH_RELAY_LAG=5,10 cqrs-health --textfile crit >/dev/null || [ $? = 2 ]
	promtool_alert CqrsRelayLagHigh "- exp_labels: { severity: critical, instance: shop, check: relay }
  exp_annotations:
    summary: 'A relay to NATS JetStream is far behind the store'
    description: 'cqrs-health on shop found a relay past its critical lag for 10 minutes; cqrs_relay_pending_events says which stream and how far. Is cqrs-relay publish running, and can it reach its server?'" crit/cqrs_health.prom crit/cqrs_health.prom
	# the option wins over the variable; 0 turns a threshold off
	CQRS_HEALTH_RELAY_LAG=5,10 run --separate-stderr cqrs-health --relay-lag 0,0
	assert_success
	# each stream judged on its own; the check's status is the worst
	cqrs-relay create-stream --stream "B$STREAM" --subject-prefix "b$PREFIX" >/dev/null
	cqrs-relay publish --stream "B$STREAM" --subject-prefix "b$PREFIX" >/dev/null
	mkdir -m 700 tf
	run --separate-stderr cqrs-health --relay-lag 5,20 --textfile tf
	assert_failure 1
	assert_equal "$(jq -c 'select(.check == "relay") | [.stream, .figure, .status]' <<<"$output" | tr '\n' ' ')" \
		"[\"B$STREAM\",0,\"ok\"] [\"$STREAM\",10,\"warning\"] "
	grep -qx 'cqrs_health_check_status{check="relay"} 1' tf/cqrs_health.prom
	# a warning does not page
	promtool_alert CqrsRelayLagHigh "[]" tf/cqrs_health.prom tf/cqrs_health.prom
}

@test "health on a PostgreSQL store: the relay's position read there, its lag after N appends" {
	load pg_helper
	pg_start
	local source
	source=$(pg_store relay_health)
	events 25 4 | cqrs-append -q -s "$source"
	relay create-stream >/dev/null
	relay publish -s "$source" >/dev/null
	events 7 5 | cqrs-append -q -s "$source"
	# the views do not exist: critical (2), but the relay check stands
	run --separate-stderr cqrs-health -s "$source" --views views.db --relay-lag 5,100
	assert_failure 2
	assert_equal "$(relay_line "$STREAM")" '{"check":"relay","stream":"'"$STREAM"'","status":"warning","figure":7,"unit":"events","warning":5,"critical":100,"detail":"position 25, 7 events behind"}'
	relay publish -s "$source" >/dev/null
	run --separate-stderr cqrs-health -s "$source" --views views.db
	assert_equal "$(relay_line "$STREAM" | jq -c '[.status, .figure]')" '["ok",0]'
}

@test "health: bad relay thresholds are usage errors (3), named as given" {
	run --separate-stderr cqrs-health --relay-lag 10
	assert_failure 3
	assert_equal "$stderr" "cqrs-health: --relay-lag needs WARNING,CRITICAL, two counts such as 1,10 (0: off): '10'"
	CQRS_HEALTH_RELAY_LAG=x,1 run --separate-stderr cqrs-health
	assert_failure 3
	assert_equal "$stderr" "cqrs-health: CQRS_HEALTH_RELAY_LAG: needs WARNING,CRITICAL, two counts such as 1,10 (0: off): 'x,1'"
}

# --- nkey login ---------------------------------------------------------------------

@test "nkey: --nkey-seed logs in with a user nkey (no user, no password) and publishes" {
	unset CQRS_NATS_USER CQRS_NATS_PASSWORD
	events 9 | cqrs-append -q
	run --separate-stderr relay create-stream --nkey-seed "$SEED"
	assert_success
	run --separate-stderr relay publish --nkey-seed "$SEED"
	assert_success
	assert_equal "$(jq -c '[.published, .lag_events]' <<<"$output")" '[9,0]'
	# without a login the server refuses (77)
	run --separate-stderr relay publish --retries 0
	assert_failure 77
}

@test "nkey: a seed others may write, that is not a user seed, or beside --creds is refused" {
	unset CQRS_NATS_USER CQRS_NATS_PASSWORD
	events 1 | cqrs-append -q
	chmod 666 "$SEED"
	run --separate-stderr relay publish --nkey-seed "$SEED" --retries 0
	assert_failure 77
	assert_equal "$stderr" "cqrs-relay: $SEED: writable by others (mode 0666): someone else could have changed it"
	# one character changed: the checksum no longer matches
	sed 's/^SUAAM7/SUAAM6/' "$CQRS_TOP_SRCDIR/tests/fixtures/relay-nkey-TEST-ONLY.seed" >bad.nk
	chmod 600 bad.nk
	run --separate-stderr relay publish --nkey-seed bad.nk --retries 0
	assert_failure 78
	assert_equal "$stderr" "cqrs-relay: bad.nk: not a user nkey seed (58 characters, SU...)"
	# the public key is no seed
	install -m 600 "$CQRS_TOP_SRCDIR/tests/fixtures/relay-nkey-TEST-ONLY.pub" pub.nk
	run --separate-stderr relay publish --nkey-seed pub.nk --retries 0
	assert_failure 78
	run --separate-stderr relay publish --nkey-seed missing.nk --retries 0
	assert_failure 66
	assert_equal "$stderr" "cqrs-relay: missing.nk: No such file or directory"
	run --separate-stderr relay publish --nkey-seed "$SEED" --creds "$SEED"
	assert_failure 64
	assert_equal "$stderr" "cqrs-relay: --creds and --nkey-seed are two logins: one of them"
}

# --- another user, and files someone else could have planted -------------------------

@test "another user (nobody) replicates into its own replica with its own password file; files others planted are refused (77)" {
	events 12 | cqrs-append -q
	relay create-stream
	relay publish -q
	unset CQRS_NATS_PASSWORD
	mkdir -m 700 nb
	printf '%s\n' "$NATS_PASSWORD" >nb/pw
	chmod 600 nb/pw
	chown -R nobody:nogroup nb
	run_as_other_user CQRS_NATS_URL="$CQRS_NATS_URL" CQRS_NATS_USER="$NATS_USER" \
		cqrs-relay replicate -q -s nb/replica.db --password-file nb/pw \
		--stream "$STREAM" --subject-prefix "$PREFIX"
	assert_success
	assert_output ""
	assert_equal "$stderr" ""
	run stat -c '%U %a' nb/replica.db
	assert_output "nobody 600"
	cqrs-read >source.ndjson
	cqrs-read -s nb/replica.db | cmp - source.ndjson
	# a password file another user (daemon) put there: not nobody's, not root's
	install -m 644 -o daemon /dev/null nb/planted
	printf '%s\n' "$NATS_PASSWORD" >nb/planted
	run_as_other_user CQRS_NATS_URL="$CQRS_NATS_URL" CQRS_NATS_USER="$NATS_USER" \
		cqrs-relay replicate -s nb/replica.db --password-file nb/planted \
		--stream "$STREAM" --subject-prefix "$PREFIX"
	assert_failure 77
	assert_equal "$stderr" "cqrs-relay: nb/planted: owned by daemon, not by nobody or root: someone else could have planted it"
	# as root: a CA, a client certificate, a creds, seed or password file
	# daemon owns is refused before any connection (the CA decides whom
	# the relay trusts)
	install -m 644 -o daemon /dev/null planted.pem
	for opt in --tls-ca --tls-cert --creds --nkey-seed --password-file; do
		run --separate-stderr relay publish "$opt" planted.pem --retries 0
		assert_failure 77
		assert_equal "$stderr" "cqrs-relay: planted.pem: owned by daemon, not by root: someone else could have planted it"
	done
	run --separate-stderr relay publish --tls-ca missing.pem --retries 0
	assert_failure 66
	assert_equal "$stderr" "cqrs-relay: missing.pem: No such file or directory"
}
