#!/usr/bin/env bats
# Shell completion takes what a tool accepts from the tool itself (its
# --help): options, subcommands, verbs and their flags, option values; event
# and aggregate types come from the store.  Each test drives the completion
# function as bash does (COMP_WORDS, COMP_CWORD) and checks the exact
# candidates, in the order offered.
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
	COMPREPLY=()
	_cqrs_tools "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
	printf '%s\n' "${COMPREPLY[@]}"
}

# The candidates, one line: "a b c".
candidates() {
	complete_words "$@" | paste -sd ' '
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

@test "cqrs-saga completes its subcommands, also after a prefix" {
	run candidates cqrs-saga ''
	assert_output "check dot retry run show status"
	run candidates cqrs-saga st
	assert_output "status"
}

@test "cqrs-query completes its subcommands, also after options with values" {
	run candidates cqrs-query ''
	assert_output "customer inventory order orders products sales sql summary"
	run candidates cqrs-query -f table --views v.db or
	assert_output "order orders"
	# after the subcommand, its operand is not a subcommand again
	run candidates cqrs-query orders ''
	assert_output ''
}

@test "a subcommand's options come from its usage lines" {
	run candidates cqrs-saga status --
	assert_output "--format --store --stuck-after"
	run candidates cqrs-query orders --st
	assert_output "--status"
}

@test "cqrs-command completes the verbs its --help lists, and show" {
	help=$(cqrs-command --help)
	verbs=$(awk '/^verbs/ { v = 1; next } v && /^  [a-z]/ { print $1 }' <<<"$help")
	[ -n "$verbs" ] || fail "cqrs-command --help lists no verbs"
	run complete_words cqrs-command ''
	assert_success
	for w in $verbs show; do
		assert_line "$w"
	done
	# nothing else but the subcommands of the usage lines, never a placeholder
	usage_words=$(sed '/^$/q' <<<"$help" | grep -oE '[a-z][a-z-]+')
	for w in "${lines[@]}"; do
		grep -qx -- "$w" <<<"$verbs" || grep -qx -- "$w" <<<"$usage_words" ||
			fail "offered '$w', which --help does not name"
	done
	refute_line verb
	refute_line flag
	refute_line file
	run candidates cqrs-command cancel-o
	assert_output "cancel-order"
}

# The flags of verb $1 in cqrs-command --help: its line and those below it
# up to the next verb, one "--flag" each, sorted.
verb_flags() {
	cqrs-command --help | awk -v v="$1" '/^  [a-z]/ { on = $1 == v } on' |
		grep -oE -- '--[a-z][a-z-]*' | sort -u | paste -sd ' '
}

@test "a verb's flags complete from its line of --help, continuation included" {
	run candidates cqrs-command ship-order --
	assert_output "--carrier --order --shipped-at --tracking"
	run candidates cqrs-command -q ship-order --order x --
	assert_output "--carrier --order --shipped-at --tracking"
	# create-order's flags go on over continuation lines
	flags=$(verb_flags create-order)
	[[ " $flags " == *" --ship-to "* ]] || fail "create-order has no --ship-to in --help: $flags"
	run candidates cqrs-command create-order --
	assert_output "$flags"
}

@test "option values come from the help: --format, --status, -T" {
	run candidates cqrs-query --format ''
	assert_output "ndjson table csv"
	run candidates cqrs-query -f c
	assert_output "csv"
	run candidates cqrs-query orders --status ''
	assert_output "PENDING CONFIRMED PAID SHIPPED CANCELLED"
	run candidates cqrs-query orders --status=S
	assert_output "SHIPPED"
	run candidates cqrs-saga status --format ''
	assert_output "text ndjson"
	run candidates cqrs-saga dot -T ''
	assert_output "dot svg png"
	# a value that is not a list (a duration) offers nothing
	run candidates cqrs-saga status --stuck-after ''
	assert_output ''
}

@test "event and aggregate types complete from the store" {
	# ticket events: types no schema knows, so the store takes them as written
	ticket() {
		printf '{"aggregate_id":"0b5f1f5e-8d2a-4c57-9a51-1f1a7f0f0a0%s","aggregate_type":"Ticket","event_type":"%s","data":{}}\n' "$1" "$2"
	}
	{ ticket 1 TicketOpened; ticket 1 TicketClosed; ticket 2 TicketClosed; } |
		cqrs-append -q || fail "cannot build the store"
	run candidates cqrs-read -e ''
	assert_output "TicketClosed TicketOpened"
	run candidates cqrs-read --event-type TicketO
	assert_output "TicketOpened"
	run candidates cqrs-read --aggregate-type ''
	assert_output "Ticket"
	# the store named on the command line wins over CQRS_STORE
	ticket 3 TicketMoved | CQRS_STORE=other.db cqrs-append -q || fail "cannot build other.db"
	run candidates cqrs-read -s other.db -e ''
	assert_output "TicketMoved"
	run candidates cqrs-read --store=other.db -e ''
	assert_output "TicketMoved"
	# no readable store: no candidates, no noise
	CQRS_STORE=$BATS_TEST_TMPDIR/missing.db
	run candidates cqrs-read -e ''
	assert_output ''
	[ ! -e missing.db ] || fail "completion created the store"
}

@test "file options complete files" {
	touch saga.yaml
	run candidates cqrs-saga check -f sa
	assert_output "saga.yaml"
	run candidates cqrs-append --store sa
	assert_output "saga.yaml"
}
