import Cryptography

/// What a bus sender is, and so which messages it may sign: inventory and results come from host
/// agents, commands and snapshot requests from routers, statements about hosts from operators.
public enum BusRole: String, Hashable, Sendable, CaseIterable {
    case host
    case router
    case `operator`

    /// Its folder in a trust directory.
    public var directory: String {
        switch self {
        case .host: "hosts"
        case .router: "routers"
        case .operator: "operators"
        }
    }
}

extension BusMessage {
    /// Who alone may sign this message.
    public var signerRole: BusRole {
        switch self {
        case .snapshot, .delta, .heartbeat, .result: .host
        case .command, .snapshotRequest: .router
        case .hostState: .operator
        }
    }

    /// The sender the message speaks for: it must be the one that signed it.
    var speaksFor: String {
        switch self {
        case .snapshot(let snapshot): snapshot.host
        case .delta(let delta): delta.host
        case .heartbeat(let heartbeat): heartbeat.host
        case .result(let result): result.host
        case .command(let command): command.issuer
        case .snapshotRequest(let request): request.router
        case .hostState(let change): change.operatorName
        }
    }
}

/// This process on the bus: the name it signs as, and its private key. The name is the one its
/// public key is filed under in the receivers' trust directories.
public struct BusIdentity: Sendable {
    public let name: String
    public let key: SigningKey

    public init(name: String, key: SigningKey) {
        self.name = name
        self.key = key
    }
}

/// The public keys a receiver believes, by role and name.
public protocol BusTrust: Sendable {
    func verifyingKey(role: BusRole, name: String) -> VerifyingKey?
}

/// A fixed set of keys (tests, fuzzing, simulations).
public struct FixedTrust: BusTrust {
    private let keys: [BusRole: [String: VerifyingKey]]

    public init(_ keys: [BusRole: [String: VerifyingKey]]) {
        self.keys = keys
    }

    public func verifyingKey(role: BusRole, name: String) -> VerifyingKey? {
        keys[role]?[name]
    }
}

extension BusIdentity {
    /// Whether `name` can be a file name in a trust directory and an AMQP address part.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && name.first != "."
            && name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0)) }
    }
}
