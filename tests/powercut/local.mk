# tests/powercut/local.mk: included by Makefile.am (issue 10); paths are from the top of the tree
#
# Power cuts: tests/powercut/recorder.c (preloaded) logs every change the
# tools make to the files of a directory, tests/powercut/replay.py builds
# the directory as a power cut after each logged call could leave it and
# checks what the tools recover.  `make check` runs a short sweep
# (tests/powercut.bats); `make powercut` the long one:
#   make powercut [POWERCUT_SEED=N] [POWERCUT_POINTS=N] [POWERCUT_JOBS=2]
# A failure prints the command that checks that one image again (the
# recorded run is kept in tests/powercut/out).  See tests/powercut/README.
check_DATA += tests/powercut/librecorder.so
tests/powercut/librecorder.so: $(srcdir)/tests/powercut/recorder.c
	$(AM_V_CC)$(MKDIR_P) tests/powercut && \
	$(CC) -shared -fPIC -O1 -Wall -o $@ $(srcdir)/tests/powercut/recorder.c -ldl
CLEANFILES += tests/powercut/librecorder.so
BATS_SUITES += tests/powercut.bats
EXTRA_DIST += tests/powercut/recorder.c tests/powercut/replay.py tests/powercut/README

POWERCUT_POINTS = 10000
POWERCUT_JOBS = 2
powercut: all tests/powercut/librecorder.so
	@$(AM_TESTS_ENVIRONMENT) \
	nice -n 10 python3 $(srcdir)/tests/powercut/replay.py sweep \
	  --lib '$(abs_top_builddir)/tests/powercut/librecorder.so' \
	  --points '$(POWERCUT_POINTS)' -j '$(POWERCUT_JOBS)' \
	  --out '$(abs_top_builddir)/tests/powercut/out' \
	  $(POWERCUT_SEED:%=--seed %)
.PHONY: powercut
clean-local: clean-powercut
clean-powercut:
	rm -rf tests/powercut/out
.PHONY: clean-powercut
