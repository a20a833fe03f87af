#compdef fence-routerd fence-hostd
# zsh completion for fence-routerd and fence-hostd: fence_virtd's options.
_arguments \
    '-F[run in the foreground]' \
    '-f[configuration file]:file:_files' \
    '-d[debug level]:level:(0 1 2 3)' \
    '-p[pid file]:file:_files' \
    '-w[wait for the backend]' \
    '-c[ask the configuration questions]' \
    '-h[show the help]' \
    '--version[show the version]'
