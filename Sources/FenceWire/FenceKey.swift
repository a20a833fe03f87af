import Cryptography
import Synchronization

/// The shared secret of fence_xvm: the raw bytes of the key file, at most the first 4096.
///
/// Nothing is trimmed: a trailing newline is key material, exactly as the reference reads it.
public struct FenceKey: Sendable, Equatable {
    /// The reference reads at most this many bytes of the key file.
    public static let maximumLength = 4096

    public let bytes: [UInt8]
    private let digests: PreparedDigests

    public init(fileContents: some Collection<UInt8>) {
        bytes = Array(fileContents.prefix(Self.maximumLength))
        digests = PreparedDigests()
    }

    public var isEmpty: Bool { bytes.isEmpty }

    public static func == (lhs: FenceKey, rhs: FenceKey) -> Bool { lhs.bytes == rhs.bytes }

    /// `HASH(key ‖ message)`, with the key absorbed once per algorithm for the key's lifetime.
    func digest(_ algorithm: DigestAlgorithm, _ message: [UInt8]) -> [UInt8] {
        digests.digest(algorithm, key: bytes).hash(message)
    }
}

/// The key's prepared digest contexts, made on first use.
private final class PreparedDigests: Sendable {
    private let prepared = Mutex<[DigestAlgorithm: KeyedDigest]>([:])

    func digest(_ algorithm: DigestAlgorithm, key: [UInt8]) -> KeyedDigest {
        prepared.withLock { prepared in
            if let digest = prepared[algorithm] { return digest }
            let digest = KeyedDigest(algorithm, key: key)
            prepared[algorithm] = digest
            return digest
        }
    }
}
