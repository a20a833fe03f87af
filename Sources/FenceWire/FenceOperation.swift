/// The op code of a request (`fence_cmd_t`). Unknown codes are kept, not refused: the reference
/// still calls back and answers failure for them, and so do we.
public struct FenceOperation: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let null = FenceOperation(rawValue: 0)
    public static let off = FenceOperation(rawValue: 1)
    public static let reboot = FenceOperation(rawValue: 2)
    public static let on = FenceOperation(rawValue: 3)
    public static let status = FenceOperation(rawValue: 4)
    /// `fence_xvm -o monitor`.
    public static let deviceStatus = FenceOperation(rawValue: 5)
    /// `fence_xvm -o list` and `-o list-status`.
    public static let hostList = FenceOperation(rawValue: 6)

    public var description: String {
        switch rawValue {
        case 0: "null"
        case 1: "off"
        case 2: "reboot"
        case 3: "on"
        case 4: "status"
        case 5: "monitor"
        case 6: "list"
        case 7: "metadata"
        case 8: "validate-all"
        default: "op-\(rawValue)"
        }
    }

    /// The operations that name a target domain.
    public var takesDomain: Bool { self != .deviceStatus && self != .hostList }
}
