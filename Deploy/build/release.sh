# Sourced by install.sh, run-tests.sh and the benchmarks: how the shipped programs are built, in
# one place. Release, with Swift's libraries linked statically, and every Swift function in a
# section of its own, the packages' too (only the command line reaches them): the release link
# (Package.swift, `releaseLinking`) then lays out together the functions the daemons run, and the
# ones the compiler leaves without a name (Deploy/build/text-layout.ld).
release_args=(-c release --static-swift-stdlib -Xswiftc -Xfrontend -Xswiftc -function-sections)

#   bin=$(release_build SCRATCH [PRODUCT...])   builds the products in scratch path SCRATCH;
#                                               prints where they are
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
    for product in "$@"; do
        swift build "${release_args[@]}" --scratch-path "$scratch" --product "$product" >/dev/null || return
    done
    swift build "${release_args[@]}" --scratch-path "$scratch" --show-bin-path
}
