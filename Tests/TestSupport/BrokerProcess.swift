import Foundation
import Synchronization

/// A RabbitMQ broker with AMQP 1.0, started and stopped by the project's own
/// `Deploy/broker/rabbitmq.sh`, on loopback.
public final class BrokerProcess: Sendable {
    public static let script = Fixtures.repository.appendingPathComponent("Deploy/broker/rabbitmq.sh").path
    public static let prerequisites: [Prerequisite] = [.command("rabbitmq-server", package: "rabbitmq-server")]

    public let directory: String
    public let port: Int
    public let password: String
    private let scratch: TemporaryDirectory

    /// `amqp://fence:…@127.0.0.1:port`
    public var url: String { "amqp://fence:\(password)@127.0.0.1:\(port)" }

    private init(scratch: TemporaryDirectory, port: Int, password: String) {
        self.scratch = scratch
        self.directory = scratch.url.path
        self.port = port
        self.password = password
    }

    /// Starts a broker of its own (for tests that stop or restart it). With `tlsDirectory`
    /// (ca.pem, server.pem, server.key) it also speaks AMQP over TLS on `port + 1`.
    public static func start(tlsDirectory: String? = nil) async throws -> BrokerProcess {
        try TestEnvironment.require(prerequisites)
        let scratch = try TemporaryDirectory(prefix: "fr-broker")
        let port = try Ports.freeForBroker()
        try await Command.check([script, "start", scratch.url.path, String(port)], environment: tlsDirectory.map { ["TLS_DIR": $0] })
        let password = try String(contentsOf: scratch.url.appendingPathComponent("password"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return BrokerProcess(scratch: scratch, port: port, password: password)
    }

    /// Runs `body` with a broker of its own, stopped afterwards whatever happens.
    public static func withDedicated<T: Sendable>(tlsDirectory: String? = nil, _ body: (BrokerProcess) async throws -> T) async throws -> T {
        let broker = try await start(tlsDirectory: tlsDirectory)
        do {
            let result = try await body(broker)
            try await broker.stop()
            return result
        } catch {
            try? await broker.stop()
            throw error
        }
    }

    /// One broker for every test that only sends and receives. `Deploy/run-tests.sh` starts it
    /// for the whole run (`FENCE_ROUTER_TEST_BROKER`, its directory) and stops it afterwards;
    /// otherwise the first test starts one, stopped when the test process exits.
    public static func shared() async throws -> BrokerProcess {
        try await SharedBroker.instance.get()
    }

    /// A broker someone else started with the script, found by its directory.
    static func attach(directory: String) throws -> BrokerProcess {
        let scratch = try TemporaryDirectory(adopting: URL(fileURLWithPath: directory))
        let read = { (name: String) in try String(contentsOf: scratch.url.appendingPathComponent(name), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) }
        guard let port = Int(try read("port")) else { throw TimedOut(what: "the port of the broker in \(directory)") }
        return BrokerProcess(scratch: scratch, port: port, password: try read("password"))
    }

    public func stop() async throws {
        try await Command.check([Self.script, "stop", directory])
    }

    /// Starts it again on the same port and data directory.
    public func restart() async throws {
        try await Command.check([Self.script, "start", directory, String(port)])
    }

    /// rabbitmqctl against this broker.
    @discardableResult
    public func ctl(_ arguments: String...) async throws -> ProcessResult {
        try await Command.check([Self.script, "ctl", directory] + arguments)
    }

    fileprivate func stopNow() {
        guard let pid = try? Spawn.start([Self.script, "stop", directory], environment: nil, stdout: "/dev/null", stderr: "/dev/null") else { return }
        _ = Spawn.wait(pid, block: true)
        try? FileManager.default.removeItem(atPath: directory)
    }
}

private actor SharedBroker {
    static let instance = SharedBroker()
    private var broker: Task<BrokerProcess, any Error>?

    func get() async throws -> BrokerProcess {
        if broker == nil {
            broker = Task {
                if let directory = ProcessInfo.processInfo.environment["FENCE_ROUTER_TEST_BROKER"] {
                    return try BrokerProcess.attach(directory: directory)
                }
                let broker = try await BrokerProcess.start()
                SharedBrokerExit.register(broker)
                return broker
            }
        }
        return try await broker!.value
    }
}

/// Stops the shared broker when the test process exits.
private enum SharedBrokerExit {
    nonisolated(unsafe) static var broker: BrokerProcess?

    static func register(_ broker: BrokerProcess) {
        self.broker = broker
        atexit { SharedBrokerExit.broker?.stopNow() }
    }
}

/// Ports for the daemons and brokers of the tests, on loopback. Each comes from a range of its
/// own, below Linux's ephemeral range (32768 and up, where outgoing connections take theirs), and
/// is never handed out twice in one test process: parallel tests cannot draw the same port between
/// the check that it is free and the daemon's bind, and a daemon's port never falls on a broker's.
/// The shared broker of `Deploy/run-tests.sh` lives in 20000–20999, the lab's in namespaces.
public enum Ports {
    private static let given = Mutex(Set<Int>())

    /// A TCP port that nothing uses right now, from 10000–19999.
    public static func freeTCP() throws -> Int {
        try take(from: 10_000..<20_000, what: "a free TCP port") { isFree($0) }
    }

    /// A port P from 21000–22767 for a broker such that P, P+1 (TLS), P+10000 (its epmd) and
    /// P+20000 (its distribution, the one port in the ephemeral range) are free.
    public static func freeForBroker() throws -> Int {
        try take(from: 21_000..<22_768, what: "a free port for a broker") { port in
            [port, port + 1, port + 10_000, port + 20_000].allSatisfy(isFree)
        }
    }

    private static func take(from range: Range<Int>, what: String, _ usable: (Int) -> Bool) throws -> Int {
        let start = Int.random(in: range)
        for offset in 0..<range.count {
            let port = range.lowerBound + (start - range.lowerBound + offset) % range.count
            guard usable(port) else { continue }
            // A broker takes P and P+1: neighbours of a port given out are refused too, in the
            // same critical section as the claim, so two threads cannot win P and P+1.
            let won = given.withLock { given in
                guard !given.contains(port - 1), !given.contains(port + 1) else { return false }
                return given.insert(port).inserted
            }
            if won { return port }
        }
        throw TimedOut(what: what)
    }

    static func isFree(_ port: Int) -> Bool {
        let socket = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: UInt16(port).bigEndian, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        return withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
    }
}
