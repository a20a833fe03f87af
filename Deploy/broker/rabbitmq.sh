#!/usr/bin/env bash
# A private RabbitMQ broker with its AMQP 1.0 plugin, for tests, CI, the demo and the benchmarks.
# No systemd and nothing shared with another broker: its own data directory, node name,
# distribution port and epmd, bound to one address (127.0.0.1 by default).
#
#   rabbitmq.sh start DIR PORT [ADDRESS]   install if needed, start, wait for AMQP 1.0
#                                          (with TLS_DIR=dir holding ca.pem, server.pem and server.key:
#                                          also AMQP over TLS on PORT+1, client certificates verified
#                                          when presented, SASL EXTERNAL by certificate common name)
#   rabbitmq.sh stop DIR                   stop the broker and its epmd by PID
#   rabbitmq.sh ctl DIR ARGS...            rabbitmqctl against this broker
#
# The AMQP user is "fence" with the password in DIR/password (made at the first start).
set -euo pipefail
source "$(dirname "$0")/../lib/process.sh"

command=${1:?usage: rabbitmq.sh start DIR PORT [ADDRESS] | stop DIR | ctl DIR ARGS...}
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
    export RABBITMQ_DIST_PORT=$((port + 20000))
    export ERL_EPMD_ADDRESS=127.0.0.1
    export ERL_EPMD_PORT=$((port + 10000))
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

case $command in
start)
    port=${3:?a port is needed}
    address=${4:-127.0.0.1}
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
    # epmd -daemon returns before the daemon listens, and a daemon started right after the last
    # one stopped (a restart) can exit without listening: the broker then dies at start-up with
    # `nodistribution`. Wait until epmd answers, starting it again while none runs.
    rm -f "$dir/epmd.pid"
    for attempt in $(seq 100); do
        if [[ ! -s $dir/epmd.pid ]] || ! running "$(cat "$dir/epmd.pid")"; then
            pgrep -f "^epmd -address 127.0.0.1 -port $ERL_EPMD_PORT( |\$)" > "$dir/epmd.pid" \
                || { (( attempt % 10 == 1 )) && epmd -address 127.0.0.1 -port "$ERL_EPMD_PORT" -daemon; } || true
        fi
        [[ -s $dir/epmd.pid ]] && epmd -port "$ERL_EPMD_PORT" -names >/dev/null 2>&1 && break
        if (( attempt == 100 )); then
            echo "epmd did not answer on 127.0.0.1:$ERL_EPMD_PORT within 10 s" >&2
            "$0" stop "$dir"
            exit 1
        fi
        sleep 0.1
    done
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
stop)
    trap - ERR
    for name in rabbitmq launcher epmd; do
        pid=$(cat "$dir/$name.pid" 2>/dev/null || true)
        [[ -n $pid ]] || continue
        stop_pid "$pid" 30
        rm -f "$dir/$name.pid"
    done
    ;;
ctl)
    shift 2
    environment
    exec rabbitmqctl "$@"
    ;;
*)
    echo "unknown command $command" >&2
    exit 2
    ;;
esac
