#!/usr/bin/env bats
# cqrs-saga as cron and a shell user meet it (a missing store, a busy run,
# a mistyped option), and its step programs: nothing they start outlives
# the step, and the sample ones are safe when one key comes twice at once.

load test_helper

THING=3c9a7b1e-4d2f-4e8a-b6c5-0f1e2d3c4b5a

# A store with one Ping event, which starts the spawn saga below.
ping() {
	printf '{"aggregate_id":"%s","aggregate_type":"Thing","event_type":"Ping","data":{}}\n' \
		"$THING" | cqrs-append >/dev/null
}

# A saga of one external step, ./spawner, whose program starts a grandchild
# in a session of its own (setsid), writes its pid to $GRANDCHILD_PID, and
# then answers (SPAWNER_MODE unset) or hangs past its timeout (hang).
spawn_saga() {
	cat >spawner <<'EOF'
#!/bin/sh
setsid sh -c 'echo $$ >"$0.tmp"; mv "$0.tmp" "$0"; exec sleep 1000' "$GRANDCHILD_PID" \
	</dev/null >/dev/null 2>&1 &
while [ ! -s "$GRANDCHILD_PID" ]; do sleep 0.01; done
[ "${SPAWNER_MODE:-}" = hang ] && exec sleep 1000
echo '{}'
EOF
	chmod +x spawner
	cat >spawn.yaml <<'EOF'
saga: spawn
start:
  event_type: Ping
  aggregate_type: Thing
steps:
  - name: spawn
    run: [./spawner]
    timeout: 3s
    retry:
      max_attempts: 1
EOF
	export GRANDCHILD_PID="$BATS_TEST_TMPDIR/grandchild.pid"
}

teardown() {
	# a failed test must not leave its sleeper behind
	if [ -s "${GRANDCHILD_PID:-/nonexistent}" ]; then
		kill -9 "$(cat "$GRANDCHILD_PID")" 2>/dev/null || true
	fi
}

# --- a missing store -------------------------------------------------------

@test "every command on a missing store exits 66, names the store, and creates nothing" {
	mkdir empty
	local cmd
	for cmd in run retry status show dot; do
		local args=()
		case $cmd in retry | show | dot) args=(01234567-89ab-7def-8123-456789abcdef) ;; esac
		run --separate-stderr cqrs-saga "$cmd" -s empty/events.db "${args[@]}"
		assert_failure 66
		assert_equal "$stderr" "cqrs-saga: empty/events.db: no such store"
		assert_equal "$(ls -A empty)" ""
	done
	# the same through CQRS_STORE, with -v and --wait
	CQRS_STORE=empty/shop.db run --separate-stderr cqrs-saga run -v --wait
	assert_failure 66
	assert_equal "$stderr" "cqrs-saga: empty/shop.db: no such store"
	assert_equal "$(ls -A empty)" ""
}

@test "a run with no store anywhere exits 66 and makes no default directory" {
	unset CQRS_STORE
	run --separate-stderr cqrs-saga run
	assert_failure 66
	assert_equal "$stderr" "cqrs-saga: $HOME/.local/share/cqrs/events.db: no such store"
	assert_equal "$(ls -A "$HOME")" ""
}

# --- a busy run --------------------------------------------------------------

@test "a run that finds another one running exits 75 in silence, so cron mails nothing; -v says why" {
	sqlite_only "STORE.saga.lock is SQLite's; runners share a PostgreSQL store (pg-saga.bats)"
	ping
	exec 9>"$CQRS_STORE.saga.lock"
	flock 9
	run --separate-stderr cqrs-saga run
	assert_failure 75
	assert_equal "$stderr" ""
	assert_output ""
	run --separate-stderr cqrs-saga run -v
	assert_failure 75
	assert_equal "$stderr" "cqrs-saga: $CQRS_STORE.saga.lock: another cqrs-saga run holds the lock; try again later (or use --wait)"
	exec 9>&-
}

# --- option errors -----------------------------------------------------------

@test "an unknown option before the command: the tool's name, the message and the usage, exit 64" {
	run --separate-stderr cqrs-saga --bogus
	assert_failure 64
	assert_equal "${stderr_lines[0]}" "cqrs-saga: unrecognized option '--bogus'"
	assert_equal "${stderr_lines[1]}" "usage: cqrs-saga run [-v] [--follow] [--wait] [-b count] [-f file]... [-s store] [--no-sync]"
	assert_output ""
	run --separate-stderr cqrs-saga -x
	assert_failure 64
	assert_equal "${stderr_lines[0]}" "cqrs-saga: unrecognized option '-x'"
	run --separate-stderr cqrs-saga -s x.db run
	assert_failure 64
	assert_equal "${stderr_lines[0]}" "cqrs-saga: option '-s' goes after the command"
}

