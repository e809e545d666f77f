#!/usr/bin/env bats
# The checklist for adding a tool (README.md, "Adding a tool"), enforced for
# every tool, present and future: bin_PROGRAMS in Makefile.am and the
# scripts in bin/.  tests/docs.bats already holds each tool to a man page in
# dist_man_MANS, a working --help and --version, and a line in cqrs(7)'s
# tour; this suite checks the rest: a test suite that runs it, its bash
# completion, its row in the README.  Also: the README's commands and CI
# agree, and share/crontab.example works when pasted.

load test_helper

TOP=${CQRS_TOP_SRCDIR:?}

# The words of a Makefile.am variable ("=" and "+=" lines, continuations).
am_words() {
	# Makefile.am and the local.mk files it includes (issue 10's parts)
	local mk=("$TOP/Makefile.am") f
	while read -r f; do mk+=("$TOP/$f"); done < <(sed -n 's|^include \$(srcdir)/||p' "$TOP/Makefile.am")
	sed -e ':a' -e '/\\$/{N;s/\\\n/ /;ba' -e '}' "${mk[@]}" |
		sed -n "s/^[[:space:]]*$1[[:space:]]*+\{0,1\}=//p" | tr -s ' \t' '\n' | sed '/^$/d'
}

# The tools, as tests/docs.bats counts them.
tools() {
	am_words bin_PROGRAMS
	local f
	for f in "$TOP"/bin/*; do
		[ -f "$f" ] || continue
		f=${f##*/}
		echo "${f%.in}"
	done
}

# Fails with every complaint at once, so that one run shows all the work.
report() {
	if [ "${#problems[@]}" -gt 0 ]; then
		printf '%s\n' "${problems[@]}"
		return 1
	fi
}

@test "every tool is run by a test suite of its own, listed in BATS_SUITES" {
	local t suite found
	problems=()
	suites=" $(am_words BATS_SUITES | tr '\n' ' ') "
	for t in $(tools); do
		found=
		for suite in "$TOP"/tests/*.bats; do
			case ${suite##*/} in docs.bats | tools.bats | completion.bats | lint.bats) continue ;; esac
			grep -qw -- "$t" "$suite" || continue
			[[ $suites == *" tests/${suite##*/} "* ]] && found=1
		done
		[ -n "$found" ] || problems+=("$t: no suite in BATS_SUITES runs it")
	done
	report
}

@test "every suite in tests/ is in BATS_SUITES (or first in TESTS), and every suite named there exists" {
	local suite listed
	problems=()
	suites=" $(am_words BATS_SUITES | tr '\n' ' ') "
	listed="$suites$(am_words TESTS | tr '\n' ' ') "
	for suite in "$TOP"/tests/*.bats; do
		[[ $listed == *" tests/${suite##*/} "* ]] || problems+=("tests/${suite##*/} is not in BATS_SUITES")
	done
	for suite in $suites; do
		[ -f "$TOP/$suite" ] || problems+=("BATS_SUITES names $suite, which does not exist")
	done
	report
}

@test "every tool has bash completion" {
	local t line
	line=$(grep '^complete -F _cqrs_tools ' "$TOP/share/completion/cqrs-tools.bash")
	problems=()
	for t in $(tools); do
		[[ "$line " == *" $t "* ]] || problems+=("$t: not in share/completion/cqrs-tools.bash")
	done
	report
}

@test "every tool has a row in the README's table" {
	local t
	problems=()
	for t in $(tools); do
		grep -qF "| \`$t\` |" "$TOP/README.md" || problems+=("$t: no row in README.md's table")
	done
	report
}

# The README's quick-start commands: the shell blocks before "## The idea".
quick_start() {
	sed -n '/^## Quick start/,/^## /p' "$TOP/README.md" |
		awk '/^```sh$/ { on = 1; next } /^```$/ { on = 0 } on'
}

@test "CI runs exactly the README's second command" {
	run quick_start
	assert_success
	[ "${#lines[@]}" -eq 2 ] || fail "the quick start has ${#lines[@]} commands, not 2"
	assert_equal "$(tail -n 1 "$TOP/.ci/run")" "${lines[1]}"
	# the first installs only what building and running need, the second both
	[[ ${lines[0]} == *"xargs -a tests/debian-packages apt-get install"* ]] ||
		fail "the first command does not install tests/debian-packages alone"
	[[ ${lines[1]} == *"cat tests/debian-packages tests/debian-packages-check |"* ]] ||
		fail "the second command does not install both lists"
}

