#!/usr/bin/env bash
# Runs the libFuzzer targets (Fuzz/Sources) and prints, for each, how many inputs it executed and
# how many crashes it found; exits 1 if any target crashed or did not run.
#
#   Fuzz/run.sh                      every target for 10 million inputs (the release check)
#   Fuzz/run.sh --runs N [TARGET…]   N inputs each
#   Fuzz/run.sh --seconds S [TARGET…] S seconds each (CI's smoke run: 60)
#
# Targets: packet (the datagram decoder, verification, history), conversation (the call-back and
# stream exchange), config (fence_virt.conf), bus (the MAC check, JSON, the schema). Each starts
# from the seeds in Fuzz/Corpus/TARGET, in a scratch copy; a crash's input is kept in
# Fuzz/crashes/ (replay it with `swift run fence-fuzz TARGET FILE`). Two targets run at a time.
set -euo pipefail
cd "$(dirname "$0")/.."

limit=(-runs=10000000)
targets=()
while (($#)); do
    case $1 in
        --runs) limit=(-runs="$2"); shift 2 ;;
        --seconds) limit=(-max_total_time="$2"); shift 2 ;;
        -h|--help) sed -n 2,12p "$0"; exit 0 ;;
        *) targets+=("$1"); shift ;;
    esac
done
((${#targets[@]})) || targets=(packet conversation config bus)

# libFuzzer's coverage instrumentation everywhere (-sanitize=fuzzer); lld, since gold fails on
# this link; FUZZING selects libFuzzer's driver instead of the input replayer.
echo "building the fuzz targets (release, -sanitize=fuzzer)..."
build=(swift build -c release --product fence-fuzz --scratch-path .build-fuzz
       -Xswiftc -sanitize=fuzzer -Xswiftc -DFUZZING -Xswiftc -use-ld=lld)
log=$(mktemp)
"${build[@]}" >"$log" 2>&1 || { cat "$log"; exit 1; }
binary=$("${build[@]}" --show-bin-path)/fence-fuzz
work=$(mktemp -d /tmp/fr-fuzz.XXXXXX)
trap 'rm -rf "$work" "$log"' EXIT
mkdir -p Fuzz/crashes

run() {
    local target=$1
    mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
    cp Fuzz/Corpus/"$target"/* "$work/$target/corpus/"
    local started=$SECONDS
    "$binary" "$target" "${limit[@]}" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$work/$target/artifacts/" "$work/$target/corpus" >"$work/$target/log" 2>&1 || true
    echo $((SECONDS - started)) >"$work/$target/seconds"
}

for ((i = 0; i < ${#targets[@]}; i += 2)); do
    run "${targets[i]}" &
    ((i + 1 < ${#targets[@]})) && run "${targets[i + 1]}" &
    wait
done

failed=0
printf '\n| target | inputs executed | seconds | inputs/s | corpus | crashes |\n|---|---:|---:|---:|---:|---:|\n'
for target in "${targets[@]}"; do
    executed=$(awk -F': ' '/stat::number_of_executed_units/ {print $2}' "$work/$target/log")
    seconds=$(cat "$work/$target/seconds")
    crashes=$(find "$work/$target/artifacts" -type f | wc -l)
    corpus=$(find "$work/$target/corpus" -type f | wc -l)
    printf '| %s | %s | %s | %s | %s | %s |\n' "$target" "${executed:-0}" "$seconds" \
        "$(( ${executed:-0} / (seconds > 0 ? seconds : 1) ))" "$corpus" "$crashes"
    if [[ -z $executed ]] || ((crashes > 0)); then
        failed=1
        cp "$work/$target/artifacts/"* Fuzz/crashes/ 2>/dev/null || true
        echo "--- $target ---" >&2
        tail -30 "$work/$target/log" >&2
    fi
done
exit $failed
