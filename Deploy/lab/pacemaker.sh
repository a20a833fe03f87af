#!/usr/bin/env bash
# A real Pacemaker cluster (Debian's corosync and pacemaker) on this machine, one node per network
# namespace: with --lab, the nodes are guests of a lab.sh lab (their fencer's fence_xvm reaches the
# lab's routers on the guest network); without, the script makes a network of its own. Run as root.
#
# Each node runs in its own PID, mount and UTS namespaces inside its network namespace: private
# /run, /dev/shm, /etc/corosync, /var/lib/corosync, /var/lib/pacemaker and /var/log (kept under
# DIR/NODE), its own /proc (pacemakerd looks there for running daemons), the node name as host
# name, and /proc/sysrq-trigger pointing at /dev/null: should a node ever panic, only its PID
# namespace goes (reboot(2) there ends the namespace, not the machine).
#
#   pacemaker.sh up DIR --nodes g1,g2,g3 [--lab LABDIR]
#        corosync.conf as `pcs cluster setup NAME g1 addr=… …` writes it (knet, an authkey), each
#        node started, then waits for quorum, a DC, and every node online
#        without --lab: a bridge and one namespace per node on 198.51.100.0/24 (.101, .102, …)
#   pacemaker.sh down DIR                 every node killed; namespaces this script made deleted
#   pacemaker.sh crm DIR NODE CMD...      CMD inside NODE (crm_mon, stonith_admin, cibadmin, pcs, …)
#   pacemaker.sh kill DIR NODE            SIGKILL to all of NODE's processes at once (corosync,
#                                         pacemakerd and its daemons), as a crash
#   pacemaker.sh stop DIR NODE            a clean stop (pacemakerd, then corosync)
#   pacemaker.sh start DIR NODE           starts a node of the cluster again (after kill or stop, or once
#                                         it stopped itself on learning it was fenced: waits 60 s for that)
#   pacemaker.sh running DIR NODE         exit 0 while NODE's processes run
#   pacemaker.sh wait DIR NODE [COUNT]    until NODE sees quorum, a DC and COUNT nodes online (default: all; 120 s at most)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
source "$here/Deploy/lib/process.sh"
command=${1:?usage: pacemaker.sh up|down|crm|kill|stop|start|running|wait DIR ...}
dir=${2:?a cluster directory is needed}
shift 2

nodes() { cat "$dir/nodes"; }
# The host-side pid of NODE's init (PID 1 of its PID namespace), empty when it is not running.
init_pid() {
    local pid
    pid=$(cat "$dir/$1/pid" 2>/dev/null) || return 0
    init_of "$pid"
}
# unshare --fork: the recorded pid is unshare, its only child the namespace's init.
init_of() { running "$1" && ps --ppid "$1" -o pid= 2>/dev/null | awk '{print $1}' || true; }
in_node() {
    local node=$1 pid
    shift
    pid=$(init_pid "$node")
    [[ -n $pid ]] || { echo "pacemaker: $node is not running" >&2; return 1; }
    nsenter --target "$pid" --mount --uts --net --pid -- "$@"
}

# PID 1 of a node: private mounts, corosync, then pacemakerd; on SIGTERM a clean stop.
node_init() {
    local node=$1 d=$dir/$1
    mount -t tmpfs -o mode=1777 tmpfs /dev/shm
    mount --bind "$d/run" /run
    mount --bind "$d/etc-corosync" /etc/corosync
    mount --bind "$d/lib-corosync" /var/lib/corosync
    mount --bind "$d/lib-pacemaker" /var/lib/pacemaker
    mount --bind "$d/log" /var/log
    [[ ! -e /proc/sysrq-trigger ]] || mount --bind /dev/null /proc/sysrq-trigger
    hostname "$node"
    export PCMK_logfile=/var/log/pacemaker/pacemaker.log PCMK_logfacility=none PCMK_fail_fast=no
    local corosync="" pacemakerd=""
    stop() {
        [[ -z $pacemakerd ]] || stop_pid "$pacemakerd" 120
        [[ -z $corosync ]] || stop_pid "$corosync" 30
        exit 0
    }
    # Before anything starts: PID 1 ignores a signal it has no handler for.
    trap stop TERM
    corosync -f &
    corosync=$!
    for _ in $(seq 200); do
        corosync-cmapctl totem.cluster_name >/dev/null 2>&1 && break
        running "$corosync" || { echo "corosync exited" >&2; exit 1; }
        sleep 0.05
    done
    pacemakerd -f &
    pacemakerd=$!
    echo ready > /run/node-ready
    # PID 1 waits (and so reaps what is orphaned to it) until corosync or pacemakerd ends.
    wait -n "$corosync" "$pacemakerd" || true
    echo "$node: corosync or pacemakerd exited" >&2
    stop
}

