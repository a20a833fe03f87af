import FenceWire

/// The listener kinds fence-routerd serves; several may run at once.
public enum ListenerKind: String, Hashable, Sendable, CaseIterable {
    case multicast
    case tcp
}

/// The backend that carries out requests.
public enum BackendKind: String, Hashable, Sendable, CaseIterable {
    /// One host through its local libvirt: the drop-in `fence_virtd`.
    case libvirt
    /// Every host through the bus: each request goes to the host that runs the domain.
    case amqp
}

/// `fence_virtd { … }`: how the daemon runs.
public struct DaemonSettings: Hashable, Sendable {
    public var listeners: [ListenerKind] = [.multicast]
    public var backend: BackendKind = .libvirt
    public var debugLevel = 0
    public var foreground = false
    /// `wait_for_init` (formerly `wait_for_backend`): retry the backend until it answers instead of exiting.
    public var waitForBackend = false
    /// `request_timeout`: how long a request may live from its first packet; past it, it is dropped
    /// and never executed. Below fence_xvm's default `-t 30`.
    public var requestTimeout: Duration = .seconds(20)
    /// `duplicate_window`: how long an answered request's copies are dropped after its client
    /// took the call-back.
    public var duplicateWindow: Duration = .seconds(2)
    /// `state_directory`: what the daemon keeps across restarts (the signed packets it has seen;
    /// with the amqp backend, learned hosts and operator confirmations).
    public var stateDirectory = "/var/lib/fence-router"
    /// `replay_memory`: how long an accepted signed packet is remembered, so that a copy of it sent
    /// again (a replay) is dropped. At most `SeenPackets` capacity packets are kept.
    public var replayMemory: Duration = .seconds(86_400)

    public init() {}

    static let keys = [
        "listener", "backend", "debug", "foreground", "wait_for_init", "wait_for_backend", "module_path",
        "name_mode", "request_timeout", "duplicate_window", "state_directory", "replay_memory",
    ]

    init(reading reader: BlockReader) throws(ConfigError) {
        let listenerText = try reader.required("listener")
        var kinds: [ListenerKind] = []
        for name in listenerText.split(whereSeparator: { $0 == "," || $0 == " " }) {
            guard let kind = ListenerKind(rawValue: name.lowercased()) else {
                throw reader.invalid("listener", "listener \"\(name)\" is not supported (supported: multicast, tcp)")
            }
            if !kinds.contains(kind) { kinds.append(kind) }
        }
        guard !kinds.isEmpty else { throw reader.invalid("listener", "no listener named") }
        listeners = kinds
        let backendName = try reader.required("backend")
        guard let backend = BackendKind(rawValue: backendName.lowercased()) else {
            throw reader.invalid("backend", "backend \"\(backendName)\" is not supported (supported: libvirt, amqp)")
        }
        self.backend = backend
        debugLevel = try reader.integer("debug", in: 0...99) ?? 0
        foreground = try reader.boolean("foreground") ?? false
        let legacyWait = try reader.boolean("wait_for_backend")
        waitForBackend = try reader.boolean("wait_for_init") ?? legacyWait ?? false
        requestTimeout = try reader.seconds("request_timeout", in: 1...300) ?? .seconds(20)
        duplicateWindow = try reader.seconds("duplicate_window", in: 2...3600) ?? .seconds(2)
        stateDirectory = reader.string("state_directory") ?? "/var/lib/fence-router"
        guard stateDirectory.hasPrefix("/") else { throw reader.invalid("state_directory", "\"\(stateDirectory)\" is not an absolute path") }
        replayMemory = try reader.seconds("replay_memory", in: 3600...2_592_000) ?? .seconds(86_400)
    }
}

/// `backends/libvirt`: the hypervisor connections of the single-host backend.
public struct LibvirtBackendSettings: Hashable, Sendable {
    /// `uri`, then `uri1`, `uri2`, … up to the first missing index, as the reference reads them.
    public var uris: [String]

    public init(uris: [String]) {
        self.uris = uris
    }

    init(reading reader: BlockReader) throws(ConfigError) {
        var uris = [try reader.required("uri")]
        var index = 1
        while let next = reader.string("uri\(index)") {
            uris.append(next)
            index += 1
        }
        self.uris = uris
    }
}

