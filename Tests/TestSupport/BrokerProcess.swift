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

/// Ports for the daemons and brokers of the tests, on loopback, none handed out twice in one test
/// process (nor a port of a broker's four), so that parallel tests never draw the same one
/// between the check that it is free and the bind. A daemon's port is the kernel's choice: bound
/// to port 0 and read back. A broker needs four in a fixed layout, which the kernel cannot choose
/// together: the first P from 21000 whose P, P+1 (TLS), P+10000 (its epmd) and P+5000 (its
/// distribution) are free, all below the kernel's ephemeral ports (from 32768), which a client's
/// connection could take between a broker's stop and its restart. The shared broker of
/// `Deploy/run-tests.sh` lives in 20000–20999 (its distribution in 25000–25999), the lab's in
/// namespaces.
public enum Ports {
    private static let given = Mutex(Set<Int>())

    /// A TCP port on 127.0.0.1 that the kernel picked as free.
    public static func freeTCP() throws -> Int {
        for _ in 0..<100 {
            let port = try kernelChosen()
            if given.withLock({ $0.insert(port).inserted }) { return port }
        }
        throw NoFreePort(reason: "the kernel gave only ports handed out before")
    }

    /// The first port P from 21000 for a broker whose four ports are free and not handed out.
    public static func freeForBroker() throws -> Int {
        for port in 21_000..<22_768 {
            let ports: Set = [port, port + 1, port + 10_000, port + 5_000]
            guard ports.allSatisfy(isFree) else { continue }
            let won = given.withLock { given in
                guard given.isDisjoint(with: ports) else { return false }
                given.formUnion(ports)
                return true
            }
            if won { return port }
        }
        throw NoFreePort(reason: "no P in 21000–22767 with P, P+1, P+10000 and P+5000 free")
    }

    private static func kernelChosen() throws -> Int {
        let socket = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw NoFreePort(reason: "socket: errno \(errno)") }
        defer { close(socket) }
        var address = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: 0, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0 }
        }
        guard bound else { throw NoFreePort(reason: "bind to port 0: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    public struct NoFreePort: Error, CustomStringConvertible {
        public let reason: String
        public var description: String { "no free port: \(reason)" }
    }

    static func isFree(_ port: Int) -> Bool {
        let socket = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: UInt16(port).bigEndian, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        return withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
    }
}
