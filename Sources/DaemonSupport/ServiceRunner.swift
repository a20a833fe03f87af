import Logging
import ServiceLifecycle

extension DaemonProcess {
    /// Runs a daemon's services until SIGTERM or SIGINT, then shuts them down gracefully in reverse
    /// order (listeners stop taking requests, requests under way finish).
    static func serve(_ services: [any Service], logger: Logger) async throws {
        let group = ServiceGroup(configuration: .init(
            services: (services + [ServiceManagerLink()]).map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        try await group.run()
        logger.info("stopped")
    }
}
