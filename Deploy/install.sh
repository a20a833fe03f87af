#!/usr/bin/env bash
# Installs fence-router on this machine (or under a staging root), or removes exactly what it installed.
#
#   sudo Deploy/install.sh                     release build (static Swift runtime), then install
#   sudo Deploy/install.sh --uninstall         remove every file the install wrote
#   Deploy/install.sh --destdir DIR            install under DIR instead of / (DESTDIR= works too)
#   Deploy/install.sh --prebuilt BINDIR        install the binaries found in BINDIR, without building
#   Deploy/install.sh --no-manifest ...        write no list of files (Deploy/package/deb.sh: dpkg keeps it)
#
# Installed: fence-routerd, fence-hostd and fencectl in /usr/sbin; their man pages (made from their
# help); the systemd units; the firewalld service; the example configurations. The list of files
# is kept in /usr/share/doc/fence-router/installed-files, which --uninstall reads. Configuration
# files and keys (/etc/fence_virt.conf, the key files) are never written nor removed here:
# `fencectl configure` and `fencectl keygen` make them. Where the fence-router Debian package is
# installed, this script neither installs nor removes anything: apt owns those files.
set -euo pipefail
cd "$(dirname "$0")/.."

destdir=${DESTDIR:-}
prebuilt=
uninstall=false
manifest_wanted=true
while (($#)); do
    case $1 in
        --destdir) destdir=$2; shift 2 ;;
        --prebuilt) prebuilt=$2; shift 2 ;;
        --uninstall) uninstall=true; shift ;;
        --no-manifest) manifest_wanted=false; shift ;;
        -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [[ -n $destdir ]]; then
    mkdir -p "$destdir"
    destdir=$(cd "$destdir" && pwd)
fi

programs=(fence-routerd fence-hostd fencectl)
sbin=/usr/sbin
man8=/usr/share/man/man8
man5=/usr/share/man/man5
bashcompletions=/usr/share/bash-completion/completions
zshcompletions=/usr/share/zsh/vendor-completions
units=/usr/lib/systemd/system
firewalld=/usr/lib/firewalld/services
doc=/usr/share/doc/fence-router
manifest=$doc/installed-files

# The Debian package owns the same paths: dpkg alone may replace or remove them.
if command -v dpkg-query >/dev/null && [[ -d $destdir/var/lib/dpkg ]]; then
    status=$(dpkg-query --admindir="$destdir/var/lib/dpkg" -W -f='${db:Status-Status}' fence-router 2>/dev/null || true)
    if [[ -n $status && $status != not-installed ]]; then
        # Removed but not purged counts too: a purge later would take this copy's state directory
        # and enable links with it.
        echo "install.sh: the fence-router package is installed in ${destdir:-/} ($status): use apt (apt-get purge fence-router first) instead of this script" >&2
        exit 1
    fi
fi

if $uninstall; then
    if [[ ! -f $destdir$manifest ]]; then
        echo "install.sh: nothing to remove: $destdir$manifest is missing (fence-router is not installed there)" >&2
        exit 1
    fi
    while IFS= read -r file; do
        rm -f -- "$destdir$file"
    done <"$destdir$manifest"
    rm -f -- "$destdir$manifest"
    rmdir -- "$destdir$doc/examples/systemd" "$destdir$doc/examples" "$destdir$doc" 2>/dev/null || true
    # The completion directories, where this install made them (left alone when others use them).
    rmdir -- "$destdir$bashcompletions" "$destdir${bashcompletions%/*}" "$destdir$zshcompletions" "$destdir${zshcompletions%/*}" 2>/dev/null || true
    echo "removed fence-router from ${destdir:-/} (configuration and keys left in place)"
    exit 0
fi

need() {
    command -v "$1" >/dev/null || { echo "install.sh: $1 is missing: $2" >&2; exit 1; }
}

if [[ -z $prebuilt ]]; then
    need swift "install a Swift 6 toolchain (swift.org), then the build dependencies with Deploy/install-deps.sh"
    # A scratch path of its own: the debug build and its tests stay untouched.
    source Deploy/build/release.sh
    prebuilt=$(release_build .build/install "${programs[@]}")
fi
for program in "${programs[@]}"; do
    [[ -x $prebuilt/$program ]] || { echo "install.sh: $prebuilt/$program is missing" >&2; exit 1; }
done

installed=()
put() { # put SOURCE TARGET MODE
    install -D -m "$3" "$1" "$destdir$2"
    installed+=("$2")
}

