import AMQP
import BusClient
import Cryptography
import FenceBus
import FenceCore
import Foundation
import Testing
import TestSupport

/// fence-hostd against a real broker and a real libvirtd: what it publishes, and what it does with
/// the commands it receives. Every success is checked against the state virsh reads.
@Suite("fence-hostd ⇄ bus", .enabled(if: TestEnvironment.shouldRun(AgentLab.prerequisites), "needs rabbitmq-server, libvirtd and virsh"))
struct HostAgentTests {
    static let guest1 = SimulatedDomain(name: "guest1", uuid: "5a5a5a5a-0000-4000-8000-000000000001")
    static let guest2 = SimulatedDomain(name: "guest2", uuid: "5a5a5a5a-0000-4000-8000-000000000002", state: .shutOff)

    func withLab<T: Sendable>(broker: BrokerProcess? = nil, snapshotInterval: Int = 5, _ body: (AgentLab) async throws -> T) async throws -> T {
        let broker = if let broker { broker } else { try await BrokerProcess.shared() }
        return try await AgentLab.with(broker: broker, snapshotInterval: snapshotInterval, domains: [Self.guest1, Self.guest2], body)
    }

    @Test("snapshots, deltas and heartbeats reach a subscriber")
    func publishes() async throws {
        try await withLab { lab in
            let heartbeat = try await lab.nextFromHost { if case .heartbeat = $0 { true } else { false } }
            let beat = try #require({ if case .heartbeat(let beat) = heartbeat { beat } else { nil } }() as Heartbeat?)
            #expect(beat.libvirtConnected)

            // The periodic snapshot shows both domains with their true states.
            let snapshot = try await lab.nextFromHost { message in
                if case .snapshot(let snapshot) = message { snapshot.domains.contains { $0.name == "guest2" } } else { false }
            }
            let inventory = try #require({ if case .snapshot(let inventory) = snapshot { inventory } else { nil } }() as InventorySnapshot?)
            #expect(inventory.libvirtConnected)
            #expect(inventory.domains.first { $0.name == "guest1" }?.state == .running)
            #expect(inventory.domains.first { $0.name == "guest2" }?.state == .shutOff)
            #expect(inventory.domains.first { $0.name == "guest2" }?.persistent == true)

            // A lifecycle event becomes a delta (a bound for a loaded machine: snapshots are no deltas).
            try await lab.libvirtd.virsh("start", "guest2")
            let delta = try await lab.nextFromHost(within: .seconds(15)) { message in
                if case .delta(let delta) = message, case .updated(let domain) = delta.change { domain.name == "guest2" && domain.state == .running } else { false }
            }
            let change = try #require({ if case .delta(let change) = delta { change } else { nil } }() as InventoryDelta?)
            let started = try #require({ if case .updated(let started) = change.change { started } else { nil } }() as DomainInfo?)
            #expect(started.persistent == true, "a delta says as much as a snapshot")
            #expect(change.sequence > inventory.sequence)
            #expect(change.epoch == inventory.epoch)
        }
    }

    @Test("a command changes the domain, and its result carries the state read after acting")
    func commandRoundTrip() async throws {
        try await withLab { lab in
            let off = try await lab.command(.off, "guest1")
            #expect(off.outcome == .success)
            #expect(off.observed?.state == .shutOff)
            #expect(try await lab.trueState("guest1") == "shut off")

            let on = try await lab.command(.on, Self.guest1.uuid)
            #expect(on.outcome == .success)
            #expect(on.observed?.state == .running)
            #expect(try await lab.trueState("guest1") == "running")

            #expect(try await lab.command(.status, "guest2").outcome == .off)
            let missing = try await lab.command(.off, "nowhere")
            #expect(missing.observed == nil)
            guard case .failed(let code, _) = missing.outcome else {
                Issue.record("off of an unknown domain answered \(missing.outcome)")
                return
            }
            #expect(code == "not-found")
        }
    }

    @Test("a repeated command id runs once and gets the first result again")
    func duplicateRunsOnce() async throws {
        try await withLab { lab in
            let before = try await lab.libvirtd.virsh("domid", "guest1").output.trimmingCharacters(in: .whitespacesAndNewlines)
            let first = try await lab.command(.reboot, "guest1", id: "same-command")
            let second = try await lab.command(.reboot, "guest1", id: "same-command")
            #expect(first == second)
            #expect(first.outcome == .success)
            let after = try await lab.libvirtd.virsh("domid", "guest1").output.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(Int(after) == Int(before)! + 1, "rebooted once: the test driver gives a new id at every start")
            #expect(lab.agent.log.contains("repeated=true"))
        }
    }

