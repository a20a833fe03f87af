import Cryptography
import JSONValue

/// Why a bus message was dropped.
public struct BusError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Hashable, Sendable, CustomStringConvertible {
        case badMAC = "bad-mac"
        case stale
        case replayed
        case malformed
        case unknownType = "unknown-type"
        case unsupportedVersion = "unsupported-version"
        /// No trusted key of the role its message needs under the sender's name.
        case unknownSender = "unknown-sender"
        /// The signature, or the pair MAC, is not the named sender's.
        case badSignature = "bad-signature"
        /// No MAC for this receiver: sent to someone else (or its sender does not trust this receiver).
        case notAddressed = "not-addressed"
        /// A sender has no trusted key for a receiver it was asked to send to.
        case unknownReceiver = "unknown-receiver"
        /// The message speaks for someone else than its signer (a host's inventory in another's name).
        case wrongSender = "wrong-sender"

        public var description: String { rawValue }
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// The secret shared by every router, agent and operator (not the broker): its MAC, checked first
/// and cheaply, keeps a broker account from making receivers spend more. Who sent a message is
/// proven by a second MAC under a key only its sender and receiver share (`PairKeys`), or for an
/// operator's statement by the operator's signature: no other holder of this key can make either.
public struct BusKey: Sendable {
    public static let minimumLength = 32
    /// HMAC-SHA256 under the key, prepared once.
    let mac: KeyedMAC

    public init(fileContents: [UInt8]) throws(BusError) {
        guard fileContents.count >= Self.minimumLength else {
            throw BusError(.malformed, "a bus key needs at least \(Self.minimumLength) bytes, this one has \(fileContents.count)")
        }
        mac = KeyedMAC(.sha256, key: fileContents)
    }
}

/// How a message proves its sender.
public enum SenderProof: Hashable, Sendable {
    /// One MAC per receiver, each under the key the sender shares with that receiver: what
    /// daemons send each other, many times a second (a MAC costs microseconds, a signature check
    /// hundreds).
    case pairMACs([String: [UInt8]])
    /// The sender's Ed25519 signature: an operator's statements, which every router must be able
    /// to check without sharing anything with the operator.
    case signature([UInt8])
}

/// A message ready for the broker: its body, the bus key's MAC and the proof of its sender.
public struct SealedBusMessage: Hashable, Sendable {
    public static let contentType = "application/vnd.fence-router.bus+json; version=1"
    /// The AMQP application property that carries the MAC (hex HMAC-SHA256 of the body).
    public static let macProperty = "fr-mac"
    /// The AMQP application property that carries the pair MACs: `name=hex` for each receiver, comma-separated.
    public static let pairMACsProperty = "fr-to"
    /// The AMQP application property that carries an operator's signature (hex Ed25519 of the body).
    public static let signatureProperty = "fr-sig"
    /// At most this many receivers per message.
    public static let maximumReceivers = 1024

    public let body: [UInt8]
    public let mac: String
    public let proof: SenderProof

    public init(body: [UInt8], mac: String, proof: SenderProof) {
        self.body = body
        self.mac = mac
        self.proof = proof
    }

    /// The proof as AMQP application properties.
    public var properties: [String: String] {
        var properties = [Self.macProperty: mac]
        switch proof {
        case .signature(let signature):
            properties[Self.signatureProperty] = BusCodec.hex(signature)
        case .pairMACs(let macs):
            properties[Self.pairMACsProperty] = macs.sorted { $0.key < $1.key }.map { "\($0.key)=\(BusCodec.hex($0.value))" }.joined(separator: ",")
        }
        return properties
    }
}

/// What came off the bus: the message and who sent it when.
public struct BusEnvelope: Hashable, Sendable {
    public let id: String
    /// Wall-clock ms since the Unix epoch, as the sender saw it.
    public let sentAt: UInt64
    /// A host id, a router id or an operator's name: whoever proved the message, in the role the
    /// message needs (`BusMessage.signerRole`), and the one the message speaks for.
    public let sender: String
    public let message: BusMessage
}

/// Seals and checks bus messages: `{"v":1,"type":…,"id":…,"ts":…,"from":…,"body":{…}}`, MAC'd
/// whole with HMAC-SHA256 under the bus key, and proven by its sender (`SenderProof`).
public struct BusCodec: Sendable {
    public static let version: UInt64 = 1
    private let key: BusKey
    private let trust: any BusTrust
    private let pairKeys = PairKeys()

