import Foundation
import Testing
import TestSupport

private func uuid(_ number: Int) -> String { String(format: "0a0a0a0a-0000-4000-8000-%012x", number) }

/// The real fence_xvm against fence-routerd's amqp backend in the multi-host lab (Deploy/lab/lab.sh):
/// every row of the routing table (Docs/routing.md) and the failures around it. Every success is
/// checked against the state virsh reads from that host's libvirtd.
@Suite("Routed fencing in the multi-host lab", .serialized, .enabled(if: TestEnvironment.shouldRun(MultiHostLab.prerequisites), "needs root, libvirtd, rabbitmq-server and fence-virt"))
struct RoutedFencingTests {
    @Test("routing table: one host, a live migration, defined off, unknown, on where defined, reboot where it ran, a name two domains share")
    func routingTable() async throws {
        try await MultiHostLab.with(hosts: 3) { lab in
            try await lab.define("hv1", "alpha", uuid: uuid(1))
            try await lab.define("hv2", "beta", uuid: uuid(2))
            try await lab.define("hv3", "gamma", uuid: uuid(3), running: false)
            try await lab.define("hv2", "delta", uuid: uuid(4), running: false)
            try await lab.waitUntilListed("gamma", on: false)
            try await lab.waitUntilListed("alpha", on: true)

            // Running on exactly one live host: the action goes there, and only there.
            #expect(try await lab.status("alpha") == 0)
            #expect(try await lab.fence("off", "alpha") == 0)
            #expect(try await lab.state("hv1", "alpha") == "shut off")
            #expect(try await lab.status("alpha") == 2)
            #expect(try await lab.state("hv2", "beta") == "running", "nothing else touched")

            // Defined only as shut off on live hosts: off succeeds, status answers off, nothing started.
            #expect(try await lab.fence("off", "gamma") == 0)
            #expect(try await lab.status("gamma") == 2)
            #expect(try await lab.state("hv3", "gamma") == "shut off")

            // On starts the domain on the host that holds its definition.
            #expect(try await lab.fence("on", "gamma") == 0)
            #expect(try await lab.state("hv3", "gamma") == "running")
            #expect(try await lab.status(uuid(3)) == 0)

            // Defined on two hosts (shared storage), running on one: off reaches both, on starts it where it last ran.
            try await lab.define("hv1", "zeta", uuid: uuid(6), running: false)
            try await lab.define("hv2", "zeta", uuid: uuid(6))
            try await lab.waitUntilListed("zeta", on: true)
            #expect(try await lab.fence("off", "zeta") == 0)
            #expect(try await lab.state("hv2", "zeta") == "shut off")
            #expect(try await lab.fence("on", "zeta") == 0)
            #expect(try await lab.state("hv2", "zeta") == "running")
            #expect(try await lab.state("hv1", "zeta") == "shut off")

            // Reboot: off, then on at the same host.
            let before = try await lab.domainID("hv2", "beta")
            #expect(try await lab.fence("reboot", "beta") == 0)
            #expect(try await lab.state("hv2", "beta") == "running")
            #expect(try await lab.domainID("hv2", "beta") != before, "it really restarted")
            #expect(try await lab.fence("reboot", "delta") == 0, "reboot of an off domain succeeds")
            #expect(try await lab.state("hv2", "delta") == "shut off", "and it stays off")

            // Running on two hosts (a live migration under way): status on; off destroys both.
            try await lab.run("virsh", "hv2", "dumpxml", "beta")
            let xml = try await lab.run("virsh", "hv2", "dumpxml", "beta").output
            try xml.write(toFile: "\(lab.path)/hv3/beta.xml", atomically: true, encoding: .utf8)
            try await lab.run("virsh", "hv3", "define", "\(lab.path)/hv3/beta.xml")
            try await lab.run("virsh", "hv3", "start", "beta")
            try await lab.waitForChange("beta", on: "hv3", "running")
            #expect(try await lab.status("beta") == 0)
            #expect(try await lab.fence("off", "beta") == 0)
            #expect(try await lab.state("hv2", "beta") == "shut off")
            #expect(try await lab.state("hv3", "beta") == "shut off")

            // Unknown everywhere while every host is live: off fails, status answers off.
            #expect(try await lab.fence("off", "ghost") == 1)
            #expect(try await lab.status("ghost") == 2)

            // A migration through the hosts: the router follows it, and acts where it runs now.
            try await lab.define("hv1", "epsilon", uuid: uuid(5))
            try await lab.waitUntilListed("epsilon", on: true)
            try await lab.migrate("epsilon", from: "hv1", to: "hv3")
            try await lab.waitForChange("epsilon", on: "hv3", "running")
            try await lab.waitForChange("epsilon", on: "hv1", "removed")
            #expect(try await lab.fence("off", "epsilon") == 0)
            #expect(try await lab.state("hv3", "epsilon") == "shut off")
            #expect(try await lab.state("hv1", "epsilon") == nil)
            #expect(try await lab.fence("on", "epsilon") == 0)
            #expect(try await lab.state("hv3", "epsilon") == "running", "started where it is defined now")

            // One name, two different domains: the name is refused for every action, the UUID works.
            try await lab.define("hv1", "twin", uuid: uuid(7))
            try await lab.define("hv3", "twin", uuid: uuid(8))
            try await waitUntil("both twins known to the router", every: .milliseconds(200)) {
                let first = try await lab.status(uuid(7)), second = try await lab.status(uuid(8))
                return first == 0 && second == 0
            }
            #expect(try await lab.fence("off", "twin") == 1)
            #expect(try await lab.status("twin") == 1)
            #expect(try await lab.state("hv1", "twin") == "running")
            #expect(try await lab.state("hv3", "twin") == "running", "neither touched")
            #expect(try await lab.fence("off", uuid(8)) == 0)
            #expect(try await lab.state("hv3", "twin") == "shut off")
            #expect(try await lab.state("hv1", "twin") == "running")
        }
    }

