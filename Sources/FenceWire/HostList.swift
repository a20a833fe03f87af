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
        write(into: &bytes, at: 0)
        return bytes
    }

    /// Writes the record into zeroed bytes at `offset`.
    func write(into bytes: inout [UInt8], at offset: Int) {
        for (start, field) in [(offset, name), (offset + Self.fieldLength, uuid)] {
            var index = start
            for byte in field.utf8.prefix(Self.fieldLength - 1) {
                bytes[index] = byte
                index += 1
            }
        }
        bytes[offset + 2 * Self.fieldLength] = state
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
        // Zeroed once: the terminator record and every field's padding are already in place.
        var stream = [UInt8](repeating: 0, count: 1 + (records.count + 1) * HostRecord.length + 1)
        stream[0] = ResponseCode.hostList.rawValue
        for (index, record) in records.enumerated() {
            record.write(into: &stream, at: 1 + index * HostRecord.length)
        }
        stream[stream.count - 1] = ResponseCode.success.rawValue
        return stream
    }

    /// Orders records as the reference does: by name, ASCII case-insensitively (`strcasecmp`).
    public static func sorted(_ records: [HostRecord]) -> [HostRecord] {
        records
            .map { (key: $0.name.utf8.map(asciiLowercased), record: $0) }
            .sorted { $0.key.lexicographicallyPrecedes($1.key) }
            .map(\.record)
    }

    private static func asciiLowercased(_ byte: UInt8) -> UInt8 {
        (65...90).contains(byte) ? byte + 32 : byte
    }
}
