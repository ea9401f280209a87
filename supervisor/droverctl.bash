# bash completion for droverctl(8): its commands and options, and the app names of the running
# drover, asked with `droverctl --json status` at the socket the command line names (-s PATH),
# or at the default one. Installed as share/bash-completion/completions/droverctl; it needs
# nothing of the bash-completion package, so `source` works on its own too.

# The app names drover reports, one per line; nothing when no drover answers within 2 s.
_droverctl_apps()
{
    local prog=${COMP_WORDS[0]} i reply name
    local -a sock=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        # Bash splits --socket=PATH at the '=' (COMP_WORDBREAKS): three words, or one when
        # the line came from elsewhere.
        case ${COMP_WORDS[i]} in
        -s | --socket)
            if [[ ${COMP_WORDS[i + 1]} == "=" ]]; then
                sock=(-s "${COMP_WORDS[i + 2]}")
            else
                sock=(-s "${COMP_WORDS[i + 1]}")
            fi
            ;;
        --socket=*) sock=("${COMP_WORDS[i]}") ;;
        esac
    done
    # A path typed as ~/bin/droverctl reaches us unexpanded: the quoted tilde is meant literally.
    # shellcheck disable=SC2088
    [[ $prog == "~/"* ]] && prog=$HOME/${prog#"~/"}
    [[ -x $prog ]] || prog=droverctl
    reply=$("$prog" "${sock[@]}" --json --timeout 2 status 2>/dev/null) || return 0
    # Only an app has a "name" in the status reply (SPEC section 7); app names have no quotes.
    while [[ $reply =~ \"name\":\ ?\"([^\"]*)\"(.*) ]]; do
        name=${BASH_REMATCH[1]}
        reply=${BASH_REMATCH[2]}
        printf '%s\n' "$name"
    done
}

_droverctl()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local commands="status top reload restart scale stop start logs events metrics upgrade"
    local options="-s --socket --json -t --timeout -h --help --version"
    local i cmd="" npos=0
    COMPREPLY=()

    [[ $prev == "=" && $COMP_CWORD -ge 2 ]] && prev=${COMP_WORDS[COMP_CWORD - 2]}
    case $prev in
    -s | --socket | --binary)
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return 0
        ;;
    -t | --timeout | -n | --lines | --since | --interval | -d) return 0 ;;
    esac

    # The command, and how many arguments it has before the word being completed.
    for ((i = 1; i < COMP_CWORD; i++)); do
        local w=${COMP_WORDS[i]}
        case $w in
        -s | --socket | -t | --timeout | -n | --lines | --since | --interval | -d | --binary)
            [[ ${COMP_WORDS[i + 1]} == "=" ]] && ((i++))
            ((i++))
            continue
            ;;
        -*) continue ;;
        esac
        if [[ -z $cmd ]]; then
            cmd=$w
        else
            ((npos++))
        fi
    done

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W "$options" -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
        fi
        return 0
    fi

    local cmd_options="--json" words=""
    case $cmd in
    logs) cmd_options+=" -n --lines -f --follow" ;;
    events) cmd_options+=" --since -f --follow" ;;
    top) cmd_options="--once --interval" ;;
    upgrade) cmd_options+=" --binary" ;;
    reload) cmd_options+=" --dry-run" ;;
    esac
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$cmd_options" -- "$cur")
        return 0
    fi
    case $cmd:$npos in
    status:0 | reload:0 | stop:0 | logs:0 | restart:0 | scale:0 | start:0)
        words=$(_droverctl_apps)
        ;;
    scale:1) words=$'auto\n+1\n-1' ;;
    esac
    local IFS=$'\n'
    mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
    return 0
}

complete -F _droverctl droverctl
