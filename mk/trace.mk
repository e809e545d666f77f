# issue 11: an order's trace, OTLP/JSON (included from Makefile.am)
# the W3C traceparent a command keeps in its events' metadata
lib_libcqrs_a_SOURCES += lib/common/traceparent.c
