import Foundation

/// Something a test needs from the machine. Outside CI a missing prerequisite skips the test and
/// says why; under CI (`CI=true`) the test runs anyway and fails loudly at `require`.
public enum Prerequisite: Sendable, CustomStringConvertible {
    case root
    /// A command and the Debian package that provides it.
    case command(String, package: String)
    /// A file something other than this build makes (an absolute path), and what makes it.
    case file(String, madeBy: String)

    public var isMet: Bool {
        switch self {
        case .root: geteuid() == 0
        case .command(let name, _): Prerequisite.find(name) != nil
        case .file(let path, _): FileManager.default.fileExists(atPath: path)
        }
    }

    public var description: String {
        switch self {
        case .root: "root (network namespaces)"
        case .command(let name, let package): "\(name) (apt-get install \(package))"
        case .file(let path, let madeBy): "\(path) (\(madeBy))"
        }
    }

    static func find(_ command: String) -> String? {
        if command.hasPrefix("/") { return FileManager.default.isExecutableFile(atPath: command) ? command : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin"]
        return directories.map { "\($0)/\(command)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    public static let namespaces: [Prerequisite] = [.root, .command("ip", package: "iproute2")]
    public static let fenceXVM: Prerequisite = .command("fence_xvm", package: "fence-virt")
    public static let libvirtd: [Prerequisite] = [
        .command("libvirtd", package: "libvirt-daemon"), .command("virsh", package: "libvirt-clients"),
    ]
    /// A Pacemaker cluster of guests (Deploy/lab/pacemaker.sh): the cluster stack, its command line
    /// tools, pcs to create the stonith device as an operator does, nsenter to reach inside a node.
    public static let pacemaker: [Prerequisite] = [
        .command("corosync", package: "corosync"), .command("pacemakerd", package: "pacemaker"),
        .command("stonith_admin", package: "pacemaker-cli-utils"), .command("pcs", package: "pcs"),
        .command("nsenter", package: "util-linux"),
    ]
}

public struct PrerequisiteMissing: Error, CustomStringConvertible {
    public let missing: [Prerequisite]
    public var description: String { "missing prerequisites: " + missing.map(\.description).joined(separator: ", ") }
}

public enum TestEnvironment {
    public static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// For `.enabled(if:)`: true when the prerequisites hold, and always under CI.
    public static func shouldRun(_ prerequisites: [Prerequisite]) -> Bool {
        isCI || prerequisites.allSatisfy(\.isMet)
    }

    /// Throws, naming what to install, when a prerequisite is missing.
    public static func require(_ prerequisites: [Prerequisite]) throws {
        let missing = prerequisites.filter { !$0.isMet }
        guard missing.isEmpty else { throw PrerequisiteMissing(missing: missing) }
    }
}
