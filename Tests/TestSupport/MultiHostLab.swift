import Foundation

/// The multi-host lab of `Deploy/lab/lab.sh`, driven from tests: the same script as the demo.
public final class MultiHostLab: @unchecked Sendable {
    public static let script = Fixtures.repository.appendingPathComponent("Deploy/lab/lab.sh").path
    public static let prerequisites = Prerequisite.namespaces + Prerequisite.libvirtd + BrokerProcess.prerequisites + [Prerequisite.fenceXVM]

    public let directory: TemporaryDirectory
    public var path: String { directory.url.path }

    private init(directory: TemporaryDirectory) {
        self.directory = directory
    }

    /// Builds a lab with the binaries of this build; `brokers` > 1 makes the broker a RabbitMQ cluster.
    /// The routers' `hostFreshness` (3 in the lab), `warmUp` (the freshness) and `requestTimeout`
    /// (15), in seconds, for tests that need other values.
    public static func up(hosts: Int = 3, guests: Int = 2, routers: Int = 1, brokers: Int = 1,
                          hostFreshness: Int? = nil, warmUp: Int? = nil, requestTimeout: Int? = nil) async throws -> MultiHostLab {
        try TestEnvironment.require(prerequisites)
        let lab = MultiHostLab(directory: try TemporaryDirectory(prefix: "fr-lab"))
        var options = ["--hosts", "\(hosts)", "--guests", "\(guests)", "--routers", "\(routers)", "--brokers", "\(brokers)", "--bin", Products.directory.path]
        if let hostFreshness { options += ["--host-freshness", "\(hostFreshness)"] }
        if let warmUp { options += ["--warm-up", "\(warmUp)"] }
        if let requestTimeout { options += ["--request-timeout", "\(requestTimeout)"] }
        do {
            try await Command.check([script, "up", lab.path] + options)
        } catch {
            await lab.down()
            throw error
        }
        return lab
    }

    /// Runs `body` in a fresh lab, taken down afterwards whatever happens.
    public static func with<T: Sendable>(hosts: Int = 3, guests: Int = 2, routers: Int = 1, brokers: Int = 1,
                                         hostFreshness: Int? = nil, warmUp: Int? = nil, requestTimeout: Int? = nil,
                                         _ body: (MultiHostLab) async throws -> T) async throws -> T {
        let lab = try await up(hosts: hosts, guests: guests, routers: routers, brokers: brokers,
                               hostFreshness: hostFreshness, warmUp: warmUp, requestTimeout: requestTimeout)
        return try await withCleanup { try await body(lab) } cleanup: { await lab.down() }
    }

    @discardableResult
    public func run(_ arguments: String...) async throws -> ProcessResult {
        try await Command.check([Self.script] + [arguments[0], path] + arguments.dropFirst())
    }

    /// Takes the lab down; with `FENCE_ROUTER_LAB_LOGS=DIR` set, its logs are kept there first.
    public func down() async {
        if let keep = ProcessInfo.processInfo.environment["FENCE_ROUTER_LAB_LOGS"] {
            _ = try? await Command.run(["cp", "-r", "\(path)/logs", "\(keep)/\(directory.url.lastPathComponent)"])
        }
        _ = try? await Command.run([Self.script, "down", path])
    }

    public func define(_ host: String, _ name: String, uuid: String, running: Bool = true) async throws {
        try await run("define", host, name, uuid, running ? "running" : "off")
    }

    public func migrate(_ name: String, from: String, to: String) async throws {
        try await run("migrate", name, from, to)
    }

    /// The domain's state as that host's libvirtd says (`running`, `shut off`, …); nil if it has no such domain.
    public func state(_ host: String, _ name: String) async throws -> String? {
        let result = try await Command.run([Self.script, "virsh", path, host, "domstate", name])
        guard result.status == 0 else { return nil }
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func domainID(_ host: String, _ name: String) async throws -> String {
        try await run("virsh", host, "domid", name).output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The real fence_xvm in a guest namespace.
    public func xvm(_ guest: String = "g1", _ arguments: String...) async throws -> ProcessResult {
        try await Command.run([Self.script, "xvm", path, guest] + arguments)
    }

    /// `fence_xvm -o status` as the exit code: 0 on, 2 off, 1 failure.
    public func status(_ name: String, guest: String = "g1") async throws -> Int32 {
        try await xvm(guest, "-o", "status", "-H", name, "-t", "20").status
    }

    /// Runs `fence_xvm -o action -H name`; returns its exit code.
    public func fence(_ action: String, _ name: String, guest: String = "g1", timeout: Int = 20) async throws -> Int32 {
        try await xvm(guest, "-o", action, "-H", name, "-t", "\(timeout)").status
    }

    /// The routers' `list` through fence_xvm: domain name → `on` or `off`.
    public func listed() async throws -> [String: String] {
        let list = try await xvm("g1", "-o", "list", "-t", "5")
        let rows = list.output.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true) }
        return Dictionary(rows.compactMap { row in row.count >= 3 ? (String(row[0]), String(row[row.count - 1])) : nil }, uniquingKeysWith: { $1 })
    }

