/// `backends/amqp`: the broker and the bus, shared by fence-routerd's amqp backend and fence-hostd.
public struct BusSettings: Hashable, Sendable {
    /// How often a daemon lists its trust directory again: a router's key filed now is addressed
    /// by every agent within this time.
    public static let trustRecheck: Duration = .seconds(5)

    /// `amqp://[user[:password]@]host[:port]` or `amqps://…`: `url`, then `url1`, `url2`, … (the
    /// nodes of one broker cluster, tried in this order), as fence_virt.conf numbers libvirt URIs.
    public var urls: [String]
    public var urlLocation: SourceLocation?
    public var user: String?
    /// How the daemon authenticates to the broker.
    public enum SASLMechanism: String, Hashable, Sendable, CaseIterable {
        /// The user and password.
        case plain = "PLAIN"
        /// The TLS client certificate.
        case external = "EXTERNAL"
        case anonymous = "ANONYMOUS"
    }

    /// How the broker names the bus's addresses: one profile, for the one broker the tests run
    /// against (the plain-node profile was removed untested: Docs/broker.md says why).
    public enum AddressProfileName: String, Hashable, Sendable {
        /// RabbitMQ 3 with its AMQP 1.0 plugin (`/topic/NAME`).
        case rabbitmq3
    }

    /// A file holding the broker password (mode 0600), instead of one in the URL.
    public var passwordFile: String?
    public var saslMechanism: SASLMechanism = .plain
    public var tlsCAFile: String?
    public var tlsCertificateFile: String?
    public var tlsKeyFile: String?
    public var addressProfile: AddressProfileName = .rabbitmq3
    public var allowInsecurePlain = false
    /// The HMAC key of every bus message: distinct from the fence_xvm key.
    public var busKeyFile: String
    public var busKeyLocation: SourceLocation?
    /// Bus messages dated further than this from the local clock are dropped.
    public var clockTolerance: Duration = .seconds(30)
    /// A message from the broker larger than this (in bytes) is refused before it is buffered
    /// whole, and counted.
    public var maximumMessageSize = 4 << 20
    /// This daemon's Ed25519 private key (PEM, 0600): what it signs with, as its host or router id.
    public var identityKeyFile = "/etc/fence-router/identity.key"
    /// The public keys of the hosts, routers and operators this daemon believes
    /// (`hosts/NAME.pub`, `routers/NAME.pub`, `operators/NAME.pub`).
    public var trustDirectory = "/etc/fence-router/trust"

    public init(urls: [String], busKeyFile: String) {
        self.urls = urls
        self.busKeyFile = busKeyFile
    }

    static let keys = [
        "url", "user", "password_file", "sasl_mechanism", "tls_ca_file", "tls_cert_file", "tls_key_file",
        "address_profile", "allow_insecure_plain", "bus_key_file", "clock_tolerance", "identity_key_file", "trust_directory",
        "max_message_size",
    ]

