# Sourced by install.sh, run-tests.sh and the benchmarks: how the shipped programs are built, in
# one place, from the packages dependencies.txt pins. Release, with Swift's libraries linked
# statically, and every Swift function in a section of its own, the packages' too (only the
# command line reaches them): the release link (Package.swift, `releaseLinking`) then lays out
# together the functions the daemons run, and the ones the compiler leaves without a name
# (Deploy/build/text-layout.ld).
release_args=(-c release --static-swift-stdlib -Xswiftc -Xfrontend -Xswiftc -function-sections)

#   check_pinned_packages SCRATCH   fails, naming the package, when the packages resolved in
#                                   scratch path SCRATCH are not those dependencies.txt pins
#                                   (beside this file; it says why the list is there)
check_pinned_packages() {
    local resolved
    resolved=$(swift package --scratch-path "$1" show-dependencies --format json | python3 -c '
import json, sys
versions = {}
def walk(package):
    for dependency in package.get("dependencies", []):
        versions[dependency["identity"]] = dependency["version"]
        walk(dependency)
walk(json.load(sys.stdin))
print("\n".join(f"{name} {version}" for name, version in sorted(versions.items())))') || return
    if ! diff <(grep -v '^#' "${BASH_SOURCE[0]%/*}/dependencies.txt") <(echo "$resolved") >&2; then
        echo "the packages resolved (>) are not those Deploy/build/dependencies.txt pins (<)" >&2
        return 1
    fi
}

#   bin=$(release_build SCRATCH [PRODUCT...])   builds the products in scratch path SCRATCH
#                                               from the pinned packages; prints where they are
release_build() {
    local scratch=$1 product
    shift
    # The compiler keeps an object whose code did not change, whatever the flags that made it:
    # a scratch path built with other flags starts again, or it would link some objects without
    # a section per function.
    if [[ -d $scratch && $(cat "$scratch/release-args" 2>/dev/null) != "${release_args[*]}" ]]; then
        echo "release build: $scratch was built with other flags; its release objects are removed" >&2
        rm -rf "$scratch"/*/release
    fi
    mkdir -p "$scratch" && printf '%s\n' "${release_args[*]}" >"$scratch/release-args" || return
    (($#)) && echo "building $* (release)..." >&2
    swift package --scratch-path "$scratch" resolve >/dev/null && check_pinned_packages "$scratch" || return
    for product in "$@"; do
        swift build "${release_args[@]}" --scratch-path "$scratch" --product "$product" >/dev/null || return
    done
    swift build "${release_args[@]}" --scratch-path "$scratch" --show-bin-path
}