@test "every command names the tool and itself in an option error, exit 64" {
	local cmd
	for cmd in run status show dot retry check; do
		run --separate-stderr cqrs-saga "$cmd" --bogus
		assert_failure 64
		assert_equal "${stderr_lines[0]}" "cqrs-saga: $cmd: unrecognized option '--bogus'"
		assert_equal "${stderr_lines[1]:0:20}" "usage: cqrs-saga run"
		run --separate-stderr cqrs-saga "$cmd" -x
		assert_failure 64
		assert_equal "${stderr_lines[0]}" "cqrs-saga: $cmd: invalid option -- 'x'"
	done
	run --separate-stderr cqrs-saga run -s
	assert_failure 64
	assert_equal "${stderr_lines[0]}" "cqrs-saga: run: option requires an argument -- 's'"
	run --separate-stderr cqrs-saga status --store
	assert_failure 64
	assert_equal "${stderr_lines[0]}" "cqrs-saga: status: option '--store' requires an argument"
	run --separate-stderr cqrs-saga run --follow=yes
	assert_failure 64
	assert_equal "${stderr_lines[0]}" "cqrs-saga: run: option '--follow' doesn't allow an argument"
	run --separate-stderr cqrs-saga run --fo
	assert_failure 64
	assert_equal "${stderr_lines[0]}" "cqrs-saga: run: option '--fo' is ambiguous"
}

