"""Writes Deploy/build/PROGRAM.order: the functions fence-routerd and fence-hostd run, whose
sections the release link places first (`--symbol-ordering-file`, Package.swift).

The kernel maps a program's code in blocks around each page it touches (64 KB of fault-around,
or a whole large folio of the page cache): code used at all is resident with its neighbours.
With the sections a daemon runs laid out together, fewer blocks are touched (Docs/benchmarks.md,
"Memory"). The list comes from callgrind (valgrind), which names every function run, while each
daemon does its work in the benchmarks' namespaces: single host (status, list, off, on, reboot,
an unknown domain, a metrics scrape) and routed (a one-host lab: the same through the broker).
A stale list costs memory, never correctness: sections it does not name follow, as without one.

Run by Benchmarks/function-order.sh (root), which builds the release binaries first.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import bench
from routed import LAB, Lab

PROGRAMS = ("fence-routerd", "fence-hostd")
# Each request with the exit status fence_xvm must give: a profile of failures is not the work.
WORKLOAD = (
    (["-o", "status", "-H", "vm1"], 0), (["-o", "list"], 0), (["-o", "off", "-H", "vm2"], 0),
    (["-o", "status", "-H", "vm2"], 2), (["-o", "on", "-H", "vm2"], 0), (["-o", "reboot", "-H", "vm3"], 0),
    (["-o", "status", "-H", "nosuch"], 2), (["-o", "off", "-H", "nosuch"], 1), (["-o", "status", "-H", "vm1"], 0),
)


def instrumented(built, real, wrappers, outputs):
    """Wrapper scripts named like the programs, running each under callgrind (valgrind 3.19 cannot
    read clang's DWARF 5: each runs from a copy without debug information), and fencectl."""
    os.makedirs(wrappers)
    for program in PROGRAMS:
        subprocess.run(["strip", "--strip-debug", "-o", f"{real}/{program}", f"{built}/{program}"], check=True)
        with open(f"{wrappers}/{program}", "w") as wrapper:
            wrapper.write(
                "#!/bin/sh\n"
                f"exec valgrind -q --tool=callgrind --demangle=no --dump-instr=no --compress-strings=no "
                f"--compress-pos=no --callgrind-out-file={outputs}/{program}.%p {real}/{program} \"$@\"\n")
        os.chmod(f"{wrappers}/{program}", 0o755)
    os.symlink(f"{built}/fencectl", f"{wrappers}/fencectl")  # the lab makes its keys with it


def workload(client):
    """Runs WORKLOAD with `client`, the fence_xvm command line up to its operation."""
    for arguments, expected in WORKLOAD:
        status = subprocess.run([*client, "-t", "60", *arguments], capture_output=True).returncode
        if status != expected:
            raise RuntimeError(f"fence_xvm {' '.join(arguments)} exited {status}, not {expected}")


def wait_for(path, text, limit=120):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        with open(path, errors="replace") as log:
            if text in log.read():
                return
        time.sleep(0.5)
    raise RuntimeError(f"{path} never said '{text}'")


def single_host(work, wrappers):
    key = f"{work}/fence_xvm.key"
    with open(key, "wb") as out:
        out.write(os.urandom(256))
    os.chmod(key, 0o600)
    bench.host_xml(f"{work}/host.xml", 50)
    bench.make_lab()
    daemon = None
    try:
        daemon = bench.Daemon("fence-routerd", lambda conf: [f"{wrappers}/fence-routerd", "-F", "-f", conf], 1229, work, f"{work}/host.xml")
        wait_for(f"{work}/fence-routerd.log", "serving metrics")
        workload(["ip", "netns", "exec", bench.GUESTS[0], "fence_xvm", "-k", key, "-p", "1229"])
        subprocess.run(["ip", "netns", "exec", bench.HOST, "curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:9229/metrics"], check=True)
    finally:
        if daemon:
            daemon.stop()  # SIGTERM: callgrind writes its profile as the program ends
        bench.teardown_lab()


def routed(work, wrappers):
    lab = None
    try:
        lab = Lab(f"{work}/lab", wrappers, hosts=1, routers=1, guests=1, **{"request-timeout": 60})
        lab.populate("hv1", 1, 3)
        workload(["ip", "netns", "exec", lab.ns("g1"), "fence_xvm", "-k", lab.key])
        for part in ("router-hv1", "agent-hv1"):
            lab.run("stop", part)
    finally:
        if lab:
            lab.down()
        else:
            subprocess.run([LAB, "down", f"{work}/lab"])


def order(outputs, program, profiles, binary):
    """The program's own functions named in its `profiles` (callgrind's own order), each once and
    as the binary's symbol table has it (callgrind marks recursion with 'N and has no name for
    some code)."""
    names = [name for name in sorted(os.listdir(outputs)) if name.startswith(program + ".")]
    if len(names) != profiles:
        raise RuntimeError(f"{len(names)} profiles of {program}, not {profiles}: it did not end on SIGTERM")
    symbols = set(subprocess.run(["nm", "--defined-only", "--format=just-symbols", binary],
                                 check=True, capture_output=True, text=True).stdout.split())
    functions, seen, unknown = [], set(), 0
    for name in names:
        current = None
        with open(f"{outputs}/{name}", errors="replace") as profile:
            for line in profile:
                if line.startswith("ob="):
                    current = line[3:].strip()
                elif line.startswith("fn=") and current and current.endswith("/" + program):
                    function = line[3:].strip().split("'")[0]
                    if function in seen:
                        continue
                    seen.add(function)
                    if function in symbols:
                        functions.append(function)
                    else:
                        unknown += 1
    print(f"{program}: {len(functions)} functions ({unknown} names not in its symbol table left out)", file=sys.stderr)
    return functions


if __name__ == "__main__":
    built, destination = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="fr-order.")
    try:
        real, wrappers, outputs = f"{work}/real", f"{work}/bin", f"{work}/profiles"
        os.makedirs(real)
        os.makedirs(outputs)
        instrumented(built, real, wrappers, outputs)
        print("single host, under callgrind...", file=sys.stderr)
        single_host(work, wrappers)
        print("routed, one-host lab, under callgrind...", file=sys.stderr)
        routed(work, wrappers)
        orders = {program: order(outputs, program, profiles, f"{built}/{program}")
                  for program, profiles in (("fence-routerd", 2), ("fence-hostd", 1))}
        for program, functions in orders.items():
            with open(f"{destination}/{program}.order", "w") as out:
                out.write("\n".join(functions) + "\n")
        shutil.rmtree(work)
    except BaseException:
        print(f"function-order: profiles and logs kept in {work}", file=sys.stderr)
        raise
