# PostgreSQL backend (issue 13): build lines for this piece
# libpq's header only: the library is loaded at run time (pg_lib.c), never
# linked into the tools
AM_CFLAGS += $(LIBPQ_CFLAGS)
lib_libcqrs_a_SOURCES += lib/store/store_pg.c lib/store/pg_lib.c lib/store/pg_lib.h
# the append rules both backends share (store_impl.h)
lib_libcqrs_a_SOURCES += lib/store/store_append.c
dist_man_MANS += man/cqrs-postgres.7
BATS_SUITES += tests/pg.bats
EXTRA_DIST += tests/pg_helper.bash
BENCH_SECTIONS += tests/bench/postgres.sh
# The PostgreSQL leg of the backend matrix: suites that pass on both
# backends, each against a throwaway cluster (tests/pg_helper.bash); the
# tests that hold for SQLite alone say so with sqlite_only and a reason.
PG_MATRIX_SUITES = tests/append.bats tests/read.bats tests/command.bats \
	tests/command-concurrency.bats tests/project.bats
# sagas (issue 13, sagas on PostgreSQL)
PG_MATRIX_SUITES += tests/saga.bats tests/saga-lifecycle.bats
check-postgres:
	$(MAKE) $(AM_MAKEFLAGS) check TESTS='$(PG_MATRIX_SUITES)' CQRS_TEST_BACKEND=postgres
.PHONY: check-postgres
