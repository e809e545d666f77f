#!/usr/bin/env bats
# The allocation and I/O failure sweep (tests/faultsweep/README) on a
# sample of its points, and the failures it found, kept as regressions.
load test_helper

SWEEP="${CQRS_TOP_SRCDIR:?}/tests/faultsweep/sweep.sh"
export CQRS_SWEEP_LIB="${CQRS_TOP_BUILDDIR:?}/tests/faultsweep/libsweep.so"

# Runs a tool with the injector preloaded (ASan insists on coming first in
# the link order; the injector forwards to it).
injected() {
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
		LD_PRELOAD="$CQRS_SWEEP_LIB" "$@"
}

@test "cqrs-read out of memory at its first allocation names itself" {
	event 11111111-1111-4111-8111-111111111111 | cqrs-append --quiet
	CQRS_SWEEP_ALLOC=1 run --separate-stderr injected cqrs-read --verify
	assert_failure 71
	assert_equal "$stderr" "cqrs-read: out of memory"
}
