# Sourced by the benchmark scripts: the static release build they measure, in its own scratch path.
#   bin=$(release_build PRODUCT...)   builds the products; prints where they are
release_build() {
    local build=(swift build -c release --static-swift-stdlib --scratch-path .build-static) product
    echo "building $* (release)..." >&2
    for product in "$@"; do "${build[@]}" --product "$product" >/dev/null || return; done
    "${build[@]}" --show-bin-path
}