    @Test("a copy sent again names the agent's run the first copy went to: another run refuses it without acting; that run executes it; a repeat gets the first result, whatever run it names")
    func copiesNameTheRun() async throws {
        try await withLab { lab in
            let heartbeat = try await lab.nextFromHost { if case .heartbeat = $0 { true } else { false } }
            guard case .heartbeat(let beat) = heartbeat else { throw TimedOut(what: "a heartbeat") }
            let refused = try await lab.command(.off, "guest1", id: "copy-1", agentEpoch: beat.epoch - 1)
            #expect(refused.outcome == .failed(code: "agent-restarted", message: "a copy of a command sent to run \(beat.epoch - 1) of this agent; this is run \(beat.epoch), which never saw it, and whether that run acted is unknown: not executed"))
            #expect(try await lab.trueState("guest1") == "running", "an earlier run may have acted: this one does not act again")

            let executed = try await lab.command(.off, "guest1", id: "copy-2", agentEpoch: beat.epoch)
            #expect(executed.outcome == .success, "its own run's copy of a command it never saw (the first copy was lost)")
            #expect(try await lab.trueState("guest1") == "shut off")

            let repeated = try await lab.command(.off, "guest1", id: "copy-2", agentEpoch: 7)
            #expect(repeated == executed, "the first result again, nothing run twice")
            #expect(lab.agent.log.contains("repeated=true"))
        }
    }

    @Test("a command past its deadline is refused and not executed")
    func expiredRefused() async throws {
        try await withLab { lab in
            let result = try await lab.command(.off, "guest1", deadline: WallClock.now() - 1)
            guard case .failed(let code, _) = result.outcome else {
                Issue.record("an expired command answered \(result.outcome)")
                return
            }
            #expect(code == "expired")
            #expect(try await lab.trueState("guest1") == "running")
        }
    }

    @Test("a forged MAC and a replayed message are dropped and counted; a flood of them costs a line per reason and a summary")
    func badMACAndReplay() async throws {
        try await withLab { lab in
            let queue = lab.bus.addresses.commands(for: lab.host)
            let command = FenceCommand(id: "forged", host: lab.host, action: .off, target: "guest1", deadline: WallClock.now() + 10_000, issuer: "intruder")
            var forged = try lab.bus.amqpMessage(.command(command), for: .one(lab.host))
            forged.applicationProperties[SealedBusMessage.macProperty] = String(repeating: "0", count: 64)
            forged.replyTo = lab.requester.replyAddress
            for copy in 0..<50 {
                forged.messageID = "intruder-\(copy)"
                try await lab.bus.connection.send(forged, to: queue, deadline: .now + .seconds(5))
            }
            try await lab.agent.waitForLog("reason=bad-mac")
            #expect(try await lab.trueState("guest1") == "running", "broker credentials alone cannot fence")

            var genuine = try lab.bus.amqpMessage(.command(FenceCommand(id: "once", host: lab.host, action: .off, target: "guest2", deadline: WallClock.now() + 10_000, issuer: "router-test")), for: .one(lab.host))
            genuine.replyTo = lab.requester.replyAddress
            try await lab.bus.connection.send(genuine, to: queue, deadline: .now + .seconds(5))
            try await lab.bus.connection.send(genuine, to: queue, deadline: .now + .seconds(5))
            try await lab.agent.waitForLog("reason=replayed")
            #expect(lab.agent.log.contains("dropped-total=1"))
            // 50 forgeries: one line in full, then the interval's summary with the count.
            try await lab.agent.waitForLog("dropped bus messages in the last interval", timeout: .seconds(30))
            #expect(lab.agent.log.components(separatedBy: "reason=bad-mac").count == 2, "one full line for the first forgery")
            #expect(lab.agent.log.contains("bad-mac=50"))
        }
    }

