import Cryptography

/// Why a well-formed request is not accepted.
public struct VerificationFailure: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        case hashTooWeak = "hash-too-weak"
        case noKey = "no-key"
        case digestMismatch = "digest-mismatch"
    }

    public let code: Code
    public let detail: String

    public var description: String { "\(code.rawValue): \(detail)" }
}

/// The daemon's acceptance rule for a signed request (the reference's `verify_request`), with a
/// constant-time digest comparison.
public struct RequestVerifier: Sendable {
    public let key: FenceKey
    /// Requests signed with anything weaker are refused (`hash` in `fence_virt.conf`).
    public let minimumHash: HashAlgorithm

    public init(key: FenceKey, minimumHash: HashAlgorithm) {
        self.key = key
        self.minimumHash = minimumHash
    }

    public func verify(_ request: FenceRequest) throws(VerificationFailure) {
        let hash = request.hash
        guard hash >= minimumHash else {
            throw VerificationFailure(code: .hashTooWeak, detail: "\(hash) < \(minimumHash)")
        }
        guard hash != .none else { return }
        guard !key.isEmpty else {
            throw VerificationFailure(code: .noKey, detail: "the key is empty")
        }
        let expected = hash.paddedDigest(key: key, message: request.signedBytes)
        guard ConstantTime.equals(expected, Array(request.digest)) else {
            throw VerificationFailure(code: .digestMismatch, detail: "\(hash) digest does not match the key")
        }
    }
}
