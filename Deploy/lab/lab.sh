#!/usr/bin/env bash
# A multi-host fence-router lab on this machine, in network namespaces it creates (nothing touches
# the real interfaces). Run as root.
#
#   lab.sh up DIR [--hosts N] [--guests M] [--routers R] [--brokers K] [--bare B] [--bin DIR] [--request-timeout S] [--host-freshness S] [--warm-up S] [--debug D]
#        management network 198.18.0.0/24: the broker (.100) and hosts hv1..hvN (.1..); with K > 1
#        the broker is a RabbitMQ cluster of K nodes on .100 (ports P, P+2, …), and host hvI lists
#        them from node I on, so that the daemons spread over the nodes
#        guest network 198.51.100.0/24 on a bridge: hosts (.1..) and guests g1..gM (.101..)
#        each host: its own libvirtd (libvirt's test driver on a unix socket) and fence-hostd;
#        hosts hv1..hvR also run fence-routerd (amqp backend, multicast on the guest network);
#        B more hosts after them have a libvirtd only (for a reference fence_virtd in benchmarks)
#        the daemons log at debug level D (default 1, for the tests; the benchmarks use 0, as in production)
#   lab.sh down DIR
#   lab.sh define DIR HOST NAME UUID [running|off]    define a domain in HOST's libvirtd
#   lab.sh populate DIR HOST FIRST LAST               define and start vmFIRST..vmLAST (UUID from the number), in one virsh run
#   lab.sh migrate DIR NAME FROM TO                   start it on TO, then destroy and undefine it on FROM
#   lab.sh virsh DIR HOST ARGS...                     virsh against HOST's libvirtd (the true state)
#   lab.sh xvm DIR GUEST ARGS...                      the real fence_xvm in GUEST, with the lab's key
#   lab.sh device-options DIR                         what a guest's fence_xvm stonith device needs in this lab
#                                                     (key_file=…, multicast_address=…), one a line
#   lab.sh fencectl DIR HOST ARGS...                  fencectl in HOST's namespace, with HOST's configuration
#   lab.sh stop|start DIR PART                        PART: broker (every node), brokerK (node K of a cluster),
#                                                     libvirtd-HOST (a host's hypervisor: its domains are
#                                                     gone once it restarts, as after a reboot),
#                                                     agent-HOST, router-HOST
#   lab.sh kill DIR PART                              SIGKILL, as a crash: brokerK, agent-HOST, router-HOST
#   lab.sh attached DIR PART                          the broker node (brokerK) agent-HOST or router-HOST is connected to now
#   lab.sh running-brokers DIR                        how many nodes the cluster's first node sees running, itself included
#   lab.sh metrics DIR PART                           what router-HOST or agent-HOST serves on its metrics endpoint
#   lab.sh pid DIR PART
#   lab.sh wait DIR PART TEXT                         until PART's current run logs TEXT (15 s at most)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
source "$here/Deploy/lib/process.sh"
command=${1:?usage: lab.sh up|down|define|populate|migrate|virsh|xvm|device-options|fencectl|metrics|stop|start|kill|attached|pid|wait DIR ...}
dir=${2:?a lab directory is needed}
shift 2

ns() { echo "$(cat "$dir/prefix")-$1"; }
uri() { echo "test+unix:///default?socket=$dir/$1/run/libvirt-sock"; }
in_ns() { local name=$1; shift; ip netns exec "$(ns "$name")" "$@"; }

# Starts PART (a command in a namespace) in the background, its pid in DIR/pids, its log in DIR/logs.
launch() {
    local part=$1 namespace=$2
    shift 2
    # The log is kept across restarts; what this run says starts after the mark.
    touch "$dir/logs/$part.log"
    wc -l < "$dir/logs/$part.log" > "$dir/logs/$part.mark"
    ip netns exec "$(ns "$namespace")" setsid "$@" >> "$dir/logs/$part.log" 2>&1 < /dev/null &
    echo $! > "$dir/pids/$part"
}

wait_for_log() {
    local part=$1 text=$2
    for _ in $(seq 300); do
        tail -n +$(($(cat "$dir/logs/$part.mark") + 1)) "$dir/logs/$part.log" 2>/dev/null | grep -q "$text" && return 0
        running "$(cat "$dir/pids/$part")" || break
        sleep 0.05
    done
    echo "lab: $part did not report '$text'; its log:" >&2
    tail -20 "$dir/logs/$part.log" >&2
    return 1
}