/// `groups/group`: a static map of which requesters may act on which domains. With no group at
/// all, everything is allowed, as in the reference.
public struct AccessGroupSettings: Hashable, Sendable {
    public var name: String?
    /// Requester addresses (the packet's call-back address, or the TCP peer).
    public var sources: [String]
    /// Domains by name or UUID (`uuid` entries hold either, as in the reference).
    public var members: [String]

    public init(name: String?, sources: [String], members: [String]) {
        self.name = name
        self.sources = sources
        self.members = members
    }
}

/// Everything fence-routerd reads from `fence_virt.conf`, with the reference's defaults.
public struct RouterConfiguration: Hashable, Sendable {
    /// The keys of a `groups/group` block.
    static let groupKeys = ["name", "uuid", "ip"]

    public var daemon = DaemonSettings()
    public var multicastListeners: [MulticastListenerSettings] = []
    public var tcpListeners: [TCPListenerSettings] = []
    public var libvirt = LibvirtBackendSettings(uris: [])
    /// The broker and bus, and the router's own settings, for the amqp backend.
    public var bus: BusSettings?
    public var routing = RouterBusSettings()
    public var groups: [AccessGroupSettings] = []
    public var metrics = MetricsSettings()
    /// Unknown keys and similar findings that do not stop the daemon.
    public var warnings: [ConfigWarning] = []

    public init() {}

    public init(document: ConfigDocument) throws(ConfigError) {
        let file = document.file
        let daemonReader = BlockReader(file: file, path: "fence_virtd", node: document.block(["fence_virtd"]), knownKeys: DaemonSettings.keys)
        guard daemonReader.node != nil else {
            throw ConfigError(code: .missingKey, file: file, line: 0, key: "fence_virtd", message: "the fence_virtd block is missing")
        }
        daemon = try DaemonSettings(reading: daemonReader)
        var readers = [daemonReader]

        // Every block of a listed kind is one listener; a listed kind without a block runs with defaults.
        let listenerBlocks = document.block(["listeners"])
        for kind in daemon.listeners {
            let nodes = listenerBlocks?.blocks(named: kind.rawValue) ?? []
            for node in nodes.isEmpty ? [nil] : nodes.map(Optional.some) {
                let path = "listeners/\(kind.rawValue)"
                switch kind {
                case .multicast:
                    let reader = BlockReader(file: file, path: path, node: node, knownKeys: MulticastListenerSettings.keys)
                    multicastListeners.append(try MulticastListenerSettings(reading: reader))
                    readers.append(reader)
                case .tcp:
                    let reader = BlockReader(file: file, path: path, node: node, knownKeys: TCPListenerSettings.keys)
                    tcpListeners.append(try TCPListenerSettings(reading: reader))
                    readers.append(reader)
                }
            }
        }

        switch daemon.backend {
        case .libvirt:
            let node = document.block(["backends", "libvirt"])
            let reader = BlockReader(file: file, path: "backends/libvirt", node: node, knownKeys: [], knownPrefixes: ["uri"])
            guard node != nil else {
                throw ConfigError(code: .missingKey, file: file, line: 0, key: "backends/libvirt",
                                  message: "the libvirt backend needs a backends { libvirt { uri = \"…\"; } } block")
            }
            libvirt = try LibvirtBackendSettings(reading: reader)
            readers.append(reader)
        case .amqp:
            let node = document.block(["backends", "amqp"])
            guard node != nil else {
                throw ConfigError(code: .missingKey, file: file, line: 0, key: "backends/amqp",
                                  message: "the amqp backend needs a backends { amqp { url = \"…\"; bus_key_file = \"…\"; } } block")
            }
            let reader = BlockReader(file: file, path: "backends/amqp", node: node, knownKeys: amqpBlockKeys, knownPrefixes: ["url"])
            bus = try BusSettings(reading: reader)
            routing = try RouterBusSettings(reading: reader)
            readers.append(reader)
        }

        for node in document.block(["groups"])?.blocks(named: "group") ?? [] {
            let reader = BlockReader(file: file, path: "groups/group", node: node, knownKeys: Self.groupKeys)
            groups.append(AccessGroupSettings(name: reader.string("name") ?? node.value, sources: reader.strings("ip"), members: reader.strings("uuid")))
            readers.append(reader)
        }
        metrics = try MetricsSettings(document: document)
        warnings = readers.flatMap(\.unknownKeyWarnings) + MetricsSettings.warnings(in: document)
    }
}
