# PostgreSQL backend (issue 13): build lines for this piece
# libpq's header only: the library is loaded at run time (pg_lib.c), never
# linked into the tools
AM_CFLAGS += $(LIBPQ_CFLAGS)
lib_libcqrs_a_SOURCES += lib/store/store_pg.c lib/store/pg_lib.c lib/store/pg_lib.h
dist_man_MANS += man/cqrs-postgres.7
BATS_SUITES += tests/pg.bats
EXTRA_DIST += tests/pg_helper.bash tests/bench/postgres.sh
