import DaemonSupport
import FenceConfig
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `fence-hostd`: the agent on each hypervisor host; publishes the host's inventory on the bus
/// and executes the fence commands sent to it.
@main
enum FenceHostd {
    static let program = "fence-hostd"
    static let summary = "Publish this hypervisor host's domains on the fence-router bus and execute its fence commands. Without -F it detaches and logs to the system log; exit status 0 then means it is serving."

    static func main() async {
        DaemonProcess.prepare()
        let options: DaemonOptions
        do {
            options = try DaemonOptions(parsing: Array(CommandLine.arguments.dropFirst()))
        } catch {
            fail("\(error)\n\(DaemonOptions.usage(program: program, summary: summary))")
        }
        if options.showHelp {
            print(DaemonOptions.usage(program: program, summary: summary), terminator: "")
            exit(0)
        }
        let readiness = Detach.readiness
        if !options.foreground && readiness == nil {
            Detach.intoBackground(program: program)
        }
        do {
            let configuration = try HostAgentConfiguration(document: ConfigurationFile.load(options.configFile))
            let level = DaemonLogging.level(debug: options.debugLevel ?? configuration.debugLevel)
            DaemonLogging.bootstrap(level: level, program: program, detached: readiness != nil)
            let logger = Logger(label: program)
            for warning in configuration.warnings {
                logger.warning("configuration", metadata: ["warning": "\(warning)"])
            }
            let daemon = try await HostDaemon.start(configuration: configuration, options: options, logger: logger)
            readiness?.ready()
            try await daemon.run()
        } catch {
            readiness?.failed("\(error)")
            fail("\(error)")
        }
    }

    static func fail(_ message: String) -> Never {
        let line = Array("\(program): \(message)\n".utf8)
        _ = write(2, line, line.count)
        exit(1)
    }
}
