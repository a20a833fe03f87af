#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
/// Where and how to connect.
public struct AMQPConfiguration: Sendable, Equatable {
    public enum SASLMechanism: String, Sendable, Equatable {
        case anonymous = "ANONYMOUS"
        case plain = "PLAIN"
        /// The TLS client certificate is the identity.
        case external = "EXTERNAL"
    }

    public struct TLS: Sendable, Equatable {
        /// The CA certificates (PEM) that must have signed the broker's certificate.
        public var caFile: String
        /// A client certificate and its key (PEM), for brokers that require one or for SASL EXTERNAL.
        public var certificateFile: String?
        public var keyFile: String?
        /// Check that the broker's certificate names the host we connect to.
        public var verifyHostname: Bool

        public init(caFile: String, certificateFile: String? = nil, keyFile: String? = nil, verifyHostname: Bool = true) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.verifyHostname = verifyHostname
        }
    }

    /// One node of the broker: where to connect.
    public struct Broker: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// On this machine, where a clear-text password does not cross a network: `localhost`, or
        /// an address literal of 127.0.0.0/8 or ::1 (a DNS name such as `127.example.net` is none).
        public var isLoopback: Bool {
            if host.lowercased() == "localhost" { return true }
            var v4 = in_addr()
            if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
            var v6 = in6_addr()
            guard inet_pton(AF_INET6, host, &v6) == 1 else { return false }
            return withUnsafeBytes(of: &v6) { $0.elementsEqual([UInt8](repeating: 0, count: 15) + [1]) }
        }

        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// The nodes of one broker cluster, tried in turn: the connection stays on one while it
    /// works and moves to the next when it is lost or cannot be opened.
    public var brokers: [Broker]
    public var tls: TLS?
    public var user: String?
    public var password: String?
    public var mechanisms: [SASLMechanism]
    /// PLAIN sends the password in clear text: allowed without TLS only when this is set (labs,
    /// loopback brokers).
    public var allowInsecurePlain: Bool
    /// The AMQP container id; unique per process.
    public var containerID: String
    /// The first and the longest wait between reconnection attempts (each one jittered down to half).
    /// The longest is short because fencing waits on it after a broker restart: 2 s keeps service
    /// back within a few seconds, and the jitter spreads the attempts of many hosts.
    public var reconnectBackoff: ClosedRange<Duration>
    /// A broker silent for this long is taken for dead (Proton sends keepalive frames at half of it).
    public var idleTimeout: Duration
    /// One attempt to open a node is given up after this long, and the next node is tried: a node
    /// whose machine is gone drops the packets, and TCP alone would wait two minutes.
    public var connectTimeout: Duration
    /// A received message larger than this is refused (and counted) before it is buffered whole.
    public var maximumMessageSize: Int

    public init(
        brokers: [Broker],
        tls: TLS? = nil,
        user: String? = nil,
        password: String? = nil,
        mechanisms: [SASLMechanism] = [.plain],
        allowInsecurePlain: Bool = false,
        containerID: String,
        reconnectBackoff: ClosedRange<Duration> = .milliseconds(100)...(.seconds(2)),
        idleTimeout: Duration = .seconds(8),
        connectTimeout: Duration = .seconds(4),
        maximumMessageSize: Int = 4 << 20
    ) {
        self.brokers = brokers
        self.tls = tls
        self.user = user
        self.password = password
        self.mechanisms = mechanisms
        self.allowInsecurePlain = allowInsecurePlain
        self.containerID = containerID
        self.reconnectBackoff = reconnectBackoff
        self.idleTimeout = idleTimeout
        self.connectTimeout = connectTimeout
        self.maximumMessageSize = maximumMessageSize
    }

    /// Refuses what would connect insecurely or could never connect: PLAIN in clear text to
    /// another machine, TLS files that cannot be read.
    public func validate() throws(AMQPError) {
        guard !brokers.isEmpty else { throw AMQPError(.invalidConfiguration, "no broker to connect to") }
        if mechanisms.contains(.plain), tls == nil, !allowInsecurePlain, let remote = brokers.first(where: { !$0.isLoopback }) {
            throw AMQPError(.invalidConfiguration, "SASL PLAIN to \(remote.host) without TLS would send the password in clear text: use amqps:// (or allow it explicitly)")
        }
        if let tls {
            for file in [tls.caFile, tls.certificateFile, tls.keyFile].compactMap({ $0 }) where access(file, R_OK) != 0 {
                throw AMQPError(.invalidConfiguration, "TLS file \(file) cannot be read")
            }
        }
    }

    /// Reads `amqp://[user[:password]@]host[:port]` or `amqps://…` (host may be `[ipv6]`). The
    /// scheme chooses TLS; `tls` supplies its files.
    public init(url: String, tls: TLS? = nil, containerID: String) throws(AMQPError) {
        try self.init(urls: [url], tls: tls, containerID: containerID)
    }

    /// The nodes of one cluster, one URL each, in the order they are tried. They share one
    /// scheme and one user: credentials may be written in any of the URLs, but not differently.
    public init(urls: [String], tls: TLS? = nil, containerID: String) throws(AMQPError) {
        guard let first = urls.first else { throw AMQPError(.invalidConfiguration, "no broker URL") }
        let parsed = try urls.map { (url: String) throws(AMQPError) -> ParsedURL in try ParsedURL(url) }
        if let other = parsed.first(where: { $0.secure != parsed[0].secure }) {
            throw AMQPError(.invalidConfiguration, "\"\(other.text)\" and \"\(first)\": every node of the broker takes TLS, or none does")
        }
        let credentials = Set(parsed.compactMap { $0.user == nil ? nil : [$0.user!, $0.password ?? ""] })
        guard credentials.count <= 1 else {
            throw AMQPError(.invalidConfiguration, "the broker URLs name different users or passwords: one account serves every node")
        }
        let secure = parsed[0].secure
        if secure && tls == nil {
            throw AMQPError(.invalidConfiguration, "\"\(first)\" asks for TLS but no CA file is configured")
        }
        let account = parsed.first { $0.user != nil }
        self.init(brokers: parsed.map(\.broker), tls: secure ? tls : nil, user: account?.user, password: account?.password, containerID: containerID)
    }

    /// One `amqp://` or `amqps://` URL, taken apart.
    private struct ParsedURL {
        let text: String
        let secure: Bool
        let broker: Broker
        let user: String?
        let password: String?

        init(_ url: String) throws(AMQPError) {
            text = url
            var rest: Substring
            if url.hasPrefix("amqps://") {
                secure = true
                rest = url.dropFirst("amqps://".count)
            } else if url.hasPrefix("amqp://") {
                secure = false
                rest = url.dropFirst("amqp://".count)
            } else {
                throw AMQPError(.invalidConfiguration, "\"\(url)\" is not an amqp:// or amqps:// URL")
            }
            if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
            var user: String?
            var password: String?
            if let at = rest.lastIndex(of: "@") {
                let credentials = rest[..<at]
                rest = rest[rest.index(after: at)...]
                if let colon = credentials.firstIndex(of: ":") {
                    user = String(credentials[..<colon])
                    password = String(credentials[credentials.index(after: colon)...])
                } else {
                    user = String(credentials)
                }
            }
            self.user = user
            self.password = password
            var host: Substring
            var portText: Substring?
            if rest.hasPrefix("[") {
                guard let close = rest.firstIndex(of: "]") else { throw AMQPError(.invalidConfiguration, "\"\(url)\": unclosed [") }
                host = rest[rest.index(after: rest.startIndex)..<close]
                let after = rest[rest.index(after: close)...]
                if after.hasPrefix(":") { portText = after.dropFirst() }
            } else if let colon = rest.lastIndex(of: ":") {
                host = rest[..<colon]
                portText = rest[rest.index(after: colon)...]
            } else {
                host = rest
            }
            guard !host.isEmpty else { throw AMQPError(.invalidConfiguration, "\"\(url)\" names no host") }
            let port = try portText.map { text throws(AMQPError) -> Int in
                guard let port = Int(text), (1...65535).contains(port) else {
                    throw AMQPError(.invalidConfiguration, "\"\(url)\": \"\(text)\" is not a port")
                }
                return port
            } ?? (secure ? 5671 : 5672)
            broker = Broker(host: String(host), port: port)
        }
    }

    /// The brokers, for messages: `host:port, host:port`.
    public var brokerList: String { brokers.map(\.description).joined(separator: ", ") }
}

