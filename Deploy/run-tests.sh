#!/usr/bin/env bash
# The test command: installs what the tests need, builds with warnings treated as failures,
# and runs every test (unit, libvirt, end to end with the real fence_xvm in network namespaces).
# Run as root: the end-to-end tests create namespaces. Under CI=true a test that cannot run fails.
set -euo pipefail
cd "$(dirname "$0")/.."

Deploy/install-deps.sh

# Namespaces and brokers left by a killed earlier run (the tests remove their own).
ip netns list 2>/dev/null | awk '/^frt/ {print $1}' | xargs -r -n1 ip netns del
for broker in "${TMPDIR:-/tmp}"/fr-broker-*; do
    [[ -d $broker ]] || continue
    Deploy/broker/rabbitmq.sh stop "$broker" >/dev/null 2>&1 || true
    rm -rf "$broker"
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "building (debug, with tests)..."
if ! swift build --build-tests >"$log" 2>&1; then
    cat "$log"
    exit 1
fi
# Swift 6 language mode, complete strict concurrency: no warning in our own code is tolerated.
if grep -E "^$(pwd)/(Sources|Tests)/[^:]+:[0-9]+:[0-9]+: warning:" "$log"; then
    echo "the build has warnings in our code (above)" >&2
    exit 1
fi

# One broker for the tests that share it, stopped whatever happens.
broker=$(mktemp -d "${TMPDIR:-/tmp}/fr-broker-shared.XXXXXX")
trap 'rm -f "$log"; Deploy/broker/rabbitmq.sh stop "$broker" >/dev/null 2>&1; rm -rf "$broker"' EXIT
port=$((20000 + RANDOM % 9000))
Deploy/broker/rabbitmq.sh start "$broker" "$port"

FENCE_ROUTER_TEST_BROKER=$broker swift test --skip-build
