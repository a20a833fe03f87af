import Foundation

/// A throwaway network made of namespaces: a hypervisor-host namespace holding a bridge (as
/// virbr0 on a real host) and guest namespaces on veth pairs into it. Nothing touches the
/// machine's own interfaces; everything is deleted when the lab goes away.
///
/// Addresses: host 198.51.100.1/24 and fd00:5::1/64 on br0; guest n is 198.51.100.(10+n) and
/// fd00:5::(10+n). Multicast is routed to br0/eth0 in every namespace.
public final class NamespaceLab: @unchecked Sendable {
    public static let hostAddress = "198.51.100.1"
    public static let hostAddress6 = "fd00:5::1"

    /// Names start with this, so that `.ci/run` can remove leftovers of a killed run.
    public static let prefix = "frt"

    public let id: String
    public let host: String
    public private(set) var guests: [String] = []
    private var extraNamespaces: [String] = []

    public init(guests count: Int) async throws {
        try TestEnvironment.require(Prerequisite.namespaces)
        id = String(UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(6)).lowercased()
        host = "\(Self.prefix)\(id)-h"
        do {
            try await Self.ip("netns", "add", host)
            try await Self.ip("-n", host, "link", "set", "lo", "up")
            try await Self.ip("-n", host, "link", "add", "br0", "type", "bridge")
            // No IGMP snooping: without a querier the bridge would otherwise decide alone what to flood.
            try await Self.ip("-n", host, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
            try await Self.ip("-n", host, "addr", "add", "\(Self.hostAddress)/24", "dev", "br0")
            try await Self.ip("-n", host, "addr", "add", "\(Self.hostAddress6)/64", "dev", "br0", "nodad")
            try await Self.ip("-n", host, "link", "set", "br0", "up")
            try await Self.ip("-n", host, "route", "add", "224.0.0.0/4", "dev", "br0")
            for index in 1...max(count, 1) where index <= count {
                try await addGuest(index)
            }
        } catch {
            teardown()
            throw error
        }
    }

    public static func guestAddress(_ index: Int) -> String { "198.51.100.\(10 + index)" }

    private func addGuest(_ index: Int) async throws {
        let guest = "\(Self.prefix)\(id)-g\(index)"
        try await Self.ip("netns", "add", guest)
        guests.append(guest)
        try await Self.ip("link", "add", "eth0", "netns", guest, "type", "veth", "peer", "name", "vg\(index)", "netns", host)
        try await Self.ip("-n", host, "link", "set", "vg\(index)", "master", "br0", "up")
        try await Self.ip("-n", guest, "link", "set", "lo", "up")
        try await Self.ip("-n", guest, "addr", "add", "\(Self.guestAddress(index))/24", "dev", "eth0")
        try await Self.ip("-n", guest, "addr", "add", "fd00:5::\(10 + index)/64", "dev", "eth0", "nodad")
        try await Self.ip("-n", guest, "link", "set", "eth0", "up")
        try await Self.ip("-n", guest, "route", "add", "224.0.0.0/4", "dev", "eth0")
    }

    /// A second IPv4 address for guest `index` on its eth0 (fence_xvm then sends one copy per address).
    public func addAddress(guest index: Int, _ address: String) async throws {
        try await Self.ip("-n", guests[index - 1], "addr", "add", "\(address)/24", "dev", "eth0")
    }

    /// A namespace wired to the host by its own veth (`ext0` on the host), outside the bridge:
    /// requests from it arrive on another interface than br0.
    public func addOutsider() async throws -> String {
        let outsider = "\(Self.prefix)\(id)-x"
        try await Self.ip("netns", "add", outsider)
        extraNamespaces.append(outsider)
        try await Self.ip("link", "add", "eth0", "netns", outsider, "type", "veth", "peer", "name", "ext0", "netns", host)
        try await Self.ip("-n", host, "addr", "add", "203.0.113.1/24", "dev", "ext0")
        try await Self.ip("-n", host, "link", "set", "ext0", "up")
        try await Self.ip("-n", outsider, "link", "set", "lo", "up")
        try await Self.ip("-n", outsider, "addr", "add", "203.0.113.2/24", "dev", "eth0")
        try await Self.ip("-n", outsider, "link", "set", "eth0", "up")
        try await Self.ip("-n", outsider, "route", "add", "224.0.0.0/4", "dev", "eth0")
        return outsider
    }

    /// Runs a command inside a namespace and waits for it.
    @discardableResult
    public func run(in namespace: String, _ arguments: [String]) async throws -> ProcessResult {
        try await Command.run(["ip", "netns", "exec", namespace] + arguments)
    }

    /// Starts a long-running command inside a namespace.
    public func start(in namespace: String, _ arguments: [String], logFile: URL) throws -> ChildProcess {
        try ChildProcess(["ip", "netns", "exec", namespace] + arguments, logFile: logFile)
    }

    /// Deletes every namespace of the lab (a plain unlink and unmount each, so it may block briefly).
    public func teardown() {
        for namespace in extraNamespaces + guests + [host] {
            Self.deleteNamespace(namespace)
        }
        extraNamespaces = []
        guests = []
    }

    deinit { teardown() }

    private static func ip(_ arguments: String...) async throws {
        try await Command.check(["ip"] + arguments)
    }

    private static func deleteNamespace(_ name: String) {
        guard let pid = try? Spawn.start(["ip", "netns", "del", name], environment: nil, stdout: "/dev/null", stderr: "/dev/null") else { return }
        _ = Spawn.wait(pid, block: true)
    }
}
