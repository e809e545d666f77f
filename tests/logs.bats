#!/usr/bin/env bats
# Structured logs (cqrs(7), OPERATIONS, Logs): --log-format json and
# CQRS_LOG_FORMAT give one valid JSON object per line on stderr, with the
# text form's message and the ids at hand; the text form stays as it was.

load saga_helper

RFC3339_UTC='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3,6}Z$'

# check_json_error TOOL CODE ARGS...: the error path ARGS gives CODE and one
# line in each form; the JSON line parses, names the tool, level error, a
# UTC time, and the text form's message.
check_json_error() {
	local tool=$1 code=$2
	shift 2
	run --separate-stderr "$tool" "$@" </dev/null
	assert_failure "$code"
	[ "${#stderr_lines[@]}" -eq 1 ] || fail "$tool $*: text form: ${#stderr_lines[@]} lines: $stderr"
	local text=$stderr
	[[ $text == "$tool: "* ]] || fail "$tool $*: text form: $text"
	run --separate-stderr "$tool" "$@" --log-format json </dev/null
	assert_failure "$code"
	[ "${#stderr_lines[@]}" -eq 1 ] || fail "$tool $*: json form: ${#stderr_lines[@]} lines: $stderr"
	jq -e . <<<"$stderr" >/dev/null || fail "$tool $*: not JSON: $stderr"
	assert_equal "$(jq -r .tool <<<"$stderr")" "$tool"
	assert_equal "$(jq -r .level <<<"$stderr")" error
	assert_regex "$(jq -r .time <<<"$stderr")" "$RFC3339_UTC"
	assert_equal "$(jq -r .message <<<"$stderr")" "${text#"$tool: "}"
	assert_equal "$(jq -r 'keys_unsorted | join(",")' <<<"$stderr")" time,level,tool,message
}

@test "every tool's error in JSON: one line, its tool, level and time, the text form's message" {
	check_json_error cqrs-append 64 --batch 0
	check_json_error cqrs-read 66 --store missing.db
	check_json_error cqrs-command 66 --store missing.db show 11111111-2222-4333-8444-555555555555
	CQRS_VIEWS=$BATS_TEST_TMPDIR/views.db check_json_error cqrs-project 66 --store missing.db
	check_json_error cqrs-query 66 --views missing.db orders
	check_json_error cqrs-saga 66 show --store missing.db 11111111
	check_json_error cqrs-saga 66 run --store missing.db
	[ ! -e missing.db ]
}

@test "CQRS_LOG_FORMAT=json does what --log-format json does; the option wins over it" {
	CQRS_LOG_FORMAT=json run --separate-stderr cqrs-read --store missing.db
	assert_failure 66
	assert_equal "$(jq -r '[.tool, .level, .message] | join("|")' <<<"$stderr")" \
		'cqrs-read|error|missing.db: no such store'
	CQRS_LOG_FORMAT=json run --separate-stderr cqrs-read --log-format text --store missing.db
	assert_failure 66
	assert_equal "$stderr" 'cqrs-read: missing.db: no such store'
	CQRS_LOG_FORMAT=text run --separate-stderr cqrs-read --store missing.db
	assert_equal "$stderr" 'cqrs-read: missing.db: no such store'
	# empty counts as unset
	CQRS_LOG_FORMAT= run --separate-stderr cqrs-read --store missing.db
	assert_equal "$stderr" 'cqrs-read: missing.db: no such store'
}

@test "a bad log format is a usage error (64) in every tool" {
	local t
	for t in cqrs-append cqrs-read cqrs-command cqrs-project cqrs-query; do
		run --separate-stderr "$t" --log-format yaml
		assert_failure 64
		assert_equal "$stderr" "$t: --log-format: unknown format 'yaml' (json or text)"
		run --separate-stderr "$t" --log-format=yaml
		assert_failure 64
		CQRS_LOG_FORMAT=xml run --separate-stderr "$t" --help
		assert_failure 64
		assert_equal "$stderr" "$t: CQRS_LOG_FORMAT: unknown log format 'xml' (json or text)"
		assert_equal "$output" ''
	done
	# cqrs-health and cqrs-trace have it too; a usage error is 3 in cqrs-health
	run --separate-stderr cqrs-health --log-format yaml
	assert_failure 3
	assert_equal "$stderr" "cqrs-health: --log-format: unknown format 'yaml' (json or text)"
	run --separate-stderr cqrs-trace --log-format=yaml x
	assert_failure 64
	assert_equal "$stderr" "cqrs-trace: --log-format: unknown format 'yaml' (json or text)"
	run --separate-stderr cqrs-trace --log-format json --store missing.db 00000000-0000-4000-8000-000000000001
	assert_failure 66
	assert_equal "$(jq -r '[.tool, .level, .message] | join("|")' <<<"$stderr")" "cqrs-trace|error|missing.db: no such store"
	run --separate-stderr cqrs-saga status --log-format yaml
	assert_failure 64
	assert_equal "$stderr" "cqrs-saga: --log-format: unknown format 'yaml' (json or text)"
	CQRS_LOG_FORMAT=xml run --separate-stderr cqrs-saga status
	assert_failure 64
	assert_equal "$stderr" "cqrs-saga: CQRS_LOG_FORMAT: unknown log format 'xml' (json or text)"
}

