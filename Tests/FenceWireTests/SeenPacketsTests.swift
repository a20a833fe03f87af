import Testing
@testable import FenceWire

@Suite("Seen packets")
struct SeenPacketsTests {
    static let key = FenceKey(fileContents: Array("seen-packets-key".utf8))

    func packet(_ random: [UInt8], hash: HashAlgorithm = .sha256) throws -> FenceRequest {
        var request = try FenceRequest(operation: .deviceStatus, hash: hash, domain: "", callback: CallbackAddress("10.0.0.2"), port: 1229, seqno: 42)
        request.sign(key: Self.key, random: random)
        return request
    }

    @Test("an exact repeat is seen; a retransmission (fresh random bytes) is not")
    func repeats() throws {
        var seen = SeenPackets()
        let first = try #require(SeenPackets.Fingerprint(try packet([1, 2, 3, 4, 5, 6])))
        let retransmission = try #require(SeenPackets.Fingerprint(try packet([1, 2, 3, 4, 5, 7])))
        #expect(seen.insert(first, now: 100) == true)
        #expect(seen.insert(first, now: 101) == false)
        #expect(seen.insert(retransmission, now: 101) == true)
    }

    @Test("unsigned packets have no fingerprint")
    func unsigned() throws {
        #expect(SeenPackets.Fingerprint(try packet([0, 0, 0, 0, 0, 0], hash: .none)) == nil)
    }

    @Test("remembered for the lifetime, then forgotten; the oldest go first when full")
    func bounds() {
        var seen = SeenPackets(capacity: 2, lifetime: 60)
        let a = SeenPackets.Fingerprint(high: 1, low: 1)
        let b = SeenPackets.Fingerprint(high: 2, low: 2)
        let c = SeenPackets.Fingerprint(high: 3, low: 3)
        #expect(seen.insert(a, now: 0) == true)
        #expect(seen.insert(a, now: 59) == false)
        #expect(seen.insert(a, now: 60) == true, "forgotten after 60 s")
        #expect(seen.insert(b, now: 61) == true)
        #expect(seen.insert(c, now: 62) == true)
        #expect(seen.count == 2)
        #expect(seen.insert(a, now: 63) == true, "the oldest went to make room")
        #expect(seen.insert(c, now: 63) == false)
    }

    @Test("what a previous run remembered is restored, without what has grown too old; what lies in the future counts as now")
    func restore() {
        var seen = SeenPackets(capacity: 10, lifetime: 100)
        let records = [
            SeenPackets.Record(time: 10, fingerprint: .init(high: 1, low: 0)),
            SeenPackets.Record(time: 150, fingerprint: .init(high: 2, low: 0)),
            SeenPackets.Record(time: 150, fingerprint: .init(high: 2, low: 0)),
            SeenPackets.Record(time: 10_000, fingerprint: .init(high: 3, low: 0)),
        ]
        seen.restore(records, now: 200)
        #expect(seen.count == 2)
        #expect(seen.insert(.init(high: 2, low: 0), now: 200) == false)
        #expect(seen.insert(.init(high: 3, low: 0), now: 200) == false, "a clock behind at boot forgets nothing")
        #expect(seen.insert(.init(high: 1, low: 0), now: 200) == true)
        #expect(Array(seen.records.map(\.fingerprint.high)) == [2, 3, 1])
        #expect(Array(seen.records.map(\.time)) == [150, 200, 200])
    }

    @Test("a corrupt journal with times near the end of the epoch neither traps nor is kept for ever")
    func corruptTimes() {
        var seen = SeenPackets(capacity: 10, lifetime: 100)
        seen.restore([SeenPackets.Record(time: .max, fingerprint: .init(high: 9, low: 9))], now: 1000)
        #expect(seen.count == 1)
        #expect(seen.insert(.init(high: 8, low: 8), now: 1100) == true)
        #expect(seen.insert(.init(high: 9, low: 9), now: 1100) == true, "forgotten a lifetime later")
    }
}