stop_part() {
    local part=$1 pid
    pid=$(cat "$dir/pids/$part" 2>/dev/null || true)
    if [[ $part == broker ]]; then
        ip netns exec "$(ns brk)" "$here/Deploy/broker/rabbitmq.sh" stop "$dir/broker" >/dev/null 2>&1 || true
        return
    fi
    if [[ $part == broker[0-9]* ]]; then
        ip netns exec "$(ns brk)" "$here/Deploy/broker/rabbitmq.sh" stop "$dir/broker/node${part#broker}" >/dev/null 2>&1 || true
        return
    fi
    # A simulated host's libvirtd goes with its keeper.
    [[ $part == libvirtd-* ]] && stop_part "keeper-${part#libvirtd-}"
    [[ -n $pid ]] || return 0
    stop_pid "$pid"
    rm -f "$dir/pids/$part"
}

start_part() {
    local part=$1 bin host
    bin=$(cat "$dir/bin")
    case $part in
    broker)
        if (($(cat "$dir/brokers") > 1)); then
            ip netns exec "$(ns brk)" "$here/Deploy/broker/rabbitmq.sh" cluster "$dir/broker" "$(cat "$dir/brokers")" "$(cat "$dir/broker-port")" 198.18.0.100 >/dev/null
        else
            ip netns exec "$(ns brk)" "$here/Deploy/broker/rabbitmq.sh" start "$dir/broker" "$(cat "$dir/broker-port")" 198.18.0.100 >/dev/null
        fi
        ;;
    broker[0-9]*)
        ip netns exec "$(ns brk)" "$here/Deploy/broker/rabbitmq.sh" restart "$dir/broker/node${part#broker}" >/dev/null
        ;;
    libvirtd-*)
        host=${part#libvirtd-}
        rm -f "$dir/$host/run/libvirt-sock"
        LIBVIRT_DRIVER_DIR=$dir/$host/nodrv launch "$part" "$host" libvirtd --config "$dir/$host/libvirtd.conf" --pid-file "$dir/$host/libvirtd.pid"
        for _ in $(seq 200); do virsh -c "$(uri "$host")" uri >/dev/null 2>&1 && break; sleep 0.05; done
        virsh -c "$(uri "$host")" uri >/dev/null 2>&1 || { echo "lab: libvirtd of $host did not start" >&2; return 1; }
        # libvirtd keeps test:///default only while a connection is open; a real host keeps its
        # domains whatever its clients do, so a keeper connection holds the state for the host's life.
        launch "keeper-$host" "$host" virsh -c "$(uri "$host")" event --all --loop
        for _ in $(seq 100); do
            # Unix sockets are listed per network namespace: look from the host's.
            in_ns "$host" ss -x 2>/dev/null | grep -q "$dir/$host/run/libvirt-sock" && break
            sleep 0.05
        done
        ;;
    agent-*)
        host=${part#agent-}
        launch "$part" "$host" "$bin/fence-hostd" -F -f "$dir/$host/fence_virt.conf" -d "$(cat "$dir/debug" 2>/dev/null || echo 1)"
        wait_for_log "$part" "ready"
        ;;
    router-*)
        host=${part#router-}
        launch "$part" "$host" "$bin/fence-routerd" -F -f "$dir/$host/fence_virt.conf" -d "$(cat "$dir/debug" 2>/dev/null || echo 1)"
        wait_for_log "$part" "listening"
        ;;
    *)
        echo "lab: unknown part $part" >&2
        return 2
        ;;
    esac
}

domain_xml() {   # domain_xml HOST NAME UUID: writes the definition, prints its path
    local xml=$dir/$1/$2.xml
    echo "<domain type='test'><name>$2</name><uuid>$3</uuid><memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>" > "$xml"
    echo "$xml"
}

define_domain() {
    local host=$1 name=$2 uuid=$3 state=${4:-running} xml
    xml=$(domain_xml "$host" "$name" "$uuid")
    virsh -c "$(uri "$host")" define "$xml" >/dev/null
    [[ $state == off ]] || virsh -c "$(uri "$host")" start "$name" >/dev/null
}

