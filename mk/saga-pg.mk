# sagas on PostgreSQL (issue 13): build lines for this piece
# the runner's tables behind one interface (saga_store.c): one file per backend
lib_libcqrs_a_SOURCES += lib/saga/saga_store_sqlite.c lib/saga/saga_store_pg.c
# several runners at once over leased instances, kill -9 mid-step
BATS_SUITES += tests/pg-saga.bats
