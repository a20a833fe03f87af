import Foundation

/// A domain of a simulated hypervisor host (libvirt's test driver).
public struct SimulatedDomain: Sendable, Hashable {
    public enum State: Int, Sendable { case running = 1, paused = 3, shutOff = 5 }

    public let name: String
    public let uuid: String
    public let state: State

    public init(name: String, uuid: String, state: State = .running) {
        self.name = name
        self.uuid = uuid
        self.state = state
    }

    /// A deterministic UUID for the n-th generated domain of a host.
    public static func uuid(host: Int, index: Int) -> String {
        String(format: "%08x-0000-4000-8000-%012x", host, index)
    }

    /// The `<domain>` element for libvirt's test driver.
    public var xml: String {
        let runstate = state == .running ? "" : "<test:runstate>\(state.rawValue)</test:runstate>"
        return """
            <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\
            <name>\(name)</name><uuid>\(uuid)</uuid><memory>65536</memory><vcpu>1</vcpu>\
            <os><type>hvm</type></os>\(runstate)</domain>
            """
    }
}

/// A test-driver host XML: `test:///<absolute path>` opens it as a hypervisor in memory.
public enum HostXML {
    public static func make(_ domains: [SimulatedDomain]) -> String {
        "<node>\n" + domains.map { "  " + $0.xml + "\n" }.joined() + "</node>\n"
    }

    /// `count` running domains named `<prefix>1` …
    public static func generated(host: Int, prefix: String, count: Int) -> [SimulatedDomain] {
        (1...max(count, 1)).prefix(count).map { SimulatedDomain(name: "\(prefix)\($0)", uuid: SimulatedDomain.uuid(host: host, index: $0)) }
    }
}

/// A private libvirtd serving the test driver on a unix socket (platform notes §7): a simulated
/// hypervisor host whose state every client (agent, virsh) sees, as with `qemu:///system`.
public final class LibvirtdProcess: @unchecked Sendable {
    public let directory: URL
    public let socket: String
    public private(set) var process: ChildProcess?
    /// With `keepState`, a connection held open for the daemon's life: libvirtd keeps
    /// test:///default only while some connection is open, and a real host keeps its domains
    /// whatever its clients do.
    private var keeper: ChildProcess?

    /// The shared test-driver URI through this daemon.
    public var uri: String { "test+unix:///default?socket=\(socket)" }

    public init(directory: URL) throws {
        self.directory = directory
        for sub in ["run", "etc", "nodrv"] {
            try FileManager.default.createDirectory(at: directory.appendingPathComponent(sub), withIntermediateDirectories: true)
        }
        socket = directory.appendingPathComponent("run/libvirt-sock").path
        let config = """
            unix_sock_dir = "\(directory.appendingPathComponent("run").path)"
            unix_sock_rw_perms = "0700"
            auth_unix_rw = "none"
            auth_unix_ro = "none"
            """
        try config.write(to: directory.appendingPathComponent("etc/libvirtd.conf"), atomically: true, encoding: .utf8)
    }

    /// Starts the daemon and waits until virsh can talk to it; with `keepState`, holds a
    /// connection open so that domains defined by separate virsh runs stay.
    public func start(keepState: Bool = false) async throws {
        try? FileManager.default.removeItem(atPath: socket)
        process = try ChildProcess(
            ["libvirtd", "--config", directory.appendingPathComponent("etc/libvirtd.conf").path,
             "--pid-file", directory.appendingPathComponent("libvirtd.pid").path],
            logFile: directory.appendingPathComponent("libvirtd.log"),
            // An empty driver directory keeps the QEMU driver out; only the built-in test driver remains.
            environment: ["LIBVIRT_DRIVER_DIR": directory.appendingPathComponent("nodrv").path]
        )
        let limit = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < limit {
            if FileManager.default.fileExists(atPath: socket), (try? await Command.run(["virsh", "-c", uri, "uri"]))?.status == 0 {
                if keepState { try await startKeeper(until: limit) }
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw WaitFailed(what: "libvirtd on \(socket)", log: process?.log ?? "")
    }

    /// Holds a connection open, and waits until a domain defined by one virsh run is still there
    /// for the next.
    private func startKeeper(until limit: ContinuousClock.Instant) async throws {
        keeper = try ChildProcess(["virsh", "-c", uri, "event", "--all", "--loop"], logFile: directory.appendingPathComponent("keeper.log"))
        let marker = SimulatedDomain(name: "keeper-check", uuid: "00000000-0000-4000-8000-00000000cafe", state: .shutOff)
        let file = directory.appendingPathComponent("keeper-check.xml").path
        try marker.xml.write(toFile: file, atomically: true, encoding: .utf8)
        while ContinuousClock.now < limit {
            _ = try await Command.run(["virsh", "-c", uri, "define", file])
            if (try await Command.run(["virsh", "-c", uri, "domstate", marker.name])).status == 0 {
                try await Command.check(["virsh", "-c", uri, "undefine", marker.name])
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw WaitFailed(what: "a connection that keeps libvirtd's state on \(socket)", log: keeper?.log ?? "")
    }

    public func stop() async {
        await keeper?.stop()
        keeper = nil
        await process?.stop()
        process = nil
    }

    /// Defines a domain (and starts it unless it is shut off), its XML kept in `directory`.
    public func add(_ domain: SimulatedDomain, directory: TemporaryDirectory) async throws {
        let file = try directory.write("\(domain.name)-\(UUID().uuidString.prefix(6)).xml", domain.xml, mode: 0o644)
        try await Command.check(["virsh", "-c", uri, "define", file])
        switch domain.state {
        case .running: try await Command.check(["virsh", "-c", uri, "start", domain.name])
        case .paused:
            try await Command.check(["virsh", "-c", uri, "start", domain.name])
            try await Command.check(["virsh", "-c", uri, "suspend", domain.name])
        case .shutOff: break
        }
    }

    /// Runs virsh against this daemon.
    @discardableResult
    public func virsh(_ arguments: String...) async throws -> ProcessResult {
        try await Command.check(["virsh", "-c", uri] + arguments)
    }
}
