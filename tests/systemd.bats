#!/usr/bin/env bats
# The systemd units of share/systemd (cqrs(7), OPERATIONS, Logs): each one
# passes systemd-analyze verify without a word, and keeps the hardening,
# the restart policy and the JSON logs.  systemd-analyze (Debian's systemd
# package) needs no running systemd, but it checks that each ExecStart
# program is executable: the test puts the built tools at @bindir@.

load test_helper

UNITS_IN=${CQRS_TOP_SRCDIR:?}/share/systemd

# The units with @bindir@ set to a directory of this test holding the
# built tools, in $BATS_TEST_TMPDIR/units.
units_for_test() {
	command -v systemd-analyze >/dev/null ||
		fail "systemd-analyze is missing: install Debian's systemd package (tests/debian-packages-check)"
	local bindir=$BATS_TEST_TMPDIR/bin f t
	mkdir -p "$bindir" units
	for t in cqrs-project cqrs-saga cqrs-read cqrs-health; do
		[ -x "$CQRS_TOP_BUILDDIR/$t" ] || fail "$t is not built in $CQRS_TOP_BUILDDIR"
		ln -s "$CQRS_TOP_BUILDDIR/$t" "$bindir/$t"
	done
	for f in "$UNITS_IN"/*.in; do
		sed "s|@bindir@|$bindir|g" "$f" >"units/$(basename "${f%.in}")"
	done
}

@test "the units are the ten that mk/logs.mk builds and installs" {
	run bash -c "cd '$UNITS_IN' && ls *.in"
	assert_output "$(printf '%s\n' cqrs-health.service.in cqrs-health.timer.in \
		cqrs-project.service.in cqrs-project.timer.in cqrs-projector.service.in \
		cqrs-saga-runner.service.in cqrs-saga-tick.service.in cqrs-saga-tick.timer.in \
		cqrs-verify.service.in cqrs-verify.timer.in)"
	local f
	for f in "$UNITS_IN"/*.in; do
		f=${f#"$CQRS_TOP_SRCDIR/"}
		grep -q "${f%.in}" "$CQRS_TOP_SRCDIR/mk/logs.mk" || fail "$f is not in mk/logs.mk"
	done
	# the build made them, with ExecStart in the installation's bindir
	for f in "$UNITS_IN"/*.in; do
		f=$CQRS_TOP_BUILDDIR/share/systemd/$(basename "${f%.in}")
		[ -f "$f" ] || fail "$f was not built"
		! grep -q @bindir@ "$f" || fail "$f still has @bindir@"
	done
}

@test "systemd-analyze verify passes every unit without a warning" {
	units_for_test
	# --man=no: the man pages of Documentation= need not be installed;
	# a warning (an unknown key, a bad calendar) is a failure too
	run systemd-analyze verify --man=no units/*.service units/*.timer
	assert_success
	assert_output ''
}

@test "systemd-analyze verify would catch a mistake (the check is not blind)" {
	units_for_test
	sed -i 's/^NoNewPrivileges=yes/NoNewPrivilege=yes/' units/cqrs-projector.service
	run systemd-analyze verify --man=no units/cqrs-projector.service
	assert_output --partial "Unknown key 'NoNewPrivilege'"
	sed -i 's|^ExecStart=.*|ExecStart=/nonexistent/cqrs-project --follow|' units/cqrs-verify.service
	run systemd-analyze verify --man=no units/cqrs-verify.service
	assert_failure
}

@test "every service is hardened, runs as the cqrs user and logs JSON lines" {
	local f key
	for f in "$UNITS_IN"/*.service.in; do
		for key in User=cqrs NoNewPrivileges=yes ProtectSystem=strict ReadWritePaths=/var/lib/cqrs \
			PrivateTmp=yes ProtectHome=yes PrivateDevices=yes CapabilityBoundingSet= \
			Environment=CQRS_LOG_FORMAT=json UMask=0077; do
			grep -qx "$key" "$f" || fail "${f##*/}: no $key"
		done
		grep -q '^Environment=CQRS_STORE=/var/lib/cqrs/events.db CQRS_VIEWS=/var/lib/cqrs/views.db$' "$f" ||
			fail "${f##*/}: no store in /var/lib/cqrs"
	done
}

@test "the followers restart on failure, not after a usage or configuration error" {
	local f
	for f in cqrs-projector cqrs-saga-runner; do
		f=$UNITS_IN/$f.service.in
		grep -qx 'Restart=on-failure' "$f"
		grep -qx 'RestartPreventExitStatus=64 78' "$f"
		grep -qx 'WantedBy=multi-user.target' "$f"
	done
	grep -qx 'ExecStart=@bindir@/cqrs-project --follow' "$UNITS_IN/cqrs-projector.service.in"
	grep -qx 'ExecStart=@bindir@/cqrs-saga run --follow' "$UNITS_IN/cqrs-saga-runner.service.in"
}

@test "the cron jobs are timers with oneshot services; a busy run (75) is no failure" {
	local t
	for t in cqrs-project cqrs-saga-tick cqrs-verify cqrs-health; do
		grep -qx 'Type=oneshot' "$UNITS_IN/$t.service.in" || fail "$t.service: not oneshot"
		grep -qxE 'SuccessExitStatus=([12] )*75' "$UNITS_IN/$t.service.in" || fail "$t.service: 75 fails"
		grep -qx 'Persistent=true' "$UNITS_IN/$t.timer.in" || fail "$t.timer: not persistent"
	done
	grep -qx 'ExecStart=@bindir@/cqrs-read --verify' "$UNITS_IN/cqrs-verify.service.in"
	grep -qx 'ExecStart=@bindir@/cqrs-health --textfile /var/lib/prometheus/node-exporter' \
		"$UNITS_IN/cqrs-health.service.in"
	# warning and critical are for Prometheus to alert on; unknown fails the unit
	grep -qx 'SuccessExitStatus=1 2 75' "$UNITS_IN/cqrs-health.service.in"
	grep -qx 'ExecStart=@bindir@/cqrs-saga run' "$UNITS_IN/cqrs-saga-tick.service.in"
	grep -qx 'ExecStart=@bindir@/cqrs-project' "$UNITS_IN/cqrs-project.service.in"
	# the times of share/crontab.example
	grep -qx 'OnCalendar=\*-\*-\* 03:15:00' "$UNITS_IN/cqrs-verify.timer.in"
	grep -qx 'OnCalendar=\*:0/5' "$UNITS_IN/cqrs-saga-tick.timer.in"
	grep -qx 'OnCalendar=\*:\*:00' "$UNITS_IN/cqrs-project.timer.in"
}

@test "systemd-analyze calendar agrees on the timers' schedules" {
	command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (tests/debian-packages-check)"
	run systemd-analyze calendar '*-*-* 03:15:00'
	assert_success
	assert_line --partial 'Normalized form: *-*-* 03:15:00'
	run systemd-analyze calendar '*:0/5'
	assert_line --partial 'Normalized form: *-*-* *:00/5:00'
}
