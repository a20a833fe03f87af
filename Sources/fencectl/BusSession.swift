import AMQP
import BusClient
import DaemonSupport
import FenceConfig
import Foundation
import Logging

/// fencectl on the bus, as `fencectl`, with the settings of the configuration file.
enum BusSession {
    static func open(_ options: ConfigFileOption) async throws -> BusEndpoint {
        let document = try ConfigurationFile.load(options.configFile)
        let settings = try BusSettings(document: document)
        var logger = Logger(label: "fencectl")
        logger.logLevel = .error
        let endpoint = try BusSetup.endpoint(settings: settings, sender: "fencectl", containerID: "fencectl-\(ProcessInfo.processInfo.processIdentifier)", logger: logger)
        try await BusSetup.waitForBroker(endpoint, wait: false, logger: logger)
        return endpoint
    }

    /// The operator, for the routers' audit logs.
    static var operatorName: String {
        let environment = ProcessInfo.processInfo.environment
        return environment["SUDO_USER"] ?? environment["LOGNAME"] ?? environment["USER"] ?? "unknown"
    }
}
