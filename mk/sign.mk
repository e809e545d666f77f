# signed chain heads (issue 12): build lines for this piece
# keys and heads, next to the chain they seal
lib_libcqrs_a_SOURCES += lib/store/signed_head.c
bin_PROGRAMS += cqrs-keygen
cqrs_keygen_SOURCES = src/cqrs-keygen.c
dist_man_MANS += man/cqrs-keygen.1
BATS_SUITES += tests/sign.bats
# Ed25519 through the key-file path against RFC 8032's test vector 1
check_PROGRAMS += tests/unit/test_signed_head
tests_unit_test_signed_head_SOURCES = tests/unit/test_signed_head.c tests/unit/unit.h
