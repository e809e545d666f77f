# bash completion for the cqrs-* tools.  Everything a tool can be asked comes
# from the tool itself, its --help (options, subcommands, verbs and their
# flags, option values such as --format's), so completion never falls behind a
# release; only data comes from elsewhere: event and aggregate types from the
# store, read with sqlite3 when the user can read it.

# The options (short and long) that take a value: "-x, --long VALUE" option
# lines and "[-x value]" usage groups.
_cqrs_argopts()
{
	sed -nE 's/^ +(-([A-Za-z]), )?(--[a-z][a-z-]*) [A-Z].*/\2 \3/p' <<<"$1" | tr ' ' '\n'
	grep -oE -- '\[--?[A-Za-z][a-z-]* [a-z][a-z|_-]*' <<<"$1" | sed -E 's/^\[//; s/ .*//'
}

# The long form of option $2 ("-f" -> "--format"); a long option stays.
_cqrs_long()
{
	if [[ $2 == --* ]]; then
		printf '%s\n' "$2"
	else
		sed -nE "s/^ +$2, (--[a-z][a-z-]*).*/\\1/p" <<<"$1" | head -n 1
	fi
}

# The values option $2 accepts, when the help lists them: "--opt a|b|c" in
# the usage, or a description that is only a list ("ndjson, table or csv",
# "orders: PENDING, CONFIRMED, ...").
_cqrs_values()
{
	local help=$1 opt=$2 long desc v
	long=$(_cqrs_long "$help" "$opt")
	grep -ohE -- "(^|[[ ])($opt|${long:-$opt}) [a-z]+(\|[a-z]+)+" <<<"$help" |
		sed -E 's/.* //' | tr '|' '\n'
	[ -n "$long" ] || return 0
	desc=$(sed -nE "s/^ +(-[A-Za-z], )?$long [A-Z][A-Z|_-]* +(.*)/\\2/p" <<<"$help" | head -n 1)
	desc=$(sed -E 's/\([^)]*(\)|$)//g; s/^[a-z, ]+: //' <<<"$desc")
	local -a list=()
	while read -r v; do
		[[ $v =~ ^[A-Za-z][A-Za-z0-9_-]*$ ]] || return 0
		list+=("$v")
	done < <(sed -E 's/,? or /,/g' <<<"$desc" | tr ',' '\n' | sed -E 's/^ +//; s/ +$//' | grep .)
	[ "${#list[@]}" -ge 2 ] && printf '%s\n' "${list[@]}"
	return 0
}

# Subcommands and verbs: the first word after the options of each usage
# line, and the entries of the help's two-space indented lists ("  order ID",
# "  create-order --customer ..."), without the placeholders that name a list
# ("verb" when the help has "verbs and their flags:").
_cqrs_subcommands()
{
	local help=$1 tool=$2 w placeholders
	placeholders=$(sed -nE 's/^([a-z]+)s [a-z].*:$/\1/p' <<<"$help")
	{
		sed -nE "s/^(usage:)? +$tool //p" <<<"$help" |
			sed -E ':a; s/\[[^][]*\]//; ta' | awk '{ print $1 }'
		sed -nE 's/^  ([a-z][a-z-]*) .*/\1/p' <<<"$help"
	} | while read -r w; do
		[[ $w =~ ^[a-z][a-z-]*$ ]] || continue
		grep -qxF -- "$w" <<<"$placeholders" || printf '%s\n' "$w"
	done | sort -u
}

# The long options subcommand $2 takes: those of its usage lines (and their
# continuations) and of its entry in the help's lists, short ones given long.
_cqrs_sub_options()
{
	local help=$1 tool=$2 sub=$3 o
	awk -v t="$tool" -v s="$sub" '
		$1 == "usage:" || $1 == t { in_ = $0 ~ (" " s "( |$)") }
		/^  [a-z]/ { in_ = $1 == s }
		/^$/ { in_ = 0 }
		in_ { print }' <<<"$help" |
		grep -oE -- '(^|[^A-Za-z0-9-])--?[A-Za-z][a-z-]*' | sed -E 's/^[^-]+//' |
		while read -r o; do _cqrs_long "$help" "$o"; done | grep . | sort -u
}

# Distinct values of column $1 in the store the command line names (-s,
# --store), else $CQRS_STORE, else the default store, when it is readable.
_cqrs_store_column()
{
	local store="${CQRS_STORE:-${XDG_DATA_HOME:-$HOME/.local/share}/cqrs/events.db}" i
	for ((i = 1; i < cword; i++)); do
		case ${words[i]} in
		-s | --store) store=${words[i + 1]} ;;
		--store=*) store=${words[i]#--store=} ;;
		esac
	done
	[ -r "$store" ] && command -v sqlite3 >/dev/null || return 0
	sqlite3 -readonly -batch -cmd '.timeout 200' "$store" \
		"SELECT DISTINCT $1 FROM events ORDER BY 1" 2>/dev/null
}

_cqrs_tools()
{
	# shellcheck disable=SC2034 # words, cword and split are set for _init_completion
	local cur prev words cword split
	_init_completion -s || return
	local tool=${words[0]##*/} help argopts subs sub="" i long
	help=$("${words[0]}" --help 2>/dev/null)
	argopts=$(_cqrs_argopts "$help")

	if grep -qxF -- "$prev" <<<"$argopts"; then
		local values
		long=$(_cqrs_long "$help" "$prev")
		values=$(_cqrs_values "$help" "$prev" | awk '!seen[$0]++')
		case $long in
		--event-type) values=$(_cqrs_store_column event_type) ;;
		--aggregate-type) values=$(_cqrs_store_column aggregate_type) ;;
		esac
		if [ -n "$values" ]; then
			mapfile -t COMPREPLY < <(compgen -W "$values" -- "$cur")
		elif grep -qE -- "^ +(-[A-Za-z], )?$long (FILE|PATH)" <<<"$help"; then
			_filedir
		fi
		return
	fi
	$split && return

	subs=$(_cqrs_subcommands "$help" "$tool")
	for ((i = 1; i < cword; i++)); do
		if [[ ${words[i]} == -* ]]; then
			grep -qxF -- "${words[i]}" <<<"$argopts" && ((i++))
		elif grep -qxF -- "${words[i]}" <<<"$subs"; then
			sub=${words[i]}
			break
		else
			break
		fi
	done

	if [[ $cur == -* ]]; then
		local opts=
		[ -n "$sub" ] && opts=$(_cqrs_sub_options "$help" "$tool" "$sub")
		[ -n "$opts" ] || opts=$(grep -oE -- '--[a-z][a-z-]*' <<<"$help" | sort -u)
		mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
		[[ ${COMPREPLY[0]-} == *= ]] && compopt -o nospace
		return
	fi
	if [ -n "$subs" ] && [ -z "$sub" ] && [ "$i" -ge "$cword" ]; then
		mapfile -t COMPREPLY < <(compgen -W "$subs" -- "$cur")
		[ "${#COMPREPLY[@]}" -gt 0 ] && return
	fi
	[ -z "$sub" ] && _filedir
}
complete -F _cqrs_tools cqrs-append cqrs-read cqrs-command cqrs-project cqrs-query cqrs-saga cqrs-demo cqrs-health cqrs-trace cqrs-backup cqrs-keygen cqrs-erase cqrs-archive cqrs-relay
