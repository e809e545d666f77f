#!/bin/bash
# erase.sh: the cost of erasure's encryption (issue 12), in one run.
#
#   tests/bench/erase.sh [events]      (default 200000)
#
# On gen-events' order events (every OrderCreated has a shipping_address,
# every OrderConfirmed an optional note: the declared personal fields),
# appended with cqrs-append -q in one transaction:
#   append  into a store that declares the shipped domain's personal fields
#           (encrypted) against one whose declarations were removed (plain);
#   read    cqrs-read > /dev/null (the stored form) of each, and cqrs-read
#           --decrypt of each: on the plain store the DECRYPT stage only
#           looks for an envelope in each event;
#   erase   cqrs-erase of one subject (its events found by a scan of the
#           declared event types).
# Needs the built tools and tests/bench/gen-events (make
# tests/bench/gen-events) on PATH, e.g. from a build directory:
#   PATH=$PWD:$PWD/tests/bench:$PATH tests/bench/erase.sh 200000
set -euo pipefail
n=${1:-200000}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
gen-events "$n" $((n / 8)) >events.ndjson
export CQRS_BUSY_TIMEOUT=60000

seconds() { # command...: its wall time in seconds
	local t0 t1
	t0=$(date +%s.%N)
	"$@"
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}
row() { # what seconds
	printf '%-44s %8.2f s %10.0f events/s\n' "$1" "$2" "$(echo "$n / $2" | bc -l)"
}

# the plain store: created empty, its declarations removed
printf '' | cqrs-append -q -s plain.db
sqlite3 plain.db 'DELETE FROM personal_fields'
ta_plain=$(seconds cqrs-append -q -s plain.db events.ndjson)
ta_enc=$(seconds cqrs-append -q -s enc.db events.ndjson)
keys=$(sqlite3 enc.db 'SELECT count(*) FROM subject_keys')
fields=$(sqlite3 enc.db "SELECT count(*) FROM events WHERE data LIKE '%\"cqrs_encrypted\":1%'")

echo "erasure bench: $n events, $fields of them with encrypted fields, $keys subjects"
row "append, plain (no declarations)" "$ta_plain"
row "append, personal fields encrypted" "$ta_enc"
row "read, plain store (stored form)" "$(seconds sh -c 'cqrs-read -s plain.db >/dev/null')"
row "read, encrypted store (stored form)" "$(seconds sh -c 'cqrs-read -s enc.db >/dev/null')"
row "read --decrypt, plain store" "$(seconds sh -c 'cqrs-read --decrypt -s plain.db >/dev/null')"
row "read --decrypt, encrypted store" "$(seconds sh -c 'cqrs-read --decrypt -s enc.db >/dev/null')"
subject=$(sqlite3 enc.db 'SELECT subject FROM subject_keys LIMIT 1')
printf '%-44s %8.2f s\n' "erase one subject (finds its events)" \
	"$(seconds sh -c "cqrs-erase -s enc.db '$subject' >/dev/null")"
stat -c "%n %s" plain.db enc.db | awk '{ printf "%-44s %10d bytes\n", "size of " $1, $2 }'