@test "the package lists: one name a line, none in both, and configure's hints in the first" {
	local list pkg
	for list in debian-packages debian-packages-check; do
		run grep -vxE '[a-z0-9][a-z0-9.+-]*' "$TOP/tests/$list"
		assert_output ''
	done
	run comm -12 <(sort "$TOP/tests/debian-packages") <(sort "$TOP/tests/debian-packages-check")
	assert_output ''
	pkgs=$(sed -n 's/^CQRS_REQUIRE(.*\[\([a-z0-9.+-]*\)\])$/\1/p' "$TOP/configure.ac")
	[ -n "$pkgs" ] || fail "no CQRS_REQUIRE in configure.ac"
	problems=()
	for pkg in $pkgs; do
		grep -qx -- "$pkg" "$TOP/tests/debian-packages" ||
			problems+=("configure asks for $pkg, which tests/debian-packages does not install")
	done
	report
}

# --- make check's closing line ------------------------------------------------

@test "make check prints its one-line total also when a suite fails, and fails" {
	# a tiny suite of its own, in this test's directory: its .log and .trs
	# land next to it; make remakes test-suite.log after this test anyway
	# (printf: bats would take "@test" at the start of a line as its own)
	printf '%s\n' '@test "passes" { true; }' '@test "fails" { false; }' \
		'@test "skips" { skip "on purpose"; }' >tiny.bats
	# a clean environment: the inner bats must not see this run's BATS_*
	run env -i PATH="$PATH" HOME="$HOME" LC_ALL=C \
		make -C "${CQRS_TOP_BUILDDIR:?}" check TESTS="$BATS_TEST_TMPDIR/tiny.bats"
	assert_failure 2
	assert_line "1 passed, 1 failed, 1 skipped"
	assert_line "FAIL: $BATS_TEST_TMPDIR/tiny.bats"
}

# --- share/crontab.example, as cron runs it ---------------------------------

# Installs the toolkit into $BATS_TEST_TMPDIR/prefix.  The binaries were
# built for the configured prefix, so CQRS_SHAREDIR points them at the
# installed shared files; a real install needs no such variable.
install_into_prefix() {
	PREFIX=$BATS_TEST_TMPDIR/prefix
	make -s -C "${CQRS_TOP_BUILDDIR:?}" install prefix="$PREFIX" >install.log 2>&1 ||
		fail "make install prefix=$PREFIX failed: $(cat install.log)"
	[ -x "$PREFIX/bin/cqrs-saga" ] || fail "make install put no cqrs-saga in $PREFIX/bin"
}

# The crontab's variables (PATH's /usr/local/bin and /srv/shop moved into
# this test's directory), one NAME=value a line.
cron_env() {
	grep -E '^[A-Za-z_][A-Za-z0-9_]*=' "$TOP/share/crontab.example" |
		sed -e "s|/srv/shop|$SHOP|g" -e "s|^PATH=/usr/local/bin:|PATH=$PREFIX/bin:|"
}

# The crontab's jobs, commands only (the five time fields cut), one a line.
cron_jobs() {
	grep -vE '^[[:space:]]*(#|$)|^[A-Za-z_][A-Za-z0-9_]*=' "$TOP/share/crontab.example" |
		sed -E 's/^[[:space:]]*([^[:space:]]+[[:space:]]+){5}//' | sed -e "s|/srv/shop|$SHOP|g"
}

