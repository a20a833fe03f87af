import Cryptography

/// The digest used to sign a request or to answer a challenge.
///
/// fence_xvm uses the same numbers for `hashtype` in the packet and for the (unsent) auth type,
/// and orders them by strength, which the minimum-hash policy relies on.
public enum HashAlgorithm: UInt8, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    case none = 0
    case sha1 = 1
    case sha256 = 2
    case sha512 = 3

    /// The name used in `fence_virt.conf` and on the fence_xvm command line.
    public var description: String {
        switch self {
        case .none: "none"
        case .sha1: "sha1"
        case .sha256: "sha256"
        case .sha512: "sha512"
        }
    }

    /// Parses a configuration or command-line name, case-insensitively.
    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.description == name.lowercased() }) else { return nil }
        self = match
    }

    /// The digest behind this hash type; nil for `.none`.
    var digest: DigestAlgorithm? {
        switch self {
        case .none: nil
        case .sha1: .sha1
        case .sha256: .sha256
        case .sha512: .sha512
        }
    }

    public static func < (lhs: HashAlgorithm, rhs: HashAlgorithm) -> Bool { lhs.rawValue < rhs.rawValue }

    /// `HASH(key ‖ message)` zero-padded to 64 bytes: the one construction fence_xvm uses for both
    /// packet signatures and challenge responses. For `.none` the result is 64 zero bytes.
    func paddedDigest(key: FenceKey, message: [UInt8]) -> [UInt8] {
        var output = digest.map { key.digest($0, message) } ?? []
        while output.count < WireLayout.hashFieldLength { output.append(0) }
        return output
    }
}