@test "--log-format applies to messages about options given before it" {
	run --separate-stderr cqrs-read --limit 0 --log-format json
	assert_failure 64
	assert_equal "$(jq -r .message <<<"$stderr")" '--limit needs a positive count'
	run --separate-stderr cqrs-saga run --batch 0 --log-format=json
	assert_failure 64
	assert_equal "$(jq -r .message <<<"$stderr")" "--batch needs a count from 1 to 100000: '0'"
	# after "--", it is an operand
	run --separate-stderr cqrs-query --views missing.db sql 'SELECT ?' -- --log-format json
	assert_failure 66
	assert_equal "$stderr" 'cqrs-query: missing.db: no such views file (cqrs-project builds it)'
}

@test "a bad option in JSON: getopt's words as a JSON error line, the synopsis as one more, no text" {
	local t args
	for t in cqrs-append cqrs-read cqrs-command cqrs-project cqrs-query cqrs-health cqrs-trace; do
		run --separate-stderr "$t" --log-format json --bogus
		assert_failure "$([ "$t" = cqrs-health ] && echo 3 || echo 64)"
		[ "${#stderr_lines[@]}" -eq 2 ] || fail "$t: ${#stderr_lines[@]} lines: $stderr"
		assert_equal "$(jq -r '[.tool, .level, .message] | join("|")' <<<"${stderr_lines[0]}")" \
			"$t|error|unrecognized option '--bogus'"
		assert_regex "$(jq -r '[.level, .message] | join("|")' <<<"${stderr_lines[1]}")" "^error\|usage: $t "
		# the text form: getopt's words, then the synopsis as it is
		run --separate-stderr "$t" --bogus
		assert_equal "${stderr_lines[0]}" "$t: unrecognized option '--bogus'"
		assert_regex "${stderr_lines[1]}" "^usage: $t "
	done
	# each kind of complaint, in glibc's words
	for args in "-s|option requires an argument -- 's'" "--store|option '--store' requires an argument" \
		"-x|invalid option -- 'x'" "--help=1|option '--help' doesn't allow an argument" \
		"--ve|option '--ve' is ambiguous"; do
		CQRS_LOG_FORMAT=json run --separate-stderr cqrs-read "${args%%|*}"
		assert_failure 64
		assert_equal "$(jq -r .message <<<"${stderr_lines[0]}")" "${args#*|}"
		run --separate-stderr cqrs-read "${args%%|*}"
		assert_equal "${stderr_lines[0]}" "cqrs-read: ${args#*|}"
	done
}

@test "quotes, backslashes, newlines and invalid UTF-8 in a message still give one valid JSON line" {
	local name=$'we"ird\\path\nnext\xff\xfe\x01.db'
	run --separate-stderr cqrs-read --log-format json --store "$name"
	assert_failure 66
	[ "${#stderr_lines[@]}" -eq 1 ] || fail "${#stderr_lines[@]} lines: $stderr"
	# strict UTF-8 and JSON: python's decoder refuses what jq might repair
	python3 -c 'import json, sys; json.loads(sys.stdin.buffer.read().decode("utf-8", "strict"))' <<<"$stderr"
	assert_equal "$(jq -r .message <<<"$stderr")" $'we"ird\\path\nnext\xef\xbf\xbd\xef\xbf\xbd\x01.db: no such store'
	assert_equal "$(jq -c .message <<<"$stderr")" '"we\"ird\\path\nnext��\u0001.db: no such store"'
}

@test "the text form is as it was: 'tool: message', one line, no time" {
	run --separate-stderr cqrs-read --store missing.db
	assert_failure 66
	assert_equal "$stderr" 'cqrs-read: missing.db: no such store'
	run --separate-stderr cqrs-append --batch 0
	assert_equal "$stderr" "cqrs-append: --batch needs a positive count: '0'"
}