# run_job COMMAND [VAR=VALUE...]: as cron does: a bare environment with
# only the crontab's variables (and cron's HOME, LOGNAME, SHELL), /bin/sh
# -c, "\%" turned into "%".  An unescaped % would be cron's stdin marker.
run_job() {
	local cmd=$1
	shift
	[[ ${cmd//\\%/} != *%* ]] || fail "an unescaped % in: $cmd"
	cmd=${cmd//\\%/%}
	local -a vars
	mapfile -t vars < <(cron_env)
	run --separate-stderr env -i HOME="$HOME" LOGNAME=root SHELL=/bin/sh "${vars[@]}" \
		CQRS_SHAREDIR="$PREFIX/share/cqrs-tools" TMPDIR="$BATS_TEST_TMPDIR" "$@" \
		/bin/sh -c "$cmd"
}

# A shop with one order, its saga not yet run.
shop_with_an_order() {
	SHOP=$BATS_TEST_TMPDIR/shop
	mkdir -m 700 "$SHOP"
	local p=3c9a7b1e-4d2f-4e8a-b6c5-0f1e2d3c4b5a
	run_job "cqrs-command -q register-product --product $p --sku SKU-1 --name Widget --quantity 9 &&
		cqrs-command -q -c order-1 create-order --customer cust-1 --item $p:2:9.99 \
		--currency USD --ship-to 'Ada,1 Main St,Springfield,12345,US'" "$@"
	[ "$status" -eq 0 ] || fail "cannot make the shop: $stderr"
}

@test "every crontab.example job runs as cron runs it: exit 0 and silent on a quiet system" {
	install_into_prefix
	shop_with_an_order
	local n=0 job
	while IFS= read -r job; do
		n=$((n + 1))
		run_job "$job"
		[ "$status" -eq 0 ] || fail "job $n exit $status: $job
$stderr"
		[ -z "$output$stderr" ] || fail "job $n not silent: $job
stdout: $output
stderr: $stderr"
	done < <(cron_jobs)
	[ "$n" -eq 5 ] || fail "$n jobs, not 5"
	# the saga ran, the views caught up, the logs have times
	run_job 'cqrs-saga status --format ndjson'
	assert_equal "$(jq -r .COMPLETED <<<"$output")" 1
	run jq -r '"\(.projection) \(.events_behind) \(.at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$"))"' "$SHOP/lag.ndjson"
	assert_line "order_views 0 true"
	run cat "$SHOP/audit.log"
	assert_line --index 0 --regexp '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$'
	assert_line --index 1 --regexp '^verified [0-9]+ events, head [0-9a-f]{64}$'
	# bash-completion finds every tool's completion by its name
	for t in $(tools); do
		[ -e "$PREFIX/share/bash-completion/completions/$t" ] || fail "no installed completion for $t"
	done
}

@test "the crontab's saga watch speaks, and exits 1, when a saga is stuck" {
	install_into_prefix
	shop_with_an_order
	watch=$(cron_jobs | grep -F 'cqrs-saga status') || fail "no job runs cqrs-saga status"
	run_job "$(cron_jobs | grep -F 'cqrs-saga run')" CQRS_SAGA_NOW=2026-03-01T12:00:00Z \
		PAYMENT_GATEWAY_AUTHORIZE_MODE=fail
	[ "$status" -eq 0 ] || fail "cqrs-saga run: exit $status: $stderr"
	run_job "$watch" CQRS_SAGA_NOW=2026-03-01T12:30:00Z
	assert_success
	assert_output ''
	# two hours without progress: stuck
	run_job "$watch" CQRS_SAGA_NOW=2026-03-01T14:00:00Z
	assert_failure 1
	assert_line "stuck or needing attention:"
	assert_line --partial " order RUNNING step 1, 1 attempts"
	# the watch's own lock is busy: 75, silently
	exec 9>"$SHOP/watch.lock"
	flock 9
	run_job "$watch"
	exec 9>&-
	assert_failure 75
	assert_output ''
	assert_equal "$stderr" ''
}

@test "make fuzz builds every fuzz target with clang and runs each (a second apiece)" {
	# it broke unseen once: libcqrs grew a header (libpq's) and a library
	# (zlib) that only the default build was told of
	[ -z "${CQRS_UNDER_VALGRIND:-}${CQRS_UNDER_SANITIZER:-}" ] ||
		skip "make check builds and runs it; the targets carry their own ASan"
	local build=${CQRS_TOP_BUILDDIR:?}
	run --separate-stderr env -u MAKEFLAGS -u MFLAGS make -s -C "$build" fuzz FUZZ_TIME=1
	[ "$status" -eq 0 ] || { printf '%s\n' "$output" "$stderr" >&2; false; }
	local t
	for t in $(sed -n 's/^FUZZ_TARGETS = //p' "$TOP/tests/fuzz/local.mk"); do
		assert_line --regexp "^fuzz: $t: stat::number_of_executed_units: [1-9][0-9]*$"
	done
}
