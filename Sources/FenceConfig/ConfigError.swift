/// A configuration problem, located by file, line and key so an operator can go straight to it.
public struct ConfigError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        case unreadable
        case syntax
        case missingKey = "missing-key"
        case invalidValue = "invalid-value"
        case unsupported
    }

    public let code: Code
    public let file: String
    /// 1-based; 0 when the problem is the file as a whole.
    public let line: Int
    /// The key's path such as `listeners/multicast/port`, or empty for syntax errors.
    public let key: String
    public let message: String

    public init(code: Code, file: String, line: Int, key: String, message: String) {
        self.code = code
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        let location = line > 0 ? "\(file):\(line)" : file
        return key.isEmpty ? "\(location): \(message)" : "\(location): \(key): \(message)"
    }
}

/// Something worth telling the operator that does not stop the daemon, such as an unknown key.
public struct ConfigWarning: Hashable, Sendable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let key: String
    public let message: String

    public var description: String { "\(file):\(line): \(key): \(message)" }
}
