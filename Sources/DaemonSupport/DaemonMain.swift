import FenceConfig
import Logging
import MetricsEndpoint
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A daemon of ours, as its `main` needs to know it; `DaemonProcess.main` does the rest.
public protocol Daemon: Sendable {
    associatedtype Configuration: Sendable
    static var program: String { get }
    /// The help text's first paragraph.
    static var summary: String { get }
    static func configuration(from document: ConfigDocument) throws(ConfigError) -> Configuration
    static func debugLevel(of configuration: Configuration) -> Int
    static func warnings(of configuration: Configuration) -> [ConfigWarning]
    /// Where this daemon serves its metrics; nil for none.
    static func metrics(of configuration: Configuration) -> MetricsSettings.Endpoint?
    /// Returns once every part is ready (the daemon then reports readiness).
    static func start(configuration: Configuration, options: DaemonOptions, logger: Logger) async throws -> Self
    /// What runs until shutdown, in start order (stopped in reverse).
    var services: [any Service] { get }
    var pidFile: PidFile? { get }
    /// Applies a new configuration while serving (SIGHUP), as far as it can; returns the
    /// settings that only a restart applies. Throws, having changed nothing, when it cannot.
    func reload(from old: Configuration, to new: Configuration) throws -> [String]
}

extension DaemonProcess {
    /// fence_virtd's start-up, the same for every daemon: its options and help, detaching, the
    /// configuration, logging, readiness, and one line on standard error for whatever fails.
    public static func main<D: Daemon>(_ daemon: D.Type) async -> Never {
        prepare()
        let usage = DaemonOptions.usage(program: D.program, summary: D.summary)
        let options: DaemonOptions
        do {
            options = try DaemonOptions(parsing: Array(CommandLine.arguments.dropFirst()))
        } catch {
            fail(D.program, "\(error)\n\(usage)")
        }
        if options.showHelp {
            print(usage, terminator: "")
            exit(0)
        }
        if options.configure {
            exit(Configurator.run(path: options.configFile))
        }
        let readiness = Detach.readiness
        if !options.foreground && readiness == nil {
            Detach.intoBackground(program: D.program)
        }
        do {
            let configuration = try D.configuration(from: ConfigurationFile.load(options.configFile))
            let level = DaemonLogging.level(debug: options.debugLevel ?? D.debugLevel(of: configuration))
            DaemonLogging.bootstrap(level: level, program: D.program, detached: readiness != nil)
            let logger = Logger(label: D.program)
            for warning in D.warnings(of: configuration) {
                logger.warning("configuration", metadata: ["warning": "\(warning)"])
            }
            // Before anything counts, and only when something reads the counts.
            let endpoint = D.metrics(of: configuration)
            let registry = endpoint.map { _ in MetricsEndpoint.bootstrap() }
            let running = try await D.start(configuration: configuration, options: options, logger: logger)
            var services = running.services
            if let endpoint, let registry {
                services.append(MetricsEndpoint(host: endpoint.host, port: endpoint.port, registry: registry, logger: logger))
            }
            services.append(ReloadOnHangup(daemon: running, configuration: configuration, file: options.configFile, logger: logger))
            readiness?.ready()
            ServiceManager.notify("READY=1")
            try await serve(services, pidFile: running.pidFile, logger: logger)
            exit(0)
        } catch {
            readiness?.failed("\(error)")
            ServiceManager.notify("STATUS=\(error)")
            fail(D.program, "\(error)")
        }
    }

    private static func fail(_ program: String, _ message: String) -> Never {
        let line = Array("\(program): \(message)\n".utf8)
        _ = write(2, line, line.count)
        exit(1)
    }
}
