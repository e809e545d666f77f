# issue 11: metrics for Prometheus, dashboards and alerts (included from Makefile.am)
# lib/ops/metrics.c: the tools' own metrics, merged into DIR/cqrs_TOOL.prom
lib_libcqrs_a_SOURCES += lib/ops/metrics.c
dist_man_MANS += man/cqrs-metrics.7
grafanadir = $(pkgdatadir)/grafana
dist_grafana_DATA = share/grafana/cqrs-dashboard.json
BATS_SUITES += tests/metrics.bats
# the cost of metrics (CPU per command, per appended event): by hand only
EXTRA_DIST += tests/bench/metrics-cost tests/bench/metrics-merge.c
EXTRA_PROGRAMS += tests/bench/metrics-merge
tests_bench_metrics_merge_SOURCES = tests/bench/metrics-merge.c
# a forked child never merges its parent's counts; the cached effective uid
check_PROGRAMS += tests/unit/test_metrics
tests_unit_test_metrics_SOURCES = tests/unit/test_metrics.c tests/unit/unit.h
