#!/usr/bin/env bash
# A private RabbitMQ broker with its AMQP 1.0 plugin, for tests, CI, the demo and the benchmarks.
# No systemd and nothing shared with another broker: its own data directory, node name,
# distribution port and epmd, bound to one address (127.0.0.1 by default).
#
#   rabbitmq.sh start DIR PORT [ADDRESS]   install if needed, start, wait for AMQP 1.0
#                                          (with TLS_DIR=dir holding ca.pem, server.pem and server.key:
#                                          also AMQP over TLS on PORT+1, client certificates verified
#                                          when presented, SASL EXTERNAL by certificate common name)
#   rabbitmq.sh stop DIR                   stop the broker (every node of a cluster) and its epmd by PID
#   rabbitmq.sh stop DIR/nodeK             stop one node of a cluster gracefully (restart brings it back)
#   rabbitmq.sh ctl DIR ARGS...            rabbitmqctl against this broker (a cluster's first node)
#
#   rabbitmq.sh cluster DIR [N] PORT [ADDRESS]
#                                          N nodes (3 by default) joined into one cluster: node K in
#                                          DIR/nodeK on port PORT+2(K-1) (its TLS port the one above),
#                                          its own node name, data and distribution port, one epmd
#                                          and one Erlang cookie for all; DIR/urls lists the nodes
#   rabbitmq.sh kill DIR/nodeK             SIGKILL that node's broker by its PID, as a crash would
#   rabbitmq.sh restart DIR/nodeK          start a stopped or killed node again on its port and
#                                          data: it rejoins its cluster
#
# The AMQP user is "fence" with the password in DIR/password (made at the first start).
set -euo pipefail
source "$(dirname "$0")/../lib/process.sh"

command=${1:?usage: rabbitmq.sh start DIR PORT [ADDRESS] | cluster DIR [N] PORT [ADDRESS] | stop DIR[/nodeK] | kill DIR/nodeK | restart DIR/nodeK | ctl DIR ARGS...}
dir=${2:?a data directory is needed}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

environment() {
    local port address
    port=$(cat "$dir/port")
    address=$(cat "$dir/address")
    export HOME=$dir
    export RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf
    export RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf
    export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
    export RABBITMQ_MNESIA_BASE=$dir/mnesia
    export RABBITMQ_LOG_BASE=$dir/log
    export RABBITMQ_NODENAME=fence-$port@localhost
    export RABBITMQ_NODE_IP_ADDRESS=$address
    export RABBITMQ_NODE_PORT=$port
    # Below Linux's ephemeral ports (32768-60999 by default): there, any client's connection could
    # take the node's distribution port between a stop and a restart (`dist_port_already_used`).
    export RABBITMQ_DIST_PORT=$((port + 5000))
    export ERL_EPMD_ADDRESS=127.0.0.1
    # A cluster's nodes find each other through one epmd; a lone broker runs its own.
    export ERL_EPMD_PORT=$(cat "$dir/epmd_port" 2>/dev/null || echo $((port + 10000)))
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export PATH=/usr/lib/rabbitmq/bin:$PATH   # the plain scripts, not the su-to-rabbitmq wrappers
}

# True when the port speaks AMQP 1.0: the broker answers the SASL protocol header with its own.
speaks_amqp10() {
    local address=$1 port=$2 reply
    reply=$(timeout 2 bash -c "exec 3<>/dev/tcp/$address/$port && printf 'AMQP\x03\x01\x00\x00' >&3 && head -c 8 <&3 | od -An -tx1" 2>/dev/null | tr -d ' \n') || return 1
    [[ $reply == 414d515003010000 ]]
}

# epmd -daemon returns before the daemon listens, and a daemon started right after the last
# one stopped (a restart) can exit without listening: the broker then dies at start-up with
# `nodistribution`. Waits until epmd answers on PORT, starting it again while none runs; its PID
# goes to PIDFILE.
ensure_epmd() {
    local pidfile=$1 port=$2 attempt
    rm -f "$pidfile"
    for attempt in $(seq 100); do
        if [[ ! -s $pidfile ]] || ! running "$(cat "$pidfile")"; then
            pgrep -f "^epmd -address 127.0.0.1 -port $port( |\$)" > "$pidfile" \
                || { (( attempt % 10 == 1 )) && epmd -address 127.0.0.1 -port "$port" -daemon; } || true
        fi
        [[ -s $pidfile ]] && epmd -port "$port" -names >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "epmd did not answer on 127.0.0.1:$port within 10 s" >&2
    return 1
}

