import Cryptography
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

    @Test("random bytes differ between calls and have the asked length")
    func random() {
        let first = SecureRandom.bytes(64)
        #expect(first.count == 64)
        #expect(first != SecureRandom.bytes(64))
        #expect(SecureRandom.bytes(0).isEmpty)
    }
}
