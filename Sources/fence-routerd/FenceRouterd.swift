import DaemonSupport
import FenceConfig
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `fence-routerd`: answers fence_xvm requests; with the libvirt backend, a drop-in fence_virtd.
@main
enum FenceRouterd {
    static let program = "fence-routerd"

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
            let configuration = try RouterConfiguration(document: ConfigurationFile.load(options.configFile))
            let level = DaemonLogging.level(debug: options.debugLevel ?? configuration.daemon.debugLevel)
            DaemonLogging.bootstrap(level: level, program: program, detached: readiness != nil)
            let logger = Logger(label: program)
            for warning in configuration.warnings {
                logger.warning("configuration", metadata: ["warning": "\(warning)"])
            }
            let daemon = try await RouterDaemon.start(configuration: configuration, options: options, logger: logger)
            readiness?.ready()
            try await daemon.run()
        } catch {
            readiness?.failed("\(error)")
            fail("\(error)")
        }
    }

    static let summary = "Serve fence_xvm fencing requests: a drop-in fence_virtd. Without -F it detaches and logs to the system log; exit status 0 then means it is serving."

    static func fail(_ message: String) -> Never {
        let line = Array("\(program): \(message)\n".utf8)
        _ = write(2, line, line.count)
        exit(1)
    }
}
