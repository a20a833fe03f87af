/// The single result byte written to the client after a successful exchange.
public enum ResponseCode: UInt8, Sendable, CaseIterable {
    /// Done; for `status`, the domain is on.
    case success = 0
    case failure = 1
    /// For `status`: the domain is off.
    case off = 2
    case permissionDenied = 3
    /// A host-list stream follows.
    case hostList = 253
}
