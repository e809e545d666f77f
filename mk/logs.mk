# issue 11: structured logs and systemd units (included from Makefile.am)
# ops: the one writer of the tools' messages, text or JSON lines
lib_libcqrs_a_SOURCES += lib/ops/log.h lib/ops/log.c
BATS_SUITES += tests/logs.bats tests/systemd.bats

# systemd units for the --follow modes and timers for the cron jobs, with
# ExecStart pointing at $(bindir): made from share/systemd/*.in at build
# time (tests/systemd.bats checks them with systemd-analyze verify), and
# installed as examples under $(pkgdatadir)/systemd for the administrator
# to copy to /etc/systemd/system (cqrs(7), OPERATIONS, Logs).
SYSTEMD_UNITS = \
	share/systemd/cqrs-projector.service \
	share/systemd/cqrs-saga-runner.service \
	share/systemd/cqrs-project.service share/systemd/cqrs-project.timer \
	share/systemd/cqrs-saga-tick.service share/systemd/cqrs-saga-tick.timer \
	share/systemd/cqrs-verify.service share/systemd/cqrs-verify.timer \
	share/systemd/cqrs-health.service share/systemd/cqrs-health.timer
systemddir = $(pkgdatadir)/systemd
nodist_systemd_DATA = $(SYSTEMD_UNITS)
SYSTEMD_UNITS_IN = \
	share/systemd/cqrs-projector.service.in \
	share/systemd/cqrs-saga-runner.service.in \
	share/systemd/cqrs-project.service.in share/systemd/cqrs-project.timer.in \
	share/systemd/cqrs-saga-tick.service.in share/systemd/cqrs-saga-tick.timer.in \
	share/systemd/cqrs-verify.service.in share/systemd/cqrs-verify.timer.in \
	share/systemd/cqrs-health.service.in share/systemd/cqrs-health.timer.in
EXTRA_DIST += $(SYSTEMD_UNITS_IN)
CLEANFILES += $(SYSTEMD_UNITS)
# each unit from its .in (all of them listed: make has no portable pattern)
$(SYSTEMD_UNITS): $(SYSTEMD_UNITS_IN) Makefile
	$(AM_V_GEN)$(MKDIR_P) share/systemd && \
	sed -e 's|@bindir[@]|$(bindir)|g' '$(srcdir)/$@.in' > '$@.tmp' && mv '$@.tmp' '$@'
