import FenceWire

/// How a listener authenticates: the key, the weakest packet signature accepted, and the
/// challenge-response digest. The same three keys in every listener block.
public struct ListenerSecurity: Hashable, Sendable {
    public static let defaultKeyFile = "/etc/cluster/fence_xvm.key"

    public var keyFile: String = ListenerSecurity.defaultKeyFile
    public var keyFileLocation: SourceLocation?
    /// `hash`: requests signed with a weaker digest are dropped.
    public var minimumHash: HashAlgorithm = .sha256
    /// `auth`: the digest of the challenge-response after the call-back.
    public var auth: HashAlgorithm = .sha256

    public init() {}

    init(reading reader: BlockReader) throws(ConfigError) {
        keyFile = reader.string("key_file") ?? Self.defaultKeyFile
        keyFileLocation = reader.location("key_file")
        minimumHash = try reader.hash("hash") ?? .sha256
        auth = try reader.hash("auth") ?? .sha256
    }

    static let keys = ["key_file", "hash", "auth"]
}

/// `listeners/multicast`: where fence_xvm's signed datagrams are received.
public struct MulticastListenerSettings: Hashable, Sendable {
    public static let defaultIPv4Group = CallbackAddress("225.0.0.12")!
    public static let defaultIPv6Group = CallbackAddress("ff05::3:1")!

    public var security = ListenerSecurity()
    public var group: CallbackAddress = MulticastListenerSettings.defaultIPv4Group
    public var port: UInt16 = 1229
    /// Requests are accepted only when they arrive on this interface (the reference does not filter).
    public var interface: String?
    public var interfaceLocation: SourceLocation?

    public init() {}

    public var family: CallbackAddress.Family { group.family }

    static let keys = ListenerSecurity.keys + ["family", "address", "port", "interface"]

    init(reading reader: BlockReader) throws(ConfigError) {
        security = try ListenerSecurity(reading: reader)
        let family = try reader.family("family")
        if let address = try reader.address("address") {
            guard address.isMulticast else {
                throw reader.invalid("address", "\"\(address)\" is not a multicast group address")
            }
            if let family, family != address.family {
                throw reader.invalid("address", "\"\(address)\" does not belong to family \(family == .ipv4 ? "ipv4" : "ipv6")")
            }
            group = address
        } else {
            group = family == .ipv6 ? Self.defaultIPv6Group : Self.defaultIPv4Group
        }
        port = UInt16(try reader.integer("port", in: 1...65535) ?? 1229)
        interface = reader.string("interface")
        interfaceLocation = reader.location("interface")
    }
}

/// `listeners/tcp`: `fence_virt -T` connects here and sends its request on the stream.
public struct TCPListenerSettings: Hashable, Sendable {
    public var security = ListenerSecurity()
    public var address: CallbackAddress = CallbackAddress("127.0.0.1")!
    public var port: UInt16 = 1229

    public init() {}

    static let keys = ListenerSecurity.keys + ["family", "address", "port"]

    init(reading reader: BlockReader) throws(ConfigError) {
        security = try ListenerSecurity(reading: reader)
        let family = try reader.family("family")
        if let address = try reader.address("address") {
            if let family, family != address.family {
                throw reader.invalid("address", "\"\(address)\" does not belong to family \(family == .ipv4 ? "ipv4" : "ipv6")")
            }
            self.address = address
        } else {
            address = CallbackAddress(family == .ipv6 ? "::1" : "127.0.0.1")!
        }
        port = UInt16(try reader.integer("port", in: 1...65535) ?? 1229)
    }
}
