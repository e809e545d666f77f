# issue 11: an order's trace, OTLP/JSON (included from Makefile.am)
# the W3C traceparent a command keeps in its events' metadata
lib_libcqrs_a_SOURCES += lib/common/traceparent.c
# the trace of an order from the causation of its events
lib_libcqrs_a_SOURCES += lib/ops/trace.c
bin_PROGRAMS += cqrs-trace
cqrs_trace_SOURCES = src/cqrs-trace.c
dist_man_MANS += man/cqrs-trace.1
BATS_SUITES += tests/trace.bats
EXTRA_DIST += tests/otlp-validate.py tests/data/otlp
