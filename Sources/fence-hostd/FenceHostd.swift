import DaemonSupport
import FenceConfig
import Logging
import MetricsEndpoint
import ServiceLifecycle

/// `fence-hostd`: the agent on each hypervisor host; publishes the host's inventory on the bus
/// and executes the fence commands sent to it.
@main
enum FenceHostd {
    static func main() {
        DaemonProcess.start(HostDaemon.self)
    }
}

extension HostDaemon: Daemon {
    static let program = "fence-hostd"
    static let summary = "Publish this hypervisor host's domains on the fence-router bus and execute its fence commands. Without -F it detaches and logs to the system log; exit status 0 then means it is serving."

    static func configuration(from document: ConfigDocument) throws(ConfigError) -> HostAgentConfiguration {
        try HostAgentConfiguration(document: document)
    }

    static func debugLevel(of configuration: HostAgentConfiguration) -> Int { configuration.debugLevel }
    static func warnings(of configuration: HostAgentConfiguration) -> [ConfigWarning] { configuration.warnings }
    static func observers(of configuration: HostAgentConfiguration, logger: Logger) -> [any Service] {
        configuration.metrics.agent.map { [MetricsEndpoint.bootstrapped(host: $0.host, port: $0.port, logger: logger)] } ?? []
    }
}
