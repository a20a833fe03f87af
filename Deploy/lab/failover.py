#!/usr/bin/env python3
"""Broker node failover under continuous fencing, judged by the truth of every host's libvirtd.

Standard library only; runs in the multi-host lab of lab.sh (network namespaces it creates and
deletes). Run as root:

    failover.py --bin DIR [--kills 10] [--round-trips 20] [--json FILE] [--keep-logs DIR]

A lab of three hosts on a RabbitMQ cluster of three nodes (lab.sh --brokers 3): two guests reboot
VMs without a pause, each reboot judged by the host's libvirtd (a success must have restarted the
VM: a new libvirt id, running). Then one node is killed (SIGKILL, a different one each time, round
robin) and the time until every guest has had a reboot sent after the kill succeed is measured;
the node is started again and rejoins before the next kill. Before the kills, and in a lab on a single broker, the same reboots
are timed one after another: the round trip through the cluster against one broker.

Prints a table, then every request sent around the slowest kills (times from the kill); exits 1
on any false success. With --keep-logs, the cluster lab's directory (daemons' and brokers' logs)
is copied there before the lab goes down.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

LAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lab.sh")
VMS = 6


def sh(*args, check=True):
    return subprocess.run(args, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class Lab:
    def __init__(self, bin_dir, brokers):
        self.dir = tempfile.mkdtemp(prefix="fr-failover.")
        self.hosts = ["hv1", "hv2", "hv3"]
        self.run("up", "--hosts", "3", "--routers", "1", "--guests", "2", "--brokers", str(brokers),
                 "--bin", bin_dir, "--request-timeout", "3")
        for number in range(1, VMS + 1):
            host = self.hosts[number % 3]
            self.run("define", host, f"vm{number}", f"{number:08x}-0000-4000-8000-00000000f0f0", "running")
        self.where = {f"vm{number}": self.hosts[number % 3] for number in range(1, VMS + 1)}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.fence("g1", "status", "vm1") != 0:
            time.sleep(0.2)

    def run(self, command, *arguments, check=True):
        return sh(LAB, command, self.dir, *arguments, check=check)

    def down(self):
        self.run("down", check=False)
        subprocess.run(["rm", "-rf", self.dir])

    def fence(self, guest, action, name, timeout=10):
        return self.run("xvm", guest, "-o", action, "-H", name, "-t", str(timeout), check=False).returncode

    def domain_id(self, name):
        result = self.run("virsh", self.where[name], "domid", name, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def state(self, name):
        result = self.run("virsh", self.where[name], "domstate", name, check=False)
        return result.stdout.strip() if result.returncode == 0 else None


class Fencer(threading.Thread):
    """One guest rebooting its VMs in turn, without a pause; every answer judged.

    A VM found shut off (a reboot that failed between its off and its on leaves it so) is
    started instead: a reboot answers 0 for a VM that is off and leaves it off, as fence_virtd's
    does, which would prove nothing."""

    def __init__(self, lab, guest, names):
        super().__init__(daemon=True)
        self.lab, self.guest, self.names = lab, guest, names
        self.stop = threading.Event()
        self.successes = []  # (started, finished), monotonic, of confirmed successes
        self.requests = []  # (started, finished, code, name) of every request
        self.failures = 0
        self.false = []
        self.lock = threading.Lock()

    def run(self):
        turn = 0
        while not self.stop.is_set():
            name = self.names[turn % len(self.names)]
            turn += 1
            before = self.lab.domain_id(name)
            action = "on" if before == "-" else "reboot"
            started = time.monotonic()
            code = self.lab.fence(self.guest, action, name)
            finished = time.monotonic()
            after, state = self.lab.domain_id(name), self.lab.state(name)
            with self.lock:
                self.requests.append((started, finished, code, f"{action} {name}"))
                if code == 0:
                    if after is None or after == before or after == "-" or state != "running":
                        self.false.append(f"{action} {name}: 0, but libvirt id {before} -> {after}, {state}")
                    else:
                        self.successes.append((started, finished))
                else:
                    self.failures += 1

    def first_success_after(self, moment):
        """When the first success of a request sent after `moment` was answered."""
        with self.lock:
            return next((finished for started, finished in self.successes if started >= moment), None)

    def around(self, first, last):
        """Every request answered after `first` and sent before `last`."""
        with self.lock:
            return [request for request in self.requests if request[1] >= first and request[0] <= last]


def round_trips(lab, count):
    times = []
    for index in range(count):
        name = f"vm{index % VMS + 1}"
        started = time.monotonic()
        code = lab.fence("g1", "reboot", name)
        if code == 0:
            times.append(time.monotonic() - started)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--round-trips", type=int, default=20)
    parser.add_argument("--json")
    parser.add_argument("--keep-logs", metavar="DIR")
    options = parser.parse_args()

    single = Lab(options.bin, 1)
    try:
        one_broker = round_trips(single, options.round_trips)
    finally:
        single.down()

    lab = Lab(options.bin, 3)
    recoveries, outages, kills = [], [], []
    try:
        cluster = round_trips(lab, options.round_trips)
        fencers = [Fencer(lab, "g1", ["vm1", "vm2", "vm3"]), Fencer(lab, "g2", ["vm4", "vm5", "vm6"])]
        for fencer in fencers:
            fencer.start()
        time.sleep(3)
        for kill in range(options.kills):
            node = f"broker{kill % 3 + 1}"
            killed = time.monotonic()
            lab.run("kill", node)
            deadline = killed + 60
            # Back when every guest has had a request sent after the kill succeed.
            back = None
            while time.monotonic() < deadline and back is None:
                time.sleep(0.1)
                found = [f.first_success_after(killed) for f in fencers]
                back = max(found) if None not in found else None
            if back is None:
                outages.append(node)
            else:
                recoveries.append(back - killed)
            end = back if back is not None else deadline
            kills.append({"node": node, "recovery": None if back is None else back - killed, "requests": [
                {"guest": f.guest, "request": request, "sent": round(started - killed, 3), "answered": round(finished - killed, 3), "code": code}
                for f in fencers for started, finished, code, request in f.around(killed, end)]})
            lab.run("start", node)
            time.sleep(3)
        for fencer in fencers:
            fencer.stop.set()
        for fencer in fencers:
            fencer.join(timeout=60)
        false = [line for f in fencers for line in f.false]
        successes = sum(len(f.successes) for f in fencers)
        failures = sum(f.failures for f in fencers)
    finally:
        if options.keep_logs:
            # Sockets and pipes cannot be copied; only files and directories are.
            shutil.copytree(lab.dir, options.keep_logs, dirs_exist_ok=True, symlinks=True, ignore=lambda folder, names: [
                name for name in names if not (os.path.isfile(os.path.join(folder, name)) or os.path.isdir(os.path.join(folder, name)))])
        lab.down()

    def median(values):
        return statistics.median(values) if values else float("nan")

    ratio = median(cluster) / median(one_broker) if one_broker and cluster else float("nan")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| node kills (a different node each time) | {options.kills} |")
    print(f"| fencing back after a kill, p50 (s) | {median(recoveries):.2f} |")
    print(f"| fencing back after a kill, max (s) | {max(recoveries) if recoveries else float('nan'):.2f} |")
    print(f"| not back within 60 s | {len(outages)} |")
    print(f"| reboots (or starts) answered 0 and confirmed by libvirt | {successes} |")
    print(f"| reboots (or starts) answered 1 (failure) | {failures} |")
    print(f"| false successes | {len(false)} |")
    print(f"| reboot round trip, one broker, median (ms) | {median(one_broker) * 1000:.0f} |")
    print(f"| reboot round trip, 3-node cluster, median (ms) | {median(cluster) * 1000:.0f} |")
    print(f"| cluster / one broker | {ratio:.2f}x |")
    for line in false:
        print(f"false success: {line}")
    for kill in sorted(kills, key=lambda k: -(k["recovery"] or 60))[:3]:
        recovery = f"{kill['recovery']:.2f} s" if kill["recovery"] is not None else "not back"
        print(f"\nkill of {kill['node']}: fencing back after {recovery}; requests (seconds from the kill):")
        for request in sorted(kill["requests"], key=lambda r: r["sent"]):
            print(f"  {request['guest']} {request['request']}: sent {request['sent']:+.2f}, answered {request['answered']:+.2f}, "
                  f"{'success' if request['code'] == 0 else 'failure'}")
    if options.json:
        with open(options.json, "w") as out:
            json.dump({"recoveries": recoveries, "outages": outages, "kills": kills, "successes": successes, "failures": failures,
                       "false": false, "one_broker": one_broker, "cluster": cluster}, out)
    return 1 if false else 0


if __name__ == "__main__":
    sys.exit(main())