    public init(key: BusKey, trust: any BusTrust) {
        self.key = key
        self.trust = trust
    }

    /// Seals `message` as `identity` for `receivers` (names in the role the message goes to,
    /// `BusMessage.receiverRole`; ignored for an operator's signed statement).
    public func seal(_ message: BusMessage, id: String, as identity: BusIdentity, for receivers: [String], now: UInt64) throws(BusError) -> SealedBusMessage {
        let document = JSON.object([
            ("v", .integer(Self.version)), ("type", .string(message.kind)), ("id", .string(id)),
            ("ts", .integer(now)), ("from", .string(identity.name)), ("body", message.json),
        ])
        let body = document.encoded()
        return SealedBusMessage(
            body: body, mac: Self.hex(key.mac.mac(body)),
            proof: try proof(of: body, message, as: identity, for: receivers)
        )
    }

    /// What proves that `body`, the encoding of `message`, comes from `identity`: for an
    /// operator's statement a signature, else a pair MAC for each of `receivers`.
    public func proof(of body: [UInt8], _ message: BusMessage, as identity: BusIdentity, for receivers: [String]) throws(BusError) -> SenderProof {
        guard message.signerRole != .operator else { return .signature(identity.key.sign(body)) }
        guard receivers.count <= SealedBusMessage.maximumReceivers else {
            throw BusError(.unknownReceiver, "\(receivers.count) receivers; at most \(SealedBusMessage.maximumReceivers)")
        }
        var macs: [String: [UInt8]] = [:]
        for receiver in receivers {
            let peer = BusPeer(role: message.receiverRole, name: receiver)
            guard let pair = pairKey(identity, peer) else {
                throw BusError(.unknownReceiver, "no trusted \(peer.role.rawValue) key for \(receiver), to send a \(message.kind) to")
            }
            macs[receiver] = pair.mac.mac(pair.toPeer, body)
        }
        return .pairMACs(macs)
    }

    /// Checks the bus key's MAC first (nothing unauthenticated is parsed further), then the version
    /// and form, then that the sender holds a trusted key of the role the message needs, proved it
    /// to `receiver` (a pair MAC for this receiver, or an operator's signature), and speaks for itself.
    public func open(body: [UInt8], properties: [String: String], as receiver: BusIdentity) throws(BusError) -> BusEnvelope {
        guard let mac = properties[SealedBusMessage.macProperty], let received = Self.bytes(hex: mac),
              ConstantTime.equals(received, key.mac.mac(body)) else {
            throw BusError(.badMAC, properties[SealedBusMessage.macProperty] == nil ? "no MAC" : "the MAC does not match the bus key")
        }
        let document: JSON
        do {
            document = try JSON(parsing: body)
        } catch {
            throw BusError(.malformed, "\(error)")
        }
        guard let version = document["v"]?.uint64Value else { throw BusError(.malformed, "no version") }
        guard version == Self.version else { throw BusError(.unsupportedVersion, "version \(version); this build reads \(Self.version)") }
        guard let kind = document["type"]?.stringValue, let id = document["id"]?.stringValue,
              let sentAt = document["ts"]?.uint64Value, let sender = document["from"]?.stringValue,
              let payload = document["body"] else {
            throw BusError(.malformed, "the envelope lacks type, id, ts, from or body")
        }
        let message = try BusMessage(kind: kind, json: payload)
        guard let signer = trust.verifyingKey(role: message.signerRole, name: sender) else {
            throw BusError(.unknownSender, "no trusted \(message.signerRole.rawValue) key for \(sender), who sent a \(kind)")
        }
        if message.signerRole == .operator {
            guard let signature = properties[SealedBusMessage.signatureProperty], let signatureBytes = Self.bytes(hex: signature),
                  signer.verify(signatureBytes, of: body) else {
                throw BusError(.badSignature, properties[SealedBusMessage.signatureProperty] == nil ? "no signature" : "the signature is not \(sender)'s")
            }
        } else {
            guard receiver.role == message.receiverRole,
                  let received = Self.pairMAC(for: receiver.name, in: properties[SealedBusMessage.pairMACsProperty]) else {
                throw BusError(.notAddressed, "a \(kind) from \(sender) with no MAC for \(receiver.role.rawValue) \(receiver.name)")
            }
            let peer = BusPeer(role: message.signerRole, name: sender)
            guard let pair = pairKeys.key(receiver, peer, signer),
                  ConstantTime.equals(received, pair.mac.mac(pair.toOwn, body)) else {
                throw BusError(.badSignature, "the pair MAC is not \(sender)'s")
            }
        }
        guard message.speaksFor == sender else {
            throw BusError(.wrongSender, "a \(kind) for \(message.speaksFor) sent by \(sender)")
        }
        return BusEnvelope(id: id, sentAt: sentAt, sender: sender, message: message)
    }