    @Test("a host holding the bus key cannot command another: a command sealed with a host's key, in a router's name or its own, is dropped")
    func commandFromAnotherHost() async throws {
        try await withLab { lab in
            // The attacker: another hypervisor host, root there, with the bus key, its own identity
            // key and every public key (they are no secret).
            let everyKey = FixedTrust([.host: [lab.host: lab.hostKey.verifyingKey], .router: ["router-test": AgentLab.routerKey.verifyingKey]])
            let intruder = BusEndpoint(identity: BusIdentity(role: .router, name: "router-test", key: SigningKey()), connection: lab.bus.connection,
                                       addresses: lab.bus.addresses, key: try BusKey(fileContents: AgentLab.busKey), trust: everyKey,
                                       clockTolerance: .seconds(30), logger: lab.logger)
            let ownName = BusEndpoint(identity: BusIdentity(role: .router, name: "hv-evil", key: SigningKey()), connection: lab.bus.connection,
                                      addresses: lab.bus.addresses, key: try BusKey(fileContents: AgentLab.busKey), trust: everyKey,
                                      clockTolerance: .seconds(30), logger: lab.logger)
            let queue = lab.bus.addresses.commands(for: lab.host)
            for (endpoint, reason) in [(intruder, "bad-signature"), (ownName, "unknown-sender")] {
                let command = FenceCommand(id: "forged-\(reason)", host: lab.host, action: .off, target: "guest1",
                                           deadline: WallClock.now() + 10_000, issuer: endpoint.sender)
                var message = try endpoint.amqpMessage(.command(command), for: .one(lab.host))
                message.replyTo = lab.requester.replyAddress
                try await lab.bus.connection.send(message, to: queue, deadline: .now + .seconds(5))
                try await lab.agent.waitForLog("reason=\(reason)")
            }
            #expect(try await lab.trueState("guest1") == "running", "a host's key cannot order another host")

            // The router's own key still commands it.
            #expect(try await lab.command(.off, "guest1").outcome == .success)
            #expect(try await lab.trueState("guest1") == "shut off")
        }
    }

    @Test("the broker stopped and started again: the agent reconnects and republishes a snapshot")
    func brokerRestart() async throws {
        try await BrokerProcess.withDedicated { broker in
            // Periodic snapshots far apart: a snapshot after the restart can only be the reconnect's.
            try await withLab(broker: broker, snapshotInterval: 3600) { lab in
                _ = try await lab.nextFromHost { if case .snapshot = $0 { true } else { false } }
                // The agent is held still until this side listens again: its reconnect snapshot is
                // sent once, and a subscriber back later than the agent would never see it.
                kill(lab.agent.pid, SIGSTOP)
                try await broker.stop()
                let restarted = WallClock.now()
                try await broker.restart()
                try await lab.bus.connection.waitUntilConnected(deadline: .now + .seconds(30))
                try await lab.waitUntilSubscribed()
                kill(lab.agent.pid, SIGCONT)
                // Thawed, the agent may first republish for another reason (a libvirt event it could
                // no longer read in time); the reconnect's snapshot follows in its queue.
                try await lab.agent.waitForLog("reason=broker connection 2")
                let snapshot = try await lab.nextFromHost(within: .seconds(30), since: restarted) { if case .snapshot = $0 { true } else { false } }
                guard case .snapshot(let inventory) = snapshot else { return }
                #expect(inventory.domains.contains { $0.name == "guest1" })
                #expect(try await lab.command(.status, "guest1").outcome == .success, "commands flow again")
            }
        }
    }

    @Test("libvirt lost under the agent: commands fail, never succeed; then it reconnects and republishes")
    func libvirtLoss() async throws {
        try await withLab { lab in
            await lab.libvirtd.stop()
            for action in [FenceAction.off, .status, .reboot] {
                let result = try await lab.command(action, "guest1")
                guard case .failed(let code, _) = result.outcome else {
                    Issue.record("\(action) answered \(result.outcome) while libvirt was down")
                    continue
                }
                #expect(code == "hypervisor-unavailable" || code == "timed-out", "\(code)")
            }
            // Heartbeats now say so.
            _ = try await lab.nextFromHost { if case .heartbeat(let beat) = $0 { !beat.libvirtConnected } else { false } }

            try await lab.libvirtd.start()
            let snapshot = try await lab.nextFromHost(within: .seconds(20)) { if case .snapshot(let s) = $0 { s.libvirtConnected } else { false } }
            guard case .snapshot(let inventory) = snapshot else { return }
            // A restarted libvirtd is a rebooted host: its test driver starts empty but for its own "test" domain.
            #expect(!inventory.domains.contains { $0.name == "guest1" })
            // A periodic snapshot may come first; the reconnect's own follows in the agent's queue.
            try await lab.agent.waitForLog("reason=libvirt connection 2")
        }
    }
}
