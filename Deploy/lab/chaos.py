#!/usr/bin/env python3
"""Randomised faults against routed fencing, judged by the truth of every host's libvirtd.

Standard library only. Runs in the multi-host lab of lab.sh (network namespaces it creates and
deletes; nothing on the machine's own interfaces). Run as root:

    chaos.py --bin DIR [--ops 200] [--minutes M] [--seed S] [--hosts 3] [--domains 6] [--json FILE]
    chaos.py --merge A.json B.json …      the tables of several runs (labs side by side) added up

The layout is a Pacemaker cluster's on shared storage: every domain is defined on every host and
runs on at most one. One step at a time, seeded, the driver either sends a request with the real
fence_xvm from a guest (status, off, on, reboot of a random domain) or brings about a fault:
an agent killed or frozen, a router killed, the broker stopped, a host's management link cut
(each for a few steps, then undone), libvirtd restarted with its domains defined and started
again at once (a host rebooting with autostart), a migration, a domain started or stopped
behind the router's back. After every request it reads every host's libvirtd with virsh:

  false success  status OFF or off 0 while the domain runs somewhere; on 0 while it runs nowhere;
                 reboot 0 while the run it found still goes on; any domain running on two hosts
  wrong ON       status ON while it runs nowhere (not a safety problem: counted apart)
  failure        fence_xvm exit 1 (the router's doubt: a fault is on) — allowed, counted
  timeout        fence_xvm gave up waiting — allowed, counted

When the faults end, the next request comes at once (the worst moment is when things come
back); then it asks status of every domain until every answer is right, and records how long
that took from the end of the faults. Prints a table; exits 1 on any false success (each one described, with the
lab's logs kept), 0 otherwise.
"""
import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

LAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lab.sh")
ALIVE_NOT = ("shut off", "crashed")


def sh(*args, check=True, timeout=None):
    return subprocess.run(args, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)


