#!/usr/bin/env bash
# Runs fence-routerd.service under a real systemd: a minimal Debian 12 booted with systemd-nspawn
# in a network namespace of its own (loopback only), the project installed from its Debian package
# with apt-get inside it. Checks that the package enables and starts nothing; that the sandboxed
# unit starts (Type=notify), serves a request, logs to the journal at each line's priority,
# reloads, is restarted by its watchdog when the daemon hangs, and stops cleanly; that an upgrade
# restarts it; that apt-get purge stops it and leaves no file of the package or of its unit
# behind, and the operator's configuration and key in place. Run as root:
#
#   Deploy/systemd/boot-check.sh WORKDIR DEB     DEB: fence-router_<version>_<arch>.deb (Deploy/package/deb.sh)
set -euo pipefail
work=${1:?usage: boot-check.sh WORKDIR DEB}
deb=${2:?usage: boot-check.sh WORKDIR DEB}
[[ -f $deb ]] || { echo "boot-check: $deb is missing (Deploy/package/deb.sh builds it)" >&2; exit 1; }
root=$work/rootfs
for tool in debootstrap:debootstrap systemd-nspawn:systemd-container nsenter:util-linux dpkg-deb:dpkg; do
    command -v "${tool%%:*}" >/dev/null || { echo "boot-check: ${tool%%:*} is missing: apt-get install ${tool#*:}" >&2; exit 1; }
done

fail() {
    echo "boot-check: $*" >&2
    [[ -n ${init:-} ]] && nsenter -t "$init" -a journalctl -u fence-routerd --no-pager >&2 || true
    exit 1
}

mkdir -p "$work"
# The container has no network: debootstrap brings every package the .deb depends on, so that apt
# installs it offline (the first of alternatives; versions are Debian 12's).
depends=$(dpkg-deb -f "$deb" Depends | sed -e 's/([^)]*)//g' -e 's/|[^,]*//g' -e 's/[[:space:]]//g')
echo "boot-check: a minimal Debian 12 with systemd in $root..."
debootstrap --variant=minbase --include="systemd,systemd-sysv,dbus,procps,$depends" \
    bookworm "$root" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; fail "debootstrap failed"; }
package=/$(basename "$deb")
install -m 0644 "$deb" "$root$package"

# One host, the libvirt backend on libvirt's in-process test driver, the tcp listener on loopback.
mkdir -p "$root/etc/cluster"
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
state=""
for _ in $(seq 300); do
    init=$(pgrep -P "$nspawn" | head -1 || true)
    [[ -n $init ]] && state=$(nsenter -t "$init" -a systemctl is-system-running 2>/dev/null || true)
    [[ $state == running || $state == degraded ]] && break
    sleep 0.2
done
[[ $state == running || $state == degraded ]] || fail "the container did not boot ($state): $(tail -5 "$work/boot.log")"
in_container() { nsenter -t "$init" -a "$@"; }
# Read whole, then searched: grep -q would leave its writer to die of SIGPIPE under pipefail.
journal_has() { [[ $(in_container journalctl -u fence-routerd --no-pager) == *"$1"* ]]; }
# Every path of the root, to find afterwards what the package or its unit left (the container's
# own mounts are not seen from here: this is the disk).
paths() { (cd "$root" && find . -xdev | LC_ALL=C sort); }
paths >"$work/before"

# The package as an operator installs it: systemd told of the units, nothing enabled or started.
if ! in_container env DEBIAN_FRONTEND=noninteractive apt-get install -y "$package" >"$work/apt-install.log" 2>&1; then
    cat "$work/apt-install.log" >&2
    fail "apt-get install $package failed"
fi
for unit in fence-routerd fence-hostd; do
    [[ $(in_container systemctl is-enabled "$unit" || true) == disabled ]] || fail "installing the package enabled $unit"
    [[ $(in_container systemctl is-active "$unit" || true) == inactive ]] || fail "installing the package started $unit"
done
echo "boot-check: apt-get installed $(basename "$deb") offline; it enabled and started nothing"
in_container systemctl enable --now fence-routerd 2>/dev/null || fail "systemctl enable --now fence-routerd failed"
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
# The info lines first (journald may file them a moment after the requests): only once they are
# in does their absence under -p warning prove anything.
for _ in $(seq 100); do
    everything=$(in_container journalctl -u fence-routerd --no-pager -o cat)
    [[ $everything == *"request answered"* ]] && break
    sleep 0.1
