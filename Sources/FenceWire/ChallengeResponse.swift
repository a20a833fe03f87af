import Cryptography

/// The mutual challenge-response that follows the call-back: each side proves it holds the key by
/// answering `HASH(key ‖ challenge)`, padded to 64 bytes, to a 64-byte random challenge.
public struct ChallengeResponse: Sendable {
    /// Challenges and responses are 64 bytes whatever the digest.
    public static let length = 64

    public let key: FenceKey
    /// The `auth` setting; `.none` skips the exchange entirely.
    public let algorithm: HashAlgorithm

    public init(key: FenceKey, algorithm: HashAlgorithm) {
        self.key = key
        self.algorithm = algorithm
    }

    public func response(to challenge: [UInt8]) -> [UInt8] {
        algorithm.paddedDigest(key: key, message: challenge)
    }

    public func isValid(response: [UInt8], to challenge: [UInt8]) -> Bool {
        ConstantTime.equals(self.response(to: challenge), response)
    }
}
