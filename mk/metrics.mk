# issue 11: metrics for Prometheus, dashboards and alerts (included from Makefile.am)
lib_libcqrs_a_SOURCES += lib/ops/metrics.c
