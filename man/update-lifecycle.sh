#!/bin/sh
# update-lifecycle.sh: put the lifecycle table (cqrs-command lifecycle) into
# cqrs-events(7) between its BEGIN/END LIFECYCLE marks, and into
# lifecycle.dot; `make lifecycle` runs it, tests/lifecycle.bats checks that
# the checked-in files are what it makes.
#
# usage: update-lifecycle.sh CQRS-COMMAND MANDIR
set -eu
tool=$1 dir=$2
page=$dir/cqrs-events.7
tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp.man"' EXIT
"$tool" lifecycle --format man >"$tmp.man"
awk -v gen="$tmp.man" '
	/^\.\\" BEGIN LIFECYCLE$/ { print; while ((getline l < gen) > 0) print l; skip = 1; next }
	/^\.\\" END LIFECYCLE$/ { skip = 0 }
	!skip { print }
' "$page" >"$tmp"
cat "$tmp" >"$page"
"$tool" lifecycle --format dot >"$dir/lifecycle.dot"