    private func pairKey(_ identity: BusIdentity, _ peer: BusPeer) -> PairKey? {
        guard let key = trust.verifyingKey(role: peer.role, name: peer.name) else { return nil }
        return pairKeys.key(identity, peer, key)
    }

    /// This receiver's MAC in the `fr-to` property, without splitting the rest.
    static func pairMAC(for name: String, in property: String?) -> [UInt8]? {
        guard var property, property.utf8.count <= SealedBusMessage.maximumReceivers * 140 else { return nil }
        return property.withUTF8 { text -> [UInt8]? in
            var start = 0
            while start < text.count {
                let end = text[start...].firstIndex(of: UInt8(ascii: ",")) ?? text.count
                let entry = UnsafeBufferPointer(rebasing: text[start..<end])
                start = end + 1
                guard let equals = entry.firstIndex(of: UInt8(ascii: "=")), entry[..<equals].elementsEqual(name.utf8) else { continue }
                return bytes(hex: UnsafeBufferPointer(rebasing: entry[(equals + 1)...]))
            }
            return nil
        }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes { text += [digits[Int(byte >> 4)], digits[Int(byte & 0xF)]] }
        return String(decoding: text, as: UTF8.self)
    }

    static func bytes(hex: String) -> [UInt8]? {
        var hex = hex
        return hex.withUTF8 { bytes(hex: $0) }
    }

    private static func bytes(hex digits: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    /// Compares instead of matching ranges, which compiled to generic `contains` calls (a profile
    /// of the router under heartbeats found them).
    private static func nibble(_ digit: UInt8) -> UInt8? {
        let decimal = digit &- UInt8(ascii: "0")
        if decimal < 10 { return decimal }
        let letter = (digit | 0x20) &- UInt8(ascii: "a")
        return letter < 6 ? letter + 10 : nil
    }
}

/// Freshness and replay protection for received messages: a message must be dated within
/// `tolerance` of the receiver's clock and carry an id not seen within that window. Time is
/// passed in (ms since the Unix epoch).
public struct ReplayGuard: Sendable {
    public let tolerance: UInt64
    /// Each id seen, with the time from which it would be refused as stale anyway: the latest
    /// of its messages' (a refused copy dated later keeps it longer, as it must).
    private var seen: [String: UInt64] = [:]
    /// The same, in the order they came (an id again for each later time). Forgotten from the
    /// front: an id behind one that expires later is kept longer, never forgotten early, and each
    /// message costs O(1) (1,000 hosts' heartbeats keep ~30,000 ids).
    private var expiries: [(at: UInt64, id: String)] = []
    private var head = 0

    /// - Parameter tolerance: ms; the hosts' clocks must agree better than this (NTP).
    public init(tolerance: UInt64 = 30_000) {
        self.tolerance = tolerance
    }

    public mutating func admit(_ envelope: BusEnvelope, now: UInt64) throws(BusError) {
        let age = now >= envelope.sentAt ? now - envelope.sentAt : envelope.sentAt - now
        guard age <= tolerance else {
            throw BusError(.stale, "sent at \(envelope.sentAt), \(age) ms from this clock (tolerance \(tolerance) ms)")
        }
        purge(now: now)
        let expiry = envelope.sentAt + tolerance
        let known = seen[envelope.id]
        if known.map({ expiry > $0 }) ?? true {
            seen[envelope.id] = expiry
            expiries.append((expiry, envelope.id))
        }
        guard known == nil else {
            throw BusError(.replayed, "message \(envelope.id) was already received")
        }
    }

    public var remembered: Int { seen.count }

    private mutating func purge(now: UInt64) {
        while head < expiries.count, expiries[head].at < now {
            let (at, id) = expiries[head]
            // Forgotten only by its latest time: an earlier entry of a renewed id is passed over.
            if seen[id] == at { seen[id] = nil }
            head += 1
        }
        if head >= 1024, head * 2 >= expiries.count {
            expiries.removeFirst(head)
            head = 0
        }
    }
}