case $command in
start)
    port=${3:?a port is needed}
    address=${4:-127.0.0.1}
    if [[ -s $dir/rabbitmq.pid ]] && running "$(cat "$dir/rabbitmq.pid")"; then
        echo "the broker in $dir runs already (pid $(cat "$dir/rabbitmq.pid")): stop or kill it first" >&2
        exit 1
    fi
    if ! command -v /usr/lib/rabbitmq/bin/rabbitmq-server >/dev/null; then
        echo "installing rabbitmq-server from Debian's packages" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null
    fi
    echo "$port" > "$dir/port"
    echo "$address" > "$dir/address"
    mkdir -p "$dir/mnesia" "$dir/log"
    [[ -f $dir/password ]] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dir/password")
    : > "$dir/rabbitmq-env.conf"
    cat > "$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = $address:$port
default_user = fence
default_pass = $(cat "$dir/password")
loopback_users = none
amqp1_0.default_user = none
amqp1_0.default_vhost = /
log.console = false
log.file.level = warning
CONF
    plugins=rabbitmq_amqp1_0
    if [[ -n ${TLS_DIR:-} ]]; then
        cat >> "$dir/rabbitmq.conf" <<CONF
listeners.ssl.default = $address:$((port + 1))
ssl_options.cacertfile = $TLS_DIR/ca.pem
ssl_options.certfile = $TLS_DIR/server.pem
ssl_options.keyfile = $TLS_DIR/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
ssl_cert_login_from = common_name
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = EXTERNAL
CONF
        plugins="rabbitmq_amqp1_0 rabbitmq_auth_mechanism_ssl"
    fi
    environment
    # Whatever fails from here on, nothing we started stays behind.
    trap '"$0" stop "$dir"' ERR
    # shellcheck disable=SC2086
    rabbitmq-plugins enable --offline $plugins >/dev/null
    # A cluster's node uses the cluster's epmd (started by `cluster`); a lone broker starts its own.
    if [[ ! -f $dir/epmd_port ]] && ! ensure_epmd "$dir/epmd.pid" "$ERL_EPMD_PORT"; then
        "$0" stop "$dir"
        exit 1
    fi
    rabbitmq-server > "$dir/log/stdout.log" 2>&1 &
    echo $! > "$dir/launcher.pid"
    for _ in $(seq 600); do
        # The launcher script is beam's parent; the broker itself is beam.smp.
        pgrep -P "$(cat "$dir/launcher.pid")" beam.smp > "$dir/rabbitmq.pid" || true
        if [[ -s $dir/rabbitmq.pid ]] && speaks_amqp10 "$address" "$port"; then
            # The AMQP listener opens before the node has finished booting; policies need it booted.
            rabbitmqctl -q await_startup --timeout 60 >/dev/null
            # Subscriptions to /topic and /exchange addresses leave amq.gen-* queues behind on
            # RabbitMQ 3.x; expire them once unused.
            rabbitmqctl -q set_policy --apply-to queues gen-expire '^amq\.gen-' '{"expires":5000}' >/dev/null
            echo "RabbitMQ $(rabbitmqctl -q version 2>/dev/null || echo 3) speaks AMQP 1.0 on $address:$port (pid $(cat "$dir/rabbitmq.pid"))"
            exit 0
        fi
        if ! running "$(cat "$dir/launcher.pid")"; then
            echo "RabbitMQ exited during start-up; its log:" >&2
            tail -30 "$dir/log/stdout.log" >&2
            "$0" stop "$dir"
            exit 1
        fi
        sleep 0.1
    done
    echo "RabbitMQ did not accept AMQP 1.0 on $address:$port within 60 s" >&2
    "$0" stop "$dir"
    exit 1
    ;;
