# Process helpers shared by the Deploy scripts (sourced, not run).

# True while PID runs. A zombie does not count: where PID 1 reaps late (containers, microVMs),
# `kill -0` keeps succeeding on a process that has long exited.
running() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $state != Z* ]]
}

# Stops PID: SIGTERM, up to SECONDS (default 10) for it to exit, then SIGKILL.
stop_pid() {
    local pid=$1 seconds=${2:-10}
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq $((seconds * 20))); do
        running "$pid" || return 0
        sleep 0.05
    done
    echo "pid $pid ignored SIGTERM for ${seconds}s: killed" >&2
    kill -9 "$pid" 2>/dev/null || true
}
