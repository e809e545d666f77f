# tests/soak/local.mk: included by Makefile.am (issue 10); paths are from the top of the tree
#
# The soak: writers (cqrs-append, cqrs-command), two `cqrs-read --follow`
# readers, `cqrs-project --follow` and `cqrs-saga run --follow` together for
# DURATION seconds, then the checks of tests/soak/README.
#   make soak                  one minute
#   make soak DURATION=3600    an hour (run it under nice -n 10 on a shared machine)
# make check runs a short one (tests/soak.bats, about 25 s).
DURATION = 60
BATS_SUITES += tests/soak.bats
EXTRA_DIST += tests/soak/soak.sh tests/soak/README
soak: all
	@$(AM_TESTS_ENVIRONMENT) DURATION='$(DURATION)'; export DURATION; \
	$(SHELL) $(srcdir)/tests/soak/soak.sh
.PHONY: soak
# make lint checks the driver too
lint: lint-soak
lint-soak:
	shellcheck -x $(srcdir)/tests/soak/soak.sh
.PHONY: lint-soak
