#!/usr/bin/env bats
# Power cuts (issue 10): a short sweep of tests/powercut/replay.py over the
# append, command, project and saga workloads; `make powercut` runs the
# long one.  See tests/powercut/README.
load test_helper

LIB="${CQRS_TOP_BUILDDIR:?}/tests/powercut/librecorder.so"
REPLAY="${CQRS_TOP_SRCDIR:?}/tests/powercut/replay.py"

recorded() {
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
		CQRS_POWERCUT_DIR="$BATS_TEST_TMPDIR/d" CQRS_POWERCUT_LOG="$BATS_TEST_TMPDIR/log" \
		LD_PRELOAD="$LIB" "$@"
}

# the operations of the log, one line each: "op path [path2]"
ops() {
	PYTHONDONTWRITEBYTECODE=1 python3 -c '
import sys
sys.path.insert(0, sys.argv[1])
import replay
for r in replay.read_log(sys.argv[2]):
    print(replay.OPNAME[r[0]], r[2], r[3])' "${CQRS_TOP_SRCDIR}/tests/powercut" "$BATS_TEST_TMPDIR/log"
}

@test "the recorder logs the store's files, syncs and directory entries, and nothing outside" {
	mkdir d
	event 11111111-1111-4111-8111-111111111111 |
		recorded cqrs-append --quiet --store "$BATS_TEST_TMPDIR/d/events.db"
	event 11111111-1111-4111-8111-111111111111 OrderConfirmed |
		recorded cqrs-append --quiet --store "$BATS_TEST_TMPDIR/d/events.db"
	run ops
	assert_success
	assert_line --regexp '^create events.db $'
	assert_line --regexp '^create events.db-wal $'
	assert_line --regexp '^write events.db-wal $'
	assert_line --regexp '^fsync events.db-wal $'
	assert_line --regexp '^fsync\(dir\) \. $'
	assert_line --regexp '^create events.db.witness $'
	assert_line --regexp '^sync_file_range events.db.witness $'
	refute_line --partial "$CQRS_STORE"
	# two processes, one log, whole records
	[ "$(PYTHONDONTWRITEBYTECODE=1 python3 -c '
import sys
sys.path.insert(0, sys.argv[1])
import replay
print(len({r[1] for r in replay.read_log(sys.argv[2])}))' "${CQRS_TOP_SRCDIR}/tests/powercut" "$BATS_TEST_TMPDIR/log")" -eq 2 ]
}

@test "the recorder logs renames, links and unlinks" {
	mkdir d
	recorded sh -c 'cd d && echo a >x && mv x y && ln y z && rm y && sync z'
	run ops
	assert_success
	assert_line 'create x '
	assert_line 'rename x y'
	assert_line 'link y z'
	assert_line 'unlink y '
}

@test "a short sweep of power cuts: acknowledged events kept, nothing half-applied, views and sagas whole" {
	run python3 "$REPLAY" sweep --lib "$LIB" --quick --sample --points "${POWERCUT_CHECK_POINTS:-80}" \
		--seed "${POWERCUT_SEED:-1}" -j 2 --out "$BATS_TEST_TMPDIR/out"
	echo "$output"
	assert_success
	assert_output --partial 'append        1'
	assert_output --partial 'saga          1'
	refute_output --partial FAIL
}

@test "cqrs-project -o syncs the directory after it links the history file in" {
	mkdir d
	export CQRS_STORE="$BATS_TEST_TMPDIR/d/events.db"
	cqrs-command -q register-product --sku SKU-1 --name Widget --quantity 5
	recorded cqrs-project --views "$BATS_TEST_TMPDIR/d/views.db" -o "$BATS_TEST_TMPDIR/d/h.db"
	run ops
	assert_success
	# the link, then a sync of the directory: the name survives a power cut
	run sh -c "printf '%s\n' \"\$1\" | sed -n '/^link .* h.db\$/,\$p' | grep -c '^fsync(dir) \\. \$'" _ "$output"
	assert_output 1
}