@test "a projector parking an event names its sequence, aggregate and correlation (-v)" {
	local A=7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f
	printf '{"aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderNoted","data":{},"metadata":{"correlation_id":"corr-\\"7\\""}}\n' "$A" |
		cqrs-append -q
	cat >strict.yaml <<-'EOF'
		projections:
		  - name: strict
		    tables:
		      - CREATE TABLE strict (id TEXT PRIMARY KEY, total INTEGER NOT NULL)
		    on:
		      OrderNoted: INSERT INTO strict VALUES (:aggregate_id, NULL)
	EOF
	export CQRS_VIEWS=$BATS_TEST_TMPDIR/views.db
	run --separate-stderr cqrs-project -v --log-format json --no-default-projections -P strict.yaml
	assert_failure 5
	assert_equal "${#stderr_lines[@]}" 3
	local parked=${stderr_lines[0]}
	assert_equal "$(jq -r '[.level, .tool, .sequence, .aggregate, .correlation] | join("|")' <<<"$parked")" \
		"warning|cqrs-project|1|$A|corr-\"7\""
	assert_equal "$(jq -r .message <<<"$parked")" \
		"projection 'strict' parked event 1 (OrderNoted): strict.yaml:6: projection 'strict', on OrderNoted: NOT NULL constraint failed: strict.total"
	assert_equal "$(jq -r 'keys_unsorted | join(",")' <<<"$parked")" \
		time,level,tool,message,sequence,aggregate,correlation
	# what follows is about the run, not an event: no ids
	assert_equal "$(jq -r '[.level, .message, has("sequence")] | join("|")' <<<"${stderr_lines[1]}")" \
		'info|applied 1 events; views at sequence 1|false'
	assert_equal "$(jq -r '[.level, has("aggregate")] | join("|")' <<<"${stderr_lines[2]}")" 'warning|false'
	# without -v: the one line it always gave
	run --separate-stderr cqrs-project --no-default-projections -P strict.yaml
	assert_failure 5
	assert_equal "$stderr" "cqrs-project: 1 event parked (strict 1 from event 1): cqrs-project --parked lists them"
}

@test "a saga step that fails names the saga, the step and the correlation" {
	saga_setup
	export PAYMENT_GATEWAY_AUTHORIZE_MODE=fail
	order 1
	run --separate-stderr cqrs-saga run -v --log-format json
	assert_success
	local failed
	failed=$(jq -c 'select(.message | test("of authorize_payment failed"))' <<<"$stderr")
	[ -n "$failed" ] || fail "no line for the failed step: $stderr"
	assert_equal "$(jq -r '[.level, .tool, .saga, .step, .correlation] | join("|")' <<<"$failed")" \
		"warning|cqrs-saga|$(saga_of 1)|authorize_payment|order-1"
	# every line is one JSON object
	jq -e . <<<"$stderr" >/dev/null
	assert_equal "$(jq -s 'map(select(.level == "info")) | length > 0' <<<"$stderr")" true
	# the run's summary names no saga
	assert_equal "$(jq -r 'select(.message | startswith("started ")) | has("saga")' <<<"$stderr")" false
}

@test "a command's message names its aggregate and correlation" {
	local P1=3c9a7b1e-4d2f-4e8a-b6c5-0f1e2d3c4b5a
	cqrs-command -q register-product --product "$P1" --sku SKU-1 --name Widget --quantity 5
	CQRS_TEST_CONFLICTS=5 run --separate-stderr cqrs-command --log-format json <<<'{"command_id":"v-1","type":"ReplenishStock","product_id":"'$P1'","quantity":1,"correlation_id":"story-1"}'
	assert_failure 3
	assert_equal "$(jq -r '[.level, .message, .aggregate, .correlation] | join("|")' <<<"$stderr")" \
		"warning|stdin:1: version conflict on product $P1: gave up after 5 attempts|$P1|story-1"
}

@test "a follower's text lines begin with an RFC 3339 time; other runs' do not" {
	cqrs-append -q < <(event 7d0c2a9e-5b7f-4e0c-8f7e-1b2a3c4d5e6f OrderNoted)
	export CQRS_VIEWS=$BATS_TEST_TMPDIR/views.db
	cqrs-project -v --follow 2>follow.err &
	local pid=$! i
	for ((i = 0; i < 400 * GUARD_SCALE; i++)); do
		[ -s follow.err ] && break
		sleep 0.025
	done
	kill -TERM "$pid"
	wait "$pid" || fail "--follow exited $?"
	run cat follow.err
	assert_regex "${lines[0]}" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z cqrs-project: applied 1 events; views at sequence 1$'
	# not following: no time
	run --separate-stderr cqrs-project -v
	assert_equal "$stderr" 'cqrs-project: applied 0 events; views at sequence 1'
}