case $command in
up)
    hosts=3 guests=2 routers=1 brokers=1 bare=0 bin="" timeout=15 freshness=3 warm_up="" debug=1
    while (($#)); do
        case $1 in
        --request-timeout) timeout=$2; shift 2 ;;
        --host-freshness) freshness=$2; shift 2 ;;
        --warm-up) warm_up=$2; shift 2 ;;
        --hosts) hosts=$2; shift 2 ;;
        --guests) guests=$2; shift 2 ;;
        --routers) routers=$2; shift 2 ;;
        --brokers) brokers=$2; shift 2 ;;
        --bare) bare=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        --debug) debug=$2; shift 2 ;;
        *) echo "lab: unknown option $1" >&2; exit 2 ;;
        esac
    done
    [[ -n $bin ]] || bin=$(cd "$here" && swift build --show-bin-path)
    mkdir -p "$dir/pids" "$dir/logs"
    dir=$(cd "$dir" && pwd)
    echo "frl$(head -c 3 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$dir/prefix"
    echo "$bin" > "$dir/bin"
    echo "$hosts" > "$dir/hosts"
    echo "$guests" > "$dir/guests"
    echo "$routers" > "$dir/routers"
    echo "$brokers" > "$dir/brokers"
    echo "$debug" > "$dir/debug"
    echo $((20000 + RANDOM % 9000)) > "$dir/broker-port"

    # Networks: a management bridge and a guest bridge, each in a namespace of its own.
    for net in mgmt net; do
        ip netns add "$(ns $net)"
        in_ns $net ip link set lo up
        in_ns $net ip link add br0 type bridge
        in_ns $net ip link set br0 type bridge mcast_snooping 0
        in_ns $net ip link set br0 up
    done
    attach() {   # attach NAMESPACE IFNAME NETWORK PORTNAME ADDRESS
        ip link add "$2" netns "$(ns "$1")" type veth peer name "$4" netns "$(ns "$3")"
        in_ns "$3" ip link set "$4" master br0 up
        in_ns "$1" ip addr add "$5" dev "$2"
        in_ns "$1" ip link set "$2" up
    }
    ip netns add "$(ns brk)"
    in_ns brk ip link set lo up
    attach brk eth0 mgmt pbrk 198.18.0.100/24

    (umask 077 && head -c 4096 /dev/urandom > "$dir/fence_xvm.key" && head -c 64 /dev/urandom > "$dir/bus.key")
    # One identity per host (a host that also routes files its key under both names), and the
    # operator "lab" for fencectl host; one trust directory serves every namespace of the lab.
    fencectl=$(cat "$dir/bin")/fencectl
    "$fencectl" keygen --operator lab "$dir/operator.key" --trust-directory "$dir/trust" >/dev/null
    start_part broker
    password=$(cat "$dir/broker/password")
    port=$(cat "$dir/broker-port")

    for i in $(seq $((hosts + bare))); do
        host=hv$i
        ip netns add "$(ns $host)"
        in_ns $host ip link set lo up
        attach $host eth1 mgmt "m$i" "198.18.0.$i/24"
        attach $host eth0 net "n$i" "198.51.100.$i/24"
        in_ns $host ip route add 224.0.0.0/4 dev eth0
        mkdir -p "$dir/$host/run" "$dir/$host/nodrv" "$dir/$host/state"
        "$fencectl" keygen --host $host "$dir/$host/identity.key" --trust-directory "$dir/trust" >/dev/null
        if ((i <= routers)); then
            mkdir -p "$dir/trust/routers"
            cp "$dir/$host/identity.pub" "$dir/trust/routers/router-$host.pub"
        fi
        cat > "$dir/$host/libvirtd.conf" <<CONF
unix_sock_dir = "$dir/$host/run"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
CONF
        # The broker's nodes, from node I on (url, url1, …): the hosts' daemons spread over them.
        urls=""
        for ((k = 0; k < brokers; k++)); do
            key=url
            ((k == 0)) || key=url$k
            urls+="		$key = \"amqp://fence:$password@198.18.0.100:$((port + 2 * ((i - 1 + k) % brokers)))\";"$'\n'
        done
        cat > "$dir/$host/fence_virt.conf" <<CONF
fence_virtd {
	listener = "multicast";
	backend = "amqp";
	request_timeout = "$timeout";
	state_directory = "$dir/$host/state";
}

listeners {
	multicast {
		key_file = "$dir/fence_xvm.key";
		address = "225.0.0.12";
		port = "1229";
		interface = "eth0";
	}
}

backends {
	amqp {
$urls		allow_insecure_plain = "1";
		bus_key_file = "$dir/bus.key";
		identity_key_file = "$dir/$host/identity.key";
		trust_directory = "$dir/trust";
		host_id = "$host";
		router_id = "router-$host";
		host_freshness = "$freshness";
		warm_up = "${warm_up:-$freshness}";
	}
	libvirt {
		uri = "$(uri $host)";
	}
}
CONF
    done
    # Started once every key is filed: an agent addresses the routers its trust directory lists
    # when it starts (and lists them again only every few seconds), so one started before a
    # router's key would leave that router without its heartbeats at first.
    for i in $(seq $((hosts + bare))); do
        host=hv$i
        start_part "libvirtd-$host"
        ((i > hosts)) || start_part "agent-$host"
        # The test driver's own sample domain would be on every host with one UUID: remove it.
        virsh -c "$(uri $host)" destroy test >/dev/null 2>&1 || true
        virsh -c "$(uri $host)" undefine test >/dev/null 2>&1 || true
    done
    for i in $(seq "$routers"); do start_part "router-hv$i"; done
    # Up means every router answers for every domain: past its warm-up, with a snapshot from every host.
    for i in $(seq "$routers"); do wait_for_log "router-hv$i" "inventory complete"; done
    for j in $(seq "$guests"); do
        guest=g$j
        ip netns add "$(ns $guest)"
        in_ns $guest ip link set lo up
        attach $guest eth0 net "g$j" "198.51.100.$((100 + j))/24"
        in_ns $guest ip route add 224.0.0.0/4 dev eth0
    done
    echo "lab up in $dir: $hosts hosts, $routers router(s), $guests guests, broker 198.18.0.100:$port$( ((brokers > 1)) && echo " (a cluster of $brokers nodes, ports $port, $((port + 2)), …)")"
    ;;
