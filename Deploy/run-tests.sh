#!/usr/bin/env bash
# The test command: installs what the tests need, builds with warnings treated as failures,
# and runs every test (unit, libvirt, end to end with the real fence_xvm in network namespaces).
# Run as root: the end-to-end tests create namespaces. Under CI=true a test that cannot run fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says when it starts and how long the one before took: the run must stay under 30 minutes.
step() {
    local now=$SECONDS
    [[ -z ${step_name:-} ]] || echo "== $step_name: $((now - step_start)) s" >&2
    step_name=$1 step_start=$now
    [[ -z $step_name ]] || echo "== $step_name (at $((now / 60)) min $((now % 60)) s)" >&2
}

step "installing the dependencies"
Deploy/install-deps.sh
source Deploy/lib/process.sh

# Everything a run makes lives in one directory (TMPDIR for the tests). The tests remove what
# they start; whatever a killed run left behind is swept: its processes (their command lines
# name the directory), its lab namespaces and the directory itself.
sweep() {
    local run=$1 prefix
    for prefix in "$run"/*/prefix; do
        [[ -f $prefix ]] || continue
        ip netns list | awk -v p="$(cat "$prefix")-" 'index($1, p) == 1 {print $1}' | xargs -r -n1 ip netns del
    done
    if pgrep -f -- "$run" >/dev/null; then
        pkill -TERM -f -- "$run" || true
        sleep 2
        pkill -KILL -f -- "$run" || true
    fi
    rm -rf "$run"
}
for run in /tmp/fr-run.*; do
    [[ -d $run ]] || continue
    running "$(cat "$run/owner" 2>/dev/null || echo 0)" || sweep "$run"
done
ip netns list 2>/dev/null | awk '/^frt/ {print $1}' | xargs -r -n1 ip netns del

run=$(mktemp -d /tmp/fr-run.XXXXXX)
echo $$ > "$run/owner"
export TMPDIR=$run
trap 'sweep "$run"' EXIT

log=$run/build.log
step "building (debug, with tests)"
if ! swift build --build-tests >"$log" 2>&1; then
    cat "$log"
    exit 1
fi
# Swift 6 language mode, complete strict concurrency: no warning in our own code is tolerated.
if grep -E "^$(pwd)/(Sources|Tests)/[^:]+:[0-9]+:[0-9]+: warning:" "$log"; then
    echo "the build has warnings in our code (above)" >&2
    exit 1
fi
# Every package of the graph at the version Deploy/build/dependencies.txt pins (it says why there).
source Deploy/build/release.sh
check_pinned_packages .build

# The install script as an operator runs it: a release build with the Swift runtime linked in,
# installed into a staging root, run from there, and removed again without a trace. Before the
# tests, which check the package made of it.
step "release build and install into a staging root"
stage=$run/install-root
if ! Deploy/install.sh --destdir "$stage" >"$run/install.log" 2>&1; then
    cat "$run/install.log"
    exit 1
fi
for program in fence-routerd fence-hostd fencectl; do
    if ldd "$stage/usr/sbin/$program" | grep -q libswiftCore; then
        echo "$program links the Swift runtime dynamically; --static-swift-stdlib did not apply" >&2
        exit 1
    fi
done
# No program links Foundation or ICU (82 MB of fencectl when it did), and fencectl is no larger
# than the larger daemon (35 MB against 25 while swift-argument-parser brought FoundationEssentials).
for program in fence-routerd fence-hostd fencectl; do
    symbols=$(nm "$stage/usr/sbin/$program")
    if [[ $symbols == *'$s10Foundation'* || $symbols == *'$s20FoundationEssentials'* || $symbols == *icudt* ]]; then
        echo "$program links Foundation or ICU" >&2
        exit 1
    fi
done
sizes=$(stat -c '%s %n' "$stage"/usr/sbin/{fence-routerd,fence-hostd,fencectl})
echo "installed sizes (bytes):" $sizes
largest=$(stat -c %s "$stage"/usr/sbin/fence-{routerd,hostd} | sort -n | tail -1)
if (($(stat -c %s "$stage/usr/sbin/fencectl") > largest)); then
    echo "fencectl is larger than the larger daemon ($largest bytes)" >&2
    exit 1
fi
"$stage/usr/sbin/fence-routerd" -h >/dev/null
"$stage/usr/sbin/fencectl" config check --skip-files "$stage/usr/share/doc/fence-router/examples/fence_virt.conf.multi-host" >/dev/null
Deploy/install.sh --uninstall --destdir "$stage"
if [[ -n $(find "$stage" -type f) ]]; then
    echo "install.sh --uninstall left files behind:" >&2
    find "$stage" -type f >&2
    exit 1
fi
echo "install and uninstall: ok"

# The Debian package of the same binaries. The package test (Tests/DeploymentTests/PackageTests.swift)
# checks it, lintian included; the boot check installs it.
step "the Debian package"
release=$(release_build .build/install)
deb=$(Deploy/package/deb.sh --prebuilt "$release" --output "$run/package")
echo "package: $deb"

# One broker for the tests that share it, stopped whatever happens.
broker=$(mktemp -d "$run/fr-broker-shared.XXXXXX")
trap 'Deploy/broker/rabbitmq.sh stop "$broker" >/dev/null 2>&1; sweep "$run"' EXIT
# Its port: the first free one from 20000 (the tests' own daemons and brokers take theirs elsewhere,
# see Ports in Tests/TestSupport), with its TLS, epmd and distribution ports (P+1, P+10000, P+5000).
port=20000
# (The match is awk's own: grep -q leaving early would break the pipe, and pipefail would then read a busy port as free.)
while ss -Htan | awk -v ports=":$port:$((port + 1)):$((port + 10000)):$((port + 5000)):" \
        '{n = split($4, part, ":"); if (index(ports, ":" part[n] ":")) busy = 1} END {exit !busy}'; do
    port=$((port + 2))
    ((port < 21000)) || { echo "no free port for the test broker in 20000-20999" >&2; exit 1; }
done
Deploy/broker/rabbitmq.sh start "$broker" "$port"

step "the tests"
FENCE_ROUTER_TEST_BROKER=$broker FENCE_ROUTER_TEST_PACKAGE=$deb swift test --skip-build

# Side by side, to keep the run under 30 minutes (each takes about two): the decoders of untrusted
# input under libFuzzer, 30 s each (Fuzz/run.sh; 10 million inputs by hand), and the unit under a
# real systemd: the package installed with apt-get in a minimal Debian booted with systemd-nspawn,
# then purged. Each one's output follows when both are done.
step "libFuzzer, and fence-routerd.service under systemd (systemd-nspawn, the package installed with apt)"
Fuzz/run.sh --seconds 30 >"$run/fuzz.log" 2>&1 &
fuzz=$!
Deploy/systemd/boot-check.sh "$run/boot-check" "$deb" >"$run/boot-check.log" 2>&1 &
boot=$!
failed=0
wait "$fuzz" || failed=1
cat "$run/fuzz.log"
wait "$boot" || failed=1
cat "$run/boot-check.log"
((failed == 0)) || { echo "libFuzzer or the boot check failed (above)" >&2; exit 1; }
step ""
