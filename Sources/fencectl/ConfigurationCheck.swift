#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BusClient
import DaemonSupport
import FenceBus
import FenceConfig
import JSONValue
import Logging

/// What `fencectl config check` found in one file: the daemons it configures, its errors and
/// warnings, and the settings in effect.
struct ConfigurationCheck {
    let file: String
    var daemons: [String] = []
    var errors: [String] = []
    var warnings: [String] = []
    var effective: ConfigDocument?

    /// Reads the file as each daemon would and, with `checkFiles`, the secrets it names.
    static func run(file: String, checkFiles: Bool, hostname: String) -> ConfigurationCheck {
        var check = ConfigurationCheck(file: file)
        let configurations: DaemonConfigurations
        do {
            configurations = try DaemonConfigurations(document: ConfigurationFile.load(file))
        } catch {
            check.errors.append("\(error)")
            return check
        }
        let (router, host) = (configurations.router, configurations.host)
        if let router { check.daemons.append("fence-routerd (\(router.daemon.backend.rawValue) backend)") }
        if host != nil { check.daemons.append("fence-hostd") }
        check.warnings = configurations.warnings.map(\.description)
        let uris = (router?.daemon.backend == .libvirt ? router?.libvirt.uris ?? [] : []) + (host?.libvirt.uris ?? [])
        check.warnings += sandboxConflicts(uris)
        if let bus = router?.bus ?? host?.bus, let exposed = exposedPassword(bus, file: file) { check.warnings.append(exposed) }
        if checkFiles {
            // The identity a file serves: its host's when it configures an agent, else its router's.
            let signer: BusSigner = host.map { .daemon(name: $0.agent.hostID ?? hostname, role: .host) }
                ?? .daemon(name: router?.routing.routerID ?? "router-\(hostname)", role: .router)
            check.errors += secretProblems(router: router, bus: router?.bus ?? host?.bus, signer: signer)
            if let bus = router?.bus ?? host?.bus {
                check.warnings += trustGaps(bus, router: router?.bus != nil, host: host != nil)
            }
        }
        check.effective = EffectiveSettings.document(router: router, host: host, file: file, hostname: hostname)
        return check
    }

    /// The daemons' own start-up reading of each key and of the broker's settings.
    private static func secretProblems(router: RouterConfiguration?, bus: BusSettings?, signer: BusSigner) -> [String] {
        var problems: [String] = []
        let listeners = (router?.multicastListeners.map(\.security) ?? []) + (router?.tcpListeners.map(\.security) ?? [])
        var seen: Set<String> = []
        for security in listeners where seen.insert(security.keyFile).inserted {
            do { _ = try KeyFile.load(security) } catch { problems.append("\(error)") }
        }
        if let bus {
            do { _ = try BusSetup.prepare(bus, containerID: "fencectl-check") } catch { problems.append("\(error)") }
            do { _ = try BusSetup.identity(of: signer, settings: bus) } catch { problems.append("\(error)") }
        }
        return problems
    }

    /// libvirt URIs that the units' sandbox (`ProtectHome=yes`) breaks: ssh reads its keys under
    /// /root/.ssh, a session daemon's socket lives under /run/user or a home directory.
    static func sandboxConflicts(_ uris: [String]) -> [String] {
        var conflicts: [String] = []
        for uri in Set(uris).sorted() {
            let reason: String? =
                if uri.contains("+ssh://") || uri.contains("+libssh://") || uri.contains("+libssh2://") {
                    "ssh reads its keys and known_hosts under /root/.ssh"
                } else if uri.contains("/session") || uri.contains("socket=/run/user/") || uri.contains("socket=/home/") || uri.contains("socket=/root/") {
                    "a session libvirtd's socket is under /run/user or a home directory"
                } else {
                    nil
                }
            if let reason {
                conflicts.append("libvirt uri \(uri): \(reason), which the units' ProtectHome=yes hides; install the drop-in examples/systemd/protect-home-read-only.conf (Docs/install.md)")
            }
        }
        return conflicts
    }

    /// A broker password in a configuration file others may read.
    static func exposedPassword(_ bus: BusSettings, file: String) -> String? {
        guard bus.urls.contains(where: hasPassword) else { return nil }
        var status = stat()
        guard stat(file, &status) == 0, status.st_mode & 0o004 != 0 else { return nil }
        return "\(file) holds a broker password in a url and every user may read it: chmod 600 \(file), or move the password to password_file (0600)"
    }

    /// Whether `amqp://user:password@host` carries a password.
    static func hasPassword(_ url: String) -> Bool {
        let parts = url.split(separator: "://", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return false }
        let authority = parts[1].prefix { $0 != "/" }
        guard let at = authority.lastIndex(of: "@") else { return false }
        return authority[..<at].contains(":")
    }

    /// Whom the trust directory lets each daemon hear: a router that trusts no host, or an agent
    /// that trusts no router, drops every message it needs.
    private static func trustGaps(_ bus: BusSettings, router: Bool, host: Bool) -> [String] {
        let trust = TrustDirectory(path: bus.trustDirectory, logger: Logger(label: "fencectl"))
        var gaps: [String] = []
        if router, trust.names(role: .host).isEmpty {
            gaps.append("\(bus.trustDirectory)/hosts/ holds no host key: fence-routerd will believe no host (fencectl keygen --host NAME …)")
        }
        if host, trust.names(role: .router).isEmpty {
            gaps.append("\(bus.trustDirectory)/routers/ holds no router key: fence-hostd will take commands from no router (fencectl keygen --router NAME …)")
        }
        return gaps
    }

    /// The summary, warnings and effective settings (errors go to standard error).
    var text: String {
        var lines: [String] = []
        if errors.isEmpty {
            lines.append("\(file): valid for \(daemons.joined(separator: " and "))")
        }
        lines += warnings.map { "warning: \($0)" }
        var text = lines.map { $0 + "\n" }.joined()
        if let effective {
            text += "\n# The settings in effect, defaults included:\n" + effective.rendered()
        }
        return text
    }

    var json: String {
        var members: [(String, JSON)] = [
            ("file", .string(file)), ("valid", .bool(errors.isEmpty)),
            ("daemons", .array(daemons.map(JSON.string))),
            ("errors", .array(errors.map(JSON.string))), ("warnings", .array(warnings.map(JSON.string))),
        ]
        if let effective { members.append(("settings", Self.json(effective.root))) }
        return String(decoding: JSON.object(members).encoded(), as: UTF8.self) + "\n"
    }

    /// A block as an object; a name used more than once in a block (two multicast listeners)
    /// becomes an array.
    private static func json(_ node: ConfigNode) -> JSON {
        guard let children = node.children else { return .string(node.value ?? "") }
        var names: [String] = []
        for child in children where !names.contains(child.name) { names.append(child.name) }
        return .object(names.map { name in
            let values = children.filter { $0.name == name }.map(json)
            return (name, values.count == 1 ? values[0] : .array(values))
        })
    }
}
