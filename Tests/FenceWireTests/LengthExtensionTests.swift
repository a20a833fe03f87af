import Cryptography
import Testing
@testable import FenceWire

/// The daemon must answer `SHA-256(key ‖ C1)` for any 64-byte C1 a peer sends first (the client's
/// fixed order). With SHA-2's length extension that answer signs `C1 ‖ padding ‖ anything`: a
/// request the peer chose, for keys whose length mod 64 is 16 to 55. The padding's first byte,
/// 0x80, always lands at offset 64, inside the domain field: after its NUL, where a real client
/// leaves zeros, or ending a name as U+0080; decoding refuses both.
@Suite("Length extension of a challenge answer")
struct LengthExtensionTests {
    /// SHA-256 resumed from a digest, as an attacker would: the state after `processed` bytes
    /// (already padded to whole blocks) is the digest itself.
    static func extend(digest: [UInt8], processed: Int, suffix: [UInt8]) -> [UInt8] {
        var state = (0..<8).map { index in digest[(4 * index)..<(4 * index + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
        let total = processed + suffix.count
        var message = suffix + [0x80]
        while (processed + message.count) % 64 != 56 { message.append(0) }
        message += (0..<8).reversed().map { UInt8(truncatingIfNeeded: UInt64(total * 8) >> (8 * $0)) }
        for block in stride(from: 0, to: message.count, by: 64) { compress(&state, Array(message[block..<(block + 64)])) }
        return state.flatMap { word in (0..<4).reversed().map { UInt8(truncatingIfNeeded: word >> (8 * $0)) } }
    }

    static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    static func compress(_ state: inout [UInt32], _ block: [UInt8]) {
        func rotate(_ x: UInt32, _ n: UInt32) -> UInt32 { x >> n | x << (32 - n) }
        var w = (0..<16).map { index in block[(4 * index)..<(4 * index + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
        for t in 16..<64 {
            let s0 = rotate(w[t - 15], 7) ^ rotate(w[t - 15], 18) ^ (w[t - 15] >> 3)
            let s1 = rotate(w[t - 2], 17) ^ rotate(w[t - 2], 19) ^ (w[t - 2] >> 10)
            w.append(w[t - 16] &+ s0 &+ w[t - 7] &+ s1)
        }
        var (a, b, c, d, e, f, g, h) = (state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7])
        for t in 0..<64 {
            let t1 = h &+ (rotate(e, 6) ^ rotate(e, 11) ^ rotate(e, 25)) &+ ((e & f) ^ (~e & g)) &+ k[t] &+ w[t]
            let t2 = (rotate(a, 2) ^ rotate(a, 13) ^ rotate(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
            (h, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
        }
        for (index, value) in [a, b, c, d, e, f, g, h].enumerated() { state[index] &+= value }
    }

    /// The two ways the padding's 0x80 at offset 64 can sit in the domain field: after the NUL
    /// of a short name, or as the last byte of a name of 61 bytes whose 60th the peer chose
    /// as a UTF-8 lead byte (U+0080, a control character).
    static let domains: [(name: [UInt8], refusal: MalformedRequest.Code)] = [
        (Array("vm1".utf8), .domainNotZeroPadded),
        (Array(repeating: UInt8(ascii: "v"), count: 59) + [0xC2], .domainControlCharacter),
    ]

    @Test("a request signed by extending the answer to a chosen challenge is refused at decoding",
          arguments: [32, 40, 55], 0..<domains.count)
    func forgedFromChallengeAnswer(keyLength: Int, domainCase: Int) throws {
        let (name, refusal) = Self.domains[domainCase]
        let key = FenceKey(fileContents: (0..<keyLength).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) })
        // The peer's "challenge": the first 64 bytes of the request it wants (off, sha256).
        var challenge = [UInt8](repeating: 0, count: 64)
        challenge[0] = FenceOperation.off.rawValue
        challenge[1] = HashAlgorithm.sha256.rawValue
        challenge.replaceSubrange(4..<(4 + name.count), with: name)
        let answer = ChallengeResponse(key: key, algorithm: .sha256).response(to: challenge)
        // SHA-256's padding of key ‖ challenge, then the rest of a stream request (port, random,
        // seqno, family all zero; the hash field zero while signing).
        let absorbed = keyLength + 64
        var padding: [UInt8] = [0x80]
        while (absorbed + padding.count) % 64 != 56 { padding.append(0) }
        padding += (0..<8).reversed().map { UInt8(truncatingIfNeeded: UInt64(absorbed * 8) >> (8 * $0)) }
        let rest = [UInt8](repeating: 0, count: 176 - 64 - padding.count)
        let signed = challenge + padding + rest
        #expect(signed.count == 176)
        #expect(Array(signed[112...]).allSatisfy { $0 == 0 }, "the hash field lies in the zeros")
        let forged = Self.extend(digest: Array(answer.prefix(32)), processed: absorbed + padding.count, suffix: rest)
        #expect(forged == Digest.hash(.sha256, key.bytes, signed), "the forgery is a genuine signature of that packet")
        var packet = signed
        packet.replaceSubrange(112..<144, with: forged)
        #expect(throws: MalformedRequest.self) { try FenceRequest(decoding: packet) }
        do {
            _ = try FenceRequest(decoding: packet)
        } catch {
            #expect(error.code == refusal, "\(error)")
        }
    }
}
