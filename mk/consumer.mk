# issue 11: durable consumers for shell scripts (included from Makefile.am)
# cqrs-read --checkpoint: a named consumer's position, and output that
# knows what its reader has taken
lib_libcqrs_a_SOURCES += lib/ops/position.c lib/ops/delivery.c
BATS_SUITES += tests/consumer.bats
examplesdir = $(pkgdatadir)/examples
dist_examples_SCRIPTS = share/examples/notify-shipments
# make lint: the example scripts too
lint: lint-examples
lint-examples:
	shellcheck $(srcdir)/share/examples/*
.PHONY: lint-examples
