#!/bin/bash
# archive.sh: what archiving does to a store (issue 12), run by hand:
#
#   PATH=$BUILDDIR:$BUILDDIR/tests/bench:$PATH tests/bench/archive.sh [events] [aggregates]
#
# (defaults: 1000000 events over 100000 orders, from gen-events -t: the ids
# the toolkit makes).  All but the last KEEP (10000) events are archived in
# segments of 100000.  It prints, one line each: the store's size before,
# after archiving, and after VACUUM; what the archive's tables take in the
# store (dbstat); the segments' size; the time to archive; a full read, a
# --verify and a one-event append before and after; and an archived
# order's load (cqrs-read -a).  Needs sqlite3 built with dbstat (Debian's).
set -euo pipefail

n=${1:-1000000}
aggregates=${2:-$((n / 10))}
keep=${KEEP:-10000}
dir=$(mktemp -d "${TMPDIR:-/tmp}/archive-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
export CQRS_STORE=$dir/events.db LC_ALL=C TZ=UTC

seconds() { # the wall time of a command, in seconds with milliseconds
	local t0 t1
	t0=$(date +%s%N)
	"$@" >/dev/null
	t1=$(date +%s%N)
	printf '%d.%03d' $(((t1 - t0) / 1000000000)) $((((t1 - t0) / 1000000) % 1000))
}
size() {
	sqlite3 "$CQRS_STORE" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
	stat -c %s "$CQRS_STORE"
}
mib() {
	awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'
}
one_event() {
	cqrs-append -q <<<'{"aggregate_id":"0b9c3c7e-2f57-4d6a-9e3b-5a1d2c3e4f50","aggregate_type":"Thing","event_type":"Noted","data":{}}'
}
row() {
	printf '%-44s %s\n' "$1" "$2"
}

gen-events -t "$n" "$aggregates" >"$dir/events.ndjson"
row "events appended" "$n in $(seconds cqrs-append -q "$dir/events.ndjson") s"
rm "$dir/events.ndjson"
before=$(size)
row "store before" "$(mib "$before")"
row "cqrs-read, all, before" "$(seconds cqrs-read) s"
row "cqrs-read --verify, before" "$(seconds cqrs-read --verify) s"
row "one-event append, before" "$(seconds one_event) s"
order=$(cqrs-read -n 1 | jq -r .aggregate_id)
row "cqrs-read -a (an order), before" "$(seconds cqrs-read -a "$order") s"
# client-supplied event ids: each append looks in archived_events too
gen-events -s 2 20000 2000 >"$dir/more.ndjson"
gen-events -s 3 20000 2000 >"$dir/more2.ndjson"
row "20000 appends, client ids, before" "$(seconds cqrs-append -q "$dir/more.ndjson") s"

upto=$(($(cqrs-read -r -n 1 | jq .sequence) - keep))
row "cqrs-archive --upto $upto" "$(seconds cqrs-archive --upto "$upto") s"
after=$(size)
row "store after (freed pages kept)" "$(mib "$after")"
row "archive tables in the store" "$(sqlite3 "$CQRS_STORE" "SELECT name || ' ' || sum(pgsize) FROM dbstat
	WHERE name LIKE 'archive%' OR name LIKE 'sqlite_autoindex_archive%' GROUP BY name" |
	awk '{ printf "%s%s %.1f MiB", sep, $1, $2 / 1048576; sep = ", " }')"
row "vacuum" "$(seconds sqlite3 "$CQRS_STORE" VACUUM) s"
vacuumed=$(size)
row "store after VACUUM" "$(mib "$vacuumed") ($(awk -v a="$vacuumed" -v b="$before" 'BEGIN { printf "%.1f%%", 100 * a / b }') of before)"
row "segments" "$(find "$CQRS_STORE.archive" -name '*.gz' | wc -l) files, $(mib "$(du -cb "$CQRS_STORE.archive"/*.gz | tail -n 1 | cut -f1)")"
row "cqrs-read, all, after (segments first)" "$(seconds cqrs-read) s"
row "cqrs-read --verify, after" "$(seconds cqrs-read --verify) s"
row "one-event append, after" "$(seconds one_event) s"
row "20000 appends, client ids, after" "$(seconds cqrs-append -q "$dir/more2.ndjson") s"
row "cqrs-read -a (an archived order), after" "$(seconds cqrs-read -a "$order") s"
row "cqrs-read --after $upto (the hot part)" "$(seconds cqrs-read --after "$upto") s"
