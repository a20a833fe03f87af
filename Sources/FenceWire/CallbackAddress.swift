/// The address a multicast request asks the daemon to call back, taken from the signed packet
/// (never from the UDP source: IPv6 copies arrive from a link-local source).
public struct CallbackAddress: Hashable, Sendable, CustomStringConvertible {
    public enum Family: Sendable, Hashable {
        case ipv4
        case ipv6
    }

    /// `AF_INET` and `AF_INET6` as Linux numbers them; the packet carries these values.
    public static let familyCodeIPv4: UInt32 = 2
    public static let familyCodeIPv6: UInt32 = 10

    public let family: Family
    /// 4 or 16 bytes, network order.
    public let bytes: [UInt8]

    public init?(family: Family, bytes: [UInt8]) {
        guard bytes.count == (family == .ipv4 ? 4 : 16) else { return nil }
        self.family = family
        self.bytes = bytes
    }

    /// Parses dotted IPv4 or RFC 4291 IPv6 text.
    public init?(_ text: String) {
        if text.contains(":") {
            guard let bytes = Self.parseIPv6(text) else { return nil }
            self.init(family: .ipv6, bytes: bytes)
        } else {
            let parts = text.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 4 else { return nil }
            var bytes: [UInt8] = []
            for part in parts {
                guard !part.isEmpty, part.count <= 3, let value = UInt8(part) else { return nil }
                bytes.append(value)
            }
            self.init(family: .ipv4, bytes: bytes)
        }
    }

    /// A multicast group: 224.0.0.0/4 or ff00::/8.
    public var isMulticast: Bool {
        family == .ipv4 ? (224..<240).contains(bytes[0]) : bytes[0] == 0xFF
    }

    /// 127.0.0.0/8 or ::1: the daemon's own host.
    public var isLoopback: Bool {
        family == .ipv4 ? bytes[0] == 127 : bytes == [UInt8](repeating: 0, count: 15) + [1]
    }

    /// Whether a TCP connection to this address can make sense: not in 0.0.0.0/8 ("this network",
    /// unspecified included) or ::/8 other than ::1, not multicast or broadcast (240.0.0.0/4), and
    /// not IPv6 link-local (the packet has no scope id to reach it).
    ///
    /// The first rule also keeps out every packet whose bytes from offset 64 on hold SHA-2 padding
    /// (a first address byte of 0): such a packet could be signed by length extension of a
    /// challenge answer (see Docs/security.md).
    public var isUsableForCallback: Bool {
        switch family {
        case .ipv4:
            return bytes[0] != 0 && bytes[0] < 224
        case .ipv6:
            let linkLocal = bytes[0] == 0xFE && (bytes[1] & 0xC0) == 0x80
            return (bytes[0] != 0 || isLoopback) && !isMulticast && !linkLocal
        }
    }

    public var description: String {
        switch family {
        case .ipv4:
            // By hand: a string per byte, joined, cost more than the rest of admitting a request.
            var text: [UInt8] = []
            text.reserveCapacity(15)
            for (index, byte) in bytes.enumerated() {
                if index > 0 { text.append(UInt8(ascii: ".")) }
                if byte >= 100 { text.append(0x30 + byte / 100) }
                if byte >= 10 { text.append(0x30 + byte / 10 % 10) }
                text.append(0x30 + byte % 10)
            }
            return String(decoding: text, as: UTF8.self)
        case .ipv6:
            return Self.formatIPv6(bytes)
        }
    }

    /// RFC 5952 text: lowercase hex, the longest run (of two or more) of zero groups as `::`.
    private static func formatIPv6(_ bytes: [UInt8]) -> String {
        let groups = (0..<8).map { UInt16(bytes[2 * $0]) << 8 | UInt16(bytes[2 * $0 + 1]) }
        var bestStart = -1
        var bestLength = 1
        var index = 0
        while index < 8 {
            guard groups[index] == 0 else {
                index += 1
                continue
            }
            let start = index
            while index < 8, groups[index] == 0 { index += 1 }
            if index - start > bestLength {
                bestStart = start
                bestLength = index - start
            }
        }
        let hex = groups.map { String($0, radix: 16) }
        guard bestStart >= 0 else { return hex.joined(separator: ":") }
        let head = hex[..<bestStart].joined(separator: ":")
        let tail = hex[(bestStart + bestLength)...].joined(separator: ":")
        return head + "::" + tail
    }

    private static func parseIPv6(_ text: String) -> [UInt8]? {
        let halves = text.halves(at: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ part: String) -> [UInt16]? {
            if part.isEmpty { return [] }
            var result: [UInt16] = []
            for group in part.split(separator: ":", omittingEmptySubsequences: false) {
                guard !group.isEmpty, group.count <= 4, let value = UInt16(group, radix: 16) else { return nil }
                result.append(value)
            }
            return result
        }
        guard let head = groups(halves[0]) else { return nil }
        var all = head
        if halves.count == 2 {
            guard let tail = groups(halves[1]), head.count + tail.count < 8 else { return nil }
            all += [UInt16](repeating: 0, count: 8 - head.count - tail.count) + tail
        }
        guard all.count == 8 else { return nil }
        return all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }
}

extension String {
    /// The parts between occurrences of a two-character separator, written out by hand:
    /// `firstRange(of:)` would link Swift's regex engine into every daemon.
    fileprivate func halves(at separator: String) -> [String] {
        let separator = Array(separator.utf8)
        let bytes = Array(utf8)
        var parts: [String] = []
        var start = 0
        var index = 0
        while index + separator.count <= bytes.count {
            if bytes[index..<(index + separator.count)].elementsEqual(separator) {
                parts.append(String(decoding: bytes[start..<index], as: UTF8.self))
                index += separator.count
                start = index
            } else {
                index += 1
            }
        }
        parts.append(String(decoding: bytes[start...], as: UTF8.self))
        return parts
    }
}
