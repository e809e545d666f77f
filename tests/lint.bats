#!/usr/bin/env bats
# The habits, enforced: the code is formatted, cppcheck and shellcheck are
# quiet, and every man page is clean under mandoc -Tlint.  `make lint` is
# the same check by hand.
load test_helper

@test "make lint passes: clang-format, cppcheck, shellcheck, mandoc -Tlint" {
	run make -s -C "$CQRS_TOP_BUILDDIR" lint
	assert_success
}