cluster)
    shift 2
    if (($# >= 2)) && [[ $2 =~ ^[0-9]+$ ]]; then nodes=$1; shift; else nodes=3; fi
    port=${1:?a port is needed}
    address=${2:-127.0.0.1}
    ((nodes >= 1 && port >= 1024)) || { echo "usage: rabbitmq.sh cluster DIR [N] PORT [ADDRESS] (N >= 1, PORT >= 1024)" >&2; exit 2; }
    # Installed once here: the nodes start side by side, and parallel apt-get runs fail on dpkg's lock.
    if ! command -v /usr/lib/rabbitmq/bin/rabbitmq-server >/dev/null; then
        echo "installing rabbitmq-server from Debian's packages" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null
    fi
    export PATH=/usr/lib/rabbitmq/bin:$PATH
    [[ -f $dir/password ]] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dir/password")
    [[ -f $dir/cookie ]] || (umask 077 && head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$dir/cookie")
    echo $((port + 10000)) > "$dir/epmd_port"
    : > "$dir/nodes"
    : > "$dir/urls"
    trap '"$0" stop "$dir"' ERR
    ensure_epmd "$dir/epmd.pid" $((port + 10000))
    for ((k = 1; k <= nodes; k++)); do
        node=$dir/node$k
        mkdir -p "$node"
        cp "$dir/password" "$dir/epmd_port" "$node/"
        # The cookie is what lets the nodes speak to each other: the same, and readable by the owner only.
        install -m 0400 "$dir/cookie" "$node/.erlang.cookie"
        echo "$node" >> "$dir/nodes"
        echo "amqp://$address:$((port + 2 * (k - 1)))" >> "$dir/urls"
    done
    # The nodes start side by side; then the others join node 1, one at a time.
    pids=()
    for ((k = 1; k <= nodes; k++)); do
        "$0" start "$dir/node$k" $((port + 2 * (k - 1))) "$address" &
        pids+=($!)
    done
    failed=0
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    if ((failed)); then
        echo "a node of the cluster did not start" >&2
        "$0" stop "$dir"
        exit 1
    fi
    for ((k = 2; k <= nodes; k++)); do
        "$0" ctl "$dir/node$k" -q stop_app >/dev/null
        "$0" ctl "$dir/node$k" -q join_cluster "fence-$port@localhost" >/dev/null
        "$0" ctl "$dir/node$k" -q start_app >/dev/null
    done
    running_nodes=$("$0" ctl "$dir/node1" -q eval 'length(rabbit_nodes:all_running()).' 2>/dev/null || echo "?")
    echo "RabbitMQ cluster of $nodes nodes in $dir ($running_nodes running): $(tr '\n' ' ' < "$dir/urls")"
    ;;
kill)
    trap - ERR
    for name in rabbitmq launcher; do
        pid=$(cat "$dir/$name.pid" 2>/dev/null || true)
        [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true
    done
    for name in rabbitmq launcher; do
        pid=$(cat "$dir/$name.pid" 2>/dev/null || true)
        [[ -n $pid ]] || continue
        for _ in $(seq 100); do running "$pid" || break; sleep 0.05; done
        rm -f "$dir/$name.pid"
    done
    ;;
restart)
    # A node of a stopped cluster finds the cluster's epmd gone: start it again first.
    if [[ -f $dir/epmd_port ]]; then
        cluster=$(dirname "$dir")
        ensure_epmd "$cluster/epmd.pid" "$(cat "$dir/epmd_port")"
    fi
    exec "$0" start "$dir" "$(cat "$dir/port")" "$(cat "$dir/address")"
    ;;
stop)
    trap - ERR
    if [[ -f $dir/nodes ]]; then
        while read -r node; do "$0" stop "$node"; done < "$dir/nodes"
    fi
    for name in rabbitmq launcher epmd; do
        pid=$(cat "$dir/$name.pid" 2>/dev/null || true)
        [[ -n $pid ]] || continue
        stop_pid "$pid" 30
        rm -f "$dir/$name.pid"
    done
    ;;
ctl)
    shift 2
    [[ -f $dir/nodes ]] && dir=$(head -1 "$dir/nodes")
    environment
    exec rabbitmqctl "$@"
    ;;
*)
    echo "unknown command $command" >&2
    exit 2
    ;;
esac
