import AMQP
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
    static func with<T: Sendable>(_ configFile: String, signer: BusSigner, _ body: (BusEndpoint) async throws -> T) async throws -> T {
        let document = try ConfigurationFile.load(configFile)
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
    static func router(_ configFile: String) throws -> BusSigner {
        let routing = try RouterConfiguration(document: ConfigurationFile.load(configFile)).routing
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
struct OperatorSigner {
    static let nameOption = Usage.Option.value("operator", "name", "Your name on the bus (default: the login that ran sudo, or yours).")
    static let keyOption = Usage.Option.value("operator-key", "file", "Your private key (fencectl keygen --operator NAME FILE).",
                                              default: "/etc/fence-router/operator.key", completion: .files)
    static let options = [nameOption, keyOption]

    let signer: BusSigner

    init(_ line: ParsedCommandLine) {
        signer = .operator(name: line.value(Self.nameOption) ?? BusSession.operatorName, keyFile: line.value(defaulted: Self.keyOption))
    }
}
