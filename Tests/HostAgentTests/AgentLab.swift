import AMQP
import BusClient
import Cryptography
import FenceBus
import FenceCore
import Foundation
import Logging
import TestSupport

/// One simulated hypervisor host (a private libvirtd with the test driver) with the real
/// fence-hostd on it, the broker, and the test acting as a router on the bus.
final class AgentLab: @unchecked Sendable {
    static let prerequisites = BrokerProcess.prerequisites + Prerequisite.libvirtd
    static let busKey = Array("bus-key-for-the-agent-tests-0123456789abcdef".utf8)
    /// The test signs as this router, whose public key the agent's trust directory holds.
    static let routerKey = SigningKey()
    /// A host only the test knows, whose heartbeats show that the test's inventory subscription delivers.
    static let probeKey = SigningKey()

    let broker: BrokerProcess
    let libvirtd: LibvirtdProcess
    let directory: TemporaryDirectory
    let host: String
    let agent: ChildProcess
    /// The agent's own identity key.
    let hostKey = SigningKey()
    let bus: BusEndpoint
    /// Sends as the host `lab-probe` (`waitUntilSubscribed`).
    let probe: BusEndpoint
    let inventory: BusSubscription
    let requester: AMQPRequester
    let logger = Logger(label: "agent-lab")

    /// Runs a lab around `body`, with the test's connection to the broker running for the
    /// lab's life and its requester matching replies; everything is stopped afterwards.
    static func with<T: Sendable>(broker: BrokerProcess, snapshotInterval: Int = 5, domains: [SimulatedDomain] = [], _ body: (AgentLab) async throws -> T) async throws -> T {
        try TestEnvironment.require(Self.prerequisites)
        let connection = try AMQPConnection(
            configuration: try AMQPConfiguration(url: broker.url, containerID: "router-lab-\(UUID().uuidString.prefix(8))"),
            logger: Logger(label: "agent-lab")
        )
        return try await connection.whileRunning {
            let lab = try await AgentLab(connection: connection, broker: broker, snapshotInterval: snapshotInterval, domains: domains)
            return try await withCleanup { try await body(lab) } cleanup: { await lab.shutdown() }
        }
    }

    private init(connection: AMQPConnection, broker: BrokerProcess, snapshotInterval: Int, domains: [SimulatedDomain]) async throws {
        self.broker = broker
        directory = try TemporaryDirectory(prefix: "fr-agent")
        host = "h-\(UUID().uuidString.prefix(6).lowercased())"
        libvirtd = try LibvirtdProcess(directory: directory.url.appendingPathComponent("libvirtd"))
        // A real host keeps its domains whatever its clients do: a keeper connection holds
        // test:///default, or libvirtd would drop it with the agent's connection (closed by
        // libvirtd's keepalive while a test holds the agent stopped).
        try await libvirtd.start(keepState: true)
        let keyPath = try directory.write("bus.key", bytes: Self.busKey)
        let identityPath = try directory.write("identity.key", bytes: hostKey.pem)
        _ = try directory.write("trust/routers/router-test.pub", bytes: Self.routerKey.verifyingKey.pem, mode: 0o644)
        let config = try directory.write("fence_virt.conf", """
            backends {
                amqp {
                    url = "\(broker.url)";
                    bus_key_file = "\(keyPath)";
                    identity_key_file = "\(identityPath)";
                    trust_directory = "\(directory.path("trust"))";
                    host_id = "\(host)";
                    snapshot_interval = "\(snapshotInterval)";
                }
                libvirt { uri = "\(libvirtd.uri)"; }
            }
            """)

        // The test's side of the bus, subscribed before the agent starts so that its first snapshot arrives.
        try await connection.waitUntilConnected(deadline: .now + .seconds(10))
        let trust = FixedTrust([
            .host: [host: hostKey.verifyingKey, "lab-probe": Self.probeKey.verifyingKey], .router: ["router-test": Self.routerKey.verifyingKey],
        ])
        bus = BusEndpoint(identity: BusIdentity(role: .router, name: "router-test", key: Self.routerKey), connection: connection,
                          addresses: BusAddresses(profile: .rabbitMQ3), key: try BusKey(fileContents: Self.busKey),
                          trust: trust, clockTolerance: .seconds(30), logger: logger)
        probe = BusEndpoint(identity: BusIdentity(role: .host, name: "lab-probe", key: Self.probeKey), connection: connection,
                            addresses: BusAddresses(profile: .rabbitMQ3), key: try BusKey(fileContents: Self.busKey),
                            trust: trust, clockTolerance: .seconds(30), logger: logger)
        inventory = try await bus.subscribe(bus.addresses.inventory, deadline: .now + .seconds(10))
        requester = try await AMQPRequester(connection: connection, replyAddress: bus.addresses.replies(for: "test-\(host)"), deadline: .now + .seconds(10))

        agent = try ChildProcess([try Products.path("fence-hostd"), "-F", "-f", config, "-d", "1"],
                                 logFile: directory.url.appendingPathComponent("fence-hostd.log"))
        try await agent.waitForLog("[fence_hostd] ready")
        // Now define the domains: the agent sees them arrive as events.
        for domain in domains { try await define(domain) }
    }

