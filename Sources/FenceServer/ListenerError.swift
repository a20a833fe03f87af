/// A listener that cannot start (with the configuration line to look at) or cannot go on.
public struct ListenerError: Error, CustomStringConvertible {
    public enum Code: String, Sendable {
        case noSuchInterface = "no-such-interface"
        case bindFailed = "bind-failed"
        case joinFailed = "join-failed"
        case receiveFailed = "receive-failed"
    }

    public let code: Code
    public let message: String

    public var description: String { message }
}