done
[[ $everything == *"request answered"* ]] || fail "the info lines are not in the journal at all"
warnings=$(in_container journalctl -u fence-routerd -p warning --no-pager -o cat)
[[ $warnings == *"comment_for_the_journal: unknown key"* ]] || fail "the configuration warning is not filed as a warning: $warnings"
[[ $warnings != *"request answered"* ]] || fail "info lines pass journalctl -p warning"
while IFS= read -r line; do
    if [[ $line == [0-9]* ]]; then fail "a journal line carries a timestamp of our own: $line"; fi
done <<<"$everything"
echo "boot-check: journalctl -p warning shows the warning and no info line; no timestamp of ours"

in_container systemctl reload fence-routerd
for _ in $(seq 100); do
    journal_has "configuration reloaded" && break
    sleep 0.1
done
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

# An upgrade (here the same version again) restarts the daemon that runs, and starts no other.
in_container systemctl start fence-routerd
pid=$(in_container systemctl show fence-routerd -p MainPID --value)
if ! in_container env DEBIAN_FRONTEND=noninteractive apt-get install -y --reinstall "$package" >"$work/apt-reinstall.log" 2>&1; then
    cat "$work/apt-reinstall.log" >&2
    fail "apt-get install --reinstall $package failed"
fi
in_container systemctl is-active --quiet fence-routerd || fail "fence-routerd is not running after the upgrade"
[[ $(in_container systemctl show fence-routerd -p MainPID --value) != "$pid" ]] || fail "the upgrade did not restart fence-routerd"
[[ $(in_container systemctl is-enabled fence-routerd || true) == enabled ]] || fail "the upgrade disabled fence-routerd"
[[ $(in_container systemctl is-active fence-hostd || true) == inactive ]] || fail "the upgrade started fence-hostd"
expect 0 /usr/sbin/fencectl fence test --action status
echo "boot-check: an upgrade restarted the running daemon, kept it enabled, and started nothing else"

# Purge: the running daemon stopped by the package, then nothing of it left.
in_container dpkg -L fence-router >"$work/owned"
if ! in_container env DEBIAN_FRONTEND=noninteractive apt-get purge -y fence-router >"$work/apt-purge.log" 2>&1; then
    cat "$work/apt-purge.log" >&2
    fail "apt-get purge fence-router failed"
fi
! in_container pgrep -x fence-routerd >/dev/null || fail "fence-routerd still runs after the purge"
[[ $(in_container systemctl show fence-routerd -p LoadState --value) == not-found ]] || fail "systemd still knows fence-routerd.service after the purge"
! in_container dpkg-query -W fence-router >/dev/null 2>&1 || fail "dpkg still lists fence-router after the purge"
rm -f "$root$package"
left=()
while IFS= read -r path; do
    # A directory stays when it was there before (dpkg shares it with the system).
    [[ $path == /. ]] && continue
    if [[ -e $root$path || -L $root$path ]] && ! grep -qxF ".$path" "$work/before"; then left+=("$path"); fi
done <"$work/owned"
# Whatever else appeared since before the install: any path that names fence, and any outside the
# logs, caches and bookkeeping of apt, dpkg, systemd and the journal.
while IFS= read -r path; do
    left+=("${path#.}")
done < <(paths | comm -13 "$work/before" - |
    awk '/fence/ || !/^\.\/(var\/log|var\/cache|var\/lib\/apt|var\/lib\/dpkg|var\/lib\/systemd|tmp|var\/tmp)(\/|$)/')
((${#left[@]} == 0)) || fail "apt-get purge left: ${left[*]}"
[[ ! -e $root/var/lib/fence-router ]] || fail "the state directory /var/lib/fence-router is left"
[[ -f $root/etc/fence_virt.conf && -f $root/etc/cluster/fence_xvm.key ]] || fail "the purge removed the operator's configuration or key"
echo "boot-check: apt-get purge stopped the daemon and left nothing of the package ($(wc -l <"$work/owned") paths) nor its state directory; the configuration and key stay"
