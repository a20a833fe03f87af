#!/usr/bin/env bash
# The bus benchmarks of fence-hostd: a broker (Deploy/broker/rabbitmq.sh), a private libvirtd with
# the test driver (a simulated hypervisor host), a release fence-hostd on it, and
# fence-bus-bench playing the router. Prints a table. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
Deploy/install-deps.sh
source Deploy/build/release.sh
bin=$(release_build .build-static fence-hostd fencectl fence-bus-bench)

work=$(mktemp -d /tmp/fence-router-busbench.XXXXXX)
agent_pid=""
libvirtd_pid=""
cleanup() {
    [[ -n $agent_pid ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
    [[ -n $libvirtd_pid ]] && kill "$libvirtd_pid" 2>/dev/null && wait "$libvirtd_pid" 2>/dev/null || true
    Deploy/broker/rabbitmq.sh stop "$work/broker" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$((20000 + RANDOM % 9000))
Deploy/broker/rabbitmq.sh start "$work/broker" "$port" >&2
url="amqp://fence:$(cat "$work/broker/password")@127.0.0.1:$port"

# A simulated hypervisor host: libvirtd serving only the test driver on a private socket.
mkdir -p "$work/libvirtd/run" "$work/libvirtd/nodrv"
cat > "$work/libvirtd/libvirtd.conf" <<CONF
unix_sock_dir = "$work/libvirtd/run"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
CONF
LIBVIRT_DRIVER_DIR=$work/libvirtd/nodrv libvirtd --config "$work/libvirtd/libvirtd.conf" \
    --pid-file "$work/libvirtd/pid" > "$work/libvirtd/log" 2>&1 &
libvirtd_pid=$!
uri="test+unix:///default?socket=$work/libvirtd/run/libvirt-sock"
for _ in $(seq 100); do virsh -c "$uri" uri >/dev/null 2>&1 && break; sleep 0.1; done

(umask 077 && head -c 64 /dev/urandom > "$work/bus.key")
"$bin/fencectl" keygen --host bench-host "$work/host.key" --trust-directory "$work/trust" >/dev/null
"$bin/fencectl" keygen --router bench "$work/router.key" --trust-directory "$work/trust" >/dev/null
cat > "$work/fence_virt.conf" <<CONF
backends {
	amqp {
		url = "$url";
		bus_key_file = "$work/bus.key";
		identity_key_file = "$work/host.key";
		trust_directory = "$work/trust";
		host_id = "bench-host";
	}
	libvirt {
		uri = "$uri";
	}
}
CONF
"$bin/fence-hostd" -F -f "$work/fence_virt.conf" > "$work/fence-hostd.log" 2>&1 &
agent_pid=$!
for _ in $(seq 200); do grep -q "ready" "$work/fence-hostd.log" && break; sleep 0.05; done
grep -q "ready" "$work/fence-hostd.log" || { cat "$work/fence-hostd.log" >&2; exit 1; }

echo
echo "| measure (fence-hostd through RabbitMQ on loopback) | value | target |"
echo "|---|---:|---|"
"$bin/fence-bus-bench" url="$url" bus-key="$work/bus.key" identity="$work/router.key" trust="$work/trust" libvirt="$uri" host=bench-host agent-pid="$agent_pid" "runs=${RUNS:-200}"

# For scale: a bare libvirt client on the same libvirtd (virsh waiting for events) carries the same
# shared libraries (gnutls, glib, libxml2, ICU, …) as any program that links libvirt.
virsh -c "$uri" event --all --loop > /dev/null 2>&1 &
virsh_pid=$!
sleep 1
awk -v pid="$virsh_pid" '/^VmRSS:/ { printf "| for scale: virsh as a libvirt client, resident memory (MB) | %.2f | |\n", $2 / 1024 }' "/proc/$virsh_pid/status"
kill "$virsh_pid"
