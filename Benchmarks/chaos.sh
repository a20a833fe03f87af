#!/usr/bin/env bash
# Randomised faults against routed fencing, long (Deploy/lab/chaos.py): the real fence_xvm, the
# multi-host lab, agents, routers and the broker killed, frozen and cut off, libvirtd restarted
# with autostart, migrations; every answer judged by every host's libvirtd. Prints false
# successes, failures, timeouts and the time until service came back after each fault.
# Run as root. Options: --ops N (10000), --seed S (random, printed), --labs L (1: L labs side by
# side, each with N/L requests and its own seed S, S+1, …, their tables added up), --minutes M
# (each lab stops after M minutes), and chaos.py's others.
set -euo pipefail
cd "$(dirname "$0")/.."
Deploy/install-deps.sh
source Deploy/build/release.sh
bin=$(release_build .build-static fence-routerd fence-hostd fencectl)

ops=10000 labs=1 seed="" rest=()
while (($#)); do
    case $1 in
        --ops) ops=$2; shift 2 ;;
        --labs) labs=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        *) rest+=("$1"); shift ;;
    esac
done
if ((labs == 1)); then
    exec python3 Deploy/lab/chaos.py --bin "$bin" --ops "$ops" ${seed:+--seed "$seed"} "${rest[@]}"
fi
seed=${seed:-$((RANDOM * 32768 + RANDOM))}
work=$(mktemp -d /tmp/fence-router-chaos.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait; rm -rf "$work"' EXIT
for ((i = 0; i < labs; i++)); do
    python3 Deploy/lab/chaos.py --bin "$bin" --ops $((ops / labs)) --seed $((seed + i)) --quiet --json "$work/lab$i.json" "${rest[@]}" \
        > "$work/lab$i.log" 2>&1 &
    pids+=($!)
done
echo "chaos: $labs labs side by side, seeds $seed…$((seed + labs - 1)), $((ops / labs)) requests each" >&2
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
pids=()
for ((i = 0; i < labs; i++)); do
    grep -q "^false successes: 0$" "$work/lab$i.log" || { echo "--- lab $i:"; cat "$work/lab$i.log"; }
done
python3 Deploy/lab/chaos.py --merge "$work"/lab*.json || status=1
exit $status
