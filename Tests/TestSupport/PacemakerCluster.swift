import Foundation

/// A real Pacemaker cluster (Debian's corosync and pacemaker) of `Deploy/lab/pacemaker.sh`, its
/// nodes in guest namespaces of a `MultiHostLab`: the fencer's fence_xvm reaches the lab's routers.
public final class PacemakerCluster: @unchecked Sendable {
    public static let script = Fixtures.repository.appendingPathComponent("Deploy/lab/pacemaker.sh").path
    public static let prerequisites = MultiHostLab.prerequisites + Prerequisite.pacemaker

    public let directory: TemporaryDirectory
    public let nodes: [String]
    public var path: String { directory.url.path }

    private init(directory: TemporaryDirectory, nodes: [String]) {
        self.directory = directory
        self.nodes = nodes
    }

    /// Starts the cluster on `nodes` (guests of `lab`); returns once a node sees quorum, a DC and every node online.
    public static func up(in lab: MultiHostLab, nodes: [String]) async throws -> PacemakerCluster {
        try TestEnvironment.require(prerequisites)
        let cluster = PacemakerCluster(directory: try TemporaryDirectory(prefix: "fr-pcmk"), nodes: nodes)
        do {
            try await Command.check([script, "up", cluster.path, "--nodes", nodes.joined(separator: ","), "--lab", lab.path])
        } catch {
            await cluster.down()
            throw error
        }
        return cluster
    }

    /// Runs `body` with a cluster on `nodes` of `lab`, taken down afterwards whatever happens.
    public static func with<T: Sendable>(in lab: MultiHostLab, nodes: [String], _ body: (PacemakerCluster) async throws -> T) async throws -> T {
        let cluster = try await up(in: lab, nodes: nodes)
        return try await withCleanup { try await body(cluster) } cleanup: { await cluster.down() }
    }

    /// Kills every node; with `FENCE_ROUTER_LAB_LOGS=DIR` set, the nodes' logs are kept there first.
    public func down() async {
        if let keep = ProcessInfo.processInfo.environment["FENCE_ROUTER_LAB_LOGS"] {
            for node in nodes {
                _ = try? await Command.run(["cp", "-r", "\(path)/\(node)/log", "\(keep)/\(directory.url.lastPathComponent)-\(node)"])
            }
        }
        _ = try? await Command.run([Self.script, "down", path])
    }

    /// A Pacemaker command line tool inside `node` (its exit status is the caller's to check).
    public func crm(_ node: String, _ arguments: [String]) async throws -> ProcessResult {
        try await Command.run([Self.script, "crm", path, node] + arguments)
    }

    public func crm(_ node: String, _ arguments: String...) async throws -> ProcessResult {
        try await crm(node, arguments)
    }

    /// SIGKILL to all of `node`'s processes at once (corosync, pacemakerd and its daemons).
    public func kill(_ node: String) async throws {
        try await Command.check([Self.script, "kill", path, node])
    }

    /// Starts `node` again (after `kill`, or once it stopped itself on learning it was fenced: a
    /// run still stopping is waited for), as its VM's boot would; returns once its corosync and
    /// pacemakerd run, not once it joined.
    public func start(_ node: String) async throws {
        try await Command.check([Self.script, "start", path, node])
    }

    public func isRunning(_ node: String) async throws -> Bool {
        try await Command.run([Self.script, "running", path, node]).status == 0
    }

    /// The nodes `observer` sees online, from `crm_mon --output-as=xml`; nil when it cannot say.
    public func online(as observer: String) async throws -> Set<String>? {
        let result = try await crm(observer, "crm_mon", "-1", "--output-as=xml")
        guard result.status == 0 else { return nil }
        var online: Set<String> = []
        for line in result.output.split(separator: "\n") where line.contains("<node name=\"") && line.contains(" online=\"true\"") {
            if let name = line.split(separator: "\"").dropFirst().first { online.insert(String(name)) }
        }
        return online
    }

    /// Whether `observer` is in a partition with quorum and a DC.
    public func hasQuorum(as observer: String) async throws -> Bool {
        let result = try await crm(observer, "crm_mon", "-1", "--output-as=xml")
        return result.status == 0 && result.output.contains("<current_dc present=\"true\"") && result.output.contains("with_quorum=\"true\"")
    }

    /// The fencer's history of `target` as `observer` knows it, one line per action, newest
    /// first (`reboot of g2 successful: delegate=g1, client=stonith_admin.…, origin=g1, completed='…'`).
    public func fencingHistory(_ target: String, as observer: String) async throws -> [String] {
        let result = try await crm(observer, "stonith_admin", "--history", target, "--verbose")
        return result.output.split(separator: "\n").map(String.init).filter { $0.contains(" of \(target) ") }
    }
}
