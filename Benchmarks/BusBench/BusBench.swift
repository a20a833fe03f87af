import AMQP
import BusClient
import Cryptography
import FenceBus
import FenceCore
import Libvirt
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Measures one fence-hostd through the broker, as a router sees it (run by Benchmarks/bus.sh):
/// libvirt event → delta on the bus, command round trip, the agent's memory with 1,000 domains.
@main
enum BusBench {
    static func main() async throws {
        let arguments = Dictionary(uniqueKeysWithValues: CommandLine.arguments.dropFirst().compactMap { argument -> (String, String)? in
            let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
            return parts.count == 2 ? (parts[0], parts[1]) : nil
        })
        guard let url = arguments["url"], let keyFile = arguments["bus-key"], let uri = arguments["libvirt"],
              let host = arguments["host"], let agentPID = arguments["agent-pid"].flatMap(Int32.init),
              let identityFile = arguments["identity"], let trust = arguments["trust"] else {
            print("usage: fence-bus-bench url=… bus-key=… identity=ROUTER-KEY trust=DIR libvirt=… host=… agent-pid=… [runs=200]")
            exit(2)
        }
        let runs = arguments["runs"].flatMap(Int.init) ?? 200
        var logger = Logger(label: "bus-bench")
        logger.logLevel = .error

        let key = try BusKey(fileContents: readFile(keyFile))
        let connection = try AMQPConnection(configuration: try AMQPConfiguration(url: url, containerID: "bus-bench"), logger: logger)
        try await connection.whileRunning {
            try await connection.waitUntilConnected(deadline: .now + .seconds(10))
            let identity = BusIdentity(role: .router, name: "bench", key: try SigningKey(pem: readFile(identityFile)))
            let bus = BusEndpoint(identity: identity, connection: connection, addresses: BusAddresses(profile: .rabbitMQ3), key: key,
                                  trust: TrustDirectory(path: trust, logger: logger), clockTolerance: .seconds(30), logger: logger)
            let inventory = try await bus.subscribe(bus.addresses.inventory, deadline: .now + .seconds(10))
            var iterator = inventory.makeAsyncIterator()
            let requester = try await AMQPRequester(connection: connection, replyAddress: bus.addresses.replies(for: "bench"), deadline: .now + .seconds(10))
            let libvirt = LibvirtConnection(uri: uri, logger: logger)

            // Event to delta: destroy and start one domain, timing from just before the libvirt call to
            // the delta that shows the new state.
            let uuid = try await libvirt.define(xml: domainXML(name: "bench-vm", index: 0), deadline: .now + .seconds(10))
            var latencies: [Duration] = []
            for run in 0..<runs {
                let wanted: DomainState = run.isMultiple(of: 2) ? .running : .shutOff
                let started = ContinuousClock.now
                if wanted == .running {
                    try await libvirt.start(uuid: uuid, deadline: .now + .seconds(10))
                } else {
                    try await libvirt.destroy(uuid: uuid, deadline: .now + .seconds(10))
                }
                while let (envelope, _) = await iterator.next() {
                    guard envelope.sender == host, case .delta(let delta) = envelope.message,
                          case .updated(let domain) = delta.change, domain.uuid == uuid, domain.state == wanted else { continue }
                    break
                }
                latencies.append(ContinuousClock.now - started)
            }

            // Command round trip: status commands from this "router" to the agent and back.
            var roundTrips: [Duration] = []
            for run in 0..<runs {
                let command = FenceCommand(id: "bench-\(run)", host: host, action: .status, target: "bench-vm", deadline: WallClock.now() + 10_000, issuer: "bench")
                let started = ContinuousClock.now
                _ = try await requester.request(bus.amqpMessage(.command(command), for: .one(host), timeToLive: .seconds(10)), to: bus.addresses.commands(for: host), deadline: .now + .seconds(10))
                roundTrips.append(ContinuousClock.now - started)
            }

            // The agent with 1,000 domains: define them, wait for a snapshot that has them all.
            for index in 1..<1000 {
                _ = try await libvirt.define(xml: domainXML(name: "bench-\(index)", index: index), deadline: .now + .seconds(10))
            }
            while let (envelope, _) = await iterator.next() {
                if envelope.sender == host, case .snapshot(let snapshot) = envelope.message, snapshot.domains.count >= 1000 { break }
            }
            try await Task.sleep(for: .seconds(6))  // one more periodic snapshot of the full inventory
            let rss = memoryMegabytes(agentPID, file: "status", field: "VmRSS:")
            let pss = memoryMegabytes(agentPID, file: "smaps_rollup", field: "Pss:")

            print("| event → delta on the bus, median (ms) | \(milliseconds(percentile(latencies, 0.5))) | |")
            print("| event → delta on the bus, p99 (ms) | \(milliseconds(percentile(latencies, 0.99))) | ≤ 10 ms |")
            print("| command round trip through the broker, median (ms) | \(milliseconds(percentile(roundTrips, 0.5))) | ≤ 2 ms |")
            print("| command round trip through the broker, p90 (ms) | \(milliseconds(percentile(roundTrips, 0.9))) | |")
            print("| fence-hostd resident memory (RSS), 1,000 domains (MB) | \(String(format2: rss)) | ≤ 30 MB |")
            print("| fence-hostd proportional memory (PSS), 1,000 domains (MB) | \(String(format2: pss)) | |")
            requester.close()
        }
    }

    static func domainXML(name: String, index: Int) -> String {
        let uuid = "b0b0b0b0-0000-4000-8000-\(String(index, radix: 16).padding(12))"
        return "<domain type='test'><name>\(name)</name><uuid>\(uuid)</uuid><memory>65536</memory><os><type>hvm</type></os></domain>"
    }

    static func percentile(_ samples: [Duration], _ fraction: Double) -> Duration {
        let sorted = samples.sorted()
        return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * fraction).rounded()))]
    }

    static func milliseconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        return String(format2: Double(seconds) * 1000 + Double(attoseconds) / 1e15)
    }

    /// A memory figure (kB in /proc) of a process, in MB.
    static func memoryMegabytes(_ pid: Int32, file: String, field: String) -> Double {
        guard let status = try? readFile("/proc/\(pid)/\(file)") else { return .nan }
        let text = String(decoding: status, as: UTF8.self)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field) }),
              let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "") else { return .nan }
        return kilobytes / 1024
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        guard let file = fopen(path, "r") else { throw BusError(.malformed, "cannot read \(path)") }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count <= 0 { return bytes }
            bytes += buffer[0..<count]
        }
    }
}

extension String {
    /// Two decimals.
    init(format2 value: Double) {
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        self = "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }

    /// Left-padded with zeros to `width` characters.
    func padding(_ width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}
