import DaemonSupport
import FenceConfig
import Logging
import MetricsEndpoint
import ServiceLifecycle

/// `fence-routerd`: answers fence_xvm requests; with the libvirt backend, a drop-in fence_virtd.
@main
enum FenceRouterd {
    static func main() {
        DaemonProcess.start(RouterDaemon.self)
    }
}

extension RouterDaemon: Daemon {
    static let program = "fence-routerd"
    static let summary = "Serve fence_xvm fencing requests: a drop-in fence_virtd. Without -F it detaches and logs to the system log; exit status 0 then means it is serving."

    static func configuration(from document: ConfigDocument) throws(ConfigError) -> RouterConfiguration {
        try RouterConfiguration(document: document)
    }

    static func debugLevel(of configuration: RouterConfiguration) -> Int { configuration.daemon.debugLevel }
    static func warnings(of configuration: RouterConfiguration) -> [ConfigWarning] { configuration.warnings }
    static func observers(of configuration: RouterConfiguration, logger: Logger) -> [any Service] {
        configuration.metrics.router.map { [MetricsEndpoint.bootstrapped(host: $0.host, port: $0.port, logger: logger)] } ?? []
    }
}
