# bash completion for the cqrs-* tools.  The options come from the tools
# themselves (their --help), so completion never falls behind a release.
_cqrs_tools()
{
	# shellcheck disable=SC2034 # words and cword are set for _init_completion
	local cur prev words cword
	_init_completion || return
	case $prev in
	-s | --store | --views | -P | --projections | -o | --output)
		_filedir
		return
		;;
	esac
	if [[ $cur == -* ]]; then
		local opts
		opts=$("$1" --help 2>/dev/null | grep -oE -- '--[a-z][a-z-]*' | sort -u)
		mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
		return
	fi
	_filedir
}
complete -F _cqrs_tools cqrs-append cqrs-read cqrs-command cqrs-project cqrs-query cqrs-saga
