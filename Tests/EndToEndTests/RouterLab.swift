import Foundation
import TestSupport

/// One fence-routerd with the libvirt backend on a test-driver host XML, in the host namespace
/// of a fresh lab, reachable by the real fence_xvm from the guest namespaces.
final class RouterLab: @unchecked Sendable {
    let lab: NamespaceLab
    let directory: TemporaryDirectory
    let keyPath: String
    let daemon: ChildProcess

    static let prerequisites = Prerequisite.namespaces + [Prerequisite.fenceXVM]
    static let testKey = Array("fence-virt-test-key-0123456789".utf8)

    /// - Parameters:
    ///   - domains: the simulated host; nil for the captured testnode.xml.
    ///   - listeners: the body of the `listeners` block; `KEY` stands for the key file.
    ///   - extra: more configuration (for example a `groups` block).
    init(
        guests: Int = 1,
        domains: [SimulatedDomain]? = nil,
        listener: String = "multicast",
        listeners: String = "multicast { key_file = \"KEY\"; interface = \"br0\"; }",
        extra: String = "",
        outsider: Bool = false
    ) async throws {
        try TestEnvironment.require(Self.prerequisites)
        lab = try await NamespaceLab(guests: guests)
        if outsider { _ = try await lab.addOutsider() }
        let directory = try TemporaryDirectory(prefix: "fr-e2e")
        self.directory = directory
        keyPath = try directory.write("fence_xvm.key", bytes: Self.testKey)
        let hostText = try domains.map(HostXML.make) ?? String(contentsOf: Fixtures.url("fence-xvm/testnode.xml"), encoding: .utf8)
        let hostXML = try directory.write("host.xml", hostText, mode: 0o644)
        let configuration = """
            fence_virtd { listener = "\(listener)"; backend = "libvirt"; }
            listeners { \(listeners.replacingOccurrences(of: "KEY", with: keyPath)) }
            backends { libvirt { uri = "test://\(hostXML)"; } }
            \(extra)
            """
        let configPath = try directory.write("fence_virt.conf", configuration)
        daemon = try lab.start(
            in: lab.host,
            [try Products.path("fence-routerd"), "-F", "-f", configPath, "-d", "1"],
            logFile: directory.url.appendingPathComponent("fence-routerd.log")
        )
        try await daemon.waitForLog("[FenceServer] listening")
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

    /// Stops the daemon (SIGTERM first) and deletes the lab.
    func shutdown() async {
        await daemon.stop()
        lab.teardown()
    }
}
