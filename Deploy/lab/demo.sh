#!/usr/bin/env bash
# A throwaway lab on this machine, in network namespaces only: a simulated hypervisor host
# (libvirt's test driver) with a bridge, two guests on it, and fence-routerd serving the real
# fence_xvm from the guests: list, status, off, on, reboot. Everything is removed at the end.
# Run as root.
set -euo pipefail
cd "$(dirname "$0")/../.."

Deploy/install-deps.sh
echo "building fence-routerd..."
swift build --product fence-routerd >/dev/null
routerd="$(swift build --show-bin-path)/fence-routerd"

lab=$(mktemp -d /tmp/fence-router-demo.XXXXXX)
host=frd-host
guests=(frd-g1 frd-g2)
daemon_pid=""
cleanup() {
    [[ -n "$daemon_pid" ]] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
    for ns in "${guests[@]}" "$host"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$lab"
}
trap cleanup EXIT
cleanup_stale() { for ns in "${guests[@]}" "$host"; do ip netns del "$ns" 2>/dev/null || true; done; }
cleanup_stale

echo "creating the lab: $host (bridge br0, 198.51.100.1) and guests ${guests[*]}"
ip netns add "$host"
ip -n "$host" link set lo up
ip -n "$host" link add br0 type bridge
ip -n "$host" link set br0 type bridge mcast_snooping 0
ip -n "$host" addr add 198.51.100.1/24 dev br0
ip -n "$host" link set br0 up
ip -n "$host" route add 224.0.0.0/4 dev br0
index=0
for guest in "${guests[@]}"; do
    index=$((index + 1))
    ip netns add "$guest"
    ip link add eth0 netns "$guest" type veth peer name "vg$index" netns "$host"
    ip -n "$host" link set "vg$index" master br0 up
    ip -n "$guest" link set lo up
    ip -n "$guest" addr add "198.51.100.$((10 + index))/24" dev eth0
    ip -n "$guest" link set eth0 up
    ip -n "$guest" route add 224.0.0.0/4 dev eth0
done

# The simulated hypervisor: three VMs, one of them shut off.
cat > "$lab/host.xml" <<XML
<node>
  <domain type='test'><name>node1</name><uuid>3b6f9a40-0000-4000-8000-000000000001</uuid><memory>65536</memory><os><type>hvm</type></os></domain>
  <domain type='test'><name>node2</name><uuid>3b6f9a40-0000-4000-8000-000000000002</uuid><memory>65536</memory><os><type>hvm</type></os></domain>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'><name>spare</name><uuid>3b6f9a40-0000-4000-8000-000000000003</uuid><memory>65536</memory><os><type>hvm</type></os><test:runstate>5</test:runstate></domain>
</node>
XML
head -c 4096 /dev/urandom > "$lab/fence_xvm.key"
chmod 600 "$lab/fence_xvm.key"
cat > "$lab/fence_virt.conf" <<CONF
fence_virtd {
	listener = "multicast";
	backend = "libvirt";
}

listeners {
	multicast {
		key_file = "$lab/fence_xvm.key";
		interface = "br0";
	}
}

backends {
	libvirt {
		uri = "test://$lab/host.xml";
	}
}
CONF

ip netns exec "$host" "$routerd" -F -f "$lab/fence_virt.conf" > "$lab/fence-routerd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do grep -q "listening" "$lab/fence-routerd.log" && break; sleep 0.1; done
grep -q "listening" "$lab/fence-routerd.log" || { cat "$lab/fence-routerd.log"; exit 1; }

xvm() {
    local guest=$1
    shift
    echo
    echo "[$guest]\$ fence_xvm $*"
    set +e
    ip netns exec "$guest" fence_xvm -k "$lab/fence_xvm.key" "$@"
    echo "(exit $?)"
    set -e
}

xvm frd-g1 -o list
xvm frd-g1 -o status -H node2
xvm frd-g1 -o off -H node2
xvm frd-g1 -o status -H node2
xvm frd-g2 -o on -H node2
xvm frd-g2 -o reboot -H node1
xvm frd-g2 -o status -H spare
xvm frd-g2 -o status -u -H 3b6f9a40-0000-4000-8000-000000000001
xvm frd-g1 -o list

echo
echo "fence-routerd's log:"
sed 's/^/  /' "$lab/fence-routerd.log"
