#!/usr/bin/env bats
# Shell completion takes its options from the tools' own --help.
load test_helper

complete_words() {
	# shellcheck disable=SC1091
	source /usr/share/bash-completion/bash_completion
	# shellcheck disable=SC1091
	source "$CQRS_TOP_SRCDIR/share/completion/cqrs-tools.bash"
	COMP_WORDS=("$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMP_LINE="$*"
	COMP_POINT=${#COMP_LINE}
	_cqrs_tools "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
	printf '%s\n' "${COMPREPLY[@]}"
}

@test "options complete from the tool's --help" {
	run complete_words cqrs-read --fo
	assert_success
	assert_output "--follow"
	run complete_words cqrs-append --dr
	assert_output "--dry-run"
}

@test "every tool has completion" {
	run grep -c '^complete -F _cqrs_tools' "$CQRS_TOP_SRCDIR/share/completion/cqrs-tools.bash"
	assert_output 1
	for t in cqrs-append cqrs-read cqrs-command cqrs-project cqrs-query cqrs-saga; do
		grep -q " $t\b" "$CQRS_TOP_SRCDIR/share/completion/cqrs-tools.bash" || fail "$t has no completion"
	done
}
