/// Why a datagram is not a well-formed fence_xvm request.
public struct MalformedRequest: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        case wrongLength = "wrong-length"
        case unknownHashType = "unknown-hash-type"
        case domainNotTerminated = "domain-not-terminated"
        /// fence_xvm zeroes the whole packet before it copies the domain in; anything after the
        /// NUL is not from it (it is where a signature forged by length extension puts SHA-2's
        /// padding, see `LengthExtensionTests`).
        case domainNotZeroPadded = "domain-not-zero-padded"
        case domainNotUTF8 = "domain-not-utf8"
        /// No VM name fence_xvm is given holds one; a domain field that ends in SHA-2's padding
        /// byte 0x80 after a chosen lead byte decodes to U+0080 (see `LengthExtensionTests`).
        case domainControlCharacter = "domain-control-character"
    }

    public let code: Code
    public let detail: String

    public var description: String { "\(code.rawValue): \(detail)" }
}

/// A fence_xvm request (`fence_req_t`): a read-only view over its exact 176 bytes.
///
/// The bytes are kept as received, because the signature covers them as they are; every field is
/// read from them. Integers are little-endian, as every real client sends them.
public struct FenceRequest: Hashable, Sendable {
    public static let length = WireLayout.requestLength

    /// The 176 bytes, exactly as received or built.
    public private(set) var bytes: [UInt8]
    /// The target domain (name or UUID), decoded once.
    public let domain: String

    /// Decodes a received datagram, refusing anything but exactly 176 bytes with sane fields.
    public init(decoding datagram: some Collection<UInt8>) throws(MalformedRequest) {
        let bytes = Array(datagram)
        guard bytes.count == Self.length else {
            throw MalformedRequest(code: .wrongLength, detail: "\(bytes.count) bytes, expected \(Self.length)")
        }
        guard HashAlgorithm(rawValue: bytes[WireLayout.hashType]) != nil else {
            throw MalformedRequest(code: .unknownHashType, detail: "hashtype \(bytes[WireLayout.hashType])")
        }
        let field = bytes[WireLayout.domain]
        guard let end = field.firstIndex(of: 0) else {
            throw MalformedRequest(code: .domainNotTerminated, detail: "no NUL within the 64-byte domain field")
        }
        guard field[end...].allSatisfy({ $0 == 0 }) else {
            throw MalformedRequest(code: .domainNotZeroPadded, detail: "bytes after the domain's NUL are not zero")
        }
        self.bytes = bytes
        self.domain = try Self.domain(field[..<end])
    }

