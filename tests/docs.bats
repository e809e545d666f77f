#!/usr/bin/env bats
# The manual tells the truth about every tool, present and future: each tool
# (bin_PROGRAMS in Makefile.am, and the scripts in bin/) has a clean man page
# that agrees with its --help, the exit statuses of lib/cqrs.h are the table
# of cqrs(7), and the EXAMPLES of every page run (tests/man-examples.sh says
# how an example is written).

load test_helper

TOP=${CQRS_TOP_SRCDIR:?}
# Through bash, so that a lost execute bit (an unpacked tarball) matters not.
# A page's time limit guards against a hang: GUARD_SCALE (test_helper)
# widens it under valgrind.
examples() {
	MAN_EXAMPLES_TIMEOUT=${MAN_EXAMPLES_TIMEOUT:-$((60 * GUARD_SCALE))} \
		bash "$TOP/tests/man-examples.sh" "$@"
}

# The tools: bin_PROGRAMS (its "=" and "+=" lines, with continuations), then
# every file in bin/ (a name.in is the template of a built script "name").
tools() {
	sed -e ':a' -e '/\\$/{N;s/\\\n/ /;ba' -e '}' "$TOP/Makefile.am" "$TOP"/mk/*.mk |
		sed -n 's/^[[:space:]]*bin_PROGRAMS[[:space:]]*+\{0,1\}=//p' |
		tr -s ' \t' '\n' | sed '/^$/d'
	local f
	for f in "$TOP"/bin/*; do
		[ -f "$f" ] || continue
		f=${f##*/}
		echo "${f%.in}"
	done
}

# A page as plain text, a paragraph per line.
render() {
	mandoc -Tascii -O width=1000 "$1" | sed 's/.\x08//g'
}

# The tags of the list items (.It lines) of a page, rendered one per line,
# outside SYNOPSIS and EXAMPLES, which show options but do not explain them.
item_tags() {
	{
		printf '.Dd January 1, 2026\n.Dt X 1\n.Os\n.Sh NAME\n.Nm x\n.Nd x\n.Sh DESCRIPTION\n'
		awk '
			/^\.Sh[ \t]/ { skip = ($0 ~ /^\.Sh[ \t]+"?(SYNOPSIS|EXAMPLES)"?[ \t]*$/); next }
			!skip && /^\.It[ \t]+[^ \t]/ { sub(/^\.It[ \t]+/, ""); print ".Pp"; print ".No " $0 }
		' "$1"
	} | mandoc -Tascii -O width=1000 2>/dev/null | sed 's/.\x08//g'
}

# The body of section $1 of rendered text on stdin.
section() {
	awk -v name="$1" '
		$0 == name { on = 1; next }
		on && /^[^ \t]/ { exit }
		on { print }
	'
}