@test "an option of another command is refused, not ignored, exit 64" {
	local pair cmd opt
	for pair in "status --follow" "show --wait" "retry -v" "check -s" "dot --stuck-after" \
		"run --format" "status -T"; do
		cmd=${pair% *} opt=${pair#* }
		run --separate-stderr cqrs-saga "$cmd" "$opt" x
		assert_failure 64
		[[ ${stderr_lines[0]} == "cqrs-saga: $cmd: option '--"*"' does not apply to this command" ]] ||
			fail "$pair: ${stderr_lines[0]}"
	done
	run --separate-stderr cqrs-saga status --wait
	assert_failure 64
	assert_equal "${stderr_lines[0]}" "cqrs-saga: status: option '--wait' does not apply to this command"
}

# --- what a step program starts ----------------------------------------------

@test "a grandchild in a session of its own does not survive its step's timeout" {
	spawn_saga
	ping
	SPAWNER_MODE=hang run --separate-stderr cqrs-saga run -f spawn.yaml
	assert_success
	[ -s "$GRANDCHILD_PID" ] || fail "the step program never started its grandchild"
	pid=$(cat "$GRANDCHILD_PID")
	run kill -0 "$pid"
	assert_failure
	assert_equal "$(cqrs-read --event-type SagaStepFailed | jq -r .data.reason)" "timed out after 3s, killed"
}

@test "a grandchild in a session of its own does not survive its step's end" {
	spawn_saga
	ping
	run --separate-stderr cqrs-saga run -f spawn.yaml
	assert_success
	assert_equal "$(store_query 'SELECT status FROM saga_instances')" COMPLETED
	pid=$(cat "$GRANDCHILD_PID")
	run kill -0 "$pid"
	assert_failure
}

# --- one key, called again while the first call runs ---------------------------

# Eight calls of step program $1 $2 at once with one idempotency key: one
# effect (one "ok" in its call log), eight identical answers.
eight_at_once() {
	local prog=$1 action=$2 dir=$3 request=$4 i
	for i in 1 2 3 4 5 6 7 8; do
		printf '%s' "$request" | "$CQRS_SHAREDIR/steps/$prog" "$action" >"answer.$i" &
	done
	wait
	assert_equal "$(grep -c ' ok$' "$dir/calls.log")" 1
	assert_equal "$(grep -c ' replay$' "$dir/calls.log")" 7
	assert_equal "$(cat answer.* | sort -u | wc -l)" 1
	assert_equal "$(wc -l <answer.8)" 1
}

@test "payment-gateway: eight concurrent calls with one key give one effect and one answer" {
	export PAYMENT_GATEWAY_DIR="$BATS_TEST_TMPDIR/pg"
	unset PAYMENT_GATEWAY_MODE PAYMENT_GATEWAY_AUTHORIZE_MODE PAYMENT_GATEWAY_DECLINE
	eight_at_once payment-gateway authorize "$PAYMENT_GATEWAY_DIR" \
		'{"idempotency_key":"saga-1/authorize_payment","input":{"customer_id":"c-1","amount":"9.99"}}'
	run jq -r .status answer.1
	assert_output authorized
}

@test "the sample steps keep a directory per user: another's is refused (77), not written into" {
	[ "$(id -u)" = 0 ] || fail "needs root to act as nobody (uid $(id -u))"
	command -v setpriv >/dev/null || fail "setpriv not found (Debian package util-linux)"
	unset PAYMENT_GATEWAY_DIR SHIPPING_LABEL_DIR PAYMENT_GATEWAY_MODE PAYMENT_GATEWAY_AUTHORIZE_MODE \
		PAYMENT_GATEWAY_DECLINE SHIPPING_LABEL_MODE SHIPPING_LABEL_CREATE_MODE SHIPPING_LABEL_COUNTRIES
	# the programs where nobody can reach them (the checkout may be in a private home)
	local bin=$BATS_TEST_TMPDIR/steps nobody d
	nobody=$(id -u nobody)
	mkdir -m 755 "$bin" "$BATS_TEST_TMPDIR/tmp"
	chmod 1777 "$BATS_TEST_TMPDIR/tmp"
	cp "$CQRS_TOP_SRCDIR/share/steps/payment-gateway" "$CQRS_TOP_SRCDIR/share/steps/shipping-label" "$bin/"
	chmod 755 "$bin"/*
	d=$BATS_TEST_TMPDIR
	while [ "$d" != / ] && [ "$d" != "$(dirname "$BATS_RUN_TMPDIR")" ]; do
		chmod o+x "$d"
		d=$(dirname "$d")
	done
	as_nobody() {
		run --separate-stderr setpriv --reuid=nobody --regid=nogroup --clear-groups \
			env -i PATH=/usr/bin:/bin TMPDIR="$BATS_TEST_TMPDIR/tmp" "$bin/$1" "$2" <<<"$3"
	}
	local pay='{"idempotency_key":"s-1/authorize_payment","input":{"customer_id":"c-1","amount":"9.99"}}'
	local label='{"idempotency_key":"s-1/create_shipping_label","input":{"address":{"country":"US"}}}'
	# root ran the demo first: its directories are its own, 0700
	TMPDIR=$BATS_TEST_TMPDIR/tmp run --separate-stderr "$bin/payment-gateway" authorize <<<"$pay"
	assert_success
	assert_equal "$(stat -c '%a %U' "$BATS_TEST_TMPDIR/tmp/payment-gateway-0")" "700 root"
	# nobody gets its own, and the answer
	as_nobody payment-gateway authorize "$pay"
	assert_success
	assert_equal "$(jq -r .status <<<"$output")" authorized
	assert_equal "$(stat -c '%a %U' "$BATS_TEST_TMPDIR/tmp/payment-gateway-$nobody")" "700 nobody"
	# a directory planted under nobody's name, by root or writable by others: refused, untouched
	mkdir -m 755 "$BATS_TEST_TMPDIR/tmp/shipping-label-$nobody"
	as_nobody shipping-label create "$label"
	assert_failure 77
	assert_equal "$stderr" "shipping-label: $BATS_TEST_TMPDIR/tmp/shipping-label-$nobody: not this user's own directory: refused (set SHIPPING_LABEL_DIR)"
	assert_equal "$(ls -A "$BATS_TEST_TMPDIR/tmp/shipping-label-$nobody")" ""
	rmdir "$BATS_TEST_TMPDIR/tmp/shipping-label-$nobody"
	mkdir -m 777 "$BATS_TEST_TMPDIR/tmp/shipping-label-$nobody"
	chown nobody "$BATS_TEST_TMPDIR/tmp/shipping-label-$nobody"
	as_nobody shipping-label create "$label"
	assert_failure 77
	chmod 700 "$BATS_TEST_TMPDIR/tmp/shipping-label-$nobody"
	as_nobody shipping-label create "$label"
	assert_success
	assert_equal "$(jq -r .carrier <<<"$output")" FedEx
}

@test "shipping-label: eight concurrent calls with one key give one effect and one answer" {
	export SHIPPING_LABEL_DIR="$BATS_TEST_TMPDIR/sl"
	unset SHIPPING_LABEL_MODE SHIPPING_LABEL_CREATE_MODE SHIPPING_LABEL_COUNTRIES
	eight_at_once shipping-label create "$SHIPPING_LABEL_DIR" \
		'{"idempotency_key":"saga-1/create_shipping_label","input":{"address":{"country":"US"}}}'
	run jq -r .carrier answer.1
	assert_output FedEx
}