    /// The domain field's text: printable ASCII at once (what names and UUIDs are), anything else
    /// validated as UTF-8 and checked for control characters scalar by scalar.
    private static func domain(_ name: ArraySlice<UInt8>) throws(MalformedRequest) -> String {
        if name.allSatisfy({ (0x20..<0x7F).contains($0) }) { return String(decoding: name, as: UTF8.self) }
        guard let domain = String(validating: name, as: UTF8.self) else {
            throw MalformedRequest(code: .domainNotUTF8, detail: "domain is not valid UTF-8")
        }
        guard !domain.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw MalformedRequest(code: .domainControlCharacter, detail: "domain holds a control character")
        }
        return domain
    }

    /// Builds an unsigned request, as fence_xvm does before signing: zeroed, then filled in.
    /// The domain must fit in 63 bytes, as the client itself insists, and hold no control character
    /// (decoding refuses those).
    public init(
        operation: FenceOperation,
        hash: HashAlgorithm,
        domain: String,
        callback: CallbackAddress?,
        port: UInt16,
        seqno: UInt32,
        flags: UInt8 = 0
    ) throws(MalformedRequest) {
        let name = Array(domain.utf8)
        guard name.count <= WireLayout.maximumDomainLength else {
            throw MalformedRequest(code: .domainNotTerminated, detail: "domain longer than 63 bytes")
        }
        guard !domain.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw MalformedRequest(code: .domainControlCharacter, detail: "domain holds a control character")
        }
        var bytes = [UInt8](repeating: 0, count: Self.length)
        bytes[WireLayout.operation] = operation.rawValue
        bytes[WireLayout.hashType] = hash.rawValue
        bytes[WireLayout.flags] = flags
        bytes.replaceSubrange(WireLayout.domain.lowerBound..<(WireLayout.domain.lowerBound + name.count), with: name)
        if let callback {
            bytes[WireLayout.addressLength] = UInt8(callback.bytes.count)
            let start = WireLayout.address.lowerBound
            bytes.replaceSubrange(start..<(start + callback.bytes.count), with: callback.bytes)
            let family = callback.family == .ipv4 ? CallbackAddress.familyCodeIPv4 : CallbackAddress.familyCodeIPv6
            WireLayout.writeLittleEndian(family, into: &bytes, at: WireLayout.family)
        }
        WireLayout.writeLittleEndian(port, into: &bytes, at: WireLayout.port)
        WireLayout.writeLittleEndian(seqno, into: &bytes, at: WireLayout.seqno)
        self.bytes = bytes
        self.domain = domain
    }

    public var operation: FenceOperation { FenceOperation(rawValue: bytes[WireLayout.operation]) }
    // Checked at decode time, so the force is safe.
    public var hash: HashAlgorithm { HashAlgorithm(rawValue: bytes[WireLayout.hashType])! }
    public var addressLength: UInt8 { bytes[WireLayout.addressLength] }
    public var flags: UInt8 { bytes[WireLayout.flags] }
    /// The client's `-u`; informational only, like the reference: UUIDs are recognised by their form.
    public var domainIsUUID: Bool { flags & 0x01 != 0 }
    public var port: UInt16 { WireLayout.readLittleEndian(bytes, at: WireLayout.port, as: UInt16.self) }
    public var random: ArraySlice<UInt8> { bytes[WireLayout.random] }
    public var seqno: UInt32 { WireLayout.readLittleEndian(bytes, at: WireLayout.seqno, as: UInt32.self) }
    public var family: UInt32 { WireLayout.readLittleEndian(bytes, at: WireLayout.family, as: UInt32.self) }
    public var digest: ArraySlice<UInt8> { bytes[WireLayout.hash] }

    /// The call-back address named by `family` and `address`, if the family is IPv4 or IPv6.
    public var callbackAddress: CallbackAddress? {
        let field = bytes[WireLayout.address]
        switch family {
        case CallbackAddress.familyCodeIPv4:
            return CallbackAddress(family: .ipv4, bytes: Array(field.prefix(4)))
        case CallbackAddress.familyCodeIPv6:
            return CallbackAddress(family: .ipv6, bytes: Array(field.prefix(16)))
        default:
            return nil
        }
    }

    /// A request as `fence_virt -T` sends it on a stream: no call-back, so address, port, family
    /// and address length are all zero. A multicast packet replayed onto a stream is not one.
    public var isStreamRequest: Bool {
        addressLength == 0 && port == 0 && family == 0 && bytes[WireLayout.address].allSatisfy { $0 == 0 }
    }

    /// The bytes the signature covers: the packet with its hash field zeroed.
    var signedBytes: [UInt8] {
        var copy = bytes
        // Byte by byte: the generic `replaceSubrange` ran unspecialised, a tenth of a verification.
        for index in WireLayout.hash { copy[index] = 0 }
        return copy
    }

    /// Signs as the client does: fresh random bytes, then `HASH(key ‖ packet)` into the hash field.
    /// With hash `none` both fields stay zero.
    public mutating func sign(key: FenceKey, random: [UInt8]) {
        guard hash != .none else { return }
        precondition(random.count == WireLayout.randomLength, "random must be 6 bytes")
        bytes.replaceSubrange(WireLayout.random, with: random)
        let digest = hash.paddedDigest(key: key, message: signedBytes)
        bytes.replaceSubrange(WireLayout.hash, with: digest)
    }
}
