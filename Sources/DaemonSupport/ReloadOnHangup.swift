import FenceConfig
import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals

/// SIGHUP: read the configuration file again and apply it while serving. A file that does not
/// read or check leaves the running configuration as it is; settings that need a restart are
/// named on every reload until the restart.
final class ReloadOnHangup<D: Daemon>: Service {
    let daemon: D
    /// The configuration in effect: the file's last one that needed no restart.
    let applied: Mutex<D.Configuration>
    let file: String
    let logger: Logger

    init(daemon: D, configuration: D.Configuration, file: String, logger: Logger) {
        self.daemon = daemon
        self.applied = Mutex(configuration)
        self.file = file
        self.logger = logger
    }

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in hangups { self.reload() }
        }
    }

    private func reload() {
        ServiceManager.notify("RELOADING=1")
        defer { ServiceManager.notify("READY=1") }
        do {
            let next = try D.configuration(from: ConfigurationFile.load(file))
            let restart = try daemon.reload(from: applied.withLock { $0 }, to: next)
            for warning in D.warnings(of: next) {
                logger.warning("configuration", metadata: ["warning": "\(warning)"])
            }
            if restart.isEmpty {
                applied.withLock { $0 = next }
                logger.notice("configuration reloaded", metadata: ["file": "\(file)"])
            } else {
                logger.warning("configuration reloaded in part; restart to apply the rest", metadata: [
                    "file": "\(file)", "restart-needed": "\(restart.joined(separator: ","))",
                ])
            }
        } catch {
            logger.error("configuration not reloaded; the running one stays", metadata: ["file": "\(file)", "error": "\(error)"])
        }
    }
}
