# issue 11: the health check: cqrs-health (included from Makefile.am)
lib_libcqrs_a_SOURCES += lib/ops/health.c
bin_PROGRAMS += cqrs-health
cqrs_health_SOURCES = src/cqrs-health.c
dist_man_MANS += man/cqrs-health.1
BATS_SUITES += tests/health.bats
# alert rules for Prometheus, on the gauges cqrs-health --textfile writes
prometheusdir = $(pkgdatadir)/prometheus
dist_prometheus_DATA = share/prometheus/cqrs-alerts.yml
EXTRA_DIST += tests/prometheus/prom-to-series
