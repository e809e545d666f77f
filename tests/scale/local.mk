# tests/scale/local.mk: included by Makefile.am (issue 10); paths are from the top of the tree

# make bench BENCH=scale: the store at 100k and 1M events (10M with
# SCALE_10M=1), tests/bench/scale.sh.
BENCH_SECTIONS += tests/bench/scale.sh

# The WAL left between one-event processes stays bounded; the cache option.
BATS_SUITES += tests/scale/wal.bats

# Schema 3 (time-ordered correlation keys): the migration of schema 2 stores.
BATS_SUITES += tests/scale/migrate.bats
EXTRA_DIST += tests/scale/fixtures/schema2-uuid7.db
