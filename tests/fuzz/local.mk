# tests/fuzz/local.mk: included by Makefile.am (issue 10); paths are from the top of the tree
#
# Fuzz targets (tests/fuzz/README.md).  Each tests/fuzz/fuzz_NAME.c is one
# libFuzzer target.  `make check` replays its corpus and saved crashes
# through tests/fuzz/replay-NAME, the target linked with tests/fuzz/replay.c
# by the default compiler; `make fuzz` builds the targets with clang
# (-fsanitize=fuzzer,address,undefined) and runs each for FUZZ_TIME
# seconds, or only FUZZ_TARGET.
FUZZ_TARGETS = event ndjson command command_flags projection saga timestamp money cursor upcast
FUZZ_TIME = 60
FUZZ_TARGET =
FUZZ_CC = clang
FUZZ_MODE = run

FUZZ_REPLAY_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/tests/fuzz
check_PROGRAMS += tests/fuzz/replay-event tests/fuzz/replay-ndjson tests/fuzz/replay-command \
	tests/fuzz/replay-command_flags tests/fuzz/replay-projection tests/fuzz/replay-saga \
	tests/fuzz/replay-timestamp tests/fuzz/replay-money tests/fuzz/replay-cursor \
	tests/fuzz/replay-upcast
FUZZ_REPLAY_SOURCES = tests/fuzz/replay.c tests/fuzz/fuzz.h
tests_fuzz_replay_event_SOURCES = $(FUZZ_REPLAY_SOURCES) tests/fuzz/fuzz_event.c
tests_fuzz_replay_event_CPPFLAGS = $(FUZZ_REPLAY_CPPFLAGS) -DFUZZ_NAME='"event"'
tests_fuzz_replay_ndjson_SOURCES = $(FUZZ_REPLAY_SOURCES) tests/fuzz/fuzz_ndjson.c
tests_fuzz_replay_ndjson_CPPFLAGS = $(FUZZ_REPLAY_CPPFLAGS) -DFUZZ_NAME='"ndjson"'
tests_fuzz_replay_command_SOURCES = $(FUZZ_REPLAY_SOURCES) tests/fuzz/fuzz_command.c \
	tests/fuzz/fuzz_store.h
tests_fuzz_replay_command_CPPFLAGS = $(FUZZ_REPLAY_CPPFLAGS) -DFUZZ_NAME='"command"'
tests_fuzz_replay_command_flags_SOURCES = $(FUZZ_REPLAY_SOURCES) tests/fuzz/fuzz_command_flags.c \
	tests/fuzz/fuzz_store.h
tests_fuzz_replay_command_flags_CPPFLAGS = $(FUZZ_REPLAY_CPPFLAGS) -I$(top_srcdir)/src \
	-DFUZZ_NAME='"command_flags"'
tests_fuzz_replay_projection_SOURCES = $(FUZZ_REPLAY_SOURCES) tests/fuzz/fuzz_projection.c
tests_fuzz_replay_projection_CPPFLAGS = $(FUZZ_REPLAY_CPPFLAGS) -DFUZZ_NAME='"projection"'
tests_fuzz_replay_saga_SOURCES = $(FUZZ_REPLAY_SOURCES) tests/fuzz/fuzz_saga.c
tests_fuzz_replay_saga_CPPFLAGS = $(FUZZ_REPLAY_CPPFLAGS) -DFUZZ_NAME='"saga"'
tests_fuzz_replay_timestamp_SOURCES = $(FUZZ_REPLAY_SOURCES) tests/fuzz/fuzz_timestamp.c
tests_fuzz_replay_timestamp_CPPFLAGS = $(FUZZ_REPLAY_CPPFLAGS) -DFUZZ_NAME='"timestamp"'
tests_fuzz_replay_money_SOURCES = $(FUZZ_REPLAY_SOURCES) tests/fuzz/fuzz_money.c
tests_fuzz_replay_money_CPPFLAGS = $(FUZZ_REPLAY_CPPFLAGS) -DFUZZ_NAME='"money"'
tests_fuzz_replay_cursor_SOURCES = $(FUZZ_REPLAY_SOURCES) tests/fuzz/fuzz_cursor.c \
	tests/fuzz/fuzz_store.h
tests_fuzz_replay_cursor_CPPFLAGS = $(FUZZ_REPLAY_CPPFLAGS) \
	-DFUZZ_SHAREDIR='"$(abs_top_srcdir)/share"' -DFUZZ_NAME='"cursor"'
tests_fuzz_replay_upcast_SOURCES = $(FUZZ_REPLAY_SOURCES) tests/fuzz/fuzz_upcast.c
tests_fuzz_replay_upcast_CPPFLAGS = $(FUZZ_REPLAY_CPPFLAGS) \
	-DFUZZ_SHAREDIR='"$(abs_top_srcdir)/share"' -DFUZZ_NAME='"upcast"'

# the corpus, the dictionaries, the saved crashes and the driver of `make fuzz`
EXTRA_DIST += tests/fuzz/README.md tests/fuzz/run-fuzz tests/fuzz/corpus tests/fuzz/crashes \
	tests/fuzz/event.dict tests/fuzz/ndjson.dict tests/fuzz/command.dict tests/fuzz/command_flags.dict \
	tests/fuzz/projection.dict tests/fuzz/saga.dict tests/fuzz/timestamp.dict \
	tests/fuzz/money.dict tests/fuzz/cursor.dict tests/fuzz/upcast.dict

# The libFuzzer build lives in tests/fuzz/clang (objects of libcqrs built
# by clang, and one binary per target), apart from this build's objects.
# `make fuzz-merge` adds to each seed corpus the inputs of the runs that reach new edges.
fuzz-merge:
	$(MAKE) $(AM_MAKEFLAGS) fuzz FUZZ_MODE=merge
fuzz:
	@$(AM_TESTS_ENVIRONMENT) FUZZ_MODE='$(FUZZ_MODE)' \
	FUZZ_CC='$(FUZZ_CC)' FUZZ_TIME='$(FUZZ_TIME)' FUZZ_TARGET='$(FUZZ_TARGET)' \
	FUZZ_TARGETS='$(FUZZ_TARGETS)' FUZZ_FLAGS='$(FUZZ_FLAGS)' \
	FUZZ_CPPFLAGS='$(DEFS) -I$(abs_top_builddir) -I$(abs_top_srcdir)/lib' \
	FUZZ_PKGDATADIR='$(pkgdatadir)' \
	FUZZ_CFLAGS='$(WARN_CFLAGS) $(SQLITE_CFLAGS) $(YAML_CFLAGS) $(NETTLE_CFLAGS) $(ZLIB_CFLAGS) $(LIBPQ_CFLAGS)' \
	FUZZ_LIBS='$(SQLITE_LIBS) $(YAML_LIBS) $(NETTLE_LIBS) $(ZLIB_LIBS) $(LIBS)' \
	FUZZ_LIB_SOURCES='$(filter %.c,$(lib_libcqrs_a_SOURCES))' \
	FUZZ_BUILD='$(abs_top_builddir)/tests/fuzz/clang' \
	bash $(srcdir)/tests/fuzz/run-fuzz
.PHONY: fuzz fuzz-merge
clean-local: clean-fuzz
clean-fuzz:
	rm -rf tests/fuzz/clang
.PHONY: clean-fuzz