# A man page from the program's own help, so the two never disagree.
manpage() { # manpage PROGRAM SUMMARY HELP-TEXT
    local page
    page=$(mktemp)
    {
        printf '.TH %s 8 "%s" "fence-router" "System Administration"\n' "${1^^}" "$(date -u +%Y-%m-%d)"
        printf '.SH NAME\n%s \\- %s\n.SH DESCRIPTION\n.nf\n' "$1" "$2"
        # roff: backslashes escaped, a line starting with . or ' protected.
        sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/" <<<"$3"
        printf '.fi\n'
        # FILES, SIGNALS, EXIT STATUS and EXAMPLES, written for each program.
        cat "Deploy/man/$1.8.roff"
        printf '.SH SEE ALSO\n.BR fence-routerd (8),\n.BR fence-hostd (8),\n.BR fencectl (8),\n.BR fence-router.conf (5),\n.BR fence_xvm (8),\n.BR fence_virt.conf (5)\n'
    } | gzip -9n >"$page"
    put "$page" "$man8/$1.8.gz" 0644
    rm -f "$page"
}

for program in "${programs[@]}"; do
    put "$prebuilt/$program" "$sbin/$program" 0755
    # Debug sections go; the symbols stay, so a crash still has a readable backtrace.
    strip --strip-debug "$destdir$sbin/$program" 2>/dev/null || true
done

manpage fence-routerd "answers fence_xvm requests, on one host or routed to the host that runs the VM" \
    "$("$prebuilt/fence-routerd" -h)"
manpage fence-hostd "a hypervisor host's agent: its domains on the bus, fencing through libvirt" \
    "$("$prebuilt/fence-hostd" -h)"
help=$("$prebuilt/fencectl" --help)
for command in keygen "config check" configure inventory "host confirm-down" "host forget" fence; do
    # shellcheck disable=SC2086 # a command name may be two words
    text=$("$prebuilt/fencectl" $command --help)
    help+=$'\n\n'"fencectl $command"$'\n'"$text"
done
manpage fencectl "the operator's tool for fence-router" "$help"

put Deploy/systemd/fence-routerd.service "$units/fence-routerd.service" 0644
# Completions: fencectl's written from its own usages, the daemons' (fence_virtd's options) by hand.
for shell in bash zsh; do
    script=$(mktemp)
    "$prebuilt/fencectl" --generate-completion-script "$shell" >"$script"
    if [[ $shell == bash ]]; then put "$script" "$bashcompletions/fencectl" 0644; else put "$script" "$zshcompletions/_fencectl" 0644; fi
    rm -f "$script"
done
put Deploy/completions/fence-daemon.bash "$bashcompletions/fence-routerd" 0644
put Deploy/completions/fence-daemon.bash "$bashcompletions/fence-hostd" 0644
put Deploy/completions/_fence-daemon.zsh "$zshcompletions/_fence-daemon" 0644

# fence-router.conf(5): Docs/configuration.md, the one text of the keys, set in roff.
page=$(mktemp)
{
    printf '.TH FENCE-ROUTER.CONF 5 "%s" "fence-router" "File Formats"\n' "$(date -u +%Y-%m-%d)"
    printf '.SH NAME\nfence-router.conf \\- the keys fence-routerd and fence-hostd read in /etc/fence_virt.conf\n.SH DESCRIPTION\n'
    awk -f Deploy/man/markdown-to-roff.awk Docs/configuration.md
    printf '.SH SEE ALSO\n.BR fence_virt.conf (5),\n.BR fence-routerd (8),\n.BR fence-hostd (8),\n.BR fencectl (8)\n'
} | gzip -9n >"$page"
put "$page" "$man5/fence-router.conf.5.gz" 0644
rm -f "$page"

put Deploy/systemd/fence-hostd.service "$units/fence-hostd.service" 0644
put Deploy/firewalld/fence-router.xml "$firewalld/fence-router.xml" 0644
for example in Deploy/examples/fence_virt.conf.*; do
    put "$example" "$doc/examples/$(basename "$example")" 0644
done
put Deploy/examples/systemd/protect-home-read-only.conf "$doc/examples/systemd/protect-home-read-only.conf" 0644

if $manifest_wanted; then
    mkdir -p "$destdir$doc"
    printf '%s\n' "${installed[@]}" >"$destdir$manifest"
fi

if [[ -z $destdir ]]; then
    if [[ -d /run/systemd/system ]]; then systemctl daemon-reload; fi
    missing=()
    for library in libvirt.so.0:libvirt0 libqpid-proton.so.11:libqpid-proton11 libssl.so.3:libssl3; do
        ldconfig -p | grep -q "${library%%:*}" || missing+=("${library#*:}")
    done
    if ((${#missing[@]})); then echo "runtime libraries missing: apt-get install ${missing[*]}" >&2; fi
fi
if $manifest_wanted; then
    echo "installed fence-router under ${destdir:-/} (${#installed[@]} files, listed in $manifest)"
else
    echo "installed fence-router under ${destdir:-/} (${#installed[@]} files, no list kept)"
fi
echo "next: fencectl keygen /etc/cluster/fence_xvm.key; fencectl configure; systemctl enable --now fence-routerd (Docs/install.md)"
