#!/usr/bin/env bash
# Installs, from Debian's packages, everything fence-router needs to build, test, demo and
# benchmark; with --build-only, only what a production host needs to build it (Deploy/install.sh).
# Safe to run again: only missing packages are installed.
set -euo pipefail

packages=(
    libvirt-dev            # the libvirt C library and headers (its test driver simulates hypervisors)
    libqpid-proton11-dev   # the AMQP 1.0 C library (Qpid Proton)
    libssl-dev
)
if [[ ${1:-} != --build-only ]]; then
    packages+=(
        libvirt-daemon     # libvirtd, for simulated hosts behind a unix socket
        libvirt-clients    # virsh, to read the true domain state in tests
        rabbitmq-server    # the AMQP 1.0 broker of the bus (started by Deploy/broker/rabbitmq.sh, not systemd)
        fence-virt         # the real fence_xvm / fence_virt clients
        fence-virtd        # the reference fence_virtd, for the side-by-side benchmark and the configurator test
        iproute2           # ip netns, veth, bridges for the labs
        tcpdump            # the benchmark times the daemons on the wire (capture on its lab bridge)
        python3            # one test sends a hand-made datagram
        gcc                # builds a test's clock shim, which makes the real fence_xvm draw one seqno twice
        openssl            # identity keys made as an operator may make them (openssl genpkey)
        systemd            # systemd-analyze verifies the units
        systemd-container  # systemd-nspawn boots a minimal Debian to run the units under a real systemd
        debootstrap        # which it makes
        dpkg-dev           # dpkg-shlibdeps and dpkg-gencontrol, for the Debian package (Deploy/package/deb.sh)
        lintian            # checks that package
        man-db             # man -l renders the installed man pages, warnings checked
        zsh                # parses the zsh completions fencectl writes (zsh -n)
        corosync           # a real Pacemaker cluster of lab guests (Deploy/lab/pacemaker.sh),
        pacemaker          #   each node in namespaces of its own; not as services of this machine
        pacemaker-cli-utils  # stonith_admin, crm_mon, cibadmin inside a node
        pcs                # the stonith device created as an operator creates it
    )
fi

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The labs start their own corosync and pacemaker in namespaces; Debian would start the
    # machine's at installation, and pcsd on every interface. Debian's policy-rc.d switch keeps
    # those three stopped while installing (and only them: every other service is handled as
    # usual), and is removed whatever happens.
    denied=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        printf '#!/bin/sh\ncase "$1" in corosync*|pacemaker*|pcsd*) exit 101 ;; esac\nexit 104\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        denied=1
    fi
    status=0
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
    [[ -z $denied ]] || { rm -f /usr/sbin/policy-rc.d; trap - EXIT; }
    ((status == 0)) || exit "$status"
    # Nor do they run now (a policy-rc.d of the machine's may have let them start) or at the next boot.
    if [[ " ${missing[*]} " =~ \ (corosync|pacemaker|pcs)\  ]] && command -v systemctl >/dev/null; then
        now=()
        [[ ! -d /run/systemd/system ]] || now=(--now)
        systemctl disable "${now[@]}" --quiet corosync.service pacemaker.service pcsd.service pcsd-ruby.service 2>/dev/null || true
    fi
fi

command -v swift >/dev/null || {
    echo "swift is not on PATH: install a Swift 6.2 or newer toolchain (https://swift.org/install)" >&2
    exit 1
}
