/// A reason a daemon cannot start, said so that the operator knows what to fix.
public struct StartupError: Error, CustomStringConvertible {
    public enum Code: String, Sendable {
        case configuration
        case keyFile = "key-file"
        case pidFile = "pid-file"
        case backend
        case listener
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
