#!/usr/bin/env bash
# Runs fence-routerd.service under a real systemd: a minimal Debian 12 booted with systemd-nspawn
# in a network namespace of its own (loopback only), the project installed by Deploy/install.sh.
# Checks that the sandboxed unit starts (Type=notify), serves a request, logs to the journal at
# each line's priority, reloads, is restarted by its watchdog when the daemon hangs, and stops
# cleanly. Run as root:
#
#   Deploy/systemd/boot-check.sh WORKDIR BINDIR     BINDIR: static release binaries (install.sh's build)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:?usage: boot-check.sh WORKDIR BINDIR}
bin=${2:?usage: boot-check.sh WORKDIR BINDIR}
root=$work/rootfs
for tool in debootstrap:debootstrap systemd-nspawn:systemd-container nsenter:util-linux; do
    command -v "${tool%%:*}" >/dev/null || { echo "boot-check: ${tool%%:*} is missing: apt-get install ${tool#*:}" >&2; exit 1; }
done

fail() {
    echo "boot-check: $*" >&2
    [[ -n ${init:-} ]] && nsenter -t "$init" -a journalctl -u fence-routerd --no-pager >&2 || true
    exit 1
}

mkdir -p "$work"
echo "boot-check: a minimal Debian 12 with systemd in $root..."
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,libvirt0,libqpid-proton11,libssl3,procps \
    bookworm "$root" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; fail "debootstrap failed"; }
"$here/Deploy/install.sh" --prebuilt "$bin" --destdir "$root" >/dev/null

# One host, the libvirt backend on libvirt's in-process test driver, the tcp listener on loopback.
mkdir -p "$root/etc/cluster" "$root/etc/systemd/system/multi-user.target.wants"
(umask 077 && head -c 4096 /dev/urandom >"$root/etc/cluster/fence_xvm.key")
# comment_for_the_journal: an unknown key, for a warning the journal must file as one.
cat >"$root/etc/fence_virt.conf" <<'CONF'
fence_virtd {
	listener = "tcp";
	backend = "libvirt";
	comment_for_the_journal = "x";
}

listeners {
	tcp {
		key_file = "/etc/cluster/fence_xvm.key";
		address = "127.0.0.1";
		port = "1229";
	}
}

backends {
	libvirt {
		uri = "test:///default";
	}
}
CONF
ln -sf /usr/lib/systemd/system/fence-routerd.service "$root/etc/systemd/system/multi-user.target.wants/fence-routerd.service"

# No machined on a host without systemd: --register=no. --private-network: only lo inside.
systemd-nspawn -D "$root" --boot --private-network --register=no --keep-unit --machine "frbc$$" >"$work/boot.log" 2>&1 &
nspawn=$!
cleanup() {
    kill "$nspawn" 2>/dev/null || true
    wait "$nspawn" 2>/dev/null || true
    rm -rf "$root"
}
trap cleanup EXIT

init=""
for _ in $(seq 300); do
    init=$(pgrep -P "$nspawn" | head -1 || true)
    [[ -n $init ]] && nsenter -t "$init" -a systemctl is-active --quiet fence-routerd 2>/dev/null && break
    sleep 0.2
done
[[ -n $init ]] || fail "the container did not boot: $(tail -5 "$work/boot.log")"
in_container() { nsenter -t "$init" -a "$@"; }
# Read whole, then searched: grep -q would leave its writer to die of SIGPIPE under pipefail.
journal_has() { [[ $(in_container journalctl -u fence-routerd --no-pager) == *"$1"* ]]; }
in_container systemctl is-active --quiet fence-routerd || fail "fence-routerd.service is not active"

expect() { # expect STATUS COMMAND...
    local want=$1 got=0
    shift
    in_container "$@" >/dev/null || got=$?
    ((got == want)) || fail "'$*' exited $got, expected $want"
}
expect 0 /usr/sbin/fencectl fence test --action status
expect 0 /usr/sbin/fencectl fence test --action off
expect 2 /usr/sbin/fencectl fence test --action status
metrics=$(in_container bash -c 'exec 3<>/dev/tcp/127.0.0.1/9231 && printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3')
[[ $metrics == *'fence_requests_total{op="off",outcome="success",reason=""} 1'* ]] || fail "the metrics endpoint did not count the off"
echo "boot-check: started as Type=notify in its sandbox, served status/off/status, counted them"
pid=$(in_container systemctl show fence-routerd -p MainPID --value)
[[ $(in_container awk '/^Max open files/ {print $4}' "/proc/$pid/limits") == 4096 ]] || fail "LimitNOFILE=4096 is not in force"
in_container test -s /var/lib/fence-router/seen-packets || fail "the journal of seen packets is not in the state directory"
echo "boot-check: LimitNOFILE in force; the seen packets kept in StateDirectory"

# The journal files each line at its own priority, with its timestamp and not ours.
warnings=$(in_container journalctl -u fence-routerd -p warning --no-pager -o cat)
[[ $warnings == *"comment_for_the_journal: unknown key"* ]] || fail "the configuration warning is not filed as a warning: $warnings"
[[ $warnings != *"request answered"* ]] || fail "info lines pass journalctl -p warning"
while IFS= read -r line; do
    if [[ $line == [0-9]* ]]; then fail "a journal line carries a timestamp of our own: $line"; fi
done <<<"$(in_container journalctl -u fence-routerd --no-pager -o cat)"
echo "boot-check: journalctl -p warning shows the warning and no info line; no timestamp of ours"

in_container systemctl reload fence-routerd
sleep 1
journal_has "configuration reloaded" || fail "systemctl reload did not reload"
echo "boot-check: systemctl reload re-read the configuration"

pid=$(in_container systemctl show fence-routerd -p MainPID --value)
in_container kill -STOP "$pid"
for _ in $(seq 60); do
    [[ $(in_container systemctl show fence-routerd -p NRestarts --value) == 1 ]] &&
        in_container systemctl is-active --quiet fence-routerd && break
    sleep 1
done
journal_has "Watchdog timeout" || fail "the watchdog did not fire on a hung daemon"
expect 0 /usr/sbin/fencectl fence test --action status
echo "boot-check: a hung daemon was killed by the watchdog and restarted, and serves again"

in_container systemctl stop fence-routerd
[[ $(in_container systemctl show fence-routerd -p Result --value) == success ]] || fail "the stop was not clean"
journal_has "[DaemonSupport] stopped" || fail "no graceful stop in the journal"
echo "boot-check: stopped cleanly"
