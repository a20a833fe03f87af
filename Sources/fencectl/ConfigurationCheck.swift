import DaemonSupport
import FenceBus
import FenceConfig

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
        let document: ConfigDocument
        do {
            document = try ConfigurationFile.load(file)
        } catch {
            check.errors.append("\(error)")
            return check
        }
        var router: RouterConfiguration?
        var host: HostAgentConfiguration?
        do {
            if document.block(["fence_virtd"]) != nil {
                let configuration = try RouterConfiguration(document: document)
                router = configuration
                check.daemons.append("fence-routerd (\(configuration.daemon.backend.rawValue) backend)")
            }
            if document.block(["backends", "amqp"]) != nil, document.block(["backends", "libvirt"]) != nil {
                host = try HostAgentConfiguration(document: document)
                check.daemons.append("fence-hostd")
            }
        } catch {
            check.errors.append("\(error)")
            return check
        }
        guard router != nil || host != nil else {
            check.errors.append("\(file): configures no daemon: fence-routerd needs a fence_virtd block, fence-hostd backends/amqp and backends/libvirt")
            return check
        }
        var warnings: [ConfigWarning] = []
        for warning in (router?.warnings ?? []) + (host?.warnings ?? []) where !warnings.contains(warning) { warnings.append(warning) }
        check.warnings = warnings.map(\.description)
        if checkFiles {
            check.errors += secretProblems(router: router, bus: router?.bus ?? host?.bus)
        }
        check.effective = EffectiveSettings.document(router: router, host: host, file: file, hostname: hostname)
        return check
    }

    /// The daemons' own start-up reading of each key and of the broker's settings.
    private static func secretProblems(router: RouterConfiguration?, bus: BusSettings?) -> [String] {
        var problems: [String] = []
        let listeners = (router?.multicastListeners.map(\.security) ?? []) + (router?.tcpListeners.map(\.security) ?? [])
        var seen: Set<String> = []
        for security in listeners where seen.insert(security.keyFile).inserted {
            do { _ = try KeyFile.load(security) } catch { problems.append("\(error)") }
        }
        if let bus {
            do { _ = try BusSetup.prepare(bus, containerID: "fencectl-check") } catch { problems.append("\(error)") }
        }
        return problems
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
