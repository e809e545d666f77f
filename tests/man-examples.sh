#!/bin/bash
# man-examples.sh: run the EXAMPLES of man pages as tests, so that the manual
# cannot rot (tests/docs.bats runs it on every page in man/).
#
# usage: tests/man-examples.sh [-l] page ...
#   -l  list the commands found in each page, one per record, run nothing
#
# The convention, for whoever writes a page:
#
# - The examples are the literal displays (.Bd -literal ... .Ed, and .Dl) of
#   the EXAMPLES section.  In them a line that starts with "$ " is a command,
#   as typed at a shell prompt.  A command goes on over the next line when
#   its line ends with a backslash, or when the next line starts with "> "
#   (the shell's continuation prompt: a quoted string or a here-document that
#   spans lines).  A leading "> " is not part of the command.  Every other
#   line is output or narration and is not run.
# - A command must exit 0.  A command that is meant to fail ends its last
#   line with the comment "# exits N", and must then exit exactly N.
# - A command that never ends by itself (cqrs-read --follow, say) ends its
#   last line with the comment "# runs until interrupted" and is not run.
#   Prefer a form that ends (--limit, --to, a background job and "wait") so
#   that the example is tested.
# - The commands of one page run in order, in one bash with pipefail set, as
#   if pasted into a terminal: variables, files, the working directory and
#   the store carry over from one command to the next.  Each page starts
#   afresh in an empty temporary directory, with HOME and TMPDIR inside it,
#   LC_ALL=C, TZ=UTC, standard input from /dev/null, CQRS_STORE naming a
#   store seeded with tests/fixtures/docs-store.ndjson (11 events: two orders
#   and a product; the ids are in that file) and CQRS_VIEWS naming a views
#   store that does not exist yet.
# - A page has MAN_EXAMPLES_TIMEOUT seconds (default 60) to finish.
#   MAN_EXAMPLES_TRACE=1 shows everything the commands printed, to compare
#   with the output the page shows (which is not checked).
#
# The tools are found on PATH: make check sets it; by hand, from a build
# directory:  PATH=$PWD:$srcdir/bin:$PATH $srcdir/tests/man-examples.sh PAGE
#
# Exit status: 0 when every command of every page did what the page says,
# 1 when one did not (each failure is reported on stderr with the command,
# its status and its output), 64 on a usage error.
set -u

here=$(cd "$(dirname "$0")" && pwd)
fixture=$here/fixtures/docs-store.ndjson
limit=${MAN_EXAMPLES_TIMEOUT:-60}

# The literal displays of the EXAMPLES section, rendered by mandoc so that
# roff escapes (\e, \(aq, \&) become the characters a reader sees, in a
# document of their own so that each comes out as one tab-indented block.
literal_blocks() {
	awk '
		/^\.Sh[ \t]/ { inex = ($0 ~ /^\.Sh[ \t]+"?EXAMPLES"?[ \t]*$/); next }
		!inex { next }
		/^\.Bd[ \t]+-literal/ { inblock = 1; print ".Bd -literal"; next }
		inblock && /^\.Ed/ { inblock = 0; print ".Ed"; next }
		inblock { print; next }
		/^\.Dl[ \t]/ { print }
	' "$1" >"$work/blocks" || return 1
	{
		printf '.Dd January 1, 2026\n.Dt X 1\n.Os\n.Sh NAME\n.Nm x\n.Nd x\n.Sh EXAMPLES\n'
		cat "$work/blocks"
	} | mandoc -Tmarkdown | sed -n '/^# EXAMPLES/,$p'
}

