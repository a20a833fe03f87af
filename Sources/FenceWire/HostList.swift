/// One `host_state_t` record of a host-list answer.
public struct HostRecord: Hashable, Sendable {
    /// Name and UUID fields are 64 bytes each; with the terminating NUL, 63 bytes of text fit.
    public static let fieldLength = 64
    public static let length = 130

    public var name: String
    public var uuid: String
    /// The raw libvirt `virDomainState` (1 running … 7 pmsuspended); the client shows only 1 as "on".
    public var state: UInt8

    public init(name: String, uuid: String, state: UInt8) {
        self.name = name
        self.uuid = uuid
        self.state = state
    }

    /// Whether the name reaches the client whole; longer names are cut to 63 bytes, as the reference
    /// cuts them (without its garbage byte).
    public var nameFitsOnWire: Bool { name.utf8.count < Self.fieldLength }

    /// The 130 bytes of this record, zeroed wherever the reference leaves stack garbage.
    public var encoded: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.length)
        for (offset, field) in [(0, name), (Self.fieldLength, uuid)] {
            for (index, byte) in field.utf8.prefix(Self.fieldLength - 1).enumerated() {
                bytes[offset + index] = byte
            }
        }
        bytes[2 * Self.fieldLength] = state
        return bytes
    }

    /// Decodes one 130-byte record, as the client reads it (strings end at the first NUL).
    public init?(decoding bytes: some Collection<UInt8>) {
        let record = Array(bytes)
        guard record.count == Self.length else { return nil }
        func text(_ range: Range<Int>) -> String {
            let field = record[range]
            return String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
        }
        self.name = text(0..<Self.fieldLength)
        self.uuid = text(Self.fieldLength..<(2 * Self.fieldLength))
        self.state = record[2 * Self.fieldLength]
    }
}

/// The host-list answer: `0xFD`, one record per domain, an all-zero record, then the backend's
/// return byte, which the client never reads but the reference always sends.
public enum HostListStream {
    public static func encode(_ records: [HostRecord]) -> [UInt8] {
        var stream: [UInt8] = [ResponseCode.hostList.rawValue]
        stream.reserveCapacity(1 + (records.count + 1) * HostRecord.length + 1)
        for record in records { stream += record.encoded }
        stream += [UInt8](repeating: 0, count: HostRecord.length)
        stream.append(ResponseCode.success.rawValue)
        return stream
    }

    /// Orders records as the reference does: by name, ASCII case-insensitively (`strcasecmp`).
    public static func sorted(_ records: [HostRecord]) -> [HostRecord] {
        records.sorted { lhs, rhs in
            let left = lhs.name.utf8.lazy.map(asciiLowercased)
            let right = rhs.name.utf8.lazy.map(asciiLowercased)
            return left.lexicographicallyPrecedes(right)
        }
    }

    private static func asciiLowercased(_ byte: UInt8) -> UInt8 {
        (65...90).contains(byte) ? byte + 32 : byte
    }
}
