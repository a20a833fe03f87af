import Testing
import TestSupport
@testable import FenceWire

/// Every request captured from the real Debian fence_xvm 4.12.1 must decode, verify, and re-sign to
/// exactly the captured bytes.
@Suite("Captured fence_xvm requests")
struct RequestVectorTests {
    static let vectors = try! Fixtures.fenceXVMVectors()

    static func key(_ vector: FenceXVMVectors.Request) throws -> FenceKey {
        FenceKey(fileContents: try Fixtures.bytes("fence-xvm/\(vector.keyFile)"))
    }

    @Test("decodes every field", arguments: vectors.requests)
    func decodesFields(vector: FenceXVMVectors.Request) throws {
        let request = try FenceRequest(decoding: vector.packet)
        let expected = vector.decoded
        #expect(request.operation.rawValue == expected.request)
        #expect(request.hash.rawValue == expected.hashtype)
        #expect(request.addressLength == expected.addrlen)
        #expect(request.flags == expected.flags)
        #expect(request.domain == expected.domain)
        #expect(request.port == expected.port)
        #expect(request.seqno == expected.seqno)
        #expect(request.family == expected.family)
        #expect(request.callbackAddress?.description == expected.ip)
        #expect(request.bytes == vector.packet)
    }

    @Test("verifies with its key at its own hash as the minimum", arguments: vectors.requests)
    func verifies(vector: FenceXVMVectors.Request) throws {
        let request = try FenceRequest(decoding: vector.packet)
        try RequestVerifier(key: try Self.key(vector), minimumHash: request.hash).verify(request)
    }

    @Test("re-signing the decoded fields reproduces the captured bytes", arguments: vectors.requests)
    func resigns(vector: FenceXVMVectors.Request) throws {
        let captured = try FenceRequest(decoding: vector.packet)
        var built = try FenceRequest(
            operation: captured.operation,
            hash: captured.hash,
            domain: captured.domain,
            callback: captured.callbackAddress,
            port: captured.port,
            seqno: captured.seqno,
            flags: captured.flags
        )
        built.sign(key: try Self.key(vector), random: Array(captured.random))
        #expect(built.bytes == vector.packet)
    }

    @Test("any flipped byte of a signed packet is refused", arguments: vectors.requests.filter { $0.decoded.hashtype != 0 })
    func flippedByteFails(vector: FenceXVMVectors.Request) throws {
        let key = try Self.key(vector)
        for index in 0..<FenceRequest.length {
            for mask: UInt8 in [0x01, 0x80, 0xFF] {
                var packet = vector.packet
                packet[index] ^= mask
                #expect(throws: (any Error).self, "byte \(index) ^ \(mask) was accepted") {
                    let request = try FenceRequest(decoding: packet)
                    try RequestVerifier(key: key, minimumHash: .sha1).verify(request)
                }
            }
        }
    }

    @Test("a wrong key is refused", arguments: vectors.requests.filter { $0.decoded.hashtype != 0 })
    func wrongKeyFails(vector: FenceXVMVectors.Request) throws {
        let request = try FenceRequest(decoding: vector.packet)
        var wrong = try Self.key(vector).bytes
        wrong[wrong.count - 1] ^= 0x01
        #expect(throws: VerificationFailure.self) {
            try RequestVerifier(key: FenceKey(fileContents: wrong), minimumHash: .sha1).verify(request)
        }
        #expect(throws: VerificationFailure(code: .noKey, detail: "the key is empty")) {
            try RequestVerifier(key: FenceKey(fileContents: []), minimumHash: .sha1).verify(request)
        }
    }

    @Test("the 5000-byte key verifies only through its first 4096 bytes")
    func longKeyIsCut() throws {
        let vector = try #require(Self.vectors.requests.first { $0.keyFile.hasSuffix("pattern5000.key") })
        let file = try Fixtures.bytes("fence-xvm/keys/pattern5000.key")
        #expect(file.count == 5000)
        let key = FenceKey(fileContents: file)
        #expect(key.bytes.count == FenceKey.maximumLength)
        try RequestVerifier(key: key, minimumHash: .sha512).verify(FenceRequest(decoding: vector.packet))
    }

    @Test("the minimum-hash policy refuses weaker signatures")
    func minimumHashPolicy() throws {
        let key = FenceKey(fileContents: try Fixtures.bytes("fence-xvm/keys/test.key"))
        func packet(_ name: String) throws -> FenceRequest {
            try FenceRequest(decoding: #require(Self.vectors.requests.first { $0.name == name }).packet)
        }
        let sha1 = try packet("off_sha1")
        let none = try packet("list_none")
        let sha512 = try packet("status_sha512")
        #expect(throws: VerificationFailure(code: .hashTooWeak, detail: "sha1 < sha256")) {
            try RequestVerifier(key: key, minimumHash: .sha256).verify(sha1)
        }
        #expect(throws: VerificationFailure(code: .hashTooWeak, detail: "none < sha1")) {
            try RequestVerifier(key: key, minimumHash: .sha1).verify(none)
        }
        try RequestVerifier(key: key, minimumHash: .none).verify(none)
        try RequestVerifier(key: key, minimumHash: .sha256).verify(sha512)
        try RequestVerifier(key: key, minimumHash: .sha1).verify(sha1)
    }

    @Test("only exactly 176 bytes decode", arguments: [0, 1, 175, 177, 352])
    func wrongLengths(length: Int) throws {
        let base = Self.vectors.requests[0].packet
        let datagram = Array((base + base).prefix(length))
        #expect(throws: MalformedRequest.self) { try FenceRequest(decoding: datagram) }
        do {
            _ = try FenceRequest(decoding: datagram)
        } catch {
            #expect(error.code == .wrongLength)
        }
    }

    @Test("field checks: unknown hash type, unterminated or invalid domain")
    func fieldChecks() throws {
        var packet = Self.vectors.requests[0].packet
        packet[1] = 4
        #expect(throws: MalformedRequest.self) { try FenceRequest(decoding: packet) }

        packet = Self.vectors.requests[0].packet
        for index in 4..<68 { packet[index] = UInt8(ascii: "a") }
        do {
            _ = try FenceRequest(decoding: packet)
            Issue.record("a 64-byte domain without NUL was accepted")
        } catch {
            #expect(error.code == .domainNotTerminated)
        }

        packet = Self.vectors.requests[0].packet
        packet[4] = 0xFF
        do {
            _ = try FenceRequest(decoding: packet)
            Issue.record("an invalid UTF-8 domain was accepted")
        } catch {
            #expect(error.code == .domainNotUTF8)
        }

        // ASCII controls are refused as well as others (printable ASCII takes a shorter way).
        for control: UInt8 in [0x01, 0x1F, 0x7F] {
            packet = Self.vectors.requests[0].packet
            packet[5] = control
            do {
                _ = try FenceRequest(decoding: packet)
                Issue.record("a domain with control character \(control) was accepted")
            } catch {
                #expect(error.code == .domainControlCharacter)
            }
        }
    }

    @Test("a name longer than 63 bytes cannot be put on the wire")
    func longNameRefused() throws {
        let name63 = String(repeating: "d", count: 63)
        _ = try FenceRequest(operation: .off, hash: .sha256, domain: name63, callback: nil, port: 1229, seqno: 1)
        #expect(throws: MalformedRequest.self) {
            try FenceRequest(operation: .off, hash: .sha256, domain: name63 + "d", callback: nil, port: 1229, seqno: 1)
        }
    }
}
