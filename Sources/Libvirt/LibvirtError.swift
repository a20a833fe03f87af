import CLibvirt

/// A failed libvirt call, classified so callers can tell "no such domain" (an answer) from
/// "could not ask" (never an answer).
public struct LibvirtError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Hashable, Sendable {
        /// libvirt answered: there is no such domain.
        case noDomain = "no-domain"
        /// The connection could not be opened (or the reconnect backoff has not expired).
        case connectionFailed = "connection-failed"
        /// The connection died during the call; the next call reopens it.
        case connectionLost = "connection-lost"
        /// The call did not return before its deadline (its thread is left to finish it).
        case timedOut = "timed-out"
        /// libvirt refused or failed the operation.
        case callFailed = "call-failed"
    }

    public let code: Code
    /// The libvirt function or operation that failed.
    public let operation: String
    /// libvirt's `virErrorNumber`, or 0 when the error is ours.
    public let libvirtCode: Int32
    public let message: String

    public init(code: Code, operation: String, libvirtCode: Int32 = 0, message: String) {
        self.code = code
        self.operation = operation
        self.libvirtCode = libvirtCode
        self.message = message
    }

    public var description: String { "\(operation): \(message) [\(code.rawValue)\(libvirtCode != 0 ? " \(libvirtCode)" : "")]" }

    /// The one place a libvirt failure becomes a Swift error. Must run on the thread that made the
    /// failing call, before any other libvirt call: libvirt keeps the last error per thread.
    static func last(_ operation: String) -> LibvirtError {
        guard let error = virGetLastError() else {
            return LibvirtError(code: .callFailed, operation: operation, message: "failed without an error report")
        }
        let number = error.pointee.code
        let message = error.pointee.message.map { String(cString: $0) } ?? "unknown error"
        let code: Code = switch UInt32(number) {
        case VIR_ERR_NO_DOMAIN.rawValue: .noDomain
        case VIR_ERR_NO_CONNECT.rawValue: .connectionFailed
        default: .callFailed
        }
        return LibvirtError(code: code, operation: operation, libvirtCode: number, message: message)
    }
}
