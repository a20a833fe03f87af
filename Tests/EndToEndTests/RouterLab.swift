import Foundation
import TestSupport

/// One fence-routerd with the libvirt backend on a test-driver host XML (or on private libvirtds,
/// whose state `virsh` reads independently), in the host namespace of a fresh lab, reachable by
/// the real fence_xvm from the guest namespaces.
final class RouterLab: @unchecked Sendable {
    let lab: NamespaceLab
    let directory: TemporaryDirectory
    let keyPath: String
    let configPath: String
    /// The libvirtds behind `uri`, `uri1`, … when the lab was made with `libvirtds`.
    let libvirtds: [LibvirtdProcess]
    private(set) var daemon: ChildProcess
    private var starts = 0

    static let prerequisites = Prerequisite.namespaces + [Prerequisite.fenceXVM]
    /// The scripted attackers need Debian's Python.
    static let attackPrerequisites = prerequisites + [.command("/usr/bin/python3", package: "python3")]
    static let testKey = Array("fence-virt-test-key-0123456789".utf8)

    /// - Parameters:
    ///   - domains: the simulated host; nil for the captured testnode.xml.
    ///   - listeners: the body of the `listeners` block; `KEY` stands for the key file.
    ///   - libvirtds: instead of one host XML, one private libvirtd per entry (`uri`, `uri1`, …),
    ///     holding these domains; `virsh` then tells the truth independently of the daemon.
    ///   - extra: more configuration (for example a `groups` block).
    ///   - daemonSettings: more keys of the `fence_virtd` block.
    init(
        guests: Int = 1,
        domains: [SimulatedDomain]? = nil,
        libvirtds: [[SimulatedDomain]]? = nil,
        listener: String = "multicast",
        listeners: String = "multicast { key_file = \"KEY\"; interface = \"br0\"; }",
        extra: String = "",
        daemonSettings: String = "",
        outsider: Bool = false
    ) async throws {
        try TestEnvironment.require(Self.prerequisites + (libvirtds == nil ? [] : Prerequisite.libvirtd))
        lab = try await NamespaceLab(guests: guests)
        if outsider { _ = try await lab.addOutsider() }
        let directory = try TemporaryDirectory(prefix: "fr-e2e")
        self.directory = directory
        keyPath = try directory.write("fence_xvm.key", bytes: Self.testKey)
        var uris: [String] = []
        var started: [LibvirtdProcess] = []
        if let libvirtds {
            for (index, domains) in libvirtds.enumerated() {
                let libvirtd = try LibvirtdProcess(directory: directory.url.appendingPathComponent("libvirtd\(index)"))
                try await libvirtd.start(keepState: true)
                started.append(libvirtd)
                for domain in domains { try await libvirtd.add(domain, directory: directory) }
                uris.append(libvirtd.uri)
            }
        } else {
            let hostText = try domains.map(HostXML.make) ?? String(contentsOf: Fixtures.url("fence-xvm/testnode.xml"), encoding: .utf8)
            uris.append("test://\(try directory.write("host.xml", hostText, mode: 0o644))")
        }
        self.libvirtds = started
        let uriKeys = uris.enumerated().map { index, uri in "uri\(index == 0 ? "" : "\(index)") = \"\(uri)\";" }
        let configuration = """
            fence_virtd { listener = "\(listener)"; backend = "libvirt"; state_directory = "\(directory.path("state"))"; \(daemonSettings) }
            listeners { \(listeners.replacingOccurrences(of: "KEY", with: keyPath)) }
            backends { libvirt { \(uriKeys.joined(separator: " ")) } }
            \(extra)
            """
        configPath = try directory.write("fence_virt.conf", configuration)
        daemon = try Self.startDaemon(lab: lab, configPath: configPath, log: directory.url.appendingPathComponent("fence-routerd.log"))
        try await daemon.waitForLog("[FenceServer] listening")
    }

    private static func startDaemon(lab: NamespaceLab, configPath: String, log: URL) throws -> ChildProcess {
        try lab.start(in: lab.host, [try Products.path("fence-routerd"), "-F", "-f", configPath, "-d", "1"], logFile: log)
    }

    /// Stops the daemon and starts it again with the same configuration and state directory; the
    /// new run logs into a file of its own.
    func restart() async throws {
        await daemon.stop()
        starts += 1
        daemon = try Self.startDaemon(lab: lab, configPath: configPath, log: directory.url.appendingPathComponent("fence-routerd.\(starts).log"))
        try await daemon.waitForLog("[FenceServer] listening")
    }

    /// The state of a domain as the `index`th libvirtd reports it (`running`, `shut off`, …).
    func truth(_ domain: String, libvirtd index: Int = 0) async throws -> String {
        try await libvirtds[index].virsh("domstate", domain).output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// How many file descriptors the daemon holds open right now.
    var openFiles: Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(daemon.pid)/fd").count) ?? 0
    }

    /// Runs the real fence_xvm (or fence_virt) in a guest namespace with the lab's key.
    @discardableResult
    func client(_ guest: Int = 1, _ arguments: String..., key: String? = nil, program: String = "fence_xvm") async throws -> ProcessResult {
        try await client(guest, arguments, key: key, program: program)
    }

    @discardableResult
    func client(_ guest: Int, _ arguments: [String], key: String? = nil, program: String = "fence_xvm") async throws -> ProcessResult {
        try await lab.run(in: lab.guests[guest - 1], [program, "-k", key ?? keyPath] + arguments)
    }

    /// fence_xvm's answer for one domain's status: 0 on, 2 off (others are failures).
    func status(_ domain: String, guest: Int = 1) async throws -> Int32 {
        try await client(guest, "-o", "status", "-H", domain, "-t", "5").status
    }

    /// The `list` output as (name, uuid, on/off) rows.
    func list(guest: Int = 1) async throws -> [[String]] {
        let result = try await client(guest, "-o", "list", "-t", "5")
        guard result.status == 0 else { throw CommandFailed(result: result) }
        return result.output.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
    }

    /// Starts one of the scripted attackers (`Tests/Attackers/xvm_attacker.py`) in a guest namespace.
    func attacker(_ guest: Int, _ arguments: String..., name: String) throws -> ChildProcess {
        try lab.start(
            in: lab.guests[guest - 1], ["/usr/bin/python3", Fixtures.attacker.path] + arguments,
            logFile: directory.url.appendingPathComponent("\(name).log")
        )
    }

    /// Stops the daemon (SIGTERM first) and deletes the lab.
    func shutdown() async {
        await daemon.stop()
        for libvirtd in libvirtds { await libvirtd.stop() }
        lab.teardown()
    }
}
