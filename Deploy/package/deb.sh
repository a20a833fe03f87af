#!/usr/bin/env bash
# Builds the Debian package fence-router_<version>_<arch>.deb (only a Swift build uses the network):
#
#   Deploy/package/deb.sh [--prebuilt BINDIR] [--output DIR]
#
# The files are laid out by Deploy/install.sh (--destdir, --no-manifest: dpkg keeps the list), from
# its release build (static Swift runtime, scratch path .build/install) or from the binaries in
# BINDIR. The version is BuildInfo's, the architecture dpkg's; Depends is computed from the
# binaries by dpkg-shlibdeps. The package owns nothing under /etc (any file there would be a
# conffile) and never /etc/fence_virt.conf, so it installs beside Debian's fence-virtd: see the
# Debian package section of Docs/install.md. Written to DIR (default: the current directory).
# Needs dpkg-dev; not root.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
package=$repo/Deploy/package

prebuilt=
output=$PWD
while (($#)); do
    case $1 in
        --prebuilt) prebuilt=$(cd "$2" && pwd); shift 2 ;;
        --output) output=$2; shift 2 ;;
        -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "deb.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for tool in dpkg-deb:dpkg dpkg-shlibdeps:dpkg-dev dpkg-gencontrol:dpkg-dev readelf:binutils; do
    command -v "${tool%%:*}" >/dev/null || { echo "deb.sh: ${tool%%:*} is missing: apt-get install ${tool#*:}" >&2; exit 1; }
done
mkdir -p "$output"
output=$(cd "$output" && pwd)

version=$(sed -n 's/^ *public static let version = "\([^"]*\)".*/\1/p' "$repo/Sources/BuildInfo/BuildInfo.swift")
[[ $version =~ ^[0-9][0-9A-Za-z.+~]*$ ]] || { echo "deb.sh: no version found in Sources/BuildInfo/BuildInfo.swift" >&2; exit 1; }
arch=$(dpkg --print-architecture)
# The date of the changelog entry: the commit's (dpkg-deb also dates the control members by it).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/stage
options=(--destdir "$stage" --no-manifest)
[[ -z $prebuilt ]] || options+=(--prebuilt "$prebuilt")
if ! "$repo/Deploy/install.sh" "${options[@]}" >"$work/install.log" 2>&1; then
    cat "$work/install.log" >&2
    exit 1
fi
# No package provides the toolchain's Swift runtime: a binary linking it dynamically (a debug build)
# would not run where the package is installed.
for program in "$stage"/usr/sbin/*; do
    if [[ $(readelf -d "$program") == *"[libswiftCore.so]"* ]]; then
        echo "deb.sh: ${program##*/} links the Swift runtime dynamically (a debug build?): the package takes install.sh's release build (--static-swift-stdlib)" >&2
        exit 1
    fi
done

# What Debian asks of every package beside install.sh's files: the copyright and the changelog
# (a native package's, named changelog.gz); and lintian's overrides, where a tag is wrong for us.
doc=$stage/usr/share/doc/fence-router
install -D -m 0644 "$package/debian/copyright" "$doc/copyright"
mkdir -p "$work/debian"
maintainer=$(sed -n 's/^Maintainer: //p' "$package/debian/control")
cat >"$work/debian/changelog" <<CHANGELOG
fence-router ($version) unstable; urgency=medium

  * fence-router $version, built from its sources; CHANGELOG.md there says what
    each version brought.

 -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")
CHANGELOG
gzip -9n <"$work/debian/changelog" >"$doc/changelog.gz"
if [[ -f $package/debian/lintian-overrides ]]; then
    install -D -m 0644 "$package/debian/lintian-overrides" "$stage/usr/share/lintian/overrides/fence-router"
fi

# The maintainer scripts; every file under /etc a conffile, as debhelper would list it.
install -d -m 0755 "$stage/DEBIAN"
for script in preinst postinst prerm postrm; do
    install -m 0755 "$package/debian/$script" "$stage/DEBIAN/$script"
done
if [[ -d $stage/etc ]]; then
    (cd "$stage" && find etc -type f | sort | sed 's|^|/|') >"$stage/DEBIAN/conffiles"
    chmod 0644 "$stage/DEBIAN/conffiles"
fi
[[ ! -e $stage/etc/fence_virt.conf ]] || { echo "deb.sh: the package must not own /etc/fence_virt.conf (fence-virtd's conffile)" >&2; exit 1; }

# Depends from the libraries the binaries link (dpkg-shlibdeps reads debian/control in its working
# directory), then the control file with Installed-Size, Version and Architecture filled in.
cp "$package/debian/control" "$work/debian/control"
(
    cd "$work"
    dpkg-shlibdeps -Tdebian/substvars "$stage"/usr/sbin/*
    # Packed relative relocations (Package.swift) need glibc 2.36 to load: a symbol-less version
    # dependency (GLIBC_ABI_DT_RELR) that dpkg-shlibdeps does not count.
    libc=$(sed -nE 's/.*libc6 \(>= ([^)]+)\).*/\1/p' debian/substvars)
    if [[ $(readelf -d "$stage"/usr/sbin/*) == *'(RELR)'* ]] && dpkg --compare-versions "$libc" lt 2.36; then
        sed -i "s/libc6 (>= $libc)/libc6 (>= 2.36)/" debian/substvars
    fi
    dpkg-gencontrol -pfence-router -ldebian/changelog -Tdebian/substvars -Pstage -fdebian/files
)
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums" "$stage/DEBIAN/control"

# Directories 0755 whatever the umask; owned by root in the archive.
find "$stage" -type d -exec chmod 0755 {} +
deb=$output/fence-router_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