# The options named in text on stdin, one per line: "-x" for each letter of
# a cluster such as [-nq], "--name" for a long one.
option_set() {
	grep -oE -- '(^|[][ |])--?[[:alnum:]][[:alnum:]-]*' | sed -E 's/^[][ |]//' |
		while read -r o; do
			case $o in
			--*) echo "$o" ;;
			*) for ((i = 1; i < ${#o}; i++)); do echo "-${o:i:1}"; done ;;
			esac
		done | sort -u
}

# The usage lines at the top of a tool's --help: up to the first empty line.
usage_of() {
	"$1" --help | sed '/^[[:space:]]*$/q' | sed 's/^usage://'
}

# The values of enum cqrs_exit.
exit_codes() {
	sed -n '/^enum cqrs_exit {/,/^};/p' "$TOP/lib/cqrs.h" |
		sed -nE 's/^[[:space:]]*CQRS_EXIT_[A-Z_]+[[:space:]]*=[[:space:]]*([0-9]+).*/\1/p' |
		sort -n
}

# The statuses a page's EXIT STATUS lists as items (".It 65").
page_statuses() {
	awk '
		/^\.Sh[ \t]/ { on = ($0 ~ /^\.Sh[ \t]+"?EXIT STATUS"?[ \t]*$/); next }
		on && /^\.It[ \t]+((Li|Dv|Sy)[ \t]+)?[0-9]+[ \t]*$/ { gsub(/[^0-9]/, ""); print }
	' "$1" | sort -n
}

# Fails with every complaint at once, so that one run shows all the work.
report() {
	if [ "${#problems[@]}" -gt 0 ]; then
		printf '%s\n' "${problems[@]}"
		return 1
	fi
}

@test "the tools are found, and all of them are built" {
	run tools
	assert_success
	assert_line cqrs-append
	assert_line cqrs-read
	problems=()
	local t
	for t in $(tools); do
		command -v "$t" >/dev/null || problems+=("$t: not on PATH (not built?)")
	done
	report
}

@test "every tool has a man page in section 1, and every page is installed by dist_man_MANS" {
	problems=()
	local t man page
	man=$(sed -e ':a' -e '/\\$/{N;s/\\\n/ /;ba' -e '}' "$TOP/Makefile.am" "$TOP"/mk/*.mk |
		sed -n 's/^[[:space:]]*dist_man_MANS[[:space:]]*+\{0,1\}=//p' | tr '\n' ' ')
	for t in $(tools); do
		[ -f "$TOP/man/$t.1" ] || problems+=("$t: no man/$t.1")
	done
	for page in "$TOP"/man/*.[1-9]; do
		page=man/${page##*/}
		[[ " $man " == *" $page "* ]] || problems+=("$page is not in dist_man_MANS")
	done
	report
}

@test "every man page is clean under mandoc -Tlint -W warning" {
	local pages=("$TOP"/man/*.[1-9])
	[ "${#pages[@]}" -ge 3 ]
	run mandoc -Tlint -W warning "${pages[@]}"
	assert_success
	assert_output ""
}

@test "every tool's --help exits 0 with its usage on standard output" {
	problems=()
	local t
	for t in $(tools); do
		run --separate-stderr "$t" --help
		[ "$status" -eq 0 ] || problems+=("$t --help: exit $status")
		[[ ${lines[0]:-} == "usage: $t"* ]] || problems+=("$t --help: does not start with 'usage: $t'")
		[ -z "$stderr" ] || problems+=("$t --help: wrote to standard error: $stderr")
	done
	report
}

@test "every option that --help lists has an item of its own in the man page" {
	problems=()
	local t o text help
	for t in $(tools); do
		[ -f "$TOP/man/$t.1" ] || continue
		text=$(item_tags "$TOP/man/$t.1")
		help=$("$t" --help)
		for o in $(grep -oE -- '--[[:alnum:]][[:alnum:]-]*' <<<"$help" | sort -u) \
			$(sed -nE 's/^[[:space:]]+(-[[:alnum:]]),.*/\1/p' <<<"$help"); do
			grep -qE -- "(^|[^[:alnum:]-])$o([^[:alnum:]-]|\$)" <<<"$text" ||
				problems+=("$t: $o is in --help but no .It item of man/$t.1 names it")
		done
	done
	report
}

@test "the SYNOPSIS of every tool's page names the options of its usage, and only those" {
	problems=()
	local t page usage
	for t in $(tools); do
		[ -f "$TOP/man/$t.1" ] || continue
		page=$(render "$TOP/man/$t.1" | section SYNOPSIS | option_set)
		usage=$(usage_of "$t" | option_set)
		[ -n "$usage" ] || [ -z "$page" ] || problems+=("$t: --help shows no usage with options")
		while read -r o; do
			[ -z "$o" ] || problems+=("$t: $o is in the SYNOPSIS of man/$t.1 but not in --help's usage")
		done < <(comm -23 <(echo "$page") <(echo "$usage"))
		while read -r o; do
			[ -z "$o" ] || problems+=("$t: $o is in --help's usage but not in the SYNOPSIS of man/$t.1")
		done < <(comm -13 <(echo "$page") <(echo "$usage"))
	done
	report
}

@test "every tool's --version prints the tool, the package and its version" {
	local version
	version=$(sed -n 's/^AC_INIT(\[[^]]*\],[[:space:]]*\[\([^]]*\)\].*/\1/p' "$TOP/configure.ac")
	[ -n "$version" ]
	problems=()
	local t
	for t in $(tools); do
		run --separate-stderr "$t" --version
		[ "$status" -eq 0 ] || problems+=("$t --version: exit $status")
		[ "$output" = "$t (cqrs-tools) $version" ] ||
			problems+=("$t --version: '$output', not '$t (cqrs-tools) $version'")
	done
	report
}

@test "the EXIT STATUS of cqrs(7) lists every value of enum cqrs_exit, and nothing else" {
	run exit_codes
	assert_success
	assert_line 0
	assert_line 65
	run diff <(exit_codes) <(page_statuses "$TOP/man/cqrs.7")
	assert_success
}

@test "every status a page's EXIT STATUS lists is one of the toolkit's" {
	problems=()
	local page s codes
	codes=" $(exit_codes | tr '\n' ' ') "
	for page in "$TOP"/man/*.[1-9]; do
		for s in $(page_statuses "$page"); do
			[[ $codes == *" $s "* ]] ||
				problems+=("${page##*/}: status $s is not in enum cqrs_exit (lib/cqrs.h)")
		done
	done
	report
}

@test "cqrs(7) names every table, column, index, trigger and view of the store, and its schema version" {
	local version text name
	version=$(sed -nE 's/^#define[[:space:]]+SCHEMA_VERSION[[:space:]]+([0-9]+).*/\1/p' "$TOP"/lib/store/store*.c)
	[ -n "$version" ]
	text=$(render "$TOP/man/cqrs.7" | section DESCRIPTION)
	problems=()
	grep -qF "is the schema version, $version in this release" <<<"$text" ||
		problems+=("cqrs(7) does not say that the schema version is $version")
	# Names from the SQL in lib/store*.c: CREATE ... name, ADD COLUMN name,
	# and the column lines of CREATE TABLE (" name TYPE ...").
	local names
	mapfile -t names < <({
		grep -ohE 'CREATE (UNIQUE )?(TABLE|INDEX|VIEW|TRIGGER) (IF NOT EXISTS )?[a-z_]+|ADD COLUMN [a-z_]+' \
			"$TOP"/lib/store/store*.c | awk '{ print $NF }'
		grep -ohE '^[[:space:]]*"[[:space:]]*[a-z_]+ (INTEGER|TEXT|BLOB|REAL)' "$TOP"/lib/store/store*.c |
			sed -E 's/^[[:space:]]*"[[:space:]]*//; s/ .*//'
	} | sort -u)
	[ "${#names[@]}" -ge 20 ]
	for name in "${names[@]}"; do
		grep -qE "(^|[^[:alnum:]_])$name([^[:alnum:]_]|\$)" <<<"$text" ||
			problems+=("cqrs(7) does not name '$name' of the store's schema (lib/store*.c)")
	done
	report
}

@test "every tool's page has the sections users look for, and leads to cqrs(7)" {
	problems=()
	local t s text
	for t in $(tools); do
		[ -f "$TOP/man/$t.1" ] || continue
		text=$(render "$TOP/man/$t.1")
		for s in NAME SYNOPSIS DESCRIPTION "EXIT STATUS" EXAMPLES "SEE ALSO"; do
			grep -qx "$s" <<<"$text" || problems+=("man/$t.1: no $s section")
		done
		section "SEE ALSO" <<<"$text" | grep -qF 'cqrs(7)' ||
			problems+=("man/$t.1: SEE ALSO does not name cqrs(7)")
	done
	report
}

@test "the tour in cqrs(7) names every tool" {
	local text
	text=$(render "$TOP/man/cqrs.7" | section DESCRIPTION)
	problems=()
	local t
	for t in $(tools); do
		grep -qF "$t(1)" <<<"$text" || problems+=("cqrs(7) does not name $t(1) in its DESCRIPTION")
	done
	report
}

@test "every tool's page has examples that run" {
	problems=()
	local t
	for t in $(tools); do
		[ -f "$TOP/man/$t.1" ] || continue
		examples -l "$TOP/man/$t.1" | tr '\0' '\n' | grep -qv '^skip	' ||
			problems+=("man/$t.1: no command to run in EXAMPLES (see tests/man-examples.sh)")
	done
	report
}

@test "the EXAMPLES of every man page work when pasted" {
	run examples "$TOP"/man/*.[1-9]
	assert_success
}

# --- the example runner itself: a test that cannot fail proves nothing -----

# A page whose EXAMPLES hold the lines on stdin, and a literal display
# elsewhere that must not run.
example_page() {
	{
		printf '.Dd January 1, 2026\n.Dt T 1\n.Os\n.Sh NAME\n.Nm t\n.Nd t\n'
		printf '.Sh DESCRIPTION\n.Bd -literal\n$ exit 99\n.Ed\n.Sh EXAMPLES\nText.\n'
		cat
		printf '.Sh SEE ALSO\n.Xr cqrs 7\n'
	} >"$1"
}

@test "man-examples.sh finds commands, continuations, marks, and nothing else" {
	example_page t.1 <<'EOF'
.Bd -literal -offset indent
$ echo one \e
    two
one two
$ printf '%s\en' a |
>   cat
a
$ true  # exits 3
$ cqrs-read --follow  # runs until interrupted
.Ed
.Dl $ echo \(aqdl\(aq
EOF
	run mandoc -Tlint -W warning t.1
	assert_output ""
	run bash -c 'bash "$0" -l t.1 | tr "\0" @' "$TOP/tests/man-examples.sh"
	assert_success
	assert_output - <<'EOF'
0	echo one \
    two@0	printf '%s\n' a |
  cat@3	true  # exits 3@skip	cqrs-read --follow  # runs until interrupted@0	echo 'dl'@
EOF
}

@test "man-examples.sh runs the commands in order in one shell, on the seeded store" {
	[ "$(grep -c . "$FIXTURES/docs-store.ndjson")" -eq 11 ]
	example_page t.1 <<'EOF'
.Bd -literal
$ n=$(cqrs-read | wc -l)
$ test "$n" -eq 11
$ cd "$HOME"
$ touch here
$ test -f "$HOME/here" && test -d "$TMPDIR" && test "$TMPDIR" != /tmp
$ test "$TZ" = UTC && test "$LC_ALL" = C && test -z "${XDG_DATA_HOME:-}"
$ test "$CQRS_VIEWS" != "$CQRS_STORE" && test ! -e "$CQRS_VIEWS"
$ cqrs-read --limit 0  # exits 64
$ sleep 1000 &
$ sleep 1000  # runs until interrupted
.Ed
EOF
	run --separate-stderr examples t.1
	assert_success
	assert_equal "$stderr" ""
}

@test "man-examples.sh fails a command that fails, and says which and why" {
	example_page t.1 <<'EOF'
.Bd -literal
$ true
$ cqrs-read --bogus
.Ed
EOF
	run --separate-stderr examples t.1
	assert_failure 1
	[[ $stderr == *"t.1: example 2 exited 64, expected 0:"* ]]
	[[ $stderr == *'$ cqrs-read --bogus'* ]]
	[[ $stderr == *"usage: cqrs-read"* ]]
}

@test "man-examples.sh fails a command that succeeds where the page says it fails" {
	example_page t.1 <<'EOF'
.Bd -literal
$ cqrs-read --limit 1  # exits 64
.Ed
EOF
	run --separate-stderr examples t.1
	assert_failure 1
	[[ $stderr == *"t.1: example 1 exited 0, expected 64:"* ]]
}

@test "man-examples.sh stops a page that does not finish, and says where" {
	example_page t.1 <<'EOF'
.Bd -literal
$ true
$ cqrs-read --follow
$ true
.Ed
EOF
	MAN_EXAMPLES_TIMEOUT=2 run --separate-stderr examples t.1
	assert_failure 1
	[[ $stderr == *"t.1: example 2 exited none: still running after 2s, expected 0:"* ]]
	[[ $stderr != *"example 3"* ]]
}

@test "man-examples.sh fails on a page it cannot read, and on a usage error" {
	run --separate-stderr examples missing.1
	assert_failure 1
	run --separate-stderr examples
	assert_failure 64
}
