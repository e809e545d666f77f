# erasure that keeps the chain (issue 12): build lines for this piece
# personal fields encrypted per data subject; erasing deletes the key
lib_libcqrs_a_SOURCES += lib/store/store_shred.c lib/store/store_shred.h
bin_PROGRAMS += cqrs-erase
cqrs_erase_SOURCES = src/cqrs-erase.c
dist_man_MANS += man/cqrs-erase.1
BATS_SUITES += tests/erase.bats
BENCH_SECTIONS += tests/bench/erase.sh
