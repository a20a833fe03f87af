import Foundation
import Synchronization
import Testing
import TestSupport

private func uuid(_ number: Int) -> String { String(format: "0b0b0b0b-0000-4000-8000-%012x", number) }

extension RoutedFencingTests {
    /// Fences `name` until fence_xvm succeeds (each failure is a correct answer while the bus moves),
    /// at most `limit`; returns how long it took.
    private func fenceUntilDone(_ lab: MultiHostLab, _ action: String, _ name: String, within limit: Duration = .seconds(60)) async throws -> Duration {
        let started = ContinuousClock.now
        try await waitUntil("\(action) \(name) succeeded", within: limit, every: .milliseconds(200)) {
            try await lab.fence(action, name, timeout: 10) == 0
        }
        return ContinuousClock.now - started
    }

    /// One request of the load: when it was sent, and whether it succeeded.
    private struct LoadAnswer: Sendable {
        let sent: ContinuousClock.Instant
        let succeeded: Bool
    }

    /// What the load answered so far, and the test's signal for it to stop.
    private final class LoadLog: Sendable {
        let answers = Mutex<[LoadAnswer]>([])
        let stop = Atomic(false)

        /// Whether a request sent after `start` succeeded.
        func succeeded(after start: ContinuousClock.Instant) -> Bool {
            answers.withLock { answers in answers.contains { $0.succeeded && $0.sent > start } }
        }
    }

    /// Guest g2 fencing `name` on `host` without a pause until the log's stop is raised: the load
    /// under which the nodes die. A reboot while it runs, `on` while it is off (a reboot whose
    /// answer was lost leaves it off, and a reboot of a domain that is off keeps it off). Every
    /// success is checked with that host's libvirtd: after a reboot the run it found is gone,
    /// after an on it runs.
    private func rebootLoad(_ lab: MultiHostLab, _ host: String, _ name: String, log: LoadLog) async throws {
        while !log.stop.load(ordering: .relaxed), !Task.isCancelled {
            let before = try await lab.domainID(host, name)
            let action = before == "-" ? "on" : "reboot"
            let sent = ContinuousClock.now
            // Waiting longer than the router's request_timeout: a request the client gave up on
            // could still be carried out during the next one and make that one's check pass.
            let answer = try await lab.fence(action, name, guest: "g2", timeout: 20)
            if answer == 0 {
                let after = try await lab.domainID(host, name)
                if action == "reboot" {
                    #expect(after != before, "a reboot answered 0 ended the run it found (ids \(before) → \(after))")
                } else {
                    #expect(after != "-", "an on answered 0 started \(name)")
                }
            }
            log.answers.withLock { $0.append(LoadAnswer(sent: sent, succeeded: answer == 0)) }
        }
    }

    @Test("a RabbitMQ cluster of 3: the node the agent is on killed, then the router's; both move on, fencing succeeds again; a command in flight at a kill runs at most once; a restarted node rejoins and takes connections")
    func brokerCluster() async throws {
        // hv2 stays live (10 s) through its agent's freeze below, on a loaded machine too.
        try await MultiHostLab.with(hosts: 2, routers: 1, brokers: 3, hostFreshness: 10) { lab in
            // b1 last: libvirt numbers every start on a host, so its next start takes its id + 1
            // and a second one would take + 2.
            for number in [2, 3, 4, 1] { try await lab.define("hv2", "b\(number)", uuid: uuid(number)) }
            // The load's domain on hv1: starts on hv2 would move the ids b1's check counts on.
            try await lab.define("hv1", "bl", uuid: uuid(99))
            try await lab.waitUntilListed("b4", on: true)
            try await lab.waitUntilListed("bl", on: true)
            // Under load: another guest fences bl all along, through the router's node and hv1's.
            let log = LoadLog()
            async let load: Void = rebootLoad(lab, "hv1", "bl", log: log)
            // After each kill, before the next: the load gets through again. (A fixed window would
            // not do: the next kill can follow within a second when the daemons move at once.)
            func loadSucceeds(after kill: ContinuousClock.Instant, _ number: Int) async throws {
                try await waitUntil("a request of the load sent after kill \(number) succeeded", within: .seconds(60)) {
                    log.succeeded(after: kill)
                }
            }
            // hv1 (the router and an agent) lists the nodes from the first, hv2 from the second.
            #expect(try await lab.attached("router-hv1") == "broker1")
            #expect(try await lab.attached("agent-hv2") == "broker2")

            // A reboot in flight when the node carrying the agent's commands dies: the agent held
            // (SIGSTOP) from before the request until the router has decided to send it to hv2
            // and the node is dead, so no confirmation can come before the kill. Whatever the
            // answer, the domain was restarted at most once, and a success means it was.
            let before = Int(try await lab.domainID("hv2", "b1"))!
            let agent = try await lab.pid("agent-hv2")
            try #require(kill(agent, SIGSTOP) == 0)
            async let inFlight = lab.fence("reboot", "b1", timeout: 20)
            do {
                defer { kill(agent, SIGCONT) }
                try await lab.waitForLog("router-hv1", "decision=reboot(hosts: .*hv2.*domain=b1 op=reboot")
                try await lab.kill("broker2")
            }
            let firstKill = ContinuousClock.now
            let answer = try await inFlight
            let after = Int(try await lab.domainID("hv2", "b1"))!
            #expect(after == before || after == before + 1, "restarted at most once (ids \(before) → \(after))")
            if answer == 0 { #expect(after == before + 1, "a success was a real restart") }

            // The agent moves to another node; an off succeeds again and is true.
            _ = try await fenceUntilDone(lab, "off", "b2")
            #expect(try await lab.state("hv2", "b2") == "shut off")
            #expect(try await lab.attached("agent-hv2") != "broker2")
            try await loadSucceeds(after: firstKill, 1)

            // Then the node the router is on.
            try await lab.kill("broker1")
            let secondKill = ContinuousClock.now
            _ = try await fenceUntilDone(lab, "off", "b3")
            #expect(try await lab.state("hv2", "b3") == "shut off")
            #expect(try await lab.attached("router-hv1") == "broker3", "the one node left")
            try await loadSucceeds(after: secondKill, 2)

            // Both killed nodes come back and rejoin; then the last original node dies, and the
            // daemons can only be on the restarted ones.
            async let first: Void = lab.start("broker1")
            async let second: Void = lab.start("broker2")
            _ = try await (first, second)
            try await lab.kill("broker3")
            let thirdKill = ContinuousClock.now
            // Node 1 sees node 2 beside it: both rejoined the one cluster (not two clusters of one).
            try await waitUntil("node 1 sees two nodes running, itself and node 2", within: .seconds(30)) {
                try await lab.run("running-brokers").output.trimmingCharacters(in: .whitespacesAndNewlines) == "2"
            }
            _ = try await fenceUntilDone(lab, "off", "b4")
            #expect(try await lab.state("hv2", "b4") == "shut off")
            #expect(["broker1", "broker2"].contains(try await lab.attached("router-hv1")))
            #expect(["broker1", "broker2"].contains(try await lab.attached("agent-hv2")))
            // The agents reconnected with new generations: OFF waits for their snapshots.
            try await waitUntil("status of b4 answered off", within: .seconds(20), every: .milliseconds(200)) {
                try await lab.status("b4") == 2
            }
            #expect(try await lab.state("hv2", "b1") == "running", "b1 was never switched off for good")

            try await loadSucceeds(after: thirdKill, 3)
            log.stop.store(true, ordering: .relaxed)
            try await load
        }
    }
}
