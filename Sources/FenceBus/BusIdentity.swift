import Cryptography
import Synchronization

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

    /// Who receives it: routers get what hosts and operators send, hosts what routers send.
    public var receiverRole: BusRole {
        signerRole == .router ? .host : .router
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

/// This process on the bus: the role and name it sends as, and its private key. The name is the
/// one its public key is filed under, in that role's folder, in its peers' trust directories.
public struct BusIdentity: Sendable {
    public let role: BusRole
    public let name: String
    public let key: SigningKey

    public init(role: BusRole, name: String, key: SigningKey) {
        self.role = role
        self.name = name
        self.key = key
    }
}

/// Another sender or receiver, by role and name.
public struct BusPeer: Hashable, Sendable {
    public let role: BusRole
    public let name: String

    public init(role: BusRole, name: String) {
        self.role = role
        self.name = name
    }
}

/// The public keys a receiver believes, by role and name.
public protocol BusTrust: Sendable {
    func verifyingKey(role: BusRole, name: String) -> VerifyingKey?
    /// Every name filed in a role, sorted: whom a host's inventory is sealed for.
    func names(role: BusRole) -> [String]
}

/// The key each pair of daemons shares: X25519 between their identities, then HMAC-SHA256 with
/// both names, so it binds who is who. Derived once per peer and kept while the peer's public
/// key stays the same (a rotated key derives a new one).
final class PairKeys: Sendable {
    private struct Entry {
        let ownKey: [UInt8]
        let peerKey: [UInt8]
        let pairKey: PairKey
    }

    private struct Slot: Hashable {
        let own: BusPeer
        let peer: BusPeer
    }

    private let entries = Mutex<[Slot: Entry]>([:])

    /// The pair key of `own` with `peer`, whose public key is `peerKey`, prepared for HMAC; nil if that key gives no secret.
    func key(_ own: BusIdentity, _ peer: BusPeer, _ peerKey: VerifyingKey) -> PairKey? {
        let ownPeer = BusPeer(role: own.role, name: own.name)
        let slot = Slot(own: ownPeer, peer: peer)
        if let entry = entries.withLock({ $0[slot] }), entry.peerKey == peerKey.raw, entry.ownKey == own.key.publicKeyBytes {
            return entry.pairKey
        }
        guard let secret = KeyAgreement.sharedSecret(own.key, peerKey) else { return nil }
        let names = ["\(own.role.rawValue)/\(own.name)", "\(peer.role.rawValue)/\(peer.name)"].sorted()
        let mac = KeyedMAC(.sha256, key: Digest.hmac(.sha256, key: secret, message: Array("fence-router pair key 1\n\(names[0])\n\(names[1])".utf8)))
        let pairKey = PairKey(mac: mac, toOwn: PairKey.addressLine(ownPeer), toPeer: PairKey.addressLine(peer))
        entries.withLock { entries in
            // Bounded by the trust directory: only trusted peers get here.
            entries[slot] = Entry(ownKey: own.key.publicKeyBytes, peerKey: peerKey.raw, pairKey: pairKey)
        }
        return pairKey
    }
}

/// A pair key with the two lines that address a MAC under it to either side, made once: the
/// receiver is in each MAC, so a message cannot be reflected back to its sender.
struct PairKey: Sendable {
    let mac: KeyedMAC
    /// `to <role>/<name>` of the side that derived it.
    let toOwn: [UInt8]
    /// `to <role>/<name>` of its peer.
    let toPeer: [UInt8]

    static func addressLine(_ receiver: BusPeer) -> [UInt8] { Array("to \(receiver.role.rawValue)/\(receiver.name)\n".utf8) }
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

    public func names(role: BusRole) -> [String] {
        (keys[role] ?? [:]).keys.sorted()
    }
}

extension BusIdentity {
    /// Whether `name` can be a file name in a trust directory and an AMQP address part.
    public static func isValidName(_ name: String) -> Bool {
        // Byte by byte: a Unicode property lookup per character cost a router more than a MAC per heartbeat.
        let bytes = name.utf8
        return !bytes.isEmpty && bytes.count <= 64 && bytes.first != UInt8(ascii: ".") && bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."): true
            default: false
            }
        }
    }
}
