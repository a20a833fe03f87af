import DropReporting
import DaemonSupport
import FenceConfig
import FenceCore
import FenceRouter
import FenceServer
import FenceWire
import Libvirt
import BusClient
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The wiring of fence-routerd: backend, pipeline and listeners built from the configuration. It
/// is started only when every part is ready: keys read, backend answering, every listener bound.
struct RouterDaemon: Sendable {
    let services: [any Service]
    /// Held (locked) for the daemon's life.
    let state: StateDirectory
    let logger: Logger
    let pipeline: RequestPipeline
    let replays: ReplayJournal
    let multicast: [MulticastListener]
    let tcp: [TCPListener]

    static func run(configuration: RouterConfiguration, options: DaemonOptions, logger: Logger, serve: (RouterDaemon) async throws -> Void) async throws {
        // Keys first: a missing or world-readable key is an operator error to report at once.
        let credentials = try Self.credentials(configuration)

        let pidFile = try options.pidFile.map { path throws(StartupError) in try PidFile(path: path, program: "fence-routerd") }
        defer { pidFile?.remove() }
        let wait = options.waitForBackend || configuration.daemon.waitForBackend
        let state = try StateDirectory(configuration.daemon.stateDirectory, program: "fence-routerd")
        switch configuration.daemon.backend {
        case .libvirt:
            let backend = try await libvirtBackend(configuration.libvirt, wait: wait, logger: logger)
            let daemon = try await front(for: backend, services: [], configuration: configuration, credentials: credentials, state: state, logger: logger)
            defer { daemon.replays.persist() }
            try await serve(daemon)
        case .amqp:
            let (endpoint, routerID) = try busEndpoint(configuration, logger: logger)
            try await endpoint.connection.whileRunning {
                let backend = try await routedBackend(endpoint, routerID: routerID, configuration: configuration, wait: wait, logger: logger)
                let daemon = try await front(for: backend, services: [backend], configuration: configuration, credentials: credentials, state: state, logger: logger)
                // The last packets seen reach the journal before the process exits.
                defer { daemon.replays.persist() }
                try await serve(daemon)
            }
        }
    }

    /// The front end around a ready backend: the pipeline and every listener bound.
    private static func front(
        for backend: any FenceBackend, services backendServices: [any Service], configuration: RouterConfiguration,
        credentials: (multicast: [ListenerCredentials], tcp: [ListenerCredentials]), state: StateDirectory, logger: Logger
    ) async throws -> RouterDaemon {
        let replays: ReplayJournal
        do {
            replays = try ReplayJournal(directory: configuration.daemon.stateDirectory, lifetime: UInt64(configuration.daemon.replayMemory.components.seconds), logger: logger)
        } catch {
            throw StartupError(.configuration, "state_directory: the journal of seen packets: \(error)")
        }
        var timing = FrontEndTiming()
        timing.requestTimeout = configuration.daemon.requestTimeout
        timing.duplicateWindow = configuration.daemon.duplicateWindow
        let policy = Self.policy(configuration.groups)
        let drops = DropLog<DropReason>.packets(logger: logger)
        let pipeline = RequestPipeline(
            backend: backend,
            policy: policy,
            timing: timing,
            replays: replays,
            statistics: FrontEndStatistics(),
            drops: drops,
            logger: logger
        )
        for settings in configuration.multicastListeners { _ = try MulticastListener.interfaceIndex(of: settings) }
        var multicast: [MulticastListener] = []
        var tcp: [TCPListener] = []
        do {
            for (settings, credentials) in zip(configuration.multicastListeners, credentials.multicast) {
                multicast.append(try MulticastListener.bind(settings: settings, credentials: credentials, pipeline: pipeline, logger: logger))
            }
            // NIO's event loops start at the singleton's first use: tcp listeners and the metrics
            // endpoint need them, a router with neither runs none.
            for (settings, credentials) in zip(configuration.tcpListeners, credentials.tcp) {
                tcp.append(try await TCPListener.bind(settings: settings, credentials: credentials, pipeline: pipeline,
                                                      eventLoopGroup: MultiThreadedEventLoopGroup.singleton, logger: logger))
            }
        } catch {
            for listener in multicast { await listener.close() }
            for listener in tcp { await listener.close() }
            throw error
        }
        // Stopped in reverse order: the listeners first, then the drop log, then the backend.
        let services: [any Service] = backendServices + [drops] + multicast + tcp
        logger.info("ready", metadata: [
            "backend": "\(configuration.daemon.backend.rawValue)",
            "listeners": "\(multicast.count + tcp.count)",
            "request-timeout": "\(configuration.daemon.requestTimeout)",
            "access-groups": "\(configuration.groups.count)",
        ])
        return RouterDaemon(services: services, state: state, logger: logger, pipeline: pipeline, replays: replays, multicast: multicast, tcp: tcp)
    }

    /// Every listener's key, read from its file, with its digests.
    private static func credentials(_ configuration: RouterConfiguration) throws(StartupError) -> (multicast: [ListenerCredentials], tcp: [ListenerCredentials]) {
        func read(_ security: ListenerSecurity) throws(StartupError) -> ListenerCredentials {
            ListenerCredentials(key: try KeyFile.load(security), security: security)
        }
        var multicast: [ListenerCredentials] = []
        for listener in configuration.multicastListeners { multicast.append(try read(listener.security)) }
        var tcp: [ListenerCredentials] = []
        for listener in configuration.tcpListeners { tcp.append(try read(listener.security)) }
        return (multicast, tcp)
    }

