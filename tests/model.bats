#!/usr/bin/env bats
# The model-based test of the order lifecycle (issue 8): seeded random
# histories of people's commands, saga runs and kills of the runner, checked
# step by step against the small model in tests/model/model.py (which shares
# nothing with lib/).  `make model` runs many more of them.
#
#   MODEL_CHECK_HISTORIES  histories run here (default 60)
#   MODEL_SEED             the run's seed (default: a new one, printed)
#   MODEL_STEPS            steps per history (default 8)

load test_helper

MODEL="${CQRS_TOP_SRCDIR:?}/tests/model/model.py"

model_setup() {
	command -v python3 >/dev/null ||
		fail "python3 is needed for the model (Debian package python3)"
	# failing histories are kept beside the build, after the test's
	# directory is gone
	OUT="${CQRS_TOP_BUILDDIR:?}/tests"
	mkdir -p "$OUT"
	export MODEL_REPLAY_HINT='make model MODEL_STEPS=%(steps)d MODEL_REPLAY=%(seed)d'
}

@test "random histories of the order lifecycle agree with the model" {
	model_setup
	run --separate-stderr python3 "$MODEL" -n "${MODEL_CHECK_HISTORIES:-60}" \
		${MODEL_SEED:+-s "$MODEL_SEED"} --steps "${MODEL_STEPS:-8}" -j 2 --out "$OUT"
	assert_not_signalled
	# the seed and the figures, whatever happened
	echo "$output" | head -1 >&3
	echo "$output" | grep '^model: [0-9]* histories' >&3
	assert_success
}

@test "a broken tool is caught: the seed, the property, a replay command and the history in a file" {
	model_setup
	# a saga runner that does nothing and says all is well
	mkdir fake
	printf '#!/bin/sh\nexit 0\n' >fake/cqrs-saga
	chmod +x fake/cqrs-saga
	PATH="$PWD/fake:$PATH" run --separate-stderr python3 "$MODEL" -n 4 -s 7 --steps 8 \
		--out "$PWD"
	assert_failure 1
	assert_line 'model: seed 7, 4 histories of 8 steps, 2 at a time'
	assert_line --regexp '^FAILED [a-z_]+: [0-9]+ histories$'
	assert_line --regexp '^    replay: make model MODEL_STEPS=[0-9]+ MODEL_REPLAY=[0-9]+ '
	seed=$(grep -m1 -o "MODEL_REPLAY=[0-9]*" <<<"$output" | cut -d= -f2)
	[ -s "model-failure-$seed.log" ] || fail "no history file for seed $seed"
	grep -q '^\$ cqrs-command' "model-failure-$seed.log"
	# the replay breaks the same property at the same step
	first=$(head -1 "model-failure-$seed.log" | sed 's/^seed [0-9]* (run seed [0-9]*), //')
	PATH="$PWD/fake:$PATH" run --separate-stderr python3 "$MODEL" --replay "$seed" --steps 8
	assert_failure 1
	assert_output "history $seed: ${first#step *: }"
}

@test "the model refuses to run without the tools, exit 2" {
	model_setup
	PATH=/usr/bin:/bin run --separate-stderr python3 "$MODEL" -n 1
	assert_failure 2
	assert_equal "$stderr" "model: cqrs-command is not on PATH"
}
