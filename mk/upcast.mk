# upcasting (issue 12): build lines for this piece
# old event versions to the newest, declared in YAML (cqrs-upcasters(5))
lib_libcqrs_a_SOURCES += lib/domain/upcast.c lib/domain/upcast_jq.c lib/domain/upcast_impl.h
dist_man_MANS += man/cqrs-upcasters.5
upcastersdir = $(pkgdatadir)/upcasters
dist_upcasters_DATA = share/upcasters/orders.yaml
BATS_SUITES += tests/upcast.bats
BENCH_SECTIONS += tests/bench/upcast.sh
