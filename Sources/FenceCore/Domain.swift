/// A libvirt domain state, with libvirt's numbers (`virDomainState`): they travel unchanged in
/// host-list records.
public enum DomainState: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case noState = 0
    case running = 1
    case blocked = 2
    case paused = 3
    case shuttingDown = 4
    case shutOff = 5
    case crashed = 6
    case suspended = 7

    /// The reference's rule for `status`: only shut off is off; paused, crashed and the rest are on.
    public var isOff: Bool { self == .shutOff }

    public var description: String {
        switch self {
        case .noState: "nostate"
        case .running: "running"
        case .blocked: "blocked"
        case .paused: "paused"
        case .shuttingDown: "shutdown"
        case .shutOff: "shutoff"
        case .crashed: "crashed"
        case .suspended: "pmsuspended"
        }
    }
}

/// What a hypervisor says about one domain.
public struct DomainInfo: Hashable, Sendable {
    public var name: String
    /// Lowercase canonical text, as libvirt prints it.
    public var uuid: String
    public var state: DomainState
    /// Defined (survives being shut off), as opposed to transient (vanishes when destroyed); nil
    /// when not read. A lookup does not ask (one round trip to libvirtd less per request): only a
    /// reboot needs to know, and asks (`Hypervisor.isPersistent`); a listing always says.
    public var persistent: Bool?

    public init(name: String, uuid: String, state: DomainState, persistent: Bool?) {
        self.name = name
        self.uuid = uuid.utf8.contains(where: { (65...90).contains($0) }) ? uuid.lowercased() : uuid
        self.state = state
        self.persistent = persistent
    }
}

/// How a request names its domain. Like the reference, a string shaped like a UUID is a UUID
/// (whatever the client's `-u` flag says) and is matched case-insensitively; anything else is a
/// name, matched case-sensitively.
public enum DomainTarget: Hashable, Sendable, CustomStringConvertible {
    case name(String)
    case uuid(String)

    public init(_ text: String) {
        self = Self.isUUID(text) ? .uuid(text.lowercased()) : .name(text)
    }

    public var description: String {
        switch self {
        case .name(let name): name
        case .uuid(let uuid): uuid
        }
    }

    public func matches(_ domain: DomainInfo) -> Bool {
        switch self {
        case .name(let name): domain.name == name
        case .uuid(let uuid): domain.uuid == uuid
        }
    }

    /// 8-4-4-4-12 hexadecimal digits, the only form libuuid's parse-and-compare accepts.
    static func isUUID(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 36 else { return false }
        for (index, byte) in bytes.enumerated() {
            if [8, 13, 18, 23].contains(index) {
                guard byte == UInt8(ascii: "-") else { return false }
            } else {
                let isHex = (48...57).contains(byte) || (65...70).contains(byte) || (97...102).contains(byte)
                guard isHex else { return false }
            }
        }
        return true
    }
}

