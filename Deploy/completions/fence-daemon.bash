# bash completion for fence-routerd and fence-hostd: fence_virtd's options.
_fence_daemon() {
    local current=${COMP_WORDS[COMP_CWORD]} previous=${COMP_WORDS[COMP_CWORD-1]}
    case $previous in
        -f|-p) mapfile -t COMPREPLY < <(compgen -f -- "$current"); return ;;
        -d) mapfile -t COMPREPLY < <(compgen -W "0 1 2 3" -- "$current"); return ;;
    esac
    mapfile -t COMPREPLY < <(compgen -W "-F -f -d -p -w -c -h --version" -- "$current")
}
complete -F _fence_daemon fence-routerd fence-hostd
