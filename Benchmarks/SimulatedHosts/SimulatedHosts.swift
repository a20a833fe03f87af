import AMQP
import BusClient
import Cryptography
import FenceBus
import FenceCore
import Foundation
import Logging
import Synchronization

/// SIMULATION ONLY, for the router's scale benchmark (Benchmarks/routed.sh): many fake host agents
/// in one process. Each has a `FakeHypervisor` (an in-process list of domains, no libvirt) and
/// publishes what fence-hostd publishes — signed snapshots and heartbeats, with its own epoch and
/// sequence numbers — through the real broker, so that a real fence-routerd carries the load of
/// that many hosts. The fake agents execute no command.
///
/// It prints `phase steady` (snapshots every `snapshot-interval` and heartbeats every second),
/// then after `steady` seconds `phase heartbeats` (heartbeats only), then `phase done`, so the
/// harness can read the router's CPU time between the lines.
@main
enum SimulatedHosts {
    static func main() async {
        let arguments = Dictionary(CommandLine.arguments.dropFirst().compactMap { argument -> (String, String)? in
            let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
            return parts.count == 2 ? (parts[0], parts[1]) : nil
        }, uniquingKeysWith: { $1 })
        guard let url = arguments["url"], let keyFile = arguments["bus-key"], let keyBytes = FileManager.default.contents(atPath: keyFile),
              let trust = arguments["trust"] else {
            print("usage: fence-sim-hosts url=… bus-key=FILE trust=DIR [hosts=1000] [domains=100] [snapshot-interval=5] [steady=20] [heartbeats=20]")
            exit(2)
        }
        func number(_ name: String, _ fallback: Int) -> Int { arguments[name].flatMap(Int.init) ?? fallback }
        let (hostCount, domainCount) = (number("hosts", 1000), number("domains", 100))
        let snapshotInterval = number("snapshot-interval", 5)
        var logger = Logger(label: "sim-hosts")
        logger.logLevel = .error

        let connection: AMQPConnection
        let key: BusKey
        do {
            key = try BusKey(fileContents: Array(keyBytes))
            var configuration = try AMQPConfiguration(url: url, containerID: "fence-sim-hosts")
            configuration.allowInsecurePlain = true  // the labs' broker, inside their namespaces
            connection = try AMQPConnection(configuration: configuration, logger: logger)
        } catch {
            print("fence-sim-hosts: \(error)")
            exit(1)
        }
        do {
            try await connection.whileRunning {
                try await connection.waitUntilConnected(deadline: .now + .seconds(10))
                await simulate(connection: connection, key: key, trust: trust, hostCount: hostCount, domainCount: domainCount,
                               snapshotInterval: snapshotInterval, steady: number("steady", 20), heartbeatsOnly: number("heartbeats", 20), logger: logger)
            }
        } catch {
            print("fence-sim-hosts: \(error)")
            exit(1)
        }
    }

    /// The fake agents: every host's first snapshot, then heartbeats and snapshots for a while.
    static func simulate(connection: AMQPConnection, key: BusKey, trust: String, hostCount: Int, domainCount: Int,
                         snapshotInterval: Int, steady: Int, heartbeatsOnly: Int, logger: Logger) async {
        // Each fake agent sends as itself: its public key goes into the router's trust directory,
        // and it seals for the routers filed there.
        try? FileManager.default.createDirectory(atPath: "\(trust)/hosts", withIntermediateDirectories: true)
        let routers = TrustDirectory(path: trust, logger: logger)
        let hosts = (1...hostCount).map { index in
            let identity = BusIdentity(role: .host, name: "sim\(index)", key: SigningKey())
            _ = FileManager.default.createFile(atPath: "\(trust)/hosts/sim\(index).pub", contents: Data(identity.key.verifyingKey.pem))
            return FakeAgent(
                hypervisor: FakeHypervisor(host: index, domains: domainCount),
                bus: BusEndpoint(identity: identity, connection: connection, addresses: BusAddresses(profile: .rabbitMQ3), key: key,
                                 trust: routers, clockTolerance: .seconds(30), logger: logger)
            )
        }
        let failures = Counter()

        // Every host's first snapshot, then one tick per second: each host's heartbeat, and its
        // snapshot on its own turn, spread over the interval as independent hosts would be.
        await publish(hosts.map { ($0, $0.snapshot()) }, failures)
        say("phase steady \(hostCount) hosts \(hostCount * domainCount) domains")
        let start = ContinuousClock.now
        for second in 1...(steady + heartbeatsOnly) {
            try? await Task.sleep(until: start + .seconds(second))
            if second == steady + 1 { say("phase heartbeats") }
            let snapshots = second <= steady
            await publish(hosts.enumerated().map { index, host in
                (host, snapshots && (index + second) % snapshotInterval == 0 ? host.snapshot() : host.heartbeat())
            }, failures)
        }
        say("phase done publish failures \(failures.count)")
    }

    /// A line for the harness, at once (standard output is a pipe there).
    static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// Publishes every message at once, waiting for the broker to accept them all.
    static func publish(_ batch: [(FakeAgent, BusMessage)], _ failures: Counter) async {
        await withTaskGroup(of: Void.self) { group in
            for (agent, message) in batch {
                group.addTask {
                    do throws(AMQPError) {
                        try await agent.bus.publish(message, to: agent.bus.addresses.inventory, for: .everyRouter, timeToLive: .seconds(15), deadline: .now + .seconds(10))
                    } catch {
                        failures.next()
                    }
                }
            }
        }
    }
}

/// SIMULATION ONLY: a hypervisor host's domains held in memory; nothing starts or stops.
struct FakeHypervisor: Sendable {
    let domains: [DomainInfo]

    init(host: Int, domains count: Int) {
        domains = (1...count).map { index in
            let uuid = String(format: "5151%04x-0000-4000-8000-%012x", host, index)
            return DomainInfo(name: "sim\(host)-vm\(index)", uuid: uuid, state: index.isMultiple(of: 10) ? .shutOff : .running, persistent: true)
        }
    }
}

/// SIMULATION ONLY: the publishing half of a host agent over a `FakeHypervisor`.
final class FakeAgent: Sendable {
    let hypervisor: FakeHypervisor
    let bus: BusEndpoint
    private let epoch = UInt64(Date().timeIntervalSince1970 * 1000)
    private let sequence = Counter()

    init(hypervisor: FakeHypervisor, bus: BusEndpoint) {
        self.hypervisor = hypervisor
        self.bus = bus
    }

    func snapshot() -> BusMessage {
        .snapshot(InventorySnapshot(host: bus.sender, epoch: epoch, sequence: sequence.next(), libvirtConnected: true, domains: hypervisor.domains))
    }

    func heartbeat() -> BusMessage {
        .heartbeat(Heartbeat(host: bus.sender, epoch: epoch, sequence: sequence.next(), libvirtConnected: true, domainCount: hypervisor.domains.count))
    }
}

/// A thread-safe count (sequence numbers, failures).
final class Counter: Sendable {
    private let value = Mutex<UInt64>(0)

    @discardableResult
    func next() -> UInt64 { value.withLock { $0 += 1; return $0 } }
    var count: UInt64 { value.withLock { $0 } }
}
