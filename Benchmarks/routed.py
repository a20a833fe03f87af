"""Routed fencing against the reference fence_virtd, in one run, with the real fence_xvm.

Standard library only. Called by Benchmarks/routed.sh, which builds the binaries first.

Part 1 (real parts): the multi-host lab of Deploy/lab/lab.sh with ten simulated hypervisor hosts
(each its own libvirtd with the test driver and a fence-hostd, 100 running domains each), the
broker, fence-routerd on hv1, 20 guests; plus an eleventh host with a libvirtd only, where the
reference fence_virtd serves 1,000 domains through its libvirt backend (port 1231). Latencies
alternate between the two daemons run by run.

Part 1b (one host): the reference and fence-routerd (through the broker and one fence-hostd) on
the same host and libvirtd, alternating: the bus round trip without the fan-out to ten agents.

Part 2 (simulation): a lab with one host and fence-routerd, loaded by fence-sim-hosts, fake host
agents with an in-process fake hypervisor (no libvirt), 1,000 hosts x 100 domains through the
real broker; the router's memory, CPU, heartbeat handling cost and list time are read.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import namedtuple
from contextlib import contextmanager

from bench import CpuAccounting, alternating_runs, concurrent_reboots, percentile, sh

LAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Deploy", "lab", "lab.sh")
Port = namedtuple("Port", "port")
ROUTED, REFERENCE = Port(1229), Port(1231)


class Lab:
    def __init__(self, directory, bin_dir, **counts):
        self.dir = directory
        counts.setdefault("debug", 0)  # logging as in production (the lab's tests log debug lines)
        self.run("up", *[part for name, value in counts.items() for part in (f"--{name}", str(value))], "--bin", bin_dir)
        with open(f"{directory}/prefix") as prefix:
            self.prefix = prefix.read().strip()
        self.key = f"{directory}/fence_xvm.key"

    def run(self, command, *arguments):
        return sh(LAB, command, self.dir, *arguments)

    def ns(self, name):
        return f"{self.prefix}-{name}"

    def uri(self, host):
        return f"test+unix:///default?socket={self.dir}/{host}/run/libvirt-sock"

    def pid(self, part):
        return int(self.run("pid", part).stdout.strip())

    def populate(self, host, first, last):
        """Defines and starts vmFIRST..vmLAST on `host`."""
        self.run("populate", host, str(first), str(last))

    def listed(self, guest="g1"):
        result = sh("ip", "netns", "exec", self.ns(guest), "fence_xvm", "-k", self.key, "-o", "list", "-t", "30", check=False)
        return result.stdout.count("\n")

    def wait_listed(self, count, limit=60):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if self.listed() >= count:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the router never listed {count} domains")

    def down(self):
        sh(LAB, "down", self.dir, check=False)


def memory_mb(pid, field="VmRSS:"):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid):
    """`pid` and every process below it (the broker's port programs are started by a helper that
    runs from the broker's start)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue += children.get(current, [])
    return found


def lab_groups(lab, hosts, reference):
    """Each side's processes: the reference and its host's libvirtd; the router, the agents, the
    broker and the simulated hosts' libvirtds."""
    with open(f"{lab.dir}/broker/rabbitmq.pid") as pid:
        brokers = descendants(int(pid.read()))
    return {
        "reference": [reference.pid], "reference-libvirtd": [lab.pid(f"libvirtd-{hosts['reference']}")],
        "router": [lab.pid("router-hv1")], "agents": [lab.pid(f"agent-{host}") for host in hosts["routed"]],
        "broker": brokers, "libvirtds": [lab.pid(f"libvirtd-{host}") for host in hosts["routed"]],
    }


def reference_config(lab, host):
    path = f"{lab.dir}/{host}/fence_virtd.conf"
    with open(path, "w") as out:
        out.write(
            'fence_virtd {\n\tlistener = "multicast";\n\tbackend = "libvirt";\n}\n\n'
            f'listeners {{\n\tmulticast {{\n\t\tkey_file = "{lab.key}";\n\t\tinterface = "eth0";\n\t\tport = "{REFERENCE.port}";\n\t}}\n}}\n\n'
            f'backends {{\n\tlibvirt {{\n\t\turi = "{lab.uri(host)}";\n\t}}\n}}\n'
        )
    return path


@contextmanager
def lab_with_reference(directory, bin_dir, host, populate, **counts):
    """A lab whose hosts `populate` lists as (host, first, last) domains, and the reference
    fence_virtd in `host`'s namespace on that host's libvirtd (port 1231); both gone after."""
    lab = Lab(directory, bin_dir, **counts)
    reference = None
    try:
        for name, first, last in populate:
            lab.populate(name, first, last)
        reference = subprocess.Popen(["ip", "netns", "exec", lab.ns(host), "fence_virtd", "-F", "-f", reference_config(lab, host),
                                      "-p", f"{lab.dir}/{host}/fence_virtd.pid"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield lab, reference
    finally:
        if reference:
            reference.terminate()
            reference.wait()
        lab.down()


def convergence(lab, migrations):
    """Moves `mig` between hv1 and hv2; per move, the router's age of the destination's start event
    when it applied it (agent receipt of libvirt's event to the router's inventory)."""
    lab.run("define", "hv1", "mig", "0000abcd-0000-4000-8000-000000000000", "running")
    log = f"{lab.dir}/logs/router-hv1.log"
    pattern = re.compile(r"domain=mig .*host=(hv\d+) .*since-event-ms=(-?\d+) .*state=running")
    seen = 0
    ages = []
    for index in range(migrations):
        source, destination = ("hv1", "hv2") if index % 2 == 0 else ("hv2", "hv1")
        lab.run("migrate", "mig", source, destination)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            with open(log) as lines:
                matches = [m for m in (pattern.search(line) for line in lines if "inventory change" in line) if m]
            if len(matches) > seen and matches[-1].group(1) == destination:
                ages += [int(m.group(2)) for m in matches[seen:] if m.group(1) == destination]
                seen = len(matches)
                break
            time.sleep(0.02)
        else:
            raise RuntimeError(f"the router never saw mig start on {destination}")
    return ages


def real_parts(bin_dir, work, runs, migrations):
    populate = [(f"hv{host}", (host - 1) * 100 + 1, host * 100) for host in range(1, 11)] + [("hv11", 1, 1000)]
    with lab_with_reference(f"{work}/real", bin_dir, "hv11", populate, hosts=10, routers=1, guests=20, bare=1) as (lab, reference):
        lab.wait_listed(1000)
        targets = [REFERENCE, ROUTED]
        guest = lab.ns("g1")
        result = {}
        alternating_runs(lab.key, targets, ["-o", "status", "-H", "vm150"], 3, guest)  # warm-up
        for label, arguments in (("status", ["-o", "status", "-H", "vm150"]), ("list", ["-o", "list", "-t", "30"])):
            samples = alternating_runs(lab.key, targets, arguments, runs, guest)
            result[label] = [statistics.median(s) for s in samples] + [percentile(s, 0.9) for s in samples]
        # off: started again (untimed, with a pause for its event) before every run, on each side.
        start = lambda host: ["sh", "-c", f"virsh -c '{lab.uri(host)}' start vm250; sleep 0.05"]
        with CpuAccounting("routed-real", lab_groups(lab, {"reference": "hv11", "routed": [f"hv{i}" for i in range(1, 11)]}, reference)) as cpu:
            samples, result["off-cpu"] = cpu.per_run(runs, lambda: alternating_runs(
                lab.key, targets, ["-o", "off", "-H", "vm250"], runs, guest, prepare=[start("hv11"), start("hv3")]))
        result["off"] = [statistics.median(s) for s in samples] + [percentile(s, 0.9) for s in samples]

        guests = [lab.ns(f"g{i}") for i in range(1, 21)]
        spread = [f"vm{(host - 1) * 100 + offset}" for host in range(1, 6) for offset in range(10, 14)]
        result["reboots"] = [concurrent_reboots(lab.key, port.port, 20, guests, spread) for port in targets]
        result["memory"] = {"reference": memory_mb(reference.pid), "router": memory_mb(lab.pid("router-hv1")),
                            "agent": memory_mb(lab.pid("agent-hv2"))}
        result["convergence"] = convergence(lab, migrations)
        return result


def one_host(bin_dir, work, runs):
    """The reference's own setting: one host. Its libvirtd serves 100 domains to both fence-hostd
    (behind fence-routerd, through the broker) and the reference fence_virtd, on the same host;
    runs alternate. The ten-host lab above asks ten agents for every off; this one asks one, so
    the difference is the cost of the bus round trip alone."""
    with lab_with_reference(f"{work}/one", bin_dir, "hv1", [("hv1", 1, 100)], hosts=1, routers=1, guests=1) as (lab, reference):
        lab.wait_listed(100)
        targets, guest = [REFERENCE, ROUTED], lab.ns("g1")
        alternating_runs(lab.key, targets, ["-o", "status", "-H", "vm50"], 3, guest)  # warm-up
        result = {}
        samples = alternating_runs(lab.key, targets, ["-o", "status", "-H", "vm50"], runs, guest)
        result["status"] = [statistics.median(s) for s in samples]
        start = ["sh", "-c", f"virsh -c '{lab.uri('hv1')}' start vm60; sleep 0.05"]
        # fence_virtd and fence-hostd share the host's libvirtd: its CPU counts on neither side.
        groups = lab_groups(lab, {"reference": "hv1", "routed": ["hv1"]}, reference)
        groups["libvirtds"] = groups.pop("reference-libvirtd")
        with CpuAccounting("routed-one", groups) as cpu:
            samples, result["off-cpu"] = cpu.per_run(runs, lambda: alternating_runs(
                lab.key, targets, ["-o", "off", "-H", "vm60"], runs, guest, prepare=[start, start]))
        result["off"] = [statistics.median(s) for s in samples]
        return result


def simulation(bin_dir, work, hosts, domains):
    lab = Lab(f"{work}/sim", bin_dir, hosts=1, routers=1, guests=1)
    try:
        router = lab.pid("router-hv1")
        with open(f"{lab.dir}/broker/password") as password, open(f"{lab.dir}/broker-port") as port:
            url = f"amqp://fence:{password.read().strip()}@198.18.0.100:{port.read().strip()}"
        simulator = subprocess.Popen(["ip", "netns", "exec", lab.ns("hv1"), f"{bin_dir}/fence-sim-hosts", f"url={url}",
                                      f"bus-key={lab.dir}/bus.key", f"trust={lab.dir}/trust", f"hosts={hosts}", f"domains={domains}", "steady=30", "heartbeats=40"],
                                     stdout=subprocess.PIPE, text=True)
        result = {}
        marks = {}
        for line in simulator.stdout:
            if not line.startswith("phase "):
                continue
            phase = line.split()[1]
            marks[phase] = (time.monotonic(), cpu_seconds(router))
            if phase == "steady":
                time.sleep(10)  # let the first round of snapshots settle
                marks["steady"] = (time.monotonic(), cpu_seconds(router))
            elif phase == "heartbeats":
                (t0, c0), (t1, c1) = marks["steady"], marks["heartbeats"]
                result["steady_cores"] = (c1 - c0) / (t1 - t0)
                time.sleep(3)
                t2, c2 = time.monotonic(), cpu_seconds(router)
                time.sleep(15)
                t3, c3 = time.monotonic(), cpu_seconds(router)
                result["heartbeat_cores"] = (c3 - c2) / (t3 - t2)
                result["heartbeat_us"] = (c3 - c2) / ((t3 - t2) * hosts) * 1e6
                result["rss"] = memory_mb(router)
                timings = []
                for _ in range(3):
                    started = time.perf_counter()
                    count = lab.listed()
                    timings.append((time.perf_counter() - started) * 1000)
                result["list_ms"], result["listed"] = statistics.median(timings), count
            elif phase == "done":
                result["publish_failures"] = line.split()[-1]
        if simulator.wait() != 0 or "publish_failures" not in result:
            raise RuntimeError("fence-sim-hosts failed (its output is above)")
        result["hwm"] = memory_mb(router, "VmHWM:")
        return result
    finally:
        lab.down()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--migrations", type=int, default=100)
    parser.add_argument("--sim-hosts", type=int, default=1000)
    parser.add_argument("--sim-domains", type=int, default=100)
    parser.add_argument("--skip-simulation", action="store_true")
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark creates network namespaces")

    work = tempfile.mkdtemp(prefix="fence-router-routed.")
    real = real_parts(options.bin, work, options.runs, options.migrations)
    one = one_host(options.bin, work, options.runs)
    sim = None if options.skip_simulation else simulation(options.bin, work, options.sim_hosts, options.sim_domains)
    sh("rm", "-rf", work)

    def row(label, reference, routed, target="", digits=2):
        ratio = f"{routed / reference:.2f}×" if reference else ""
        reference_text = f"{reference:.{digits}f}" if reference is not None else "—"
        return f"| {label} | {reference_text} | {routed:.{digits}f} | {ratio} | {target} |"

    (ref_reboot, ref_failed), (routed_reboot, routed_failed) = real["reboots"]
    ages = real["convergence"]
    lines = [
        f"fence_xvm runs per latency and daemon: {options.runs}, alternating; failed concurrent reboots: "
        f"fence_virtd {ref_failed}, fence-routerd {routed_failed}; migrations: {len(ages)}",
        "",
        "| measure | fence_virtd 4.12.1, one host | fence-routerd, routed over 10 hosts | ratio | target |",
        "|---|---:|---:|---:|---|",
        row("status latency, median (ms)", real["status"][0], real["status"][1], "≤ 1.2×"),
        row("status latency, p90 (ms)", real["status"][2], real["status"][3]),
        row("off latency, median (ms)", real["off"][0], real["off"][1], "≤ 1.3×"),
        row("off latency, p90 (ms)", real["off"][2], real["off"][3]),
        row("one host (fence_virtd and fence-hostd on the same libvirtd): status, median (ms)", one["status"][0], one["status"][1]),
        row("one host: off, median (ms)", one["off"][0], one["off"][1]),
        row("list of 1,000 domains (one host / 10 × 100), median (ms)", real["list"][0], real["list"][1], "≤ 1.5×"),
        row("20 concurrent reboots (one host / over 5 hosts), total (s)", ref_reboot, routed_reboot, "≤ 1.5 s"),
        row("migration convergence, event → router inventory, median (ms)", None, statistics.median(ages), "", 0),
        row("migration convergence, p99 (ms)", None, percentile(ages, 0.99), "≤ 50 ms", 0),
        row("resident memory: fence_virtd (1,000 domains) / fence-routerd (1,000 over 10 hosts) (MB)", real["memory"]["reference"], real["memory"]["router"]),
        row("resident memory: fence-hostd with 100 domains (MB)", None, real["memory"]["agent"]),
        "",
        "CPU per off run (ms), from the off runs above (restarting the domain before each included), less each part's idle use:",
        "",
        "| part | one host | ten hosts |",
        "|---|---:|---:|",
    ]
    real_cpu, one_cpu = real["off-cpu"], one["off-cpu"]
    for label, group, one_group in (
        ("fence_virtd", "reference", "reference"),
        ("its libvirtd (one host: shared with fence-hostd)", "reference-libvirtd", "libvirtds"),
        ("fence-routerd", "router", "router"),
        ("fence-hostd (all agents)", "agents", "agents"),
        ("RabbitMQ", "broker", "broker"),
        ("the agents' libvirtds", "libvirtds", None),
    ):
        lines.append(f"| {label} | {one_cpu[one_group]:.2f} | {real_cpu[group]:.2f} |" if one_group else f"| {label} | | {real_cpu[group]:.2f} |")
    ours = ("router", "agents", "broker", "libvirtds")
    lines.append(f"| fence-router's side in all (ten hosts) against the reference's | | {sum(real_cpu[g] for g in ours):.2f} / "
                 f"{real_cpu['reference'] + real_cpu['reference-libvirtd']:.2f} |")
    if sim:
        lines += [
            "",
            f"Simulation: fence-routerd with {options.sim_hosts} fake host agents × {options.sim_domains} domains (fence-sim-hosts, "
            f"in-process fake hypervisor) through the real broker; publish failures: {sim['publish_failures']}",
            "",
            "| measure (simulation) | value | target |",
            "|---|---:|---|",
            f"| router resident memory (MB) | {sim['rss']:.1f} | ≤ 300 MB |",
            f"| router peak resident memory (MB) | {sim['hwm']:.1f} | |",
            f"| router CPU, snapshots every 5 s + heartbeats every 1 s (cores) | {sim['steady_cores']:.3f} | < 0.5 |",
            f"| router CPU, heartbeats only (cores) | {sim['heartbeat_cores']:.3f} | |",
            f"| heartbeat handling cost (µs of router CPU per heartbeat) | {sim['heartbeat_us']:.1f} | ≤ 20 µs |",
            f"| list of {sim['listed']:,} domains through fence_xvm, median of 3 (ms) | {sim['list_ms']:.0f} | |",
        ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
