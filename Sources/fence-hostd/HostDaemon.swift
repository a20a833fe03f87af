import BusClient
import DaemonSupport
import FenceConfig
import HostAgent
import Libvirt
import Logging
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The wiring of fence-hostd. It reports ready only when libvirt answers, the broker is connected
/// and this host's command address is subscribed to; its pid file goes when it stops.
struct HostDaemon: Sendable {
    let agent: HostAgent
    let logger: Logger

    static func run(configuration: HostAgentConfiguration, options: DaemonOptions, logger: Logger, serve: (HostDaemon) async throws -> Void) async throws {
        let hostID = configuration.agent.hostID ?? Hostname.current()
        var logger = logger
        logger[metadataKey: "host"] = "\(hostID)"
        let bus = try BusSetup.endpoint(settings: configuration.bus, signer: .daemon(name: hostID, role: .host), containerID: "fence-hostd-\(hostID)-\(getpid())", logger: logger)
        let pidFile = try options.pidFile.map { path throws(StartupError) in try PidFile(path: path, program: "fence-hostd") }
        defer { pidFile?.remove() }
        guard let uri = configuration.libvirt.uris.first else {
            throw StartupError(.configuration, "backends/libvirt: no uri")
        }
        if configuration.libvirt.uris.count > 1 {
            logger.warning("fence-hostd serves one hypervisor; using the first uri", metadata: ["uri": "\(uri)"])
        }
        try await bus.connection.whileRunning {
            // One connection for the agent's whole life: libvirt's test driver keeps its state per connection.
            let libvirt = LibvirtConnection(uri: uri, lifecycleEvents: true, backoff: .milliseconds(250)...(.seconds(2)), logger: logger)
            try await waitForLibvirt(libvirt, wait: options.waitForBackend, logger: logger)
            try await BusSetup.waitForBroker(bus, wait: options.waitForBackend, logger: logger)
            let agent = HostAgent(
                settings: .init(hostID: hostID, snapshotInterval: configuration.agent.snapshotInterval, heartbeatInterval: configuration.agent.heartbeatInterval),
                libvirt: libvirt, bus: bus, logger: logger
            )
            try await agent.prepare(deadline: .now + .seconds(10))
            logger.info("ready", metadata: ["uri": "\(uri)", "broker": "\(bus.connection.connectedBroker.map(\.description) ?? bus.connection.configuration.brokerList)"])
            try await serve(HostDaemon(agent: agent, logger: logger))
        }
    }

    var services: [any Service] { [agent] }

    /// fence-hostd changes nothing while it runs: its connections are its settings. Says what a
    /// restart would change.
    func reload(from old: HostAgentConfiguration, to new: HostAgentConfiguration) -> [String] {
        var restart: [String] = []
        if old.bus.withoutLocations != new.bus.withoutLocations { restart.append("bus") }
        if old.agent != new.agent { restart.append("agent") }
        if old.libvirt != new.libvirt { restart.append("libvirt") }
        if old.metrics != new.metrics { restart.append("metrics") }
        if old.debugLevel != new.debugLevel { restart.append("debug") }
        return restart
    }

    private static func waitForLibvirt(_ libvirt: LibvirtConnection, wait: Bool, logger: Logger) async throws {
        while true {
            do {
                try await libvirt.ping(deadline: .now + .seconds(10))
                return
            } catch {
                guard wait else {
                    throw StartupError(.backend, "cannot reach libvirt at \(libvirt.uri): \(error.message) (start with -w to wait for it)")
                }
                logger.warning("waiting for libvirt", metadata: ["uri": "\(libvirt.uri)", "error": "\(error.message)"])
                try await Task.sleep(for: .seconds(5))
            }
        }
    }
}
