import COpenSSL

/// Why a key could not be read or made.
public struct SignatureKeyError: Error, Hashable, Sendable, CustomStringConvertible {
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}

/// An Ed25519 private key: one per host agent, router and operator, so that what one of them
/// signs cannot come from another (a shared MAC key proves only membership).
/// Stored as PEM (PKCS #8), the form `openssl genpkey -algorithm ed25519` writes.
public final class SigningKey: @unchecked Sendable {
    // EVP_PKEY is reference-counted and read-only once made: signing from several threads, each
    // with its own EVP_MD_CTX, is safe.
    fileprivate let pkey: OpaquePointer
    /// The same key in X25519 form (`KeyAgreement`).
    let agreementKey: OpaquePointer
    /// The raw public key, kept to tell keys apart cheaply.
    public let publicKeyBytes: [UInt8]

    /// A new key from OpenSSL's generator.
    public convenience init() {
        let seed = SecureRandom.bytes(32)
        self.init(pkey: seed.withUnsafeBufferPointer { EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, $0.baseAddress, 32) }!)
    }

    public convenience init(pem: [UInt8]) throws(SignatureKeyError) {
        self.init(pkey: try PEM.read(pem, what: "an Ed25519 private key") { PEM_read_bio_PrivateKey($0, nil, nil, nil) })
    }

    private init(pkey: OpaquePointer) {
        self.pkey = pkey
        var seed = [UInt8](repeating: 0, count: 32)
        var length = 32
        precondition(EVP_PKEY_get_raw_private_key(pkey, &seed, &length) == 1 && length == 32, "EVP_PKEY_get_raw_private_key failed")
        agreementKey = KeyAgreement.montgomeryPrivateKey(seed: seed)
        OPENSSL_cleanse(&seed, seed.count)
        var raw = [UInt8](repeating: 0, count: 32)
        length = 32
        precondition(EVP_PKEY_get_raw_public_key(pkey, &raw, &length) == 1 && length == 32, "EVP_PKEY_get_raw_public_key failed")
        publicKeyBytes = raw
    }

    deinit {
        EVP_PKEY_free(pkey)
        EVP_PKEY_free(agreementKey)
    }

    /// The X25519 public key of `agreementKey` (for checking the Edwards-to-Montgomery map).
    var agreementPublicKey: [UInt8] {
        var raw = [UInt8](repeating: 0, count: 32)
        var length = 32
        precondition(EVP_PKEY_get_raw_public_key(agreementKey, &raw, &length) == 1 && length == 32, "EVP_PKEY_get_raw_public_key failed")
        return raw
    }

    /// The PKCS #8 PEM text of this key.
    public var pem: [UInt8] {
        PEM.write { PEM_write_bio_PrivateKey($0, pkey, nil, nil, 0, nil, nil) }
    }

    /// The key that checks this key's signatures.
    public var verifyingKey: VerifyingKey {
        VerifyingKey(raw: publicKeyBytes)
    }

    /// The 64-byte signature of `message`.
    public func sign(_ message: [UInt8]) -> [UInt8] {
        let context = EVP_MD_CTX_new()!
        defer { EVP_MD_CTX_free(context) }
        precondition(EVP_DigestSignInit(context, nil, nil, nil, pkey) == 1, "EVP_DigestSignInit failed")
        var signature = [UInt8](repeating: 0, count: VerifyingKey.signatureLength)
        var length = signature.count
        let result = message.withUnsafeBufferPointer { EVP_DigestSign(context, &signature, &length, $0.baseAddress, $0.count) }
        precondition(result == 1 && length == VerifyingKey.signatureLength, "EVP_DigestSign failed")
        return signature
    }
}

/// An Ed25519 public key, as PEM (SubjectPublicKeyInfo, `openssl pkey -pubout`).
public final class VerifyingKey: @unchecked Sendable, Equatable {
    public static let signatureLength = 64
    private let pkey: OpaquePointer
    /// The 32 raw bytes, for comparing and for fingerprints.
    public let raw: [UInt8]
    /// The same point in X25519 form (`KeyAgreement`); nil if it has none.
    let agreementKey: [UInt8]?

    fileprivate init(raw: [UInt8]) {
        self.raw = raw
        pkey = raw.withUnsafeBufferPointer { EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, $0.baseAddress, 32) }!
        agreementKey = KeyAgreement.montgomeryPublicKey(edwards: raw)
    }

    public convenience init(pem: [UInt8]) throws(SignatureKeyError) {
        let pkey = try PEM.read(pem, what: "an Ed25519 public key") { PEM_read_bio_PUBKEY($0, nil, nil, nil) }
        defer { EVP_PKEY_free(pkey) }
        var raw = [UInt8](repeating: 0, count: 32)
        var length = 32
        guard EVP_PKEY_get_raw_public_key(pkey, &raw, &length) == 1, length == 32 else {
            throw SignatureKeyError("not an Ed25519 public key")
        }
        self.init(raw: raw)
    }

    deinit { EVP_PKEY_free(pkey) }

    public var pem: [UInt8] {
        PEM.write { PEM_write_bio_PUBKEY($0, pkey) }
    }

    /// Whether `signature` is this key's over `message`.
    public func verify(_ signature: [UInt8], of message: [UInt8]) -> Bool {
        guard signature.count == Self.signatureLength else { return false }
        let context = EVP_MD_CTX_new()!
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, nil, nil, pkey) == 1 else { return false }
        return message.withUnsafeBufferPointer { bytes in
            EVP_DigestVerify(context, signature, signature.count, bytes.baseAddress, bytes.count)
        } == 1
    }

    public static func == (lhs: VerifyingKey, rhs: VerifyingKey) -> Bool { lhs.raw == rhs.raw }
}

/// PEM through a memory BIO: read one key, or write one.
private enum PEM {
    static func read(_ text: [UInt8], what: String, _ reader: (OpaquePointer) -> OpaquePointer?) throws(SignatureKeyError) -> OpaquePointer {
        guard text.count < Int32.max else { throw SignatureKeyError("not PEM text of \(what)") }
        // BIO_new_mem_buf does not copy: the whole read happens while the bytes are borrowed.
        let pkey: OpaquePointer? = text.withUnsafeBytes { bytes in
            guard let bio = BIO_new_mem_buf(bytes.baseAddress, Int32(bytes.count)) else { return nil }
            defer { BIO_free(bio) }
            return reader(bio)
        }
        ERR_clear_error()
        guard let pkey else { throw SignatureKeyError("not PEM text of \(what)") }
        guard EVP_PKEY_get_id(pkey) == EVP_PKEY_ED25519 else {
            EVP_PKEY_free(pkey)
            throw SignatureKeyError("not \(what): another kind of key")
        }
        return pkey
    }

    static func write(_ writer: (OpaquePointer) -> Int32) -> [UInt8] {
        let bio = BIO_new(BIO_s_mem())!
        defer { BIO_free(bio) }
        precondition(writer(bio) == 1, "PEM write failed")
        var data: UnsafeMutablePointer<CChar>?
        let length = fr_bio_mem_data(bio, &data)
        guard let data, length > 0 else { return [] }
        return data.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
    }
}