    init(reading reader: BlockReader) throws(ConfigError) {
        var urls = [try reader.required("url")]
        var index = 1
        while let next = reader.string("url\(index)") {
            urls.append(next)
            index += 1
        }
        // A node written after a gap (url2 without url1) or under a name that is no number would be
        // left out without a word: refused instead.
        for child in reader.node?.children ?? [] where !child.isBlock && child.name.lowercased().hasPrefix("url") && child.name.lowercased() != "url" {
            guard let number = Int(child.name.dropFirst(3)), number >= 1 else {
                throw reader.invalid(child.name, "not a key: the broker's nodes are url, url1, url2, …")
            }
            if number >= urls.count {
                throw reader.invalid(child.name, "follows no url\(number - 1): number the broker's nodes without a gap")
            }
        }
        for (index, url) in urls.enumerated() where !(url.hasPrefix("amqp://") || url.hasPrefix("amqps://")) {
            throw reader.invalid(index == 0 ? "url" : "url\(index)", "\"\(url)\" is not an amqp:// or amqps:// URL")
        }
        if let index = urls.indices.first(where: { urls[$0].hasPrefix("amqps://") != urls[0].hasPrefix("amqps://") }) {
            throw reader.invalid("url\(index)", "\"\(urls[index])\": every node of the broker takes TLS (amqps://), or none does")
        }
        self.urls = urls
        urlLocation = reader.location("url")
        user = reader.string("user")
        passwordFile = reader.string("password_file")
        let mechanismText = reader.string("sasl_mechanism") ?? "PLAIN"
        guard let mechanism = SASLMechanism(rawValue: mechanismText.uppercased()) else {
            throw reader.invalid("sasl_mechanism", "\"\(mechanismText)\" is not PLAIN, EXTERNAL or ANONYMOUS")
        }
        saslMechanism = mechanism
        tlsCAFile = reader.string("tls_ca_file")
        tlsCertificateFile = reader.string("tls_cert_file")
        tlsKeyFile = reader.string("tls_key_file")
        if urls[0].hasPrefix("amqps://") && tlsCAFile == nil {
            throw ConfigError(code: .missingKey, file: reader.file, line: urlLocation?.line ?? 0, key: reader.key("tls_ca_file"),
                              message: "an amqps:// URL needs the CA that signed the broker's certificate")
        }
        if (tlsCertificateFile == nil) != (tlsKeyFile == nil) {
            throw reader.invalid(tlsCertificateFile == nil ? "tls_key_file" : "tls_cert_file", "tls_cert_file and tls_key_file go together")
        }
        if mechanism == .external && tlsCertificateFile == nil {
            throw reader.invalid("sasl_mechanism", "EXTERNAL needs a client certificate (tls_cert_file and tls_key_file)")
        }
        let profileText = reader.string("address_profile") ?? "rabbitmq3"
        guard let profile = AddressProfileName(rawValue: profileText.lowercased()) else {
            throw reader.invalid("address_profile", "\"\(profileText)\" is not rabbitmq3, the one profile (RabbitMQ 3.10 is the one broker tested)")
        }
        addressProfile = profile
        allowInsecurePlain = try reader.boolean("allow_insecure_plain") ?? false
        busKeyFile = try reader.required("bus_key_file")
        busKeyLocation = reader.location("bus_key_file")
        clockTolerance = try reader.seconds("clock_tolerance", in: 1...600) ?? .seconds(30)
        maximumMessageSize = try reader.integer("max_message_size", in: (64 << 10)...(256 << 20)) ?? maximumMessageSize
        identityKeyFile = reader.string("identity_key_file") ?? identityKeyFile
        trustDirectory = reader.string("trust_directory") ?? trustDirectory
    }
}

extension BusSettings {
    /// The same settings without where they were written, to tell whether a reloaded file
    /// changed them.
    public var withoutLocations: BusSettings {
        var settings = self
        settings.urlLocation = nil
        settings.busKeyLocation = nil
        return settings
    }

    /// The `backends/amqp` block of a file, for tools that only talk on the bus (fencectl).
    public init(document: ConfigDocument) throws(ConfigError) {
        guard let node = document.block(["backends", "amqp"]) else {
            throw ConfigError(code: .missingKey, file: document.file, line: 0, key: "backends/amqp",
                              message: "no backends { amqp { … } } block: where is the bus?")
        }
        try self.init(reading: BlockReader(file: document.file, path: "backends/amqp", node: node, knownKeys: amqpBlockKeys, knownPrefixes: ["url"]))
    }
}

/// What only fence-hostd reads from `backends/amqp`.
public struct HostAgentSettings: Hashable, Sendable {
    /// This host's name on the bus; nil means the machine's hostname.
    public var hostID: String?
    /// A full inventory is published this often (and at start and after every reconnect).
    public var snapshotInterval: Duration = .seconds(5)
    public var heartbeatInterval: Duration = .seconds(1)

    public init() {}

    static let keys = ["host_id", "snapshot_interval", "heartbeat_interval"]

    init(reading reader: BlockReader) throws(ConfigError) {
        if let id = reader.string("host_id") {
            guard id.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
                throw reader.invalid("host_id", "\"\(id)\" may hold only letters, digits, '-', '_' and '.'")
            }
            hostID = id
        }
        snapshotInterval = try reader.seconds("snapshot_interval", in: 1...3600) ?? .seconds(5)
        heartbeatInterval = try reader.seconds("heartbeat_interval", in: 1...60) ?? .seconds(1)
    }
}

/// What only fence-routerd's amqp backend reads from `backends/amqp`.
public struct RouterBusSettings: Hashable, Sendable {
    /// This router's name on the bus (its reply address); nil means `router-<hostname>`.
    public var routerID: String?
    /// Hosts that must be live before a domain found nowhere counts as off. Others are learned
    /// from the bus and kept (in `fence_virtd/state_directory`) until `fencectl host forget`.
    public var expectedHosts: [String] = []
    /// A host is live for this long after its last message.
    public var freshness: Duration = .seconds(3)
    /// After start, "found nowhere" is a failure for this long: every live host must have had time
    /// to be heard. By default a freshness window (a live host speaks within it) plus the time the
    /// agents take to list a router whose key was filed just before it started: until then they
    /// do not address it, and a host it has not heard cannot hold back an off.
    public var warmUp: Duration = .seconds(3) + BusSettings.trustRecheck

