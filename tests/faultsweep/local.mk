# tests/faultsweep/local.mk: included by Makefile.am (issue 10); paths are from the top of the tree
# The allocation and I/O failure sweep (tests/faultsweep/README): a preloaded
# injector fails the Nth allocation or I/O call of a tool's run.
# `make check` sweeps a sample (tests/faultsweep.bats); `make faultsweep`
# sweeps every point (FAULTSWEEP_FLAGS passes options to sweep.sh, e.g.
# FAULTSWEEP_FLAGS='-k io' or '-s 10 saga').
# libsweep-io.so fails I/O calls only: the one that works under ASan.
check_DATA += tests/faultsweep/libsweep.so tests/faultsweep/libsweep-io.so
tests/faultsweep/libsweep.so: $(srcdir)/tests/faultsweep/inject.c
	$(AM_V_CC)$(MKDIR_P) tests/faultsweep && \
	$(CC) -shared -fPIC -O1 -o $@ $(srcdir)/tests/faultsweep/inject.c -ldl
tests/faultsweep/libsweep-io.so: $(srcdir)/tests/faultsweep/inject.c
	$(AM_V_CC)$(MKDIR_P) tests/faultsweep && \
	$(CC) -shared -fPIC -O1 -DSWEEP_IO_ONLY -o $@ $(srcdir)/tests/faultsweep/inject.c -ldl
CLEANFILES += tests/faultsweep/libsweep.so tests/faultsweep/libsweep-io.so
BATS_SUITES += tests/faultsweep.bats
EXTRA_DIST += tests/faultsweep/inject.c tests/faultsweep/sweep.sh \
	tests/faultsweep/saga.yaml tests/faultsweep/README
FAULTSWEEP_FLAGS =
faultsweep: all $(check_DATA)
	$(AM_TESTS_ENVIRONMENT) nice -n 10 $(srcdir)/tests/faultsweep/sweep.sh $(FAULTSWEEP_FLAGS)
.PHONY: faultsweep
