import COpenSSL

/// X25519 between two Ed25519 identities, so that two daemons share a secret without a second
/// key pair to distribute: both Edwards keys are mapped to their Montgomery form (the private
/// scalar is the first half of SHA-512 of the seed, as Ed25519 itself derives it; the public
/// point u = (1 + y) / (1 − y)), as age does for ssh-ed25519 recipients and libsodium's
/// `crypto_sign_ed25519_*_to_curve25519` do. A MAC under the shared secret costs microseconds
/// where an Ed25519 verification costs hundreds.
public enum KeyAgreement {
    /// The secret `own` shares with `peer`: nil when the peer's key is not a usable point (a
    /// non-canonical or small-order encoding, which would give a predictable secret).
    public static func sharedSecret(_ own: SigningKey, _ peer: VerifyingKey) -> [UInt8]? {
        guard let montgomery = peer.agreementKey else { return nil }
        let peerKey = montgomery.withUnsafeBufferPointer { EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nil, $0.baseAddress, 32) }
        guard let peerKey else { return nil }
        defer { EVP_PKEY_free(peerKey) }
        guard let context = EVP_PKEY_CTX_new(own.agreementKey, nil) else { return nil }
        defer { EVP_PKEY_CTX_free(context) }
        var secret = [UInt8](repeating: 0, count: 32)
        var length = secret.count
        // OpenSSL refuses an all-zero result (a small-order peer point) in EVP_PKEY_derive.
        guard EVP_PKEY_derive_init(context) == 1, EVP_PKEY_derive_set_peer(context, peerKey) == 1,
              EVP_PKEY_derive(context, &secret, &length) == 1, length == 32 else {
            ERR_clear_error()
            return nil
        }
        return secret
    }

    /// The X25519 private key of an Ed25519 seed: the first 32 bytes of SHA-512(seed)
    /// (X25519 clamps them as Ed25519 does).
    static func montgomeryPrivateKey(seed: [UInt8]) -> OpaquePointer {
        let scalar = Array(Digest.hash(.sha512, seed).prefix(32))
        return scalar.withUnsafeBufferPointer { EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nil, $0.baseAddress, 32) }!
    }

    /// u = (1 + y) / (1 − y) mod 2^255 − 19 for an Edwards point's encoding (little-endian y, the
    /// top bit the sign of x, which u does not need); nil for a y that is not canonical or is 1.
    static func montgomeryPublicKey(edwards: [UInt8]) -> [UInt8]? {
        guard edwards.count == 32 else { return nil }
        var y = edwards
        y[31] &= 0x7F
        let context = BN_CTX_new()!
        defer { BN_CTX_free(context) }
        var prime: OpaquePointer? = nil
        _ = BN_hex2bn(&prime, "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffed")
        let bigEndian = Array(y.reversed())
        let value = bigEndian.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, 32, nil) }
        let numerator = BN_new(), denominator = BN_new(), inverse = BN_new(), u = BN_new()
        defer { [prime, value, numerator, denominator, inverse, u].forEach { BN_free($0) } }
        guard let prime, let value, let numerator, let denominator, let inverse, let u, BN_cmp(value, prime) < 0,
              BN_mod_add(numerator, BN_value_one(), value, prime, context) == 1,
              BN_mod_sub(denominator, BN_value_one(), value, prime, context) == 1,
              BN_is_zero(denominator) == 0,
              BN_mod_inverse(inverse, denominator, prime, context) != nil,
              BN_mod_mul(u, numerator, inverse, prime, context) == 1 else {
            ERR_clear_error()
            return nil
        }
        var output = [UInt8](repeating: 0, count: 32)
        guard BN_bn2binpad(u, &output, 32) == 32 else { return nil }
        return output.reversed()
    }
}