    /// Waits until `part` logs `text` (a grep pattern) in its current run.
    public func waitForLog(_ part: String, _ text: String) async throws {
        try await run("wait", part, text)
    }

    /// Waits until `router` applied an event of `host`'s that shows `domain` in `state` (`running`,
    /// `removed`, …): its inventory caught up with that change.
    public func waitForChange(_ domain: String, on host: String, _ state: String, router: String = "router-hv1") async throws {
        try await waitForLog(router, "domain=\(domain) .*host=\(host) outcome=applied .*state=\(state) .*inventory change")
    }

    /// Waits until the routers' `list` shows `name` as on or off (or, with nil, not at all).
    public func waitUntilListed(_ name: String, on: Bool?, within limit: Duration = .seconds(20)) async throws {
        try await waitUntil("\(name) listed as \(on.map { $0 ? "on" : "off" } ?? "absent")", within: limit, every: .milliseconds(200)) {
            switch (on, try await listed()[name]) {
            case (nil, nil): true
            case (let wanted?, let state?): (state == "on") == wanted
            default: false
            }
        }
    }

    /// Waits until `router` counts `hosts` hosts live. `list` shows the domains of live hosts, so a
    /// domain listed says nothing of another host that may still be stale, and holds back an off.
    public func waitUntilLive(_ hosts: Int, router: String = "router-hv1", within limit: Duration = .seconds(20)) async throws {
        try await waitUntil("\(hosts) hosts live at \(router)", within: limit, every: .milliseconds(200)) {
            try await metrics(router)["fence_hosts{state=\"live\"}"] == Double(hosts)
        }
    }

    public func stop(_ part: String) async throws { try await run("stop", part) }
    public func start(_ part: String) async throws { try await run("start", part) }
    /// SIGKILL, as a crash: `brokerK`, `agent-HOST`, `router-HOST`.
    public func kill(_ part: String) async throws { try await run("kill", part) }

    /// The broker node (`brokerK`) that `agent-HOST` or `router-HOST` is connected to now.
    public func attached(_ part: String) async throws -> String {
        try await run("attached", part).output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func pid(_ part: String) async throws -> Int32 {
        Int32(try await run("pid", part).output.trimmingCharacters(in: .whitespacesAndNewlines))!
    }

    public func log(_ part: String) -> String {
        (try? String(contentsOfFile: "\(path)/logs/\(part).log", encoding: .utf8)) ?? ""
    }

    /// The outcomes a router logged for `op` on `domain`, oldest first (`success`, `off`, `failed(…)`, …).
    public func answers(_ router: String, op: String, domain: String) -> [String] {
        log(router).split(separator: "\n").filter { $0.contains("request answered") && $0.contains(" domain=\(domain) ") && $0.contains(" op=\(op) ") }
            .compactMap { line in line.split(separator: " ").first { $0.hasPrefix("outcome=") }.map { String($0.dropFirst("outcome=".count)) } }
    }

    /// `answers`, once there is one: a router logs its answer after sending it, so the client can
    /// be done before the line is written.
    public func waitForAnswers(_ router: String, op: String, domain: String) async throws -> [String] {
        try await waitUntil("\(router) logged its answer to \(op) \(domain)") { !answers(router, op: op, domain: domain).isEmpty }
        return answers(router, op: op, domain: domain)
    }

    /// The samples `router-HOST` or `agent-HOST` serves on its metrics endpoint, by series
    /// (`name{labels}` as written); histogram buckets left out.
    public func metrics(_ part: String) async throws -> [String: Double] {
        let page = try await Command.check([Self.script, "metrics", path, part]).output
        var samples: [String: Double] = [:]
        for line in page.split(separator: "\n") where !line.hasPrefix("#") && !line.contains("_bucket{") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    /// fencectl, in a host namespace, with that host's configuration (its exit status is the caller's to check).
    public func fencectl(on host: String, _ arguments: String...) async throws -> ProcessResult {
        try await Command.run([Self.script, "fencectl", path, host] + arguments)
    }
}
