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
# the lock against the xmin horizon of Marten and Emmett (pgbench)
BENCH_SECTIONS += tests/bench/horizon.sh
# The PostgreSQL leg of the backend matrix: each tests/pg/NAME.pg runs
# tests/NAME.bats against a throwaway cluster of its own (tests/pg-matrix,
# tests/pg_helper.bash); the tests that hold for SQLite alone say so with
# sqlite_only and a reason.  make check runs PG_MATRIX, one suite of each
# side (store, command, read side, sagas, operations), within CI's 20
# minutes on two cores; make check-postgres runs the whole leg,
# PG_MATRIX and PG_MATRIX_MORE.
PG_MATRIX = tests/pg/append.pg tests/pg/read.pg tests/pg/command.pg \
	tests/pg/project.pg tests/pg/saga.pg
PG_MATRIX_MORE = tests/pg/command-concurrency.pg tests/pg/saga-lifecycle.pg \
	tests/pg/saga-faults.pg \
	tests/pg/saga-exec.pg
TEST_EXTENSIONS += .pg
PG_LOG_COMPILER = $(SHELL) $(srcdir)/tests/pg-matrix
EXTRA_DIST += $(PG_MATRIX) $(PG_MATRIX_MORE) tests/pg-matrix
check-postgres:
	$(MAKE) $(AM_MAKEFLAGS) check TESTS='$(PG_MATRIX) $(PG_MATRIX_MORE)'
.PHONY: check-postgres
# the server misbehaving: timeouts, killed connections, a restart
BATS_SUITES += tests/pg-faults.bats