    private static func policy(_ groups: [AccessGroupSettings]) -> AccessPolicy {
        AccessPolicy(groups: groups.map {
            AccessPolicy.Group(sources: $0.sources.map { CallbackAddress($0)?.description ?? $0 }, members: $0.members)
        })
    }

    /// Applies what can change while serving: the listeners' keys and digests (key rotation), the
    /// access groups, the request deadline. Every key is read before anything changes, so a bad
    /// one leaves the running settings whole. Returns what only a restart applies.
    func reload(from old: RouterConfiguration, to new: RouterConfiguration) throws -> [String] {
        // Listeners are matched by position; where they listen, not how they check, needs a restart.
        func places(_ configuration: RouterConfiguration) -> [String] {
            configuration.multicastListeners.map { "multicast \($0.group) \($0.port) \($0.interface ?? "")" }
                + configuration.tcpListeners.map { "tcp \($0.address) \($0.port)" }
        }
        var restart: [String] = []
        if places(old) != places(new) { restart.append("listeners") }
        if old.daemon.backend != new.daemon.backend || old.libvirt != new.libvirt || old.bus?.withoutLocations != new.bus?.withoutLocations || old.routing != new.routing {
            restart.append("backend")
        }
        if old.daemon.duplicateWindow != new.daemon.duplicateWindow { restart.append("duplicate_window") }
        if old.daemon.stateDirectory != new.daemon.stateDirectory { restart.append("state_directory") }
        if old.daemon.replayMemory != new.daemon.replayMemory { restart.append("replay_memory") }
        if old.daemon.debugLevel != new.daemon.debugLevel { restart.append("debug") }
        if old.metrics != new.metrics { restart.append("metrics") }

        if restart.contains("listeners") {
            // The keys belong to listeners that will be others after the restart.
            restart.append("keys")
        } else {
            let credentials = try Self.credentials(new)
            for (listener, credentials) in zip(multicast, credentials.multicast) { listener.update(credentials: credentials) }
            for (listener, credentials) in zip(tcp, credentials.tcp) { listener.update(credentials: credentials) }
        }
        pipeline.update(policy: Self.policy(new.groups), requestTimeout: new.daemon.requestTimeout)
        logger.info("reloaded access groups, request timeout\(restart.contains("keys") ? "" : " and keys")", metadata: [
            "listeners": "\(multicast.count + tcp.count)", "access-groups": "\(new.groups.count)", "request-timeout": "\(new.daemon.requestTimeout)",
        ])
        return restart
    }

    /// The router's place on the bus, from `backends/amqp`: its keys read, not yet connected.
    private static func busEndpoint(_ configuration: RouterConfiguration, logger: Logger) throws(StartupError) -> (BusEndpoint, routerID: String) {
        guard let bus = configuration.bus else { throw StartupError(.configuration, "backends/amqp is missing") }
        let routerID = configuration.routing.routerID ?? "router-\(Hostname.current())"
        let endpoint = try BusSetup.endpoint(settings: bus, signer: .daemon(name: routerID, role: .router), containerID: "fence-routerd-\(routerID)-\(getpid())", logger: logger)
        return (endpoint, routerID)
    }

    /// Waits for the broker, subscribes to the inventory and attaches this router's reply address.
    private static func routedBackend(_ endpoint: BusEndpoint, routerID: String, configuration: RouterConfiguration, wait: Bool, logger: Logger) async throws -> RoutedBackend {
        try await BusSetup.waitForBroker(endpoint, wait: wait, logger: logger)
        let routing = configuration.routing
        let backend: RoutedBackend
        do {
            backend = try RoutedBackend(
                settings: .init(routerID: routerID, configuredHosts: routing.expectedHosts, freshness: routing.freshness,
                                warmUp: routing.warmUp, stateDirectory: configuration.daemon.stateDirectory),
                bus: endpoint, logger: logger
            )
        } catch {
            throw StartupError(.backend, "cannot read the hosts this router keeps: \(error)")
        }
        try await backend.prepare(deadline: .now + .seconds(10))
        return backend
    }

    /// Opens one connection per URI and checks that libvirt answers; with `wait`, retries until it does.
    private static func libvirtBackend(_ settings: LibvirtBackendSettings, wait: Bool, logger: Logger) async throws -> HypervisorFencer {
        var hypervisors: [any Hypervisor] = []
        for uri in settings.uris {
            let connection = LibvirtConnection(uri: uri, logger: logger)
            while true {
                do {
                    try await connection.ping(deadline: .now + .seconds(10))
                    break
                } catch {
                    guard wait else {
                        throw StartupError(.backend, "libvirt backend: cannot reach \(uri): \(error.message) (start with -w to wait for it)")
                    }
                    logger.warning("waiting for the backend", metadata: ["uri": "\(uri)", "error": "\(error.message)"])
                    try await Task.sleep(for: .seconds(5))
                }
            }
            hypervisors.append(LibvirtHypervisor(connection: connection))
        }
        return HypervisorFencer(hypervisors: hypervisors, logger: logger)
    }
}
