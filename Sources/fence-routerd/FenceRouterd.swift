import ArgumentParser
import DaemonSupport
import FenceConfig
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// `fence-routerd`: answers fence_xvm requests; with the libvirt backend, a drop-in fence_virtd.
@main
struct FenceRouterd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fence-routerd",
        abstract: "Serve fence_xvm fencing requests (a drop-in fence_virtd).",
        discussion: """
            Reads fence_virt.conf, binds its listeners and carries requests out through its backend.
            Without -F it detaches and logs to the system log; exit status 0 means it is serving.
            """
    )

    @OptionGroup var options: DaemonOptions

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        let readiness = Detach.readiness
        if !options.foreground && readiness == nil {
            Detach.intoBackground(program: "fence-routerd")
        }
        do {
            let document = try ConfigurationFile.load(options.configFile)
            let configuration = try RouterConfiguration(document: document)
            let level = DaemonLogging.level(debug: options.debugLevel ?? configuration.daemon.debugLevel)
            DaemonLogging.bootstrap(level: level, program: "fence-routerd", detached: readiness != nil)
            var logger = Logger(label: "fence-routerd")
            logger.logLevel = level
            for warning in configuration.warnings {
                logger.warning("configuration", metadata: ["warning": "\(warning)"])
            }
            let daemon = try await RouterDaemon.start(
                configuration: configuration,
                options: options,
                logger: logger
            )
            readiness?.ready()
            try await daemon.run()
        } catch {
            let message = "\(error)"
            readiness?.failed(message)
            throw ValidationFailure(message)
        }
    }
}

/// An error already phrased for the operator; printed once, exit status 1.
struct ValidationFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
