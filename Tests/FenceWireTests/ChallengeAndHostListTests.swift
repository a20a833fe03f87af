import Testing
import TestSupport
@testable import FenceWire

@Suite("Challenge-response and host lists")
struct ChallengeAndHostListTests {
    static let vectors = try! Fixtures.fenceXVMVectors()

    @Test("responses match those of the real client", arguments: vectors.challenges)
    func challengeVectors(vector: FenceXVMVectors.Challenge) throws {
        let key = FenceKey(fileContents: try Fixtures.bytes("fence-xvm/\(vector.keyFile)"))
        let algorithm = try #require(HashAlgorithm(name: vector.auth))
        let exchange = ChallengeResponse(key: key, algorithm: algorithm)
        let challenge = Hex.decode(vector.challengeHex)
        let response = Hex.decode(vector.responseHex)
        #expect(challenge.count == ChallengeResponse.length)
        #expect(exchange.response(to: challenge) == response)
        #expect(exchange.isValid(response: response, to: challenge))

        var flipped = response
        flipped[0] ^= 0x01
        #expect(!exchange.isValid(response: flipped, to: challenge))
        var padding = response
        padding[63] ^= 0x01
        #expect(!exchange.isValid(response: padding, to: challenge))
        let otherKey = ChallengeResponse(key: FenceKey(fileContents: key.bytes + [0]), algorithm: algorithm)
        #expect(!otherKey.isValid(response: response, to: challenge))
    }

    /// The four domains of testnode.xml, which the real daemon listed in the captured stream.
    static let testnodeRecords = [
        HostRecord(name: "vm1", uuid: "6695eb01-f6a4-8304-79aa-97f2502e193f", state: 1),
        HostRecord(name: "vm-off", uuid: "11111111-2222-3333-4444-555555555555", state: 5),
        HostRecord(name: "vm-paused", uuid: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", state: 3),
        HostRecord(
            name: "long-name-64-chars-" + String(repeating: "x", count: 45),
            uuid: "0f0f0f0f-1111-2222-3333-444444444444",
            state: 1
        ),
    ]

    @Test("the host-list stream equals the real daemon's apart from its garbage bytes")
    func hostListMatchesRealStream() throws {
        let captured = try #require(Self.vectors.daemonStreams.first { $0.hostlist != nil })
        let real = Hex.decode(captured.streamAfterAuthHex)
        let ours = HostListStream.encode(HostListStream.sorted(Self.testnodeRecords))
        #expect(ours.count == real.count)
        #expect(ours.count == 1 + 5 * HostRecord.length + 1)

        // Bytes 63, 127 and 129 of each record hold stack garbage in the reference; ours are zero.
        let garbageOffsets: Set<Int> = [63, 127, 129]
        for index in ours.indices {
            let inRecord = index >= 1 && index < ours.count - 1
            if inRecord && garbageOffsets.contains((index - 1) % HostRecord.length) {
                #expect(ours[index] == 0, "byte \(index) should be zeroed")
            } else {
                #expect(ours[index] == real[index], "byte \(index) differs")
            }
        }
    }

    @Test("records round-trip and the sort order is strcasecmp's")
    func recordsAndOrder() throws {
        let record = HostRecord(name: "vm1", uuid: "6695eb01-f6a4-8304-79aa-97f2502e193f", state: 3)
        #expect(HostRecord(decoding: record.encoded) == record)
        #expect(record.nameFitsOnWire)
        #expect(!Self.testnodeRecords[3].nameFitsOnWire)

        let names = ["b", "A", "a-1", "B2", "_x"].map { HostRecord(name: $0, uuid: "", state: 1) }
        // strcasecmp lowercases, so "_" (0x5F) sorts before "a" (0x61).
        #expect(HostListStream.sorted(names).map(\.name) == ["_x", "A", "a-1", "b", "B2"])
    }

    @Test("call-back addresses format and parse both families")
    func addresses() throws {
        let cases = ["10.9.0.1", "0.0.0.0", "255.255.255.255", "1.20.100.9", "fd00:9::1", "fe80::6c05:44ff:fe92:7a14", "::1", "1:2:3:4:5:6:7:8", "ff05::3:1", "1::"]
        for text in cases {
            #expect(CallbackAddress(text)?.description == text)
        }
        #expect(CallbackAddress("10.9.0")  == nil)
        #expect(CallbackAddress("1:::2") == nil)
        #expect(CallbackAddress("256.1.1.1") == nil)
        #expect(CallbackAddress("10.9.0.1")!.isUsableForCallback)
        #expect(!CallbackAddress("0.0.0.0")!.isUsableForCallback)
        #expect(!CallbackAddress("225.0.0.12")!.isUsableForCallback)
        #expect(!CallbackAddress("fe80::1")!.isUsableForCallback)
        #expect(!CallbackAddress("::")!.isUsableForCallback)
        #expect(CallbackAddress("fd00:9::1")!.isUsableForCallback)
    }
}