start_node() {
    local node=$1 namespace
    namespace=$(cat "$dir/$node/namespace")
    # A node that is stopping (a fenced one stops its own Pacemaker) ends first: one run at a time.
    for _ in $(seq 1200); do [[ -n $(init_pid "$node") ]] || break; sleep 0.05; done
    [[ -z $(init_pid "$node") ]] || { echo "pacemaker: $node is still running" >&2; return 1; }
    rm -f "$dir/$node/run/node-ready" "$dir/$node/run/"*.pid
    ip netns exec "$namespace" setsid unshare --pid --fork --mount-proc --mount --uts --propagation private \
        "$0" _init "$dir" "$node" >> "$dir/$node/boot.log" 2>&1 < /dev/null &
    echo $! > "$dir/$node/pid"
    for _ in $(seq 200); do
        [[ -f $dir/$node/run/node-ready ]] && return 0
        running "$(cat "$dir/$node/pid")" || break
        sleep 0.05
    done
    echo "pacemaker: $node did not start; its log:" >&2
    tail -20 "$dir/$node/boot.log" >&2
    return 1
}

# stop_node NODE SIGNAL SECONDS: SIGNAL to NODE's init (SIGKILL: the kernel kills every process of
# a PID namespace when its init dies), SIGKILL after SECONDS. Only the run found at the call: a
# run started meanwhile (start waits for this one to end) is left alone.
stop_node() {
    local node=$1 signal=$2 seconds=$3 pid init
    pid=$(cat "$dir/$node/pid" 2>/dev/null) || return 0
    init=$(init_of "$pid")
    [[ -z $init ]] || kill "-$signal" "$init" 2>/dev/null || true
    for _ in $(seq $((seconds * 20))); do running "$pid" || break; sleep 0.05; done
    if running "$pid"; then
        echo "pacemaker: $node did not stop in ${seconds}s: killed" >&2
        init=$(init_of "$pid")
        [[ -z $init ]] || kill -9 "$init" 2>/dev/null || true
        for _ in $(seq 200); do running "$pid" || break; sleep 0.05; done
    fi
    [[ $(cat "$dir/$node/pid" 2>/dev/null) != "$pid" ]] || rm -f "$dir/$node/pid"
}
kill_node() { stop_node "$1" KILL 10; }

# wait_cluster NODE COUNT: quorum, a DC, COUNT nodes online, as NODE sees it.
cluster_ready() {
    local xml
    xml=$(in_node "$1" crm_mon -1 --output-as=xml 2>/dev/null) || return 1
    grep -q '<current_dc present="true".*with_quorum="true"' <<<"$xml" || return 1
    (($(grep -c '<node name="[^"]*" id="[^"]*" online="true"' <<<"$xml") == $2))
}
wait_cluster() {
    for _ in $(seq 600); do
        cluster_ready "$1" "$2" && return 0
        sleep 0.2
    done
    echo "pacemaker: $1 did not see quorum, a DC and $2 nodes online in 120 s:" >&2
    in_node "$1" crm_mon -1 >&2 || true
    return 1
}

down() {
    [[ -f $dir/nodes ]] || return 0
    for node in $(nodes); do kill_node "$node"; done
    if [[ -f $dir/prefix ]]; then
        for namespace in $(ip netns list | awk -v prefix="$(cat "$dir/prefix")-" 'index($1, prefix) == 1 {print $1}'); do
            ip netns del "$namespace"
        done
    fi
}