    public init() {}

    static let keys = ["router_id", "expected_hosts", "host_freshness", "warm_up", "state_directory"]

    init(reading reader: BlockReader) throws(ConfigError) {
        routerID = reader.string("router_id")
        expectedHosts = (reader.string("expected_hosts") ?? "").split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
        freshness = try reader.seconds("host_freshness", in: 1...60) ?? .seconds(3)
        warmUp = try reader.seconds("warm_up", in: 0...600) ?? freshness + BusSettings.trustRecheck
        if reader.string("state_directory") != nil {
            throw reader.invalid("state_directory", "moved: set state_directory in the fence_virtd block (it now also keeps the seen packets)")
        }
    }
}

/// Every key of `backends/amqp`, shared by fence-hostd and fence-routerd (neither warns about the other's).
let amqpBlockKeys = BusSettings.keys + HostAgentSettings.keys + RouterBusSettings.keys

/// Everything fence-hostd reads from its configuration file.
public struct HostAgentConfiguration: Hashable, Sendable {
    public var bus: BusSettings
    public var agent: HostAgentSettings
    public var libvirt: LibvirtBackendSettings
    public var debugLevel: Int
    public var metrics: MetricsSettings
    public var warnings: [ConfigWarning]

    public init(document: ConfigDocument) throws(ConfigError) {
        let file = document.file
        guard let amqp = document.block(["backends", "amqp"]) else {
            throw ConfigError(code: .missingKey, file: file, line: 0, key: "backends/amqp",
                              message: "fence-hostd needs a backends { amqp { url = \"…\"; bus_key_file = \"…\"; } } block")
        }
        guard let libvirtNode = document.block(["backends", "libvirt"]) else {
            throw ConfigError(code: .missingKey, file: file, line: 0, key: "backends/libvirt",
                              message: "fence-hostd needs a backends { libvirt { uri = \"…\"; } } block")
        }
        let amqpReader = BlockReader(file: file, path: "backends/amqp", node: amqp, knownKeys: amqpBlockKeys, knownPrefixes: ["url"])
        bus = try BusSettings(reading: amqpReader)
        agent = try HostAgentSettings(reading: amqpReader)
        let libvirtReader = BlockReader(file: file, path: "backends/libvirt", node: libvirtNode, knownKeys: [], knownPrefixes: ["uri"])
        libvirt = try LibvirtBackendSettings(reading: libvirtReader)
        let daemonReader = BlockReader(file: file, path: "fence_virtd", node: document.block(["fence_virtd"]), knownKeys: DaemonSettings.keys)
        debugLevel = try daemonReader.integer("debug", in: 0...99) ?? 0
        metrics = try MetricsSettings(document: document)
        warnings = amqpReader.unknownKeyWarnings + libvirtReader.unknownKeyWarnings + MetricsSettings.warnings(in: document)
    }
}

/// What one file configures: fence-routerd (it has a `fence_virtd` block), fence-hostd (it has
/// `backends/amqp` and `backends/libvirt`), or both, as one file serves both on a host.
public struct DaemonConfigurations: Sendable {
    public let router: RouterConfiguration?
    public let host: HostAgentConfiguration?

    public init(document: ConfigDocument) throws(ConfigError) {
        router = document.block(["fence_virtd"]) != nil ? try RouterConfiguration(document: document) : nil
        host = document.block(["backends", "amqp"]) != nil && document.block(["backends", "libvirt"]) != nil
            ? try HostAgentConfiguration(document: document) : nil
        guard router != nil || host != nil else {
            throw ConfigError(code: .missingKey, file: document.file, line: 0, key: "",
                              message: "configures no daemon: fence-routerd needs a fence_virtd block, fence-hostd backends/amqp and backends/libvirt")
        }
    }

    /// The warnings of both readings, each once.
    public var warnings: [ConfigWarning] {
        var warnings: [ConfigWarning] = []
        for warning in (router?.warnings ?? []) + (host?.warnings ?? []) where !warnings.contains(warning) { warnings.append(warning) }
        return warnings
    }
}
