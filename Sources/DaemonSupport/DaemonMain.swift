import BuildInfo
import FenceConfig
import Logging
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
    /// What shows the daemon to the outside (its metrics endpoint), made before anything counts;
    /// it runs with the daemon's services.
    static func observers(of configuration: Configuration, logger: Logger) -> [any Service]
    /// Starts every part and, once all are ready, calls `serve` with the daemon, which reports
    /// readiness and runs its services until shutdown. What the start-up needs running already
    /// (a broker connection) runs around `serve` and stops after it.
    static func run(configuration: Configuration, options: DaemonOptions, logger: Logger, serve: (Self) async throws -> Void) async throws
    /// What runs until shutdown, in start order (stopped in reverse).
    var services: [any Service] { get }
    /// Applies a new configuration while serving (SIGHUP), as far as it can; returns the
    /// settings that only a restart applies. Throws, having changed nothing, when it cannot.
    func reload(from old: Configuration, to new: Configuration) throws -> [String]
}

extension DaemonProcess {
    /// Runs `main` from a synchronous entry point and parks the main thread. Swift's asynchronous
    /// `main` ends that thread at once through `dispatch_main`, whose `pthread_exit` unwinds it:
    /// reading the executable's unwind tables, 0.7 MB resident for the daemon's lifetime, for nothing.
    ///
    /// Nothing then runs the main queue or the main actor: the daemons' code must not use them
    /// (a test checks), nor may their dependencies (none of today's does).
    public static func start<D: Daemon>(_ daemon: D.Type) -> Never {
        // The daemon's one top-level task, as the asynchronous `main` would make it; `main` ends
        // the process with its exit status.
        Task.detached { await main(D.self) }
        while true { pause() }
    }

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
        if options.showVersion {
            print("\(D.program) \(BuildInfo.description)")
            exit(0)
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
            let observers = D.observers(of: configuration, logger: logger)
            try await D.run(configuration: configuration, options: options, logger: logger) { running in
                var services = running.services + observers
                services.append(ReloadOnHangup(daemon: running, configuration: configuration, file: options.configFile, logger: logger))
                readiness?.ready()
                ServiceManager.notify("READY=1")
                try await serve(services, logger: logger)
            }
            exit(0)
        } catch {
            readiness?.failed("\(error)")
            ServiceManager.notify("STATUS=\(error)")
            fail(D.program, "\(error)")
        }
    }

    private static func fail(_ program: String, _ message: String) -> Never {
        // Under systemd the journal files it as an error, so journalctl -p err shows why it stopped.
        let priority = SystemLogHandler.isJournal() ? "<3>" : ""
        StandardError.write("\(priority)\(program): \(message)\n")
        exit(1)
    }
}
