"""Measures fence_virtd and fence-routerd with the real fence_xvm client, in namespaces.

Standard library only. Called by Benchmarks/run.sh, which builds fence-routerd first.
Every latency is one whole `fence_xvm` run (process start, multicast, call-back,
challenge-response, result), timed inside the guest namespace. Both daemons run at once on
different ports and the runs alternate between them, so that the machine's changing speed
weighs on both alike.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HOST = "frb-host"
GUESTS = [f"frb-g{i}" for i in range(1, 21)]


def sh(*args, check=True):
    return subprocess.run(args, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def make_lab():
    teardown_lab()
    sh("ip", "netns", "add", HOST)
    sh("ip", "-n", HOST, "link", "set", "lo", "up")
    sh("ip", "-n", HOST, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", HOST, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
    sh("ip", "-n", HOST, "addr", "add", "198.51.100.1/24", "dev", "br0")
    sh("ip", "-n", HOST, "link", "set", "br0", "up")
    sh("ip", "-n", HOST, "route", "add", "224.0.0.0/4", "dev", "br0")
    for index, guest in enumerate(GUESTS, start=1):
        sh("ip", "netns", "add", guest)
        sh("ip", "link", "add", "eth0", "netns", guest, "type", "veth", "peer", "name", f"vg{index}", "netns", HOST)
        sh("ip", "-n", HOST, "link", "set", f"vg{index}", "master", "br0", "up")
        sh("ip", "-n", guest, "link", "set", "lo", "up")
        sh("ip", "-n", guest, "addr", "add", f"198.51.100.{10 + index}/24", "dev", "eth0")
        sh("ip", "-n", guest, "link", "set", "eth0", "up")
        sh("ip", "-n", guest, "route", "add", "224.0.0.0/4", "dev", "eth0")


def teardown_lab():
    for namespace in GUESTS + [HOST]:
        sh("ip", "netns", "del", namespace, check=False)


def host_xml(path, count):
    with open(path, "w") as out:
        out.write("<node>\n")
        for index in range(1, count + 1):
            out.write(
                f"<domain type='test'><name>vm{index}</name>"
                f"<uuid>{index:08x}-0000-4000-8000-000000000000</uuid>"
                "<memory>65536</memory><os><type>hvm</type></os></domain>\n"
            )
        out.write("</node>\n")


def config(path, work, xml, port):
    # fence_virtd reads only the keys it knows; state_directory keeps ours out of /var/lib, and
    # each fence-routerd serves its metrics on a port of its own (two run side by side with --against).
    os.makedirs(f"{work}/state-{port}", exist_ok=True)
    with open(path, "w") as out:
        out.write(
            f'fence_virtd {{\n\tlistener = "multicast";\n\tbackend = "libvirt";\n\tstate_directory = "{work}/state-{port}";\n}}\n\n'
            f'listeners {{\n\tmulticast {{\n\t\tkey_file = "{work}/fence_xvm.key";\n\t\tinterface = "br0";\n\t\tport = "{port}";\n\t}}\n}}\n\n'
            f'backends {{\n\tlibvirt {{\n\t\turi = "test://{xml}";\n\t}}\n}}\n\n'
            f'metrics {{\n\trouter = "127.0.0.1:{port + 8000}";\n}}\n'
        )


class CpuAccounting:
    """CPU time of groups of processes: a cpuacct cgroup per group where the machine has that
    hierarchy without the cpu controller (there, accounting only: scheduling is unchanged), which
    counts every thread they ever ran and the children they start later; else the sum over their
    live threads (schedstat's first field, in ns: threads that ended are missed). A context
    manager: the processes go back where they were."""
    ROOT = "/sys/fs/cgroup/cpuacct"

    def __init__(self, name, groups):
        self.name, self.groups, self.paths, self.origins = name, groups, {}, {}

    def __enter__(self):
        if os.path.isdir(self.ROOT) and not os.path.exists(f"{self.ROOT}/cpu.shares"):
            try:
                for group, pids in self.groups.items():
                    path = f"{self.ROOT}/fr-{self.name}-{group}"
                    os.makedirs(path, exist_ok=True)
                    self.paths[group] = path
                    for pid in pids:
                        self.origins[pid] = self.origin(pid)
                        with open(f"{path}/cgroup.procs", "w") as procs:
                            procs.write(str(pid))
            except BaseException:
                self.__exit__()
                raise
        return self

    def origin(self, pid):
        with open(f"/proc/{pid}/cgroup") as cgroups:
            for line in cgroups:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if "cpuacct" in controllers.split(","):
                    return self.ROOT + path.rstrip("/")
        return self.ROOT

    def seconds(self):
        if self.paths:
            result = {}
            for group, path in self.paths.items():
                with open(f"{path}/cpuacct.usage") as usage:
                    result[group] = int(usage.read()) / 1e9
            return result
        return {group: sum(self.live_threads_seconds(pid) for pid in pids) for group, pids in self.groups.items()}

    @staticmethod
    def live_threads_seconds(pid):
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as schedstat:
                    total += int(schedstat.read().split()[0])
            except FileNotFoundError:
                continue
        return total / 1e9

    def per_run(self, runs, work, idle=10.0):
        """CPU ms per run of `work()` for each group, less what the group spends idle (heartbeats,
        snapshots), measured for `idle` seconds just before."""
        start, began = self.seconds(), time.monotonic()
        time.sleep(idle)
        rested, rest = self.seconds(), time.monotonic() - began
        began = time.monotonic()
        result = work()
        worked, took = self.seconds(), time.monotonic() - began
        cpu = {group: ((worked[group] - rested[group]) - (rested[group] - start[group]) * took / rest) * 1000 / runs
               for group in self.groups}
        return result, cpu

    def __exit__(self, *_):
        for path in self.paths.values():
            with open(f"{path}/cgroup.procs") as procs:
                pids = [int(pid) for pid in procs.read().split()]
            for pid in pids:
                try:
                    with open(f"{self.origins.get(pid, self.ROOT)}/cgroup.procs", "w") as back:
                        back.write(str(pid))
                except OSError:
                    pass  # gone, or its group is
            try:
                os.rmdir(path)
            except OSError:
                pass
        self.paths = {}


class Daemon:
    """One daemon under test in the host namespace, on its own port."""

    def __init__(self, name, command, port, work, xml):
        self.name = name
        self.port = port
        conf = f"{work}/{name}-{port}.conf"
        config(conf, work, xml, port)
        self.log = open(f"{work}/{name}.log", "a")
        self.process = subprocess.Popen(["ip", "netns", "exec", HOST] + command(conf), stdout=self.log, stderr=self.log)
        time.sleep(0.5)
        if self.process.poll() is not None:
            raise RuntimeError(f"{name} did not start; see its log")
        self.cpu = CpuAccounting(f"bench-{name}-{port}", {"daemon": [self.process.pid]}).__enter__()

    @property
    def rss_mb(self):
        # `ip netns exec` execs the daemon, so the pid is the daemon's own.
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    @property
    def cpu_ms(self):
        """CPU time of the daemon so far (fence-routerd's request threads come and go: counted
        where the machine has a cpuacct hierarchy, `CpuAccounting`)."""
        return self.cpu.seconds()["daemon"] * 1000

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        self.cpu.__exit__()


def alternating_runs(key, daemons, arguments, runs, guest=GUESTS[0], prepare=None):
    """Runs fence_xvm `runs` times against each daemon, alternating between them inside the guest
    namespace, so that drift of the machine's speed weighs on both alike. `prepare`, per daemon, is
    a command run untimed before each of its runs. Returns ms per daemon."""
    script = (
        "import json, subprocess, sys, time\n"
        "runs, ports, prepare, args = int(sys.argv[1]), sys.argv[2].split(','), json.loads(sys.argv[3]), sys.argv[4:]\n"
        "for _ in range(runs):\n"
        "    for port in ports:\n"
        "        if port in prepare:\n"
        "            subprocess.run(prepare[port], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "        t = time.perf_counter()\n"
        "        r = subprocess.run(args + ['-p', port], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "        print(port, (time.perf_counter() - t) * 1000, r.returncode, flush=True)\n"
    )
    ports = ",".join(str(daemon.port) for daemon in daemons)
    commands = json.dumps({str(daemon.port): command for daemon, command in zip(daemons, prepare or []) if command})
    result = sh("ip", "netns", "exec", guest, sys.executable, "-c", script, str(runs), ports, commands,
                "fence_xvm", "-k", key, *arguments)
    samples = {daemon.port: [] for daemon in daemons}
    for line in result.stdout.split("\n"):
        if line:
            port, millis, code = line.split()
            if int(code) != 0:
                raise RuntimeError(f"fence_xvm {' '.join(arguments)} -p {port} exited {code}")
            samples[int(port)].append(float(millis))
    return [samples[daemon.port] for daemon in daemons]


def concurrent_reboots(key, port, count, guests=GUESTS, domains=None):
    """`count` guests each reboot their own domain at once; returns (seconds, failures)."""
    domains = domains or [f"vm{i + 1}" for i in range(count)]
    started = time.perf_counter()
    clients = [
        subprocess.Popen(["ip", "netns", "exec", guests[i], "fence_xvm", "-k", key, "-p", str(port),
                          "-o", "reboot", "-H", domains[i], "-t", "90"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i in range(count)
    ]
    codes = [client.wait() for client in clients]
    elapsed = time.perf_counter() - started
    failed = sum(1 for code in codes if code != 0)
    return elapsed, failed


# Runs inside a guest namespace for as long as the benchmark needs it, so that starting
# `ip netns exec` is not timed. Commands on stdin, one per line (JSON):
#   ["once", args...]          run fence_xvm once; prints the monotonic time it ended and its code
#   ["loop", until, args...]   run it again and again until the monotonic time `until`; prints
#                              how many runs answered 0 and how many did not
GUEST_HELPER = """
import json, os, subprocess, sys, time
for line in sys.stdin:
    command = json.loads(line)
    if command[0] == "once":
        code = subprocess.run(command[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        print(time.monotonic(), code, flush=True)
    else:
        until, answered, failed = command[1], 0, 0
        before, started = os.times(), time.monotonic()
        while time.monotonic() < until:
            code = subprocess.run(command[2:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
            answered, failed = answered + (code == 0), failed + (code != 0)
        after = os.times()
        # The client's CPU: fence_xvm's runs and this loop's own.
        cpu = after.children_user + after.children_system + after.user + after.system - sum(before[:4])
        # Its own loop time: the last run ends after `until`.
        print(answered, failed, cpu, time.monotonic() - started, flush=True)
"""


class Guests:
    """One waiting helper in each guest namespace: all of them start fence_xvm at once."""

    def __init__(self, key, guests=GUESTS):
        self.key = key
        self.helpers = [
            subprocess.Popen(["ip", "netns", "exec", guest, sys.executable, "-c", GUEST_HELPER],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for guest in guests
        ]

    def status_args(self, index, port, timeout):
        # Each guest asks about its own domain, as a cluster node asks about its peer.
        return ["fence_xvm", "-k", self.key, "-p", str(port), "-t", str(timeout), "-o", "status", "-H", f"vm{index + 1}"]

    def burst(self, port):
        """Every guest asks status at once; (ms until the last answer, runs not answered 0)."""
        started = time.monotonic()
        for index, helper in enumerate(self.helpers):
            helper.stdin.write(json.dumps(["once"] + self.status_args(index, port, 5)) + "\n")
            helper.stdin.flush()
        answers = [helper.stdout.readline().split() for helper in self.helpers]
        return (max(float(ended) for ended, _ in answers) - started) * 1000, sum(1 for _, code in answers if code != "0")

    def throughput(self, port, seconds):
        """Every guest asks status in a loop for `seconds`; (answers per second, runs not answered 0,
        the clients' CPU per run in ms, answers)."""
        until = time.monotonic() + seconds
        for index, helper in enumerate(self.helpers):
            helper.stdin.write(json.dumps(["loop", until] + self.status_args(index, port, 2)) + "\n")
            helper.stdin.flush()
        counts = [helper.stdout.readline().split() for helper in self.helpers]
        runs = sum(int(answered) + int(failed) for answered, failed, _, _ in counts)
        answers = sum(int(answered) for answered, _, _, _ in counts)
        return (sum(int(answered) / float(elapsed) for answered, _, _, elapsed in counts), sum(int(failed) for _, failed, _, _ in counts),
                sum(float(cpu) for _, _, cpu, _ in counts) * 1000 / max(runs, 1), answers)

    def close(self):
        for helper in self.helpers:
            helper.stdin.close()
            helper.wait()


def server_times(key, daemons, runs):
    """Each daemon's own time per status, from a capture on the host bridge: multicast request to
    its call-back SYN, the client's challenge to its answer, the client's answer to the result
    byte; the client's and the network's time left out. Returns ms per daemon."""
    captures = []
    for daemon in daemons:
        log = open(f"{daemon.log.name}.pcap.txt", "w+")
        capture = subprocess.Popen(["ip", "netns", "exec", HOST, "tcpdump", "-i", "br0", "-n", "-tt", "-l", "-Q", "inout",
                                    "port", str(daemon.port)], stdout=log, stderr=subprocess.PIPE, text=True)
        captures.append((capture, log))
    # tcpdump says so on stderr once it listens.
    for capture, _ in captures:
        capture.stderr.readline()
    alternating_runs(key, daemons, ["-o", "status", "-H", "vm1"], runs)
    times = []
    for capture, log in captures:
        time.sleep(0.2)  # the last packets reach the capture's buffer
        capture.send_signal(signal.SIGINT)
        capture.wait()
        log.seek(0)
        times.append(exchange_server_times(log.read()))
        log.close()
    return times


def exchange_server_times(text):
    """Server time of every call-back exchange in tcpdump's text (see server_times), in its three
    parts: multicast request to call-back SYN, client's challenge to the answer, client's answer
    to the result byte (ms each)."""
    times, step, started, mark, served = [], None, 0.0, 0.0, []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[1] != "IP":
            continue
        at, source, length = float(fields[0]), fields[2], int(line.rsplit("length ", 1)[-1].split()[0].rstrip(":"))
        from_host = source.startswith("198.51.100.1.")
        if "UDP" in line:
            if step is None:
                step, started = "call-back", at
        elif step == "call-back" and from_host and "[S]" in line:
            step, served = "challenge", [(at - started) * 1000]
        elif step == "challenge" and not from_host and length == 64:
            step, mark = "answer", at
        elif step == "answer" and from_host and length > 0:
            step, served = "response", served + [(at - mark) * 1000]
        elif step == "response" and from_host and length > 0:
            # The answer and the daemon's own challenge may leave in two writes: both count.
            served[-1] = (at - mark) * 1000
        elif step == "response" and not from_host and length == 64:
            step, mark = "result", at
        elif step == "result" and from_host and length == 1:
            times.append(served + [(at - mark) * 1000])
            step = None
    return times


def percentile(samples, fraction):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def measure(commands, work, runs):
    """Both daemons side by side: the reference on port 1229, ours on 1230."""
    key = f"{work}/fence_xvm.key"
    results = [{}, {}]

    daemons = [Daemon(name, command, 1229 + index, work, f"{work}/host-20.xml") for index, (name, command) in enumerate(commands)]
    try:
        alternating_runs(key, daemons, ["-o", "status", "-H", "vm1"], 3)  # warm-up
        for result, daemon in zip(results, daemons):
            result["rss_idle"] = daemon.rss_mb
        for label, arguments in (("status", ["-o", "status", "-H", "vm1"]), ("list", ["-o", "list"])):
            before = [daemon.cpu_ms for daemon in daemons]
            for result, samples in zip(results, alternating_runs(key, daemons, arguments, runs)):
                result[f"{label}_median"], result[f"{label}_p90"] = statistics.median(samples), percentile(samples, 0.9)
            for result, daemon, start in zip(results, daemons, before):
                # Per request; fence_xvm's copies and retransmissions included, as a client sends them.
                result[f"{label}_cpu"] = (daemon.cpu_ms - start) / runs
        for result, times in zip(results, server_times(key, daemons, min(runs, 50))):
            result["server_status"] = statistics.median(sum(parts) for parts in times)
            for index, name in enumerate(("server_callback", "server_challenge", "server_result")):
                result[name] = statistics.median(parts[index] for parts in times)
        guests = Guests(key)
        try:
            bursts = [[], []]
            for _ in range(max(5, runs // 10)):
                for samples, result, daemon in zip(bursts, results, daemons):
                    elapsed, failed = guests.burst(daemon.port)
                    samples.append(elapsed)
                    result["burst_failures"] = result.get("burst_failures", 0) + failed
            for samples, result in zip(bursts, results):
                result["burst_20"] = statistics.median(samples)
            rates, clients = [[], []], [[], []]
            for _ in range(3):
                for samples, client, result, daemon in zip(rates, clients, results, daemons):
                    before = daemon.cpu_ms
                    rate, failed, client_cpu, answers = guests.throughput(daemon.port, 3)
                    samples.append(rate)
                    client.append(client_cpu)
                    result["throughput_failures"] = result.get("throughput_failures", 0) + failed
                    # Per answer; failed runs (none in the runs reported) would add their share.
                    result.setdefault("throughput_daemon_cpu", []).append((daemon.cpu_ms - before) / max(answers, 1))
            for samples, client, result in zip(rates, clients, results):
                result["throughput"] = statistics.median(samples)
                result["throughput_client_cpu"] = statistics.median(client)
                result["throughput_daemon_cpu"] = statistics.median(result["throughput_daemon_cpu"])
        finally:
            guests.close()
        for result, daemon in zip(results, daemons):
            result["reboots_20"], result["reboot_failures"] = concurrent_reboots(key, daemon.port, 20)
    finally:
        for daemon in daemons:
            daemon.stop()

    daemons = [Daemon(name, command, 1229 + index, work, f"{work}/host-1000.xml") for index, (name, command) in enumerate(commands)]
    try:
        alternating_runs(key, daemons, ["-o", "list"], 2)  # warm-up
        for result, samples in zip(results, alternating_runs(key, daemons, ["-o", "list"], max(20, runs // 2))):
            result["list1000_median"] = statistics.median(samples)
        for result, daemon in zip(results, daemons):
            result["rss_1000"] = daemon.rss_mb
    finally:
        for daemon in daemons:
            daemon.stop()
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--routerd", required=True)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--against", metavar="ROUTERD",
                        help="in fence_virtd's place, another fence-routerd build (a change measured side by side with the build before it)")
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark creates network namespaces")
    for tool in ("fence_virtd", "fence_xvm"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} missing: apt-get install fence-virtd fence-virt")

    work = tempfile.mkdtemp(prefix="fence-router-bench.")
    try:
        with open(f"{work}/fence_xvm.key", "wb") as key:
            key.write(os.urandom(4096))
        os.chmod(f"{work}/fence_xvm.key", 0o600)
        host_xml(f"{work}/host-20.xml", 20)
        host_xml(f"{work}/host-1000.xml", 1000)
        make_lab()
        first = (("fence-routerd (against)", lambda conf: [options.against, "-F", "-f", conf]) if options.against
                 else ("fence_virtd", lambda conf: ["fence_virtd", "-F", "-f", conf, "-p", f"{work}/fence_virtd.pid"]))
        reference, ours = measure(
            [first, ("fence-routerd", lambda conf: [options.routerd, "-F", "-f", conf])],
            work, options.runs,
        )
    finally:
        teardown_lab()
        shutil.rmtree(work, ignore_errors=True)

    rows = [
        ("status latency, median (ms)", "status_median", "≤ 1.0×"),
        ("status latency, p90 (ms)", "status_p90", ""),
        ("daemon CPU per status, all threads (ms)", "status_cpu", ""),
        ("server time per status, capture on the bridge, median (ms)", "server_status", "≤ 0.36 ms"),
        ("  of which: multicast request → call-back SYN (ms)", "server_callback", ""),
        ("  of which: client's challenge → answer and own challenge (ms)", "server_challenge", ""),
        ("  of which: client's answer → result byte (ms)", "server_result", ""),
        ("20 guests ask status at once: all answered after (ms, median)", "burst_20", "≤ 60 ms"),
        ("status throughput, 20 guests in a loop (answers/s, median of 3 × 3 s)", "throughput", "≥ 1,500/s"),
        ("  in those loops: client CPU per fence_xvm run (ms)", "throughput_client_cpu", ""),
        ("  in those loops: daemon CPU per answer, all threads (ms)", "throughput_daemon_cpu", ""),
        ("list latency (20 domains), median (ms)", "list_median", "≤ 1.1×"),
        ("list latency (20 domains), p90 (ms)", "list_p90", ""),
        ("daemon CPU per list (20 domains), all threads (ms)", "list_cpu", ""),
        ("list of 1,000 domains, median (ms)", "list1000_median", "≤ 1.1×"),
        ("20 concurrent reboots from 20 guests, total (s)", "reboots_20", "≤ 1.2 s"),
        ("resident memory, idle (MB)", "rss_idle", "≤ 22 MB"),
        ("resident memory, 1,000 domains (MB)", "rss_1000", "≤ 29 MB"),
    ]
    them = "against" if options.against else "fence_virtd"
    lines = [
        f"fence_xvm runs per latency and daemon: {options.runs}, alternating between the daemons; failed concurrent reboots: "
        f"{them} {reference['reboot_failures']}, fence-routerd {ours['reboot_failures']}; status runs not answered 0 "
        f"at once / in the loops: {them} {reference['burst_failures']} / {reference['throughput_failures']}, "
        f"fence-routerd {ours['burst_failures']} / {ours['throughput_failures']}",
        "",
        f"| measure | {'fence-routerd (against)' if options.against else 'fence_virtd 4.12.1'} | fence-routerd | ratio | target |",
        "|---|---:|---:|---:|---|",
    ]
    for label, key, target in rows:
        ratio = ours[key] / reference[key] if reference[key] else float("nan")
        lines.append(f"| {label} | {reference[key]:.2f} | {ours[key]:.2f} | {ratio:.2f}× | {target} |")
    table = "\n".join(lines)
    print(table)
    if options.markdown:
        with open(options.markdown, "w") as out:
            out.write(table + "\n")


if __name__ == "__main__":
    main()
