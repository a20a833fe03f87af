import AMQP
import ArgumentParser
import BusClient
import DaemonSupport
import FenceConfig
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging

/// fencectl on the bus, as `fencectl`, with the settings of the configuration file.
enum BusSession {
    /// Connects, runs `body` on the bus, and closes the connection.
    static func with<T: Sendable>(_ options: ConfigFileOption, signer: BusSigner, _ body: (BusEndpoint) async throws -> T) async throws -> T {
        let document = try ConfigurationFile.load(options.configFile)
        let settings = try BusSettings(document: document)
        var logger = Logger(label: "fencectl")
        logger.logLevel = .error
        let endpoint = try BusSetup.endpoint(settings: settings, signer: signer, containerID: "fencectl-\(getpid())", logger: logger)
        return try await endpoint.connection.whileRunning {
            try await BusSetup.waitForBroker(endpoint, wait: false, logger: logger)
            return try await body(endpoint)
        }
    }

    /// This machine's router: the hosts seal their inventory for each router, so reading it takes
    /// a router's identity key.
    static func router(_ options: ConfigFileOption) throws -> BusSigner {
        let routing = try RouterConfiguration(document: ConfigurationFile.load(options.configFile)).routing
        return .daemon(name: routing.routerID ?? "router-\(Hostname.current())", role: .router)
    }

    /// The operator, for the routers' audit logs.
    static var operatorName: String {
        let name = ["SUDO_USER", "LOGNAME", "USER"].lazy.compactMap { (variable: String) in getenv(variable).map { String(cString: $0) } }.first
        return name ?? "unknown"
    }
}

/// Who makes a statement on the bus: an operator with a key of their own, whose public key every
/// router holds under `operators/NAME.pub`.
struct OperatorOption: ParsableArguments {
    @Option(name: .customLong("operator"), help: "Your name on the bus (default: the login that ran sudo, or yours).")
    var name: String?

    @Option(name: .customLong("operator-key"), help: ArgumentHelp("Your private key (fencectl keygen --operator NAME FILE).", valueName: "file"))
    var keyFile = "/etc/fence-router/operator.key"

    var signer: BusSigner { .operator(name: name ?? BusSession.operatorName, keyFile: keyFile) }
}
