#!/usr/bin/env bash
# The main job, as a throwaway demo: the multi-host lab of lab.sh (network namespaces only) with
# three simulated hypervisor hosts, each running its own libvirtd and fence-hostd, a RabbitMQ
# cluster of three nodes, a fence-routerd, and two guests running the real fence_xvm. It drives
# list, status, off, on and reboot across the hosts, migrates a VM from one host to another, kills
# the broker node the router is on, silences a host, and shows after each success the state the
# host's own libvirtd reports. Everything is removed at the end.
# Run as root.
set -euo pipefail
cd "$(dirname "$0")/../.."

Deploy/install-deps.sh
echo "building fence-routerd, fence-hostd and fencectl..."
for product in fence-routerd fence-hostd fencectl; do swift build --product "$product" >/dev/null; done

lab=$(mktemp -d /tmp/fence-router-demo.XXXXXX)
trap 'Deploy/lab/lab.sh down "$lab" >/dev/null 2>&1 || true; rm -rf "$lab"' EXIT
lab() { Deploy/lab/lab.sh "$1" "$lab" "${@:2}"; }

say() { printf '\n\033[1m## %s\033[0m\n' "$*"; }
xvm() {
    local guest=$1
    shift
    echo "[$guest]\$ fence_xvm $*"
    set +e
    lab xvm "$guest" "$@"
    echo "(exit $?)"
    set -e
}
truth() {   # what the host's own libvirtd says, independently of the agent
    local state
    state=$(lab virsh "$1" domstate "$2" 2>/dev/null) || state="not defined"
    echo "  libvirtd of $1 says $2 is: $(echo "$state" | head -1)"
}
listed() {   # until the router's list shows domain $1 as $2
    for _ in $(seq 50); do
        lab xvm g1 -o list -t 5 2>/dev/null | grep -Eq "^$1 .* $2\$" && return 0
        sleep 0.2
    done
    echo "the router never listed $1 as $2" >&2
    return 1
}

say "building the lab: hosts hv1-hv3 (libvirtd + fence-hostd each), a broker cluster of 3 nodes, fence-routerd on hv1, guests g1 and g2"
lab up --hosts 3 --routers 1 --guests 2 --brokers 3 --bin "$(swift build --show-bin-path)"
lab define hv1 node1 3b6f9a40-0000-4000-8000-000000000001
lab define hv2 node2 3b6f9a40-0000-4000-8000-000000000002
lab define hv3 node3 3b6f9a40-0000-4000-8000-000000000003
lab define hv3 spare 3b6f9a40-0000-4000-8000-000000000004 off
listed node3 on

say "list: every live host's domains (the reference fence_virtd shows one host's)"
xvm g1 -o list
lab fencectl hv1 inventory

say "status, off and on, wherever the VM runs"
xvm g1 -o status -H node2
xvm g1 -o off -H node2
truth hv2 node2
xvm g2 -o status -H node2
xvm g2 -o on -H node2
truth hv2 node2

say "reboot: off, then on at the same host"
xvm g2 -o reboot -H node3
truth hv3 node3
xvm g2 -o status -u -H 3b6f9a40-0000-4000-8000-000000000004

say "a migration: node1 moves from hv1 to hv2; the agents tell the router at once"
lab migrate node1 hv1 hv2
listed node1 on
lab fencectl hv1 inventory | grep -E "^(DOMAIN|node1)"
xvm g1 -o off -H node1
truth hv2 node1
truth hv1 node1

say "a broker node dies: the one fence-routerd is on; the daemons move to another node and fencing goes on"
node=$(lab attached router-hv1)
echo "fence-routerd is on $node: killing that RabbitMQ node"
lab kill "$node"
for _ in $(seq 50); do [[ $(lab attached router-hv1 2>/dev/null) != "$node" ]] && break; sleep 0.2; done
echo "fence-routerd is now on $(lab attached router-hv1)"
# Right after the move the hosts are doubtful until their snapshots arrive: failure, then success.
for attempt in 1 2 3 4 5 6 7 8 9 10; do
    echo "[g1]\$ fence_xvm -o reboot -H node2   (attempt $attempt)"
    lab xvm g1 -o reboot -H node2 -t 10 && { echo "(exit 0)"; break; }
    echo "(failed: asked again)"
    sleep 0.5
done
truth hv2 node2

say "hv3's agent goes silent: its VMs cannot be vouched for, so the answer is failure, never off"
lab stop agent-hv3
sleep 4
xvm g1 -o status -H node3
xvm g1 -o off -H node3
truth hv3 node3
xvm g1 -o status -H nosuchvm
echo "(unknown while a host is silent: failure too; with every host live it would be off, as the reference answers)"

say "fence-routerd's log"
sed 's/^/  /' "$lab/logs/router-hv1.log" | grep -E "request answered|inventory|no confirmation" | tail -25
