import Testing
@testable import FenceWire

@Suite("Duplicate history")
struct RequestHistoryTests {
    let start = ContinuousClock.now

    func key(_ domain: String = "vm1", seqno: UInt32 = 7, operation: FenceOperation = .off) throws -> RequestKey {
        RequestKey(try FenceRequest(operation: operation, hash: .sha256, domain: domain, callback: nil, port: 1229, seqno: seqno))
    }

    func candidate(_ text: String, matches: Bool) -> CallbackCandidate {
        CallbackCandidate(address: CallbackAddress(text)!, port: 1229, matchesSource: matches)
    }

    @Test("copies merge; the copy matching its source is called back first")
    func mergeAndOrder() throws {
        var history = RequestHistory()
        let k = try key()
        #expect(history.admit(k, candidate: candidate("127.0.0.1", matches: false), now: start) == .new(firstSeen: start))
        #expect(!history.hasSourceMatch(k))
        #expect(history.admit(k, candidate: candidate("10.0.0.5", matches: false), now: start) == .merged)
        #expect(history.admit(k, candidate: candidate("10.0.0.2", matches: true), now: start) == .merged)
        #expect(history.admit(k, candidate: candidate("10.0.0.2", matches: true), now: start) == .merged)
        #expect(history.hasSourceMatch(k))
        let order = history.beginCallback(k).map(\.address.description)
        #expect(order == ["10.0.0.2", "127.0.0.1", "10.0.0.5"])
        #expect(history.admit(k, candidate: candidate("10.0.0.2", matches: true), now: start) == .duplicate)
    }

    @Test("the key ignores domain case, as the reference does, and separates op and seqno")
    func keyIdentity() throws {
        var history = RequestHistory()
        #expect(history.admit(try key("VM1"), candidate: nil, now: start) == .new(firstSeen: start))
        #expect(history.admit(try key("vm1"), candidate: nil, now: start) == .merged)
        #expect(history.admit(try key("vm1", seqno: 8), candidate: nil, now: start) == .new(firstSeen: start))
        #expect(history.admit(try key("vm1", operation: .status), candidate: nil, now: start) == .new(firstSeen: start))
    }

    @Test("a finished request is remembered for the whole window, then forgotten")
    func window() throws {
        var history = RequestHistory(window: .seconds(60))
        let k = try key()
        _ = history.admit(k, candidate: nil, now: start)
        _ = history.beginCallback(k)
        history.finished(k, now: start)
        #expect(history.admit(k, candidate: nil, now: start + .seconds(59)) == .duplicate)
        let later = start + .seconds(61)
        #expect(history.admit(k, candidate: nil, now: later) == .new(firstSeen: later))
    }

    @Test("after a failed call-back a retransmission retries with the first deadline")
    func retryAfterCallbackFailure() throws {
        var history = RequestHistory()
        let k = try key()
        _ = history.admit(k, candidate: candidate("10.0.0.2", matches: true), now: start)
        _ = history.beginCallback(k)
        history.callbackFailed(k, now: start + .seconds(1))
        #expect(history.admit(k, candidate: candidate("10.0.0.2", matches: true), now: start + .seconds(2)) == .retry(firstSeen: start))
        #expect(history.beginCallback(k).count == 1)
    }

    @Test("requests under way are never purged, and capacity is bounded")
    func capacityAndInProgress() throws {
        var history = RequestHistory(window: .seconds(1), capacity: 2)
        let a = try key(seqno: 1)
        _ = history.admit(a, candidate: nil, now: start)
        _ = history.beginCallback(a)
        _ = history.admit(try key(seqno: 2), candidate: nil, now: start)
        #expect(history.admit(try key(seqno: 3), candidate: nil, now: start) == .full)
        #expect(history.admit(a, candidate: nil, now: start + .seconds(100)) == .duplicate)
        #expect(history.count == 2)
    }
}