# The commands of a page as NUL-terminated records "EXPECTED<tab>COMMAND",
# EXPECTED being an exit status or "skip".
commands() {
	literal_blocks "$1" | awk '
		function flush() {
			if (cmd == "")
				return
			n = split(cmd, lines, "\n")
			last = lines[n]
			want = "0"
			if (match(last, /#[ \t]*exits[ \t]+[0-9]+[ \t]*$/)) {
				want = substr(last, RSTART, RLENGTH)
				gsub(/[^0-9]/, "", want)
			} else if (last ~ /#[ \t]*runs until interrupted[ \t]*$/) {
				want = "skip"
			}
			printf "%s\t%s%c", want, cmd, 0
			cmd = ""
		}
		!/^\t/ { flush(); next }
		{
			line = substr($0, 2)
			if (cmd != "" && (backslash || line ~ /^> /)) {
				sub(/^> /, "", line)
				cmd = cmd "\n" line
			} else if (line ~ /^\$ /) {
				flush()
				cmd = substr(line, 3)
			} else {
				flush()
				next
			}
			backslash = (line ~ /\\$/)
		}
		END { flush() }
	'
}

# Runs the commands of page $1 in a fresh directory; 0 when all did what
# the page says.
run_page() {
	local page=$1 dir
	dir=$(mktemp -d "$work/page.XXXXXX") || return 1
	mkdir "$dir/home" "$dir/tmp"
	: >"$dir/.status"
	local n=0 want=() text=()
	{
		printf 'set -o pipefail\nexec 9>>%q\n' "$dir/.status"
		local rec
		while IFS= read -r -d '' rec; do
			n=$((n + 1))
			want[n]=${rec%%$'\t'*}
			text[n]=${rec#*$'\t'}
			[ "${want[n]}" = skip ] && continue
			printf 'printf "\\n@@@ %d\\n"\n%s\nprintf "%d %%d\\n" "$?" >&9\n' \
				"$n" "${text[n]}" "$n"
		done < <(commands "$page")
	} >"$dir/.script"
	[ "$n" -gt 0 ] || return 0

	if ! CQRS_STORE="$dir/events.db" cqrs-append --quiet "$fixture" 2>"$dir/.seed"; then
		echo "$page: cannot seed the example store from $fixture:" >&2
		cat "$dir/.seed" >&2
		return 1
	fi
	(
		cd "$dir" || exit 70
		exec env -u XDG_DATA_HOME -u BASH_ENV -u ENV -u CDPATH \
			HOME="$dir/home" TMPDIR="$dir/tmp" LC_ALL=C TZ=UTC \
			CQRS_STORE="$dir/events.db" CQRS_VIEWS="$dir/views.db" \
			timeout -k 5 "$limit" bash --noprofile --norc "$dir/.script"
	) </dev/null >"$dir/.output" 2>&1 3>&- &
	local pid=$!
	wait "$pid"
	local shell_status=$?
	# timeout(1) leads a process group of its own: end what the examples
	# left running in the background.
	kill -KILL -- "-$pid" 2>/dev/null

	if [ -n "${MAN_EXAMPLES_TRACE:-}" ]; then
		echo "== $page" >&2
		cat "$dir/.output" >&2
	fi
	local ok=0 i got
	declare -A status=()
	local idx st
	while read -r idx st; do
		status[$idx]=$st
	done <"$dir/.status"
	for ((i = 1; i <= n; i++)); do
		[ "${want[i]}" = skip ] && continue
		got=${status[$i]:-}
		if [ -z "$got" ]; then
			if [ "$shell_status" -eq 124 ] || [ "$shell_status" -eq 137 ]; then
				got="none: still running after ${limit}s"
			else
				got="none: the shell ended (status $shell_status) before it finished"
			fi
		elif [ "$got" = "${want[i]}" ]; then
			continue
		fi
		ok=1
		{
			printf '%s: example %d exited %s, expected %s:\n' "$page" "$i" "$got" "${want[i]}"
			printf '    $ %s\n' "${text[i]//$'\n'/$'\n'    > }"
			echo "  its output:"
			awk -v n="$i" '
				/^@@@ [0-9]+$/ { on = ($2 == n); next }
				on { print "    " $0 }
			' "$dir/.output"
		} >&2
		# Later commands depend on earlier ones: one report is enough.
		[[ $got == none* ]] && break
	done
	return "$ok"
}

list=false
while getopts l opt; do
	case $opt in
	l) list=true ;;
	*)
		echo "usage: man-examples.sh [-l] page ..." >&2
		exit 64
		;;
	esac
done
shift $((OPTIND - 1))
if [ $# -eq 0 ]; then
	echo "usage: man-examples.sh [-l] page ..." >&2
	exit 64
fi

if ! command -v mandoc >/dev/null; then
	echo "man-examples.sh: mandoc is needed to read the pages (apt-get install mandoc)" >&2
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/man-examples.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT

failed=0
for page; do
	if [ ! -r "$page" ]; then
		echo "man-examples.sh: $page: cannot read" >&2
		failed=1
		continue
	fi
	if $list; then
		commands "$page"
	else
		run_page "$page" || failed=1
	fi
done
exit "$failed"