    @Test("a host gone silent: off, reboot and status fail — never off — until an operator confirms it down (another host cannot)")
    func staleHost() async throws {
        try await MultiHostLab.with(hosts: 3) { lab in
            try await lab.define("hv1", "alpha", uuid: uuid(1))
            try await lab.define("hv2", "beta", uuid: uuid(2))
            try await lab.waitUntilListed("alpha", on: true)
            try await lab.stop("agent-hv1")
            try await waitUntil("hv1 stale on the router") { try await lab.metrics("router-hv1")[#"fence_hosts{state="stale"}"#] == 1 }
            #expect(try await lab.status("alpha") == 1)
            #expect(try await lab.fence("off", "alpha") == 1)
            #expect(try await lab.fence("reboot", "alpha") == 1)
            #expect(try await lab.state("hv1", "alpha") == "running", "nothing was done")
            #expect(try await lab.status("ghost") == 1, "unknown while a host is stale: failure, not off")
            #expect(try await lab.status("beta") == 0, "domains on live hosts are still served")

            let refused = try await lab.fencectl(on: "hv2", "host", "confirm-down", "hv1")
            #expect(refused.status != 0)
            // hv3 compromised (root there: the bus key and hv3's identity key) states hv1 down, in
            // the operator's name and in its own: the routers drop both, and hv1's domains stay
            // unknown. (With one shared bus key, either made alpha answer OFF while it ran.)
            let stolen = "\(lab.path)/hv3/identity.key"
            for (name, reason) in [("lab", "bad-signature"), ("hv3", "unknown-sender")] {
                let forged = try await lab.fencectl(on: "hv3", "host", "confirm-down", "hv1", "--yes", "--operator", name, "--operator-key", stolen)
                #expect(forged.status == 0, "fencectl cannot know whether the routers believe it: \(forged)")
                try await lab.waitForLog("router-hv1", "reason=\(reason)")
            }
            #expect(try await lab.status("alpha") == 1, "a host cannot state another one down")
            #expect(!lab.log("router-hv1").contains("change=confirm-down"))
            #expect(try await lab.fencectl(on: "hv2", "host", "confirm-down", "hv1", "--yes").status == 0)
            try await lab.waitForLog("router-hv1", "change=confirm-down")
            #expect(try await lab.status("alpha") == 2)
            #expect(try await lab.fence("off", "alpha") == 0)
            #expect(lab.log("router-hv1").contains("change=confirm-down"))

            // The host speaks again: the confirmation ends, and its domains are served as they are.
            try await lab.start("agent-hv1")
            try await lab.waitUntilListed("alpha", on: true)
            #expect(try await lab.status("alpha") == 0)

            // hv1 fails again, unconfirmed, and the router restarts: the confirmation that ended
            // when hv1 spoke does not come back from hosts.json.
            try await lab.stop("agent-hv1")
            try await lab.stop("router-hv1")
            try await lab.start("router-hv1")
            try await lab.waitForLog("router-hv1", "inventory trusted")
            #expect(try await lab.status("alpha") == 1)
            #expect(try await lab.fence("off", "alpha") == 1)
            #expect(try await lab.state("hv1", "alpha") == "running")
        }
    }

    @Test("shared storage: a router restarted while the agent of the host that runs the domain is down answers failure, never off")
    func restartWhileAgentDown() async throws {
        try await MultiHostLab.with(hosts: 3) { lab in
            // Defined on every host, running on hv2.
            try await lab.define("hv1", "shared", uuid: uuid(7), running: false)
            try await lab.define("hv3", "shared", uuid: uuid(7), running: false)
            try await lab.define("hv2", "shared", uuid: uuid(7))
            try await lab.waitUntilListed("shared", on: true)
            try await lab.stop("agent-hv2")
            try await lab.stop("router-hv1")
            try await lab.start("router-hv1")
            try await lab.waitForLog("router-hv1", "inventory trusted")
            try await lab.waitUntilListed("shared", on: false)   // hv1 and hv3 are live again
            #expect(try await lab.fence("off", "shared") == 1)
            #expect(try await lab.status("shared") == 1)
            #expect(try await lab.fence("reboot", "shared") == 1)
            #expect(try await lab.fence("on", "shared") == 1, "starting it could make two copies run")
            #expect(try await lab.state("hv2", "shared") == "running")
            #expect(try await lab.state("hv1", "shared") == "shut off")
            #expect(try await lab.state("hv3", "shared") == "shut off")
            // hv2's agent back: the usual answers, confirmed where it runs.
            try await lab.start("agent-hv2")
            try await lab.waitUntilListed("shared", on: true)
            #expect(try await lab.status("shared") == 0)
            #expect(try await lab.fence("off", "shared") == 0)
            #expect(try await lab.state("hv2", "shared") == "shut off")
        }
    }

    @Test("list spans every live host; fencectl inventory shows each domain's host; learned hosts are kept across a router restart until forgotten")
    func listAndExpectedHosts() async throws {
        try await MultiHostLab.with(hosts: 3) { lab in
            try await lab.define("hv1", "alpha", uuid: uuid(1))
            try await lab.define("hv2", "beta", uuid: uuid(2))
            try await lab.define("hv3", "gamma", uuid: uuid(3), running: false)
            try await lab.waitUntilListed("gamma", on: false)
            let rows = try await lab.listed()
            #expect(rows["alpha"] == "on" && rows["beta"] == "on" && rows["gamma"] == "off")

            let inventory = try await lab.fencectl(on: "hv1", "inventory", "--json")
            #expect(inventory.status == 0)
            for (name, host) in [("alpha", "hv1"), ("beta", "hv2"), ("gamma", "hv3")] {
                #expect(inventory.output.contains(#""name":"\#(name)","uuid":"\#(uuid(Int(host.dropFirst(2))!))""#) && inventory.output.contains(#""host":"\#(host)""#), "\(name) on \(host)")
            }
            #expect(inventory.output.components(separatedBy: #""liveness":"live""#).count - 1 == 3)

            // hv3 falls silent; the router, restarted, still expects it: absence cannot be vouched for.
            try await lab.stop("agent-hv3")
            try await lab.stop("router-hv1")
            try await lab.start("router-hv1")
            // Past its warm-up, with hv1 and hv2 live again: only hv3's silence leaves absence unknown.
            try await lab.waitForLog("router-hv1", "inventory trusted")
            try await waitUntil("hv1 and hv2 live on the restarted router") {
                try await lab.metrics("router-hv1")[#"fence_hosts{state="live"}"#] == 2
            }
            #expect(try await lab.status("alpha") == 0)
            #expect(try await lab.status("ghost") == 1)
            #expect(try await lab.status("gamma") == 1)
            #expect(try await lab.fencectl(on: "hv1", "host", "forget", "hv3").status != 0, "forgetting needs --yes")
            #expect(try await lab.fencectl(on: "hv1", "host", "forget", "hv3", "--yes").status == 0)
            try await lab.waitForLog("router-hv1", "change=forget")
            #expect(try await lab.status("ghost") == 2)
            #expect(try await lab.status("gamma") == 2, "gone with its host")
            // Forgotten for good: a restart does not bring hv3 back.
            try await lab.stop("router-hv1")
            try await lab.start("router-hv1")
            try await lab.waitForLog("router-hv1", "inventory complete")
            #expect(try await lab.status("ghost") == 2)
        }
    }

    @Test("an agent killed during a request: the request fails, never succeeds")
    func agentKilled() async throws {
        try await MultiHostLab.with(hosts: 2) { lab in
            try await lab.define("hv2", "beta", uuid: uuid(2))
            try await lab.waitUntilListed("beta", on: true)
            let agent = try await lab.pid("agent-hv2")
            kill(agent, SIGKILL)
            // The router still counts hv2 live for a moment: the command goes out and nobody answers.
            #expect(try await lab.fence("off", "beta", timeout: 25) == 1)
            #expect(try await lab.waitForAnswers("router-hv1", op: "off", domain: "beta").allSatisfy { $0.hasPrefix("failed") })
            #expect(try await lab.state("hv2", "beta") == "running")
            // The agent comes back: the command waiting in its queue is past its deadline and never runs.
            try await lab.start("agent-hv2")
            try await lab.waitUntilListed("beta", on: true)
            try await Task.sleep(for: .seconds(1))
            #expect(try await lab.state("hv2", "beta") == "running")
            #expect(!lab.log("agent-hv2").contains("outcome=success"))
        }
    }

    @Test("an agent killed and started again while the router waits for it: the command goes again, and the new run refuses the copy (whether the old run acted is unknown): failure at once, nothing executed")
    func agentBackDuringRequest() async throws {
        // Margin for a loaded machine: hv2 stays live (10 s) past its agent's death until the
        // command is out, and the request lives (30 s) until the agent is back and has refused
        // the copy; the client waits longer than the router.
        try await MultiHostLab.with(hosts: 2, hostFreshness: 10, requestTimeout: 30) { lab in
            try await lab.define("hv2", "beta", uuid: uuid(2))
            try await lab.waitUntilListed("beta", on: true)
            try await lab.kill("agent-hv2")
            async let answer = lab.fence("off", "beta", timeout: 45)
            // The command is out, and no subscription of hv2's takes it: the broker drops it.
            try await waitUntil("the router waits for hv2's answer", within: .seconds(10)) {
                try await lab.metrics("router-hv1")["fence_commands_in_flight"] == 1
            }
            try await lab.start("agent-hv2")
            #expect(try await answer == 1)
            #expect(try await lab.state("hv2", "beta") == "running")
            #expect(lab.log("router-hv1").contains("commands in flight to it go again"))
            #expect(lab.log("agent-hv2").contains("agent-restarted"), "the copy named the earlier run")
            #expect(!lab.log("agent-hv2").contains("outcome=success"))
            let answered = try #require(try await lab.waitForAnswers("router-hv1", op: "off", domain: "beta").first)
            #expect(answered.hasPrefix("failed(") && !answered.hasPrefix("failed(timed-out)"), "answered on the refusal, not at the deadline: \(answered)")
        }
    }

    @Test("an agent frozen with a command in flight: the router answers failure at its deadline; the agent, thawed, refuses the late command")
    func agentFrozen() async throws {
        // hv2 stays live (10 s) past the freeze until the command is out, on a loaded machine too.
        try await MultiHostLab.with(hosts: 2, hostFreshness: 10) { lab in
            try await lab.define("hv2", "beta", uuid: uuid(2))
            try await lab.waitUntilListed("beta", on: true)
            let agent = try await lab.pid("agent-hv2")
            kill(agent, SIGSTOP)
            #expect(try await lab.fence("off", "beta", timeout: 25) == 1)
            #expect(try await lab.waitForAnswers("router-hv1", op: "off", domain: "beta").first?.hasPrefix("failed(timed-out)") == true, "answered by the router's deadline, not the client's")
            kill(agent, SIGCONT)
            try await lab.waitUntilListed("beta", on: true)
            try await Task.sleep(for: .seconds(1))
            #expect(try await lab.state("hv2", "beta") == "running", "the late command was not executed")
            #expect(!lab.log("agent-hv2").contains("outcome=success"))
        }
    }

    @Test("the broker stopped: failure within the deadline; correct answers once it is back")
    func brokerDown() async throws {
        try await MultiHostLab.with(hosts: 2) { lab in
            try await lab.define("hv2", "beta", uuid: uuid(2))
            try await lab.waitUntilListed("beta", on: true)
            try await lab.stop("broker")
            let started = ContinuousClock.now
            #expect(try await lab.fence("off", "beta", timeout: 25) == 1)
            #expect(try await lab.status("beta") == 1)
            #expect(ContinuousClock.now - started < .seconds(40), "each within the router's deadline")
            #expect(try await lab.state("hv2", "beta") == "running")
            try await lab.start("broker")
            try await lab.waitUntilListed("beta", on: true, within: .seconds(40))
            try await lab.waitUntilLive(2)
            #expect(try await lab.fence("off", "beta") == 0)
            #expect(try await lab.state("hv2", "beta") == "shut off")
        }
    }

    @Test("a router restarted asks its hosts for snapshots and answers correctly again")
    func routerRestart() async throws {
        // A warm-up of 10 s, not 3: the first status must reach the restarted router within it.
        try await MultiHostLab.with(hosts: 2, warmUp: 10) { lab in
            try await lab.define("hv2", "beta", uuid: uuid(2))
            try await lab.waitUntilListed("beta", on: true)
            try await lab.stop("router-hv1")
            try await lab.start("router-hv1")
            // Just restarted: it cannot vouch that anything is absent yet.
            #expect(try await lab.status("ghost") == 1)
            // It asked every host it expects for a snapshot, instead of waiting for the periodic ones.
            try await lab.waitForLog("agent-hv1", "reason=asked by router-hv1")
            try await lab.waitForLog("agent-hv2", "reason=asked by router-hv1")
            try await lab.waitForLog("router-hv1", "inventory complete")
            #expect(try await lab.status("beta") == 0)
            #expect(try await lab.status("ghost") == 2)
            #expect(try await lab.fence("off", "beta") == 0)
            #expect(try await lab.state("hv2", "beta") == "shut off")
        }
    }

    @Test("fencectl fence from a host, without a guest: multicast through the router, answers as fence_xvm's; the metrics count it")
    func fencectlFence() async throws {
        try await MultiHostLab.with(hosts: 2) { lab in
            try await lab.define("hv2", "beta", uuid: uuid(2))
            try await lab.waitUntilListed("beta", on: true)
            let offDone = "fence_requests_total{op=\"off\",outcome=\"success\",reason=\"\"}"
            let agentOff = "fence_agent_commands_total{op=\"off\",outcome=\"success\",repeated=\"false\"}"
            // Both live (a loaded machine can hold heartbeats back past the freshness for a moment:
            // seen right after another lab's brokers stopped).
            try await lab.waitUntilLive(2)
            let before = try await lab.metrics("router-hv1")
            #expect(before[offDone] == nil)
            #expect(before["fence_hosts{state=\"live\"}"] == 2, "\(before)")
            #expect(before["fence_bus_connected"] == 1)
            // The build that answers, as its --version says ("fence-routerd 0.9.0 (commit …)"),
            // on the router and (below) the agent.
            let version = try await Command.check([try Products.path("fence-routerd"), "--version"]).output
                .trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ")
            try #require(version.count == 2 || version.count == 4, "fence-routerd --version: \(version)")
            let commit = version.count == 4 ? String(version[3].dropLast()) : ""
            let buildInfo = "fence_router_build_info{version=\"\(version[1])\",commit=\"\(commit)\"}"
            #expect(before[buildInfo] == 1, "\(buildInfo) in \(before)")
            #expect((before["fence_bus_connections_total"] ?? 0) >= 1)
            let status = try await lab.fencectl(on: "hv1", "fence", "beta", "--action", "status")
            #expect(status.status == 0 && status.output.contains("status beta: on"), "\(status)")
            let off = try await lab.fencectl(on: "hv1", "fence", "beta", "--action", "off", "--json")
            #expect(off.status == 0 && off.output.contains("\"result\":\"done\""), "\(off)")
            #expect(try await lab.state("hv2", "beta") == "shut off")
            #expect(try await lab.fencectl(on: "hv1", "fence", "beta", "--action", "status").status == 2)
            #expect(try await lab.fencectl(on: "hv1", "fence", "ghost", "--action", "off").status == 1, "unknown everywhere: off fails")
            // The router logs and counts a request after answering it (the duration last).
            try await waitUntil("the router counted the two offs and the two statuses") {
                let counted = try await lab.metrics("router-hv1")
                return ["off", "status"].allSatisfy { (counted["fence_request_duration_seconds_count{op=\"\($0)\"}"] ?? 0) >= 2 }
            }
            #expect(lab.answers("router-hv1", op: "off", domain: "beta").count == 1, "the router served the off once")

            let after = try await lab.metrics("router-hv1")
            #expect(after[offDone] == 1, "\(after)")
            #expect(after["fence_requests_total{op=\"status\",outcome=\"off\",reason=\"\"}"] == 1)
            #expect(after["fence_requests_total{op=\"off\",outcome=\"failed\",reason=\"not-found\"}"] == 1, "\(after)")
            #expect(after["fence_request_duration_seconds_count{op=\"off\"}"] == 2)
            #expect(after["fence_command_rtt_seconds_count{host=\"hv2\"}"].map { $0 >= 3 } == true, "status, off, status went to hv2: \(after)")
            let agent = try await lab.metrics("agent-hv2")
            #expect(agent[agentOff] == 1, "\(agent)")
            #expect(agent[buildInfo] == 1, "\(buildInfo) in \(agent)")
            // The domain count is that of the last snapshot: one comes every interval (5 s).
            try await waitUntil("a snapshot of hv2's one domain counted", every: .milliseconds(500)) {
                try await lab.metrics("agent-hv2")["fence_agent_snapshot_domains"] == 1
            }
            #expect((agent["fence_agent_published_total{kind=\"heartbeat\"}"] ?? 0) > 0)
        }
    }

    @Test("libvirtd restarted under an agent: requests in between fail, then the agent reconnects and republishes")
    func libvirtdRestart() async throws {
        try await MultiHostLab.with(hosts: 2) { lab in
            try await lab.define("hv2", "beta", uuid: uuid(2))
            try await lab.waitUntilListed("beta", on: true)
            try await lab.stop("libvirtd-hv2")
            try await Task.sleep(for: .seconds(1.5))
            #expect(try await lab.fence("off", "beta") == 1)
            #expect(try await lab.status("beta") == 1)
            try await lab.start("libvirtd-hv2")
            // A restarted hypervisor is a rebooted host: beta is gone until defined again.
            try await lab.define("hv2", "beta", uuid: uuid(2))
            try await lab.waitUntilListed("beta", on: true)
            #expect(lab.log("agent-hv2").contains("reason=libvirt connection 2"))
            #expect(try await lab.fence("off", "beta") == 0)
            #expect(try await lab.state("hv2", "beta") == "shut off")
        }
    }

    @Test("shared storage, libvirtd restarted and the domain started again before its event reaches the router: a reboot restarts it where it really runs")
    func startedBeforeItsEventArrives() async throws {
        // A freshness of 10 s: hv1's agent stays live while frozen below, however slow the steps.
        try await MultiHostLab.with(hosts: 3, hostFreshness: 10) { lab in
            try await lab.define("hv2", "tl", uuid: uuid(8), running: false)
            try await lab.define("hv3", "tl", uuid: uuid(8), running: false)
            try await lab.define("hv1", "tl", uuid: uuid(8))
            try await lab.waitUntilListed("tl", on: true)
            // A host reboot: its libvirtd comes back empty, then the domain is defined and started.
            try await lab.stop("libvirtd-hv1")
            try await lab.start("libvirtd-hv1")
            try await lab.define("hv1", "anchor", uuid: uuid(9))
            try await lab.waitUntilListed("anchor", on: true)   // hv1 is live again, without tl
            try await lab.waitUntilListed("tl", on: false)
            // The start's event is held back (hv1's agent frozen for well under the freshness
            // window) until the router has decided: the answer must not rest on the inventory.
            let agent = try await lab.pid("agent-hv1")
            kill(agent, SIGSTOP)
            var thawed = false
            defer { if !thawed { kill(agent, SIGCONT) } }
            try await lab.define("hv1", "tl", uuid: uuid(8))
            let before = try await lab.domainID("hv1", "tl")
            async let reboot = lab.fence("reboot", "tl")
            try await lab.waitForLog("router-hv1", "op=reboot")
            kill(agent, SIGCONT)
            thawed = true
            #expect(try await reboot == 0)
            #expect(try await lab.state("hv1", "tl") == "running")
            #expect(try await lab.domainID("hv1", "tl") != before, "really restarted, where it ran")
            #expect(try await lab.state("hv2", "tl") == "shut off")
            #expect(try await lab.state("hv3", "tl") == "shut off")
            #expect(try await lab.fence("off", "tl") == 0)
            #expect(try await lab.state("hv1", "tl") == "shut off")
            #expect(try await lab.status("tl") == 2)
        }
    }

    @Test("20 guests fence 20 VMs spread over 5 hosts at once: every one succeeds")
    func twentyOverFiveHosts() async throws {
        try await MultiHostLab.with(hosts: 5, guests: 20) { lab in
            for index in 1...20 {
                try await lab.define("hv\((index - 1) % 5 + 1)", "vm\(index)", uuid: uuid(100 + index))
            }
            try await lab.waitUntilListed("vm20", on: true)
            let codes = try await withThrowingTaskGroup(of: (Int, Int32).self) { group in
                for index in 1...20 {
                    group.addTask { (index, try await lab.fence("off", "vm\(index)", guest: "g\(index)")) }
                }
                return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
            }
            for index in 1...20 {
                #expect(codes[index] == 0, "vm\(index)")
                #expect(try await lab.state("hv\((index - 1) % 5 + 1)", "vm\(index)") == "shut off", "vm\(index)")
            }
        }
    }

    @Test("two routers on one group: one answers, the domain is acted on once")
    func twoRouters() async throws {
        try await MultiHostLab.with(hosts: 3, routers: 2) { lab in
            try await lab.define("hv3", "gamma", uuid: uuid(3))
            try await lab.waitUntilListed("gamma", on: true)
            let before = Int(try await lab.domainID("hv3", "gamma"))!
            #expect(try await lab.fence("reboot", "gamma") == 0)
            #expect(Int(try await lab.domainID("hv3", "gamma")) == before + 1, "rebooted once, not twice")
            // A router logs its answer after sending it.
            func answered() -> [String] { ["router-hv1", "router-hv2"].filter { lab.log($0).contains("op=reboot outcome=success") } }
            try await waitUntil("a router logged its answer") { !answered().isEmpty }
            #expect(answered().count == 1)
        }
    }
}
