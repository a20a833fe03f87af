/// Offsets and sizes of `fence_req_t` (176 bytes, packed, little-endian integers on every real client).
enum WireLayout {
    static let requestLength = 176
    static let operation = 0
    static let hashType = 1
    static let addressLength = 2
    static let flags = 3
    static let domain = 4..<68
    static let address = 68..<96
    static let port = 96..<98
    static let random = 98..<104
    static let seqno = 104..<108
    static let family = 108..<112
    static let hash = 112..<176

    static let hashFieldLength = 64
    static let randomLength = 6
    /// The domain field is 64 bytes and must hold a terminating NUL, so 63 bytes of name at most.
    static let maximumDomainLength = 63

    static func readLittleEndian<T: FixedWidthInteger>(_ bytes: [UInt8], at range: Range<Int>, as: T.Type) -> T {
        var value: T = 0
        for (shift, index) in range.enumerated() {
            value |= T(bytes[index]) << (8 * shift)
        }
        return value
    }

    static func writeLittleEndian<T: FixedWidthInteger>(_ value: T, into bytes: inout [UInt8], at range: Range<Int>) {
        for (shift, index) in range.enumerated() {
            bytes[index] = UInt8(truncatingIfNeeded: value >> (8 * shift))
        }
    }
}
