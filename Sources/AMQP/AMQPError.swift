/// A failed AMQP operation. Every one of them bounds a wait: nothing here hangs forever.
public struct AMQPError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Hashable, Sendable {
        case invalidConfiguration = "invalid-configuration"
        /// Not connected, or the connection dropped while the operation was under way.
        case disconnected
        /// The deadline passed first (an attach the broker never answers, a reply that never comes).
        case timedOut = "timed-out"
        /// The broker refused a link (for example an unknown address, or a permission).
        case attachRefused = "attach-refused"
        /// The broker did not accept a message (rejected, released or modified).
        case notAccepted = "not-accepted"
        case invalidMessage = "invalid-message"
        /// The connection was closed by its owner.
        case closed
        /// The waiting task was cancelled; what was handed to the broker may still arrive.
        case cancelled
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