case $command in
_init) node_init "$@" ;;
up)
    list="" lab=""
    while (($#)); do
        case $1 in
        --nodes) list=$2; shift 2 ;;
        --lab) lab=$2; shift 2 ;;
        *) echo "pacemaker: unknown option $1" >&2; exit 2 ;;
        esac
    done
    [[ -n $list ]] || { echo "pacemaker: --nodes is needed" >&2; exit 2; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    # Inside a node these paths are replaced: the cluster's own files must not live under them.
    for hidden in /run /var/run /dev/shm /etc/corosync /var/lib/corosync /var/lib/pacemaker /var/log; do
        [[ $dir/ != "$hidden"/* ]] || { echo "pacemaker: DIR must not be under $hidden" >&2; exit 2; }
    done
    tr ',' ' ' <<<"$list" > "$dir/nodes"
    trap 'echo "pacemaker: up failed; taking it down" >&2; down' ERR
    if [[ -n $lab ]]; then
        lab=$(cd "$lab" && pwd)
        echo "$lab" > "$dir/lab"
        for node in $(nodes); do
            mkdir -p "$dir/$node"
            echo "$(cat "$lab/prefix")-$node" > "$dir/$node/namespace"
        done
    else
        prefix="fpm$(head -c 3 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        echo "$prefix" > "$dir/prefix"
        ip netns add "$prefix-net"
        ip -n "$prefix-net" link set lo up
        ip -n "$prefix-net" link add br0 type bridge
        ip -n "$prefix-net" link set br0 type bridge mcast_snooping 0
        ip -n "$prefix-net" link set br0 up
        j=0
        for node in $(nodes); do
            j=$((j + 1))
            mkdir -p "$dir/$node"
            ip netns add "$prefix-$node"
            echo "$prefix-$node" > "$dir/$node/namespace"
            ip -n "$prefix-$node" link set lo up
            ip link add eth0 netns "$prefix-$node" type veth peer name "p$j" netns "$prefix-net"
            ip -n "$prefix-net" link set "p$j" master br0 up
            ip -n "$prefix-$node" addr add "198.51.100.$((100 + j))/24" dev eth0
            ip -n "$prefix-$node" link set eth0 up
            ip -n "$prefix-$node" route add 224.0.0.0/4 dev eth0
        done
    fi

    # corosync.conf: what `pcs cluster setup fence-lab g1 addr=… g2 addr=… …` writes, logging to
    # the node's file only; one authkey for all (pcs distributes one).
    nodelist="" id=0
    for node in $(nodes); do
        id=$((id + 1))
        address=$(ip -n "$(cat "$dir/$node/namespace")" -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)
        [[ -n $address ]] || { echo "pacemaker: $node has no IPv4 address on eth0" >&2; false; }
        nodelist+="    node {
        ring0_addr: $address
        name: $node
        nodeid: $id
    }

"
    done
    (umask 077 && head -c 256 /dev/urandom > "$dir/authkey")
    for node in $(nodes); do
        d=$dir/$node
        mkdir -p "$d/run" "$d/etc-corosync" "$d/lib-corosync" "$d/log/corosync" "$d/log/pacemaker" \
            "$d/lib-pacemaker/cib" "$d/lib-pacemaker/pengine" "$d/lib-pacemaker/blackbox" "$d/lib-pacemaker/cores"
        chown -R hacluster:haclient "$d/lib-pacemaker" "$d/log/pacemaker"
        chmod 750 "$d/lib-pacemaker"/*
        chmod 770 "$d/log/pacemaker"
        install -m 0400 "$dir/authkey" "$d/etc-corosync/authkey"
        cat > "$d/etc-corosync/corosync.conf" <<CONF
totem {
    version: 2
    cluster_name: fence-lab
    transport: knet
    crypto_cipher: aes256
    crypto_hash: sha256
}

nodelist {
${nodelist%$'\n'}}

quorum {
    provider: corosync_votequorum
}

logging {
    to_logfile: yes
    logfile: /var/log/corosync/corosync.log
    to_syslog: no
    to_stderr: no
    timestamp: on
}
CONF
    done
    for node in $(nodes); do start_node "$node"; done
    count=$(wc -w < "$dir/nodes")
    first=$(nodes | awk '{print $1}')
    wait_cluster "$first" "$count"
    # The default, written down: without fencing Pacemaker would recover a lost node's resources
    # without knowing it is gone.
    in_node "$first" crm_attribute --type crm_config --name stonith-enabled --update true
    trap - ERR
    echo "cluster up in $dir: $(nodes | tr ' ' ','), DC $(in_node "$first" crm_mon -1 --output-as=xml | grep -o '<current_dc present="true"[^>]*name="[^"]*"' | grep -o 'name="[^"]*"' | cut -d'"' -f2)"
    ;;
down) down ;;
crm) node=$1; shift; in_node "$node" "$@" ;;
kill) kill_node "$1" ;;
stop) stop_node "$1" TERM 150 ;;
start) start_node "$1" ;;
running) [[ -n $(init_pid "$1") ]] ;;
wait) wait_cluster "$1" "${2:-$(wc -w < "$dir/nodes")}" ;;
*) echo "pacemaker: unknown command $command" >&2; exit 2 ;;
esac
