import FenceWire

/// Where a setting was written, for errors found after parsing (a missing key file, an unknown
/// interface). Nil where the default applies.
public struct SourceLocation: Hashable, Sendable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let key: String

    public init(file: String, line: Int, key: String) {
        self.file = file
        self.line = line
        self.key = key
    }

    public var description: String { "\(file):\(line): \(key)" }
}

/// Reads the assignments of one block with typed checks, remembering which keys it consumed so
/// the rest can be reported as unknown (the reference silently ignores a typo such as `interfce`).
struct BlockReader {
    let file: String
    let path: String
    let node: ConfigNode?
    private let knownKeys: [String]
    private let knownPrefixes: [String]

    init(file: String, path: String, node: ConfigNode?, knownKeys: [String], knownPrefixes: [String] = []) {
        self.file = file
        self.path = path
        self.node = node
        self.knownKeys = knownKeys
        self.knownPrefixes = knownPrefixes
    }

    func key(_ name: String) -> String { "\(path)/\(name)" }

    func location(_ name: String) -> SourceLocation? {
        node?.assignment(named: name).map { SourceLocation(file: file, line: $0.line, key: key(name)) }
    }

    func string(_ name: String) -> String? { node?.assignment(named: name)?.value }

    func strings(_ name: String) -> [String] { node?.assignments(named: name).compactMap(\.value) ?? [] }

    func invalid(_ name: String, _ message: String) -> ConfigError {
        ConfigError(code: .invalidValue, file: file, line: location(name)?.line ?? node?.line ?? 0, key: key(name), message: message)
    }

    func required(_ name: String) throws(ConfigError) -> String {
        guard let value = string(name) else {
            throw ConfigError(code: .missingKey, file: file, line: node?.line ?? 0, key: key(name), message: "required key is missing")
        }
        return value
    }

    func integer(_ name: String, in range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let text = string(name) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw invalid(name, "\"\(text)\" is not a whole number in \(range.lowerBound)…\(range.upperBound)")
        }
        return value
    }

    func boolean(_ name: String) throws(ConfigError) -> Bool? {
        guard let text = string(name) else { return nil }
        switch text.lowercased() {
        case "1", "yes", "true", "on": return true
        case "0", "no", "false", "off": return false
        default: throw invalid(name, "\"\(text)\" is not a boolean (use 1 or 0)")
        }
    }

    func seconds(_ name: String, in range: ClosedRange<Int>) throws(ConfigError) -> Duration? {
        try integer(name, in: range).map { .seconds($0) }
    }

    func hash(_ name: String) throws(ConfigError) -> HashAlgorithm? {
        guard let text = string(name) else { return nil }
        guard let algorithm = HashAlgorithm(name: text) else {
            throw invalid(name, "\"\(text)\" is not one of none, sha1, sha256, sha512")
        }
        return algorithm
    }

    func family(_ name: String) throws(ConfigError) -> CallbackAddress.Family? {
        guard let text = string(name) else { return nil }
        switch text.lowercased() {
        case "ipv4": return .ipv4
        case "ipv6": return .ipv6
        default: throw invalid(name, "\"\(text)\" is not ipv4 or ipv6")
        }
    }

    func address(_ name: String) throws(ConfigError) -> CallbackAddress? {
        guard let text = string(name) else { return nil }
        guard let address = CallbackAddress(text) else { throw invalid(name, "\"\(text)\" is not an IPv4 or IPv6 address") }
        return address
    }

    /// Keys present in the block that nobody reads.
    var unknownKeyWarnings: [ConfigWarning] {
        (node?.children ?? []).compactMap { child in
            let name = child.name.lowercased()
            if child.isBlock || knownKeys.contains(name) || knownPrefixes.contains(where: { name.hasPrefix($0) }) { return nil }
            return ConfigWarning(file: file, line: child.line, key: key(child.name), message: "unknown key, ignored")
        }
    }
}
