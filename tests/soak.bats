#!/usr/bin/env bats
# The soak (issue 10), short: writers, --follow readers, the projector and
# the saga runner together for 20 seconds, then every check of
# tests/soak/soak.sh (tests/soak/README).  `make soak DURATION=3600` runs it
# for an hour.

load test_helper

@test "soak: 20 s of writers, followers, projector and sagas; every check holds" {
	[ -z "${CQRS_UNDER_VALGRIND:-}" ] || skip "measures memory; too slow under valgrind"
	command -v sqlite3 >/dev/null || fail "the soak needs sqlite3 (tests/debian-packages-check)"
	# under ASan (make sanitize) its quarantine and shadow memory grow:
	# memory is reported, not judged
	local judge=1
	[ -z "${CQRS_UNDER_SANITIZER:-}" ] || judge=0
	TMPDIR=$BATS_TEST_TMPDIR SOAK_INTERVAL=0.4 SOAK_RSS_JUDGE=$judge run bash "$CQRS_TOP_SRCDIR/tests/soak/soak.sh" 20
	assert_success
	assert_line "soak: PASS"
	assert_output --regexp "follower reader1 +[1-9][0-9]* events"
	assert_output --regexp "follower reader2 +[1-9][0-9]* events"
	assert_output --regexp "sagas +[1-9][0-9]* orders, [1-9][0-9]* sagas: [1-9][0-9]* completed, [0-9]+ failed"
	assert_output --regexp "0 running, 0 compensating, 0 stuck"
	assert_output --regexp "chain +verified [1-9][0-9]* events"
	# the work directory is gone
	run compgen -G "$BATS_TEST_TMPDIR/cqrs-soak.*"
	assert_failure
}