    func define(_ domain: SimulatedDomain) async throws {
        let xml = directory.url.appendingPathComponent("\(domain.name).xml")
        try SimulatedDomain(name: domain.name, uuid: domain.uuid).xml.write(to: xml, atomically: true, encoding: .utf8)
        try await libvirtd.virsh("define", xml.path)
        if domain.state != .shutOff { try await libvirtd.virsh("start", domain.name) }
        if domain.state == .paused { try await libvirtd.virsh("suspend", domain.name) }
    }

    /// The domain's state as libvirtd says, read independently of the agent.
    func trueState(_ name: String) async throws -> String {
        try await libvirtd.virsh("domstate", name).output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The next inventory message from this lab's host, sent at `since` or later, that satisfies `matching`.
    func nextFromHost(within limit: Duration = .seconds(15), since: UInt64 = 0, _ matching: @escaping @Sendable (BusMessage) -> Bool) async throws -> BusMessage {
        let host = self.host
        let inventory = self.inventory
        return try await withTimeout(limit, "an inventory message from \(host)") {
            for await (envelope, _) in inventory {
                guard envelope.sender == host, envelope.sentAt >= since, matching(envelope.message) else { continue }
                return envelope.message
            }
            throw TimedOut(what: "the inventory stream ended")
        }
    }

    /// Returns once this lab's own inventory subscription delivers again (after a reconnect): a
    /// probe it publishes comes back through it.
    func waitUntilSubscribed(within limit: Duration = .seconds(30)) async throws {
        let inventory = self.inventory
        let probe = self.probe
        try await withTimeout(limit, "the lab's inventory subscription back") {
            var sequence: UInt64 = 0
            while true {
                sequence += 1
                let heartbeat = BusMessage.heartbeat(Heartbeat(host: probe.sender, epoch: 1, sequence: sequence, libvirtConnected: true, domainCount: 0))
                try? await probe.publish(heartbeat, to: probe.addresses.inventory, for: .everyRouter, timeToLive: .seconds(5), deadline: .now + .seconds(5))
                let received = try await withTimeout(.seconds(1), "the probe") {
                    for await (envelope, _) in inventory where envelope.sender == probe.sender { return true }
                    return false
                }
                if received { return }
            }
        }
    }

    /// Sends a command and waits for its result.
    func command(_ action: FenceAction, _ target: String, id: String = UUID().uuidString, deadline: UInt64? = nil, agentEpoch: UInt64? = nil) async throws -> CommandResult {
        let command = FenceCommand(id: id, host: host, action: action, target: target,
                                   deadline: deadline ?? WallClock.now() + 10_000, issuer: "router-test", agentEpoch: agentEpoch)
        let reply = try await requester.request(try bus.amqpMessage(.command(command), for: .one(host), timeToLive: .seconds(10)),
                                                to: bus.addresses.commands(for: host), deadline: .now + .seconds(10))
        guard let envelope = bus.open(reply), case .result(let result) = envelope.message else {
            throw TimedOut(what: "a well-formed result")
        }
        return result
    }

    private func shutdown() async {
        await agent.stop()
        requester.close()
        await libvirtd.stop()
    }
}
