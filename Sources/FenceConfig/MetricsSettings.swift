/// `metrics { router = "…"; agent = "…"; }`: where each daemon serves its Prometheus metrics.
/// One block for both daemons, since one file may serve both on a host; each has its own port.
public struct MetricsSettings: Hashable, Sendable {
    /// Where to listen: a host (IPv4, IPv6 in brackets, or a name) and a port.
    public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// Loopback by default: the numbers say which guests fence which VMs, which is nobody else's business.
    public var router: Endpoint? = Endpoint(host: "127.0.0.1", port: 9231)
    public var agent: Endpoint? = Endpoint(host: "127.0.0.1", port: 9232)

    public init() {}

    static let keys = ["router", "agent"]

    init(reading reader: BlockReader) throws(ConfigError) {
        router = try Self.endpoint(reader, "router") ?? router
        agent = try Self.endpoint(reader, "agent") ?? agent
        if reader.string("router")?.lowercased() == "none" { router = nil }
        if reader.string("agent")?.lowercased() == "none" { agent = nil }
    }

    /// Reads the `metrics` block of a file (absent: the defaults).
    public init(document: ConfigDocument) throws(ConfigError) {
        try self.init(reading: BlockReader(file: document.file, path: "metrics", node: document.block(["metrics"]), knownKeys: Self.keys))
    }

    static func warnings(in document: ConfigDocument) -> [ConfigWarning] {
        BlockReader(file: document.file, path: "metrics", node: document.block(["metrics"]), knownKeys: keys).unknownKeyWarnings
    }

    /// `host:port`, `[v6]:port`, or `none`.
    private static func endpoint(_ reader: BlockReader, _ key: String) throws(ConfigError) -> Endpoint? {
        guard let text = reader.string(key), text.lowercased() != "none" else { return nil }
        let host: Substring
        let port: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") {
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
        } else if let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") {
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        } else {
            throw reader.invalid(key, "\"\(text)\" is not host:port ([address]:port for IPv6) or none")
        }
        guard !host.isEmpty, let number = Int(port), (1...65535).contains(number) else {
            throw reader.invalid(key, "\"\(text)\" is not host:port with a port in 1…65535")
        }
        return Endpoint(host: String(host), port: number)
    }
}
