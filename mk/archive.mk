# archive segments (issue 12): build lines for this piece
# old events in compressed NDJSON segments, read across with the store
lib_libcqrs_a_SOURCES += lib/store/store_archive.c
bin_PROGRAMS += cqrs-archive
cqrs_archive_SOURCES = src/cqrs-archive.c
dist_man_MANS += man/cqrs-archive.1
BATS_SUITES += tests/archive.bats
BENCH_SECTIONS += tests/bench/archive.sh
# segments are gzip: zlib, for every tool that reads the store
AM_CFLAGS += $(ZLIB_CFLAGS)
LDADD += $(ZLIB_LIBS)