down)
    [[ -f $dir/prefix ]] || exit 0
    for pidfile in "$dir"/pids/*; do
        [[ -e $pidfile ]] && stop_part "$(basename "$pidfile")"
    done
    stop_part broker
    for namespace in $(ip netns list | awk -v prefix="$(cat "$dir/prefix")-" 'index($1, prefix) == 1 {print $1}'); do
        ip netns del "$namespace"
    done
    ;;
define) define_domain "$@" ;;
populate)
    host=$1 commands=""
    for number in $(seq "$2" "$3"); do
        commands+="define $(domain_xml "$host" "vm$number" "$(printf '%08x-0000-4000-8000-000000000000' "$number")"); start vm$number; "
    done
    virsh -c "$(uri "$host")" "$commands" >/dev/null
    ;;
migrate)
    name=$1 from=$2 to=$3
    xml=$(virsh -c "$(uri "$from")" dumpxml "$name")
    echo "$xml" > "$dir/$to/$name.xml"
    virsh -c "$(uri "$to")" define "$dir/$to/$name.xml" >/dev/null
    virsh -c "$(uri "$to")" start "$name" >/dev/null
    virsh -c "$(uri "$from")" destroy "$name" >/dev/null
    virsh -c "$(uri "$from")" undefine "$name" >/dev/null
    ;;
virsh) host=$1; shift; virsh -c "$(uri "$host")" "$@" ;;
xvm) guest=$1; shift; in_ns "$guest" fence_xvm -k "$dir/fence_xvm.key" "$@" ;;
device-options)
    # The routers' group and port are fence_xvm's defaults (written out in fence_virt.conf).
    echo "key_file=$dir/fence_xvm.key"
    echo "multicast_address=225.0.0.12"
    ;;
metrics)
    # The default endpoints (loopback of the host's namespace), read with bash alone.
    part=$1 port=9231
    [[ $part == agent-* ]] && port=9232
    in_ns "${part#*-}" bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3" ;;
fencectl)
    host=$1; shift
    operator=()
    # fencectl host signs as the lab's operator unless told otherwise.
    [[ ${1:-} == host && " $* " != *" --operator-key "* ]] && operator=(--operator lab --operator-key "$dir/operator.key")
    in_ns "$host" "$(cat "$dir/bin")/fencectl" "$@" "${operator[@]}" -f "$dir/$host/fence_virt.conf" ;;
stop) stop_part "$1" ;;
kill)
    part=$1
    if [[ $part == broker[0-9]* ]]; then
        ip netns exec "$(ns brk)" "$here/Deploy/broker/rabbitmq.sh" kill "$dir/broker/node${part#broker}"
    else
        pid=$(cat "$dir/pids/$part")
        kill -9 "$pid" 2>/dev/null || true
        for _ in $(seq 100); do running "$pid" || break; sleep 0.05; done
        rm -f "$dir/pids/$part"
    fi
    ;;
running-brokers)
    ip netns exec "$(ns brk)" "$here/Deploy/broker/rabbitmq.sh" ctl "$dir/broker" -q eval 'length(rabbit_nodes:all_running()).'
    ;;
attached)
    # The last "connected to the broker" of PART's current run names the node's address and port.
    port=$(tail -n +$(($(cat "$dir/logs/$1.mark") + 1)) "$dir/logs/$1.log" | grep "connected to the broker" | grep -o 'broker=198.18.0.100:[0-9]*' | tail -1 | cut -d: -f2 || true)
    [[ -n $port ]] || { echo "lab: $1 has not connected to the broker" >&2; exit 1; }
    echo "broker$(( (port - $(cat "$dir/broker-port")) / 2 + 1 ))"
    ;;
start) start_part "$1" ;;
pid) cat "$dir/pids/$1" ;;
wait) wait_for_log "$1" "$2" ;;
*) echo "lab: unknown command $command" >&2; exit 2 ;;
esac
