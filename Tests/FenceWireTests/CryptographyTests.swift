@testable import Cryptography
import Testing
import TestSupport

/// Known answers (FIPS 180 examples, RFC 4231 test case 2) for the libcrypto wrapper.
@Suite("Cryptography (libcrypto)")
struct DigestTests {
    func hex(_ bytes: [UInt8]) -> String { bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }

    @Test("SHA-1, SHA-256 and SHA-512 of \"abc\", also in two parts")
    func knownAnswers() {
        let abc = Array("abc".utf8)
        #expect(hex(Digest.hash(.sha1, abc)) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(hex(Digest.hash(.sha256, abc)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hex(Digest.hash(.sha512, abc)) == "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")
        #expect(Digest.hash(.sha256, Array("a".utf8), Array("bc".utf8)) == Digest.hash(.sha256, abc))
        #expect(Digest.hash(.sha256, [], abc, []) == Digest.hash(.sha256, abc))
    }

    @Test("a prepared key digest equals hashing key and message together", arguments: DigestAlgorithm.allCases)
    func keyedDigest(algorithm: DigestAlgorithm) {
        let key = (0..<4096).map { UInt8($0 % 256) }
        let prepared = KeyedDigest(algorithm, key: key)
        for message in [[], Array("abc".utf8), [UInt8](repeating: 7, count: 176)] {
            #expect(prepared.hash(message) == Digest.hash(algorithm, key, message))
        }
    }

    @Test("HMAC-SHA256 (RFC 4231 test case 2)")
    func hmac() {
        let mac = Digest.hmac(.sha256, key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8))
        #expect(hex(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test("a prepared HMAC key equals OpenSSL's HMAC: keys shorter than, as long as and longer than a block, messages in parts", arguments: DigestAlgorithm.allCases)
    func keyedMAC(_ algorithm: DigestAlgorithm) {
        #expect(hex(KeyedMAC(.sha256, key: Array("Jefe".utf8)).mac(Array("what do ya ".utf8), Array("want for nothing?".utf8)))
            == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        for length in [1, 20, 63, 64, 65, 127, 128, 129, 4096] {
            let key = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            let message = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 13) }
            let prepared = KeyedMAC(algorithm, key: key)
            #expect(prepared.mac(message) == Digest.hmac(algorithm, key: key, message: message), "key of \(length) bytes")
            #expect(prepared.mac(Array(message[..<100]), Array(message[100...])) == Digest.hmac(algorithm, key: key, message: message))
            #expect(prepared.mac([]) == Digest.hmac(algorithm, key: key, message: []))
        }
    }

    @Test("random bytes differ between calls and have the asked length")
    func random() {
        let first = SecureRandom.bytes(64)
        #expect(first.count == 64)
        #expect(first != SecureRandom.bytes(64))
        #expect(SecureRandom.bytes(0).isEmpty)
    }
}

/// The Edwards-to-Montgomery map under the pair keys of the bus (`KeyAgreement`).
@Suite("Key agreement between Ed25519 identities")
struct KeyAgreementTests {
    /// The Ed25519 key of libsodium's test (seed 421151a4…), as PKCS #8 PEM.
    static let libsodiumKey = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIEIRUaRZ+urePSRxFflK7a5CMYEkCVr6vk0UUaVZ+u3u\n-----END PRIVATE KEY-----\n"

    @Test("libsodium's known answer: the seed 421151a4… maps to the X25519 public key f1814f0e…")
    func knownAnswer() throws {
        let key = try SigningKey(pem: Array(Self.libsodiumKey.utf8))
        let hex = DigestTests().hex
        #expect(hex(key.verifyingKey.raw) == "b5076a8474a832daee4dd5b4040983b6623b5f344aca57d4d6ee4baf3f259e6e")
        #expect(try hex(#require(key.verifyingKey.agreementKey)) == "f1814f0e8ff1043d8a44d25babff3cedcae6c22c3edaa48f857ae70de2baae50")
        #expect(hex(key.agreementPublicKey) == "f1814f0e8ff1043d8a44d25babff3cedcae6c22c3edaa48f857ae70de2baae50")
    }

    @Test("both sides of a pair derive one secret; a third key derives another")
    func agreement() throws {
        for _ in 0..<20 {
            let alice = SigningKey(), bob = SigningKey(), mallory = SigningKey()
            // The public map and the private one agree (two independent routes to the same point).
            #expect(alice.verifyingKey.agreementKey == alice.agreementPublicKey)
            let ab = try #require(KeyAgreement.sharedSecret(alice, bob.verifyingKey))
            #expect(KeyAgreement.sharedSecret(bob, alice.verifyingKey) == ab)
            #expect(try #require(KeyAgreement.sharedSecret(mallory, bob.verifyingKey)) != ab)
        }
    }

    @Test("points that give no usable secret are refused: y = 1, a non-canonical y, small order")
    func badPoints() throws {
        var one = [UInt8](repeating: 0, count: 32)
        one[0] = 1
        #expect(KeyAgreement.montgomeryPublicKey(edwards: one) == nil)
        // p itself (2^255 − 19, little-endian) is not a canonical y.
        var prime = [UInt8](repeating: 0xFF, count: 32)
        prime[0] = 0xED
        prime[31] = 0x7F
        #expect(KeyAgreement.montgomeryPublicKey(edwards: prime) == nil)
        // y = −1 maps to u = 0, the point of order 2: X25519 with it is all zeros, refused.
        var minusOne = prime
        minusOne[0] = 0xEC
        #expect(KeyAgreement.montgomeryPublicKey(edwards: minusOne) == [UInt8](repeating: 0, count: 32))
        let orderTwo = try VerifyingKey(pem: Array("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA7P///////////////////////////////////////38=\n-----END PUBLIC KEY-----\n".utf8))
        #expect(KeyAgreement.sharedSecret(SigningKey(), orderTwo) == nil)
        #expect(KeyAgreement.montgomeryPublicKey(edwards: [1, 2, 3]) == nil)
    }
}
