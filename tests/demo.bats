#!/usr/bin/env bats
# cqrs-demo, the story `make demo` tells: it runs to the end on a store of
# its own in $TMPDIR, shows what each step promises, and leaves nothing
# behind unless asked to keep it (-k).
load test_helper

@test "the demo runs to the end and leaves nothing behind" {
	export TMPDIR=$BATS_TEST_TMPDIR/tmp
	mkdir "$TMPDIR"
	run --separate-stderr cqrs-demo
	assert_success
	assert_line "exit status 3"
	assert_line "the copy is identical"
	assert_line --regexp '^verified 4 events, head [0-9a-f]{64}$'
	assert_line '$ cqrs-saga run -v'
	assert_line 'digraph "order" {'
	run ls -A "$TMPDIR"
	assert_output ''
}

@test "a bad option is a usage error, with the usage on standard error" {
	run --separate-stderr cqrs-demo --bogus
	assert_failure 64
	assert_output ''
	assert_equal "$stderr" "usage: cqrs-demo [-k]"
}
