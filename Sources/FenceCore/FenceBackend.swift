/// The actions that name a target domain.
public enum FenceAction: String, Hashable, Sendable, CaseIterable {
    case off
    case on
    case reboot
    case status
}

/// Why an action did not succeed. Every one of these is answered as failure (1): doubt is never
/// reported as success or as "off".
public struct FenceFailure: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Hashable, Sendable {
        case notFound = "not-found"
        case hypervisorUnavailable = "hypervisor-unavailable"
        case timedOut = "timed-out"
        case operationFailed = "operation-failed"
        case stillRunning = "still-running"
        case deadlineExceeded = "deadline-exceeded"
        case unsupported
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// The answer to a request, before it becomes a result byte.
public enum FenceOutcome: Hashable, Sendable, CustomStringConvertible {
    /// Done and confirmed; for `status`, the domain is on.
    case success
    /// For `status`: the domain is off.
    case off
    case failed(FenceFailure)
    /// The `groups` access list does not allow this requester to act on this domain.
    case denied

    public var description: String {
        switch self {
        case .success: "success"
        case .off: "off"
        case .failed(let failure): "failed(\(failure.code.rawValue))"
        case .denied: "denied"
        }
    }
}

/// What carries out fence requests: the local libvirt for one host, or (later) routing to the host
/// that runs the domain. Every call is bounded by the request's deadline.
public protocol FenceBackend: Sendable {
    func perform(_ action: FenceAction, on target: DomainTarget, deadline: ContinuousClock.Instant) async -> FenceOutcome
    /// Every domain the backend can see, for `list`.
    func listDomains(deadline: ContinuousClock.Instant) async throws(FenceFailure) -> [DomainInfo]
    /// For `monitor`: can the backend act at all right now?
    func checkHealth(deadline: ContinuousClock.Instant) async -> FenceOutcome
}
