#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import COpenSSL
import Synchronization

/// Message digests and HMAC from OpenSSL's libcrypto, which libvirt already loads into our
/// processes (random bytes come from the kernel: `SecureRandom`).
/// (A vendored crypto library would bring a second copy of the same code, and Foundation with it.)
public enum DigestAlgorithm: Sendable, CaseIterable {
    case sha1
    case sha256
    case sha512

    public var length: Int {
        switch self {
        case .sha1: 20
        case .sha256: 32
        case .sha512: 64
        }
    }

    /// The block HMAC pads its key to.
    var blockSize: Int {
        switch self {
        case .sha1, .sha256: 64
        case .sha512: 128
        }
    }

    fileprivate var evp: OpaquePointer {
        switch self {
        case .sha1: EVP_sha1()
        case .sha256: EVP_sha256()
        case .sha512: EVP_sha512()
        }
    }
}

public enum Digest {
    /// The digest of the concatenation of `parts`, without copying them together.
    public static func hash(_ algorithm: DigestAlgorithm, _ parts: [UInt8]...) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: algorithm.length)
        let context = EVP_MD_CTX_new()!
        defer { EVP_MD_CTX_free(context) }
        // These calls fail only on allocation failure or a misuse that is a programming error.
        precondition(EVP_DigestInit_ex(context, algorithm.evp, nil) == 1, "EVP_DigestInit_ex failed")
        for part in parts {
            precondition(part.withUnsafeBytes { EVP_DigestUpdate(context, $0.baseAddress, $0.count) } == 1, "EVP_DigestUpdate failed")
        }
        var length: UInt32 = 0
        precondition(EVP_DigestFinal_ex(context, &output, &length) == 1 && Int(length) == algorithm.length, "EVP_DigestFinal_ex failed")
        return output
    }

    /// HMAC of `message` under `key`.
    public static func hmac(_ algorithm: DigestAlgorithm, key: [UInt8], message: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: algorithm.length)
        var length: UInt32 = 0
        let result = key.withUnsafeBytes { keyBytes in
            message.withUnsafeBytes { messageBytes in
                HMAC(algorithm.evp, keyBytes.baseAddress, Int32(keyBytes.count),
                     messageBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), messageBytes.count, &output, &length)
            }
        }
        precondition(result != nil && Int(length) == algorithm.length, "HMAC failed")
        return output
    }
}

public enum SecureRandom {
    /// `count` bytes from the kernel's CSPRNG (getentropy(3): one getrandom(2) per 256 bytes).
    /// OpenSSL's DRBG took about 20 µs for the 48 bytes of a call-back's challenge (provider
    /// look-ups, locks, a fork check), before every call-back.
    public static func bytes(_ count: Int) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: count)
        output.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let chunk = min(256, buffer.count - offset)
                precondition(getentropy(buffer.baseAddress! + offset, chunk) == 0, "getentropy failed")
                offset += chunk
            }
        }
        return output
    }
}

/// `HASH(key ‖ message)` with the key absorbed once: each digest copies the prepared state and
/// adds only the message. (fence_xvm keys are up to 4 KB; its messages are 64 or 176 bytes.)
public final class KeyedDigest: Sendable {
    public let algorithm: DigestAlgorithm
    private let prepared: Mutex<PreparedContext>

    public init(_ algorithm: DigestAlgorithm, key: [UInt8]) {
        self.algorithm = algorithm
        let context = PreparedContext()
        precondition(EVP_DigestInit_ex(context.pointer, algorithm.evp, nil) == 1, "EVP_DigestInit_ex failed")
        precondition(key.withUnsafeBytes { EVP_DigestUpdate(context.pointer, $0.baseAddress, $0.count) } == 1, "EVP_DigestUpdate failed")
        prepared = Mutex(context)
    }

    public func hash(_ message: [UInt8]) -> [UInt8] {
        hash([message])
    }

    func hash(_ parts: [[UInt8]]) -> [UInt8] {
        let context = PreparedContext()
        prepared.withLock { precondition(EVP_MD_CTX_copy_ex(context.pointer, $0.pointer) == 1, "EVP_MD_CTX_copy_ex failed") }
        for part in parts {
            precondition(part.withUnsafeBytes { EVP_DigestUpdate(context.pointer, $0.baseAddress, $0.count) } == 1, "EVP_DigestUpdate failed")
        }
        var output = [UInt8](repeating: 0, count: algorithm.length)
        var length: UInt32 = 0
        precondition(EVP_DigestFinal_ex(context.pointer, &output, &length) == 1 && Int(length) == algorithm.length, "EVP_DigestFinal_ex failed")
        return output
    }
}

/// HMAC under one key, with the key's inner and outer pads absorbed once (RFC 2104): each MAC
/// copies two prepared states. OpenSSL's one-shot `HMAC` looks its algorithm up by name and sets
/// the key up again on every call, which on the bus, twice per message, was a tenth of a router's
/// work per heartbeat.
public final class KeyedMAC: Sendable {
    public let algorithm: DigestAlgorithm
    private let inner: KeyedDigest
    private let outer: KeyedDigest

    public init(_ algorithm: DigestAlgorithm, key: [UInt8]) {
        self.algorithm = algorithm
        var block = key.count > algorithm.blockSize ? Digest.hash(algorithm, key) : key
        block += [UInt8](repeating: 0, count: algorithm.blockSize - block.count)
        inner = KeyedDigest(algorithm, key: block.map { $0 ^ 0x36 })
        outer = KeyedDigest(algorithm, key: block.map { $0 ^ 0x5C })
    }

    /// The MAC of the concatenation of `parts`.
    public func mac(_ parts: [UInt8]...) -> [UInt8] {
        outer.hash(inner.hash(parts))
    }
}

/// Owns one `EVP_MD_CTX`.
private final class PreparedContext: @unchecked Sendable {
    let pointer: OpaquePointer

    init() {
        pointer = EVP_MD_CTX_new()!
    }

    deinit { EVP_MD_CTX_free(pointer) }
}

public enum ConstantTime {
    /// Compares two byte strings in time that depends only on their lengths, so that a forger
    /// learns nothing from how fast a wrong digest or MAC is refused.
    @inline(never)
    public static func equals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        var difference: UInt8 = 0
        for index in lhs.indices {
            difference |= lhs[index] ^ rhs[index]
        }
        return difference == 0
    }
}
