import Cryptography

/// Why a bus message was dropped.
public struct BusError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Hashable, Sendable {
        case badMAC = "bad-mac"
        case stale
        case replayed
        case malformed
        case unknownType = "unknown-type"
        case unsupportedVersion = "unsupported-version"
        /// No trusted key of the role its message needs under the sender's name.
        case unknownSender = "unknown-sender"
        /// The signature is not the named sender's.
        case badSignature = "bad-signature"
        /// The message speaks for someone else than its signer (a host's inventory in another's name).
        case wrongSender = "wrong-sender"
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
/// and cheaply, keeps a broker account from making receivers spend a signature check. Who sent a
/// message is proven by the sender's own signature (`BusIdentity`), which no other holder of
/// this key can make.
public struct BusKey: Sendable {
    public static let minimumLength = 32
    let bytes: [UInt8]

    public init(fileContents: [UInt8]) throws(BusError) {
        guard fileContents.count >= Self.minimumLength else {
            throw BusError(.malformed, "a bus key needs at least \(Self.minimumLength) bytes, this one has \(fileContents.count)")
        }
        bytes = fileContents
    }
}

/// A message ready for the broker: its body, the MAC and the sender's signature.
public struct SignedBusMessage: Hashable, Sendable {
    public static let contentType = "application/vnd.fence-router.bus+json; version=1"
    /// The AMQP application property that carries the MAC (hex HMAC-SHA256 of the body).
    public static let macProperty = "fr-mac"
    /// The AMQP application property that carries the sender's signature (hex Ed25519 of the body).
    public static let signatureProperty = "fr-sig"

    public let body: [UInt8]
    public let mac: String
    public let signature: String
}

/// What came off the bus: the message and who sent it when.
public struct BusEnvelope: Hashable, Sendable {
    public let id: String
    /// Wall-clock ms since the Unix epoch, as the sender saw it.
    public let sentAt: UInt64
    /// A host id, a router id or an operator's name: whoever signed the message, in the role the
    /// message needs (`BusMessage.signerRole`), and the one the message speaks for.
    public let sender: String
    public let message: BusMessage
}

/// Signs and checks bus messages: `{"v":1,"type":…,"id":…,"ts":…,"from":…,"body":{…}}`, MAC'd
/// whole with HMAC-SHA256 under the bus key and signed whole with the sender's Ed25519 key.
public struct BusCodec: Sendable {
    public static let version: UInt64 = 1
    private let key: BusKey
    private let trust: any BusTrust

    public init(key: BusKey, trust: any BusTrust) {
        self.key = key
        self.trust = trust
    }

    public func seal(_ message: BusMessage, id: String, as identity: BusIdentity, now: UInt64) -> SignedBusMessage {
        let document = JSON.object([
            ("v", .integer(Self.version)), ("type", .string(message.kind)), ("id", .string(id)),
            ("ts", .integer(now)), ("from", .string(identity.name)), ("body", message.json),
        ])
        let body = document.encoded()
        return SignedBusMessage(
            body: body, mac: Self.hex(Digest.hmac(.sha256, key: key.bytes, message: body)), signature: Self.hex(identity.key.sign(body))
        )
    }

    /// Checks the MAC first (nothing unauthenticated is parsed further), then the version and form,
    /// then that the sender holds a trusted key of the role the message needs, signed it, and
    /// speaks for itself.
    public func open(body: [UInt8], mac: String?, signature: String?) throws(BusError) -> BusEnvelope {
        guard let mac, let received = Self.bytes(hex: mac),
              ConstantTime.equals(received, Digest.hmac(.sha256, key: key.bytes, message: body)) else {
            throw BusError(.badMAC, mac == nil ? "no MAC" : "the MAC does not match the bus key")
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
        guard let signature, let signatureBytes = Self.bytes(hex: signature), signer.verify(signatureBytes, of: body) else {
            throw BusError(.badSignature, signature == nil ? "no signature" : "the signature is not \(sender)'s")
        }
        guard message.speaksFor == sender else {
            throw BusError(.wrongSender, "a \(kind) for \(message.speaksFor) signed by \(sender)")
        }
        return BusEnvelope(id: id, sentAt: sentAt, sender: sender, message: message)
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes { text += [digits[Int(byte >> 4)], digits[Int(byte & 0xF)]] }
        return String(decoding: text, as: UTF8.self)
    }

    static func bytes(hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
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

    private static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case 48...57: digit - 48
        case 97...102: digit - 87
        case 65...70: digit - 55
        default: nil
        }
    }
}

/// Freshness and replay protection for received messages: a message must be dated within
/// `tolerance` of the receiver's clock and carry an id not seen within that window. Time is
/// passed in (ms since the Unix epoch).
public struct ReplayGuard: Sendable {
    public let tolerance: UInt64
    private var seen: [String: UInt64] = [:]
    private var lastPurge: UInt64 = 0

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
        guard seen.updateValue(envelope.sentAt, forKey: envelope.id) == nil else {
            throw BusError(.replayed, "message \(envelope.id) was already received")
        }
    }

    public var remembered: Int { seen.count }

    private mutating func purge(now: UInt64) {
        guard now >= lastPurge + 1000 else { return }
        lastPurge = now
        // Anything older than the window would be refused as stale anyway.
        seen = seen.filter { $0.value + tolerance >= now }
    }
}