class Lab:
    def __init__(self, directory, bin_dir, hosts, routers, request_timeout):
        self.dir = directory
        self.hosts = [f"hv{i}" for i in range(1, hosts + 1)]
        self.routers = self.hosts[:routers]
        self.run("up", "--hosts", str(hosts), "--routers", str(routers), "--guests", "1", "--bin", bin_dir,
                 "--request-timeout", str(request_timeout))
        with open(f"{directory}/prefix") as prefix:
            self.prefix = prefix.read().strip()

    def run(self, command, *arguments, check=True):
        return sh(LAB, command, self.dir, *arguments, check=check)

    def ns(self, name):
        return f"{self.prefix}-{name}"

    def uri(self, host):
        return f"test+unix:///default?socket={self.dir}/{host}/run/libvirt-sock"

    def virsh(self, host, *arguments, check=True):
        return sh("virsh", "-c", self.uri(host), *arguments, check=check)

    def truth(self):
        """{domain: {host: (state, id)}} for every domain defined anywhere, every host read at once."""
        readers = {host: subprocess.Popen(["virsh", "-c", self.uri(host), "list", "--all"],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for host in self.hosts}
        seen = {}
        for host, reader in readers.items():
            output, error = reader.communicate()
            if reader.returncode != 0:
                raise RuntimeError(f"virsh cannot read {host}: {error.strip()}")
            for line in output.splitlines()[2:]:
                fields = line.split(None, 2)
                if len(fields) == 3:
                    seen.setdefault(fields[1], {})[host] = (fields[2].strip(), fields[0])
        return seen

    def xvm(self, action, domain, wait):
        started = time.monotonic()
        try:
            result = sh("ip", "netns", "exec", self.ns("g1"), "fence_xvm", "-k", f"{self.dir}/fence_xvm.key",
                        "-o", action, "-H", domain, "-t", str(wait), check=False, timeout=wait + 15)
            code = result.returncode
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - started

    def pid(self, part):
        return int(self.run("pid", part).stdout.strip())

    def link(self, host, up):
        sh("ip", "netns", "exec", self.ns(host), "ip", "link", "set", "eth1", "up" if up else "down")

    def down(self):
        self.run("down", check=False)


def alive_on(truth, domain):
    return sorted(host for host, (state, _) in truth.get(domain, {}).items() if state not in ALIVE_NOT)


class Fault:
    def __init__(self, kind, detail, part, left, undo):
        self.kind, self.detail, self.part, self.left, self.undo = kind, detail, part, left, undo


class Chaos:
    def __init__(self, lab, rng, domains, wait, log):
        self.lab, self.rng, self.wait, self.log = lab, rng, wait, log
        self.domains = [f"c{i}" for i in range(1, domains + 1)]
        self.counts = {}
        self.violations = []
        self.recoveries = {}
        self.faults = []
        self.ended = []            # faults undone since service was last measured back
        self.undone_at = None      # when the last of them was undone
        self.recent = None         # the part (host, router, broker) of the latest fault
        self.overlapping = 0       # ends of service that more than one fault took part in
        self.history = []

    # --- the layout -------------------------------------------------------------------------
    def define_all(self, host, start):
        """Defines every domain on `host` (shut off) and starts those in `start`, in one virsh run."""
        commands = []
        for number, name in enumerate(self.domains, 1):
            path = f"{self.lab.dir}/{host}/{name}.xml"
            with open(path, "w") as xml:
                xml.write(f"<domain type='test'><name>{name}</name><uuid>c4a05000-0000-4000-8000-{number:012x}</uuid>"
                          "<memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>")
            commands.append(f"define {path}")
        commands += [f"start {name}" for name in start]
        self.lab.virsh(host, "; ".join(commands))

    def setup(self):
        for index, host in enumerate(self.lab.hosts):
            self.define_all(host, [d for n, d in enumerate(self.domains) if n % (len(self.lab.hosts) + 1) == index])
        # Every router knows every domain before the first step.
        end = time.monotonic() + 60
        while time.monotonic() < end:
            result = sh("ip", "netns", "exec", self.lab.ns("g1"), "fence_xvm", "-k", f"{self.lab.dir}/fence_xvm.key",
                        "-o", "list", "-t", "5", check=False)
            if all(f"{d} " in result.stdout or result.stdout.startswith(d) for d in self.domains):
                return
            time.sleep(0.5)
        raise RuntimeError("the routers never listed every domain")

    # --- faults -----------------------------------------------------------------------------
    def start_fault(self):
        """Brings about one fault; a lasting one (killed, frozen, cut off) is undone a few steps
        later, and at most two overlap, never on the same part."""
        rng, lab = self.rng, self.lab
        kind = rng.choice(["agent-kill", "agent-freeze", "router-kill", "broker-stop", "link-cut",
                           "libvirtd-restart", "migrate", "external-start", "external-stop"])
        busy = {fault.part for fault in self.faults}
        host = rng.choice([h for h in lab.hosts if h not in busy] or lab.hosts)
        steps = rng.randint(1, 4)
        if host in busy or (kind == "broker-stop" and "broker" in busy):
            return
        fault = None
        if kind == "agent-kill":
            lab.run("stop", f"agent-{host}")
            fault = Fault(kind, host, host, steps, lambda: lab.run("start", f"agent-{host}"))
        elif kind == "agent-freeze":
            pid = lab.pid(f"agent-{host}")
            os.kill(pid, signal.SIGSTOP)
            fault = Fault(kind, host, host, steps, lambda: os.kill(pid, signal.SIGCONT))
        elif kind == "router-kill":
            router = rng.choice([r for r in lab.routers if r not in busy] or [None])
            if router is None:
                return
            lab.run("stop", f"router-{router}")
            fault = Fault(kind, router, router, rng.randint(0, 3), lambda: lab.run("start", f"router-{router}"))
        elif kind == "broker-stop":
            lab.run("stop", "broker")
            fault = Fault(kind, "broker", "broker", steps, lambda: lab.run("start", "broker"))
        elif kind == "link-cut":
            lab.link(host, False)
            fault = Fault(kind, host, host, steps, lambda: lab.link(host, True))
        elif kind == "libvirtd-restart":
            running = [d for d in self.domains if host in alive_on(lab.truth(), d)]
            lab.run("stop", f"libvirtd-{host}")
            lab.run("start", f"libvirtd-{host}")
            self.define_all(host, running)
            fault = Fault(kind, f"{host} {' '.join(running) or '-'}", host, 0, None)
        else:
            truth = lab.truth()
            if kind == "migrate":
                movable = [d for d in self.domains if len(alive_on(truth, d)) == 1 and alive_on(truth, d)[0] not in busy]
                if not movable:
                    return
                domain = rng.choice(movable)
                source = alive_on(truth, domain)[0]
                lab.virsh(host if host != source else rng.choice([h for h in lab.hosts if h != source]), "start", domain)
                target = alive_on(lab.truth(), domain)
                lab.virsh(source, "destroy", domain)
                fault = Fault(kind, f"{domain} {source}->{','.join(h for h in target if h != source)}", source, 0, None)
            elif kind == "external-start":
                stopped = [d for d in self.domains if not alive_on(truth, d)]
                if not stopped:
                    return
                domain = rng.choice(stopped)
                lab.virsh(host, "start", domain)
                fault = Fault(kind, f"{domain} on {host}", host, 0, None)
            else:
                running = [d for d in self.domains if alive_on(truth, d) and alive_on(truth, d)[0] not in busy]
                if not running:
                    return
                domain = rng.choice(running)
                lab.virsh(alive_on(truth, domain)[0], "destroy", domain)
                fault = Fault(kind, domain, alive_on(truth, domain)[0], 0, None)
        self.faults.append(fault)
        self.recent = fault.part
        self.history.append(f"fault {kind} {fault.detail} for {fault.left} step(s)")
        self.log(self.history[-1])

    def end_faults(self, everything=False):
        """Undoes the faults whose time is up; the moment the last one ends is when service
        should come back."""
        due = [f for f in self.faults if everything or f.left <= 0]
        # A daemon does not start while its broker is unreachable (fence-routerd and fence-hostd
        # give up after 10 s without -w; systemd would start them again until they can): a killed
        # agent or router comes back only once the broker and its host's link are back.
        away = {f.part for f in self.faults if f.kind in ("broker-stop", "link-cut") and f not in due}
        due = [f for f in due if not (f.kind in ("agent-kill", "router-kill") and ("broker" in away or f.part in away))]
        # The broker and the links come back before the daemons that need them.
        for fault in sorted(due, key=lambda f: f.kind not in ("broker-stop", "link-cut")):
            if fault.undo:
                fault.undo()
                self.history.append(f"undone {fault.kind} {fault.detail}")
            self.faults.remove(fault)
            self.ended.append(fault)
            self.recent = fault.part
        if self.ended and not self.faults:
            self.undone_at = time.monotonic()

    def measure_recovery(self):
        """After the request that follows the end of the faults (the worst moment is when
        things come back), how long from that end until every status is right again."""
        if self.faults or not self.ended:
            return
        back = self.recovery(self.undone_at)
        for kind in {f.kind for f in self.ended}:
            self.recoveries.setdefault(kind, []).append(back)
        self.overlapping += len(self.ended) > 1
        self.ended = []

    def recovery(self, started):
        """Seconds from `started` until status of every domain is answered right (None: not within 60 s)."""
        pending = list(self.domains)
        while time.monotonic() - started < 60:
            truth = self.lab.truth()
            for domain in list(pending):
                code, _ = self.lab.xvm("status", domain, 3)
                alive = bool(alive_on(truth, domain))
                if (code == 0 and alive) or (code == 2 and not alive):
                    pending.remove(domain)
                else:
                    break
            if not pending:
                return time.monotonic() - started
            time.sleep(0.1)
        return None

    # --- requests ---------------------------------------------------------------------------
    def request(self):
        action = self.rng.choices(["status", "off", "on", "reboot"], weights=[4, 2, 2, 2])[0]
        before = self.lab.truth()
        # Half the time, a domain that runs on the host of the latest fault.
        near = [d for d in self.domains if self.recent in alive_on(before, d)]
        domain = self.rng.choice(near if near and self.rng.random() < 0.5 else self.domains)
        code, elapsed = self.lab.xvm(action, domain, self.wait)
        after = self.lab.truth()
        verdict = self.judge(action, domain, code, elapsed, before, after)
        self.counts[(action, verdict)] = self.counts.get((action, verdict), 0) + 1
        self.history.append(f"{action} {domain} -> {code} ({verdict}, {elapsed:.2f} s)")
        self.log(self.history[-1])
        if verdict == "FALSE SUCCESS" or any(len(alive_on(after, d)) > 1 for d in self.domains):
            self.violations.append({
                "step": len(self.history), "action": action, "domain": domain, "exit": code,
                "before": before.get(domain), "after": after.get(domain),
                "split": {d: alive_on(after, d) for d in self.domains if len(alive_on(after, d)) > 1},
                "recent": self.history[-12:],
            })

    def judge(self, action, domain, code, elapsed, before, after):
        alive = alive_on(after, domain)
        if code is None or (code == 1 and elapsed >= self.wait - 0.5):
            return "timeout"
        if code == 1:
            return "failure"
        if action == "status":
            if code == 2:
                return "right" if not alive else "FALSE SUCCESS"
            return "right" if alive else "wrong ON"
        if code != 0:
            return f"exit {code}"
        if action == "off":
            return "right" if not alive else "FALSE SUCCESS"
        if action == "on":
            return "right" if len(alive) == 1 else "FALSE SUCCESS"
        # reboot: no run it found may go on (same host, same id); never two runs.
        runs_before = {(host, run[1]) for host, run in before.get(domain, {}).items() if run[0] not in ALIVE_NOT}
        runs_after = {(host, run[1]) for host, run in after.get(domain, {}).items() if run[0] not in ALIVE_NOT}
        if runs_before & runs_after or len(alive) > 1:
            return "FALSE SUCCESS"
        return "right" if alive else "right (left off)"

    def step(self):
        for fault in self.faults:
            fault.left -= 1
            # A daemon starts only once it reaches the broker (as systemd retries it until then):
            # one killed while the broker or its host's link is down comes back after them.
            if fault.kind in ("agent-kill", "router-kill") and fault.left <= 0 and any(
                    other.kind == "broker-stop" or (other.kind == "link-cut" and other.part == fault.part) for other in self.faults):
                fault.left = 1
        self.end_faults()
        if len(self.faults) < 2 and self.rng.random() < 0.3:
            self.start_fault()
            self.end_faults()
        self.request()
        self.measure_recovery()

    def finish(self):
        self.end_faults(everything=True)
        self.measure_recovery()


def summary(chaos, ops, seed, elapsed):
    """What a run found, as plain data (written by --json, added up by --merge)."""
    return {"seed": seed, "ops": ops, "elapsed": elapsed, "hosts": len(chaos.lab.hosts), "routers": len(chaos.lab.routers),
            "domains": len(chaos.domains), "false_successes": len(chaos.violations), "overlapping": chaos.overlapping,
            "counts": {f"{a} {v}": n for (a, v), n in chaos.counts.items()}, "recoveries": chaos.recoveries,
            "violations": chaos.violations}


def table(runs):
    """The tables of one run, or of several added up."""
    ops = sum(run["ops"] for run in runs)
    seeds = ", ".join(str(run["seed"]) for run in runs)
    first = runs[0]
    lines = [f"chaos: {ops} requests, seed{'s' if len(runs) > 1 else ''} {seeds}, {first['hosts']} hosts, {first['routers']} routers, "
             f"{first['domains']} domains on shared storage, {sum(run['elapsed'] for run in runs):.0f} s", "",
             "| request | right | false successes | wrong ON | failures | timeouts |", "|---|---:|---:|---:|---:|---:|"]
    lines[1:1] = [f"(stopped early, seed {run['seed']}: the lab failed {run['aborted']})" for run in runs if run.get("aborted")]
    for action in ["status", "off", "on", "reboot"]:
        count = lambda *verdicts: sum(run["counts"].get(f"{action} {v}", 0) for run in runs for v in verdicts)
        lines.append(f"| {action} | {count('right', 'right (left off)')} | {count('FALSE SUCCESS')} | {count('wrong ON')} | "
                     f"{count('failure')} | {count('timeout')} |")
    lines += ["", f"| fault (counted in every outage it took part in; {sum(run['overlapping'] for run in runs)} outages had several) | times "
              "| service back after the outage ended, median (s) | max (s) | not back within 60 s |", "|---|---:|---:|---:|---:|"]
    recoveries = {}
    for run in runs:
        for kind, times in run["recoveries"].items():
            recoveries.setdefault(kind, []).extend(times)
    for kind, times in sorted(recoveries.items()):
        back = [t for t in times if t is not None]
        median = f"{statistics.median(back):.2f}" if back else "-"
        worst = f"{max(back):.2f}" if back else "-"
        lines.append(f"| {kind} | {len(times)} | {median} | {worst} | {len(times) - len(back)} |")
    lines += ["", f"false successes: {sum(run['false_successes'] for run in runs)}"]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", help="where fence-routerd, fence-hostd and fencectl are")
    parser.add_argument("--ops", type=int, default=200, help="fence_xvm requests (faults come between them)")
    parser.add_argument("--minutes", type=float, default=None, help="stop after this long, with fewer requests if need be")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="print the tables of several --json runs added up, and exit")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--routers", type=int, default=2)
    parser.add_argument("--domains", type=int, default=6)
    parser.add_argument("--request-timeout", type=int, default=3, help="the routers' request_timeout (s)")
    parser.add_argument("--json", help="also write the counts here")
    parser.add_argument("--quiet", action="store_true")
    options = parser.parse_args()
    if options.merge:
        runs = []
        for path in options.merge:
            with open(path) as run:
                runs.append(json.load(run))
        print(table(runs))
        return 1 if any(run["false_successes"] for run in runs) else 0
    if not options.bin:
        parser.error("--bin is required")
    # Stopped from outside (a test's time limit), it still takes its lab down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(1 << 31)
    rng = random.Random(seed)
    print(f"chaos: seed {seed}", flush=True)
    work = tempfile.mkdtemp(prefix="fr-chaos.")
    lab = None
    chaos = None
    keep = False
    aborted = None
    done = 0
    started = time.monotonic()
    try:
        lab = Lab(f"{work}/lab", options.bin, options.hosts, options.routers, options.request_timeout)
        chaos = Chaos(lab, rng, options.domains, options.request_timeout + 4,
                      (lambda line: None) if options.quiet else (lambda line: print(line, flush=True)))
        chaos.setup()
        try:
            while done < options.ops and (options.minutes is None or time.monotonic() - started < options.minutes * 60):
                chaos.step()
                done += 1
                if not options.quiet and done % 50 == 0:
                    print(f"{done} requests, {len(chaos.violations)} false successes", flush=True)
            chaos.finish()
        except subprocess.CalledProcessError as error:
            # The lab itself failed (a part that would not start again): what was judged until
            # then still counts; the run says where it stopped and why, and keeps the logs.
            aborted = f"after {done} requests: {' '.join(map(str, error.cmd))} exited {error.returncode}"
            print(f"chaos: the lab failed {aborted}\n{error.stderr}", flush=True)
        result = summary(chaos, done, seed, time.monotonic() - started)
        if aborted:
            result["aborted"] = aborted
        print(table([result]), flush=True)
        for violation in chaos.violations:
            print("FALSE SUCCESS:", json.dumps(violation, indent=1), flush=True)
        if options.json:
            with open(options.json, "w") as out:
                json.dump(result, out, indent=1)
        keep = bool(chaos.violations) or aborted is not None
        if keep:
            for log in sorted(os.listdir(f"{lab.dir}/logs")):
                if log.endswith(".log") and log.split("-")[0] in ("router", "agent"):
                    with open(f"{lab.dir}/logs/{log}") as text:
                        print(f"--- the last lines of {log}:\n" + "".join(text.readlines()[-40:]), flush=True)
        return 1 if chaos.violations else (2 if aborted else 0)
    finally:
        if lab:
            lab.down()
        if keep:
            print(f"the lab's logs are kept in {work}/lab/logs", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