/// How a broker names the bus's addresses. Every one of them is subscribed to by name and keeps
/// nothing while nobody listens (the inventory, a host's commands, a router's replies): nothing is
/// stored on a broker node, so the loss of one node of a cluster loses no address — its consumers
/// subscribe again on another node. A command sent while its agent is away is not kept for it: its
/// router sends it again when the agent is back, or answers failure at the deadline.
public struct AddressProfile: Sendable, Equatable {
    /// `{name}` is replaced by the name.
    public var template: String

    public init(template: String) {
        self.template = template
    }

    /// RabbitMQ 3.x with its AMQP 1.0 plugin: amq.topic with the name as routing key, so that
    /// topic permissions can limit each broker user to its own names.
    public static let rabbitMQ3 = AddressProfile(template: "/topic/{name}")

    public func address(_ name: String) -> String { template.replacingPlaceholder(with: name) }
}

extension String {
    /// The template with its first `{name}` replaced (or `name` appended if there is none).
    /// Written out by hand: `firstRange(of:)` would link Swift's regex engine into every daemon.
    fileprivate func replacingPlaceholder(with name: String) -> String {
        let placeholder = Array("{name}".utf8)
        let bytes = Array(utf8)
        guard bytes.count >= placeholder.count,
              let start = (0...(bytes.count - placeholder.count)).first(where: { bytes[$0..<($0 + placeholder.count)].elementsEqual(placeholder) }) else {
            return self + name
        }
        return String(decoding: bytes[..<start], as: UTF8.self) + name + String(decoding: bytes[(start + placeholder.count)...], as: UTF8.self)
    }
}
